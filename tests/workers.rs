//! Worker identity: several processes on one database, with the same configured worker id, never
//! run one step twice, and processes started together on a fresh database all start.

mod support;

use std::time::{Duration, Instant};
use support::fault_proxy::{Fault, FaultPlan, FaultProxy};
use support::{Emulator, Scratch, Service, training_body, unique};

/// Waits until `cond` holds, polling; panics with `what` after `timeout`.
async fn until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_second_process_with_the_same_worker_id_never_reruns_a_step_in_flight() {
    let emu = Emulator::shared();
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let bucket = unique("workers");
    emu.create_bucket(&bucket).await;
    let scratch = Scratch::new();
    // Both processes use the default worker id (`local`), as two copies of one unit file would.
    let config = scratch.config(proxy.url());
    // The first process's CreateTrainingJob is held in flight long enough for a second process
    // to start up on the same database.
    proxy.set_plan(
        FaultPlan::always(Fault::Delay(Duration::from_secs(4))).only(["CreateTrainingJob"]),
    );
    let first = Service::start(config.clone());
    let (code, accepted) = first
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(&bucket, "Completed", 2),
        )
        .await;
    assert_eq!(code, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap();
    let name = accepted["name"].as_str().unwrap();
    until(
        "the first process to call CreateTrainingJob",
        Duration::from_secs(30),
        || proxy.call_count("CreateTrainingJob") == 1,
    )
    .await;

    // Each process leases under its own instance identity: the configured id plus a nonce.
    let (_, run) = first.get(&format!("/api/v1/runs/{id}")).await;
    let owner = run["lease_owner"].as_str().unwrap_or_default().to_string();
    assert!(owner.starts_with("local#"), "{run}");
    assert!(
        first.stderr.all().iter().any(|l| l.contains(&owner)),
        "the start-up log names the instance {owner}"
    );

    let second = Service::start(config);

    let st = second.wait_terminal(id, Duration::from_secs(60)).await;
    assert_eq!(st["state"], "Done", "{st}");
    assert_eq!(
        proxy.call_count("CreateTrainingJob"),
        1,
        "the step in flight ran once: {:?}",
        proxy.calls()
    );
    let stats = emu.training_stats(name).await;
    assert_eq!(stats["creates"], 1, "exactly one training job: {stats}");
    assert_eq!(stats["duplicate_creates"], 0, "{stats}");
    drop(first);
}

#[tokio::test]
async fn two_processes_started_at_once_on_a_fresh_database_both_become_ready() {
    let emu = Emulator::shared();
    for _ in 0..3 {
        let scratch = Scratch::new();
        let config = scratch.config(emu.url());
        let (a, b) = (config.clone(), config);
        let one = std::thread::spawn(move || Service::start(a));
        let two = std::thread::spawn(move || Service::start(b));
        let (one, two) = (one.join().unwrap(), two.join().unwrap());
        for svc in [&one, &two] {
            let (code, body) = svc.get("/readyz").await;
            assert_eq!(code, 200, "{body}");
        }
    }
}

#[tokio::test]
async fn a_stopped_instance_is_forgotten_and_a_worker_id_with_a_hash_is_refused() {
    let emu = Emulator::shared();
    let scratch = Scratch::new();
    let mut svc = Service::start(scratch.config(emu.url()));
    let status = svc.terminate();
    assert!(
        status.success(),
        "SIGTERM right after start-up stops cleanly: {status:?}"
    );
    let left = support::store_count(&scratch, "SELECT COUNT(*) FROM instances").await;
    assert_eq!(left, 0, "a graceful stop removes the instance's record");

    // '#' separates the worker id from the per-start nonce.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sagemaker-executor"))
        .arg("serve")
        .env_clear()
        .env("EXECUTOR_DATABASE_URL", scratch.store_url())
        .env("EXECUTOR_WORKER_ID", "a#b")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("EXECUTOR_WORKER_ID"), "{err}");
}

#[tokio::test]
async fn a_peer_takes_over_a_live_instances_run_only_after_that_instance_dies() {
    let emu = Emulator::shared();
    let bucket = unique("workers");
    emu.create_bucket(&bucket).await;
    let scratch = Scratch::new();
    let mut config = scratch.config(emu.url());
    config
        .extra_env
        .push(("EXECUTOR_LEASE_SECS".into(), "3".into()));
    let mut held = config.clone();
    // The first process creates the job, then stops at the failpoint, still holding the lease.
    held.failpoints = vec!["training.after_create".into()];
    let mut first = Service::start(held);
    let (code, accepted) = first
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(&bucket, "Completed", 2),
        )
        .await;
    assert_eq!(code, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_string();
    let name = accepted["name"].as_str().unwrap().to_string();
    first
        .stderr
        .wait_for("the failpoint", Duration::from_secs(30), |l| {
            l == "FAILPOINT training.after_create"
        });

    let second = Service::start(config);
    let (_, seen) = second.get(&format!("/api/v1/runs/{id}")).await;
    let holder = seen["lease_owner"]
        .as_str()
        .unwrap_or_else(|| {
            panic!("still leased by the first process after the second started: {seen}")
        })
        .to_string();
    let until = seen["lease_until"].as_str().unwrap().to_string();
    // The holder renews its lease while the second process runs, and keeps the run.
    let renewed = second
        .wait_run(&id, "the holder to renew its lease", |r| {
            r["lease_until"]
                .as_str()
                .is_some_and(|u| u > until.as_str())
        })
        .await;
    assert_eq!(renewed["lease_owner"], holder.as_str(), "{renewed}");
    assert_eq!(renewed["state"], "Submitted", "{renewed}");

    first.kill();
    let st = second.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(st["state"], "Done", "{st}");
    let (_, run) = second.get(&format!("/api/v1/runs/{id}")).await;
    let adopted = run["history"].as_array().unwrap().iter().any(|e| {
        e["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("adopted existing training job"))
    });
    assert!(
        adopted,
        "the peer adopted the job the dead holder created: {run}"
    );
    let stats = emu.training_stats(&name).await;
    assert_eq!(stats["creates"], 1, "exactly one training job: {stats}");
}
