//! SQL for runs and their history. Each function is one transaction; every transition is a
//! guarded update of the run plus one appended history row (DESIGN.md invariant 2).

use super::{Error, Result, Store};
use crate::clock::{Timestamp, from_db, to_db};
use crate::model::{ErrorClass, Kind, State};
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

/// A run as stored.
#[derive(Clone, Debug)]
pub struct Run {
    pub id: Uuid,
    pub kind: Kind,
    pub state: State,
    pub request: Value,
    pub context: Value,
    pub resource_name: Option<String>,
    pub attempt: i64,
    pub version: i64,
    pub next_due_at: Option<Timestamp>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<Timestamp>,
    pub cancel_requested: bool,
    pub last_error: Option<String>,
    /// The caller that submitted the run.
    pub submitted_by: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A run this worker holds a lease on; `run.version` is the fencing token for its commit.
#[derive(Clone, Debug)]
pub struct ClaimedRun {
    pub run: Run,
    pub owner: String,
    /// The run was still leased by a holder whose lease had expired.
    pub took_over: bool,
}

/// One history row.
#[derive(Clone, Debug)]
pub struct Event {
    pub seq: i64,
    pub from_state: Option<State>,
    pub to_state: State,
    pub at: Timestamp,
    pub attempt: i64,
    pub detail: Option<String>,
    pub error_class: Option<ErrorClass>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewRun {
    pub id: Uuid,
    pub kind: Kind,
    pub state: State,
    pub request: Value,
    pub context: Value,
    pub resource_name: Option<String>,
    pub submitted_by: Option<String>,
    pub detail: String,
}

/// What a step decided, for the engine to commit.
#[derive(Clone, Debug)]
pub struct Transition {
    pub to: State,
    pub context: Value,
    pub attempt: i64,
    /// None exactly when `to` is terminal.
    pub next_due_at: Option<Timestamp>,
    /// Append a history row (always done when the state changes or an error is recorded).
    pub record: bool,
    pub detail: Option<String>,
    pub error: Option<(ErrorClass, String)>,
    /// Runs to start in the same transaction (a linked child run, e.g. AutoML's deployment).
    pub spawn: Vec<NewRun>,
    /// Registered resources the step deleted in SageMaker, to forget in the same transaction.
    pub forget: Vec<(super::OwnedKind, String)>,
    /// The step answered the run's cancel request without cancelling (AWS refused the stop):
    /// clear it, so the run goes on and a new request is a new try.
    pub withdraw_cancel: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TransitionOutcome {
    Committed {
        version: i64,
    },
    /// The version moved on: another worker owns the run now, and this result is dropped.
    Lost,
}

#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub kind: Option<Kind>,
    /// Only runs of one of these kinds (empty: any).
    pub kinds: Vec<Kind>,
    pub state: Option<State>,
    /// Return runs strictly older (in listing order) than this run.
    pub after: Option<Uuid>,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
    pub updated_after: Option<Timestamp>,
    pub updated_before: Option<Timestamp>,
    /// Only unfinished runs that have not advanced since this time.
    pub stuck_since: Option<Timestamp>,
    /// Only runs with (true) or without (false) a recorded error.
    pub has_error: Option<bool>,
    /// Only runs this caller submitted.
    pub submitted_by: Option<String>,
    pub limit: u32,
}

#[derive(Clone, Debug)]
pub struct Page {
    pub runs: Vec<Run>,
    pub next_cursor: Option<Uuid>,
}

/// The columns every run query returns (a macro so that queries stay string literals).
macro_rules! run_columns {
    () => {
        "id, kind, state, request, context, resource_name, attempt, version, next_due_at, \
         lease_owner, lease_until, cancel_requested, last_error, submitted_by, created_at, updated_at"
    };
}

fn ts(row: &SqliteRow, col: &str) -> Result<Timestamp> {
    let s: String = row.try_get(col)?;
    from_db(&s).ok_or_else(|| Error::Corrupt(format!("{col}: bad timestamp {s:?}")))
}

fn opt_ts(row: &SqliteRow, col: &str) -> Result<Option<Timestamp>> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| from_db(&s).ok_or_else(|| Error::Corrupt(format!("{col}: bad timestamp {s:?}"))))
        .transpose()
}

