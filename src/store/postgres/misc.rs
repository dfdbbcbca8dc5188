//! The rest of the store, each as the SQLite store's module of the same concern: idempotency
//! keys, process instances, owned resources, history retention, staging, and the List*
//! sweeper's queries.

use super::runs::{kind, owned_kind, uuid};
use super::{PgStore, micros, micros_between, wake_replicas};
use crate::clock::{Timestamp, to_db};
use crate::model::{Kind, State};

use crate::store::SweepTurn;
use crate::store::instances::FORGET_AFTER_LEASES;
use crate::store::{
    Claim, Error, FollowedRun, Instance, KeyRecord, Owned, OwnedKind, Released, Result, StagedRun,
};
use serde_json::Value;
use sqlx::PgConnection;
use std::time::Duration;
use uuid::Uuid;

// Idempotency keys (the SQLite store's `idempotency.rs`).

/// Records a request's key for the run `run_id` inside the run's insert transaction (the
/// SQLite store's `idempotency::record_in`, minus the submission bookkeeping): first deletes
/// the expired keys, then inserts the key; a key another request stored first is
/// `NameTaken("Idempotency-Key")`, and the caller's transaction (run included) must roll back.
pub(super) async fn record_key_in(
    tx: &mut PgConnection,
    claim: &Claim,
    run_id: &str,
    at: Timestamp,
) -> Result<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(micros(claim.expired_before))
        .execute(&mut *tx)
        .await?;
    // ON CONFLICT DO NOTHING rather than a unique violation: the outcome is the same (the
    // caller rolls back), and the transaction is not left aborted behind an error.
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (principal, key, request_hash, run_id, created_at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (principal, key) DO NOTHING",
    )
    .bind(&claim.principal)
    .bind(&claim.key)
    .bind(&claim.request_hash)
    .bind(run_id)
    .bind(micros(at))
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(Error::NameTaken("Idempotency-Key".into()));
    }
    Ok(())
}

/// A row of `idempotency_keys`: request hash, run id, status, content type, body, created at.
type KeyRow = (
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<Vec<u8>>,
    Timestamp,
);

impl PgStore {
    /// The caller's unexpired record of `key`.
    pub async fn idempotency_key(
        &self,
        principal: &str,
        key: &str,
        expired_before: Timestamp,
    ) -> Result<Option<KeyRecord>> {
        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT request_hash, run_id, status, content_type, body, created_at
                 FROM idempotency_keys WHERE principal = $1 AND key = $2 AND created_at >= $3",
        )
        .bind(principal)
        .bind(key)
        .bind(micros(expired_before))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(request_hash, run_id, status, content_type, body, created_at)| KeyRecord {
                request_hash,
                run_id,
                reply: match (status, content_type, body) {
                    (Some(s), Some(t), Some(b)) => Some((u16::try_from(s).unwrap_or(500), t, b)),
                    _ => None,
                },
                created_at,
            },
        ))
    }

    /// Records the first reply to the request that stored `run_id` under the caller's key.
    pub async fn save_idempotent_reply(
        &self,
        principal: &str,
        key: &str,
        run_id: &str,
        reply: (u16, &str, &[u8]),
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE idempotency_keys SET status = $4, content_type = $5, body = $6
             WHERE principal = $1 AND key = $2 AND run_id = $3",
        )
        .bind(principal)
        .bind(key)
        .bind(run_id)
        .bind(i64::from(reply.0))
        .bind(reply.1)
        .bind(reply.2)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

// Process instances (the SQLite store's `instances.rs`).

