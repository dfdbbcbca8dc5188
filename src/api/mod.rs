//! HTTP surfaces, one module each: the Essedum training routes (`training`), the operator API
//! (`operator`) and health (`health`). All of them are described by one generated OpenAPI
//! document, committed under `openapi/`.

mod body;
mod dto;
mod error;
mod health;
mod operator;
mod training;

pub use error::{ApiError, ErrorBody};

use crate::clock::Clock;
use crate::store::Store;
use crate::workflows::WorkflowDef;
use crate::workflows::training::InputLimits;
use poem::middleware::SetHeader;
use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::OpenApiService;
use std::sync::Arc;
use tokio::sync::Notify;

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    /// Wakes the engine when a run is inserted or a cancel requested.
    pub wake: Arc<Notify>,
    pub limits: InputLimits,
    pub definitions: Arc<Vec<WorkflowDef>>,
}

pub type Apis = (
    training::TrainingApi,
    operator::OperatorApi,
    health::HealthApi,
);

pub fn openapi_service(state: Option<AppState>) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            training::TrainingApi(state.clone()),
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

/// The OpenAPI document as committed under `openapi/openapi.json`.
pub fn spec_json() -> String {
    let mut s = openapi_service(None).spec();
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// The whole HTTP application.
pub fn app(state: AppState) -> impl Endpoint {
    let api = openapi_service(Some(state));
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    Route::new()
        .nest("/", api)
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .catch_all_error(error::json_error)
        .with(
            SetHeader::new()
                .overriding("X-Content-Type-Options", "nosniff")
                .overriding("Cache-Control", "no-store"),
        )
}
