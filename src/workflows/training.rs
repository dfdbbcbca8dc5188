//! The SageMaker training workflow (`workflows/training.toml`).
//!
//! Uploading → Submitted → Polling → Done | Failed, plus Cancelling → Cancelled. The job's name is
//! derived from the run id and stored with the run when it is accepted, so it is in the
//! checkpoint long before CreateTrainingJob; Submitted always describes by that name first and
//! adopts a job that exists, and `ResourceInUse` on create also means adopt. Nothing here ever
//! lists jobs to find one.

use super::{Due, StepContext, StepError, StepOutput, Workflow};
use crate::aws::{AwsErrorKind, TrainingJobDescription, TrainingJobSpec};
use crate::failpoint;
use crate::model::{Kind, State};
use crate::store::Run;
use crate::validate::{self, Fields, InputError, InputResult};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Where the training data comes from: exactly one of the three request fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum InputSource {
    /// `inputs`: already in S3, nothing to upload.
    S3 { uri: String },
    /// `inline_csv`: CSV text carried in the request, staged to S3.
    InlineCsv { csv: String },
    /// `local_dataset_path`: a file under the configured data directory (canonical path).
    LocalFile { path: PathBuf },
}

/// A validated training request, as stored with the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingRequest {
    pub role_arn: String,
    pub bucket: String,
    pub s3_prefix: String,
    pub training_image: String,
    pub input: InputSource,
    pub instance_type: String,
    pub instance_count: i32,
    pub volume_size_gb: i32,
    pub max_runtime_secs: i32,
    pub hyperparameters: BTreeMap<String, String>,
    pub content_type: String,
    /// Who sent it, from Essedum's query parameters (for listing by project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// Essedum's `project` and `adapter_instance` query parameters of the submitting call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_instance: Option<String>,
}

/// Limits that come from configuration.
#[derive(Clone, Debug)]
pub struct InputLimits {
    /// Where `local_dataset_path` files may live; None disables that input.
    pub data_dir: Option<PathBuf>,
    pub max_inline_csv_bytes: usize,
}

pub const REQUEST_FIELDS: &[&str] = &[
    "RoleArn",
    "Bucket",
    "S3Prefix",
    "TrainingImage",
    "inputs",
    "inline_csv",
    "local_dataset_path",
    "InstanceType",
    "InstanceCount",
    "VolumeSizeInGB",
    "MaxRuntimeInSeconds",
    "HyperParameters",
    "content_type",
    "type",
];

impl TrainingRequest {
    /// Parses an untrusted body. Unknown fields are `Malformed`; bad values name their field.
    pub fn parse(body: Value, limits: &InputLimits) -> InputResult<TrainingRequest> {
        let mut f = Fields::new(body, REQUEST_FIELDS)?;
        if let Some(t) = f.opt_str("type")?
            && !matches!(t.as_str(), "training" | "sagemaker-training")
        {
            return Err(InputError::invalid(
                "type",
                format!("{t:?} is not supported on this route; use \"training\""),
            ));
        }
        let role_arn = validate::role_arn("RoleArn", &f.str("RoleArn")?)?;
        let bucket = validate::bucket_name("Bucket", &f.str("Bucket")?)?;
        let s3_prefix =
            validate::key_prefix("S3Prefix", &f.opt_str("S3Prefix")?.unwrap_or_default())?;
        let training_image = validate::token("TrainingImage", &f.str("TrainingImage")?, 255)?;
        let given: Vec<&str> = ["inputs", "inline_csv", "local_dataset_path"]
            .into_iter()
            .filter(|k| f.has(k))
            .collect();
        if given.len() != 1 {
            return Err(InputError::invalid(
                "inputs",
                format!(
                    "give exactly one of inputs (an s3:// URI), inline_csv or local_dataset_path; got {}",
                    if given.is_empty() {
                        "none".to_string()
                    } else {
                        given.join(", ")
                    }
                ),
            ));
        }
        let input = match given[0] {
            "inputs" => InputSource::S3 {
                uri: validate::s3_uri("inputs", &f.str("inputs")?)?,
            },
            "inline_csv" => {
                let csv = f.str("inline_csv")?;
                if csv.len() > limits.max_inline_csv_bytes {
                    return Err(InputError::invalid(
                        "inline_csv",
                        format!(
                            "is {} bytes; at most {} bytes may be sent inline (upload a dataset instead)",
                            csv.len(),
                            limits.max_inline_csv_bytes
                        ),
                    ));
                }
                InputSource::InlineCsv { csv }
            }
            _ => InputSource::LocalFile {
                path: local_path(&f.str("local_dataset_path")?, limits)?,
            },
        };
        let instance_type = match f.opt_str("InstanceType")? {
            Some(t) if t.starts_with("ml.") => validate::token("InstanceType", &t, 64)?,
            Some(_) => {
                return Err(InputError::invalid(
                    "InstanceType",
                    "must be a SageMaker instance type such as ml.m5.large",
                ));
            }
            None => "ml.m5.large".to_string(),
        };
        let instance_count = f.opt_int("InstanceCount", 1, 100)?.unwrap_or(1) as i32;
        let volume_size_gb = f.opt_int("VolumeSizeInGB", 1, 16384)?.unwrap_or(10) as i32;
        let max_runtime_secs = f
            .opt_int("MaxRuntimeInSeconds", 1, 2_419_200)?
            .unwrap_or(86_400) as i32;
        let hyperparameters = f.opt_string_map("HyperParameters")?.unwrap_or_default();
        if hyperparameters.len() > 100 {
            return Err(InputError::invalid(
                "HyperParameters",
                "at most 100 entries",
            ));
        }
        for (k, v) in &hyperparameters {
            if k.is_empty() || k.len() > 256 || v.len() > 2500 {
                return Err(InputError::invalid(
                    &format!("HyperParameters.{k}"),
                    "keys are 1-256 characters and values at most 2500",
                ));
            }
        }
        let content_type = match f.opt_str("content_type")? {
            Some(c) => validate::token("content_type", &c, 256)?,
            None => "text/csv".to_string(),
        };
        Ok(TrainingRequest {
            role_arn,
            bucket,
            s3_prefix,
            training_image,
            input,
            instance_type,
            instance_count,
            volume_size_gb,
            max_runtime_secs,
            hyperparameters,
            content_type,
            origin: None,
        })
    }

