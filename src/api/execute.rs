//! Essedum's remote-job API (ESSEDUM-CONTRACT.md section 2): scripts submitted to `/execute`
//! (or `POST /api/service/v1/pipelines/training/custom_script`) and polled by task id. Each task
//! is a script run (`workflows/script.toml`). The backend parses these replies strictly: the
//! status words, the key names and the time format below are the contract.

use super::auth::Caller;
use super::body::RawBody;
use super::operator::{owner_scope, state_of, visible};
use super::scope::AwsScope;
use super::{ApiError, AppState};
use crate::clock::{Timestamp, from_db};
use crate::model::{Kind, State};
use crate::store::{CancelOutcome, NewRun, Run, RunFilter};
use crate::workflows::script::{self, LOG_LIMIT, ScriptContext, ScriptRequest};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use serde_json::{Map, Value};
use std::collections::HashMap;
use uuid::Uuid;

pub struct ExecuteApi(pub Option<AppState>);

#[derive(poem_openapi::Tags)]
enum Tag {
    /// Essedum's remote-job API: scripts run as SageMaker Processing jobs.
    Execute,
}

/// The object store the input artifacts are read from (the backend sends its storage
/// connection's `url`, `accessKey` and `secretKey`; blank values mean absent).
#[derive(Object)]
#[oai(rename = "ExecuteCredentials")]
#[allow(dead_code)]
struct CredentialsSchema {
    /// The store's URL (`host:port` means http). Required for `minio`; for `s3`, absent means
    /// the run's own S3; `local` storage ignores it.
    endpoint: Option<String>,
    /// With `secret_key` (required for `minio`). Absent for `s3`: the run's AWS credentials.
    access_key: Option<String>,
    /// Stored only encrypted; never logged or returned.
    secret_key: Option<String>,
}

/// SageMaker settings of the job. The Essedum backend never sends them: each absent key falls
/// back to the service setting named with it.
#[derive(Object)]
#[oai(rename = "ExecuteConfigs")]
#[allow(dead_code)]
struct ConfigsSchema {
    /// Staging bucket for the script, inputs, outputs and log (default: `EXECUTOR_SCRIPT_BUCKET`,
    /// else `bucket`).
    bucket: Option<String>,
    /// With `aws_secret_access_key`: the AWS keys the job runs with (stored only encrypted).
    /// Absent: the service's AWS credential chain (or the Essedum connection's).
    aws_access_key_id: Option<String>,
    aws_secret_access_key: Option<String>,
    /// Default: `EXECUTOR_SCRIPT_REGION`, else the service's region.
    region_name: Option<String>,
    /// The execution role of the processing job. Default: `EXECUTOR_SCRIPT_ROLE_ARN`; with
    /// neither, 422 naming `configs.role`.
    role: Option<String>,
    py_version: Option<String>,
    /// The container image that runs the command. Default: `EXECUTOR_SCRIPT_IMAGE`; with
    /// neither, 422 naming `configs.container`.
    container: Option<String>,
    /// A whole number (string or number). Default: `EXECUTOR_SCRIPT_INSTANCE_COUNT` (1).
    instance_count: Option<String>,
    /// Default: `EXECUTOR_SCRIPT_INSTANCE_TYPE` (`ml.t3.medium`).
    instance_type: Option<String>,
    /// A script file staged beside `run.sh` in the code directory.
    source: Option<String>,
}

