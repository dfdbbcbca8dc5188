//! Group commit: the engine's writes share transactions, and so share fsyncs.
//!
//! With `synchronous=FULL` every commit waits for the disk, and one transaction per claim plus
//! one per transition spent two fsyncs on every step. Here the engine's writes — a step's
//! transition, a claim of due runs, and the common pair "commit this step, claim the slot's next
//! run" — are queued to one task that owns them. It takes whatever has queued up while the
//! previous transaction was being made durable (at most [`MAX_BATCH`]) and applies it in one
//! `BEGIN IMMEDIATE` transaction:
//!
//! - one that fails (a corrupt row, a constraint) is answered with its error while the others
//!   go on: the batch is first applied without savepoints (two statements fewer per
//!   operation; operations almost never fail), and if one fails that transaction is rolled back
//!   and the batch applied again with each operation in its own savepoint, rolled back alone;
//! - each transition still guarded by its run's version (DESIGN.md invariant 2): a lost lease
//!   updates nothing and is answered `Lost`, whatever else the batch holds;
//! - transitions before claims, so a run a step just made due again can be claimed in the same
//!   transaction;
//! - nobody is answered before `COMMIT` has returned, that is before the batch is durable. A
//!   crash before that point loses the whole batch and nothing anyone acted on; a failed commit
//!   answers every operation of the batch with its error.
//!
//! The queue is as long as the number of waiting callers (each waits for its answer), so it needs
//! no bound of its own. Writes outside the engine (API inserts, operator actions) keep their own
//! transactions on the same single writer connection.

use super::health::{WriteHealth, WriteTx};
use super::runs::{
    ClaimedRun, Transition, TransitionOutcome, claim_in, commit_in, commit_many_in, is_plain_poll,
};
use super::{Error, Result};
use crate::clock::Timestamp;
use crate::failpoint;
use sqlx::SqlitePool;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// The most operations one transaction takes.
pub const MAX_BATCH: usize = 512;

/// Due runs to claim for `owner`, leased until `lease_until`.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    pub owner: String,
    pub now: Timestamp,
    pub lease_until: Timestamp,
    pub limit: u32,
}

/// A committed (or lost) transition and the runs claimed in the same transaction.
#[derive(Debug)]
pub struct Committed {
    pub outcome: TransitionOutcome,
    pub next: Vec<ClaimedRun>,
}

enum Op {
    Commit(Box<CommitOp>),
    Claim {
        request: ClaimRequest,
        reply: oneshot::Sender<Result<Vec<ClaimedRun>>>,
    },
}

struct CommitOp {
    claimed: ClaimedRun,
    transition: Transition,
    now: Timestamp,
    next: Option<ClaimRequest>,
    reply: oneshot::Sender<Result<Committed>>,
}

/// An operation's result, held until its batch is durable.
enum Outcome {
    Commit(Result<Committed>),
    Claim(Result<Vec<ClaimedRun>>),
}

impl Outcome {
    fn failed(&self) -> bool {
        match self {
            Outcome::Commit(r) => r.is_err(),
            Outcome::Claim(r) => r.is_err(),
        }
    }
}

impl Op {
    /// Answers with the operation's result, once its batch is durable. (A caller that went away,
    /// its step abandoned, needs no answer.)
    fn answer(self, outcome: Outcome) {
        match (self, outcome) {
            (Op::Commit(op), Outcome::Commit(r)) => drop(op.reply.send(r)),
            (Op::Claim { reply, .. }, Outcome::Claim(r)) => drop(reply.send(r)),
            // (`apply` gives each operation its own kind of outcome.)
            (op, _) => op.fail(&Arc::new(stopped())),
        }
    }

    fn fail(self, e: &Arc<Error>) {
        match self {
            Op::Commit(op) => drop(op.reply.send(Err(Error::Shared(e.clone())))),
            Op::Claim { reply, .. } => drop(reply.send(Err(Error::Shared(e.clone())))),
        }
    }

    /// The due runs this operation asks for, if any.
    fn claim_request(&self) -> Option<&ClaimRequest> {
        match self {
            Op::Commit(op) => op.next.as_ref(),
            Op::Claim { request, .. } => Some(request),
        }
    }

    /// Applies this operation alone (in its savepoint: [`apply_each`]).
    async fn apply(&self, tx: &mut sqlx::SqliteConnection) -> Outcome {
        match self {
            Op::Commit(op) => Outcome::Commit(
                commit_one(tx, &op.claimed, &op.transition, op.now, op.next.as_ref()).await,
            ),
            Op::Claim { request, .. } => Outcome::Claim(claim_in(tx, request).await),
        }
    }
}

