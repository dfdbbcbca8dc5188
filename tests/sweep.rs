//! The List* sweep and the AWS rate limiter, end to end: the real binary, the emulator's
//! time-driven jobs (they end by the clock, seen by List and Describe alike) and the fault
//! proxy's per-operation counts.

mod support;

use sagemaker_executor::aws::sdk::{AwsSettings, Overrides};
use sagemaker_executor::aws::{
    AwsPort, JobKind, JobQuery, SdkAws, StaticCredentials, TrainingJobSpec,
};
use sagemaker_executor::secrets::Secret;
use sagemaker_executor::store::Store;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::fault_proxy::{Fault, FaultPlan, FaultProxy};
use support::{Emulator, ROLE, Scratch, Service, ServiceConfig, client, unique};

/// A training request whose job runs `seconds` of wall-clock time, then ends with `outcome`.
fn timed_training(bucket: &str, seconds: f64, outcome: &str) -> Value {
    json!({
        "RoleArn": ROLE,
        "Bucket": bucket,
        "S3Prefix": "experiments/sweep",
        "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1",
        "inline_csv": "label,x\n1,0.5\n0,0.1\n",
        "HyperParameters": {
            "_emulator_outcome": outcome,
            "_emulator_seconds": seconds.to_string(),
        },
    })
}

fn set(config: &mut ServiceConfig, vars: &[(&str, &str)]) {
    for (k, v) in vars {
        config.extra_env.push((k.to_string(), v.to_string()));
    }
}

/// Starts `n` timed training runs; returns (run id, job name) of each.
async fn start_runs(svc: &Service, bucket: &str, n: usize, seconds: f64) -> Vec<(String, String)> {
    let mut runs = Vec::new();
    for _ in 0..n {
        let (code, a) = svc
            .post(
                "/api/service/v1/pipelines/training/train",
                &timed_training(bucket, seconds, "Completed"),
            )
            .await;
        assert_eq!(code, 202, "{a}");
        runs.push((
            a["id"].as_str().unwrap().to_string(),
            a["name"].as_str().unwrap().to_string(),
        ));
    }
    runs
}

async fn open_store(scratch: &Scratch) -> Store {
    Store::connect(&scratch.store_url()).await.unwrap()
}

/// Waits until every run is in Polling with its next describe at least `far` away: the
/// sweep covers it and its own describe is only the safety net.
async fn wait_stretched(store: &Store, runs: &[(String, String)], far: Duration) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut stretched = 0;
        for (id, _) in runs {
            let run = store
                .get_run(id.parse().unwrap())
                .await
                .unwrap()
                .expect("stored run");
            let due_in = run
                .next_due_at
                .map(|d| (d - chrono::Utc::now()).to_std().unwrap_or_default())
                .unwrap_or_default();
            if run.state.as_str() == "Polling" && due_in >= far {
                stretched += 1;
            }
        }
        if stretched == runs.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {stretched} of {} runs are covered by the sweep",
            runs.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ten runs whose jobs take 12 s, polled every 2.5 s without the sweep (six describes each). With a sweep every second, each job is described three times: Submitted's look by
