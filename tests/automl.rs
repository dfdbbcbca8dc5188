//! The AutoML workflow end to end against the emulator: the real binary, a real SQLite file, the
//! real SDK.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Emulator, ROLE, Scratch, Service, unique};

const WAIT: Duration = Duration::from_secs(60);
const CSV: &str = "label,age,income\n1,30,100\n0,40,80\n";

fn automl_body(bucket: &str, outcome: &str, polls: u32) -> Value {
    json!({
        "RoleArn": ROLE,
        "Bucket": bucket,
        "S3Prefix": "automl/e1",
        "inline_csv": CSV,
        "target_attribute_name": "label",
        "problem_type": "BinaryClassification",
        "objective_metric": "F1",
        "max_candidates": 5,
        "Tags": {"_emulator_outcome": outcome, "_emulator_polls": polls.to_string(), "team": "ml"},
    })
}

async fn setup() -> (Scratch, Service, String) {
    let emu = Emulator::shared();
    let bucket = unique("aml");
    emu.create_bucket(&bucket).await;
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    (s, svc, bucket)
}

#[tokio::test]
async fn automl_run_reaches_done_with_its_best_candidate() {
    let (_s, svc, bucket) = setup().await;
    let (code, a) = svc
        .post(
            "/api/service/v1/pipelines/training/automl?project=p1",
            &automl_body(&bucket, "Completed", 2),
        )
        .await;
    assert_eq!(code, 202, "{a}");
    assert_eq!(a["type"], "sagemaker-automl");
    let id = a["id"].as_str().unwrap();
    let name = a["name"].as_str().unwrap();
    assert!(name.len() <= 32 && name.starts_with("aml"), "{name}");

    let st = svc.wait_terminal(id, WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
    assert_eq!(st["kind"], "automl");
    let best = &st["best_candidate"];
    assert!(best["CandidateName"].is_string(), "{st}");
    assert!(best["ObjectiveMetric"]["Value"].is_number(), "{best}");
    assert!(!best["InferenceContainers"].as_array().unwrap().is_empty());
    assert_eq!(
        st["artifacts"],
        best["InferenceContainers"][0]["ModelDataUrl"]
    );
    let staged = format!("automl/e1/{id}/input/data.csv");
    assert_eq!(st["input_uri"], format!("s3://{bucket}/{staged}"));
    assert_eq!(
        Emulator::shared()
            .get_object(&bucket, &staged)
            .await
            .as_deref(),
        Some(CSV)
    );

    let (code, job) = svc
        .get(&format!("/api/service/v1/pipelines/training/{name}/get"))
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        (job["type"].as_str(), job["status"].as_str()),
        (Some("sagemaker-automl"), Some("Completed"))
    );
    assert_eq!(job["bestCandidate"], *best);
    assert_eq!(job["project"], "p1");
    let (_, list) = svc
        .get("/api/service/v1/pipelines/training/list?project=p1")
        .await;
    assert_eq!(
        list[0]["type"], "sagemaker-automl",
        "AutoML runs are listed with training: {list}"
    );
    let stats = Emulator::shared().job_stats("automl_jobs", name).await;
    assert_eq!(stats["creates"], 1, "{stats}");

    // The generic training route takes an AutoML body with "type": "automl".
    let mut body = automl_body(&bucket, "Completed", 0);
    body["type"] = json!("automl");
    let (code, b) = svc.post("/api/service/v1/pipelines/training", &body).await;
    assert_eq!(
        (code, b["type"].as_str()),
        (202, Some("sagemaker-automl")),
        "{b}"
    );
    assert_eq!(
        svc.wait_terminal(b["id"].as_str().unwrap(), WAIT).await["state"],
        "Done"
    );
}

