//! Script jobs (Essedum's remote-job API, `/execute`; `workflows/script.toml`): a script run as a
//! SageMaker Processing job.
//!
//! Uploading stages one item per step under the run's deterministic prefix
//! `s3://{staging bucket}/essedum-executor/scripts/{run id}/`: first `code/run.sh` (the request's
//! `command`), then the `configs.source` file (if any) into `code/`, then each input artifact into
//! `input/`. Submitted, Polling and Cancelling are the shared job steps (describe before create,
//! adopt on `ResourceInUse`) around Create/Describe/StopProcessingJob. When the job ends, the
//! run moves to Collecting with the outcome remembered; Collecting copies the job's CloudWatch log
//! to `logs/job.log`, lists what the job wrote to `output/`, and only then ends the run Done,
//! Failed or Cancelled — so a finished run always has its log.
//!
//! Credentials the request carried (the object store's keys, `configs.aws_*`) and the job's
//! environment are sealed with the run ([`crate::secrets`]); the stored request holds none of them.

use super::input::{InputLimits, local_path};
use super::job::{self, JobContext, SageMakerJob};
use super::{Due, StepContext, StepError, StepOutput, Workflow};
use crate::aws::{
    AwsErrorKind, AwsPort, AwsResult, AwsTarget, JobDescription, JobLog, ProcessingChannel,
    ProcessingJobSpec, RunSecret, StaticCredentials,
};
use crate::connection::ConnectionRef;
use crate::failpoint;
use crate::model::{Kind, State};
use crate::secrets::Secret;
use crate::store::Run;
use crate::validate::{self, Fields, InputError, InputResult};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use uuid::Uuid;

/// Every script run writes under `{STAGING_ROOT}/{run id}/` in its staging bucket.
pub const STAGING_ROOT: &str = "essedum-executor/scripts";
/// The longest log kept (and served) per job.
pub const LOG_LIMIT: usize = 8 * 1024 * 1024;
/// The largest input artifact copied from the request's object store.
const MAX_ARTIFACT_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// At most this many output artifacts are recorded.
const MAX_OUTPUTS: i32 = 1000;
const CODE_DIR: &str = "/opt/ml/processing/input/code";
const DATA_DIR: &str = "/opt/ml/processing/input/data";
const OUTPUT_DIR: &str = "/opt/ml/processing/output";

/// The processing job's name: derived from the run id, so it is known before anything exists.
pub fn job_name(run_id: Uuid) -> String {
    format!("essedum-script-{}", run_id.simple())
}

/// Where the input artifacts come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// Files inside the service's data directory.
    Local,
    /// Objects in a MinIO (S3-compatible) store at `credentials.endpoint`.
    Minio,
    /// Objects in S3 (or an S3-compatible store) at `credentials.endpoint`.
    S3,
}

/// One file to stage, resolved when the request is accepted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "lowercase")]
pub enum Artifact {
    /// A file inside the data directory.
    Local { path: PathBuf },
    /// An object in the request's object store.
    Store { bucket: String, key: String },
}

impl Artifact {
    fn file_name(&self) -> String {
        let name = match self {
            Artifact::Local { path } => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Artifact::Store { key, .. } => key.rsplit('/').next().unwrap_or_default().to_string(),
        };
        if name.is_empty() || name == "." || name == ".." {
            "artifact".into()
        } else {
            name
        }
    }

    fn describe(&self) -> String {
        match self {
            Artifact::Local { path } => path.display().to_string(),
            Artifact::Store { bucket, key } => format!("{bucket}/{key}"),
        }
    }
}

/// The SageMaker settings of a script job (`configs`, without its credentials).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScriptConfigs {
    pub role: String,
    pub container: String,
    pub instance_type: String,
    pub instance_count: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub py_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Artifact>,
}

/// A validated `/execute` request as stored with the run: no credentials, no environment values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScriptRequest {
    pub bucket: String,
    pub project_id: String,
    pub name: String,
    pub version: String,
    pub command: String,
    pub storage: Storage,
    pub input_artifacts: Vec<Artifact>,
    /// The object store's URL (not a secret; its keys are sealed).
    pub storage_endpoint: String,
    /// The names of the environment variables (their values are sealed).
    pub environment_keys: Vec<String>,
    pub configs: ScriptConfigs,
    /// Where the run's script, inputs, outputs and log live.
    pub staging_bucket: String,
    /// The Essedum connection whose AWS credentials the run uses, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionRef>,
}

