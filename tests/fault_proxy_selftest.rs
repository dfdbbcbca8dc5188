//! Self test for the fault-injecting proxy in `tests/support/fault_proxy.rs`.

#[path = "support/fault_proxy.rs"]
mod fault_proxy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use fault_proxy::{Fault, FaultPlan, FaultProxy, operation_name};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------------------------
// A tiny keep-alive upstream: answers 200 with a JSON echo of what it received.
// ---------------------------------------------------------------------------------------------

struct Upstream {
    addr: SocketAddr,
    /// Heads (lower-cased header map + request line) of every request received.
    seen: mpsc::UnboundedReceiver<BTreeMap<String, String>>,
}

async fn start_upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = serve_upstream_conn(sock, tx).await;
            });
        }
    });
    Upstream { addr, seen }
}

/// Reads from `sock` until `buf` holds at least `n` bytes.
async fn fill_to(sock: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> std::io::Result<()> {
    while buf.len() < n {
        let mut tmp = vec![0u8; 65536];
        let got = sock.read(&mut tmp).await?;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&tmp[..got]);
    }
    Ok(())
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Serves requests on one connection until the peer closes (keeps the connection open after
/// replying, so the proxy must frame responses itself rather than wait for EOF).
async fn serve_upstream_conn(
    mut sock: TcpStream,
    tx: mpsc::UnboundedSender<BTreeMap<String, String>>,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Head.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut tmp = [0u8; 8192];
            let n = sock.read(&mut tmp).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap().to_owned();
        let mut headers = BTreeMap::new();
        for l in lines.filter(|l| !l.is_empty()) {
            let (n, v) = l.split_once(':').unwrap();
            headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap().to_owned();
        let path = parts.next().unwrap().to_owned();

        // Body (decoded).
        let mut body = Vec::new();
        if headers
            .get("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
        {
            loop {
                let line_end = loop {
                    if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    let l = buf.len() + 1;
                    fill_to(&mut sock, &mut buf, l).await?;
                };
                let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
                buf.drain(..line_end + 2);
                let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                    .expect("chunk size");
                if size == 0 {
                    // Trailers until blank line.
                    loop {
                        let line_end = loop {
                            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                                break i;
                            }
                            let l = buf.len() + 1;
                            fill_to(&mut sock, &mut buf, l).await?;
                        };
                        buf.drain(..line_end + 2);
                        if line_end == 0 {
                            break;
                        }
                    }
                    break;
                }
                fill_to(&mut sock, &mut buf, size + 2).await?;
                body.extend_from_slice(&buf[..size]);
                assert_eq!(&buf[size..size + 2], b"\r\n");
                buf.drain(..size + 2);
            }
        } else if let Some(len) = headers.get("content-length") {
            let len: usize = len.parse().unwrap();
            fill_to(&mut sock, &mut buf, len).await?;
            body.extend(buf.drain(..len));
        }

        let mut seen = headers.clone();
        seen.insert(":request-line".into(), request_line.clone());
        let _ = tx.send(seen);

        let echo = serde_json::json!({
            "method": method,
            "path": path,
            "len": body.len(),
            "hash": fnv1a(&body).to_string(),
        })
        .to_string();
        let reply = if path.contains("chunked-response") {
            // Answer with a chunked response in two chunks.
            let (a, b) = echo.split_at(echo.len() / 2);
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n\
                 {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                a.len(),
                b.len()
            )
        } else if method == "HEAD" {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nKeep-Alive: timeout=5\r\n\r\n",
                echo.len()
            )
        } else {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: keep-alive\r\n\r\n{echo}",
                echo.len()
            )
        };
        sock.write_all(reply.as_bytes()).await?;
    }
}

async fn setup() -> (Upstream, FaultProxy, reqwest::Client) {
    let upstream = start_upstream().await;
    let proxy = FaultProxy::start(upstream.addr).await.unwrap();
    sagemaker_executor::connection::tls::install_default_provider();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    (upstream, proxy, client)
}

async fn get(client: &reqwest::Client, proxy: &FaultProxy, path: &str) -> reqwest::Response {
    client
        .get(format!("{}{path}", proxy.url()))
        .send()
        .await
        .unwrap()
}