#[tokio::test]
async fn failed_automl_job_surfaces_its_reason_and_cancel_stops_one() {
    let (_s, svc, bucket) = setup().await;
    let mut body = automl_body(&bucket, "Failed", 1);
    body["Tags"]["_emulator_failure_reason"] = json!("ClientError: not enough rows");
    let (_, a) = svc
        .post("/api/service/v1/pipelines/training/automl", &body)
        .await;
    let st = svc.wait_terminal(a["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(st["state"], "Failed");
    assert_eq!(st["failure_reason"], "ClientError: not enough rows");

    let (_, b) = svc
        .post(
            "/api/service/v1/pipelines/training/automl",
            &automl_body(&bucket, "Completed", 100_000),
        )
        .await;
    let id = b["id"].as_str().unwrap();
    svc.wait_run(id, "Polling", |r| r["state"] == "Polling")
        .await;
    let (code, reply) = svc
        .get(&format!("/api/service/v1/pipelines/training/{id}/cancel"))
        .await;
    assert_eq!((code, reply), (200, json!({"status": "Stopping"})));
    let st = svc.wait_terminal(id, WAIT).await;
    assert_eq!(st["state"], "Cancelled");
    let stats = Emulator::shared()
        .job_stats("automl_jobs", b["name"].as_str().unwrap())
        .await;
    assert_eq!(
        (stats["stops"].as_i64(), stats["status"].as_str()),
        (Some(1), Some("Stopped")),
        "{stats}"
    );
}

#[tokio::test]
async fn the_target_column_is_checked_before_anything_is_stored() {
    let (_s, svc, bucket) = setup().await;
    let emu = Emulator::shared();
    emu.put_object(&bucket, "data/good.csv", CSV).await;
    emu.put_object(&bucket, "data/other.csv", "a,b\n1,2\n")
        .await;
    let with = |k: &str, v: Value| {
        let mut b = automl_body(&bucket, "Completed", 0);
        if k == "inputs" {
            b.as_object_mut().unwrap().remove("inline_csv");
        }
        b[k] = v;
        b
    };
    let cases = vec![
        (
            with("target_attribute_name", json!("price")),
            422,
            Some("target_attribute_name"),
        ),
        (
            with("inline_csv", json!("\nlabel\n")),
            422,
            Some("inline_csv"),
        ),
        (
            with("inputs", json!(format!("s3://{bucket}/data/missing.csv"))),
            422,
            Some("inputs"),
        ),
        (
            with("inputs", json!(format!("s3://{bucket}/data/"))),
            422,
            Some("inputs"),
        ),
        (
            with("inputs", json!(format!("s3://{bucket}/data/other.csv"))),
            422,
            Some("target_attribute_name"),
        ),
        (
            with("problem_type", json!("Clustering")),
            422,
            Some("problem_type"),
        ),
        (
            with("max_candidates", json!(751)),
            422,
            Some("max_candidates"),
        ),
        (with("deploy", json!({})), 422, Some("deploy.instance_type")),
        (
            with(
                "deploy",
                json!({"instance_type": "ml.m5.large", "instance_count": 1, "x": 1}),
            ),
            400,
            Some("deploy.x"),
        ),
    ];
    for (body, want, field) in cases {
        let (code, err) = svc
            .post("/api/service/v1/pipelines/training/automl", &body)
            .await;
        assert_eq!((code, err["field"].as_str()), (want, field), "{err}");
    }
    assert_eq!(
        svc.run_count().await,
        0,
        "nothing stored for a rejected request"
    );

    // An S3 object whose header has the column is accepted; only its start was read.
    let (code, a) = svc
        .post(
            "/api/service/v1/pipelines/training/automl",
            &with("inputs", json!(format!("s3://{bucket}/data/good.csv"))),
        )
        .await;
    assert_eq!(code, 202, "{a}");
    let st = svc.wait_terminal(a["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(st["input_uri"], format!("s3://{bucket}/data/good.csv"));
}

#[tokio::test]
async fn killed_right_after_create_adopts_the_automl_job() {
    let emu = Emulator::shared();
    let bucket = unique("amlcrash");
    emu.create_bucket(&bucket).await;
    let s = Scratch::new();
    let mut config = s.config(emu.url());
    config.failpoints = vec!["automl.after_create".into()];
    let svc = Service::start(config);
    let (_, a) = svc
        .post(
            "/api/service/v1/pipelines/training/automl",
            &automl_body(&bucket, "Completed", 1),
        )
        .await;
    svc.stderr
        .wait_for("the failpoint", Duration::from_secs(30), |l| {
            l == "FAILPOINT automl.after_create"
        });
    let svc = svc.kill_and_restart();
    let st = svc.wait_terminal(a["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
    let stats = emu
        .job_stats("automl_jobs", a["name"].as_str().unwrap())
        .await;
    assert_eq!(
        (
            stats["creates"].as_i64(),
            stats["duplicate_creates"].as_i64()
        ),
        (Some(1), Some(0)),
        "{stats}"
    );
    let (_, run) = svc
        .get(&format!("/api/v1/runs/{}", a["id"].as_str().unwrap()))
        .await;
    assert!(
        run["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("adopted existing AutoML job"))),
        "{run}"
    );
}

#[tokio::test]
async fn deploy_serves_the_best_candidate_through_a_linked_deployment_run() {
    let (_s, svc, bucket) = setup().await;
    let endpoint = unique("aml-ep");
    let mut body = automl_body(&bucket, "Completed", 1);
    body["deploy"] =
        json!({"endpoint_name": endpoint, "instance_type": "ml.m5.large", "instance_count": 1});
    let (code, a) = svc
        .post("/api/service/v1/pipelines/training/automl", &body)
        .await;
    assert_eq!(code, 202, "{a}");
    let id = a["id"].as_str().unwrap();
    assert_eq!(svc.wait_terminal(id, WAIT).await["state"], "Done");
    let (_, parent) = svc.get(&format!("/api/v1/runs/{id}")).await;
    let done = parent["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let detail = done["detail"].as_str().unwrap();
    let child = detail.rsplit("started deployment run ").next().unwrap();
    assert!(detail.contains("started deployment run "), "{detail}");
    let st = svc.wait_terminal(child, WAIT).await;
    assert_eq!(
        (st["kind"].as_str(), st["state"].as_str()),
        (Some("deployment"), Some("Done")),
        "{st}"
    );
    let (_, run) = svc.get(&format!("/api/v1/runs/{child}")).await;
    assert_eq!(run["request"]["parent_run"], id);
    assert_eq!(
        run["history"][0]["detail"],
        format!("started by AutoML run {id} to serve its best candidate")
    );
    let emu = Emulator::shared();
    let hex = id.replace('-', "");
    assert_eq!(
        emu.job_stats("models", &format!("essedum-aml-model-{hex}"))
            .await["creates"],
        1
    );
    assert_eq!(
        emu.job_stats("endpoint_configs", &format!("essedum-aml-cfg-{hex}"))
            .await["creates"],
        1
    );
    assert_eq!(emu.job_stats("endpoints", &endpoint).await["creates"], 1);
}
