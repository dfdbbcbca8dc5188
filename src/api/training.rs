//! Essedum's training routes (ESSEDUM-CONTRACT.md sections 1 and 3) and `GET /status/{id}`.
// Every Essedum route takes the backend's four query parameters and Referer, so handlers have
// many parameters by contract.
#![allow(clippy::too_many_arguments)]

use super::auth::Caller;
use super::body::RawBody;
use super::dto::{
    EssedumJob, Record, RunStatus, Tag, essedum_job, essedum_list, essedum_type, job_noun,
    outside_job, record_date, time,
};
use super::operator::{request_cancel, state_of, visible};
use super::scope::AwsScope;
use super::{ApiError, AppState};
use crate::aws::AwsErrorKind;
use crate::model::{Kind, State};
use crate::store::{NewRun, Run};
use crate::validate::{InputError, Mode};
use crate::workflows::automl::AutomlRequest;
use crate::workflows::input::{InputSource, Origin};
use crate::workflows::job::JobContext;
use crate::workflows::training::{self, TrainingRequest};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::{ApiResponse, Object, OpenApi, Union, payload::Json};
use std::collections::HashMap;
use uuid::Uuid;

pub struct TrainingApi(pub Option<AppState>);

/// An AutoML (V2) request, on `POST /api/service/v1/pipelines/training` with `"type": "automl"`.
/// Give exactly one of `inputs` (an S3 CSV object or prefix), `inline_csv` or
/// `local_dataset_path`. Unknown fields are rejected with 400; a missing or invalid value with 422
/// naming the field (also when the CSV header lacks the target column).
#[derive(Object)]
#[oai(rename = "AutomlRequest", deny_unknown_fields)]
#[allow(dead_code)]
struct AutomlRequestSchema {
    #[oai(rename = "RoleArn")]
    role_arn: String,
    #[oai(rename = "Bucket")]
    bucket: String,
    /// The run writes under `{S3Prefix}/{run id}/` (input, output).
    #[oai(rename = "S3Prefix")]
    s3_prefix: Option<String>,
    inputs: Option<String>,
    inline_csv: Option<String>,
    local_dataset_path: Option<String>,
    /// The column to predict; it must be in the CSV header.
    target_attribute_name: String,
    /// Default `text/csv;header=present`.
    content_type: Option<String>,
    /// `BinaryClassification`, `MulticlassClassification` or `Regression` (SageMaker infers it
    /// when absent).
    problem_type: Option<String>,
    /// e.g. `Accuracy`, `F1`, `AUC`, `MSE`, `RMSE`.
    objective_metric: Option<String>,
    /// 1 to 750, default 250.
    max_candidates: Option<i32>,
    /// Default 2592000 (30 days).
    max_runtime_seconds: Option<i32>,
    /// Tags for the AutoML job.
    #[oai(rename = "Tags")]
    tags: Option<HashMap<String, String>>,
    /// `{endpoint_name?, instance_type, instance_count}`: once the job completes, deploy its best
    /// candidate through a linked deployment run (model and endpoint config named after the run).
    deploy: Option<serde_json::Value>,
    /// `automl`.
    #[oai(rename = "type")]
    kind: Option<String>,
}

/// A training job request. Give exactly one of `inputs`, `inline_csv` or `local_dataset_path`.
/// Unknown fields are rejected with 400; a missing or invalid value with 422 naming the field.
#[derive(Object)]
#[oai(rename = "TrainingRequest", deny_unknown_fields)]
#[allow(dead_code)]
struct TrainingRequestSchema {
    /// The IAM role SageMaker assumes (`arn:aws:iam::<account>:role/<name>`).
    #[oai(rename = "RoleArn")]
    role_arn: String,
    /// The bucket for staged input and output.
    #[oai(rename = "Bucket")]
    bucket: String,
    /// Key prefix under the bucket; the run writes under `{S3Prefix}/{run id}/`.
    #[oai(rename = "S3Prefix")]
    s3_prefix: Option<String>,
    /// The training container image.
    #[oai(rename = "TrainingImage")]
    training_image: String,
    /// An `s3://` URI of the training data (nothing is uploaded).
    inputs: Option<String>,
    /// CSV text, staged to `s3://{Bucket}/{S3Prefix}/{run id}/input/data.csv` (bounded size).
    inline_csv: Option<String>,
    /// A file under the service's data directory, staged to S3.
    local_dataset_path: Option<String>,
    /// Default `ml.m5.large`.
    #[oai(rename = "InstanceType")]
    instance_type: Option<String>,
    /// 1 to 100, default 1.
    #[oai(rename = "InstanceCount")]
    instance_count: Option<i32>,
    /// 1 to 16384, default 10.
    #[oai(rename = "VolumeSizeInGB")]
    volume_size_in_gb: Option<i32>,
    /// Default 86400.
    #[oai(rename = "MaxRuntimeInSeconds")]
    max_runtime_in_seconds: Option<i32>,
    /// String values (numbers and booleans are turned into text).
    #[oai(rename = "HyperParameters")]
    hyper_parameters: Option<HashMap<String, String>>,
    /// The input's content type, default `text/csv`.
    content_type: Option<String>,
    /// `training` (the default), or `automl` on `/pipelines/training` for an AutoML request.
    #[oai(rename = "type")]
    kind: Option<String>,
}