/// The handle the store keeps; the task ends when the last handle is dropped.
#[derive(Clone, Debug)]
pub(super) struct GroupCommit {
    queue: mpsc::UnboundedSender<Op>,
    stats: Arc<Stats>,
}

/// How the group commit has gone so far (tests, benchmarks).
#[derive(Debug, Default)]
pub(super) struct Stats {
    /// Operations sent and not yet taken into a batch.
    queued: AtomicU64,
    /// Transactions attempted, and the operations they held.
    batches: AtomicU64,
    ops: AtomicU64,
}

/// Transactions the group commit has made, and the operations they held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupStats {
    pub transactions: u64,
    pub operations: u64,
}

impl GroupCommit {
    /// Starts the committing task on the writer pool.
    pub(super) fn start(writer: SqlitePool, health: Arc<WriteHealth>) -> GroupCommit {
        let (queue, ops) = mpsc::unbounded_channel();
        let stats = Arc::new(Stats::default());
        tokio::spawn(run(writer, health, ops, stats.clone()));
        GroupCommit { queue, stats }
    }

    pub(super) fn stats(&self) -> GroupStats {
        GroupStats {
            transactions: self.stats.batches.load(Ordering::Relaxed),
            operations: self.stats.ops.load(Ordering::Relaxed),
        }
    }

    /// Operations waiting to be taken into a transaction.
    #[cfg(test)]
    pub(super) fn queued(&self) -> u64 {
        self.stats.queued.load(Ordering::SeqCst)
    }

    pub(super) async fn commit(
        &self,
        claimed: ClaimedRun,
        transition: Transition,
        now: Timestamp,
        next: Option<ClaimRequest>,
    ) -> Result<Committed> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Commit(Box::new(CommitOp {
            claimed,
            transition,
            now,
            next,
            reply,
        })))?;
        answer.await.map_err(|_| stopped())?
    }

    pub(super) async fn claim(&self, request: ClaimRequest) -> Result<Vec<ClaimedRun>> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Claim { request, reply })?;
        answer.await.map_err(|_| stopped())?
    }

    fn send(&self, op: Op) -> Result<()> {
        self.stats.queued.fetch_add(1, Ordering::SeqCst);
        self.queue.send(op).map_err(|_| {
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            stopped()
        })
    }
}

fn stopped() -> Error {
    Error::Database(sqlx::Error::PoolClosed)
}

async fn run(
    writer: SqlitePool,
    health: Arc<WriteHealth>,
    mut ops: mpsc::UnboundedReceiver<Op>,
    stats: Arc<Stats>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while ops.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let n = batch.len() as u64;
        stats.queued.fetch_sub(n, Ordering::SeqCst);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.ops.fetch_add(n, Ordering::Relaxed);
        // Transitions first: a run one of them makes due can be claimed by a claim below.
        batch.sort_by_key(|op| matches!(op, Op::Claim { .. }));
        apply(&writer, &health, std::mem::take(&mut batch)).await;
    }
}