/// A script job, as the Essedum backend's `RemoteBody` builds it. Keys not listed here are
/// ignored and a blank string counts as absent; a listed key with a wrong type is 422, naming
/// the field (as is a missing required one).
#[derive(Object)]
#[oai(rename = "ExecuteRequest")]
#[allow(dead_code)]
struct ExecuteRequestSchema {
    /// The bucket the input artifacts are in (and the default staging bucket).
    bucket: String,
    project_id: String,
    name: String,
    /// A string (the backend sends the pipeline version as text).
    version: String,
    credentials: Option<CredentialsSchema>,
    /// Comma-separated. Each entry is a folder — every object under it is staged keeping its
    /// relative name, as the backend's `{org}/remote/{pipeline}/{version}/Input` — or a single
    /// object (staged under its file name): keys in `bucket` or `s3://bucket/key` URIs
    /// (storage `s3`, `minio`), or paths inside the data directory (storage `local`). At most
    /// `EXECUTOR_SCRIPT_MAX_INPUT_FILES` files and `EXECUTOR_SCRIPT_MAX_INPUT_BYTES` bytes.
    input_artifacts: String,
    /// The shell command (e.g. `python train.py`), run in the directory holding the input
    /// files; files written to `$OUTPUT_DIR` are the output artifacts.
    command: String,
    /// `local`, `minio` or `s3`.
    storage: String,
    /// Environment variables of the job (stored only encrypted). The backend sends it only
    /// when the job has variables; a string means none.
    environment: Option<HashMap<String, String>>,
    /// Never sent by the backend; see `ExecuteConfigs` for the service settings it falls back to.
    configs: Option<ConfigsSchema>,
}

/// The reply to a submitted script job.
#[derive(Object)]
pub struct TaskAccepted {
    pub task_id: String,
    /// Always `Submitted`.
    pub task_status: String,
    /// Where the job's log is kept once it ends (S3); read it with `getLog`.
    pub log_path: String,
}

/// A script job's status, in the shape the Essedum backend parses.
#[derive(Object)]
pub struct TaskStatus {
    pub task_id: String,
    /// The SageMaker processing job's name (there is no local process).
    pub pid: Option<String>,
    /// `WAITING` (staging, submitting), `RUNNING`, `COMPLETED`, `ERROR` or `CANCELLED`.
    pub task_status: String,
    pub log_path: String,
    /// Where the job's output artifacts are written (S3).
    pub output_dir: String,
    /// `yyyy-MM-dd HH:mm:ss.SSSSSSXXX`, UTC.
    pub submitted: Option<String>,
    /// When the processing job was confirmed (same format); set on every finished job.
    pub started: Option<String>,
    pub finished: Option<String>,
    /// Seconds from `started` to `finished`, on finished jobs.
    pub timestamp: Option<f64>,
    /// Why the job failed, on `ERROR`.
    pub error: Option<String>,
}

/// The reply to `stop`.
#[derive(Object)]
pub struct TaskCancelled {
    /// True when the job is being (or was) cancelled; false when it had already ended.
    #[oai(rename = "Task cancelled")]
    pub task_cancelled: bool,
}

/// The log so far.
#[derive(Object)]
pub struct TaskLogContent {
    pub content: String,
}

#[derive(Object)]
pub struct TaskLog {
    pub logs: TaskLogContent,
}

#[derive(ApiResponse)]
enum SubmitReply {
    /// Accepted and stored; the job runs in the background.
    #[oai(status = 201)]
    Created(Json<TaskAccepted>),
}

/// The backend's time format: `2026-11-27 12:00:00.123456+00:00`.
pub fn essedum_time(t: Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()
}

/// The backend's status word for a script run.
pub fn task_status(state: State) -> &'static str {
    match state {
        State::Uploading | State::Submitted => "WAITING",
        State::Polling | State::Cancelling | State::Collecting => "RUNNING",
        State::Done => "COMPLETED",
        State::Failed => "ERROR",
        State::Cancelled => "CANCELLED",
    }
}

fn request_of(run: &Run) -> Result<ScriptRequest, ApiError> {
    serde_json::from_value(run.request.clone()).map_err(|e| {
        tracing::error!(run_id = %run.id, error = %e, "stored script request is unreadable");
        ApiError::unavailable("the task's stored request is unreadable; see the service log")
    })
}

fn context_of(run: &Run) -> ScriptContext {
    serde_json::from_value(run.context.clone()).unwrap_or_default()
}

