//! Authentication and authorisation: one middleware in front of every route.
//!
//! Callers present `Authorization: Bearer <token>`. Tokens are configured as SHA-256 hashes (a
//! tokens file) or given once through the environment and hashed at start-up; the service never
//! keeps a plaintext token. A presented token is hashed and compared with every configured hash
//! in constant time. Roles: `submitter` (the Essedum backend: submit, read, cancel) and
//! `operator` (everything, including retry). Health, readiness, metrics (configurable) and the
//! API documentation stay open. Without a valid token a request changes nothing and learns
//! nothing: it is answered 401 before any handler runs; a valid token without the role is 403.

use super::error::json_response;
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::io::AsyncReadExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Submitter,
    Operator,
}

/// Who made a request, available to handlers as `poem::web::Data<&Caller>`.
#[derive(Clone, Debug)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

#[derive(Clone, Debug)]
struct TokenEntry {
    name: String,
    role: Role,
    hash: [u8; 32],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenFileEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFileEntry {
    name: String,
    role: Role,
    /// Hex SHA-256 of the token (`sagemaker-executor hash-token` prints it).
    sha256: String,
}

/// The configured tokens; empty means authentication is off.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    tokens: Arc<Vec<TokenEntry>>,
    pub open_metrics: bool,
}

pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_hex_hash(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

impl Auth {
    /// Builds the token set from a tokens file and/or tokens given directly (hashed here).
    pub fn configure(
        tokens_file: Option<&Path>,
        operator_token: Option<&str>,
        submitter_token: Option<&str>,
        open_metrics: bool,
    ) -> Result<Auth, String> {
        let mut tokens = Vec::new();
        if let Some(path) = tokens_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading tokens file {}: {e}", path.display()))?;
            let file: TokensFile = toml::from_str(&text)
                .map_err(|e| format!("tokens file {}: {e}", path.display()))?;
            for t in file.tokens {
                let hash = parse_hex_hash(&t.sha256).ok_or_else(|| {
                    format!(
                        "tokens file {}: token {:?}: sha256 must be 64 hex digits",
                        path.display(),
                        t.name
                    )
                })?;
                tokens.push(TokenEntry {
                    name: t.name,
                    role: t.role,
                    hash,
                });
            }
        }
        for (token, name, role) in [
            (operator_token, "operator", Role::Operator),
            (submitter_token, "submitter", Role::Submitter),
        ] {
            if let Some(t) = token.filter(|t| !t.is_empty()) {
                if t.len() < 16 {
                    return Err(format!(
                        "the {name} token is too short: use at least 16 characters"
                    ));
                }
                let hash = Sha256::digest(t.as_bytes()).into();
                tokens.push(TokenEntry {
                    name: name.into(),
                    role,
                    hash,
                });
            }
        }
        Ok(Auth {
            tokens: Arc::new(tokens),
            open_metrics,
        })
    }

    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks a presented token against every configured hash, without an early exit.
    fn verify(&self, presented: &str) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for t in self.tokens.iter() {
            if bool::from(t.hash.ct_eq(&digest)) && found.is_none() {
                found = Some(Caller {
                    name: t.name.clone(),
                    role: t.role,
                });
            }
        }
        found
    }
}

/// How long an inference request may take (the SDK gives InvokeEndpoint 70 s).
const INFER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(75);

/// The role a route needs; `None` for open routes.
fn required_role(method: &Method, path: &str, open_metrics: bool) -> Option<Role> {
    let open = matches!(path, "/healthz" | "/readyz" | "/openapi.json")
        || path == "/docs"
        || path.starts_with("/docs/")
        || (open_metrics && path == "/metrics");
    if open && (method == Method::GET || method == Method::HEAD) {
        return None;
    }
    if path.starts_with("/api/v1/runs/") && path.ends_with("/retry") {
        return Some(Role::Operator);
    }
    Some(Role::Submitter)
}

fn unauthorized(message: &str) -> Response {
    let mut r = json_response(StatusCode::UNAUTHORIZED, message, None);
    r.headers_mut().insert(
        poem::http::header::WWW_AUTHENTICATE,
        poem::http::HeaderValue::from_static("Bearer"),
    );
    r
}

/// Refuses a body above the limit before anything reads it: by its Content-Length, and a body
/// of unknown length (chunked) outright, since it could be any size.
fn body_too_large(req: &Request, max: usize) -> Option<Response> {
    let headers = req.headers();
    let length = headers
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match length {
        Some(n) if n > max as u64 => Some(json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body is {n} bytes; at most {max} are accepted"),
            None,
        )),
        None if headers.contains_key(poem::http::header::TRANSFER_ENCODING) => Some(json_response(
            StatusCode::LENGTH_REQUIRED,
            "send the request body with a Content-Length",
            None,
        )),
        _ => None,
    }
}

