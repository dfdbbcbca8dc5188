//! Operating the service: retry and cancel through the operator API, run filters and counts, and
//! the `runs` command line against a running service.

mod support;

use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use support::fault_proxy::{Fault, FaultPlan, FaultProxy};
use support::{Emulator, Scratch, Service, training_body, unique};

const WAIT: Duration = Duration::from_secs(60);

async fn bucket() -> String {
    let b = unique("ops");
    Emulator::shared().create_bucket(&b).await;
    b
}

fn fast_retries(scratch: &Scratch, endpoint: String) -> support::ServiceConfig {
    let mut c = scratch.config(endpoint);
    c.extra_env
        .push(("EXECUTOR_RETRY_BASE_MS".into(), "5".into()));
    c
}

fn history(run: &Value) -> &Vec<Value> {
    run["history"].as_array().unwrap()
}

#[tokio::test]
async fn retry_resumes_a_failed_run_where_it_failed_and_adopts_the_existing_job() {
    let emu = Emulator::shared();
    let bucket = bucket().await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    // The first describe passes, the create reaches SageMaker but its reply is lost, and every
    // describe after that is throttled: the run exhausts its retries in Submitted while the job
    // exists in SageMaker.
    let mut kinds = vec![Fault::Delay(Duration::ZERO), Fault::DropResponse];
    kinds.extend(std::iter::repeat_n(Fault::Throttle, 50));
    proxy.set_plan(FaultPlan::new(1, kinds).only(["CreateTrainingJob", "DescribeTrainingJob"]));
    let s = Scratch::new();
    let svc = Service::start(fast_retries(&s, proxy.url()));
    let (_, a) = svc
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(&bucket, "Completed", 0),
        )
        .await;
    let id = a["id"].as_str().unwrap();
    let name = a["name"].as_str().unwrap();
    let failed = svc.wait_terminal(id, WAIT).await;
    assert_eq!(failed["state"], "Failed", "{failed}");
    assert!(
        failed["failure_reason"]
            .as_str()
            .unwrap()
            .starts_with("gave up after"),
        "{failed}"
    );
    assert_eq!(
        emu.training_stats(name).await["creates"],
        1,
        "the lost reply still created the job"
    );

    proxy.clear_plan();
    let (code, r) = svc
        .post(
            &format!("/api/v1/runs/{id}/retry"),
            &json!({"reason": "AWS outage over"}),
        )
        .await;
    assert_eq!(code, 202, "{r}");
    assert_eq!(
        (r["state"].as_str(), r["attempt"].as_i64()),
        (Some("Submitted"), Some(0))
    );
    let done = svc.wait_terminal(id, WAIT).await;
    assert_eq!(done["state"], "Done", "{done}");
    let stats = emu.training_stats(name).await;
    assert_eq!(stats["creates"], 1, "retry adopted the job: {stats}");

    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    let retry = history(&run)
        .iter()
        .find(|e| e["from_state"] == "Failed")
        .unwrap();
    assert_eq!(retry["to_state"], "Submitted");
    assert_eq!(
        retry["detail"],
        "retry requested by anonymous: AWS outage over"
    );
    assert!(history(&run).iter().any(|e| {
        e["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("adopted existing training job"))
    }));

    // Retrying a Done run is a conflict; so are bad requests.
    let (code, err) = svc
        .post(&format!("/api/v1/runs/{id}/retry"), &json!({}))
        .await;
    assert_eq!(code, 409, "{err}");
    assert_eq!(
        svc.post(&format!("/api/v1/runs/{id}/retry"), &json!({"why": 1}))
            .await
            .0,
        400
    );
    assert_eq!(
        svc.post(
            &format!("/api/v1/runs/{id}/retry"),
            &json!({"reason": "x".repeat(1001)})
        )
        .await
        .0,
        422
    );
    assert_eq!(svc.post("/api/v1/runs/nope/retry", &json!({})).await.0, 400);
    assert_eq!(
        svc.post(
            &format!("/api/v1/runs/{}/retry", uuid::Uuid::new_v4()),
            &json!({})
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn retry_rearms_a_waiting_run_now_and_survives_a_crash_before_its_next_step() {
    let emu = Emulator::shared();
    let bucket = bucket().await;
    let s = Scratch::new();
    let mut config = s.config(emu.url());
    // The first poll would wait ten minutes.
    config
        .extra_env
        .push(("EXECUTOR_POLL_MIN_MS".into(), "600000".into()));
    config
        .extra_env
        .push(("EXECUTOR_POLL_MAX_MS".into(), "600000".into()));
    config.failpoints = vec!["training.during_polling".into()];
    let svc = Service::start(config);
    let (_, a) = svc
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(&bucket, "Completed", 1),
        )
        .await;
    let id = a["id"].as_str().unwrap();
    svc.wait_run(id, "Polling", |r| r["state"] == "Polling")
        .await;

    let (code, r) = svc
        .post(
            &format!("/api/v1/runs/{id}/retry"),
            &json!({"reason": "poke"}),
        )
        .await;
    assert_eq!(code, 202, "{r}");
    assert_eq!(r["state"], "Polling");
    // The re-armed run is stepped at once and parks at the failpoint: kill it there.
    svc.stderr
        .wait_for("the failpoint", Duration::from_secs(30), |l| {
            l == "FAILPOINT training.during_polling"
        });
    // The retry's "due now" was committed; the step after it never was. The restarted service
    // picks the run up at once instead of ten minutes later.
    let svc = svc.kill_and_restart();
    let done = svc.wait_terminal(id, WAIT).await;
    assert_eq!(done["state"], "Done", "{done}");
    assert_eq!(
        emu.training_stats(a["name"].as_str().unwrap()).await["creates"],
        1
    );
}

#[tokio::test]
async fn run_filters_counts_and_time_ranges() {
    let emu = Emulator::shared();
    let bucket = bucket().await;
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let before = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (_, ok) = svc
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(&bucket, "Completed", 0),
        )
        .await;
    let (_, bad) = svc
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(&bucket, "Failed", 0),
        )
        .await;
    svc.wait_terminal(ok["id"].as_str().unwrap(), WAIT).await;
    svc.wait_terminal(bad["id"].as_str().unwrap(), WAIT).await;

    let ids = |page: &Value| -> Vec<String> {
        page["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, with_error) = svc.get("/api/v1/runs?has_error=true").await;
    assert_eq!(
        ids(&with_error),
        [bad["id"].as_str().unwrap()],
        "{with_error}"
    );
    let (_, without) = svc.get("/api/v1/runs?has_error=false").await;
    assert_eq!(ids(&without), [ok["id"].as_str().unwrap()]);
    assert_eq!(with_error["counts"], json!({"Done": 1, "Failed": 1}));
    let (_, stuck) = svc.get("/api/v1/runs?stuck_secs=0").await;
    assert!(ids(&stuck).is_empty(), "finished runs are never stuck");
    let (_, after) = svc
        .get(&format!("/api/v1/runs?created_after={before}"))
        .await;
    assert_eq!(ids(&after).len(), 2);
    let (_, earlier) = svc
        .get(&format!("/api/v1/runs?created_before={before}"))
        .await;
    assert!(ids(&earlier).is_empty());
    let (code, err) = svc
        .get(&format!("/api/v1/runs?cursor={}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(
        (code, err["field"].as_str()),
        (400, Some("cursor")),
        "an unknown cursor"
    );
    assert_eq!(svc.get("/api/v1/runs?limit=1000").await.0, 200);
    assert_eq!(svc.get("/api/v1/runs?limit=1001").await.0, 422);
    let (_, one) = svc.get("/api/v1/runs?limit=1").await;
    let (_, rest) = svc
        .get(&format!(
            "/api/v1/runs?limit=1&cursor={}",
            one["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert!(rest["next_cursor"].is_null(), "the last page has no cursor");
    assert_eq!(ids(&one).len() + ids(&rest).len(), 2);
    let (code, err) = svc.get("/api/v1/runs?updated_after=yesterday").await;
    assert_eq!((code, err["field"].as_str()), (422, Some("updated_after")));
}

fn cli(svc: &Service, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sagemaker-executor"))
        .arg("runs")
        .args(args)
        .env("EXECUTOR_URL", format!("http://{}", svc.addr))
        .env("EXECUTOR_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test]
async fn command_line_lists_shows_watches_and_reports_refusals_with_exit_codes() {
    let emu = Emulator::shared();
    let bucket = bucket().await;
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let (_, a) = svc
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(&bucket, "Completed", 3),
        )
        .await;
    let id = a["id"].as_str().unwrap().to_string();

    let watch_svc_url = format!("http://{}", svc.addr);
    let watch_id = id.clone();
    let watch = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_sagemaker-executor"))
            .args([
                "runs",
                "watch",
                &watch_id,
                "--interval-ms",
                "50",
                "--url",
                &watch_svc_url,
            ])
            .env("EXECUTOR_LOG", "warn")
            .output()
            .unwrap()
    });
    let out = watch.await.unwrap();
    let watched = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "watch exits 0 when the run is Done:\n{watched}"
    );
    for t in [
        "- -> Uploading",
        "Uploading -> Submitted",
        "Submitted -> Polling",
        "Polling -> Done",
    ] {
        assert!(watched.contains(t), "{t} missing:\n{watched}");
    }

    let (code, table, _) = cli(&svc, &["list"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATE") && lines[0].contains("LAST ERROR"),
        "{table}"
    );
    assert!(
        lines[1].starts_with(&id) && lines[1].contains("Done"),
        "{table}"
    );
    assert_eq!(
        lines[0].find("KIND"),
        lines[1].find("training"),
        "columns are aligned:\n{table}"
    );

    let (code, json_out, _) = cli(&svc, &["list", "--json", "--state", "Done"]);
    assert_eq!(code, 0);
    let page: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(page["runs"][0]["id"], id.as_str());

    let (code, shown, _) = cli(&svc, &["show", &id]);
    assert_eq!(code, 0);
    assert!(shown.contains("state            Done"), "{shown}");
    assert!(shown.contains("Polling -> Done"), "{shown}");
    let (_, shown_json, _) = cli(&svc, &["show", &id, "--json"]);
    let run: Value = serde_json::from_str(&shown_json).unwrap();
    assert_eq!(run["state"], "Done");

    let (code, _, err) = cli(&svc, &["retry", &id, "--reason", "again"]);
    assert_eq!(code, 3, "a refused request exits 3");
    assert!(err.contains("409"), "{err}");
    let (code, _, _) = cli(&svc, &["cancel", "not-a-run"]);
    assert_eq!(code, 3);
    let out = Command::new(env!("CARGO_BIN_EXE_sagemaker-executor"))
        .args(["runs", "list", "--url", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "an unreachable service exits 1");
}

#[tokio::test]
async fn watch_exits_4_when_the_run_is_cancelled() {
    let emu = Emulator::shared();
    let bucket = bucket().await;
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let (_, a) = svc
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(&bucket, "Completed", 100_000),
        )
        .await;
    let id = a["id"].as_str().unwrap().to_string();
    svc.wait_run(&id, "Polling", |r| r["state"] == "Polling")
        .await;
    let (code, out, _) = cli(&svc, &["cancel", &id, "--reason", "wrong data"]);
    assert_eq!(code, 0);
    assert!(out.contains("cancel requested"), "{out}");
    let (code, _, err) = cli(&svc, &["watch", &id, "--interval-ms", "50"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("Cancelled"), "{err}");
    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    assert!(
        history(&run)
            .iter()
            .any(|e| e["detail"] == "cancel requested by anonymous: wrong data")
    );
}

/// One raw request; the reply's status, Content-Type and JSON body (Null when not JSON).
async fn raw(
    svc: &Service,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Value) {
    let mut req = support::client().request(method, svc.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ct, r.json().await.unwrap_or(Value::Null))
}

/// A request refused before any handler, its status, and the operation that documents it.
struct Rejection<'a> {
    method: reqwest::Method,
    path: &'a str,
    content_type: Option<&'a str>,
    body: &'a [u8],
    want: u16,
    operation: Option<(&'a str, &'a str)>,
}

impl<'a> Rejection<'a> {
    fn new(
        method: reqwest::Method,
        path: &'a str,
        content_type: Option<&'a str>,
        body: &'a [u8],
        want: u16,
        operation: Option<(&'a str, &'a str)>,
    ) -> Self {
        Rejection {
            method,
            path,
            content_type,
            body,
            want,
            operation,
        }
    }

    fn get(path: &'a str, want: u16, operation: Option<(&'a str, &'a str)>) -> Self {
        Self::new(reqwest::Method::GET, path, None, b"", want, operation)
    }
}

#[tokio::test]
async fn rejections_made_before_any_handler_are_documented_json_errors() {
    use reqwest::Method;
    let s = Scratch::new();
    let mut cfg = s.config(Emulator::shared().url());
    cfg.extra_env
        .push(("EXECUTOR_MAX_BODY_BYTES".into(), "4096".into()));
    let svc = Service::start(cfg);
    let (_, doc) = svc.get("/openapi.json").await;
    let run = uuid::Uuid::new_v4();
    let cancel = format!("/api/v1/runs/{run}/cancel");
    let op_cancel = Some(("/api/v1/runs/{id}/cancel", "post"));
    let json = Some("application/json");
    let cases = [
        Rejection::get("/no/such/route", 404, None),
        Rejection::new(Method::DELETE, "/healthz", None, b"", 405, None),
        Rejection::new(
            Method::POST,
            &cancel,
            Some("text/plain"),
            b"{}",
            415,
            op_cancel,
        ),
        Rejection::new(Method::POST, &cancel, None, b"{}", 415, op_cancel),
        Rejection::new(Method::POST, &cancel, json, b"{not json", 400, op_cancel),
        Rejection::new(Method::POST, &cancel, json, &[b' '; 5000], 413, op_cancel),
        Rejection::get(
            "/api/v1/runs?limit=many",
            400,
            Some(("/api/v1/runs", "get")),
        ),
    ];
    for Rejection {
        method,
        path,
        content_type: ct,
        body,
        want,
        operation,
    } in cases
    {
        let what = format!("{method} {path} ({ct:?})");
        let (status, content_type, reply) = raw(&svc, method, path, ct, body.to_vec()).await;
        assert_eq!(status, want, "{what}: {reply}");
        assert!(
            content_type.starts_with("application/json"),
            "{what}: {content_type}"
        );
        let keys: Vec<&String> = reply.as_object().expect("a JSON object").keys().collect();
        assert!(
            reply["error"].is_string() && keys.iter().all(|k| *k == "error" || *k == "field"),
            "{what}: {reply}"
        );
        if let Some((p, m)) = operation {
            let documented = &doc["paths"][p][m]["responses"][want.to_string()];
            assert_eq!(
                documented["content"]["application/json; charset=utf-8"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{what}: status {want} is not documented for {m} {p}"
            );
        }
    }
}

#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let s = Scratch::new();
    let svc = Service::start(s.config(Emulator::shared().url()));
    let served = support::client()
        .get(svc.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap();
    assert!(
        served == committed,
        "/openapi.json differs from openapi/openapi.json"
    );
    let docs = support::client()
        .get(svc.url("/docs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        docs.contains(committed.trim_end()),
        "Swagger UI shows the committed document"
    );
}

#[tokio::test]
async fn refusals_of_the_token_check_are_documented_json_errors() {
    const SUBMITTER: &str = "submitter-token-0123456789";
    let s = Scratch::new();
    let mut cfg = s.config(Emulator::shared().url());
    cfg.extra_env
        .push(("EXECUTOR_SUBMITTER_TOKEN".into(), SUBMITTER.into()));
    let svc = Service::start(cfg);
    let (_, doc) = svc.get("/openapi.json").await;
    let retry = format!("/api/v1/runs/{}/retry", uuid::Uuid::new_v4());
    for (path, token, want) in [
        ("/api/v1/runs", None, 401),
        (retry.as_str(), None, 401),
        (retry.as_str(), Some(SUBMITTER), 403),
    ] {
        let mut req = support::client()
            .post(svc.url(path))
            .header("Content-Type", "application/json")
            .body("{}");
        let operation = if path == "/api/v1/runs" {
            req = support::client().get(svc.url(path));
            ("/api/v1/runs", "get")
        } else {
            ("/api/v1/runs/{id}/retry", "post")
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let (status, reply) = support::reply(req.send().await.unwrap()).await;
        assert_eq!(status, want, "{path}: {reply}");
        assert!(reply["error"].is_string(), "{path}: {reply}");
        let (p, m) = operation;
        assert_eq!(
            doc["paths"][p][m]["responses"][want.to_string()]["content"]["application/json; charset=utf-8"]
                ["schema"]["$ref"],
            "#/components/schemas/ErrorBody",
            "{m} {p}: {want} is not documented"
        );
    }
}

/// Two unfinished changes to one endpoint are never allowed (migrations/0006): retrying a Failed
/// deployment while another deployment of the same endpoint is still running is a 409 that names
/// the other run, and the Failed run stays as it was.
#[tokio::test]
async fn retry_of_a_deployment_while_another_change_to_its_endpoint_runs_is_409_naming_it() {
    let emu = Emulator::shared();
    let base = unique("opdep");
    emu.sagemaker(
        "CreateModel",
        json!({"ModelName": base, "ExecutionRoleArn": support::ROLE,
               "PrimaryContainer": {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"}}),
    )
    .await;
    emu.sagemaker(
        "CreateEndpointConfig",
        json!({"EndpointConfigName": base, "ProductionVariants": [{"VariantName": "v1",
               "ModelName": base, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]}),
    )
    .await;
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let path = format!("/api/service/v1/endpoints/{base}-ep/deploy_model");

    // The first deployment names a config that does not exist: SageMaker refuses, the run fails.
    let (_, first) = svc
        .post(
            &path,
            &json!({"EndpointConfigName": format!("{base}-missing")}),
        )
        .await;
    let first = first["id"].as_str().unwrap().to_string();
    assert_eq!(svc.wait_terminal(&first, WAIT).await["state"], "Failed");

    // A second deployment of the same endpoint stays Creating for a long time.
    let (code, second) = svc
        .post(
            &path,
            &json!({"EndpointConfigName": base, "Tags": {"_emulator_polls": "100000"}}),
        )
        .await;
    assert_eq!(code, 202, "{second}");
    let second = second["id"].as_str().unwrap().to_string();

    let (code, err) = svc
        .post(&format!("/api/v1/runs/{first}/retry"), &json!({}))
        .await;
    assert_eq!(code, 409, "{err}");
    assert!(
        err["error"].as_str().unwrap_or("").contains(&second),
        "the refusal names the other run: {err}"
    );
    let (_, run) = svc.get(&format!("/api/v1/runs/{first}")).await;
    assert_eq!(run["state"], "Failed", "{run}");
}