/// The staging bucket, read leniently: status replies never fail on the stored request.
fn staging_bucket(run: &Run) -> &str {
    run.request
        .get("staging_bucket")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The status in the backend's shape, from the store alone (no AWS call, ever).
fn status_of(run: &Run) -> TaskStatus {
    let ctx = context_of(run);
    let terminal = run.state.is_terminal();
    let submitted = run.created_at;
    let started = ctx
        .started_at
        .as_deref()
        .and_then(from_db)
        .or(terminal.then_some(submitted));
    let finished = terminal.then_some(run.updated_at);
    let timestamp = match (started, finished) {
        (Some(s), Some(f)) => {
            let micros = (f - s).num_microseconds().unwrap_or(0).max(0);
            Some(micros as f64 / 1e6)
        }
        _ => None,
    };
    let bucket = staging_bucket(run);
    TaskStatus {
        task_id: run.id.to_string(),
        pid: Some(ctx.job.job_name),
        task_status: task_status(run.state).into(),
        log_path: format!("s3://{bucket}/{}", ScriptRequest::log_key(run.id)),
        output_dir: format!("s3://{bucket}/{}", ScriptRequest::output_prefix(run.id)),
        submitted: Some(essedum_time(submitted)),
        started: started.map(essedum_time),
        finished: finished.map(essedum_time),
        timestamp,
        error: (run.state == State::Failed)
            .then(|| run.last_error.clone())
            .flatten(),
    }
}

/// A task id from the path: 400 when it is not a UUID.
fn task_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| {
        ApiError::bad_request(format!("{id:?} is not a task id (a UUID)"), Some("task_id"))
    })
}

impl ExecuteApi {
    async fn submit(
        &self,
        body: Value,
        scope: &AwsScope,
        caller: &Caller,
    ) -> Result<SubmitReply, ApiError> {
        let app = state_of(&self.0)?;
        let (mut request, secret) = ScriptRequest::parse(body, &app.limits, &app.script)?;
        request.connection = scope.connection.clone();
        let id = crate::store::new_run_id();
        let name = script::job_name(id);
        let log_path = request.log_path(id);
        let sealed = app.provider.seal(id, &secret);
        app.store
            .insert_run_with_secret(
                NewRun {
                    id,
                    kind: Kind::Script,
                    state: State::Uploading,
                    request: serde_json::to_value(&request).expect("request serialises"),
                    context: ScriptContext::new(name.clone()).to_value(),
                    resource_name: Some(name.clone()),
                    submitted_by: Some(caller.name.clone()),
                    detail: format!("accepted; processing job name {name}"),
                },
                sealed,
                app.clock.now(),
            )
            .await?;
        app.wake.notify_one();
        tracing::info!(run_id = %id, job = %name, "script task accepted");
        Ok(SubmitReply::Created(Json(TaskAccepted {
            task_id: id.to_string(),
            task_status: "Submitted".into(),
            log_path,
        })))
    }

    /// The caller's script run `id`: 400 malformed, 404 unknown (or another submitter's).
    async fn task(&self, id: &str, caller: &Caller) -> Result<(&AppState, Run), ApiError> {
        let app = state_of(&self.0)?;
        let id = task_id(id)?;
        match visible(caller, app.store.get_run(id).await?) {
            Some(run) if run.kind == Kind::Script => Ok((app, run)),
            _ => Err(ApiError::not_found(format!("no task {id}"))),
        }
    }
}

/// The refusal of `POST /api/service/v1/function/execute`, in the shape the backend reads: it
/// takes `logs` from any reply (`ICIPDataSetServiceUtilRestAbstract.executeScript`), so the
/// reason reaches the person who configured the dataset.
#[derive(Object)]
pub struct FunctionRefused {
    pub error: String,
    /// The reason again, where the backend reads it (absent when the token check refused the
    /// call before the route).
    pub logs: Option<TaskLogContent>,
}

#[derive(ApiResponse)]
enum FunctionReply {
    /// Refused: this executor does not run Python functions on its own host.
    #[oai(status = 403)]
    Refused(Json<FunctionRefused>),
}

/// Why `function/execute` is refused.
const FUNCTION_REFUSAL: &str = "sagemaker-executor does not run dataset transform scripts on its \
own host: the request carries arbitrary Python code and the REST connection's credentials, and \
running it here would give every Essedum user who can edit a dataset the executor's AWS \
identity. Run the transform without remote execution, or as a script job (POST /execute).";

