//! The durable store on PostgreSQL, for several replicas sharing one database (issue #12).
//!
//! [`PgStore`] has every public method of the SQLite [`Store`](super::Store), with the same
//! name, parameters, return type and guarantees, on the schema of `migrations/postgres/`. What
//! SQLite needed and PostgreSQL does not is left out: no single writer connection and no
//! `BEGIN IMMEDIATE` (PostgreSQL locks rows, and commits concurrent transactions on its own, so
//! there is no group commit either: each engine write is its own transaction), no JSON-row
//! listing (rows come back as rows). What several writers need instead:
//!
//! - a transition is one transaction whose `UPDATE` is guarded by the run's version and lease
//!   owner (DESIGN.md invariants 2 and 3), and every read-then-write of a run (cancel, retry)
//!   locks the run first (`FOR UPDATE`);
//! - a claim locks the due runs it takes with `FOR UPDATE SKIP LOCKED`, so that replicas
//!   claiming at the same moment take disjoint runs and never wait for each other;
//! - migrations run under sqlx's advisory lock (`pg_advisory_lock`), on a connection of their
//!   own that is closed afterwards, so replicas starting at once apply them once, and a failed
//!   migration cannot leave the lock held by a pooled connection.
//!
//! # Whose clock
//! Leases and due times are on the database's clock, not the replica's: replica hosts' clocks
//! drift apart, and a replica whose clock ran ahead would otherwise take a lease that is still
//! live, or claim a run before it is due. So every lease expiry and every "is it due", "has the
//! lease expired", "is that instance silent" is computed in SQL against `statement_timestamp()`
//! (the start of the statement, on the server):
//! - a claim (batch or commit-and-claim) leases until db now + the lease's duration
//!   (`lease_until - now` of the request), and takes runs with `next_due_at <= db now` whose
//!   lease is unset or `lease_until <= db now`;
//! - a renewal leases until db now + (`lease_until` − this host's [`SystemClock`] now): the
//!   duration, measured on the clock the engine used to compute `lease_until`;
//! - a due time a transition writes is db now + (`next_due_at` − the transition's `now`), so
//!   a poll in 60 s is 60 s on the database's clock; a run made due "now" (a new run, a cancel,
//!   a retry, a sweep's nudge) is due at the earlier of the caller's now and db now;
//! - an instance's heartbeat is db now, and it is silent once `heartbeat_at + lease <= db now`;
//! - [`PgStore::next_due_at`] answers on this host's clock (db due time − db now + local now),
//!   so the engine's sleep is right whatever the skew.
//!
//! Display times (`created_at`, `updated_at`, a history row's `at`, `degraded_since`) stay the
//! caller's `now`. All times are truncated to the microsecond (PostgreSQL's precision, and what
//! the SQLite store's text form keeps) before they are bound.
//!
//! [`SystemClock`]: crate::clock::SystemClock

/// The columns every run query returns, as [`runs::run_from_row`] reads them (JSON as text).
macro_rules! run_columns {
    () => {
        "id, kind, state, request::text AS request, context::text AS context, resource_name, \
         attempt, version, next_due_at, lease_owner, lease_until, cancel_requested, last_error, \
         submitted_by, created_at, updated_at, degraded_since"
    };
}

/// [`run_columns!`] without the request and the context (NULL: read as `Value::Null`), for the
/// listing: a deployment or a teardown, which has no resource name of its own, is named by the
/// endpoint it changes.
macro_rules! summary_columns {
    () => {
        "id, kind, state, NULL::text AS request, NULL::text AS context, \
         COALESCE(resource_name, CASE WHEN kind IN ('deployment', 'teardown') \
         THEN request ->> 'endpoint_name' END) AS resource_name, \
         attempt, version, next_due_at, lease_owner, lease_until, cancel_requested, last_error, \
         submitted_by, created_at, updated_at, degraded_since"
    };
}

mod misc;
mod queries;
mod runs;
#[cfg(test)]
pub(super) mod tests;

use super::health::{PG_QUIET_AFTER_FAILURE, WriteHealth};
use super::{Error, GroupStats, Result, WriteFailure};
use crate::clock::Timestamp;
use chrono::SubsecRound;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres};
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The PostgreSQL migrations (a directory of their own: `sqlx::migrate!("./migrations")` reads
/// only the files of its directory, not its subdirectories, so SQLite never sees these).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a caller waits for a pooled connection before the store counts as unavailable
/// (the SQLite store's write wait): well under the request timeout.
const ACQUIRE_WAIT: Duration = Duration::from_secs(5);

/// Connections per process. Reads and writes share them (PostgreSQL's readers never block
/// its writers); a few replicas stay far below the server's usual `max_connections` (100).
const MAX_CONNECTIONS: u32 = 10;

/// How long the readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    health: Arc<WriteHealth>,
    stats: Arc<Stats>,
}

