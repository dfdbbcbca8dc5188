//! AWS calls per job-hour: the real engine (and the List* sweeper) following training runs
//! whose jobs each last one hour, against an in-process stub of AWS that ends jobs by the clock,
//! answers ListTrainingJobs with its filters and pages, and counts calls per operation.
//!
//! Time is scaled: one job-hour takes a few wall seconds, and the workflow's poll policy
//! (5 s → 60 s), the sweep interval (30 s), its safety net (3600 s) and look-back margin (5 s)
//! are scaled by the same factor. For 1, 100 and 1,000 concurrent jobs it prints the calls per
//! job-hour with the sweep off (today's behaviour, the baseline, in the same run) and on, their
//! ratio, and the worst delay between a job's end and its run's Done, in job-time seconds.
//!
//! Run: `CARGO_TARGET_DIR=/work/rtarget cargo bench --bench aws_calls`
//! (options: `-- --jobs 1,100,1000`). The SQLite file lives in /dev/shm when it exists: the
//! engine's commits are not what is measured here.

use async_trait::async_trait;
use sagemaker_executor::aws::{
    AutomlJobSpec, AwsError, AwsPort, AwsProvider, AwsResult, EndpointConfigSpec,
    EndpointDescription, InvokeOutput, JobDescription, JobKind, JobLog, JobQuery, JobSummary,
    Listing, LogCursor, ModelSpec, ObjectInfo, ObjectPage, ObjectStore, ProcessingJobSpec,
    TrainingJobSpec, TransformJobSpec, UploadBody,
};
use sagemaker_executor::clock::{Clock, SystemClock, Timestamp};
use sagemaker_executor::engine::{Engine, EngineConfig};
use sagemaker_executor::model::{Kind, State};
use sagemaker_executor::store::{NewRun, Store};
use sagemaker_executor::sweep::{SweepSettings, Sweeper};
use sagemaker_executor::workflows::input::InputLimits;
use sagemaker_executor::workflows::job::JobContext;
use sagemaker_executor::workflows::training::{TrainingRequest, job_name};
use sagemaker_executor::workflows::{self, PollPolicy};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const JOB_HOUR: f64 = 3600.0;

/// Training jobs that end `job_len` after their creation; every call counted.
struct StubAws {
    job_len: Duration,
    jobs: Mutex<HashMap<String, (Timestamp, Timestamp)>>,
    calls: Mutex<BTreeMap<&'static str, u64>>,
    /// When an answer (a Describe or a List) first showed each job ended.
    seen: Mutex<HashMap<String, Timestamp>>,
}

