//! The training workflow end to end: the real binary over HTTP on loopback, a real SQLite file,
//! the real AWS SDK against the emulator.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::fault_proxy::{Fault, FaultPlan, FaultProxy};
use support::{Emulator, RECORD_KEYS, Scratch, Service, training_body, unique};

const WAIT: Duration = Duration::from_secs(60);

async fn setup() -> (Scratch, Service, String) {
    let emu = Emulator::shared();
    let bucket = unique("bkt");
    emu.create_bucket(&bucket).await;
    let scratch = Scratch::new();
    let svc = Service::start(scratch.config(emu.url()));
    (scratch, svc, bucket)
}

fn history_states(run: &Value) -> Vec<String> {
    run["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to_state"].as_str().unwrap().to_string())
        .collect()
}

/// Every recorded transition must be an edge declared in `workflows/training.toml`.
async fn assert_history_follows_declared_edges(svc: &Service, run: &Value) {
    let (_, wfs) = svc.get("/api/v1/workflows").await;
    let wf = wfs
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == "training")
        .unwrap();
    let edges: Vec<(String, String)> = wf["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap().into(),
                e["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    for ev in run["history"].as_array().unwrap() {
        match ev["from_state"].as_str() {
            None => assert_eq!(ev["to_state"], wf["initial"], "first row starts the run"),
            Some(from) => {
                let to = ev["to_state"].as_str().unwrap();
                assert!(
                    edges.contains(&(from.to_string(), to.to_string())),
                    "undeclared edge {from} -> {to}"
                );
            }
        }
    }
}

#[tokio::test]
async fn inline_csv_run_reaches_done_with_artifacts_and_staged_input() {
    let (_s, svc, bucket) = setup().await;
    let (code, accepted) = svc
        .post(
            "/api/service/v1/pipelines/training/train?project=p1&adapter_instance=a1",
            &training_body(&bucket, "Completed", 2),
        )
        .await;
    assert_eq!(code, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap();
    let name = accepted["name"].as_str().unwrap();
    assert_eq!(accepted["sourceID"], name);
    assert_eq!(accepted["status"], "InProgress");
    assert!(name.starts_with("essedum-train-") && name.len() <= 63);

    let status = svc.wait_terminal(id, WAIT).await;
    assert_eq!(status["state"], "Done", "{status}");
    assert_eq!(status["sagemaker_status"], "Completed");
    let staged_key = format!("experiments/e1/{id}/input/data.csv");
    assert_eq!(status["input_uri"], format!("s3://{bucket}/{staged_key}"));
    assert_eq!(
        status["artifacts"],
        format!("s3://{bucket}/experiments/e1/{id}/output/{name}/output/model.tar.gz")
    );
    let staged = Emulator::shared().get_object(&bucket, &staged_key).await;
    assert_eq!(staged.as_deref(), Some("label,x\n1,0.5\n0,0.1\n"));

    // The same run by job name, and in Essedum's shapes.
    let (_, by_name) = svc.get(&format!("/status/{name}")).await;
    assert_eq!(by_name["id"], id);
    let (code, job) = svc.get(&format!("/api/service/v1/pipelines/training/{name}/get?adapter_instance=a1&project=p1&isCached=false&isInstance=false")).await;
    assert_eq!(code, 200);
    assert_eq!(job["status"], "Completed");
    assert_eq!(job["type"], "sagemaker-training");
    assert_eq!(job["sourceID"], name);
    assert_eq!(job["artifacts"], status["artifacts"]);
    assert!(
        job["container"]
            .as_str()
            .unwrap()
            .contains(":training-job/")
    );
    assert_eq!(job["project"], "p1");
    let (_, list) = svc
        .get("/api/service/v1/pipelines/training/list?project=p1")
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, other) = svc
        .get("/api/service/v1/pipelines/training/list?project=someone-else")
        .await;
    assert_eq!(other.as_array().unwrap().len(), 0);

    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(
        history_states(&run)[..4],
        ["Uploading", "Submitted", "Polling", "Polling"][..]
    );
    assert_eq!(history_states(&run).last().unwrap(), "Done");
    assert_history_follows_declared_edges(&svc, &run).await;
    let stats = Emulator::shared().training_stats(name).await;
    assert_eq!(stats["creates"], 1);
    assert_eq!(stats["duplicate_creates"], 0);
}