/// The engine's writes so far (as [`GroupStats`]: here each is its own transaction).
#[derive(Debug, Default)]
struct Stats {
    transactions: AtomicU64,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://…`) and applies pending migrations, then
    /// proves that the database takes writes (a read-only standby is refused at start-up).
    pub async fn open(url: &str) -> Result<PgStore> {
        let store = Self::connect(url).await?;
        let ready = match store.migrate().await {
            Ok(()) => store.probe_write(chrono::Utc::now()).await,
            Err(e) => Err(e),
        };
        if let Err(e) = ready {
            store.close().await;
            return Err(if is_read_only(&e) {
                Error::ReadOnly(safe_url(url))
            } else {
                e
            });
        }
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let options = PgConnectOptions::from_str(url).map_err(|e| Error::BadUrl {
            url: safe_url(url),
            reason: e.to_string(),
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_WAIT)
            .connect_with(options)
            .await?;
        Ok(PgStore {
            pool,
            health: Arc::new(WriteHealth::quiet_after(PG_QUIET_AFTER_FAILURE)),
            stats: Arc::default(),
        })
    }

    /// Applies pending migrations. sqlx's migrator takes a session-level advisory lock
    /// (`pg_advisory_lock`, keyed by the database's name) before it looks at what is applied, so
    /// a second replica starting at the same moment waits, then finds everything applied. It
    /// runs on a connection taken out of the pool and closed afterwards: the migrator returns
    /// early on an error without unlocking, and only the end of the session then frees the lock.
    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?.detach();
        // (`run_direct`: `run` takes an `Acquire`, whose lifetimes make this future not
        // `Send`.)
        let applied = MIGRATOR.run_direct(None, &mut conn, false).await;
        let closed = sqlx::Connection::close(conn).await;
        applied?;
        closed?;
        Ok(())
    }

    /// True when the store answers a query (readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The engine's write transactions so far, and the writes they held (one each here: there
    /// is no group commit on PostgreSQL).
    /// The pool (the SQLite-to-PostgreSQL copy writes through it).
    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn group_stats(&self) -> GroupStats {
        let n = self.stats.transactions.load(Ordering::Relaxed);
        GroupStats {
            transactions: n,
            operations: n,
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a write transaction, recording a failure to begin.
    async fn begin(&self) -> Result<Tx> {
        match self.pool.begin().await {
            Ok(tx) => Ok(Tx {
                tx,
                health: self.health.clone(),
            }),
            Err(e) => {
                let e = Error::from(e);
                self.health.failed(&e);
                Err(e)
            }
        }
    }

    /// Counts one engine write (see [`PgStore::group_stats`]).
    fn count_engine_write(&self) {
        self.stats.transactions.fetch_add(1, Ordering::Relaxed);
    }

    /// Why writes are failing, while they are: a failure within [`PG_QUIET_AFTER_FAILURE`]
    /// (a second: `/readyz` turns ready again as soon as a probe write commits after that,
    /// unlike SQLite's ten seconds), or an older streak that a probe write cannot end yet.
    pub async fn write_failure(&self, now: Timestamp) -> Option<WriteFailure> {
        let (failure, recent) = self.health.current()?;
        if recent {
            return Some(failure);
        }
        match self.probe_write(now).await {
            Ok(()) => None,
            Err(_) => self.health.current().map(|(f, _)| f),
        }
    }

    /// Commits one small write, to prove the store can write (readiness, start-up).
    pub async fn probe_write(&self, now: Timestamp) -> Result<()> {
        let write = async {
            let mut tx = self.begin().await?;
            sqlx::query(
                "INSERT INTO store_probe (id, at) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            )
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                let e = Error::from(e);
                self.health.failed(&e);
                e
            })?;
            tx.commit().await
        };
        match tokio::time::timeout(PROBE_TIMEOUT, write).await {
            Ok(r) => r,
            Err(_) => {
                let e = Error::Stalled(PROBE_TIMEOUT);
                self.health.failed(&e);
                Err(e)
            }
        }
    }
}

/// The channel on which a write that makes a run due now from outside the engine (a new run, a
/// cancel request, a retry, a sweep's nudge) tells the engines of every replica. PostgreSQL
/// delivers a `NOTIFY` when its transaction commits, and never one of a rolled-back transaction,
/// so a woken engine always finds the write.
const WAKE_CHANNEL: &str = "executor_wake";

/// Notifies [`WAKE_CHANNEL`] at the commit of the transaction `tx` is in.
async fn wake_replicas(tx: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WAKE_CHANNEL)
        .execute(tx)
        .await?;
    Ok(())
}

