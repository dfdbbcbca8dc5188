//! Committed transitions per second with 1, 2 and 3 replicas sharing one PostgreSQL database,
//! side by side with the SQLite store, in one run (issue #12).
//!
//! Each replica is a `Store` of its own (its own connection pool, as a separate process has)
//! running an engine-shaped loop: claim up to `--batch` due runs for its owner, commit a
//! transition for each concurrently (a poll that is due again at once, with a history row), and
//! claim again. All replicas share `--runs` runs, so they compete for the same rows as real
//! replicas do (`FOR UPDATE SKIP LOCKED`). The figure is the total of committed transitions per
//! second; lost commits (a run claimed by another replica meanwhile) would not count, and a
//! count of them is printed.
//!
//! Run: `cargo bench --bench replicas_throughput`
//! (options: `-- --seconds 5 --runs 256 --batch 16`; `EXECUTOR_BENCH_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, is the server: a fresh database is made and
//! dropped for each measurement).

use sagemaker_executor::clock::{self, Clock, SystemClock};
use sagemaker_executor::model::{Kind, State};
use sagemaker_executor::store::{NewRun, Store, Transition, TransitionOutcome};
use sqlx::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Args {
    seconds: f64,
    runs: usize,
    batch: u32,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 5.0,
        runs: 256,
        batch: 16,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("a value");
        match flag.as_str() {
            "--seconds" => a.seconds = value().parse().expect("seconds"),
            "--runs" => a.runs = value().parse().expect("a number"),
            "--batch" => a.batch = value().parse().expect("a number"),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

fn admin_url() -> String {
    std::env::var("EXECUTOR_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn admin(sql: String) {
    let mut c = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
}

fn poll(n: i64) -> Transition {
    let now = SystemClock.now();
    Transition {
        to: State::Polling,
        context: serde_json::json!({"polls": n}),
        attempt: 0,
        next_due_at: Some(now),
        record: true,
        detail: Some("still InProgress".into()),
        error: None,
        spawn: Vec::new(),
        forget: Vec::new(),
        withdraw_cancel: false,
        degraded: false,
        collapse: false,
    }
}

/// One replica's loop until `until`: claim a batch, commit each concurrently, again.
async fn replica(
    store: Store,
    owner: String,
    batch: u32,
    until: Instant,
    done: Arc<[AtomicU64; 2]>,
) {
    while Instant::now() < until {
        let now = SystemClock.now();
        let claimed = store
            .claim_due(&owner, now, clock::add(now, Duration::from_secs(60)), batch)
            .await
            .unwrap();
        if claimed.is_empty() {
            tokio::task::yield_now().await;
            continue;
        }
        let mut set = tokio::task::JoinSet::new();
        for c in claimed {
            let store = store.clone();
            set.spawn(async move {
                let t = poll(c.run.version);
                store
                    .commit_transition(&c, &t, SystemClock.now())
                    .await
                    .unwrap()
            });
        }
        while let Some(outcome) = set.join_next().await {
            let i = match outcome.unwrap() {
                TransitionOutcome::Committed { .. } => 0,
                TransitionOutcome::Lost => 1,
            };
            done[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Transitions per second (and lost commits) with `replicas` stores on the database at `url`.
async fn measure(url: &str, replicas: usize, a: &Args) -> (f64, u64) {
    let first = Store::open(url).await.unwrap();
    for _ in 0..a.runs {
        let id = uuid::Uuid::now_v7();
        first
            .insert_run(
                NewRun {
                    id,
                    kind: Kind::Training,
                    state: State::Polling,
                    request: serde_json::json!({}),
                    context: serde_json::json!({"polls": 0}),
                    resource_name: Some(format!("job-{}", id.simple())),
                    submitted_by: None,
                    detail: "bench".into(),
                },
                SystemClock.now(),
            )
            .await
            .unwrap();
    }
    let mut stores = vec![first];
    for _ in 1..replicas {
        stores.push(Store::open(url).await.unwrap());
    }
    let done: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(a.seconds);
    let mut loops = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        loops.push(tokio::spawn(replica(
            store.clone(),
            format!("r{}#bench", i + 1),
            a.batch,
            until,
            done.clone(),
        )));
    }
    for l in loops {
        l.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    for s in &stores {
        s.close().await;
    }
    (
        done[0].load(Ordering::Relaxed) as f64 / elapsed,
        done[1].load(Ordering::Relaxed),
    )
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let (sqlite, _) = measure(&sqlite_url, 1, &a).await;
    println!(
        "replicas_throughput: {} runs, claims of {}, {} s per measurement",
        a.runs, a.batch, a.seconds
    );
    println!("  SQLite, 1 process:          {sqlite:>8.0} transitions/s   1.00x");
    let mut one = None;
    for replicas in 1..=3 {
        let name = format!("exec_bench_{}", uuid::Uuid::new_v4().simple());
        admin(format!("CREATE DATABASE \"{name}\"")).await;
        let mut url = url::Url::parse(&admin_url()).unwrap();
        url.set_path(&format!("/{name}"));
        let (rate, lost) = measure(url.as_str(), replicas, &a).await;
        admin(format!("DROP DATABASE \"{name}\" WITH (FORCE)")).await;
        let base = *one.get_or_insert(rate);
        println!(
            "  PostgreSQL, {replicas} replica(s):    {rate:>8.0} transitions/s   {:.2}x SQLite, {:.2}x one replica ({lost} commits lost to another replica)",
            rate / sqlite,
            rate / base
        );
    }
}
