//! The operator API under `/api/v1`: list and inspect runs, cancel, and the declared workflows.

use super::auth::{Caller, Role};
use super::body::RawBody;
use super::dto::{EventDto, RunSummary, Tag};
use super::fast_json::SerdeJson;
use super::{ApiError, AppState};
use crate::model::{Kind, State};
use crate::store::Run;
use crate::store::{CancelOutcome, RetryOutcome, RunFilter};
use crate::validate::{Fields, InputError};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use uuid::Uuid;

pub struct OperatorApi(pub Option<AppState>);

#[derive(Object, serde::Serialize)]
struct RunPage {
    runs: Vec<RunSummary>,
    /// Runs per state (of the `kind` asked for, or all kinds), whatever the other filters.
    counts: std::collections::BTreeMap<String, i64>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    next_cursor: Option<String>,
}

/// A run with everything the store knows about it, and its whole history.
#[derive(Object)]
struct RunDetail {
    #[oai(flatten)]
    summary: RunSummary,
    /// The validated request the run was created from.
    request: serde_json::Value,
    /// What the workflow has recorded so far (AWS names, ARNs, statuses).
    context: serde_json::Value,
    version: i64,
    next_due_at: Option<String>,
    lease_owner: Option<String>,
    lease_until: Option<String>,
    history: Vec<EventDto>,
}

#[derive(Object)]
struct CancelAccepted {
    id: String,
    state: State,
    cancel_requested: bool,
}

/// An operator action's optional explanation, recorded in the run's history.
#[derive(Object)]
#[oai(rename = "OperatorAction", deny_unknown_fields)]
#[allow(dead_code)]
struct ActionSchema {
    /// Why (free text, at most 1000 characters).
    reason: Option<String>,
}

/// Parses `{reason?}` (an empty body is allowed).
fn parse_reason(body: serde_json::Value) -> Result<Option<String>, ApiError> {
    if body.is_null() {
        return Ok(None);
    }
    let mut f = Fields::new(body, &["reason"])?;
    let reason = f.opt_str("reason")?;
    if reason.as_ref().is_some_and(|r| r.chars().count() > 1000) {
        return Err(InputError::invalid("reason", "at most 1000 characters").into());
    }
    Ok(reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty()))
}

fn action_detail(action: &str, who: &str, reason: Option<&str>) -> String {
    match reason {
        Some(r) => format!("{action} by {who}: {r}"),
        None => format!("{action} by {who}"),
    }
}

#[derive(Object)]
struct RetryAccepted {
    id: String,
    /// The state the run was re-armed in.
    state: State,
    attempt: i64,
}

#[derive(ApiResponse)]
enum RetryReply {
    /// The run is re-armed and due now; the engine resumes it.
    #[oai(status = 202)]
    Accepted(Json<RetryAccepted>),
}

#[derive(ApiResponse)]
enum CancelReply {
    /// The cancel request is recorded; the engine stops the work.
    #[oai(status = 202)]
    Accepted(Json<CancelAccepted>),
}

/// A caller's role.
#[derive(poem_openapi::Enum)]
#[oai(rename = "Role", rename_all = "lowercase")]
enum RoleDto {
    /// Submits runs, and reads and cancels its own.
    Submitter,
    /// Every run, and retry.
    Operator,
}

/// The caller of a request.
#[derive(Object)]
struct WhoAmI {
    /// The token's name (who the history names for its actions).
    name: String,
    role: RoleDto,
}

#[derive(Object)]
struct EdgeDto {
    from: State,
    to: State,
}

#[derive(Object)]
struct StateDto {
    name: State,
    doc: String,
    terminal: bool,
    timeout_secs: Option<u64>,
}

#[derive(Object)]
struct WorkflowDto {
    kind: Kind,
    description: String,
    initial: State,
    states: Vec<StateDto>,
    edges: Vec<EdgeDto>,
    /// The state machine as a Mermaid state diagram.
    mermaid: String,
}

pub(super) fn parse_run_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id)
        .map_err(|_| ApiError::bad_request(format!("{id:?} is not a run id (a UUID)"), Some("id")))
}

pub(super) fn state_of(api: &Option<AppState>) -> Result<&AppState, ApiError> {
    api.as_ref()
        .ok_or_else(|| ApiError::unavailable("not serving"))
}

/// The submitter whose runs a caller is limited to: a submitter sees only what it submitted.
pub(super) fn owner_scope(caller: &Caller) -> Option<&str> {
    (caller.role == Role::Submitter).then_some(caller.name.as_str())
}

