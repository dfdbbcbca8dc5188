//! Test ground shared by the integration tests: the AWS emulator (moto plus the project's
//! SageMaker lifecycle extension, one per test binary), the real service binary on its own
//! SQLite file and a free loopback port, and small HTTP helpers.
#![allow(dead_code)]

pub mod fake_backend;
pub mod fault_proxy;
pub mod tcp_proxy;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// moto refuses anonymous S3 calls but does not verify signatures.
const FAKE_SIGNATURE: &str = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";

pub const ROLE: &str = "arn:aws:iam::123456789012:role/SageMakerRole";

/// Every key of Essedum's record shape (ESSEDUM-CONTRACT.md): the backend's parsers `get` each
/// one and drop an item that lacks any.
pub const RECORD_KEYS: [&str; 16] = [
    "sourceID",
    "name",
    "id",
    "status",
    "type",
    "container",
    "artifacts",
    "adapter",
    "project",
    "createdOn",
    "syncDate",
    "description",
    "sourceOrg",
    "sourcename",
    "deployment",
    "rawPayload",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with moto installed: `EXECUTOR_TEST_PYTHON`, else the repo's `.venv`.
fn python() -> PathBuf {
    std::env::var_os("EXECUTOR_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"))
}

/// Lines a child printed on a stream, with a way to wait for one.
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Lines {
    fn follow(self, stream: impl std::io::Read + Send + 'static, echo: &'static str) {
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("EXECUTOR_TEST_ECHO").is_some() {
                    eprintln!("[{echo}] {line}");
                }
                let (lock, cv) = &*self.0;
                lock.lock().unwrap().push(line);
                cv.notify_all();
            }
            // Wake waiters on EOF too.
            self.0.1.notify_all();
        });
    }

    /// Waits until a line satisfies `pred`; returns it.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        self.wait_for_count(what, 1, timeout, pred)
    }

    /// Waits until `n` lines satisfy `pred`; returns the last of them.
    pub fn wait_for_count(
        &self,
        what: &str,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let (lock, cv) = &*self.0;
        let deadline = Instant::now() + timeout;
        let mut lines = lock.lock().unwrap();
        loop {
            let matching: Vec<&String> = lines.iter().filter(|l| pred(l)).collect();
            if matching.len() >= n {
                return matching[n - 1].clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; output so far:\n{}",
                lines.join("\n")
            );
            lines = cv.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Follows a child's output stream from a test.
    pub fn follow_public(self, stream: impl std::io::Read + Send + 'static) {
        self.follow(stream, "child")
    }

    pub fn all(&self) -> Vec<String> {
        self.0.0.lock().unwrap().clone()
    }
}

/// The emulator process; it exits when its stdin closes (when the test binary exits).
pub struct Emulator {
    pub addr: SocketAddr,
    _child: Mutex<Child>,
    _stdin: Mutex<ChildStdin>,
}

impl Emulator {
    pub fn start() -> Emulator {
        let py = python();
        assert!(
            py.exists(),
            "{} not found: run the README's test command (it installs moto into .venv)",
            py.display()
        );
        let mut child = Command::new(py)
            .arg(repo().join("tests/emulator/launcher.py"))
            .args(["--port", "0", "--exit-on-stdin-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the emulator");
        let out = Lines::default();
        out.clone().follow(child.stdout.take().unwrap(), "emulator");
        Lines::default().follow(child.stderr.take().unwrap(), "emulator-err");
        let ready = out.wait_for("EMULATOR_READY", Duration::from_secs(60), |l| {
            l.starts_with("EMULATOR_READY")
        });
        let port: u16 = ready
            .trim_start_matches("EMULATOR_READY port=")
            .trim()
            .parse()
            .expect("emulator port");
        Emulator {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _stdin: Mutex::new(child.stdin.take().unwrap()),
            _child: Mutex::new(child),
        }
    }

    /// The one emulator of this test binary.
    pub fn shared() -> &'static Emulator {
        static EMU: OnceLock<Emulator> = OnceLock::new();
        EMU.get_or_init(Emulator::start)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates a bucket (path-style; moto does not check signatures).
    pub async fn create_bucket(&self, name: &str) {
        let r = client()
            .put(format!("{}/{name}", self.url()))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "create bucket {name}: {}",
            r.status()
        );
    }

    /// Writes an object (path-style; moto only checks that a signature header is there).
    pub async fn put_object(&self, bucket: &str, key: &str, body: &str) {
        let r = client()
            .put(format!("{}/{bucket}/{key}", self.url()))
            .header("Authorization", FAKE_SIGNATURE)
            .header("Content-Type", "text/csv")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "put {bucket}/{key}: {}",
            r.status()
        );
    }

    /// One SageMaker API call straight to the emulator (to set up fixtures such as endpoints).
    pub async fn sagemaker(&self, operation: &str, body: Value) -> Value {
        let r = client()
            .post(format!("{}/", self.url()))
            .header("X-Amz-Target", format!("SageMaker.{operation}"))
            .header("Content-Type", "application/x-amz-json-1.1")
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sagemaker/aws4_request, SignedHeaders=host, Signature=00",
            )
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{operation}: {status} {v}");
        v
    }

    /// A model, an endpoint config and an endpoint named `name`, InService (or, with `polls`,
    /// still Creating for that many describes).
    pub async fn endpoint(&self, name: &str, polls: u32) {
        self.sagemaker(
            "CreateModel",
            json!({"ModelName": name, "ExecutionRoleArn": ROLE,
                   "PrimaryContainer": {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"}}),
        )
        .await;
        self.sagemaker(
            "CreateEndpointConfig",
            json!({"EndpointConfigName": name, "ProductionVariants": [{"VariantName": "v1",
                   "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]}),
        )
        .await;
        self.sagemaker(
            "CreateEndpoint",
            json!({"EndpointName": name, "EndpointConfigName": name,
                   "Tags": [{"Key": "_emulator_polls", "Value": polls.to_string()}]}),
        )
        .await;
        if polls == 0 {
            // The emulator moves an endpoint on when it is described.
            self.sagemaker("DescribeEndpoint", json!({"EndpointName": name}))
                .await;
        }
    }

    /// Queues the next answer of an endpoint.
    pub async fn queue_answer(&self, answer: Value) {
        let r = client()
            .post(format!("{}/_emulator/invoke-results", self.url()))
            .json(&answer)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    /// What an endpoint received, oldest first.
    pub async fn invocations(&self, endpoint: &str) -> Vec<Value> {
        let v: Value = client()
            .get(format!(
                "{}/_emulator/invocations?endpoint={endpoint}",
                self.url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v.as_array().cloned().unwrap_or_default()
    }

    /// The extension's bookkeeping of every resource, by kind (`training_jobs`, `endpoints`,
    /// ...) and name.
    pub async fn stats(&self) -> Value {
        client()
            .get(format!("{}/_emulator/stats", self.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The extension's bookkeeping for one job of a kind (`training_jobs`, `automl_jobs`, ...).
    pub async fn job_stats(&self, kind: &str, job: &str) -> Value {
        self.stats().await[kind][job].clone()
    }

    /// Reads an object, if it exists.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Option<String> {
        let bytes = self.get_object_bytes(bucket, key).await?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The extension's bookkeeping for one training job.
    pub async fn training_stats(&self, job: &str) -> Value {
        self.job_stats("training_jobs", job).await
    }

    pub async fn training_job_count_with_prefix(&self, prefix: &str) -> usize {
        self.stats().await["training_jobs"]
            .as_object()
            .map(|m| m.keys().filter(|k| k.starts_with(prefix)).count())
            .unwrap_or(0)
    }
}

/// A reply's status and JSON body (Null when the body is not JSON).
pub async fn reply(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A unique lowercase name for test isolation (buckets, prefixes).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub fn client() -> reqwest::Client {
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    C.get_or_init(|| {
        // reqwest is built with rustls but no provider of its own (one TLS stack: the AWS SDK's).
        sagemaker_executor::connection::tls::install_default_provider();
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    })
    .clone()
}

/// Settings for one service process.
#[derive(Clone)]
pub struct ServiceConfig {
    pub aws_endpoint: String,
    /// The SQLite file (also where the secret key file goes beside it).
    pub db: PathBuf,
    /// The store's URL when it is not the SQLite file `db` (the suite on PostgreSQL).
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub failpoints: Vec<String>,
    pub extra_env: Vec<(String, String)>,
    /// Variables the service starts without, even those set for every service by default.
    pub unset_env: Vec<String>,
}

impl ServiceConfig {
    /// The URL the service's store is at.
    pub fn store_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.db.display()))
    }
}

/// The real binary, serving on a free loopback port with its own store (a SQLite file, or a
/// PostgreSQL database of its own when the suite runs on PostgreSQL, see [`on_postgres`]).
pub struct Service {
    child: Child,
    pub addr: SocketAddr,
    pub stderr: Lines,
    pub config: ServiceConfig,
}

impl Service {
    /// The command that starts the binary with `config` (stderr piped).
    pub fn command(config: &ServiceConfig) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sagemaker-executor"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("EXECUTOR_BIND", "127.0.0.1:0")
            .env("EXECUTOR_DATABASE_URL", config.store_url())
            .env("EXECUTOR_POLL_MIN_MS", "50")
            .env("EXECUTOR_POLL_MAX_MS", "200")
            // The suite's jobs advance per describe (the emulator's default), which a List*
            // sweep never sees; tests of the sweep turn it on with time-driven jobs.
            .env("EXECUTOR_SWEEP_INTERVAL_SECS", "0")
            .env("EXECUTOR_S3_FORCE_PATH_STYLE", "true")
            .env("EXECUTOR_LOG", "info,sagemaker_executor=debug")
            .env("AWS_ENDPOINT_URL", &config.aws_endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("EXECUTOR_FAILPOINTS", config.failpoints.join(","))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(d) = &config.data_dir {
            cmd.env("EXECUTOR_DATA_DIR", d);
        }
        if config.database_url.is_some() {
            // PostgreSQL replicas share one key, given: the file SQLite would make beside `db`.
            cmd.env(
                "EXECUTOR_SECRET_KEY_FILE",
                config.db.with_file_name("executor.key"),
            );
        }
        for (k, v) in &config.extra_env {
            cmd.env(k, v);
        }
        for k in &config.unset_env {
            cmd.env_remove(k);
        }
        cmd
    }

    pub fn start(config: ServiceConfig) -> Service {
        let mut cmd = Service::command(&config);
        let mut child = cmd.spawn().expect("start the service binary");
        let stderr = Lines::default();
        stderr
            .clone()
            .follow(child.stderr.take().unwrap(), "service");
        let line = stderr.wait_for("LISTENING", Duration::from_secs(30), |l| {
            l.starts_with("LISTENING ") || l.starts_with("error:")
        });
        let addr = line
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("service failed to start: {line}"))
            .parse()
            .unwrap();
        Service {
            child,
            addr,
            stderr,
            config,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGKILL: no cleanup of any kind.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }

    /// Kills this process and starts a new one on the same database, without failpoints.
    pub fn kill_and_restart(mut self) -> Service {
        self.kill();
        let mut config = self.config.clone();
        config.failpoints.clear();
        Service::start(config)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = client()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        reply(r).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = client().get(self.url(path)).send().await.unwrap();
        reply(r).await
    }

    /// Polls the run's status until it is terminal (or fails the test after `timeout`).
    pub async fn wait_terminal(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, s) = self.get(&format!("/status/{id}")).await;
            assert_eq!(code, 200, "{s}");
            if s["terminal"] == json!(true) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} not terminal after {timeout:?}: {s}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls the run's detail until `pred` holds.
    pub async fn wait_run(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, r) = self.get(&format!("/api/v1/runs/{id}")).await;
            if pred(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "run {id}: timed out waiting for {what}: {r}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Like `wait_terminal`, for a service that requires a token.
    pub async fn wait_terminal_with_token(&self, id: &str, token: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = client()
                .get(self.url(&format!("/status/{id}")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let s: Value = r.json().await.unwrap();
            if s["terminal"] == json!(true) {
                return s;
            }
            assert!(Instant::now() < deadline, "run {id} not terminal: {s}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn run_count(&self) -> usize {
        let (_, page) = self.get("/api/v1/runs?limit=1000").await;
        page["runs"].as_array().map(Vec::len).unwrap_or(0)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the suite runs its services on PostgreSQL (`EXECUTOR_TEST_STORE=postgres`, one fresh
/// database per [`Scratch`] on `EXECUTOR_TEST_POSTGRES_URL`'s server) instead of SQLite files.
pub fn on_postgres() -> bool {
    match std::env::var("EXECUTOR_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("EXECUTOR_TEST_STORE must be sqlite or postgres, not {other:?}"),
    }
}

/// True (and says so on stderr, so that a skip is visible) when the suite runs on PostgreSQL:
/// for the tests about the SQLite file itself (a full disk, a read-only file, its write lock),
/// which return early then.
pub fn skip_on_postgres(why: &str) -> bool {
    let skip = on_postgres();
    if skip {
        eprintln!("skipped on PostgreSQL: {why}");
    }
    skip
}

/// A PostgreSQL database of its own (`exec_t_<uuid>`), dropped with whatever is still
/// connected to it when this is dropped.
pub struct PgDatabase {
    name: String,
    pub url: String,
}

fn postgres_admin_url() -> String {
    std::env::var("EXECUTOR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Runs `f` to its end in a thread with a runtime of its own: the caller may be sync, or inside
/// a runtime that is busy or gone (a drop after a panic).
fn on_own_runtime<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
    .join()
    .unwrap()
}

/// Runs `sql` on the server's admin database.
fn postgres_admin(sql: String) -> Result<(), String> {
    on_own_runtime(async move {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .map_err(|e| e.to_string())?;
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .map(drop)
            .map_err(|e| e.to_string());
        let _ = admin.close().await;
        done
    })
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        let name = format!("exec_t_{}", uuid::Uuid::new_v4().simple());
        postgres_admin(format!("CREATE DATABASE \"{name}\"")).unwrap_or_else(|e| {
            panic!("creating a test database on {}: {e}", postgres_admin_url())
        });
        let mut url = url::Url::parse(&postgres_admin_url()).unwrap();
        url.set_path(&format!("/{name}"));
        PgDatabase {
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = postgres_admin(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ));
    }
}

/// Everything the scratch's store holds, as text: the SQLite files' bytes, or every row of every
/// PostgreSQL table as PostgreSQL writes it (`bytea` in hex), for tests that a secret or a
/// token is stored nowhere. On PostgreSQL a value is also looked for hex-encoded ([`stores`]).
pub fn stored_text(scratch: &Scratch) -> String {
    let Some(pg) = &scratch.pg else {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(scratch.dir.path()).unwrap() {
            let p = entry.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("executor.db")
            {
                bytes.extend(std::fs::read(&p).unwrap());
            }
        }
        assert!(
            !bytes.is_empty(),
            "no database file in the scratch directory"
        );
        return String::from_utf8_lossy(&bytes).into_owned();
    };
    let url = pg.url.clone();
    on_own_runtime(async move {
        use sqlx::Connection;
        let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = 'public' ORDER BY 1",
        )
        .fetch_all(&mut db)
        .await
        .unwrap();
        let mut text = String::new();
        for t in tables {
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT t::text FROM \"{t}\" t"
            )))
            .fetch_all(&mut db)
            .await
            .unwrap();
            text.push_str(&rows.join("\n"));
        }
        text
    })
}

/// Whether `stored` (from [`stored_text`]) holds `value`, as text or hex-encoded (how
/// PostgreSQL renders `bytea`).
pub fn stores(stored: &str, value: &str) -> bool {
    let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
    stored.contains(value) || stored.to_ascii_lowercase().contains(&hex)
}

/// One number from the scratch's store (`sql` in the dialect both backends share).
pub async fn store_count(scratch: &Scratch, sql: &'static str) -> i64 {
    match &scratch.pg {
        Some(pg) => {
            let db = sqlx::PgPool::connect(&pg.url).await.unwrap();
            let n = sqlx::query_scalar(sql).fetch_one(&db).await.unwrap();
            db.close().await;
            n
        }
        None => {
            let url = format!("sqlite://{}", scratch.db().display());
            let db = sqlx::SqlitePool::connect(&url).await.unwrap();
            let n = sqlx::query_scalar(sql).fetch_one(&db).await.unwrap();
            db.close().await;
            n
        }
    }
}

/// A scratch directory with a database path and a data directory (and, on PostgreSQL, a
/// database of its own).
pub struct Scratch {
    pub pg: Option<PgDatabase>,
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            pg: on_postgres().then(PgDatabase::create),
            dir: tempfile::tempdir().unwrap(),
        }
    }
    /// The SQLite file's path (where the key file goes beside it, also on PostgreSQL).
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("executor.db")
    }
    /// The URL of this scratch's store.
    pub fn store_url(&self) -> String {
        match &self.pg {
            Some(pg) => pg.url.clone(),
            None => format!("sqlite://{}", self.db().display()),
        }
    }
    pub fn data_dir(&self) -> PathBuf {
        let d = self.dir.path().join("data");
        std::fs::create_dir_all(&d).unwrap();
        d
    }
    pub fn config(&self, aws_endpoint: String) -> ServiceConfig {
        ServiceConfig {
            aws_endpoint,
            db: self.db(),
            database_url: self.pg.as_ref().map(|pg| pg.url.clone()),
            data_dir: Some(self.data_dir()),
            failpoints: vec![],
            extra_env: vec![],
            unset_env: vec![],
        }
    }
}

/// A valid training request body for `bucket`, with emulator knobs in HyperParameters.
pub fn training_body(bucket: &str, outcome: &str, polls: u32) -> Value {
    json!({
        "RoleArn": ROLE,
        "Bucket": bucket,
        "S3Prefix": "experiments/e1",
        "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1",
        "inline_csv": "label,x\n1,0.5\n0,0.1\n",
        "HyperParameters": {"_emulator_outcome": outcome, "_emulator_polls": polls.to_string(), "max_depth": 5},
    })
}

/// The details of a run's history (`GET /api/v1/runs/{id}`), oldest first.
pub fn history_details(run: &Value) -> Vec<String> {
    run["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"].as_str().map(str::to_string))
        .collect()
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

// ---- Datasets (S3 objects) -------------------------------------------------------------------

impl Emulator {
    /// An object's bytes, if it exists.
    pub async fn get_object_bytes(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        // moto refuses anonymous reads; it does not check signatures, only that one is there.
        let r = client()
            .get(format!("{}/{bucket}/{key}", self.url()))
            .header("Authorization", FAKE_SIGNATURE)
            .send()
            .await
            .unwrap();
        if !r.status().is_success() {
            return None;
        }
        Some(r.bytes().await.unwrap().to_vec())
    }

    /// Every key in a bucket under `prefix` (ListObjectsV2, all pages).
    pub async fn list_keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = client()
                .get(format!("{}/{bucket}", self.url()))
                .header("Authorization", FAKE_SIGNATURE)
                .query(&[("list-type", "2"), ("prefix", prefix)]);
            if let Some(t) = &token {
                req = req.query(&[("continuation-token", t.as_str())]);
            }
            let r = req.send().await.unwrap();
            assert!(r.status().is_success(), "list {bucket}: {}", r.status());
            let xml = r.text().await.unwrap();
            keys.extend(xml_values(&xml, "Key"));
            token = xml_values(&xml, "NextContinuationToken").into_iter().next();
            if token.is_none() {
                return keys;
            }
        }
    }

    /// The multipart uploads still open in a bucket (ListMultipartUploads), as their keys.
    pub async fn open_multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let r = client()
            .get(format!("{}/{bucket}?uploads", self.url()))
            .header("Authorization", FAKE_SIGNATURE)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "uploads {bucket}: {}", r.status());
        let xml = r.text().await.unwrap();
        xml.split("<Upload>")
            .skip(1)
            .flat_map(|u| xml_values(u, "Key").into_iter().take(1))
            .collect()
    }
}

/// The texts of every `<tag>...</tag>` in an XML document (S3's replies are that simple).
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|s| s.split_once(close.as_str()).map(|(v, _)| v))
        .map(|v| {
            v.replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
        })
        .collect()
}

/// One part of a `multipart/form-data` body.
pub enum FormPart<'a> {
    Text(&'a str, &'a str),
    /// Field name, file name (None: no `filename`), bytes.
    File(&'a str, Option<&'a str>, &'a [u8]),
}

/// A `multipart/form-data` body with its content type, built by hand so that tests choose the
/// order of the parts.
pub fn form(parts: &[FormPart<'_>]) -> (String, Vec<u8>) {
    let boundary = format!("test-boundary-{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match part {
            FormPart::Text(name, value) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                        .as_bytes(),
                );
            }
            FormPart::File(name, file_name, data) => {
                let file_name = file_name
                    .map(|f| format!("; filename=\"{f}\""))
                    .unwrap_or_default();
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"{file_name}\r\nContent-Type: text/csv\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(data);
                body.extend_from_slice(b"\r\n");
            }
        }
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl Service {
    /// Sends a `multipart/form-data` body; the reply's status, JSON and headers.
    pub async fn post_form(
        &self,
        path: &str,
        parts: &[FormPart<'_>],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let (content_type, body) = form(parts);
        let r = client()
            .post(self.url(path))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.json().await.unwrap_or(Value::Null), headers)
    }

    /// A GET with the reply's headers too.
    pub async fn get_with_headers(&self, path: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = client().get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.json().await.unwrap_or(Value::Null), headers)
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let r = client().delete(self.url(path)).send().await.unwrap();
        reply(r).await
    }

    /// The value of one `/metrics` sample (0 when absent), e.g.
    /// `executor_aws_calls_total{operation="UploadPart",outcome="ok"}`.
    pub async fn metric(&self, sample: &str) -> u64 {
        let text = client()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0)
    }
}

// ---- Regions (connections) -------------------------------------------------------------------

impl Emulator {
    /// One SageMaker API call straight to the emulator, signed for `region` (moto keeps regions
    /// apart); the status and JSON reply, success or not.
    pub async fn sagemaker_in(&self, region: &str, operation: &str, body: Value) -> (u16, Value) {
        let r = client()
            .post(format!("{}/", self.url()))
            .header("X-Amz-Target", format!("SageMaker.{operation}"))
            .header("Content-Type", "application/x-amz-json-1.1")
            .header(
                "Authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=test/20260101/{region}/sagemaker/aws4_request, SignedHeaders=host, Signature=00"
                ),
            )
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        reply(r).await
    }
}

/// The worker id of a run view's lease owner (`r1#3f9a1c2e` → `r1`), if it is leased (tests of
/// several replicas).
pub fn leased_by(view: &Value) -> Option<&str> {
    view["lease_owner"]
        .as_str()
        .map(|o| o.split('#').next().unwrap_or(o))
}

/// Whether a run view is in a terminal state.
pub fn terminal(view: &Value) -> bool {
    matches!(
        view["state"].as_str(),
        Some("Done" | "Failed" | "Cancelled")
    )
}

/// `GET /api/v1/runs/{id}` of each run, through the service at `addr`, all at once.
pub async fn views(addr: SocketAddr, ids: &[String]) -> Vec<Value> {
    let gets = ids.iter().map(|id| async move {
        let r = client()
            .get(format!("http://{addr}/api/v1/runs/{id}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET run {id} from {addr}: {e}"));
        assert_eq!(r.status().as_u16(), 200, "GET run {id}");
        r.json::<Value>().await.unwrap()
    });
    futures_util::future::join_all(gets).await
}