    fn key(&self, run_id: Uuid, rest: &str) -> String {
        if self.s3_prefix.is_empty() {
            format!("{run_id}/{rest}")
        } else {
            format!("{}/{run_id}/{rest}", self.s3_prefix)
        }
    }

    /// The deterministic S3 key the input is staged at, for inputs that need staging.
    pub fn staging_key(&self, run_id: Uuid) -> Option<String> {
        match &self.input {
            InputSource::S3 { .. } => None,
            InputSource::InlineCsv { .. } => Some(self.key(run_id, "input/data.csv")),
            InputSource::LocalFile { path } => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "data".into());
                Some(self.key(run_id, &format!("input/{name}")))
            }
        }
    }

    pub fn output_path(&self, run_id: Uuid) -> String {
        format!("s3://{}/{}", self.bucket, self.key(run_id, "output"))
    }
}

/// Resolves `local_dataset_path` inside the data directory, following symlinks, so that no path
/// (absolute, `..`, or a link) can name a file outside it.
fn local_path(given: &str, limits: &InputLimits) -> InputResult<PathBuf> {
    const FIELD: &str = "local_dataset_path";
    let Some(dir) = &limits.data_dir else {
        return Err(InputError::invalid(
            FIELD,
            "local files are disabled: the service has no data directory configured (EXECUTOR_DATA_DIR)",
        ));
    };
    let root = dir
        .canonicalize()
        .map_err(|_| InputError::invalid(FIELD, "the configured data directory does not exist"))?;
    let candidate = Path::new(given);
    let joined = if candidate.is_absolute() {
        candidate.to_path_buf()
    } else {
        root.join(candidate)
    };
    let outside = || InputError::invalid(FIELD, "must name a file inside the data directory");
    let real = joined.canonicalize().map_err(|_| {
        if joined.starts_with(&root) && !given.contains("..") {
            InputError::invalid(FIELD, "no such file in the data directory")
        } else {
            outside()
        }
    })?;
    if !real.starts_with(&root) {
        return Err(outside());
    }
    if !real.is_file() {
        return Err(InputError::invalid(FIELD, "must name a regular file"));
    }
    Ok(real)
}

/// The deterministic training job name for a run: at most 63 characters, SageMaker's pattern.
pub fn job_name(run_id: Uuid) -> String {
    format!("essedum-train-{}", run_id.simple())
}

/// What the workflow remembers between steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingContext {
    pub job_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_s3_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sagemaker_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_artifacts: Option<String>,
    #[serde(default)]
    pub polls: u32,
    #[serde(default)]
    pub stop_sent: bool,
}

