//! Several replicas on one PostgreSQL database (issue #12): three real service processes share
//! one database, one secret key and the emulator, each with its own worker id (r1, r2, r3) and a
//! short lease. These tests always run on PostgreSQL, whatever `EXECUTOR_TEST_STORE` says.
//!
//! Every AWS call of the replicas goes through a fault proxy that only delays it, so a step
//! (which makes at least one AWS call) holds its run's lease for a while: a replica killed at a
//! random moment is then nearly always mid-step, holding leases that only expiry frees.
//!
//! - a SIGKILL of one replica and later of a second, with a few hundred runs of every workflow
//!   kind in flight (270, at least a hundred unfinished at each kill): every run ends right
//!   through the survivors, each with exactly one AWS resource, the dead replicas' leased runs
//!   are taken over within the lease and the run view shows the survivor as their lease owner;
//! - a rolling restart (SIGTERM, start again) of all three with a couple of hundred runs in
//!   flight while more are submitted: every accepted run ends right with exactly one resource,
//!   nothing lost, nothing stored twice, and a stopped replica leaves no lease;
//! - a replica parked at `training.after_create` keeps its lease while it lives (nobody steals
//!   it), and after its SIGKILL a survivor adopts the created job instead of creating another;
//! - a second process started with a live replica's worker id never takes its leases (they are
//!   the live instance's, not the worker id's), and adopts its job once it is killed;
//! - a cancel requested through one replica stops a run whichever replica follows it;
//! - one `Idempotency-Key` sent to every replica at once stores one run.
//!
//! The tests of this file run one at a time (each starts three replicas on a shared machine).

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::fault_proxy::{Fault, FaultPlan, FaultProxy};
use support::{
    Emulator, PgDatabase, ROLE, Service, ServiceConfig, client, history_details, leased_by,
    terminal, training_body, unique, views,
};

/// `EXECUTOR_LEASE_SECS` of every replica (the service's minimum).
const LEASE: Duration = Duration::from_secs(3);
/// How long a dead replica's run may wait for a survivor: its lease (renewed every third of it,
/// so at most a whole lease after the kill), the survivor's idle wait (1 s) and a step, with
/// room for a loaded machine.
const TAKEOVER: Duration = Duration::from_secs(3 + 6);
/// How long one run may take to end.
const WAIT: Duration = Duration::from_secs(45);
/// The failover test's runs: the first wave, through all three replicas, and the second,
/// through the two left after the first kill.
const FAILOVER_FIRST: usize = 210;
const FAILOVER_SECOND: usize = 60;
/// The fewest runs in flight (not ended) when a replica is killed.
const IN_FLIGHT_AT_KILL: usize = 100;
/// The rolling restart's runs in flight before the first restart, and the clients that keep
/// submitting (each pausing between its submissions) until the last replica is back.
const ROLLING_FIRST: usize = 180;
const ROLLING_CLIENTS: usize = 3;
const ROLLING_PAUSE: Duration = Duration::from_millis(50);
/// How long a few hundred runs may take to end, all of them.
const WAIT_ALL: Duration = Duration::from_secs(150);
/// The delay of every AWS call of the replicas (see the module doc).
const AWS_DELAY: Duration = Duration::from_millis(250);
/// The delay of every AWS call of the replicas while a burst of runs is submitted ([`burst`]);
/// shorter than [`LEASE`], so that a call a killed replica left in the proxy reaches the
/// emulator before any survivor may take its run over.
const AWS_BURST_DELAY: Duration = Duration::from_secs(2);
const SCRIPT_IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/python:3.11";

/// The tests of this file take turns: three replicas each are enough for two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---- The replicas ----------------------------------------------------------------------------

/// Three (or more) replicas of the service on one PostgreSQL database of their own.
struct Cluster {
    /// Declared first: dropped (killed) before the database is dropped.
    replicas: Vec<Service>,
    pg: PgDatabase,
    dir: tempfile::TempDir,
    /// Settings every replica gets besides [`config_in`]'s.
    env: Vec<(String, String)>,
}

