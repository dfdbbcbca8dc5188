//! The Essedum backend, replayed. Every call the Java backend makes to a SageMaker executor is sent
//! here exactly as the backend builds it — method, path, query parameters, headers and body — to
//! the real binary (with tokens configured and the backend's address trusted, as it would be
//! deployed next to the backend) on the emulator, and every reply is read with the backend's own
//! parsing rules. Each rule cites the backend source it comes from; paths are relative to
//! `sv/` of the essedum-platform repository:
//!
//! - `REMOTE` = `icip-adp-remote/src/main/java/com/infosys/icets/icip/icipwebeditor/job/service/`
//! - `PLUGIN` = `icip-adp-aws-sagemaker/.../v2/service/util/ICIPModelAWSServiceSageMaker.java`
//!   (its `*FromRemoteVM` methods: the SageMaker plugin of a connection whose
//!   `executionEnvironment` is `REMOTE`; query `isRemoteDS=true&isCached=false&adapter_instance&
//!   project` plus the route's id, headers `Referer` (+ `Content-Type` on POST))
//! - `ADAPTERS` = `icip-lib-adp/.../adapter/rest/ICIPAdaptersController.java` (`getData`,
//!   `getPostData`, ...: what a UI call on `ICIPMlopsController` with `isCached=false` becomes;
//!   query `isInstance=false&isCached=false&adapter_instance&project` plus the route's id)
//! - `REST` = `icip-lib-adp/.../dataset/service/util/ICIPDataSetServiceUtilRestAbstract.java`
//!   (`getDatasetData`: 200/201/204 are success, any other status still hands the body on;
//!   the caller then looks at the body's first character)
//! - `ROUTES` = `icip-lib-adp/.../dataset/constants/ICIPPluginConstants.java` (`MLOPS_APIS`)

mod support;

use poem::http::HeaderMap;
use poem::listener::TcpAcceptor;
use poem::web::{Data, Query};
use poem::{EndpointExt, Response, Route, Server, get, handler};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::fault_proxy::{Fault, FaultPlan, FaultProxy};
use support::{Emulator, FormPart, RECORD_KEYS, ROLE, Scratch, Service, client, form, unique};

const PROJECT: &str = "Acme";
const ADAPTER: &str = "sagemaker-remote";
/// The static token the service presents to the backend (`access-token`).
const SERVICE_TOKEN: &str = "svc-token-4Jq9w";
const SUBMITTER_TOKEN: &str = "submitter-token-Hd72k";
const OPERATOR_TOKEN: &str = "operator-token-Zp03m";
const SCRIPT_IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/essedum-script:1";
const SCRIPT_INSTANCE_TYPE: &str = "ml.m5.xlarge";
const WAIT: Duration = Duration::from_secs(90);

// ---- A fake Essedum backend that records every connection lookup ---------------------------

/// One request the backend received: its query and headers (names lowercased).
#[derive(Clone, Debug)]
struct Seen {
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
}

#[derive(Default)]
struct BackendState {
    details: HashMap<(String, String), Value>,
    seen: Vec<Seen>,
}

/// Answers `GET /api/aip/services/fetchConnectionDetailsByAdapterInstance` like the backend
/// (`{"connection": {"name", "connectionDetails": "<JSON string>"}}`), recording each request.
struct Backend {
    addr: SocketAddr,
    state: Arc<Mutex<BackendState>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

#[handler]
fn connection_lookup(
    Data(state): Data<&Arc<Mutex<BackendState>>>,
    Query(query): Query<HashMap<String, String>>,
    headers: &HeaderMap,
) -> Response {
    let mut s = state.lock().unwrap();
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    s.seen.push(Seen {
        query: query.clone(),
        headers,
    });
    let key = (
        query.get("project").cloned().unwrap_or_default(),
        query.get("adapter_instance").cloned().unwrap_or_default(),
    );
    match s.details.get(&key) {
        Some(details) => Response::builder().content_type("application/json").body(
            json!({"connection": {"name": key.1, "connectionDetails": details.to_string()}})
                .to_string(),
        ),
        None => Response::builder()
            .status(poem::http::StatusCode::NOT_FOUND)
            .content_type("application/json")
            .body(r#"{"message":"connection not found"}"#),
    }
}

impl Backend {
    async fn start() -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        let state = Arc::new(Mutex::new(BackendState::default()));
        let app = Route::new()
            .at(
                "/api/aip/services/fetchConnectionDetailsByAdapterInstance",
                get(connection_lookup),
            )
            .data(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    app,
                    async move {
                        let _ = stopped.await;
                    },
                    Some(Duration::from_millis(100)),
                )
                .await;
        });
        Backend {
            addr,
            state,
            _stop: stop,
        }
    }

    /// The backend's base URL, which it sends as `Referer` (its `LEAP_ULR` setting).
    fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn set_connection(&self, project: &str, adapter: &str, details: Value) {
        self.state
            .lock()
            .unwrap()
            .details
            .insert((project.into(), adapter.into()), details);
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

// ---- The rig: emulator, backend, service ----------------------------------------------------

struct Rig {
    emu: &'static Emulator,
    backend: Backend,
    svc: Service,
    /// The connection's `bucketName`.
    bucket: String,
    _scratch: Scratch,
}

impl Rig {
    /// A service deployed next to the backend: tokens configured, the backend's address trusted,
    /// connection lookup allowed toward it, and script-job settings for bodies without `configs`.
    async fn start() -> Rig {
        Rig::start_with(Emulator::shared().url()).await
    }

    /// Like `start`, with the service's AWS calls going to `aws_endpoint` (a fault proxy).
    async fn start_with(aws_endpoint: String) -> Rig {
        let emu = Emulator::shared();
        let bucket = unique("essedum");
        emu.create_bucket(&bucket).await;
        let backend = Backend::start().await;
        // The SageMaker connection as the backend stores it (connectionDetails).
        backend.set_connection(
            PROJECT,
            ADAPTER,
            json!({
                "accessKey": "test", "secretKey": "test", "region": "us-east-1",
                "bucketName": bucket, "executionEnvironment": "REMOTE",
                "Url": "http://executor.invalid", "storageType": "s3"
            }),
        );
        let scratch = Scratch::new();
        let mut config = scratch.config(aws_endpoint);
        for (k, v) in [
            ("EXECUTOR_CONNECTION_ALLOW", backend.base_url()),
            ("EXECUTOR_CONNECTION_TOKEN", SERVICE_TOKEN.to_string()),
            ("EXECUTOR_SUBMITTER_TOKEN", SUBMITTER_TOKEN.to_string()),
            ("EXECUTOR_OPERATOR_TOKEN", OPERATOR_TOKEN.to_string()),
            ("EXECUTOR_TRUSTED_CLIENTS", "127.0.0.1/32".to_string()),
            ("EXECUTOR_SCRIPT_ROLE_ARN", ROLE.to_string()),
            ("EXECUTOR_SCRIPT_IMAGE", SCRIPT_IMAGE.to_string()),
            (
                "EXECUTOR_SCRIPT_INSTANCE_TYPE",
                SCRIPT_INSTANCE_TYPE.to_string(),
            ),
        ] {
            config.extra_env.push((k.to_string(), v));
        }
        let svc = Service::start(config);
        Rig {
            emu,
            backend,
            svc,
            bucket,
            _scratch: scratch,
        }
    }

    fn referer(&self) -> String {
        self.backend.base_url()
    }
}

/// A reply as the backend's HTTP clients see it: status and the body's text.
struct Reply {
    status: u16,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }

    /// The body as the REST plugin hands it on (REST `getDatasetData`: the body either way) and
    /// the SageMaker plugin accepts it (PLUGIN: `results.startsWith("{")`, no whitespace first).
    fn plugin_object(&self) -> Value {
        assert!(
            self.text.starts_with('{'),
            "the backend needs a body starting with '{{': {} {}",
            self.status,
            self.text
        );
        self.json()
    }

    /// PLUGIN `getModelsListFromRemoteVM` / `getEndpointsListFromRemoteVM`:
    /// `results.startsWith("[")`, else the sync is empty.
    fn plugin_array(&self) -> Vec<Value> {
        assert!(
            self.text.starts_with('['),
            "the backend needs a body starting with '[': {} {}",
            self.status,
            self.text
        );
        self.json().as_array().unwrap().clone()
    }

    /// REST `getDatasetData` counts 200, 201 and 204 as success, and hands any other reply's
    /// body on as the result all the same (`throw new Exception(resp)`, then
    /// `return ex.getMessage()`): what the backend acts on is the body. So a 202 (a run was
    /// started) reaches the caller like a 200 (the backend logs it as an error); an error
    /// status must still mean an error.
    fn assert_success(&self) {
        assert!(
            (200..300).contains(&self.status),
            "expected a success, got {}: {}",
            self.status,
            self.text
        );
    }
}

