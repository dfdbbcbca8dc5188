//! Authentication and authorisation: one middleware in front of every route.
//!
//! Callers present a static token, as `Authorization: Bearer <token>` or in the `access-token`
//! header (the header the Essedum backend's services use for service tokens; its name is
//! configurable). Tokens are configured as SHA-256 hashes (a tokens file) or given once through
//! the environment and hashed at start-up; the service never keeps a plaintext token. A presented
//! token is hashed and compared with every configured hash in constant time.
//!
//! Trusted client networks (CIDRs, matched against the TCP peer address, never a forwarded
//! header) get the submitter role without a token: the Essedum backend sends no token on its
//! remote-job calls (`ICIPRemoteExecutorJob.java`) and only `Referer` and `Content-Type` from its
//! SageMaker plugin (`ICIPModelAWSServiceSageMaker.java`).
//!
//! Roles: `submitter` (the Essedum backend: the Essedum routes; on the operator API, reading and
//! cancelling its own runs) and `operator` (everything, including retry). The operator API
//! `/api/v1/...` always needs a token of ours: a trusted address alone never opens it, and a
//! trusted client is never an operator. Health, readiness, metrics (configurable) and the API
//! documentation stay open. Without a valid token or a trusted address a request changes nothing
//! and learns nothing: it is answered 401 (JSON) before any handler runs; a caller without the
//! role gets 403 (JSON).

use super::error::json_response;
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
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

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Operator => "operator",
        }
    }
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

