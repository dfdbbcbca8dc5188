//! Authentication and authorisation: static tokens (as `Authorization: Bearer` or in the
//! `access-token` header) with submitter and operator roles, trusted client networks that get the
//! submitter role without a token, open health routes, 401 vs 403 (always JSON), no effect without
//! a valid token, and the refusal to serve a non-loopback address without authentication.

mod support;

use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use support::{Emulator, Scratch, Service, client, training_body, unique};

const OPERATOR: &str = "operator-token-for-tests-0123456789";
const ESSEDUM: &str = "essedum-submitter-token-abcdefghij";
const OTHER: &str = "another-submitter-token-klmnopqrst";

fn hash(token: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sagemaker-executor"))
        .arg("hash-token")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{token}").unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A service with the operator token from the environment and Essedum's from a tokens file.
fn secured(s: &Scratch) -> Service {
    let file = s.dir.path().join("tokens.toml");
    std::fs::write(
        &file,
        format!(
            "[[tokens]]\nname = \"essedum\"\nrole = \"submitter\"\nsha256 = \"{}\"\n\n\
             [[tokens]]\nname = \"other\"\nrole = \"submitter\"\nsha256 = \"{}\"\n",
            hash(ESSEDUM),
            hash(OTHER)
        ),
    )
    .unwrap();
    let mut c = s.config(Emulator::shared().url());
    c.extra_env
        .push(("EXECUTOR_TOKENS_FILE".into(), file.display().to_string()));
    c.extra_env
        .push(("EXECUTOR_OPERATOR_TOKEN".into(), OPERATOR.into()));
    Service::start(c)
}

async fn call(
    svc: &Service,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = client().request(method.parse().unwrap(), svc.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().await.unwrap_or(Value::Null), headers)
}

#[tokio::test]
async fn tokens_roles_and_open_routes() {
    let bucket = unique("auth");
    Emulator::shared().create_bucket(&bucket).await;
    let s = Scratch::new();
    let svc = secured(&s);
    let submit = "/api/service/v1/pipelines/training/train";
    let body = training_body(&bucket, "Completed", 0);

    // Missing and wrong tokens: 401 with a challenge, and nothing is stored.
    let (code, err, headers) = call(&svc, "POST", submit, None, Some(body.clone())).await;
    assert_eq!(code, 401, "{err}");
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("missing bearer token")
    );
    let (code, err, _) = call(
        &svc,
        "POST",
        submit,
        Some("not-a-token"),
        Some(body.clone()),
    )
    .await;
    assert_eq!((code, err["error"].as_str()), (401, Some("invalid token")));
    // An unauthenticated caller learns nothing, not even whether a run or route exists.
    assert_eq!(
        call(
            &svc,
            "GET",
            "/api/v1/runs/00000000-0000-0000-0000-000000000000",
            None,
            None
        )
        .await
        .0,
        401
    );
    assert_eq!(call(&svc, "GET", "/no/such/route", None, None).await.0, 401);
    let (code, page, _) = call(&svc, "GET", "/api/v1/runs", Some(OPERATOR), None).await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(
        page["runs"].as_array().unwrap().len(),
        0,
        "rejected requests changed nothing"
    );

    // The submitter submits, reads and cancels; it may not retry.
    let (code, a, _) = call(&svc, "POST", submit, Some(ESSEDUM), Some(body.clone())).await;
    assert_eq!(code, 202, "{a}");
    let id = a["id"].as_str().unwrap();
    assert_eq!(
        call(&svc, "GET", &format!("/status/{id}"), Some(ESSEDUM), None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(&svc, "GET", "/api/v1/runs", Some(ESSEDUM), None)
            .await
            .0,
        200
    );
    let (code, err, _) = call(
        &svc,
        "POST",
        &format!("/api/v1/runs/{id}/retry"),
        Some(ESSEDUM),
        Some(json!({})),
    )
    .await;
    assert_eq!(code, 403, "{err}");
    assert!(err["error"].as_str().unwrap().contains("operator role"));
    // The operator may (the run is Done by then, or soon: a 409 or 202 either way, never 401/403).
    let status = svc.wait_terminal_with_token(id, OPERATOR).await;
    assert_eq!(status["state"], "Done");
    let (code, _, _) = call(
        &svc,
        "POST",
        &format!("/api/v1/runs/{id}/retry"),
        Some(OPERATOR),
        Some(json!({})),
    )
    .await;
    assert_eq!(code, 409);

    // Who acted is recorded by token name.
    let (_, b, _) = call(
        &svc,
        "POST",
        submit,
        Some(ESSEDUM),
        Some(training_body(&bucket, "Completed", 100_000)),
    )
    .await;
    let id2 = b["id"].as_str().unwrap();
    let (code, _, _) = call(
        &svc,
        "GET",
        &format!("/api/service/v1/pipelines/training/{id2}/cancel"),
        Some(ESSEDUM),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let (_, run, _) = call(
        &svc,
        "GET",
        &format!("/api/v1/runs/{id2}"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert!(
        run["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["detail"] == "cancel requested by essedum"),
        "{run}"
    );

    // The command line carries the token; without one it is refused (exit 3).
    let cli = |token: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sagemaker-executor"));
        cmd.args(["runs", "list", "--url", &format!("http://{}", svc.addr)])
            .env("EXECUTOR_LOG", "warn");
        if let Some(t) = token {
            cmd.env("EXECUTOR_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    let out = cli(Some(OPERATOR));
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains(id2));
    let out = cli(None);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    // Health, readiness and documentation stay open; security headers are on every reply.
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let (code, _, headers) = call(&svc, "GET", path, None, None).await;
        assert_eq!(code, 200, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let s = Scratch::new();
    let svc = Service::start(s.config(Emulator::shared().url()));
    let big = json!({"inline_csv": "x".repeat(3 * 1024 * 1024)});
    let (code, err, _) = call(
        &svc,
        "POST",
        "/api/service/v1/pipelines/training/train",
        None,
        Some(big),
    )
    .await;
    assert_eq!(code, 413, "{err}");
    assert!(err["error"].is_string());
    assert_eq!(svc.run_count().await, 0);
}

#[test]
fn without_tokens_only_loopback_is_served_unless_told_otherwise() {
    let s = Scratch::new();
    let run = |extra: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sagemaker-executor"));
        cmd.arg("serve")
            .env_clear()
            .env(
                "EXECUTOR_DATABASE_URL",
                format!("sqlite://{}", s.db().display()),
            )
            .env("AWS_REGION", "us-east-1")
            .env("EXECUTOR_LOG", "warn");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    };
    let out = run(&[("EXECUTOR_BIND", "0.0.0.0:0")]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve 0.0.0.0:0 without authentication"),
        "{err}"
    );

    // Told explicitly, it serves (and says authentication is off); stop it once it listens.
    let mut child = run(&[
        ("EXECUTOR_BIND", "0.0.0.0:0"),
        ("EXECUTOR_INSECURE_NO_AUTH", "true"),
    ])
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let lines = support::Lines::default();
    lines.clone().follow_public(child.stderr.take().unwrap());
    lines.wait_for("LISTENING", Duration::from_secs(30), |l| {
        l.starts_with("LISTENING ")
    });
    assert!(
        lines
            .all()
            .iter()
            .any(|l| l.contains("authentication is OFF"))
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn a_submitter_sees_and_cancels_only_its_own_runs() {
    let bucket = unique("own");
    Emulator::shared().create_bucket(&bucket).await;
    let s = Scratch::new();
    let svc = secured(&s);
    let (code, a, _) = call(
        &svc,
        "POST",
        "/api/service/v1/pipelines/training/train",
        Some(ESSEDUM),
        Some(training_body(&bucket, "Completed", 100_000)),
    )
    .await;
    assert_eq!(code, 202);
    let id = a["id"].as_str().unwrap();
    let name = a["name"].as_str().unwrap();
    for path in [
        format!("/status/{id}"),
        format!("/status/{name}"),
        format!("/api/v1/runs/{id}"),
        format!("/api/service/v1/pipelines/training/{id}/get"),
        format!("/api/service/v1/pipelines/training/{id}/cancel"),
    ] {
        assert_eq!(
            call(&svc, "GET", &path, Some(OTHER), None).await.0,
            404,
            "{path}"
        );
        let own = path.replace("/cancel", "/get");
        assert_eq!(
            call(&svc, "GET", &own, Some(ESSEDUM), None).await.0,
            200,
            "{own}"
        );
    }
    let cancel = format!("/api/v1/runs/{id}/cancel");
    assert_eq!(
        call(&svc, "POST", &cancel, Some(OTHER), Some(json!({})))
            .await
            .0,
        404
    );
    let (_, theirs, _) = call(&svc, "GET", "/api/v1/runs", Some(OTHER), None).await;
    assert_eq!(theirs["runs"].as_array().unwrap().len(), 0);
    assert_eq!(theirs["counts"], json!({}));
    let (_, list, _) = call(
        &svc,
        "GET",
        "/api/service/v1/pipelines/training/list",
        Some(OTHER),
        None,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    let (_, mine, _) = call(&svc, "GET", "/api/v1/runs", Some(ESSEDUM), None).await;
    assert_eq!(mine["runs"][0]["id"], id);
    // Another submitter's run is not a cursor either (it would tell that the run exists).
    let after = format!("/api/v1/runs?cursor={id}");
    let (code, refused, _) = call(&svc, "GET", &after, Some(OTHER), None).await;
    assert_eq!((code, refused["field"].as_str()), (400, Some("cursor")));
    let (code, rest, _) = call(&svc, "GET", &after, Some(ESSEDUM), None).await;
    assert_eq!(code, 200, "its owner pages after it");
    assert_eq!(rest["runs"], json!([]));
    let (_, all, _) = call(&svc, "GET", "/api/v1/runs", Some(OPERATOR), None).await;
    assert_eq!(
        all["runs"].as_array().unwrap().len(),
        1,
        "the operator sees every run"
    );
    let (code, _, _) = call(&svc, "POST", &cancel, Some(ESSEDUM), Some(json!({}))).await;
    assert_eq!(code, 202, "the submitter cancels its own run");
}

#[tokio::test]
async fn tokens_never_reach_the_store_or_the_logs() {
    let s = Scratch::new();
    let svc = secured(&s);
    let wrong = "a-wrong-token-that-should-not-be-logged";
    for token in [ESSEDUM, OPERATOR, wrong] {
        call(&svc, "GET", "/api/v1/runs", Some(token), None).await;
    }
    let bucket = unique("secret");
    Emulator::shared().create_bucket(&bucket).await;
    let body = training_body(&bucket, "Completed", 0);
    let submit = "/api/service/v1/pipelines/training/train";
    let (_, a, _) = call(&svc, "POST", submit, Some(ESSEDUM), Some(body)).await;
    svc.wait_terminal_with_token(a["id"].as_str().unwrap(), ESSEDUM)
        .await;
    let stored = support::stored_text(&s);
    assert!(
        stored.contains("essedum"),
        "the database holds the submitter's name"
    );
    let logs = svc.stderr.all().join("\n");
    for token in [ESSEDUM, OPERATOR, wrong] {
        assert!(
            !support::stores(&stored, token),
            "a token is in the database"
        );
        assert!(!logs.contains(token), "a token is in the log");
    }
}

/// A service with the tokens of [`secured`] and trusted client networks `networks`.
fn secured_trusting(s: &Scratch, networks: &str) -> Service {
    let file = s.dir.path().join("tokens.toml");
    std::fs::write(
        &file,
        format!(
            "[[tokens]]\nname = \"essedum\"\nrole = \"submitter\"\nsha256 = \"{}\"\n",
            hash(ESSEDUM)
        ),
    )
    .unwrap();
    let mut c = s.config(Emulator::shared().url());
    c.extra_env.extend([
        ("EXECUTOR_TOKENS_FILE".into(), file.display().to_string()),
        ("EXECUTOR_OPERATOR_TOKEN".into(), OPERATOR.into()),
        ("EXECUTOR_TRUSTED_CLIENTS".into(), networks.into()),
    ]);
    Service::start(c)
}

/// Sends a request with exactly `headers` (plus reqwest's own Host, Content-Length, Accept).
async fn send(
    svc: &Service,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = client().request(method.parse().unwrap(), svc.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!("{method} {path}: {status} with a body that is not JSON: {text}")
    });
    (status, json, headers)
}

/// What the backend's SageMaker plugin sends: `Referer` (its base URL) and `Content-Type`, no
/// token (sv/icip-adp-aws-sagemaker/.../ICIPModelAWSServiceSageMaker.java).
const PLUGIN_HEADERS: &[(&str, &str)] = &[
    ("Referer", "http://essedum-backend:8080/"),
    ("Content-Type", "application/json"),
];

#[tokio::test]
async fn a_trusted_client_submits_without_a_token_but_never_acts_as_operator() {
    let bucket = unique("trusted");
    Emulator::shared().create_bucket(&bucket).await;
    let s = Scratch::new();
    let svc = secured_trusting(&s, "127.0.0.1/32");
    let body = training_body(&bucket, "Completed", 0);

    let (code, a, _) = send(
        &svc,
        "POST",
        "/api/service/v1/pipelines/training/train",
        PLUGIN_HEADERS,
        Some(&body),
    )
    .await;
    assert_eq!(code, 202, "{a}");
    let id = a["id"].as_str().unwrap();
    // The remote-job runtime sends only `accept` on its polls (sv/icip-adp-remote/.../
    // ICIPRemoteExecutorJob.java).
    let (code, st, _) = send(
        &svc,
        "GET",
        &format!("/status/{id}"),
        &[("accept", "application/json")],
        None,
    )
    .await;
    assert_eq!(code, 200, "{st}");
    let (code, tasks, _) = send(
        &svc,
        "GET",
        "/execute",
        &[("accept", "application/json")],
        None,
    )
    .await;
    assert_eq!(code, 200, "{tasks}");
    let st = svc.wait_terminal_with_token(id, OPERATOR).await;
    assert_eq!(st["state"], "Done");

    // A trusted address alone never opens the operator API: a token of ours is needed there.
    for (method, path) in [
        ("POST", format!("/api/v1/runs/{id}/retry")),
        ("POST", format!("/api/v1/runs/{id}/cancel")),
        ("GET", "/api/v1/runs".to_string()),
    ] {
        let (code, err, _) = send(&svc, method, &path, PLUGIN_HEADERS, Some(&json!({}))).await;
        assert_eq!(code, 401, "{path}: {err}");
        let message = err["error"].as_str().unwrap();
        assert!(message.contains("missing bearer token"), "{message}");
    }
    // With the backend's submitter token it reads its runs, and still may not retry.
    let submitter = [("access-token", ESSEDUM)];
    let (code, _, _) = send(&svc, "GET", "/api/v1/runs", &submitter, None).await;
    assert_eq!(code, 200);
    let (code, err, _) = send(
        &svc,
        "POST",
        &format!("/api/v1/runs/{id}/retry"),
        &submitter,
        Some(&json!({})),
    )
    .await;
    assert_eq!(code, 403, "{err}");
    // A user's JWT forwarded by the backend is not ours: still a submitter on the Essedum routes,
    // and an invalid token on the operator API.
    let jwt = [("Authorization", "Bearer eyJhbGciOiJIUzUxMiJ9.user.jwt")];
    let (code, _, _) = send(&svc, "GET", &format!("/status/{id}"), &jwt, None).await;
    assert_eq!(code, 200);
    let (code, err, _) = send(
        &svc,
        "POST",
        &format!("/api/v1/runs/{id}/retry"),
        &jwt,
        Some(&json!({})),
    )
    .await;
    assert_eq!((code, err["error"].as_str()), (401, Some("invalid token")));

    // Trusted clients act as `essedum` (EXECUTOR_TRUSTED_CLIENTS_NAME's default): the backend's
    // token of that name sees the run they started.
    let (code, _, _) = send(
        &svc,
        "GET",
        &format!("/status/{id}"),
        &[("access-token", ESSEDUM)],
        None,
    )
    .await;
    assert_eq!(code, 200);

    // The operator token works from the trusted network too, in either header.
    for header in [
        ("Authorization", format!("Bearer {OPERATOR}")),
        ("access-token", OPERATOR.to_string()),
    ] {
        let (code, run, _) = send(
            &svc,
            "GET",
            &format!("/api/v1/runs/{id}"),
            &[(header.0, header.1.as_str())],
            None,
        )
        .await;
        assert_eq!(code, 200, "{run}");
    }
    let (code, err, _) = send(
        &svc,
        "POST",
        &format!("/api/v1/runs/{id}/retry"),
        &[
            ("access-token", OPERATOR),
            ("Content-Type", "application/json"),
        ],
        Some(&json!({})),
    )
    .await;
    assert_eq!(
        code, 409,
        "a Done run cannot be retried, but the operator may ask: {err}"
    );
}

#[tokio::test]
async fn outside_the_trusted_networks_the_backend_needs_a_token() {
    let bucket = unique("untrusted");
    Emulator::shared().create_bucket(&bucket).await;
    let s = Scratch::new();
    // The test's own address (127.0.0.1) is not in this network; no traffic goes there.
    let svc = secured_trusting(&s, "10.0.0.0/8");
    let submit = "/api/service/v1/pipelines/training/train";
    let body = training_body(&bucket, "Completed", 0);

    let (code, err, headers) = send(&svc, "POST", submit, PLUGIN_HEADERS, Some(&body)).await;
    assert_eq!(code, 401, "{err}");
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let message = err["error"].as_str().unwrap();
    assert!(message.contains("access-token"), "{message}");
    let (code, err, _) = send(
        &svc,
        "POST",
        submit,
        &[PLUGIN_HEADERS, &[("access-token", "not-our-token")]].concat(),
        Some(&body),
    )
    .await;
    assert_eq!((code, err["error"].as_str()), (401, Some("invalid token")));
    let (_, page, _) = send(
        &svc,
        "GET",
        "/api/v1/runs",
        &[("access-token", OPERATOR)],
        None,
    )
    .await;
    assert_eq!(page["runs"], json!([]), "refused requests stored nothing");

    // The static submitter token in the backend's service-token header.
    let (code, a, _) = send(
        &svc,
        "POST",
        submit,
        &[PLUGIN_HEADERS, &[("access-token", ESSEDUM)]].concat(),
        Some(&body),
    )
    .await;
    assert_eq!(code, 202, "{a}");
    let id = a["id"].as_str().unwrap();
    let (code, _, _) = send(
        &svc,
        "GET",
        &format!("/status/{id}"),
        &[("access-token", ESSEDUM)],
        None,
    )
    .await;
    assert_eq!(code, 200);
    let (code, err, _) = send(
        &svc,
        "POST",
        &format!("/api/v1/runs/{id}/retry"),
        &[("access-token", ESSEDUM)],
        Some(&json!({})),
    )
    .await;
    assert_eq!(code, 403, "{err}");
    svc.wait_terminal_with_token(id, ESSEDUM).await;
}

#[tokio::test]
async fn trusted_networks_alone_turn_authentication_on() {
    let s = Scratch::new();
    let mut c = s.config(Emulator::shared().url());
    c.extra_env
        .push(("EXECUTOR_TRUSTED_CLIENTS".into(), "10.0.0.0/8".into()));
    let svc = Service::start(c);
    let (code, err, _) = send(
        &svc,
        "GET",
        "/api/service/v1/pipelines/training/list",
        &[],
        None,
    )
    .await;
    assert_eq!(code, 401, "{err}");
    let (code, _, _) = send(&svc, "GET", "/healthz", &[], None).await;
    assert_eq!(code, 200, "health stays open");

    // Trusting loopback without any token: submitter routes work, the operator API never does.
    let s = Scratch::new();
    let mut c = s.config(Emulator::shared().url());
    c.extra_env.push((
        "EXECUTOR_TRUSTED_CLIENTS".into(),
        "::1/128, 127.0.0.0/8".into(),
    ));
    let svc = Service::start(c);
    let (code, list, _) = send(
        &svc,
        "GET",
        "/api/service/v1/pipelines/training/list",
        &[],
        None,
    )
    .await;
    assert_eq!((code, list), (200, json!([])));
    let (code, err, _) = send(&svc, "GET", "/api/v1/runs", &[], None).await;
    assert_eq!(code, 401, "{err}");
    assert!(
        svc.stderr
            .all()
            .iter()
            .any(|l| l.contains("no operator token is configured")),
        "the start-up log warns that nobody can retry"
    );
}

#[test]
fn a_bad_trusted_network_stops_the_start_naming_the_setting() {
    let s = Scratch::new();
    let config = s.dir.path().join("config.toml");
    std::fs::write(&config, "trusted_clients = \"10.0.0.0/8,192.168.1.0/33\"\n").unwrap();
    let serve = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sagemaker-executor"));
        cmd.arg("serve")
            .args(args)
            .env_clear()
            .env(
                "EXECUTOR_DATABASE_URL",
                format!("sqlite://{}", s.db().display()),
            )
            .env("AWS_REGION", "us-east-1")
            .env("EXECUTOR_BIND", "127.0.0.1:0")
            .env("EXECUTOR_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    for (out, bad) in [
        (
            serve(
                &[],
                &[("EXECUTOR_TRUSTED_CLIENTS", "10.0.0.0/8,not-a-network")],
            ),
            "not-a-network",
        ),
        (
            serve(&["--trusted-clients", "10.1.2.3/8"], &[]),
            "10.1.2.3/8",
        ),
        (
            serve(&["--config", config.to_str().unwrap()], &[]),
            "192.168.1.0/33",
        ),
    ] {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("EXECUTOR_TRUSTED_CLIENTS") && err.contains(bad),
            "{err}"
        );
        assert!(!err.contains("LISTENING"), "{err}");
    }
}

#[tokio::test]
async fn trusted_networks_match_ipv6_peers() {
    let start = |s: &Scratch, trusted: &str| {
        let mut c = s.config(Emulator::shared().url());
        c.extra_env.extend([
            ("EXECUTOR_BIND".into(), "[::1]:0".into()),
            ("EXECUTOR_TRUSTED_CLIENTS".into(), trusted.into()),
            ("EXECUTOR_OPERATOR_TOKEN".into(), OPERATOR.into()),
        ]);
        Service::start(c)
    };
    let list = "/api/service/v1/pipelines/training/list";
    let s = Scratch::new();
    let svc = start(&s, "fd00::/8,::1/128");
    assert!(svc.addr.is_ipv6());
    let (code, body, _) = send(&svc, "GET", list, PLUGIN_HEADERS, None).await;
    assert_eq!((code, body), (200, json!([])));
    // An IPv4 network does not cover an IPv6 peer.
    let s = Scratch::new();
    let svc = start(&s, "127.0.0.0/8");
    let (code, err, _) = send(&svc, "GET", list, PLUGIN_HEADERS, None).await;
    assert_eq!(code, 401, "{err}");
}
