//! `migrate-store`: moves an installation from its SQLite file to PostgreSQL.
//!
//! Every run with its history, its sealed credentials (copied as they are: the same secret key
//! opens them on the other side), the registered SageMaker resources, the staging purges and the
//! idempotency keys with their recorded replies are copied in **one** PostgreSQL transaction: the
//! target has everything or nothing. Leases are not copied (they belonged to the stopped
//! service), so the first replica to start claims every unfinished run at once, and its steps
//! describe their jobs by name as after any restart: nothing is created twice. The per-state
//! counts are rebuilt by the target's own triggers as the runs arrive.
//!
//! It refuses, changing nothing, when the source is still served (a live instance in its
//! `instances` table) or the target already holds runs.

use super::sqlite::SqliteStore;
use super::{Error, PgStore, Result};
use crate::clock::{Timestamp, from_db};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

/// How a column is read from SQLite and written to PostgreSQL.
#[derive(Clone, Copy)]
enum Col {
    Text,
    Int,
    /// 0/1 in SQLite, BOOLEAN in PostgreSQL.
    Bool,
    /// Fixed-width UTC text in SQLite, TIMESTAMPTZ in PostgreSQL.
    Time,
    /// JSON text in both (cast to `json` on the way in).
    Json,
    Bytes,
    /// Not copied: left NULL in the target (the leases of the stopped service).
    Null,
}

/// A copied table: its name, its columns in order, the order rows are read in.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Col)],
    order: &'static str,
}

/// Parents before children (the foreign keys are checked row by row).
const TABLES: [Table; 6] = [
    Table {
        name: "runs",
        columns: &[
            ("id", Col::Text),
            ("kind", Col::Text),
            ("state", Col::Text),
            ("request", Col::Json),
            ("context", Col::Json),
            ("resource_name", Col::Text),
            ("attempt", Col::Int),
            ("version", Col::Int),
            ("next_due_at", Col::Time),
            ("lease_owner", Col::Null),
            ("lease_until", Col::Null),
            ("cancel_requested", Col::Bool),
            ("last_error", Col::Text),
            ("submitted_by", Col::Text),
            ("created_at", Col::Time),
            ("updated_at", Col::Time),
            ("degraded_since", Col::Time),
        ],
        order: "id",
    },
    Table {
        name: "run_events",
        columns: &[
            ("run_id", Col::Text),
            ("seq", Col::Int),
            ("from_state", Col::Text),
            ("to_state", Col::Text),
            ("at", Col::Time),
            ("attempt", Col::Int),
            ("detail", Col::Text),
            ("error_class", Col::Text),
            ("error", Col::Text),
            ("repeat_of", Col::Int),
            ("repeats", Col::Int),
        ],
        order: "run_id, seq",
    },
    Table {
        name: "run_secrets",
        columns: &[("run_id", Col::Text), ("sealed", Col::Bytes)],
        order: "run_id",
    },
    Table {
        name: "owned_resources",
        columns: &[
            ("kind", Col::Text),
            ("name", Col::Text),
            ("spec", Col::Json),
            ("created_at", Col::Time),
        ],
        order: "kind, name",
    },
    Table {
        name: "staging_purges",
        columns: &[
            ("run_id", Col::Text),
            ("purged_at", Col::Time),
            ("detail", Col::Text),
        ],
        order: "run_id",
    },
    Table {
        name: "idempotency_keys",
        columns: &[
            ("principal", Col::Text),
            ("key", Col::Text),
            ("request_hash", Col::Text),
            ("run_id", Col::Text),
            ("status", Col::Int),
            ("content_type", Col::Text),
            ("body", Col::Bytes),
            ("created_at", Col::Time),
        ],
        order: "principal, key",
    },
];

/// Rows read and written per statement (PostgreSQL binds at most 65,535 parameters).
const CHUNK: i64 = 2_000;

/// One value on its way.
enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Time(Option<Timestamp>),
    Json(Option<String>),
    Bytes(Option<Vec<u8>>),
}

fn cell(row: &SqliteRow, table: &str, name: &str, col: Col) -> Result<Cell> {
    Ok(match col {
        Col::Text => Cell::Text(row.try_get(name)?),
        Col::Int => Cell::Int(row.try_get(name)?),
        Col::Bool => Cell::Bool(row.try_get::<Option<i64>, _>(name)?.map(|v| v != 0)),
        Col::Time => Cell::Time(
            row.try_get::<Option<String>, _>(name)?
                .map(|s| {
                    from_db(&s).ok_or_else(|| {
                        Error::Corrupt(format!("{table}.{name}: bad timestamp {s:?}"))
                    })
                })
                .transpose()?,
        ),
        Col::Json => Cell::Json(row.try_get(name)?),
        Col::Bytes | Col::Null => Cell::Bytes(row.try_get(name)?),
    })
}

