//! Script jobs (Essedum's remote-job API, `/execute`; `workflows/script.toml`): a script run as a
//! SageMaker Processing job.
//!
//! [`request`] reads the body as the Essedum backend builds it, with the service's settings
//! standing in for the `configs` it never sends. [`staging`] is Uploading: the inputs resolved
//! once into a bounded list of named files, then one item per step under the run's
//! deterministic prefix `s3://{staging bucket}/essedum-executor/scripts/{run id}/` (`code/run.sh`,
//! the `configs.source` file, `input/{name}`). Submitted, Polling and Cancelling are the shared
//! job steps (describe before create, adopt on `ResourceInUse`) around
//! Create/Describe/StopProcessingJob. When the job ends, the run moves to Collecting with the
//! outcome remembered; Collecting copies the job's CloudWatch log to `logs/job.log` (and keeps
//! its end in the run, so `getLog` can answer without AWS), lists what the job wrote to
//! `output/`, and only then ends the run Done, Failed or Cancelled.
//!
//! Credentials the request carried (the object store's keys, `configs.aws_*`) and the job's
//! environment are sealed with the run ([`crate::secrets`]); the stored request holds none of them.

pub mod request;
mod staging;

pub use request::{
    Artifact, BODY_KEYS, InputBounds, ScriptConfigs, ScriptRequest, ScriptSecrets, ScriptSettings,
    Storage,
};
pub use staging::InputFile;

use super::job::{self, JobContext, SageMakerJob};
use super::{Due, StepContext, StepError, StepOutput, Workflow};
use crate::aws::{
    AwsError, AwsErrorKind, AwsPort, AwsResult, JobDescription, JobLog, ProcessingChannel,
    ProcessingJobSpec,
};
use crate::model::{Kind, State};
use crate::store::Run;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Every script run writes under `{STAGING_ROOT}/{run id}/` in its staging bucket.
pub const STAGING_ROOT: &str = "essedum-executor/scripts";
/// The longest log kept (and served) per job.
pub const LOG_LIMIT: usize = 8 * 1024 * 1024;
/// How much of the end of a collected log is kept in the run itself, so `getLog` answers
/// without AWS (the whole log when it is shorter).
pub const LOG_TAIL_LIMIT: usize = 64 * 1024;
/// At most this many output artifacts are recorded.
const MAX_OUTPUTS: i32 = 1000;
const CODE_DIR: &str = "/opt/ml/processing/input/code";
/// The job's working directory: the input files lie here under their own names.
const DATA_DIR: &str = "/opt/ml/processing/input/data";
const OUTPUT_DIR: &str = "/opt/ml/processing/output";

/// The processing job's name: derived from the run id, so it is known before anything exists.
pub fn job_name(run_id: Uuid) -> String {
    format!("essedum-script-{}", run_id.simple())
}

/// The end of `text`, at most `max` bytes, cut at a line start when one is near (else at a
/// character boundary).
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let rest = &text[start..];
    match rest.find('\n') {
        Some(i) if i < 1024 && i + 1 < rest.len() => &rest[i + 1..],
        _ => rest,
    }
}

/// What a script run remembers between steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScriptContext {
    #[serde(flatten)]
    pub job: JobContext,
    /// Items of the upload plan staged so far.
    #[serde(default)]
    pub staged: usize,
    /// When the processing job was first confirmed (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// The state the run ends in once its log is collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<State>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_reason: Option<String>,
    #[serde(default)]
    pub log_collected: bool,
    #[serde(default)]
    pub log_truncated: bool,
    /// The output artifacts' keys, relative to the output prefix.
    #[serde(default)]
    pub artifacts: Vec<String>,
    /// The input files to stage, resolved from `input_artifacts` by the first Uploading step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<InputFile>>,
    /// The end of the collected log (at most [`LOG_TAIL_LIMIT`] bytes), kept in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
    /// Whether `log_tail` is the whole collected log.
    #[serde(default)]
    pub log_tail_complete: bool,
    /// Why the job's log could not be copied (`failed: <AWS message>`); absent when it was
    /// copied. A failed copy never changes the job's outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_copy: Option<String>,
    /// Why the output artifacts could not be listed (`failed: <AWS message>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts_listing: Option<String>,
}

