//! HTTP surfaces, one module each: the Essedum training routes (`training`), the operator API
//! (`operator`) and health (`health`). All of them are described by one generated OpenAPI
//! document, committed under `openapi/`.

pub mod auth;
mod body;
pub mod console;
mod datasets;
mod dto;
mod endpoints;
mod error;
mod execute;
mod fast_json;
mod health;
mod idempotency;
mod inference;
mod log_cache;
mod models;
mod operator;
mod raw;
pub mod scope;
mod spec;
mod training;

pub use auth::{Auth, Caller, Role};
pub use error::{ApiError, ErrorBody};

use crate::aws::AwsPort;
use crate::clock::Clock;
use crate::store::Store;
use crate::workflows::WorkflowDef;
use crate::workflows::input::InputLimits;
use poem::endpoint::make_sync;
use poem::middleware::{CatchPanic, SetHeader};
use poem::web::Html;
use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::OpenApiService;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    /// Wakes the engine when a run is inserted or a cancel requested.
    pub wake: Arc<Notify>,
    pub limits: InputLimits,
    /// For the few checks a request needs before it is accepted (AutoML's CSV header).
    pub aws: Arc<dyn AwsPort>,
    pub definitions: Arc<Vec<WorkflowDef>>,
    /// The AWS of a connection or of a run's own credentials.
    pub provider: Arc<crate::aws::AwsProvider>,
    /// The bucket dataset routes use when a request names none.
    pub datasets_bucket: Option<String>,
    /// Largest dataset file (`POST /api/service/v1/datasets`); larger is refused while streaming.
    pub max_dataset_bytes: u64,
    /// Script jobs' service settings (what `/execute` bodies do not carry).
    pub script: Arc<crate::workflows::script::ScriptSettings>,
    /// Running script jobs' logs as read so far (`getLog` fetches only what is new).
    pub logs: Arc<log_cache::LogCache>,
    /// What `/readyz` checks beside the store: the engine loop's progress.
    pub readiness: Readiness,
}

/// The engine loop's heartbeat and how long it may stay silent before the service is not ready.
#[derive(Clone, Debug)]
pub struct Readiness {
    pub engine: crate::beat::Beat,
    /// When the engine started (a loop that never beat counts from here).
    pub started: crate::clock::Timestamp,
    /// Longest silence of a healthy loop: a few idle waits plus a lease.
    pub stall_after: Duration,
}

pub type Apis = (
    training::TrainingApi,
    inference::InferenceApi,
    endpoints::EndpointsApi,
    models::ModelsApi,
    datasets::DatasetsApi,
    execute::ExecuteApi,
    operator::OperatorApi,
    health::HealthApi,
);

pub fn openapi_service(state: Option<AppState>) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            training::TrainingApi(state.clone()),
            inference::InferenceApi(state.clone()),
            endpoints::EndpointsApi(state.clone()),
            models::ModelsApi(state.clone()),
            datasets::DatasetsApi(state.clone()),
            execute::ExecuteApi(state.clone()),
            operator::OperatorApi(state.clone()),
            health::HealthApi(state),
        ),
        "sagemaker-executor",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Runs Essedum's machine-learning work on AWS SageMaker as durable, restart-safe workflow runs.",
    )
}

/// The OpenAPI document as committed under `openapi/openapi.json` and served at `/openapi.json`:
/// poem-openapi's document, finished by [`spec::complete`] (nullable optional fields, the
/// statuses middleware answers).
pub fn spec_json() -> String {
    spec::complete(&openapi_service(None).spec())
}

/// Limits applied to every request.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Largest request body (413 above it).
    pub max_body_bytes: usize,
    /// Longest a handler may take (503 after it).
    pub request_timeout: Duration,
    /// Largest dataset upload (`POST /api/service/v1/datasets`).
    pub max_dataset_bytes: u64,
    /// Longest a dataset upload may take.
    pub upload_timeout: Duration,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_retention: Duration,
}

/// The whole HTTP application: routes, documentation, then (inside out) body size limit,
/// authentication and timeout, JSON errors for everything, panic safety and security headers.
/// The operator console's static files (`/ui`) sit beside the authenticated routes: they hold no
/// data, and the page asks for a token itself.
pub fn app(state: AppState, auth: Auth, limits: HttpLimits) -> impl Endpoint {
    let provider = state.provider.clone();
    let keys = idempotency::Keys {
        store: state.store.clone(),
        clock: state.clock.clone(),
        retention: limits.idempotency_retention,
    };
    let api = openapi_service(Some(state));
    let generated = api.spec();
    let document = spec::complete(&generated);
    // Swagger UI embeds the document verbatim; it shows the finished one.
    let docs_html = api.swagger_ui_html().replacen(&generated, &document, 1);
    let guarded = Route::new()
        .nest("/", api)
        .at("/docs", make_sync(move |_| Html(docs_html.clone())))
        .at(
            "/openapi.json",
            make_sync(move |_| {
                poem::Response::builder()
                    .content_type("application/json")
                    .body(document.clone())
            }),
        )
        // Inside the auth guard, so an unauthenticated request triggers no connection lookup.
        .around(move |ep, req| scope::attach(ep, req, provider.clone()))
        .around(move |ep, req| idempotency::guard(ep, req, keys.clone()))
        .around(body::check_json)
        .around(move |ep, req| auth::guard(ep, req, auth.clone(), limits));
    Route::new()
        .nest_no_strip("/ui", console::Console)
        .nest("/", guarded)
        .catch_all_error(error::json_error)
        .with(CatchPanic::new().with_handler(|_| {
            error::json_response(
                poem::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the service log",
                None,
            )
        }))
        .with(
            SetHeader::new()
                .overriding("X-Content-Type-Options", "nosniff")
                .overriding("X-Frame-Options", "DENY")
                .overriding("Referrer-Policy", "no-referrer")
                .overriding("Cache-Control", "no-store"),
        )
}
