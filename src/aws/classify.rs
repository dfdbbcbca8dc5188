//! Error classification: from an AWS error code, HTTP status and message to what the engine does.

use super::{AwsError, AwsErrorKind};

/// Operations that only look (DESIGN.md invariant 4): failing one of them says nothing about
/// the work in AWS, so a run following a live job never fails because of it. Everything else
/// (Create*, Stop*, Update*, Delete*, Put*, uploads) is an effect.
const OBSERVING_PREFIXES: &[&str] = &["Describe", "Get", "List", "Head", "Filter", "Search"];

/// Resolving a run's credentials before any call (the Essedum connection lookup, opening the
/// sealed credentials) is part of looking too: an outage there must not fail a live run.
const OBSERVING_OPERATIONS: &[&str] = &["ConnectionLookup", "OpenCredentials"];

/// Error codes that say the credentials were refused (expired, revoked, wrong), as opposed to
/// a request that can never succeed.
const AUTH: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidToken",
    "MissingAuthenticationToken",
    "AuthFailure",
    "RequestExpired",
];

/// Whether `operation` only observes (see [`OBSERVING_PREFIXES`]).
pub fn is_observation(operation: &str) -> bool {
    OBSERVING_OPERATIONS.contains(&operation)
        || OBSERVING_PREFIXES.iter().any(|p| {
            operation
                .strip_prefix(p)
                .and_then(|rest| rest.chars().next())
                .is_some_and(|c| c.is_ascii_uppercase())
        })
}

/// Whether `code` says the caller's credentials were refused.
pub fn is_auth_error(code: Option<&str>) -> bool {
    code.is_some_and(|c| AUTH.contains(&c))
}

impl AwsError {
    /// The failed call only looked (Describe*, Get*, List*, …, or resolving credentials).
    pub fn is_observation(&self) -> bool {
        is_observation(self.operation)
    }

    /// AWS refused the credentials themselves (expired, revoked, wrong signature).
    pub fn is_auth(&self) -> bool {
        is_auth_error(self.code.as_deref())
    }
}

const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "TransactionInProgressException",
    "EC2ThrottledException",
];

const TRANSIENT: &[&str] = &[
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeoutException",
    "IDPCommunicationError",
];

const CAPACITY: &[&str] = &[
    "ResourceLimitExceeded",
    "CapacityError",
    "InsufficientCapacityException",
    "InsufficientInstanceCapacity",
];

/// Whether an error code says the caller is being throttled (the request was refused before it
/// did anything, so sending it again is safe even for a call that is not idempotent).
pub fn is_throttling(code: Option<&str>) -> bool {
    code.is_some_and(|c| THROTTLING.contains(&c))
}

/// Classifies a service error. `status` is the HTTP status when a response arrived.
pub fn classify(code: Option<&str>, status: Option<u16>, message: &str) -> AwsErrorKind {
    let code = code.unwrap_or("");
    if THROTTLING.contains(&code) || TRANSIENT.contains(&code) {
        return AwsErrorKind::Retryable;
    }
    if CAPACITY.contains(&code) {
        return AwsErrorKind::Capacity;
    }
    if code == "ResourceInUse" {
        return AwsErrorKind::AlreadyExists;
    }
    if matches!(
        code,
        "ResourceNotFound" | "ResourceNotFoundException" | "NoSuchKey" | "NotFound"
    ) {
        return AwsErrorKind::NotFound;
    }
    if code == "ValidationException" {
        // SageMaker reports a missing job as a validation error with this wording.
        let m = message.to_ascii_lowercase();
        if m.contains("could not find") || m.contains("not found") || m.contains("does not exist") {
            return AwsErrorKind::NotFound;
        }
        // SageMaker reports a duplicate endpoint (config, model) name this way.
        if m.contains("cannot create already existing") {
            return AwsErrorKind::AlreadyExists;
        }
        return AwsErrorKind::Terminal;
    }
    match status {
        Some(s) if s >= 500 || s == 429 => AwsErrorKind::Retryable,
        // No response, or one the SDK could not parse: a transport problem.
        None => AwsErrorKind::Retryable,
        Some(_) if code.is_empty() => AwsErrorKind::Retryable,
        Some(_) => AwsErrorKind::Terminal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AwsErrorKind::*;

    #[test]
    fn looking_calls_are_observations_and_the_rest_effects() {
        for op in [
            "DescribeTrainingJob",
            "DescribeEndpoint",
            "GetLogEvents",
            "GetObject",
            "ListObjectsV2",
            "HeadObject",
            "FilterLogEvents",
            "ConnectionLookup",
            "OpenCredentials",
        ] {
            assert!(is_observation(op), "{op} observes");
        }
        for op in [
            "CreateTrainingJob",
            "StopTrainingJob",
            "UpdateEndpoint",
            "DeleteEndpoint",
            "PutObject",
            "UploadPart",
            "CompleteMultipartUpload",
            "Getaway",
            "Describe",
        ] {
            assert!(!is_observation(op), "{op} is an effect");
        }
    }

    #[test]
    fn refused_credentials_are_auth_errors() {
        for code in [
            "AccessDeniedException",
            "ExpiredTokenException",
            "ExpiredToken",
            "InvalidClientTokenId",
            "UnrecognizedClientException",
            "SignatureDoesNotMatch",
        ] {
            assert!(is_auth_error(Some(code)), "{code}");
        }
        assert!(!is_auth_error(Some("ThrottlingException")));
        assert!(!is_auth_error(None));
    }

    #[test]
    fn errors_are_classified_by_code_then_status() {
        let cases: &[(Option<&str>, Option<u16>, &str, AwsErrorKind)] = &[
            (
                Some("ThrottlingException"),
                Some(400),
                "Rate exceeded",
                Retryable,
            ),
            (Some("SlowDown"), Some(503), "", Retryable),
            (Some("InternalFailure"), Some(500), "", Retryable),
            (None, Some(500), "<html>", Retryable),
            (None, Some(503), "", Retryable),
            (None, None, "connection refused", Retryable),
            (Some("ResourceLimitExceeded"), Some(400), "quota", Capacity),
            (Some("ResourceInUse"), Some(400), "exists", AlreadyExists),
            (
                Some("ValidationException"),
                Some(400),
                "Could not find training job \"x\"",
                NotFound,
            ),
            (
                Some("ValidationException"),
                Some(400),
                "1 validation error detected: RoleArn",
                Terminal,
            ),
            (Some("AccessDeniedException"), Some(400), "denied", Terminal),
            (
                Some("ValidationException"),
                Some(400),
                "Cannot create already existing endpoint \"arn:x\".",
                AlreadyExists,
            ),
            (Some("ResourceNotFound"), Some(400), "", NotFound),
        ];
        for (code, status, msg, want) in cases {
            assert_eq!(
                classify(*code, *status, msg),
                *want,
                "{code:?} {status:?} {msg}"
            );
        }
    }
}