/// What is sealed with a script run, beside its AWS target.
#[derive(Clone, Serialize, Deserialize)]
pub struct ScriptSecrets {
    /// The object store the input artifacts come from.
    pub storage: AwsTarget,
    pub environment: BTreeMap<String, String>,
}

impl std::fmt::Debug for ScriptSecrets {
    /// Environment values may be tokens: only their names are printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptSecrets")
            .field("storage", &self.storage)
            .field("environment", &self.environment.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The keys of an `/execute` body: all required, no others.
pub const BODY_KEYS: [&str; 10] = [
    "bucket",
    "project_id",
    "name",
    "version",
    "credentials",
    "input_artifacts",
    "command",
    "storage",
    "environment",
    "configs",
];
const CREDENTIAL_KEYS: [&str; 3] = ["endpoint", "access_key", "secret_key"];
const CONFIG_KEYS: [&str; 10] = [
    "bucket",
    "aws_access_key_id",
    "aws_secret_access_key",
    "region_name",
    "role",
    "py_version",
    "container",
    "instance_count",
    "instance_type",
    "source",
];

fn missing_keys(v: &Value, keys: &[&str], prefix: &str) -> InputResult<()> {
    let Value::Object(map) = v else {
        return Ok(());
    };
    match keys.iter().find(|k| !map.contains_key(**k)) {
        Some(k) => Err(InputError::Malformed {
            field: Some(format!("{prefix}{k}")),
            message: format!(
                "missing key {prefix}{k}; the body needs exactly these keys: {}",
                keys.join(", ")
            ),
        }),
        None => Ok(()),
    }
}

/// An optional config string: absent, null or empty means unset.
fn config_str(c: &mut Fields, name: &str) -> InputResult<Option<String>> {
    Ok(c.opt_str(name)?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty()))
}

fn env_name(field: &str, name: &str) -> InputResult<()> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 256;
    if ok {
        Ok(())
    } else {
        Err(InputError::invalid(
            field,
            "environment variable names are letters, digits and _ and do not start with a digit",
        ))
    }
}

/// An object-store reference: `s3://bucket/key` or a key in the request's `bucket`.
fn store_artifact(field: &str, entry: &str, bucket: &str) -> InputResult<Artifact> {
    let (bucket, key) = match entry.strip_prefix("s3://") {
        Some(rest) => {
            let (b, k) = rest.split_once('/').unwrap_or((rest, ""));
            (validate::bucket_name(field, b)?, k.to_string())
        }
        None => (
            bucket.to_string(),
            entry.trim_start_matches('/').to_string(),
        ),
    };
    if key.is_empty() || key.ends_with('/') || key.len() > 1024 {
        return Err(InputError::invalid(
            field,
            format!("{entry:?} does not name an object (bucket/key)"),
        ));
    }
    Ok(Artifact::Store { bucket, key })
}

fn artifact(
    field: &str,
    entry: &str,
    storage: Storage,
    bucket: &str,
    limits: &InputLimits,
) -> InputResult<Artifact> {
    match storage {
        Storage::Local => Ok(Artifact::Local {
            path: local_path(field, entry, limits)?,
        }),
        Storage::Minio | Storage::S3 => store_artifact(field, entry, bucket),
    }
}