/// name (not found, so created), the first poll (still running; the sweep covers it, so the
/// next own describe is an hour away), and the one the sweep asked for when it listed the job
/// Completed.
#[tokio::test]
async fn a_sweep_describes_each_job_only_when_its_status_changed() {
    let emu = Emulator::shared();
    let bucket = unique("sweep");
    emu.create_bucket(&bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let scratch = Scratch::new();
    let mut config = scratch.config(proxy.url());
    set(
        &mut config,
        &[
            ("EXECUTOR_SWEEP_INTERVAL_SECS", "1"),
            ("EXECUTOR_SWEEP_SAFETY_NET_SECS", "3600"),
            ("EXECUTOR_POLL_MIN_MS", "2500"),
            ("EXECUTOR_POLL_MAX_MS", "2500"),
        ],
    );
    let svc = Service::start(config);
    let runs = start_runs(&svc, &bucket, 10, 12.0).await;
    let store = open_store(&scratch).await;
    wait_stretched(&store, &runs, Duration::from_secs(600)).await;
    for (id, name) in &runs {
        let st = svc.wait_terminal(id, Duration::from_secs(60)).await;
        assert_eq!(st["state"], "Done", "{st}");
        let stats = emu.training_stats(name).await;
        assert_eq!(stats["creates"], 1, "{stats}");
        // The emulator counts describes of jobs that exist: Submitted's look is not one.
        let describes = stats["describes"].as_u64().unwrap();
        assert!(
            (1..=2).contains(&describes),
            "{name}: {describes} describes"
        );
    }
    let lists = proxy.call_count("ListTrainingJobs");
    let describes = proxy.call_count("DescribeTrainingJob");
    eprintln!("calls: {:?}", proxy.calls());
    assert!(lists >= 2, "the sweep listed ({lists} ListTrainingJobs)");
    assert!(
        describes <= 30,
        "{describes} DescribeTrainingJob for 10 jobs"
    );
    // The sweeps and what they made due show in the metrics.
    let text = client()
        .get(svc.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
    };
    assert!(series("executor_sweeps_total{kind=\"training\",outcome=\"ok\"}") >= 2.0);
    assert!(
        series("executor_sweep_nudges_total") >= 10.0,
        "each job's end made its run due"
    );
}

/// A sweep that always fails (every ListTrainingJobs throttled) never covers the runs: they
/// are polled at the workflow's intervals as without a sweep, reach Done, and nothing about
/// the failed sweeps shows in their history.
#[tokio::test]
async fn runs_reach_done_by_polling_while_every_sweep_is_throttled() {
    let emu = Emulator::shared();
    let bucket = unique("sweepfail");
    emu.create_bucket(&bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    proxy.set_plan(FaultPlan::always(Fault::Throttle).only(["ListTrainingJobs"]));
    let scratch = Scratch::new();
    let mut config = scratch.config(proxy.url());
    set(
        &mut config,
        &[
            ("EXECUTOR_SWEEP_INTERVAL_SECS", "1"),
            ("EXECUTOR_SWEEP_SAFETY_NET_SECS", "3600"),
        ],
    );
    let svc = Service::start(config);
    let runs = start_runs(&svc, &bucket, 3, 3.0).await;
    for (id, name) in &runs {
        let st = svc.wait_terminal(id, Duration::from_secs(60)).await;
        assert_eq!(st["state"], "Done", "{st}");
        let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
        assert!(
            run["history"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["error_class"].is_null()),
            "{run}"
        );
        let stats = emu.training_stats(name).await;
        assert!(
            stats["describes"].as_u64().unwrap() > 3,
            "polled as without a sweep: {stats}"
        );
    }
    assert!(
        proxy.fault_count("ListTrainingJobs") >= 1,
        "the sweep was tried: {:?}",
        proxy.faults()
    );
}

/// The service is killed while its runs' own describes are an hour away and their jobs end
/// while it is down. After the restart the first sweep looks back to the oldest of those
/// runs' last updates, sees the jobs Completed, and the runs end: nothing was missed.
#[tokio::test]
async fn a_restart_loses_no_job_end_that_happened_while_the_service_was_down() {
    let emu = Emulator::shared();
    let bucket = unique("sweeprestart");
    emu.create_bucket(&bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let scratch = Scratch::new();
    let mut config = scratch.config(proxy.url());
    set(
        &mut config,
        &[
            ("EXECUTOR_SWEEP_INTERVAL_SECS", "1"),
            ("EXECUTOR_SWEEP_SAFETY_NET_SECS", "3600"),
            ("EXECUTOR_POLL_MIN_MS", "1500"),
            ("EXECUTOR_POLL_MAX_MS", "1500"),
        ],
    );
    let mut svc = Service::start(config.clone());
    let runs = start_runs(&svc, &bucket, 3, 6.0).await;
    let store = open_store(&scratch).await;
    wait_stretched(&store, &runs, Duration::from_secs(600)).await;
    svc.kill();
    // Every job ends while nobody watches.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (_, name) in &runs {
        while emu
            .sagemaker("DescribeTrainingJob", json!({"TrainingJobName": name}))
            .await["TrainingJobStatus"]
            != "Completed"
        {
            assert!(Instant::now() < deadline, "{name} did not end");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The service stays down for longer than the sweep's look-back margin (5 s): only a look
    // back to the runs' own last updates finds these ends.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let svc = Service::start(config);
    for (id, _) in &runs {
        let st = svc.wait_terminal(id, Duration::from_secs(30)).await;
        assert_eq!(st["state"], "Done", "{st}");
    }
}

/// With `Describe*=4`, twenty runs that would poll every 50–200 ms never start more than the
/// bucket allows (4 at once, then 4 a second) in any span the proxy's counts are sampled over,
/// and every run still reaches Done: waiting for a token fails nothing.
#[tokio::test]
async fn the_rate_limiter_bounds_describes_per_second_across_runs() {
    let emu = Emulator::shared();
    let bucket = unique("ratelimit");
    emu.create_bucket(&bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let scratch = Scratch::new();
    let mut config = scratch.config(proxy.url());
    set(&mut config, &[("EXECUTOR_AWS_RATE_LIMITS", "Describe*=4")]);
    let svc = Service::start(config);
    let runs = start_runs(&svc, &bucket, 20, 3.0).await;
    let started = Instant::now();
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    let ids: Vec<&str> = runs.iter().map(|(id, _)| id.as_str()).collect();
    loop {
        samples.push((Instant::now(), proxy.call_count("DescribeTrainingJob")));
        let mut terminal = 0;
        for id in &ids {
            let (_, s) = svc.get(&format!("/status/{id}")).await;
            if s["terminal"] == json!(true) {
                assert_eq!(s["state"], "Done", "{s}");
                terminal += 1;
            }
        }
        if terminal == ids.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "runs did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    samples.push((Instant::now(), proxy.call_count("DescribeTrainingJob")));
    let total = samples.last().unwrap().1;
    assert!(total >= 40, "each run described at least twice: {total}");
    // Between two samples at most burst + rate × span calls started; the span is widened by
    // the sampling delay (a call counted in a sample may have started up to a sample before).
    for (i, (t0, c0)) in samples.iter().enumerate() {
        for (t1, c1) in &samples[i + 1..] {
            let span = (*t1 - *t0).as_secs_f64() + 0.15;
            let allowed = 4.0 + 4.0 * span + 1.0;
            assert!(
                (*c1 - *c0) as f64 <= allowed,
                "{} describes in {span:.2} s (allowed {allowed:.1})",
                c1 - c0
            );
        }
    }
}

/// The port's List call against the emulator: LastModifiedTimeAfter and StatusEquals filter,
/// each page is one counted call, and every kind's request and answer parse.
#[tokio::test]
async fn the_list_call_filters_by_modification_time_and_status() {
    let emu = Emulator::shared();
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let aws = SdkAws::build(
        AwsSettings {
            force_path_style: true,
            ..AwsSettings::default()
        },
        Overrides {
            credentials: Some(StaticCredentials {
                access_key: "test".into(),
                secret_key: Secret::new("test"),
                session_token: None,
            }),
            region: Some("us-east-1".into()),
            endpoint: Some(proxy.url()),
        },
    )
    .await;
    let prefix = unique("listed");
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut names = Vec::new();
    for (i, seconds) in ["0.5", "600"].iter().enumerate() {
        let name = format!("{prefix}-{i}");
        aws.create_training_job(&TrainingJobSpec {
            name: name.clone(),
            role_arn: ROLE.into(),
            image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1".into(),
            instance_type: "ml.m5.large".into(),
            instance_count: 1,
            volume_size_gb: 10,
            max_runtime_secs: 3600,
            hyperparameters: [("_emulator_seconds".to_string(), seconds.to_string())].into(),
            input_s3_uri: "s3://b/in/".into(),
            content_type: "text/csv".into(),
            output_s3_path: "s3://b/out/".into(),
        })
        .await
        .unwrap();
        names.push(name);
    }
    let query = |after, status: Option<&str>| JobQuery {
        kind: JobKind::Training,
        modified_after: after,
        status: status.map(str::to_string),
        max_pages: 10,
    };
    let ours = |items: Vec<sagemaker_executor::aws::JobSummary>| {
        let mut v: Vec<(String, String)> = items
            .into_iter()
            .filter(|j| j.name.starts_with(&prefix))
            .map(|j| (j.name, j.status))
            .collect();
        v.sort();
        v
    };
    let all = aws.list_jobs(&query(before, None)).await.unwrap();
    assert!(!all.truncated);
    assert_eq!(
        ours(all.items)
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>(),
        names
    );
    // The short job ends by the clock; a listing by status sees it without any describe.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let done = aws
            .list_jobs(&query(before, Some("Completed")))
            .await
            .unwrap();
        let done = ours(done.items);
        if !done.is_empty() {
            assert_eq!(done, vec![(names[0].clone(), "Completed".to_string())]);
            break;
        }
        assert!(Instant::now() < deadline, "the short job never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let later = chrono::Utc::now() + chrono::Duration::seconds(1);
    let none = aws.list_jobs(&query(later, None)).await.unwrap();
    assert_eq!(ours(none.items), vec![], "nothing was modified after now");
    for kind in [JobKind::Transform, JobKind::Processing, JobKind::AutoMl] {
        let listing = aws
            .list_jobs(&JobQuery {
                kind,
                modified_after: later,
                status: None,
                max_pages: 1,
            })
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert!(listing.items.is_empty(), "{kind:?}: {listing:?}");
        assert_eq!(proxy.call_count(kind.list_operation()), 1);
    }
    assert!(proxy.call_count("ListTrainingJobs") >= 3);
    assert_eq!(proxy.call_count("DescribeTrainingJob"), 0);
}

/// Runs a sweep covered (their own describe an hour away) are polled again when the service
/// restarts with sweeping off: they reach Done at the workflow's intervals.
#[tokio::test]
async fn a_restart_with_sweeping_off_polls_the_runs_a_sweep_covered() {
    let emu = Emulator::shared();
    let bucket = unique("sweepoff");
    emu.create_bucket(&bucket).await;
    let scratch = Scratch::new();
    let mut config = scratch.config(emu.url());
    let plain = config.clone();
    set(
        &mut config,
        &[
            ("EXECUTOR_SWEEP_INTERVAL_SECS", "1"),
            ("EXECUTOR_SWEEP_SAFETY_NET_SECS", "3600"),
            ("EXECUTOR_POLL_MIN_MS", "1500"),
            ("EXECUTOR_POLL_MAX_MS", "1500"),
        ],
    );
    let mut svc = Service::start(config);
    let runs = start_runs(&svc, &bucket, 2, 4.0).await;
    let store = open_store(&scratch).await;
    wait_stretched(&store, &runs, Duration::from_secs(600)).await;
    svc.kill();
    let svc = Service::start(plain);
    for (id, _) in &runs {
        let st = svc.wait_terminal(id, Duration::from_secs(30)).await;
        assert_eq!(st["state"], "Done", "{st}");
    }
}

/// Sweeps succeed until the runs are covered, then every ListTrainingJobs is throttled: the
/// coverage lapses after two intervals, the runs are made due and polled again, and they reach
/// Done although their own describes had been set an hour away.
#[tokio::test]
async fn when_sweeps_start_failing_covered_runs_go_back_to_polling() {
    let emu = Emulator::shared();
    let bucket = unique("sweeplapse");
    emu.create_bucket(&bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let scratch = Scratch::new();
    let mut config = scratch.config(proxy.url());
    set(
        &mut config,
        &[
            ("EXECUTOR_SWEEP_INTERVAL_SECS", "1"),
            ("EXECUTOR_SWEEP_SAFETY_NET_SECS", "3600"),
            ("EXECUTOR_POLL_MIN_MS", "1500"),
            ("EXECUTOR_POLL_MAX_MS", "1500"),
        ],
    );
    let svc = Service::start(config);
    let runs = start_runs(&svc, &bucket, 2, 8.0).await;
    let store = open_store(&scratch).await;
    wait_stretched(&store, &runs, Duration::from_secs(600)).await;
    proxy.set_plan(FaultPlan::always(Fault::Throttle).only(["ListTrainingJobs"]));
    for (id, _) in &runs {
        let st = svc.wait_terminal(id, Duration::from_secs(40)).await;
        assert_eq!(st["state"], "Done", "{st}");
    }
    assert!(
        proxy.fault_count("ListTrainingJobs") >= 2,
        "{:?}",
        proxy.faults()
    );
}
