//! SQL for runs and their history. Each function is one transaction; every transition is a
//! guarded update of the run plus one appended history row (DESIGN.md invariant 2). The
//! read-only queries (views, filters, counts) are in [`queries`].

use super::{Error, Result, SqliteStore};
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
    /// Since when the run's status checks have been failing (the first failure of the current
    /// streak); None while they succeed. The latest error is `last_error`, the count `attempt`.
    pub degraded_since: Option<Timestamp>,
    /// The caller that submitted the run.
    pub submitted_by: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A run this worker holds a lease on; `run.version` is the fencing token for its commit.
#[derive(Clone)]
pub struct ClaimedRun {
    pub run: Run,
    pub owner: String,
    /// The run was still leased by a holder whose lease had expired.
    pub took_over: bool,
    /// The run's sealed credentials ([`crate::secrets`]), read with the claim: they are sealed
    /// when the run is stored and never change, so its step need not read them again.
    pub sealed: Option<Vec<u8>>,
}

impl std::fmt::Debug for ClaimedRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedRun")
            .field("run", &self.run)
            .field("owner", &self.owner)
            .field("took_over", &self.took_over)
            .field("sealed", &self.sealed.is_some())
            .finish()
    }
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
    /// How many identical attempts this row stands for (repeats are collapsed into the latest
    /// row of their streak).
    pub repeats: i64,
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
    /// A status check failed while the run's job may be live: the run is degraded (since the
    /// first such failure). Any other transition clears it.
    pub degraded: bool,
    /// This attempt repeats the previous one (same state, same failure): instead of a new row
    /// per attempt, the streak keeps its first row and one latest row, updated in place.
    pub collapse: bool,
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
    /// Only runs whose status checks are failing (true) or not (false).
    pub degraded: Option<bool>,
    pub limit: u32,
}

#[derive(Clone, Debug)]
pub struct Page<R = Run> {
    pub runs: Vec<R>,
    pub next_cursor: Option<Uuid>,
}

/// A run as the operator listing shows it. Its times are the store's text form ([`to_db`],
/// which is also the API's): the listing passes them on without parsing and formatting them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub id: String,
    pub kind: Kind,
    pub state: State,
    pub resource_name: Option<String>,
    pub attempt: i64,
    pub cancel_requested: bool,
    pub last_error: Option<String>,
    pub degraded_since: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Run> for Summary {
    fn from(r: &Run) -> Self {
        Summary {
            id: r.id.to_string(),
            kind: r.kind,
            state: r.state,
            resource_name: r.resource_name.clone(),
            attempt: r.attempt,
            cancel_requested: r.cancel_requested,
            last_error: r.last_error.clone(),
            degraded_since: r.degraded_since.map(to_db),
            created_at: to_db(r.created_at),
            updated_at: to_db(r.updated_at),
        }
    }
}

/// The columns every run query returns (a macro so that queries stay string literals).
macro_rules! run_columns {
    () => {
        "id, kind, state, request, context, resource_name, attempt, version, next_due_at, \
         lease_owner, lease_until, cancel_requested, last_error, submitted_by, created_at, updated_at, \
         degraded_since"
    };
}

// After the macro: the queries use it too.
mod queries;

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
        degraded_since: opt_ts(row, "degraded_since")?,
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
        repeats: row.try_get("repeats")?,
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

/// Collapses a repeated attempt into the history: when the run's latest row is already the
/// "latest" row of a streak in `state`, it is updated in place (time, attempt, detail, error,
/// one more repeat); otherwise a new row is appended as the streak's latest row, pointing at the
/// row the streak started with. Returns false when `t` is not a repeat after all (the latest row
/// is no error in this state): the caller appends an ordinary row.
async fn collapse_into_latest(
    tx: &mut sqlx::SqliteConnection,
    run_id: &str,
    state: State,
    at: &str,
    t: &Transition,
) -> Result<bool> {
    let latest: Option<(i64, Option<i64>, bool)> = sqlx::query_as(
        "SELECT seq, repeat_of,
                COALESCE(from_state = ?2 AND to_state = ?2 AND error_class IS NOT NULL, 0)
         FROM run_events WHERE run_id = ?1 ORDER BY seq DESC LIMIT 1",
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
            "UPDATE run_events SET at = ?1, attempt = ?2, detail = ?3, error_class = ?4,
                 error = ?5, repeats = repeats + 1
             WHERE run_id = ?6 AND seq = ?7",
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
             VALUES (?1, ?2 + 1, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?2)",
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
    if super::idempotency::adopting(new.id) {
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE id = ?1"
        ))
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            return run_from_row(&row);
        }
    }
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

