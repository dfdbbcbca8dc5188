//! The List* sweeper: one paged List*Jobs call per job kind and AWS target per interval instead
//! of a Describe per running job per poll (DESIGN.md invariant 6).
//!
//! # What a sweep does
//! Every `interval`, for each kind of run that follows a SageMaker job in `Polling` (training,
//! AutoML, transform; script runs follow a processing job) and for each AWS target those runs
//! talk to (the default chain, a connection, sealed per-run credentials: [`TargetKey`]), the
//! sweeper lists the jobs of that kind modified after the previous successful sweep of that
//! group began (less a margin for clock skew). A listed job that belongs to one of our runs (by
//! its job name) and whose status differs from the status the run last recorded makes that run
//! due now ([`Store::make_due`]), and the engine is woken: its Polling step describes the job
//! as before and takes it from there. So only the jobs whose status changed are described.
//!
//! # What a sweep never does
//! It never finds or adopts a job (DESIGN.md invariant 1: Submitted describes by name), never
//! moves a run itself, and never fails one. It only nudges runs already in `Polling`.
//!
//! # Nothing is missed
//! The look-back of a group reaches the start of its previous successful sweep, and for a run
//! the sweeper has not seen in that group before (new in Polling, or every run after a
//! restart) back to the run's own `updated_at`: its last describe was before that, so any
//! change since is listed. A run a nudge could not take (it was leased or already due) is
//! kept in memory and nudged again at the next sweep until its recorded status matches.
//!
//! A kind and target is swept once it has `min_runs` runs (2 by default: for a lone run,
//! polling costs fewer calls than a List per interval), then until it has none.
//!
//! # Coverage
//! While the last sweep of a run's kind and target succeeded within two intervals, the engine
//! gives that run's steps the safety-net interval ([`SweepHandle::swept`]): a Polling step that
//! sees the job still running describes it again only after that. When sweeps fail (throttled,
//! no permission for List*, a truncated listing), coverage lapses, the sweeper makes the
//! group's runs due once, and their steps go back to the workflow's growing poll interval.

use crate::aws::{AwsProvider, JobKind, JobQuery, JobSummary, TargetKey};
use crate::clock::{Clock, Timestamp};
use crate::model::{Kind, State};
use crate::store::{self, FollowedRun, Store};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

/// The kinds whose `Polling` state follows a SageMaker job, with the job kind to list.
pub const FOLLOWED: [(Kind, JobKind); 4] = [
    (Kind::Training, JobKind::Training),
    (Kind::Automl, JobKind::AutoMl),
    (Kind::Transform, JobKind::Transform),
    (Kind::Script, JobKind::Processing),
];

/// The state the sweep covers.
pub const SWEPT_STATE: State = State::Polling;

#[derive(Clone, Debug)]
pub struct SweepSettings {
    /// Between the starts of two sweeps.
    pub interval: Duration,
    /// The interval of a covered run's own describes.
    pub safety_net: Duration,
    /// Subtracted from each look-back (clock skew between us and AWS, commit delays).
    pub margin: Duration,
    /// Pages of 100 a listing may take; a longer listing counts as a failed sweep.
    pub max_pages: u32,
    /// A group is first swept once it has this many runs: a sweep costs a List call per
    /// interval (120 an hour at 30 s) whatever the number of runs, a run polled on its own
    /// about 67 describes an hour, so for a lone run polling is cheaper. A group once swept is
    /// swept until it has no runs (its runs' own describes are a safety net away).
    pub min_runs: usize,
}

impl Default for SweepSettings {
    fn default() -> Self {
        SweepSettings {
            interval: Duration::from_secs(30),
            safety_net: Duration::from_secs(3600),
            margin: Duration::from_secs(5),
            max_pages: 50,
            min_runs: 2,
        }
    }
}

/// The sweeper's coverage as the engine reads it: when each kind and target was last swept
/// successfully.
#[derive(Clone)]
pub struct SweepHandle {
    inner: Arc<Coverage>,
}

struct Coverage {
    interval: Duration,
    safety_net: Duration,
    last: Mutex<HashMap<(Kind, TargetKey), Timestamp>>,
}