/// A run as the caller may see it: another submitter's run is reported as not found.
pub(super) fn visible(caller: &Caller, run: Option<Run>) -> Option<Run> {
    run.filter(|r| owner_scope(caller).is_none_or(|o| r.submitted_by.as_deref() == Some(o)))
}

/// Records a cancel request (shared by the operator and the Essedum routes).
pub(super) async fn request_cancel(
    state: &AppState,
    id: Uuid,
    caller: &Caller,
    reason: Option<&str>,
) -> Result<Run, ApiError> {
    if visible(caller, state.store.get_run(id).await?).is_none() {
        return Err(ApiError::not_found(format!("no run {id}")));
    }
    let detail = action_detail("cancel requested", &caller.name, reason);
    match state
        .store
        .request_cancel(id, state.clock.now(), &detail)
        .await?
    {
        CancelOutcome::Requested(run) => {
            state.wake.notify_one();
            Ok(*run)
        }
        CancelOutcome::AlreadyTerminal(State::Failed) => cancel_failed(state, id, &detail).await,
        CancelOutcome::AlreadyTerminal(s) => Err(ApiError::conflict(format!(
            "the run is already {s}; there is nothing to cancel"
        ))),
        CancelOutcome::NotFound => Err(ApiError::not_found(format!("no run {id}"))),
    }
}

/// A cancel of a Failed run whose AWS job may still be running: it failed in a state that
/// follows the job (`follows_job`), because the engine gave up on an error (not by AWS's own
/// outcome), and its job was named. It is re-armed in its workflow's Cancelling state so that
/// the stop reaches AWS; it ends Cancelled, or Done/Failed when the job had already ended.
pub(super) async fn cancel_failed(
    state: &AppState,
    id: Uuid,
    detail: &str,
) -> Result<Run, ApiError> {
    let definitions = state.definitions.clone();
    let detail = format!("{detail}; the job may still be running: re-armed to stop it");
    let outcome = state
        .store
        .rearm_to_cancel(id, state.clock.now(), &detail, |run, failed_in| {
            let def = definitions.iter().find(|d| d.kind == run.kind)?;
            let failed_in = failed_in?;
            let named = run
                .context
                .get("job_name")
                .and_then(|n| n.as_str())
                .is_some_and(|n| !n.is_empty());
            let stops = def.state(State::Cancelling).is_some();
            (def.follows_job(failed_in) && named && stops).then_some(State::Cancelling)
        })
        .await?;
    match outcome {
        CancelOutcome::Requested(run) => {
            state.wake.notify_one();
            tracing::info!(run_id = %run.id, "Failed run re-armed to stop its job");
            Ok(*run)
        }
        CancelOutcome::AlreadyTerminal(s) => Err(ApiError::conflict(format!(
            "the run is already {s} and its job has ended; there is nothing to cancel"
        ))),
        CancelOutcome::NotFound => Err(ApiError::not_found(format!("no run {id}"))),
    }
}

#[OpenApi]
impl OperatorApi {
    /// List runs, newest first, filtered, paged with a cursor, with counts per state.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/api/v1/runs", method = "get", tag = "Tag::Runs")]
    async fn list_runs(
        &self,
        kind: Query<Option<Kind>>,
        state: Query<Option<State>>,
        /// Created at or after this time (RFC 3339).
        created_after: Query<Option<String>>,
        /// Created before this time (RFC 3339).
        created_before: Query<Option<String>>,
        /// Last changed at or after this time (RFC 3339).
        updated_after: Query<Option<String>>,
        /// Last changed before this time (RFC 3339).
        updated_before: Query<Option<String>>,
        /// Only unfinished runs that have not advanced for this many seconds.
        stuck_secs: Query<Option<u64>>,
        /// Only runs whose last attempt recorded an error (true) or not (false).
        has_error: Query<Option<bool>>,
        /// Only runs whose status checks are failing while their AWS job may still run (true),
        /// or not (false).
        degraded: Query<Option<bool>>,
        /// Page size, 1 to 1000 (default 50).
        limit: Query<Option<u32>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        caller: Data<&Caller>,
    ) -> Result<SerdeJson<RunPage>, ApiError> {
        let app = state_of(&self.0)?;
        let after = cursor
            .0
            .as_deref()
            .map(|c| {
                Uuid::parse_str(c).map_err(|_| {
                    ApiError::bad_request(
                        "cursor is not a cursor from a previous page",
                        Some("cursor"),
                    )
                })
            })
            .transpose()?;
        let limit = limit.0.unwrap_or(50);
        if !(1..=1000).contains(&limit) {
            return Err(
                crate::validate::InputError::invalid("limit", "must be from 1 to 1000").into(),
            );
        }
        let time = |field: &str, v: &Option<String>| {
            v.as_deref()
                .map(|s| {
                    crate::clock::from_db(s).ok_or_else(|| {
                        ApiError::from(InputError::invalid(
                            field,
                            "must be an RFC 3339 time such as 2026-11-27T12:00:00Z",
                        ))
                    })
                })
                .transpose()
        };
        let now = app.clock.now();
        let filter = RunFilter {
            kind: kind.0,
            state: state.0,
            after,
            created_after: time("created_after", &created_after.0)?,
            created_before: time("created_before", &created_before.0)?,
            updated_after: time("updated_after", &updated_after.0)?,
            updated_before: time("updated_before", &updated_before.0)?,
            stuck_since: stuck_secs
                .0
                .map(|s| now - chrono::Duration::seconds(s.min(10 * 365 * 86_400) as i64)),
            has_error: has_error.0,
            degraded: degraded.0,
            submitted_by: owner_scope(&caller).map(str::to_string),
            limit,
            ..RunFilter::default()
        };
        // Summaries only (the page shows neither the request nor the context of its runs), and
        // the counts, in one query.
        // The cursor must be a run the caller may see (checked in the same query).
        let Some((page, counts)) = app
            .store
            .list_run_summaries_with_counts(&filter, kind.0, owner_scope(&caller))
            .await?
        else {
            return Err(ApiError::bad_request(
                "cursor is not a cursor from a previous page",
                Some("cursor"),
            ));
        };
        Ok(SerdeJson(RunPage {
            runs: page.runs.into_iter().map(RunSummary::from).collect(),
            counts: counts
                .into_iter()
                .map(|(s, n)| (s.to_string(), n))
                .collect(),
            next_cursor: page.next_cursor.map(|u| u.to_string()),
        }))
    }

