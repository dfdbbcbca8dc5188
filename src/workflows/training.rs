//! The SageMaker training workflow (`workflows/training.toml`): the shared job steps
//! ([`super::job`]) around CreateTrainingJob, DescribeTrainingJob and StopTrainingJob.

use super::input::{DATA_FIELDS, DataSpec, InputLimits, Origin};
use super::job::{JobContext, JobWorkflow, SageMakerJob};
use crate::aws::{AwsPort, AwsResult, JobDescription, TrainingJobSpec};
use crate::model::Kind;
use crate::store::Run;
use crate::validate::{self, Fields, InputError, InputResult, Mode};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// A validated training request, as stored with the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingRequest {
    #[serde(flatten)]
    pub data: DataSpec,
    pub training_image: String,
    pub instance_type: String,
    pub instance_count: i32,
    pub volume_size_gb: i32,
    pub max_runtime_secs: i32,
    pub hyperparameters: BTreeMap<String, String>,
    /// Who sent it, from Essedum's query parameters (for listing by project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// The training-specific request fields (besides [`DATA_FIELDS`]).
pub const REQUEST_FIELDS: &[&str] = &[
    "TrainingImage",
    "InstanceType",
    "InstanceCount",
    "VolumeSizeInGB",
    "MaxRuntimeInSeconds",
    "HyperParameters",
    "type",
];

impl TrainingRequest {
    /// Parses an untrusted body. Unknown fields are `Malformed`; bad values name their field.
    pub fn parse(body: Value, limits: &InputLimits) -> InputResult<TrainingRequest> {
        Self::parse_mode(body, limits, Mode::Strict)
    }

    /// [`TrainingRequest::parse`] in a chosen mode ([`Mode::Essedum`] on the backend's routes:
    /// unknown keys ignored, `""` absent).
    pub fn parse_mode(
        body: Value,
        limits: &InputLimits,
        mode: Mode,
    ) -> InputResult<TrainingRequest> {
        let allowed: Vec<&str> = DATA_FIELDS.iter().chain(REQUEST_FIELDS).copied().collect();
        let mut f = Fields::with_mode(body, &allowed, mode)?;
        if let Some(t) = f.opt_str("type")?
            && !matches!(t.as_str(), "training" | "sagemaker-training")
        {
            return Err(InputError::invalid(
                "type",
                format!("{t:?} is not supported on this route; use \"training\""),
            ));
        }
        let data = DataSpec::parse(&mut f, limits, "text/csv")?;
        let training_image = validate::token("TrainingImage", &f.str("TrainingImage")?, 255)?;
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
        Ok(TrainingRequest {
            data,
            training_image,
            instance_type,
            instance_count,
            volume_size_gb,
            max_runtime_secs,
            hyperparameters,
            origin: None,
        })
    }
}

/// The deterministic training job name for a run: at most 63 characters, SageMaker's pattern.
pub fn job_name(run_id: Uuid) -> String {
    format!("essedum-train-{}", run_id.simple())
}

/// The training context is the shared job context.
pub type TrainingContext = JobContext;

/// SageMaker training jobs.
pub struct TrainingJob;

/// The training workflow.
pub type TrainingWorkflow = JobWorkflow<TrainingJob>;

pub fn workflow() -> TrainingWorkflow {
    JobWorkflow(TrainingJob)
}

#[async_trait]
impl SageMakerJob for TrainingJob {
    fn kind(&self) -> Kind {
        Kind::Training
    }

    fn noun(&self) -> &'static str {
        "training job"
    }

    async fn describe(&self, aws: &dyn AwsPort, name: &str) -> AwsResult<Option<JobDescription>> {
        aws.describe_training_job(name).await
    }

    async fn create(&self, aws: &dyn AwsPort, run: &Run, ctx: &JobContext) -> AwsResult<String> {
        let req: TrainingRequest = serde_json::from_value(run.request.clone()).map_err(|e| {
            crate::aws::AwsError::terminal(
                "CreateTrainingJob",
                format!("stored request is unreadable: {e}"),
            )
        })?;
        let spec = TrainingJobSpec {
            name: ctx.job_name.clone(),
            role_arn: req.data.role_arn.clone(),
            image: req.training_image.clone(),
            instance_type: req.instance_type.clone(),
            instance_count: req.instance_count,
            volume_size_gb: req.volume_size_gb,
            max_runtime_secs: req.max_runtime_secs,
            hyperparameters: req.hyperparameters.clone(),
            input_s3_uri: ctx.input_s3_uri.clone().ok_or_else(|| {
                crate::aws::AwsError::terminal(
                    "CreateTrainingJob",
                    "no input location recorded".into(),
                )
            })?,
            content_type: req.data.content_type.clone(),
            output_s3_path: req.data.output_path(run.id),
        };
        aws.create_training_job(&spec).await
    }

    async fn stop(&self, aws: &dyn AwsPort, name: &str) -> AwsResult<()> {
        aws.stop_training_job(name).await
    }
}

/// Parses a stored request (for the API's views).
pub fn stored_request(request: &Value) -> Option<TrainingRequest> {
    serde_json::from_value(request.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::workflows::input::InputSource;
    use std::path::PathBuf;

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
        assert_eq!(r.data.s3_prefix, "exp/1");
        assert_eq!(r.instance_type, "ml.m5.large");
        assert_eq!(r.data.content_type, "text/csv");
        let id = Uuid::nil();
        assert_eq!(
            r.data.output_path(id),
            format!("s3://data-bucket/exp/1/{id}/output")
        );
        assert_eq!(r.data.staging_key(id), None);
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
        assert!(matches!(ok.data.input, InputSource::LocalFile { .. }));
        assert!(
            ok.data
                .staging_key(Uuid::nil())
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
