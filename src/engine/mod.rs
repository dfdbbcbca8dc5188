//! The engine: the only thing that advances runs.
//!
//! # Leases and fencing
//! A worker claims due runs by writing its owner id and a lease expiry, in the same statement
//! that bumps the run's version. The version it read is its fencing token: its commit is guarded
//! by `WHERE id = ? AND version = ?`, so if its lease ran out and another worker claimed the run
//! (bumping the version again), the late commit updates nothing and its result is dropped. While a
//! step runs, a heartbeat extends the lease. The owner id is unique per process start (the
//! configured worker id plus a nonce, `serve`); at start-up `serve` releases the leases of this
//! worker id's dead instances and expired ones (`Store::release_dead_leases`), never a live
//! lease, so a crash costs no lease-expiry wait and a second live process re-runs nothing.
//!
//! # Slots and group commit
//! The loop fills free worker slots (up to `max_concurrency`) with claimed runs. A slot steps its
//! run, then commits the result and claims its next due run in one operation; the store applies
//! the operations of every slot that is committing at that moment in one transaction
//! (`store::group`), so a busy engine spends a fraction of an fsync per step instead of two. A
//! slot with nothing due ends, and the loop claims again when something falls due or is woken.
//!
//! # Timers
//! Waiting for AWS is never a sleep inside a step: a step returns when the run is next due and
//! the store keeps `next_due_at`, so a crash loses no timer. The loop sleeps until the earliest due
//! run, at most `idle_max`, or until woken (a new run, a cancel request).
//!
//! # Errors
//! A step's error carries its class. Retryable errors stay in the state with exponential backoff
//! and jitter (backon), capacity errors wait longer, terminal errors fail the run; every attempt
//! is a history row, and a run that runs out of attempts is Failed with its last error.
//!
//! # No spinning
//! A step that keeps its run in the same state with an unchanged context and asks to run again
//! sooner than the workflow's shortest poll interval made no progress; the engine backs it off
//! exponentially (the retry policy's base up to its cap) and says so in `last_error` and the
//! history ([`stalled`]). A pending cancel request makes a run due now only when it arrived while
//! the step ran: a step that saw it keeps its own due time (a backoff, a poll).
//!
//! # Poll policy
//! Each workflow's `[poll]` holds unless the operator overrides it explicitly
//! (`EngineConfig::poll_min`/`poll_max`, see [`resolve_poll`]).

use crate::aws::AwsProvider;
use crate::clock::{self, Clock};
use crate::failpoint;
use crate::metrics;
use crate::model::{ErrorClass, Kind, State};
use crate::store::{
    self, ClaimRequest, ClaimedRun, Committed, Store, Transition, TransitionOutcome,
};
use crate::workflows::{
    DefinitionError, Due, PollPolicy, StepContext, StepError, StepOutput, Workflow, WorkflowDef,
};
use backon::{BackoffBuilder, ExponentialBuilder};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This worker's lease owner id.
    pub owner: String,
    pub max_concurrency: usize,
    pub lease: Duration,
    /// Longest sleep between looks at the store when nothing is due.
    pub idle_max: Duration,
    /// Overrides of every workflow's poll interval bounds; `None` keeps each workflow's own.
    pub poll_min: Option<Duration>,
    pub poll_max: Option<Duration>,
    /// Override of every workflow's first retry delay.
    pub retry_base: Option<Duration>,
    /// Override of every workflow's cap on the backoff between failed status checks
    /// (`retry.observe_max_delay_ms`).
    pub observe_max_delay: Option<Duration>,
    /// How long a graceful stop waits for running steps.
    pub drain: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            owner: "local".into(),
            max_concurrency: 16,
            lease: Duration::from_secs(60),
            idle_max: Duration::from_secs(1),
            poll_min: None,
            poll_max: None,
            retry_base: None,
            observe_max_delay: None,
            drain: Duration::from_secs(30),
        }
    }
}

struct Registered {
    handler: Arc<dyn Workflow>,
    /// The definition with the configured overrides applied.
    def: WorkflowDef,
}

pub struct Engine {
    store: Store,
    clock: Arc<dyn Clock>,
    provider: Arc<AwsProvider>,
    config: EngineConfig,
    workflows: HashMap<Kind, Registered>,
    wake: Arc<Notify>,
    /// The loop's latest iteration, for `/readyz`.
    beat: crate::beat::Beat,
    /// The List* sweeper's coverage, when sweeping is on ([`Engine::with_sweep`]).
    sweep: Option<crate::sweep::SweepHandle>,
}