/// The middleware: authenticates, authorises, limits the body, and bounds the handler's time.
pub async fn guard<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    auth: Auth,
    limits: super::HttpLimits,
) -> poem::Result<Response> {
    // A model may take a minute to answer; everything else is bounded by the configured time.
    let dataset_upload =
        req.method() == Method::POST && req.uri().path() == "/api/service/v1/datasets";
    let timeout = if dataset_upload {
        limits.upload_timeout
    } else if req.uri().path().ends_with("/infer") {
        limits.request_timeout.max(INFER_TIMEOUT)
    } else {
        limits.request_timeout
    };
    let max_body = if dataset_upload {
        usize::try_from(limits.max_dataset_bytes).unwrap_or(usize::MAX)
    } else {
        limits.max_body_bytes
    };
    let caller = if !auth.enabled() {
        Caller {
            name: "anonymous".into(),
            role: Role::Operator,
        }
    } else {
        match required_role(req.method(), req.uri().path(), auth.open_metrics) {
            None => Caller {
                name: "anonymous".into(),
                role: Role::Submitter,
            },
            Some(needed) => {
                let presented = req
                    .headers()
                    .get(poem::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| {
                        v.strip_prefix("Bearer ")
                            .or_else(|| v.strip_prefix("bearer "))
                    })
                    .map(str::trim);
                let Some(presented) = presented else {
                    return Ok(unauthorized(
                        "missing bearer token (Authorization: Bearer <token>)",
                    ));
                };
                let Some(caller) = auth.verify(presented) else {
                    return Ok(unauthorized("invalid token"));
                };
                if caller.role < needed {
                    return Ok(json_response(
                        StatusCode::FORBIDDEN,
                        &format!(
                            "the {:?} role may not do this; it needs the operator role",
                            caller.role
                        )
                        .to_lowercase(),
                        None,
                    ));
                }
                caller
            }
        }
    };
    if let Some(refused) = body_too_large(&req, max_body) {
        // Read and drop a moderately oversized body so that the client, still sending it, gets
        // the 413 instead of a reset connection; a huge one is cut off.
        let drain = (limits.max_body_bytes as u64).saturating_mul(8);
        let mut body = req.take_body().into_async_read().take(drain);
        let _ = tokio::io::copy(&mut body, &mut tokio::io::sink()).await;
        return Ok(refused);
    }
    req.extensions_mut().insert(caller);
    match tokio::time::timeout(timeout, ep.call(req)).await {
        Ok(r) => r.map(IntoResponse::into_response),
        Err(_) => Ok(json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the request took longer than {} s", timeout.as_secs()),
            None,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_by_hash_and_carry_their_role() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens.toml");
        std::fs::write(
            &file,
            format!(
                "[[tokens]]\nname = \"essedum\"\nrole = \"submitter\"\nsha256 = \"{}\"\n",
                hash_token("s3cret-token-essedum")
            ),
        )
        .unwrap();
        let auth =
            Auth::configure(Some(&file), Some("operator-token-0123456789"), None, true).unwrap();
        assert!(auth.enabled());
        let c = auth.verify("s3cret-token-essedum").unwrap();
        assert_eq!((c.name.as_str(), c.role), ("essedum", Role::Submitter));
        assert_eq!(
            auth.verify("operator-token-0123456789").unwrap().role,
            Role::Operator
        );
        assert!(auth.verify("s3cret-token-essedum ").is_none());
        assert!(auth.verify("").is_none());
        assert!(Auth::configure(None, Some("short"), None, true).is_err());
        assert!(!Auth::configure(None, None, None, true).unwrap().enabled());
    }

    #[test]
    fn routes_need_the_right_role() {
        let get = Method::GET;
        assert_eq!(required_role(&get, "/healthz", true), None);
        assert_eq!(required_role(&get, "/metrics", true), None);
        assert_eq!(
            required_role(&get, "/metrics", false),
            Some(Role::Submitter)
        );
        assert_eq!(
            required_role(&Method::POST, "/api/v1/runs/x/retry", true),
            Some(Role::Operator)
        );
        assert_eq!(
            required_role(&Method::POST, "/api/v1/runs/x/cancel", true),
            Some(Role::Submitter)
        );
        assert_eq!(
            required_role(&get, "/status/x", true),
            Some(Role::Submitter)
        );
        assert_eq!(
            required_role(&Method::POST, "/healthz", true),
            Some(Role::Submitter)
        );
    }
}
