//! Prometheus metrics, kept in process (counters reset on restart, as Prometheus expects) plus
//! gauges read from the store when scraped. Rendered as Prometheus text at `GET /metrics`.

use crate::clock::Timestamp;
use crate::model::{ErrorClass, Kind, State};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 10.0, 30.0, 120.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    transitions: BTreeMap<(Kind, State, State), u64>,
    step_seconds: BTreeMap<(Kind, State), Histogram>,
    step_errors: BTreeMap<(ErrorClass, &'static str), u64>,
    aws_calls: BTreeMap<(&'static str, &'static str), u64>,
    lease_takeovers: u64,
    /// List* sweeps by kind and outcome, and the runs they made due.
    sweeps: BTreeMap<(Kind, &'static str), u64>,
    sweep_nudges: u64,
    /// Seconds AWS calls waited for the rate limiter, by operation.
    rate_limit_waits: BTreeMap<&'static str, f64>,
}

#[derive(Default)]
pub struct Metrics(Mutex<Inner>);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::default)
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn transition(&self, kind: Kind, from: State, to: State) {
        self.with(|m| *m.transitions.entry((kind, from, to)).or_default() += 1);
    }

    pub fn step(&self, kind: Kind, state: State, took: Duration) {
        let secs = took.as_secs_f64();
        self.with(|m| {
            let h = m.step_seconds.entry((kind, state)).or_default();
            for (i, le) in BUCKETS.iter().enumerate() {
                if secs <= *le {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        });
    }

    /// A step error, and whether the run was `retried` or `failed` because of it.
    pub fn step_error(&self, class: ErrorClass, outcome: &'static str) {
        self.with(|m| *m.step_errors.entry((class, outcome)).or_default() += 1);
    }

    pub fn aws_call(&self, operation: &'static str, outcome: &'static str) {
        self.with(|m| *m.aws_calls.entry((operation, outcome)).or_default() += 1);
    }

    /// One List* sweep of `kind` (one AWS target): `ok` or `failed`.
    pub fn sweep(&self, kind: Kind, outcome: &'static str) {
        self.with(|m| *m.sweeps.entry((kind, outcome)).or_default() += 1);
    }

    /// Runs a sweep made due because their job's status changed (or their coverage lapsed).
    pub fn sweep_nudges(&self, n: u64) {
        if n > 0 {
            self.with(|m| m.sweep_nudges += n);
        }
    }

    /// An AWS call waited `waited` for its rate limiter token.
    pub fn rate_limit_wait(&self, operation: &'static str, waited: Duration) {
        self.with(|m| *m.rate_limit_waits.entry(operation).or_default() += waited.as_secs_f64());
    }

    pub fn lease_takeovers(&self, n: u64) {
        if n > 0 {
            self.with(|m| m.lease_takeovers += n);
        }
    }

    /// Prometheus text: the counters above, plus the store's view passed in.
    pub fn render(
        &self,
        runs: &[(Kind, State, i64)],
        oldest_unfinished: Option<Timestamp>,
        now: Timestamp,
    ) -> String {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut o = String::new();
        let head = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut o,
            "executor_runs",
            "gauge",
            "Runs in the store by kind and state.",
        );
        for (kind, state, n) in runs {
            let _ = writeln!(o, "executor_runs{{kind=\"{kind}\",state=\"{state}\"}} {n}");
        }
        head(
            &mut o,
            "executor_oldest_unfinished_run_age_seconds",
            "gauge",
            "Age of the oldest run that is not terminal (0 when none).",
        );
        let age = oldest_unfinished
            .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        let _ = writeln!(o, "executor_oldest_unfinished_run_age_seconds {age}");
        head(
            &mut o,
            "executor_transitions_total",
            "counter",
            "Committed state changes.",
        );
        for ((kind, from, to), n) in &m.transitions {
            let _ = writeln!(
                o,
                "executor_transitions_total{{kind=\"{kind}\",from=\"{from}\",to=\"{to}\"}} {n}"
            );
        }
        head(
            &mut o,
            "executor_step_duration_seconds",
            "histogram",
            "Time one workflow step took.",
        );
        for ((kind, state), h) in &m.step_seconds {
            let labels = format!("kind=\"{kind}\",state=\"{state}\"");
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "executor_step_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                o,
                "executor_step_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                o,
                "executor_step_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                o,
                "executor_step_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        head(
            &mut o,
            "executor_step_errors_total",
            "counter",
            "Step errors by class, and whether the run was retried or failed.",
        );
        for ((class, outcome), n) in &m.step_errors {
            let _ = writeln!(
                o,
                "executor_step_errors_total{{class=\"{}\",outcome=\"{outcome}\"}} {n}",
                class.as_str()
            );
        }
        head(
            &mut o,
            "executor_aws_calls_total",
            "counter",
            "AWS calls by operation and outcome.",
        );
        for ((op, outcome), n) in &m.aws_calls {
            let _ = writeln!(
                o,
                "executor_aws_calls_total{{operation=\"{op}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        head(
            &mut o,
            "executor_lease_takeovers_total",
            "counter",
            "Runs claimed after another holder's lease expired.",
        );
        let _ = writeln!(o, "executor_lease_takeovers_total {}", m.lease_takeovers);
        head(
            &mut o,
            "executor_sweeps_total",
            "counter",
            "List* sweeps by kind and outcome (one per kind and AWS target per interval).",
        );
        for ((kind, outcome), n) in &m.sweeps {
            let _ = writeln!(
                o,
                "executor_sweeps_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        head(
            &mut o,
            "executor_sweep_nudges_total",
            "counter",
            "Runs a sweep made due because their job's status changed or their coverage lapsed.",
        );
        let _ = writeln!(o, "executor_sweep_nudges_total {}", m.sweep_nudges);
        head(
            &mut o,
            "executor_aws_rate_limit_wait_seconds_total",
            "counter",
            "Time AWS calls waited for the per-operation rate limiter, by operation.",
        );
        for (op, secs) in &m.rate_limit_waits {
            let _ = writeln!(
                o,
                "executor_aws_rate_limit_wait_seconds_total{{operation=\"{op}\"}} {secs}"
            );
        }
        o
    }
}

/// Who this process is, for `/metrics` of several replicas: set once at start-up.
static INSTANCE: OnceLock<(String, String, &'static str)> = OnceLock::new();

/// Records this process's lease owner id (`<worker id>#<nonce>`), its worker id and its store
/// backend, shown by [`render_instance`]. Later calls change nothing.
pub fn set_instance(instance: &str, worker_id: &str, store: &'static str) {
    let _ = INSTANCE.set((instance.to_string(), worker_id.to_string(), store));
}

/// Prometheus text naming this process (empty until [`set_instance`]): behind a load balancer,
/// each replica's counters are told apart by it.
pub fn render_instance() -> String {
    let Some((instance, worker, store)) = INSTANCE.get() else {
        return String::new();
    };
    format!(
        "# HELP executor_instance_info This process: its lease owner id (worker id and per-start \
         nonce), its worker id and its store backend.\n\
         # TYPE executor_instance_info gauge\n\
         executor_instance_info{{instance=\"{}\",worker_id=\"{}\",store=\"{store}\"}} 1\n",
        label(instance),
        label(worker)
    )
}

/// A Prometheus label value: backslash, double quote and line feed escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text for the store's group commit: transactions made and the engine writes they
/// held (their ratio is the mean batch).
pub fn render_group_commit(stats: crate::store::GroupStats) -> String {
    format!(
        "# HELP executor_store_group_commits_total Transactions made by the store's group commit.\n\
         # TYPE executor_store_group_commits_total counter\n\
         executor_store_group_commits_total {}\n\
         # HELP executor_store_group_operations_total Engine writes (transitions, claims) those \
         transactions held.\n\
         # TYPE executor_store_group_operations_total counter\n\
         executor_store_group_operations_total {}\n",
        stats.transactions, stats.operations
    )
}

/// Prometheus text for the runs whose status checks are failing while their AWS job may still
/// run (DESIGN.md invariant 4), by kind; every kind is listed, 0 when none.
pub fn render_degraded(degraded: &[(Kind, i64)]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# HELP executor_degraded_runs Runs whose status checks are failing; they keep following \
         their AWS job.\n# TYPE executor_degraded_runs gauge"
    );
    for kind in Kind::ALL {
        let n = degraded
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(o, "executor_degraded_runs{{kind=\"{kind}\"}} {n}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.transition(Kind::Training, State::Polling, State::Done);
        m.step(Kind::Training, State::Polling, Duration::from_millis(20));
        m.step(Kind::Training, State::Polling, Duration::from_secs(2));
        m.step_error(ErrorClass::Retryable, "retried");
        m.aws_call("CreateTrainingJob", "ok");
        m.lease_takeovers(2);
        m.sweep(Kind::Training, "ok");
        m.sweep_nudges(3);
        m.rate_limit_wait("DescribeTrainingJob", Duration::from_millis(1500));
        let now = chrono::Utc::now();
        let text = m.render(
            &[(Kind::Training, State::Done, 3)],
            Some(now - chrono::Duration::seconds(90)),
            now,
        );
        for line in [
            "executor_runs{kind=\"training\",state=\"Done\"} 3",
            "executor_oldest_unfinished_run_age_seconds 90",
            "executor_transitions_total{kind=\"training\",from=\"Polling\",to=\"Done\"} 1",
            "executor_step_duration_seconds_bucket{kind=\"training\",state=\"Polling\",le=\"0.05\"} 1",
            "executor_step_duration_seconds_bucket{kind=\"training\",state=\"Polling\",le=\"+Inf\"} 2",
            "executor_step_duration_seconds_count{kind=\"training\",state=\"Polling\"} 2",
            "executor_step_errors_total{class=\"retryable\",outcome=\"retried\"} 1",
            "executor_aws_calls_total{operation=\"CreateTrainingJob\",outcome=\"ok\"} 1",
            "executor_lease_takeovers_total 2",
            "executor_sweeps_total{kind=\"training\",outcome=\"ok\"} 1",
            "executor_sweep_nudges_total 3",
            "executor_aws_rate_limit_wait_seconds_total{operation=\"DescribeTrainingJob\"} 1.5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn degraded_runs_are_a_gauge_per_kind() {
        let text = render_degraded(&[(Kind::Training, 2)]);
        assert!(
            text.contains("# TYPE executor_degraded_runs gauge"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == "executor_degraded_runs{kind=\"training\"} 2")
        );
        assert!(
            text.lines()
                .any(|l| l == "executor_degraded_runs{kind=\"automl\"} 0")
        );
    }
}