impl ScriptContext {
    pub fn new(job_name: String) -> Self {
        ScriptContext {
            job: JobContext::new(job_name),
            ..Default::default()
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("context serialises")
    }

    /// Whether SageMaker ever confirmed the processing job.
    pub fn job_exists(&self) -> bool {
        self.job.sagemaker_status.is_some() || self.job.job_arn.is_some()
    }
}

/// The processing-job calls, with the request and its (opened) environment.
struct ScriptJob {
    request: ScriptRequest,
    environment: BTreeMap<String, String>,
}

#[async_trait]
impl SageMakerJob for ScriptJob {
    fn kind(&self) -> Kind {
        Kind::Script
    }
    fn noun(&self) -> &'static str {
        "processing job"
    }
    async fn describe(&self, aws: &dyn AwsPort, name: &str) -> AwsResult<Option<JobDescription>> {
        aws.describe_processing_job(name).await
    }
    async fn create(&self, aws: &dyn AwsPort, run: &Run, ctx: &JobContext) -> AwsResult<String> {
        aws.create_processing_job(&self.spec(run.id, &ctx.job_name))
            .await
    }
    async fn stop(&self, aws: &dyn AwsPort, name: &str) -> AwsResult<()> {
        aws.stop_processing_job(name).await
    }
}

impl ScriptJob {
    fn spec(&self, run_id: Uuid, name: &str) -> ProcessingJobSpec {
        let r = &self.request;
        let prefix = ScriptRequest::prefix(run_id);
        let mut environment = BTreeMap::from([
            ("ESSEDUM_PROJECT_ID".to_string(), r.project_id.clone()),
            ("ESSEDUM_JOB_NAME".to_string(), r.name.clone()),
            ("ESSEDUM_JOB_VERSION".to_string(), r.version.clone()),
            ("OUTPUT_DIR".to_string(), OUTPUT_DIR.to_string()),
        ]);
        if let Some(py) = &r.configs.py_version {
            environment.insert("ESSEDUM_PY_VERSION".into(), py.clone());
        }
        // The request's own variables win over ours.
        environment.extend(self.environment.clone());
        let mut inputs = vec![ProcessingChannel {
            name: "code".into(),
            s3_uri: format!("s3://{}/{prefix}code/", r.staging_bucket),
            local_path: CODE_DIR.into(),
        }];
        if !r.input_artifacts.is_empty() {
            inputs.push(ProcessingChannel {
                name: "data".into(),
                s3_uri: format!("s3://{}/{prefix}input/", r.staging_bucket),
                local_path: DATA_DIR.into(),
            });
        }
        ProcessingJobSpec {
            name: name.to_string(),
            role_arn: r.configs.role.clone(),
            image: r.configs.container.clone(),
            entrypoint: vec!["/bin/sh".into(), format!("{CODE_DIR}/run.sh")],
            instance_type: r.configs.instance_type.clone(),
            instance_count: r.configs.instance_count,
            volume_size_gb: 30,
            max_runtime_secs: 24 * 3600,
            environment,
            inputs,
            output: ProcessingChannel {
                name: "output".into(),
                s3_uri: format!(
                    "s3://{}/{}",
                    r.staging_bucket,
                    ScriptRequest::output_prefix(run_id).trim_end_matches('/')
                ),
                local_path: OUTPUT_DIR.into(),
            },
            tags: BTreeMap::from([("essedum-executor-run".to_string(), run_id.to_string())]),
        }
    }
}

/// The script-job workflow.
pub struct ScriptWorkflow;

use State::*;

