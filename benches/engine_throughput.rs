//! The engine end to end — claims, steps, commits — with AWS answered by an in-process stub,
//! side by side with the disk's raw one-row `synchronous=FULL` SQLite commit rate, measured in
//! the same run on the same disk:
//!
//! - **steady state**: training runs in Polling whose job never ends, polled every millisecond:
//!   committed transitions per second against the raw commit rate (goal: ≥ 1×);
//! - **restart**: 10,000 unfinished runs all due at start-up: the time until every one of them
//!   has had a step committed, against the floor of one raw commit per run (goal: ≤ 2×).
//!
//! Run: `cargo bench --bench engine_throughput` (options after `--`: `--runs 256 --secs 5
//! --restart 10000 --concurrency 16`).

use async_trait::async_trait;
use sagemaker_executor::aws::{
    self, AutomlJobSpec, AwsPort, AwsResult, JobDescription, ObjectStore, TrainingJobSpec,
};
use sagemaker_executor::clock::{Clock, SystemClock, to_db};
use sagemaker_executor::engine::{Engine, EngineConfig};
use sagemaker_executor::store::Store;
use sagemaker_executor::workflows;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Args {
    runs: usize,
    secs: f64,
    restart: usize,
    concurrency: usize,
}

fn args() -> Args {
    let mut a = Args {
        runs: 256,
        secs: 5.0,
        restart: 10_000,
        concurrency: EngineConfig::default().max_concurrency,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .and_then(|v| v.parse::<f64>().ok())
                .expect("a number")
        };
        match flag.as_str() {
            "--runs" => a.runs = value() as usize,
            "--secs" => a.secs = value(),
            "--restart" => a.restart = value() as usize,
            "--concurrency" => a.concurrency = value() as usize,
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
}

/// The disk's raw rate: one-row UPDATE transactions, begun IMMEDIATE, one after another on one
/// connection with the store's pragmas.
async fn raw_commit_rate(dir: &Path, secs: f64) -> f64 {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options(&dir.join("raw.db")))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT OR IGNORE INTO t VALUES (1, 0)")
        .execute(&pool)
        .await
        .unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("UPDATE t SET v = v + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    pool.close().await;
    rate
}

/// Training jobs that run forever; counts describes.
#[derive(Default)]
struct Stub {
    describes: AtomicU64,
}

fn job(name: &str) -> JobDescription {
    JobDescription {
        arn: Some(format!(
            "arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}"
        )),
        status: "InProgress".into(),
        secondary_status: Some("Training".into()),
        ..Default::default()
    }
}

/// Inserts `n` training runs in Polling, due now, in one transaction (set-up, not measured).
async fn seed(store_path: &Path, n: usize) -> SqlitePool {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options(store_path))
        .await
        .unwrap();
    let now = to_db(SystemClock.now());
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    for i in 0..n {
        let id = uuid::Uuid::now_v7();
        let name = format!("bench-{i}-{}", id.simple());
        sqlx::query(
            "INSERT INTO runs (id, kind, state, request, context, resource_name, next_due_at,
                 created_at, updated_at)
             VALUES (?1, 'training', 'Polling', '{}', ?2, ?3, ?4, ?4, ?4)",
        )
        .bind(id.to_string())
        .bind(serde_json::json!({"job_name": name, "sagemaker_status": "InProgress"}).to_string())
        .bind(&name)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    pool
}

async fn version_sum(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(SUM(version), 0) FROM runs")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn engine(store: &Store, stub: Arc<Stub>, config: EngineConfig) -> Arc<Engine> {
    Arc::new(
        Engine::new(
            store.clone(),
            Arc::new(SystemClock),
            Arc::new(aws::AwsProvider::fixed(stub)),
            config,
            workflows::handlers(),
            workflows::load_definitions().unwrap(),
        )
        .unwrap(),
    )
}