/// A workflow's poll policy with the operator's overrides applied. Without an override the
/// workflow's own `[poll]` holds; an override of one bound moves the other only as far as needed
/// to keep `min <= max` (a lone max below the workflow's min lowers the min to it).
pub fn resolve_poll(own: PollPolicy, min: Option<Duration>, max: Option<Duration>) -> PollPolicy {
    let mut poll = own;
    let min = min.map(|d| d.as_millis().max(1) as u64);
    let max = max.map(|d| d.as_millis().max(1) as u64);
    if let Some(min) = min {
        poll.min_ms = min;
    }
    if let Some(max) = max {
        poll.max_ms = max;
    }
    if poll.max_ms < poll.min_ms {
        if max.is_some() && min.is_none() {
            poll.min_ms = poll.max_ms;
        } else {
            poll.max_ms = poll.min_ms;
        }
    }
    poll
}

/// The delay before retry number `attempt` (1-based): exponential from `base`, capped, with jitter.
pub fn retry_delay(base: Duration, max: Duration, attempt: u32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempt.saturating_sub(1) as usize)
        .unwrap_or(max)
}

impl Engine {
    /// Builds an engine, checking every handler against its definition.
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        provider: Arc<AwsProvider>,
        config: EngineConfig,
        handlers: Vec<Arc<dyn Workflow>>,
        defs: Vec<WorkflowDef>,
    ) -> Result<Engine, DefinitionError> {
        let mut workflows = HashMap::new();
        for handler in handlers {
            let mut def = defs
                .iter()
                .find(|d| d.kind == handler.kind())
                .cloned()
                .ok_or_else(|| DefinitionError {
                    file: format!("workflows/{}.toml", handler.kind()),
                    message: "no definition for this handler".into(),
                })?;
            def.check_handler(handler.handled_states(), handler.edges())?;
            def.poll = resolve_poll(def.poll, config.poll_min, config.poll_max);
            if let Some(base) = config.retry_base {
                def.retry.base_ms = base.as_millis().max(1) as u64;
                def.retry.max_delay_ms = def.retry.max_delay_ms.max(def.retry.base_ms);
            }
            if let Some(cap) = config.observe_max_delay {
                def.retry.observe_max_delay_ms = cap.as_millis().max(1) as u64;
            }
            def.retry.observe_max_delay_ms = def.retry.observe_max_delay_ms.max(def.retry.base_ms);
            workflows.insert(handler.kind(), Registered { handler, def });
        }
        for def in &defs {
            if !workflows.contains_key(&def.kind) {
                return Err(DefinitionError {
                    file: format!("workflows/{}.toml", def.kind),
                    message: "no handler for this workflow".into(),
                });
            }
        }
        Ok(Engine {
            store,
            clock,
            provider,
            config,
            workflows,
            wake: Arc::new(Notify::new()),
            beat: Default::default(),
            sweep: None,
        })
    }

    /// Polling steps of runs the sweeper covers describe their job only as a safety net.
    pub fn with_sweep(mut self, sweep: crate::sweep::SweepHandle) -> Engine {
        self.sweep = Some(sweep);
        self
    }

    /// The loop's heartbeat (readiness).
    pub fn beat(&self) -> crate::beat::Beat {
        self.beat.clone()
    }

    /// Wakes the loop (a run was inserted or a cancel requested).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn definitions(&self) -> Vec<&WorkflowDef> {
        let mut defs: Vec<_> = self.workflows.values().map(|r| &r.def).collect();
        defs.sort_by_key(|d| d.kind);
        defs
    }

    /// Releases leases held under this engine's own owner id (a no-op for a fresh per-start id;
    /// the leases of dead instances are released by `serve` before the engine starts).
    pub async fn recover(&self) -> store::Result<u64> {
        self.store.release_leases(&self.config.owner).await
    }

    /// Claims what is due now and runs those steps to completion. Returns how many ran.
    pub async fn tick(self: &Arc<Self>) -> store::Result<usize> {
        let claimed = self.claim(self.config.max_concurrency).await?;
        let n = claimed.len();
        let mut set = JoinSet::new();
        for c in claimed {
            let me = self.clone();
            set.spawn(async move { me.execute(c, false).await });
        }
        while let Some(r) = set.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "step task failed");
            }
        }
        Ok(n)
    }

    async fn claim(&self, limit: usize) -> store::Result<Vec<ClaimedRun>> {
        let now = self.clock.now();
        let claimed = self
            .store
            .claim_due(
                &self.config.owner,
                now,
                clock::add(now, self.config.lease),
                limit as u32,
            )
            .await?;
        note_takeovers(&claimed);
        Ok(claimed)
    }

    /// The reconciler loop: claims due runs up to the concurrency bound, runs their steps, and
    /// sleeps until the next due run. Returns after `shutdown` turns true and running steps have
    /// drained (or the drain deadline passed), with this worker's leases released.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        match self.recover().await {
            Ok(n) if n > 0 => tracing::info!(
                released = n,
                "released leases held under this engine's owner id"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "could not release old leases"),
        }
        if let Ok(n) = self.store.count_unfinished().await {
            tracing::info!(unfinished = n, owner = %self.config.owner, "engine started; resuming unfinished runs");
        }
        let mut inflight: JoinSet<()> = JoinSet::new();
        while !*shutdown.borrow() {
            self.beat.beat(self.clock.now());
            crate::failpoint::hit("engine-loop").await;
            let free = self.config.max_concurrency.saturating_sub(inflight.len());
            // A store that cannot write (disk full) fails every claim: wait `idle_max` before
            // the next one instead of spinning on the due runs it cannot claim.
            let mut claim_failed = false;
            if free > 0 {
                match self.claim(free).await {
                    Ok(claimed) => {
                        for c in claimed {
                            let me = self.clone();
                            inflight.spawn(me.run_slot(c, shutdown.clone()));
                        }
                    }
                    Err(e) => {
                        claim_failed = true;
                        if e.is_unavailable() {
                            // The store logs the streak once; this would repeat it every loop.
                            tracing::debug!(error = %e, "claiming due runs failed")
                        } else {
                            tracing::error!(error = %e, "claiming due runs failed")
                        }
                    }
                }
            }
            let full = inflight.len() >= self.config.max_concurrency;
            let sleep = if full || claim_failed {
                self.config.idle_max
            } else {
                self.until_next_due().await
            };
            tokio::select! {
                Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
                _ = self.wake.notified(), if !full => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!(
            running = inflight.len(),
            "stopping: no new claims; draining running steps"
        );
        let drained = tokio::time::timeout(self.config.drain, async {
            while inflight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                abandoned = inflight.len(),
                "drain deadline passed; abandoning steps"
            );
            inflight.abort_all();
        }
        match self.store.release_leases(&self.config.owner).await {
            Ok(n) => tracing::info!(released = n, "engine stopped"),
            Err(e) => tracing::error!(error = %e, "releasing leases failed"),
        }
    }

    async fn until_next_due(&self) -> Duration {
        let floor = Duration::from_millis(5);
        match self.store.next_due_at().await {
            Ok(Some(at)) => (at - self.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .clamp(floor, self.config.idle_max),
            Ok(None) => self.config.idle_max,
            Err(e) => {
                tracing::error!(error = %e, "reading next due time failed");
                self.config.idle_max
            }
        }
    }

    /// What a step of a claimed run works with: the AWS of its connection or its sealed
    /// credentials (read with the claim, resolved again for every step, so a restart needs
    /// nothing kept in memory).
    async fn step_context(
        &self,
        claimed: &ClaimedRun,
        reg: &Registered,
    ) -> Result<StepContext, StepError> {
        let run = &claimed.run;
        let resolved = self
            .provider
            .resolve(
                run.id,
                run.request.get("connection"),
                claimed.sealed.as_deref(),
            )
            .await?;
        let now = self.clock.now();
        Ok(StepContext {
            aws: resolved.aws,
            now,
            poll: reg.def.poll,
            secret: resolved.workflow,
            provider: self.provider.clone(),
            swept: self
                .sweep
                .as_ref()
                .and_then(|s| s.swept(run.kind, resolved.target, now)),
        })
    }

    /// One worker slot: runs claimed runs one after another. Each step's commit claims the
    /// slot's next due run in the same transaction (and that transaction is shared with the other
    /// slots' commits, see `store::group`), until nothing is due or the engine is stopping.
    async fn run_slot(self: Arc<Self>, first: ClaimedRun, stopping: watch::Receiver<bool>) {
        let mut next = Some(first);
        while let Some(claimed) = next.take() {
            let chain = !*stopping.borrow();
            next = self.clone().execute(claimed, chain).await;
        }
    }

    /// Runs one step of a claimed run and commits its result; with `chain`, claims the next due
    /// run in the same transaction and returns it.
    async fn execute(self: Arc<Self>, claimed: ClaimedRun, chain: bool) -> Option<ClaimedRun> {
        let run = &claimed.run;
        let span = tracing::info_span!(
            "step",
            run_id = %run.id,
            kind = %run.kind,
            state = %run.state,
            attempt = run.attempt,
            aws_request_id = tracing::field::Empty,
        );
        self.clone()
            .execute_in_span(claimed, chain)
            .instrument(span)
            .await
    }

    async fn execute_in_span(
        self: Arc<Self>,
        claimed: ClaimedRun,
        chain: bool,
    ) -> Option<ClaimedRun> {
        let run = &claimed.run;
        let Some(reg) = self.workflows.get(&run.kind) else {
            tracing::error!("no workflow registered for this kind");
            return None;
        };
        let heartbeat = self.clone().heartbeat(claimed.clone());
        let started = std::time::Instant::now();
        let step = tokio::time::timeout(reg.def.step_timeout(run.state), async {
            let cx = self.step_context(&claimed, reg).await?;
            reg.handler.step(run, &cx).await
        });
        let result = tokio::select! {
            r = step => r.unwrap_or_else(|_| Err(timed_out(reg.def.step_timeout(run.state)))),
            lost = heartbeat => {
                tracing::warn!(reason = %lost, "lease lost during the step; dropping its result");
                return None;
            }
        };
        metrics::global().step(run.kind, run.state, started.elapsed());
        if let Err(e) = &result
            && e.auth
        {
            // AWS refused the credentials: resolve the run's connection again before the next
            // attempt instead of retrying with the same (perhaps expired or rotated) keys.
            self.provider.forget_credentials(run);
        }
        let error_class = result.as_ref().err().map(|e| e.class);
        let now = self.clock.now();
        let transition = decide(&reg.def, run, result, now);
        failpoint::hit(&failpoint::before_commit(
            run.kind.as_str(),
            run.state.as_str(),
        ))
        .await;
        let committed = if chain {
            let next = ClaimRequest {
                owner: self.config.owner.clone(),
                now,
                lease_until: clock::add(now, self.config.lease),
                limit: 1,
            };
            self.store
                .commit_and_claim(&claimed, &transition, now, next)
                .await
        } else {
            self.store
                .commit_transition(&claimed, &transition, now)
                .await
                .map(|outcome| Committed {
                    outcome,
                    next: Vec::new(),
                })
        };
        let (outcome, next) = match committed {
            Ok(c) => (Ok(c.outcome), c.next),
            Err(e) => (Err(e), Vec::new()),
        };
        note_takeovers(&next);
        match outcome {
            Ok(TransitionOutcome::Committed { .. }) => {
                if let Some(class) = error_class {
                    let outcome = if transition.to == State::Failed {
                        "failed"
                    } else if transition.degraded {
                        "degraded"
                    } else {
                        "retried"
                    };
                    metrics::global().step_error(class, outcome);
                }
                if transition.to != run.state {
                    metrics::global().transition(run.kind, run.state, transition.to);
                    tracing::info!(to = %transition.to, detail = transition.detail.as_deref().unwrap_or(""), "transition");
                }
                if let Some((class, msg)) = &transition.error {
                    tracing::warn!(class = class.as_str(), error = %msg, attempt = transition.attempt, "step error");
                }
            }
            Ok(TransitionOutcome::Lost) => {
                tracing::warn!("another worker owns the run now; step result dropped")
            }
            Err(e) => tracing::error!(error = %e, "committing the transition failed"),
        }
        next.into_iter().next()
    }

    /// Extends the lease every third of its length; returns (ending the step) if it is lost.
    async fn heartbeat(self: Arc<Self>, claimed: ClaimedRun) -> String {
        let every = self.config.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            let until = clock::add(self.clock.now(), self.config.lease);
            match self.store.renew_lease(&claimed, until).await {
                Ok(true) => {}
                Ok(false) => return "the run's version moved on".into(),
                Err(e) => tracing::warn!(error = %e, "lease renewal failed; will retry"),
            }
        }
    }
}