const EDGES: &[(State, State)] = &[
    (Uploading, Uploading),
    (Uploading, Submitted),
    (Uploading, Cancelled),
    (Submitted, Polling),
    (Submitted, Cancelling),
    (Polling, Polling),
    (Polling, Collecting),
    (Polling, Cancelling),
    (Cancelling, Cancelling),
    (Cancelling, Cancelled),
    (Cancelling, Collecting),
    (Cancelling, Polling),
    (Collecting, Done),
    (Collecting, Failed),
    (Collecting, Cancelled),
];

pub(super) fn secrets(cx: &StepContext) -> Result<ScriptSecrets, StepError> {
    serde_json::from_value(cx.secret.clone())
        .map_err(|_| StepError::terminal("the run's sealed credentials are missing or unreadable"))
}

#[async_trait]
impl Workflow for ScriptWorkflow {
    fn kind(&self) -> Kind {
        Kind::Script
    }

    fn handled_states(&self) -> &'static [State] {
        &[Uploading, Submitted, Polling, Cancelling, Collecting]
    }

    fn edges(&self) -> &'static [(State, State)] {
        EDGES
    }

    async fn step(&self, run: &Run, cx: &StepContext) -> Result<StepOutput, StepError> {
        let request: ScriptRequest = serde_json::from_value(run.request.clone())
            .map_err(|e| StepError::terminal(format!("stored request is unreadable: {e}")))?;
        let ctx: ScriptContext = serde_json::from_value(run.context.clone())
            .map_err(|e| StepError::terminal(format!("stored context is unreadable: {e}")))?;
        match run.state {
            Uploading => staging::upload(run, &request, ctx, cx).await,
            Submitted | Polling | Cancelling => {
                let environment = match run.state {
                    Submitted => secrets(cx)?.environment,
                    _ => BTreeMap::new(),
                };
                let job = ScriptJob {
                    request,
                    environment,
                };
                job_step(run, ctx, cx, &job).await
            }
            Collecting => collect(run, &request, ctx, cx).await,
            Done | Failed | Cancelled => {
                Err(StepError::terminal(format!("{} is terminal", run.state)))
            }
        }
    }
}

/// Submitted, Polling and Cancelling: the shared job steps, with the job's end turned into
/// Collecting (the outcome remembered) so the log is collected before the run ends.
async fn job_step(
    run: &Run,
    mut ctx: ScriptContext,
    cx: &StepContext,
    job: &ScriptJob,
) -> Result<StepOutput, StepError> {
    let mut out = job::job_step(job, run, ctx.job.clone(), cx).await?;
    ctx.job = serde_json::from_value(out.context.clone())
        .map_err(|e| StepError::terminal(format!("job context: {e}")))?;
    if out.to == Polling && ctx.started_at.is_none() {
        ctx.started_at = Some(crate::clock::to_db(cx.now));
    }
    let ended = matches!(out.to, Done | Failed | Cancelled);
    if ended && (out.to != Cancelled || ctx.job_exists()) {
        ctx.outcome = Some(out.to);
        ctx.outcome_reason = out.failure.take();
        out.to = Collecting;
        out.due = Due::Now;
    }
    out.context = ctx.to_value();
    Ok(out)
}

/// How often Collecting tries one copy (the log, the artifact listing) when AWS answers with
/// a retryable error, and the pause before the second try (doubled each time).
const COPY_ATTEMPTS: u32 = 3;
const COPY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(250);

