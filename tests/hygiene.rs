//! Nothing is left behind in AWS: multipart uploads are aborted on every exit path (a future that
//! is dropped included), inference retries only throttling and only within its deadline.

mod support;

use serde_json::json;
use std::time::Duration;
use support::fault_proxy::{Fault, FaultPlan, FaultProxy};
use support::{Emulator, Scratch, Service, training_body, unique};

const MIB: usize = 1024 * 1024;

/// A CSV file of at least `size` bytes.
fn csv(size: usize) -> String {
    let row = "1,0.123456789,0.987654321,category-a\n";
    std::iter::once("label,x,y,c\n")
        .chain(std::iter::repeat_n(row, size / row.len() + 1))
        .collect()
}

/// Polls the emulator until the bucket has no open multipart upload (the abort of a dropped
/// upload is sent in the background), or fails the test with the ones still open.
async fn no_open_uploads(emu: &Emulator, bucket: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let open = emu.open_multipart_uploads(bucket).await;
        if open.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "multipart uploads left open in {bucket}: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_shutdown_that_abandons_a_multipart_upload_aborts_it() {
    let emu = Emulator::shared();
    let bucket = unique("hyg-mpu");
    emu.create_bucket(&bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    // Every part hangs far longer than the drain deadline: the step is abandoned mid-upload.
    proxy.set_plan(
        FaultPlan::always(Fault::Delay(Duration::from_secs(600))).only(["S3:UploadPart"]),
    );
    let s = Scratch::new();
    let mut cfg = s.config(proxy.url());
    cfg.extra_env.extend([
        ("EXECUTOR_MULTIPART_THRESHOLD_BYTES".into(), MIB.to_string()),
        ("EXECUTOR_DRAIN_SECS".into(), "1".into()),
    ]);
    let mut svc = Service::start(cfg);
    std::fs::write(s.data_dir().join("big.csv"), csv(6 * MIB)).unwrap();
    let mut body = training_body(&bucket, "Completed", 0);
    body.as_object_mut().unwrap().remove("inline_csv");
    body["local_dataset_path"] = json!("big.csv");
    let (code, a) = svc
        .post("/api/service/v1/pipelines/training/train", &body)
        .await;
    assert_eq!(code, 202, "{a}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while proxy.call_count("S3:UploadPart") == 0 {
        assert!(std::time::Instant::now() < deadline, "no part was sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(emu.open_multipart_uploads(&bucket).await.len(), 1);

    let status = svc.terminate();
    assert!(status.success(), "{status:?}");
    svc.stderr
        .wait_for("the abandoned step", Duration::from_secs(5), |l| {
            l.contains("abandoning steps")
        });
    no_open_uploads(emu, &bucket).await;
    assert_eq!(proxy.call_count("S3:AbortMultipartUpload"), 1);
}

#[tokio::test]
async fn a_server_error_from_the_endpoint_is_answered_once_and_not_retried() {
    let emu = Emulator::shared();
    let endpoint = unique("hyg-ep");
    emu.endpoint(&endpoint, 0).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let s = Scratch::new();
    let svc = Service::start(s.config(proxy.url()));
    proxy.set_plan(FaultPlan::always(Fault::ServerError).only(["InvokeEndpoint"]));

    let r = support::client()
        .post(svc.url(&format!("/api/service/v1/endpoints/{endpoint}/infer")))
        .header("Content-Type", "text/csv")
        .body("1,2\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains("not repeated"),
        "{answer}"
    );
    assert_eq!(
        proxy.call_count("InvokeEndpoint"),
        1,
        "a 5xx may have run the model: it is not sent again"
    );
}

/// An AutoML run that deploys its best candidate to `endpoint`; returns the AutoML run id once
/// its deployment is Done.
async fn automl_deployed(svc: &Service, bucket: &str, endpoint: &str) -> String {
    let body = json!({
        "type": "automl",
        "RoleArn": support::ROLE,
        "Bucket": bucket,
        "S3Prefix": "automl/e1",
        "inline_csv": "label,age,income\n1,30,100\n0,40,80\n",
        "target_attribute_name": "label",
        "problem_type": "BinaryClassification",
        "objective_metric": "F1",
        "max_candidates": 5,
        "Tags": {"_emulator_outcome": "Completed", "_emulator_polls": "1"},
        "deploy": {"endpoint_name": endpoint, "instance_type": "ml.m5.large", "instance_count": 1},
    });
    let (code, a) = svc.post("/api/service/v1/pipelines/training", &body).await;
    assert_eq!(code, 202, "{a}");
    let id = a["id"].as_str().unwrap().to_string();
    let wait = Duration::from_secs(60);
    assert_eq!(svc.wait_terminal(&id, wait).await["state"], "Done");
    let (_, parent) = svc.get(&format!("/api/v1/runs/{id}")).await;
    let detail = parent["history"].as_array().unwrap().last().unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    let child = detail.rsplit("started deployment run ").next().unwrap();
    assert_eq!(svc.wait_terminal(child, wait).await["state"], "Done");
    id
}

async fn undeploy(svc: &Service, endpoint: &str) -> serde_json::Value {
    let (code, t) = svc
        .post(
            &format!("/api/service/v1/endpoints/{endpoint}/undeploy_models"),
            &json!({}),
        )
        .await;
    assert_eq!(code, 202, "{t}");
    let id = t["id"].as_str().unwrap();
    let st = svc.wait_terminal(id, Duration::from_secs(60)).await;
    assert_eq!(st["state"], "Done", "{st}");
    svc.get(&format!("/api/v1/runs/{id}")).await.1
}

fn last_detail(run: &serde_json::Value) -> String {
    run["history"].as_array().unwrap().last().unwrap()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_teardown_removes_the_automl_model_and_config_once_no_other_endpoint_uses_them() {
    let emu = Emulator::shared();
    let bucket = unique("hyg-aml");
    emu.create_bucket(&bucket).await;
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let endpoint = unique("hyg-aml-ep");
    let id = automl_deployed(&svc, &bucket, &endpoint).await;
    let hex = id.replace('-', "");
    let (model, config) = (
        format!("essedum-aml-model-{hex}"),
        format!("essedum-aml-cfg-{hex}"),
    );
    // Someone serves the same config on another endpoint.
    let other = unique("hyg-aml-other");
    emu.sagemaker(
        "CreateEndpoint",
        json!({"EndpointName": other, "EndpointConfigName": config}),
    )
    .await;

    let run = undeploy(&svc, &endpoint).await;
    assert_eq!(
        last_detail(&run),
        format!(
            "endpoint {endpoint} is deleted; kept its endpoint config {config} (another endpoint serves it); kept its model {model} (another endpoint serves it)"
        )
    );
    assert_eq!(
        emu.job_stats("endpoint_configs", &config).await["deletes"],
        0
    );
    assert_eq!(emu.job_stats("models", &model).await["deletes"], 0);

    // The last endpoint that serves them goes: so do they.
    let run = undeploy(&svc, &other).await;
    assert_eq!(
        last_detail(&run),
        format!(
            "endpoint {other} is deleted; deleted its endpoint config {config}; deleted its model {model}"
        )
    );
    assert_eq!(
        emu.job_stats("endpoint_configs", &config).await["deletes"],
        1
    );
    assert_eq!(emu.job_stats("models", &model).await["deletes"], 1);
}

/// Begins a multipart upload directly in the emulator (as a crashed process leaves one).
async fn begin_upload(emu: &Emulator, bucket: &str, key: &str) {
    const SIGNATURE: &str = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";
    let r = support::client()
        .post(format!("{}/{bucket}/{key}?uploads", emu.url()))
        .header("Authorization", SIGNATURE)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

/// A service whose janitor passes every second, with these extra settings.
fn with_janitor(s: &Scratch, url: String, env: &[(&str, &str)]) -> Service {
    let mut cfg = s.config(url);
    cfg.extra_env
        .push(("EXECUTOR_JANITOR_INTERVAL_SECS".into(), "1".into()));
    cfg.extra_env
        .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Service::start(cfg)
}

fn passes(svc: &Service) -> usize {
    svc.stderr
        .all()
        .iter()
        .filter(|l| l.contains("janitor pass done"))
        .count()
}

#[tokio::test]
async fn the_janitor_aborts_stale_multipart_uploads_under_a_run_prefix_and_leaves_others() {
    let emu = Emulator::shared();
    let bucket = unique("hyg-jan");
    emu.create_bucket(&bucket).await;
    let s = Scratch::new();
    // Uploads older than about a third of a second are stale.
    let svc = with_janitor(&s, emu.url(), &[("EXECUTOR_STALE_UPLOAD_HOURS", "0.0001")]);
    let (code, a) = svc
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(&bucket, "Completed", 100_000),
        )
        .await;
    assert_eq!(code, 202, "{a}");
    let id = a["id"].as_str().unwrap();
    let ours = format!("experiments/e1/{id}/input/left-by-a-crash.csv");
    begin_upload(emu, &bucket, &ours).await;
    begin_upload(emu, &bucket, "someone-else/upload.csv").await;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while emu.open_multipart_uploads(&bucket).await.contains(&ours) {
        assert!(std::time::Instant::now() < deadline, "{ours} is still open");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Later passes leave the other prefix alone too.
    let seen = passes(&svc);
    svc.stderr
        .wait_for_count("two more passes", seen + 2, Duration::from_secs(30), |l| {
            l.contains("janitor pass done")
        });
    assert_eq!(
        emu.open_multipart_uploads(&bucket).await,
        vec!["someone-else/upload.csv".to_string()]
    );
}

#[tokio::test]
async fn staged_inputs_of_finished_runs_go_after_the_retention_and_live_runs_keep_theirs() {
    let emu = Emulator::shared();
    let bucket = unique("hyg-ret");
    emu.create_bucket(&bucket).await;
    let s = Scratch::new();
    // A retention of under a second.
    let svc = with_janitor(
        &s,
        emu.url(),
        &[("EXECUTOR_STAGING_RETENTION_DAYS", "0.00001")],
    );
    let submit = |polls: u32| {
        let body = training_body(&bucket, "Completed", polls);
        let svc = &svc;
        async move {
            let (code, a) = svc
                .post("/api/service/v1/pipelines/training/train", &body)
                .await;
            assert_eq!(code, 202, "{a}");
            a["id"].as_str().unwrap().to_string()
        }
    };
    let finished = submit(0).await;
    let live = submit(100_000).await;
    let wait = Duration::from_secs(60);
    assert_eq!(svc.wait_terminal(&finished, wait).await["state"], "Done");
    svc.wait_run(&live, "Polling", |r| r["state"] == "Polling")
        .await;
    let staged = |id: &str| format!("experiments/e1/{id}/input/data.csv");

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while emu.get_object(&bucket, &staged(&finished)).await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the staged input stays"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = passes(&svc);
    svc.stderr
        .wait_for_count("two more passes", seen + 2, Duration::from_secs(30), |l| {
            l.contains("janitor pass done")
        });
    assert!(
        emu.get_object(&bucket, &staged(&live)).await.is_some(),
        "a live run keeps its staged input"
    );
    let purges: Vec<String> = svc
        .stderr
        .all()
        .into_iter()
        .filter(|l| l.contains("staged inputs past retention deleted"))
        .collect();
    assert_eq!(purges.len(), 1, "deleted once and recorded: {purges:?}");
    assert!(purges[0].contains(&finished), "{purges:?}");
}