/// Counts (and says) the claimed runs whose previous holder's lease had expired.
fn note_takeovers(claimed: &[ClaimedRun]) {
    let takeovers = claimed.iter().filter(|c| c.took_over).count() as u64;
    if takeovers > 0 {
        tracing::warn!(takeovers, "claimed runs whose previous lease had expired");
        metrics::global().lease_takeovers(takeovers);
    }
}

/// A step that ran out of time never learned what AWS would answer: like a status check that
/// got no answer, it is an observation, so in a state that follows a live job it backs off
/// without end instead of failing the run (elsewhere the retry budget holds).
fn timed_out(limit: Duration) -> StepError {
    StepError::new(
        ErrorClass::Retryable,
        format!("step timed out after {limit:?}"),
    )
    .observing()
}

/// Turns a step's result into the transition to commit (pure: no I/O).
pub fn decide(
    def: &WorkflowDef,
    run: &store::Run,
    result: Result<StepOutput, StepError>,
    now: clock::Timestamp,
) -> Transition {
    let due_at = |due: Due| match due {
        Due::Now => now,
        Due::After(d) => clock::add(now, d),
    };
    match result {
        Ok(out) if def.allows(run.state, out.to) => {
            if let Some(stalled) = stalled(def, run, &out, now) {
                return stalled;
            }
            let failed = out.failure.map(|m| (ErrorClass::Terminal, m));
            Transition {
                to: out.to,
                context: out.context,
                attempt: 0,
                next_due_at: (!out.to.is_terminal()).then(|| due_at(out.due)),
                record: out.record,
                detail: out.detail,
                error: failed,
                spawn: out.spawn,
                forget: out.forget,
                // Back from Cancelling to following the job: the cancel was refused (the step
                // says why), so the request is answered; a new request is a new try.
                withdraw_cancel: run.cancel_requested
                    && run.state == State::Cancelling
                    && out.to == State::Polling,
                degraded: false,
                collapse: false,
            }
        }
        Ok(out) => Transition {
            to: State::Failed,
            context: run.context.clone(),
            attempt: run.attempt,
            next_due_at: None,
            record: true,
            detail: None,
            spawn: Vec::new(),
            forget: Vec::new(),
            withdraw_cancel: false,
            degraded: false,
            collapse: false,
            error: Some((
                ErrorClass::Terminal,
                format!(
                    "internal error: the {} workflow does not declare {} -> {}",
                    run.kind, run.state, out.to
                ),
            )),
        },
        Err(e) => retry_or_fail(def, run, e, now),
    }
}

