//! Essedum's endpoint routes: real-time inference (`POST /api/service/v1/endpoints/{id}/infer`).
// Every Essedum route takes the backend's query parameters and Referer, so handlers have many
// parameters by contract.
#![allow(clippy::too_many_arguments)]

use super::auth::Caller;
use super::dto::Tag;
use super::dto::{Record, record_date};
use super::error::ErrorBody;
use super::models::{LIST_PAGE_SIZE, LIST_PAGES, Origin, aws_failure, rfc3339};
use super::operator::state_of;
use super::raw::RawPayload;
use super::scope::AwsScope;
use crate::aws::{AwsError, AwsErrorKind};
use crate::clock::Timestamp;
use crate::validate;
use backon::{BackoffBuilder, ExponentialBuilder};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::{ApiResponse, OpenApi, payload::Json};
use serde_json::Value;
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
    /// The endpoint is not InService (explain: or its config has no Clarify explainer).
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

/// What to send to the model: CSV and other bodies as they are; a JSON object with `S3Uri` as the
/// CSV object it names (its other keys ignored); any other JSON as JSON.
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
    // The backend's body names a CSV object as `S3Uri` (other keys are not for the model; the
    // Python executor read only `S3Uri`); `"S3Uri": ""` counts as absent.
    let s3 = value
        .as_object()
        .and_then(|m| m.get("S3Uri"))
        .filter(|v| v.as_str() != Some(""));
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

/// `{EndpointConfigName, EndpointName?, Tags?}`: the config to put into service; tags for a new
/// endpoint. `EndpointName`, when sent (the Essedum backend repeats the path's endpoint there),
/// must equal the path's. Unknown keys are ignored and `""` means absent.
#[derive(poem_openapi::Object)]
#[oai(rename = "DeployRequest")]
#[allow(dead_code)]
struct DeployRequestSchema {
    #[oai(rename = "EndpointConfigName")]
    endpoint_config_name: String,
    #[oai(rename = "EndpointName")]
    endpoint_name: Option<String>,
    #[oai(rename = "Tags")]
    tags: Option<std::collections::HashMap<String, String>>,
}

#[derive(poem_openapi::Object)]
pub(super) struct DeployAccepted {
    /// The run's id (`GET /status/{id}`, `GET /api/v1/runs/{id}`).
    id: String,
    /// The endpoint.
    name: String,
    #[oai(rename = "sourceID")]
    source_id: String,
    state: crate::model::State,
    #[oai(rename = "type")]
    kind: String,
    /// Always `SUCCESS`: the request was accepted (the Essedum UI's deploy screen checks this
    /// word before it links the model to the endpoint).
    status: String,
}

/// An endpoint in Essedum's record shape (every key present, `null` when unknown): `status` is
/// SageMaker's EndpointStatus (`Deleted` for an endpoint this service took down), `container`
/// and `artifacts` its ARN, `createdOn` / `syncDate` (last modified) `yyyy-MM-dd HH-mm-ss` UTC.
/// Endpoints this service deployed or tore down also carry their newest run.
#[derive(poem_openapi::Object)]
#[oai(rename = "EndpointRecord")]
struct EndpointRecord {
    #[oai(flatten)]
    record: Record,
    /// The endpoint config it serves.
    #[oai(rename = "endpointConfigName", nullable)]
    endpoint_config_name: Option<String>,
    /// The config an update in progress moves to.
    #[oai(rename = "pendingEndpointConfigName", nullable)]
    pending_endpoint_config_name: Option<String>,
    #[oai(rename = "failureReason", nullable)]
    failure_reason: Option<String>,
    /// The newest deployment or teardown run of this endpoint here, if any.
    #[oai(rename = "lastRunId", nullable)]
    last_run_id: Option<String>,
    #[oai(rename = "lastRunKind", nullable)]
    last_run_kind: Option<crate::model::Kind>,
    #[oai(rename = "lastRunState", nullable)]
    last_run_state: Option<crate::model::State>,
    /// The newest deployment run of this endpoint here, if any.
    #[oai(rename = "deploymentRunId", nullable)]
    deployment_run_id: Option<String>,
}

/// What SageMaker says about an endpoint (a ListEndpoints summary or a DescribeEndpoint).
#[derive(Default)]
struct Seen {
    arn: Option<String>,
    status: Option<String>,
    created: Option<Timestamp>,
    last_modified: Option<Timestamp>,
    config_name: Option<String>,
    pending_config_name: Option<String>,
    failure_reason: Option<String>,
}

