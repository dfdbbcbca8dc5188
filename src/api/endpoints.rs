//! Essedum's endpoint routes: real-time inference (`POST /api/service/v1/endpoints/{id}/infer`).
// Every Essedum route takes the backend's query parameters and Referer, so handlers have many
// parameters by contract.
#![allow(clippy::too_many_arguments)]

use super::auth::Caller;
use super::dto::Tag;
use super::error::ErrorBody;
use super::operator::state_of;
use super::raw::RawPayload;
use super::scope::AwsScope;
use crate::aws::{AwsError, AwsErrorKind};
use crate::validate;
use backon::{BackoffBuilder, ExponentialBuilder};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::{ApiResponse, OpenApi, payload::Json};
use std::time::Duration;

pub struct EndpointsApi(pub Option<super::AppState>);

/// SageMaker's payload limit for InvokeEndpoint.
const MAX_PAYLOAD: u64 = 6 * 1024 * 1024;

#[derive(ApiResponse, Debug)]
pub enum InferError {
    /// The request body or endpoint name is malformed.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No such endpoint.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The endpoint is not InService.
    #[oai(status = 409)]
    NotInService(Json<ErrorBody>),
    /// The request names data that cannot be used (e.g. a missing S3 object).
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// The model answered with an error (SageMaker's ModelError); its message is returned.
    #[oai(status = 424)]
    ModelError(Json<ErrorBody>),
    /// SageMaker refused the call (e.g. access denied).
    #[oai(status = 502)]
    Upstream(Json<ErrorBody>),
    /// SageMaker is throttling or unavailable; retry after the given seconds.
    #[oai(status = 503)]
    Busy(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
}

fn body(error: impl Into<String>, field: Option<&str>) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: error.into(),
        field: field.map(str::to_string),
    })
}

impl From<AwsError> for InferError {
    fn from(e: AwsError) -> Self {
        match (e.code.as_deref(), e.kind) {
            (Some("ModelError"), _) => {
                InferError::ModelError(body(format!("the model failed: {}", e.message), None))
            }
            (Some("ValidationError"), _) if e.message.contains("not found") => {
                InferError::NotFound(body(e.message, None))
            }
            (Some("ValidationError"), _) => InferError::NotInService(body(e.message, None)),
            (_, AwsErrorKind::Retryable | AwsErrorKind::Capacity) => {
                InferError::Busy(body(format!("SageMaker is busy: {e}"), None), 1)
            }
            _ => InferError::Upstream(body(format!("SageMaker refused the call: {e}"), None)),
        }
    }
}

/// What to send to the model: CSV and other bodies as they are; a JSON `{"S3Uri": ...}` as the
/// CSV object it names; any other JSON as JSON.
async fn model_input(
    aws: &dyn crate::aws::AwsPort,
    payload: RawPayload,
) -> Result<(String, Vec<u8>), InferError> {
    if payload.body.is_empty() {
        return Err(InferError::BadRequest(body(
            "the request body is empty",
            None,
        )));
    }
    let is_json = payload.content_type.starts_with("application/json")
        || payload
            .content_type
            .split(';')
            .next()
            .is_some_and(|m| m.trim().ends_with("+json"));
    if !is_json {
        return Ok((payload.content_type, payload.body));
    }
    let value: serde_json::Value = serde_json::from_slice(&payload.body).map_err(|e| {
        InferError::BadRequest(body(format!("the body is not valid JSON: {e}"), None))
    })?;
    let s3 = value
        .as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.get("S3Uri"));
    let Some(s3) = s3 else {
        return Ok(("application/json".into(), payload.body));
    };
    let uri = s3
        .as_str()
        .ok_or_else(|| InferError::Unprocessable(body("S3Uri must be a string", Some("S3Uri"))))
        .and_then(|u| {
            validate::s3_uri("S3Uri", u)
                .map_err(|e| InferError::Unprocessable(body(e.to_string(), Some("S3Uri"))))
        })?;
    let rest = uri.trim_start_matches("s3://");
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    let data = aws
        .read_object_start(bucket, key, MAX_PAYLOAD + 1)
        .await
        .map_err(InferError::from)?;
    let Some(data) = data else {
        return Err(InferError::Unprocessable(body(
            format!("{uri} does not exist"),
            Some("S3Uri"),
        )));
    };
    if data.len() as u64 > MAX_PAYLOAD {
        return Err(InferError::Unprocessable(body(
            format!("{uri} is larger than SageMaker's 6 MB request limit; use a batch transform"),
            Some("S3Uri"),
        )));
    }
    Ok(("text/csv".into(), data))
}

