//! Status checks never fail a run whose job may still run (DESIGN.md invariant 4), against the
//! real binary, the emulator and the fault proxy: a DescribeTrainingJob that is throttled, refused
//! (AccessDenied) or answered with expired credentials for longer than the retry budget keeps the
//! run following its job, shown as degraded (run view, `?degraded=true`, a metric), with the
//! first and the latest failure in the history; effects keep their bounded budget; an auth error
//! makes a connection-backed run look its connection up again; and a run that failed while its
//! job may still run can be cancelled, its stop reaching AWS.

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::fake_backend::FakeBackend;
use support::fault_proxy::{Fault, FaultPlan, FaultProxy};
use support::{Emulator, Scratch, Service, client, reply, training_body, unique};

const WAIT: Duration = Duration::from_secs(60);

/// A service behind a fresh fault proxy, with short backoffs (the policy's shape unchanged):
/// effects retry from 20 ms, failed status checks back off to at most 200 ms.
async fn setup(prefix: &str) -> (FaultProxy, Scratch, Service, String) {
    let emu = Emulator::shared();
    let bucket = unique(prefix);
    emu.create_bucket(&bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let scratch = Scratch::new();
    let mut config = scratch.config(proxy.url());
    config.extra_env.extend([
        ("EXECUTOR_RETRY_BASE_MS".into(), "20".into()),
        ("EXECUTOR_OBSERVE_MAX_DELAY_MS".into(), "200".into()),
    ]);
    let svc = Service::start(config);
    (proxy, scratch, svc, bucket)
}

/// Submits a training run whose job stays InProgress for `polls` describes, then `outcome`.
async fn submit(svc: &Service, bucket: &str, outcome: &str, polls: u32) -> (String, String) {
    let (code, a) = svc
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(bucket, outcome, polls),
        )
        .await;
    assert_eq!(code, 202, "{a}");
    (
        a["id"].as_str().unwrap().to_string(),
        a["name"].as_str().unwrap().to_string(),
    )
}

