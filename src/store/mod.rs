//! The durable store: runs and their history, and the few tables beside them.
//!
//! [`Store`] is the one interface the rest of the service uses; it hands each call to the
//! backend the database URL chose. SQLite ([`sqlite`]; `sqlite://path`, the default) keeps one
//! file for one host; PostgreSQL ([`postgres`]; `postgres://…`) lets several replicas share the
//! work. Every backend keeps the same promises, which the methods below state:
//! one transition is one transaction, guarded by the run's version (the fencing token) and
//! appended to its history; nothing is answered before it is durable; a live lease is never
//! taken. The SQL of each concern is in its own module (`runs`, `instances`, `idempotency`, ...).

pub mod copy;
mod group;
mod health;
mod idempotency;
mod instances;
mod owned;
mod postgres;
mod retention;
mod runs;
mod sqlite;
mod staging;
mod sweep;

pub use group::{ClaimRequest, Committed, GroupStats};
pub use health::{WriteFailure, WriteTx};
pub use idempotency::{Claim, KeyRecord, Submission, new_run_id};
pub use instances::{Instance, Released};
pub use owned::{Owned, OwnedKind};
pub use postgres::PgStore;
pub use sqlite::{MIGRATOR, SqliteStore, file_path as sqlite_file_path};
pub use staging::StagedRun;
pub use sweep::{FollowedRun, SweepTurn};

pub use runs::{
    CancelOutcome, ClaimedRun, Event, NewRun, Page, RetryOutcome, Run, RunFilter, Summary,
    Transition, TransitionOutcome,
};