impl StubAws {
    fn new(job_len: Duration) -> StubAws {
        StubAws {
            job_len,
            jobs: Mutex::new(HashMap::new()),
            calls: Mutex::new(BTreeMap::new()),
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn saw_end(&self, name: &str, at: Timestamp) {
        self.seen
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_insert(at);
    }

    fn count(&self, op: &'static str) {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
    }

    /// Status and last-modified time of a job created at `created`, ending at `ends`, at `now`.
    fn status(created: Timestamp, ends: Timestamp, now: Timestamp) -> (&'static str, Timestamp) {
        if now < ends {
            ("InProgress", created)
        } else {
            ("Completed", ends)
        }
    }
}

fn unsupported(op: &'static str) -> AwsError {
    AwsError::terminal(op, "not in the stub".into())
}

#[async_trait]
impl ObjectStore for StubAws {
    async fn list_objects(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: i32,
    ) -> AwsResult<ObjectPage> {
        Err(unsupported("ListObjectsV2"))
    }
    async fn head_object(&self, _: &str, _: &str) -> AwsResult<Option<ObjectInfo>> {
        Err(unsupported("HeadObject"))
    }
    async fn delete_object(&self, _: &str, _: &str) -> AwsResult<()> {
        Err(unsupported("DeleteObject"))
    }
    async fn copy_object(&self, _: &str, _: &str, _: &str, _: &str) -> AwsResult<()> {
        Err(unsupported("CopyObject"))
    }
    async fn download_to_file(&self, _: &str, _: &str, _: &Path, _: u64) -> AwsResult<u64> {
        Err(unsupported("GetObject"))
    }
    async fn upload_stream(&self, _: &str, _: &str, _: &str, _: UploadBody) -> AwsResult<u64> {
        Err(unsupported("PutObject"))
    }
}

#[async_trait]
impl AwsPort for StubAws {
    async fn put_object(&self, _: &str, _: &str, _: Vec<u8>, _: &str) -> AwsResult<()> {
        self.count("PutObject");
        Ok(())
    }
    async fn upload_file(&self, _: &str, _: &str, _: &Path, _: &str) -> AwsResult<()> {
        Err(unsupported("PutObject"))
    }
    async fn read_object_start(&self, _: &str, _: &str, _: u64) -> AwsResult<Option<Vec<u8>>> {
        Err(unsupported("GetObject"))
    }
    async fn create_training_job(&self, spec: &TrainingJobSpec) -> AwsResult<String> {
        self.count("CreateTrainingJob");
        let now = SystemClock.now();
        let ends = now + chrono::Duration::from_std(self.job_len).unwrap();
        self.jobs
            .lock()
            .unwrap()
            .insert(spec.name.clone(), (now, ends));
        Ok(format!(
            "arn:aws:sagemaker:us-east-1:123456789012:training-job/{}",
            spec.name
        ))
    }
    async fn describe_training_job(&self, name: &str) -> AwsResult<Option<JobDescription>> {
        self.count("DescribeTrainingJob");
        let Some((created, ends)) = self.jobs.lock().unwrap().get(name).copied() else {
            return Ok(None);
        };
        let now = SystemClock.now();
        let (status, _) = StubAws::status(created, ends, now);
        if status == "Completed" {
            self.saw_end(name, now);
        }
        Ok(Some(JobDescription {
            status: status.into(),
            model_artifacts: (status == "Completed").then(|| format!("s3://b/{name}/model.tar.gz")),
            ..Default::default()
        }))
    }
    async fn stop_training_job(&self, _: &str) -> AwsResult<()> {
        Err(unsupported("StopTrainingJob"))
    }
    async fn list_jobs(&self, q: &JobQuery) -> AwsResult<Listing<JobSummary>> {
        assert_eq!(q.kind, JobKind::Training);
        let now = SystemClock.now();
        let mut items: Vec<JobSummary> = self
            .jobs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(name, (created, ends))| {
                let (status, modified) = StubAws::status(*created, *ends, now);
                (modified > q.modified_after && q.status.as_deref().is_none_or(|s| s == status))
                    .then(|| JobSummary {
                        name: name.clone(),
                        status: status.into(),
                        last_modified: Some(modified),
                    })
            })
            .collect();
        for j in items.iter().filter(|j| j.status == "Completed") {
            self.saw_end(&j.name, now);
        }
        // One call per page of 100 (at least one).
        let pages = items.len().div_ceil(100).max(1);
        let truncated = pages > q.max_pages as usize;
        for _ in 0..pages.min(q.max_pages as usize) {
            self.count("ListTrainingJobs");
        }
        items.truncate(q.max_pages as usize * 100);
        Ok(Listing { items, truncated })
    }
    async fn create_automl_job(&self, _: &AutomlJobSpec) -> AwsResult<String> {
        Err(unsupported("CreateAutoMLJobV2"))
    }
    async fn describe_automl_job(&self, _: &str) -> AwsResult<Option<JobDescription>> {
        Err(unsupported("DescribeAutoMLJobV2"))
    }
    async fn stop_automl_job(&self, _: &str) -> AwsResult<()> {
        Err(unsupported("StopAutoMLJob"))
    }
    async fn create_transform_job(&self, _: &str, _: &TransformJobSpec) -> AwsResult<String> {
        Err(unsupported("CreateTransformJob"))
    }
    async fn describe_transform_job(&self, _: &str) -> AwsResult<Option<JobDescription>> {
        Err(unsupported("DescribeTransformJob"))
    }
    async fn stop_transform_job(&self, _: &str) -> AwsResult<()> {
        Err(unsupported("StopTransformJob"))
    }
    async fn create_model(&self, _: &ModelSpec) -> AwsResult<String> {
        Err(unsupported("CreateModel"))
    }
    async fn describe_model(&self, _: &str) -> AwsResult<Option<(ModelSpec, Option<String>)>> {
        Err(unsupported("DescribeModel"))
    }
    async fn delete_model(&self, _: &str) -> AwsResult<()> {
        Err(unsupported("DeleteModel"))
    }
    async fn create_endpoint_config(&self, _: &EndpointConfigSpec) -> AwsResult<String> {
        Err(unsupported("CreateEndpointConfig"))
    }
    async fn describe_endpoint_config(
        &self,
        _: &str,
    ) -> AwsResult<Option<(EndpointConfigSpec, Option<String>)>> {
        Err(unsupported("DescribeEndpointConfig"))
    }
    async fn describe_endpoint(&self, _: &str) -> AwsResult<Option<EndpointDescription>> {
        Err(unsupported("DescribeEndpoint"))
    }
    async fn create_endpoint(
        &self,
        _: &str,
        _: &str,
        _: &BTreeMap<String, String>,
    ) -> AwsResult<String> {
        Err(unsupported("CreateEndpoint"))
    }
    async fn update_endpoint(&self, _: &str, _: &str) -> AwsResult<()> {
        Err(unsupported("UpdateEndpoint"))
    }
    async fn delete_endpoint(&self, _: &str) -> AwsResult<()> {
        Err(unsupported("DeleteEndpoint"))
    }
    async fn delete_endpoint_config(&self, _: &str) -> AwsResult<()> {
        Err(unsupported("DeleteEndpointConfig"))
    }
    async fn create_processing_job(&self, _: &ProcessingJobSpec) -> AwsResult<String> {
        Err(unsupported("CreateProcessingJob"))
    }
    async fn describe_processing_job(&self, _: &str) -> AwsResult<Option<JobDescription>> {
        Err(unsupported("DescribeProcessingJob"))
    }
    async fn stop_processing_job(&self, _: &str) -> AwsResult<()> {
        Err(unsupported("StopProcessingJob"))
    }
    async fn processing_job_log(&self, _: &str, _: usize) -> AwsResult<JobLog> {
        Err(unsupported("GetLogEvents"))
    }
    async fn processing_job_log_from(
        &self,
        _: &str,
        _: &LogCursor,
        _: usize,
    ) -> AwsResult<(JobLog, LogCursor)> {
        Err(unsupported("GetLogEvents"))
    }
    async fn invoke_endpoint(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: Vec<u8>,
        _: &str,
    ) -> AwsResult<InvokeOutput> {
        Err(unsupported("InvokeEndpoint"))
    }
}

/// What one pass measured.
struct Outcome {
    /// Calls per job (each job is one job-hour), all operations.
    all: f64,
    describe: f64,
    list: f64,
    /// The worst delay between a job's end and its run's Done, in job-time seconds.
    worst_delay: f64,
    /// The worst delay between a job's end and the first answer that showed it (a List or a
    /// Describe), in job-time seconds: the rest of `worst_delay` is the engine stepping the runs.
    worst_seen: f64,
    wall: Duration,
}

/// Follows `jobs` concurrent one-hour training runs to Done at `scale` job-seconds per wall
/// second, with the sweeper when `sweep`.
async fn pass(jobs: usize, scale: f64, sweep: bool) -> Outcome {
    let scaled = |job_secs: f64| Duration::from_secs_f64(job_secs / scale);
    let dir = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let store = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ))
    .await
    .unwrap();
    let stub = Arc::new(StubAws::new(scaled(JOB_HOUR)));
    let provider = Arc::new(AwsProvider::fixed(stub.clone()));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Engine::new(
        store.clone(),
        clock.clone(),
        provider.clone(),
        EngineConfig {
            max_concurrency: 64,
            poll_min: Some(scaled(5.0)),
            poll_max: Some(scaled(60.0)),
            idle_max: scaled(5.0).min(Duration::from_millis(100)),
            ..EngineConfig::default()
        },
        workflows::handlers(),
        workflows::load_definitions().unwrap(),
    )
    .unwrap();
    let sweeper = sweep.then(|| {
        Sweeper::new(
            store.clone(),
            provider.clone(),
            clock.clone(),
            engine.waker(),
            SweepSettings {
                interval: scaled(30.0),
                safety_net: scaled(3600.0),
                margin: scaled(5.0),
                ..SweepSettings::default()
            },
        )
    });
    let engine = Arc::new(match &sweeper {
        Some(s) => engine.with_sweep(s.handle()),
        None => engine,
    });
    let limits = InputLimits {
        data_dir: None,
        max_inline_csv_bytes: 1 << 20,
    };
    let mut ids = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let id = uuid::Uuid::now_v7();
        let request = TrainingRequest::parse(
            serde_json::json!({
                "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
                "Bucket": "bench",
                "S3Prefix": "bench",
                "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1",
                "inline_csv": "label,x\n1,0.5\n",
            }),
            &limits,
        )
        .unwrap();
        store
            .insert_run(
                NewRun {
                    id,
                    kind: Kind::Training,
                    state: State::Uploading,
                    request: serde_json::to_value(request).unwrap(),
                    context: JobContext::new(job_name(id)).to_value(),
                    resource_name: Some(job_name(id)),
                    submitted_by: None,
                    detail: "bench".into(),
                },
                clock.now(),
            )
            .await
            .unwrap();
        ids.push(id);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let engine_task = tokio::spawn(engine.clone().run(stop_rx.clone()));
    engine.waker().notify_one();
    let sweeper_task = sweeper.map(|s| tokio::spawn(s.run(stop_rx.clone())));
    let deadline = started + scaled(JOB_HOUR) * 4 + Duration::from_secs(30);
    loop {
        let unfinished = store.count_unfinished().await.unwrap();
        if unfinished == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{unfinished} runs unfinished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = started.elapsed();
    let _ = stop_tx.send(true);
    engine_task.await.unwrap();
    if let Some(t) = sweeper_task {
        t.await.unwrap();
    }
    let ends = stub.jobs.lock().unwrap().clone();
    let seen = stub.seen.lock().unwrap().clone();
    let mut worst = 0.0f64;
    let mut worst_seen = 0.0f64;
    for id in &ids {
        let run = store.get_run(*id).await.unwrap().unwrap();
        assert_eq!(run.state, State::Done, "{:?}", run.last_error);
        let (_, ended) = ends[&job_name(*id)];
        let delay = (run.updated_at - ended).to_std().unwrap_or_default();
        worst = worst.max(delay.as_secs_f64() * scale);
        let seen_after = (seen[&job_name(*id)] - ended).to_std().unwrap_or_default();
        worst_seen = worst_seen.max(seen_after.as_secs_f64() * scale);
    }
    store.close().await;
    let calls = stub.calls.lock().unwrap().clone();
    let per_job = |n: u64| n as f64 / jobs as f64;
    Outcome {
        all: per_job(calls.values().sum()),
        describe: per_job(calls.get("DescribeTrainingJob").copied().unwrap_or(0)),
        list: per_job(calls.get("ListTrainingJobs").copied().unwrap_or(0)),
        worst_delay: worst,
        worst_seen,
        wall,
    }
}