/// Waits until the proxy has injected at least `n` faults into `op`.
async fn until_faulted(proxy: &FaultProxy, op: &str, n: u64) {
    let deadline = Instant::now() + WAIT;
    while proxy.fault_count(op) < n {
        assert!(
            Instant::now() < deadline,
            "only {} faults injected into {op}: {:?}",
            proxy.fault_count(op),
            proxy.faults()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The history rows recording a failed attempt in `state`.
fn failures_in<'a>(run: &'a Value, state: &str) -> Vec<&'a Value> {
    run["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["from_state"] == state && e["to_state"] == state && e["error"].is_string())
        .collect()
}

fn listed(page: &Value, id: &str) -> bool {
    page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == id)
}

#[tokio::test]
async fn a_describe_throttled_past_the_retry_budget_keeps_the_run_following_its_job_degraded() {
    let (proxy, _scratch, svc, bucket) = setup("throttled").await;
    let (id, name) = submit(&svc, &bucket, "Completed", 20).await;
    svc.wait_run(&id, "Polling", |r| r["state"] == "Polling")
        .await;
    proxy.set_plan(FaultPlan::always(Fault::Throttle).only(["DescribeTrainingJob"]));
    // The old budget was 8 attempts; twice that many failed checks later the run still follows.
    until_faulted(&proxy, "DescribeTrainingJob", 16).await;

    let run = svc
        .wait_run(&id, "a degraded view", |r| {
            r["degraded"]["attempts"].as_i64().unwrap_or(0) >= 16
        })
        .await;
    assert_eq!(run["state"], "Polling", "{run}");
    let degraded = &run["degraded"];
    assert!(degraded["since"].is_string(), "{run}");
    assert!(
        degraded["last_error"]
            .as_str()
            .unwrap()
            .contains("ThrottlingException"),
        "{run}"
    );
    let streak = failures_in(&run, "Polling");
    assert_eq!(
        streak.len(),
        2,
        "the first and the latest failure, not a row per attempt: {run}"
    );
    assert_eq!(streak[0]["repeats"], 1, "{run}");
    assert_eq!(
        streak
            .iter()
            .map(|e| e["repeats"].as_i64().unwrap())
            .sum::<i64>(),
        degraded["attempts"].as_i64().unwrap(),
        "the rows account for every failed check: {run}"
    );
    assert_eq!(streak[1]["attempt"], degraded["attempts"], "{run}");

    let (code, page) = svc.get("/api/v1/runs?degraded=true").await;
    assert_eq!(code, 200, "{page}");
    assert!(listed(&page, &id), "the filter lists it: {page}");
    assert_eq!(page["runs"][0]["degraded"]["since"], degraded["since"]);
    let (_, healthy) = svc.get("/api/v1/runs?degraded=false").await;
    assert!(!listed(&healthy, &id), "{healthy}");
    assert_eq!(
        svc.metric("executor_degraded_runs{kind=\"training\"}")
            .await,
        1
    );

    // AWS answers again: the run sees its job to the end and is no longer degraded.
    proxy.clear_plan();
    let st = svc.wait_terminal(&id, WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    assert!(run["degraded"].is_null(), "{run}");
    let (_, page) = svc.get("/api/v1/runs?degraded=true").await;
    assert!(!listed(&page, &id), "{page}");
    assert_eq!(
        svc.metric("executor_degraded_runs{kind=\"training\"}")
            .await,
        0
    );
    let stats = Emulator::shared().training_stats(&name).await;
    assert_eq!(stats["creates"], 1, "{stats}");
}

#[tokio::test]
async fn refused_or_expired_credentials_on_describe_do_not_fail_the_run_but_on_create_they_do() {
    let (proxy, _scratch, svc, bucket) = setup("denied").await;

    // An effect refused: the run fails with AWS's message, as before.
    proxy.set_plan(FaultPlan::always(Fault::AccessDenied).only(["CreateTrainingJob"]));
    let (refused, _) = submit(&svc, &bucket, "Completed", 1).await;
    let st = svc.wait_terminal(&refused, WAIT).await;
    assert_eq!(st["state"], "Failed", "{st}");
    let (_, run) = svc.get(&format!("/api/v1/runs/{refused}")).await;
    assert!(
        run["last_error"]
            .as_str()
            .unwrap()
            .contains("AccessDeniedException"),
        "{run}"
    );
    assert!(run["degraded"].is_null(), "{run}");

    // A status check refused, then answered with expired credentials: the job is followed.
    proxy.clear_plan();
    let (id, _) = submit(&svc, &bucket, "Completed", 20).await;
    svc.wait_run(&id, "Polling", |r| r["state"] == "Polling")
        .await;
    proxy.set_plan(
        FaultPlan::new(1, vec![Fault::AccessDenied, Fault::ExpiredToken])
            .only(["DescribeTrainingJob"]),
    );
    until_faulted(&proxy, "DescribeTrainingJob", 12).await;
    let run = svc
        .wait_run(&id, "degraded", |r| r["degraded"].is_object())
        .await;
    assert_eq!(run["state"], "Polling", "{run}");
    let last = run["degraded"]["last_error"].as_str().unwrap();
    assert!(
        last.contains("AccessDeniedException") || last.contains("ExpiredTokenException"),
        "{run}"
    );
    proxy.clear_plan();
    let st = svc.wait_terminal(&id, WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
}

/// A service behind a fault proxy with connection lookup toward a fake Essedum backend (answers
/// reused for `cache_secs`), and a training run started with connection (p1, a1), in Polling.
async fn connection_backed_run(
    prefix: &str,
    cache_secs: u32,
) -> (FaultProxy, FakeBackend, Scratch, Service, String) {
    let emu = Emulator::shared();
    let bucket = unique(prefix);
    emu.create_bucket(&bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let backend = FakeBackend::start().await;
    backend.set_connection(
        "p1",
        "a1",
        json!({"accessKey": "AKIACONNECTION", "secretKey": "connection-secret", "region": "us-east-1"}),
    );
    let scratch = Scratch::new();
    let mut config = scratch.config(proxy.url());
    config.extra_env.extend([
        ("EXECUTOR_RETRY_BASE_MS".into(), "20".into()),
        ("EXECUTOR_OBSERVE_MAX_DELAY_MS".into(), "200".into()),
        ("EXECUTOR_CONNECTION_ALLOW".into(), backend.base_url()),
        (
            "EXECUTOR_CONNECTION_CACHE_SECS".into(),
            cache_secs.to_string(),
        ),
    ]);
    let svc = Service::start(config);
    let r = client()
        .post(svc.url(
            "/api/service/v1/pipelines/training/train?adapter_instance=a1&project=p1&isInstance=false",
        ))
        .header("Referer", format!("{}ui/pipelines", backend.base_url()))
        .json(&training_body(&bucket, "Completed", 20))
        .send()
        .await
        .unwrap();
    let (code, a) = reply(r).await;
    assert_eq!(code, 202, "{a}");
    let id = a["id"].as_str().unwrap().to_string();
    svc.wait_run(&id, "Polling", |r| r["state"] == "Polling")
        .await;
    (proxy, backend, scratch, svc, id)
}

#[tokio::test]
async fn an_auth_error_makes_a_connection_backed_run_look_its_connection_up_again() {
    // Answers would be reused for five minutes: only the auth error can make a new lookup.
    let (proxy, backend, _scratch, svc, id) = connection_backed_run("relookup", 300).await;
    let before = backend.calls();

    proxy.set_plan(FaultPlan::always(Fault::ExpiredToken).only(["DescribeTrainingJob"]));
    until_faulted(&proxy, "DescribeTrainingJob", 1).await;
    proxy.clear_plan();
    let st = svc.wait_terminal(&id, WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
    assert!(
        backend.calls() > before,
        "the connection was looked up again after AWS refused its credentials ({} lookups)",
        backend.calls()
    );
}

#[tokio::test]
async fn a_run_failed_while_its_job_may_run_can_be_cancelled_and_its_stop_reaches_aws() {
    let (proxy, _scratch, svc, bucket) = setup("rearm").await;
    let (id, name) = submit(&svc, &bucket, "Completed", 1000).await;
    svc.wait_run(&id, "Polling", |r| r["state"] == "Polling")
        .await;
    // The stop is throttled past its budget: an effect gives up, the run is Failed, the job runs.
    proxy.set_plan(FaultPlan::always(Fault::Throttle).only(["StopTrainingJob"]));
    let (code, reply) = svc
        .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 202, "{reply}");
    let st = svc.wait_terminal(&id, WAIT).await;
    assert_eq!(st["state"], "Failed", "{st}");
    let stats = Emulator::shared().training_stats(&name).await;
    assert_eq!(
        (stats["stops"].as_u64(), stats["status"].as_str()),
        (Some(0), Some("InProgress")),
        "{stats}"
    );

    proxy.clear_plan();
    let (code, reply) = svc
        .post(
            &format!("/api/v1/runs/{id}/cancel"),
            &json!({"reason": "it still bills"}),
        )
        .await;
    assert_eq!(
        code, 202,
        "a Failed run whose job may run can be cancelled: {reply}"
    );
    assert_eq!(reply["state"], "Cancelling", "{reply}");
    let st = svc.wait_terminal(&id, WAIT).await;
    assert_eq!(st["state"], "Cancelled", "{st}");
    let stats = Emulator::shared().training_stats(&name).await;
    assert_eq!(stats["stops"], 1, "the stop reached AWS: {stats}");
}

#[tokio::test]
async fn a_run_failed_by_sagemakers_own_outcome_cannot_be_cancelled() {
    let (_proxy, _scratch, svc, bucket) = setup("outcome").await;
    let (id, name) = submit(&svc, &bucket, "Failed", 1).await;
    let st = svc.wait_terminal(&id, WAIT).await;
    assert_eq!(st["state"], "Failed", "{st}");
    let (code, reply) = svc
        .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 409, "{reply}");
    let stats = Emulator::shared().training_stats(&name).await;
    assert_eq!(stats["stops"], 0, "{stats}");
}

#[tokio::test]
async fn an_essedum_backend_outage_past_the_retry_budget_does_not_fail_a_following_run() {
    // Every step looks the connection up (no reuse), so every step meets the outage.
    let (_proxy, backend, _scratch, svc, id) = connection_backed_run("outage", 0).await;
    backend.fail_next(1000, 503);
    // Past the old budget of 8 attempts, the run still follows its job.
    let run = svc
        .wait_run(&id, "the run degraded by the outage", |r| {
            r["degraded"]["attempts"].as_i64().unwrap_or(0) >= 12 || r["state"] != "Polling"
        })
        .await;
    assert_eq!(run["state"], "Polling", "{run}");
    assert!(
        run["degraded"]["last_error"]
            .as_str()
            .unwrap()
            .contains("Essedum backend unreachable"),
        "{run}"
    );
    backend.fail_next(0, 503);
    let st = svc.wait_terminal(&id, WAIT).await;
    assert_eq!(st["state"], "Done", "the backend is back: {st}");
}

#[tokio::test]
async fn the_backends_stop_of_a_script_job_failed_while_it_may_run_reaches_aws() {
    let emu = Emulator::shared();
    let bucket = unique("rearm-script");
    emu.create_bucket(&bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let scratch = Scratch::new();
    let mut config = scratch.config(proxy.url());
    config.extra_env.extend([
        ("EXECUTOR_RETRY_BASE_MS".into(), "20".into()),
        ("EXECUTOR_OBSERVE_MAX_DELAY_MS".into(), "200".into()),
        ("EXECUTOR_SCRIPT_ROLE_ARN".into(), support::ROLE.into()),
        (
            "EXECUTOR_SCRIPT_IMAGE".into(),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/python:3.11".into(),
        ),
    ]);
    let svc = Service::start(config);
    let folder = "leo1311/remote/STOP/1/Input";
    emu.put_object(&bucket, &format!("{folder}/train.py"), "print(1)\n")
        .await;
    // The backend's body (RemoteBody.java), its job kept running by the emulator.
    let (code, a) = svc
        .post(
            "/execute",
            &json!({
                "bucket": bucket, "project_id": "leo1311", "name": "STOP", "version": "1",
                "credentials": {"endpoint": proxy.url(), "access_key": "test", "secret_key": "test"},
                "input_artifacts": folder, "command": "python train.py", "storage": "s3",
                "environment": {"_emulator_outcome": "Completed", "_emulator_polls": "100000"},
            }),
        )
        .await;
    assert_eq!(code, 201, "{a}");
    let id = a["task_id"].as_str().unwrap().to_string();
    let run = svc
        .wait_run(&id, "Polling", |r| r["state"] == "Polling")
        .await;
    let name = run["context"]["job_name"].as_str().unwrap().to_string();
    // A stop throttled past its budget fails the run while the job runs on.
    proxy.set_plan(FaultPlan::always(Fault::Throttle).only(["StopProcessingJob"]));
    let (code, reply) = svc.get(&format!("/execute/{id}/stop")).await;
    assert_eq!(
        (code, &reply["Task cancelled"]),
        (200, &json!(true)),
        "{reply}"
    );
    let st = svc.wait_terminal(&id, WAIT).await;
    assert_eq!(st["state"], "Failed", "{st}");
    assert_eq!(emu.job_stats("processing_jobs", &name).await["stops"], 0);

    // The backend asks again: the Failed run is re-armed and the stop reaches AWS.
    proxy.clear_plan();
    let (code, reply) = svc.get(&format!("/execute/{id}/stop")).await;
    assert_eq!(
        (code, &reply["Task cancelled"]),
        (200, &json!(true)),
        "{reply}"
    );
    let st = svc.wait_terminal(&id, WAIT).await;
    assert_eq!(st["state"], "Cancelled", "{st}");
    let stats = emu.job_stats("processing_jobs", &name).await;
    assert_eq!(stats["stops"], 1, "the stop reached AWS: {stats}");
}