async fn apply(writer: &SqlitePool, health: &Arc<WriteHealth>, batch: Vec<Op>) {
    let holds_transition = batch.iter().any(|op| matches!(op, Op::Commit(_)));
    // First without savepoints (two statements fewer per operation): operations almost never
    // fail. If one does, nothing of this transaction is kept: it is rolled back and the batch is
    // applied again with a savepoint around each operation, which answers the failed one alone.
    // Nobody is answered before a commit, so the first try leaves no trace.
    let applied = async {
        let mut tx = super::health::begin_on(writer, health).await?;
        if let Some(results) = apply_all(&mut tx, &batch).await {
            return Ok((tx, results));
        }
        drop(tx.rollback().await);
        let mut tx = super::health::begin_on(writer, health).await?;
        match apply_each(&mut tx, &batch).await {
            Ok(results) => Ok((tx, results)),
            Err(e) => {
                health.failed(&e);
                Err(e)
            }
        }
    };
    let (tx, results) = match applied.await {
        Ok(applied) => applied,
        Err(e) => {
            let e = Arc::new(e);
            for op in batch {
                op.fail(&e);
            }
            return;
        }
    };
    // (Only batches that hold a step's transition: the crash tests stop there, not at a claim.)
    if holds_transition {
        failpoint::hit("store.group.before_commit").await;
    }
    match tx.commit().await {
        Ok(()) => {
            if holds_transition {
                failpoint::hit("store.group.after_commit").await;
            }
            for (op, outcome) in batch.into_iter().zip(results) {
                op.answer(outcome);
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for op in batch {
                op.fail(&e);
            }
        }
    }
}

/// Applies the whole batch; None as soon as one operation fails (the caller rolls the
/// transaction back). Every transition first — the plain polls, most of an engine's steps,
/// together in two statements ([`commit_many_in`]), the others one by one — then the claims:
/// those of one owner (the engine's slots) are taken together, one claim for the sum of their
/// limits, and shared out in the order the operations came, each up to its own limit — two
/// statements for the batch's claims instead of two per operation. The shared claim takes what is due by the latest `now` among
/// them (the transaction runs after every one of those instants, so each such run is due when
/// it is claimed, and a run a step of this batch made due at once is claimed at once), and
/// leases until the earliest expiry among them (nobody gets a longer lease than it asked for).
async fn apply_all(tx: &mut WriteTx, batch: &[Op]) -> Option<Vec<Outcome>> {
    // The plain polls all together (two statements), then the other transitions one by one.
    let polls: Vec<(usize, (&ClaimedRun, &Transition, Timestamp))> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Commit(op) if is_plain_poll(&op.claimed, &op.transition) => {
                Some((i, (&op.claimed, &op.transition, op.now)))
            }
            _ => None,
        })
        .collect();
    let polled = commit_many_in(tx, &polls.iter().map(|(_, p)| *p).collect::<Vec<_>>())
        .await
        .ok()?;
    // Each plain poll's outcome at its operation's place in the batch.
    let mut polled_at: Vec<Option<TransitionOutcome>> = (0..batch.len()).map(|_| None).collect();
    for ((i, _), outcome) in polls.iter().zip(polled) {
        polled_at[*i] = Some(outcome);
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for (i, op) in batch.iter().enumerate() {
        outcomes.push(match op {
            Op::Commit(op) => {
                let outcome = match polled_at[i].take() {
                    Some(outcome) => outcome,
                    None => commit_in(tx, &op.claimed, &op.transition, op.now)
                        .await
                        .ok()?,
                };
                Outcome::Commit(Ok(Committed {
                    outcome,
                    next: Vec::new(),
                }))
            }
            Op::Claim { .. } => Outcome::Claim(Ok(Vec::new())),
        });
    }
    let requests: Vec<(usize, &ClaimRequest)> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, op)| op.claim_request().map(|r| (i, r)))
        .collect();
    let mut owners: Vec<&str> = requests.iter().map(|(_, r)| r.owner.as_str()).collect();
    owners.sort_unstable();
    owners.dedup();
    for owner in owners {
        let mine: Vec<&(usize, &ClaimRequest)> =
            requests.iter().filter(|(_, r)| r.owner == owner).collect();
        let shared = ClaimRequest {
            owner: owner.to_string(),
            now: mine.iter().map(|(_, r)| r.now).max()?,
            lease_until: mine.iter().map(|(_, r)| r.lease_until).min()?,
            limit: mine.iter().map(|(_, r)| r.limit).sum(),
        };
        let mut claimed = claim_in(tx, &shared).await.ok()?.into_iter();
        for (i, request) in mine {
            let share: Vec<ClaimedRun> = claimed.by_ref().take(request.limit as usize).collect();
            match &mut outcomes[*i] {
                Outcome::Commit(Ok(committed)) => committed.next = share,
                Outcome::Claim(Ok(runs)) => *runs = share,
                _ => return None,
            }
        }
    }
    Some(outcomes)
}

/// Applies every operation of the batch in a savepoint of its own, so that one that fails is
/// rolled back alone and answered with its error. An error here (the savepoint itself failed,
/// e.g. SQLite rolled the whole transaction back on a full disk) breaks the whole batch.
async fn apply_each(tx: &mut WriteTx, batch: &[Op]) -> Result<Vec<Outcome>> {
    let mut results = Vec::with_capacity(batch.len());
    for op in batch {
        sqlx::query("SAVEPOINT op").execute(&mut **tx).await?;
        let outcome = op.apply(tx).await;
        if outcome.failed() {
            sqlx::query("ROLLBACK TO op").execute(&mut **tx).await?;
        }
        sqlx::query("RELEASE op").execute(&mut **tx).await?;
        results.push(outcome);
    }
    Ok(results)
}

async fn commit_one(
    tx: &mut sqlx::SqliteConnection,
    claimed: &ClaimedRun,
    transition: &Transition,
    now: Timestamp,
    next: Option<&ClaimRequest>,
) -> Result<Committed> {
    let outcome = commit_in(tx, claimed, transition, now).await?;
    let next = match next {
        Some(request) => claim_in(tx, request).await?,
        None => Vec::new(),
    };
    Ok(Committed { outcome, next })
}
