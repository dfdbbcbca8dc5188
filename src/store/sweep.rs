//! SQL for the List* sweeper ([`crate::sweep`]): the runs that follow a job, and making some of
//! them due now when a listing shows their job changed.

use super::{Error, Result, SqliteStore};
use crate::clock::{Timestamp, from_db, to_db};
use crate::model::{Kind, State};
use serde_json::Value;
use uuid::Uuid;

/// A run that follows a SageMaker job, as the sweeper needs it.
#[derive(Clone, Debug)]
pub struct FollowedRun {
    pub id: Uuid,
    pub kind: Kind,
    /// The job's name (the context's `job_name`, else the run's resource name).
    pub job_name: String,
    /// The status the run last recorded (`sagemaker_status`); None before its first describe.
    pub status: Option<String>,
    pub updated_at: Timestamp,
    /// The request's `connection` reference, when it has one.
    pub connection: Option<Value>,
    /// The run's sealed secret, when it has one.
    pub sealed: Option<Vec<u8>>,
}

type Row = (
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<Vec<u8>>,
);

impl SqliteStore {
    /// The runs of `kinds` in `state` (the state that follows a live job).
    pub async fn followed_runs(&self, kinds: &[Kind], state: State) -> Result<Vec<FollowedRun>> {
        let kinds = Value::from(kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>()).to_string();
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT r.id, r.kind,
                    COALESCE(json_extract(r.context, '$.job_name'), r.resource_name),
                    json_extract(r.context, '$.sagemaker_status'),
                    r.updated_at,
                    r.request -> '$.connection',
                    s.sealed
             FROM runs r LEFT JOIN run_secrets s ON s.run_id = r.id
             WHERE r.state = ?1 AND r.kind IN (SELECT value FROM json_each(?2))",
        )
        .bind(state.as_str())
        .bind(kinds)
        .fetch_all(self.reader())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, kind, job_name, status, updated_at, connection, sealed) in rows {
            let Some(job_name) = job_name else { continue };
            out.push(FollowedRun {
                id: Uuid::parse_str(&id).map_err(|e| Error::Corrupt(format!("id: {e}")))?,
                kind: Kind::parse(&kind).ok_or_else(|| Error::Corrupt(format!("kind {kind:?}")))?,
                job_name,
                status,
                updated_at: from_db(&updated_at)
                    .ok_or_else(|| Error::Corrupt(format!("updated_at {updated_at:?}")))?,
                connection: connection
                    .and_then(|c| serde_json::from_str(&c).ok())
                    .filter(|c: &Value| !c.is_null()),
                sealed,
            });
        }
        Ok(out)
    }

    /// Makes the runs of `kinds` in `state` that are due later than `later_than` due at `now`
    /// (not leased ones). Returns how many.
    pub async fn make_due_after(
        &self,
        kinds: &[Kind],
        state: State,
        later_than: Timestamp,
        now: Timestamp,
    ) -> Result<u64> {
        let kinds = Value::from(kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>()).to_string();
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE runs SET next_due_at = ?1
             WHERE state = ?2 AND kind IN (SELECT value FROM json_each(?3))
               AND next_due_at > ?4 AND (lease_until IS NULL OR lease_until <= ?1)",
        )
        .bind(to_db(now))
        .bind(state.as_str())
        .bind(kinds)
        .bind(to_db(later_than))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Makes the runs `ids` due at `now` when they are still in `state`, not due yet and not
    /// leased (a leased run is being stepped; the caller tries it again later). Returns the ids
    /// it made due. The version is not bumped: nobody holds these runs, and the next claim
    /// bumps it anyway.
    pub async fn make_due(&self, ids: &[Uuid], state: State, now: Timestamp) -> Result<Vec<Uuid>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = Value::from(ids.iter().map(|i| i.to_string()).collect::<Vec<_>>()).to_string();
        let mut tx = self.begin_write().await?;
        let updated: Vec<String> = sqlx::query_scalar(
            "UPDATE runs SET next_due_at = ?1
             WHERE id IN (SELECT value FROM json_each(?2)) AND state = ?3
               AND next_due_at > ?1 AND (lease_until IS NULL OR lease_until <= ?1)
             RETURNING id",
        )
        .bind(to_db(now))
        .bind(list)
        .bind(state.as_str())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        updated
            .into_iter()
            .map(|i| Uuid::parse_str(&i).map_err(|e| Error::Corrupt(format!("id: {e}"))))
            .collect()
    }
}
