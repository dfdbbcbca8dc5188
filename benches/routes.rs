//! Requests per second of the run listing and `/metrics` with many stored runs, side by side with
//! `GET /status/{id}` (one run by its id) as the baseline, in the same process and run.
//!
//! A SQLite store is filled with a realistic mix of runs (six kinds, ~95% finished, a tenth of
//! them by a submitter token, a few degraded) first to 10,000 and then to 100,000 runs. At each
//! size the real router (the service's `api::app`, authentication on) serves on a loopback port
//! and a load generator in the same process keeps a few keep-alive connections busy on one route
//! at a time for a fixed time. It prints req/s per route, each listing's ratio to the status
//! route, and /metrics at 100,000 runs against /metrics at 10,000.
//!
//! Run: `CARGO_TARGET_DIR=/work/rtarget cargo bench --bench routes`
//! (options: `-- --seconds 2 --connections 4 --sizes 10000,100000 --only limit=50`).

use poem::listener::{Acceptor, Listener};
use sagemaker_executor::api::{self, AppState, Auth, HttpLimits, Readiness};
use sagemaker_executor::aws::sdk::{AwsSettings, Overrides};
use sagemaker_executor::aws::{AwsPort, AwsProvider, SdkAws};
use sagemaker_executor::clock::{Clock, SystemClock, to_db};
use sagemaker_executor::store::Store;
use sagemaker_executor::workflows;
use sqlx::SqlitePool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const OPERATOR_TOKEN: &str = "bench-operator-token-0123456789";
const SUBMITTER_TOKEN: &str = "bench-submitter-token-0123456789";
/// The caller name the submitter token acts as.
const SUBMITTER: &str = "submitter";

struct Args {
    seconds: f64,
    connections: usize,
    sizes: Vec<usize>,
    /// Only the routes whose name contains this (and the baseline), e.g. for a profile.
    only: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 2.0,
        connections: 4,
        sizes: vec![10_000, 100_000],
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("a value");
        match flag.as_str() {
            "--seconds" => a.seconds = value().parse().expect("seconds"),
            "--only" => a.only = Some(value()),
            "--connections" => a.connections = value().parse().expect("a number"),
            "--sizes" => {
                a.sizes = value()
                    .split(',')
                    .map(|s| s.trim().parse().expect("a number"))
                    .collect()
            }
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// What the fill wrote that the routes need: ids in insertion (= creation) order.
#[derive(Default)]
struct Filled {
    ids: Vec<String>,
}

const KINDS: [(&str, u32); 6] = [
    ("training", 50),
    ("automl", 15),
    ("transform", 15),
    ("script", 10),
    ("deployment", 5),
    ("teardown", 5),
];

fn pick_kind(rng: &mut fastrand::Rng) -> &'static str {
    let mut r = rng.u32(0..100);
    for (k, w) in KINDS {
        if r < w {
            return k;
        }
        r -= w;
    }
    "training"
}

/// Adds runs (and each its first history row) until there are `total`, in a few big
/// transactions of raw SQL against the migrated schema: one creation a minute, the newest now.
async fn fill_to(pool: &SqlitePool, filled: &mut Filled, total: usize, rng: &mut fastrand::Rng) {
    let start = filled.ids.len();
    let now = SystemClock.now();
    let base = now - chrono::Duration::minutes(200_000);
    let far = to_db(now + chrono::Duration::days(3650));
    for chunk in (start..total).collect::<Vec<_>>().chunks(10_000) {
        let mut tx = pool.begin().await.unwrap();
        for &i in chunk {
            let id = uuid::Uuid::now_v7().to_string();
            let kind = pick_kind(rng);
            let r = rng.u32(0..1000);
            let state = match r {
                0..800 => "Done",
                800..900 => "Failed",
                900..950 => "Cancelled",
                950..990 => "Polling",
                990..995 => "Uploading",
                _ => "Submitted",
            };
            let unfinished = r >= 950;
            let created = to_db(base + chrono::Duration::minutes(i as i64));
            let degraded = unfinished && rng.u32(0..50) == 0;
            let last_error = (state == "Failed" || degraded)
                .then_some("ValidationException: the training image could not be pulled");
            let submitter = if rng.u32(0..10) == 0 {
                SUBMITTER
            } else {
                "essedum"
            };
            let request = serde_json::json!({
                "TrainingJobName": format!("job-{i}"),
                "endpoint_name": format!("ep-{i}"),
                "AlgorithmSpecification": {"TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1.7-1", "TrainingInputMode": "File"},
                "RoleArn": "arn:aws:iam::123456789012:role/sagemaker-execution",
                "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": format!("s3://bench-bucket/inputs/{i}/train.csv"), "S3DataType": "S3Prefix"}}}],
                "OutputDataConfig": {"S3OutputPath": format!("s3://bench-bucket/outputs/{i}/")},
                "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
                "HyperParameters": {"max_depth": "5", "eta": "0.2", "objective": "binary:logistic", "num_round": "100"},
                "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            });
            let context = serde_json::json!({
                "job_name": format!("job-{i}"),
                "job_arn": format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/job-{i}"),
                "polls": 12,
                "status": "Completed",
            });
            sqlx::query(
                "INSERT INTO runs (id, kind, state, request, context, resource_name, attempt,
                     version, next_due_at, last_error, degraded_since, submitted_by, created_at,
                     updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 5, ?8, ?9, ?10, ?11, ?12, ?12)",
            )
            .bind(&id)
            .bind(kind)
            .bind(state)
            .bind(request.to_string())
            .bind(context.to_string())
            .bind(format!("job-{i}"))
            .bind(if degraded { 3 } else { 0 })
            .bind(unfinished.then_some(far.as_str()))
            .bind(last_error)
            .bind(degraded.then_some(created.as_str()))
            .bind(submitter)
            .bind(&created)
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO run_events (run_id, seq, from_state, to_state, at, attempt, detail)
                 VALUES (?1, 1, NULL, ?2, ?3, 0, 'accepted')",
            )
            .bind(&id)
            .bind(state)
            .bind(&created)
            .execute(&mut *tx)
            .await
            .unwrap();
            filled.ids.push(id);
        }
        tx.commit().await.unwrap();
    }
}