fn json(row: &SqliteRow, col: &str) -> Result<Value> {
    let s: String = row.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| Error::Corrupt(format!("{col}: {e}")))
}

fn state(s: &str) -> Result<State> {
    State::parse(s).ok_or_else(|| Error::Corrupt(format!("unknown state {s:?}")))
}

fn run_from_row(row: &SqliteRow) -> Result<Run> {
    let id: String = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let st: String = row.try_get("state")?;
    Ok(Run {
        id: Uuid::parse_str(&id).map_err(|e| Error::Corrupt(format!("id: {e}")))?,
        kind: Kind::parse(&kind).ok_or_else(|| Error::Corrupt(format!("kind {kind:?}")))?,
        state: state(&st)?,
        request: json(row, "request")?,
        context: json(row, "context")?,
        resource_name: row.try_get("resource_name")?,
        attempt: row.try_get("attempt")?,
        version: row.try_get("version")?,
        next_due_at: opt_ts(row, "next_due_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until: opt_ts(row, "lease_until")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        last_error: row.try_get("last_error")?,
        submitted_by: row.try_get("submitted_by")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

fn event_from_row(row: &SqliteRow) -> Result<Event> {
    let from: Option<String> = row.try_get("from_state")?;
    let to: String = row.try_get("to_state")?;
    let class: Option<String> = row.try_get("error_class")?;
    Ok(Event {
        seq: row.try_get("seq")?,
        from_state: from.as_deref().map(state).transpose()?,
        to_state: state(&to)?,
        at: ts(row, "at")?,
        attempt: row.try_get("attempt")?,
        detail: row.try_get("detail")?,
        error_class: class.as_deref().and_then(ErrorClass::parse),
        error: row.try_get("error")?,
    })
}

#[allow(clippy::too_many_arguments)]
async fn append_event(
    tx: &mut sqlx::SqliteConnection,
    run_id: &str,
    from: Option<State>,
    to: State,
    at: &str,
    attempt: i64,
    detail: Option<&str>,
    error: Option<&(ErrorClass, String)>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO run_events (run_id, seq, from_state, to_state, at, attempt, detail, error_class, error)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_events WHERE run_id = ?1),
                 ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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

pub enum RetryOutcome {
    /// The run is due now in this state, with a fresh attempt count.
    Rearmed(Box<Run>),
    /// The run cannot be retried from where it is (`failed_in`: the state a Failed run failed in).
    Refused {
        state: State,
        failed_in: Option<State>,
    },
    /// Another unfinished change to the same endpoint (`other`) holds it; nothing changed.
    EndpointBusy {
        other: String,
    },
    NotFound,
}

/// Inserts a run, due now, with its first history row, inside a write transaction.
async fn insert_in(tx: &mut sqlx::SqliteConnection, new: &NewRun, at: &str) -> Result<Run> {
    super::idempotency::storing();
    let id = new.id.to_string();
    let row = sqlx::query(concat!(
        "INSERT INTO runs (id, kind, state, request, context, resource_name, next_due_at, created_at,
                 updated_at, submitted_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7, ?8) RETURNING ",
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
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Error::NameTaken(new.resource_name.clone().unwrap_or_default())
        }
        _ => Error::Database(e),
    })?;
    append_event(tx, &id, None, new.state, at, 0, Some(&new.detail), None).await?;
    super::idempotency::record_in(tx, &id, at).await?;
    run_from_row(&row)
}

pub enum CancelOutcome {
    Requested(Box<Run>),
    AlreadyTerminal(State),
    NotFound,
}

impl Store {
    /// Inserts a run, due now, with its first history row, in one transaction.
    pub async fn insert_run(&self, new: NewRun, now: Timestamp) -> Result<Run> {
        let at = to_db(now);
        let mut tx = self.begin_write().await?;
        let run = insert_in(&mut tx, &new, &at).await?;
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
        let at = to_db(now);
        let mut tx = self.begin_write().await?;
        let run = insert_in(&mut tx, &new, &at).await?;
        sqlx::query("INSERT INTO run_secrets (run_id, sealed) VALUES (?1, ?2)")
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
            sqlx::query_scalar("SELECT sealed FROM run_secrets WHERE run_id = ?1")
                .bind(id.to_string())
                .fetch_optional(self.reader())
                .await?,
        )
    }

    /// Claims up to `limit` due, unleased (or lease-expired) runs for `owner` until `lease_until`.
    /// Claiming bumps the version, so a worker whose lease ran out can no longer commit.
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
        let now_s = to_db(now);
        let mut tx = self.begin_write().await?;
        let due: Vec<(String, bool)> = sqlx::query_as(
            "SELECT id, lease_owner IS NOT NULL FROM runs
             WHERE next_due_at IS NOT NULL AND next_due_at <= ?1
               AND (lease_until IS NULL OR lease_until <= ?1)
             ORDER BY next_due_at LIMIT ?2",
        )
        .bind(&now_s)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(due.len());
        for (id, took_over) in due {
            let row = sqlx::query(concat!(
                "UPDATE runs SET lease_owner = ?1, lease_until = ?2, version = version + 1
                 WHERE id = ?3 RETURNING ",
                run_columns!()
            ))
            .bind(owner)
            .bind(to_db(lease_until))
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
            claimed.push(ClaimedRun {
                run: run_from_row(&row)?,
                owner: owner.to_string(),
                took_over,
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Extends a held lease; false when the run is no longer ours.
    pub async fn renew_lease(&self, claimed: &ClaimedRun, lease_until: Timestamp) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE runs SET lease_until = ?1 WHERE id = ?2 AND version = ?3 AND lease_owner = ?4",
        )
        .bind(to_db(lease_until))
        .bind(claimed.run.id.to_string())
        .bind(claimed.run.version)
        .bind(&claimed.owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Commits a step's result: guarded update of the run and (when recorded) one history row,
    /// in one transaction. The lease is released. A pending cancel request makes the run due now.
    pub async fn commit_transition(
        &self,
        claimed: &ClaimedRun,
        t: &Transition,
        now: Timestamp,
    ) -> Result<TransitionOutcome> {
        let run = &claimed.run;
        let at = to_db(now);
        let id = run.id.to_string();
        let mut tx = self.begin_write().await?;
        // A cancel request that arrived while the step ran makes the run due now; one the step
        // already saw does not (its due time is its own answer to it: a backoff, a poll).
        let row = sqlx::query(
            "UPDATE runs SET state = ?1, context = ?2, attempt = ?3,
                 next_due_at = CASE WHEN ?4 IS NOT NULL AND cancel_requested = 1 AND ?9 = 0 AND ?4 > ?5 THEN ?5 ELSE ?4 END,
                 last_error = CASE WHEN ?6 IS NOT NULL THEN ?6 WHEN ?1 <> state THEN NULL ELSE last_error END,
                 cancel_requested = CASE WHEN ?10 = 1 THEN 0 ELSE cancel_requested END,
                 version = version + 1, lease_owner = NULL, lease_until = NULL, updated_at = ?5
             WHERE id = ?7 AND version = ?8
             RETURNING version",
        )
        .bind(t.to.as_str())
        .bind(t.context.to_string())
        .bind(t.attempt)
        .bind(t.next_due_at.map(to_db))
        .bind(&at)
        .bind(t.error.as_ref().map(|(_, m)| m.as_str()))
        .bind(&id)
        .bind(run.version)
        .bind(run.cancel_requested)
        .bind(t.withdraw_cancel)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(TransitionOutcome::Lost);
        };
        // Linked runs start in the same transaction; a child that cannot start (its resource is
        // busy) is reported in the parent's history instead.
        let mut detail = t.detail.clone();
        for child in &t.spawn {
            let note = match insert_in(&mut tx, child, &at).await {
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
            super::owned::forget_in(&mut tx, *kind, name).await?;
        }
        if t.record || t.to != run.state || t.error.is_some() || !t.spawn.is_empty() {
            append_event(
                &mut tx,
                &id,
                Some(run.state),
                t.to,
                &at,
                t.attempt,
                detail.as_deref(),
                t.error.as_ref(),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(TransitionOutcome::Committed {
            version: row.try_get("version")?,
        })
    }

    /// Releases every lease held by `owner` (a restart of the same worker, or a graceful stop),
    /// bumping versions so that no step of the previous holder can still commit.
    pub async fn release_leases(&self, owner: &str) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE runs SET lease_owner = NULL, lease_until = NULL, version = version + 1
             WHERE lease_owner = ?1",
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
        let at = to_db(now);
        let id_s = id.to_string();
        let mut tx = self.begin_write().await?;
        let current: Option<(String, i64, i64)> =
            sqlx::query_as("SELECT state, cancel_requested, attempt FROM runs WHERE id = ?1")
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
        let row = sqlx::query(concat!("UPDATE runs SET cancel_requested = 1, next_due_at = MIN(next_due_at, ?1), updated_at = ?1
             WHERE id = ?2 RETURNING ", run_columns!(), ""))
        .bind(&at)
        .bind(&id_s)
        .fetch_one(&mut *tx)
        .await?;
        if already == 0 {
            append_event(
                &mut tx,
                &id_s,
                Some(st),
                st,
                &at,
                attempt,
                Some(detail),
                None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(CancelOutcome::Requested(Box::new(run_from_row(&row)?)))
    }

    /// Re-arms a run for an operator: `target(kind, current state, state a Failed run failed in)`
    /// names the state to resume in, or refuses. The run becomes due now with attempt 0, any lease
    /// is dropped and the version bumped (fencing a step that may still be running), and the
    /// operator's action is appended to the history, all in one transaction.
    pub async fn retry_run(
        &self,
        id: Uuid,
        now: Timestamp,
        detail: &str,
        target: impl FnOnce(Kind, State, Option<State>) -> Option<State>,
    ) -> Result<RetryOutcome> {
        let at = to_db(now);
        let id_s = id.to_string();
        let mut tx = self.begin_write().await?;
        let current: Option<(String, String)> =
            sqlx::query_as("SELECT kind, state FROM runs WHERE id = ?1")
                .bind(&id_s)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((kind, current)) = current else {
            return Ok(RetryOutcome::NotFound);
        };
        let kind = Kind::parse(&kind).ok_or_else(|| Error::Corrupt(format!("kind {kind:?}")))?;
        let current = state(&current)?;
        let failed_in = if current == State::Failed {
            let from: Option<Option<String>> = sqlx::query_scalar(
                "SELECT from_state FROM run_events WHERE run_id = ?1 AND to_state = 'Failed'
                 ORDER BY seq DESC LIMIT 1",
            )
            .bind(&id_s)
            .fetch_optional(&mut *tx)
            .await?;
            from.flatten().as_deref().map(state).transpose()?
        } else {
            None
        };
        let Some(to) = target(kind, current, failed_in) else {
            return Ok(RetryOutcome::Refused {
                state: current,
                failed_in,
            });
        };
        let row = sqlx::query(concat!(
            "UPDATE runs SET state = ?1, attempt = 0, next_due_at = ?2, lease_owner = NULL,
                 lease_until = NULL, last_error = NULL, version = version + 1, updated_at = ?2
             WHERE id = ?3 RETURNING ",
            run_columns!()
        ))
        .bind(to.as_str())
        .bind(&at)
        .bind(&id_s)
        .fetch_one(&mut *tx)
        .await;
        let row = match row {
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                let other: Option<String> = sqlx::query_scalar(
                    "SELECT o.id FROM runs o, runs r WHERE r.id = ?1 AND o.id <> r.id
                       AND o.kind IN ('deployment', 'teardown') AND o.next_due_at IS NOT NULL
                       AND json_extract(o.request, '$.endpoint_name')
                           = json_extract(r.request, '$.endpoint_name')",
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
        append_event(
            &mut tx,
            &id_s,
            Some(current),
            to,
            &at,
            0,
            Some(detail),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(RetryOutcome::Rearmed(Box::new(run_from_row(&row)?)))
    }

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
            "SELECT seq, from_state, to_state, at, attempt, detail, error_class, error
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

    /// Deletes a finished run and its history; false when there is no such finished run.
    pub async fn delete_finished_run(&self, id: Uuid) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM runs WHERE id = ?1 AND next_due_at IS NULL")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
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

    /// Counts of non-terminal runs (for start-up logging).
    pub async fn count_unfinished(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE next_due_at IS NOT NULL")
                .fetch_one(self.reader())
                .await?,
        )
    }
}