/// The state letter and start time (clock ticks since boot) of a process, from /proc.
fn process_start(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 22 of the whole line is the start time; `rest` starts at field 3.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// True when the process that registered as (`pid`, `pid_start`) on this host is certainly
/// gone. False when it may be alive, or when this system cannot tell (no /proc).
fn process_gone(pid: u32, pid_start: Option<u64>) -> bool {
    if process_start(std::process::id()).is_none() {
        return false;
    }
    match process_start(pid) {
        None => true,
        Some(('Z' | 'X', _)) => true,
        Some((_, start)) => pid_start.is_some_and(|s| s != start),
    }
}

impl PgStore {
    /// Records this process as a live instance (its heartbeat on the database's clock; its
    /// start time is `now`, for display).
    pub async fn register_instance(&self, me: &Instance, now: Timestamp) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO instances (id, worker_id, host, pid, pid_start, lease_ms, started_at, heartbeat_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, statement_timestamp())
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&me.id)
        .bind(&me.worker_id)
        .bind(&me.host)
        .bind(i64::from(me.pid))
        .bind(me.pid_start.map(|s| s as i64))
        .bind(me.lease.as_millis() as i64)
        .bind(micros(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Beats this instance's heart (on the database's clock: `now` is not used); false when
    /// its row is gone (another process found it dead and released its leases: the caller
    /// registers again). In the same transaction, forgets the instances silent for
    /// [`FORGET_AFTER_LEASES`] of their leases (on the database's clock) that hold no lease.
    pub async fn heartbeat_instance(&self, me: &Instance, _now: Timestamp) -> Result<bool> {
        let mut tx = self.begin().await?;
        let done =
            sqlx::query("UPDATE instances SET heartbeat_at = statement_timestamp() WHERE id = $1")
                .bind(&me.id)
                .execute(&mut *tx)
                .await?;
        let forgotten: Vec<(String, Timestamp)> = sqlx::query_as(
            "DELETE FROM instances i
             WHERE i.id <> $1
               AND i.heartbeat_at + GREATEST(i.lease_ms, 0) * $2 * interval '1 millisecond'
                   <= statement_timestamp()
               AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.lease_owner = i.id)
             RETURNING i.id, i.heartbeat_at",
        )
        .bind(&me.id)
        .bind(f64::from(FORGET_AFTER_LEASES))
        .fetch_all(&mut *tx)
        .await?;
        for (id, heartbeat) in forgotten {
            tracing::info!(instance = %id, heartbeat = %to_db(heartbeat), "forgot an instance long silent that holds no lease");
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets this instance at a graceful stop (after its leases were released).
    pub async fn remove_instance(&self, me: &Instance) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(&me.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Start-up recovery for `me`: releases the leases of `me.worker_id`'s dead instances and
    /// every expired lease, bumping versions, in one transaction. A live lease is never touched.
    /// The instances looked at are locked, so two processes recovering at once do not both
    /// report (and release for) the same dead instance. Silence and lease expiry are judged on
    /// the database's clock (`now` is not used).
    pub async fn release_dead_leases(&self, me: &Instance, _now: Timestamp) -> Result<Released> {
        let mut tx = self.begin().await?;
        let others: Vec<(String, String, i64, Option<i64>, bool)> = sqlx::query_as(
            "SELECT id, host, pid, pid_start,
                    heartbeat_at + GREATEST(lease_ms, 0) * interval '1 millisecond'
                        <= statement_timestamp()
             FROM instances
             WHERE worker_id = $1 AND id <> $2 ORDER BY id FOR UPDATE",
        )
        .bind(&me.worker_id)
        .bind(&me.id)
        .fetch_all(&mut *tx)
        .await?;
        let mut released = Released::default();
        for (id, host, pid, pid_start, silent) in others {
            let gone = host == me.host
                && u32::try_from(pid)
                    .is_ok_and(|pid| process_gone(pid, pid_start.map(|s| s as u64)));
            if !(silent || gone) {
                continue;
            }
            let done = sqlx::query(
                "UPDATE runs SET lease_owner = NULL, lease_until = NULL, version = version + 1
                 WHERE lease_owner = $1",
            )
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            released.leases += done.rows_affected();
            sqlx::query("DELETE FROM instances WHERE id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            released.dead_instances.push(id);
        }
        let expired = sqlx::query(
            "UPDATE runs SET lease_owner = NULL, lease_until = NULL, version = version + 1
             WHERE lease_owner IS NOT NULL AND lease_until <= statement_timestamp()",
        )
        .execute(&mut *tx)
        .await?;
        released.leases += expired.rows_affected();
        tx.commit().await?;
        Ok(released)
    }
}

// Owned resources (the SQLite store's `owned.rs`).

/// Forgets a registered resource inside a write transaction.
pub(super) async fn forget_in(tx: &mut PgConnection, kind: OwnedKind, name: &str) -> Result<()> {
    sqlx::query("DELETE FROM owned_resources WHERE kind = $1 AND name = $2")
        .bind(owned_kind(kind))
        .bind(name)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

impl PgStore {
    /// Records (or refreshes) a resource before it is created.
    pub async fn record_owned(
        &self,
        kind: OwnedKind,
        name: &str,
        spec: &Value,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO owned_resources (kind, name, spec, created_at)
             VALUES ($1, $2, $3::json, $4)
             ON CONFLICT (kind, name) DO UPDATE SET spec = excluded.spec",
        )
        .bind(owned_kind(kind))
        .bind(name)
        .bind(spec.to_string())
        .bind(micros(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn forget_owned(&self, kind: OwnedKind, name: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        forget_in(&mut tx, kind, name).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether a resource was registered here.
    pub async fn is_owned(&self, kind: OwnedKind, name: &str) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM owned_resources WHERE kind = $1 AND name = $2)",
        )
        .bind(owned_kind(kind))
        .bind(name)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Registered resources of a kind, newest first.
    pub async fn list_owned(&self, kind: OwnedKind) -> Result<Vec<Owned>> {
        let rows: Vec<(String, String, Timestamp)> = sqlx::query_as(
            "SELECT name, spec::text, created_at FROM owned_resources WHERE kind = $1
             ORDER BY created_at DESC, name LIMIT 1000",
        )
        .bind(owned_kind(kind))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(name, spec, created_at)| {
                Ok(Owned {
                    spec: serde_json::from_str(&spec)
                        .map_err(|e| Error::Corrupt(format!("spec: {e}")))?,
                    created_at,
                    name,
                })
            })
            .collect()
    }

    /// The registered endpoint configs whose variants use `model`. (A spec whose
    /// `ProductionVariants` is not an array has no variants, instead of failing the query.)
    pub async fn configs_using_model(&self, model: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT r.name FROM owned_resources r,
                 json_array_elements(CASE WHEN json_typeof(r.spec -> 'ProductionVariants') = 'array'
                                          THEN r.spec -> 'ProductionVariants' END) v
             WHERE r.kind = 'endpoint_config' AND (v ->> 'ModelName') = $1
             ORDER BY r.name",
        )
        .bind(model)
        .fetch_all(&self.pool)
        .await?)
    }
}

// History retention (the SQLite store's `retention.rs`).

/// Rows deleted per write transaction.
pub(super) const BATCH: i64 = 2_000;

impl PgStore {
    /// Deletes the history rows of runs finished before `cutoff`, except each run's last row, in
    /// one batch of at most `BATCH` rows; returns how many it deleted (0: nothing left to prune).
    pub async fn prune_history_batch(&self, cutoff: Timestamp) -> Result<u64> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "DELETE FROM run_events WHERE (run_id, seq) IN (
                 SELECT e.run_id, e.seq FROM run_events e JOIN runs r ON r.id = e.run_id
                 WHERE r.state IN (SELECT name FROM run_states WHERE terminal)
                   AND r.updated_at < $1
                   AND e.seq < (SELECT MAX(m.seq) FROM run_events m WHERE m.run_id = e.run_id)
                 LIMIT $2)",
        )
        .bind(micros(cutoff))
        .bind(BATCH)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            wake_replicas(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Prunes every finished run's history older than `cutoff`, batch by batch.
    pub async fn prune_history(&self, cutoff: Timestamp) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self.prune_history_batch(cutoff).await?;
            total += n;
            if n < BATCH as u64 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}

// Staging (the SQLite store's `staging.rs`).

fn staged((id, k, request): (String, String, String)) -> Option<StagedRun> {
    Some(StagedRun {
        id,
        kind: Kind::parse(&k)?,
        request: serde_json::from_str(&request).ok()?,
    })
}

impl PgStore {
    /// Runs of the staging kinds that are unfinished or were updated since `since`, newest first
    /// (at most `limit`), without a connection reference (their AWS is the service's own).
    pub async fn recent_staging_runs(
        &self,
        since: Timestamp,
        limit: i64,
    ) -> Result<Vec<StagedRun>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT id, kind, request::text FROM runs
             WHERE kind IN ('training', 'automl', 'script')
               AND (next_due_at IS NOT NULL OR updated_at >= $1)
               AND (request ->> 'connection') IS NULL
             ORDER BY created_at DESC LIMIT $2",
        )
        .bind(micros(since))
        .bind(limit)
        .fetch_all(&self.pool)
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
            "SELECT id, kind, request::text FROM runs r
             WHERE kind IN ('training', 'automl', 'script')
               AND next_due_at IS NULL AND updated_at < $1
               AND (request ->> 'connection') IS NULL
               AND NOT EXISTS (SELECT 1 FROM staging_purges p WHERE p.run_id = r.id)
             ORDER BY updated_at LIMIT $2",
        )
        .bind(micros(cutoff))
        .bind(limit)
        .fetch_all(&self.pool)
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
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO staging_purges (run_id, purged_at, detail) VALUES ($1, $2, $3)
             ON CONFLICT (run_id) DO NOTHING",
        )
        .bind(run_id)
        .bind(micros(now))
        .bind(detail)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// When a run's staged data was deleted (in the SQLite store's text form, `to_db`), and
    /// what was deleted.
    pub async fn staging_purge(&self, run_id: &str) -> Result<Option<(String, String)>> {
        let row: Option<(Timestamp, String)> =
            sqlx::query_as("SELECT purged_at, detail FROM staging_purges WHERE run_id = $1")
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(at, detail)| (to_db(at), detail)))
    }
}