/// A SageMaker-style awsJson1.1 request.
async fn sagemaker(
    client: &reqwest::Client,
    proxy: &FaultProxy,
    op: &str,
) -> Result<reqwest::Response, reqwest::Error> {
    client
        .post(format!("{}/", proxy.url()))
        .header("x-amz-target", format!("SageMaker.{op}"))
        .header("content-type", "application/x-amz-json-1.1")
        .body(r#"{"TrainingJobName":"job"}"#)
        .send()
        .await
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Sends raw bytes on a fresh connection and reads everything until the proxy closes.
async fn raw_exchange(proxy: &FaultProxy, data: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(data).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    out
}

/// Splits a raw response into (status line + headers text, body).
fn split_response(raw: &[u8]) -> (String, Vec<u8>) {
    let i = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("complete head");
    (
        String::from_utf8_lossy(&raw[..i]).into_owned(),
        raw[i + 4..].to_vec(),
    )
}

// ---------------------------------------------------------------------------------------------
// Forwarding
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn forwards_get_and_rewrites_connection() {
    let (mut up, proxy, client) = setup().await;
    let resp = get(&client, &proxy, "/bucket/some/key.txt").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["connection"], "close");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/bucket/some/key.txt");
    assert_eq!(v["len"], 0);

    let seen = up.seen.recv().await.unwrap();
    assert_eq!(seen["connection"], "close");
    assert_eq!(seen[":request-line"], "GET /bucket/some/key.txt HTTP/1.1");

    // Chunked responses from upstream are relayed intact.
    let resp = get(&client, &proxy, "/bucket/chunked-response").await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["path"], "/bucket/chunked-response");

    // HEAD: no body is expected even though Content-Length is set.
    let resp = client
        .head(format!("{}/bucket/k", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["connection"], "close");
    assert!(resp.headers().get("keep-alive").is_none());

    assert_eq!(
        proxy.calls(),
        counts(&[("S3:GetObject", 2), ("S3:HeadObject", 1)])
    );
    assert!(proxy.faults().is_empty());
}

#[tokio::test]
async fn forwards_large_put() {
    let (_up, proxy, client) = setup().await;
    let body = pattern(6 * 1024 * 1024);
    let hash = fnv1a(&body).to_string();
    let resp = client
        .put(format!(
            "{}/bucket/big?partNumber=1&uploadId=abc",
            proxy.url()
        ))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["len"], 6 * 1024 * 1024);
    assert_eq!(v["hash"], hash);
    assert_eq!(proxy.calls(), counts(&[("S3:UploadPart", 1)]));
}

#[tokio::test]
async fn forwards_chunked_put_with_trailers() {
    // reqwest (without its "stream" feature) cannot send chunked bodies; speak raw HTTP.
    let (mut up, proxy, _client) = setup().await;
    let body = pattern(6 * 1024 * 1024 + 123);
    let mut req = b"PUT /bucket/chunky HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
                    Connection: keep-alive\r\n\r\n"
        .to_vec();
    for (i, chunk) in body.chunks(100_000).enumerate() {
        if i % 2 == 0 {
            req.extend_from_slice(format!("{:x};ext=1\r\n", chunk.len()).as_bytes());
        } else {
            req.extend_from_slice(format!("{:X}\r\n", chunk.len()).as_bytes());
        }
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\nx-amz-checksum-crc32: AAAAAA==\r\n\r\n");

    let raw = raw_exchange(&proxy, &req).await;
    let (head, resp_body) = split_response(&raw);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("connection: close"));
    assert!(!head.to_ascii_lowercase().contains("keep-alive"));
    let v: Value = serde_json::from_slice(&resp_body).unwrap();
    assert_eq!(v["len"], body.len());
    assert_eq!(v["hash"], fnv1a(&body).to_string());

    let seen = up.seen.recv().await.unwrap();
    assert_eq!(seen["transfer-encoding"], "chunked");
    assert_eq!(seen["connection"], "close");
    assert_eq!(proxy.calls(), counts(&[("S3:PutObject", 1)]));
}

#[tokio::test]
async fn expect_100_continue() {
    let (mut up, proxy, _client) = setup().await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(
        b"PUT /bucket/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    // The body is only sent after the interim response arrives.
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut got = vec![0u8; interim.len()];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(got, interim);
    s.write_all(b"hello").await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    let (head, body) = split_response(&rest);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["len"], 5);
    // Expect is not passed upstream (the proxy already has the body).
    let seen = up.seen.recv().await.unwrap();
    assert!(!seen.contains_key("expect"));
}