impl ScriptRequest {
    /// Parses an `/execute` body exactly as the Essedum contract says: a missing or extra key is
    /// 400, an empty or non-string value 422, always naming the field. Returns the request to
    /// store and the secret to seal.
    pub fn parse(body: Value, limits: &InputLimits) -> InputResult<(ScriptRequest, RunSecret)> {
        missing_keys(&body, &BODY_KEYS, "")?;
        if body.get("credentials").is_some_and(Value::is_object) {
            missing_keys(&body["credentials"], &CREDENTIAL_KEYS, "credentials.")?;
        }
        let mut f = Fields::new(body, &BODY_KEYS)?;
        let bucket = validate::bucket_name("bucket", &f.str("bucket")?)?;
        let project_id = validate::token("project_id", &f.str("project_id")?, 256)?;
        let name = validate::token("name", &f.str("name")?, 256)?;
        let version = validate::token("version", &f.str("version")?, 256)?;
        let command = f.str("command")?;
        if command.len() > 64 * 1024 {
            return Err(InputError::invalid("command", "is longer than 64 KiB"));
        }
        let storage = match f.str("storage")?.as_str() {
            "local" => Storage::Local,
            "minio" => Storage::Minio,
            "s3" => Storage::S3,
            other => {
                return Err(InputError::invalid(
                    "storage",
                    format!("must be local, minio or s3, not {other:?}"),
                ));
            }
        };
        let mut creds = f.object("credentials", &CREDENTIAL_KEYS)?;
        let endpoint = creds.str("endpoint")?;
        let access_key = creds.str("access_key")?;
        let secret_key = creds.str("secret_key")?;
        if storage != Storage::Local {
            let ok = url::Url::parse(&endpoint)
                .ok()
                .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if !ok {
                return Err(InputError::invalid(
                    "credentials.endpoint",
                    "must be an http(s) URL of the object store",
                ));
            }
        }
        let raw_artifacts = f.str("input_artifacts")?;
        let entries: Vec<&str> = raw_artifacts
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries.is_empty() {
            return Err(InputError::invalid("input_artifacts", "names no artifact"));
        }
        if entries.len() > 100 {
            return Err(InputError::invalid(
                "input_artifacts",
                "names more than 100 artifacts",
            ));
        }
        let input_artifacts = entries
            .iter()
            .map(|e| artifact("input_artifacts", e, storage, &bucket, limits))
            .collect::<InputResult<Vec<_>>>()?;

        let environment = match f.take_value("environment") {
            // The contract: a string means no environment.
            Some(Value::String(_)) => BTreeMap::new(),
            Some(Value::Object(m)) => {
                let mut env = BTreeMap::new();
                for (k, v) in m {
                    let field = format!("environment.{k}");
                    env_name(&field, &k)?;
                    match v {
                        Value::String(s) => {
                            env.insert(k, s);
                        }
                        _ => return Err(InputError::invalid(&field, "must be a string")),
                    }
                }
                env
            }
            _ => {
                return Err(InputError::invalid(
                    "environment",
                    "must be an object of strings (or a string for none)",
                ));
            }
        };
        if environment.len() > 100 {
            return Err(InputError::invalid(
                "environment",
                "has more than 100 variables",
            ));
        }

        let mut c = f.object("configs", &CONFIG_KEYS)?;
        let role = validate::role_arn(
            "configs.role",
            &config_str(&mut c, "role")?
                .ok_or_else(|| InputError::invalid("configs.role", "is required"))?,
        )?;
        let container = validate::token(
            "configs.container",
            &config_str(&mut c, "container")?
                .ok_or_else(|| InputError::invalid("configs.container", "is required"))?,
            255,
        )?;
        let instance_type = match config_str(&mut c, "instance_type")? {
            Some(t) => instance_type("configs.instance_type", t)?,
            None => "ml.t3.medium".to_string(),
        };
        let instance_count = match c.take_value("instance_count") {
            None => 1,
            Some(Value::String(s)) if s.trim().is_empty() => 1,
            Some(Value::String(s)) => s.trim().parse::<i32>().map_err(|_| {
                InputError::invalid("configs.instance_count", "must be a whole number")
            })?,
            Some(Value::Number(n)) => {
                n.as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| {
                        InputError::invalid("configs.instance_count", "must be a whole number")
                    })?
            }
            Some(_) => {
                return Err(InputError::invalid(
                    "configs.instance_count",
                    "must be a string or a number",
                ));
            }
        };
        if !(1..=100).contains(&instance_count) {
            return Err(InputError::invalid(
                "configs.instance_count",
                "must be from 1 to 100",
            ));
        }
        let region_name = config_str(&mut c, "region_name")?
            .map(|r| region("configs.region_name", r))
            .transpose()?;
        let py_version = config_str(&mut c, "py_version")?
            .map(|v| validate::token("configs.py_version", &v, 32))
            .transpose()?;
        let source = config_str(&mut c, "source")?
            .map(|s| artifact("configs.source", &s, storage, &bucket, limits))
            .transpose()?;
        let staging_bucket = match config_str(&mut c, "bucket")? {
            Some(b) => validate::bucket_name("configs.bucket", &b)?,
            None => bucket.clone(),
        };
        let key_id = config_str(&mut c, "aws_access_key_id")?;
        let key_secret = config_str(&mut c, "aws_secret_access_key")?;
        let aws_credentials = match (key_id, key_secret) {
            (Some(id), Some(secret)) => Some(StaticCredentials {
                access_key: id,
                secret_key: Secret::new(secret),
                session_token: None,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(InputError::invalid(
                    "configs.aws_secret_access_key",
                    "is required with configs.aws_access_key_id",
                ));
            }
            (None, Some(_)) => {
                return Err(InputError::invalid(
                    "configs.aws_access_key_id",
                    "is required with configs.aws_secret_access_key",
                ));
            }
        };
        let aws = (aws_credentials.is_some() || region_name.is_some()).then(|| AwsTarget {
            credentials: aws_credentials,
            region: region_name.clone(),
            endpoint: None,
        });
        let secrets = ScriptSecrets {
            storage: AwsTarget {
                credentials: Some(StaticCredentials {
                    access_key,
                    secret_key: Secret::new(secret_key),
                    session_token: None,
                }),
                region: region_name.clone(),
                endpoint: (storage != Storage::Local).then(|| endpoint.clone()),
            },
            environment,
        };
        let request = ScriptRequest {
            bucket,
            project_id,
            name,
            version,
            command,
            storage,
            input_artifacts,
            storage_endpoint: endpoint,
            environment_keys: secrets.environment.keys().cloned().collect(),
            configs: ScriptConfigs {
                role,
                container,
                instance_type,
                instance_count,
                region_name,
                py_version,
                source,
            },
            staging_bucket,
            connection: None,
        };
        let secret = RunSecret {
            aws,
            workflow: serde_json::to_value(&secrets).expect("secrets serialise"),
        };
        Ok((request, secret))
    }

