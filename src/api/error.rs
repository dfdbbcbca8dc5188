//! Every error the API returns is JSON `{ "error": ..., "field"?: ... }`, mapped from the domain
//! errors in this one place. Internal details (SQL, paths) are logged, never returned.

use crate::store;
use crate::validate::InputError;
use poem::http::StatusCode;
use poem_openapi::{ApiResponse, Object, payload::Json};

#[derive(Object, Debug, Clone, serde::Serialize)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
    /// The request field at fault, when one is.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(ApiResponse, Debug)]
pub enum ApiError {
    /// The request is malformed (not JSON, not an object, an unknown field, a bad id).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No such run or resource.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request conflicts with the run's state (e.g. cancelling a finished run).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// A field is missing or has an invalid value.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// The service failed; details are in its log.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A dependency (the store, AWS) is unavailable for now; `Retry-After` says when to try
    /// again when the service knows.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds after which the request may succeed.
        #[oai(header = "Retry-After")]
        Option<u64>,
    ),
}

fn body(error: impl Into<String>, field: Option<String>) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: error.into(),
        field,
    })
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>, field: Option<&str>) -> Self {
        ApiError::BadRequest(body(msg, field.map(str::to_string)))
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiError::NotFound(body(msg, None))
    }
    pub fn conflict(msg: impl Into<String>) -> Self {
        ApiError::Conflict(body(msg, None))
    }
    pub fn unavailable(msg: impl Into<String>) -> Self {
        ApiError::Unavailable(body(msg, None), None)
    }
    /// 503 with `Retry-After: retry_after_secs`.
    pub fn unavailable_for(msg: impl Into<String>, retry_after_secs: u64) -> Self {
        ApiError::Unavailable(body(msg, None), Some(retry_after_secs))
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        match e {
            InputError::Malformed { field, message } => ApiError::BadRequest(body(message, field)),
            InputError::Invalid { field, message } => {
                ApiError::Unprocessable(body(format!("{field}: {message}"), Some(field)))
            }
        }
    }
}

/// What a client is told while the store cannot write (disk full, read-only, locked).
pub const STORE_UNAVAILABLE: &str = "the service cannot write its database right now (disk full, read-only or locked); nothing was stored; try again later";
/// When to try again after [`STORE_UNAVAILABLE`].
pub const STORE_RETRY_AFTER_SECS: u64 = 5;

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        if let store::Error::NameTaken(name) = &e {
            return ApiError::Conflict(body(
                format!("a run already uses the job name {name:?}"),
                None,
            ));
        }
        if e.is_unavailable() {
            // The store logs the start and the end of a streak of failures; one line per
            // refused request would flood the log while the disk is full.
            tracing::debug!(error = %e, "store unavailable while serving a request");
            return ApiError::unavailable_for(STORE_UNAVAILABLE, STORE_RETRY_AFTER_SECS);
        }
        tracing::error!(error = %e, "store error while serving a request");
        ApiError::Internal(body(
            "internal error: the store failed; see the service log",
            None,
        ))
    }
}

/// Turns any error poem raises itself (unknown route, wrong method, unparsable JSON, wrong
/// content type) into the same JSON error shape.
pub async fn json_error(err: poem::Error) -> poem::Response {
    if err.is_from_response() {
        // One of our own replies (an `ApiError`), already JSON.
        return err.into_response();
    }
    let status = err.status();
    let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %err, "unhandled error");
        "internal error; see the service log".to_string()
    } else {
        err.to_string()
    };
    json_response(status, &message, None)
}

/// A JSON error reply built outside the handlers (middleware).
pub fn json_response(status: StatusCode, message: &str, field: Option<&str>) -> poem::Response {
    let json = serde_json::to_vec(&ErrorBody {
        error: message.to_string(),
        field: field.map(str::to_string),
    })
    .unwrap_or_default();
    poem::Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(json)
}
