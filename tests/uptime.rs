//! The service stays up and says why: a store that cannot write answers 503 with `Retry-After`
//! and recovers by itself, `/readyz` reports a full disk and a wedged engine loop, and the
//! service refuses to start on a database it cannot write.

mod support;

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Emulator, Scratch, Service, client, training_body, unique};

const TRAIN: &str = "/api/service/v1/pipelines/training/train";

/// A small tmpfs mounted for one test (the tests run as root), unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(ok.success(), "mounting a tmpfs needs root");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount_read_only(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Fills the file system with one file until it has no space left; returns the file.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // The last partial chunk.
        while f.write(&chunk[..512]).is_ok_and(|n| n > 0) {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn readyz(svc: &Service) -> (u16, Value, Option<String>) {
    let r = client().get(svc.url("/readyz")).send().await.unwrap();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or_default(), retry_after)
}

/// Polls `/readyz` until it answers `code`; returns its body.
async fn wait_readyz(svc: &Service, code: u16, timeout: Duration) -> (Value, Option<String>) {
    let deadline = Instant::now() + timeout;
    loop {
        let (got, body, retry_after) = readyz(svc).await;
        if got == code {
            return (body, retry_after);
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still answers {got} {body}, not {code}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_full_disk_answers_503_with_retry_after_and_everything_resumes_when_space_returns() {
    if support::skip_on_postgres("a full disk under the SQLite file") {
        return;
    }
    let emu = Emulator::shared();
    let bucket = unique("uptime");
    emu.create_bucket(&bucket).await;
    let disk = Tmpfs::mount("8m");
    let scratch = Scratch::new();
    let mut config = scratch.config(emu.url());
    config.db = disk.path().join("executor.db");
    // A run whose lease ran out while its commit failed is claimed again soon after.
    config
        .extra_env
        .push(("EXECUTOR_LEASE_SECS".into(), "3".into()));
    let svc = Service::start(config);

    let (code, accepted) = svc
        .post(TRAIN, &training_body(&bucket, "Completed", 40))
        .await;
    assert_eq!(code, 202, "{accepted}");
    let in_flight = accepted["id"].as_str().unwrap().to_string();
    svc.wait_run(&in_flight, "Polling", |r| r["state"] == "Polling")
        .await;

    let filler = disk.fill();
    let lines_before = svc.stderr.all().len();
    // SQLite may still reuse space a failed write had taken, so some writes can pass: submit
    // until one is refused. None of them is a 500.
    let mut refused = None;
    for _ in 0..200 {
        let r = client()
            .post(svc.url(TRAIN))
            .json(&training_body(&bucket, "Completed", 1))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        if code == 503 {
            refused = Some(r);
            break;
        }
        assert_eq!(
            code, 202,
            "a submission on a full disk is accepted or a 503"
        );
    }
    let refused = refused.expect("a submission on a full disk is refused");
    let retry_after = refused.headers().get("retry-after").cloned();
    let body: Value = refused.json().await.unwrap();
    assert!(
        retry_after.is_some(),
        "a 503 from the store says when to retry"
    );
    assert!(
        body["error"].as_str().unwrap().contains("cannot write"),
        "{body}"
    );

    let (not_ready, retry_after) = wait_readyz(&svc, 503, Duration::from_secs(30)).await;
    assert!(
        not_ready["error"]
            .as_str()
            .unwrap()
            .contains("cannot write"),
        "{not_ready}"
    );
    assert!(retry_after.is_some());

    // The disk stays full for a while: the log stays quiet meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lines_while_full = svc.stderr.all().len() - lines_before;
    assert!(
        lines_while_full < 150,
        "{lines_while_full} log lines while the disk was full"
    );

    std::fs::remove_file(filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let resumed = loop {
        let (code, body) = svc
            .post(TRAIN, &training_body(&bucket, "Completed", 1))
            .await;
        if code == 202 {
            break body;
        }
        assert_eq!(code, 503, "{body}");
        assert!(
            Instant::now() < deadline,
            "submissions still refused once the disk has space: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    wait_readyz(&svc, 200, Duration::from_secs(60)).await;
    let done = svc
        .wait_terminal(resumed["id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(done["state"], "Done", "{done}");
    let done = svc
        .wait_terminal(&in_flight, Duration::from_secs(120))
        .await;
    assert_eq!(done["state"], "Done", "the run in flight finishes: {done}");
}

#[tokio::test]
async fn the_service_refuses_to_start_on_a_read_only_database() {
    if support::skip_on_postgres("a read-only SQLite file") {
        return;
    }
    let emu = Emulator::shared();
    let disk = Tmpfs::mount("8m");
    let scratch = Scratch::new();
    let mut config = scratch.config(emu.url());
    config.db = disk.path().join("executor.db");
    let mut first = Service::start(config.clone());
    assert!(first.terminate().success());
    disk.remount_read_only();

    let out = Service::command(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it started: {stderr}");
    assert!(
        stderr.contains("read-only") && stderr.contains("executor.db"),
        "{stderr}"
    );
    assert!(!stderr.contains("LISTENING"), "{stderr}");
}

#[tokio::test]
async fn readyz_fails_when_the_engine_loop_stops_making_progress() {
    let emu = Emulator::shared();
    let scratch = Scratch::new();
    let mut config = scratch.config(emu.url());
    config
        .extra_env
        .push(("EXECUTOR_LEASE_SECS".into(), "3".into()));
    // The loop parks at its first iteration, as a wedged loop would.
    config.failpoints.push("engine-loop".into());
    let svc = Service::start(config);
    svc.stderr
        .wait_for("the wedged loop", Duration::from_secs(30), |l| {
            l.contains("FAILPOINT engine-loop")
        });
    // The store still answers; only the engine is stuck.
    assert_eq!(svc.get("/healthz").await.0, 200);
    let (body, retry_after) = wait_readyz(&svc, 503, Duration::from_secs(60)).await;
    assert!(
        body["error"].as_str().unwrap().contains("engine loop"),
        "{body}"
    );
    assert!(retry_after.is_some());
}

/// Waits for the server to close `conn`: a read returns end of file or an error. Panics if it
/// stays open for `within`.
async fn closed_by_the_server(conn: &mut tokio::net::TcpStream, within: Duration) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Err(_) => panic!("the connection is still open after {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {} // a response to a finished request: keep reading
        }
    }
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed_and_healthz_answers_past_the_connection_cap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let emu = Emulator::shared();
    let scratch = Scratch::new();
    let mut config = scratch.config(emu.url());
    config.extra_env.extend([
        ("EXECUTOR_MAX_CONNECTIONS".to_string(), "20".to_string()),
        ("EXECUTOR_HTTP_IDLE_TIMEOUT_SECS".into(), "2".into()),
        ("EXECUTOR_HTTP_HEADER_TIMEOUT_SECS".into(), "1".into()),
    ]);
    let svc = Service::start(config);

    // Keep-alive clients that made one request and went quiet.
    let mut idle = Vec::new();
    for _ in 0..10 {
        let mut c = tokio::net::TcpStream::connect(svc.addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = c.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        idle.push(c);
    }
    // Slowloris clients that never finish their headers, more than the cap leaves room for.
    let mut slow = Vec::new();
    for _ in 0..15 {
        let mut c = tokio::net::TcpStream::connect(svc.addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(c);
    }

    // The service still answers, once the slow and idle connections make room.
    let (code, health) = svc.get("/healthz").await;
    assert_eq!(code, 200, "{health}");
    for c in &mut slow {
        closed_by_the_server(c, Duration::from_secs(30)).await;
    }
    for c in &mut idle {
        closed_by_the_server(c, Duration::from_secs(30)).await;
    }
    assert!(
        svc.stderr
            .all()
            .iter()
            .any(|l| l.contains("connection cap is reached")),
        "the log says the cap was reached"
    );
}

#[tokio::test]
async fn a_store_locked_by_another_process_answers_503_quickly_and_resumes_when_released() {
    if support::skip_on_postgres("SQLite's write lock held by another process") {
        return;
    }
    let emu = Emulator::shared();
    let bucket = unique("uptime");
    emu.create_bucket(&bucket).await;
    let scratch = Scratch::new();
    let svc = Service::start(scratch.config(emu.url()));

    // Another process holds the write lock (an operator's sqlite3 shell, a stuck backup).
    let url = format!("sqlite://{}", scratch.db().display());
    let mut other = sqlx::SqlitePool::connect(&url)
        .await
        .unwrap()
        .acquire()
        .await
        .unwrap()
        .detach();
    sqlx::Executor::execute(&mut other, "BEGIN IMMEDIATE")
        .await
        .unwrap();

    // Under the request timeout (30 s): the write waits the busy timeout, then is refused.
    let r = client()
        .post(svc.url(TRAIN))
        .json(&training_body(&bucket, "Completed", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("cannot write"),
        "{body}"
    );

    sqlx::Executor::execute(&mut other, "ROLLBACK")
        .await
        .unwrap();
    let (code, accepted) = svc
        .post(TRAIN, &training_body(&bucket, "Completed", 1))
        .await;
    assert_eq!(code, 202, "{accepted}");
    let done = svc
        .wait_terminal(accepted["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(done["state"], "Done", "{done}");
}

#[tokio::test]
async fn a_finished_runs_history_is_pruned_after_the_retention_keeping_its_last_row() {
    let emu = Emulator::shared();
    let bucket = unique("history");
    emu.create_bucket(&bucket).await;
    let scratch = Scratch::new();
    let config = scratch.config(emu.url());
    let mut svc = Service::start(config.clone());
    let (code, a) = svc
        .post(TRAIN, &training_body(&bucket, "Completed", 2))
        .await;
    assert_eq!(code, 202, "{a}");
    let id = a["id"].as_str().unwrap().to_string();
    svc.wait_terminal(&id, Duration::from_secs(60)).await;
    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    let before = run["history"].as_array().unwrap().len();
    assert!(before > 2, "a whole history first: {run}");
    assert!(svc.terminate().success());

    // Started again with a retention the run has passed (a nanosecond): the pruning pass at
    // start-up leaves its last row, and the run itself.
    let mut config = config;
    config.extra_env.push((
        "EXECUTOR_HISTORY_RETENTION_DAYS".into(),
        format!("{}", 1e-9 / 86_400.0),
    ));
    let svc = Service::start(config);
    svc.stderr
        .wait_for("the pruning pass", Duration::from_secs(30), |l| {
            l.contains("pruned finished runs' history")
        });
    let (_, pruned) = svc.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(pruned["state"], "Done", "{pruned}");
    let history = pruned["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "only the last row stays: {pruned}");
    assert_eq!(
        history[0]["to_state"],
        run["history"][before - 1]["to_state"],
        "{pruned}"
    );
}