// ---------------------------------------------------------------------------------------------
// Fault plans
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_third_request_is_faulted() {
    let (_up, proxy, client) = setup().await;
    proxy.set_plan(FaultPlan {
        every_nth: 3,
        kinds: vec![Fault::ServerError],
        operations: None,
    });
    let mut statuses = Vec::new();
    for i in 1..=9 {
        statuses.push(
            get(&client, &proxy, &format!("/bucket/k{i}"))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 500, 200, 200, 500, 200, 200, 500]);
    assert_eq!(proxy.calls(), counts(&[("S3:GetObject", 9)]));
    assert_eq!(proxy.faults(), counts(&[("S3:GetObject", 3)]));

    // every_nth = 0 never faults; clear_plan stops faults.
    proxy.set_plan(FaultPlan::new(0, vec![Fault::ServerError]));
    for _ in 0..3 {
        assert_eq!(get(&client, &proxy, "/bucket/k").await.status(), 200);
    }
    proxy.set_plan(FaultPlan::always(Fault::ServerError));
    assert_eq!(get(&client, &proxy, "/bucket/k").await.status(), 500);
    proxy.clear_plan();
    assert_eq!(get(&client, &proxy, "/bucket/k").await.status(), 200);
    assert_eq!(proxy.fault_count("S3:GetObject"), 4);
    assert_eq!(proxy.call_count("S3:GetObject"), 14);
    proxy.reset_counts();
    assert!(proxy.calls().is_empty());
}