async fn send(req: reqwest::RequestBuilder) -> Reply {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    Reply {
        status,
        text: r.text().await.unwrap(),
    }
}

/// Query of a SageMaker-plugin call (PLUGIN `*FromRemoteVM`: `params` map), plus the route id.
fn plugin_query(id: Option<(&str, &str)>) -> Vec<(String, String)> {
    let mut q = vec![
        ("isRemoteDS".to_string(), "true".to_string()),
        ("isCached".to_string(), "false".to_string()),
        ("adapter_instance".to_string(), ADAPTER.to_string()),
        ("project".to_string(), PROJECT.to_string()),
    ];
    if let Some((k, v)) = id {
        q.push((k.to_string(), v.to_string()));
    }
    q
}

/// Query of a UI call forwarded by ADAPTERS (`isInstance` reset to `false`, `isCached=false`,
/// `adapter_instance`, `project`) plus the id the ICIPMlopsController put in `params`.
fn ui_query(id: Option<(&str, &str)>) -> Vec<(String, String)> {
    let mut q = vec![
        ("isInstance".to_string(), "false".to_string()),
        ("isCached".to_string(), "false".to_string()),
        ("adapter_instance".to_string(), ADAPTER.to_string()),
        ("project".to_string(), PROJECT.to_string()),
    ];
    if let Some((k, v)) = id {
        q.push((k.to_string(), v.to_string()));
    }
    q
}

impl Rig {
    /// GET with `Referer` only (PLUGIN list/delete calls put no `Content-Type`).
    async fn get(&self, path: &str, query: &[(String, String)]) -> Reply {
        send(
            client()
                .get(self.svc.url(path))
                .query(query)
                .header("Referer", self.referer()),
        )
        .await
    }

    async fn delete(&self, path: &str, query: &[(String, String)]) -> Reply {
        send(
            client()
                .delete(self.svc.url(path))
                .query(query)
                .header("Referer", self.referer()),
        )
        .await
    }

    /// POST of a JSON text with `Referer` and `Content-Type: application/json` (PLUGIN
    /// `headers.put("Content-Type", "application/json")`; REST `executePostRequest` sends the
    /// body as a string entity).
    async fn post(&self, path: &str, query: &[(String, String)], body: &Value) -> Reply {
        send(
            client()
                .post(self.svc.url(path))
                .query(query)
                .header("Referer", self.referer())
                .header("Content-Type", "application/json")
                .body(body.to_string()),
        )
        .await
    }
}

// ---- The backend's parsers ----------------------------------------------------------------

fn assert_record(v: &Value) {
    for key in RECORD_KEYS {
        assert!(v.get(key).is_some(), "record lacks {key}: {v}");
    }
    if let Some(raw) = v["rawPayload"].as_str() {
        assert!(
            serde_json::from_str::<Value>(raw).is_ok(),
            "rawPayload is not a JSON string: {v}"
        );
    }
}

/// `new SimpleDateFormat(pattern).parse(text)` for the two record patterns, strictly.
fn record_date(text: &str) -> Option<chrono::NaiveDateTime> {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H-%M-%S").ok()
}

fn model_fallback_date(text: &str) -> Option<chrono::NaiveDateTime> {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.3f").ok()
}

/// PLUGIN `parseMLFedModel(JSONObject, ICIPDatasource, String)`: `get("description")`,
/// `get("artifacts")`, `get("container")` throw when the key is missing (null is fine),
/// `getString("name")` throws unless it is a string; `createdOn`/`modifiedOn` are read as
/// `yyyy-MM-dd HH-mm-ss`, falling back to `yyyy-MM-dd'T'HH:mm:ss.SSS` (a date neither parses is
/// lost). A thrown item is dropped from the sync.
fn assert_model_parser_accepts(item: &Value) {
    for key in ["description", "artifacts", "container"] {
        assert!(item.get(key).is_some(), "get(\"{key}\") throws: {item}");
    }
    assert!(
        item["name"].is_string(),
        "getString(\"name\") throws: {item}"
    );
    assert!(
        item["sourceID"].as_str().is_some_and(|s| !s.is_empty())
            || item["sourceId"].as_str().is_some_and(|s| !s.is_empty()),
        "optString(\"sourceId\"/\"sourceID\") is empty: {item}"
    );
    for key in ["createdOn", "modifiedOn"] {
        if let Some(text) = item[key].as_str().filter(|t| !t.is_empty()) {
            assert!(
                record_date(text).is_some() || model_fallback_date(text).is_some(),
                "{key} {text:?} parses with neither pattern: {item}"
            );
        }
    }
    if let Some(created) = item["createdOn"].as_str() {
        assert!(
            record_date(created).is_some(),
            "createdOn {created:?} is not yyyy-MM-dd HH-mm-ss: {item}"
        );
    }
}

/// A resource that exists in SageMaker has a known creation date, in the record pattern.
fn assert_created_on_known(item: &Value) {
    let created = item["createdOn"]
        .as_str()
        .unwrap_or_else(|| panic!("createdOn unknown: {item}"));
    assert!(
        record_date(created).is_some(),
        "createdOn {created:?} is not yyyy-MM-dd HH-mm-ss: {item}"
    );
}