/// How many DescribeTrainingJob calls the workflow's own poll policy makes for a one-hour job
/// when every poll is on time: Submitted's look by name, then polls until one sees the end.
fn policy_describes() -> u32 {
    let defs = workflows::load_definitions().unwrap();
    let poll: PollPolicy = defs.iter().find(|d| d.kind == Kind::Training).unwrap().poll;
    let mut t = poll.interval(0).as_secs_f64();
    let mut n = 2; // Submitted's describe and the first poll at `t`
    let mut polls = 0;
    while t < JOB_HOUR {
        polls += 1;
        t += poll.interval(polls).as_secs_f64();
        n += 1;
    }
    n
}

fn jobs_arg() -> Vec<usize> {
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--jobs" {
            return it
                .next()
                .expect("--jobs 1,100,1000")
                .split(',')
                .map(|n| n.trim().parse().expect("a number of jobs"))
                .collect();
        }
    }
    vec![1, 100, 1000]
}

/// Job-seconds per wall second for `jobs` concurrent jobs: one job-hour in a few seconds, and
/// slower as the number of jobs grows so that the baseline's polls (67 per job-hour) stay
/// within what the engine steps on two cores.
fn scale_for(jobs: usize) -> f64 {
    match jobs {
        0..=10 => 1000.0,
        11..=200 => 200.0,
        _ => 100.0,
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    println!(
        "AWS calls per job-hour (one-hour training jobs; the workflow's policy alone would \
         describe each {} times)",
        policy_describes()
    );
    println!(
        "{:>5} {:>5} | {:^24} | {:^24} | {:>7} | {:>6} {:>6} | {:^19} | {:^19}",
        "jobs",
        "scale",
        "sweep off: all desc list",
        "sweep on: all desc list",
        "on obs.",
        "ratio",
        "obs.",
        "off: seen / done",
        "on: seen / done"
    );
    for jobs in jobs_arg() {
        let scale = scale_for(jobs);
        let off = pass(jobs, scale, false).await;
        let on = pass(jobs, scale, true).await;
        println!(
            "{:>5} {:>5} | {:>7.1} {:>7.1} {:>7.2}  | {:>7.1} {:>7.1} {:>7.2}  | {:>7.2} | {:>5.1}x {:>5.1}x | {:>6.1} s {:>7.1} s | {:>6.1} s {:>7.1} s",
            jobs,
            scale,
            off.all,
            off.describe,
            off.list,
            on.all,
            on.describe,
            on.list,
            on.describe + on.list,
            off.all / on.all,
            (off.describe + off.list) / (on.describe + on.list),
            off.worst_seen,
            off.worst_delay,
            on.worst_seen,
            on.worst_delay,
        );
        eprintln!(
            "  ({jobs} jobs: {:.1} s wall with the sweep off, {:.1} s on)",
            off.wall.as_secs_f64(),
            on.wall.as_secs_f64()
        );
    }
    println!(
        "Calls per job-hour. all: every AWS call (PutObject and CreateTrainingJob included); \
         desc/list: DescribeTrainingJob/ListTrainingJobs; obs.: Describe + List (following the \
         job). ratio: all off/on; obs.: Describe+List off/on. seen / done: the longest from a \
         job's end to the first AWS answer showing it (a List or a Describe) / to its run's \
         Done (job-time seconds; done - seen is the engine stepping the runs, magnified by the \
         time scale). Goal: <= 5 following calls per job-hour at 100 \
         jobs, an end noticed within the sweep interval (30 s)."
    );
}