/// How many rows of each table were copied, in [`TABLES`] order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied(pub Vec<(&'static str, u64)>);

impl std::fmt::Display for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(t, n)| format!("{n} {t}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// Why a copy was refused before anything was written.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(
        "the source database is still in use by a running service (instance {0}): stop every process serving it first"
    )]
    SourceInUse(String),
    #[error(
        "the target database already holds {0} runs: migrate-store copies into an empty database only"
    )]
    TargetNotEmpty(i64),
    #[error("there is no SQLite database at {0}")]
    NoSource(String),
    #[error("{0}")]
    Store(#[from] Error),
}

/// Copies everything from the SQLite database at `from` (migrated to the current schema first)
/// to the PostgreSQL database at `to` (migrated too), in one transaction.
pub async fn sqlite_to_postgres(
    from: &str,
    to: &str,
    now: Timestamp,
) -> std::result::Result<Copied, Refused> {
    let path = super::sqlite::file_path(from).unwrap_or_default();
    if path.is_empty() || !std::path::Path::new(&path).exists() {
        return Err(Refused::NoSource(from.to_string()));
    }
    let source = SqliteStore::open(from).await?;
    let target = PgStore::open(to).await?;
    let result = copy(&source, &target, now).await;
    source.close().await;
    target.close().await;
    result
}

