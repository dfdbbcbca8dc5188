//! `migrate-store` end to end: a service on SQLite with a finished run and a run whose job is
//! still running is stopped, the command copies its database to PostgreSQL, and a service on
//! PostgreSQL (the same secret key) shows the finished run as it was and finishes the other by
//! describing its job, never creating a second one. A second copy into the now non-empty
//! database is refused.

mod support;

use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use support::{Emulator, PgDatabase, Scratch, Service, training_body, unique};

fn migrate_store(from: &str, to: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sagemaker-executor"))
        .args(["migrate-store", "--from", from, "--to", to])
        .env_clear()
        .output()
        .unwrap()
}

/// The parts of a run's view a move must keep.
fn kept(run: &Value) -> Value {
    let events: Vec<Value> = run["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::json!([e["seq"], e["to_state"], e["at"], e["detail"]]))
        .collect();
    serde_json::json!({
        "state": run["state"], "kind": run["kind"], "request": run["request"],
        "context": run["context"], "created_at": run["created_at"], "events": events,
    })
}

#[tokio::test]
async fn a_sqlite_installation_moves_to_postgres_and_carries_on_where_it_stopped() {
    let emu = Emulator::shared();
    let bucket = unique("move");
    emu.create_bucket(&bucket).await;
    let scratch = Scratch::new();
    let mut config = scratch.config(emu.url());
    config.database_url = None; // this service is the SQLite installation being moved
    let mut old = Service::start(config.clone());
    let submit = "/api/service/v1/pipelines/training/train";
    let (code, done) = old
        .post(submit, &training_body(&bucket, "Completed", 1))
        .await;
    assert_eq!(code, 202, "{done}");
    let done_id = done["id"].as_str().unwrap().to_string();
    old.wait_terminal(&done_id, Duration::from_secs(60)).await;
    // A job that keeps running for many describes: stopped mid-Polling.
    let (code, running) = old
        .post(submit, &training_body(&bucket, "Completed", 40))
        .await;
    assert_eq!(code, 202, "{running}");
    let running_id = running["id"].as_str().unwrap().to_string();
    let job = running["name"].as_str().unwrap().to_string();
    old.wait_run(&running_id, "Polling", |r| r["state"] == "Polling")
        .await;
    let (_, before) = old.get(&format!("/api/v1/runs/{done_id}")).await;
    assert!(old.terminate().success());

    let pg = PgDatabase::create();
    let from = format!("sqlite://{}", scratch.db().display());
    let out = migrate_store(&from, &pg.url);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("copied 2 runs"), "{said}");

    let mut on_pg = config.clone();
    on_pg.database_url = Some(pg.url.clone());
    let new = Service::start(on_pg);
    let (_, after) = new.get(&format!("/api/v1/runs/{done_id}")).await;
    assert_eq!(kept(&after), kept(&before), "the finished run is as it was");
    let end = new
        .wait_terminal(&running_id, Duration::from_secs(90))
        .await;
    assert_eq!(end["state"], "Done", "{end}");
    assert_eq!(
        emu.training_stats(&job).await["creates"],
        1,
        "the moved run adopted its job instead of creating another"
    );

    let again = migrate_store(&from, &pg.url);
    assert!(!again.status.success());
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("already holds 2 runs"), "{said}");
    assert!(
        !said.contains("postgres@"),
        "no user or password echoed: {said}"
    );
}

#[test]
fn migrate_store_refuses_urls_the_wrong_way_round() {
    let out = migrate_store(
        "postgres://postgres@127.0.0.1:5432/postgres",
        "sqlite:///tmp/x.db",
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--from sqlite://"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
