//! Essedum connection lookup: resolving the AWS credentials of an Essedum connection by asking
//! the Essedum backend that sent the request, but only if that backend is allow-listed.
//!
//! A request from the backend names the connection with the query parameters `project`,
//! `adapter_instance` and optional `isInstance`, and the backend itself with its `Referer`
//! header (its base URL). [`AllowList::admit`] maps the Referer to a configured base URL (never
//! the raw header) and [`ConnectionResolver::resolve`] calls
//! `GET {base}api/aip/services/fetchConnectionDetailsByAdapterInstance` there, caching the
//! answer for a while. The service token goes in the `access-token` header (configurable), as
//! the backend's auth filter expects of a service; `https` backends are verified with the same
//! rustls stack as the AWS SDK ([`tls`]).
//!
//! Nothing in this module logs or formats a credential: secrets are [`Secret`]s, and error
//! messages only name fields.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod allow;
mod answer;
pub mod tls;

pub use allow::AllowList;
pub use answer::parse_answer;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::secrets::Secret;

/// Path of the backend's connection endpoint, relative to its base URL.
pub const CONNECTION_ENDPOINT: &str = "api/aip/services/fetchConnectionDetailsByAdapterInstance";

/// Largest answer body read from the backend.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Cached answers are pruned of expired entries once the cache holds this many.
const CACHE_PRUNE_AT: usize = 256;

/// Which connection of which (allow-listed) backend. Holds no secret; stored with runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConnectionRef {
    /// The allow-listed base URL (normalised, ends with `/`), never a raw Referer.
    pub base_url: String,
    pub project: String,
    pub adapter_instance: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_instance: Option<String>,
}

/// Why a connection could not be resolved. Messages never contain credentials.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    /// The backend is not (or no longer) on the allow-list, or the reference is unusable.
    #[error("connection lookup not allowed: {0}")]
    NotAllowed(String),
    /// The backend could not be reached, timed out or answered 5xx/408/429; worth retrying.
    #[error("Essedum backend unreachable: {0}")]
    Unreachable(String),
    /// The backend does not know the connection (404 or an empty `connection`).
    #[error("Essedum connection not found: {0}")]
    NotFound(String),
    /// The answer was unusable: not JSON, a field missing, a redirect or another 4xx.
    #[error("Essedum backend gave an unusable answer: {0}")]
    BadAnswer(String),
}

impl ConnectionError {
    /// Whether trying again later may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, ConnectionError::Unreachable(_))
    }
}