/// PLUGIN `parseFedEndpoint(JSONObject, ICIPDatasource, String)`: `optString("name")` is the
/// endpoint's name; `syncDate` and `createdOn` are parsed with `yyyy-MM-dd HH-mm-ss` (a failure
/// is swallowed and the date lost); `artifacts` becomes the context URI.
fn assert_endpoint_parser_accepts(item: &Value) {
    assert!(
        item["name"].as_str().is_some_and(|s| !s.is_empty()),
        "optString(\"name\") is empty: {item}"
    );
    if let Some(created) = item["createdOn"].as_str() {
        assert!(
            record_date(created).is_some(),
            "createdOn {created:?} is not yyyy-MM-dd HH-mm-ss: {item}"
        );
    }
    if let Some(sync) = item["syncDate"].as_str() {
        assert!(
            record_date(sync).is_some(),
            "syncDate {sync:?} is not yyyy-MM-dd HH-mm-ss: {item}"
        );
    }
}

/// REMOTE `ICIPRemoteLoggerService.updateRemoteJob` on a finished task: `getString("finished")`
/// (a string), `getString("started")` parsed with `DateTimeFormatter.ofPattern("yyyy-MM-dd
/// HH:mm:ss.SSSSSSXXX")`, `get("timestamp").toString()` through `Double.parseDouble`; the finish
/// time it stores is started + timestamp seconds. Returns (started, finish) in microseconds.
fn finished_times(s: &Value) -> (i64, i64) {
    assert!(
        s["finished"].is_string(),
        "getString(\"finished\") throws: {s}"
    );
    let started = s["started"]
        .as_str()
        .unwrap_or_else(|| panic!("getString(\"started\") throws: {s}"));
    let zoned = started
        .strip_suffix('Z')
        .map(|t| format!("{t}+00:00"))
        .unwrap_or_else(|| started.to_string());
    let t =
        chrono::DateTime::parse_from_str(&zoned, "%Y-%m-%d %H:%M:%S%.6f%:z").unwrap_or_else(|e| {
            panic!("started {started:?} is not yyyy-MM-dd HH:mm:ss.SSSSSSXXX: {e}")
        });
    let fraction = zoned.get(20..26).unwrap_or("");
    assert!(
        zoned.as_bytes().get(19) == Some(&b'.')
            && fraction.len() == 6
            && fraction.bytes().all(|b| b.is_ascii_digit()),
        "started {started:?} needs exactly six fraction digits"
    );
    let seconds: f64 = match &s["timestamp"] {
        Value::Number(n) => n.to_string().parse().unwrap(),
        Value::String(t) => t
            .parse()
            .unwrap_or_else(|_| panic!("Double.parseDouble({t:?}) throws")),
        other => panic!("timestamp {other} fails Double.parseDouble"),
    };
    assert!(seconds >= 0.0, "{s}");
    let started_us = t.timestamp_micros();
    (started_us, started_us + (seconds * 1e6) as i64)
}

// ---- The remote-job API (`/execute`) ------------------------------------------------------

/// The folder the backend uploads a pipeline's script to, and names as `input_artifacts`
/// (REMOTE `ICIPRemoteExecutorJob.generateArtifactsPath`: `{org}/remote/{pipeline}/{version}/Input`;
/// `executeScript` uploads the script there under its own file name).
fn input_folder(pipeline: &str) -> String {
    format!("{PROJECT}/remote/{pipeline}/1/Input")
}

/// Puts a generated script and a data file under the pipeline's input folder.
async fn upload_pipeline(rig: &Rig, pipeline: &str) {
    let folder = input_folder(pipeline);
    rig.emu
        .put_object(
            &rig.bucket,
            &format!("{folder}/{pipeline}_generatedCode.py"),
            "print('hello from essedum')\n",
        )
        .await;
    rig.emu
        .put_object(
            &rig.bucket,
            &format!("{folder}/data/train.csv"),
            "a,b,label\n1,2,0\n",
        )
        .await;
}

/// The body REMOTE `ICIPRemoteExecutorJob.getPayloadForScriptExecution` builds: `new
/// JSONObject(remoteBody)` of `RemoteBody` (icip-adp-remote/.../models/RemoteBody.java), where
/// null fields are left out — `configs` is never set (its setter call is commented out) and
/// `environment` is set only when the job has variables. `credentials` are the S3 upload
/// connection's `url`, `accessKey`, `secretKey`; `command` of a drag-and-drop pipeline is
/// `python {cname}_generatedCode.py` (`getDragAndDropJobCommand`); `storage` is the connection's
/// `storageType`.
fn remote_body(rig: &Rig, pipeline: &str, environment: Option<Value>) -> Value {
    let mut body = json!({
        "bucket": rig.bucket,
        "project_id": PROJECT,
        "name": pipeline,
        "version": "1",
        "credentials": {"endpoint": rig.emu.url(), "access_key": "test", "secret_key": "test"},
        "input_artifacts": input_folder(pipeline),
        "command": format!("python {pipeline}_generatedCode.py"),
        "storage": "s3",
    });
    if let Some(env) = environment {
        body["environment"] = env;
    }
    body
}

/// REMOTE `ICIPRemoteExecutorJob.executeScript`: OkHttp POST of the payload with
/// `application/json` (OkHttp adds `; charset=utf-8`), no other header; 200 or 201 is success,
/// then `getString("task_id")`.
async fn submit_remote(rig: &Rig, path: &str, body: &Value) -> String {
    let r = send(
        client()
            .post(rig.svc.url(path))
            .header("Content-Type", "application/json; charset=utf-8")
            .body(body.to_string()),
    )
    .await;
    assert!(
        r.status == 200 || r.status == 201,
        "executeScript accepts 200/201 only: {} {}",
        r.status,
        r.text
    );
    let v = r.json();
    v["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("getString(\"task_id\") throws: {v}"))
        .to_string()
}

/// REMOTE `getTaskStatus`: GET with `accept: application/json`; only 200 is read
/// (anything else becomes a JSONObject of the OkHttp response, without `task_status`, so
/// `updateRemoteJob`'s `get("task_status")` throws and the job is saved as ERROR).
async fn get_status(rig: &Rig, task: &str) -> Value {
    let r = send(
        client()
            .get(rig.svc.url(&format!("/execute/{task}/getStatus")))
            .header("accept", "application/json"),
    )
    .await;
    assert_eq!(r.status, 200, "getStatus must answer 200: {}", r.text);
    let v = r.json();
    let word = v
        .get("task_status")
        .unwrap_or_else(|| panic!("get(\"task_status\") throws: {v}"));
    // updateRemoteJob's switch is case-sensitive; anything else leaves the job as it was.
    let word = word.as_str().unwrap_or("");
    assert!(
        [
            "WAITING",
            "RUNNING",
            "COMPLETED",
            "ERROR",
            "CANCELLED",
            "Submitted"
        ]
        .contains(&word),
        "task_status {word:?} is none of the backend's words: {v}"
    );
    v
}