use crate::clock::Timestamp;
use crate::model::{Kind, State};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid database URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("a run already uses the AWS resource name {0:?}")]
    NameTaken(String),
    #[error("the store did not answer within {0:?}")]
    Stalled(Duration),
    /// The error of a group commit (one transaction for several callers), shared by each.
    #[error("{0}")]
    Shared(Arc<Error>),
    #[error(
        "the database {0} is read-only: the service needs to write it (check the file's permissions and its file system)"
    )]
    ReadOnly(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The store: a handle (cheap to clone) on the backend the database URL chose.
#[derive(Clone, Debug)]
pub struct Store(Backend);

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// `Store` methods that hand the call to the backend, each with the promise every backend keeps.
macro_rules! delegate {
    ($( $(#[$doc:meta])* pub async fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty; )*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match &self.0 {
                        Backend::Sqlite(b) => b.$name($($arg),*).await,
                        Backend::Postgres(b) => b.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

impl Store {
    /// Opens the store at `url` (`sqlite://path`, created if missing; or `postgres://…`, a
    /// database that exists), applies pending migrations and proves it can write.
    pub async fn open(url: &str) -> Result<Store> {
        Ok(Store(match Scheme::of(url) {
            Scheme::Sqlite => Backend::Sqlite(SqliteStore::open(url).await?),
            Scheme::Postgres => Backend::Postgres(PgStore::open(url).await?),
        }))
    }

    /// Opens without migrating.
    pub async fn connect(url: &str) -> Result<Store> {
        Ok(Store(match Scheme::of(url) {
            Scheme::Sqlite => Backend::Sqlite(SqliteStore::connect(url).await?),
            Scheme::Postgres => Backend::Postgres(PgStore::connect(url).await?),
        }))
    }

    /// The name of the backend (`sqlite` or `postgres`), for logs and metrics.
    pub fn backend(&self) -> &'static str {
        match &self.0 {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Transactions the engine's writes took so far, and the writes they held (SQLite commits
    /// them in groups; PostgreSQL one transaction each).
    pub fn group_stats(&self) -> GroupStats {
        match &self.0 {
            Backend::Sqlite(b) => b.group_stats(),
            Backend::Postgres(b) => b.group_stats(),
        }
    }

    /// Wakes `wake` (the engine's) whenever another replica makes a run due now, so an idle
    /// replica takes a new run, a cancel or a retry at once (PostgreSQL's `LISTEN`/`NOTIFY`).
    /// None on SQLite: one process serves a file, and its API wakes its engine itself.
    pub fn forward_wakeups(
        &self,
        wake: Arc<tokio::sync::Notify>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        match &self.0 {
            Backend::Sqlite(_) => None,
            Backend::Postgres(b) => Some(b.forward_wakeups(wake)),
        }
    }

    pub async fn close(&self) {
        match &self.0 {
            Backend::Sqlite(b) => b.close().await,
            Backend::Postgres(b) => b.close().await,
        }
    }
}

/// `url` as logs and messages may show it: a PostgreSQL password becomes `***`.
pub fn printable_url(url: &str) -> String {
    match Scheme::of(url) {
        Scheme::Postgres => postgres::safe_url(url),
        Scheme::Sqlite => url.to_string(),
    }
}

/// Which backend a database URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Sqlite,
    Postgres,
}

impl Scheme {
    /// `postgres://` and `postgresql://` name PostgreSQL; anything else is for SQLite to accept
    /// or refuse (a bare path included, as sqlx takes it).
    pub fn of(url: &str) -> Scheme {
        let lower = url.get(..13).unwrap_or(url).to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Scheme::Postgres
        } else {
            Scheme::Sqlite
        }
    }
}

delegate! {
    /// Applies pending migrations, never racing another process that starts at the same time.
    pub async fn migrate(&self) -> Result<()>;

    /// True when the store answers a query (readiness).
    pub async fn ping(&self) -> Result<()>;

    /// Inserts a run, due now, with its first history row, in one transaction.
    pub async fn insert_run(&self, new: NewRun, now: Timestamp) -> Result<Run>;

    /// Inserts a run with its sealed credentials (see [`crate::secrets`]), in one transaction.
    pub async fn insert_run_with_secret(&self, new: NewRun, sealed: Vec<u8>, now: Timestamp) -> Result<Run>;

    /// The sealed credentials stored with a run, if any.
    pub async fn run_secret(&self, id: Uuid) -> Result<Option<Vec<u8>>>;

    /// Claims up to `limit` due, unleased (or lease-expired) runs for `owner` until
    /// `lease_until`. Claiming bumps the version, so a worker whose lease ran out can no longer
    /// commit; two claimers never get the same run. (PostgreSQL judges "due" and "expired" by
    /// the database's clock and leases for `lease_until - now` from the database's now: see
    /// [`PgStore`]'s documentation.)
    pub async fn claim_due(&self, owner: &str, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<ClaimedRun>>;

    /// Extends a held lease; false when the run is no longer ours.
    pub async fn renew_lease(&self, claimed: &ClaimedRun, lease_until: Timestamp) -> Result<bool>;

    /// Commits a step's result: guarded update of the run and (when recorded) one history row,
    /// in one transaction, answered only once it is durable. The lease is released. A pending
    /// cancel request makes the run due now.
    pub async fn commit_transition(&self, claimed: &ClaimedRun, t: &Transition, now: Timestamp) -> Result<TransitionOutcome>;

    /// [`Store::commit_transition`], then, in the same transaction, claims the next due runs
    /// for the worker slot the step frees (`next`).
    pub async fn commit_and_claim(&self, claimed: &ClaimedRun, t: &Transition, now: Timestamp, next: ClaimRequest) -> Result<Committed>;

    /// Releases every lease held by `owner` (a restart of the same worker, or a graceful stop),
    /// bumping versions so that no step of the previous holder can still commit.
    pub async fn release_leases(&self, owner: &str) -> Result<u64>;

    /// Records an operator's cancel request and makes the run due now. The engine acts on it.
    pub async fn request_cancel(&self, id: Uuid, now: Timestamp, detail: &str) -> Result<CancelOutcome>;

    /// A cancel of a Failed run whose AWS job may still be running: `target(run, failed_in)`
    /// names the state that stops the job (its Cancelling), given the state the run failed in
    /// when the engine gave up on an error there (None when the run ended by AWS's own outcome:
    /// its job surely ended). When it does, the run is re-armed there with its cancel requested,
    /// due now, in one transaction with a history row; otherwise nothing changes.
    pub async fn rearm_to_cancel(&self, id: Uuid, now: Timestamp, detail: &str, target: impl FnOnce(&Run, Option<State>) -> Option<State>) -> Result<CancelOutcome>;

    /// Re-arms a run for an operator: `target(kind, current state, state a Failed run failed in)`
    /// names the state to resume in, or refuses. The run becomes due now with attempt 0, any
    /// lease is dropped and the version bumped (fencing a step that may still be running), and
    /// the operator's action is appended to the history, all in one transaction.
    pub async fn retry_run(&self, id: Uuid, now: Timestamp, detail: &str, target: impl FnOnce(Kind, State, Option<State>) -> Option<State>) -> Result<RetryOutcome>;

    /// Deletes a finished run and its history; false when there is no such finished run.
    pub async fn delete_finished_run(&self, id: Uuid) -> Result<bool>;

    /// One run.
    pub async fn get_run(&self, id: Uuid) -> Result<Option<Run>>;

    /// Finds a run by its id or by the name of its AWS resource (e.g. the training job name).
    pub async fn find_run(&self, id_or_name: &str) -> Result<Option<Run>>;

    /// A run's history, oldest first.
    pub async fn events(&self, id: Uuid) -> Result<Vec<Event>>;

    /// Runs newest first (created_at, then id), filtered, paged by a cursor (the last run of
    /// the previous page); a page costs about `limit` rows whatever the number of stored runs.
    pub async fn list_runs(&self, f: &RunFilter) -> Result<Page>;

    /// A page of run summaries (as [`Store::list_runs`], but each run's `request` and `context`
    /// are `Value::Null`) and the counts per state of the runs of `counts_kind` and
    /// `counts_submitter` (as [`Store::count_by_state`]): the operator API's listing. `None`
    /// when the filter has a cursor (`after`) that is not a stored run of `f.submitted_by`
    /// (when given).
    pub async fn list_run_summaries_with_counts(&self, f: &RunFilter, counts_kind: Option<Kind>, counts_submitter: Option<&str>) -> Result<Option<(Page<Summary>, Vec<(State, i64)>)>>;

    /// How many runs are in each state (of one kind, or all; of one submitter, or all), from
    /// counts kept with every write (never a scan of the runs).
    pub async fn count_by_state(&self, kind: Option<Kind>, submitted_by: Option<&str>) -> Result<Vec<(State, i64)>>;

    /// Every endpoint named by a deployment or teardown run, with its newest such run, newest
    /// first.
    pub async fn endpoints_with_latest_run(&self) -> Result<Vec<(String, Run)>>;

    /// The newest run of `kind` for an endpoint (deployments and teardowns name it in their
    /// request).
    pub async fn latest_run_for_endpoint(&self, kind: Kind, endpoint: &str) -> Result<Option<Uuid>>;

    /// How many runs there are of each kind in each state (metrics), from the kept counts.
    pub async fn count_by_kind_state(&self) -> Result<Vec<(Kind, State, i64)>>;

    /// When the oldest unfinished run was created (metrics).
    pub async fn oldest_unfinished(&self) -> Result<Option<Timestamp>>;

    /// When the next run falls due (or its lease ends), for the engine's sleep (on this host's
    /// clock also where due times are on the database's).
    pub async fn next_due_at(&self) -> Result<Option<Timestamp>>;

    /// How many unfinished runs are degraded (their status checks failing), by kind (metrics).
    pub async fn count_degraded(&self) -> Result<Vec<(Kind, i64)>>;

    /// Counts of non-terminal runs (for start-up logging).
    pub async fn count_unfinished(&self) -> Result<i64>;

    /// Why writes are failing, while they are: a failure within
    /// [`health::QUIET_AFTER_FAILURE`] (SQLite) or [`health::PG_QUIET_AFTER_FAILURE`]
    /// (PostgreSQL), or an older streak that a probe write cannot end yet.
    pub async fn write_failure(&self, now: Timestamp) -> Option<WriteFailure>;

    /// Commits one small write, to prove the store can write (readiness, start-up).
    pub async fn probe_write(&self, now: Timestamp) -> Result<()>;

    /// The caller's unexpired record of `key`.
    pub async fn idempotency_key(&self, principal: &str, key: &str, expired_before: Timestamp) -> Result<Option<KeyRecord>>;

    /// Records the first reply to the request that stored `run_id` under the caller's key.
    pub async fn save_idempotent_reply(&self, principal: &str, key: &str, run_id: &str, reply: (u16, &str, &[u8])) -> Result<()>;

    /// Records this process as a live instance.
    pub async fn register_instance(&self, me: &Instance, now: Timestamp) -> Result<()>;

    /// Beats this instance's heart; false when its row is gone (another process found it dead
    /// and released its leases: the caller registers again).
    pub async fn heartbeat_instance(&self, me: &Instance, now: Timestamp) -> Result<bool>;

    /// Forgets this instance at a graceful stop (after its leases were released).
    pub async fn remove_instance(&self, me: &Instance) -> Result<()>;

    /// Start-up recovery for `me`: releases the leases of `me.worker_id`'s dead instances and
    /// every expired lease, bumping versions, in one transaction. A live lease is never touched.
    pub async fn release_dead_leases(&self, me: &Instance, now: Timestamp) -> Result<Released>;

    /// Records (or refreshes) a resource before it is created.
    pub async fn record_owned(&self, kind: OwnedKind, name: &str, spec: &Value, now: Timestamp) -> Result<()>;

    /// Forgets a registered resource (it was deleted).
    pub async fn forget_owned(&self, kind: OwnedKind, name: &str) -> Result<()>;

    /// Whether a resource was registered here.
    pub async fn is_owned(&self, kind: OwnedKind, name: &str) -> Result<bool>;

    /// Registered resources of a kind, newest first.
    pub async fn list_owned(&self, kind: OwnedKind) -> Result<Vec<Owned>>;

    /// The registered endpoint configs whose variants use `model`.
    pub async fn configs_using_model(&self, model: &str) -> Result<Vec<String>>;

    /// Deletes the history rows of runs finished before `cutoff`, except each run's last row,
    /// in one bounded batch; returns how many it deleted (0: nothing left to prune).
    pub async fn prune_history_batch(&self, cutoff: Timestamp) -> Result<u64>;

    /// Prunes every finished run's history older than `cutoff`, batch by batch.
    pub async fn prune_history(&self, cutoff: Timestamp) -> Result<u64>;

    /// Runs of the staging kinds that are unfinished or were updated since `since`, newest
    /// first (at most `limit`), without a connection reference (their AWS is the service's own).
    pub async fn recent_staging_runs(&self, since: Timestamp, limit: i64) -> Result<Vec<StagedRun>>;

    /// Finished runs of the staging kinds last updated before `cutoff` whose staged data was
    /// not deleted yet, oldest first (at most `limit`).
    pub async fn runs_past_retention(&self, cutoff: Timestamp, limit: i64) -> Result<Vec<StagedRun>>;

    /// Records that a run's staged data was deleted (repeating it is harmless).
    pub async fn record_staging_purge(&self, run_id: &str, detail: &str, now: Timestamp) -> Result<()>;

    /// When a run's staged data was deleted, and what was deleted.
    pub async fn staging_purge(&self, run_id: &str) -> Result<Option<(String, String)>>;

    /// The runs of `kinds` in `state` (the state that follows a live job), for the sweep.
    pub async fn followed_runs(&self, kinds: &[Kind], state: State) -> Result<Vec<FollowedRun>>;

    /// Makes the runs of `kinds` in `state` that are due later than `later_than` due at `now`
    /// (not leased ones). Returns how many.
    pub async fn make_due_after(&self, kinds: &[Kind], state: State, later_than: Timestamp, now: Timestamp) -> Result<u64>;

    /// Makes the runs `ids` due at `now` when they are still in `state`, not due yet and not
    /// leased (a leased run is being stepped; the caller tries it again later). Returns the ids
    /// it made due, without bumping their version (nobody holds them; the next claim bumps it).
    pub async fn make_due(&self, ids: &[Uuid], state: State, now: Timestamp) -> Result<Vec<Uuid>>;

    /// Takes the List* sweep of `kind` and `target` (a digest, never credentials) for
    /// `holder` for `hold`, when its last successful sweep started `every` or longer ago (or
    /// never) and nobody else holds it; `None` when it is not this process's turn. Processes
    /// sharing a database thereby sweep each kind and target once per interval between them.
    pub async fn take_sweep(&self, kind: Kind, target: &str, holder: &str, now: Timestamp, every: Duration, hold: Duration) -> Result<Option<SweepTurn>>;

    /// Lets go of a sweep `holder` took, recording `success` (its start) as the last success.
    pub async fn finish_sweep(&self, kind: Kind, target: &str, holder: &str, success: Option<Timestamp>) -> Result<()>;

    /// How long ago the last successful sweep of each kind and target started (the coverage
    /// every engine reads).
    pub async fn sweep_ages(&self, now: Timestamp) -> Result<Vec<(Kind, String, Duration)>>;
}

#[cfg(test)]
mod tests;
