//! Essedum connections end to end: the real binary, the emulator and a fake Essedum backend. A
//! request naming a connection (`adapter_instance`, `project`, an allow-listed `Referer`) runs
//! with that connection's credentials and region; the run stores only the reference and resolves
//! it again after a restart; a Referer off the allow-list is refused before any outbound call.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::fake_backend::{FakeBackend, TestCa};
use support::{Emulator, ROLE, Scratch, Service, client, reply, training_body, unique};

const WAIT: Duration = Duration::from_secs(60);
const SECRET: &str = "connection-secret-value-123";
const QUERY: &str = "adapter_instance=a1&project=p1&isCached=false&isInstance=false";

/// The connection the fake backend hands out: another region than the service's default.
fn details() -> Value {
    json!({"accessKey": "AKIACONNECTION", "secretKey": SECRET, "region": "eu-west-1"})
}

/// A fake backend knowing connection (p1, a1), and a service allow-listing it (or, with
/// `lookup` false, a service with connection lookup off).
async fn setup(lookup: bool) -> (FakeBackend, Scratch, Service, String) {
    let emu = Emulator::shared();
    let bucket = unique("conn");
    emu.create_bucket(&bucket).await;
    let backend = FakeBackend::start().await;
    backend.set_connection("p1", "a1", details());
    let scratch = Scratch::new();
    let mut config = scratch.config(emu.url());
    if lookup {
        config
            .extra_env
            .push(("EXECUTOR_CONNECTION_ALLOW".into(), backend.base_url()));
    }
    let svc = Service::start(config);
    (backend, scratch, svc, bucket)
}

/// POSTs JSON with a `Referer`; the status and JSON reply.
async fn post_from(svc: &Service, path: &str, referer: &str, body: &Value) -> (u16, Value) {
    let r = client()
        .post(svc.url(path))
        .header("Referer", referer)
        .json(body)
        .send()
        .await
        .unwrap();
    reply(r).await
}

/// GETs with a `Referer`; the status and JSON reply.
async fn get_from(svc: &Service, path: &str, referer: &str) -> (u16, Value) {
    let r = client()
        .get(svc.url(path))
        .header("Referer", referer)
        .send()
        .await
        .unwrap();
    reply(r).await
}

/// Whether training job `name` exists in `region` of the emulator.
async fn training_job_in(region: &str, name: &str) -> Option<Value> {
    let (code, d) = Emulator::shared()
        .sagemaker_in(
            region,
            "DescribeTrainingJob",
            json!({"TrainingJobName": name}),
        )
        .await;
    match code {
        200 => Some(d),
        400 => None,
        _ => panic!("DescribeTrainingJob {name} in {region}: {code} {d}"),
    }
}

/// Submits a training run naming connection (p1, a1) from `referer`.
async fn submit(svc: &Service, referer: &str, bucket: &str, polls: u32) -> (String, String) {
    let (code, a) = post_from(
        svc,
        &format!("/api/service/v1/pipelines/training/train?{QUERY}"),
        referer,
        &training_body(bucket, "Completed", polls),
    )
    .await;
    assert_eq!(code, 202, "{a}");
    (
        a["id"].as_str().unwrap().to_string(),
        a["name"].as_str().unwrap().to_string(),
    )
}

/// The store (the database file and its companions `-wal`, `-shm`, or every PostgreSQL table)
/// holds no trace of `secret`.
fn assert_not_in_database(scratch: &Scratch, secret: &str) {
    assert!(
        !support::stores(&support::stored_text(scratch), secret),
        "the store holds the connection's secret"
    );
}