async fn wait_status(rig: &Rig, task: &str, pred: impl Fn(&str) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = get_status(rig, task).await;
        if pred(s["task_status"].as_str().unwrap()) {
            return s;
        }
        assert!(Instant::now() < deadline, "task {task}: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// REMOTE `ICIPRemoteExecutorJob.getLog`: 200 only, then
/// `getJSONObject("logs").getString("content")`.
async fn get_log(rig: &Rig, task: &str) -> String {
    let r = send(
        client()
            .get(rig.svc.url(&format!("/execute/{task}/getLog")))
            .header("accept", "application/json"),
    )
    .await;
    assert_eq!(r.status, 200, "getLog must answer 200: {}", r.text);
    let v = r.json();
    v["logs"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("getJSONObject(\"logs\").getString(\"content\") throws: {v}"))
        .to_string()
}

/// The task as the backend's job poller (REMOTE `ICIPRemoteLoggerService.updateRemoteJob`) sees
/// it on COMPLETED: status, then the log, then the times.
async fn assert_backend_records_completion(rig: &Rig, task: &str, s: &Value) {
    assert_eq!(s["task_status"], "COMPLETED", "{s}");
    let log = get_log(rig, task).await;
    assert!(
        !log.is_empty(),
        "an empty log reads as 'could not generate logs'"
    );
    let (started, finish) = finished_times(s);
    assert!(finish >= started);
    assert!(finish <= chrono::Utc::now().timestamp_micros() + 1_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_script_job_without_configs_or_environment_completes_and_is_read_back() {
    let rig = Rig::start().await;
    let pipeline = "ChurnPipeline";
    upload_pipeline(&rig, pipeline).await;
    let body = remote_body(&rig, pipeline, None);
    assert!(body.get("configs").is_none() && body.get("environment").is_none());
    let task = submit_remote(&rig, "/execute", &body).await;

    // executeScript reads the status at once and stores its word as the job's status.
    get_status(&rig, &task).await;
    let s = wait_status(&rig, &task, |w| {
        matches!(w, "COMPLETED" | "ERROR" | "CANCELLED")
    })
    .await;
    assert_backend_records_completion(&rig, &task, &s).await;

    // The job ran with the service's script settings, since the body has no configs.
    let job = s["pid"].as_str().expect("pid names the processing job");
    let d = rig
        .emu
        .sagemaker("DescribeProcessingJob", json!({"ProcessingJobName": job}))
        .await;
    assert_eq!(d["RoleArn"], ROLE, "{d}");
    assert_eq!(d["AppSpecification"]["ImageUri"], SCRIPT_IMAGE, "{d}");
    assert_eq!(
        d["ProcessingResources"]["ClusterConfig"]["InstanceType"], SCRIPT_INSTANCE_TYPE,
        "{d}"
    );

    // The job sees the input folder with every object under its own relative name, so
    // `python <script>` finds the script and its data beside it.
    let script = format!("{pipeline}_generatedCode.py");
    let mut layouts = Vec::new();
    for input in d["ProcessingInputs"].as_array().expect("ProcessingInputs") {
        let uri = input["S3Input"]["S3Uri"].as_str().unwrap_or("");
        let Some((bucket, prefix)) = uri.strip_prefix("s3://").and_then(|u| u.split_once('/'))
        else {
            continue;
        };
        let prefix = format!("{}/", prefix.trim_end_matches('/'));
        let names: Vec<String> = rig
            .emu
            .list_keys(bucket, &prefix)
            .await
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect();
        layouts.push(names);
    }
    assert!(
        layouts
            .iter()
            .any(|names| names.contains(&script) && names.contains(&"data/train.csv".to_string())),
        "no job input holds {script} and data/train.csv under their relative names: {layouts:?}"
    );

    // REMOTE ICIPRemoteOutputArtifactsService.getOutputArtifacts: 200 only, a JSON object.
    let r = send(
        client()
            .get(rig.svc.url(&format!("/execute/{task}/getOutputArtifacts")))
            .header("accept", "application/json"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json().is_object(), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_script_job_with_environment_passes_the_variables_to_the_job() {
    let rig = Rig::start().await;
    let pipeline = "EnvPipeline";
    upload_pipeline(&rig, pipeline).await;
    let body = remote_body(&rig, pipeline, Some(json!({"EPOCHS": "2", "MODE": "fast"})));
    let task = submit_remote(&rig, "/execute", &body).await;
    let s = wait_status(&rig, &task, |w| {
        matches!(w, "COMPLETED" | "ERROR" | "CANCELLED")
    })
    .await;
    assert_backend_records_completion(&rig, &task, &s).await;
    let job = s["pid"].as_str().unwrap();
    let d = rig
        .emu
        .sagemaker("DescribeProcessingJob", json!({"ProcessingJobName": job}))
        .await;
    assert_eq!(d["Environment"]["EPOCHS"], "2", "{d}");
    assert_eq!(d["Environment"]["MODE"], "fast", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_stop_cancels_a_running_task_and_its_times_parse() {
    let rig = Rig::start().await;
    let pipeline = "LongPipeline";
    upload_pipeline(&rig, pipeline).await;
    // The only way the backend's body reaches the job's container: its environment.
    let body = remote_body(&rig, pipeline, Some(json!({"_emulator_polls": "100000"})));
    let task = submit_remote(&rig, "/execute", &body).await;
    wait_status(&rig, &task, |w| w == "RUNNING").await;

    // REMOTE ICIPRemoteStopJobService.terminateJob: GET with `accept: application/json`, only
    // 200 counts (for a CHAIN job; for others it then parses `response.body().toString()`,
    // which is not the body, so the reply's content is never read).
    let r = send(
        client()
            .get(rig.svc.url(&format!("/execute/{task}/stop")))
            .header("accept", "application/json"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["Task cancelled"], true, "{}", r.text);

    // updateRemoteJob's CANCELLED branch reads finished/started/timestamp (no getLog call).
    let s = wait_status(&rig, &task, |w| w == "CANCELLED").await;
    finished_times(&s);
    let job = s["pid"].as_str().unwrap();
    let d = rig
        .emu
        .sagemaker("DescribeProcessingJob", json!({"ProcessingJobName": job}))
        .await;
    assert_eq!(d["ProcessingJobStatus"], "Stopped", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_reads_a_finished_task_while_aws_is_unavailable() {
    let emu = Emulator::shared();
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let rig = Rig::start_with(proxy.url()).await;
    let pipeline = "SteadyPipeline";
    upload_pipeline(&rig, pipeline).await;
    let task = submit_remote(&rig, "/execute", &remote_body(&rig, pipeline, None)).await;
    wait_status(&rig, &task, |w| {
        matches!(w, "COMPLETED" | "ERROR" | "CANCELLED")
    })
    .await;

    // From now on every AWS call fails. REMOTE updateRemoteJob turns any getStatus or getLog
    // answer but 200 into ERROR, so a finished task must be answered from what is stored.
    proxy.set_plan(FaultPlan::always(Fault::ServiceUnavailable));
    let s = get_status(&rig, &task).await;
    assert_backend_records_completion(&rig, &task, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_custom_script_takes_the_remote_body_and_answers_a_task_object() {
    let rig = Rig::start().await;
    let pipeline = "CustomPipeline";
    upload_pipeline(&rig, pipeline).await;
    // ROUTES training_custom_script_create, forwarded by ADAPTERS getPostData (bodyType JSON).
    let r = rig
        .post(
            "/api/service/v1/pipelines/training/custom_script",
            &ui_query(None),
            &remote_body(&rig, pipeline, None),
        )
        .await;
    r.assert_success();
    let v = r.plugin_object();
    let task = v["task_id"].as_str().expect("task_id").to_string();
    let s = wait_status(&rig, &task, |w| {
        matches!(w, "COMPLETED" | "ERROR" | "CANCELLED")
    })
    .await;
    assert_eq!(s["task_status"], "COMPLETED", "{s}");
}

// ---- Connection lookup and authentication ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_lookup_presents_the_service_token_in_access_token() {
    let rig = Rig::start().await;
    let r = rig
        .get("/api/service/v1/models/list", &plugin_query(None))
        .await;
    r.plugin_array();
    let seen = rig.backend.seen();
    let last = seen.last().expect("the service asked the backend");
    assert_eq!(last.query.get("project").map(String::as_str), Some(PROJECT));
    assert_eq!(
        last.query.get("adapter_instance").map(String::as_str),
        Some(ADAPTER)
    );
    // sv/common-app/.../security/jwt/CustomAuthFilter.java: `access-token` is read only when
    // there is no `Authorization: Bearer ...` (that one is validated as a JWT).
    assert_eq!(
        last.headers.get("access-token").map(String::as_str),
        Some(SERVICE_TOKEN),
        "{last:?}"
    );
    assert!(
        !last
            .headers
            .get("authorization")
            .is_some_and(|a| a.starts_with("Bearer ")),
        "a Bearer header hides the access-token from the backend: {last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_lookup_passes_is_instance_when_the_call_has_it() {
    let rig = Rig::start().await;
    let r = rig
        .get("/api/service/v1/endpoints/list", &ui_query(None))
        .await;
    r.plugin_array();
    let seen = rig.backend.seen();
    let last = seen.last().expect("the service asked the backend");
    assert_eq!(
        last.query.get("isInstance").map(String::as_str),
        Some("false"),
        "{last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_api_still_needs_a_token_of_ours_for_trusted_clients() {
    let rig = Rig::start().await;
    let r = send(client().get(rig.svc.url("/api/v1/runs"))).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = send(
        client()
            .get(rig.svc.url("/api/v1/runs"))
            .bearer_auth(OPERATOR_TOKEN),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_call_forwarding_the_users_jwt_is_served_for_a_trusted_client() {
    // ADAPTERS getData copies every header of the UI's request into the REST call, so the
    // user's Essedum JWT arrives as `authorization: Bearer <jwt>` beside `referer`.
    let rig = Rig::start().await;
    let jwt = "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl";
    let r = send(
        client()
            .get(rig.svc.url("/api/service/v1/models/list"))
            .query(&ui_query(None))
            .header("referer", rig.referer())
            .header("authorization", format!("Bearer {jwt}"))
            .header("project", "2"),
    )
    .await;
    r.assert_success();
    r.plugin_array();
}

// ---- Models ---------------------------------------------------------------------------------

/// PLUGIN `getModelBodyForRegister`: every value through `optString` (blank = `""`), one
/// container, `Environment` built from the UI's `env` pairs.
fn register_model_body(name: &str) -> Value {
    json!({
        "ExecutionRoleArn": ROLE,
        "ModelName": name,
        "Containers": [{
            "ContainerHostname": "",
            "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1",
            "Mode": "",
            "ModelDataUrl": "",
            "Environment": {}
        }]
    })
}

async fn create_model_directly(emu: &Emulator, name: &str) {
    emu.sagemaker(
        "CreateModel",
        json!({"ModelName": name, "ExecutionRoleArn": ROLE,
               "PrimaryContainer": {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_model_register_creates_the_model_and_its_record_parses() {
    let rig = Rig::start().await;
    let name = unique("reg-model");
    // ROUTES projects_models_register_create; PLUGIN registerModelFromRemoteVM.
    let r = rig
        .post(
            "/api/service/v1/models/register",
            &plugin_query(None),
            &register_model_body(&name),
        )
        .await;
    r.assert_success();
    let v = r.plugin_object();
    // registerModelFromRemoteVM → parseMLFedModel; the controller then saves it when
    // getName() (optString("name")) is not null.
    assert_model_parser_accepts(&v);
    assert_record(&v);
    assert_created_on_known(&v);
    assert_eq!(v["name"], name.as_str());
    let d = rig
        .emu
        .sagemaker("DescribeModel", json!({"ModelName": name}))
        .await;
    assert_eq!(d["ModelName"], name.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_model_list_shows_every_model_in_the_account_and_each_parses() {
    let rig = Rig::start().await;
    let outside = unique("outside-model");
    create_model_directly(rig.emu, &outside).await;
    // ROUTES projects_models_list; PLUGIN getModelsListFromRemoteVM (headers: Referer only).
    let r = rig
        .get("/api/service/v1/models/list", &plugin_query(None))
        .await;
    r.assert_success();
    let items = r.plugin_array();
    for item in &items {
        assert_model_parser_accepts(item);
        assert_record(item);
    }
    let mine = items
        .iter()
        .find(|i| i["name"] == outside.as_str())
        .expect("a model created outside the service is missing from the sync");
    assert_created_on_known(mine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_model_get_answers_its_record() {
    let rig = Rig::start().await;
    let name = unique("get-model");
    create_model_directly(rig.emu, &name).await;
    // ROUTES projects_models_get; ICIPMlopsController.readModels puts model_id in params.
    let r = rig
        .get(
            &format!("/api/service/v1/models/{name}"),
            &ui_query(Some(("model_id", &name))),
        )
        .await;
    r.assert_success();
    let v = r.plugin_object();
    assert_record(&v);
    assert_model_parser_accepts(&v);
    assert_created_on_known(&v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_model_delete_answers_an_object_and_deletes_it() {
    let rig = Rig::start().await;
    let name = unique("del-model");
    create_model_directly(rig.emu, &name).await;
    // ROUTES projects_models_delete; PLUGIN deleteModelFromRemoteVM: success is
    // `results.startsWith("{")`, then the backend forgets its copy.
    let r = rig
        .delete(
            &format!("/api/service/v1/models/{name}"),
            &plugin_query(Some(("model_id", &name))),
        )
        .await;
    r.assert_success();
    r.plugin_object();
    let (code, _) = rig
        .emu
        .sagemaker_in("us-east-1", "DescribeModel", json!({"ModelName": name}))
        .await;
    assert_eq!(code, 400, "the model still exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_model_delete_of_a_model_already_gone_still_answers_json() {
    let rig = Rig::start().await;
    let name = unique("gone-model");
    // PLUGIN deleteModelFromRemoteVM forgets its copy of the model on any body starting with
    // "{", so a JSON "not found" lets the backend clean up a model deleted elsewhere.
    let r = rig
        .delete(
            &format!("/api/service/v1/models/{name}"),
            &plugin_query(Some(("model_id", &name))),
        )
        .await;
    assert!(matches!(r.status, 200 | 404), "{} {}", r.status, r.text);
    r.plugin_object();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_model_export_deploys_it_to_the_named_endpoint() {
    let rig = Rig::start().await;
    let model = unique("exp-model");
    create_model_directly(rig.emu, &model).await;
    rig.emu
        .sagemaker(
            "CreateEndpointConfig",
            json!({"EndpointConfigName": model, "ProductionVariants": [{"VariantName": "v1",
                   "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]}),
        )
        .await;
    let endpoint = unique("exp-ep");
    // ROUTES projects_models_export_create; the UI's deploy form (PLUGIN getDeployModelJson
    // attributesForVM) has EndpointName and EndpointConfigName.
    let r = rig
        .post(
            &format!("/api/service/v1/models/{model}/export"),
            &ui_query(Some(("model_id", &model))),
            &json!({"EndpointConfigName": model, "EndpointName": endpoint}),
        )
        .await;
    r.assert_success();
    r.plugin_object();
    wait_endpoint_exists(rig.emu, &endpoint).await;
}

// ---- Endpoints ------------------------------------------------------------------------------

async fn wait_endpoint_exists(emu: &Emulator, name: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, d) = emu
            .sagemaker_in(
                "us-east-1",
                "DescribeEndpoint",
                json!({"EndpointName": name}),
            )
            .await;
        if code == 200 {
            return d;
        }
        assert!(Instant::now() < deadline, "endpoint {name} never created");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_endpoint_gone(emu: &Emulator, name: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, _) = emu
            .sagemaker_in(
                "us-east-1",
                "DescribeEndpoint",
                json!({"EndpointName": name}),
            )
            .await;
        if code != 200 {
            return;
        }
        assert!(Instant::now() < deadline, "endpoint {name} still exists");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_endpoint_register_with_role_and_primary_container_creates_the_config() {
    let rig = Rig::start().await;
    let model = unique("epc-model");
    create_model_directly(rig.emu, &model).await;
    let config = unique("epc");
    // PLUGIN getBodyObjForEndpointsRegister (createEndpointFromRemoteVM): optString/optInt of the
    // UI's form, ExecutionRoleArn and PrimaryContainer included.
    let body = json!({
        "ExecutionRoleArn": ROLE,
        "ModelName": model,
        "VariantName": "AllTraffic",
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
        "EndpointConfigName": config,
        "PrimaryContainer": {"Image": "", "ModelDataUrl": ""}
    });
    let r = rig
        .post(
            "/api/service/v1/endpoints/register",
            &plugin_query(None),
            &body,
        )
        .await;
    r.assert_success();
    // createEndpointFromRemoteVM: startsWith("{"), then optString("name") or "sourcename".
    let v = r.plugin_object();
    assert!(
        v["name"].as_str().is_some_and(|s| !s.is_empty())
            || v["sourcename"].as_str().is_some_and(|s| !s.is_empty()),
        "{v}"
    );
    let d = rig
        .emu
        .sagemaker(
            "DescribeEndpointConfig",
            json!({"EndpointConfigName": config}),
        )
        .await;
    assert_eq!(d["ProductionVariants"][0]["ModelName"], model.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_deploy_model_with_endpoint_name_creates_the_endpoint() {
    let rig = Rig::start().await;
    let model = unique("dep-model");
    create_model_directly(rig.emu, &model).await;
    rig.emu
        .sagemaker(
            "CreateEndpointConfig",
            json!({"EndpointConfigName": model, "ProductionVariants": [{"VariantName": "v1",
                   "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]}),
        )
        .await;
    let endpoint = unique("dep-ep");
    // PLUGIN deployModelFromRemoteVM: endpoint_id = EndpointName (path variable and query),
    // body {EndpointConfigName, EndpointName}; startsWith("{") is success.
    let r = rig
        .post(
            &format!("/api/service/v1/endpoints/{endpoint}/deploy_model"),
            &plugin_query(Some(("endpoint_id", &endpoint))),
            &json!({"EndpointConfigName": model, "EndpointName": endpoint}),
        )
        .await;
    r.assert_success();
    r.plugin_object();
    let d = wait_endpoint_exists(rig.emu, &endpoint).await;
    assert_eq!(d["EndpointConfigName"], model.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_endpoint_list_shows_every_endpoint_in_the_account_and_each_parses() {
    let rig = Rig::start().await;
    let outside = unique("outside-ep");
    rig.emu.endpoint(&outside, 0).await;
    // ROUTES projects_endpoints_list_list; PLUGIN getEndpointsListFromRemoteVM.
    let r = rig
        .get("/api/service/v1/endpoints/list", &plugin_query(None))
        .await;
    r.assert_success();
    let items = r.plugin_array();
    for item in &items {
        assert_endpoint_parser_accepts(item);
        assert_record(item);
    }
    let mine = items
        .iter()
        .find(|i| i["name"] == outside.as_str())
        .expect("an endpoint created outside the service is missing from the sync");
    assert_created_on_known(mine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_endpoint_get_answers_an_object() {
    let rig = Rig::start().await;
    let name = unique("get-ep");
    rig.emu.endpoint(&name, 0).await;
    // ROUTES projects_endpoints_get; ICIPMlopsController puts endpoint_id in params.
    let r = rig
        .get(
            &format!("/api/service/v1/endpoints/{name}"),
            &ui_query(Some(("endpoint_id", &name))),
        )
        .await;
    r.assert_success();
    r.plugin_object();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_endpoint_infer_answers_the_models_reply() {
    let rig = Rig::start().await;
    let name = unique("inf-ep");
    rig.emu.endpoint(&name, 0).await;
    rig.emu
        .queue_answer(
            json!({"endpoint": name, "body": "{\"predictions\": [0.25]}",
                             "content_type": "application/json"}),
        )
        .await;
    // ROUTES projects_endpoints_infer_create; the UI's payload is sent on as it is.
    let r = rig
        .post(
            &format!("/api/service/v1/endpoints/{name}/infer"),
            &ui_query(Some(("endpoint_id", &name))),
            &json!({"instances": [[1.0, 2.0]]}),
        )
        .await;
    r.assert_success();
    assert_eq!(r.plugin_object(), json!({"predictions": [0.25]}));
    let got = rig.emu.invocations(&name).await;
    assert_eq!(got.len(), 1, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_endpoint_explain_without_an_explainer_is_a_json_409() {
    let rig = Rig::start().await;
    let name = unique("exp-ep");
    rig.emu.endpoint(&name, 0).await;
    // ROUTES projects_endpoints_explain_create. REST hands a non-success body on as the
    // result, so it must still be JSON.
    let r = rig
        .post(
            &format!("/api/service/v1/endpoints/{name}/explain"),
            &ui_query(Some(("endpoint_id", &name))),
            &json!({"instances": [[1.0, 2.0]]}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    r.plugin_object();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_endpoint_undeploy_answers_an_object_and_takes_it_down() {
    let rig = Rig::start().await;
    let name = unique("und-ep");
    rig.emu.endpoint(&name, 0).await;
    // ROUTES projects_endpoints_undeploy_models_create.
    let r = rig
        .post(
            &format!("/api/service/v1/endpoints/{name}/undeploy_models"),
            &ui_query(Some(("endpoint_id", &name))),
            &json!({}),
        )
        .await;
    r.assert_success();
    r.plugin_object();
    wait_endpoint_gone(rig.emu, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_endpoint_delete_answers_an_object_and_takes_it_down() {
    let rig = Rig::start().await;
    let name = unique("rm-ep");
    rig.emu.endpoint(&name, 0).await;
    // ROUTES projects_endpoints_delete; PLUGIN deleteEndpointFromRemoteVM: startsWith("{").
    let r = rig
        .delete(
            &format!("/api/service/v1/endpoints/{name}/delete"),
            &plugin_query(Some(("endpoint_id", &name))),
        )
        .await;
    r.assert_success();
    r.plugin_object();
    wait_endpoint_gone(rig.emu, &name).await;
}

// ---- Training -------------------------------------------------------------------------------

/// A CSV in the connection's bucket whose header has the target column.
async fn training_csv(rig: &Rig) -> String {
    rig.emu
        .put_object(
            &rig.bucket,
            "in/train.csv",
            "SaleType,x,y\nWD,1,2\nNew,3,4\n",
        )
        .await;
    format!("s3://{}/in/train.csv", rig.bucket)
}

/// Polls `training/{id}/get` (ROUTES training_get_list) until `pred` holds.
async fn wait_training(rig: &Rig, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = rig
            .get(
                &format!("/api/service/v1/pipelines/training/{id}/get"),
                &ui_query(Some(("training_job_id", id))),
            )
            .await;
        if r.status == 200 {
            let v = r.plugin_object();
            if pred(&v) {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "training {id}: {} {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_training_train_with_the_automl_body_starts_an_automl_job_readable_by_name() {
    let rig = Rig::start().await;
    let input = training_csv(&rig).await;
    // ROUTES training_train_create: the Python AutoML-style body.
    let r = rig
        .post(
            "/api/service/v1/pipelines/training/train",
            &ui_query(None),
            &json!({
                "RoleArn": ROLE, "Bucket": rig.bucket, "S3Prefix": "automl/e1",
                "inputs": input, "target_attribute_name": "SaleType", "content_type": "text/csv"
            }),
        )
        .await;
    assert!(r.status < 300, "{} {}", r.status, r.text);
    let v = r.plugin_object();
    assert_record(&v);
    assert_eq!(v["status"], "InProgress", "{v}");
    let job = v["sourceID"].as_str().expect("sourceID is the job name");
    assert_eq!(v["name"], job);
    // `{id}` routes take the job name, as the Python service's ids were job names.
    let got = wait_training(&rig, job, |g| g["type"] == "sagemaker-automl").await;
    for key in [
        "sourceID",
        "status",
        "jobStatus",
        "failureReason",
        "container",
        "artifacts",
        "type",
    ] {
        assert!(got.get(key).is_some(), "{key} missing: {got}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_training_automl_snake_case_body_answers_201_with_the_python_keys() {
    let rig = Rig::start().await;
    let input = training_csv(&rig).await;
    let job = format!("aml-{}", &unique("r")[2..12]);
    // ROUTES training_automl_simplified_create.
    let r = rig
        .post(
            "/api/service/v1/pipelines/training/automl",
            &ui_query(None),
            &json!({
                "job_name": job,
                "input_data_config": {"s3_uri": input, "content_type": "text/csv;header=present"},
                "output_data_config": {"s3_output_path": format!("s3://{}/automl/out", rig.bucket)},
                "target_attribute_name": "SaleType",
                "role_arn": ROLE,
                "problem_type": "",
                "max_candidates": 2,
                "tags": [{"Key": "team", "Value": "ml"}]
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.assert_success();
    let v = r.plugin_object();
    for key in [
        "job_name",
        "job_arn",
        "status",
        "message",
        "input_data",
        "output_path",
        "target_attribute",
        "created_at",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    assert_eq!(v["job_name"], job.as_str());
}

/// The train body with a training image: a plain training job (our extension), kept running by
/// the emulator for `polls` describes.
fn plain_training_body(rig: &Rig, input: &str, polls: u32) -> Value {
    json!({
        "RoleArn": ROLE, "Bucket": rig.bucket, "S3Prefix": "train/e1", "inputs": input,
        "content_type": "text/csv",
        "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1",
        "HyperParameters": {"_emulator_polls": polls.to_string(), "max_depth": "5"}
    })
}

async fn start_plain_training(rig: &Rig, polls: u32) -> String {
    let input = training_csv(rig).await;
    let r = rig
        .post(
            "/api/service/v1/pipelines/training/train",
            &ui_query(None),
            &plain_training_body(rig, &input, polls),
        )
        .await;
    assert!(r.status < 300, "{} {}", r.status, r.text);
    let v = r.plugin_object();
    assert_record(&v);
    v["sourceID"].as_str().expect("sourceID").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_training_train_with_an_image_runs_a_training_job_listed_and_read_by_name() {
    let rig = Rig::start().await;
    let job = start_plain_training(&rig, 1).await;
    let got = wait_training(&rig, &job, |g| g["status"] == "Completed").await;
    assert_eq!(got["type"], "sagemaker-training", "{got}");
    // ROUTES training_istlist: a JSON array of records.
    let r = rig
        .get("/api/service/v1/pipelines/training/list", &ui_query(None))
        .await;
    r.assert_success();
    let items = r.plugin_array();
    items.iter().for_each(assert_record);
    assert!(
        items.iter().any(|i| i["sourceID"] == job.as_str()),
        "{items:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_training_cancel_by_job_name_answers_stopping() {
    let rig = Rig::start().await;
    let job = start_plain_training(&rig, 100_000).await;
    wait_training(&rig, &job, |g| g["status"] == "InProgress").await;
    // ROUTES training_cancel_list (a GET).
    let r = rig
        .get(
            &format!("/api/service/v1/pipelines/training/{job}/cancel"),
            &ui_query(Some(("training_job_id", &job))),
        )
        .await;
    r.assert_success();
    let v = r.plugin_object();
    assert_eq!(v["status"], "Stopping", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_training_delete_on_projects_pipelines_answers_an_object() {
    let rig = Rig::start().await;
    let job = start_plain_training(&rig, 0).await;
    wait_training(&rig, &job, |g| g["status"] == "Completed").await;
    // ROUTES training_delete: DELETE /api/service/v1/projects_pipelines/{training_job_id}/delete.
    let r = rig
        .delete(
            &format!("/api/service/v1/projects_pipelines/{job}/delete"),
            &ui_query(Some(("training_job_id", &job))),
        )
        .await;
    r.assert_success();
    let v = r.plugin_object();
    assert_eq!(v["sourceID"], job.as_str(), "{v}");
}

// ---- Batch inference ------------------------------------------------------------------------

fn transform_body(rig: &Rig, name: &str, polls: u32) -> Value {
    // SageMaker CreateTransformJob fields; the Python service read the optional ones with
    // `get(key, "")`, so a blank is `""`.
    json!({
        "TransformJobName": name,
        "ModelName": "churn-model",
        "ModelClientConfig": "",
        "DataProcessing": "",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                             "S3Uri": format!("s3://{}/batch/in/", rig.bucket)}},
            "ContentType": "text/csv"
        },
        "TransformOutput": {"S3OutputPath": format!("s3://{}/batch/out/", rig.bucket)},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "Environment": {"_emulator_polls": polls.to_string()}
    })
}

async fn inference_get(rig: &Rig, name: &str) -> Value {
    // ROUTES projects_inferencePipelines_get is a POST.
    let r = rig
        .post(
            &format!("/api/service/v1/pipelines/inference/{name}/get"),
            &ui_query(Some(("inference_job_id", name))),
            &json!({}),
        )
        .await;
    r.assert_success();
    r.plugin_object()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_inference_submit_get_and_list_answer_records() {
    let rig = Rig::start().await;
    let name = unique("tj");
    // ROUTES projects_inferencePipelines_create.
    let r = rig
        .post(
            "/api/service/v1/pipelines/inference",
            &ui_query(None),
            &transform_body(&rig, &name, 1),
        )
        .await;
    assert!(r.status < 300, "{} {}", r.status, r.text);
    let v = r.plugin_object();
    assert_record(&v);
    let got = inference_get(&rig, &name).await;
    assert!(got.is_object());
    // ROUTES projects_inferencePipelines_list_list.
    let r = rig
        .get("/api/service/v1/pipelines/inference/list", &ui_query(None))
        .await;
    r.assert_success();
    let items = r.plugin_array();
    items.iter().for_each(assert_record);
    assert!(
        items.iter().any(|i| i["sourceID"] == name.as_str()),
        "{items:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_inference_cancel_then_delete_answer_objects() {
    let rig = Rig::start().await;
    let name = unique("tjc");
    let r = rig
        .post(
            "/api/service/v1/pipelines/inference",
            &ui_query(None),
            &transform_body(&rig, &name, 100_000),
        )
        .await;
    assert!(r.status < 300, "{} {}", r.status, r.text);
    // ROUTES projects_inferencePipelines_cancel is a POST.
    let r = rig
        .post(
            &format!("/api/service/v1/pipelines/inference/{name}/cancel"),
            &ui_query(Some(("inference_job_id", &name))),
            &json!({}),
        )
        .await;
    r.assert_success();
    r.plugin_object();
    let deadline = Instant::now() + WAIT;
    loop {
        let got = inference_get(&rig, &name).await;
        if got["status"] == "Stopped" {
            break;
        }
        assert!(Instant::now() < deadline, "{got}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ROUTES projects_inferencePipelines_delete. The run ends a moment after SageMaker shows
    // Stopped; until then deleting it is refused (409), as the UI would see and retry.
    let deadline = Instant::now() + WAIT;
    let r = loop {
        let r = rig
            .delete(
                &format!("/api/service/v1/pipelines/inference/{name}"),
                &ui_query(Some(("inference_job_id", &name))),
            )
            .await;
        if r.status != 409 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    r.assert_success();
    r.plugin_object();
}

// ---- Datasets -------------------------------------------------------------------------------

/// Uploads a CSV as the REST plugin posts a file (`bodyType` FILE: a multipart form whose file
/// part is `file`, REST `executePostRequest`), with no `Bucket`: it goes to the connection's
/// `bucketName`. The key has no `/`: REST `executeRequest` URL-encodes the URL and turns `%2F`
/// back into `/`, so an id with a slash could not reach a one-segment `{dataset_id}` route.
async fn upload_dataset(rig: &Rig, key: &str) -> Value {
    let (content_type, body) = form(&[
        FormPart::Text("Key", key),
        FormPart::File("file", Some(key), b"id,value,label\n1,2,0\n3,4,1\n"),
    ]);
    let r = send(
        client()
            .post(rig.svc.url("/api/service/v1/datasets"))
            .query(&ui_query(None))
            .header("Referer", rig.referer())
            .header("Content-Type", content_type)
            .body(body),
    )
    .await;
    r.assert_success();
    let v = r.plugin_object();
    assert_record(&v);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_dataset_upload_goes_to_the_connections_bucket() {
    let rig = Rig::start().await;
    let key = format!("{}.csv", unique("ds"));
    upload_dataset(&rig, &key).await;
    assert_eq!(
        rig.emu.get_object(&rig.bucket, &key).await.as_deref(),
        Some("id,value,label\n1,2,0\n3,4,1\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_dataset_list_get_export_and_delete_take_a_plain_s3_key() {
    let rig = Rig::start().await;
    let key = format!("{}.csv", unique("dsk"));
    rig.emu
        .put_object(&rig.bucket, &key, "id,value\n1,2\n")
        .await;
    // ROUTES projects_datasets_list_list.
    let r = rig
        .get("/api/service/v1/datasets/list", &ui_query(None))
        .await;
    r.assert_success();
    let items = r.plugin_array();
    items.iter().for_each(assert_record);
    assert!(
        items.iter().any(|i| i["name"] == key.as_str()),
        "{key} missing from the connection bucket's list: {items:?}"
    );
    // ROUTES projects_datasets_get with the S3 key as {dataset_id}.
    let r = rig
        .get(
            &format!("/api/service/v1/datasets/{key}"),
            &ui_query(Some(("dataset_id", &key))),
        )
        .await;
    r.assert_success();
    assert_record(&r.plugin_object());
    // ROUTES projects_datasets_export_create.
    let copy = format!("{}.csv", unique("dsc"));
    let r = rig
        .post(
            &format!("/api/service/v1/datasets/{key}/export"),
            &ui_query(Some(("dataset_id", &key))),
            &json!({"Key": copy}),
        )
        .await;
    r.assert_success();
    r.plugin_object();
    assert!(rig.emu.get_object(&rig.bucket, &copy).await.is_some());
    // ROUTES projects_datasets_delete.
    let r = rig
        .delete(
            &format!("/api/service/v1/datasets/{key}"),
            &ui_query(Some(("dataset_id", &key))),
        )
        .await;
    r.assert_success();
    r.plugin_object();
    assert!(rig.emu.get_object(&rig.bucket, &key).await.is_none());
}

// ---- Remote Python transforms of REST datasets ----------------------------------------------

/// REST `executeScript` (from `getDatasetData`, for a REST dataset with `transformScriptData`,
/// `ScriptType` "Python" and `isRemoteExecution`) posts the transform to
/// `{remote connection Url's scheme://host:port}/api/service/v1/function/execute` with
/// `Content-Type: application/json` and the dataset's own headers, and whatever the status reads
/// `.get("logs")` of the body (Gson); a non-JSON body or one without `logs` becomes a
/// `{"Script Error": ...}`. The Python executor ran the posted code on its own host; we refuse,
/// and say why where the backend shows it. The posted credentials are never stored or logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_execute_is_refused_with_the_reason_in_logs_and_nothing_kept() {
    let rig = Rig::start().await;
    let secret = "rest-connection-password-7Yq2";
    let body = json!({
        "Imports": [],
        "Body": "{\"rows\": [1, 2]}",
        "ConnectionDetails": json!({"Url": "https://api.example.com", "password": secret})
            .to_string(),
        "Script": "def execute(connectionDetails, body):\n    return body\n",
    });
    let r = send(
        client()
            .post(rig.svc.url("/api/service/v1/function/execute"))
            .header("Content-Type", "application/json")
            .body(body.to_string()),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let reply = r.plugin_object();
    let logs = reply
        .get("logs")
        .unwrap_or_else(|| panic!("the backend reads `logs`: {reply}"));
    let content = logs["content"].as_str().unwrap();
    assert!(content.contains("does not run"), "{content}");
    assert!(!r.text.contains(secret));
    assert!(
        !rig.svc.stderr.all().iter().any(|l| l.contains(secret)),
        "the posted credentials reach no log"
    );
    let runs = send(
        client()
            .get(rig.svc.url("/api/v1/runs"))
            .bearer_auth(OPERATOR_TOKEN),
    )
    .await
    .json();
    assert_eq!(runs["runs"], json!([]), "nothing is stored");
}
