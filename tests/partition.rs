//! A replica cut off from its PostgreSQL database (issue #12, "Partition"): two real service
//! processes share one database, one secret key and the emulator; replica r1 reaches the
//! database through a TCP proxy that can cut it off, r2 directly. These tests always run on
//! PostgreSQL, whatever `EXECUTOR_TEST_STORE` says.
//!
//! While cut off, r1 stops claiming (no run is leased to it anew) and answers `/readyz` with
//! 503; r2 takes its runs over once their leases run out, and every run ends right with one AWS
//! resource; r1's steps in flight at the cut never commit late (DESIGN.md invariants 2–3: the
//! version fences them), not even after the connection returns. Then r1 is ready again within
//! seconds (its first write that commits ends the failure streak) and steps runs of its own.
//!
//! Every AWS call of the replicas goes through a fault proxy that only delays it, so steps are
//! in flight (holding their leases) when the database goes away.
//!
//! The tests of this file run one at a time (each starts replicas on a shared machine).

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use support::fault_proxy::{Fault, FaultPlan, FaultProxy};
use support::tcp_proxy::TcpProxy;
use support::{
    Emulator, PgDatabase, Service, ServiceConfig, client, history_details, leased_by, terminal,
    training_body, unique, views,
};

/// `EXECUTOR_LEASE_SECS` of every replica (the service's minimum).
const LEASE: Duration = Duration::from_secs(3);
/// How long a cut-off replica's run may wait for r2: its lease (renewed every third of it, so
/// at most a whole lease after the cut), r2's idle wait (1 s) and a step, with room for a loaded
/// machine.
const TAKEOVER: Duration = Duration::from_secs(3 + 6);
/// How long one run may take to end, and `/readyz` to change its answer.
const WAIT: Duration = Duration::from_secs(45);
/// How soon after the connection returns r1 must answer `/readyz` 200: its store ends a
/// failure streak with the first write that commits a second after the latest failure (not
/// SQLite's ten seconds), plus the pool's reconnect and room for a loaded machine.
const READY_AGAIN: Duration = Duration::from_secs(5);
/// The delay of every AWS call of the replicas (see the module doc).
const AWS_DELAY: Duration = Duration::from_millis(250);

/// The tests of this file take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config_in(dir: &Path, database_url: &str, aws: &str, worker: &str) -> ServiceConfig {
    let data = dir.join(format!("data-{worker}"));
    std::fs::create_dir_all(&data).unwrap();
    let env = [
        ("EXECUTOR_WORKER_ID", worker),
        ("EXECUTOR_LEASE_SECS", "3"),
        ("EXECUTOR_DRAIN_SECS", "15"),
    ];
    ServiceConfig {
        aws_endpoint: aws.to_string(),
        // Beside it the shared key file (never opened as a database on PostgreSQL).
        db: dir.join("executor.db"),
        database_url: Some(database_url.to_string()),
        data_dir: Some(data),
        failpoints: vec![],
        extra_env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        unset_env: vec![],
    }
}

/// Starts a replica off the runtime's threads, which the proxies need meanwhile.
async fn start(config: ServiceConfig) -> Service {
    tokio::task::spawn_blocking(move || Service::start(config))
        .await
        .unwrap()
}

/// `url` with its host and port replaced by `addr`'s.
fn through(url: &str, addr: SocketAddr) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_host(Some(&addr.ip().to_string())).unwrap();
    url.set_port(Some(addr.port())).unwrap();
    url.to_string()
}

