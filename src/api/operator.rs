//! The operator API under `/api/v1`: list and inspect runs, cancel, and the declared workflows.

use super::dto::{EventDto, RunSummary, Tag};
use super::{ApiError, AppState};
use crate::model::{Kind, State};
use crate::store::{CancelOutcome, RunFilter};
use poem_openapi::param::{Path, Query};
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use uuid::Uuid;

pub struct OperatorApi(pub Option<AppState>);

#[derive(Object)]
struct RunPage {
    runs: Vec<RunSummary>,
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

#[derive(ApiResponse)]
enum CancelReply {
    /// The cancel request is recorded; the engine stops the work.
    #[oai(status = 202)]
    Accepted(Json<CancelAccepted>),
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

/// Records a cancel request (shared by the operator and the Essedum routes).
pub(super) async fn request_cancel(
    state: &AppState,
    id: Uuid,
    who: &str,
) -> Result<crate::store::Run, ApiError> {
    match state
        .store
        .request_cancel(id, state.clock.now(), &format!("cancel requested by {who}"))
        .await?
    {
        CancelOutcome::Requested(run) => {
            state.wake.notify_one();
            Ok(*run)
        }
        CancelOutcome::AlreadyTerminal(s) => Err(ApiError::conflict(format!(
            "the run is already {s}; there is nothing to cancel"
        ))),
        CancelOutcome::NotFound => Err(ApiError::not_found(format!("no run {id}"))),
    }
}

#[OpenApi]
impl OperatorApi {
    /// List runs, newest first, filtered by kind and state, paged with a cursor.
    #[oai(path = "/api/v1/runs", method = "get", tag = "Tag::Runs")]
    async fn list_runs(
        &self,
        kind: Query<Option<Kind>>,
        state: Query<Option<State>>,
        /// Page size, 1 to 1000 (default 50).
        limit: Query<Option<u32>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<RunPage>, ApiError> {
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
        let page = app
            .store
            .list_runs(&RunFilter {
                kind: kind.0,
                state: state.0,
                after,
                limit,
            })
            .await?;
        Ok(Json(RunPage {
            runs: page.runs.iter().map(RunSummary::from).collect(),
            next_cursor: page.next_cursor.map(|u| u.to_string()),
        }))
    }

    /// One run with its request, context, lease and whole transition history.
    #[oai(path = "/api/v1/runs/:id", method = "get", tag = "Tag::Runs")]
    async fn get_run(&self, id: Path<String>) -> Result<Json<RunDetail>, ApiError> {
        let app = state_of(&self.0)?;
        let id = parse_run_id(&id.0)?;
        let run = app
            .store
            .get_run(id)
            .await?
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

    /// Cancel a run: the engine stops its AWS job and ends it Cancelled. A finished run is a 409.
    #[oai(path = "/api/v1/runs/:id/cancel", method = "post", tag = "Tag::Runs")]
    async fn cancel_run(&self, id: Path<String>) -> Result<CancelReply, ApiError> {
        let app = state_of(&self.0)?;
        let run = request_cancel(app, parse_run_id(&id.0)?, "operator API").await?;
        Ok(CancelReply::Accepted(Json(CancelAccepted {
            id: run.id.to_string(),
            state: run.state,
            cancel_requested: true,
        })))
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
