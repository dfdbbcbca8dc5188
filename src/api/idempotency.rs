//! `Idempotency-Key` on the routes that submit runs.
//!
//! A client that did not see the reply to a submission (a dropped connection, its own timeout)
//! sends the same request again with the same key and gets the first reply — same status, same
//! body, the same run — instead of a second run doing the same AWS work. The key is the caller's
//! (keys of different callers never meet) and lasts for the retention (24 h by default); the same
//! key with another request (method, path and query, body bytes) is a 409 naming the header.
//!
//! The key's row is written in the run's own transaction (see `store::idempotency`), so a key is
//! recorded exactly when its run is; two requests racing with one key store one run, and the
//! loser is answered with the winner's reply. Requests that store no run (refused input) record
//! nothing: sending them again runs them again.

use super::auth::Caller;
use super::error::json_response;
use crate::clock::{Clock, Timestamp};
use crate::store::{Claim, KeyRecord, Store, Submission};
use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// The request header.
pub const HEADER: &str = "Idempotency-Key";

/// The routes that store a run, as OpenAPI paths (`{id}` matches one segment).
pub const SUBMIT_ROUTES: [&str; 8] = [
    "/api/service/v1/pipelines/training",
    "/api/service/v1/pipelines/training/train",
    "/api/service/v1/pipelines/training/automl",
    "/api/service/v1/pipelines/training/custom_script",
    "/api/service/v1/pipelines/inference",
    "/api/service/v1/endpoints/{id}/deploy_model",
    "/api/service/v1/models/{id}/export",
    "/execute",
];

/// Longest a repeat waits for the first request's reply to be recorded.
const FIRST_REPLY_WAIT: Duration = Duration::from_secs(5);

/// Whether `POST path` submits a run.
pub fn is_submit(method: &Method, path: &str) -> bool {
    method == Method::POST && SUBMIT_ROUTES.iter().any(|t| matches_template(t, path))
}

fn matches_template(template: &str, path: &str) -> bool {
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.starts_with('{') && !b.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// What the middleware needs.
#[derive(Clone)]
pub struct Keys {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub retention: Duration,
}

impl Keys {
    fn expired_before(&self) -> Timestamp {
        self.clock.now()
            - chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::MAX)
    }
}

fn refused(status: StatusCode, message: &str) -> Response {
    json_response(status, message, Some(HEADER))
}

/// A key is 1 to 255 visible ASCII characters (a UUID is the usual choice); `Err` when the
/// header is there but is not such a key.
fn key_of(req: &Request) -> Result<Option<String>, ()> {
    let Some(v) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k.to_string()))
        }
        _ => Err(()),
    }
}

