//! Batch transform runs end to end against the emulator.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Emulator, RECORD_KEYS, Scratch, Service, unique};

const WAIT: Duration = Duration::from_secs(60);

fn transform_body(bucket: &str, outcome: &str, polls: u32) -> Value {
    json!({
        "ModelName": "churn-model",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": format!("s3://{bucket}/batch/in/")}},
            "ContentType": "text/csv",
            "SplitType": "Line"
        },
        "TransformOutput": {"S3OutputPath": format!("s3://{bucket}/batch/out/"), "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "Environment": {"_emulator_outcome": outcome, "_emulator_polls": polls.to_string()},
    })
}

async fn setup() -> (Scratch, Service, String) {
    let emu = Emulator::shared();
    let bucket = unique("tx");
    emu.create_bucket(&bucket).await;
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    (s, svc, bucket)
}

const BASE: &str = "/api/service/v1/pipelines/inference";

#[tokio::test]
async fn transform_run_reaches_done_with_its_output_location() {
    let (_s, svc, bucket) = setup().await;
    let (code, a) = svc
        .post(
            &format!("{BASE}?project=p9"),
            &transform_body(&bucket, "Completed", 2),
        )
        .await;
    assert_eq!(code, 202, "{a}");
    assert_eq!(
        (a["type"].as_str(), a["state"].as_str()),
        (Some("sagemaker-transform"), Some("Submitted"))
    );
    let id = a["id"].as_str().unwrap();
    let name = a["name"].as_str().unwrap();
    let st = svc.wait_terminal(id, WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
    assert_eq!(st["artifacts"], format!("s3://{bucket}/batch/out/"));
    let (code, job) = svc.post(&format!("{BASE}/{name}/get"), &json!({})).await;
    assert_eq!(
        (code, job["status"].as_str(), job["type"].as_str()),
        (200, Some("Completed"), Some("sagemaker-transform"))
    );
    assert_eq!(job["project"], "p9");
    let (_, list) = svc.get(&format!("{BASE}/list?project=p9")).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let stats = Emulator::shared().job_stats("transform_jobs", name).await;
    assert_eq!(stats["creates"], 1, "{stats}");
    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    let states: Vec<&str> = run["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to_state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.first(),
        Some(&"Submitted"),
        "transform runs start in Submitted: {states:?}"
    );
    assert!(!states.contains(&"Uploading"));

    // Deleting a finished run forgets it; SageMaker keeps its job.
    let r = support::client()
        .delete(svc.url(&format!("{BASE}/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(svc.get(&format!("/status/{id}")).await.0, 404);
    let r = support::client()
        .delete(svc.url(&format!("{BASE}/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test]
async fn failed_and_cancelled_transforms_and_chosen_names() {
    let (_s, svc, bucket) = setup().await;
    let mut body = transform_body(&bucket, "Failed", 1);
    body["Environment"]["_emulator_failure_reason"] = json!("ClientError: bad record on line 3");
    let (_, a) = svc.post(BASE, &body).await;
    let st = svc.wait_terminal(a["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(
        (st["state"].as_str(), st["failure_reason"].as_str()),
        (Some("Failed"), Some("ClientError: bad record on line 3"))
    );

    let name = unique("my-batch");
    let mut body = transform_body(&bucket, "Completed", 100_000);
    body["TransformJobName"] = json!(name);
    let (code, b) = svc.post(BASE, &body).await;
    assert_eq!(
        (code, b["name"].as_str()),
        (202, Some(name.as_str())),
        "{b}"
    );
    let (code, dup) = svc.post(BASE, &body).await;
    assert_eq!(
        code, 409,
        "a second run may not take the same job name: {dup}"
    );
    // Nor may a run (here on another service) adopt a job SageMaker has under the chosen name.
    let mut foreign = transform_body(&bucket, "Completed", 0);
    foreign["TransformJobName"] = json!(name);
    let s2 = Scratch::new();
    let other = Service::start(s2.config(Emulator::shared().url()));
    svc.wait_run(b["id"].as_str().unwrap(), "Polling", |r| {
        r["state"] == "Polling"
    })
    .await;
    let (code, err) = other.post(BASE, &foreign).await;
    assert_eq!(code, 409, "{err}");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("already exists in SageMaker"),
        "{err}"
    );
    assert_eq!(other.run_count().await, 0);
    let id = b["id"].as_str().unwrap();
    svc.wait_run(id, "Polling", |r| r["state"] == "Polling")
        .await;
    let r = support::client()
        .delete(svc.url(&format!("{BASE}/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409, "an unfinished run is not deleted");
    let (code, reply) = svc.post(&format!("{BASE}/{name}/cancel"), &json!({})).await;
    assert_eq!((code, reply), (200, json!({"status": "Stopping"})));
    let st = svc.wait_terminal(id, WAIT).await;
    assert_eq!(st["state"], "Cancelled");
    let stats = Emulator::shared().job_stats("transform_jobs", &name).await;
    assert_eq!(
        (stats["stops"].as_i64(), stats["status"].as_str()),
        (Some(1), Some("Stopped")),
        "{stats}"
    );
}

#[tokio::test]
async fn bad_transform_requests_name_the_field_and_store_nothing() {
    let (_s, svc, bucket) = setup().await;
    let base = transform_body(&bucket, "Completed", 0);
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut b = base.clone();
        f(&mut b);
        b
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            edit(&|b| {
                b.as_object_mut().unwrap().remove("ModelName");
            }),
            422,
            "ModelName",
        ),
        (
            edit(&|b| b["TransformResources"]["InstanceCount"] = json!("1")),
            422,
            "TransformResources.InstanceCount",
        ),
        (
            edit(&|b| {
                b["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] = json!("/local/path")
            }),
            422,
            "TransformInput.DataSource.S3DataSource.S3Uri",
        ),
        (
            edit(&|b| b["TransformInput"]["SplitType"] = json!("Paragraph")),
            422,
            "TransformInput.SplitType",
        ),
        (
            edit(&|b| b["TransformResources"]["InstanceCount"] = json!(0)),
            422,
            "TransformResources.InstanceCount",
        ),
        (
            edit(&|b| b["TransformResources"] = json!("big")),
            422,
            "TransformResources",
        ),
        (
            edit(&|b| b["TransformJobName"] = json!("no spaces allowed")),
            422,
            "TransformJobName",
        ),
        (
            edit(&|b| b["BatchStrategy"] = json!("AllAtOnce")),
            422,
            "BatchStrategy",
        ),
    ];
    for (body, want, field) in cases {
        let (code, err) = svc.post(BASE, &body).await;
        assert_eq!((code, err["field"].as_str()), (want, Some(field)), "{err}");
    }
    assert_eq!(svc.run_count().await, 0);
}

#[tokio::test]
async fn killed_right_after_create_adopts_the_transform_job() {
    let emu = Emulator::shared();
    let bucket = unique("txcrash");
    emu.create_bucket(&bucket).await;
    let s = Scratch::new();
    let mut config = s.config(emu.url());
    config.failpoints = vec!["transform.after_create".into()];
    let svc = Service::start(config);
    let (_, a) = svc
        .post(BASE, &transform_body(&bucket, "Completed", 1))
        .await;
    svc.stderr
        .wait_for("the failpoint", Duration::from_secs(30), |l| {
            l == "FAILPOINT transform.after_create"
        });
    let svc = svc.kill_and_restart();
    let st = svc.wait_terminal(a["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
    let stats = emu
        .job_stats("transform_jobs", a["name"].as_str().unwrap())
        .await;
    assert_eq!(
        (
            stats["creates"].as_i64(),
            stats["duplicate_creates"].as_i64()
        ),
        (Some(1), Some(0)),
        "{stats}"
    );
}

/// The query the backend's REST plugin adds to every MLOps call (ICIPAdaptersV1ServiceImpl).
const BACKEND_QUERY: &str =
    "adapter_instance=aws-1&project=churn&isCached=false&isInstance=false&isRemoteDS=true";

#[tokio::test]
async fn backend_inference_body_with_extra_keys_and_blank_values_is_accepted() {
    let (_s, svc, bucket) = setup().await;
    // The Python service passed ModelClientConfig and DataProcessing on (mlops/aws.py
    // projects_inferencePipelines_create); the backend sends "" for blank values.
    let mut body = transform_body(&bucket, "Completed", 100_000);
    body["TransformJobName"] = json!("");
    body["ModelClientConfig"] = json!("");
    body["DataProcessing"] = json!({"JoinSource": "Input"});
    body["TransformOutput"]["KmsKeyId"] = json!("");
    let (code, a) = svc.post(&format!("{BASE}?{BACKEND_QUERY}"), &body).await;
    assert_eq!(code, 202, "{a}");
    for k in RECORD_KEYS {
        assert!(a.get(k).is_some(), "{k} missing: {a}");
    }
    assert_eq!(
        (a["status"].as_str(), a["adapter"].as_str()),
        (Some("InProgress"), Some("aws-1"))
    );
    assert_eq!(
        a["id"], a["runId"],
        "the run id, as this route has always replied"
    );
    let name = a["name"].as_str().unwrap().to_string();
    assert!(
        name.starts_with("essedum-transform-"),
        "\"\" is absent: {name}"
    );
    svc.wait_run(a["id"].as_str().unwrap(), "Polling", |r| {
        r["state"] == "Polling"
    })
    .await;

    // get and cancel are POSTs with a body (ICIPMlopsController forwards one); by job name.
    let (code, job) = svc
        .post(&format!("{BASE}/{name}/get?{BACKEND_QUERY}"), &json!({}))
        .await;
    assert_eq!(code, 200, "{job}");
    for k in RECORD_KEYS {
        assert!(job.get(k).is_some(), "{k} missing: {job}");
    }
    assert_eq!(
        job["artifacts"],
        format!("s3://{bucket}/batch/out/"),
        "the output location, while the job runs"
    );
    assert_eq!(
        (job["id"].as_str(), job["adapter"].as_str()),
        (Some(name.as_str()), Some("aws-1"))
    );
    let (_, list) = svc.get(&format!("{BASE}/list?{BACKEND_QUERY}")).await;
    for k in RECORD_KEYS {
        assert!(list[0].get(k).is_some(), "{k} missing: {list}");
    }
    let (code, r) = svc
        .post(&format!("{BASE}/{name}/cancel?{BACKEND_QUERY}"), &json!({}))
        .await;
    assert_eq!((code, r["status"].as_str()), (200, Some("Stopping")), "{r}");
    assert_eq!(svc.wait_terminal(&name, WAIT).await["state"], "Cancelled");
    // Unknown ids are JSON 404s on every {id} route.
    for (method, path) in [
        ("POST", format!("{BASE}/no-such-job/get")),
        ("POST", format!("{BASE}/no-such-job/cancel")),
        ("DELETE", format!("{BASE}/no-such-job")),
    ] {
        let r = if method == "POST" {
            support::client().post(svc.url(&path)).json(&json!({}))
        } else {
            support::client().delete(svc.url(&path))
        };
        let (code, err) = support::reply(r.send().await.unwrap()).await;
        assert_eq!(code, 404, "{path}: {err}");
        assert!(err["error"].is_string(), "{err}");
    }
}