/// `POST /pipelines/training/train` as the Essedum backend sends it (unknown keys are ignored and
/// `""` is absent; a known key with a wrong value is a 422 naming it). Two kinds of body:
/// - the Python service's AutoML body `{RoleArn, Bucket, S3Prefix, inputs, target_attribute_name,
///   content_type}` (no `TrainingImage`): an AutoML run writing under
///   `s3://{Bucket}/{S3Prefix}/output`, with `max_candidates` 1 unless given (as the Python
///   service ran it); the CSV header must contain `target_attribute_name` when it can be read;
/// - a body naming `TrainingImage`: a SageMaker training job (the fields of `TrainingRequest`).
#[derive(Object)]
#[oai(rename = "TrainRequest")]
#[allow(dead_code)]
struct TrainRequestSchema {
    #[oai(rename = "RoleArn")]
    role_arn: String,
    #[oai(rename = "Bucket")]
    bucket: String,
    #[oai(rename = "S3Prefix")]
    s3_prefix: Option<String>,
    /// An `s3://` URI of the data (an AutoML input: a CSV object, or a prefix).
    inputs: Option<String>,
    inline_csv: Option<String>,
    local_dataset_path: Option<String>,
    /// The input's content type (AutoML: `text/csv` is read as `text/csv;header=present`).
    content_type: Option<String>,
    /// AutoML: the column to predict.
    target_attribute_name: Option<String>,
    /// AutoML: `BinaryClassification`, `MulticlassClassification` or `Regression`.
    problem_type: Option<String>,
    /// AutoML: e.g. `Accuracy`, `F1`, `AUC`, `MSE`.
    objective_metric: Option<String>,
    /// AutoML: 1 to 750, default 1 on this route.
    max_candidates: Option<i32>,
    /// Training: the container image; its presence makes the body a training job.
    #[oai(rename = "TrainingImage")]
    training_image: Option<String>,
    #[oai(rename = "InstanceType")]
    instance_type: Option<String>,
    #[oai(rename = "InstanceCount")]
    instance_count: Option<i32>,
    #[oai(rename = "VolumeSizeInGB")]
    volume_size_in_gb: Option<i32>,
    #[oai(rename = "MaxRuntimeInSeconds")]
    max_runtime_in_seconds: Option<i32>,
    #[oai(rename = "HyperParameters")]
    hyper_parameters: Option<HashMap<String, String>>,
}

/// `POST /pipelines/training/automl` as the Python service took it (unknown keys are ignored and
/// `""` is absent). The input must be in S3; the CSV header must contain `target_attribute_name`
/// when it can be read. A `job_name` already used in SageMaker or by another run is a 409.
#[derive(Object)]
#[oai(rename = "AutomlSimplifiedRequest")]
#[allow(dead_code)]
struct AutomlSnakeSchema {
    /// 1 to 32 letters, digits and hyphens; default: derived from the run id.
    job_name: Option<String>,
    /// `{s3_uri, content_type?}` (content type default `text/csv;header=present`).
    input_data_config: serde_json::Value,
    /// `{s3_output_path}`.
    output_data_config: serde_json::Value,
    target_attribute_name: String,
    role_arn: String,
    problem_type: Option<String>,
    /// `{metric_name}`.
    objective: Option<serde_json::Value>,
    /// 1 to 750, default 250.
    max_candidates: Option<i32>,
    /// Default 2592000 (30 days).
    total_job_runtime_in_seconds: Option<i32>,
    /// `[{Key, Value}]`; a `project` tag is added from the `project` query parameter.
    tags: Option<Vec<serde_json::Value>>,
}