impl TrainingContext {
    pub fn new(run_id: Uuid) -> Self {
        TrainingContext {
            job_name: job_name(run_id),
            ..Default::default()
        }
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("context serialises")
    }

    fn record(&mut self, d: &TrainingJobDescription) {
        if d.arn.is_some() {
            self.job_arn.clone_from(&d.arn);
        }
        self.sagemaker_status = Some(d.status.clone());
        self.secondary_status.clone_from(&d.secondary_status);
        self.failure_reason.clone_from(&d.failure_reason);
        self.model_artifacts.clone_from(&d.model_artifacts);
    }
}

fn parse_run(run: &Run) -> Result<(TrainingRequest, TrainingContext), StepError> {
    let req = serde_json::from_value(run.request.clone())
        .map_err(|e| StepError::terminal(format!("stored request is unreadable: {e}")))?;
    let cx = serde_json::from_value(run.context.clone())
        .map_err(|e| StepError::terminal(format!("stored context is unreadable: {e}")))?;
    Ok((req, cx))
}

pub struct TrainingWorkflow;

use State::*;

const EDGES: &[(State, State)] = &[
    (Uploading, Submitted),
    (Uploading, Cancelled),
    (Submitted, Polling),
    (Submitted, Cancelling),
    (Polling, Polling),
    (Polling, Done),
    (Polling, Failed),
    (Polling, Cancelling),
    (Cancelling, Cancelling),
    (Cancelling, Cancelled),
    (Cancelling, Done),
    (Cancelling, Failed),
];

#[async_trait]
impl Workflow for TrainingWorkflow {
    fn kind(&self) -> Kind {
        Kind::Training
    }

    fn handled_states(&self) -> &'static [State] {
        &[Uploading, Submitted, Polling, Cancelling]
    }

    fn edges(&self) -> &'static [(State, State)] {
        EDGES
    }

    async fn step(&self, run: &Run, cx: &StepContext) -> Result<StepOutput, StepError> {
        let (req, mut ctx) = parse_run(run)?;
        match run.state {
            Uploading => upload(run, &req, ctx, cx).await,
            Submitted if run.cancel_requested => Ok(StepOutput::to(Cancelling, ctx.to_value())
                .detail("cancel requested before the job was confirmed")),
            Submitted => submit(run, &req, ctx, cx).await,
            Polling if run.cancel_requested => {
                Ok(StepOutput::to(Cancelling, ctx.to_value()).detail("cancel requested"))
            }
            Polling => poll(ctx, cx).await,
            Cancelling => cancel(&mut ctx, cx).await,
            Done | Failed | Cancelled => {
                Err(StepError::terminal(format!("{} is terminal", run.state)))
            }
        }
    }
}

async fn upload(
    run: &Run,
    req: &TrainingRequest,
    mut ctx: TrainingContext,
    cx: &StepContext,
) -> Result<StepOutput, StepError> {
    if run.cancel_requested {
        return Ok(StepOutput::to(Cancelled, ctx.to_value())
            .detail("cancelled before any job was created"));
    }
    let uri = match (&req.input, req.staging_key(run.id)) {
        (InputSource::S3 { uri }, _) => {
            ctx.input_s3_uri = Some(uri.clone());
            return Ok(StepOutput::to(Submitted, ctx.to_value()).detail(format!(
                "input already in S3 at {uri}; job name {}",
                ctx.job_name
            )));
        }
        (InputSource::InlineCsv { csv }, Some(key)) => {
            cx.aws
                .put_object(
                    &req.bucket,
                    &key,
                    csv.clone().into_bytes(),
                    &req.content_type,
                )
                .await?;
            format!("s3://{}/{key}", req.bucket)
        }
        (InputSource::LocalFile { path }, Some(key)) => {
            cx.aws
                .upload_file(&req.bucket, &key, path, &req.content_type)
                .await?;
            format!("s3://{}/{key}", req.bucket)
        }
        (_, None) => return Err(StepError::terminal("no staging key for this input")),
    };
    failpoint::hit("training.after_upload").await;
    ctx.input_s3_uri = Some(uri.clone());
    Ok(StepOutput::to(Submitted, ctx.to_value())
        .detail(format!("staged input at {uri}; job name {}", ctx.job_name)))
}

