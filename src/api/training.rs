//! Essedum's training routes (ESSEDUM-CONTRACT.md sections 1 and 3) and `GET /status/{id}`.
// Every Essedum route takes the backend's four query parameters and Referer, so handlers have
// many parameters by contract.
#![allow(clippy::too_many_arguments)]

use super::auth::Caller;
use super::body::RawBody;
use super::dto::{EssedumJob, RunStatus, Stopping, Tag, essedum_job, essedum_list, essedum_type};
use super::operator::{request_cancel, state_of, visible};
use super::scope::AwsScope;
use super::{ApiError, AppState};
use crate::model::{Kind, State};
use crate::store::{NewRun, Run};
use crate::workflows::automl::{self, AutomlRequest};
use crate::workflows::input::Origin;
use crate::workflows::job::JobContext;
use crate::workflows::training::{self, TrainingRequest};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use std::collections::HashMap;
use uuid::Uuid;

pub struct TrainingApi(pub Option<AppState>);

/// An AutoML (V2) request. Give exactly one of `inputs` (an S3 CSV object), `inline_csv` or
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

#[derive(ApiResponse)]
enum SubmitReply {
    /// Accepted and stored; the engine runs it.
    #[oai(status = 202)]
    Accepted(Json<TrainingAccepted>),
}

async fn find_training(app: &AppState, caller: &Caller, id: &str) -> Result<Run, ApiError> {
    match visible(caller, app.store.find_run(id).await?) {
        Some(r) if matches!(r.kind, Kind::Training | Kind::Automl) => Ok(r),
        _ => Err(ApiError::not_found(format!(
            "no training run or job named {id:?}"
        ))),
    }
}

impl TrainingApi {
    /// Validates and stores a run of the route's kind, or (`None`) of the kind the body's `type`
    /// names, replying 202.
    async fn submit(
        &self,
        body: serde_json::Value,
        route_kind: Option<Kind>,
        origin: Origin,
        caller: &Caller,
        scope: &AwsScope,
    ) -> Result<SubmitReply, ApiError> {
        let app = state_of(&self.0)?;
        // The base route takes either kind, by the body's `type`; the others their own.
        let is_automl = match route_kind {
            Some(kind) => kind == Kind::Automl,
            None => matches!(
                body.get("type").and_then(|t| t.as_str()),
                Some("automl" | "sagemaker-automl")
            ),
        };
        let origin =
            (origin.project.is_some() || origin.adapter_instance.is_some()).then_some(origin);
        let id = Uuid::now_v7();
        let (kind, name, request) = if is_automl {
            let mut req = AutomlRequest::parse(body, &app.limits)?;
            match req.check_target_column(scope.aws.as_ref()).await {
                Ok(checked) => checked?,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the AutoML input's header");
                    return Err(ApiError::unavailable(format!(
                        "could not read the input's CSV header from S3; try again: {e}"
                    )));
                }
            }
            req.origin = origin;
            (
                Kind::Automl,
                automl::job_name(id),
                serde_json::to_value(&req),
            )
        } else {
            let mut req = TrainingRequest::parse(body, &app.limits)?;
            req.origin = origin;
            (
                Kind::Training,
                training::job_name(id),
                serde_json::to_value(&req),
            )
        };
        let run = app
            .store
            .insert_run(
                NewRun {
                    id,
                    kind,
                    state: State::Uploading,
                    // The connection's reference (never its credentials) goes with the run.
                    request: scope.tag(request.expect("request serialises")),
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
        Ok(SubmitReply::Accepted(Json(TrainingAccepted {
            id: id.to_string(),
            name: name.clone(),
            source_id: name,
            status: "InProgress".into(),
            state: run.state,
            kind: essedum_type(kind).into(),
        })))
    }
}

#[OpenApi(tag = "Tag::Training")]
impl TrainingApi {
    /// Submit an AutoML (V2) run. The CSV header must contain `target_attribute_name` (for an S3
    /// input only the start of the object is read); replies 202 with the AutoML job name.
    #[oai(path = "/api/service/v1/pipelines/training/automl", method = "post")]
    async fn submit_automl(
        &self,
        body: Json<RawBody<AutomlRequestSchema>>,
        adapter_instance: Query<Option<String>>,
        project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
        scope: Data<&AwsScope>,
    ) -> Result<SubmitReply, ApiError> {
        let origin = Origin {
            project: project.0,
            adapter_instance: adapter_instance.0,
        };
        self.submit(body.0.value, Some(Kind::Automl), origin, &caller, &scope)
            .await
    }

    /// Submit a training run (the route in the executor's design document); with
    /// `"type": "automl"` the body is an AutoML request instead.
    #[oai(path = "/api/service/v1/pipelines/training", method = "post")]
    async fn submit_training(
        &self,
        body: Json<RawBody<TrainingRequestSchema>>,
        adapter_instance: Query<Option<String>>,
        project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
        scope: Data<&AwsScope>,
    ) -> Result<SubmitReply, ApiError> {
        let origin = Origin {
            project: project.0,
            adapter_instance: adapter_instance.0,
        };
        self.submit(body.0.value, None, origin, &caller, &scope)
            .await
    }

    /// Submit a training run (the route the Essedum backend calls).
    #[oai(path = "/api/service/v1/pipelines/training/train", method = "post")]
    async fn submit_train(
        &self,
        body: Json<RawBody<TrainingRequestSchema>>,
        adapter_instance: Query<Option<String>>,
        project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
        scope: Data<&AwsScope>,
    ) -> Result<SubmitReply, ApiError> {
        let origin = Origin {
            project: project.0,
            adapter_instance: adapter_instance.0,
        };
        self.submit(body.0.value, Some(Kind::Training), origin, &caller, &scope)
            .await
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

    /// A training job in Essedum's shape, by run id or job name.
    #[oai(path = "/api/service/v1/pipelines/training/:id/get", method = "get")]
    async fn get(
        &self,
        id: Path<String>,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
    ) -> Result<Json<EssedumJob>, ApiError> {
        let app = state_of(&self.0)?;
        Ok(Json(essedum_job(
            &find_training(app, &caller, &id.0).await?,
        )))
    }

    /// Cancel a training run; the job is stopped. A finished run is a 409.
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
    ) -> Result<Json<Stopping>, ApiError> {
        let app = state_of(&self.0)?;
        let run = find_training(app, &caller, &id.0).await?;
        request_cancel(app, run.id, &caller, None).await?;
        Ok(Json(Stopping {
            status: "Stopping".into(),
        }))
    }

    /// Training and AutoML runs, newest first (filtered by `project` when given), at most `limit`
    /// (default 100).
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