// The List* sweeper's queries (the SQLite store's `sweep.rs`).

type FollowedRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Timestamp,
    Option<String>,
    Option<Vec<u8>>,
);

fn kind_names(kinds: &[Kind]) -> Vec<String> {
    kinds.iter().map(|k| k.as_str().to_string()).collect()
}

impl PgStore {
    /// The runs of `kinds` in `state` (the state that follows a live job).
    pub async fn followed_runs(&self, kinds: &[Kind], state: State) -> Result<Vec<FollowedRun>> {
        let rows: Vec<FollowedRow> = sqlx::query_as(
            "SELECT r.id, r.kind,
                    COALESCE(r.context ->> 'job_name', r.resource_name),
                    r.context ->> 'sagemaker_status',
                    r.updated_at,
                    (r.request -> 'connection')::text,
                    s.sealed
             FROM runs r LEFT JOIN run_secrets s ON s.run_id = r.id
             WHERE r.state = $1 AND r.kind = ANY($2)",
        )
        .bind(state.as_str())
        .bind(kind_names(kinds))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, k, job_name, status, updated_at, connection, sealed) in rows {
            let Some(job_name) = job_name else { continue };
            out.push(FollowedRun {
                id: uuid(&id)?,
                kind: kind(&k)?,
                job_name,
                status,
                updated_at,
                connection: connection
                    .and_then(|c| serde_json::from_str(&c).ok())
                    .filter(|c: &Value| !c.is_null()),
                sealed,
            });
        }
        Ok(out)
    }

    /// Makes the runs of `kinds` in `state` that are due later than `later_than` due now (not
    /// leased ones). Returns how many. On the database's clock: "later than" is its now plus
    /// `later_than - now`, and the runs become due at its now.
    pub async fn make_due_after(
        &self,
        kinds: &[Kind],
        state: State,
        later_than: Timestamp,
        now: Timestamp,
    ) -> Result<u64> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE runs SET next_due_at = statement_timestamp()
             WHERE state = $1 AND kind = ANY($2)
               AND next_due_at > statement_timestamp() + $3 * interval '1 microsecond'
               AND (lease_until IS NULL OR lease_until <= statement_timestamp())",
        )
        .bind(state.as_str())
        .bind(kind_names(kinds))
        .bind(micros_between(now, later_than))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            wake_replicas(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Makes the runs `ids` due now when they are still in `state`, not due yet and not leased,
    /// all on the database's clock (`now` is not used). Returns the ids it made due. The
    /// version is not bumped (see the SQLite store).
    pub async fn make_due(&self, ids: &[Uuid], state: State, _now: Timestamp) -> Result<Vec<Uuid>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        let mut tx = self.begin().await?;
        let updated: Vec<String> = sqlx::query_scalar(
            "UPDATE runs SET next_due_at = statement_timestamp()
             WHERE id = ANY($1) AND state = $2
               AND next_due_at > statement_timestamp()
               AND (lease_until IS NULL OR lease_until <= statement_timestamp())
             RETURNING id",
        )
        .bind(list)
        .bind(state.as_str())
        .fetch_all(&mut *tx)
        .await?;
        if !updated.is_empty() {
            wake_replicas(&mut tx).await?;
        }
        tx.commit().await?;
        updated.iter().map(|i| uuid(i)).collect()
    }
}