async fn serve(store: Store) -> SocketAddr {
    let aws: Arc<dyn AwsPort> = Arc::new(
        SdkAws::build(
            AwsSettings::default(),
            Overrides {
                region: Some("us-east-1".into()),
                // Nothing listens here; no route measured calls AWS.
                endpoint: Some("http://127.0.0.1:9".into()),
                ..Overrides::default()
            },
        )
        .await,
    );
    let state = AppState {
        store,
        clock: Arc::new(SystemClock),
        wake: Default::default(),
        limits: workflows::input::InputLimits {
            data_dir: None,
            max_inline_csv_bytes: 1 << 20,
        },
        aws: aws.clone(),
        definitions: Arc::new(workflows::load_definitions().unwrap()),
        provider: Arc::new(AwsProvider::fixed(aws)),
        datasets_bucket: None,
        max_dataset_bytes: 1 << 30,
        script: Default::default(),
        logs: Default::default(),
        readiness: Readiness {
            engine: Default::default(),
            started: SystemClock.now(),
            stall_after: Duration::from_secs(3600),
        },
    };
    let auth = Auth::configure(None, Some(OPERATOR_TOKEN), Some(SUBMITTER_TOKEN), false).unwrap();
    let limits = HttpLimits {
        max_body_bytes: 1 << 20,
        request_timeout: Duration::from_secs(30),
        max_dataset_bytes: 1 << 30,
        upload_timeout: Duration::from_secs(30),
        idempotency_retention: Duration::from_secs(86_400),
    };
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(api::app(state, auth, limits)));
    addr
}