/// The no-progress guard. A step that keeps its run in the same state with the same context
/// and asks to run again sooner than the workflow's shortest poll interval has made no progress:
/// repeating it at once would spin (AWS calls and history rows in a tight loop). Instead the run
/// backs off exponentially with the workflow's retry policy (capped at `retry.max_delay_ms`),
/// `attempt` counts the re-entries, and the run's `last_error` and history say so (a history row
/// at the 1st, 2nd, 4th, 8th… re-entry). It never fails the run: the work may be live in AWS.
fn stalled(
    def: &WorkflowDef,
    run: &store::Run,
    out: &StepOutput,
    now: clock::Timestamp,
) -> Option<Transition> {
    let asked = match out.due {
        Due::Now => Duration::ZERO,
        Due::After(d) => d,
    };
    let spins = out.to == run.state
        && out.context == run.context
        && out.failure.is_none()
        && out.spawn.is_empty()
        && out.forget.is_empty()
        && asked < Duration::from_millis(def.poll.min_ms);
    if !spins {
        return None;
    }
    let reentries = run.attempt + 1;
    let backoff = retry_delay(
        Duration::from_millis(def.retry.base_ms),
        Duration::from_millis(def.retry.max_delay_ms),
        reentries.clamp(1, i64::from(u32::MAX)) as u32,
    );
    let delay = backoff.max(asked);
    let surface = (reentries as u64).is_power_of_two();
    let what = out.detail.as_deref().unwrap_or("no detail");
    Some(Transition {
        to: run.state,
        context: run.context.clone(),
        attempt: reentries,
        next_due_at: Some(clock::add(now, delay)),
        record: surface,
        detail: surface.then(|| format!("no progress; next step in {} ms", delay.as_millis())),
        error: surface.then(|| {
            (
                ErrorClass::Retryable,
                format!(
                    "no progress: {} re-entered {reentries} times without a change ({what}); \
                     backing off, at most {} ms apart",
                    run.state, def.retry.max_delay_ms
                ),
            )
        }),
        spawn: Vec::new(),
        forget: Vec::new(),
        withdraw_cancel: false,
        degraded: false,
        collapse: false,
    })
}

