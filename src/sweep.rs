//! The List* sweeper: one paged List*Jobs call per job kind and AWS target per interval instead
//! of a Describe per running job per poll (DESIGN.md invariant 6).
//!
//! # What a sweep does
//! Every `interval`, for each kind of run that follows a SageMaker job in `Polling` (training,
//! AutoML, transform; script runs follow a processing job) and for each AWS target those runs
//! talk to (the default chain, a connection, sealed per-run credentials: [`TargetKey`]), one
//! process lists the jobs of that kind modified after the previous successful sweep of that
//! group began (less a margin for clock skew). A listed job that belongs to one of our runs (by
//! its job name) and whose status differs from the status the run last recorded makes that run
//! due now ([`Store::make_due`]), and the engine is woken: its Polling step describes the job
//! as before and takes it from there. So only the jobs whose status changed are described.
//!
//! # What a sweep never does
//! It never finds or adopts a job (DESIGN.md invariant 1: Submitted describes by name), never
//! moves a run itself, and never fails one. It only nudges runs already in `Polling`.
//!
//! # One sweep per interval, whatever the number of processes
//! Processes sharing a database (replicas on PostgreSQL) take turns through its `sweeps` table,
//! one row per kind and target ([`TargetKey::stored`]: a digest, never credentials). Every
//! sixth of the interval each process tries to take each group's sweep
//! ([`Store::take_sweep`]): a conditional write that succeeds only when the group's last
//! successful sweep started at least nine tenths of an interval ago (or never) and no process
//! holds it (a hold lasts an interval: a holder that died is passed over then). The process
//! that took it lists, nudges, and records the start of its sweep as the group's last success
//! and lets go ([`Store::finish_sweep`]); a failed sweep keeps its hold to its end, so a
//! failing List is tried once per interval, as by a lone process. So each group costs one listing per interval between all
//! the replicas, and a lone process sweeps every interval as before.
//!
//! # Nothing is missed
//! The look-back of a group reaches the start of its previous successful sweep (by whichever
//! process, read from the database when the sweep is taken), and for a run this process has
//! not seen in that group's sweeps before (new in Polling, runs another replica swept so far,
//! or every run after a restart) back to the run's own `updated_at`: its last describe was
//! before that, so any change since is listed. A run a nudge could not take (it was leased or
//! already due) is kept in the memory of the process that listed the change, which nudges it
//! again every sixth of an interval until its recorded status matches.
//!
//! A kind and target is swept once it has `min_runs` runs (2 by default: for a lone run,
//! polling costs fewer calls than a List per interval), then until it has none.
//!
//! # Coverage
//! While the last sweep of a run's kind and target succeeded within two intervals (by any
//! process: every process reads the groups' last successes from the database every sixth of an
//! interval and keeps them for its engine), the engine gives that run's steps the safety-net
//! interval ([`SweepHandle::swept`]): a Polling step that sees the job still running describes
//! it again only after that. When sweeps fail (throttled, no permission for List*, a truncated
//! listing), coverage lapses, the sweeper makes the group's runs due once, and their steps go
//! back to the workflow's growing poll interval.

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

    /// Records that a sweep of `kind` and `target` that started at `at` succeeded (an earlier
    /// one than already known changes nothing).
    fn covered(&self, kind: Kind, target: TargetKey, at: Timestamp) {
        let mut last = self.inner.last.lock().expect("sweep coverage lock");
        let entry = last.entry((kind, target)).or_insert(at);
        *entry = (*entry).max(at);
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
    /// Kind and target groups this process swept (the others were not its turn).
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
    /// The runs this process's last successful sweep of the group saw.
    known: HashSet<Uuid>,
    /// Coverage lapsed and the group's runs were made due once.
    lapse_handled: bool,
}