impl Cluster {
    /// An empty database and a directory for the shared key file; no replica yet.
    fn new() -> Cluster {
        Cluster {
            replicas: Vec::new(),
            pg: PgDatabase::create(),
            dir: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    /// An empty cluster whose replicas carry a few hundred runs at once: the AWS rate limits
    /// are off (they pace an account's calls, and their defaults, two creates a second per
    /// replica, would spread a few hundred creates over a minute), each runs 32 steps at once
    /// (with every AWS call [`AWS_DELAY`] late, 16 would make the last survivor the bottleneck,
    /// not the emulator), and they log at `info`.
    fn loaded() -> Cluster {
        let mut cluster = Cluster::new();
        cluster.env = [
            ("EXECUTOR_AWS_RATE_LIMITS", "off"),
            ("EXECUTOR_MAX_CONCURRENCY", "32"),
            ("EXECUTOR_LOG", "info"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        cluster
    }

    /// The settings of replica `worker`: the shared database URL and key file (the file the
    /// first replica creates, beside `db`, which is never opened on PostgreSQL), a data
    /// directory of its own, its worker id, a short lease.
    fn config(&self, aws: &str, worker: &str) -> ServiceConfig {
        let mut config = config_in(self.dir.path(), &self.pg, aws, worker);
        config.extra_env.extend(self.env.iter().cloned());
        config
    }

    /// Starts replicas `workers` against `aws`, one after the other (the first creates the key
    /// file the others read).
    async fn start(&mut self, aws: &str, workers: &[&str], failpoints: &[&str]) {
        for worker in workers {
            let mut config = self.config(aws, worker);
            config.failpoints = failpoints.iter().map(|f| f.to_string()).collect();
            let svc = blocking(move || Service::start(config)).await;
            self.replicas.push(svc);
        }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.replicas.iter().map(|r| r.addr).collect()
    }
}

fn config_in(dir: &Path, pg: &PgDatabase, aws: &str, worker: &str) -> ServiceConfig {
    let data = dir.join(format!("data-{worker}"));
    std::fs::create_dir_all(&data).unwrap();
    let env = [
        ("EXECUTOR_WORKER_ID", worker),
        ("EXECUTOR_LEASE_SECS", "3"),
        ("EXECUTOR_DRAIN_SECS", "15"),
        // What the backend's script body leaves out (it sends no `configs`).
        ("EXECUTOR_SCRIPT_ROLE_ARN", ROLE),
        ("EXECUTOR_SCRIPT_IMAGE", SCRIPT_IMAGE),
    ];
    ServiceConfig {
        aws_endpoint: aws.to_string(),
        db: dir.join("executor.db"),
        database_url: Some(pg.url.clone()),
        data_dir: Some(data),
        failpoints: vec![],
        extra_env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        unset_env: vec![],
    }
}

/// Runs a blocking call (starting or stopping a process) off the runtime's threads, which the
/// fault proxy and the submitters need meanwhile.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// A proxy in front of the shared emulator that delays every AWS call by [`AWS_DELAY`].
async fn slow_aws(emu: &Emulator) -> FaultProxy {
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    proxy.set_plan(FaultPlan::always(Fault::Delay(AWS_DELAY)));
    proxy
}

/// Submits a burst of runs, `works`, round the replicas at `addrs` while AWS answers slowly
/// (every call [`AWS_BURST_DELAY`] late; then [`AWS_DELAY`] again): the runs pile up in flight,
/// as a few hundred long jobs would, instead of the emulator (one thread, shared with the
/// test's own set-up calls) finishing the first before the last is in.
async fn burst(
    proxy: &FaultProxy,
    addrs: &[SocketAddr],
    works: Vec<Work>,
    emu: &Emulator,
    bucket: &str,
) -> Vec<Submitted> {
    let since = Instant::now();
    proxy.set_plan(FaultPlan::always(Fault::Delay(AWS_BURST_DELAY)));
    let runs = submit_all(addrs, works, emu, bucket).await;
    proxy.set_plan(FaultPlan::always(Fault::Delay(AWS_DELAY)));
    eprintln!("{} runs submitted in {:?}", runs.len(), since.elapsed());
    runs
}

/// The sum of every sample of a metric family on one replica's `/metrics`.
async fn metric_sum(addr: SocketAddr, family: &str) -> f64 {
    let text = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every run the store holds (one listing page through `addr`).
async fn all_runs(addr: SocketAddr) -> Vec<Value> {
    let page: Value = client()
        .get(format!("http://{addr}/api/v1/runs?limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(page["next_cursor"].is_null(), "one page holds every run");
    page["runs"].as_array().unwrap().clone()
}

/// The ids of the runs the store holds that have not ended (through `addr`).
async fn unfinished(addr: SocketAddr) -> Vec<String> {
    all_runs(addr)
        .await
        .iter()
        .filter(|r| !terminal(r))
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until replica `worker` is mid-step on at least `at_least` runs (leased by it, not
/// ended); returns how many runs had not ended then.
async fn wait_for_leases(addr: SocketAddr, worker: &str, at_least: usize) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let open = unfinished(addr).await;
        let held = views(addr, &open)
            .await
            .iter()
            .filter(|v| !terminal(v) && leased_by(v) == Some(worker))
            .count();
        if held >= at_least {
            return open.len();
        }
        assert!(
            Instant::now() < deadline,
            "replica {worker} never held {at_least} leases at once"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- The work ----------------------------------------------------------------------------------

/// One kind of run (every workflow kind), with the emulator's knobs: how many describes its
/// resource stays running.
#[derive(Clone, Copy, Debug)]
enum Work {
    Trains(u32),
    /// A training job SageMaker fails.
    TrainingFails(u32),
    Transform(u32),
    Script(u32),
    Automl(u32),
    Deploys(u32),
    /// An endpoint (InService, made by the test) taken down: deleted once, gone after one
    /// describe showing it Deleting.
    Teardown,
}

impl Work {
    /// The emulator's stats kind of the run's AWS resource.
    fn resource(self) -> &'static str {
        match self {
            Work::Trains(_) | Work::TrainingFails(_) => "training_jobs",
            Work::Transform(_) => "transform_jobs",
            Work::Script(_) => "processing_jobs",
            Work::Automl(_) => "automl_jobs",
            Work::Deploys(_) | Work::Teardown => "endpoints",
        }
    }

    fn end_state(self) -> &'static str {
        match self {
            Work::TrainingFails(_) => "Failed",
            _ => "Done",
        }
    }

    /// The route, body and success status of the run's submission, and the name of its
    /// resource when the test chooses it (an endpoint); creates what it needs in the emulator
    /// first (input objects, a model and its endpoint config, an endpoint).
    async fn request(self, emu: &Emulator, bucket: &str) -> (String, Value, u16, Option<String>) {
        match self {
            Work::Trains(polls) | Work::TrainingFails(polls) => {
                let outcome = if matches!(self, Work::TrainingFails(_)) {
                    "Failed"
                } else {
                    "Completed"
                };
                (
                    "/api/service/v1/pipelines/training/train".into(),
                    training_body(bucket, outcome, polls),
                    202,
                    None,
                )
            }
            Work::Transform(polls) => (
                "/api/service/v1/pipelines/inference".into(),
                json!({
                    "ModelName": "churn-model",
                    "TransformInput": {
                        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": format!("s3://{bucket}/batch/in/")}},
                        "ContentType": "text/csv", "SplitType": "Line"
                    },
                    "TransformOutput": {"S3OutputPath": format!("s3://{bucket}/batch/out/"), "AssembleWith": "Line"},
                    "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
                    "Environment": {"_emulator_outcome": "Completed", "_emulator_polls": polls.to_string()},
                }),
                202,
                None,
            ),
            Work::Script(polls) => {
                // The backend's body (RemoteBody.java); its storage credentials are sealed with
                // the replicas' shared key, so whichever replica runs a step can open them.
                let folder = format!("leo1311/remote/{}/1/Input", unique("R"));
                for (file, text) in [("train.py", "print(1)\n"), ("data/train.csv", "a,b\n1,2\n")] {
                    emu.put_object(bucket, &format!("{folder}/{file}"), text)
                        .await;
                }
                (
                    "/execute".into(),
                    json!({
                        "bucket": bucket, "project_id": "leo1311", "name": "REPLICAS", "version": "1",
                        "credentials": {"endpoint": emu.url(), "access_key": "test", "secret_key": "test"},
                        "input_artifacts": folder, "command": "python train.py", "storage": "s3",
                        "environment": {"_emulator_outcome": "Completed", "_emulator_polls": polls.to_string()},
                    }),
                    201,
                    None,
                )
            }
            Work::Automl(polls) => (
                "/api/service/v1/pipelines/training".into(),
                json!({
                    "type": "automl", "RoleArn": ROLE, "Bucket": bucket, "S3Prefix": "automl/e1",
                    "inline_csv": "label,age\n1,30\n0,40\n", "target_attribute_name": "label",
                    "problem_type": "BinaryClassification", "objective_metric": "F1",
                    "Tags": {"_emulator_outcome": "Completed", "_emulator_polls": polls.to_string()},
                }),
                202,
                None,
            ),
            Work::Deploys(polls) => {
                let endpoint = unique("rep-ep");
                let model = unique("rep-model");
                emu.sagemaker(
                    "CreateModel",
                    json!({"ModelName": model, "ExecutionRoleArn": ROLE,
                           "PrimaryContainer": {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"}}),
                )
                .await;
                let config = format!("{model}-a");
                emu.sagemaker(
                    "CreateEndpointConfig",
                    json!({"EndpointConfigName": config, "ProductionVariants": [{"VariantName": "v1",
                           "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]}),
                )
                .await;
                (
                    format!("/api/service/v1/endpoints/{endpoint}/deploy_model"),
                    json!({"EndpointConfigName": config, "Tags": {"_emulator_polls": polls.to_string()}}),
                    202,
                    Some(endpoint),
                )
            }
            Work::Teardown => {
                let endpoint = unique("rep-down");
                emu.endpoint(&endpoint, 0).await;
                (
                    format!("/api/service/v1/endpoints/{endpoint}/undeploy_models"),
                    json!({}),
                    202,
                    Some(endpoint),
                )
            }
        }
    }
}

/// One accepted run and what it must end as.
#[derive(Clone, Debug)]
struct Submitted {
    id: String,
    work: Work,
    /// Its AWS resource's name when the test chose it (else the run's context names it).
    resource: Option<String>,
}

/// Submits one run of `work` through the replica at `addr`: its id when accepted, else what
/// the replica (or the connection) answered.
async fn try_submit(
    addr: SocketAddr,
    work: Work,
    emu: &Emulator,
    bucket: &str,
) -> Result<Submitted, String> {
    let (route, body, accepted, resource) = work.request(emu, bucket).await;
    let r = client()
        .post(format!("http://{addr}{route}"))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{work:?} to {addr}: {e}"))?;
    let status = r.status().as_u16();
    let reply: Value = r.json().await.unwrap_or(Value::Null);
    if status != accepted {
        return Err(format!("{work:?} to {addr}: {status} {reply}"));
    }
    let id = reply["id"]
        .as_str()
        .or(reply["task_id"].as_str())
        .unwrap_or_else(|| panic!("no run id in {reply}"));
    Ok(Submitted {
        id: id.to_string(),
        work,
        resource,
    })
}

async fn submit(addr: SocketAddr, work: Work, emu: &Emulator, bucket: &str) -> Submitted {
    try_submit(addr, work, emu, bucket)
        .await
        .unwrap_or_else(|e| panic!("submit: {e}"))
}

/// Submits `works` round the replicas at `addrs`, a few at a time (as clients would).
async fn submit_all(
    addrs: &[SocketAddr],
    works: Vec<Work>,
    emu: &Emulator,
    bucket: &str,
) -> Vec<Submitted> {
    use futures_util::stream::{self, StreamExt};
    stream::iter(works.into_iter().enumerate())
        .map(|(i, work)| submit(addrs[i % addrs.len()], work, emu, bucket))
        .buffered(8)
        .collect()
        .await
}

/// Checks that the ended `run` (its `view`) ended right: in its end state, with exactly one AWS
/// resource, created once and never created again (a teardown: its endpoint deleted once), at
/// most one create in its history, no history row after its terminal one.
fn check_ended(run: &Submitted, view: &Value, stats: &Value) {
    let id = &run.id;
    assert_eq!(
        view["state"],
        run.work.end_state(),
        "{:?} run {id}: {view}",
        run.work
    );
    let name = run
        .resource
        .as_deref()
        .or(view["context"]["job_name"].as_str())
        .unwrap_or_else(|| panic!("run {id} names no resource: {view}"));
    let resource = run.work.resource();
    let stats = &stats[resource][name];
    assert_eq!(
        (
            stats["creates"].as_u64(),
            stats["duplicate_creates"].as_u64()
        ),
        (Some(1), Some(0)),
        "run {id}: exactly one of {resource} {name}, created once: {stats}"
    );
    if matches!(run.work, Work::Teardown) {
        assert_eq!(
            (stats["deletes"].as_u64(), stats["status"].as_str()),
            (Some(1), Some("Deleted")),
            "run {id}: endpoint {name} deleted once: {stats}"
        );
    }
    let creates = history_details(view)
        .iter()
        .filter(|d| d.starts_with("create accepted"))
        .count();
    assert!(creates <= 1, "run {id}: one create in the history: {view}");
    let history = view["history"].as_array().unwrap();
    let end = history.iter().position(|e| {
        matches!(
            e["to_state"].as_str(),
            Some("Done" | "Failed" | "Cancelled")
        )
    });
    assert_eq!(
        end.map(|end| end + 1),
        Some(history.len()),
        "run {id}: its terminal row is its last: {view}"
    );
    if run.work.end_state() == "Failed" {
        assert!(
            view["last_error"].as_str().is_some_and(|e| !e.is_empty()),
            "run {id}: the run carries AWS's reason: {view}"
        );
    }
}

/// Waits until `run` ends (through the replica `svc`) and checks it ended right
/// ([`check_ended`]). Returns its view.
async fn ended_right(svc: &Service, emu: &Emulator, run: &Submitted) -> Value {
    svc.wait_terminal(&run.id, WAIT).await;
    let (_, view) = svc.get(&format!("/api/v1/runs/{}", run.id)).await;
    check_ended(run, &view, &emu.stats().await);
    view
}

/// Waits until every one of `runs` has ended (through the replica `svc`, within [`WAIT_ALL`])
/// and checks each ended right ([`check_ended`]).
async fn all_ended_right(svc: &Service, emu: &Emulator, runs: &[Submitted]) {
    let deadline = Instant::now() + WAIT_ALL;
    let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
    loop {
        let open = unfinished(svc.addr).await;
        let open: Vec<&String> = open.iter().filter(|id| ids.contains(id)).collect();
        if open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} runs not ended after {WAIT_ALL:?}: {:?}",
            open.len(),
            views(
                svc.addr,
                &open.into_iter().take(3).cloned().collect::<Vec<_>>()
            )
            .await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stats = emu.stats().await;
    for chunk in runs.chunks(50) {
        let ids: Vec<String> = chunk.iter().map(|r| r.id.clone()).collect();
        for (run, view) in chunk.iter().zip(views(svc.addr, &ids).await) {
            check_ended(run, &view, &stats);
        }
    }
}

/// The ids of every run the store holds (through the replica at `addr`).
async fn stored_ids(addr: SocketAddr) -> BTreeSet<String> {
    all_runs(addr)
        .await
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// The mix of one wave of runs: training mostly (some of it failing) and every other workflow
/// kind (transform, script, AutoML, deployment, teardown), each job running for `polls`
/// describes or so.
fn mix(n: usize, polls: u32) -> Vec<Work> {
    (0..n)
        .map(|i| {
            let p = polls + (i as u32 % 4);
            match i % 10 {
                3 => Work::Transform(p),
                5 => Work::Script(p),
                6 => Work::TrainingFails(p),
                7 => Work::Automl(p),
                8 => Work::Teardown,
                9 => Work::Deploys(p),
                _ => Work::Trains(p),
            }
        })
        .collect()
}

// ---- The tests ---------------------------------------------------------------------------------

/// Kills `victim` (SIGKILL) while it holds leases and at least `in_flight` runs have not
/// ended, then checks that its leased runs are taken over by the survivors within the lease,
/// each seen leased by a survivor. Returns how many runs it held.
async fn kill_mid_step(
    cluster: &mut Cluster,
    victim: usize,
    survivor: usize,
    worker: &str,
    in_flight: usize,
) -> usize {
    let survivor_addr = cluster.replicas[survivor].addr;
    let open = wait_for_leases(cluster.replicas[victim].addr, worker, 2).await;
    cluster.replicas[victim].kill();
    let killed = Instant::now();
    assert!(
        open >= in_flight,
        "{worker} was killed with {open} runs in flight, not {in_flight} or more"
    );
    // What the victim held when it died: the run and its version then.
    let open = unfinished(survivor_addr).await;
    let orphans: BTreeMap<String, i64> = views(survivor_addr, &open)
        .await
        .iter()
        .filter(|v| leased_by(v) == Some(worker))
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_string(),
                v["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(
        !orphans.is_empty(),
        "{worker} was killed mid-step: some run is still leased by it"
    );
    let orphan_ids: Vec<String> = orphans.keys().cloned().collect();
    // Each orphan: when it moved on, and which survivor the run view showed as its owner.
    let mut taken: BTreeMap<String, Duration> = BTreeMap::new();
    let mut owners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    loop {
        for v in views(survivor_addr, &orphan_ids).await {
            let id = v["id"].as_str().unwrap().to_string();
            if let Some(owner) = leased_by(&v).filter(|o| *o != worker) {
                owners.entry(id.clone()).or_default().insert(owner.into());
            }
            if leased_by(&v) != Some(worker) && v["version"].as_i64().unwrap() > orphans[&id] {
                taken.entry(id).or_insert_with(|| killed.elapsed());
            }
        }
        if taken.len() == orphans.len() && owners.len() == orphans.len() {
            break;
        }
        assert!(
            killed.elapsed() < TAKEOVER + Duration::from_secs(10),
            "{worker}'s runs {orphans:?}: taken over {taken:?}, seen leased by {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (id, after) in &taken {
        assert!(
            *after <= TAKEOVER,
            "{worker}'s run {id} was taken over {after:?} after the kill (lease {LEASE:?})"
        );
        assert!(
            owners[id].iter().all(|o| o != worker),
            "run {id}: {owners:?}"
        );
    }
    let slowest = taken.values().max().unwrap();
    eprintln!(
        "{worker} killed with {open} runs in flight, holding {} of them: all taken over within \
         {slowest:?} by {:?}",
        orphans.len(),
        owners.values().flatten().collect::<BTreeSet<_>>(),
        open = open.len()
    );
    orphans.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_the_work_and_a_killed_one_loses_nothing() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let emu = Emulator::shared();
    let proxy = slow_aws(emu).await;
    let mut cluster = Cluster::loaded();
    cluster.start(&proxy.url(), &["r1", "r2", "r3"], &[]).await;
    let bucket = unique("replicas");
    emu.create_bucket(&bucket).await;

    // A first wave, spread over the three replicas' APIs.
    let addrs = cluster.addrs();
    let since = Instant::now();
    let mut runs = burst(&proxy, &addrs, mix(FAILOVER_FIRST, 1), emu, &bucket).await;
    // The work is shared: every replica has run steps (its own /metrics).
    let deadline = Instant::now() + WAIT;
    for (i, addr) in addrs.iter().enumerate() {
        while metric_sum(*addr, "executor_step_duration_seconds_count").await < 1.0 {
            assert!(Instant::now() < deadline, "replica r{} ran no step", i + 1);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let takeovers_before = metric_sum(addrs[1], "executor_lease_takeovers_total").await
        + metric_sum(addrs[2], "executor_lease_takeovers_total").await;

    // r1 dies mid-step; r2 and r3 take its runs over.
    let orphans = kill_mid_step(&mut cluster, 0, 1, "r1", IN_FLIGHT_AT_KILL).await;
    let takeovers = metric_sum(addrs[1], "executor_lease_takeovers_total").await
        + metric_sum(addrs[2], "executor_lease_takeovers_total").await;
    assert!(
        takeovers >= takeovers_before + orphans as f64,
        "the survivors counted their takeovers of r1's {orphans} runs: \
         {takeovers_before} -> {takeovers}"
    );

    // A second wave through the survivors, then r2 dies mid-step too; r3 is left.
    let second = mix(FAILOVER_SECOND, 1);
    runs.extend(burst(&proxy, &addrs[1..], second, emu, &bucket).await);
    kill_mid_step(&mut cluster, 1, 2, "r2", IN_FLIGHT_AT_KILL).await;

    let last = &cluster.replicas[2];
    all_ended_right(last, emu, &runs).await;
    eprintln!(
        "{} runs ended right after {:?}",
        runs.len(),
        since.elapsed()
    );
    let submitted: BTreeSet<String> = runs.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        stored_ids(last.addr).await,
        submitted,
        "no run lost, none invented"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_all_three_under_load_loses_nothing() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let emu = Emulator::shared();
    let proxy = slow_aws(emu).await;
    let mut cluster = Cluster::loaded();
    cluster.start(&proxy.url(), &["r1", "r2", "r3"], &[]).await;
    let bucket = unique("rolling");
    emu.create_bucket(&bucket).await;

    // Runs in flight before the first restart.
    let since = Instant::now();
    let addrs = Arc::new(Mutex::new(cluster.addrs()));
    let first = burst(
        &proxy,
        &cluster.addrs(),
        mix(ROLLING_FIRST, 3),
        emu,
        &bucket,
    )
    .await;
    // More keep coming from a few clients, each round the replicas, whichever is restarting: a
    // refused submission is allowed (the client would try another replica), a lost accepted
    // one is not.
    let accepted: Arc<Mutex<Vec<Submitted>>> = Arc::new(Mutex::new(first));
    let refused: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let submitters: Vec<_> = (0..ROLLING_CLIENTS)
        .map(|client| {
            let (addrs, stop, bucket) = (addrs.clone(), stop.clone(), bucket.clone());
            let (accepted, refused) = (accepted.clone(), refused.clone());
            tokio::spawn(async move {
                let mut i = client;
                while !stop.load(Ordering::Relaxed) {
                    let addr = addrs.lock().unwrap()[i % 3];
                    let work = mix(10, 3)[i % 10];
                    match try_submit(addr, work, emu, &bucket).await {
                        Ok(run) => accepted.lock().unwrap().push(run),
                        Err(e) => refused.lock().unwrap().push(e),
                    }
                    i += 1;
                    tokio::time::sleep(ROLLING_PAUSE).await;
                }
            })
        })
        .collect();

    for k in 0..3 {
        let worker = format!("r{}", k + 1);
        let other = cluster.replicas[(k + 1) % 3].addr;
        // SIGTERM mid-step: the replica finishes its steps and releases its leases.
        let open = wait_for_leases(cluster.replicas[k].addr, &worker, 1).await;
        let mut old = cluster.replicas.remove(k);
        let config = old.config.clone();
        let stopping = Instant::now();
        let (old, exit) = blocking(move || {
            let exit = old.terminate();
            (old, exit)
        })
        .await;
        assert!(
            exit.success(),
            "{worker} stopped cleanly on SIGTERM: {exit}"
        );
        drop(old);
        eprintln!(
            "{worker} stopped with {open} runs in flight, after {:?}",
            stopping.elapsed()
        );
        assert!(
            open >= ROLLING_FIRST / 4,
            "{worker} stopped under load: {open} runs in flight"
        );
        let stored: Vec<String> = stored_ids(other).await.into_iter().collect();
        let held: Vec<Value> = views(other, &stored)
            .await
            .into_iter()
            .filter(|v| leased_by(v) == Some(worker.as_str()))
            .collect();
        assert!(
            held.is_empty(),
            "{worker} stopped and left leases: {held:?}"
        );
        // The same settings again: the same worker id, a new instance.
        let svc = blocking(move || Service::start(config)).await;
        addrs.lock().unwrap()[k] = svc.addr;
        cluster.replicas.insert(k, svc);
    }
    // The last restarted replica takes work again (a run submitted to it ends).
    let late = submit(cluster.replicas[2].addr, Work::Trains(2), emu, &bucket).await;
    stop.store(true, Ordering::Relaxed);
    for submitter in submitters {
        submitter.await.unwrap();
    }
    let refused = refused.lock().unwrap().clone();
    let mut runs = accepted.lock().unwrap().clone();
    eprintln!(
        "rolling restart: {} runs accepted, {} refused, after {:?}: {:?}",
        runs.len(),
        refused.len(),
        since.elapsed(),
        refused.iter().take(3).collect::<Vec<_>>()
    );
    assert!(
        runs.len() >= ROLLING_FIRST + 30,
        "runs kept being accepted during the restarts: {} {refused:?}",
        runs.len()
    );
    runs.push(late);

    let svc = &cluster.replicas[0];
    all_ended_right(svc, emu, &runs).await;
    eprintln!(
        "{} runs ended right after {:?}",
        runs.len(),
        since.elapsed()
    );
    // Nothing doubled: the store holds exactly the accepted runs, except perhaps one whose
    // answer a stopping replica never sent (which must then have ended right too).
    let stored = stored_ids(svc.addr).await;
    let submitted: BTreeSet<String> = runs.iter().map(|r| r.id.clone()).collect();
    let missing: Vec<&String> = submitted.difference(&stored).collect();
    assert!(missing.is_empty(), "accepted runs lost: {missing:?}");
    for id in stored.difference(&submitted) {
        // Its kind is unknown here: of the mix, it ends Done, or Failed as its job does.
        let status = svc.wait_terminal(id, WAIT).await;
        assert!(
            matches!(status["state"].as_str(), Some("Done" | "Failed")),
            "an unanswered submission {id} ended: {status}"
        );
    }
    assert!(
        stored.len() <= submitted.len() + refused.len(),
        "runs invented: {} stored, {} accepted, {} refused",
        stored.len(),
        submitted.len(),
        refused.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_after_its_create_leaves_the_job_to_a_survivor_who_adopts_it() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let emu = Emulator::shared();
    let mut cluster = Cluster::new();
    let point = "training.after_create";
    // r1 alone first, so that it is the one that creates the jobs and parks after the create.
    cluster.start(&emu.url(), &["r1"], &[point]).await;
    let bucket = unique("adopt");
    emu.create_bucket(&bucket).await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        runs.push(submit(cluster.replicas[0].addr, Work::Trains(3), emu, &bucket).await);
    }
    let marker = format!("FAILPOINT {point}");
    cluster.replicas[0]
        .stderr
        .wait_for_count(&marker, runs.len(), WAIT, |l| l == marker);
    cluster.start(&emu.url(), &["r2", "r3"], &[]).await;

    // While r1 lives its parked steps keep their leases (its heartbeat renews them): for two
    // whole leases no survivor takes them, and no second job is created.
    let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
    let r2 = cluster.replicas[1].addr;
    let watched = Instant::now();
    while watched.elapsed() < 2 * LEASE {
        for v in views(r2, &ids).await {
            assert_eq!(leased_by(&v), Some("r1"), "a live lease was taken: {v}");
            assert_eq!(v["state"], "Submitted", "{v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let jobs: Vec<String> = views(r2, &ids)
        .await
        .iter()
        .map(|v| v["context"]["job_name"].as_str().unwrap().to_string())
        .collect();
    for job in &jobs {
        assert_eq!(emu.job_stats("training_jobs", job).await["creates"], 1);
    }

    cluster.replicas[0].kill();
    for run in &runs {
        let view = ended_right(&cluster.replicas[1], emu, run).await;
        let details = history_details(&view);
        assert!(
            details.iter().any(|d| d.starts_with("adopted")),
            "a survivor adopted the job r1 created: {details:?}"
        );
        assert!(
            !details.iter().any(|d| d.starts_with("create accepted")),
            "r1's create was never committed, and nobody created again: {details:?}"
        );
    }
    let takeovers = metric_sum(cluster.replicas[1].addr, "executor_lease_takeovers_total").await
        + metric_sum(cluster.replicas[2].addr, "executor_lease_takeovers_total").await;
    assert!(
        takeovers >= runs.len() as f64,
        "the survivors took the runs over after r1's leases expired: {takeovers}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_a_live_replicas_worker_id_never_takes_its_leases() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let emu = Emulator::shared();
    let mut cluster = Cluster::new();
    let point = "training.after_create";
    cluster.start(&emu.url(), &["r1"], &[point]).await;
    let bucket = unique("twin");
    emu.create_bucket(&bucket).await;
    let run = submit(cluster.replicas[0].addr, Work::Trains(2), emu, &bucket).await;
    let marker = format!("FAILPOINT {point}");
    cluster.replicas[0]
        .stderr
        .wait_for(&marker, WAIT, |l| l == marker);
    let ids = vec![run.id.clone()];
    let owner = views(cluster.replicas[0].addr, &ids).await[0]["lease_owner"]
        .as_str()
        .unwrap()
        .to_string();
    // A second process configured alike (a restart while the old one still runs, or a copy
    // deployed twice): its start-up recovery releases dead instances' leases only, and the
    // first instance is alive.
    cluster.start(&emu.url(), &["r1"], &[]).await;
    let twin = cluster.replicas[1].addr;
    let watched = Instant::now();
    while watched.elapsed() < 2 * LEASE {
        let v = &views(twin, &ids).await[0];
        assert_eq!(
            v["lease_owner"].as_str(),
            Some(owner.as_str()),
            "the live instance's lease was taken: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.replicas[0].kill();
    let view = ended_right(&cluster.replicas[1], emu, &run).await;
    assert!(
        history_details(&view)
            .iter()
            .any(|d| d.starts_with("adopted")),
        "{view}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_through_one_replica_stops_a_run_another_one_follows() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let emu = Emulator::shared();
    let mut cluster = Cluster::new();
    cluster.start(&emu.url(), &["r1", "r2", "r3"], &[]).await;
    let bucket = unique("cancel");
    emu.create_bucket(&bucket).await;
    let mut runs = Vec::new();
    for i in 0..3 {
        let svc = &cluster.replicas[i];
        let (code, reply) = svc
            .post(
                "/api/service/v1/pipelines/training/train",
                &training_body(&bucket, "Completed", 100_000),
            )
            .await;
        assert_eq!(code, 202, "{reply}");
        runs.push(reply["id"].as_str().unwrap().to_string());
    }
    for (i, id) in runs.iter().enumerate() {
        // Through the next replica's API, whoever runs its steps.
        let svc = &cluster.replicas[(i + 1) % 3];
        svc.wait_run(id, "Polling", |r| r["state"] == "Polling")
            .await;
        let (code, reply) = svc
            .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
            .await;
        assert_eq!(code, 202, "cancel: {reply}");
    }
    for (i, id) in runs.iter().enumerate() {
        let svc = &cluster.replicas[(i + 2) % 3];
        let status = svc.wait_terminal(id, WAIT).await;
        assert_eq!(status["state"], "Cancelled", "{status}");
        let (_, view) = svc.get(&format!("/api/v1/runs/{id}")).await;
        let job = view["context"]["job_name"].as_str().unwrap();
        let stats = emu.job_stats("training_jobs", job).await;
        assert_eq!(
            (stats["creates"].as_u64(), stats["stops"].as_u64()),
            (Some(1), Some(1)),
            "one job, stopped once: {stats}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_sent_to_every_replica_at_once_stores_one_run() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let emu = Emulator::shared();
    let mut cluster = Cluster::new();
    cluster.start(&emu.url(), &["r1", "r2", "r3"], &[]).await;
    let bucket = unique("idem");
    emu.create_bucket(&bucket).await;
    // A client that retries through the load balancer: the same request and key reach every
    // replica, several times, at once.
    let body = training_body(&bucket, "Completed", 2);
    let key = unique("key");
    let addrs = cluster.addrs();
    let posts = (0..9).map(|i| {
        let (addr, body, key) = (addrs[i % 3], &body, &key);
        async move {
            let r = client()
                .post(format!(
                    "http://{addr}/api/service/v1/pipelines/training/train"
                ))
                .header("Idempotency-Key", key.as_str())
                .json(body)
                .send()
                .await
                .unwrap();
            let code = r.status().as_u16();
            (code, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    });
    let replies = futures_util::future::join_all(posts).await;
    let first = &replies[0].1;
    for (code, reply) in &replies {
        assert_eq!(*code, 202, "{reply}");
        assert_eq!(reply["id"], first["id"], "one run for one key: {reply}");
    }
    let run = Submitted {
        id: first["id"].as_str().unwrap().to_string(),
        work: Work::Trains(2),
        resource: None,
    };
    ended_right(&cluster.replicas[2], emu, &run).await;
    assert_eq!(cluster.replicas[1].run_count().await, 1, "one run stored");
}

/// A training request whose emulated job runs `seconds` of wall-clock time, then completes.
fn timed_training(bucket: &str, seconds: f64) -> Value {
    let mut body = training_body(bucket, "Completed", 0);
    body["HyperParameters"] = json!({
        "_emulator_outcome": "Completed",
        "_emulator_seconds": seconds.to_string(),
    });
    body
}

/// The List* sweeps are shared (issue #12): three replicas, each sweeping every second, follow
/// a dozen training jobs of 15 s. Between them they list about once per second (one replica's
/// sweeps, through the database's `sweeps` table), not three times; every replica's engine
/// reads the coverage from the database, so a job stepped by a replica that did not list it is
/// still described only when its status changed (polled every 2.5 s uncovered, it would be
/// described six times); and every job ends promptly after its end (the sweep's nudge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_list_sweep_per_interval_and_its_coverage() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let emu = Emulator::shared();
    let bucket = unique("shared-sweep");
    emu.create_bucket(&bucket).await;
    // Counts every AWS call, delays none.
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let mut cluster = Cluster::new();
    for worker in ["r1", "r2", "r3"] {
        let mut config = cluster.config(&proxy.url(), worker);
        for (k, v) in [
            ("EXECUTOR_SWEEP_INTERVAL_SECS", "1"),
            ("EXECUTOR_SWEEP_SAFETY_NET_SECS", "3600"),
            ("EXECUTOR_POLL_MIN_MS", "2500"),
            ("EXECUTOR_POLL_MAX_MS", "2500"),
        ] {
            config.extra_env.push((k.to_string(), v.to_string()));
        }
        let svc = blocking(move || Service::start(config)).await;
        cluster.replicas.push(svc);
    }
    let job = Duration::from_secs(15);
    let lists_before = proxy.call_count("ListTrainingJobs");
    let since = Instant::now();
    let mut runs = Vec::new();
    for i in 0..12 {
        let svc = &cluster.replicas[i % 3];
        let (code, a) = svc
            .post(
                "/api/service/v1/pipelines/training/train",
                &timed_training(&bucket, job.as_secs_f64()),
            )
            .await;
        assert_eq!(code, 202, "{a}");
        runs.push((
            a["id"].as_str().unwrap().to_string(),
            a["name"].as_str().unwrap().to_string(),
        ));
    }
    // Every job ends promptly after its 15 s: within a few sweep intervals and a step.
    let r1 = &cluster.replicas[0];
    for (id, _) in &runs {
        let st = r1.wait_terminal(id, Duration::from_secs(60)).await;
        assert_eq!(st["state"], "Done", "{st}");
    }
    let took = since.elapsed();
    let lists = proxy.call_count("ListTrainingJobs") - lists_before;
    eprintln!(
        "12 jobs of {job:?} ended after {took:?}; calls: {:?}",
        proxy.calls()
    );
    assert!(
        took < job + Duration::from_secs(12),
        "the jobs ended {took:?} after their submission ({job:?} jobs)"
    );
    // The replicas stepped the runs between them, so runs were covered by sweeps other
    // replicas made.
    let mut steppers = 0;
    for svc in &cluster.replicas {
        if metric_sum(svc.addr, "executor_transitions_total").await > 0.0 {
            steppers += 1;
        }
    }
    assert!(steppers >= 2, "only {steppers} replica stepped the runs");
    let per_second = lists as f64 / took.as_secs_f64();
    assert!(lists >= 5, "the replicas swept ({lists} ListTrainingJobs)");
    assert!(
        per_second < 1.6,
        "{lists} ListTrainingJobs in {took:?} ({per_second:.2}/s): the replicas did not share \
         the sweep (one sweep per second is one replica's)"
    );
    for (_, name) in &runs {
        let stats = emu.training_stats(name).await;
        assert_eq!(stats["creates"], 1, "{stats}");
        let describes = stats["describes"].as_u64().unwrap();
        assert!(
            (1..=3).contains(&describes),
            "{name}: {describes} describes (uncovered polling would be about six)"
        );
    }
}
