//! Committed transitions per second through the store, under concurrent runs, side by side with
//! a raw SQLite baseline that uses the same pragmas and one-row IMMEDIATE transactions.
//!
//! Run: `cargo bench --bench store_throughput` (options: `-- --runs 64 --transitions 20000`;
//! `--only store` or `--only baseline` measures one side alone, e.g. under a profiler;
//! `--rounds 5` (the default): rounds of both sides one after the other, the median ratio is the figure).
//! The figure that matters is the ratio: both sides run in the same process, on the same disk.

use sagemaker_executor::clock::{self, Clock, SystemClock, Timestamp};
use sagemaker_executor::model::{Kind, State};
use sagemaker_executor::store::{ClaimRequest, NewRun, Store, Transition, TransitionOutcome};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

struct Args {
    runs: usize,
    transitions: usize,
    /// `--only store` (or `baseline`): measure one side alone, e.g. under a profiler.
    only: Option<String>,
    /// Rounds of (baseline, store) measured one after the other; the median ratio is the
    /// figure (this machine's disk is noisy from one second to the next).
    rounds: usize,
}

fn args() -> Args {
    let mut a = Args {
        runs: 64,
        transitions: 20_000,
        only: None,
        rounds: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse().ok()).expect("a number");
        match flag.as_str() {
            "--runs" => a.runs = value(),
            "--transitions" => a.transitions = value(),
            "--only" => a.only = it.next(),
            "--rounds" => a.rounds = value(),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

const LEASE: Duration = Duration::from_secs(60);

/// A slot's claim of its next due run.
fn next_claim(now: Timestamp) -> ClaimRequest {
    ClaimRequest {
        owner: "bench".into(),
        now,
        lease_until: clock::add(now, LEASE),
        limit: 1,
    }
}

/// Our store as the engine drives it: `runs` slots, each committing its run's transition and
/// claiming its next due run in one operation ([`Store::commit_and_claim`]), which the store's
/// group commit applies together with the other slots' operations.
async fn ours(dir: &std::path::Path, a: &Args) -> f64 {
    let store = Store::open(&format!("sqlite://{}", dir.join("ours.db").display()))
        .await
        .unwrap();
    let clock = SystemClock;
    for _ in 0..a.runs {
        let id = uuid::Uuid::now_v7();
        store
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
                clock.now(),
            )
            .await
            .unwrap();
    }
    let store = Arc::new(store);
    let start = Instant::now();
    let now = clock.now();
    let first = store
        .claim_due("bench", now, clock::add(now, LEASE), a.runs as u32)
        .await
        .unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for mut c in first {
        let (store, done, target) = (store.clone(), done.clone(), a.transitions);
        set.spawn(async move {
            while done.load(Ordering::Relaxed) < target {
                let now = SystemClock.now();
                let t = Transition {
                    to: State::Polling,
                    context: serde_json::json!({"polls": c.run.version}),
                    attempt: 0,
                    next_due_at: Some(now),
                    record: true,
                    detail: Some("poll".into()),
                    error: None,
                    spawn: Vec::new(),
                    forget: Vec::new(),
                    withdraw_cancel: false,
                    degraded: false,
                    collapse: false,
                };
                let committed = store
                    .commit_and_claim(&c, &t, now, next_claim(now))
                    .await
                    .unwrap();
                assert!(matches!(
                    committed.outcome,
                    TransitionOutcome::Committed { .. }
                ));
                done.fetch_add(1, Ordering::Relaxed);
                // Its own run is due again at once; a slot whose share of the batch's claim
                // came out empty claims on its own (as the engine's loop does).
                c = match committed.next.into_iter().next() {
                    Some(next) => next,
                    None => loop {
                        let now = SystemClock.now();
                        let mut due = store
                            .claim_due("bench", now, clock::add(now, LEASE), 1)
                            .await
                            .unwrap();
                        if let Some(next) = due.pop() {
                            break next;
                        }
                        tokio::task::yield_now().await;
                    },
                };
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    let stats = store.group_stats();
    println!(
        "  (store: {} writes in {} transactions, {:.1} per transaction)",
        stats.operations,
        stats.transactions,
        stats.operations as f64 / stats.transactions.max(1) as f64
    );
    rate
}

/// Raw SQLite with the same pragmas and pool shape: one-row UPDATE transactions begun IMMEDIATE.
async fn baseline(dir: &std::path::Path, a: &Args) -> f64 {
    let options =
        SqliteConnectOptions::from_str(&format!("sqlite://{}", dir.join("raw.db").display()))
            .unwrap()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    for i in 0..a.runs as i64 {
        sqlx::query("INSERT INTO t VALUES (?1, 0)")
            .bind(i)
            .execute(&pool)
            .await
            .unwrap();
    }
    let per_task = a.transitions / a.runs;
    let start = Instant::now();
    let mut set = JoinSet::new();
    for i in 0..a.runs as i64 {
        let pool = pool.clone();
        set.spawn(async move {
            for _ in 0..per_task {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
                sqlx::query("UPDATE t SET v = v + 1 WHERE id = ?1")
                    .bind(i)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
        });
    }
    while set.join_next().await.is_some() {}
    (per_task * a.runs) as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().unwrap();
    // Warm up the disk and page cache once on each side, then measure.
    let warm = Args {
        runs: a.runs,
        transitions: a.runs * 4,
        only: None,
        rounds: 1,
    };
    if let Some(side) = &a.only {
        let rate = match side.as_str() {
            "store" => ours(&dir.path().join("m2").tap_mkdir(), &a).await,
            "baseline" => baseline(&dir.path().join("m1").tap_mkdir(), &a).await,
            other => panic!("--only store or --only baseline, not {other}"),
        };
        println!("store_throughput --only {side}: {rate:.0} per second");
        return;
    }
    baseline(&dir.path().join("w1").tap_mkdir(), &warm).await;
    ours(&dir.path().join("w2").tap_mkdir(), &warm).await;
    println!(
        "store_throughput: {} concurrent runs, {} transitions each side, {} rounds",
        a.runs, a.transitions, a.rounds
    );
    let mut ratios = Vec::new();
    for round in 0..a.rounds.max(1) {
        let raw = baseline(&dir.path().join(format!("b{round}")).tap_mkdir(), &a).await;
        let our = ours(&dir.path().join(format!("s{round}")).tap_mkdir(), &a).await;
        println!(
            "  round {}: baseline (raw SQLite, one-row IMMEDIATE transactions) {raw:>7.0} commits/s, \
             store (guarded update + history row + next claim) {our:>7.0} transitions/s: {:.2}",
            round + 1,
            our / raw
        );
        ratios.push(our / raw);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "  ratio store/baseline: {:.2} (median of {}; lowest {:.2}, highest {:.2})",
        ratios[ratios.len() / 2],
        ratios.len(),
        ratios[0],
        ratios[ratios.len() - 1]
    );
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
