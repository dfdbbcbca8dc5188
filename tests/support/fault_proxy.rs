//! Fault-injecting HTTP/1.1 proxy for integration tests.
//!
//! Sits between the AWS SDK and the emulator (plain HTTP on loopback) and, according to a
//! [`FaultPlan`], answers selected requests with throttling / server errors, delays them, or
//! drops the connection. Every client connection carries exactly one request: it is read in
//! full, forwarded over a fresh upstream connection (or faulted), answered with
//! `Connection: close`, and closed. The SDK simply reconnects for the next request.
//!
//! Built on plain tokio TCP; no HTTP library.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Largest request/response head (request line + headers) accepted.
const MAX_HEAD: usize = 256 * 1024;
/// Largest single line inside a chunked body (chunk-size line or trailer).
const MAX_LINE: usize = 64 * 1024;
/// Read granularity.
const READ_CHUNK: usize = 64 * 1024;

/// A fault to inject into one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SageMaker: 400 `ThrottlingException`; S3: 503 `SlowDown`.
    Throttle,
    /// SageMaker: 500 `InternalFailure`; S3: 500 `InternalError`.
    ServerError,
    /// SageMaker: 503 `ServiceUnavailable`; S3: 503 `ServiceUnavailable`.
    ServiceUnavailable,
    /// SageMaker/CloudWatch: 400 `AccessDeniedException`; S3: 403 `AccessDenied` (an IAM refusal).
    AccessDenied,
    /// SageMaker: 400 `ExpiredTokenException`; S3: 400 `ExpiredToken` (credentials that expired).
    ExpiredToken,
    /// Forward normally, but only after this delay.
    Delay(Duration),
    /// Read the request, then close the connection without answering. The request never
    /// reaches upstream.
    Drop,
    /// Forward the request to upstream (so it takes effect there), then close the client
    /// connection without relaying the answer: a lost response, for idempotency tests.
    DropResponse,
}

/// Which requests get which faults.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    /// Inject a fault on every n-th eligible request (3 means the 3rd, 6th, 9th … eligible
    /// request since `set_plan` is faulted). 0 = never.
    pub every_nth: u32,
    /// Faults used in rotation, one per injected fault. Empty = never.
    pub kinds: Vec<Fault>,
    /// Only requests whose operation is in this list are eligible; `None` = all operations.
    pub operations: Option<Vec<String>>,
}

impl FaultPlan {
    /// Fault every `every_nth`-th request of any operation, rotating through `kinds`.
    pub fn new(every_nth: u32, kinds: Vec<Fault>) -> FaultPlan {
        FaultPlan {
            every_nth,
            kinds,
            operations: None,
        }
    }

    /// Fault every request with `kind`.
    pub fn always(kind: Fault) -> FaultPlan {
        FaultPlan::new(1, vec![kind])
    }

    /// Restrict eligibility to these operations (e.g. `"CreateTrainingJob"`, `"S3:PutObject"`).
    pub fn only<I, S>(mut self, operations: I) -> FaultPlan
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.operations = Some(operations.into_iter().map(Into::into).collect());
        self
    }
}

#[derive(Default)]
struct State {
    plan: Option<FaultPlan>,
    /// Eligible requests seen under the current plan.
    eligible: u64,
    /// Faults injected under the current plan (drives the rotation).
    injected: u64,
    calls: BTreeMap<String, u64>,
    faults: BTreeMap<String, u64>,
}

impl State {
    /// Records one request of `op` and decides whether (and how) to fault it.
    fn decide(&mut self, op: &str) -> Option<Fault> {
        *self.calls.entry(op.to_owned()).or_default() += 1;
        let plan = self.plan.as_ref()?;
        if plan.every_nth == 0 || plan.kinds.is_empty() {
            return None;
        }
        if let Some(ops) = &plan.operations
            && !ops.iter().any(|o| o == op)
        {
            return None;
        }
        self.eligible += 1;
        if !self.eligible.is_multiple_of(u64::from(plan.every_nth)) {
            return None;
        }
        let kind = plan.kinds[(self.injected % plan.kinds.len() as u64) as usize].clone();
        self.injected += 1;
        *self.faults.entry(op.to_owned()).or_default() += 1;
        Some(kind)
    }
}

struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counters inconsistent; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fault-injecting proxy. Dropping it stops the accept loop and aborts in-flight
/// connections.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream` (e.g. the emulator at 127.0.0.1:NNNN).
    /// Must be called inside a tokio runtime; the proxy lives on that runtime.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State::default()),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(FaultProxy { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Installs `plan` for subsequent requests; restarts the every-n-th counter and the
    /// rotation of kinds. Call/fault counters are kept.
    pub fn set_plan(&self, plan: FaultPlan) {
        let mut st = self.shared.state();
        st.plan = Some(plan);
        st.eligible = 0;
        st.injected = 0;
    }

    /// Stops injecting faults; everything is forwarded.
    pub fn clear_plan(&self) {
        let mut st = self.shared.state();
        st.plan = None;
        st.eligible = 0;
        st.injected = 0;
    }

    /// Requests seen per operation (faulted or forwarded).
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.shared.state().calls.clone()
    }

    /// Faults injected per operation.
    pub fn faults(&self) -> BTreeMap<String, u64> {
        self.shared.state().faults.clone()
    }

    pub fn call_count(&self, op: &str) -> u64 {
        self.shared.state().calls.get(op).copied().unwrap_or(0)
    }

    pub fn fault_count(&self, op: &str) -> u64 {
        self.shared.state().faults.get(op).copied().unwrap_or(0)
    }

    pub fn total_faults(&self) -> u64 {
        self.shared.state().faults.values().sum()
    }

    /// Resets the `calls()` / `faults()` counters (the plan stays in place).
    pub fn reset_counts(&self) {
        let mut st = self.shared.state();
        st.calls.clear();
        st.faults.clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Connection tasks live in this set so that aborting the accept loop aborts them too.
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((sock, _)) => {
                let _ = sock.set_nodelay(true);
                let shared = shared.clone();
                conns.spawn(async move {
                    // Errors on one connection (client gone, garbage, …) only end that connection.
                    let _ = handle_connection(sock, shared).await;
                });
            }
            // Transient accept errors (e.g. fd exhaustion): back off briefly and keep serving.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

async fn handle_connection(sock: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    let mut client = Conn::new(sock);
    let Some(req) = read_request(&mut client).await? else {
        return Ok(()); // closed before sending anything
    };
    let op = operation_name(&req.method, &req.target, req.head.get("x-amz-target"));
    let fault = match &op {
        Some(op) => shared.state().decide(op),
        None => None, // emulator control path: forwarded, never faulted, not counted
    };
    // SageMaker (awsJson) or SageMaker Runtime's InvokeEndpoint (restJson): JSON error bodies.
    let is_sagemaker =
        req.head.get("x-amz-target").is_some() || op.as_deref() == Some("InvokeEndpoint");
    let reply = match fault {
        None => forward(shared.upstream, &req).await,
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            forward(shared.upstream, &req).await
        }
        Some(Fault::Drop) => {
            // Close without answering; the client sees the connection end mid-exchange.
            return Ok(());
        }
        Some(Fault::DropResponse) => {
            let _ = forward(shared.upstream, &req).await;
            return Ok(());
        }
        Some(kind) => error_reply(&kind, is_sagemaker, req.method == "HEAD"),
    };
    let stream = client.stream_mut();
    stream.write_all(&reply).await?;
    stream.flush().await?;
    stream.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Operation naming
// ---------------------------------------------------------------------------------------------

/// Names the operation a request performs, or `None` for emulator control requests
/// (`/_emulator/…`, `/moto-api/…`), which are never faulted or counted.
///
/// `x-amz-target: SageMaker.CreateTrainingJob` → `CreateTrainingJob`; anything else is S3 in
/// path style: `S3:PutObject`, `S3:UploadPart`, …
pub fn operation_name(method: &str, target: &str, x_amz_target: Option<&str>) -> Option<String> {
    let (path, query) = split_target(target);
    if path.starts_with("/_emulator/") || path.starts_with("/moto-api/") {
        return None;
    }
    if let Some(t) = x_amz_target {
        let t = t.trim();
        return Some(t.rsplit('.').next().unwrap_or(t).to_owned());
    }
    if path.starts_with("/endpoints/") && path.ends_with("/invocations") {
        return Some("InvokeEndpoint".to_owned());
    }
    let has = |name: &str| {
        query
            .split('&')
            .any(|kv| kv.split('=').next() == Some(name))
    };
    let rest = path.trim_start_matches('/');
    let (bucket, key) = match rest.split_once('/') {
        Some((b, k)) => (b, k),
        None => (rest, ""),
    };
    let method = method.to_ascii_uppercase();
    let op = match (method.as_str(), bucket.is_empty(), key.is_empty()) {
        ("GET", true, _) => "ListBuckets",
        ("PUT", _, _) if has("partNumber") => "UploadPart",
        ("POST", _, _) if has("uploads") => "CreateMultipartUpload",
        ("POST", _, _) if has("uploadId") => "CompleteMultipartUpload",
        ("DELETE", _, _) if has("uploadId") => "AbortMultipartUpload",
        ("GET", _, false) if has("uploadId") => "ListParts",
        ("POST", _, true) if has("delete") => "DeleteObjects",
        ("PUT", _, true) => "CreateBucket",
        ("PUT", _, false) => "PutObject",
        ("GET", _, true) => "ListObjects",
        ("GET", _, false) => "GetObject",
        ("HEAD", _, true) => "HeadBucket",
        ("HEAD", _, false) => "HeadObject",
        ("DELETE", _, true) => "DeleteBucket",
        ("DELETE", _, false) => "DeleteObject",
        (m, _, _) => return Some(format!("S3:{m}")),
    };
    Some(format!("S3:{op}"))
}

/// Splits a request target into (path, query); absolute-form targets are reduced to their path.
fn split_target(target: &str) -> (&str, &str) {
    let mut t = target;
    if let Some(after_scheme) = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
    {
        t = after_scheme
            .find('/')
            .map_or("/", |slash| &after_scheme[slash..]);
    }
    match t.split_once('?') {
        Some((p, q)) => (p, q),
        None => (t, ""),
    }
}

// ---------------------------------------------------------------------------------------------
// Fault replies
// ---------------------------------------------------------------------------------------------

fn request_id() -> String {
    let mut s = String::with_capacity(32);
    for _ in 0..32 {
        s.push(char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'));
    }
    s.make_ascii_uppercase();
    s
}

/// Builds a complete HTTP response for an error fault.
fn error_reply(kind: &Fault, sagemaker: bool, head_request: bool) -> Vec<u8> {
    let id = request_id();
    let (status, reason, content_type, id_headers, body) = if sagemaker {
        let (status, reason, code, msg) = match kind {
            Fault::Throttle => (400, "Bad Request", "ThrottlingException", "Rate exceeded"),
            Fault::AccessDenied => (
                400,
                "Bad Request",
                "AccessDeniedException",
                "User: arn:aws:sts::123456789012:assumed-role/executor/i-0 is not authorized to \
                 perform this action (injected fault)",
            ),
            Fault::ServiceUnavailable => (
                503,
                "Service Unavailable",
                "ServiceUnavailable",
                "Service is unavailable (injected fault)",
            ),
            Fault::ExpiredToken => (
                400,
                "Bad Request",
                "ExpiredTokenException",
                "The security token included in the request is expired (injected fault)",
            ),
            _ => (
                500,
                "Internal Server Error",
                "InternalFailure",
                "Internal failure (injected fault)",
            ),
        };
        let body = serde_json::json!({ "__type": code, "message": msg }).to_string();
        (
            status,
            reason,
            "application/x-amz-json-1.1",
            format!("x-amzn-RequestId: {id}\r\n"),
            body,
        )
    } else {
        let (status, reason, code, msg) = match kind {
            Fault::Throttle => (
                503,
                "Slow Down",
                "SlowDown",
                "Please reduce your request rate.",
            ),
            Fault::AccessDenied => (403, "Forbidden", "AccessDenied", "Access Denied"),
            Fault::ExpiredToken => (
                400,
                "Bad Request",
                "ExpiredToken",
                "The provided token has expired.",
            ),
            Fault::ServiceUnavailable => (
                503,
                "Service Unavailable",
                "ServiceUnavailable",
                "Service is unable to handle request (injected fault).",
            ),
            _ => (
                500,
                "Internal Server Error",
                "InternalError",
                "We encountered an internal error. Please try again (injected fault).",
            ),
        };
        let host_id = request_id();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
             <Message>{msg}</Message><RequestId>{id}</RequestId><HostId>{host_id}</HostId></Error>"
        );
        (
            status,
            reason,
            "application/xml",
            format!("x-amz-request-id: {id}\r\nx-amz-id-2: {host_id}\r\n"),
            body,
        )
    };
    // A reply to HEAD carries no body (S3 HEAD errors are body-less; the SDK maps the status).
    let body = if head_request { String::new() } else { body };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\n{id_headers}Content-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

fn simple_reply(status: u16, reason: &str, msg: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        msg.len()
    )
    .into_bytes();
    out.extend_from_slice(msg.as_bytes());
    out
}

// ---------------------------------------------------------------------------------------------
// Forwarding
// ---------------------------------------------------------------------------------------------

/// Headers that are hop-by-hop for our purposes and replaced/removed when relaying.
const HOP_HEADERS: &[&str] = &["connection", "keep-alive", "proxy-connection"];

/// Sends `req` to upstream on a fresh connection and returns the complete response to relay
/// (rewritten with `Connection: close`), or a 502 if upstream fails.
async fn forward(upstream: SocketAddr, req: &Request) -> Vec<u8> {
    match try_forward(upstream, req).await {
        Ok(resp) => resp,
        Err(e) => simple_reply(
            502,
            "Bad Gateway",
            &format!("fault proxy: upstream error: {e}"),
        ),
    }
}

async fn try_forward(upstream: SocketAddr, req: &Request) -> io::Result<Vec<u8>> {
    let sock = TcpStream::connect(upstream).await?;
    let _ = sock.set_nodelay(true);
    let mut up = Conn::new(sock);

    // We already answered any `Expect: 100-continue` ourselves and hold the whole body.
    let mut drop_headers = HOP_HEADERS.to_vec();
    drop_headers.push("expect");
    let mut out = req
        .head
        .serialize(&drop_headers, &[("Connection", "close")]);
    out.extend_from_slice(&req.body);
    {
        let s = up.stream_mut();
        s.write_all(&out).await?;
        s.flush().await?;
    }
    drop(out);

    // Skip interim 1xx responses; the client already got its 100 Continue from us.
    let head = loop {
        let raw = up
            .read_head()
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "upstream closed"))?;
        let head = Head::parse(&raw)?;
        let status = status_code(&head.start)?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        break head;
    };
    let status = status_code(&head.start)?;
    let mut resp = head.serialize(HOP_HEADERS, &[("Connection", "close")]);
    let no_body =
        req.method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304;
    if !no_body {
        match body_framing(&head, false)? {
            Framing::None => {}
            Framing::Length(n) => up.read_exact_into(n, &mut resp).await?,
            Framing::Chunked => up.read_chunked_into(&mut resp).await?,
            Framing::UntilEof => up.read_to_end_into(&mut resp).await?,
        }
    }
    Ok(resp)
}