impl SweepHandle {
    pub fn new(settings: &SweepSettings) -> SweepHandle {
        SweepHandle {
            inner: Arc::new(Coverage {
                interval: settings.interval,
                safety_net: settings.safety_net,
                last: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The safety-net interval when runs of `kind` on `target` are covered at `now` (their last
    /// sweep succeeded within two intervals), else None.
    pub fn swept(&self, kind: Kind, target: TargetKey, now: Timestamp) -> Option<Duration> {
        let last = *self
            .inner
            .last
            .lock()
            .expect("sweep coverage lock")
            .get(&(kind, target))?;
        let age = (now - last).to_std().unwrap_or(Duration::ZERO);
        (age <= self.inner.interval * 2).then_some(self.inner.safety_net)
    }

    fn covered(&self, kind: Kind, target: TargetKey, at: Timestamp) {
        self.inner
            .last
            .lock()
            .expect("sweep coverage lock")
            .insert((kind, target), at);
    }
}

/// Whether a listed status is news to a run that recorded `recorded` (None: created, not yet
/// described, so running as far as it knows).
pub fn is_news(recorded: Option<&str>, listed: &str) -> bool {
    !listed.is_empty() && recorded.unwrap_or("InProgress") != listed
}

/// The runs of `runs` whose job is in `listing` with a status they have not recorded, with
/// that status (pure: no I/O).
pub fn changed_runs(runs: &[&FollowedRun], listing: &[JobSummary]) -> Vec<(Uuid, String)> {
    let by_name: HashMap<&str, &JobSummary> =
        listing.iter().map(|j| (j.name.as_str(), j)).collect();
    runs.iter()
        .filter_map(|r| {
            let job = by_name.get(r.job_name.as_str())?;
            is_news(r.status.as_deref(), &job.status).then(|| (r.id, job.status.clone()))
        })
        .collect()
}

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepReport {
    /// Kind and target groups swept.
    pub groups: usize,
    /// Groups whose listing failed (or was truncated).
    pub failed: usize,
    /// Jobs the listings returned.
    pub listed: usize,
    /// Runs made due now.
    pub nudged: usize,
    /// Runs still to nudge (leased or already due).
    pub waiting: usize,
}

#[derive(Default)]
struct Group {
    /// The start of the last successful sweep.
    last_success: Option<Timestamp>,
    /// The runs that sweep saw.
    known: HashSet<Uuid>,
    /// Coverage lapsed and the group's runs were made due once.
    lapse_handled: bool,
}

pub struct Sweeper {
    store: Store,
    provider: Arc<AwsProvider>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    settings: SweepSettings,
    handle: SweepHandle,
    groups: HashMap<(Kind, TargetKey), Group>,
    /// Runs to nudge, with the listed status they have not recorded yet.
    pending: HashMap<Uuid, String>,
    /// Each followed run's target (it never changes for a run).
    keys: HashMap<Uuid, TargetKey>,
}

impl Sweeper {
    pub fn new(
        store: Store,
        provider: Arc<AwsProvider>,
        clock: Arc<dyn Clock>,
        wake: Arc<Notify>,
        settings: SweepSettings,
    ) -> Sweeper {
        Sweeper {
            handle: SweepHandle::new(&settings),
            store,
            provider,
            clock,
            wake,
            settings,
            groups: HashMap::new(),
            pending: HashMap::new(),
            keys: HashMap::new(),
        }
    }

    /// The coverage the engine reads ([`crate::engine::Engine::with_sweep`]).
    pub fn handle(&self) -> SweepHandle {
        self.handle.clone()
    }

    /// Sweeps every `interval` (the first at once) until `shutdown` turns true. In between,
    /// every sixth of the interval, a group that was never swept is swept at once: its runs'
    /// first polls are then covered already instead of after up to a whole interval.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(
            interval_ms = self.settings.interval.as_millis() as u64,
            safety_net_ms = self.settings.safety_net.as_millis() as u64,
            "List* sweeper started"
        );
        let probe = (self.settings.interval / 6).max(Duration::from_millis(1));
        let mut next_full = tokio::time::Instant::now();
        while !*shutdown.borrow() {
            let now = tokio::time::Instant::now();
            let full = now >= next_full;
            if full {
                next_full = now + self.settings.interval;
            }
            match self.sweep(!full).await {
                Ok(r) if r.nudged > 0 || r.failed > 0 => tracing::debug!(?r, "sweep"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweep: reading the followed runs failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next_full.min(now + probe)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One sweep of every kind and target with followed runs.
    pub async fn tick(&mut self) -> store::Result<SweepReport> {
        self.sweep(false).await
    }

    /// A sweep of every group, or (`only_new`) of the groups never swept before.
    async fn sweep(&mut self, only_new: bool) -> store::Result<SweepReport> {
        let now = self.clock.now();
        let kinds: Vec<Kind> = FOLLOWED.iter().map(|(k, _)| *k).collect();
        let runs = self.store.followed_runs(&kinds, SWEPT_STATE).await?;
        let ids: HashSet<Uuid> = runs.iter().map(|r| r.id).collect();
        self.keys.retain(|id, _| ids.contains(id));
        self.pending.retain(|id, _| ids.contains(id));
        let mut groups: BTreeMap<(Kind, TargetKey), Vec<&FollowedRun>> = BTreeMap::new();
        for run in &runs {
            let key = match self.keys.get(&run.id) {
                Some(k) => *k,
                None => match self.provider.target_key(
                    run.id,
                    run.connection.as_ref(),
                    run.sealed.as_deref(),
                ) {
                    Ok(k) => *self.keys.entry(run.id).or_insert(k),
                    Err(e) => {
                        tracing::debug!(run_id = %run.id, error = %e, "sweep: the run's target is unknown; it is polled");
                        continue;
                    }
                },
            };
            groups.entry((run.kind, key)).or_default().push(run);
        }
        self.groups.retain(|g, _| groups.contains_key(g));
        // Too few runs to be worth a sweep, unless already swept (see `min_runs`).
        groups.retain(|g, members| {
            let swept = self.groups.contains_key(g);
            (members.len() >= self.settings.min_runs || swept) && !(only_new && swept)
        });
        let mut report = SweepReport {
            groups: groups.len(),
            ..Default::default()
        };
        let mut lapsed: Vec<Uuid> = Vec::new();
        for ((kind, key), members) in &groups {
            let group = self.groups.entry((*kind, *key)).or_default();
            let complete = match sweep_group(&self.provider, &self.settings, *kind, members, group)
                .await
            {
                Ok((listing, complete)) => {
                    report.listed += listing.len();
                    for (id, status) in changed_runs(members, &listing) {
                        self.pending.insert(id, status);
                    }
                    complete
                }
                Err(e) => {
                    tracing::warn!(kind = %kind, target = ?key, error = %e, "sweep failed; runs are polled until a sweep succeeds again");
                    false
                }
            };
            crate::metrics::global().sweep(*kind, if complete { "ok" } else { "failed" });
            if complete {
                group.last_success = Some(now);
                group.known = members.iter().map(|r| r.id).collect();
                group.lapse_handled = false;
                self.handle.covered(*kind, *key, now);
                continue;
            }
            report.failed += 1;
            let expired = group.last_success.is_some_and(|t| {
                (now - t).to_std().unwrap_or(Duration::ZERO) > self.settings.interval * 2
            });
            if expired && !group.lapse_handled {
                // Coverage lapsed while their next describes were a safety net away: bring
                // them back to polling.
                group.lapse_handled = true;
                lapsed.extend(members.iter().map(|r| r.id));
            }
        }
        // A run whose recorded status caught up needs no nudge any more.
        let recorded: HashMap<Uuid, Option<&str>> =
            runs.iter().map(|r| (r.id, r.status.as_deref())).collect();
        self.pending.retain(|id, status| {
            recorded
                .get(id)
                .is_some_and(|r| is_news(*r, status.as_str()))
        });
        let mut due: Vec<Uuid> = self.pending.keys().copied().collect();
        due.extend(lapsed);
        due.sort();
        due.dedup();
        let made = self.store.make_due(&due, SWEPT_STATE, now).await?;
        for id in &made {
            self.pending.remove(id);
        }
        report.nudged = made.len();
        crate::metrics::global().sweep_nudges(made.len() as u64);
        report.waiting = self.pending.len();
        if !made.is_empty() {
            self.wake.notify_one();
        }
        Ok(report)
    }
}

/// With sweeping off: runs a sweep covered before (their next describe a safety net away) are
/// made due now, so that they are polled at the workflow's intervals again. Runs due within
/// `bound` (a poll or an observation backoff) keep their time.
pub async fn resume_polling(store: &Store, now: Timestamp, bound: Duration) -> store::Result<u64> {
    let kinds: Vec<Kind> = FOLLOWED.iter().map(|(k, _)| *k).collect();
    let later_than = now + chrono::Duration::from_std(bound).unwrap_or(chrono::Duration::MAX);
    store
        .make_due_after(&kinds, SWEPT_STATE, later_than, now)
        .await
}

/// One group's listing: the jobs modified since its look-back, and whether it is complete.
async fn sweep_group(
    provider: &AwsProvider,
    settings: &SweepSettings,
    kind: Kind,
    members: &[&FollowedRun],
    group: &Group,
) -> crate::aws::AwsResult<(Vec<JobSummary>, bool)> {
    let Some(job_kind) = FOLLOWED.iter().find(|(k, _)| *k == kind).map(|(_, j)| *j) else {
        return Ok((Vec::new(), false));
    };
    let first = members[0];
    let aws = provider
        .resolve(first.id, first.connection.as_ref(), first.sealed.as_deref())
        .await?
        .aws;
    let unseen = members
        .iter()
        .filter(|r| !group.known.contains(&r.id))
        .map(|r| r.updated_at)
        .min();
    let since = match (group.last_success, unseen) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(first.updated_at),
    };
    let margin = chrono::Duration::from_std(settings.margin).unwrap_or(chrono::Duration::zero());
    let listing = aws
        .list_jobs(&JobQuery {
            kind: job_kind,
            modified_after: since - margin,
            status: None,
            max_pages: settings.max_pages.max(1),
        })
        .await?;
    if listing.truncated {
        tracing::warn!(kind = %kind, pages = settings.max_pages, "sweep listing truncated; coverage lapses");
    }
    Ok((listing.items, !listing.truncated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    fn run(name: &str, status: Option<&str>) -> FollowedRun {
        FollowedRun {
            id: Uuid::now_v7(),
            kind: Kind::Training,
            job_name: name.into(),
            status: status.map(str::to_string),
            updated_at: chrono::Utc::now(),
            connection: None,
            sealed: None,
        }
    }

    fn job(name: &str, status: &str) -> JobSummary {
        JobSummary {
            name: name.into(),
            status: status.into(),
            last_modified: None,
        }
    }

    #[test]
    fn only_our_jobs_with_a_status_the_run_has_not_recorded_are_nudged() {
        let done = run("a", Some("InProgress"));
        let same = run("b", Some("InProgress"));
        let fresh = run("c", None);
        let fresh_done = run("d", None);
        let stopping = run("e", Some("Stopping"));
        let unlisted = run("f", Some("InProgress"));
        let runs = [&done, &same, &fresh, &fresh_done, &stopping, &unlisted];
        let listing = [
            job("a", "Completed"),
            job("b", "InProgress"),
            job("c", "InProgress"),
            job("d", "Failed"),
            job("e", "Stopped"),
            job("someone-elses-job", "Completed"),
        ];
        let mut got = changed_runs(&runs, &listing);
        got.sort();
        let mut want = vec![
            (done.id, "Completed".to_string()),
            (fresh_done.id, "Failed".to_string()),
            (stopping.id, "Stopped".to_string()),
        ];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn coverage_lasts_two_intervals() {
        let settings = SweepSettings {
            interval: Duration::from_secs(30),
            safety_net: Duration::from_secs(3600),
            ..Default::default()
        };
        let h = SweepHandle::new(&settings);
        let t = chrono::Utc::now();
        assert_eq!(h.swept(Kind::Training, TargetKey::DEFAULT, t), None);
        h.covered(Kind::Training, TargetKey::DEFAULT, t);
        let net = Some(Duration::from_secs(3600));
        assert_eq!(h.swept(Kind::Training, TargetKey::DEFAULT, t), net);
        let later = clock::add(t, Duration::from_secs(60));
        assert_eq!(h.swept(Kind::Training, TargetKey::DEFAULT, later), net);
        let lapsed = clock::add(t, Duration::from_secs(61));
        assert_eq!(h.swept(Kind::Training, TargetKey::DEFAULT, lapsed), None);
        assert_eq!(
            h.swept(Kind::Automl, TargetKey::DEFAULT, t),
            None,
            "each kind is covered by its own sweep"
        );
    }
}