    /// One run with its request, context, lease and whole transition history.
    #[oai(path = "/api/v1/runs/:id", method = "get", tag = "Tag::Runs")]
    async fn get_run(
        &self,
        id: Path<String>,
        caller: Data<&Caller>,
    ) -> Result<Json<RunDetail>, ApiError> {
        let app = state_of(&self.0)?;
        let id = parse_run_id(&id.0)?;
        let run = visible(&caller, app.store.get_run(id).await?)
            .ok_or_else(|| ApiError::not_found(format!("no run {id}")))?;
        let history = app.store.events(id).await?;
        Ok(Json(RunDetail {
            summary: RunSummary::from(&run),
            request: run.request.clone(),
            context: run.context.clone(),
            version: run.version,
            next_due_at: run.next_due_at.map(super::dto::time),
            lease_owner: run.lease_owner.clone(),
            lease_until: run.lease_until.map(super::dto::time),
            history: history.iter().map(EventDto::from).collect(),
        }))
    }

    /// Cancel a run: the engine stops its AWS job and ends it Cancelled. A Failed run whose job
    /// may still be running (it failed on our side while following the job) is re-armed to stop
    /// it; any other finished run is a 409.
    #[oai(path = "/api/v1/runs/:id/cancel", method = "post", tag = "Tag::Runs")]
    async fn cancel_run(
        &self,
        id: Path<String>,
        /// `{"reason": "..."}` (optional; `{}` or an empty JSON body is fine).
        body: Json<RawBody<ActionSchema>>,
        caller: Data<&Caller>,
    ) -> Result<CancelReply, ApiError> {
        let app = state_of(&self.0)?;
        let reason = parse_reason(body.0.value)?;
        let run = request_cancel(app, parse_run_id(&id.0)?, &caller, reason.as_deref()).await?;
        Ok(CancelReply::Accepted(Json(CancelAccepted {
            id: run.id.to_string(),
            state: run.state,
            cancel_requested: true,
        })))
    }