async fn submit(
    run: &Run,
    req: &TrainingRequest,
    mut ctx: TrainingContext,
    cx: &StepContext,
) -> Result<StepOutput, StepError> {
    let first_poll = Due::After(cx.poll_interval(0));
    if let Some(existing) = cx.aws.describe_training_job(&ctx.job_name).await? {
        ctx.record(&existing);
        return Ok(StepOutput::to(Polling, ctx.to_value())
            .due(first_poll)
            .detail(format!(
                "adopted existing training job {} ({})",
                ctx.job_name, existing.status
            )));
    }
    failpoint::hit("training.before_create").await;
    let spec = TrainingJobSpec {
        name: ctx.job_name.clone(),
        role_arn: req.role_arn.clone(),
        image: req.training_image.clone(),
        instance_type: req.instance_type.clone(),
        instance_count: req.instance_count,
        volume_size_gb: req.volume_size_gb,
        max_runtime_secs: req.max_runtime_secs,
        hyperparameters: req.hyperparameters.clone(),
        input_s3_uri: ctx
            .input_s3_uri
            .clone()
            .ok_or_else(|| StepError::terminal("no input location recorded"))?,
        content_type: req.content_type.clone(),
        output_s3_path: req.output_path(run.id),
    };
    match cx.aws.create_training_job(&spec).await {
        Ok(arn) => {
            failpoint::hit("training.after_create").await;
            ctx.job_arn = Some(arn).filter(|a| !a.is_empty());
            Ok(StepOutput::to(Polling, ctx.to_value())
                .due(first_poll)
                .detail(format!("CreateTrainingJob accepted {}", ctx.job_name)))
        }
        Err(e) if e.kind == AwsErrorKind::AlreadyExists => {
            Ok(StepOutput::to(Polling, ctx.to_value())
                .due(Due::Now)
                .detail(format!(
                    "training job {} already exists (ResourceInUse); adopted",
                    ctx.job_name
                )))
        }
        Err(e) => Err(e.into()),
    }
}

async fn poll(mut ctx: TrainingContext, cx: &StepContext) -> Result<StepOutput, StepError> {
    let Some(d) = cx.aws.describe_training_job(&ctx.job_name).await? else {
        return Err(StepError::terminal(format!(
            "training job {} no longer exists",
            ctx.job_name
        )));
    };
    let previous = (ctx.sagemaker_status.clone(), ctx.secondary_status.clone());
    ctx.record(&d);
    let changed = previous != (ctx.sagemaker_status.clone(), ctx.secondary_status.clone());
    let status_text = describe_status(&d);
    match d.status.as_str() {
        "Completed" => Ok(StepOutput::to(Done, ctx.to_value()).detail(format!(
            "{status_text}; model artifacts at {}",
            ctx.model_artifacts.as_deref().unwrap_or("(none)")
        ))),
        "Failed" => {
            let reason = d
                .failure_reason
                .clone()
                .unwrap_or_else(|| "SageMaker reported Failed without a reason".into());
            Ok(StepOutput::to(Failed, ctx.to_value())
                .detail(status_text)
                .failure(reason))
        }
        "Stopped" => Ok(StepOutput::to(Failed, ctx.to_value())
            .detail(status_text)
            .failure(
                "the training job was stopped outside the executor (no cancel was requested)",
            )),
        _ => {
            failpoint::hit("training.during_polling").await;
            let polls = ctx.polls;
            ctx.polls += 1;
            let mut out = StepOutput::to(Polling, ctx.to_value())
                .due(Due::After(cx.poll_interval(polls + 1)));
            if changed {
                out = out.detail(status_text);
            }
            Ok(out)
        }
    }
}

async fn cancel(ctx: &mut TrainingContext, cx: &StepContext) -> Result<StepOutput, StepError> {
    let Some(d) = cx.aws.describe_training_job(&ctx.job_name).await? else {
        return Ok(StepOutput::to(Cancelled, ctx.to_value()).detail("no training job was created"));
    };
    ctx.record(&d);
    let again = Due::After(cx.poll_interval(0));
    match d.status.as_str() {
        "Stopped" => Ok(StepOutput::to(Cancelled, ctx.to_value()).detail("training job stopped")),
        "Completed" => Ok(StepOutput::to(Done, ctx.to_value())
            .detail("the job completed before the stop took effect")),
        "Failed" => {
            let reason = d
                .failure_reason
                .clone()
                .unwrap_or_else(|| "SageMaker reported Failed".into());
            Ok(StepOutput::to(Failed, ctx.to_value())
                .detail("the job failed before the stop took effect")
                .failure(reason))
        }
        "Stopping" => Ok(StepOutput::to(Cancelling, ctx.to_value()).due(again)),
        _ if ctx.stop_sent => Ok(StepOutput::to(Cancelling, ctx.to_value()).due(again)),
        _ => {
            match cx.aws.stop_training_job(&ctx.job_name).await {
                Ok(()) => {}
                // The job ended between the describe and the stop: the next describe tells how.
                Err(e) if e.kind == AwsErrorKind::Terminal => {
                    return Ok(StepOutput::to(Cancelling, ctx.to_value())
                        .due(Due::Now)
                        .detail(format!("stop refused: {e}")));
                }
                Err(e) => return Err(e.into()),
            }
            ctx.stop_sent = true;
            Ok(StepOutput::to(Cancelling, ctx.to_value())
                .due(again)
                .detail("StopTrainingJob sent"))
        }
    }
}

