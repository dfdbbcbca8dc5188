//! The AutoML workflow end to end against the emulator: the real binary, a real SQLite file, the
//! real SDK. Our own AutoML body goes to `POST /pipelines/training` with `"type": "automl"`; the
//! Essedum backend's two AutoML bodies (the Python service's) to `/train` and `/automl`.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Emulator, RECORD_KEYS, ROLE, Scratch, Service, unique};

const WAIT: Duration = Duration::from_secs(60);
const CSV: &str = "label,age,income\n1,30,100\n0,40,80\n";

/// Our own AutoML route: `POST /pipelines/training` with `"type": "automl"`.
const AUTOML: &str = "/api/service/v1/pipelines/training";

/// The query the backend's REST plugin adds to every MLOps call (ICIPAdaptersV1ServiceImpl).
const BACKEND_QUERY: &str =
    "adapter_instance=aws-1&project=churn&isCached=false&isInstance=false&isRemoteDS=true";

fn automl_body(bucket: &str, outcome: &str, polls: u32) -> Value {
    json!({
        "type": "automl",
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
            &format!("{AUTOML}?project=p1"),
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
}

#[tokio::test]
async fn failed_automl_job_surfaces_its_reason_and_cancel_stops_one() {
    let (_s, svc, bucket) = setup().await;
    let mut body = automl_body(&bucket, "Failed", 1);
    body["Tags"]["_emulator_failure_reason"] = json!("ClientError: not enough rows");
    let (_, a) = svc.post(AUTOML, &body).await;
    let st = svc.wait_terminal(a["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(st["state"], "Failed");
    assert_eq!(st["failure_reason"], "ClientError: not enough rows");

    let (_, b) = svc
        .post(AUTOML, &automl_body(&bucket, "Completed", 100_000))
        .await;
    let id = b["id"].as_str().unwrap();
    svc.wait_run(id, "Polling", |r| r["state"] == "Polling")
        .await;
    let (code, reply) = svc
        .get(&format!("/api/service/v1/pipelines/training/{id}/cancel"))
        .await;
    assert_eq!(
        (code, reply["status"].as_str(), reply["job_name"].as_str()),
        (200, Some("Stopping"), b["name"].as_str()),
        "{reply}"
    );
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
            with(
                "inputs",
                json!(format!("s3://no-such-bucket-here/data/x.csv")),
            ),
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
        let (code, err) = svc.post(AUTOML, &body).await;
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
            AUTOML,
            &with("inputs", json!(format!("s3://{bucket}/data/good.csv"))),
        )
        .await;
    assert_eq!(code, 202, "{a}");
    let st = svc.wait_terminal(a["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(st["input_uri"], format!("s3://{bucket}/data/good.csv"));

    // A prefix (AutoML reads every file under it; S3DataType S3Prefix) has no one header to
    // check: accepted, as the Python service did, with or without its trailing slash.
    for prefix in ["data/", "data"] {
        let (code, a) = svc
            .post(
                AUTOML,
                &with("inputs", json!(format!("s3://{bucket}/{prefix}"))),
            )
            .await;
        assert_eq!(code, 202, "{prefix}: {a}");
    }
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
        .post(AUTOML, &automl_body(&bucket, "Completed", 1))
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
    let (code, a) = svc.post(AUTOML, &body).await;
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

async fn describe_automl(name: &str) -> Value {
    Emulator::shared()
        .sagemaker("DescribeAutoMLJobV2", json!({"AutoMLJobName": name}))
        .await
}

#[tokio::test]
async fn pythons_train_body_without_an_image_starts_an_automl_run_writing_under_its_prefix() {
    let (_s, svc, bucket) = setup().await;
    let emu = Emulator::shared();
    emu.put_object(&bucket, "housing/train.csv", CSV).await;
    // The body the Python service's training_train_create read (mlops/aws.py), as the backend
    // forwards it: unknown keys and blank values included.
    let body = json!({
        "RoleArn": ROLE,
        "Bucket": bucket,
        "S3Prefix": "housing/run1",
        "inputs": format!("s3://{bucket}/housing/train.csv"),
        "target_attribute_name": "label",
        "content_type": "text/csv",
        "problem_type": "",
        "ProjectDisplayName": "Housing",
        "Tags": {"_emulator_outcome": "Completed", "_emulator_polls": "1"},
    });
    let (code, a) = svc
        .post(
            &format!("/api/service/v1/pipelines/training/train?{BACKEND_QUERY}"),
            &body,
        )
        .await;
    assert_eq!(code, 202, "{a}");
    for k in RECORD_KEYS {
        assert!(a.get(k).is_some(), "{k} missing: {a}");
    }
    let name = a["name"].as_str().unwrap();
    // As the Python service replied: sourceID, name and id are the job name.
    assert_eq!(
        (
            a["sourceID"].as_str(),
            a["id"].as_str(),
            a["sourcename"].as_str()
        ),
        (Some(name), Some(name), Some(name))
    );
    assert_eq!(
        (a["status"].as_str(), a["type"].as_str()),
        (Some("InProgress"), Some("sagemaker-automl"))
    );
    let output = format!("s3://{bucket}/housing/run1/output");
    assert_eq!(a["artifacts"], output);
    assert_eq!(a["description"], "AutoML training job for label");
    assert!(a["message"].as_str().unwrap().contains(name), "{a}");

    let st = svc.wait_terminal(name, WAIT).await;
    assert_eq!(
        (st["kind"].as_str(), st["state"].as_str()),
        (Some("automl"), Some("Done"))
    );
    let d = describe_automl(name).await;
    assert_eq!(d["OutputDataConfig"]["S3OutputPath"], output, "{d}");
    assert_eq!(
        d["AutoMLJobInputDataConfig"][0]["ContentType"], "text/csv;header=present",
        "text/csv is read as AutoML's CSV type: {d}"
    );
    assert_eq!(
        d["AutoMLProblemTypeConfig"]["TabularJobConfig"]["CompletionCriteria"]["MaxCandidates"], 1,
        "one candidate unless asked, as the Python service ran it: {d}"
    );
    let (code, job) = svc
        .get(&format!(
            "/api/service/v1/pipelines/training/{name}/get?{BACKEND_QUERY}"
        ))
        .await;
    assert_eq!(code, 200, "{job}");
    assert_eq!(job["status"], "Completed");
    assert_eq!(job["container"], d["AutoMLJobArn"]);

    // The target column must be in the header (the Python service checked it too).
    let mut wrong = body.clone();
    wrong["target_attribute_name"] = json!("price");
    let (code, err) = svc
        .post("/api/service/v1/pipelines/training/train", &wrong)
        .await;
    assert_eq!(
        (code, err["field"].as_str()),
        (422, Some("target_attribute_name")),
        "{err}"
    );
}

fn snake_body(bucket: &str, job_name: Option<&str>) -> Value {
    let mut b = json!({
        "input_data_config": {"s3_uri": format!("s3://{bucket}/data/train.csv"), "content_type": "text/csv", "compression_type": ""},
        "output_data_config": {"s3_output_path": format!("s3://{bucket}/automl-out")},
        "target_attribute_name": "label",
        "role_arn": ROLE,
        "problem_type": "BinaryClassification",
        "objective": {"metric_name": "F1"},
        "max_candidates": 3,
        "tags": [{"Key": "team", "Value": "ml"}, {"Key": "_emulator_polls", "Value": "1"}],
        "mode": "ENSEMBLING",
        "registered_model_name": "",
    });
    if let Some(n) = job_name {
        b["job_name"] = json!(n);
    }
    b
}

#[tokio::test]
async fn pythons_snake_case_automl_body_answers_201_with_the_python_keys() {
    let (_s, svc, bucket) = setup().await;
    Emulator::shared()
        .put_object(&bucket, "data/train.csv", CSV)
        .await;
    let chosen = unique("aml").replace('-', "");
    let route = format!("/api/service/v1/pipelines/training/automl?{BACKEND_QUERY}");
    let (code, a) = svc.post(&route, &snake_body(&bucket, Some(&chosen))).await;
    assert_eq!(code, 201, "{a}");
    for k in [
        "job_name",
        "job_arn",
        "status",
        "message",
        "input_data",
        "output_path",
        "target_attribute",
        "created_at",
    ] {
        assert!(a.get(k).is_some(), "{k} missing: {a}");
    }
    assert_eq!(
        (
            a["job_name"].as_str(),
            a["status"].as_str(),
            a["target_attribute"].as_str()
        ),
        (Some(chosen.as_str()), Some("InProgress"), Some("label"))
    );
    assert_eq!(a["input_data"], format!("s3://{bucket}/data/train.csv"));
    assert_eq!(a["output_path"], format!("s3://{bucket}/automl-out"));
    let st = svc.wait_terminal(&chosen, WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
    let d = describe_automl(&chosen).await;
    assert_eq!(
        d["OutputDataConfig"]["S3OutputPath"],
        format!("s3://{bucket}/automl-out")
    );
    let tabular = &d["AutoMLProblemTypeConfig"]["TabularJobConfig"];
    assert_eq!(
        (
            tabular["ProblemType"].as_str(),
            tabular["CompletionCriteria"]["MaxCandidates"].as_i64()
        ),
        (Some("BinaryClassification"), Some(3)),
        "{d}"
    );
    assert_eq!(d["AutoMLJobObjective"]["MetricName"], "F1", "{d}");
    let tags = Emulator::shared()
        .sagemaker("ListTags", json!({"ResourceArn": d["AutoMLJobArn"]}))
        .await;
    let tags = tags["Tags"].as_array().unwrap();
    for (k, v) in [("team", "ml"), ("project", "churn")] {
        assert!(
            tags.iter().any(|t| t["Key"] == k && t["Value"] == v),
            "tag {k}={v}: {tags:?}"
        );
    }

    // The name is taken now (by our run, and in SageMaker): 409, as the Python service answered.
    let (code, err) = svc.post(&route, &snake_body(&bucket, Some(&chosen))).await;
    assert_eq!(code, 409, "{err}");
    // Without a job_name one is made; bad values are named.
    let (code, b) = svc.post(&route, &snake_body(&bucket, None)).await;
    assert_eq!(code, 201, "{b}");
    let runs = svc.run_count().await;
    let with = |path: &[&str], v: Value| {
        let mut b = snake_body(&bucket, None);
        let mut at = &mut b;
        for k in &path[..path.len() - 1] {
            at = &mut at[*k];
        }
        at[path[path.len() - 1]] = v;
        b
    };
    for (body, field) in [
        (with(&["role_arn"], json!("")), "role_arn"),
        (with(&["role_arn"], json!("not-an-arn")), "role_arn"),
        (
            with(&["input_data_config"], json!(null)),
            "input_data_config",
        ),
        (
            with(&["input_data_config", "s3_uri"], json!("http://x/y.csv")),
            "input_data_config.s3_uri",
        ),
        (
            with(&["output_data_config", "s3_output_path"], json!("")),
            "output_data_config.s3_output_path",
        ),
        (
            with(&["target_attribute_name"], json!("price")),
            "target_attribute_name",
        ),
        (with(&["max_candidates"], json!("3")), "max_candidates"),
        (
            with(&["objective", "metric_name"], json!("Speed")),
            "objective.metric_name",
        ),
        (with(&["tags"], json!([{"Value": "x"}])), "tags[0].Key"),
        (with(&["job_name"], json!("x".repeat(33))), "job_name"),
    ] {
        let (code, err) = svc.post(&route, &body).await;
        assert_eq!((code, err["field"].as_str()), (422, Some(field)), "{err}");
    }
    assert_eq!(
        svc.run_count().await,
        runs,
        "nothing stored for a refused request"
    );
}
