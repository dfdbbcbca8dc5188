//! AWS misbehaving: through the fault-injecting proxy, a third of all AWS calls are throttled,
//! answered 500/503, or have their connection dropped (before or after the emulator saw them).
//! Every run must still reach Done, with exactly one training job each.

mod support;

use serde_json::json;
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
