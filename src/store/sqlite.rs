//! The SQLite store: one file, one writer connection, a pool of readers.
//!
//! Every connection gets the pragmas through its connect options (WAL, `synchronous=FULL`,
//! foreign keys, a busy timeout), because pragmas are per connection. Writes go through a pool of
//! exactly one connection and every write transaction begins IMMEDIATE, so a transaction that
//! reads then writes waits for the lock instead of failing with "database is locked". Reads use a
//! separate pool and never block the writer (WAL). The engine's writes are committed in groups
//! ([`super::group`]). The SQL of each concern is in its module (`runs`, `instances`, ...).

use super::{Error, GroupStats, Result, group, health};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// SQLITE_BUSY and its extended codes ("database is locked").
fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| c & 0xff == 5),
        _ => false,
    }
}

/// The file a `sqlite:` URL names (None for other URLs and in-memory databases).
pub fn file_path(url: &str) -> Option<String> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .map(|p| p.split('?').next().unwrap_or(p))
        .filter(|p| !p.is_empty() && *p != ":memory:")
        .map(str::to_string)
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pub(super) writer: SqlitePool,
    pub(super) reader: SqlitePool,
    pub(super) health: Arc<health::WriteHealth>,
    /// The engine's writes, committed in groups ([`group`]).
    pub(super) group: group::GroupCommit,
}

/// How long a write waits for SQLite's lock (another process writing) before it is refused as
/// busy, and for the one writer connection: well under the request timeout, so a stalled store
/// answers 503 quickly instead of holding every request.
const WRITE_WAIT: Duration = Duration::from_secs(5);

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path`, `sqlite::memory:` is
    /// refused because a restart-safe store must be a file) and applies pending migrations.
    pub async fn open(url: &str) -> Result<SqliteStore> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        // SQLite opens a file it may not write read-only without a word, and then every write
        // fails: refuse to start instead of serving errors.
        if let Err(e) = store.probe_write(chrono::Utc::now()).await {
            store.close().await;
            return Err(if e.is_read_only() {
                Error::ReadOnly(url.to_string())
            } else {
                e
            });
        }
        Ok(store)
    }

    /// Opens without migrating.
    pub async fn connect(url: &str) -> Result<SqliteStore> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(Error::BadUrl {
                url: url.to_string(),
                reason: "an in-memory database would lose every run on restart; use a file".into(),
            });
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::BadUrl {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(WRITE_WAIT);
        // Switching a fresh database to WAL needs an exclusive lock that SQLite does not wait
        // for (the busy timeout does not apply), so a process starting beside another one may
        // be refused with "database is locked": it tries again for a while.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut pause = Duration::from_millis(20);
        loop {
            match Self::connect_pools(&options).await {
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "database busy at connect; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                other => return Ok(other?),
            }
        }
    }

    async fn connect_pools(options: &SqliteConnectOptions) -> sqlx::Result<SqliteStore> {
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(WRITE_WAIT)
            // A connection that comes back still inside a transaction (SQLite rolled it back
            // by itself, sqlx's own rollback failed) would refuse every later BEGIN: close it
            // and let the pool open a fresh one (see `health`).
            .after_release(|conn, _| {
                Box::pin(async move {
                    sqlx::Connection::ping(&mut *conn).await?;
                    let clean = !sqlx::Connection::is_in_transaction(conn);
                    if !clean {
                        tracing::warn!(
                            "discarding the writer connection left inside a transaction"
                        );
                    }
                    Ok(clean)
                })
            })
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone().read_only(true))
            .await;
        match reader {
            Ok(reader) => {
                let health: Arc<health::WriteHealth> = Arc::default();
                let group = group::GroupCommit::start(writer.clone(), health.clone());
                Ok(SqliteStore {
                    writer,
                    reader,
                    health,
                    group,
                })
            }
            Err(e) => {
                writer.close().await;
                Err(e)
            }
        }
    }

    /// Applies pending migrations under the database's write lock: the whole run is one
    /// `BEGIN IMMEDIATE` transaction (each migration a savepoint inside it), so a second process
    /// starting at the same moment waits for the lock (the busy timeout) and then finds every
    /// migration applied, instead of applying them again and failing. sqlx's own migrator lock
    /// does nothing on SQLite.
    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.writer.acquire().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
        MIGRATOR.run_direct(None, &mut *tx, false).await?;
        tx.commit().await?;
        Ok(())
    }

    /// True when the store answers a query (readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// Transactions the group commit has made so far, and the engine writes they held.
    pub fn group_stats(&self) -> GroupStats {
        self.group.stats()
    }

    pub(super) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}