impl Seen {
    fn from_summary(e: crate::aws::EndpointSummary) -> Seen {
        Seen {
            arn: e.arn,
            status: e.status,
            created: e.created,
            last_modified: e.last_modified,
            ..Default::default()
        }
    }

    fn from_description(d: crate::aws::EndpointDescription) -> Seen {
        Seen {
            arn: d.arn,
            status: Some(d.status),
            created: d.created,
            last_modified: d.last_modified,
            config_name: d.config_name,
            pending_config_name: d.pending_config_name,
            failure_reason: d.failure_reason,
        }
    }
}

/// The record of endpoint `name` from what SageMaker says (`seen`) and this service's newest run
/// of it; SageMaker's word wins where both know.
fn endpoint_record(
    name: &str,
    seen: Option<Seen>,
    run: Option<&crate::store::Run>,
    origin: &Origin,
) -> EndpointRecord {
    let ctx = |k: &str| {
        run.and_then(|r| r.context[k].as_str().or(r.request[k].as_str()))
            .map(str::to_string)
    };
    let seen = seen.unwrap_or_default();
    let arn = seen.arn.or_else(|| ctx("job_arn"));
    let config = seen.config_name.or_else(|| ctx("endpoint_config_name"));
    let status = seen.status.or_else(|| ctx("sagemaker_status"));
    let changed = match (seen.last_modified, run.map(|r| r.updated_at)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (Some(a), _) => Some(a),
        (None, b) => b,
    };
    let mut raw = serde_json::json!({
        "EndpointName": name,
        "EndpointArn": arn,
        "EndpointStatus": status,
        "EndpointConfigName": config,
        "CreationTime": rfc3339(seen.created),
        "LastModifiedTime": rfc3339(seen.last_modified),
    });
    if let Some(r) = &seen.failure_reason {
        raw["FailureReason"] = r.clone().into();
    }
    EndpointRecord {
        record: Record {
            source_id: Some(name.to_string()),
            name: Some(name.to_string()),
            id: Some(name.to_string()),
            status,
            kind: Some("sagemaker-endpoint".into()),
            container: arn.clone(),
            artifacts: arn,
            adapter: origin.adapter.clone(),
            project: origin.project.clone(),
            created_on: seen.created.or(run.map(|r| r.created_at)).map(record_date),
            sync_date: changed.map(record_date),
            description: Some(match &config {
                Some(c) => format!("SageMaker endpoint serving endpoint config {c}"),
                None => "SageMaker endpoint".into(),
            }),
            source_org: Some("AWS".into()),
            sourcename: Some(name.to_string()),
            deployment: None,
            raw_payload: Some(raw.to_string()),
        },
        endpoint_config_name: config,
        pending_endpoint_config_name: seen.pending_config_name,
        failure_reason: seen.failure_reason.or_else(|| ctx("failure_reason")),
        last_run_id: run.map(|r| r.id.to_string()),
        last_run_kind: run.map(|r| r.kind),
        last_run_state: run.map(|r| r.state),
        deployment_run_id: run
            .filter(|r| r.kind == crate::model::Kind::Deployment)
            .map(|r| r.id.to_string()),
    }
}

/// Whether a run was made under the same connection as this request (runs of other accounts
/// or regions are not shown).
fn same_scope(run: &crate::store::Run, scope: &AwsScope) -> bool {
    let theirs = run
        .request
        .get("connection")
        .cloned()
        .unwrap_or(Value::Null);
    let ours = scope
        .connection
        .as_ref()
        .map(|c| serde_json::to_value(c).expect("connection reference serialises"))
        .unwrap_or(Value::Null);
    theirs == ours
}

#[derive(ApiResponse)]
pub(super) enum DeployReply {
    /// Accepted and stored; the engine creates, updates or deletes the endpoint.
    #[oai(status = 202)]
    Accepted(Json<DeployAccepted>),
}

/// Stores a deployment run for `req` (one change per endpoint at a time: a second is a 409) and
/// wakes the engine.
pub(super) async fn start_deployment(
    app: &super::AppState,
    req: crate::workflows::deployment::DeployRequest,
    caller: &Caller,
    scope: &AwsScope,
) -> Result<DeployReply, super::ApiError> {
    let detail = format!(
        "accepted; deploy config {} to endpoint {}",
        req.endpoint_config_name, req.endpoint_name
    );
    let request = serde_json::to_value(&req).expect("request serialises");
    start_endpoint_run(
        app,
        crate::model::Kind::Deployment,
        &req.endpoint_name,
        request,
        detail,
        caller,
        scope,
    )
    .await
}