impl PgStore {
    /// Wakes `wake` (an engine's) on every notification of [`WAKE_CHANNEL`], for as long as the
    /// process runs: an idle replica starts a run another replica accepted at once, not after
    /// its next look at the due runs. The listening connection is re-opened when it is lost,
    /// with a wake-up then (what was notified meanwhile is lost; the engine's own look at the
    /// due times catches up).
    pub fn forward_wakeups(&self, wake: Arc<tokio::sync::Notify>) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            loop {
                let listening = async {
                    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
                    listener.listen(WAKE_CHANNEL).await?;
                    Ok::<_, sqlx::Error>(listener)
                };
                let mut listener = match listening.await {
                    Ok(listener) => listener,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for other replicas' wake-ups; trying again");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                        continue;
                    }
                };
                tracing::debug!("listening for other replicas' wake-ups");
                // Whatever was notified before (at start, or while the connection was lost).
                wake.notify_one();
                pause = Duration::from_millis(100);
                loop {
                    match listener.try_recv().await {
                        // A notification; or `None`: the connection was lost, and the next
                        // call opens another and listens again.
                        Ok(_) => wake.notify_one(),
                        Err(e) => {
                            tracing::warn!(error = %e, "lost the wake-up listener; listening again");
                            wake.notify_one();
                            break;
                        }
                    }
                }
                tokio::time::sleep(pause).await;
            }
        })
    }
}

/// `later - earlier` in microseconds: a duration measured on the caller's clock, which SQL adds
/// to the database's (`statement_timestamp() + $n * interval '1 microsecond'`).
fn micros_between(earlier: Timestamp, later: Timestamp) -> f64 {
    (later - earlier).num_microseconds().unwrap_or(i64::MAX) as f64
}

/// A time as the store keeps it: truncated to the microsecond (as `to_db` writes it for
/// SQLite), so that what is read back equals what was written.
fn micros(t: Timestamp) -> Timestamp {
    t.trunc_subsecs(6)
}

/// `url` without its password, for error messages and logs.
pub(super) fn safe_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(an unparsable URL)".into(),
    }
}

/// A write transaction that records whether it committed; dropped without a commit, it rolls
/// back.
struct Tx {
    tx: sqlx::Transaction<'static, Postgres>,
    health: Arc<WriteHealth>,
}

impl Tx {
    async fn commit(self) -> Result<()> {
        match self.tx.commit().await {
            Ok(()) => {
                self.health.succeeded();
                Ok(())
            }
            Err(e) => {
                let e = Error::from(e);
                self.health.failed(&e);
                Err(e)
            }
        }
    }
}

impl Deref for Tx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

/// True when the PostgreSQL store cannot write for now and a request may succeed later (the
/// server is unreachable, shutting down, out of disk or connections, a standby; a lock or
/// serialization conflict; no pooled connection in time).
///
/// [`Error::is_unavailable`] reads SQLite's result codes and is wrong for PostgreSQL's
/// SQLSTATEs (it parses them as numbers: 21000 cardinality_violation, 22021
/// character_not_in_repertoire and 42501 insufficient_privilege would read as "busy", 53100
/// disk_full would not): the store's dispatch should call this for PostgreSQL errors.
pub(super) fn is_unavailable(e: &Error) -> bool {
    match e {
        Error::Stalled(_) => true,
        Error::Shared(e) => is_unavailable(e),
        Error::Database(e) => match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::BeginFailed
            | sqlx::Error::InvalidSavePointStatement => true,
            sqlx::Error::Database(d) => d.code().is_some_and(|c| unavailable_sqlstate(&c)),
            _ => false,
        },
        _ => false,
    }
}

/// SQLSTATEs that mean "cannot write now" rather than "this write is wrong".
fn unavailable_sqlstate(code: &str) -> bool {
    // 08: connection exception; 53: insufficient resources (disk full, out of memory, too many
    // connections); 57P: the server is shutting down or starting; 58030: I/O error.
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || matches!(
            code,
            "58030"
            // query_canceled (a statement timeout), lock_not_available
            | "57014" | "55P03"
            // serialization_failure, deadlock_detected: the same write may succeed now
            | "40001" | "40P01"
            // read_only_sql_transaction: a standby (after a failover), or a read-only database
            | "25006"
        )
}

/// True for a database that refuses writes (a standby, `default_transaction_read_only`).
/// (A migration that cannot write says so too: its error is the database's.)
pub(super) fn is_read_only(e: &Error) -> bool {
    use sqlx::migrate::MigrateError;
    let db = match e {
        Error::Shared(e) => return is_read_only(e),
        Error::Database(e) => e,
        Error::Migrate(MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _)) => e,
        _ => return false,
    };
    matches!(db, sqlx::Error::Database(d) if d.code().as_deref() == Some("25006"))
}