    /// Retry a Failed run from the last state that is safe to repeat (declared per workflow in
    /// `retry_from`), or re-arm a stuck non-terminal run now. AWS resources that already exist are
    /// adopted, never duplicated. Done and Cancelled runs cannot be retried (409).
    #[oai(path = "/api/v1/runs/:id/retry", method = "post", tag = "Tag::Runs")]
    async fn retry_run(
        &self,
        id: Path<String>,
        /// `{"reason": "..."}` (optional; `{}` or an empty JSON body is fine).
        body: Json<RawBody<ActionSchema>>,
        caller: Data<&Caller>,
    ) -> Result<RetryReply, ApiError> {
        let app = state_of(&self.0)?;
        let id = parse_run_id(&id.0)?;
        let reason = parse_reason(body.0.value)?;
        let detail = action_detail("retry requested", &caller.name, reason.as_deref());
        let definitions = app.definitions.clone();
        let outcome = app
            .store
            .retry_run(
                id,
                app.clock.now(),
                &detail,
                |kind, current, failed_in| match (current, failed_in) {
                    (s, _) if !s.is_terminal() => Some(s),
                    (State::Failed, Some(from)) => definitions
                        .iter()
                        .find(|d| d.kind == kind)
                        .and_then(|d| d.retry_target(from)),
                    _ => None,
                },
            )
            .await?;
        match outcome {
            RetryOutcome::Rearmed(run) => {
                app.wake.notify_one();
                tracing::info!(run_id = %run.id, state = %run.state, "run re-armed by an operator");
                Ok(RetryReply::Accepted(Json(RetryAccepted {
                    id: run.id.to_string(),
                    state: run.state,
                    attempt: run.attempt,
                })))
            }
            RetryOutcome::Refused {
                state,
                failed_in: Some(from),
            } => Err(ApiError::conflict(format!(
                "the run is {state} (it failed in {from}, which its workflow does not allow to retry)"
            ))),
            RetryOutcome::Refused { state, .. } => Err(ApiError::conflict(format!(
                "the run is {state}; only Failed or unfinished runs can be retried"
            ))),
            RetryOutcome::EndpointBusy { other } => Err(ApiError::conflict(format!(
                "run {other} is still changing the same endpoint; retry this run when it has finished"
            ))),
            RetryOutcome::NotFound => Err(ApiError::not_found(format!("no run {id}"))),
        }
    }

    /// Who the presented token is: its name and role (the operator console shows it and hides
    /// what the role may not do). Without authentication configured, an anonymous operator.
    #[oai(path = "/api/v1/whoami", method = "get", tag = "Tag::Runs")]
    async fn whoami(&self, caller: Data<&Caller>) -> Json<WhoAmI> {
        Json(WhoAmI {
            name: caller.name.clone(),
            role: match caller.role {
                Role::Submitter => RoleDto::Submitter,
                Role::Operator => RoleDto::Operator,
            },
        })
    }

    /// The declared workflows (states, edges, Mermaid diagram).
    #[oai(path = "/api/v1/workflows", method = "get", tag = "Tag::Workflows")]
    async fn workflows(&self) -> Result<Json<Vec<WorkflowDto>>, ApiError> {
        let app = state_of(&self.0)?;
        Ok(Json(
            app.definitions
                .iter()
                .map(|d| WorkflowDto {
                    kind: d.kind,
                    description: d.description.clone(),
                    initial: d.initial,
                    states: d
                        .states
                        .iter()
                        .map(|s| StateDto {
                            name: s.name,
                            doc: s.doc.clone(),
                            terminal: s.name.is_terminal(),
                            timeout_secs: s.timeout_secs,
                        })
                        .collect(),
                    edges: d
                        .edges
                        .iter()
                        .map(|(from, to)| EdgeDto {
                            from: *from,
                            to: *to,
                        })
                        .collect(),
                    mermaid: d.mermaid(),
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod page_json_tests {
    use super::*;
    use poem_openapi::types::ToJSON;

    fn summary(degraded: bool, with_options: bool) -> RunSummary {
        let now = chrono::Utc::now();
        let run = Run {
            id: Uuid::now_v7(),
            kind: Kind::Training,
            state: State::Polling,
            request: serde_json::json!({}),
            context: serde_json::json!({}),
            resource_name: with_options.then(|| "essedum-train-x".to_string()),
            attempt: 3,
            version: 7,
            next_due_at: Some(now),
            lease_owner: None,
            lease_until: None,
            cancel_requested: with_options,
            last_error: with_options.then(|| "ThrottlingException: \"slow\" down\n".to_string()),
            degraded_since: degraded.then_some(now),
            submitted_by: None,
            created_at: now,
            updated_at: now,
        };
        RunSummary::from(&run)
    }

    /// The listing is written by serde (`SerdeJson`): it must be exactly what poem-openapi's
    /// own JSON of the documented schema would be.
    #[test]
    fn a_run_page_written_by_serde_equals_its_openapi_json() {
        for next_cursor in [None, Some("0190".to_string())] {
            let page = RunPage {
                runs: vec![
                    summary(false, false),
                    summary(true, true),
                    summary(false, true),
                ],
                counts: [("Done".to_string(), 4), ("Polling".to_string(), 2)].into(),
                next_cursor,
            };
            assert_eq!(
                serde_json::to_value(&page).unwrap(),
                page.to_json().unwrap()
            );
        }
        let empty = RunPage {
            runs: Vec::new(),
            counts: Default::default(),
            next_cursor: None,
        };
        assert_eq!(
            serde_json::to_value(&empty).unwrap(),
            empty.to_json().unwrap()
        );
    }
}