/// One Collecting call, retried within [`COPY_ATTEMPTS`] while AWS answers with a retryable
/// error (throttling, 5xx); any other error is given up at once.
async fn bounded<T, F, Fut>(mut call: F) -> AwsResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = AwsResult<T>>,
{
    let mut pause = COPY_BACKOFF;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if e.kind == AwsErrorKind::Retryable && attempt < COPY_ATTEMPTS => {
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A failed copy as the run's context and history keep it.
fn failed(e: &AwsError) -> String {
    format!("failed: {}", e.to_string().replace(['\n', '\r'], " "))
}

/// Collecting: the job's log to `logs/job.log` and the list of its outputs, then the outcome.
/// The outcome is the job's: a log that cannot be copied or outputs that cannot be listed (after
/// a few tries for throttling and 5xx, at once for refusals such as AccessDenied) are recorded
/// in the context (`log_copy`, `artifacts_listing`) and the history, and the run still ends as
/// its job did.
async fn collect(
    run: &Run,
    request: &ScriptRequest,
    mut ctx: ScriptContext,
    cx: &StepContext,
) -> Result<StepOutput, StepError> {
    let key = ScriptRequest::log_key(run.id);
    let copied: AwsResult<JobLog> = async {
        let log = if ctx.job_exists() {
            bounded(|| cx.aws.processing_job_log(&ctx.job.job_name, LOG_LIMIT)).await?
        } else {
            JobLog::default()
        };
        bounded(|| {
            cx.aws.put_object(
                &request.staging_bucket,
                &key,
                log.text.clone().into_bytes(),
                "text/plain; charset=utf-8",
            )
        })
        .await?;
        Ok(log)
    }
    .await;
    let prefix = ScriptRequest::output_prefix(run.id);
    let listed = bounded(|| {
        cx.aws
            .list_objects(&request.staging_bucket, &prefix, None, MAX_OUTPUTS)
    })
    .await;
    let mut detail = Vec::new();
    match copied {
        Ok(log) => {
            ctx.log_collected = true;
            ctx.log_truncated = log.truncated;
            ctx.log_copy = None;
            let kept = tail(&log.text, LOG_TAIL_LIMIT);
            ctx.log_tail_complete = kept.len() == log.text.len();
            ctx.log_tail = Some(kept.to_string());
            detail.push(format!(
                "collected the log ({} bytes{})",
                log.text.len(),
                if log.truncated { ", truncated" } else { "" }
            ));
        }
        Err(e) => {
            let why = failed(&e);
            tracing::warn!(run_id = %run.id, reason = %why, "the job's log could not be copied");
            detail.push(format!("log_copy: {why}"));
            ctx.log_copy = Some(why);
        }
    }
    match listed {
        Ok(page) => {
            ctx.artifacts = page
                .objects
                .iter()
                .filter_map(|o| o.key.strip_prefix(&prefix))
                .filter(|k| !k.is_empty() && !k.ends_with('/'))
                .map(str::to_string)
                .collect();
            ctx.artifacts_listing = None;
            detail.push(format!("{} output artifact(s)", ctx.artifacts.len()));
        }
        Err(e) => {
            let why = failed(&e);
            tracing::warn!(run_id = %run.id, reason = %why, "the outputs could not be listed");
            detail.push(format!("artifacts_listing: {why}"));
            ctx.artifacts_listing = Some(why);
        }
    }
    let to = ctx.outcome.unwrap_or(Failed);
    let mut out = StepOutput::to(to, ctx.to_value()).detail(detail.join("; "));
    if to == Failed {
        out = out.failure(
            ctx.outcome_reason
                .clone()
                .unwrap_or_else(|| "the processing job failed".into()),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::InputError;
    use crate::workflows::input::InputLimits;
    use serde_json::json;

    /// The body the Essedum backend builds (RemoteBody.java via org.json: no `configs`, no
    /// `environment` when the job has no variables, blank credentials when the connection has
    /// none).
    fn backend_body() -> Value {
        json!({
            "bucket": "essedum-data",
            "project_id": "leo1311",
            "name": "LEOCHURN12345",
            "version": "3",
            "credentials": {"endpoint": "http://127.0.0.1:9000", "access_key": "AK", "secret_key": "SK"},
            "input_artifacts": "leo1311/remote/LEOCHURN12345/3/Input",
            "command": "python train.py",
            "storage": "s3",
        })
    }

    /// A body with every `configs` key, as our own callers may send it.
    fn full_body() -> Value {
        let mut b = backend_body();
        b["input_artifacts"] = json!("data/train.csv, s3://other-bucket/x/y.csv");
        b["environment"] = json!({"EPOCHS": "3"});
        b["configs"] = json!({
            "role": "arn:aws:iam::123456789012:role/SageMakerRole",
            "container": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sklearn:1",
            "aws_access_key_id": "", "aws_secret_access_key": "",
            "instance_count": "2"
        });
        b
    }

    fn limits() -> InputLimits {
        InputLimits {
            data_dir: None,
            max_inline_csv_bytes: 1024,
        }
    }

    fn settings() -> ScriptSettings {
        ScriptSettings {
            role_arn: Some("arn:aws:iam::123456789012:role/ServiceRole".into()),
            image: Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/python:3.11".into()),
            ..ScriptSettings::default()
        }
    }

    fn parse(
        b: Value,
        s: &ScriptSettings,
    ) -> Result<(ScriptRequest, crate::aws::RunSecret), InputError> {
        ScriptRequest::parse(b, &limits(), s)
    }

    #[test]
    fn the_backends_body_takes_its_sagemaker_settings_from_the_service() {
        let (req, secret) = parse(backend_body(), &settings()).unwrap();
        assert_eq!(
            req.configs.role,
            "arn:aws:iam::123456789012:role/ServiceRole"
        );
        assert!(req.configs.container.ends_with("python:3.11"));
        assert_eq!(req.configs.instance_type, "ml.t3.medium");
        assert_eq!(req.configs.instance_count, 1);
        assert_eq!(req.staging_bucket, "essedum-data");
        assert!(req.environment_keys.is_empty());
        assert_eq!(
            req.input_artifacts,
            [Artifact::Store {
                bucket: "essedum-data".into(),
                key: "leo1311/remote/LEOCHURN12345/3/Input".into()
            }]
        );
        assert!(secret.aws.is_none(), "no region or keys: the run's AWS");
    }

    #[test]
    fn region_and_instances_fall_back_to_the_settings() {
        let s = ScriptSettings {
            region: Some("eu-west-1".into()),
            instance_type: "ml.m5.large".into(),
            instance_count: 3,
            ..settings()
        };
        let (req, secret) = parse(backend_body(), &s).unwrap();
        assert_eq!(req.configs.region_name.as_deref(), Some("eu-west-1"));
        assert_eq!(
            (
                req.configs.instance_type.as_str(),
                req.configs.instance_count
            ),
            ("ml.m5.large", 3)
        );
        let target = secret.aws.expect("the run gets its own region");
        assert_eq!(target.region.as_deref(), Some("eu-west-1"));
        assert!(target.credentials.is_none());
        let mut b = backend_body();
        b["configs"] = json!({"region_name": "us-west-2", "instance_count": 2});
        let (req, _) = parse(b, &s).unwrap();
        assert_eq!(req.configs.region_name.as_deref(), Some("us-west-2"));
        assert_eq!(req.configs.instance_count, 2);
    }

    #[test]
    fn configs_win_over_the_service_settings() {
        let mut s = settings();
        s.bucket = Some("staging-bucket".into());
        let (req, _) = parse(full_body(), &s).unwrap();
        assert_eq!(
            req.configs.role,
            "arn:aws:iam::123456789012:role/SageMakerRole"
        );
        assert_eq!(req.configs.instance_count, 2);
        assert_eq!(req.staging_bucket, "staging-bucket");
        let mut b = full_body();
        b["configs"]["bucket"] = json!("from-configs");
        assert_eq!(parse(b, &s).unwrap().0.staging_bucket, "from-configs");
    }

    #[test]
    fn a_setting_neither_sent_nor_configured_is_422_naming_field_and_setting() {
        let e = parse(backend_body(), &ScriptSettings::default()).unwrap_err();
        assert_eq!(e.field(), Some("configs.role"));
        assert!(e.to_string().contains("EXECUTOR_SCRIPT_ROLE_ARN"), "{e}");
        let s = ScriptSettings {
            role_arn: settings().role_arn,
            ..ScriptSettings::default()
        };
        let e = parse(backend_body(), &s).unwrap_err();
        assert_eq!(e.field(), Some("configs.container"));
        assert!(e.to_string().contains("EXECUTOR_SCRIPT_IMAGE"), "{e}");
    }

    #[test]
    fn unknown_keys_are_ignored_and_blank_strings_are_absent() {
        let mut b = backend_body();
        b["priority"] = json!("high");
        b["environment"] = json!("");
        b["configs"] = json!({"role": "", "container": "", "extra": 1});
        b["credentials"]["comment"] = json!("x");
        let (req, _) = parse(b, &settings()).unwrap();
        assert!(req.configs.role.ends_with("ServiceRole"));
    }

    #[test]
    fn known_keys_keep_their_types() {
        for (field, value, named) in [
            ("version", json!(3), "version"),
            ("command", json!(7), "command"),
            ("storage", json!("ftp"), "storage"),
            ("environment", json!({"A": 1}), "environment.A"),
            ("environment", json!([1]), "environment"),
            ("configs", json!("x"), "configs"),
            ("credentials", json!(1), "credentials"),
        ] {
            let mut b = backend_body();
            b[field] = value;
            let e = parse(b, &settings()).unwrap_err();
            assert!(
                matches!(e, InputError::Invalid { .. }) && e.field() == Some(named),
                "{field}: {e:?}"
            );
        }
        let mut b = backend_body();
        b.as_object_mut().unwrap().remove("command");
        assert_eq!(parse(b, &settings()).unwrap_err().field(), Some("command"));
    }

    #[test]
    fn secrets_are_sealed_not_stored() {
        let (req, secret) = parse(full_body(), &settings()).unwrap();
        let stored = serde_json::to_string(&req).unwrap();
        assert!(
            !stored.contains("SK") && !stored.contains("\"3\"}"),
            "{stored}"
        );
        assert!(stored.contains("EPOCHS"), "the variable names are kept");
        let sealed = serde_json::to_string(&secret).unwrap();
        assert!(sealed.contains("SK") && sealed.contains("\"3\""));
    }

    #[test]
    fn minio_needs_its_endpoint_and_a_bare_host_means_http() {
        let mut b = backend_body();
        b["storage"] = json!("minio");
        b["credentials"]["endpoint"] = json!("");
        assert_eq!(
            parse(b.clone(), &settings()).unwrap_err().field(),
            Some("credentials.endpoint")
        );
        b["credentials"]["endpoint"] = json!("minio.local:9000");
        let (req, _) = parse(b, &settings()).unwrap();
        assert_eq!(req.storage_endpoint, "http://minio.local:9000");
    }

    #[test]
    fn bad_settings_are_refused_naming_the_setting() {
        let e = ScriptSettings {
            role_arn: Some("not-an-arn".into()),
            ..ScriptSettings::default()
        }
        .validated()
        .unwrap_err();
        assert!(e.starts_with("EXECUTOR_SCRIPT_ROLE_ARN"), "{e}");
        let e = ScriptSettings {
            instance_type: "large".into(),
            ..ScriptSettings::default()
        }
        .validated()
        .unwrap_err();
        assert!(e.starts_with("EXECUTOR_SCRIPT_INSTANCE_TYPE"), "{e}");
        let ok = ScriptSettings {
            role_arn: Some("  ".into()),
            ..ScriptSettings::default()
        }
        .validated()
        .unwrap();
        assert_eq!(ok.role_arn, None, "blank means unset");
    }

    #[test]
    fn the_script_runs_the_command_in_the_input_directory() {
        let (req, _) = parse(backend_body(), &settings()).unwrap();
        let id = Uuid::nil();
        let script = req.script(id);
        assert!(
            script.contains(&format!(
                "\ncd {DATA_DIR} 2>/dev/null || cd {CODE_DIR}\npython train.py\n"
            )),
            "{script}"
        );
        assert!(job_name(id).len() <= 63);
    }

    #[test]
    fn tails_keep_the_end_at_a_line_start() {
        assert_eq!(tail("abc", 10), "abc");
        assert_eq!(tail("line1\nline2\nline3", 8), "line3");
        assert_eq!(tail("ééé", 3), "é");
    }
}