#[tokio::test]
async fn s3_input_is_not_uploaded_and_local_file_is_staged() {
    let (s, svc, bucket) = setup().await;
    let mut body = training_body(&bucket, "Completed", 0);
    body.as_object_mut().unwrap().remove("inline_csv");
    body["inputs"] = json!(format!("s3://{bucket}/already/there/"));
    let (code, a) = svc.post("/api/service/v1/pipelines/training", &body).await;
    assert_eq!(code, 202, "{a}");
    let st = svc.wait_terminal(a["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(st["state"], "Done");
    assert_eq!(st["input_uri"], format!("s3://{bucket}/already/there/"));

    std::fs::write(s.data_dir().join("train.csv"), "y,x\n1,2\n").unwrap();
    let mut body = training_body(&bucket, "Completed", 0);
    body.as_object_mut().unwrap().remove("inline_csv");
    body["local_dataset_path"] = json!("train.csv");
    let (code, a) = svc.post("/api/service/v1/pipelines/training", &body).await;
    assert_eq!(code, 202, "{a}");
    let id = a["id"].as_str().unwrap();
    let st = svc.wait_terminal(id, WAIT).await;
    assert_eq!(st["state"], "Done");
    let key = format!("experiments/e1/{id}/input/train.csv");
    assert_eq!(
        Emulator::shared()
            .get_object(&bucket, &key)
            .await
            .as_deref(),
        Some("y,x\n1,2\n")
    );
}

#[tokio::test]
async fn failed_job_surfaces_sagemakers_reason() {
    let (_s, svc, bucket) = setup().await;
    let mut body = training_body(&bucket, "Failed", 1);
    body["HyperParameters"]["_emulator_failure_reason"] =
        json!("AlgorithmError: label column missing");
    let (_, a) = svc
        .post("/api/service/v1/pipelines/training/train", &body)
        .await;
    let id = a["id"].as_str().unwrap();
    let st = svc.wait_terminal(id, WAIT).await;
    assert_eq!(st["state"], "Failed");
    assert_eq!(st["sagemaker_status"], "Failed");
    assert_eq!(st["failure_reason"], "AlgorithmError: label column missing");
    let (_, job) = svc
        .get(&format!("/api/service/v1/pipelines/training/{id}/get"))
        .await;
    assert_eq!(job["status"], "Failed");
    assert_eq!(job["failureReason"], "AlgorithmError: label column missing");
    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    let last = run["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["to_state"], "Failed");
    assert_eq!(last["error"], "AlgorithmError: label column missing");
    assert_eq!(run["last_error"], "AlgorithmError: label column missing");
}

#[tokio::test]
async fn terminal_aws_error_fails_the_run_with_the_aws_message() {
    let (_s, svc, bucket) = setup().await;
    let mut body = training_body(&bucket, "Completed", 1);
    // The emulator rejects an invalid knob value with a ValidationException, as SageMaker would
    // reject an invalid request: terminal, no retries.
    body["HyperParameters"]["_emulator_outcome"] = json!("Exploded");
    let (_, a) = svc
        .post("/api/service/v1/pipelines/training/train", &body)
        .await;
    let st = svc.wait_terminal(a["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(st["state"], "Failed");
    let reason = st["failure_reason"].as_str().unwrap();
    assert!(
        reason.contains("CreateTrainingJob") && reason.contains("ValidationException"),
        "{reason}"
    );
    let (_, run) = svc
        .get(&format!("/api/v1/runs/{}", a["id"].as_str().unwrap()))
        .await;
    assert_eq!(run["attempt"], 1, "terminal errors are not retried");
}

#[tokio::test]
async fn cancel_stops_the_job_and_ends_cancelled() {
    let (_s, svc, bucket) = setup().await;
    let (_, a) = svc
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(&bucket, "Completed", 100_000),
        )
        .await;
    let id = a["id"].as_str().unwrap();
    let name = a["name"].as_str().unwrap();
    svc.wait_run(id, "Polling", |r| r["state"] == "Polling")
        .await;

    let (code, reply) = svc
        .get(&format!("/api/service/v1/pipelines/training/{name}/cancel"))
        .await;
    assert_eq!(code, 200, "{reply}");
    assert_eq!(
        (reply["status"].as_str(), reply["job_name"].as_str()),
        (Some("Stopping"), Some(name)),
        "{reply}"
    );
    let st = svc.wait_terminal(id, WAIT).await;
    assert_eq!(st["state"], "Cancelled");
    assert_eq!(st["sagemaker_status"], "Stopped");
    let stats = Emulator::shared().training_stats(name).await;
    assert_eq!(stats["stops"], 1);
    assert_eq!(stats["status"], "Stopped");
    let (_, job) = svc
        .get(&format!("/api/service/v1/pipelines/training/{id}/get"))
        .await;
    assert_eq!(job["status"], "Stopped");

    // Cancelling a finished run is a conflict, on both surfaces.
    let (code, err) = svc
        .get(&format!("/api/service/v1/pipelines/training/{id}/cancel"))
        .await;
    assert_eq!(code, 409, "{err}");
    assert!(err["error"].as_str().unwrap().contains("Cancelled"));
    let (code, _) = svc
        .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 409);
}

#[tokio::test]
async fn cancel_before_submission_creates_no_job() {
    let emu = Emulator::shared();
    let bucket = unique("bkt");
    emu.create_bucket(&bucket).await;
    // Every upload is throttled, so the run keeps retrying in Uploading and never gets a job.
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    proxy.set_plan(FaultPlan::always(Fault::Throttle).only(["S3:PutObject"]));
    let s = Scratch::new();
    let svc = Service::start(s.config(proxy.url()));
    let (_, a) = svc
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(&bucket, "Completed", 0),
        )
        .await;
    let id = a["id"].as_str().unwrap();
    let retrying = svc
        .wait_run(id, "an upload retry", |r| {
            r["attempt"].as_i64().unwrap_or(0) >= 1
        })
        .await;
    assert_eq!(retrying["state"], "Uploading");
    let last = retrying["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["error_class"], "retryable", "{last}");
    assert!(
        last["error"].as_str().unwrap().contains("SlowDown"),
        "{last}"
    );

    let (code, reply) = svc
        .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 202, "{reply}");
    assert_eq!(reply["cancel_requested"], true);
    let st = svc.wait_terminal(id, WAIT).await;
    assert_eq!(st["state"], "Cancelled");
    assert!(
        emu.training_stats(a["name"].as_str().unwrap())
            .await
            .is_null(),
        "no job was created"
    );
    assert_eq!(proxy.call_count("CreateTrainingJob"), 0);
}

#[tokio::test]
async fn bad_inputs_get_their_4xx_naming_the_field_and_store_nothing() {
    let (s, svc, bucket) = setup().await;
    std::fs::write(s.dir.path().join("outside.csv"), "a\n").unwrap();
    let base = training_body(&bucket, "Completed", 0);
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let mut local_outside = without("inline_csv");
    local_outside["local_dataset_path"] = json!("../outside.csv");
    // Our own route is strict about unknown keys; the backend's route ignores them (below).
    let (code, err) = svc
        .post(
            "/api/service/v1/pipelines/training",
            &with("Surprise", json!(1)),
        )
        .await;
    assert_eq!((code, err["field"].as_str()), (400, Some("Surprise")));
    let cases: Vec<(Value, u16, Option<&str>)> = vec![
        (json!([1, 2]), 400, None),
        (json!("text"), 400, None),
        (without("RoleArn"), 422, Some("RoleArn")),
        (with("RoleArn", json!("not-an-arn")), 422, Some("RoleArn")),
        (with("RoleArn", json!(5)), 422, Some("RoleArn")),
        (with("Bucket", json!("Bad_Bucket")), 422, Some("Bucket")),
        (with("S3Prefix", json!("../up")), 422, Some("S3Prefix")),
        (with("TrainingImage", json!("")), 422, Some("TrainingImage")),
        (
            with("InstanceType", json!("m5.large")),
            422,
            Some("InstanceType"),
        ),
        (with("InstanceCount", json!(0)), 422, Some("InstanceCount")),
        (
            with("InstanceCount", json!("2")),
            422,
            Some("InstanceCount"),
        ),
        (
            with("VolumeSizeInGB", json!(1.5)),
            422,
            Some("VolumeSizeInGB"),
        ),
        (
            with("HyperParameters", json!({"a": [1]})),
            422,
            Some("HyperParameters.a"),
        ),
        (with("inputs", json!("s3://b/x")), 422, Some("inputs")),
        (without("inline_csv"), 422, Some("inputs")),
        (
            with("inline_csv", json!("x".repeat(1536 * 1024))),
            422,
            Some("inline_csv"),
        ),
        (local_outside, 422, Some("local_dataset_path")),
        (with("type", json!("automl")), 422, Some("type")),
    ];
    for (body, want, field) in cases {
        for route in [
            "/api/service/v1/pipelines/training/train",
            "/api/service/v1/pipelines/training",
        ] {
            if route.ends_with("/training") && body["type"] == "automl" {
                continue; // there, "type": "automl" makes it an AutoML body
            }
            let (code, err) = svc.post(route, &body).await;
            assert_eq!(code, want, "{route} {body:.200}: {err}");
            assert!(err["error"].is_string(), "JSON error body: {err}");
            assert_eq!(err["field"].as_str(), field, "{route}: {err}");
        }
    }
    // Not JSON at all, and the wrong content type: still a JSON 4xx.
    let r = support::client()
        .post(svc.url("/api/service/v1/pipelines/training/train"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    let r = support::client()
        .post(svc.url("/api/service/v1/pipelines/training/train"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    assert_eq!(
        svc.run_count().await,
        0,
        "nothing is stored for a rejected request"
    );

    // Lookups of unknown or malformed ids.
    assert_eq!(svc.get("/status/essedum-train-unknown").await.0, 404);
    assert_eq!(
        svc.get("/api/service/v1/pipelines/training/nope/get")
            .await
            .0,
        404
    );
    assert_eq!(svc.get("/api/v1/runs/not-a-uuid").await.0, 400);
    assert_eq!(
        svc.get(&format!("/api/v1/runs/{}", uuid::Uuid::new_v4()))
            .await
            .0,
        404
    );
    assert_eq!(svc.get("/no/such/route").await.0, 404);
}

#[tokio::test]
async fn runs_list_filters_and_pages_newest_first() {
    let (_s, svc, bucket) = setup().await;
    let mut ids = vec![];
    for outcome in ["Completed", "Failed", "Completed"] {
        let (_, a) = svc
            .post(
                "/api/service/v1/pipelines/training/train",
                &training_body(&bucket, outcome, 0),
            )
            .await;
        ids.push(a["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        svc.wait_terminal(id, WAIT).await;
    }
    let (_, p1) = svc.get("/api/v1/runs?limit=2").await;
    let first: Vec<_> = p1["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(first, [ids[2].clone(), ids[1].clone()]);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = svc
        .get(&format!("/api/v1/runs?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(p2["runs"][0]["id"], ids[0].as_str());
    assert!(p2["next_cursor"].is_null());
    let (_, failed) = svc.get("/api/v1/runs?state=Failed&kind=training").await;
    assert_eq!(failed["runs"].as_array().unwrap().len(), 1);
    assert_eq!(failed["runs"][0]["id"], ids[1].as_str());
    assert_eq!(svc.get("/api/v1/runs?state=Nope").await.0, 400);
    assert_eq!(svc.get("/api/v1/runs?limit=0").await.0, 422);
}

#[tokio::test]
async fn health_readiness_docs_and_graceful_stop() {
    let (_s, mut svc, _bucket) = setup().await;
    assert_eq!(svc.get("/healthz").await.0, 200);
    let (code, ready) = svc.get("/readyz").await;
    assert_eq!((code, ready["status"].as_str()), (200, Some("ready")));
    let docs = support::client()
        .get(svc.url("/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    let (code, spec) = svc.get("/openapi.json").await;
    assert_eq!(code, 200);
    assert!(spec["paths"]["/api/service/v1/pipelines/training/train"].is_object());
    let status = svc.terminate();
    assert!(
        status.success(),
        "SIGTERM ends the service cleanly: {status:?}"
    );
    svc.stderr
        .wait_for("engine stopped", Duration::from_secs(5), |l| {
            l.contains("engine stopped")
        });
}

#[tokio::test]
async fn large_local_file_is_staged_as_a_multipart_upload() {
    let emu = Emulator::shared();
    let bucket = unique("big");
    emu.create_bucket(&bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let s = Scratch::new();
    let mut cfg = s.config(proxy.url());
    cfg.extra_env.push((
        "EXECUTOR_MULTIPART_THRESHOLD_BYTES".into(),
        (1024 * 1024).to_string(),
    ));
    let svc = Service::start(cfg);
    // 9 MiB of CSV rows: above the threshold, so two parts of at most 8 MiB.
    let row = "1,0.123456789,0.987654321,category-a\n";
    let csv: String = std::iter::once("label,x,y,c\n")
        .chain(std::iter::repeat_n(row, 9 * 1024 * 1024 / row.len()))
        .collect();
    std::fs::write(s.data_dir().join("big.csv"), &csv).unwrap();
    let mut body = training_body(&bucket, "Completed", 0);
    body.as_object_mut().unwrap().remove("inline_csv");
    body["local_dataset_path"] = json!("big.csv");
    let (code, a) = svc
        .post("/api/service/v1/pipelines/training/train", &body)
        .await;
    assert_eq!(code, 202, "{a}");
    let id = a["id"].as_str().unwrap();
    assert_eq!(svc.wait_terminal(id, WAIT).await["state"], "Done");
    let staged = emu
        .get_object(&bucket, &format!("experiments/e1/{id}/input/big.csv"))
        .await
        .unwrap();
    assert!(
        staged == csv,
        "the staged object is the file, byte for byte ({} vs {} bytes)",
        staged.len(),
        csv.len()
    );
    assert_eq!(proxy.call_count("S3:CreateMultipartUpload"), 1);
    assert_eq!(proxy.call_count("S3:UploadPart"), 2);
    assert_eq!(proxy.call_count("S3:CompleteMultipartUpload"), 1);
    assert_eq!(proxy.call_count("S3:PutObject"), 0);
}

/// The date format of every record: `yyyy-MM-dd HH-mm-ss` (ICIPModelAWSServiceSageMaker parses
/// model and endpoint records with it; job records use the same).
fn is_record_date(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let b = s.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 | 13 | 16 => *c == b'-',
            10 => *c == b' ',
            _ => c.is_ascii_digit(),
        })
}

fn assert_record(v: &Value) {
    assert_record_keys(v);
    assert!(is_record_date(&v["createdOn"]), "{v}");
}

/// Every key present, `syncDate` in the record format (`createdOn` may be unknown: null).
fn assert_record_keys(v: &Value) {
    for k in RECORD_KEYS {
        assert!(v.get(k).is_some(), "record key {k} missing: {v}");
    }
    assert!(is_record_date(&v["syncDate"]), "{v}");
    assert!(v["rawPayload"].is_string(), "{v}");
}

/// The query the backend's REST plugin adds to every MLOps call (ICIPAdaptersV1ServiceImpl:
/// `isCached=false`, `adapter_instance`, `project`, `isInstance`), plus `isRemoteDS`.
const BACKEND_QUERY: &str =
    "adapter_instance=aws-1&project=churn&isCached=false&isInstance=false&isRemoteDS=true";

#[tokio::test]
async fn backend_train_body_with_unknown_keys_and_blank_values_is_accepted() {
    let (_s, svc, bucket) = setup().await;
    let mut body = training_body(&bucket, "Completed", 1);
    // Keys the service does not use, and "" for blank optional values.
    body["ProjectName"] = json!("churn");
    body["algorithm"] = json!({"name": "xgboost"});
    body["InstanceType"] = json!("");
    body["MaxRuntimeInSeconds"] = json!("");
    let r = support::client()
        .post(svc.url(&format!(
            "/api/service/v1/pipelines/training/train?{BACKEND_QUERY}"
        )))
        .header("Referer", "http://essedum.example/")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (code, a) = support::reply(r).await;
    assert_eq!(code, 202, "{a}");
    assert_record(&a);
    let name = a["name"].as_str().unwrap();
    assert_eq!(
        (
            a["type"].as_str(),
            a["status"].as_str(),
            a["sourceID"].as_str()
        ),
        (Some("sagemaker-training"), Some("InProgress"), Some(name))
    );
    assert_eq!(
        (a["adapter"].as_str(), a["project"].as_str()),
        (Some("aws-1"), Some("churn"))
    );
    assert_eq!(a["sourceOrg"], support::ROLE);
    assert!(a["message"].as_str().unwrap().contains(name), "{a}");
    let run_id = a["runId"].as_str().unwrap();
    assert_eq!(svc.wait_terminal(run_id, WAIT).await["state"], "Done");

    let (_, run) = svc.get(&format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(
        run["request"]["instance_type"], "ml.m5.large",
        "\"\" is absent"
    );

    // Get (by job name and by run id) and list carry every record key.
    for id in [name, run_id] {
        let (code, job) = svc
            .get(&format!(
                "/api/service/v1/pipelines/training/{id}/get?{BACKEND_QUERY}"
            ))
            .await;
        assert_eq!(code, 200, "{job}");
        assert_record(&job);
        assert_eq!(
            (job["id"].as_str(), job["runId"].as_str()),
            (Some(name), Some(run_id))
        );
        assert_eq!(
            (job["status"].as_str(), job["jobStatus"].as_str()),
            (Some("Completed"), Some("Completed"))
        );
    }
    let (_, list) = svc
        .get(&format!(
            "/api/service/v1/pipelines/training/list?{BACKEND_QUERY}"
        ))
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_record(&list[0]);
}

#[tokio::test]
async fn backend_train_body_with_a_wrongly_typed_known_key_is_a_422_naming_it() {
    let (_s, svc, bucket) = setup().await;
    let base = training_body(&bucket, "Completed", 0);
    let mut wrong_count = base.clone();
    wrong_count["InstanceCount"] = json!("2");
    wrong_count["Unused"] = json!("x");
    let mut neither = base.clone();
    neither.as_object_mut().unwrap().remove("TrainingImage");
    let mut blank_image = base.clone();
    blank_image["TrainingImage"] = json!("");
    for (body, field) in [
        (wrong_count, "InstanceCount"),
        (neither, "TrainingImage"),
        (blank_image, "TrainingImage"),
    ] {
        let (code, err) = svc
            .post(
                &format!("/api/service/v1/pipelines/training/train?{BACKEND_QUERY}"),
                &body,
            )
            .await;
        assert_eq!((code, err["field"].as_str()), (422, Some(field)), "{err}");
    }
    assert_eq!(svc.run_count().await, 0, "nothing stored");
}

#[tokio::test]
async fn projects_pipelines_delete_cancels_a_running_job_then_forgets_the_ended_run() {
    let (_s, svc, bucket) = setup().await;
    let (_, a) = svc
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(&bucket, "Completed", 100_000),
        )
        .await;
    let id = a["id"].as_str().unwrap();
    let name = a["name"].as_str().unwrap();
    svc.wait_run(id, "Polling", |r| r["state"] == "Polling")
        .await;
    // training_delete in ICIPPluginConstants.MLOPS_APIS: DELETE .../projects_pipelines/{id}/delete.
    // The REST plugin sends its path variables as query parameters too (ICIPAdaptersV1ServiceImpl).
    let path = format!(
        "/api/service/v1/projects_pipelines/{name}/delete?{BACKEND_QUERY}&training_job_id={name}"
    );
    let (code, r) = svc.delete(&path).await;
    assert_eq!(code, 202, "a running job is stopped first: {r}");
    assert_eq!(
        (r["deleted"].as_bool(), r["sourceID"].as_str()),
        (Some(false), Some(name))
    );
    assert_record(&r);
    assert_eq!(svc.wait_terminal(id, WAIT).await["state"], "Cancelled");
    assert_eq!(Emulator::shared().training_stats(name).await["stops"], 1);

    let (code, r) = svc.delete(&path).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(
        (r["deleted"].as_bool(), r["status"].as_str()),
        (Some(true), Some("Stopped"))
    );
    assert_eq!(
        svc.get(&format!("/api/v1/runs/{id}")).await.0,
        404,
        "the record is gone"
    );
    let (code, err) = svc.delete(&path).await;
    assert_eq!(code, 404, "{err}");
    assert!(err["error"].is_string(), "a JSON error: {err}");
}

#[tokio::test]
async fn get_describes_a_job_this_service_did_not_start_and_unknown_ids_are_json_404s() {
    let (_s, svc, bucket) = setup().await;
    let emu = Emulator::shared();
    let name = unique("elsewhere");
    emu.sagemaker(
        "CreateTrainingJob",
        json!({
            "TrainingJobName": name,
            "RoleArn": support::ROLE,
            "AlgorithmSpecification": {"TrainingImage": "img:1", "TrainingInputMode": "File"},
            "OutputDataConfig": {"S3OutputPath": format!("s3://{bucket}/out")},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        }),
    )
    .await;
    let (code, job) = svc
        .get(&format!(
            "/api/service/v1/pipelines/training/{name}/get?{BACKEND_QUERY}"
        ))
        .await;
    assert_eq!(code, 200, "{job}");
    assert_record_keys(&job);
    assert_eq!(
        (
            job["type"].as_str(),
            job["id"].as_str(),
            job["runId"].as_str()
        ),
        (Some("sagemaker-training"), Some(name.as_str()), None)
    );
    assert!(
        job["container"]
            .as_str()
            .unwrap()
            .contains(":training-job/"),
        "{job}"
    );
    assert_eq!(job["project"], "churn");
    // It is not ours: cancel and delete do not touch it.
    for (method, path) in [
        (
            "GET",
            format!("/api/service/v1/pipelines/training/{name}/cancel"),
        ),
        (
            "DELETE",
            format!("/api/service/v1/projects_pipelines/{name}/delete"),
        ),
        (
            "GET",
            "/api/service/v1/pipelines/training/no-such-job/get".to_string(),
        ),
        (
            "GET",
            "/api/service/v1/pipelines/training/not%20a%20name/get".to_string(),
        ),
    ] {
        let (code, err) = if method == "GET" {
            svc.get(&path).await
        } else {
            svc.delete(&path).await
        };
        assert_eq!(code, 404, "{method} {path}: {err}");
        assert!(err["error"].is_string(), "a JSON error: {err}");
    }
}

/// workflows/automl.toml polls every 30 s at first (growing to 300 s). Without
/// `EXECUTOR_POLL_MIN_MS`/`EXECUTOR_POLL_MAX_MS` that policy holds (the flags' old defaults,
/// 5 s → 60 s, silently replaced it); with them, the override holds.
#[tokio::test]
async fn a_workflows_own_poll_policy_holds_unless_an_override_is_set() {
    let emu = Emulator::shared();
    let bucket = unique("poll");
    emu.create_bucket(&bucket).await;
    let body = json!({
        "type": "automl",
        "RoleArn": support::ROLE,
        "Bucket": bucket,
        "S3Prefix": "automl/poll",
        "inline_csv": "label,age\n1,30\n0,40\n",
        "target_attribute_name": "label",
        "problem_type": "BinaryClassification",
        "objective_metric": "F1",
        "Tags": {"_emulator_polls": "1000"},
    });
    for overridden in [false, true] {
        let scratch = Scratch::new();
        let mut config = scratch.config(emu.url());
        if overridden {
            config.extra_env.extend([
                ("EXECUTOR_POLL_MIN_MS".into(), "50".into()),
                ("EXECUTOR_POLL_MAX_MS".into(), "200".into()),
            ]);
        } else {
            config.unset_env = vec!["EXECUTOR_POLL_MIN_MS".into(), "EXECUTOR_POLL_MAX_MS".into()];
        }
        let svc = Service::start(config);
        let (code, a) = svc.post("/api/service/v1/pipelines/training", &body).await;
        assert_eq!(code, 202, "{a}");
        let id = a["id"].as_str().unwrap();
        let run = svc
            .wait_run(id, "the job to be followed", |r| r["state"] == "Polling")
            .await;
        let at = |key: &str| {
            chrono::DateTime::parse_from_rfc3339(run[key].as_str().unwrap())
                .unwrap_or_else(|e| panic!("{key}: {e}: {run}"))
        };
        let wait = (at("next_due_at") - at("updated_at")).num_milliseconds();
        if overridden {
            assert!((1..=200).contains(&wait), "override 50 → 200 ms: {wait} ms");
        } else if support::on_postgres() {
            // PostgreSQL keeps due times on the database's clock (its now when the commit runs,
            // plus the interval) and `updated_at` on the engine's: a few milliseconds apart.
            assert!(
                (30_000..31_000).contains(&wait),
                "automl.toml's first poll interval: {wait} ms: {run}"
            );
        } else {
            assert_eq!(wait, 30_000, "automl.toml's first poll interval: {run}");
        }
    }
}