async fn copy(
    source: &SqliteStore,
    target: &PgStore,
    now: Timestamp,
) -> std::result::Result<Copied, Refused> {
    if let Some(live) = source.live_instance(now).await? {
        return Err(Refused::SourceInUse(live));
    }
    let mut tx = target.pool().begin().await.map_err(Error::from)?;
    let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::from)?;
    if held > 0 {
        return Err(Refused::TargetNotEmpty(held));
    }
    let mut copied = Copied::default();
    for table in &TABLES {
        let columns: Vec<(&str, Col)> = table
            .columns
            .iter()
            .copied()
            .filter(|(_, c)| !matches!(c, Col::Null))
            .collect();
        let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
        let select = format!(
            "SELECT {} FROM {} ORDER BY {} LIMIT {CHUNK} OFFSET ?1",
            names.join(", "),
            table.name,
            table.order
        );
        let mut done: i64 = 0;
        loop {
            let rows = sqlx::query(sqlx::AssertSqlSafe(select.as_str()))
                .bind(done)
                .fetch_all(source.reader())
                .await
                .map_err(Error::from)?;
            if rows.is_empty() {
                break;
            }
            let mut cells = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut one = Vec::with_capacity(names.len());
                for (name, col) in &columns {
                    one.push(cell(row, table.name, name, *col)?);
                }
                cells.push(one);
            }
            let mut insert = sqlx::QueryBuilder::new(format!(
                "INSERT INTO {} ({}) ",
                table.name,
                names.join(", ")
            ));
            insert.push_values(cells, |mut b, row| {
                for c in row {
                    match c {
                        Cell::Text(v) => b.push_bind(v),
                        Cell::Int(v) => b.push_bind(v),
                        Cell::Bool(v) => b.push_bind(v),
                        Cell::Time(v) => b.push_bind(v),
                        Cell::Json(v) => b.push_bind(v).push_unseparated("::json"),
                        Cell::Bytes(v) => b.push_bind(v),
                    };
                }
            });
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(Error::from)?;
            done += rows.len() as i64;
        }
        copied.0.push((table.name, done as u64));
    }
    tx.commit().await.map_err(Error::from)?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::add;
    use crate::model::{Kind, State};
    use crate::store::postgres::tests::TestDb;
    use crate::store::{Instance, NewRun, OwnedKind, Store, Transition};
    use serde_json::json;
    use std::time::Duration;

    fn run(state: State) -> NewRun {
        let id = uuid::Uuid::now_v7();
        NewRun {
            id,
            kind: Kind::Training,
            state,
            request: json!({"TrainingJobName": "x", "nested": {"a": [1, 2]}}),
            context: json!({"polls": 3}),
            resource_name: Some(format!("job-{}", id.simple())),
            submitted_by: Some("essedum".into()),
            detail: "accepted".into(),
        }
    }

    #[tokio::test]
    async fn every_run_history_secret_and_resource_arrives_and_a_second_copy_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let from = format!("sqlite://{}", dir.path().join("old.db").display());
        let now = crate::clock::from_db("2026-12-01T10:00:00.123456Z").unwrap();
        let sqlite = Store::open(&from).await.unwrap();
        let plain = sqlite.insert_run(run(State::Polling), now).await.unwrap();
        let sealed = sqlite
            .insert_run_with_secret(run(State::Submitted), b"sealed-bytes".to_vec(), now)
            .await
            .unwrap();
        // One run claimed (leased), stepped once and leased again: the lease is not copied.
        let claimed = sqlite
            .claim_due("old#1", now, add(now, Duration::from_secs(60)), 10)
            .await
            .unwrap();
        let c = claimed.iter().find(|c| c.run.id == plain.id).unwrap();
        let t = Transition {
            to: State::Polling,
            context: json!({"polls": 4}),
            attempt: 0,
            next_due_at: Some(add(now, Duration::from_secs(5))),
            record: true,
            detail: Some("still InProgress".into()),
            error: None,
            spawn: Vec::new(),
            forget: Vec::new(),
            withdraw_cancel: false,
            degraded: false,
            collapse: false,
        };
        sqlite.commit_transition(c, &t, now).await.unwrap();
        sqlite
            .record_owned(OwnedKind::Model, "model-1", &json!({"image": "i"}), now)
            .await
            .unwrap();
        sqlite.close().await;

        let db = TestDb::new().await;
        let copied = sqlite_to_postgres(&from, &db.url, now).await.unwrap();
        assert_eq!(
            copied.0.iter().map(|(t, n)| (*t, *n)).collect::<Vec<_>>(),
            vec![
                ("runs", 2),
                ("run_events", 3),
                ("run_secrets", 1),
                ("owned_resources", 1),
                ("staging_purges", 0),
                ("idempotency_keys", 0)
            ]
        );
        let sqlite = Store::open(&from).await.unwrap();
        let pg = Store::open(&db.url).await.unwrap();
        for id in [plain.id, sealed.id] {
            let (a, b) = (
                sqlite.get_run(id).await.unwrap().unwrap(),
                pg.get_run(id).await.unwrap().unwrap(),
            );
            assert_eq!(format!("{:?}", a.request), format!("{:?}", b.request));
            assert_eq!(
                (
                    a.state,
                    a.version,
                    a.next_due_at,
                    a.created_at,
                    a.updated_at
                ),
                (
                    b.state,
                    b.version,
                    b.next_due_at,
                    b.created_at,
                    b.updated_at
                )
            );
            assert_eq!(b.lease_owner, None, "leases stay behind");
            let history = |e: Vec<crate::store::Event>| {
                e.into_iter()
                    .map(|e| (e.seq, e.to_state, e.at, e.detail))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                history(sqlite.events(id).await.unwrap()),
                history(pg.events(id).await.unwrap())
            );
        }
        assert_eq!(
            pg.run_secret(sealed.id).await.unwrap().as_deref(),
            Some(&b"sealed-bytes"[..])
        );
        assert!(pg.is_owned(OwnedKind::Model, "model-1").await.unwrap());
        assert_eq!(
            pg.count_by_state(None, None).await.unwrap(),
            sqlite.count_by_state(None, None).await.unwrap(),
            "the counts are rebuilt"
        );
        // Both runs are due for the first replica, at once (no lease to wait out).
        let taken = pg
            .claim_due(
                "new#1",
                add(now, Duration::from_secs(5)),
                add(now, Duration::from_secs(60)),
                10,
            )
            .await
            .unwrap();
        assert_eq!(taken.len(), 2);
        assert_eq!(
            taken
                .iter()
                .find(|c| c.run.id == sealed.id)
                .unwrap()
                .sealed
                .as_deref(),
            Some(&b"sealed-bytes"[..])
        );
        sqlite.close().await;
        pg.close().await;

        let again = sqlite_to_postgres(&from, &db.url, now).await.unwrap_err();
        assert!(matches!(again, Refused::TargetNotEmpty(2)), "{again}");
    }

    #[tokio::test]
    async fn a_source_still_served_or_missing_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let from = format!("sqlite://{}", dir.path().join("live.db").display());
        let now = chrono::Utc::now();
        let sqlite = Store::open(&from).await.unwrap();
        sqlite.insert_run(run(State::Polling), now).await.unwrap();
        let me = Instance::this_process("w", Duration::from_secs(30));
        sqlite.register_instance(&me, now).await.unwrap();
        sqlite.close().await;
        let db = TestDb::new().await;
        let refused = sqlite_to_postgres(&from, &db.url, now).await.unwrap_err();
        assert!(matches!(refused, Refused::SourceInUse(_)), "{refused}");
        let pg = Store::open(&db.url).await.unwrap();
        assert!(pg.count_by_state(None, None).await.unwrap().is_empty());
        pg.close().await;

        let missing = format!("sqlite://{}", dir.path().join("nope.db").display());
        let refused = sqlite_to_postgres(&missing, &db.url, now)
            .await
            .unwrap_err();
        assert!(matches!(refused, Refused::NoSource(_)), "{refused}");
        assert!(!dir.path().join("nope.db").exists(), "no file is created");
    }
}
