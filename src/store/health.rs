//! Whether the store can write, and how it recovers when it cannot.
//!
//! SQLite refuses writes for reasons outside this process: a full disk (`SQLITE_FULL`), a file or
//! file system made read-only (`SQLITE_READONLY`, `SQLITE_IOERR`), another process holding the
//! write lock past the busy timeout (`SQLITE_BUSY`). Each is temporary from the service's point
//! of view, so the API answers 503 with `Retry-After` ([`Error::is_unavailable`]) and `/readyz`
//! turns not-ready while the last write outcome is a failure. Every write goes through
//! [`WriteTx`], which records the outcome of its `BEGIN IMMEDIATE` and its `COMMIT`; `/readyz`
//! proves recovery with a one-row probe write ([`SqliteStore::probe_write`]).
//!
//! Recovery needs the one writer connection to be usable after a failure. SQLite rolls a
//! transaction back by itself on some errors (a full disk among them); sqlx then still counts
//! the transaction open, its own `ROLLBACK` fails ("no transaction is active"), and every later
//! `BEGIN IMMEDIATE` on that connection is refused ("begin at non-zero transaction depth") until
//! a restart. So a connection that comes back to the writer pool still inside a transaction is
//! closed instead of reused (the pool opens a fresh one), see `SqliteStore::connect_pools`.

use super::{Error, Result, SqliteStore};
use crate::clock::{Timestamp, to_db};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The current streak of write failures, if any, and how long without a failure ends it.
#[derive(Debug)]
pub(crate) struct WriteHealth {
    streak: Mutex<Option<Streak>>,
    quiet: Duration,
}

/// SQLite's rule: [`QUIET_AFTER_FAILURE`].
impl Default for WriteHealth {
    fn default() -> Self {
        WriteHealth::quiet_after(QUIET_AFTER_FAILURE)
    }
}

#[derive(Debug)]
struct Streak {
    failure: WriteFailure,
    latest: Instant,
}

/// Why writes are failing, and since when.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteFailure {
    /// The first failure of the current streak.
    pub since: Timestamp,
    /// The latest failure's message.
    pub message: String,
    /// Failures in the current streak.
    pub count: u64,
}

/// A streak of failures ends after this long without one (SQLite). A full disk lets some writes
/// through (SQLite reuses space a failed write had taken), so one success does not prove
/// recovery.
pub const QUIET_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// A streak of failures of a PostgreSQL store ends with the first write that commits at least
/// this long after the latest failure. A commit the server acknowledged proves that it takes
/// writes again (a lost connection, a restart, a failover: each is over once one commits), so
/// there is no reason for SQLite's wait; the second only spares `/readyz` a probe write per
/// request while the failures keep coming (each could wait out the probe's timeout).
pub const PG_QUIET_AFTER_FAILURE: Duration = Duration::from_secs(1);

impl WriteHealth {
    /// A streak ends with a success at least `quiet` after its latest failure.
    pub(crate) fn quiet_after(quiet: Duration) -> WriteHealth {
        WriteHealth {
            streak: Mutex::new(None),
            quiet,
        }
    }

    pub(super) fn succeeded(&self) {
        let mut guard = self.streak.lock().expect("write health lock");
        if guard
            .as_ref()
            .is_some_and(|s| s.latest.elapsed() >= self.quiet)
        {
            let s = guard.take().expect("checked");
            tracing::warn!(
                since = %to_db(s.failure.since),
                failures = s.failure.count,
                "the store accepts writes again"
            );
        }
    }

    pub(super) fn failed(&self, e: &Error) {
        if !e.is_unavailable() {
            return;
        }
        let mut guard = self.streak.lock().expect("write health lock");
        match guard.as_mut() {
            Some(s) => {
                s.failure.count += 1;
                s.failure.message = e.to_string();
                s.latest = Instant::now();
            }
            None => {
                // Once per streak: while the disk is full every write fails, and one line each
                // would flood the log.
                tracing::error!(error = %e, "the store cannot write; answering 503 until it can");
                *guard = Some(Streak {
                    failure: WriteFailure {
                        since: chrono::Utc::now(),
                        message: e.to_string(),
                        count: 1,
                    },
                    latest: Instant::now(),
                });
            }
        }
    }

