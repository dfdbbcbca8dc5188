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
#[derive(Object, serde::Serialize, Debug, Clone)]
pub struct RunSummary {
    pub id: String,
    pub kind: Kind,
    pub state: State,
    /// The name of the run's AWS resource (e.g. the training job; for a deployment or a
    /// teardown, the endpoint it changes).
    pub name: Option<String>,
    pub attempt: i64,
    pub cancel_requested: bool,
    pub last_error: Option<String>,
    /// Present while the run's status checks fail: its AWS job may still be running, so the run
    /// keeps following it (backing off) instead of failing.
    pub degraded: Option<Degraded>,
    pub created_at: String,
    pub updated_at: String,
}

/// A run whose status checks are failing (DESIGN.md invariant 4).
#[derive(Object, serde::Serialize, Debug, Clone)]
pub struct Degraded {
    /// The first failed check of this streak.
    pub since: String,
    /// The latest check's error.
    pub last_error: Option<String>,
    /// Failed checks in this streak.
    pub attempts: i64,
}

/// The listing's summaries keep the store's time text, which is the API's form ([`time`]).
impl From<crate::store::Summary> for RunSummary {
    fn from(s: crate::store::Summary) -> Self {
        RunSummary {
            id: s.id,
            kind: s.kind,
            state: s.state,
            name: s.resource_name,
            attempt: s.attempt,
            cancel_requested: s.cancel_requested,
            degraded: s.degraded_since.map(|since| Degraded {
                since,
                last_error: s.last_error.clone(),
                attempts: s.attempt,
            }),
            last_error: s.last_error,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

impl From<&Run> for RunSummary {
    fn from(r: &Run) -> Self {
        RunSummary::from(crate::store::Summary::from(r))
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
    /// How many attempts this row stands for: repeated identical attempts are collapsed into
    /// the latest row of their streak (its `at`, `attempt` and `error` are the latest's).
    pub repeats: i64,
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
            repeats: e.repeats,
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

/// Essedum's record shape for a job (every key of [`Record`] present, `null` when unknown), plus
/// what the Python service's `training/{id}/get` added (`jobStatus`, `failureReason`,
/// `bestCandidate`) and this service's run (`runId`, `state`). `sourceID`, `name`, `id` and
/// `sourcename` are the SageMaker job name, which every `{id}` route accepts as well as the run id.
/// Dates are `yyyy-MM-dd HH-mm-ss`, UTC, like the other records (the Java backend hands job
/// records to the UI without parsing them).
#[derive(Object, Debug, Clone)]
pub struct EssedumJob {
    #[oai(flatten)]
    pub record: Record,
    /// The run id; absent for a job this service did not start.
    #[oai(rename = "runId")]
    pub run_id: Option<String>,
    /// SageMaker's status word again (`InProgress`, `Completed`, `Failed`, `Stopping`,
    /// `Stopped`), as the Python service replied it.
    #[oai(rename = "jobStatus")]
    pub job_status: Option<String>,
    /// SageMaker's secondary status.
    #[oai(rename = "secondaryStatus")]
    pub secondary_status: Option<String>,
    #[oai(rename = "failureReason")]
    pub failure_reason: Option<String>,
    /// The workflow state; absent for a job this service did not start.
    pub state: Option<State>,
    /// AutoML: the best candidate (name, objective metric, inference containers).
    #[oai(rename = "bestCandidate", skip_serializing_if_is_none)]
    pub best_candidate: Option<serde_json::Value>,
}

/// What SageMaker calls a job of this kind, for descriptions.
pub fn job_noun(kind: Kind) -> &'static str {
    match kind {
        Kind::Training => "Training job",
        Kind::Automl => "AutoML job",
        Kind::Transform => "Transform job",
        Kind::Deployment => "Deployment",
        Kind::Teardown => "Teardown",
        Kind::Script => "Processing job",
    }
}

/// Where a job run writes its output, from its stored request.
fn output_location(r: &Run) -> Option<String> {
    match r.kind {
        Kind::Training => {
            crate::workflows::training::stored_request(&r.request).map(|q| q.data.output_path(r.id))
        }
        Kind::Automl => {
            serde_json::from_value::<crate::workflows::automl::AutomlRequest>(r.request.clone())
                .ok()
                .map(|q| q.output_path(r.id))
        }
        Kind::Transform => serde_json::from_value::<crate::workflows::transform::TransformRequest>(
            r.request.clone(),
        )
        .ok()
        .map(|q| q.spec.output_s3_path),
        _ => None,
    }
}

/// A job as SageMaker describes it, for a job this service did not start (`kind` is Training or
/// Automl); `raw` is the description as a JSON string.
pub fn outside_job(
    kind: Kind,
    name: &str,
    d: &crate::aws::JobDescription,
    origin: &Origin,
    now: Timestamp,
) -> EssedumJob {
    let raw = serde_json::json!({
        "name": name,
        "arn": d.arn,
        "status": d.status,
        "secondary_status": d.secondary_status,
        "failure_reason": d.failure_reason,
        "model_artifacts": d.model_artifacts,
        "best_candidate": d.best_candidate,
    });
    EssedumJob {
        record: Record {
            source_id: Some(name.to_string()),
            name: Some(name.to_string()),
            id: Some(name.to_string()),
            status: Some(d.status.clone()),
            kind: Some(essedum_type(kind).into()),
            container: d.arn.clone(),
            artifacts: d.model_artifacts.clone(),
            adapter: origin.adapter_instance.clone(),
            project: origin.project.clone(),
            created_on: None,
            sync_date: Some(record_date(now)),
            description: Some(format!("{} status: {}", job_noun(kind), d.status)),
            source_org: None,
            sourcename: Some(name.to_string()),
            deployment: None,
            raw_payload: Some(raw.to_string()),
        },
        run_id: None,
        job_status: Some(d.status.clone()),
        secondary_status: d.secondary_status.clone(),
        failure_reason: d.failure_reason.clone(),
        state: None,
        best_candidate: d.best_candidate.clone(),
    }
}

pub fn essedum_job(r: &Run) -> EssedumJob {
    let c = job_context(r);
    let origin: Origin = serde_json::from_value(r.request["origin"].clone()).unwrap_or_default();
    let status = essedum_status(r);
    let name = r
        .resource_name
        .clone()
        .or_else(|| (!c.job_name.is_empty()).then(|| c.job_name.clone()))
        .unwrap_or_else(|| r.id.to_string());
    EssedumJob {
        record: Record {
            source_id: Some(name.clone()),
            name: Some(name.clone()),
            id: Some(name.clone()),
            status: Some(status.clone()),
            kind: Some(essedum_type(r.kind).into()),
            container: c.job_arn.clone(),
            artifacts: c.model_artifacts.clone().or_else(|| output_location(r)),
            adapter: origin.adapter_instance,
            project: origin.project,
            created_on: Some(record_date(r.created_at)),
            sync_date: Some(record_date(r.updated_at)),
            description: Some(format!("{} status: {status}", job_noun(r.kind))),
            source_org: r.request["role_arn"].as_str().map(str::to_string),
            sourcename: Some(name),
            deployment: None,
            raw_payload: Some(r.context.to_string()),
        },
        run_id: Some(r.id.to_string()),
        job_status: Some(status),
        secondary_status: c.secondary_status.clone(),
        failure_reason: c.failure_reason.clone().or_else(|| {
            (r.state == State::Failed)
                .then(|| r.last_error.clone())
                .flatten()
        }),
        state: Some(r.state),
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
        .filter(|j| project.is_none() || j.record.project == project)
        .collect())
}