    /// `essedum-executor/scripts/{run id}/`
    pub fn prefix(run_id: Uuid) -> String {
        format!("{STAGING_ROOT}/{run_id}/")
    }

    pub fn log_key(run_id: Uuid) -> String {
        format!("{}logs/job.log", Self::prefix(run_id))
    }

    pub fn output_prefix(run_id: Uuid) -> String {
        format!("{}output/", Self::prefix(run_id))
    }

    /// `s3://` location of the job's log once collected.
    pub fn log_path(&self, run_id: Uuid) -> String {
        format!("s3://{}/{}", self.staging_bucket, Self::log_key(run_id))
    }

    /// `s3://` location the job's outputs are written to.
    pub fn output_dir(&self, run_id: Uuid) -> String {
        format!(
            "s3://{}/{}",
            self.staging_bucket,
            Self::output_prefix(run_id)
        )
    }

    /// What Uploading stages, in order: the script, the source file, the input artifacts.
    fn plan(&self, run_id: Uuid) -> Vec<(Option<&Artifact>, String)> {
        let prefix = Self::prefix(run_id);
        let mut items = vec![(None, format!("{prefix}code/run.sh"))];
        if let Some(source) = &self.configs.source {
            items.push((Some(source), format!("{prefix}code/{}", source.file_name())));
        }
        for (i, a) in self.input_artifacts.iter().enumerate() {
            items.push((Some(a), format!("{prefix}input/{i:02}-{}", a.file_name())));
        }
        items
    }

    /// The shell script the job runs: the request's command, in the data directory.
    fn script(&self, run_id: Uuid) -> String {
        format!(
            "#!/bin/sh\n# {name} {version} (project {project}), run {run_id}: written by sagemaker-executor.\n\
             set -e\nmkdir -p {OUTPUT_DIR}\ncd {DATA_DIR} 2>/dev/null || cd {CODE_DIR}\n{command}\n",
            name = self.name.replace('\n', " "),
            version = self.version.replace('\n', " "),
            project = self.project_id.replace('\n', " "),
            command = self.command,
        )
    }
}

fn instance_type(field: &str, t: String) -> InputResult<String> {
    let parts: Vec<&str> = t.split('.').collect();
    let ok = parts.len() == 3
        && parts[0] == "ml"
        && parts[1..].iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    if ok {
        Ok(t)
    } else {
        Err(InputError::invalid(
            field,
            "must be a SageMaker instance type such as ml.m5.large",
        ))
    }
}

fn region(field: &str, r: String) -> InputResult<String> {
    let ok = r.len() <= 32
        && r.split('-').count() >= 3
        && r.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(r)
    } else {
        Err(InputError::invalid(
            field,
            "must be an AWS region such as us-east-1",
        ))
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
    (Collecting, Done),
    (Collecting, Failed),
    (Collecting, Cancelled),
];

