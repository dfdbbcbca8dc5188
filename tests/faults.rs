//! AWS misbehaving: through the fault-injecting proxy, a third of all AWS calls are throttled,
//! answered 500/503, or have their connection dropped (before or after the emulator saw them).
//! Every run must still reach Done, with exactly one training job each.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::fault_proxy::{Fault, FaultPlan, FaultProxy};
use support::{Emulator, Scratch, Service, training_body, unique};

#[tokio::test]
async fn runs_reach_done_while_a_third_of_aws_calls_fail() {
    let emu = Emulator::shared();
    let bucket = unique("flaky");
    emu.create_bucket(&bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    proxy.set_plan(FaultPlan::new(
        3,
        vec![
            Fault::Throttle,
            Fault::ServerError,
            Fault::ServiceUnavailable,
            Fault::Drop,
            Fault::DropResponse,
        ],
    ));
    let scratch = Scratch::new();
    let mut config = scratch.config(proxy.url());
    // Keep the engine's backoff short so the test stays quick; the policy shape is unchanged.
    config
        .extra_env
        .push(("EXECUTOR_RETRY_BASE_MS".into(), "20".into()));
    let svc = Service::start(config);

    let mut accepted = vec![];
    for _ in 0..6 {
        let (code, a) = svc
            .post(
                "/api/service/v1/pipelines/training/train",
                &training_body(&bucket, "Completed", 2),
            )
            .await;
        assert_eq!(code, 202, "{a}");
        accepted.push(a);
    }
    let mut retried = 0;
    for a in &accepted {
        let id = a["id"].as_str().unwrap();
        let st = svc.wait_terminal(id, Duration::from_secs(120)).await;
        assert_eq!(st["state"], "Done", "{st}");
        let stats = emu.training_stats(a["name"].as_str().unwrap()).await;
        assert_eq!(stats["creates"], 1, "{stats}");
        let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
        retried += run["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["error_class"] == json!("retryable"))
            .count();
    }
    eprintln!(
        "calls: {:?}; faults injected: {:?}; retried attempts: {retried}",
        proxy.calls(),
        proxy.faults()
    );
    assert!(
        proxy.total_faults() >= 6,
        "faults were injected: {:?}",
        proxy.faults()
    );
    assert!(proxy.fault_count("DescribeTrainingJob") + proxy.fault_count("CreateTrainingJob") > 0);
    assert!(
        retried > 0,
        "SageMaker faults show up as retried attempts in the history"
    );
}

/// Cancel with AWS refusing StopTrainingJob (IAM: AccessDenied, an HTTP 400
/// `AccessDeniedException`, as SageMaker answers): the run sends one stop, gets its refusal, and
/// goes back to following the job (Polling) with the cancel withdrawn and AWS's message as its
/// error. It never loops on the stop (it used to: hundreds of calls and history rows a second).
/// A second cancel is a new try: exactly one more stop.
#[tokio::test]
async fn a_stop_refused_with_access_denied_is_answered_once_and_the_job_followed() {
    let emu = Emulator::shared();
    let bucket = unique("deny");
    emu.create_bucket(&bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    proxy.set_plan(FaultPlan::always(Fault::AccessDenied).only(["StopTrainingJob"]));
    let scratch = Scratch::new();
    let mut config = scratch.config(proxy.url());
    config
        .extra_env
        .push(("EXECUTOR_RETRY_BASE_MS".into(), "20".into()));
    let svc = Service::start(config);
    // The job stays InProgress for a thousand describes: it outlives the test.
    let (code, a) = svc
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(&bucket, "Completed", 1000),
        )
        .await;
    assert_eq!(code, 202, "{a}");
    let id = a["id"].as_str().unwrap();
    svc.wait_run(id, "Polling", |r| r["state"] == "Polling")
        .await;

    let (code, reply) = svc
        .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 202, "{reply}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while proxy.call_count("StopTrainingJob") == 0 {
        assert!(std::time::Instant::now() < deadline, "no stop was sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Watch the run for a while: a loop shows here as more stops and history rows.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(
        proxy.call_count("StopTrainingJob"),
        1,
        "calls: {:?}",
        proxy.calls()
    );
    let history = run["history"].as_array().unwrap();
    assert!(
        history.len() <= 10,
        "history grows only by status changes: {} rows",
        history.len()
    );
    assert_eq!(run["state"], "Polling", "{run}");
    assert_eq!(run["cancel_requested"], false, "{run}");
    let last_error = run["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.contains("cancel refused") && last_error.contains("AccessDeniedException"),
        "{run}"
    );
    let refusal = history
        .iter()
        .find(|e| e["from_state"] == "Cancelling" && e["to_state"] == "Polling")
        .unwrap_or_else(|| panic!("the refusal is in the history: {run}"));
    assert!(
        refusal["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not authorized"),
        "AWS's own message: {refusal}"
    );
    assert!(
        emu.training_stats(a["name"].as_str().unwrap()).await["stops"]
            .as_u64()
            .unwrap_or(0)
            == 0,
        "the job was never stopped"
    );

    // Once the stop is allowed, a new cancel stops the job.
    proxy.clear_plan();
    let (code, reply) = svc
        .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 202, "{reply}");
    let st = svc.wait_terminal(id, Duration::from_secs(30)).await;
    assert_eq!(st["state"], "Cancelled", "{st}");
    assert_eq!(
        proxy.call_count("StopTrainingJob"),
        2,
        "{:?}",
        proxy.calls()
    );
}

/// A throttled StopTrainingJob is retried with the retry policy's backoff, even though the
/// cancel request is still pending (it used to make every retry due at once), and within its
/// budget: the run then fails with AWS's message.
#[tokio::test]
async fn a_throttled_stop_backs_off_within_the_retry_budget() {
    let emu = Emulator::shared();
    let bucket = unique("slowstop");
    emu.create_bucket(&bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    proxy.set_plan(FaultPlan::always(Fault::Throttle).only(["StopTrainingJob"]));
    let scratch = Scratch::new();
    let mut config = scratch.config(proxy.url());
    let base_ms = 10;
    config
        .extra_env
        .push(("EXECUTOR_RETRY_BASE_MS".into(), base_ms.to_string()));
    let svc = Service::start(config);
    let (code, a) = svc
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(&bucket, "Completed", 1000),
        )
        .await;
    assert_eq!(code, 202, "{a}");
    let id = a["id"].as_str().unwrap();
    svc.wait_run(id, "Polling", |r| r["state"] == "Polling")
        .await;
    let (code, reply) = svc
        .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 202, "{reply}");
    let st = svc.wait_terminal(id, Duration::from_secs(30)).await;
    assert_eq!(st["state"], "Failed", "{st}");
    // training.toml: max_attempts = 8, so the first try and 8 retries.
    assert_eq!(
        proxy.call_count("StopTrainingJob"),
        9,
        "{:?}",
        proxy.calls()
    );
    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    let last_error = run["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.contains("gave up after 9 attempts") && last_error.contains("Throttling"),
        "{last_error}"
    );
    let at = |e: &Value| chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).unwrap();
    let retries: Vec<&Value> = run["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["to_state"] == "Cancelling" && e["error_class"] == "retryable")
        .collect();
    // Identical attempts are collapsed: the first, and one latest row standing for the rest.
    assert_eq!(retries.len(), 2, "{run}");
    assert_eq!(
        retries
            .iter()
            .map(|e| e["repeats"].as_i64().unwrap())
            .sum::<i64>(),
        8,
        "{run}"
    );
    let waited = (at(retries[1]) - at(retries[0])).num_milliseconds();
    let floor: i64 = (0..7).map(|n| base_ms << n.min(6)).sum();
    assert!(
        waited >= floor,
        "retries 2 to 8 came {waited} ms after the first, under the backoff of {floor} ms"
    );
}