/// One route under load: `connections` keep-alive connections, each sending the next request
/// as soon as the previous answer is read, for `seconds`. Returns requests per second.
async fn load(addr: SocketAddr, paths: &[String], token: &str, a: &Args) -> f64 {
    // Every path answers 200 before it is timed (a 4xx would be fast and meaningless).
    let check = reqwest::Client::new();
    for p in paths {
        let r = check
            .get(format!("http://{addr}{p}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "{p}: {body}");
    }
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(a.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..a.connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let urls: Vec<String> = paths.iter().map(|p| format!("http://{addr}{p}")).collect();
        let done = done.clone();
        let token = token.to_string();
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while Instant::now() < until {
                let r = client
                    .get(&urls[i % urls.len()])
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

struct Route {
    name: &'static str,
    paths: Vec<String>,
    token: &'static str,
}

fn routes(filled: &Filled, rng: &mut fastrand::Rng) -> Vec<Route> {
    let n = filled.ids.len();
    // A few runs spread over the store, so that the status route is not one cached row.
    let some: Vec<String> = (0..16)
        .map(|_| filled.ids[rng.usize(0..n)].clone())
        .collect();
    // Nine tenths of the way down the listing (ids are in creation order, the listing newest
    // first).
    let deep = &filled.ids[n / 10];
    let list = "/api/v1/runs?limit=50";
    let route = |name, paths: Vec<String>, token| Route { name, paths, token };
    vec![
        route(
            "GET /status/{id} (baseline)",
            some.iter().map(|id| format!("/status/{id}")).collect(),
            OPERATOR_TOKEN,
        ),
        route(
            "GET /api/v1/runs?limit=50",
            vec![list.into()],
            OPERATOR_TOKEN,
        ),
        route(
            "  &state=Failed",
            vec![format!("{list}&state=Failed")],
            OPERATOR_TOKEN,
        ),
        route(
            "  &kind=teardown",
            vec![format!("{list}&kind=teardown")],
            OPERATOR_TOKEN,
        ),
        route(
            "  &cursor=(90% deep)",
            vec![format!("{list}&cursor={deep}")],
            OPERATOR_TOKEN,
        ),
        route(
            "  as a submitter (own runs)",
            vec![list.into()],
            SUBMITTER_TOKEN,
        ),
        route(
            "  &has_error=true",
            vec![format!("{list}&has_error=true")],
            OPERATOR_TOKEN,
        ),
        route(
            "  &degraded=true",
            vec![format!("{list}&degraded=true")],
            OPERATOR_TOKEN,
        ),
        route(
            "  &stuck_secs=3600",
            vec![format!("{list}&stuck_secs=3600")],
            OPERATOR_TOKEN,
        ),
        route("GET /metrics", vec!["/metrics".into()], OPERATOR_TOKEN),
    ]
}

fn main() {
    let a = args();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("routes.db").display());
        let store = Store::open(&url).await.unwrap();
        let raw = SqlitePool::connect(&url).await.unwrap();
        let addr = serve(store).await;
        let mut rng = fastrand::Rng::with_seed(11);
        let mut filled = Filled::default();
        let mut metrics = Vec::new();
        println!(
            "{} s per route, {} keep-alive connections; req/s (ratio to GET /status/{{id}} at the same size)",
            a.seconds, a.connections
        );
        for &size in &a.sizes {
            let t = Instant::now();
            fill_to(&raw, &mut filled, size, &mut rng).await;
            println!(
                "\n{size} runs (filled in {:.1} s)",
                t.elapsed().as_secs_f64()
            );
            let mut baseline = None;
            for r in routes(&filled, &mut rng) {
                if baseline.is_some() && a.only.as_ref().is_some_and(|o| !r.name.contains(o)) {
                    continue;
                }
                let rate = load(addr, &r.paths, r.token, &a).await;
                let base = *baseline.get_or_insert(rate);
                println!("  {:<34} {:>9.0} req/s  {:>6.3}x", r.name, rate, rate / base);
                if r.name == "GET /metrics" {
                    metrics.push((size, rate));
                }
            }
        }
        if let (Some((small, s)), Some((large, l))) = (metrics.first(), metrics.last())
            && small != large
        {
            println!(
                "\n/metrics at {large} runs / at {small} runs: {:.3}x (1.0: cost independent of the number of runs)",
                l / s
            );
        }
    });
}
