//! `/metrics` reflects a known sequence of runs.

mod support;

use std::time::Duration;
use support::fault_proxy::{Fault, FaultPlan, FaultProxy};
use support::{Emulator, Scratch, Service, client, training_body, unique};

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_reflect_a_known_sequence_of_runs() {
    let emu = Emulator::shared();
    let bucket = unique("metrics");
    emu.create_bucket(&bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    // Exactly one throttled CreateTrainingJob: the first; the rotation then lets every other through.
    let mut kinds = vec![Fault::Throttle];
    kinds.extend(std::iter::repeat_n(Fault::Delay(Duration::ZERO), 1000));
    proxy.set_plan(FaultPlan::new(1, kinds).only(["CreateTrainingJob"]));
    let s = Scratch::new();
    let mut c = s.config(proxy.url());
    c.extra_env
        .push(("EXECUTOR_RETRY_BASE_MS".into(), "5".into()));
    let svc = Service::start(c);

    let mut ids = vec![];
    for outcome in ["Completed", "Completed", "Failed"] {
        let (_, a) = svc
            .post(
                "/api/service/v1/pipelines/training/train",
                &training_body(&bucket, outcome, 1),
            )
            .await;
        ids.push(a["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        svc.wait_terminal(id, Duration::from_secs(60)).await;
    }
    let r = client().get(svc.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();

    assert_eq!(
        value(&text, "executor_runs{kind=\"training\",state=\"Done\"}"),
        2.0
    );
    assert_eq!(
        value(&text, "executor_runs{kind=\"training\",state=\"Failed\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "executor_oldest_unfinished_run_age_seconds"),
        0.0
    );
    assert_eq!(
        value(
            &text,
            "executor_transitions_total{kind=\"training\",from=\"Uploading\",to=\"Submitted\"}"
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            "executor_transitions_total{kind=\"training\",from=\"Polling\",to=\"Done\"}"
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            "executor_transitions_total{kind=\"training\",from=\"Polling\",to=\"Failed\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "executor_aws_calls_total{operation=\"CreateTrainingJob\",outcome=\"ok\"}"
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            "executor_aws_calls_total{operation=\"CreateTrainingJob\",outcome=\"retryable\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "executor_aws_calls_total{operation=\"PutObject\",outcome=\"ok\"}"
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            "executor_step_errors_total{class=\"retryable\",outcome=\"retried\"}"
        ),
        1.0
    );
    assert!(
        value(
            &text,
            "executor_step_duration_seconds_count{kind=\"training\",state=\"Polling\"}"
        ) >= 6.0
    );
    assert_eq!(value(&text, "executor_lease_takeovers_total"), 0.0);
    // Every step's transition went through the group commit.
    let transactions = value(&text, "executor_store_group_commits_total");
    let operations = value(&text, "executor_store_group_operations_total");
    assert!(transactions >= 1.0, "{text}");
    assert!(operations >= transactions, "{text}");
    // Which replica this is: its lease owner id, worker id and store.
    let me = text
        .lines()
        .find(|l| l.starts_with("executor_instance_info{"))
        .unwrap_or_else(|| panic!("no executor_instance_info in\n{text}"));
    let store = if support::on_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    assert!(
        me.contains("worker_id=\"local\"") && me.contains(&format!("store=\"{store}\"")),
        "{me}"
    );
    assert!(
        me.contains("instance=\"local#") && me.ends_with("} 1"),
        "{me}"
    );
}