#[OpenApi(tag = "Tag::Execute")]
impl ExecuteApi {
    /// Submit a script job: validated, stored (credentials and environment encrypted), then run
    /// as a SageMaker Processing job in the background. Replies 201 at once.
    #[oai(path = "/execute", method = "post")]
    async fn execute(
        &self,
        body: Json<RawBody<ExecuteRequestSchema>>,
        scope: Data<&AwsScope>,
        caller: Data<&Caller>,
    ) -> Result<SubmitReply, ApiError> {
        self.submit(body.0.value, &scope, &caller).await
    }

    /// The same as `POST /execute`, on Essedum's training route for custom scripts. With a
    /// configured connection lookup, the job uses the Essedum connection the query names.
    #[oai(
        path = "/api/service/v1/pipelines/training/custom_script",
        method = "post"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn custom_script(
        &self,
        body: Json<RawBody<ExecuteRequestSchema>>,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
        caller: Data<&Caller>,
    ) -> Result<SubmitReply, ApiError> {
        self.submit(body.0.value, &scope, &caller).await
    }

    /// The last 100 script jobs, newest first.
    #[oai(path = "/execute", method = "get")]
    async fn list(&self, caller: Data<&Caller>) -> Result<Json<Vec<TaskStatus>>, ApiError> {
        let app = state_of(&self.0)?;
        let page = app
            .store
            .list_runs(&RunFilter {
                kind: Some(Kind::Script),
                submitted_by: owner_scope(&caller).map(str::to_string),
                limit: 100,
                ..RunFilter::default()
            })
            .await?;
        Ok(Json(page.runs.iter().map(status_of).collect()))
    }

    /// A script job's status.
    #[oai(path = "/execute/:task_id/getStatus", method = "get")]
    async fn get_status(
        &self,
        task_id: Path<String>,
        caller: Data<&Caller>,
    ) -> Result<Json<TaskStatus>, ApiError> {
        let (_, run) = self.task(&task_id.0, &caller).await?;
        Ok(Json(status_of(&run)))
    }

    /// Cancel a script job: its processing job is stopped and it ends `CANCELLED` (with the log
    /// up to the stop). `false` when the job had already ended.
    #[oai(path = "/execute/:task_id/stop", method = "get")]
    async fn stop(
        &self,
        task_id: Path<String>,
        caller: Data<&Caller>,
    ) -> Result<Json<TaskCancelled>, ApiError> {
        let (app, run) = self.task(&task_id.0, &caller).await?;
        let detail = format!("stop requested by {} (/execute)", caller.name);
        let cancelled = match app
            .store
            .request_cancel(run.id, app.clock.now(), &detail)
            .await?
        {
            CancelOutcome::Requested(_) => {
                app.wake.notify_one();
                true
            }
            // A Failed job may still be running (the engine gave up while following it): the
            // stop reaches AWS, as an operator's cancel would.
            CancelOutcome::AlreadyTerminal(State::Failed) => {
                match super::operator::cancel_failed(app, run.id, &detail).await {
                    Ok(_) => true,
                    Err(super::error::ApiError::Conflict(_)) => false,
                    Err(e) => return Err(e),
                }
            }
            CancelOutcome::AlreadyTerminal(state) => state == State::Cancelled,
            CancelOutcome::NotFound => {
                return Err(ApiError::not_found(format!("no task {}", run.id)));
            }
        };
        Ok(Json(TaskCancelled {
            task_cancelled: cancelled,
        }))
    }

    /// The job's log so far.
    ///
    /// From CloudWatch while the job runs; once it ended, the collected copy (kept in the
    /// service itself when it is short, else read from S3). Always 200 for a known task: when AWS does not answer within a few seconds, the end of the log kept by the
    /// service (or a line saying the log cannot be read now) — a non-200 here makes the Essedum
    /// backend mark a finished job as failed (ICIPRemoteLoggerService.java). A failed job's log
    /// ends with the reason it failed.
    #[oai(path = "/execute/:task_id/getLog", method = "get")]
    async fn get_log(
        &self,
        task_id: Path<String>,
        caller: Data<&Caller>,
    ) -> Result<Json<TaskLog>, ApiError> {
        let (app, run) = self.task(&task_id.0, &caller).await?;
        Ok(Json(TaskLog {
            logs: TaskLogContent {
                content: log_of(app, &run).await,
            },
        }))
    }

