//! Crash tests: the real binary is killed with SIGKILL at named failpoints, restarted on the same
//! database, and every run must reach the right end state with exactly one training job each.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::{Emulator, Scratch, Service, training_body, unique};

const RUNS: usize = 3;

/// Submits `RUNS` runs to a service armed with `failpoint`, waits until the process is parked at
/// it, kills it, restarts without failpoints and checks the end state in the store and emulator.
async fn crash_at(failpoint: &str, outcome: &str) -> (Scratch, Service, Vec<Value>) {
    let emu = Emulator::shared();
    let bucket = unique("crash");
    emu.create_bucket(&bucket).await;
    let scratch = Scratch::new();
    let mut config = scratch.config(emu.url());
    config.failpoints = vec![failpoint.to_string()];
    let svc = Service::start(config);

    let mut accepted = vec![];
    for _ in 0..RUNS {
        let (code, a) = svc
            .post(
                "/api/service/v1/pipelines/training/train",
                &training_body(&bucket, outcome, 2),
            )
            .await;
        assert_eq!(code, 202, "{a}");
        accepted.push(a);
    }
    let marker = format!("FAILPOINT {failpoint}");
    // Every run parks at the failpoint before the kill, so each of them crosses it.
    svc.stderr
        .wait_for_count(&marker, RUNS, Duration::from_secs(30), |l| l == marker);

    let svc = svc.kill_and_restart();
    let mut finals = vec![];
    for a in &accepted {
        let id = a["id"].as_str().unwrap();
        let name = a["name"].as_str().unwrap();
        let st = svc.wait_terminal(id, Duration::from_secs(60)).await;
        assert_eq!(
            st["state"],
            if outcome == "Completed" {
                "Done"
            } else {
                "Failed"
            },
            "{st}"
        );
        let stats = emu.training_stats(name).await;
        assert_eq!(
            stats["creates"], 1,
            "exactly one training job for {name}: {stats}"
        );
        let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
        finals.push(run);
    }
    assert_eq!(svc.run_count().await, RUNS, "no run lost, none invented");
    (scratch, svc, finals)
}

fn details(run: &Value) -> Vec<String> {
    run["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn killed_after_upload_before_commit_resumes_and_uploads_again_harmlessly() {
    let (_scratch, _svc, runs) = crash_at("training.after_upload", "Completed").await;
    for run in runs {
        assert!(
            details(&run)
                .iter()
                .any(|d| d.starts_with("staged input at")),
            "{run}"
        );
    }
}

#[tokio::test]
async fn killed_after_intent_commit_before_create_creates_the_job_once() {
    let (_scratch, _svc, runs) = crash_at("training.before_create", "Completed").await;
    for run in runs {
        assert!(
            details(&run)
                .iter()
                .any(|d| d.starts_with("create accepted for training job")),
            "{run}"
        );
    }
}

#[tokio::test]
async fn killed_right_after_create_adopts_the_existing_job() {
    let (_scratch, _svc, runs) = crash_at("training.after_create", "Completed").await;
    for run in runs {
        let d = details(&run);
        assert!(
            d.iter()
                .any(|d| d.starts_with("adopted existing training job")),
            "{d:?}"
        );
        assert!(
            !d.iter()
                .any(|d| d.starts_with("create accepted for training job")),
            "the create before the crash was never committed: {d:?}"
        );
        let name = run["name"].as_str().unwrap();
        let stats = Emulator::shared().training_stats(name).await;
        assert_eq!(
            stats["duplicate_creates"], 0,
            "describe-before-create: no second create at all"
        );
    }
}

#[tokio::test]
async fn killed_during_polling_resumes_polling_to_the_end() {
    let (_scratch, _svc, runs) = crash_at("training.during_polling", "Completed").await;
    for run in &runs {
        assert_eq!(run["state"], "Done");
        assert!(
            run["context"]["model_artifacts"]
                .as_str()
                .unwrap()
                .ends_with("model.tar.gz")
        );
    }
    let (_scratch, _svc, runs) = crash_at("training.during_polling", "Failed").await;
    for run in &runs {
        assert_eq!(run["last_error"], "AlgorithmError: emulated failure");
    }
}