/// What an error does to a run. A failed status check (an observation) in a state whose job
/// may be live never fails the run ([`keep_following`]); any other error is retried within its
/// class's budget, then fails the run with the last error. An attempt that fails exactly like
/// the previous one is collapsed into the history's latest row instead of adding one.
fn retry_or_fail(
    def: &WorkflowDef,
    run: &store::Run,
    e: StepError,
    now: clock::Timestamp,
) -> Transition {
    if e.observation && def.follows_job(run.state) {
        return keep_following(def, run, e, now);
    }
    let policy = &def.retry;
    let attempt = run.attempt + 1;
    let (limit, base, max) = match e.class {
        ErrorClass::Retryable => (policy.max_attempts, policy.base_ms, policy.max_delay_ms),
        ErrorClass::Capacity => (
            policy.capacity_max_attempts,
            policy.capacity_base_ms,
            policy.capacity_max_delay_ms,
        ),
        ErrorClass::Terminal => (0, 0, 0),
    };
    if e.class == ErrorClass::Terminal || attempt > i64::from(limit) {
        let message = if e.class == ErrorClass::Terminal {
            e.message
        } else {
            format!("gave up after {} attempts: {}", attempt, e.message)
        };
        return Transition {
            to: State::Failed,
            context: run.context.clone(),
            attempt,
            next_due_at: None,
            record: true,
            detail: Some(Transition::gave_up_detail(run.state)),
            spawn: Vec::new(),
            forget: Vec::new(),
            withdraw_cancel: false,
            degraded: false,
            collapse: false,
            error: Some((e.class, message)),
        };
    }
    let delay = retry_delay(
        Duration::from_millis(base),
        Duration::from_millis(max),
        attempt as u32,
    );
    let repeat = run.attempt > 0 && run.last_error.as_deref() == Some(e.message.as_str());
    Transition {
        to: run.state,
        context: run.context.clone(),
        attempt,
        next_due_at: Some(clock::add(now, delay)),
        record: true,
        detail: Some(format!(
            "attempt {attempt} failed; retrying in {} ms",
            delay.as_millis()
        )),
        spawn: Vec::new(),
        forget: Vec::new(),
        withdraw_cancel: false,
        degraded: false,
        collapse: repeat,
        error: Some((e.class, e.message)),
    }
}