fn describe_status(d: &TrainingJobDescription) -> String {
    match &d.secondary_status {
        Some(s) => format!("SageMaker {} ({s})", d.status),
        None => format!("SageMaker {}", d.status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits(dir: Option<PathBuf>) -> InputLimits {
        InputLimits {
            data_dir: dir,
            max_inline_csv_bytes: 64,
        }
    }

    fn body() -> Value {
        json!({
            "RoleArn": "arn:aws:iam::123456789012:role/SageMaker",
            "Bucket": "data-bucket",
            "S3Prefix": "exp/1/",
            "TrainingImage": "123.dkr.ecr.us-east-1.amazonaws.com/xgb:1",
            "inputs": "s3://data-bucket/train/"
        })
    }

    #[test]
    fn job_name_is_deterministic_and_fits_sagemaker_rules() {
        let id = Uuid::now_v7();
        let name = job_name(id);
        assert_eq!(name, job_name(id));
        assert!(name.len() <= 63);
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert!(name.chars().next().unwrap().is_ascii_alphanumeric());
    }

    #[test]
    fn defaults_fill_in_and_keys_are_deterministic() {
        let r = TrainingRequest::parse(body(), &limits(None)).unwrap();
        assert_eq!(r.s3_prefix, "exp/1");
        assert_eq!(r.instance_type, "ml.m5.large");
        assert_eq!(r.content_type, "text/csv");
        let id = Uuid::nil();
        assert_eq!(
            r.output_path(id),
            format!("s3://data-bucket/exp/1/{id}/output")
        );
        assert_eq!(r.staging_key(id), None);
    }

    #[test]
    fn exactly_one_input_is_required() {
        let mut b = body();
        b["inline_csv"] = json!("a,b\n1,2\n");
        let e = TrainingRequest::parse(b, &limits(None)).unwrap_err();
        assert_eq!(e.field(), Some("inputs"));
        let mut b = body();
        b.as_object_mut().unwrap().remove("inputs");
        assert_eq!(
            TrainingRequest::parse(b, &limits(None))
                .unwrap_err()
                .field(),
            Some("inputs")
        );
    }

    #[test]
    fn oversized_inline_csv_is_rejected() {
        let mut b = body();
        b.as_object_mut().unwrap().remove("inputs");
        b["inline_csv"] = json!("x".repeat(65));
        assert_eq!(
            TrainingRequest::parse(b, &limits(None))
                .unwrap_err()
                .field(),
            Some("inline_csv")
        );
    }

    #[test]
    fn local_paths_must_stay_inside_the_data_directory() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("train.csv"), "a,b\n").unwrap();
        std::fs::write(outside.path().join("secret.csv"), "x\n").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.csv"),
            root.path().join("link.csv"),
        )
        .unwrap();
        let l = limits(Some(root.path().to_path_buf()));
        let with = |p: &str| {
            let mut b = body();
            b.as_object_mut().unwrap().remove("inputs");
            b["local_dataset_path"] = json!(p);
            TrainingRequest::parse(b, &l)
        };
        let ok = with("train.csv").unwrap();
        assert!(matches!(ok.input, InputSource::LocalFile { .. }));
        assert!(
            ok.staging_key(Uuid::nil())
                .unwrap()
                .ends_with("/input/train.csv")
        );
        for bad in [
            "../secret.csv".to_string(),
            outside.path().join("secret.csv").display().to_string(),
            "link.csv".to_string(),
            "missing.csv".to_string(),
            "/etc/passwd".to_string(),
        ] {
            assert_eq!(
                with(&bad).unwrap_err().field(),
                Some("local_dataset_path"),
                "{bad}"
            );
        }
        assert!(with(".").is_err());
    }
}
