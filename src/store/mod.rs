//! The durable store: runs and their history in SQLite through sqlx.
//!
//! Every connection gets the pragmas through its connect options (WAL, `synchronous=FULL`,
//! foreign keys, a busy timeout), because pragmas are per connection. Writes go through a pool of
//! exactly one connection and every write transaction begins IMMEDIATE, so a transaction that
//! reads then writes waits for the lock instead of failing with "database is locked". Reads use a
//! separate pool and never block the writer (WAL).

mod owned;
mod runs;

pub use owned::{Owned, OwnedKind};

pub use runs::{
    CancelOutcome, ClaimedRun, Event, NewRun, Page, RetryOutcome, Run, RunFilter, Transition,
    TransitionOutcome,
};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlitePool, Transaction};
use std::str::FromStr;
use std::time::Duration;

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
}

pub type Result<T> = std::result::Result<T, Error>;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Clone, Debug)]
pub struct Store {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl Store {
    /// Opens (creating if missing) the database at `url` (`sqlite://path`, `sqlite::memory:` is
    /// refused because a restart-safe store must be a file) and applies pending migrations.
    pub async fn open(url: &str) -> Result<Store> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens without migrating.
    pub async fn connect(url: &str) -> Result<Store> {
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
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Store { writer, reader })
    }

    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    /// True when the store answers a query (readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, sqlx::Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

#[cfg(test)]
mod tests;