fn status_code(status_line: &str) -> io::Result<u16> {
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 parsing
// ---------------------------------------------------------------------------------------------

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

struct Header {
    /// Lower-cased name.
    name: String,
    /// Trimmed value (lossy UTF-8), for inspection only.
    value: String,
    /// The line as received, without CRLF; used when relaying.
    raw: Vec<u8>,
}

/// A request or response head: start line plus headers.
struct Head {
    start: String,
    headers: Vec<Header>,
}

impl Head {
    /// Parses a head that ends with CRLFCRLF (bare LF line endings are tolerated).
    fn parse(bytes: &[u8]) -> io::Result<Head> {
        let mut lines = bytes
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let start = lines.next().ok_or_else(|| invalid("empty head"))?;
        let start = String::from_utf8_lossy(start).into_owned();
        let mut headers = Vec::new();
        for line in lines {
            if line.is_empty() {
                continue;
            }
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => (&line[..i], &line[i + 1..]),
                None => (line, &b""[..]), // obs-fold or junk: relay as-is, never matches
            };
            headers.push(Header {
                name: String::from_utf8_lossy(name).trim().to_ascii_lowercase(),
                value: String::from_utf8_lossy(value).trim().to_owned(),
                raw: line.to_vec(),
            });
        }
        Ok(Head { start, headers })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.as_str())
    }

    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| h.value.as_str())
    }

    /// Serializes the head, omitting headers named in `drop` and appending `extra`.
    fn serialize(&self, drop: &[&str], extra: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(self.start.as_bytes());
        out.extend_from_slice(b"\r\n");
        for h in &self.headers {
            if drop.contains(&h.name.as_str()) {
                continue;
            }
            out.extend_from_slice(&h.raw);
            out.extend_from_slice(b"\r\n");
        }
        for (n, v) in extra {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilEof,
}

fn body_framing(head: &Head, request: bool) -> io::Result<Framing> {
    let te: Vec<String> = head
        .get_all("transfer-encoding")
        .flat_map(|v| v.split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    if let Some(last) = te.last() {
        return if last == "chunked" {
            Ok(Framing::Chunked)
        } else if request {
            Err(invalid("request transfer-encoding without chunked"))
        } else {
            Ok(Framing::UntilEof)
        };
    }
    let mut len: Option<usize> = None;
    for v in head.get_all("content-length") {
        for part in v.split(',') {
            let n: usize = part
                .trim()
                .parse()
                .map_err(|_| invalid(format!("bad content-length {v:?}")))?;
            if len.is_some_and(|l| l != n) {
                return Err(invalid("conflicting content-length"));
            }
            len = Some(n);
        }
    }
    Ok(match len {
        Some(0) => Framing::None,
        Some(n) => Framing::Length(n),
        None if request => Framing::None,
        None => Framing::UntilEof,
    })
}

struct Request {
    method: String,
    target: String,
    head: Head,
    /// Body bytes exactly as received (chunked framing kept intact).
    body: Vec<u8>,
}

/// Reads one complete request. `Ok(None)` if the client closed before sending anything.
async fn read_request(conn: &mut Conn<TcpStream>) -> io::Result<Option<Request>> {
    let Some(raw) = conn.read_head().await? else {
        return Ok(None);
    };
    let head = Head::parse(&raw)?;
    let mut parts = head.start.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or("/").to_owned();
    if method.is_empty() {
        return Err(invalid("empty request line"));
    }
    let framing = body_framing(&head, true)?;
    let expects_continue = head
        .get("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue && !matches!(framing, Framing::None) {
        let s = conn.stream_mut();
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        s.flush().await?;
    }
    let mut body = Vec::new();
    match framing {
        Framing::None | Framing::UntilEof => {}
        Framing::Length(n) => conn.read_exact_into(n, &mut body).await?,
        Framing::Chunked => conn.read_chunked_into(&mut body).await?,
    }
    Ok(Some(Request {
        method,
        target,
        head,
        body,
    }))
}

/// A buffered connection: bytes read ahead live in `buf[pos..]`.
struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
    pos: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S) -> Conn<S> {
        Conn {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
        }
    }

    fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more bytes into the buffer; returns how many (0 = EOF).
    async fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let res = self.stream.read(&mut self.buf[old..]).await;
        let n = *res.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        res
    }

    /// Reads a head up to and including the blank line. `Ok(None)` on EOF before any byte.
    async fn read_head(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut searched: usize = 0;
        loop {
            let avail = self.buffered();
            let from = searched.saturating_sub(3);
            if let Some(end) = find_head_end(&avail[from..]) {
                let end = from + end;
                let head = avail[..end].to_vec();
                self.pos += end;
                return Ok(Some(head));
            }
            searched = avail.len();
            if searched > MAX_HEAD {
                return Err(invalid("head too large"));
            }
            if self.fill().await? == 0 {
                return if self.buffered().is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "eof inside head",
                    ))
                };
            }
        }
    }

    /// Appends exactly `n` body bytes to `out`.
    async fn read_exact_into(&mut self, n: usize, out: &mut Vec<u8>) -> io::Result<()> {
        let take = n.min(self.buffered().len());
        out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
        self.pos += take;
        let mut left = n - take;
        if left == 0 {
            return Ok(());
        }
        out.reserve(left);
        let mut tmp = vec![0u8; READ_CHUNK.min(left)];
        while left > 0 {
            let want = left.min(tmp.len());
            let got = self.stream.read(&mut tmp[..want]).await?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "eof inside body",
                ));
            }
            out.extend_from_slice(&tmp[..got]);
            left -= got;
        }
        Ok(())
    }

    /// Appends everything until EOF to `out`.
    async fn read_to_end_into(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        out.extend_from_slice(&self.buf[self.pos..]);
        self.pos = self.buf.len();
        self.stream.read_to_end(out).await?;
        Ok(())
    }

    /// Appends one line including its line ending to `out`; returns the line without it.
    async fn read_line_into(&mut self, out: &mut Vec<u8>) -> io::Result<Vec<u8>> {
        loop {
            let avail = self.buffered();
            if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                let line = &avail[..=i];
                out.extend_from_slice(line);
                let content = line
                    .strip_suffix(b"\n")
                    .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                    .unwrap_or(line)
                    .to_vec();
                self.pos += i + 1;
                return Ok(content);
            }
            if avail.len() > MAX_LINE {
                return Err(invalid("chunk line too long"));
            }
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "eof inside chunked body",
                ));
            }
        }
    }

    /// Appends a complete chunked body (all chunks, the final 0-chunk and trailers) to `out`,
    /// keeping the chunked framing as received.
    async fn read_chunked_into(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        loop {
            let line = self.read_line_into(out).await?;
            let line = String::from_utf8_lossy(&line);
            let size_str = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_str, 16)
                .map_err(|_| invalid(format!("bad chunk size {size_str:?}")))?;
            if size == 0 {
                // Trailers until the empty line.
                loop {
                    if self.read_line_into(out).await?.is_empty() {
                        return Ok(());
                    }
                }
            }
            self.read_exact_into(size, out).await?;
            if !self.read_line_into(out).await?.is_empty() {
                return Err(invalid("missing CRLF after chunk data"));
            }
        }
    }
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}