/// Claims up to `req.limit` due runs inside a write transaction (see [`SqliteStore::claim_due`]).
pub(super) async fn claim_in(
    tx: &mut sqlx::SqliteConnection,
    req: &super::ClaimRequest,
) -> Result<Vec<ClaimedRun>> {
    if req.limit == 0 {
        return Ok(Vec::new());
    }
    let now_s = to_db(req.now);
    let lease_until = to_db(req.lease_until);
    let due: Vec<(String, bool)> = sqlx::query_as(
        "SELECT id, lease_owner IS NOT NULL FROM runs
         WHERE next_due_at IS NOT NULL AND next_due_at <= ?1
           AND (lease_until IS NULL OR lease_until <= ?1)
         ORDER BY next_due_at LIMIT ?2",
    )
    .bind(&now_s)
    .bind(req.limit as i64)
    .fetch_all(&mut *tx)
    .await?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    // All of them in one statement (one hand-off to SQLite's thread instead of one per run);
    // RETURNING gives no order, so they are put back in the order they fell due.
    let ids = Value::from(due.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>()).to_string();
    let rows = sqlx::query(concat!(
        "UPDATE runs SET lease_owner = ?1, lease_until = ?2, version = version + 1
         WHERE id IN (SELECT value FROM json_each(?3)) RETURNING ",
        run_columns!(),
        ", (SELECT sealed FROM run_secrets WHERE run_id = runs.id) AS sealed"
    ))
    .bind(&req.owner)
    .bind(&lease_until)
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut by_id = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let run = run_from_row(row)?;
        by_id.insert(run.id.to_string(), (run, row.try_get("sealed")?));
    }
    let mut claimed = Vec::with_capacity(due.len());
    for (id, took_over) in due {
        let Some((run, sealed)) = by_id.remove(&id) else {
            return Err(Error::Corrupt(format!("claimed run {id} was not updated")));
        };
        claimed.push(ClaimedRun {
            run,
            owner: req.owner.clone(),
            took_over,
            sealed,
        });
    }
    Ok(claimed)
}