fn secrets(cx: &StepContext) -> Result<ScriptSecrets, StepError> {
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
            Uploading => upload(run, &request, ctx, cx).await,
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

/// Uploading: stages the next item of the plan; Submitted once all are in S3.
async fn upload(
    run: &Run,
    request: &ScriptRequest,
    mut ctx: ScriptContext,
    cx: &StepContext,
) -> Result<StepOutput, StepError> {
    if run.cancel_requested {
        return Ok(StepOutput::to(Cancelled, ctx.to_value())
            .detail("cancelled before any processing job was created"));
    }
    let plan = request.plan(run.id);
    let bucket = &request.staging_bucket;
    if let Some((item, key)) = plan.get(ctx.staged) {
        match item {
            None => {
                cx.aws
                    .put_object(
                        bucket,
                        key,
                        request.script(run.id).into_bytes(),
                        "text/x-shellscript",
                    )
                    .await?
            }
            Some(Artifact::Local { path }) => {
                cx.aws
                    .upload_file(bucket, key, path, "application/octet-stream")
                    .await?
            }
            Some(Artifact::Store {
                bucket: from_bucket,
                key: from_key,
            }) => {
                let store = cx.provider.port(&secrets(cx)?.storage).await;
                let tmp = std::env::temp_dir()
                    .join(format!("sagemaker-executor-{}-{}", run.id, ctx.staged));
                let copied = async {
                    store
                        .download_to_file(from_bucket, from_key, &tmp, MAX_ARTIFACT_BYTES)
                        .await?;
                    cx.aws
                        .upload_file(bucket, key, &tmp, "application/octet-stream")
                        .await
                }
                .await;
                let _ = tokio::fs::remove_file(&tmp).await;
                match copied {
                    Ok(()) => {}
                    Err(e) if e.kind == AwsErrorKind::NotFound => {
                        return Err(StepError::terminal(format!(
                            "input artifact {from_bucket}/{from_key} does not exist in {}",
                            request.storage_endpoint
                        )));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        failpoint::hit("script.after_upload").await;
        ctx.staged += 1;
        let what = item.map_or_else(|| "the script".to_string(), |a| a.describe());
        let out = if ctx.staged < plan.len() {
            StepOutput::to(Uploading, ctx.to_value())
        } else {
            StepOutput::to(Submitted, ctx.to_value())
        };
        return Ok(out.detail(format!("staged {what} at s3://{bucket}/{key}")));
    }
    Ok(StepOutput::to(Submitted, ctx.to_value()).detail(format!(
        "everything is staged; processing job name {}",
        ctx.job.job_name
    )))
}

/// Collecting: the job's log to `logs/job.log` and the list of its outputs, then the outcome.
async fn collect(
    run: &Run,
    request: &ScriptRequest,
    mut ctx: ScriptContext,
    cx: &StepContext,
) -> Result<StepOutput, StepError> {
    let log = if ctx.job_exists() {
        cx.aws
            .processing_job_log(&ctx.job.job_name, LOG_LIMIT)
            .await?
    } else {
        JobLog::default()
    };
    cx.aws
        .put_object(
            &request.staging_bucket,
            &ScriptRequest::log_key(run.id),
            log.text.clone().into_bytes(),
            "text/plain; charset=utf-8",
        )
        .await?;
    let prefix = ScriptRequest::output_prefix(run.id);
    let page = cx
        .aws
        .list_objects(&request.staging_bucket, &prefix, None, MAX_OUTPUTS)
        .await?;
    ctx.artifacts = page
        .objects
        .iter()
        .filter_map(|o| o.key.strip_prefix(&prefix))
        .filter(|k| !k.is_empty() && !k.ends_with('/'))
        .map(str::to_string)
        .collect();
    ctx.log_collected = true;
    ctx.log_truncated = log.truncated;
    let to = ctx.outcome.unwrap_or(Failed);
    let mut out = StepOutput::to(to, ctx.to_value()).detail(format!(
        "collected the log ({} bytes{}) and {} output artifact(s)",
        log.text.len(),
        if log.truncated { ", truncated" } else { "" },
        ctx.artifacts.len()
    ));
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
    use serde_json::json;

    fn body() -> Value {
        json!({
            "bucket": "essedum-data",
            "project_id": "p1",
            "name": "job",
            "version": "1",
            "credentials": {"endpoint": "http://127.0.0.1:9000", "access_key": "AK", "secret_key": "SK"},
            "input_artifacts": "data/train.csv, s3://other-bucket/x/y.csv",
            "command": "python train.py",
            "storage": "s3",
            "environment": {"EPOCHS": "3"},
            "configs": {
                "role": "arn:aws:iam::123456789012:role/SageMakerRole",
                "container": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sklearn:1",
                "aws_access_key_id": "", "aws_secret_access_key": "",
                "instance_count": "2"
            }
        })
    }

    fn limits() -> InputLimits {
        InputLimits {
            data_dir: None,
            max_inline_csv_bytes: 1024,
        }
    }

    #[test]
    fn a_valid_body_is_stored_without_its_secrets() {
        let (req, secret) = ScriptRequest::parse(body(), &limits()).unwrap();
        assert_eq!(req.configs.instance_count, 2);
        assert_eq!(req.input_artifacts.len(), 2);
        assert_eq!(
            req.input_artifacts[1],
            Artifact::Store {
                bucket: "other-bucket".into(),
                key: "x/y.csv".into()
            }
        );
        assert!(
            secret.aws.is_none(),
            "empty configs keys mean the default chain"
        );
        let stored = serde_json::to_string(&req).unwrap();
        assert!(
            !stored.contains("SK") && !stored.contains("\"3\""),
            "{stored}"
        );
        assert!(stored.contains("EPOCHS"), "the variable names are kept");
        let sealed = serde_json::to_string(&secret).unwrap();
        assert!(sealed.contains("SK") && sealed.contains("\"3\""));
    }

    #[test]
    fn missing_or_extra_keys_are_400_and_bad_values_422() {
        let mut b = body();
        b.as_object_mut().unwrap().remove("version");
        let e = ScriptRequest::parse(b, &limits()).unwrap_err();
        assert!(
            matches!(e, InputError::Malformed { .. }) && e.field() == Some("version"),
            "{e:?}"
        );
        let mut b = body();
        b["extra"] = json!(1);
        let e = ScriptRequest::parse(b, &limits()).unwrap_err();
        assert!(
            matches!(e, InputError::Malformed { .. }) && e.field() == Some("extra"),
            "{e:?}"
        );
        let mut b = body();
        b["credentials"]
            .as_object_mut()
            .unwrap()
            .remove("secret_key");
        let e = ScriptRequest::parse(b, &limits()).unwrap_err();
        assert_eq!(e.field(), Some("credentials.secret_key"));
        assert!(matches!(e, InputError::Malformed { .. }));
        for (field, value) in [
            ("name", json!("")),
            ("command", json!(7)),
            ("bucket", json!(" ")),
        ] {
            let mut b = body();
            b[field] = value;
            let e = ScriptRequest::parse(b, &limits()).unwrap_err();
            assert!(
                matches!(e, InputError::Invalid { .. }) && e.field() == Some(field),
                "{e:?}"
            );
        }
        let mut b = body();
        b["credentials"]["access_key"] = json!("");
        let e = ScriptRequest::parse(b, &limits()).unwrap_err();
        assert_eq!(e.field(), Some("credentials.access_key"));
    }

    #[test]
    fn environment_may_be_a_string_meaning_none() {
        let mut b = body();
        b["environment"] = json!("");
        let (req, _) = ScriptRequest::parse(b, &limits()).unwrap();
        assert!(req.environment_keys.is_empty());
        let mut b = body();
        b["environment"] = json!({"A": 1});
        let e = ScriptRequest::parse(b, &limits()).unwrap_err();
        assert_eq!(e.field(), Some("environment.A"));
    }

    #[test]
    fn the_plan_stages_the_script_then_each_artifact_under_the_run_prefix() {
        let (req, _) = ScriptRequest::parse(body(), &limits()).unwrap();
        let id = Uuid::nil();
        let plan = req.plan(id);
        let keys: Vec<&str> = plan.iter().map(|(_, k)| k.as_str()).collect();
        let p = format!("essedum-executor/scripts/{id}/");
        assert_eq!(
            keys,
            [
                format!("{p}code/run.sh"),
                format!("{p}input/00-train.csv"),
                format!("{p}input/01-y.csv")
            ]
        );
        assert!(req.script(id).contains("\npython train.py\n"));
        assert!(job_name(id).len() <= 63);
    }
}