fn assert_not_logged(svc: &Service, secret: &str) {
    let lines = svc.stderr.all();
    assert!(!lines.is_empty(), "the service logged nothing");
    assert!(
        !lines.iter().any(|l| l.contains(secret)),
        "the service log contains the connection's secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_run_uses_the_connections_credentials_and_region() {
    let (backend, scratch, svc, bucket) = setup(true).await;
    let referer = format!("{}ui/pipelines", backend.base_url());
    let (id, name) = submit(&svc, &referer, &bucket, 1).await;
    assert!(
        backend.calls() >= 1,
        "the backend was asked for the connection"
    );
    assert_eq!(
        backend.last_query().unwrap().get("adapter_instance"),
        Some(&"a1".to_string())
    );

    let st = svc.wait_terminal(&id, WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");

    // The job lives in the connection's region, not in the service's default one.
    let d = training_job_in("eu-west-1", &name)
        .await
        .expect("the job is in eu-west-1");
    assert_eq!(d["TrainingJobStatus"], "Completed");
    assert!(
        d["TrainingJobArn"]
            .as_str()
            .unwrap()
            .contains(":eu-west-1:"),
        "{d}"
    );
    assert!(
        training_job_in("us-east-1", &name).await.is_none(),
        "the job must not be in us-east-1"
    );
    let stats = Emulator::shared().training_stats(&name).await;
    assert_eq!(stats["creates"], 1, "{stats}");

    // The run keeps the reference, never the credentials.
    let (code, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(code, 200, "{run}");
    assert_eq!(
        run["request"]["connection"],
        json!({"base_url": backend.base_url(), "project": "p1", "adapter_instance": "a1",
               "is_instance": "false"})
    );
    let text = run.to_string();
    assert!(!text.contains(SECRET), "{text}");
    assert!(!text.contains("AKIACONNECTION"), "{text}");

    assert_not_in_database(&scratch, SECRET);
    assert_not_logged(&svc, SECRET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referer_off_the_allow_list_is_refused_without_an_outbound_call() {
    let (backend, scratch, svc, bucket) = setup(true).await;
    for path in [
        format!("/api/service/v1/pipelines/training/train?{QUERY}"),
        format!("/api/service/v1/pipelines/training?{QUERY}"),
    ] {
        let (code, err) = post_from(
            &svc,
            &path,
            "http://evil.example:1/",
            &training_body(&bucket, "Completed", 0),
        )
        .await;
        assert_eq!(code, 403, "{err}");
        assert!(
            err["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{err}"
        );
    }
    // Close lookalikes of the allowed backend are refused too.
    let port = backend.addr().port();
    for referer in [
        format!("http://localhost:{port}/"),
        format!("http://127.0.0.1:{}/", port.wrapping_add(1).max(1)),
        format!("http://user@127.0.0.1:{port}/"),
    ] {
        let (code, err) = get_from(
            &svc,
            &format!("/api/service/v1/endpoints/some-endpoint?{QUERY}"),
            &referer,
        )
        .await;
        assert_eq!(code, 403, "{referer}: {err}");
    }
    assert_eq!(svc.run_count().await, 0, "nothing was persisted");
    assert_eq!(backend.calls(), 0, "no outbound call was made");
    assert_not_in_database(&scratch, SECRET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_run_resolves_its_connection_again() {
    let (backend, scratch, svc, bucket) = setup(true).await;
    let (id, name) = submit(&svc, &backend.base_url(), &bucket, 30).await;
    svc.wait_run(&id, "Polling", |r| r["state"] == "Polling")
        .await;
    let before = backend.calls();
    assert!(before >= 1);

    // SIGKILL while polling; the new process has nothing of the connection in memory.
    let svc = svc.kill_and_restart();
    let st = svc.wait_terminal(&id, WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
    assert!(
        backend.calls() > before,
        "the connection was looked up again after the restart ({} calls, {before} before)",
        backend.calls()
    );
    assert!(training_job_in("eu-west-1", &name).await.is_some());
    assert!(training_job_in("us-east-1", &name).await.is_none());
    let stats = Emulator::shared().training_stats(&name).await;
    assert_eq!(stats["creates"], 1, "exactly one training job: {stats}");
    assert_eq!(stats["duplicate_creates"], 0, "{stats}");
    assert_eq!(svc.run_count().await, 1);

    assert_not_in_database(&scratch, SECRET);
    assert_not_logged(&svc, SECRET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_lookup_configured_the_default_chain_is_used() {
    let (backend, scratch, svc, bucket) = setup(false).await;
    let (id, name) = submit(&svc, &backend.base_url(), &bucket, 0).await;
    let st = svc.wait_terminal(&id, WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
    assert!(training_job_in("us-east-1", &name).await.is_some());
    assert!(training_job_in("eu-west-1", &name).await.is_none());
    assert_eq!(backend.calls(), 0, "no lookup without an allow-list");
    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    assert!(run["request"].get("connection").is_none(), "{run}");
    // The query parameters still say where the run came from.
    assert_eq!(run["request"]["origin"]["project"], "p1", "{run}");
    assert_not_in_database(&scratch, SECRET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_registered_and_read_with_the_connection() {
    let (backend, _scratch, svc, _bucket) = setup(true).await;
    let model = unique("conn-model");
    let body = json!({
        "ModelName": model,
        "ExecutionRoleArn": ROLE,
        "Containers": [{"Image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/m:1"}],
    });
    let (code, rec) = post_from(
        &svc,
        &format!("/api/service/v1/models/register?{QUERY}"),
        &backend.base_url(),
        &body,
    )
    .await;
    assert_eq!(code, 201, "{rec}");
    assert!(
        rec["container"].as_str().unwrap().contains(":eu-west-1:"),
        "{rec}"
    );
    let emu = Emulator::shared();
    let (code, _) = emu
        .sagemaker_in("eu-west-1", "DescribeModel", json!({"ModelName": model}))
        .await;
    assert_eq!(code, 200, "the model is in eu-west-1");
    let (code, _) = emu
        .sagemaker_in("us-east-1", "DescribeModel", json!({"ModelName": model}))
        .await;
    assert_ne!(code, 200, "the model is not in us-east-1");

    // Read through the connection it is there; through the default chain it is not.
    let (code, got) = get_from(
        &svc,
        &format!("/api/service/v1/models/{model}?{QUERY}"),
        &backend.base_url(),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    let (code, got) = svc.get(&format!("/api/service/v1/models/{model}")).await;
    assert_eq!(code, 404, "{got}");
}

/// The backend's service token (its `config.service-auth.access-token`).
const SERVICE_TOKEN: &str = "backend-service-token-0123456789";

/// A service allow-listing an https fake backend, trusting its CA only if `trust_ca`.
async fn setup_https(trust_ca: bool) -> (FakeBackend, Scratch, Service, String) {
    let emu = Emulator::shared();
    let bucket = unique("tls");
    emu.create_bucket(&bucket).await;
    let scratch = Scratch::new();
    let ca = TestCa::create(scratch.dir.path());
    let backend = FakeBackend::start_tls(&ca).await;
    backend.set_connection("p1", "a1", details());
    let mut config = scratch.config(emu.url());
    config.extra_env.extend([
        ("EXECUTOR_CONNECTION_ALLOW".into(), backend.base_url()),
        ("EXECUTOR_CONNECTION_TOKEN".into(), SERVICE_TOKEN.into()),
        ("EXECUTOR_CONNECTION_PROJECT_ID".into(), "2".into()),
    ]);
    if trust_ca {
        config.extra_env.push((
            "EXECUTOR_CONNECTION_CA_FILE".into(),
            ca.ca_file.display().to_string(),
        ));
    }
    let svc = Service::start(config);
    (backend, scratch, svc, bucket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lookup_works_over_https_and_sends_the_token_in_access_token() {
    let (backend, scratch, svc, bucket) = setup_https(true).await;
    assert!(backend.base_url().starts_with("https://"));
    let (id, name) = submit(&svc, &backend.base_url(), &bucket, 0).await;
    let st = svc.wait_terminal(&id, WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
    assert!(training_job_in("eu-west-1", &name).await.is_some());

    // The backend reads a service token from `access-token`; `Authorization: Bearer` would be
    // taken for a user JWT (sv/common-app/.../security/jwt/CustomAuthFilter.java). The Python
    // executor sent the same header and a `project` header
    // (py-job-sagemaker-executer/datasource.py, get_connection_details_with_token).
    assert!(backend.calls() >= 1);
    assert_eq!(
        backend.last_header("access-token").as_deref(),
        Some(SERVICE_TOKEN)
    );
    assert_eq!(backend.last_authorization(), None);
    assert_eq!(backend.last_header("project").as_deref(), Some("2"));
    assert_eq!(backend.failed_handshakes(), 0);

    assert_not_logged(&svc, SERVICE_TOKEN);
    assert_not_in_database(&scratch, SERVICE_TOKEN);
    assert_not_in_database(&scratch, SECRET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_backend_whose_certificate_is_not_trusted_gets_no_request() {
    let (backend, _scratch, svc, bucket) = setup_https(false).await;
    let (code, err) = post_from(
        &svc,
        &format!("/api/service/v1/pipelines/training/train?{QUERY}"),
        &backend.base_url(),
        &training_body(&bucket, "Completed", 0),
    )
    .await;
    assert_eq!(code, 503, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("certificate"),
        "{err}"
    );
    assert_eq!(
        backend.calls(),
        0,
        "no request crossed the refused handshake"
    );
    assert_eq!(svc.run_count().await, 0, "nothing was persisted");
    assert_not_logged(&svc, SERVICE_TOKEN);
}

#[test]
fn an_unusable_ca_file_stops_the_start_naming_the_setting() {
    let scratch = Scratch::new();
    let not_pem = scratch.dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    for ca_file in [not_pem.clone(), scratch.dir.path().join("missing.pem")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sagemaker-executor"))
            .arg("serve")
            .env_clear()
            .env(
                "EXECUTOR_DATABASE_URL",
                format!("sqlite://{}", scratch.db().display()),
            )
            .env("AWS_REGION", "us-east-1")
            .env("EXECUTOR_BIND", "127.0.0.1:0")
            .env("EXECUTOR_LOG", "warn")
            .env("EXECUTOR_CONNECTION_ALLOW", "https://essedum.example/")
            .env("EXECUTOR_CONNECTION_CA_FILE", &ca_file)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("EXECUTOR_CONNECTION_CA_FILE") && err.contains(ca_file.to_str().unwrap()),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_needs_no_token_from_a_trusted_network_and_others_trigger_no_lookup() {
    let emu = Emulator::shared();
    let bucket = unique("trusted-conn");
    emu.create_bucket(&bucket).await;
    let backend = FakeBackend::start().await;
    backend.set_connection("p1", "a1", details());
    // Tokens are configured; the backend's SageMaker plugin still sends only Referer and
    // Content-Type (sv/icip-adp-aws-sagemaker/.../ICIPModelAWSServiceSageMaker.java).
    let start = |scratch: &Scratch, trusted: &str| {
        let mut config = scratch.config(emu.url());
        config.extra_env.extend([
            ("EXECUTOR_CONNECTION_ALLOW".into(), backend.base_url()),
            (
                "EXECUTOR_OPERATOR_TOKEN".into(),
                "operator-token-for-connection-tests".into(),
            ),
            ("EXECUTOR_TRUSTED_CLIENTS".into(), trusted.into()),
        ]);
        Service::start(config)
    };
    let path = format!("/api/service/v1/pipelines/training/train?{QUERY}");
    let body = training_body(&bucket, "Completed", 0);

    // From elsewhere (127.0.0.1 is outside 10.0.0.0/8): 401 JSON, and no lookup is made.
    let scratch = Scratch::new();
    let svc = start(&scratch, "10.0.0.0/8");
    let (code, err) = post_from(&svc, &path, &backend.base_url(), &body).await;
    assert_eq!(code, 401, "{err}");
    assert!(err["error"].is_string(), "{err}");
    assert_eq!(
        backend.calls(),
        0,
        "an unauthenticated request made a lookup"
    );
    drop(svc);

    // From the trusted network: accepted, with the connection's credentials.
    let scratch = Scratch::new();
    let svc = start(&scratch, "127.0.0.1/32");
    let (code, a) = post_from(&svc, &path, &backend.base_url(), &body).await;
    assert_eq!(code, 202, "{a}");
    assert_eq!(backend.calls(), 1);
    let name = a["name"].as_str().unwrap();
    let id = a["id"].as_str().unwrap();
    let st = svc.wait_terminal(id, WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
    assert!(training_job_in("eu-west-1", name).await.is_some());
}
