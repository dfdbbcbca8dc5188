//! Runs and their history: every write, each one transaction (the SQLite store's `runs.rs`).
//! Every transition is a guarded update of the run plus one appended history row (DESIGN.md
//! invariant 2); every read-then-write of a run locks its row first, so that the history's
//! sequence numbers and the checks before a change hold against other replicas.

use super::{PgStore, micros, micros_between, wake_replicas};
use crate::clock::Timestamp;
use crate::failpoint;
use crate::model::{ErrorClass, Kind, State};
use crate::store::{
    CancelOutcome, ClaimRequest, ClaimedRun, Committed, Error, Event, NewRun, OwnedKind, Result,
    RetryOutcome, Run, Transition, TransitionOutcome,
};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

pub(super) fn state(s: &str) -> Result<State> {
    State::parse(s).ok_or_else(|| Error::Corrupt(format!("unknown state {s:?}")))
}

pub(super) fn kind(s: &str) -> Result<Kind> {
    Kind::parse(s).ok_or_else(|| Error::Corrupt(format!("kind {s:?}")))
}

pub(super) fn uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| Error::Corrupt(format!("id: {e}")))
}

/// JSON read as text (NULL: a column that was not read, `Value::Null`).
fn json(row: &PgRow, col: &str) -> Result<Value> {
    let s: Option<String> = row.try_get(col)?;
    match s {
        Some(s) => serde_json::from_str(&s).map_err(|e| Error::Corrupt(format!("{col}: {e}"))),
        None => Ok(Value::Null),
    }
}

