//! Reply shapes shared by the surfaces, and their mapping from stored runs.

use crate::clock::{Timestamp, to_db};
use crate::model::{ErrorClass, Kind, State};
use crate::store::{Event, Run};
use crate::workflows::input::Origin;
use crate::workflows::job::JobContext;
use poem_openapi::{Object, Tags};

#[derive(Tags)]
pub enum Tag {
    /// Essedum's training routes (SageMaker training and AutoML jobs).
    Training,
    /// Essedum's batch inference routes (SageMaker transform jobs).
    Inference,
    /// Essedum's endpoint routes (real-time inference).
    Endpoints,
    /// Runs, their history and operator actions.
    Runs,
    /// Declared workflow state machines.
    Workflows,
    /// Liveness and readiness.
    Health,
}

pub fn time(t: Timestamp) -> String {
    to_db(t)
}

/// The date format the backend's model and endpoint parsers read: `yyyy-MM-dd HH-mm-ss`, UTC
/// (hyphens in the time part; `ICIPModelAWSServiceSageMaker`).
pub fn record_date(t: Timestamp) -> String {
    t.format("%Y-%m-%d %H-%M-%S").to_string()
}

/// Essedum's one record shape for datasets, models, endpoints and jobs. Every key is always
/// present, `null` where unknown: the backend's parsers call `get(key)` and drop an item whose key
/// is missing. Replies that carry more embed it with `#[oai(flatten)]`.
#[derive(Object, Clone, Debug, Default)]
#[oai(nullable_all)]
pub struct Record {
    /// The resource's name in SageMaker / its S3 key.
    #[oai(rename = "sourceID")]
    pub source_id: Option<String>,
    pub name: Option<String>,
    pub id: Option<String>,
    /// SageMaker's status word for the resource.
    pub status: Option<String>,
    #[oai(rename = "type")]
    pub kind: Option<String>,
    /// The resource's ARN (the backend's SageMaker parser fills it with the model or endpoint ARN).
    pub container: Option<String>,
    /// Model data / output location.
    pub artifacts: Option<String>,
    pub adapter: Option<String>,
    pub project: Option<String>,
    /// `yyyy-MM-dd HH-mm-ss`, UTC.
    #[oai(rename = "createdOn")]
    pub created_on: Option<String>,
    /// `yyyy-MM-dd HH-mm-ss`, UTC: when this reply was made or the resource last changed.
    #[oai(rename = "syncDate")]
    pub sync_date: Option<String>,
    pub description: Option<String>,
    #[oai(rename = "sourceOrg")]
    pub source_org: Option<String>,
    pub sourcename: Option<String>,
    pub deployment: Option<String>,
    /// The resource as AWS describes it, as a JSON string.
    #[oai(rename = "rawPayload")]
    pub raw_payload: Option<String>,
}