/// Credentials and settings of one Essedum connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionDetails {
    pub access_key: String,
    pub secret_key: Secret,
    pub session_token: Option<Secret>,
    pub region: Option<String>,
    pub bucket: Option<String>,
    pub name: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Resolver (the allow-list is in `allow`, the answer's parsing in `answer`, TLS in `tls`)
// ---------------------------------------------------------------------------------------------

/// The header the backend's own services read a static service token from
/// (`sv/common-app/.../security/jwt/CustomAuthFilter.java`: `Authorization: Bearer` is a user JWT
/// there, a static token goes in `access-token`).
pub const DEFAULT_TOKEN_HEADER: &str = "access-token";

/// How lookups reach the backend.
#[derive(Clone, Debug)]
pub struct LookupSettings {
    /// Bound of one fetch (connect and answer).
    pub timeout: Duration,
    /// How long an answer is reused (zero = always fetch).
    pub ttl: Duration,
    /// The backend's service token, sent with every lookup.
    pub token: Option<Secret>,
    /// The header carrying the token: [`DEFAULT_TOKEN_HEADER`] unless configured; `Authorization`
    /// sends `Bearer <token>`.
    pub token_header: String,
    /// A numeric Essedum project id sent as the `Project` header (the backend's authorisation
    /// asks for one unless its permission check is off).
    pub project_id: Option<String>,
    /// A PEM file of certificates trusted for https backends, besides the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl LookupSettings {
    /// Defaults: the `access-token` header, no token, the system's roots.
    pub fn new(timeout: Duration, ttl: Duration) -> LookupSettings {
        LookupSettings {
            timeout,
            ttl,
            token: None,
            token_header: DEFAULT_TOKEN_HEADER.into(),
            project_id: None,
            ca_file: None,
        }
    }
}

/// Fetches and caches connection details from allow-listed Essedum backends.
pub struct ConnectionResolver {
    allow: AllowList,
    client: reqwest::Client,
    ttl: Duration,
    /// Headers sent with every lookup (the token one marked sensitive).
    headers: HeaderMap,
    token_header: Option<HeaderName>,
    cache: Mutex<HashMap<ConnectionRef, (Instant, Arc<ConnectionDetails>)>>,
    calls: AtomicU64,
}

impl fmt::Debug for ConnectionResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionResolver")
            .field("allow", &self.allow)
            .field("ttl", &self.ttl)
            .field(
                "token_header",
                &self.token_header.as_ref().map(|h| h.as_str()),
            )
            .field("token", &self.token_header.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl ConnectionResolver {
    /// A resolver with the default settings and `token` in the `access-token` header.
    pub fn new(
        allow: AllowList,
        timeout: Duration,
        ttl: Duration,
        token: Option<Secret>,
    ) -> Result<ConnectionResolver, String> {
        let mut settings = LookupSettings::new(timeout, ttl);
        settings.token = token;
        ConnectionResolver::with_settings(allow, settings)
    }

    /// A resolver for the backends in `allow`. Each fetch is bounded by the timeout; answers are
    /// reused for the TTL. Redirects are never followed. `https` backends are verified against
    /// the system's roots and the CA file. Fails for a token or header that cannot be sent, a
    /// project id that is not numeric, or an unusable CA file; messages name the setting.
    pub fn with_settings(
        allow: AllowList,
        settings: LookupSettings,
    ) -> Result<ConnectionResolver, String> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let token_header = match settings.token.as_ref().filter(|t| !t.expose().is_empty()) {
            None => None,
            Some(token) => {
                let name = HeaderName::from_bytes(settings.token_header.trim().as_bytes())
                    .map_err(|_| {
                        format!(
                            "EXECUTOR_CONNECTION_TOKEN_HEADER: {:?} is not a valid HTTP header name",
                            settings.token_header
                        )
                    })?;
                let text = if name == AUTHORIZATION {
                    format!("Bearer {}", token.expose())
                } else {
                    token.expose().to_owned()
                };
                let mut value = HeaderValue::from_str(&text).map_err(|_| {
                    "EXECUTOR_CONNECTION_TOKEN: the backend token contains characters not allowed \
                     in an HTTP header"
                        .to_owned()
                })?;
                value.set_sensitive(true);
                headers.insert(name.clone(), value);
                Some(name)
            }
        };
        if let Some(id) = settings
            .project_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "EXECUTOR_CONNECTION_PROJECT_ID: {id:?} must be a numeric Essedum project id"
                ));
            }
            headers.insert(
                HeaderName::from_static("project"),
                HeaderValue::from_str(id).expect("digits are a valid header value"),
            );
        }
        let https = allow.entries.iter().any(|e| e.scheme() == "https");
        let tls = tls::client_config(settings.ca_file.as_deref(), https)
            .map_err(|e| format!("EXECUTOR_CONNECTION_CA_FILE: {e}"))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client for connection lookups: {e}"))?;
        Ok(ConnectionResolver {
            allow,
            client,
            ttl: settings.ttl,
            headers,
            token_header,
            cache: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
        })
    }

    pub fn allow_list(&self) -> &AllowList {
        &self.allow
    }

    /// Number of requests sent to backends so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Drops the cached answer for `r` (e.g. after AWS rejected its credentials).
    pub fn forget(&self, r: &ConnectionRef) {
        self.cache.lock().expect("connection cache lock").remove(r);
    }

    /// The details of connection `r`: from the cache while younger than the TTL, else fetched
    /// from its backend, which must still be on the allow-list.
    pub async fn resolve(
        &self,
        r: &ConnectionRef,
    ) -> Result<Arc<ConnectionDetails>, ConnectionError> {
        if !self.allow.contains(&r.base_url) {
            return Err(ConnectionError::NotAllowed(format!(
                "backend {} is not on the allow-list",
                r.base_url
            )));
        }
        if let Some((at, details)) = self.cache.lock().expect("connection cache lock").get(r)
            && at.elapsed() < self.ttl
        {
            return Ok(details.clone());
        }
        let details = Arc::new(self.fetch(r).await?);
        let mut cache = self.cache.lock().expect("connection cache lock");
        if cache.len() >= CACHE_PRUNE_AT {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        if !self.ttl.is_zero() {
            cache.insert(r.clone(), (Instant::now(), details.clone()));
        }
        Ok(details)
    }

    async fn fetch(&self, r: &ConnectionRef) -> Result<ConnectionDetails, ConnectionError> {
        let url = lookup_url(r)?;
        let what = describe(r);
        let request = self.client.get(url).headers(self.headers.clone());
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut response = request.send().await.map_err(|e| {
            ConnectionError::Unreachable(format!("{what}: {}", transport_error(&e)))
        })?;
        let status = response.status();
        if status.as_u16() == 404 {
            return Err(ConnectionError::NotFound(format!(
                "{what}: backend answered 404"
            )));
        }
        if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
            return Err(ConnectionError::Unreachable(format!(
                "{what}: backend answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(ConnectionError::BadAnswer(format!(
                "{what}: backend answered {status}"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ConnectionError::Unreachable(format!("{what}: {}", transport_error(&e))))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(ConnectionError::BadAnswer(format!(
                    "{what}: answer larger than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        parse_answer(&body).map_err(|e| match e {
            ConnectionError::NotFound(m) => ConnectionError::NotFound(format!("{what}: {m}")),
            ConnectionError::BadAnswer(m) => ConnectionError::BadAnswer(format!("{what}: {m}")),
            other => other,
        })
    }
}

/// `{base}api/aip/services/fetchConnectionDetailsByAdapterInstance?project=…&adapter_instance=…`
fn lookup_url(r: &ConnectionRef) -> Result<Url, ConnectionError> {
    let base = Url::parse(&r.base_url)
        .map_err(|_| ConnectionError::NotAllowed(format!("invalid base URL {}", r.base_url)))?;
    let mut url = base
        .join(CONNECTION_ENDPOINT)
        .map_err(|_| ConnectionError::NotAllowed(format!("invalid base URL {}", r.base_url)))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("project", &r.project);
        q.append_pair("adapter_instance", &r.adapter_instance);
        if let Some(i) = &r.is_instance {
            q.append_pair("isInstance", i);
        }
    }
    Ok(url)
}

fn describe(r: &ConnectionRef) -> String {
    format!(
        "connection of adapter instance {:?} in project {:?} at {}",
        r.adapter_instance, r.project, r.base_url
    )
}

/// A transport error, without the URL (already in the message) and with its causes.
fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut out = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(bases: &[&str]) -> AllowList {
        AllowList::parse(&bases.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }
    #[test]
    fn lookup_url_encodes_values() {
        let r = ConnectionRef {
            base_url: "http://backend:8080/app/".into(),
            project: "my proj&x=1".into(),
            adapter_instance: "a/b?c".into(),
            is_instance: Some("true".into()),
        };
        assert_eq!(
            lookup_url(&r).unwrap().as_str(),
            "http://backend:8080/app/api/aip/services/fetchConnectionDetailsByAdapterInstance\
             ?project=my+proj%26x%3D1&adapter_instance=a%2Fb%3Fc&isInstance=true"
        );
    }

    #[test]
    fn retryable_only_when_unreachable() {
        assert!(ConnectionError::Unreachable("x".into()).retryable());
        assert!(!ConnectionError::NotFound("x".into()).retryable());
        assert!(!ConnectionError::NotAllowed("x".into()).retryable());
        assert!(!ConnectionError::BadAnswer("x".into()).retryable());
    }

    #[test]
    fn resolver_accepts_https_and_refuses_bad_settings() {
        let t = Duration::from_secs(1);
        let settings = |f: &dyn Fn(&mut LookupSettings)| {
            let mut s = LookupSettings::new(t, t);
            f(&mut s);
            s
        };
        // An https backend needs trusted roots: the system's, or a CA file.
        let https = ConnectionResolver::with_settings(allowed(&["https://b/"]), settings(&|_| {}));
        if rustls_native_certs::load_native_certs().certs.is_empty() {
            assert!(https.unwrap_err().contains("EXECUTOR_CONNECTION_CA_FILE"));
        } else {
            https.unwrap();
        }
        let err = ConnectionResolver::new(allowed(&["http://b/"]), t, t, Some(Secret::new("a\nb")))
            .unwrap_err();
        assert!(err.contains("EXECUTOR_CONNECTION_TOKEN"), "{err}");
        assert!(!err.contains("a\nb"), "{err}");
        let err = ConnectionResolver::with_settings(
            allowed(&["http://b/"]),
            settings(&|s| {
                s.token = Some(Secret::new("TOKENVALUE"));
                s.token_header = "bad header".into();
            }),
        )
        .unwrap_err();
        assert!(err.contains("EXECUTOR_CONNECTION_TOKEN_HEADER"), "{err}");
        let err = ConnectionResolver::with_settings(
            allowed(&["http://b/"]),
            settings(&|s| s.project_id = Some("two".into())),
        )
        .unwrap_err();
        assert!(err.contains("EXECUTOR_CONNECTION_PROJECT_ID"), "{err}");
        let r = ConnectionResolver::new(
            allowed(&["http://b/"]),
            t,
            t,
            Some(Secret::new("TOKENVALUE")),
        )
        .unwrap();
        let shown = format!("{r:?}");
        assert!(!shown.contains("TOKENVALUE"), "{shown}");
        assert!(shown.contains("access-token"), "{shown}");
    }

    #[test]
    fn the_token_goes_in_the_configured_header() {
        let t = Duration::from_secs(1);
        let mut s = LookupSettings::new(t, t);
        s.token = Some(Secret::new("TOKENVALUE"));
        s.project_id = Some("2".into());
        let r = ConnectionResolver::with_settings(allowed(&["http://b/"]), s.clone()).unwrap();
        assert_eq!(r.headers["access-token"], "TOKENVALUE");
        assert!(r.headers["access-token"].is_sensitive());
        assert_eq!(r.headers["project"], "2");
        assert!(r.headers.get(AUTHORIZATION).is_none());
        s.token_header = "Authorization".into();
        let r = ConnectionResolver::with_settings(allowed(&["http://b/"]), s).unwrap();
        assert_eq!(r.headers[AUTHORIZATION], "Bearer TOKENVALUE");
        assert!(r.headers.get("access-token").is_none());
    }

    #[test]
    fn resolve_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let t = Duration::from_secs(1);
        let res = ConnectionResolver::new(allowed(&["http://b/"]), t, t, None).unwrap();
        let r = ConnectionRef {
            base_url: "http://b/".into(),
            project: "p".into(),
            adapter_instance: "a".into(),
            is_instance: None,
        };
        assert_send(&res.resolve(&r));
        fn assert_sync<T: Send + Sync>() {}
        assert_sync::<ConnectionResolver>();
    }

    #[tokio::test]
    async fn resolve_refuses_refs_no_longer_allowed() {
        let t = Duration::from_secs(1);
        let res = ConnectionResolver::new(allowed(&["http://b/"]), t, t, None).unwrap();
        let r = ConnectionRef {
            base_url: "http://old-backend/".into(),
            project: "p".into(),
            adapter_instance: "a".into(),
            is_instance: None,
        };
        assert!(matches!(
            res.resolve(&r).await,
            Err(ConnectionError::NotAllowed(_))
        ));
        assert_eq!(res.calls(), 0);
    }
}
