//! SQL for the janitor: where this service stages data in S3 (the places whose stale multipart
//! uploads it aborts), and the finished runs whose staged inputs are past the retention period
//! (deleted once, recorded in `staging_purges`).

use super::{Result, SqliteStore};
use crate::clock::{Timestamp, to_db};
use serde_json::Value;

/// A finished run whose staged data may be deleted.
#[derive(Clone, Debug)]
pub struct StagedRun {
    pub id: String,
    pub kind: crate::model::Kind,
    pub request: Value,
}

impl SqliteStore {
    /// Runs of the staging kinds that are unfinished or were updated since `since`, newest first
    /// (at most `limit`), without a connection reference (their AWS is the service's own).
    pub async fn recent_staging_runs(
        &self,
        since: Timestamp,
        limit: i64,
    ) -> Result<Vec<StagedRun>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            // The kinds that stage data under a prefix of their own.
            "SELECT id, kind, request FROM runs
             WHERE kind IN ('training', 'automl', 'script')
               AND (next_due_at IS NOT NULL OR updated_at >= ?1)
               AND json_extract(request, '$.connection') IS NULL
             ORDER BY created_at DESC LIMIT ?2",
        )
        .bind(to_db(since))
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        Ok(rows.into_iter().filter_map(staged).collect())
    }

    /// Finished runs of the staging kinds last updated before `cutoff` whose staged data was not
    /// deleted yet, oldest first (at most `limit`).
    pub async fn runs_past_retention(
        &self,
        cutoff: Timestamp,
        limit: i64,
    ) -> Result<Vec<StagedRun>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT id, kind, request FROM runs r
             WHERE kind IN ('training', 'automl', 'script')
               AND next_due_at IS NULL AND updated_at < ?1
               AND json_extract(request, '$.connection') IS NULL
               AND NOT EXISTS (SELECT 1 FROM staging_purges p WHERE p.run_id = r.id)
             ORDER BY updated_at LIMIT ?2",
        )
        .bind(to_db(cutoff))
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        Ok(rows.into_iter().filter_map(staged).collect())
    }

    /// Records that a run's staged data was deleted (repeating it is harmless).
    pub async fn record_staging_purge(
        &self,
        run_id: &str,
        detail: &str,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO staging_purges (run_id, purged_at, detail) VALUES (?1, ?2, ?3)
             ON CONFLICT (run_id) DO NOTHING",
        )
        .bind(run_id)
        .bind(to_db(now))
        .bind(detail)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// When a run's staged data was deleted, and what was deleted.
    pub async fn staging_purge(&self, run_id: &str) -> Result<Option<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT purged_at, detail FROM staging_purges WHERE run_id = ?1")
                .bind(run_id)
                .fetch_optional(self.reader())
                .await?,
        )
    }
}

fn staged((id, kind, request): (String, String, String)) -> Option<StagedRun> {
    Some(StagedRun {
        id,
        kind: crate::model::Kind::parse(&kind)?,
        request: serde_json::from_str(&request).ok()?,
    })
}