/// One trusted client network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `fd00::/8`, or a single address (`/32` or `/128`). Host bits must be
    /// zero, so that a typo such as `10.1.2.3/8` is not silently widened.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP network (e.g. 10.0.0.0/8 or fd00::/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        // An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) is the IPv4 network it maps.
        let (addr, prefix) = match addr.to_canonical() {
            IpAddr::V4(v4) if addr.is_ipv6() => {
                if prefix < 96 {
                    return Err(format!(
                        "{text:?}: an IPv4-mapped network needs a prefix of at least 96"
                    ));
                }
                (IpAddr::V4(v4), prefix - 96)
            }
            canonical => (canonical, prefix),
        };
        let cidr = Cidr { addr, prefix };
        if cidr.network() != addr {
            return Err(format!(
                "{text:?} has host bits set; did you mean {}/{prefix}?",
                cidr.network()
            ));
        }
        Ok(cidr)
    }

    fn mask(bits: u32, prefix: u8) -> u128 {
        if prefix == 0 {
            0
        } else {
            (u128::MAX << (bits - u32::from(prefix))) & (u128::MAX >> (128 - bits))
        }
    }

    fn bits(addr: IpAddr) -> (u32, u128) {
        match addr {
            IpAddr::V4(a) => (32, u128::from(u32::from(a))),
            IpAddr::V6(a) => (128, u128::from(a)),
        }
    }

    fn network(&self) -> IpAddr {
        let (bits, value) = Cidr::bits(self.addr);
        let net = value & Cidr::mask(bits, self.prefix);
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4((net as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(net.into()),
        }
    }

    /// Whether `ip` lies in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let (bits, value) = Cidr::bits(ip);
        let (_, net) = Cidr::bits(self.addr);
        let mask = Cidr::mask(bits, self.prefix);
        value & mask == net & mask
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The configured tokens and trusted networks; with neither, authentication is off.
#[derive(Clone, Debug)]
pub struct Auth {
    tokens: Arc<Vec<TokenEntry>>,
    trusted: Arc<Vec<Cidr>>,
    /// The caller name of trusted clients (the owner of their runs).
    trusted_name: String,
    /// The header read for a static token besides `Authorization: Bearer`.
    token_header: poem::http::HeaderName,
    pub open_metrics: bool,
}

impl Default for Auth {
    fn default() -> Auth {
        Auth {
            tokens: Arc::default(),
            trusted: Arc::default(),
            trusted_name: DEFAULT_TRUSTED_NAME.into(),
            token_header: poem::http::HeaderName::from_static(DEFAULT_TOKEN_HEADER),
            open_metrics: true,
        }
    }
}

/// The header the Essedum backend's services read static service tokens from
/// (`sv/common-app/.../security/jwt/CustomAuthFilter.java`).
pub const DEFAULT_TOKEN_HEADER: &str = "access-token";

/// The caller name trusted clients act as unless configured.
pub const DEFAULT_TRUSTED_NAME: &str = "essedum";

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
            ..Auth::default()
        })
    }

    /// Adds trusted client networks (`EXECUTOR_TRUSTED_CLIENTS`); a bad entry is an error naming
    /// the setting. Blank entries are skipped.
    pub fn with_trusted_clients(mut self, networks: &[String]) -> Result<Auth, String> {
        let mut trusted = Vec::new();
        for n in networks.iter().filter(|n| !n.trim().is_empty()) {
            let cidr = Cidr::parse(n).map_err(|e| format!("EXECUTOR_TRUSTED_CLIENTS: {e}"))?;
            if !trusted.contains(&cidr) {
                trusted.push(cidr);
            }
        }
        self.trusted = Arc::new(trusted);
        Ok(self)
    }

    /// The caller name of trusted clients (`EXECUTOR_TRUSTED_CLIENTS_NAME`).
    pub fn with_trusted_name(mut self, name: &str) -> Result<Auth, String> {
        let name = name.trim();
        if name.is_empty() {
            return Err("EXECUTOR_TRUSTED_CLIENTS_NAME must not be empty".into());
        }
        self.trusted_name = name.to_owned();
        Ok(self)
    }

    /// The header read for a static token besides `Authorization` (`EXECUTOR_TOKEN_HEADER`).
    pub fn with_token_header(mut self, name: &str) -> Result<Auth, String> {
        let header = poem::http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            format!("EXECUTOR_TOKEN_HEADER: {name:?} is not a valid HTTP header name")
        })?;
        if header == poem::http::header::AUTHORIZATION {
            return Err(
                "EXECUTOR_TOKEN_HEADER: Authorization is always read; name another header".into(),
            );
        }
        self.token_header = header;
        Ok(self)
    }

    /// Whether any caller is authenticated (tokens or trusted networks are configured).
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || !self.trusted.is_empty()
    }

    /// Whether a token of the operator role is configured.
    pub fn has_operator_token(&self) -> bool {
        self.tokens.iter().any(|t| t.role == Role::Operator)
    }

    /// The trusted networks, for the start-up log.
    pub fn trusted_clients(&self) -> Vec<String> {
        self.trusted.iter().map(Cidr::to_string).collect()
    }

    /// Whether the TCP peer `ip` is in a trusted network.
    fn trusted_peer(&self, ip: Option<IpAddr>) -> bool {
        ip.is_some_and(|ip| self.trusted.iter().any(|c| c.contains(ip)))
    }

    /// Who made the request, or the 401/403 to answer.
    /// `peer`: the TCP peer's address.
    #[cfg(test)]
    fn authenticate(
        &self,
        headers: &poem::http::HeaderMap,
        peer: Option<IpAddr>,
        needed: Role,
    ) -> Result<Caller, Refusal> {
        self.authenticate_at(headers, peer, needed, true)
    }

    /// Like [`Auth::authenticate`]; `trust_peer` false (the operator API) ignores the trusted
    /// networks, so only a token of ours is accepted.
    fn authenticate_at(
        &self,
        headers: &poem::http::HeaderMap,
        peer: Option<IpAddr>,
        needed: Role,
        trust_peer: bool,
    ) -> Result<Caller, Refusal> {
        let peer = if trust_peer { peer } else { None };
        let bearer = headers
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let header = headers
            .get(&self.token_header)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let presented = bearer.is_some() || header.is_some();
        // The first presented token that is ours wins: a client may forward a user's JWT in
        // Authorization and carry our token in the other header.
        let by_token = [bearer, header]
            .into_iter()
            .flatten()
            .find_map(|t| self.verify(t));
        let via_token = by_token.is_some();
        let caller = match by_token {
            Some(c) => c,
            // A trusted client is a submitter whatever else it sends (a forwarded user JWT is not
            // ours), except that an unknown token on an operator route is reported as such.
            None if self.trusted_peer(peer) && !(presented && needed == Role::Operator) => Caller {
                name: self.trusted_name.clone(),
                role: Role::Submitter,
            },
            None if presented => return Err(Refusal::unauthorized("invalid token".into())),
            None => {
                return Err(Refusal::unauthorized(format!(
                    "missing bearer token (Authorization: Bearer <token>, or the {} header)",
                    self.token_header
                )));
            }
        };
        if caller.role < needed {
            let mut message = format!(
                "the {} role may not do this; it needs the operator role",
                caller.role.name()
            );
            if !via_token {
                message.push_str(
                    " (a trusted client without a token is a submitter: present an operator token)",
                );
            }
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                message,
            });
        }
        Ok(caller)
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
pub(crate) const INFER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(75);

/// The role a route needs; `None` for open routes.
fn required_role(method: &Method, path: &str, open_metrics: bool) -> Option<Role> {
    let open = matches!(path, "/healthz" | "/readyz" | "/openapi.json")
        || path == "/docs"
        || path.starts_with("/docs/")
        || (open_metrics && path == "/metrics");
    if open && (method == Method::GET || method == Method::HEAD) {
        return None;
    }
    // Retry resumes work that AWS may bill for: operators only. Reading runs and cancelling them
    // is open to submitters (each sees and cancels only its own runs).
    if path.starts_with("/api/v1/runs/") && path.ends_with("/retry") {
        return Some(Role::Operator);
    }
    Some(Role::Submitter)
}