#[tokio::test]
async fn kinds_rotate() {
    let (_up, proxy, client) = setup().await;
    proxy.set_plan(FaultPlan::new(
        1,
        vec![
            Fault::Throttle,
            Fault::ServerError,
            Fault::ServiceUnavailable,
        ],
    ));
    let mut got = Vec::new();
    for _ in 0..6 {
        let resp = sagemaker(&client, &proxy, "DescribeTrainingJob")
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        got.push((status, v["__type"].as_str().unwrap().to_owned()));
    }
    let expected = [
        (400, "ThrottlingException"),
        (500, "InternalFailure"),
        (503, "ServiceUnavailable"),
    ];
    let expected: Vec<(u16, String)> = expected
        .iter()
        .chain(expected.iter())
        .map(|(s, t)| (*s, t.to_string()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(proxy.faults(), counts(&[("DescribeTrainingJob", 6)]));
}

#[tokio::test]
async fn operations_filter() {
    let (_up, proxy, client) = setup().await;
    proxy.set_plan(FaultPlan::new(2, vec![Fault::Throttle]).only(["CreateTrainingJob"]));
    let mut create_statuses = Vec::new();
    for _ in 0..4 {
        let d = sagemaker(&client, &proxy, "DescribeTrainingJob")
            .await
            .unwrap();
        assert_eq!(d.status(), 200);
        let c = sagemaker(&client, &proxy, "CreateTrainingJob")
            .await
            .unwrap();
        create_statuses.push(c.status().as_u16());
        // S3 requests are not eligible either.
        assert_eq!(get(&client, &proxy, "/bucket/k").await.status(), 200);
    }
    assert_eq!(create_statuses, [200, 400, 200, 400]);
    assert_eq!(
        proxy.calls(),
        counts(&[
            ("CreateTrainingJob", 4),
            ("DescribeTrainingJob", 4),
            ("S3:GetObject", 4)
        ])
    );
    assert_eq!(proxy.faults(), counts(&[("CreateTrainingJob", 2)]));
}

#[tokio::test]
async fn throttle_reply_shapes() {
    let (_up, proxy, client) = setup().await;
    proxy.set_plan(FaultPlan::always(Fault::Throttle));

    // SageMaker (awsJson1.1).
    let resp = sagemaker(&client, &proxy, "CreateTrainingJob")
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let h = resp.headers();
    assert_eq!(h["content-type"], "application/x-amz-json-1.1");
    assert_eq!(h["connection"], "close");
    assert!(!h["x-amzn-requestid"].is_empty());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["__type"], "ThrottlingException");
    assert_eq!(v["message"], "Rate exceeded");

    // S3 (REST-XML), with a request body.
    let resp = client
        .put(format!("{}/bucket/key", proxy.url()))
        .body(vec![1u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let h = resp.headers();
    assert_eq!(h["content-type"], "application/xml");
    assert_eq!(h["connection"], "close");
    assert!(!h["x-amz-request-id"].is_empty());
    let len: usize = h["content-length"].to_str().unwrap().parse().unwrap();
    let text = resp.text().await.unwrap();
    assert_eq!(text.len(), len);
    assert!(
        text.contains("<Error><Code>SlowDown</Code><Message>"),
        "{text}"
    );

    // S3 HEAD: status only.
    let resp = client
        .head(format!("{}/bucket/key", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["content-length"], "0");

    // Other S3 kinds.
    proxy.set_plan(FaultPlan::new(
        1,
        vec![Fault::ServerError, Fault::ServiceUnavailable],
    ));
    let resp = get(&client, &proxy, "/bucket/key").await;
    assert_eq!(resp.status(), 500);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("<Code>InternalError</Code>")
    );
    let resp = get(&client, &proxy, "/bucket/key").await;
    assert_eq!(resp.status(), 503);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("<Code>ServiceUnavailable</Code>")
    );

    assert_eq!(
        proxy.faults(),
        counts(&[
            ("CreateTrainingJob", 1),
            ("S3:GetObject", 2),
            ("S3:HeadObject", 1),
            ("S3:PutObject", 1)
        ])
    );
}

#[tokio::test]
async fn drop_closes_connection() {
    let (_up, proxy, client) = setup().await;
    proxy.set_plan(FaultPlan::always(Fault::Drop));
    let err = client
        .put(format!("{}/bucket/key", proxy.url()))
        .body(vec![7u8; 100_000])
        .send()
        .await
        .expect_err("dropped connection must fail");
    assert!(!err.is_status(), "{err:?}");
    let err = sagemaker(&client, &proxy, "CreateTrainingJob")
        .await
        .expect_err("dropped connection must fail");
    assert!(!err.is_status(), "{err:?}");

    proxy.clear_plan();
    assert_eq!(get(&client, &proxy, "/bucket/key").await.status(), 200);
    assert_eq!(
        proxy.faults(),
        counts(&[("CreateTrainingJob", 1), ("S3:PutObject", 1)])
    );
    assert_eq!(
        proxy.calls(),
        counts(&[
            ("CreateTrainingJob", 1),
            ("S3:GetObject", 1),
            ("S3:PutObject", 1)
        ])
    );
}

#[tokio::test]
async fn drop_response_forwards_then_closes() {
    let (mut up, proxy, client) = setup().await;
    proxy.set_plan(FaultPlan::always(Fault::DropResponse));
    let err = sagemaker(&client, &proxy, "CreateTrainingJob")
        .await
        .expect_err("lost response must fail");
    assert!(!err.is_status(), "{err:?}");
    // Upstream did receive the request.
    let seen = up.seen.recv().await.unwrap();
    assert_eq!(seen["x-amz-target"], "SageMaker.CreateTrainingJob");
    assert_eq!(proxy.faults(), counts(&[("CreateTrainingJob", 1)]));
}

#[tokio::test]
async fn delay_still_forwards() {
    let (_up, proxy, client) = setup().await;
    proxy.set_plan(FaultPlan::always(Fault::Delay(Duration::from_millis(50))));
    let resp = client
        .put(format!("{}/bucket/delayed", proxy.url()))
        .body(vec![3u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["path"], "/bucket/delayed");
    assert_eq!(v["len"], 4096);
    assert_eq!(proxy.faults(), counts(&[("S3:PutObject", 1)]));
}

#[tokio::test]
async fn emulator_paths_are_never_faulted_or_counted() {
    let (_up, proxy, client) = setup().await;
    proxy.set_plan(FaultPlan::new(2, vec![Fault::ServerError]));
    let mut statuses = Vec::new();
    for path in [
        "/_emulator/reset",
        "/bucket/a",
        "/moto-api/reset",
        "/_emulator/state?x=1",
        "/bucket/b",
    ] {
        statuses.push(get(&client, &proxy, path).await.status().as_u16());
    }
    // Only the two S3 requests count towards every_nth.
    assert_eq!(statuses, [200, 200, 200, 200, 500]);
    let resp = client
        .post(format!("{}/moto-api/reset", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(proxy.calls(), counts(&[("S3:GetObject", 2)]));
    assert_eq!(proxy.faults(), counts(&[("S3:GetObject", 1)]));
}

// ---------------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn survives_bad_clients_and_dead_upstream() {
    let (_up, proxy, client) = setup().await;

    // Client disconnects mid-head and mid-body; garbage framing.
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"GET /bucket/k HTTP/1.1\r\nHo").await.unwrap();
    drop(s);
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"PUT /bucket/k HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    drop(s);
    let raw = raw_exchange(
        &proxy,
        b"PUT /bucket/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    )
    .await;
    assert!(raw.is_empty());
    drop(TcpStream::connect(proxy.addr()).await.unwrap());

    assert_eq!(get(&client, &proxy, "/bucket/k").await.status(), 200);

    // Upstream not listening: 502.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy2 = FaultProxy::start(dead).await.unwrap();
    assert_eq!(proxy2.upstream(), dead);
    assert_eq!(get(&client, &proxy2, "/bucket/k").await.status(), 502);
}

#[tokio::test]
async fn dropping_the_proxy_stops_listening() {
    let (_up, proxy, client) = setup().await;
    assert_eq!(get(&client, &proxy, "/bucket/k").await.status(), 200);
    let addr = proxy.addr();
    assert_eq!(proxy.url(), format!("http://127.0.0.1:{}", addr.port()));
    drop(proxy);
    // The aborted accept task releases the listener the next time the runtime runs it.
    let mut refused = false;
    for _ in 0..1000 {
        tokio::task::yield_now().await;
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "proxy still accepting after drop");
}

// ---------------------------------------------------------------------------------------------
// Operation naming
// ---------------------------------------------------------------------------------------------

#[test]
fn operation_names() {
    let op = |m: &str, t: &str, x: Option<&str>| operation_name(m, t, x);
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        op("POST", "/", Some("SageMaker.CreateTrainingJob")),
        s("CreateTrainingJob")
    );
    assert_eq!(
        op("POST", "/", Some("SageMaker.DescribeTrainingJob")),
        s("DescribeTrainingJob")
    );
    assert_eq!(
        op("POST", "/endpoints/my-endpoint/invocations", None),
        s("InvokeEndpoint")
    );
    assert_eq!(
        op("PUT", "/b/k?partNumber=2&uploadId=x", None),
        s("S3:UploadPart")
    );
    assert_eq!(
        op("POST", "/b/k?uploads", None),
        s("S3:CreateMultipartUpload")
    );
    assert_eq!(
        op("POST", "/b/k?uploads=&x-id=CreateMultipartUpload", None),
        s("S3:CreateMultipartUpload")
    );
    assert_eq!(
        op("POST", "/b/k?uploadId=abc", None),
        s("S3:CompleteMultipartUpload")
    );
    assert_eq!(
        op("DELETE", "/b/k?uploadId=abc", None),
        s("S3:AbortMultipartUpload")
    );
    assert_eq!(op("PUT", "/b", None), s("S3:CreateBucket"));
    assert_eq!(op("PUT", "/b/", None), s("S3:CreateBucket"));
    assert_eq!(op("PUT", "/b/dir/k.bin", None), s("S3:PutObject"));
    assert_eq!(op("PUT", "/b/k?x-id=PutObject", None), s("S3:PutObject"));
    assert_eq!(op("GET", "/b/k?x-id=GetObject", None), s("S3:GetObject"));
    assert_eq!(op("HEAD", "/b/k", None), s("S3:HeadObject"));
    assert_eq!(op("HEAD", "/b", None), s("S3:HeadBucket"));
    assert_eq!(
        op("GET", "/b?list-type=2&prefix=a", None),
        s("S3:ListObjects")
    );
    assert_eq!(op("GET", "/b/", None), s("S3:ListObjects"));
    assert_eq!(op("DELETE", "/b/k", None), s("S3:DeleteObject"));
    assert_eq!(op("GET", "http://127.0.0.1:9/b/k", None), s("S3:GetObject"));
    assert_eq!(op("GET", "/_emulator/reset", None), None);
    assert_eq!(op("POST", "/moto-api/reset", None), None);
    assert_eq!(
        op(
            "POST",
            "/moto-api/reset",
            Some("SageMaker.CreateTrainingJob")
        ),
        None
    );
}
