//! `Idempotency-Key` on the submit routes, and submissions that outlast the request timeout: the
//! real binary over HTTP, a real SQLite file, the emulator behind the AWS SDK.

mod support;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use support::{Emulator, ROLE, Scratch, Service, client, training_body, unique};

const TRAIN: &str = "/api/service/v1/pipelines/training/train?project=p1&adapter_instance=a1";

async fn setup() -> (Scratch, Service, String) {
    let emu = Emulator::shared();
    let bucket = unique("idem");
    emu.create_bucket(&bucket).await;
    let scratch = Scratch::new();
    let svc = Service::start(scratch.config(emu.url()));
    (scratch, svc, bucket)
}

/// POSTs `body` (JSON text, sent byte for byte) with `key` and optionally a bearer token.
async fn post_keyed(
    svc: &Service,
    path: &str,
    key: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value, HeaderMap) {
    let mut req = client()
        .post(svc.url(path))
        .header("Idempotency-Key", key)
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let code = r.status().as_u16();
    let headers = r.headers().clone();
    (code, r.json().await.unwrap_or(Value::Null), headers)
}

#[tokio::test]
async fn a_repeated_training_submission_with_its_key_returns_the_first_reply_and_one_run() {
    let (_s, svc, bucket) = setup().await;
    let body = training_body(&bucket, "Completed", 2).to_string();
    let key = unique("key");
    let (first_code, first, first_headers) = post_keyed(&svc, TRAIN, &key, None, &body).await;
    assert_eq!(first_code, 202, "{first}");
    assert!(first_headers.get("Idempotent-Replayed").is_none());
    let (again_code, again, again_headers) = post_keyed(&svc, TRAIN, &key, None, &body).await;
    assert_eq!(again_code, first_code);
    assert_eq!(again, first, "the repeat gets the first reply");
    assert_eq!(again_headers["Idempotent-Replayed"], "true");
    assert_eq!(svc.run_count().await, 1);
    // Another key is another submission.
    let (code, other, _) = post_keyed(&svc, TRAIN, &unique("key"), None, &body).await;
    assert_eq!(code, 202, "{other}");
    assert_ne!(other["runId"], first["runId"]);
    assert_eq!(svc.run_count().await, 2);
}