/// The operator API (`/api/v1/...`): the Essedum backend never calls it, so a trusted network
/// alone never opens it; every call there presents a token of ours.
fn operator_api(path: &str) -> bool {
    path == "/api/v1" || path.starts_with("/api/v1/")
}

/// Why a request is refused before any handler runs: 401 or 403.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn unauthorized(message: String) -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            message,
        }
    }

    /// The JSON reply; a 401 carries the `WWW-Authenticate` challenge.
    fn response(&self) -> Response {
        let mut r = json_response(self.status, &self.message, None);
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                poem::http::header::WWW_AUTHENTICATE,
                poem::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
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

/// The TCP peer's address (never a forwarded header: any client can write those).
fn peer(req: &Request) -> Option<IpAddr> {
    req.remote_addr()
        .as_socket_addr()
        .map(std::net::SocketAddr::ip)
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
    } else if req.uri().path().ends_with("/infer") || req.uri().path().ends_with("/explain") {
        limits.request_timeout.max(INFER_TIMEOUT)
    } else {
        limits.request_timeout
    };
    let max_body = if dataset_upload {
        usize::try_from(limits.max_dataset_bytes).unwrap_or(usize::MAX)
    } else {
        limits.max_body_bytes
    };
    let path = req.uri().path().to_string();
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
            Some(needed) => match auth.authenticate_at(
                req.headers(),
                peer(&req),
                needed,
                !operator_api(req.uri().path()),
            ) {
                Ok(caller) => caller,
                Err(refused) => return Ok(refused.response()),
            },
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
    // A request that has begun storing a run is answered, however long that takes: a 503 for a
    // run that was stored would make the client send it again (a second run).
    let submission = Arc::new(crate::store::Submission::default());
    // Boxed: the handlers' futures are large, and the stack of a worker thread is not.
    let mut call = Box::pin(submission.scope(ep.call(req)));
    tokio::select! {
        r = &mut call => r.map(IntoResponse::into_response),
        () = tokio::time::sleep(timeout) => {
            if submission.storing() {
                tracing::warn!(
                    path = %path,
                    "a submission took longer than the request timeout; answering it once stored"
                );
                call.await.map(IntoResponse::into_response)
            } else {
                Ok(json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("the request took longer than {} s", timeout.as_secs()),
                    None,
                ))
            }
        }
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
        for path in ["/api/v1/runs", "/api/v1/runs/x", "/api/v1/workflows"] {
            assert!(operator_api(path), "{path}");
        }
        assert!(!operator_api("/api/v1x"));
        for path in [
            "/status/x",
            "/execute",
            "/api/service/v1/pipelines/training/x/cancel",
            "/api/v1x",
            "/api/v1/runs",
        ] {
            assert_eq!(
                required_role(&get, path, true),
                Some(Role::Submitter),
                "{path}"
            );
        }
        assert_eq!(
            required_role(&Method::POST, "/healthz", true),
            Some(Role::Submitter)
        );
    }

    #[test]
    fn networks_parse_and_match() {
        let net = |s: &str| Cidr::parse(s).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(net("127.0.0.1/32").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1/32").contains(ip("127.0.0.2")));
        assert!(net("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(!net("10.0.0.0/8").contains(ip("127.0.0.1")));
        assert!(net("0.0.0.0/0").contains(ip("192.0.2.1")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(net("192.168.1.7").contains(ip("192.168.1.7")));
        assert!(net("fd00::/8").contains(ip("fd12:3456::1")));
        assert!(!net("fd00::/8").contains(ip("fe80::1")));
        assert!(net("::1/128").contains(ip("::1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        // A dual-stack listener reports IPv4 peers as IPv4-mapped IPv6 addresses.
        assert!(net("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
        assert!(net("::ffff:10.0.0.0/104").contains(ip("10.1.1.1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.1/8",
            "fd00::1/8",
            "10.0.0.0/-1",
            "10.0.0.0/",
            "host.example/24",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        let err = Cidr::parse("10.1.2.3/8").unwrap_err();
        assert!(err.contains("10.0.0.0/8"), "{err}");
        let err = Auth::default()
            .with_trusted_clients(&["10.0.0.0/8".into(), "nonsense".into()])
            .unwrap_err();
        assert!(
            err.starts_with("EXECUTOR_TRUSTED_CLIENTS:") && err.contains("nonsense"),
            "{err}"
        );
        let auth = Auth::default()
            .with_trusted_clients(&["10.0.0.0/8".into(), " ".into(), "10.0.0.0/8".into()])
            .unwrap();
        assert_eq!(auth.trusted_clients(), vec!["10.0.0.0/8"]);
        assert!(
            auth.enabled(),
            "trusted networks alone turn authentication on"
        );
    }

    fn headers(pairs: &[(&str, &str)]) -> poem::http::HeaderMap {
        let mut h = poem::http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                poem::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[tokio::test]
    async fn trusted_clients_are_submitters_and_tokens_work_in_either_header() {
        let auth = Auth::configure(
            None,
            Some("operator-token-0123456789"),
            Some("submitter-token-0123456789"),
            true,
        )
        .unwrap()
        .with_trusted_clients(&["10.0.0.0/8".into()])
        .unwrap();
        let inside = Some("10.1.2.3".parse().unwrap());
        let outside = Some("192.0.2.1".parse().unwrap());
        let ok = |r: Result<Caller, Refusal>| {
            let c = r.unwrap();
            (c.name, c.role)
        };
        let status = |r: Result<Caller, Refusal>| r.map(|c| c.name).unwrap_err().status;

        // Only Referer and Content-Type, as the backend's SageMaker plugin sends.
        let backend = headers(&[
            ("referer", "http://backend/"),
            ("content-type", "application/json"),
        ]);
        assert_eq!(
            ok(auth.authenticate(&backend, inside, Role::Submitter)),
            ("essedum".into(), Role::Submitter)
        );
        assert_eq!(
            status(auth.authenticate(&backend, outside, Role::Submitter)),
            401
        );
        assert_eq!(
            status(auth.authenticate(&backend, None, Role::Submitter)),
            401
        );
        // A trusted client is never an operator without an operator token.
        assert_eq!(
            status(auth.authenticate(&backend, inside, Role::Operator)),
            403
        );
        // On the operator API a trusted address counts for nothing: a token of ours is needed.
        assert_eq!(
            status(auth.authenticate_at(&backend, inside, Role::Submitter, false)),
            401
        );
        let submitter = headers(&[("access-token", "submitter-token-0123456789")]);
        assert_eq!(
            ok(auth.authenticate_at(&submitter, inside, Role::Submitter, false)).1,
            Role::Submitter
        );
        // A forwarded user JWT from a trusted client is ignored; elsewhere it is an invalid token.
        let jwt = headers(&[("authorization", "Bearer eyJhbGciOi.user.jwt")]);
        assert_eq!(
            ok(auth.authenticate(&jwt, inside, Role::Submitter)).1,
            Role::Submitter
        );
        assert_eq!(
            status(auth.authenticate(&jwt, outside, Role::Submitter)),
            401
        );
        assert_eq!(status(auth.authenticate(&jwt, inside, Role::Operator)), 401);

        // The static tokens, in Authorization or in access-token, from anywhere.
        for h in [
            headers(&[("authorization", "Bearer submitter-token-0123456789")]),
            headers(&[("access-token", "submitter-token-0123456789")]),
            headers(&[
                ("authorization", "Bearer eyJhbGciOi.user.jwt"),
                ("access-token", "submitter-token-0123456789"),
            ]),
        ] {
            assert_eq!(
                ok(auth.authenticate(&h, outside, Role::Submitter)),
                ("submitter".into(), Role::Submitter)
            );
            assert_eq!(status(auth.authenticate(&h, inside, Role::Operator)), 403);
        }
        let op = headers(&[("access-token", "operator-token-0123456789")]);
        assert_eq!(
            ok(auth.authenticate(&op, inside, Role::Operator)),
            ("operator".into(), Role::Operator)
        );

        // The header name is configurable; the old one then carries nothing.
        let auth = auth.with_token_header("x-executor-token").unwrap();
        let h = headers(&[("x-executor-token", "operator-token-0123456789")]);
        assert_eq!(
            ok(auth.authenticate(&h, outside, Role::Operator)).1,
            Role::Operator
        );
        assert_eq!(status(auth.authenticate(&op, outside, Role::Operator)), 401);
        assert!(Auth::default().with_token_header("Authorization").is_err());
        assert!(Auth::default().with_token_header("bad header").is_err());
        assert!(Auth::default().with_trusted_name(" ").is_err());
    }

    #[tokio::test]
    async fn refusals_are_json() {
        let auth = Auth::default()
            .with_trusted_clients(&["10.0.0.0/8".into()])
            .unwrap();
        for (peer, needed, code) in [
            ("192.0.2.1", Role::Submitter, 401),
            ("10.0.0.1", Role::Operator, 403),
        ] {
            let r = auth
                .authenticate(&headers(&[]), Some(peer.parse().unwrap()), needed)
                .unwrap_err()
                .response();
            assert_eq!(r.status().as_u16(), code);
            assert_eq!(
                r.headers()["content-type"],
                "application/json; charset=utf-8"
            );
            let body: serde_json::Value =
                serde_json::from_slice(&r.into_body().into_bytes().await.unwrap()).unwrap();
            assert!(body["error"].is_string(), "{body}");
        }
    }
}