/// Committed transitions per second, steady state, and the mean number of engine writes per
/// transaction.
async fn steady(dir: &Path, a: &Args) -> (f64, f64, f64) {
    let path = dir.join("steady.db");
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let pool = seed(&path, a.runs).await;
    let stub = Arc::new(Stub::default());
    let config = EngineConfig {
        owner: "bench".into(),
        max_concurrency: a.concurrency,
        poll_min: Some(Duration::from_millis(1)),
        poll_max: Some(Duration::from_millis(1)),
        ..EngineConfig::default()
    };
    let engine = engine(&store, stub.clone(), config).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(engine.run(stopped));
    // Warm up, then measure a window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (v0, d0, g0, t0) = (
        version_sum(&pool).await,
        stub.describes.load(Ordering::Relaxed),
        store.group_stats(),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs_f64(a.secs)).await;
    let (v1, d1, g1, took) = (
        version_sum(&pool).await,
        stub.describes.load(Ordering::Relaxed),
        store.group_stats(),
        t0.elapsed().as_secs_f64(),
    );
    stop.send(true).unwrap();
    running.await.unwrap();
    // Each step bumps the version twice: its claim and its commit.
    let transitions = (v1 - v0) as f64 / 2.0 / took;
    let steps = (d1 - d0) as f64 / took;
    let per_tx =
        (g1.operations - g0.operations) as f64 / (g1.transactions - g0.transactions).max(1) as f64;
    pool.close().await;
    store.close().await;
    (transitions, steps, per_tx)
}

/// Seconds from start-up until every one of `n` due runs has had a step committed.
async fn restart(dir: &Path, a: &Args) -> f64 {
    let path = dir.join("restart.db");
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let pool = seed(&path, a.restart).await;
    let stub = Arc::new(Stub::default());
    let config = EngineConfig {
        owner: "bench-restart".into(),
        max_concurrency: a.concurrency,
        // One step each: the next poll is far away.
        poll_min: Some(Duration::from_secs(600)),
        poll_max: Some(Duration::from_secs(600)),
        ..EngineConfig::default()
    };
    let engine = engine(&store, stub, config).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let running = tokio::spawn(engine.run(stopped));
    loop {
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE version < 2")
            .fetch_one(&pool)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = start.elapsed().as_secs_f64();
    stop.send(true).unwrap();
    running.await.unwrap();
    pool.close().await;
    store.close().await;
    took
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let raw = raw_commit_rate(dir.path(), 2.0).await;
        let (transitions, steps, per_tx) = steady(dir.path(), &a).await;
        let raw_after = raw_commit_rate(dir.path(), 2.0).await;
        let raw = (raw + raw_after) / 2.0;
        println!(
            "raw one-row FULL commits:      {raw:>9.0} /s (baseline, mean of a run before and after)"
        );
        println!(
            "engine transitions:            {transitions:>9.0} /s ({steps:.0} steps/s; {} runs, concurrency {}; {per_tx:.1} writes per transaction)",
            a.runs, a.concurrency
        );
        println!(
            "ratio engine / raw:            {:>9.2}x  (goal >= 1)",
            transitions / raw
        );
        let took = restart(dir.path(), &a).await;
        let floor = a.restart as f64 / raw;
        println!(
            "restart, {} due runs stepped:  {took:>9.2} s (floor at one raw commit per run: {floor:.2} s)",
            a.restart
        );
        println!(
            "ratio restart / floor:         {:>9.2}x  (goal <= 2)",
            took / floor
        );
    });
}

#[async_trait]
impl ObjectStore for Stub {
    async fn list_objects(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: i32,
    ) -> AwsResult<aws::ObjectPage> {
        unimplemented!("the bench polls training jobs")
    }
    async fn head_object(&self, _: &str, _: &str) -> AwsResult<Option<aws::ObjectInfo>> {
        unimplemented!("the bench polls training jobs")
    }
    async fn delete_object(&self, _: &str, _: &str) -> AwsResult<()> {
        unimplemented!("the bench polls training jobs")
    }
    async fn copy_object(&self, _: &str, _: &str, _: &str, _: &str) -> AwsResult<()> {
        unimplemented!("the bench polls training jobs")
    }
    async fn download_to_file(&self, _: &str, _: &str, _: &Path, _: u64) -> AwsResult<u64> {
        unimplemented!("the bench polls training jobs")
    }
    async fn upload_stream(&self, _: &str, _: &str, _: &str, _: aws::UploadBody) -> AwsResult<u64> {
        unimplemented!("the bench polls training jobs")
    }
}

