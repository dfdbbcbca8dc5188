//! Essedum's batch inference routes (ESSEDUM-CONTRACT.md section 3): SageMaker transform jobs as
//! durable runs.
// Every Essedum route takes the backend's four query parameters and Referer, so handlers have
// many parameters by contract.
#![allow(clippy::too_many_arguments)]

use super::auth::Caller;
use super::body::RawBody;
use super::dto::{
    EssedumJob, Record, Stopping, Tag, essedum_job, essedum_list, essedum_type, record_date,
};
use super::operator::{request_cancel, state_of, visible};
use super::scope::AwsScope;
use super::{ApiError, AppState};
use crate::model::{Kind, State};
use crate::store::{NewRun, Run};
use crate::workflows::input::Origin;
use crate::workflows::job::JobContext;
use crate::workflows::transform::TransformRequest;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use std::collections::HashMap;

pub struct InferenceApi(pub Option<AppState>);

/// SageMaker CreateTransformJob fields (the same names and nesting). `TransformJobName` is
/// optional: without it the job is named after the run. As on every route the Essedum backend
/// calls, unknown keys (e.g. `ModelClientConfig`, `DataProcessing`) are ignored and `""` is
/// absent; a missing or invalid value is a 422 naming its path (e.g.
/// `TransformInput.DataSource.S3DataSource.S3Uri`).
#[derive(Object)]
#[oai(rename = "TransformRequest")]
#[allow(dead_code)]
struct TransformRequestSchema {
    #[oai(rename = "TransformJobName")]
    transform_job_name: Option<String>,
    #[oai(rename = "ModelName")]
    model_name: String,
    /// `{DataSource: {S3DataSource: {S3Uri, S3DataType?}}, ContentType?, SplitType?, CompressionType?}`
    #[oai(rename = "TransformInput")]
    transform_input: serde_json::Value,
    /// `{S3OutputPath, Accept?, AssembleWith?}`
    #[oai(rename = "TransformOutput")]
    transform_output: serde_json::Value,
    /// `{InstanceType, InstanceCount}`
    #[oai(rename = "TransformResources")]
    transform_resources: serde_json::Value,
    #[oai(rename = "MaxConcurrentTransforms")]
    max_concurrent_transforms: Option<i32>,
    #[oai(rename = "MaxPayloadInMB")]
    max_payload_in_mb: Option<i32>,
    /// `MultiRecord` or `SingleRecord`.
    #[oai(rename = "BatchStrategy")]
    batch_strategy: Option<String>,
    #[oai(rename = "Environment")]
    environment: Option<HashMap<String, String>>,
    #[oai(rename = "Tags")]
    tags: Option<HashMap<String, String>>,
}

