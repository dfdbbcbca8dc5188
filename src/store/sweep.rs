//! SQL for the List* sweeper ([`crate::sweep`]): the runs that follow a job, making some of them
//! due now when a listing shows their job changed, and the `sweeps` table through which the
//! processes sharing a database take turns (one sweep per kind and target per interval).

use super::{Error, Result, SqliteStore};
use crate::clock::{Timestamp, add, from_db, to_db};
use crate::model::{Kind, State};
use serde_json::Value;
use std::time::Duration;
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

/// A sweep this process took ([`SqliteStore::take_sweep`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepTurn {
    /// When it was taken (its start, on the store's clock).
    pub started: Timestamp,
    /// The start of the previous successful sweep of the kind and target, if any.
    pub previous: Option<Timestamp>,
}

impl SqliteStore {
    /// Takes the sweep of `kind` and `target` for `holder` until `now + hold` when its last
    /// successful sweep started `every` or longer ago (or never) and nobody else holds it:
    /// `None` when it is not this process's turn.
    pub async fn take_sweep(
        &self,
        kind: Kind,
        target: &str,
        holder: &str,
        now: Timestamp,
        every: Duration,
        hold: Duration,
    ) -> Result<Option<SweepTurn>> {
        let mut tx = self.begin_write().await?;
        let taken: Option<(Option<String>,)> = sqlx::query_as(
            "INSERT INTO sweeps (kind, target, last_success, holder, held_until)
             VALUES (?1, ?2, NULL, ?3, ?4)
             ON CONFLICT (kind, target) DO UPDATE
                 SET holder = excluded.holder, held_until = excluded.held_until
                 WHERE (sweeps.last_success IS NULL OR sweeps.last_success <= ?5)
                   AND (sweeps.holder IS NULL OR sweeps.held_until <= ?6)
             RETURNING last_success",
        )
        .bind(kind.as_str())
        .bind(target)
        .bind(holder)
        .bind(to_db(add(now, hold)))
        .bind(to_db(
            now - chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX),
        ))
        .bind(to_db(now))
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some((previous,)) = taken else {
            return Ok(None);
        };
        let previous = previous
            .map(|p| {
                from_db(&p).ok_or_else(|| Error::Corrupt(format!("sweeps.last_success {p:?}")))
            })
            .transpose()?;
        Ok(Some(SweepTurn {
            started: now,
            previous,
        }))
    }

    /// Lets go of a sweep `holder` took, recording `success` (its start) as the last success.
    /// Nothing changes when another process took it over meanwhile.
    pub async fn finish_sweep(
        &self,
        kind: Kind,
        target: &str,
        holder: &str,
        success: Option<Timestamp>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE sweeps SET holder = NULL, held_until = NULL,
                 last_success = CASE WHEN ?4 IS NOT NULL AND (last_success IS NULL OR ?4 > last_success)
                                     THEN ?4 ELSE last_success END
             WHERE kind = ?1 AND target = ?2 AND holder = ?3",
        )
        .bind(kind.as_str())
        .bind(target)
        .bind(holder)
        .bind(success.map(to_db))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// How long ago (at `now`) the last successful sweep of each kind and target started.
    pub async fn sweep_ages(&self, now: Timestamp) -> Result<Vec<(Kind, String, Duration)>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT kind, target, last_success FROM sweeps WHERE last_success IS NOT NULL",
        )
        .fetch_all(self.reader())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (kind, target, at) in rows {
            let Some(kind) = Kind::parse(&kind) else {
                continue;
            };
            let at = from_db(&at)
                .ok_or_else(|| Error::Corrupt(format!("sweeps.last_success {at:?}")))?;
            out.push((kind, target, (now - at).to_std().unwrap_or(Duration::ZERO)));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        from_db(s).unwrap()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[tokio::test]
    async fn sweeps_are_taken_in_turns_and_their_successes_are_shared() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        let t0 = at("2026-01-01T00:00:00.000000Z");
        let (every, hold) = (secs(27), secs(30));
        let take = |kind: Kind, target: &'static str, holder: &'static str, now: Timestamp| {
            let store = store.clone();
            async move {
                store
                    .take_sweep(kind, target, holder, now, every, hold)
                    .await
                    .unwrap()
            }
        };
        // Never swept: the first to ask takes it; held, nobody else does.
        assert_eq!(
            take(Kind::Training, "t1", "a", t0).await,
            Some(SweepTurn {
                started: t0,
                previous: None
            })
        );
        assert_eq!(take(Kind::Training, "t1", "b", t0).await, None);
        assert_eq!(take(Kind::Training, "t1", "a", t0).await, None, "not twice");
        store
            .finish_sweep(Kind::Training, "t1", "a", Some(t0))
            .await
            .unwrap();
        // Swept 10 s ago: not anyone's turn; another kind or target is a turn of its own.
        let t10 = add(t0, secs(10));
        assert_eq!(take(Kind::Training, "t1", "b", t10).await, None);
        assert!(take(Kind::Automl, "t1", "b", t10).await.is_some());
        assert!(take(Kind::Training, "t2", "b", t10).await.is_some());
        let mut ages = store.sweep_ages(t10).await.unwrap();
        ages.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(ages, vec![(Kind::Training, "t1".to_string(), secs(10))]);
        // Nine tenths of an interval later it is b's turn, looking back to a's start.
        let t27 = add(t0, every);
        assert_eq!(
            take(Kind::Training, "t1", "b", t27).await,
            Some(SweepTurn {
                started: t27,
                previous: Some(t0)
            })
        );
        // b dies holding it (or its sweep failed): c takes it once the hold ends.
        assert_eq!(
            take(Kind::Training, "t1", "c", add(t27, secs(29))).await,
            None
        );
        let t57 = add(t27, hold);
        assert_eq!(
            take(Kind::Training, "t1", "c", t57).await,
            Some(SweepTurn {
                started: t57,
                previous: Some(t0)
            })
        );
        // b's late finish changes nothing: c holds it now.
        store
            .finish_sweep(Kind::Training, "t1", "b", Some(t27))
            .await
            .unwrap();
        assert_eq!(
            store.sweep_ages(t57).await.unwrap(),
            vec![(Kind::Training, "t1".to_string(), secs(57))]
        );
        store
            .finish_sweep(Kind::Training, "t1", "c", Some(t57))
            .await
            .unwrap();
        assert_eq!(
            store.sweep_ages(t57).await.unwrap(),
            vec![(Kind::Training, "t1".to_string(), secs(0))]
        );
        store.close().await;
    }
}