    /// The current streak and whether its latest failure is recent (within the quiet time: a
    /// probe write could not end the streak yet).
    pub(super) fn current(&self) -> Option<(WriteFailure, bool)> {
        self.streak
            .lock()
            .expect("write health lock")
            .as_ref()
            .map(|s| (s.failure.clone(), s.latest.elapsed() < self.quiet))
    }
}

/// A write transaction (begun IMMEDIATE) that records whether it committed. Dropped without a
/// commit, it rolls back.
pub struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    health: Arc<WriteHealth>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<()> {
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

impl WriteTx {
    /// Rolls back now (a dropped transaction is rolled back when its connection is next used).
    pub async fn rollback(self) -> Result<()> {
        Ok(self.tx.rollback().await?)
    }
}

impl Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

/// SQLite's primary result codes that mean "cannot write now" rather than "this write is wrong".
const BUSY: i32 = 5;
const LOCKED: i32 = 6;
const READONLY: i32 = 8;
const IOERR: i32 = 10;
const FULL: i32 = 13;
const CANTOPEN: i32 = 14;

fn primary_code(e: &sqlx::Error) -> Option<i32> {
    match e {
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff),
        _ => None,
    }
}

impl Error {
    /// True when the store cannot write for now (full disk, read-only file, a lock held too long,
    /// no connection in time): the request may succeed later, so the API answers 503.
    pub fn is_unavailable(&self) -> bool {
        if self.is_from_postgres() {
            return super::postgres::is_unavailable(self);
        }
        match self {
            Error::Stalled(_) => true,
            Error::Shared(e) => e.is_unavailable(),
            Error::Database(e) => match e {
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Io(_)
                | sqlx::Error::BeginFailed
                | sqlx::Error::InvalidSavePointStatement => true,
                other => primary_code(other).is_some_and(|c| {
                    matches!(c, BUSY | LOCKED | READONLY | IOERR | FULL | CANTOPEN)
                }),
            },
            _ => false,
        }
    }

    /// True for a file or file system that refuses writes.
    pub fn is_read_only(&self) -> bool {
        if self.is_from_postgres() {
            return super::postgres::is_read_only(self);
        }
        match self {
            Error::Shared(e) => e.is_read_only(),
            Error::Database(e) => primary_code(e) == Some(READONLY),
            _ => false,
        }
    }
}

impl Error {
    /// An error PostgreSQL answered: its codes are SQLSTATEs, not SQLite's result codes.
    fn is_from_postgres(&self) -> bool {
        match self {
            Error::Shared(e) => e.is_from_postgres(),
            Error::Database(sqlx::Error::Database(d))
            | Error::Migrate(
                sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(d))
                | sqlx::migrate::MigrateError::ExecuteMigration(sqlx::Error::Database(d), _),
            ) => d
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some(),
            _ => false,
        }
    }
}

/// Begins a write transaction on `writer`, recording a failure to begin in `health`.
pub(super) async fn begin_on(writer: &SqlitePool, health: &Arc<WriteHealth>) -> Result<WriteTx> {
    match writer.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => Ok(WriteTx {
            tx,
            health: health.clone(),
        }),
        Err(e) => {
            let e = Error::from(e);
            health.failed(&e);
            Err(e)
        }
    }
}

/// How long the readiness probe may wait for the write lock.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl SqliteStore {
    pub(crate) async fn begin_write(&self) -> Result<WriteTx> {
        begin_on(&self.writer, &self.health).await
    }

    /// Why writes are failing, while they are: a failure within [`QUIET_AFTER_FAILURE`], or an
    /// older streak that a probe write cannot end yet.
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
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO store_probe (id, at) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            )
            .bind(to_db(now))
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