/// A run from the columns of `run_columns!` (or `summary_columns!`).
pub(super) fn run_from_row(row: &PgRow) -> Result<Run> {
    let id: String = row.try_get("id")?;
    let k: String = row.try_get("kind")?;
    let st: String = row.try_get("state")?;
    Ok(Run {
        id: uuid(&id)?,
        kind: kind(&k)?,
        state: state(&st)?,
        request: json(row, "request")?,
        context: json(row, "context")?,
        resource_name: row.try_get("resource_name")?,
        attempt: row.try_get("attempt")?,
        version: row.try_get("version")?,
        next_due_at: row.try_get("next_due_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until: row.try_get("lease_until")?,
        cancel_requested: row.try_get("cancel_requested")?,
        last_error: row.try_get("last_error")?,
        degraded_since: row.try_get("degraded_since")?,
        submitted_by: row.try_get("submitted_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) fn event_from_row(row: &PgRow) -> Result<Event> {
    let from: Option<String> = row.try_get("from_state")?;
    let to: String = row.try_get("to_state")?;
    let class: Option<String> = row.try_get("error_class")?;
    Ok(Event {
        seq: row.try_get("seq")?,
        from_state: from.as_deref().map(state).transpose()?,
        to_state: state(&to)?,
        at: row.try_get("at")?,
        attempt: row.try_get("attempt")?,
        detail: row.try_get("detail")?,
        error_class: class.as_deref().and_then(ErrorClass::parse),
        error: row.try_get("error")?,
        repeats: row.try_get("repeats")?,
    })
}

pub(super) fn owned_kind(kind: OwnedKind) -> &'static str {
    match kind {
        OwnedKind::Model => "model",
        OwnedKind::EndpointConfig => "endpoint_config",
    }
}

/// Appends a history row. The caller holds the run's row lock (its guarded update, or a
/// `FOR UPDATE`), so no other transaction appends to the same run meanwhile, and this
/// statement's snapshot already sees every row committed before it.
#[allow(clippy::too_many_arguments)]
async fn append_event(
    tx: &mut PgConnection,
    run_id: &str,
    from: Option<State>,
    to: State,
    at: Timestamp,
    attempt: i64,
    detail: Option<&str>,
    error: Option<&(ErrorClass, String)>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO run_events (run_id, seq, from_state, to_state, at, attempt, detail, error_class, error)
         VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_events WHERE run_id = $1),
                 $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(run_id)
    .bind(from.map(State::as_str))
    .bind(to.as_str())
    .bind(at)
    .bind(attempt)
    .bind(detail)
    .bind(error.map(|(c, _)| c.as_str()))
    .bind(error.map(|(_, m)| m.as_str()))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Collapses a repeated attempt into the history (see the SQLite store's
/// `collapse_into_latest`): false when `t` is not a repeat after all.
async fn collapse_into_latest(
    tx: &mut PgConnection,
    run_id: &str,
    state: State,
    at: Timestamp,
    t: &Transition,
) -> Result<bool> {
    let latest: Option<(i64, Option<i64>, bool)> = sqlx::query_as(
        "SELECT seq, repeat_of,
                COALESCE(from_state = $2 AND to_state = $2 AND error_class IS NOT NULL, false)
         FROM run_events WHERE run_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(run_id)
    .bind(state.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((seq, repeat_of, failed_in_state)) = latest else {
        return Ok(false);
    };
    if !failed_in_state {
        return Ok(false);
    }
    let error = t.error.as_ref();
    if repeat_of.is_some() {
        sqlx::query(
            "UPDATE run_events SET at = $1, attempt = $2, detail = $3, error_class = $4,
                 error = $5, repeats = repeats + 1
             WHERE run_id = $6 AND seq = $7",
        )
        .bind(at)
        .bind(t.attempt)
        .bind(t.detail.as_deref())
        .bind(error.map(|(c, _)| c.as_str()))
        .bind(error.map(|(_, m)| m.as_str()))
        .bind(run_id)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query(
            "INSERT INTO run_events (run_id, seq, from_state, to_state, at, attempt, detail,
                 error_class, error, repeat_of)
             VALUES ($1, $2 + 1, $3, $3, $4, $5, $6, $7, $8, $2)",
        )
        .bind(run_id)
        .bind(seq)
        .bind(state.as_str())
        .bind(at)
        .bind(t.attempt)
        .bind(t.detail.as_deref())
        .bind(error.map(|(c, _)| c.as_str()))
        .bind(error.map(|(_, m)| m.as_str()))
        .execute(&mut *tx)
        .await?;
    }
    Ok(true)
}

/// Inserts a run, due now, with its first history row, inside a write transaction.
///
/// A run whose id, resource name or endpoint is taken is `NameTaken`, as in SQLite; here the
/// insert says so with `ON CONFLICT DO NOTHING` (no row back) instead of an error, because an
/// error would abort the whole PostgreSQL transaction, and a linked child that cannot start
/// must not undo its parent's transition.
async fn insert_in(tx: &mut PgConnection, new: &NewRun, at: Timestamp) -> Result<Run> {
    crate::store::idempotency::storing();
    let id = new.id.to_string();
    if crate::store::idempotency::adopting(new.id) {
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE id = $1"
        ))
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            return run_from_row(&row);
        }
    }
    let row = sqlx::query(concat!(
        "INSERT INTO runs (id, kind, state, request, context, resource_name, next_due_at,
                 created_at, updated_at, submitted_by)
             VALUES ($1, $2, $3, $4::json, $5::json, $6, LEAST($7, statement_timestamp()),
                     $7, $7, $8)
             ON CONFLICT DO NOTHING RETURNING ",
        run_columns!()
    ))
    .bind(&id)
    .bind(new.kind.as_str())
    .bind(new.state.as_str())
    .bind(new.request.to_string())
    .bind(new.context.to_string())
    .bind(new.resource_name.as_deref())
    .bind(at)
    .bind(new.submitted_by.as_deref())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(Error::NameTaken(
            new.resource_name.clone().unwrap_or_default(),
        ));
    };
    append_event(tx, &id, None, new.state, at, 0, Some(&new.detail), None).await?;
    wake_replicas(tx).await?;
    // The request's Idempotency-Key, in the run's transaction (the SQLite store's
    // `idempotency::record_in`): a key another request stored first rolls this run back.
    if let Some(sub) = crate::store::Submission::current()
        && let Some(claim) = sub.take_claim()
    {
        match super::misc::record_key_in(tx, &claim, &id, at).await {
            Ok(()) => sub.set_recorded(&id),
            Err(e) => {
                if matches!(e, Error::NameTaken(_)) {
                    sub.set_lost_race();
                }
                return Err(e);
            }
        }
    }
    run_from_row(&row)
}