/// A run at a glance.
#[derive(Object, Debug, Clone)]
pub struct RunSummary {
    pub id: String,
    pub kind: Kind,
    pub state: State,
    /// The name of the run's AWS resource (e.g. the training job).
    pub name: Option<String>,
    pub attempt: i64,
    pub cancel_requested: bool,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Run> for RunSummary {
    fn from(r: &Run) -> Self {
        RunSummary {
            id: r.id.to_string(),
            kind: r.kind,
            state: r.state,
            name: r.resource_name.clone(),
            attempt: r.attempt,
            cancel_requested: r.cancel_requested,
            last_error: r.last_error.clone(),
            created_at: time(r.created_at),
            updated_at: time(r.updated_at),
        }
    }
}

/// One recorded transition.
#[derive(Object, Debug, Clone)]
pub struct EventDto {
    pub seq: i64,
    /// Absent on the first row (the run was accepted).
    pub from_state: Option<State>,
    pub to_state: State,
    pub at: String,
    pub attempt: i64,
    pub detail: Option<String>,
    pub error_class: Option<ErrorClass>,
    pub error: Option<String>,
}

impl From<&Event> for EventDto {
    fn from(e: &Event) -> Self {
        EventDto {
            seq: e.seq,
            from_state: e.from_state,
            to_state: e.to_state,
            at: time(e.at),
            attempt: e.attempt,
            detail: e.detail.clone(),
            error_class: e.error_class,
            error: e.error.clone(),
        }
    }
}

/// The status of a job run, as `GET /status/{id}` reports it.
#[derive(Object, Debug, Clone)]
pub struct RunStatus {
    /// The run id.
    pub id: String,
    pub kind: Kind,
    /// The workflow state; `Done`, `Failed` and `Cancelled` are terminal.
    pub state: State,
    pub terminal: bool,
    /// The SageMaker job name.
    pub name: Option<String>,
    pub job_arn: Option<String>,
    /// SageMaker's own status (`InProgress`, `Completed`, `Failed`, `Stopping`, `Stopped`).
    pub sagemaker_status: Option<String>,
    pub secondary_status: Option<String>,
    /// SageMaker's FailureReason, or the error that failed the run.
    pub failure_reason: Option<String>,
    /// Where the model artifacts are (`s3://...model.tar.gz`; AutoML: the best candidate's).
    pub artifacts: Option<String>,
    /// AutoML: the best candidate (name, objective metric, inference containers).
    pub best_candidate: Option<serde_json::Value>,
    /// Where the input data is in S3.
    pub input_uri: Option<String>,
    pub cancel_requested: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A job run's recorded SageMaker details.
pub fn job_context(r: &Run) -> JobContext {
    serde_json::from_value(r.context.clone()).unwrap_or_default()
}

impl From<&Run> for RunStatus {
    fn from(r: &Run) -> Self {
        let c = job_context(r);
        RunStatus {
            id: r.id.to_string(),
            kind: r.kind,
            state: r.state,
            terminal: r.state.is_terminal(),
            name: r.resource_name.clone(),
            job_arn: c.job_arn,
            sagemaker_status: c.sagemaker_status,
            secondary_status: c.secondary_status,
            failure_reason: c.failure_reason.or_else(|| {
                (r.state == State::Failed)
                    .then(|| r.last_error.clone())
                    .flatten()
            }),
            artifacts: c.model_artifacts,
            best_candidate: c.best_candidate,
            input_uri: c.input_s3_uri,
            cancel_requested: r.cancel_requested,
            created_at: time(r.created_at),
            updated_at: time(r.updated_at),
        }
    }
}

/// SageMaker's status word for a run, in the words Essedum expects.
pub fn essedum_status(r: &Run) -> String {
    match r.state {
        State::Uploading | State::Submitted => "InProgress".into(),
        State::Polling | State::Collecting => job_context(r)
            .sagemaker_status
            .unwrap_or_else(|| "InProgress".into()),
        State::Cancelling => "Stopping".into(),
        State::Done => "Completed".into(),
        State::Failed => "Failed".into(),
        State::Cancelled => "Stopped".into(),
    }
}

/// Essedum's record shape for a job, plus the run's state.
#[derive(Object)]
pub struct EssedumJob {
    #[oai(rename = "sourceID")]
    pub source_id: Option<String>,
    pub name: Option<String>,
    /// The run id.
    pub id: String,
    /// SageMaker's status word (`InProgress`, `Completed`, `Failed`, `Stopping`, `Stopped`).
    pub status: String,
    /// SageMaker's secondary status.
    #[oai(rename = "jobStatus")]
    pub job_status: Option<String>,
    #[oai(rename = "failureReason")]
    pub failure_reason: Option<String>,
    /// The job ARN.
    pub container: Option<String>,
    /// The model artifacts URI.
    pub artifacts: Option<String>,
    #[oai(rename = "type")]
    pub kind: String,
    pub state: State,
    pub adapter: Option<String>,
    pub project: Option<String>,
    #[oai(rename = "createdOn")]
    pub created_on: String,
    #[oai(rename = "syncDate")]
    pub sync_date: String,
    pub description: Option<String>,
    #[oai(rename = "sourceOrg")]
    pub source_org: Option<String>,
    pub sourcename: Option<String>,
    pub deployment: Option<String>,
    /// The run's recorded SageMaker details, as a JSON string.
    #[oai(rename = "rawPayload")]
    pub raw_payload: String,
    /// AutoML: the best candidate (name, objective metric, inference containers).
    #[oai(rename = "bestCandidate", skip_serializing_if_is_none)]
    pub best_candidate: Option<serde_json::Value>,
}

pub fn essedum_job(r: &Run) -> EssedumJob {
    let c = job_context(r);
    let origin: Origin = serde_json::from_value(r.request["origin"].clone()).unwrap_or_default();
    EssedumJob {
        source_id: r.resource_name.clone(),
        name: r.resource_name.clone(),
        id: r.id.to_string(),
        status: essedum_status(r),
        job_status: c.secondary_status.clone(),
        failure_reason: c.failure_reason.clone().or_else(|| {
            (r.state == State::Failed)
                .then(|| r.last_error.clone())
                .flatten()
        }),
        container: c.job_arn.clone(),
        artifacts: c.model_artifacts.clone(),
        kind: essedum_type(r.kind).into(),
        state: r.state,
        adapter: origin.adapter_instance,
        project: origin.project,
        created_on: time(r.created_at),
        sync_date: time(r.updated_at),
        description: None,
        source_org: Some("AWS".into()),
        sourcename: Some("sagemaker".into()),
        deployment: None,
        raw_payload: r.context.to_string(),
        best_candidate: c.best_candidate,
    }
}

/// Essedum's `type` word for a kind of run.
pub fn essedum_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Training => "sagemaker-training",
        Kind::Automl => "sagemaker-automl",
        Kind::Transform => "sagemaker-transform",
        Kind::Deployment => "sagemaker-deployment",
        Kind::Teardown => "sagemaker-teardown",
        Kind::Script => "sagemaker-processing",
    }
}

/// The reply to an Essedum cancel: the job is being stopped.
#[derive(Object)]
pub struct Stopping {
    /// Always `Stopping`.
    pub status: String,
}

/// Essedum's list of runs of some kinds, newest first: a submitter's own only, filtered by
/// `project` when given, at most `limit` (default 100).
pub async fn essedum_list(
    app: &super::AppState,
    caller: &super::auth::Caller,
    kinds: &[Kind],
    project: Option<String>,
    limit: Option<u32>,
) -> Result<Vec<EssedumJob>, super::ApiError> {
    let page = app
        .store
        .list_runs(&crate::store::RunFilter {
            kinds: kinds.to_vec(),
            submitted_by: super::operator::owner_scope(caller).map(str::to_string),
            limit: limit.unwrap_or(100).clamp(1, 1000),
            ..Default::default()
        })
        .await?;
    Ok(page
        .runs
        .iter()
        .map(essedum_job)
        .filter(|j| project.is_none() || j.project == project)
        .collect())
}