/// A group's sweep may be taken once its last successful one started this much of an interval
/// ago: a process trying every sixth of an interval then takes it every interval (its tries
/// fall a whole interval after its previous take, give or take a little), and several
/// processes between them about once per interval.
const TURN_AFTER: f64 = 0.9;

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
    /// Who takes sweeps in the `sweeps` table (this process's lease owner id).
    holder: String,
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
            holder: format!("sweeper#{}", &Uuid::new_v4().simple().to_string()[..8]),
        }
    }

    /// Takes sweeps as `holder` (the process's lease owner id, for whoever looks at the
    /// `sweeps` table) instead of a random name.
    pub fn with_holder(mut self, holder: &str) -> Sweeper {
        self.holder = holder.to_string();
        self
    }

    /// The coverage the engine reads ([`crate::engine::Engine::with_sweep`]).
    pub fn handle(&self) -> SweepHandle {
        self.handle.clone()
    }

    /// Tries every sixth of the interval (the first at once) until `shutdown` turns true: each
    /// group is swept when its turn has come (see the module documentation), by this process
    /// or another, and a group that was never swept is swept at the first try, so its runs'
    /// first polls are covered already.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(
            interval_ms = self.settings.interval.as_millis() as u64,
            safety_net_ms = self.settings.safety_net.as_millis() as u64,
            holder = %self.holder,
            "List* sweeper started"
        );
        let probe = (self.settings.interval / 6).max(Duration::from_millis(1));
        let mut next = tokio::time::Instant::now();
        while !*shutdown.borrow() {
            match self.sweep().await {
                Ok(r) if r.nudged > 0 || r.failed > 0 => tracing::debug!(?r, "sweep"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweep: reading the followed runs failed"),
            }
            // On a fixed grid, so that the tries fall a whole interval after a take.
            next += probe;
            let now = tokio::time::Instant::now();
            if next < now {
                next = now;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One pass: every kind and target with followed runs whose turn has come is swept.
    pub async fn tick(&mut self) -> store::Result<SweepReport> {
        self.sweep().await
    }

    /// One pass over the groups.
    async fn sweep(&mut self) -> store::Result<SweepReport> {
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
        // Every process's sweeps so far: the coverage this process's engine reads.
        let ages: HashMap<(Kind, String), Duration> = self
            .store
            .sweep_ages(now)
            .await?
            .into_iter()
            .map(|(kind, target, age)| ((kind, target), age))
            .collect();
        let age_of = |kind: Kind, key: &TargetKey| ages.get(&(kind, key.stored())).copied();
        for (kind, key) in groups.keys() {
            if let Some(age) = age_of(*kind, key) {
                let at = now - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
                self.handle.covered(*kind, *key, at);
            }
        }
        let lapse_after = self.settings.interval * 2;
        self.groups.retain(|g, _| groups.contains_key(g));
        // Too few runs to be worth a sweep, unless being swept (see `min_runs`).
        groups.retain(|(kind, key), members| {
            members.len() >= self.settings.min_runs
                || self.groups.contains_key(&(*kind, *key))
                || age_of(*kind, key).is_some_and(|age| age <= lapse_after)
        });
        let mut report = SweepReport::default();
        let every = self.settings.interval.mul_f64(TURN_AFTER);
        let mut lapsed: Vec<Uuid> = Vec::new();
        for ((kind, key), members) in &groups {
            let group = self.groups.entry((*kind, *key)).or_default();
            let target = key.stored();
            // (Swept too recently, as just read: no write to find that out again.)
            let early = age_of(*kind, key).is_some_and(|age| age < every);
            let turn = if early {
                None
            } else {
                self.store
                    .take_sweep(
                        *kind,
                        &target,
                        &self.holder,
                        now,
                        every,
                        self.settings.interval,
                    )
                    .await?
            };
            let complete = match turn {
                None => None,
                Some(turn) => {
                    report.groups += 1;
                    let listed =
                        sweep_group(&self.provider, &self.settings, *kind, members, group, turn)
                            .await;
                    let complete = match listed {
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
                    // A failed sweep keeps its hold until it ends (an interval): a failing
                    // List is tried once per interval, not at every try of every process.
                    if complete {
                        self.store
                            .finish_sweep(*kind, &target, &self.holder, Some(turn.started))
                            .await?;
                    }
                    crate::metrics::global().sweep(*kind, if complete { "ok" } else { "failed" });
                    Some(complete)
                }
            };
            if complete == Some(true) {
                group.known = members.iter().map(|r| r.id).collect();
                group.lapse_handled = false;
                self.handle.covered(*kind, *key, now);
                continue;
            }
            if complete == Some(false) {
                report.failed += 1;
            }
            let expired = age_of(*kind, key).is_some_and(|age| age > lapse_after);
            if expired && !group.lapse_handled {
                // Coverage lapsed while their next describes were a safety net away: bring
                // them back to polling.
                group.lapse_handled = true;
                lapsed.extend(members.iter().map(|r| r.id));
            } else if !expired && complete.is_none() {
                // Another process sweeps the group again.
                group.lapse_handled = false;
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
    turn: store::SweepTurn,
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
    let since = match (turn.previous, unseen) {
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