#[tokio::test]
async fn the_same_key_with_another_request_is_a_conflict_naming_the_header() {
    let (_s, svc, bucket) = setup().await;
    let key = unique("key");
    let body = training_body(&bucket, "Completed", 2);
    let (code, first, _) = post_keyed(&svc, TRAIN, &key, None, &body.to_string()).await;
    assert_eq!(code, 202, "{first}");
    let mut changed = body.clone();
    changed["InstanceCount"] = json!(2);
    let (code, e, _) = post_keyed(&svc, TRAIN, &key, None, &changed.to_string()).await;
    assert_eq!(code, 409, "{e}");
    assert_eq!(e["field"], "Idempotency-Key", "{e}");
    // The same body on another route is another request too.
    let (code, e, _) = post_keyed(
        &svc,
        "/api/service/v1/pipelines/training/train?project=p2",
        &key,
        None,
        &body.to_string(),
    )
    .await;
    assert_eq!(code, 409, "{e}");
    assert_eq!(svc.run_count().await, 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_store_one_run_and_all_get_its_reply() {
    let (_s, svc, bucket) = setup().await;
    let body = training_body(&bucket, "Completed", 2).to_string();
    let key = unique("key");
    let replies =
        futures_util::future::join_all((0..8).map(|_| post_keyed(&svc, TRAIN, &key, None, &body)))
            .await;
    let first = &replies[0];
    for (code, reply, _) in &replies {
        assert_eq!(*code, 202, "{reply}");
        assert_eq!(reply["runId"], first.1["runId"], "{reply}");
    }
    assert_eq!(svc.run_count().await, 1);
}

#[tokio::test]
async fn every_submit_route_honours_the_key() {
    let emu = Emulator::shared();
    let (_s, svc, bucket) = setup().await;
    emu.put_object(&bucket, "in/train.csv", "a,b,label\n1,2,0\n")
        .await;
    let model = unique("idm");
    emu.sagemaker(
        "CreateModel",
        json!({"ModelName": model, "ExecutionRoleArn": ROLE,
               "PrimaryContainer": {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"}}),
    )
    .await;
    emu.sagemaker(
        "CreateEndpointConfig",
        json!({"EndpointConfigName": model, "ProductionVariants": [{"VariantName": "v1",
               "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]}),
    )
    .await;
    let script = json!({
        "bucket": bucket, "project_id": "proj-7", "name": "s", "version": "1",
        "credentials": {"endpoint": emu.url(), "access_key": "test", "secret_key": "storage-secret"},
        "input_artifacts": "in/train.csv", "command": "python3 train.py", "storage": "s3",
        "configs": {"role": ROLE,
                    "container": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sklearn:1"}
    });
    let transform = json!({
        "ModelName": model,
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                           "S3Uri": format!("s3://{bucket}/batch/in/")}}, "ContentType": "text/csv"},
        "TransformOutput": {"S3OutputPath": format!("s3://{bucket}/batch/out/")},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    });
    let automl = json!({
        "input_data_config": {"s3_uri": format!("s3://{bucket}/in/train.csv")},
        "output_data_config": {"s3_output_path": format!("s3://{bucket}/automl/out")},
        "target_attribute_name": "label", "role_arn": ROLE,
    });
    let routes = [
        ("/execute".to_string(), script.clone()),
        (
            "/api/service/v1/pipelines/training/custom_script".to_string(),
            script,
        ),
        ("/api/service/v1/pipelines/inference".to_string(), transform),
        (
            "/api/service/v1/pipelines/training/automl".to_string(),
            automl,
        ),
        (
            "/api/service/v1/pipelines/training".to_string(),
            training_body(&bucket, "Completed", 2),
        ),
        (
            format!("/api/service/v1/endpoints/{model}-ep/deploy_model"),
            json!({"EndpointConfigName": model}),
        ),
        (
            format!("/api/service/v1/models/{model}/export"),
            json!({"EndpointConfigName": model, "EndpointName": format!("{model}-ex")}),
        ),
    ];
    for (i, (path, body)) in routes.iter().enumerate() {
        let key = unique("key");
        let (code, first, _) = post_keyed(&svc, path, &key, None, &body.to_string()).await;
        assert!((200..300).contains(&code), "{path}: {code} {first}");
        let (again_code, again, headers) =
            post_keyed(&svc, path, &key, None, &body.to_string()).await;
        assert_eq!((again_code, &again), (code, &first), "{path}");
        assert_eq!(headers["Idempotent-Replayed"], "true", "{path}");
        assert_eq!(svc.run_count().await, i + 1, "{path} stored one run");
    }
}

#[tokio::test]
async fn keys_are_per_caller() {
    const ALICE: &str = "alice-submitter-token-0123456789ab";
    const BOB: &str = "bob-submitter-token-0123456789abcd";
    let emu = Emulator::shared();
    let bucket = unique("idem");
    emu.create_bucket(&bucket).await;
    let s = Scratch::new();
    let file = s.dir.path().join("tokens.toml");
    let hash = |t: &str| {
        use sha2::Digest;
        sha2::Sha256::digest(t.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    std::fs::write(
        &file,
        format!(
            "[[tokens]]\nname = \"alice\"\nrole = \"submitter\"\nsha256 = \"{}\"\n\n\
             [[tokens]]\nname = \"bob\"\nrole = \"submitter\"\nsha256 = \"{}\"\n",
            hash(ALICE),
            hash(BOB)
        ),
    )
    .unwrap();
    let mut c = s.config(emu.url());
    c.extra_env
        .push(("EXECUTOR_TOKENS_FILE".into(), file.display().to_string()));
    let svc = Service::start(c);
    let body = training_body(&bucket, "Completed", 2).to_string();
    let (code, a, _) = post_keyed(&svc, TRAIN, "shared-key", Some(ALICE), &body).await;
    assert_eq!(code, 202, "{a}");
    let (code, b, headers) = post_keyed(&svc, TRAIN, "shared-key", Some(BOB), &body).await;
    assert_eq!(code, 202, "{b}");
    assert!(headers.get("Idempotent-Replayed").is_none());
    assert_ne!(
        a["runId"], b["runId"],
        "another caller's key is not replayed"
    );
}

#[tokio::test]
async fn a_key_is_forgotten_after_the_retention() {
    let emu = Emulator::shared();
    let bucket = unique("idem");
    emu.create_bucket(&bucket).await;
    let s = Scratch::new();
    let mut c = s.config(emu.url());
    c.extra_env
        .push(("EXECUTOR_IDEMPOTENCY_RETENTION_HOURS".into(), "0".into()));
    let svc = Service::start(c);
    let body = training_body(&bucket, "Completed", 2).to_string();
    let (_, a, _) = post_keyed(&svc, TRAIN, "k1", None, &body).await;
    let (code, b, _) = post_keyed(&svc, TRAIN, "k1", None, &body).await;
    assert_eq!(code, 202, "{b}");
    assert_ne!(a["runId"], b["runId"]);
    assert_eq!(svc.run_count().await, 2);
}

#[tokio::test]
async fn a_malformed_key_is_refused_naming_the_header_and_nothing_is_stored() {
    let (_s, svc, bucket) = setup().await;
    let body = training_body(&bucket, "Completed", 2).to_string();
    for key in ["", "has space", &"x".repeat(256)] {
        let (code, e, _) = post_keyed(&svc, TRAIN, key, None, &body).await;
        assert_eq!(code, 400, "{key:?}: {e}");
        assert_eq!(e["field"], "Idempotency-Key");
    }
    assert_eq!(svc.run_count().await, 0);
}

/// A submission slower than the request timeout after its run was stored (paused at the
/// `api.submit_stored` point, between the commit and the reply) is answered with its run, not
/// a 503 that would make the client submit it again.
#[tokio::test]
async fn a_stored_submission_is_answered_even_after_the_request_timeout() {
    let emu = Emulator::shared();
    let bucket = unique("idem");
    emu.create_bucket(&bucket).await;
    let s = Scratch::new();
    let mut c = s.config(emu.url());
    c.failpoints = vec!["api.submit_stored".into()];
    c.extra_env.extend([
        ("EXECUTOR_REQUEST_TIMEOUT_SECS".into(), "1".into()),
        ("EXECUTOR_FAILPOINT_PAUSE_MS".into(), "2500".into()),
    ]);
    let svc = Service::start(c);
    let (code, reply) = svc
        .post(TRAIN, &training_body(&bucket, "Completed", 2))
        .await;
    assert_eq!(code, 202, "{reply}");
    svc.stderr
        .wait_for("the failpoint", std::time::Duration::from_secs(5), |l| {
            l.contains("FAILPOINT api.submit_stored")
        });
    let (code, run) = svc
        .get(&format!(
            "/api/v1/runs/{}",
            reply["runId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(code, 200, "{run}");
    // A request that stores nothing is still bounded by the timeout.
    let (code, _) = svc.get("/healthz").await;
    assert_eq!(code, 200);
}

/// The process dies after a keyed submission stored its run and before its reply was recorded
/// (killed at `api.submit_stored`): the client never got an answer, and its repeat after the
/// restart gets the reply for that same run (the handler rebuilds it; nothing is stored twice).
// Multi-threaded: the first request runs on another worker while this one waits on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_after_a_crash_between_the_commit_and_the_recorded_reply_gets_the_stored_run() {
    let emu = Emulator::shared();
    let bucket = unique("idem");
    emu.create_bucket(&bucket).await;
    let s = Scratch::new();
    let mut c = s.config(emu.url());
    c.failpoints = vec!["api.submit_stored".into()];
    let svc = Service::start(c);
    let body = training_body(&bucket, "Completed", 2).to_string();
    let key = unique("key");
    let first = {
        let (url, key, body) = (svc.url(TRAIN), key.clone(), body.clone());
        tokio::spawn(async move {
            client()
                .post(url)
                .header("Idempotency-Key", key)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
        })
    };
    svc.stderr
        .wait_for("the failpoint", std::time::Duration::from_secs(10), |l| {
            l.contains("FAILPOINT api.submit_stored")
        });
    let svc = svc.kill_and_restart();
    assert!(
        first.await.unwrap().is_err(),
        "the first request never got an answer"
    );
    assert_eq!(svc.run_count().await, 1, "its run was stored");

    let (code, again, headers) = post_keyed(&svc, TRAIN, &key, None, &body).await;
    assert_eq!(code, 202, "the status the first reply had: {again}");
    assert_eq!(headers["Idempotent-Replayed"], "true");
    let id = again["runId"].as_str().unwrap();
    let (code, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(code, 200, "the reply names the stored run: {run}");
    assert_eq!(svc.run_count().await, 1, "nothing stored twice");
    // From now on the rebuilt reply is the recorded one.
    let (code, third, _) = post_keyed(&svc, TRAIN, &key, None, &body).await;
    assert_eq!((code, &third), (202, &again));
    let st = svc
        .wait_terminal(id, std::time::Duration::from_secs(60))
        .await;
    assert_eq!(st["state"], "Done", "{st}");
    assert_eq!(
        emu.training_stats(run["context"]["job_name"].as_str().unwrap())
            .await["creates"],
        1
    );
}