    /// The backend's remote Python transform of a REST dataset (`Imports`, `Requirements`,
    /// `Body`, `ConnectionDetails`, `Script`). Always refused with a 403 whose `logs.content` says
    /// why: the Python executor ran the posted code on its own host. The body is neither read,
    /// logged nor stored (it carries the connection's credentials).
    #[oai(path = "/api/service/v1/function/execute", method = "post")]
    async fn function_execute(&self) -> FunctionReply {
        FunctionReply::Refused(Json(FunctionRefused {
            error: FUNCTION_REFUSAL.into(),
            logs: Some(TaskLogContent {
                content: FUNCTION_REFUSAL.into(),
            }),
        }))
    }

    /// The job's output artifacts by file stem: `{"<stem>": {"content": ...}}` — the parsed
    /// JSON of a `.json` file, else its text (at most 1 MiB each). Empty until the job ended.
    #[oai(path = "/execute/:task_id/getOutputArtifacts", method = "get")]
    async fn get_output_artifacts(
        &self,
        task_id: Path<String>,
        caller: Data<&Caller>,
    ) -> Result<Json<Value>, ApiError> {
        const MAX_ARTIFACT: u64 = 1024 * 1024;
        let (app, run) = self.task(&task_id.0, &caller).await?;
        let req = request_of(&run)?;
        let ctx = context_of(&run);
        let aws = run_aws(app, &run).await?;
        let prefix = ScriptRequest::output_prefix(run.id);
        let mut out = Map::new();
        for rel in ctx.artifacts.iter().take(100) {
            let Some(bytes) = aws
                .read_object_start(&req.staging_bucket, &format!("{prefix}{rel}"), MAX_ARTIFACT)
                .await
                .map_err(aws_unavailable)?
            else {
                continue;
            };
            let stem = artifact_stem(rel);
            let content = if rel.ends_with(".json") {
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
            } else {
                Value::String(String::from_utf8_lossy(&bytes).into_owned())
            };
            let mut key = stem.clone();
            let mut n = 2;
            while out.contains_key(&key) {
                key = format!("{stem}-{n}");
                n += 1;
            }
            out.insert(key, serde_json::json!({ "content": content }));
        }
        Ok(Json(Value::Object(out)))
    }
}

/// How long `getLog` waits for AWS before answering from the store (the backend's HTTP client
/// gives up after 10 s).
const LOG_AWS_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// A note in a log reply, told apart from the job's own lines.
fn note(text: &str) -> String {
    format!("[sagemaker-executor] {text}\n")
}

/// The log as [`ExecuteApi::get_log`] serves it; never an error.
async fn log_of(app: &AppState, run: &Run) -> String {
    let ctx = context_of(run);
    let mut text = if ctx.log_collected && ctx.log_tail_complete {
        ctx.log_tail.clone().unwrap_or_default()
    } else if ctx.log_collected || ctx.job_exists() {
        let live = tokio::time::timeout(LOG_AWS_BUDGET, read_log(app, run, &ctx)).await;
        let live = live.unwrap_or_else(|_| {
            Err(format!(
                "AWS did not answer within {}s",
                LOG_AWS_BUDGET.as_secs()
            ))
        });
        match live {
            Ok(text) => text,
            Err(why) => {
                let why = why.replace(['\n', '\r'], " ");
                tracing::warn!(run_id = %run.id, reason = %why, "getLog answers from the store");
                match &ctx.log_tail {
                    Some(tail) => format!(
                        "{}{tail}",
                        note(&format!(
                            "the full log ({}) cannot be read now ({why}); its last {} bytes follow",
                            format_args!(
                                "s3://{}/{}",
                                staging_bucket(run),
                                ScriptRequest::log_key(run.id)
                            ),
                            tail.len()
                        ))
                    ),
                    None => note(&format!(
                        "the job's log cannot be read now ({why}); ask again later"
                    )),
                }
            }
        }
    } else {
        String::new()
    };
    if let Some(why) = ctx.log_copy.as_deref() {
        // The job ended, but its log could not be copied: said first, then whatever could
        // still be read.
        text.insert_str(
            0,
            &note(&format!(
                "the job's log could not be copied when it ended (log_copy: {why})"
            )),
        );
    }
    if run.state == State::Failed
        && let Some(reason) = run.last_error.as_deref().filter(|r| !text.contains(*r))
    {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&note(&format!("ERROR: {reason}")));
    }
    text
}