#[async_trait]
impl AwsPort for Stub {
    async fn describe_training_job(&self, name: &str) -> AwsResult<Option<JobDescription>> {
        self.describes.fetch_add(1, Ordering::Relaxed);
        Ok(Some(job(name)))
    }
    async fn create_training_job(&self, spec: &TrainingJobSpec) -> AwsResult<String> {
        Ok(job(&spec.name).arn.unwrap())
    }
    async fn stop_training_job(&self, _: &str) -> AwsResult<()> {
        Ok(())
    }
    async fn put_object(&self, _: &str, _: &str, _: Vec<u8>, _: &str) -> AwsResult<()> {
        Ok(())
    }
    async fn upload_file(&self, _: &str, _: &str, _: &Path, _: &str) -> AwsResult<()> {
        Ok(())
    }
    async fn read_object_start(&self, _: &str, _: &str, _: u64) -> AwsResult<Option<Vec<u8>>> {
        Ok(None)
    }
    async fn create_processing_job(&self, _: &aws::ProcessingJobSpec) -> AwsResult<String> {
        unimplemented!("the bench polls training jobs")
    }
    async fn describe_processing_job(&self, _: &str) -> AwsResult<Option<JobDescription>> {
        unimplemented!("the bench polls training jobs")
    }
    async fn stop_processing_job(&self, _: &str) -> AwsResult<()> {
        unimplemented!("the bench polls training jobs")
    }
    async fn processing_job_log(&self, _: &str, _: usize) -> AwsResult<aws::JobLog> {
        unimplemented!("the bench polls training jobs")
    }
    async fn processing_job_log_from(
        &self,
        _: &str,
        _: &aws::LogCursor,
        _: usize,
    ) -> AwsResult<(aws::JobLog, aws::LogCursor)> {
        unimplemented!("the bench polls training jobs")
    }
    async fn create_automl_job(&self, _: &AutomlJobSpec) -> AwsResult<String> {
        unimplemented!("the bench polls training jobs")
    }
    async fn describe_automl_job(&self, _: &str) -> AwsResult<Option<JobDescription>> {
        unimplemented!("the bench polls training jobs")
    }
    async fn stop_automl_job(&self, _: &str) -> AwsResult<()> {
        unimplemented!("the bench polls training jobs")
    }
    async fn create_transform_job(&self, _: &str, _: &aws::TransformJobSpec) -> AwsResult<String> {
        unimplemented!("the bench polls training jobs")
    }
    async fn describe_transform_job(&self, _: &str) -> AwsResult<Option<JobDescription>> {
        unimplemented!("the bench polls training jobs")
    }
    async fn stop_transform_job(&self, _: &str) -> AwsResult<()> {
        unimplemented!("the bench polls training jobs")
    }
    async fn create_model(&self, _: &aws::ModelSpec) -> AwsResult<String> {
        unimplemented!("the bench polls training jobs")
    }
    async fn describe_model(&self, _: &str) -> AwsResult<Option<(aws::ModelSpec, Option<String>)>> {
        unimplemented!("the bench polls training jobs")
    }
    async fn delete_model(&self, _: &str) -> AwsResult<()> {
        unimplemented!("the bench polls training jobs")
    }
    async fn create_endpoint_config(&self, _: &aws::EndpointConfigSpec) -> AwsResult<String> {
        unimplemented!("the bench polls training jobs")
    }
    async fn describe_endpoint_config(
        &self,
        _: &str,
    ) -> AwsResult<Option<(aws::EndpointConfigSpec, Option<String>)>> {
        unimplemented!("the bench polls training jobs")
    }
    async fn describe_endpoint(&self, _: &str) -> AwsResult<Option<aws::EndpointDescription>> {
        unimplemented!("the bench polls training jobs")
    }
    async fn create_endpoint(
        &self,
        _: &str,
        _: &str,
        _: &std::collections::BTreeMap<String, String>,
    ) -> AwsResult<String> {
        unimplemented!("the bench polls training jobs")
    }
    async fn update_endpoint(&self, _: &str, _: &str) -> AwsResult<()> {
        unimplemented!("the bench polls training jobs")
    }
    async fn delete_endpoint(&self, _: &str) -> AwsResult<()> {
        unimplemented!("the bench polls training jobs")
    }
    async fn delete_endpoint_config(&self, _: &str) -> AwsResult<()> {
        unimplemented!("the bench polls training jobs")
    }
    async fn invoke_endpoint(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: Vec<u8>,
        _: &str,
    ) -> AwsResult<aws::InvokeOutput> {
        unimplemented!("the bench polls training jobs")
    }
}