/// Claims up to `req.limit` due runs inside a write transaction (see [`PgStore::claim_due`]):
/// the due, unleased (or lease-expired) runs are locked with `FOR UPDATE SKIP LOCKED`, so a
/// run another replica is claiming (or committing) at this moment is passed over instead of
/// waited for, and leased in the same statement. Oldest due first.
///
/// Due and expired are judged on the database's clock, and the lease runs until the database's
/// now plus the request's lease duration (`lease_until - now`): a replica whose clock runs
/// ahead neither takes a live lease nor claims a run early (see the module documentation).
async fn claim_in(tx: &mut PgConnection, req: &ClaimRequest) -> Result<Vec<ClaimedRun>> {
    if req.limit == 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "WITH due AS (
             SELECT id AS due_id, lease_owner IS NOT NULL AS took_over FROM runs
             WHERE next_due_at IS NOT NULL AND next_due_at <= statement_timestamp()
               AND (lease_until IS NULL OR lease_until <= statement_timestamp())
             ORDER BY next_due_at LIMIT $1
             FOR UPDATE SKIP LOCKED)
         UPDATE runs SET lease_owner = $2,
             lease_until = statement_timestamp() + $3 * interval '1 microsecond',
             version = version + 1
         FROM due WHERE id = due.due_id
         RETURNING ",
        run_columns!(),
        ", due.took_over,
           (SELECT s.sealed FROM run_secrets s WHERE s.run_id = runs.id) AS sealed"
    ))
    .bind(i64::from(req.limit))
    .bind(&req.owner)
    .bind(micros_between(req.now, req.lease_until))
    .fetch_all(&mut *tx)
    .await?;
    let mut claimed = rows
        .iter()
        .map(|row| {
            Ok(ClaimedRun {
                run: run_from_row(row)?,
                owner: req.owner.clone(),
                took_over: row.try_get("took_over")?,
                sealed: row.try_get("sealed")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // RETURNING has no order of its own.
    claimed.sort_by_key(|c| c.run.next_due_at);
    Ok(claimed)
}

/// Commits a step's result inside a write transaction (see [`PgStore::commit_transition`]).
async fn commit_in(
    tx: &mut PgConnection,
    claimed: &ClaimedRun,
    t: &Transition,
    now: Timestamp,
) -> Result<TransitionOutcome> {
    let run = &claimed.run;
    let at = micros(now);
    let id = run.id.to_string();
    // A cancel request that arrived while the step ran makes the run due now; one the step
    // already saw does not (its due time is its own answer to it: a backoff, a poll). The
    // guard is the version the claim gave the run and the claim's owner: a run claimed again
    // (by anyone), released or re-armed since has another version, and updates nothing.
    // The due time is on the database's clock: its now plus the step's delay ($4, in
    // microseconds; a negative delay is due at once).
    let version: Option<i64> = sqlx::query_scalar(
        "UPDATE runs SET state = $1, context = $2::json, attempt = $3,
             next_due_at = CASE WHEN $4::float8 IS NULL THEN NULL
                                WHEN cancel_requested AND NOT $9 AND $4 > 0
                                    THEN statement_timestamp()
                                ELSE statement_timestamp() + $4 * interval '1 microsecond' END,
             last_error = CASE WHEN $6::text IS NOT NULL THEN $6 WHEN $1 <> state THEN NULL
                               WHEN NOT $11 AND degraded_since IS NOT NULL THEN NULL
                               ELSE last_error END,
             degraded_since = CASE WHEN $11 THEN COALESCE(degraded_since, $5) ELSE NULL END,
             cancel_requested = CASE WHEN $10 THEN false ELSE cancel_requested END,
             version = version + 1, lease_owner = NULL, lease_until = NULL, updated_at = $5
         WHERE id = $7 AND version = $8 AND lease_owner = $12
         RETURNING version",
    )
    .bind(t.to.as_str())
    .bind(t.context.to_string())
    .bind(t.attempt)
    .bind(t.next_due_at.map(|due| micros_between(at, micros(due))))
    .bind(at)
    .bind(t.error.as_ref().map(|(_, m)| m.as_str()))
    .bind(&id)
    .bind(run.version)
    .bind(run.cancel_requested)
    .bind(t.withdraw_cancel)
    .bind(t.degraded)
    .bind(&claimed.owner)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(version) = version else {
        return Ok(TransitionOutcome::Lost);
    };
    // Linked runs start in the same transaction; a child that cannot start (its resource is
    // busy) is reported in the parent's history instead.
    let mut detail = t.detail.clone();
    for child in &t.spawn {
        let note = match insert_in(&mut *tx, child, at).await {
            Ok(_) => format!("started {} run {}", child.kind, child.id),
            Err(Error::NameTaken(_)) => format!(
                "{} run not started: another change of the same resource is running",
                child.kind
            ),
            Err(e) => return Err(e),
        };
        detail = Some(match detail {
            Some(d) => format!("{d}; {note}"),
            None => note,
        });
    }
    for (kind, name) in &t.forget {
        super::misc::forget_in(&mut *tx, *kind, name).await?;
    }
    let collapsed = t.collapse
        && t.to == run.state
        && t.spawn.is_empty()
        && collapse_into_latest(&mut *tx, &id, run.state, at, t).await?;
    if !collapsed && (t.record || t.to != run.state || t.error.is_some() || !t.spawn.is_empty()) {
        append_event(
            &mut *tx,
            &id,
            Some(run.state),
            t.to,
            at,
            t.attempt,
            detail.as_deref(),
            t.error.as_ref(),
        )
        .await?;
    }
    Ok(TransitionOutcome::Committed { version })
}

fn is_gave_up_detail(detail: Option<&str>, state: State) -> bool {
    detail == Some(Transition::gave_up_detail(state).as_str())
}

impl PgStore {
    /// Inserts a run, due now, with its first history row, in one transaction.
    pub async fn insert_run(&self, new: NewRun, now: Timestamp) -> Result<Run> {
        let mut tx = self.begin().await?;
        let run = insert_in(&mut tx, &new, micros(now)).await?;
        tx.commit().await?;
        Ok(run)
    }

    /// Inserts a run with its sealed credentials (see [`crate::secrets`]), in one transaction.
    pub async fn insert_run_with_secret(
        &self,
        new: NewRun,
        sealed: Vec<u8>,
        now: Timestamp,
    ) -> Result<Run> {
        let mut tx = self.begin().await?;
        let run = insert_in(&mut tx, &new, micros(now)).await?;
        // (An adopted run keeps the credentials sealed with it the first time.)
        sqlx::query(
            "INSERT INTO run_secrets (run_id, sealed) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(new.id.to_string())
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(run)
    }

    /// The sealed credentials stored with a run, if any.
    pub async fn run_secret(&self, id: Uuid) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT sealed FROM run_secrets WHERE run_id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Claims up to `limit` due, unleased (or lease-expired) runs for `owner` until
    /// `lease_until`, in one transaction. Claiming bumps the version, so a worker whose lease
    /// ran out can no longer commit. Replicas claiming at once get disjoint runs.
    pub async fn claim_due(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedRun>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let request = ClaimRequest {
            owner: owner.to_string(),
            now,
            lease_until,
            limit,
        };
        self.count_engine_write();
        let mut tx = self.begin().await?;
        let claimed = claim_in(&mut tx, &request).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// Extends a held lease; false when the run is no longer ours. The lease runs until the
    /// database's now plus what is left of `lease_until` on this host's clock (the engine's
    /// [`SystemClock`](crate::clock::SystemClock), which computed it).
    pub async fn renew_lease(&self, claimed: &ClaimedRun, lease_until: Timestamp) -> Result<bool> {
        use crate::clock::Clock as _;
        let left = micros_between(crate::clock::SystemClock.now(), lease_until);
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE runs SET lease_until = statement_timestamp() + $1 * interval '1 microsecond'
             WHERE id = $2 AND version = $3 AND lease_owner = $4",
        )
        .bind(left)
        .bind(claimed.run.id.to_string())
        .bind(claimed.run.version)
        .bind(&claimed.owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Commits a step's result: guarded update of the run and (when recorded) one history row,
    /// in one transaction, answered once it is committed. The lease is released. A pending
    /// cancel request makes the run due now.
    pub async fn commit_transition(
        &self,
        claimed: &ClaimedRun,
        t: &Transition,
        now: Timestamp,
    ) -> Result<TransitionOutcome> {
        Ok(self.commit_one(claimed, t, now, None).await?.outcome)
    }

    /// [`PgStore::commit_transition`], then, in the same transaction, claims the next due runs
    /// for the worker slot the step frees (`next`).
    pub async fn commit_and_claim(
        &self,
        claimed: &ClaimedRun,
        t: &Transition,
        now: Timestamp,
        next: ClaimRequest,
    ) -> Result<Committed> {
        self.commit_one(claimed, t, now, Some(&next)).await
    }

    async fn commit_one(
        &self,
        claimed: &ClaimedRun,
        t: &Transition,
        now: Timestamp,
        next: Option<&ClaimRequest>,
    ) -> Result<Committed> {
        self.count_engine_write();
        let mut tx = self.begin().await?;
        let outcome = commit_in(&mut tx, claimed, t, now).await?;
        let next = match next {
            Some(request) => claim_in(&mut tx, request).await?,
            None => Vec::new(),
        };
        // The SQLite store's crash points, at the same moments.
        failpoint::hit("store.group.before_commit").await;
        tx.commit().await?;
        failpoint::hit("store.group.after_commit").await;
        Ok(Committed { outcome, next })
    }

    /// Releases every lease held by `owner` (a restart of the same worker, or a graceful stop),
    /// bumping versions so that no step of the previous holder can still commit.
    pub async fn release_leases(&self, owner: &str) -> Result<u64> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE runs SET lease_owner = NULL, lease_until = NULL, version = version + 1
             WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Records an operator's cancel request and makes the run due now. The engine acts on it.
    pub async fn request_cancel(
        &self,
        id: Uuid,
        now: Timestamp,
        detail: &str,
    ) -> Result<CancelOutcome> {
        let at = micros(now);
        let id_s = id.to_string();
        let mut tx = self.begin().await?;
        let current: Option<(String, bool, i64)> = sqlx::query_as(
            "SELECT state, cancel_requested, attempt FROM runs WHERE id = $1 FOR UPDATE",
        )
        .bind(&id_s)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((st, already, attempt)) = current else {
            return Ok(CancelOutcome::NotFound);
        };
        let st = state(&st)?;
        if st.is_terminal() {
            return Ok(CancelOutcome::AlreadyTerminal(st));
        }
        let row = sqlx::query(concat!(
            "UPDATE runs SET cancel_requested = true,
                 next_due_at = LEAST(next_due_at, $1, statement_timestamp()),
                 updated_at = $1
             WHERE id = $2 RETURNING ",
            run_columns!()
        ))
        .bind(at)
        .bind(&id_s)
        .fetch_one(&mut *tx)
        .await?;
        if !already {
            append_event(
                &mut tx,
                &id_s,
                Some(st),
                st,
                at,
                attempt,
                Some(detail),
                None,
            )
            .await?;
        }
        wake_replicas(&mut tx).await?;
        tx.commit().await?;
        Ok(CancelOutcome::Requested(Box::new(run_from_row(&row)?)))
    }

    /// A cancel of a Failed run whose AWS job may still be running (see the SQLite store's
    /// `rearm_to_cancel`): re-armed in the state `target` names, with its cancel requested,
    /// due now, in one transaction with a history row; otherwise nothing changes.
    pub async fn rearm_to_cancel(
        &self,
        id: Uuid,
        now: Timestamp,
        detail: &str,
        target: impl FnOnce(&Run, Option<State>) -> Option<State>,
    ) -> Result<CancelOutcome> {
        let at = micros(now);
        let id_s = id.to_string();
        let mut tx = self.begin().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE id = $1 FOR UPDATE"
        ))
        .bind(&id_s)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(run) = row.as_ref().map(run_from_row).transpose()? else {
            return Ok(CancelOutcome::NotFound);
        };
        if run.state != State::Failed {
            return Ok(if run.state.is_terminal() {
                CancelOutcome::AlreadyTerminal(run.state)
            } else {
                CancelOutcome::NotFound
            });
        }
        let failed: Option<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT from_state, detail FROM run_events WHERE run_id = $1 AND to_state = 'Failed'
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(&id_s)
        .fetch_optional(&mut *tx)
        .await?;
        let failed_in = match failed {
            Some((Some(from), detail)) => {
                let from = state(&from)?;
                is_gave_up_detail(detail.as_deref(), from).then_some(from)
            }
            _ => None,
        };
        let Some(to) = target(&run, failed_in) else {
            return Ok(CancelOutcome::AlreadyTerminal(run.state));
        };
        let row = sqlx::query(concat!(
            "UPDATE runs SET state = $1, attempt = 0,
                 next_due_at = LEAST($2, statement_timestamp()), lease_owner = NULL,
                 lease_until = NULL, cancel_requested = true, degraded_since = NULL,
                 version = version + 1, updated_at = $2
             WHERE id = $3 RETURNING ",
            run_columns!()
        ))
        .bind(to.as_str())
        .bind(at)
        .bind(&id_s)
        .fetch_one(&mut *tx)
        .await?;
        append_event(
            &mut tx,
            &id_s,
            Some(State::Failed),
            to,
            at,
            0,
            Some(detail),
            None,
        )
        .await?;
        wake_replicas(&mut tx).await?;
        tx.commit().await?;
        Ok(CancelOutcome::Requested(Box::new(run_from_row(&row)?)))
    }

    /// Re-arms a run for an operator (see the SQLite store's `retry_run`): due now with attempt
    /// 0, any lease dropped and the version bumped, the operator's action in the history, all
    /// in one transaction.
    pub async fn retry_run(
        &self,
        id: Uuid,
        now: Timestamp,
        detail: &str,
        target: impl FnOnce(Kind, State, Option<State>) -> Option<State>,
    ) -> Result<RetryOutcome> {
        let at = micros(now);
        let id_s = id.to_string();
        let mut tx = self.begin().await?;
        let current: Option<(String, String)> =
            sqlx::query_as("SELECT kind, state FROM runs WHERE id = $1 FOR UPDATE")
                .bind(&id_s)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((k, current)) = current else {
            return Ok(RetryOutcome::NotFound);
        };
        let k = kind(&k)?;
        let current = state(&current)?;
        let failed_in = if current == State::Failed {
            let from: Option<Option<String>> = sqlx::query_scalar(
                "SELECT from_state FROM run_events WHERE run_id = $1 AND to_state = 'Failed'
                 ORDER BY seq DESC LIMIT 1",
            )
            .bind(&id_s)
            .fetch_optional(&mut *tx)
            .await?;
            from.flatten().as_deref().map(state).transpose()?
        } else {
            None
        };
        let Some(to) = target(k, current, failed_in) else {
            return Ok(RetryOutcome::Refused {
                state: current,
                failed_in,
            });
        };
        // A unique violation (another unfinished change of the same endpoint) aborts a
        // PostgreSQL transaction: the savepoint keeps it usable to name the other run.
        sqlx::query("SAVEPOINT rearm").execute(&mut *tx).await?;
        let row = sqlx::query(concat!(
            "UPDATE runs SET state = $1, attempt = 0,
                 next_due_at = LEAST($2, statement_timestamp()), lease_owner = NULL,
                 lease_until = NULL, last_error = NULL, degraded_since = NULL,
                 version = version + 1, updated_at = $2
             WHERE id = $3 RETURNING ",
            run_columns!()
        ))
        .bind(to.as_str())
        .bind(at)
        .bind(&id_s)
        .fetch_one(&mut *tx)
        .await;
        let row = match row {
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                sqlx::query("ROLLBACK TO SAVEPOINT rearm")
                    .execute(&mut *tx)
                    .await?;
                let other: Option<String> = sqlx::query_scalar(
                    "SELECT o.id FROM runs o, runs r WHERE r.id = $1 AND o.id <> r.id
                       AND o.kind IN ('deployment', 'teardown') AND o.next_due_at IS NOT NULL
                       AND (o.request ->> 'endpoint_name') = (r.request ->> 'endpoint_name')",
                )
                .bind(&id_s)
                .fetch_optional(&mut *tx)
                .await?;
                return Ok(RetryOutcome::EndpointBusy {
                    other: other.unwrap_or_default(),
                });
            }
            r => r?,
        };
        append_event(&mut tx, &id_s, Some(current), to, at, 0, Some(detail), None).await?;
        wake_replicas(&mut tx).await?;
        tx.commit().await?;
        Ok(RetryOutcome::Rearmed(Box::new(run_from_row(&row)?)))
    }

    /// Deletes a finished run and its history; false when there is no such finished run.
    pub async fn delete_finished_run(&self, id: Uuid) -> Result<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM runs WHERE id = $1 AND next_due_at IS NULL")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}