// The turns of the shared List* sweeps (the SQLite store's `sweep.rs`), on the database's clock.

impl PgStore {
    /// Takes the sweep of `kind` and `target` for `holder` until the database's now + `hold`
    /// when its last successful sweep started `every` or longer ago (or never) and nobody else
    /// holds it: `None` when it is not this replica's turn. Two replicas taking it at once
    /// queue on the row, and the second finds it held. (`now` is not used.)
    pub async fn take_sweep(
        &self,
        kind: Kind,
        target: &str,
        holder: &str,
        _now: Timestamp,
        every: Duration,
        hold: Duration,
    ) -> Result<Option<SweepTurn>> {
        let mut tx = self.begin().await?;
        let taken: Option<(Option<Timestamp>, Timestamp)> = sqlx::query_as(
            "INSERT INTO sweeps (kind, target, last_success, holder, held_until)
             VALUES ($1, $2, NULL, $3, statement_timestamp() + $4 * interval '1 microsecond')
             ON CONFLICT (kind, target) DO UPDATE
                 SET holder = excluded.holder, held_until = excluded.held_until
                 WHERE (sweeps.last_success IS NULL
                        OR sweeps.last_success
                           <= statement_timestamp() - $5 * interval '1 microsecond')
                   AND (sweeps.holder IS NULL OR sweeps.held_until <= statement_timestamp())
             RETURNING last_success, statement_timestamp()",
        )
        .bind(kind.as_str())
        .bind(target)
        .bind(holder)
        .bind(hold.as_micros() as f64)
        .bind(every.as_micros() as f64)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(taken.map(|(previous, started)| SweepTurn { started, previous }))
    }

    /// Lets go of a sweep `holder` took, recording `success` (its start) as the last success.
    /// Nothing changes when another replica took it over meanwhile.
    pub async fn finish_sweep(
        &self,
        kind: Kind,
        target: &str,
        holder: &str,
        success: Option<Timestamp>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE sweeps SET holder = NULL, held_until = NULL,
                 last_success = GREATEST(last_success, $4)
             WHERE kind = $1 AND target = $2 AND holder = $3",
        )
        .bind(kind.as_str())
        .bind(target)
        .bind(holder)
        .bind(success.map(micros))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// How long ago the last successful sweep of each kind and target started (on the
    /// database's clock; `now` is not used).
    pub async fn sweep_ages(&self, _now: Timestamp) -> Result<Vec<(Kind, String, Duration)>> {
        let rows: Vec<(String, String, f64)> = sqlx::query_as(
            "SELECT kind, target,
                    EXTRACT(EPOCH FROM statement_timestamp() - last_success)::float8
             FROM sweeps WHERE last_success IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, target, secs)| {
                let age = Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX);
                Some((Kind::parse(&k)?, target, age))
            })
            .collect())
    }
}