fn request_hash(req: &Request, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(req.method().as_str());
    h.update(b" ");
    h.update(
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    );
    h.update(b"\n");
    h.update(body);
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

/// The first reply again, or why it cannot be given.
fn replay(record: &KeyRecord, hash: &str) -> Option<Response> {
    if record.request_hash != hash {
        return Some(refused(
            StatusCode::CONFLICT,
            &format!(
                "Idempotency-Key was already used with another request (run {}); use a new key \
                 for a new request",
                record.run_id
            ),
        ));
    }
    let (status, content_type, body) = record.reply.clone()?;
    let mut r = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
        .content_type(content_type)
        .body(body);
    r.headers_mut()
        .insert("Idempotent-Replayed", HeaderValue::from_static("true"));
    Some(r)
}

/// What a repeat of a request with a known key gets.
enum Repeat {
    /// The first reply again, or a refusal (another request, a deleted run).
    Answer(Response),
    /// The first request stored run `.0` but its reply was never recorded, and it is not being
    /// answered now (the process died between the two): the handler runs again for that run.
    Adopt(uuid::Uuid),
}

/// The reply to a repeat of a request with `key`: the first reply once it is recorded; if it is
/// still not recorded after a short wait, the stored run is adopted.
async fn answer_repeat(
    keys: &Keys,
    principal: &str,
    key: &str,
    hash: &str,
) -> poem::Result<Repeat> {
    let deadline = tokio::time::Instant::now() + FIRST_REPLY_WAIT;
    loop {
        let record = keys
            .store
            .idempotency_key(principal, key, keys.expired_before())
            .await
            .map_err(super::ApiError::from)?;
        let Some(record) = record else {
            // The first request's run was deleted since: nothing to replay.
            return Ok(Repeat::Answer(refused(
                StatusCode::CONFLICT,
                "the run of this Idempotency-Key no longer exists; use a new key",
            )));
        };
        if let Some(r) = replay(&record, hash) {
            return Ok(Repeat::Answer(r));
        }
        if tokio::time::Instant::now() >= deadline {
            return match uuid::Uuid::parse_str(&record.run_id) {
                Ok(id) => Ok(Repeat::Adopt(id)),
                Err(_) => Err(super::ApiError::from(crate::store::Error::Corrupt(format!(
                    "idempotency run id {:?}",
                    record.run_id
                )))
                .into()),
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A repeat that came while the first request with its key is still being answered.
fn not_answered_yet(run: uuid::Uuid) -> Response {
    let mut r = refused(
        StatusCode::CONFLICT,
        &format!(
            "the first request with this Idempotency-Key (run {run}) has not been answered yet; \
             send it again later"
        ),
    );
    r.headers_mut().insert(
        poem::http::header::RETRY_AFTER,
        HeaderValue::from_static("1"),
    );
    r
}

/// Runs the handler of a repeated request again for the stored run `run` (its first request
/// stored it, then died before its reply was recorded): the handler rebuilds the same run from
/// the same request, its insert adopts the stored run instead of inserting, and its reply is
/// recorded and given as the first one would have been.
async fn adopt<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    keys: &Keys,
    principal: &str,
    key: &str,
    run: uuid::Uuid,
) -> poem::Result<Response> {
    // The request's own submission (the timeout's): once its insert adopts, it is answered.
    let submission = Submission::current().unwrap_or_default();
    submission.set_adopt(run);
    let response = Box::pin(submission.scope(ep.call(req)))
        .await
        .map(IntoResponse::into_response)?;
    if submission.recorded_run().as_deref() != Some(run.to_string().as_str()) {
        // The handler did not come back to the stored run (it refused the request this time,
        // e.g. a state that changed since): the first request's reply cannot be rebuilt.
        tracing::warn!(%run, status = %response.status(), "a repeated request did not rebuild its stored run");
        return Ok(not_answered_yet(run));
    }
    let mut r = record_reply(keys, principal, key, &run.to_string(), response).await?;
    r.headers_mut()
        .insert("Idempotent-Replayed", HeaderValue::from_static("true"));
    Ok(r)
}

/// The middleware, inside authentication (it needs the caller) and around the handlers.
pub async fn guard<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    keys: Keys,
) -> poem::Result<Response> {
    if !is_submit(req.method(), req.uri().path()) {
        return Box::pin(ep.call(req))
            .await
            .map(IntoResponse::into_response);
    }
    let Ok(key) = key_of(&req) else {
        return Ok(refused(
            StatusCode::BAD_REQUEST,
            "Idempotency-Key must be 1 to 255 visible ASCII characters (e.g. a UUID)",
        ));
    };
    let Some(key) = key else {
        let r = Box::pin(ep.call(req))
            .await
            .map(IntoResponse::into_response);
        after_store().await;
        return r;
    };
    let principal = req
        .extensions()
        .get::<Caller>()
        .map_or_else(|| "anonymous".to_string(), |c| c.name.clone());
    let body = req.take_body().into_bytes().await?;
    let hash = request_hash(&req, &body);
    req.set_body(body);
    if keys
        .store
        .idempotency_key(&principal, &key, keys.expired_before())
        .await
        .map_err(super::ApiError::from)?
        .is_some()
    {
        return match answer_repeat(&keys, &principal, &key, &hash).await? {
            Repeat::Answer(r) => Ok(r),
            Repeat::Adopt(run) => adopt(ep, req, &keys, &principal, &key, run).await,
        };
    }
    let submission = Submission::current().unwrap_or_default();
    submission.set_claim(Claim {
        principal: principal.clone(),
        key: key.clone(),
        request_hash: hash.clone(),
        expired_before: keys.expired_before(),
    });
    let result = Box::pin(submission.scope(ep.call(req)))
        .await
        .map(IntoResponse::into_response);
    if submission.lost_race() {
        tracing::debug!("another request with this Idempotency-Key stored its run first");
        return match answer_repeat(&keys, &principal, &key, &hash).await? {
            Repeat::Answer(r) => Ok(r),
            // The winner is this process's own request, still being answered.
            Repeat::Adopt(run) => Ok(not_answered_yet(run)),
        };
    }
    let run_id = match (&result, submission.recorded_run()) {
        (Ok(_), Some(run_id)) => run_id,
        _ => {
            after_store().await;
            return result;
        }
    };
    // The run is stored, its reply not yet recorded: a crash here is what `adopt` answers.
    after_store().await;
    record_reply(&keys, &principal, &key, &run_id, result?).await
}

/// Records `response` as the reply to the request that stored `run_id` under the caller's key,
/// and gives it back. A reply that cannot be recorded is still given (the run is stored); a
/// repeat of the request then rebuilds it (`adopt`).
async fn record_reply(
    keys: &Keys,
    principal: &str,
    key: &str,
    run_id: &str,
    response: Response,
) -> poem::Result<Response> {
    let status = response.status();
    let content_type = response
        .content_type()
        .unwrap_or("application/json; charset=utf-8")
        .to_string();
    let (parts, body) = response.into_parts();
    let bytes = body.into_vec().await?;
    if let Err(e) = keys
        .store
        .save_idempotent_reply(
            principal,
            key,
            run_id,
            (status.as_u16(), &content_type, &bytes),
        )
        .await
    {
        tracing::warn!(error = %e, run_id, "could not record the reply of an Idempotency-Key");
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// The point between a submission's commit and its reply (`api.submit_stored`), for the test
/// that a request timeout never abandons a stored run.
async fn after_store() {
    if Submission::current().is_some_and(|s| s.storing()) {
        crate::failpoint::hit("api.submit_stored").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_submit_route_is_a_post_operation_of_the_api() {
        let spec: serde_json::Value =
            serde_json::from_str(&super::super::openapi_service(None).spec()).unwrap();
        for route in SUBMIT_ROUTES {
            assert!(
                spec["paths"][route]["post"].is_object(),
                "{route} is not a POST operation"
            );
        }
    }

    #[test]
    fn templates_match_one_segment_per_parameter() {
        assert!(is_submit(
            &Method::POST,
            "/api/service/v1/endpoints/ep-1/deploy_model"
        ));
        assert!(is_submit(&Method::POST, "/execute"));
        assert!(!is_submit(&Method::GET, "/execute"));
        assert!(!is_submit(
            &Method::POST,
            "/api/service/v1/endpoints//deploy_model"
        ));
        assert!(!is_submit(
            &Method::POST,
            "/api/service/v1/endpoints/a/b/deploy_model"
        ));
        assert!(!is_submit(&Method::POST, "/execute/x"));
    }
}
