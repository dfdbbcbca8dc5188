//! Read-only queries of runs and their history (the API's and the metrics' views); every
//! write, each one transaction, is in the parent module.

use super::super::{Error, Result, Store};
use super::{Event, Page, Run, RunFilter, event_from_row, run_from_row, state};
use crate::clock::{Timestamp, from_db, to_db};
use crate::model::{Kind, State};
use sqlx::Row;
use uuid::Uuid;

impl Store {
    pub async fn get_run(&self, id: Uuid) -> Result<Option<Run>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE id = ?1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// Finds a run by its id or by the name of its AWS resource (e.g. the training job name).
    pub async fn find_run(&self, id_or_name: &str) -> Result<Option<Run>> {
        if let Ok(id) = Uuid::parse_str(id_or_name)
            && let Some(run) = self.get_run(id).await?
        {
            return Ok(Some(run));
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE resource_name = ?1"
        ))
        .bind(id_or_name)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    pub async fn events(&self, id: Uuid) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT seq, from_state, to_state, at, attempt, detail, error_class, error, repeats
             FROM run_events WHERE run_id = ?1 ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Runs newest first, filtered, paged by a cursor (the last run of the previous page).
    pub async fn list_runs(&self, f: &RunFilter) -> Result<Page> {
        let limit = f.limit.clamp(1, 1000);
        let rows = sqlx::query(concat!("SELECT ", run_columns!(), " FROM runs
             WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR state = ?2)
               AND (?3 IS NULL OR (created_at, id) < (SELECT created_at, id FROM runs WHERE id = ?3))
               AND (?5 IS NULL OR created_at >= ?5) AND (?6 IS NULL OR created_at < ?6)
               AND (?7 IS NULL OR updated_at >= ?7) AND (?8 IS NULL OR updated_at < ?8)
               AND (?9 IS NULL OR (next_due_at IS NOT NULL AND updated_at < ?9))
               AND (?10 IS NULL OR (last_error IS NOT NULL) = ?10)
               AND (?11 IS NULL OR submitted_by = ?11)
               AND (?12 IS NULL OR instr(?12, ',' || kind || ',') > 0)
               AND (?13 IS NULL OR (degraded_since IS NOT NULL) = ?13)
             ORDER BY created_at DESC, id DESC LIMIT ?4"))
        .bind(f.kind.map(Kind::as_str))
        .bind(f.state.map(State::as_str))
        .bind(f.after.map(|u| u.to_string()))
        .bind(limit as i64 + 1)
        .bind(f.created_after.map(to_db))
        .bind(f.created_before.map(to_db))
        .bind(f.updated_after.map(to_db))
        .bind(f.updated_before.map(to_db))
        .bind(f.stuck_since.map(to_db))
        .bind(f.has_error)
        .bind(f.submitted_by.as_deref())
        .bind((!f.kinds.is_empty()).then(|| {
            let names: Vec<&str> = f.kinds.iter().map(|k| k.as_str()).collect();
            format!(",{},", names.join(","))
        }))
        .bind(f.degraded)
        .fetch_all(self.reader())
        .await?;
        let mut runs = rows.iter().map(run_from_row).collect::<Result<Vec<_>>>()?;
        let next_cursor = if runs.len() > limit as usize {
            runs.truncate(limit as usize);
            runs.last().map(|r| r.id)
        } else {
            None
        };
        Ok(Page { runs, next_cursor })
    }

    /// How many runs are in each state (of one kind, or all).
    pub async fn count_by_state(
        &self,
        kind: Option<Kind>,
        submitted_by: Option<&str>,
    ) -> Result<Vec<(State, i64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM runs
             WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR submitted_by = ?2)
             GROUP BY state ORDER BY state",
        )
        .bind(kind.map(Kind::as_str))
        .bind(submitted_by)
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(|(s, n)| Ok((state(&s)?, n))).collect()
    }

    /// Every endpoint named by a deployment or teardown run, with its newest such run, newest first.
    pub async fn endpoints_with_latest_run(&self) -> Result<Vec<(String, Run)>> {
        let rows = sqlx::query(concat!(
            "SELECT json_extract(request, '$.endpoint_name') AS endpoint, ",
            run_columns!(),
            " FROM runs r WHERE kind IN ('deployment', 'teardown')
               AND created_at = (SELECT MAX(created_at) FROM runs r2
                                 WHERE r2.kind IN ('deployment', 'teardown')
                                   AND json_extract(r2.request, '$.endpoint_name')
                                       = json_extract(r.request, '$.endpoint_name'))
             ORDER BY created_at DESC LIMIT 1000"
        ))
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get::<String, _>("endpoint")?, run_from_row(row)?)))
            .collect()
    }

    /// The newest run of `kind` for an endpoint (deployments and teardowns name it in their request).
    pub async fn latest_run_for_endpoint(
        &self,
        kind: Kind,
        endpoint: &str,
    ) -> Result<Option<Uuid>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE kind = ?1 AND json_extract(request, '$.endpoint_name') = ?2
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(kind.as_str())
        .bind(endpoint)
        .fetch_optional(self.reader())
        .await?;
        id.map(|s| Uuid::parse_str(&s).map_err(|e| Error::Corrupt(format!("id: {e}"))))
            .transpose()
    }

    /// How many runs there are of each kind in each state (metrics).
    pub async fn count_by_kind_state(&self) -> Result<Vec<(Kind, State, i64)>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT kind, state, COUNT(*) FROM runs GROUP BY kind, state ORDER BY kind, state",
        )
        .fetch_all(self.reader())
        .await?;
        rows.into_iter()
            .map(|(k, s, n)| {
                let kind = Kind::parse(&k).ok_or_else(|| Error::Corrupt(format!("kind {k:?}")))?;
                Ok((kind, state(&s)?, n))
            })
            .collect()
    }

    /// When the oldest unfinished run was created (metrics).
    pub async fn oldest_unfinished(&self) -> Result<Option<Timestamp>> {
        let s: Option<String> =
            sqlx::query_scalar("SELECT MIN(created_at) FROM runs WHERE next_due_at IS NOT NULL")
                .fetch_one(self.reader())
                .await?;
        Ok(s.as_deref().and_then(from_db))
    }

    /// When the next run falls due (ignoring leases), for the engine's sleep.
    pub async fn next_due_at(&self) -> Result<Option<Timestamp>> {
        let s: Option<String> = sqlx::query_scalar(
            "SELECT MIN(MAX(next_due_at, COALESCE(lease_until, next_due_at))) FROM runs
             WHERE next_due_at IS NOT NULL",
        )
        .fetch_one(self.reader())
        .await?;
        Ok(s.as_deref().and_then(from_db))
    }

    /// How many unfinished runs are degraded (their status checks failing), by kind (metrics).
    pub async fn count_degraded(&self) -> Result<Vec<(Kind, i64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT kind, COUNT(*) FROM runs WHERE degraded_since IS NOT NULL
             GROUP BY kind ORDER BY kind",
        )
        .fetch_all(self.reader())
        .await?;
        rows.into_iter()
            .map(|(k, n)| {
                let kind = Kind::parse(&k).ok_or_else(|| Error::Corrupt(format!("kind {k:?}")))?;
                Ok((kind, n))
            })
            .collect()
    }

    /// Counts of non-terminal runs (for start-up logging).
    pub async fn count_unfinished(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE next_due_at IS NOT NULL")
                .fetch_one(self.reader())
                .await?,
        )
    }
}