/// The body of `POST /api/service/v1/pipelines/training`: a training request, or an AutoML
/// request with `"type": "automl"`.
#[derive(Union)]
#[oai(rename = "TrainingOrAutomlRequest")]
#[allow(dead_code)]
enum TrainingOrAutoml {
    Training(TrainingRequestSchema),
    Automl(AutomlRequestSchema),
}

#[derive(Object)]
struct TrainingAccepted {
    /// The run id.
    id: String,
    /// The SageMaker training job name.
    name: String,
    #[oai(rename = "sourceID")]
    source_id: String,
    /// SageMaker-style status: `InProgress` until the job ends.
    status: String,
    /// The workflow state.
    state: State,
    #[oai(rename = "type")]
    kind: String,
}

/// The reply to `/train`: the job's record, as the Python service replied it. `sourceID`, `name`
/// and `sourcename` are the job name; `id` is the job name for an AutoML body (as the Python
/// service replied) and the run id for a training-image body (this service's extension, as it
/// has always replied); either works on every `{id}` route. `container` (the job ARN) is null
/// until the job is created; `artifacts` is the output location.
#[derive(Object)]
struct TrainAccepted {
    #[oai(flatten)]
    record: Record,
    /// The run id.
    #[oai(rename = "runId")]
    run_id: String,
    /// The workflow state.
    state: State,
    /// Where to follow the job.
    message: String,
}

/// The reply to `/automl`, with the Python service's keys (plus the run id).
#[derive(Object)]
struct AutomlCreated {
    job_name: String,
    /// The AutoML job's ARN: null until the engine has created the job (the request is never
    /// held up by AWS); `training/{job_name}/get` shows it as `container`.
    job_arn: Option<String>,
    /// `InProgress`.
    status: String,
    message: String,
    /// The input's S3 URI.
    input_data: String,
    output_path: String,
    target_attribute: String,
    /// RFC 3339, UTC.
    created_at: String,
    /// The run id.
    id: String,
}

#[derive(ApiResponse)]
enum SubmitReply {
    /// Accepted and stored; the engine runs it.
    #[oai(status = 202)]
    Accepted(Json<TrainingAccepted>),
}

#[derive(ApiResponse)]
enum TrainReply {
    /// Accepted and stored; the engine runs it.
    #[oai(status = 202)]
    Accepted(Json<TrainAccepted>),
}

#[derive(ApiResponse)]
enum AutomlReply {
    /// Accepted and stored; the engine creates the AutoML job.
    #[oai(status = 201)]
    Created(Json<AutomlCreated>),
}

/// The reply to a training cancel.
#[derive(Object)]
struct TrainingStopping {
    /// Always `Stopping`.
    status: String,
    job_name: String,
    message: String,
}

/// The reply to `DELETE /projects_pipelines/{id}/delete`.
#[derive(Object)]
struct TrainingDeleted {
    #[oai(flatten)]
    job: EssedumJob,
    /// True when the record is gone; false while the job is still being stopped.
    deleted: bool,
    message: String,
}

#[derive(ApiResponse)]
enum DeleteReply {
    /// The run had ended; its record and history are deleted (SageMaker keeps its own record of
    /// the job).
    #[oai(status = 200)]
    Deleted(Json<TrainingDeleted>),
    /// The run was still going: it is being cancelled (its job stopped); delete it again once it
    /// has ended to remove its record.
    #[oai(status = 202)]
    Stopping(Json<TrainingDeleted>),
}