/// The log from AWS: the collected copy in S3, else the job's CloudWatch log.
async fn read_log(app: &AppState, run: &Run, ctx: &ScriptContext) -> Result<String, String> {
    let sealed = app
        .store
        .run_secret(run.id)
        .await
        .map_err(|e| format!("the store: {e}"))?;
    let (aws, _) = app
        .provider
        .for_run(run, sealed.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    if ctx.log_collected {
        app.logs.forget(run.id);
        let bytes = aws
            .read_object_start(
                staging_bucket(run),
                &ScriptRequest::log_key(run.id),
                LOG_LIMIT as u64,
            )
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the collected log is missing")?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    } else {
        // Only what came since the last getLog of this run is fetched.
        let mut log = app.logs.get(run.id);
        if log.truncated {
            return Ok(log.text);
        }
        let (new, cursor) = aws
            .processing_job_log_from(
                &ctx.job.job_name,
                &log.cursor,
                LOG_LIMIT.saturating_sub(log.text.len()),
            )
            .await
            .map_err(|e| e.to_string())?;
        log.text.push_str(&new.text);
        log.truncated = new.truncated;
        log.cursor = cursor;
        app.logs.put(run.id, log.clone());
        Ok(log.text)
    }
}

/// `dir/result.json` → `dir/result`.
fn artifact_stem(rel: &str) -> String {
    let (dir, file) = rel.rsplit_once('/').unwrap_or(("", rel));
    let stem = file
        .rsplit_once('.')
        .map_or(file, |(s, _)| if s.is_empty() { file } else { s });
    if dir.is_empty() {
        stem.to_string()
    } else {
        format!("{dir}/{stem}")
    }
}

/// The AWS the run itself uses (its connection or sealed credentials).
async fn run_aws(
    app: &AppState,
    run: &Run,
) -> Result<std::sync::Arc<dyn crate::aws::AwsPort>, ApiError> {
    let sealed = app.store.run_secret(run.id).await?;
    let (aws, _) = app
        .provider
        .for_run(run, sealed.as_deref())
        .await
        .map_err(aws_unavailable)?;
    Ok(aws)
}

fn aws_unavailable(e: crate::aws::AwsError) -> ApiError {
    tracing::warn!(error = %e, "AWS call for a task failed");
    ApiError::unavailable(format!("AWS is not answering as expected; try again: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_use_the_backends_pattern() {
        let t = from_db("2026-11-27T12:00:00.123456Z").unwrap();
        assert_eq!(essedum_time(t), "2026-11-27 12:00:00.123456+00:00");
    }

    #[test]
    fn stems_drop_the_extension_only() {
        assert_eq!(artifact_stem("result.json"), "result");
        assert_eq!(artifact_stem("a/b.tar.gz"), "a/b.tar");
        assert_eq!(artifact_stem(".env"), ".env");
        assert_eq!(artifact_stem("README"), "README");
    }

    #[test]
    fn each_state_maps_to_the_backends_status_word() {
        let words: Vec<(State, &str)> = State::ALL
            .into_iter()
            .map(|s| (s, task_status(s)))
            .collect();
        assert_eq!(
            words,
            [
                (State::Uploading, "WAITING"),
                (State::Submitted, "WAITING"),
                (State::Polling, "RUNNING"),
                (State::Cancelling, "RUNNING"),
                (State::Collecting, "RUNNING"),
                (State::Done, "COMPLETED"),
                (State::Failed, "ERROR"),
                (State::Cancelled, "CANCELLED"),
            ]
        );
    }
}