/// The status code of `/readyz` on the replica at `addr`, and its body.
async fn readyz_said(addr: SocketAddr) -> (u16, String) {
    match client().get(format!("http://{addr}/readyz")).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

async fn readyz(addr: SocketAddr) -> u16 {
    readyz_said(addr).await.0
}

/// Polls `/readyz` until it answers `code`; returns how long that took.
async fn wait_readyz(addr: SocketAddr, code: u16, who: &str) -> Duration {
    let since = Instant::now();
    let mut said = String::new();
    loop {
        let (got, body) = readyz_said(addr).await;
        if got == code {
            return since.elapsed();
        }
        if body != said {
            eprintln!("{who}: /readyz {got} after {:?}: {body}", since.elapsed());
            said = body;
        }
        assert!(
            since.elapsed() < WAIT,
            "{who}'s /readyz answered {got}, not {code}, for {WAIT:?}: {said}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of every sample of a metric family on one replica's `/metrics` (None when it does
/// not answer 200).
async fn metric_sum(addr: SocketAddr, family: &str) -> Option<f64> {
    let r = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?;
    if r.status().as_u16() != 200 {
        return None;
    }
    let text = r.text().await.ok()?;
    Some(
        text.lines()
            .filter(|l| {
                l.strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// Submits a training run through the replica at `addr` that polls its job `polls` times.
async fn submit(addr: SocketAddr, bucket: &str, polls: u32) -> String {
    let r = client()
        .post(format!(
            "http://{addr}/api/service/v1/pipelines/training/train"
        ))
        .json(&training_body(bucket, "Completed", polls))
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let reply: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(code, 202, "submit through {addr}: {reply}");
    reply["id"].as_str().unwrap().to_string()
}

/// Waits until `id` ends (through `svc`) and checks it ended right: Done, with exactly one
/// training job, created once; at most one "create accepted" row; and no row after the first
/// that reached a terminal state. Returns its view.
async fn ended_right(svc: &Service, emu: &Emulator, id: &str) -> Value {
    let status = svc.wait_terminal(id, WAIT).await;
    let (_, view) = svc.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(status["state"], "Done", "run {id}: {view}");
    fenced(emu, id, &view).await;
    view
}

/// What late commits of a fenced-off replica would break, on an ended run's view.
async fn fenced(emu: &Emulator, id: &str, view: &Value) {
    let job = view["context"]["job_name"]
        .as_str()
        .unwrap_or_else(|| panic!("run {id} names no job: {view}"));
    let stats = emu.training_stats(job).await;
    assert_eq!(
        (
            stats["creates"].as_u64(),
            stats["duplicate_creates"].as_u64()
        ),
        (Some(1), Some(0)),
        "run {id}: exactly one training job {job}, created once: {stats}"
    );
    let creates = history_details(view)
        .iter()
        .filter(|d| d.starts_with("create accepted"))
        .count();
    assert!(creates <= 1, "run {id}: two creates in the history: {view}");
    let history = view["history"].as_array().unwrap();
    let end = history
        .iter()
        .position(|e| {
            matches!(
                e["to_state"].as_str(),
                Some("Done" | "Failed" | "Cancelled")
            )
        })
        .unwrap_or_else(|| panic!("run {id}: no terminal row: {view}"));
    assert_eq!(
        end + 1,
        history.len(),
        "run {id}: rows after its terminal row: {view}"
    );
    let seqs: Vec<i64> = history.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "run {id}: history out of order: {seqs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_the_database_stops_claiming_never_commits_late_and_recovers() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let emu = Emulator::shared();
    let aws = FaultProxy::start(emu.addr).await.unwrap();
    aws.set_plan(FaultPlan::always(Fault::Delay(AWS_DELAY)));
    let pg = PgDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let pg_addr: SocketAddr = {
        let url = url::Url::parse(&pg.url).unwrap();
        let host = url.host_str().unwrap();
        let host = if host == "localhost" {
            "127.0.0.1"
        } else {
            host
        };
        format!("{host}:{}", url.port().unwrap_or(5432))
            .parse()
            .unwrap()
    };
    let db_proxy = TcpProxy::start(pg_addr).await;
    let bucket = unique("partition");
    emu.create_bucket(&bucket).await;

    // r1 alone, through the proxy, takes a batch of runs.
    let r1 = start(config_in(
        dir.path(),
        &through(&pg.url, db_proxy.addr),
        &aws.url(),
        "r1",
    ))
    .await;
    let mut runs = Vec::new();
    for i in 0..4 {
        runs.push(submit(r1.addr, &bucket, 12 + i).await);
    }
    // Until it holds leases of runs mid-step, some of them past their first step (their job
    // created), while a later batch is still at its first (its job about to be created).
    let deadline = Instant::now() + WAIT;
    let mut first = true;
    loop {
        let held: Vec<Value> = views(r1.addr, &runs)
            .await
            .into_iter()
            .filter(|v| !terminal(v) && leased_by(v) == Some("r1"))
            .collect();
        let later = held.iter().filter(|v| v["version"].as_i64() > Some(2));
        if first && later.count() >= 2 {
            first = false;
            for i in 0..3 {
                runs.push(submit(r1.addr, &bucket, 10 + i).await);
            }
            continue;
        }
        if !first && held.iter().any(|v| v["version"].as_i64() == Some(1)) {
            break;
        }
        assert!(Instant::now() < deadline, "r1 never held leases: {held:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The cut: from here on r1 can write nothing.
    db_proxy.cut();
    let cut = Instant::now();
    let r2 = start(config_in(dir.path(), &pg.url, &aws.url(), "r2")).await;
    // What r1 held when it was cut off: the runs and their versions then (r1 cannot have
    // written since).
    let orphans: BTreeMap<String, i64> = views(r2.addr, &runs)
        .await
        .iter()
        .filter(|v| leased_by(v) == Some("r1") && !terminal(v))
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_string(),
                v["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(!orphans.is_empty(), "r1 held leases when it was cut off");

    let unready = wait_readyz(r1.addr, 503, "r1 (cut off)").await;
    eprintln!("r1 cut off holding {orphans:?}; /readyz 503 after {unready:?}");

    // r1 accepts no run it cannot store.
    let (code, reply) = r1
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(&bucket, "Completed", 3),
        )
        .await;
    assert_eq!(code, 503, "a submission to the cut-off r1: {reply}");
    // More work while r1 is away, submitted through r2: none of it may reach r1.
    for _ in 0..2 {
        runs.push(submit(r2.addr, &bucket, 3).await);
    }
    // r2 takes r1's runs over once their leases run out, and r1 never claims anything: a run
    // leased by r1 is one of those it held at the cut, at the version it had then.
    let mut taken: BTreeMap<String, Duration> = BTreeMap::new();
    loop {
        let vs = views(r2.addr, &runs).await;
        for v in &vs {
            let id = v["id"].as_str().unwrap();
            let version = v["version"].as_i64().unwrap();
            if leased_by(v) == Some("r1") {
                assert_eq!(
                    orphans.get(id),
                    Some(&version),
                    "run {id} was claimed or written by r1 while it was cut off: {v}"
                );
            }
            if let Some(was) = orphans.get(id)
                && leased_by(v) != Some("r1")
                && version > *was
            {
                taken.entry(id.to_string()).or_insert_with(|| cut.elapsed());
            }
        }
        if vs.iter().all(terminal) {
            break;
        }
        assert!(
            cut.elapsed() < WAIT,
            "runs not ended {WAIT:?} after the cut: {vs:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        taken.len(),
        orphans.len(),
        "r2 took over every run r1 held: {taken:?} of {orphans:?}"
    );
    for (id, after) in &taken {
        assert!(
            *after <= TAKEOVER,
            "r1's run {id} taken over {after:?} after the cut (lease {LEASE:?})"
        );
    }
    eprintln!("r2 took r1's runs over after {taken:?}");
    for id in &runs {
        ended_right(&r2, emu, id).await;
    }
    assert!(
        metric_sum(r2.addr, "executor_lease_takeovers_total")
            .await
            .unwrap()
            >= orphans.len() as f64,
        "r2 counted its takeovers"
    );
    // Still cut off, still not ready.
    assert_eq!(readyz(r1.addr).await, 503, "r1 is still cut off");

    // The connection returns: r1 is ready again at once (it failed writes until the restore,
    // so SQLite's rule would keep it out of the load balancer ten seconds more) and takes
    // part.
    db_proxy.restore();
    let ready = wait_readyz(r1.addr, 200, "r1 (restored)").await;
    eprintln!("r1 ready again {ready:?} after the restore");
    assert!(
        ready < READY_AGAIN,
        "r1 answered /readyz 200 only {ready:?} after the restore (bound {READY_AGAIN:?})"
    );
    let stepped_before = metric_sum(r1.addr, "executor_transitions_total")
        .await
        .expect("r1's /metrics answers once restored");
    // Runs submitted through r1 until r1 has stepped some of them itself (r2 competes for
    // them: a batch may go to r2 entirely).
    let mut late = Vec::new();
    let since = Instant::now();
    let stepped = loop {
        let batch: Vec<String> = {
            let mut batch = Vec::new();
            for _ in 0..6 {
                batch.push(submit(r1.addr, &bucket, 4).await);
            }
            batch
        };
        for id in &batch {
            ended_right(&r1, emu, id).await;
        }
        late.extend(batch);
        let stepped = metric_sum(r1.addr, "executor_transitions_total")
            .await
            .unwrap();
        if stepped > stepped_before {
            break stepped;
        }
        assert!(
            since.elapsed() < WAIT,
            "r1 stepped no run of {late:?} after the restore: {stepped_before} -> {stepped}"
        );
    };
    eprintln!(
        "after the restore r1 made {} transitions on {} runs submitted through it",
        stepped - stepped_before,
        late.len()
    );

    // Last, now that r1 has been back a while: none of its steps cut off mid-way committed
    // late (the histories and the jobs are as they were when the runs ended).
    let mut all = runs.clone();
    all.extend(late);
    for v in views(r2.addr, &all).await {
        let id = v["id"].as_str().unwrap().to_string();
        fenced(emu, &id, &v).await;
    }
    drop(r1);
    drop(r2);
}
