//! The AWS a request works with. Every request gets an [`AwsScope`]: the standard credential
//! chain, or — when connection lookup is configured and the request carries `adapter_instance`,
//! `project` and a `Referer` — the credentials of that Essedum connection. A Referer that is not
//! an allow-listed backend is refused (403) before any outbound call. The middleware runs inside
//! the auth guard, so an unauthenticated request never triggers a lookup.

use super::error::json_response;
use crate::aws::{AwsPort, AwsProvider};
use crate::connection::{ConnectionError, ConnectionRef};
use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Request, Response};
use std::sync::Arc;

/// Handlers take it as `scope: Data<&AwsScope>`.
#[derive(Clone)]
pub struct AwsScope {
    pub aws: Arc<dyn AwsPort>,
    /// The connection the request named; runs the request starts store it (never its secrets)
    /// and resolve it again for each step.
    pub connection: Option<ConnectionRef>,
}

impl AwsScope {
    /// `request` with the scope's connection added as `connection`, for storing with a run.
    pub fn tag(&self, mut request: serde_json::Value) -> serde_json::Value {
        if let (Some(c), Some(map)) = (&self.connection, request.as_object_mut()) {
            map.insert(
                "connection".into(),
                serde_json::to_value(c).expect("connection reference serialises"),
            );
        }
        request
    }
}

/// The connection a request names, if lookup is on and it names one.
fn requested_connection(
    req: &Request,
    provider: &AwsProvider,
) -> Result<Option<ConnectionRef>, ConnectionError> {
    let Some(resolver) = provider.connections() else {
        return Ok(None);
    };
    let mut adapter_instance = None;
    let mut project = None;
    let mut is_instance = None;
    for (k, v) in url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "adapter_instance" => adapter_instance = Some(v.into_owned()),
            "project" => project = Some(v.into_owned()),
            "isInstance" => is_instance = Some(v.into_owned()),
            _ => {}
        }
    }
    let referer = req
        .headers()
        .get(poem::http::header::REFERER)
        .and_then(|v| v.to_str().ok());
    match (adapter_instance, project, referer) {
        (Some(a), Some(p), Some(r)) if !a.is_empty() && !p.is_empty() => resolver
            .allow_list()
            .reference(r, &p, &a, is_instance.as_deref())
            .map(Some),
        _ => Ok(None),
    }
}

fn refused(e: &ConnectionError) -> Response {
    let (status, message) = match e {
        ConnectionError::NotAllowed(_) => (StatusCode::FORBIDDEN, e.to_string()),
        ConnectionError::NotFound(_) => (StatusCode::NOT_FOUND, e.to_string()),
        ConnectionError::BadAnswer(_) => (StatusCode::BAD_GATEWAY, e.to_string()),
        ConnectionError::Unreachable(_) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let mut r = json_response(status, &message, None);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(
            poem::http::header::RETRY_AFTER,
            poem::http::HeaderValue::from_static("5"),
        );
    }
    r
}

/// The middleware: attaches the request's [`AwsScope`], or refuses the request.
pub async fn attach<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    provider: Arc<AwsProvider>,
) -> poem::Result<Response> {
    let scope = match requested_connection(&req, &provider) {
        Ok(None) => AwsScope {
            aws: provider.default_port(),
            connection: None,
        },
        Ok(Some(r)) => match provider.for_connection(&r).await {
            Ok(aws) => AwsScope {
                aws,
                connection: Some(r),
            },
            Err(e) => {
                tracing::warn!(error = %e, backend = %r.base_url, "connection lookup failed");
                return Ok(refused(&e));
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "connection lookup refused");
            return Ok(refused(&e));
        }
    };
    req.extensions_mut().insert(scope);
    ep.call(req).await.map(IntoResponse::into_response)
}