/// The caller's training or AutoML run named `id` (run id or job name): `Ok(None)` when no run
/// has that id or name, a 404 when it is another submitter's or of another kind.
async fn lookup_training(
    app: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Option<Run>, ApiError> {
    let Some(run) = app.store.find_run(id).await? else {
        return Ok(None);
    };
    match visible(caller, Some(run)) {
        Some(r) if matches!(r.kind, Kind::Training | Kind::Automl) => Ok(Some(r)),
        _ => Err(not_ours(id)),
    }
}

fn not_ours(id: &str) -> ApiError {
    ApiError::not_found(format!("no training run or job named {id:?}"))
}

async fn find_training(app: &AppState, caller: &Caller, id: &str) -> Result<Run, ApiError> {
    lookup_training(app, caller, id)
        .await?
        .ok_or_else(|| not_ours(id))
}

/// Essedum's query parameters of a submitting call, when it carries any.
fn origin_of(project: Option<String>, adapter_instance: Option<String>) -> Option<Origin> {
    (project.is_some() || adapter_instance.is_some()).then_some(Origin {
        project,
        adapter_instance,
    })
}

/// Whether a body key holds a value (`""` and null count as absent, as on every backend route).
fn given(body: &serde_json::Value, key: &str) -> bool {
    !matches!(body.get(key), None | Some(serde_json::Value::Null))
        && body.get(key) != Some(&serde_json::Value::String(String::new()))
}

impl TrainingApi {
    /// Stores a training run for `req` under its deterministic job name; returns the run, the
    /// job name and the request as stored.
    async fn store_training(
        &self,
        app: &AppState,
        mut req: TrainingRequest,
        origin: Option<Origin>,
        caller: &Caller,
        scope: &AwsScope,
    ) -> Result<(Run, String, TrainingRequest), ApiError> {
        req.origin = origin;
        let id = crate::store::new_run_id();
        let name = training::job_name(id);
        let request = serde_json::to_value(&req).expect("request serialises");
        let run = self
            .insert(
                app,
                id,
                Kind::Training,
                name.clone(),
                request,
                caller,
                scope,
            )
            .await?;
        Ok((run, name, req))
    }

    /// Checks an AutoML request's target column, then stores its run (named by the request or
    /// after the run) and wakes the engine.
    async fn store_automl(
        &self,
        app: &AppState,
        mut req: AutomlRequest,
        inputs_field: &str,
        origin: Option<Origin>,
        caller: &Caller,
        scope: &AwsScope,
    ) -> Result<(Run, String, AutomlRequest), ApiError> {
        req.check_target_column(scope.aws.as_ref(), inputs_field)
            .await?;
        // A name the caller chose may already belong to a job in SageMaker (names are never
        // reused there); adopting that job would be wrong, so it is refused up front.
        if let Some(chosen) = &req.job_name {
            match scope.aws.describe_automl_job(chosen).await {
                Ok(None) => {}
                Ok(Some(_)) => {
                    return Err(ApiError::conflict(format!(
                        "an AutoML job named {chosen:?} already exists in SageMaker; choose another job_name"
                    )));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not check the AutoML job name");
                    return Err(ApiError::unavailable(format!(
                        "could not check whether the job name is free; try again: {e}"
                    )));
                }
            }
        }
        req.origin = origin;
        let id = crate::store::new_run_id();
        let name = req.name_for(id);
        let request = serde_json::to_value(&req).expect("request serialises");
        let run = self
            .insert(app, id, Kind::Automl, name.clone(), request, caller, scope)
            .await?;
        Ok((run, name, req))
    }

    async fn insert(
        &self,
        app: &AppState,
        id: Uuid,
        kind: Kind,
        name: String,
        request: serde_json::Value,
        caller: &Caller,
        scope: &AwsScope,
    ) -> Result<Run, ApiError> {
        let run = app
            .store
            .insert_run(
                NewRun {
                    id,
                    kind,
                    state: State::Uploading,
                    // The connection's reference (never its credentials) goes with the run.
                    request: scope.tag(request),
                    context: JobContext::new(name.clone()).to_value(),
                    resource_name: Some(name.clone()),
                    submitted_by: Some(caller.name.clone()),
                    detail: format!("accepted; job name {name}"),
                },
                app.clock.now(),
            )
            .await?;
        app.wake.notify_one();
        tracing::info!(run_id = %id, kind = %kind, job = %name, "run accepted");
        Ok(run)
    }

    /// Our own route: validates strictly and stores a run of the kind the body's `type` names.
    async fn submit(
        &self,
        body: serde_json::Value,
        origin: Option<Origin>,
        caller: &Caller,
        scope: &AwsScope,
    ) -> Result<SubmitReply, ApiError> {
        let app = state_of(&self.0)?;
        let is_automl = matches!(
            body.get("type").and_then(|t| t.as_str()),
            Some("automl" | "sagemaker-automl")
        );
        let (run, name, kind) = if is_automl {
            let req = AutomlRequest::parse(body, &app.limits)?;
            let (run, name, _) = self
                .store_automl(app, req, "inputs", origin, caller, scope)
                .await?;
            (run, name, Kind::Automl)
        } else {
            let req = TrainingRequest::parse(body, &app.limits)?;
            let (run, name, _) = self.store_training(app, req, origin, caller, scope).await?;
            (run, name, Kind::Training)
        };
        Ok(SubmitReply::Accepted(Json(TrainingAccepted {
            id: run.id.to_string(),
            name: name.clone(),
            source_id: name,
            status: "InProgress".into(),
            state: run.state,
            kind: essedum_type(kind).into(),
        })))
    }
}

/// The record `/train` replies with.
fn train_record(
    app: &AppState,
    run: &Run,
    name: &str,
    role_arn: &str,
    output_path: &str,
    input: &InputSource,
    automl_target: Option<&str>,
) -> TrainAccepted {
    let origin = run
        .request
        .get("origin")
        .and_then(|o| serde_json::from_value::<Origin>(o.clone()).ok())
        .unwrap_or_default();
    let now = record_date(app.clock.now());
    let input_data = match input {
        InputSource::S3 { uri } => Some(uri.clone()),
        _ => None,
    };
    let (kind, id, description) = match automl_target {
        Some(t) => (
            Kind::Automl,
            name.to_string(),
            format!("AutoML training job for {t}"),
        ),
        None => (
            Kind::Training,
            run.id.to_string(),
            format!("Training job {name}"),
        ),
    };
    let raw = serde_json::json!({
        "job_name": name,
        "job_arn": null,
        "input_data": input_data,
        "target_attribute": automl_target,
        "output_path": output_path,
        "status": "InProgress",
    });
    TrainAccepted {
        record: Record {
            source_id: Some(name.to_string()),
            name: Some(name.to_string()),
            id: Some(id),
            status: Some("InProgress".into()),
            kind: Some(essedum_type(kind).into()),
            container: None,
            artifacts: Some(output_path.to_string()),
            adapter: origin.adapter_instance,
            project: origin.project,
            created_on: Some(now.clone()),
            sync_date: Some(now),
            description: Some(description),
            source_org: Some(role_arn.to_string()),
            sourcename: Some(name.to_string()),
            deployment: None,
            raw_payload: Some(raw.to_string()),
        },
        run_id: run.id.to_string(),
        state: run.state,
        message: format!(
            "Training job started. Use GET /api/service/v1/pipelines/training/{name}/get to check its status."
        ),
    }
}

#[OpenApi(tag = "Tag::Training")]
impl TrainingApi {
    /// Submit an AutoML run with the Python service's snake_case body (the route the Essedum
    /// backend calls as `training_automl_simplified_create`); replies 201 with the Python keys.
    /// The richer AutoML body (inline CSV, local file, deployment of the best candidate) is taken
    /// by `POST /api/service/v1/pipelines/training` with `"type": "automl"`.
    #[oai(path = "/api/service/v1/pipelines/training/automl", method = "post")]
    async fn submit_automl(
        &self,
        body: Json<RawBody<AutomlSnakeSchema>>,
        adapter_instance: Query<Option<String>>,
        project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
        scope: Data<&AwsScope>,
    ) -> Result<AutomlReply, ApiError> {
        let app = state_of(&self.0)?;
        let mut req = AutomlRequest::parse_snake(body.0.value)?;
        if let Some(p) = &project.0
            && !req.tags.contains_key("project")
            && req.tags.len() < 50
        {
            req.tags.insert("project".into(), p.clone());
        }
        let origin = origin_of(project.0, adapter_instance.0);
        let (run, name, req) = self
            .store_automl(
                app,
                req,
                "input_data_config.s3_uri",
                origin,
                &caller,
                &scope,
            )
            .await?;
        let input_data = match &req.data.input {
            InputSource::S3 { uri } => uri.clone(),
            _ => String::new(),
        };
        Ok(AutomlReply::Created(Json(AutomlCreated {
            job_name: name.clone(),
            job_arn: None,
            status: "InProgress".into(),
            message: format!(
                "AutoML training job created successfully. Use GET /api/service/v1/pipelines/training/{name}/get to check its status."
            ),
            input_data,
            output_path: req.output_path(run.id),
            target_attribute: req.target_attribute_name.clone(),
            created_at: time(run.created_at),
            id: run.id.to_string(),
        })))
    }

    /// Submit a training run (the route in the executor's design document); with
    /// `"type": "automl"` the body is an AutoML request instead. Strict: unknown fields are a 400.
    #[oai(path = "/api/service/v1/pipelines/training", method = "post")]
    async fn submit_training(
        &self,
        body: Json<RawBody<TrainingOrAutoml>>,
        adapter_instance: Query<Option<String>>,
        project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
        scope: Data<&AwsScope>,
    ) -> Result<SubmitReply, ApiError> {
        self.submit(
            body.0.value,
            origin_of(project.0, adapter_instance.0),
            &caller,
            &scope,
        )
        .await
    }

    /// Submit a training or AutoML run (the route the Essedum backend calls as
    /// `training_train_create`); see `TrainRequest` for the two bodies. Replies 202 with the
    /// job's record.
    #[oai(path = "/api/service/v1/pipelines/training/train", method = "post")]
    async fn submit_train(
        &self,
        body: Json<RawBody<TrainRequestSchema>>,
        adapter_instance: Query<Option<String>>,
        project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
        scope: Data<&AwsScope>,
    ) -> Result<TrainReply, ApiError> {
        let app = state_of(&self.0)?;
        let body = body.0.value;
        let origin = origin_of(project.0, adapter_instance.0);
        let automl = !given(&body, "TrainingImage")
            && (given(&body, "target_attribute_name")
                || matches!(
                    body.get("type").and_then(|t| t.as_str()),
                    Some("automl" | "sagemaker-automl")
                ));
        if automl {
            let default_candidates = !given(&body, "max_candidates");
            let mut req = AutomlRequest::parse_mode(body, &app.limits, Mode::Essedum)?;
            if default_candidates {
                req.max_candidates = 1;
            }
            req.output_s3_path = Some(if req.data.s3_prefix.is_empty() {
                format!("s3://{}/output", req.data.bucket)
            } else {
                format!("s3://{}/{}/output", req.data.bucket, req.data.s3_prefix)
            });
            let (run, name, req) = self
                .store_automl(app, req, "inputs", origin, &caller, &scope)
                .await?;
            return Ok(TrainReply::Accepted(Json(train_record(
                app,
                &run,
                &name,
                &req.data.role_arn,
                &req.output_path(run.id),
                &req.data.input,
                Some(&req.target_attribute_name),
            ))));
        }
        if !given(&body, "TrainingImage") && body.is_object() {
            return Err(InputError::invalid(
                "TrainingImage",
                "is required for a training job (or give target_attribute_name, without TrainingImage, for an AutoML job)",
            )
            .into());
        }
        let req = TrainingRequest::parse_mode(body, &app.limits, Mode::Essedum)?;
        let (run, name, req) = self
            .store_training(app, req, origin, &caller, &scope)
            .await?;
        Ok(TrainReply::Accepted(Json(train_record(
            app,
            &run,
            &name,
            &req.data.role_arn,
            &req.data.output_path(run.id),
            &req.data.input,
            None,
        ))))
    }

    /// A run's status by run id or SageMaker job name.
    #[oai(path = "/status/:id", method = "get")]
    async fn status(
        &self,
        id: Path<String>,
        caller: Data<&Caller>,
    ) -> Result<Json<RunStatus>, ApiError> {
        let app = state_of(&self.0)?;
        let run = visible(&caller, app.store.find_run(&id.0).await?)
            .ok_or_else(|| ApiError::not_found(format!("no run or job named {:?}", id.0)))?;
        Ok(Json(RunStatus::from(&run)))
    }

    /// A training or AutoML job in Essedum's record shape, by run id or job name. A job name this
    /// service did not start is described in SageMaker (AutoML first, then training), as the
    /// Python service did; a name SageMaker does not know either is a 404.
    #[oai(path = "/api/service/v1/pipelines/training/:id/get", method = "get")]
    async fn get(
        &self,
        id: Path<String>,
        adapter_instance: Query<Option<String>>,
        project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
        scope: Data<&AwsScope>,
    ) -> Result<Json<EssedumJob>, ApiError> {
        let app = state_of(&self.0)?;
        if let Some(run) = lookup_training(app, &caller, &id.0).await? {
            return Ok(Json(essedum_job(&run)));
        }
        // Not a run of ours: a job created elsewhere, described where it lives.
        if crate::validate::sagemaker_name("id", &id.0).is_err() {
            return Err(not_ours(&id.0));
        }
        let origin = Origin {
            project: project.0,
            adapter_instance: adapter_instance.0,
        };
        let unavailable = |e: crate::aws::AwsError| {
            tracing::warn!(error = %e, "could not describe a job created elsewhere");
            ApiError::unavailable(format!("SageMaker did not answer; try again: {e}"))
        };
        let described = |r: crate::aws::AwsResult<_>| match r {
            Ok(d) => Ok(d),
            // A name AutoML refuses (too long for it) is simply not an AutoML job.
            Err(e) if e.kind == AwsErrorKind::Terminal || e.kind == AwsErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(unavailable(e)),
        };
        if let Some(d) = described(scope.aws.describe_automl_job(&id.0).await)? {
            return Ok(Json(outside_job(
                Kind::Automl,
                &id.0,
                &d,
                &origin,
                app.clock.now(),
            )));
        }
        if let Some(d) = described(scope.aws.describe_training_job(&id.0).await)? {
            return Ok(Json(outside_job(
                Kind::Training,
                &id.0,
                &d,
                &origin,
                app.clock.now(),
            )));
        }
        Err(not_ours(&id.0))
    }

    /// Cancel a training or AutoML run (by run id or job name); the job is stopped. A finished
    /// run is a 409; a job this service did not start is a 404 (it is not stopped).
    #[oai(path = "/api/service/v1/pipelines/training/:id/cancel", method = "get")]
    async fn cancel(
        &self,
        id: Path<String>,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
    ) -> Result<Json<TrainingStopping>, ApiError> {
        let app = state_of(&self.0)?;
        let run = find_training(app, &caller, &id.0).await?;
        request_cancel(app, run.id, &caller, None).await?;
        let name = run
            .resource_name
            .clone()
            .unwrap_or_else(|| run.id.to_string());
        Ok(Json(TrainingStopping {
            status: "Stopping".into(),
            message: format!("{} {name:?} is being stopped", job_noun(run.kind)),
            job_name: name,
        }))
    }

    /// Delete a training or AutoML run's record (the route the Essedum backend calls as
    /// `training_delete`; the Python service deleted a SageMaker pipeline of that name). A run
    /// that has ended is forgotten with its history (200; SageMaker keeps its own record of the
    /// job, which cannot be deleted there); one still going is cancelled first (202, `deleted`
    /// false: delete again once it has ended). Unknown: 404.
    #[oai(
        path = "/api/service/v1/projects_pipelines/:id/delete",
        method = "delete",
        tag = "Tag::Training"
    )]
    async fn delete(
        &self,
        id: Path<String>,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
    ) -> Result<DeleteReply, ApiError> {
        let app = state_of(&self.0)?;
        let run = find_training(app, &caller, &id.0).await?;
        let name = run
            .resource_name
            .clone()
            .unwrap_or_else(|| run.id.to_string());
        if !run.state.is_terminal() {
            let run = if run.cancel_requested {
                run
            } else {
                request_cancel(app, run.id, &caller, Some("the Essedum backend deleted it")).await?
            };
            return Ok(DeleteReply::Stopping(Json(TrainingDeleted {
                job: essedum_job(&run),
                deleted: false,
                message: format!(
                    "{} {name:?} is being stopped; delete it again once it has stopped to remove its record",
                    job_noun(run.kind)
                ),
            })));
        }
        if !app.store.delete_finished_run(run.id).await? {
            return Err(ApiError::conflict(format!(
                "the run is {}; try again once it has ended",
                run.state
            )));
        }
        tracing::info!(run_id = %run.id, by = %caller.name, "training run deleted");
        Ok(DeleteReply::Deleted(Json(TrainingDeleted {
            job: essedum_job(&run),
            deleted: true,
            message: format!(
                "{} {name:?} deleted (SageMaker keeps its own record of the job)",
                job_noun(run.kind)
            ),
        })))
    }

    /// Training and AutoML runs, newest first (filtered by `project` when given), at most `limit`
    /// (default 100), in Essedum's record shape.
    #[oai(path = "/api/service/v1/pipelines/training/list", method = "get")]
    async fn list(
        &self,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        limit: Query<Option<u32>>,
        caller: Data<&Caller>,
    ) -> Result<Json<Vec<EssedumJob>>, ApiError> {
        let app = state_of(&self.0)?;
        Ok(Json(
            essedum_list(
                app,
                &caller,
                &[Kind::Training, Kind::Automl],
                project.0,
                limit.0,
            )
            .await?,
        ))
    }
}