/// The reply to a submission: the job's record (every record key; `id` is the run id, `sourceID`,
/// `name` and `sourcename` the job name, `container` null until the job exists, `artifacts` the
/// output location), plus `runId`, `state` and `message`.
#[derive(Object)]
struct TransformAccepted {
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

#[derive(ApiResponse)]
enum SubmitReply {
    /// Accepted and stored; the engine runs it.
    #[oai(status = 202)]
    Accepted(Json<TransformAccepted>),
}

#[derive(Object)]
struct Deleted {
    id: String,
    deleted: bool,
}

async fn find_transform(app: &AppState, caller: &Caller, id: &str) -> Result<Run, ApiError> {
    match visible(caller, app.store.find_run(id).await?) {
        Some(r) if r.kind == Kind::Transform => Ok(r),
        _ => Err(ApiError::not_found(format!(
            "no transform run or job named {id:?}"
        ))),
    }
}

#[OpenApi(tag = "Tag::Inference")]
impl InferenceApi {
    /// Submit a batch transform job; replies 202 with the run id and job name.
    #[oai(path = "/api/service/v1/pipelines/inference", method = "post")]
    async fn submit(
        &self,
        body: Json<RawBody<TransformRequestSchema>>,
        adapter_instance: Query<Option<String>>,
        project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
        scope: Data<&AwsScope>,
    ) -> Result<SubmitReply, ApiError> {
        let app = state_of(&self.0)?;
        let mut request = TransformRequest::parse(body.0.value, crate::validate::Mode::Essedum)?;
        if project.0.is_some() || adapter_instance.0.is_some() {
            request.origin = Some(Origin {
                project: project.0,
                adapter_instance: adapter_instance.0,
            });
        }
        // A name the caller chose may already belong to a job in SageMaker (names are never
        // reused there); adopting that job would be wrong, so it is refused up front.
        if let Some(chosen) = &request.job_name {
            match scope.aws.describe_transform_job(chosen).await {
                Ok(None) => {}
                Ok(Some(_)) => {
                    return Err(ApiError::conflict(format!(
                        "a transform job named {chosen:?} already exists in SageMaker; choose another TransformJobName"
                    )));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not check the transform job name");
                    return Err(ApiError::unavailable(format!(
                        "could not check whether the job name is free; try again: {e}"
                    )));
                }
            }
        }
        let id = crate::store::new_run_id();
        let name = request.name_for(id);
        let run = app
            .store
            .insert_run(
                NewRun {
                    id,
                    kind: Kind::Transform,
                    state: State::Submitted,
                    // The connection's reference (never its credentials) goes with the run.
                    request: scope.tag(serde_json::to_value(&request).expect("request serialises")),
                    context: JobContext {
                        input_s3_uri: Some(request.spec.input_s3_uri.clone()),
                        ..JobContext::new(name.clone())
                    }
                    .to_value(),
                    resource_name: Some(name.clone()),
                    submitted_by: Some(caller.name.clone()),
                    detail: format!("accepted; job name {name}"),
                },
                app.clock.now(),
            )
            .await?;
        app.wake.notify_one();
        tracing::info!(run_id = %id, job = %name, "transform run accepted");
        let now = record_date(app.clock.now());
        let origin = request.origin.clone().unwrap_or_default();
        Ok(SubmitReply::Accepted(Json(TransformAccepted {
            record: Record {
                source_id: Some(name.clone()),
                name: Some(name.clone()),
                id: Some(id.to_string()),
                status: Some("InProgress".into()),
                kind: Some(essedum_type(Kind::Transform).into()),
                container: None,
                artifacts: Some(request.spec.output_s3_path.clone()),
                adapter: origin.adapter_instance,
                project: origin.project,
                created_on: Some(now.clone()),
                sync_date: Some(now),
                description: Some(format!(
                    "Transform job of model {}",
                    request.spec.model_name
                )),
                source_org: None,
                sourcename: Some(name.clone()),
                deployment: None,
                raw_payload: Some(
                    serde_json::json!({
                        "job_name": name,
                        "job_arn": null,
                        "model_name": request.spec.model_name,
                        "input_data": request.spec.input_s3_uri,
                        "output_path": request.spec.output_s3_path,
                        "status": "InProgress",
                    })
                    .to_string(),
                ),
            },
            run_id: id.to_string(),
            state: run.state,
            message: format!(
                "Transform job started. Use POST /api/service/v1/pipelines/inference/{name}/get to check its status."
            ),
        })))
    }

    /// Transform runs, newest first (filtered by `project` when given), at most `limit` (default 100).
    #[oai(path = "/api/service/v1/pipelines/inference/list", method = "get")]
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
            essedum_list(app, &caller, &[Kind::Transform], project.0, limit.0).await?,
        ))
    }

    /// A transform job in Essedum's shape (`artifacts` is its output location), by run id or job name.
    #[oai(path = "/api/service/v1/pipelines/inference/:id/get", method = "post")]
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
            &find_transform(app, &caller, &id.0).await?,
        )))
    }

    /// Cancel a transform run: StopTransformJob, then Cancelled. A finished run is a 409.
    #[oai(
        path = "/api/service/v1/pipelines/inference/:id/cancel",
        method = "post"
    )]
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
        let run = find_transform(app, &caller, &id.0).await?;
        request_cancel(app, run.id, &caller, None).await?;
        Ok(Json(Stopping {
            status: "Stopping".into(),
        }))
    }

    /// Forget a finished transform run and its history (SageMaker keeps its own record of the
    /// job). An unfinished run is a 409: cancel it first.
    #[oai(path = "/api/service/v1/pipelines/inference/:id", method = "delete")]
    async fn delete(
        &self,
        id: Path<String>,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
    ) -> Result<Json<Deleted>, ApiError> {
        let app = state_of(&self.0)?;
        let run = find_transform(app, &caller, &id.0).await?;
        if !app.store.delete_finished_run(run.id).await? {
            return Err(ApiError::conflict(format!(
                "the run is {}; cancel it and wait until it ends before deleting it",
                run.state
            )));
        }
        tracing::info!(run_id = %run.id, by = %caller.name, "transform run deleted");
        Ok(Json(Deleted {
            id: run.id.to_string(),
            deleted: true,
        }))
    }
}