/// A status check failed while the run's job may be live (DESIGN.md invariant 4): whatever the
/// error's class (throttling, 5xx, AccessDenied, ExpiredToken, a connection-lookup outage), the
/// run stays where it is, backs off exponentially up to `retry.observe_max_delay_ms` and looks
/// again; it is marked degraded (since the first failure of the streak) until a step succeeds.
/// The history keeps the streak's first failure and one latest row (updated in place).
fn keep_following(
    def: &WorkflowDef,
    run: &store::Run,
    e: StepError,
    now: clock::Timestamp,
) -> Transition {
    let attempt = run.attempt + 1;
    // The cap holds with the jitter too: it is the longest a live job goes unobserved.
    let cap = Duration::from_millis(def.retry.observe_max_delay_ms);
    let delay = retry_delay(
        Duration::from_millis(def.retry.base_ms),
        cap,
        attempt.clamp(1, 64) as u32,
    )
    .min(cap);
    Transition {
        to: run.state,
        context: run.context.clone(),
        attempt,
        next_due_at: Some(clock::add(now, delay)),
        record: true,
        detail: Some(format!(
            "status check {attempt} failed; the job may still run, so it is followed: next \
             check in {} ms",
            delay.as_millis()
        )),
        spawn: Vec::new(),
        forget: Vec::new(),
        withdraw_cancel: false,
        degraded: true,
        collapse: run.degraded_since.is_some(),
        error: Some((e.class, e.message)),
    }
}

#[cfg(test)]
mod tests;