/// `{EndpointConfigName, Tags?}`: the config to put into service; tags for a new endpoint.
#[derive(poem_openapi::Object)]
#[oai(rename = "DeployRequest", deny_unknown_fields)]
#[allow(dead_code)]
struct DeployRequestSchema {
    #[oai(rename = "EndpointConfigName")]
    endpoint_config_name: String,
    #[oai(rename = "Tags")]
    tags: Option<std::collections::HashMap<String, String>>,
}

#[derive(poem_openapi::Object)]
struct DeployAccepted {
    /// The deployment run's id (`GET /status/{id}`, `GET /api/v1/runs/{id}`).
    id: String,
    /// The endpoint.
    name: String,
    #[oai(rename = "sourceID")]
    source_id: String,
    state: crate::model::State,
    #[oai(rename = "type")]
    kind: String,
}

#[derive(poem_openapi::Object)]
struct EndpointView {
    /// The endpoint name.
    name: String,
    /// SageMaker's status (`Creating`, `InService`, `Updating`, `Failed`, ...).
    status: String,
    #[oai(rename = "endpointConfigName")]
    endpoint_config_name: Option<String>,
    /// The config an update in progress moves to.
    #[oai(rename = "pendingEndpointConfigName")]
    pending_endpoint_config_name: Option<String>,
    #[oai(rename = "failureReason")]
    failure_reason: Option<String>,
    /// The endpoint's ARN.
    container: Option<String>,
    /// The newest deployment run of this endpoint, if any.
    #[oai(rename = "deploymentRunId")]
    deployment_run_id: Option<String>,
}

/// An endpoint this service deployed or tore down.
#[derive(poem_openapi::Object)]
struct EndpointSummary {
    #[oai(rename = "sourceID")]
    source_id: String,
    name: String,
    /// SageMaker's status when the newest run last looked.
    status: Option<String>,
    #[oai(rename = "endpointConfigName")]
    endpoint_config_name: Option<String>,
    #[oai(rename = "lastRunId")]
    last_run_id: String,
    #[oai(rename = "lastRunKind")]
    last_run_kind: crate::model::Kind,
    #[oai(rename = "lastRunState")]
    last_run_state: crate::model::State,
    #[oai(rename = "syncDate")]
    sync_date: String,
}

#[derive(ApiResponse)]
enum DeployReply {
    /// Accepted and stored; the engine creates or updates the endpoint.
    #[oai(status = 202)]
    Accepted(Json<DeployAccepted>),
}

impl EndpointsApi {
    /// Stores a teardown run for `endpoint` (one change per endpoint at a time).
    async fn teardown(
        &self,
        endpoint: &str,
        caller: &Caller,
        scope: &AwsScope,
    ) -> Result<DeployReply, super::ApiError> {
        use crate::workflows::deployment::DeployContext;
        use crate::workflows::teardown::TeardownRequest;
        let app = state_of(&self.0)?;
        // The configs registered here: the one the endpoint serves is deleted after it, if listed.
        let owned = app
            .store
            .list_owned(crate::store::OwnedKind::EndpointConfig)
            .await?
            .into_iter()
            .map(|o| o.name)
            .collect();
        let req = TeardownRequest::parse(endpoint, true, owned)?;
        let run_id = uuid::Uuid::now_v7();
        let inserted = app
            .store
            .insert_run(
                crate::store::NewRun {
                    id: run_id,
                    kind: crate::model::Kind::Teardown,
                    state: crate::model::State::Submitted,
                    // The connection's reference (never its credentials) goes with the run.
                    request: scope.tag(serde_json::to_value(&req).expect("request serialises")),
                    context: DeployContext::new(&req.endpoint_name).to_value(),
                    resource_name: None,
                    submitted_by: Some(caller.name.clone()),
                    detail: format!("accepted; delete endpoint {}", req.endpoint_name),
                },
                app.clock.now(),
            )
            .await;
        let run = match inserted {
            Ok(run) => run,
            Err(crate::store::Error::NameTaken(_)) => {
                return Err(super::ApiError::conflict(format!(
                    "a deployment or teardown of endpoint {} is still running",
                    req.endpoint_name
                )));
            }
            Err(e) => return Err(e.into()),
        };
        app.wake.notify_one();
        Ok(DeployReply::Accepted(Json(DeployAccepted {
            id: run_id.to_string(),
            name: req.endpoint_name.clone(),
            source_id: req.endpoint_name,
            state: run.state,
            kind: "sagemaker-teardown".into(),
        })))
    }
}

