//! Several replicas on one PostgreSQL database (issue #12): three real service processes share
//! one database, one secret key and the emulator, each with its own worker id (r1, r2, r3) and a
//! short lease. These tests always run on PostgreSQL, whatever `EXECUTOR_TEST_STORE` says.
//!
//! Every AWS call of the replicas goes through a fault proxy that only delays it, so a step
//! (which makes at least one AWS call) holds its run's lease for a while: a replica killed at a
//! random moment is then nearly always mid-step, holding leases that only expiry frees.
//!
//! - a SIGKILL of one replica and later of a second: every run ends right through the
//!   survivors, each with exactly one AWS resource, the dead replicas' leased runs are taken over
//!   within the lease and the run view shows the survivor as their lease owner;
//! - a rolling restart (SIGTERM, start again) of all three while runs are submitted: every
//!   accepted run ends right with exactly one resource, and a stopped replica leaves no lease;
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
/// The delay of every AWS call of the replicas (see the module doc).
const AWS_DELAY: Duration = Duration::from_millis(250);
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
}

impl Cluster {
    /// An empty database and a directory for the shared key file; no replica yet.
    fn new() -> Cluster {
        Cluster {
            replicas: Vec::new(),
            pg: PgDatabase::create(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The settings of replica `worker`: the shared database URL and key file (the file the
    /// first replica creates, beside `db`, which is never opened on PostgreSQL), a data
    /// directory of its own, its worker id, a short lease.
    fn config(&self, aws: &str, worker: &str) -> ServiceConfig {
        config_in(self.dir.path(), &self.pg, aws, worker)
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

/// Waits until some of `ids` are mid-step on replica `worker` (leased by it, not ended); returns
/// them.
async fn wait_for_leases(addr: SocketAddr, ids: &[String], worker: &str, at_least: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let held = views(addr, ids)
            .await
            .iter()
            .filter(|v| !terminal(v) && leased_by(v) == Some(worker))
            .count();
        if held >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica {worker} never held {at_least} leases at once"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- The work ----------------------------------------------------------------------------------

/// One kind of run, with the emulator's knobs: how many describes its resource stays running.
#[derive(Clone, Copy, Debug)]
enum Work {
    Trains(u32),
    /// A training job SageMaker fails.
    TrainingFails(u32),
    Transform(u32),
    Script(u32),
    Automl(u32),
    Deploys(u32),
}

impl Work {
    /// The emulator's stats kind of the run's AWS resource.
    fn resource(self) -> &'static str {
        match self {
            Work::Trains(_) | Work::TrainingFails(_) => "training_jobs",
            Work::Transform(_) => "transform_jobs",
            Work::Script(_) => "processing_jobs",
            Work::Automl(_) => "automl_jobs",
            Work::Deploys(_) => "endpoints",
        }
    }

    fn end_state(self) -> &'static str {
        match self {
            Work::TrainingFails(_) => "Failed",
            _ => "Done",
        }
    }

    /// The route, body and success status of the run's submission; creates what it needs in
    /// the emulator first (input objects, a model and its endpoint config).
    async fn request(self, emu: &Emulator, bucket: &str) -> (String, Value, u16) {
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
}

/// Submits one run of `work` through the replica at `addr`: its id when accepted, else what
/// the replica (or the connection) answered.
async fn try_submit(
    addr: SocketAddr,
    work: Work,
    emu: &Emulator,
    bucket: &str,
) -> Result<Submitted, String> {
    let (route, body, accepted) = work.request(emu, bucket).await;
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
    })
}

async fn submit(addr: SocketAddr, work: Work, emu: &Emulator, bucket: &str) -> Submitted {
    try_submit(addr, work, emu, bucket)
        .await
        .unwrap_or_else(|e| panic!("submit: {e}"))
}

/// Waits until `run` ends (through the replica `svc`) and checks it ended right with exactly
/// one AWS resource, created once and never created again. Returns its view.
async fn ended_right(svc: &Service, emu: &Emulator, run: &Submitted) -> Value {
    let status = svc.wait_terminal(&run.id, WAIT).await;
    let (_, view) = svc.get(&format!("/api/v1/runs/{}", run.id)).await;
    assert_eq!(
        status["state"],
        run.work.end_state(),
        "{:?} run {}: {view}",
        run.work,
        run.id
    );
    let name = view["context"]["job_name"]
        .as_str()
        .unwrap_or_else(|| panic!("run {} names no resource: {view}", run.id));
    let resource = run.work.resource();
    let stats = emu.job_stats(resource, name).await;
    assert_eq!(
        (
            stats["creates"].as_u64(),
            stats["duplicate_creates"].as_u64()
        ),
        (Some(1), Some(0)),
        "run {}: exactly one of {resource} {name}, created once: {stats}",
        run.id
    );
    let creates = history_details(&view)
        .iter()
        .filter(|d| d.starts_with("create accepted"))
        .count();
    assert!(
        creates <= 1,
        "run {}: one create in the history: {view}",
        run.id
    );
    if run.work.end_state() == "Failed" {
        assert!(
            view["last_error"].as_str().is_some_and(|e| !e.is_empty()),
            "run {}: the run carries AWS's reason: {view}",
            run.id
        );
    }
    view
}

/// The ids of every run the store holds (through the replica `svc`).
async fn stored_ids(svc: &Service) -> BTreeSet<String> {
    let (code, page) = svc.get("/api/v1/runs?limit=1000").await;
    assert_eq!(code, 200, "{page}");
    assert!(page["next_cursor"].is_null(), "one page holds every run");
    page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// The mix of one wave of runs: training mostly (some of it failing), and every other kind
/// whose resource the emulator counts, each running for `polls` describes or so.
fn mix(n: usize, polls: u32) -> Vec<Work> {
    (0..n)
        .map(|i| {
            let p = polls + (i as u32 % 4);
            match i % 10 {
                3 => Work::Transform(p),
                5 => Work::Script(p),
                6 => Work::TrainingFails(p),
                7 => Work::Automl(p),
                9 => Work::Deploys(p),
                _ => Work::Trains(p),
            }
        })
        .collect()
}

// ---- The tests ---------------------------------------------------------------------------------

/// Kills `victim` (SIGKILL) while it holds leases, then checks that its leased runs are taken
/// over by the survivors within the lease, each seen leased by a survivor. Returns how many
/// runs it held.
async fn kill_mid_step(
    cluster: &mut Cluster,
    victim: usize,
    survivor: usize,
    runs: &[Submitted],
    worker: &str,
) -> usize {
    let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
    let survivor_addr = cluster.replicas[survivor].addr;
    wait_for_leases(cluster.replicas[victim].addr, &ids, worker, 2).await;
    cluster.replicas[victim].kill();
    let killed = Instant::now();
    // What the victim held when it died: the run and its version then.
    let orphans: BTreeMap<String, i64> = views(survivor_addr, &ids)
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
        tokio::time::sleep(Duration::from_millis(15)).await;
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
    eprintln!("{worker} killed holding {orphans:?}: taken over after {taken:?} by {owners:?}");
    orphans.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_the_work_and_a_killed_one_loses_nothing() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let emu = Emulator::shared();
    let proxy = slow_aws(emu).await;
    let mut cluster = Cluster::new();
    cluster.start(&proxy.url(), &["r1", "r2", "r3"], &[]).await;
    let bucket = unique("replicas");
    emu.create_bucket(&bucket).await;

    // A first wave, spread over the three replicas' APIs.
    let addrs = cluster.addrs();
    let mut runs = Vec::new();
    for (i, work) in mix(24, 12).into_iter().enumerate() {
        runs.push(submit(addrs[i % 3], work, emu, &bucket).await);
    }
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
    let orphans = kill_mid_step(&mut cluster, 0, 1, &runs, "r1").await;
    let takeovers = metric_sum(addrs[1], "executor_lease_takeovers_total").await
        + metric_sum(addrs[2], "executor_lease_takeovers_total").await;
    assert!(
        takeovers >= takeovers_before + orphans as f64,
        "the survivors counted their takeovers of r1's {orphans} runs: \
         {takeovers_before} -> {takeovers}"
    );

    // A second wave through the survivors, then r2 dies mid-step too; r3 is left.
    for (i, work) in mix(8, 10).into_iter().enumerate() {
        runs.push(submit(addrs[1 + i % 2], work, emu, &bucket).await);
    }
    kill_mid_step(&mut cluster, 1, 2, &runs, "r2").await;

    let last = &cluster.replicas[2];
    for run in &runs {
        ended_right(last, emu, run).await;
    }
    let submitted: BTreeSet<String> = runs.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        stored_ids(last).await,
        submitted,
        "no run lost, none invented"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_all_three_under_load_loses_nothing() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let emu = Emulator::shared();
    let proxy = slow_aws(emu).await;
    let mut cluster = Cluster::new();
    cluster.start(&proxy.url(), &["r1", "r2", "r3"], &[]).await;
    let bucket = unique("rolling");
    emu.create_bucket(&bucket).await;

    // Runs in flight before the first restart.
    let addrs = Arc::new(Mutex::new(cluster.addrs()));
    let mut first = Vec::new();
    for (i, work) in mix(12, 8).into_iter().enumerate() {
        first.push(submit(cluster.addrs()[i % 3], work, emu, &bucket).await);
    }
    // More keep coming, round the replicas, whichever is restarting: a refused submission is
    // allowed (the client would try another replica), a lost accepted one is not.
    let accepted: Arc<Mutex<Vec<Submitted>>> = Arc::new(Mutex::new(first));
    let refused: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let submitter = {
        let (addrs, stop, bucket) = (addrs.clone(), stop.clone(), bucket.clone());
        let (accepted, refused) = (accepted.clone(), refused.clone());
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let addr = addrs.lock().unwrap()[i % 3];
                let work = mix(10, 6)[i % 10];
                match try_submit(addr, work, emu, &bucket).await {
                    Ok(run) => accepted.lock().unwrap().push(run),
                    Err(e) => refused.lock().unwrap().push(e),
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let ids = || -> Vec<String> {
        accepted
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.id.clone())
            .collect()
    };

    for k in 0..3 {
        let worker = format!("r{}", k + 1);
        let other = cluster.replicas[(k + 1) % 3].addr;
        // SIGTERM mid-step: the replica finishes its steps and releases its leases.
        wait_for_leases(cluster.replicas[k].addr, &ids(), &worker, 1).await;
        let mut old = cluster.replicas.remove(k);
        let config = old.config.clone();
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
        let held: Vec<Value> = views(other, &ids())
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
    submitter.await.unwrap();
    let refused = refused.lock().unwrap().clone();
    let mut runs = accepted.lock().unwrap().clone();
    eprintln!(
        "rolling restart: {} runs accepted, {} refused: {refused:?}",
        runs.len(),
        refused.len()
    );
    assert!(
        runs.len() >= 12 + 10,
        "runs kept being accepted during the restarts: {runs:?} {refused:?}"
    );
    runs.push(late);

    let svc = &cluster.replicas[0];
    for run in &runs {
        ended_right(svc, emu, run).await;
    }
    // Nothing doubled: the store holds exactly the accepted runs, except perhaps one whose
    // answer a stopping replica never sent (which must then have ended right too).
    let stored = stored_ids(svc).await;
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