/// Stores a deployment or teardown run of `endpoint` (one change per endpoint at a time: a
/// second is a 409), wakes the engine, and answers the 202.
async fn start_endpoint_run(
    app: &super::AppState,
    kind: crate::model::Kind,
    endpoint: &str,
    request: Value,
    detail: String,
    caller: &Caller,
    scope: &AwsScope,
) -> Result<DeployReply, super::ApiError> {
    use crate::workflows::deployment::DeployContext;
    let run_id = crate::store::new_run_id();
    let inserted = app
        .store
        .insert_run(
            crate::store::NewRun {
                id: run_id,
                kind,
                state: crate::model::State::Submitted,
                // The connection's reference (never its credentials) goes with the run.
                request: scope.tag(request),
                context: DeployContext::new(endpoint).to_value(),
                resource_name: None,
                submitted_by: Some(caller.name.clone()),
                detail,
            },
            app.clock.now(),
        )
        .await;
    let run = match inserted {
        Ok(run) => run,
        Err(crate::store::Error::NameTaken(_)) => {
            return Err(super::ApiError::conflict(format!(
                "a deployment or teardown of endpoint {endpoint} is still running; wait for it or cancel it"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    app.wake.notify_one();
    Ok(DeployReply::Accepted(Json(DeployAccepted {
        id: run_id.to_string(),
        name: endpoint.to_string(),
        source_id: endpoint.to_string(),
        state: run.state,
        kind: super::dto::essedum_type(kind).into(),
        status: "SUCCESS".into(),
    })))
}

/// How long an inference route may spend on SageMaker: its request deadline (at least
/// [`super::auth::INFER_TIMEOUT`]) less a second to answer in.
fn infer_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + super::auth::INFER_TIMEOUT.saturating_sub(Duration::from_secs(1))
}

/// InvokeEndpoint through `call`, retrying only throttling (a refusal before anything ran), and
/// only while the route's `deadline` allows: a 5xx, a dropped connection or a model's own error
/// may have run the model, and running it twice is not ours to decide. A call still unanswered
/// at the deadline is answered 503 by this route rather than cut off by the request timeout.
async fn invoke_retrying<F, Fut>(
    deadline: tokio::time::Instant,
    mut call: F,
) -> Result<crate::aws::InvokeOutput, InferError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<crate::aws::InvokeOutput, AwsError>>,
{
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_millis(800))
        .with_jitter()
        .with_max_times(3)
        .build();
    loop {
        let answered =
            tokio::time::timeout_at(deadline, call(uuid::Uuid::new_v4().to_string())).await;
        let Ok(answer) = answered else {
            return Err(InferError::Busy(
                body(
                    "SageMaker did not answer within this route's deadline; the model may have run",
                    None,
                ),
                1,
            ));
        };
        match answer {
            Ok(out) => return Ok(out),
            Err(e) if crate::aws::is_throttling(e.code.as_deref()) => match delays.next() {
                Some(d) if tokio::time::Instant::now() + d < deadline => {
                    tokio::time::sleep(d).await
                }
                _ => return Err(e.into()),
            },
            Err(e)
                if e.kind == AwsErrorKind::Retryable && e.code.as_deref() != Some("ModelError") =>
            {
                return Err(InferError::Busy(
                    body(
                        format!(
                            "SageMaker failed the call, which may have run the model, so it is not repeated: {e}"
                        ),
                        None,
                    ),
                    1,
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl EndpointsApi {
    /// Stores a teardown run for `endpoint` (one change per endpoint at a time).
    async fn teardown(
        &self,
        endpoint: &str,
        caller: &Caller,
        scope: &AwsScope,
    ) -> Result<DeployReply, super::ApiError> {
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
        let detail = format!("accepted; delete endpoint {}", req.endpoint_name);
        let request = serde_json::to_value(&req).expect("request serialises");
        start_endpoint_run(
            app,
            crate::model::Kind::Teardown,
            &req.endpoint_name,
            request,
            detail,
            caller,
            scope,
        )
        .await
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

    /// Every endpoint in the account and region (ListEndpoints, page after page) merged with
    /// those this service deployed or tore down (each with its newest run; an endpoint taken
    /// down here stays listed as `Deleted`), newest change first, in Essedum's record shape.
    /// 503 when SageMaker cannot be listed.
    #[oai(path = "/api/service/v1/endpoints/list", method = "get")]
    async fn list_endpoints(
        &self,
        #[oai(name = "adapter_instance")] adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "isOnline")] _is_online: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
    ) -> Result<Json<Vec<EndpointRecord>>, super::ApiError> {
        let app = state_of(&self.0)?;
        let origin = Origin::of(&adapter_instance, &project);
        let listing = scope
            .aws
            .list_endpoints(LIST_PAGE_SIZE, LIST_PAGES)
            .await
            .map_err(aws_failure)?;
        if listing.truncated {
            tracing::warn!(
                pages = LIST_PAGES,
                "ListEndpoints has more pages than one list reads"
            );
        }
        let mut runs: std::collections::HashMap<String, crate::store::Run> = app
            .store
            .endpoints_with_latest_run()
            .await?
            .into_iter()
            .filter(|(_, run)| same_scope(run, &scope))
            .collect();
        let mut out = Vec::new();
        let mut seen_names = std::collections::HashSet::new();
        for e in listing.items {
            if !seen_names.insert(e.name.clone()) {
                continue;
            }
            let run = runs.remove(&e.name);
            let name = e.name.clone();
            out.push(endpoint_record(
                &name,
                Some(Seen::from_summary(e)),
                run.as_ref(),
                &origin,
            ));
        }
        // Ours that SageMaker no longer lists: taken down (or never created).
        for (name, run) in runs {
            out.push(endpoint_record(&name, None, Some(&run), &origin));
        }
        out.sort_by(|a, b| {
            b.record
                .sync_date
                .cmp(&a.record.sync_date)
                .then(a.record.name.cmp(&b.record.name))
        });
        Ok(Json(out))
    }

    /// Endpoint `{id}` as SageMaker describes it, in Essedum's record shape, with its newest
    /// deployment run here.
    #[oai(path = "/api/service/v1/endpoints/:id", method = "get")]
    async fn get_endpoint(
        &self,
        id: Path<String>,
        #[oai(name = "adapter_instance")] adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "isOnline")] _is_online: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
    ) -> Result<Json<EndpointRecord>, super::ApiError> {
        let app = state_of(&self.0)?;
        let origin = Origin::of(&adapter_instance, &project);
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
        let run = match deployment {
            Some(id) => app.store.get_run(id).await?,
            None => None,
        };
        Ok(Json(endpoint_record(
            &name,
            Some(Seen::from_description(d)),
            run.as_ref(),
            &origin,
        )))
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
        let app = state_of(&self.0)?;
        let req = crate::workflows::deployment::DeployRequest::parse(&id.0, body.0.value)?;
        start_deployment(app, req, &caller, &scope).await
    }

    /// Real-time inference: the body goes to InvokeEndpoint (JSON as `application/json`; CSV, or
    /// `{"S3Uri": "s3://..."}` naming a CSV object, as `text/csv`; other content types as they
    /// are) and the model's answer comes back with its content type. Throttling is retried
    /// briefly within the route's deadline, then answered 503 with `Retry-After`; a SageMaker 5xx
    /// is a 503 at once, never retried here (the model may have run); a model error is a 424
    /// with its message; an endpoint that is not InService a 409.
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
        let deadline = infer_deadline();
        state_of(&self.0).map_err(|_| InferError::Busy(body("not serving", None), 1))?;
        let endpoint = validate::sagemaker_name("id", &id.0)
            .map_err(|e| InferError::BadRequest(body(e.to_string(), Some("id"))))?;
        let (content_type, data) = model_input(scope.aws.as_ref(), payload).await?;
        let accept = accept.0.filter(|a| !a.is_empty() && a != "*/*");
        let aws = scope.aws.clone();
        let out = invoke_retrying(deadline, |inference_id| {
            let (aws, endpoint, content_type, accept, data) = (
                aws.clone(),
                endpoint.clone(),
                content_type.clone(),
                accept.clone(),
                data.clone(),
            );
            async move {
                aws.invoke_endpoint(
                    &endpoint,
                    &content_type,
                    accept.as_deref(),
                    data,
                    &inference_id,
                )
                .await
            }
        })
        .await?;
        tracing::debug!(endpoint, by = %caller.name, bytes = out.body.len(), "inference answered");
        Ok(RawPayload {
            content_type: out
                .content_type
                .unwrap_or_else(|| "application/octet-stream".into()),
            body: out.body,
        })
    }

    /// Explain: like `infer` (same bodies), but InvokeEndpoint asks for explanations
    /// (`EnableExplanations`, default `` `true` ``), and SageMaker Clarify answers with the
    /// predictions and their SHAP explanations as JSON. Only endpoints whose endpoint config has
    /// a Clarify `ExplainerConfig` can explain: others get a 409 saying so; an unknown endpoint is
    /// a 404.
    #[oai(path = "/api/service/v1/endpoints/:id/explain", method = "post")]
    async fn explain(
        &self,
        id: Path<String>,
        payload: RawPayload,
        /// A JMESPath expression deciding per record whether to explain (SageMaker's
        /// `EnableExplanations`); default `` `true` ``.
        #[oai(name = "EnableExplanations")]
        enable_explanations: Query<Option<String>>,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "isOnline")] _is_online: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
        scope: Data<&AwsScope>,
    ) -> Result<RawPayload, InferError> {
        let deadline = infer_deadline();
        state_of(&self.0).map_err(|_| InferError::Busy(body("not serving", None), 1))?;
        let endpoint = validate::sagemaker_name("id", &id.0)
            .map_err(|e| InferError::BadRequest(body(e.to_string(), Some("id"))))?;
        let described = scope.aws.describe_endpoint(&endpoint).await?;
        let Some(d) = described else {
            return Err(InferError::NotFound(body(
                format!("no endpoint {endpoint:?}"),
                None,
            )));
        };
        let config = d.config_name.clone().unwrap_or_default();
        let explainer = match scope.aws.describe_endpoint_config(&config).await? {
            Some((spec, _)) => spec.explainer_config,
            None => None,
        };
        if explainer.is_none() {
            return Err(InferError::NotInService(body(
                format!(
                    "endpoint {endpoint:?} cannot explain: its endpoint config {config:?} has no Clarify ExplainerConfig; register a config with ExplainerConfig (POST /api/service/v1/endpoints/register) and deploy it to this endpoint"
                ),
                None,
            )));
        }
        let expression = enable_explanations
            .0
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| "`true`".into());
        let (content_type, data) = model_input(scope.aws.as_ref(), payload).await?;
        let aws = scope.aws.clone();
        let out = invoke_retrying(deadline, |inference_id| {
            let (aws, endpoint, content_type, expression, data) = (
                aws.clone(),
                endpoint.clone(),
                content_type.clone(),
                expression.clone(),
                data.clone(),
            );
            async move {
                aws.explain_endpoint(&endpoint, &content_type, data, &expression, &inference_id)
                    .await
            }
        })
        .await?;
        tracing::debug!(endpoint, by = %caller.name, bytes = out.body.len(), "explanation answered");
        Ok(RawPayload {
            content_type: out
                .content_type
                .unwrap_or_else(|| "application/json".into()),
            body: out.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn failing(code: &str) -> AwsError {
        AwsError {
            kind: crate::aws::classify(Some(code), Some(500), "x"),
            operation: "InvokeEndpoint",
            code: Some(code.into()),
            message: "x".into(),
        }
    }

    #[tokio::test]
    async fn a_server_error_is_not_retried_because_the_model_may_have_run() {
        let calls = AtomicU32::new(0);
        let out = invoke_retrying(infer_deadline(), |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(failing("InternalFailure")) }
        })
        .await;
        assert!(matches!(out, Err(InferError::Busy(..))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn throttling_is_not_retried_past_the_deadline() {
        let calls = AtomicU32::new(0);
        // The first back-off (at least 100 ms) would end past the deadline.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        let out = invoke_retrying(deadline, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(failing("ThrottlingException")) }
        })
        .await;
        assert!(matches!(out, Err(InferError::Busy(..))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_call_unanswered_at_the_deadline_is_answered_by_the_route() {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        let out = invoke_retrying(deadline, |_| async {
            std::future::pending::<Result<crate::aws::InvokeOutput, AwsError>>().await
        })
        .await;
        let Err(InferError::Busy(b, _)) = out else {
            panic!("not a 503")
        };
        assert!(b.error.contains("deadline"), "{}", b.error);
    }
}