#[OpenApi(tag = "Tag::Endpoints")]
impl EndpointsApi {
    /// Take endpoint `{id}` down as a durable run: DeleteEndpoint, wait until it is gone, then
    /// delete the endpoint config it served when that config was registered here. An endpoint
    /// that does not exist ends the run Done, reported in its history.
    #[oai(
        path = "/api/service/v1/endpoints/:id/undeploy_models",
        method = "post"
    )]
    async fn undeploy_models(
        &self,
        id: Path<String>,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "isOnline")] _is_online: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
        scope: Data<&AwsScope>,
    ) -> Result<DeployReply, super::ApiError> {
        self.teardown(&id.0, &caller, &scope).await
    }

    /// The same as `undeploy_models` (Essedum calls both).
    #[oai(path = "/api/service/v1/endpoints/:id/delete", method = "delete")]
    async fn delete_endpoint(
        &self,
        id: Path<String>,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "isOnline")] _is_online: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
        scope: Data<&AwsScope>,
    ) -> Result<DeployReply, super::ApiError> {
        self.teardown(&id.0, &caller, &scope).await
    }

    /// The endpoints this service deployed or tore down, newest first, each with its newest
    /// deployment or teardown run (its state says whether the endpoint is up, going, or gone).
    #[oai(path = "/api/service/v1/endpoints/list", method = "get")]
    async fn list_endpoints(
        &self,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "isOnline")] _is_online: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
    ) -> Result<Json<Vec<EndpointSummary>>, super::ApiError> {
        let app = state_of(&self.0)?;
        let rows = app.store.endpoints_with_latest_run().await?;
        Ok(Json(
            rows.into_iter()
                .map(|(name, run)| EndpointSummary {
                    source_id: name.clone(),
                    name,
                    status: run.context["sagemaker_status"].as_str().map(str::to_string),
                    endpoint_config_name: run.context["endpoint_config_name"]
                        .as_str()
                        .or(run.request["endpoint_config_name"].as_str())
                        .map(str::to_string),
                    last_run_id: run.id.to_string(),
                    last_run_kind: run.kind,
                    last_run_state: run.state,
                    sync_date: super::dto::time(run.updated_at),
                })
                .collect(),
        ))
    }

    /// Endpoint `{id}` as SageMaker describes it, with its newest deployment run.
    #[oai(path = "/api/service/v1/endpoints/:id", method = "get")]
    async fn get_endpoint(
        &self,
        id: Path<String>,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "isOnline")] _is_online: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
    ) -> Result<Json<EndpointView>, super::ApiError> {
        let app = state_of(&self.0)?;
        let name = validate::sagemaker_name("id", &id.0)?;
        let described = match scope.aws.describe_endpoint(&name).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "DescribeEndpoint failed");
                return Err(super::ApiError::unavailable(format!(
                    "could not describe the endpoint: {e}"
                )));
            }
        };
        let d =
            described.ok_or_else(|| super::ApiError::not_found(format!("no endpoint {name:?}")))?;
        let deployment = app
            .store
            .latest_run_for_endpoint(crate::model::Kind::Deployment, &name)
            .await?;
        Ok(Json(EndpointView {
            name,
            status: d.status,
            endpoint_config_name: d.config_name,
            pending_endpoint_config_name: d.pending_config_name,
            failure_reason: d.failure_reason,
            container: d.arn,
            deployment_run_id: deployment.map(|u| u.to_string()),
        }))
    }

    /// Deploy an endpoint config to endpoint `{id}` as a durable run: CreateEndpoint when it does
    /// not exist, UpdateEndpoint when it serves another config; Done once it is InService with
    /// this config, Failed when SageMaker rolls the update back or the endpoint fails. One
    /// unfinished deployment per endpoint (a second is a 409).
    #[oai(path = "/api/service/v1/endpoints/:id/deploy_model", method = "post")]
    async fn deploy_model(
        &self,
        id: Path<String>,
        body: Json<super::body::RawBody<DeployRequestSchema>>,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "isOnline")] _is_online: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
        scope: Data<&AwsScope>,
    ) -> Result<DeployReply, super::ApiError> {
        use crate::workflows::deployment::{DeployContext, DeployRequest};
        let app = state_of(&self.0)?;
        let req = DeployRequest::parse(&id.0, body.0.value)?;
        let run_id = uuid::Uuid::now_v7();
        let inserted = app
            .store
            .insert_run(
                crate::store::NewRun {
                    id: run_id,
                    kind: crate::model::Kind::Deployment,
                    state: crate::model::State::Submitted,
                    // The connection's reference (never its credentials) goes with the run.
                    request: scope.tag(serde_json::to_value(&req).expect("request serialises")),
                    context: DeployContext::new(&req.endpoint_name).to_value(),
                    resource_name: None,
                    submitted_by: Some(caller.name.clone()),
                    detail: format!(
                        "accepted; deploy config {} to endpoint {}",
                        req.endpoint_config_name, req.endpoint_name
                    ),
                },
                app.clock.now(),
            )
            .await;
        let run = match inserted {
            Ok(run) => run,
            Err(crate::store::Error::NameTaken(_)) => {
                return Err(super::ApiError::conflict(format!(
                    "a deployment or teardown of endpoint {} is still running; wait for it or cancel it",
                    req.endpoint_name
                )));
            }
            Err(e) => return Err(e.into()),
        };
        app.wake.notify_one();
        Ok(DeployReply::Accepted(Json(DeployAccepted {
            id: run_id.to_string(),
            name: req.endpoint_name.clone(),
            source_id: req.endpoint_name,
            state: run.state,
            kind: "sagemaker-deployment".into(),
        })))
    }

    /// Real-time inference: the body goes to InvokeEndpoint (JSON as `application/json`; CSV, or
    /// `{"S3Uri": "s3://..."}` naming a CSV object, as `text/csv`; other content types as they
    /// are) and the model's answer comes back with its content type. Throttling is retried
    /// briefly, then answered 503 with `Retry-After`; a model error is a 424 with its message; an
    /// endpoint that is not InService a 409.
    #[oai(path = "/api/service/v1/endpoints/:id/infer", method = "post")]
    async fn infer(
        &self,
        id: Path<String>,
        payload: RawPayload,
        #[oai(name = "Accept")] accept: Header<Option<String>>,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "isOnline")] _is_online: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
        scope: Data<&AwsScope>,
    ) -> Result<RawPayload, InferError> {
        state_of(&self.0).map_err(|_| InferError::Busy(body("not serving", None), 1))?;
        let endpoint = validate::sagemaker_name("id", &id.0)
            .map_err(|e| InferError::BadRequest(body(e.to_string(), Some("id"))))?;
        let (content_type, data) = model_input(scope.aws.as_ref(), payload).await?;
        let accept = accept.0.filter(|a| !a.is_empty() && a != "*/*");
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_millis(800))
            .with_jitter()
            .with_max_times(3)
            .build();
        loop {
            let inference_id = uuid::Uuid::new_v4().to_string();
            match scope
                .aws
                .invoke_endpoint(
                    &endpoint,
                    &content_type,
                    accept.as_deref(),
                    data.clone(),
                    &inference_id,
                )
                .await
            {
                Ok(out) => {
                    tracing::debug!(endpoint, by = %caller.name, bytes = out.body.len(), "inference answered");
                    return Ok(RawPayload {
                        content_type: out
                            .content_type
                            .unwrap_or_else(|| "application/octet-stream".into()),
                        body: out.body,
                    });
                }
                Err(e)
                    if e.kind == AwsErrorKind::Retryable
                        && e.code.as_deref() != Some("ModelError") =>
                {
                    match delays.next() {
                        Some(d) => tokio::time::sleep(d).await,
                        None => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