/// Commits a step's result inside a write transaction (see [`SqliteStore::commit_transition`]).
pub(super) async fn commit_in(
    tx: &mut sqlx::SqliteConnection,
    claimed: &ClaimedRun,
    t: &Transition,
    now: Timestamp,
) -> Result<TransitionOutcome> {
    let run = &claimed.run;
    let at = to_db(now);
    let id = run.id.to_string();
    // A cancel request that arrived while the step ran makes the run due now; one the step
    // already saw does not (its due time is its own answer to it: a backoff, a poll).
    //
    // Only the columns this transition can change are assigned: SQLite rewrites the entries of
    // every index that covers an assigned column (or whose WHERE names one) even when the value
    // stays the same, and most transitions are polls that keep their state, error and degraded
    // mark. The update is guarded by the claimed version, so the claimed row is the stored one
    // (a cancel request changes only `cancel_requested` and `next_due_at`, which the SQL reads).
    let mut sql = String::from(
        "UPDATE runs SET context = ?1, attempt = ?2,
             next_due_at = CASE WHEN ?3 IS NOT NULL AND cancel_requested = 1 AND ?7 = 0 AND ?3 > ?4 THEN ?4 ELSE ?3 END,
             version = version + 1, lease_owner = NULL, lease_until = NULL, updated_at = ?4",
    );
    let changes = ChangedColumns::of(run, t);
    let mut n = 7;
    let mut assign = |sql: &mut String, column: &str| {
        n += 1;
        sql.push_str(&format!(", {column} = ?{n}"));
    };
    if changes.state {
        assign(&mut sql, "state");
    }
    if changes.last_error.is_some() {
        assign(&mut sql, "last_error");
    }
    if changes.degraded_since.is_some() {
        assign(&mut sql, "degraded_since");
    }
    if t.withdraw_cancel {
        sql.push_str(", cancel_requested = 0");
    }
    sql.push_str(" WHERE id = ?5 AND version = ?6 RETURNING version");
    // Assembled from literals only (column names and numbered placeholders).
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(t.context.to_string())
        .bind(t.attempt)
        .bind(t.next_due_at.map(to_db))
        .bind(&at)
        .bind(&id)
        .bind(run.version)
        .bind(run.cancel_requested);
    if changes.state {
        query = query.bind(t.to.as_str());
    }
    if let Some(error) = changes.last_error {
        query = query.bind(error);
    }
    if let Some(degraded) = changes.degraded_since {
        query = query.bind(degraded.then(|| at.clone()));
    }
    let row = query.fetch_optional(&mut *tx).await?;
    let Some(row) = row else {
        return Ok(TransitionOutcome::Lost);
    };
    // Linked runs start in the same transaction; a child that cannot start (its resource is
    // busy) is reported in the parent's history instead.
    let mut detail = t.detail.clone();
    for child in &t.spawn {
        let note = match insert_in(&mut *tx, child, &at).await {
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
        super::owned::forget_in(&mut *tx, *kind, name).await?;
    }
    let collapsed = t.collapse
        && t.to == run.state
        && t.spawn.is_empty()
        && collapse_into_latest(&mut *tx, &id, run.state, &at, t).await?;
    if !collapsed && (t.record || t.to != run.state || t.error.is_some() || !t.spawn.is_empty()) {
        append_event(
            &mut *tx,
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
    Ok(TransitionOutcome::Committed {
        version: row.try_get("version")?,
    })
}

/// A transition [`commit_many_in`] can commit together with others: a step that keeps its
/// run's state, error and degraded mark (a poll that sees the job still running), with nothing
/// else to do in the transaction (no child run, no forgotten resource, no collapsed history).
pub(super) fn is_plain_poll(claimed: &ClaimedRun, t: &Transition) -> bool {
    let changes = ChangedColumns::of(&claimed.run, t);
    !changes.state
        && changes.last_error.is_none()
        && changes.degraded_since.is_none()
        && t.error.is_none()
        && !t.withdraw_cancel
        && !t.collapse
        && t.spawn.is_empty()
        && t.forget.is_empty()
}

/// Commits many plain polls ([`is_plain_poll`]) in two statements: one `UPDATE … FROM` of all
/// the runs, each still guarded by its claimed version, and one `INSERT` of the history rows of
/// those committed that record one. Exactly what [`commit_in`] does for each (the same columns
/// assigned, the same cancel rule, the same history row), with two hand-offs to SQLite's thread
/// for the whole batch instead of two per transition. Answers each in order.
pub(super) async fn commit_many_in(
    tx: &mut sqlx::SqliteConnection,
    polls: &[(&ClaimedRun, &Transition, Timestamp)],
) -> Result<Vec<TransitionOutcome>> {
    if polls.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Value> = polls
        .iter()
        .map(|(c, t, now)| {
            serde_json::json!([
                c.run.id.to_string(),
                c.run.version,
                t.context.to_string(),
                t.attempt,
                t.next_due_at.map(to_db),
                to_db(*now),
                c.run.cancel_requested,
            ])
        })
        .collect();
    let committed: Vec<(String, i64)> = sqlx::query_as(
        "UPDATE runs SET context = v.context, attempt = v.attempt,
             next_due_at = CASE WHEN v.due IS NOT NULL AND runs.cancel_requested = 1
                                     AND v.seen_cancel = 0 AND v.due > v.at
                                THEN v.at ELSE v.due END,
             version = runs.version + 1, lease_owner = NULL, lease_until = NULL, updated_at = v.at
         FROM (SELECT value ->> 0 AS id, value ->> 1 AS version, value ->> 2 AS context,
                      value ->> 3 AS attempt, value ->> 4 AS due, value ->> 5 AS at,
                      value ->> 6 AS seen_cancel
               FROM json_each(?1)) AS v
         WHERE runs.id = v.id AND runs.version = v.version
         RETURNING runs.id, runs.version",
    )
    .bind(Value::from(rows).to_string())
    .fetch_all(&mut *tx)
    .await?;
    let versions: std::collections::HashMap<String, i64> = committed.into_iter().collect();
    let mut outcomes = Vec::with_capacity(polls.len());
    let mut events = Vec::new();
    for (c, t, now) in polls {
        let id = c.run.id.to_string();
        match versions.get(&id) {
            Some(&version) => {
                if t.record {
                    events.push(serde_json::json!([
                        id,
                        c.run.state.as_str(),
                        to_db(*now),
                        t.attempt,
                        t.detail,
                    ]));
                }
                outcomes.push(TransitionOutcome::Committed { version });
            }
            None => outcomes.push(TransitionOutcome::Lost),
        }
    }
    if !events.is_empty() {
        // (One row per run: a batch holds at most one live claim of each run.)
        sqlx::query(
            "INSERT INTO run_events (run_id, seq, from_state, to_state, at, attempt, detail)
             SELECT e.value ->> 0,
                    (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_events WHERE run_id = e.value ->> 0),
                    e.value ->> 1, e.value ->> 1, e.value ->> 2, e.value ->> 3, e.value ->> 4
             FROM json_each(?1) AS e",
        )
        .bind(Value::from(events).to_string())
        .execute(&mut *tx)
        .await?;
    }
    Ok(outcomes)
}

/// Which of a run's indexed columns a transition changes, from the claimed row (which the
/// version guard makes the stored one). `Some(value)` is the new value of a changing column.
struct ChangedColumns<'a> {
    state: bool,
    last_error: Option<Option<&'a str>>,
    /// `Some(true)`: degraded from now on; `Some(false)`: no longer degraded.
    degraded_since: Option<bool>,
}

impl<'a> ChangedColumns<'a> {
    fn of(run: &Run, t: &'a Transition) -> Self {
        let state = t.to != run.state;
        let was_degraded = run.degraded_since.is_some();
        // A new error is recorded; leaving the state or the degraded mark clears the old one.
        let last_error = match &t.error {
            Some((_, message)) => Some(Some(message.as_str())),
            None if state || (was_degraded && !t.degraded) => {
                run.last_error.is_some().then_some(None)
            }
            None => None,
        };
        let degraded_since = match (was_degraded, t.degraded) {
            (false, true) => Some(true),
            (true, false) => Some(false),
            _ => None,
        };
        ChangedColumns {
            state,
            last_error,
            degraded_since,
        }
    }
}

impl Transition {
    /// The history detail of a run the engine failed because a step's error gave up (a refused
    /// effect, an exhausted budget), as opposed to AWS's own outcome for the job. Only such a
    /// run may still have a live job for a cancel to stop ([`SqliteStore::rearm_to_cancel`]).
    pub fn gave_up_detail(state: State) -> String {
        format!("failed in {state}")
    }
}

fn is_gave_up_detail(detail: Option<&str>, state: State) -> bool {
    detail == Some(Transition::gave_up_detail(state).as_str())
}

pub enum CancelOutcome {
    Requested(Box<Run>),
    AlreadyTerminal(State),
    NotFound,
}

impl SqliteStore {
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
        // (An adopted run keeps the credentials sealed with it the first time.)
        sqlx::query(
            "INSERT INTO run_secrets (run_id, sealed) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
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
            sqlx::query_scalar("SELECT sealed FROM run_secrets WHERE run_id = ?1")
                .bind(id.to_string())
                .fetch_optional(self.reader())
                .await?,
        )
    }

    /// Claims up to `limit` due, unleased (or lease-expired) runs for `owner` until `lease_until`.
    /// Claiming bumps the version, so a worker whose lease ran out can no longer commit. The
    /// claim joins the next group commit ([`super::group`]).
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
        self.group
            .claim(super::ClaimRequest {
                owner: owner.to_string(),
                now,
                lease_until,
                limit,
            })
            .await
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
    /// in one transaction shared with the other steps committing at the same moment (group
    /// commit, [`super::group`]); answered only once that transaction is durable. The lease is
    /// released. A pending cancel request makes the run due now.
    pub async fn commit_transition(
        &self,
        claimed: &ClaimedRun,
        t: &Transition,
        now: Timestamp,
    ) -> Result<TransitionOutcome> {
        Ok(self
            .group
            .commit(claimed.clone(), t.clone(), now, None)
            .await?
            .outcome)
    }

    /// [`SqliteStore::commit_transition`], then, in the same transaction, claims the next due runs
    /// for the worker slot the step frees (`next`).
    pub async fn commit_and_claim(
        &self,
        claimed: &ClaimedRun,
        t: &Transition,
        now: Timestamp,
        next: super::ClaimRequest,
    ) -> Result<super::Committed> {
        self.group
            .commit(claimed.clone(), t.clone(), now, Some(next))
            .await
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

    /// A cancel of a Failed run whose AWS job may still be running: `target(run, failed_in)`
    /// names the state that stops the job (its Cancelling), given the state the run failed in
    /// when the engine gave up on an error there (None when the run ended by AWS's own outcome:
    /// its job surely ended). When it does, the run is re-armed there with its cancel requested,
    /// due now, in one transaction with a history row; otherwise nothing changes.
    pub async fn rearm_to_cancel(
        &self,
        id: Uuid,
        now: Timestamp,
        detail: &str,
        target: impl FnOnce(&Run, Option<State>) -> Option<State>,
    ) -> Result<CancelOutcome> {
        let at = to_db(now);
        let id_s = id.to_string();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE id = ?1"
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
            "SELECT from_state, detail FROM run_events WHERE run_id = ?1 AND to_state = 'Failed'
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
            "UPDATE runs SET state = ?1, attempt = 0, next_due_at = ?2, lease_owner = NULL,
                 lease_until = NULL, cancel_requested = 1, degraded_since = NULL,
                 version = version + 1, updated_at = ?2
             WHERE id = ?3 RETURNING ",
            run_columns!()
        ))
        .bind(to.as_str())
        .bind(&at)
        .bind(&id_s)
        .fetch_one(&mut *tx)
        .await?;
        append_event(
            &mut tx,
            &id_s,
            Some(State::Failed),
            to,
            &at,
            0,
            Some(detail),
            None,
        )
        .await?;
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
                 lease_until = NULL, last_error = NULL, degraded_since = NULL,
                 version = version + 1, updated_at = ?2
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
}
