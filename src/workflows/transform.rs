//! The SageMaker batch transform workflow (`workflows/transform.toml`): Submitted → Polling →
//! Done (the output location recorded) | Failed | Cancelled, on the shared job steps around
//! CreateTransformJob, DescribeTransformJob and StopTransformJob. Its input is in S3 already.

use super::input::Origin;
use super::job::{EDGES_WITHOUT_UPLOAD, JobContext, JobWorkflow, SageMakerJob};
use crate::aws::{AwsError, AwsPort, AwsResult, JobDescription, TransformJobSpec};
use crate::model::{Kind, State};
use crate::store::Run;
use crate::validate::{self, Fields, InputError, InputResult, Mode};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// A validated transform request, as stored with the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransformRequest {
    /// The job name the caller chose, if any (else one is derived from the run id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    pub spec: TransformJobSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

fn choice(field: &str, value: Option<String>, allowed: &[&str]) -> InputResult<Option<String>> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(InputError::invalid(
            field,
            format!("must be one of {}", allowed.join(", ")),
        )),
        other => Ok(other),
    }
}

fn string_map(f: &mut Fields, name: &str, max: usize) -> InputResult<BTreeMap<String, String>> {
    let map = f.opt_string_map(name)?.unwrap_or_default();
    if map.len() > max {
        return Err(InputError::invalid(name, format!("at most {max} entries")));
    }
    Ok(map)
}

impl TransformRequest {
    /// Parses SageMaker's CreateTransformJob fields in `mode` ([`Mode::Essedum`] on the
    /// backend's route: unknown keys, such as `ModelClientConfig` and `DataProcessing`, are
    /// ignored and `""` is absent); errors name the field's full path.
    pub fn parse(body: Value, mode: Mode) -> InputResult<TransformRequest> {
        let mut f = Fields::with_mode(
            body,
            &[
                "TransformJobName",
                "ModelName",
                "TransformInput",
                "TransformOutput",
                "TransformResources",
                "MaxConcurrentTransforms",
                "MaxPayloadInMB",
                "BatchStrategy",
                "Environment",
                "Tags",
            ],
            mode,
        )?;
        let job_name = f
            .opt_str("TransformJobName")?
            .map(|n| validate::sagemaker_name("TransformJobName", &n))
            .transpose()?;
        let model_name = validate::sagemaker_name("ModelName", &f.str("ModelName")?)?;
        let mut input = f.object(
            "TransformInput",
            &["DataSource", "ContentType", "SplitType", "CompressionType"],
        )?;
        let mut source = input.object("DataSource", &["S3DataSource"])?;
        let mut s3 = source.object("S3DataSource", &["S3DataType", "S3Uri"])?;
        let input_s3_uri = validate::s3_uri(
            "TransformInput.DataSource.S3DataSource.S3Uri",
            &s3.str("S3Uri")?,
        )?;
        let s3_data_type = choice(
            "TransformInput.DataSource.S3DataSource.S3DataType",
            s3.opt_str("S3DataType")?,
            &["S3Prefix", "ManifestFile"],
        )?
        .unwrap_or_else(|| "S3Prefix".into());
        let content_type = input.opt_str("ContentType")?;
        let split_type = choice(
            "TransformInput.SplitType",
            input.opt_str("SplitType")?,
            &["None", "Line", "RecordIO", "TFRecord"],
        )?;
        let compression_type = choice(
            "TransformInput.CompressionType",
            input.opt_str("CompressionType")?,
            &["None", "Gzip"],
        )?;
        let mut output = f.object(
            "TransformOutput",
            &["S3OutputPath", "Accept", "AssembleWith"],
        )?;
        let output_s3_path =
            validate::s3_uri("TransformOutput.S3OutputPath", &output.str("S3OutputPath")?)?;
        let accept = output.opt_str("Accept")?;
        let assemble_with = choice(
            "TransformOutput.AssembleWith",
            output.opt_str("AssembleWith")?,
            &["None", "Line"],
        )?;
        let mut resources = f.object("TransformResources", &["InstanceType", "InstanceCount"])?;
        let instance_type = resources.str("InstanceType")?;
        if !instance_type.starts_with("ml.") {
            return Err(InputError::invalid(
                "TransformResources.InstanceType",
                "must be a SageMaker instance type such as ml.m5.large",
            ));
        }
        let instance_count = resources
            .opt_int("InstanceCount", 1, 100)?
            .ok_or_else(|| InputError::invalid("TransformResources.InstanceCount", "is required"))?
            as i32;
        let max_concurrent_transforms = f
            .opt_int("MaxConcurrentTransforms", 1, 1000)?
            .map(|n| n as i32);
        let max_payload_in_mb = f.opt_int("MaxPayloadInMB", 0, 100)?.map(|n| n as i32);
        let batch_strategy = choice(
            "BatchStrategy",
            f.opt_str("BatchStrategy")?,
            &["MultiRecord", "SingleRecord"],
        )?;
        let environment = string_map(&mut f, "Environment", 16)?;
        let tags = string_map(&mut f, "Tags", 50)?;
        Ok(TransformRequest {
            job_name,
            spec: TransformJobSpec {
                model_name,
                input_s3_uri,
                s3_data_type,
                content_type,
                split_type,
                compression_type,
                output_s3_path,
                accept,
                assemble_with,
                instance_type,
                instance_count,
                max_concurrent_transforms,
                max_payload_in_mb,
                batch_strategy,
                environment,
                tags,
            },
            origin: None,
        })
    }

    /// The job's name: the caller's, or one derived from the run id.
    pub fn name_for(&self, run_id: Uuid) -> String {
        self.job_name
            .clone()
            .unwrap_or_else(|| format!("essedum-transform-{}", run_id.simple()))
    }
}

/// SageMaker batch transform jobs.
pub struct TransformJob;

pub type TransformWorkflow = JobWorkflow<TransformJob>;

pub fn workflow() -> TransformWorkflow {
    JobWorkflow(TransformJob)
}

#[async_trait]
impl SageMakerJob for TransformJob {
    fn kind(&self) -> Kind {
        Kind::Transform
    }

    fn noun(&self) -> &'static str {
        "transform job"
    }

    fn edges(&self) -> &'static [(State, State)] {
        EDGES_WITHOUT_UPLOAD
    }

    async fn describe(&self, aws: &dyn AwsPort, name: &str) -> AwsResult<Option<JobDescription>> {
        aws.describe_transform_job(name).await
    }

    async fn create(&self, aws: &dyn AwsPort, run: &Run, ctx: &JobContext) -> AwsResult<String> {
        let req: TransformRequest = serde_json::from_value(run.request.clone()).map_err(|e| {
            AwsError::terminal(
                "CreateTransformJob",
                format!("stored request is unreadable: {e}"),
            )
        })?;
        aws.create_transform_job(&ctx.job_name, &req.spec).await
    }

    async fn stop(&self, aws: &dyn AwsPort, name: &str) -> AwsResult<()> {
        aws.stop_transform_job(name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Value {
        json!({
            "ModelName": "churn-model",
            "TransformInput": {"DataSource": {"S3DataSource": {"S3Uri": "s3://bkt/in/"}}, "ContentType": "text/csv", "SplitType": "Line"},
            "TransformOutput": {"S3OutputPath": "s3://bkt/out/"},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        })
    }

    #[test]
    fn sagemaker_shaped_requests_parse_with_defaults() {
        let r = TransformRequest::parse(body(), Mode::Strict).unwrap();
        assert_eq!(r.spec.s3_data_type, "S3Prefix");
        assert_eq!(r.spec.split_type.as_deref(), Some("Line"));
        let id = Uuid::nil();
        assert_eq!(r.name_for(id), format!("essedum-transform-{}", id.simple()));
        assert!(r.name_for(id).len() <= 63);
    }

    #[test]
    fn nested_errors_name_the_full_path() {
        let mut b = body();
        b["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] = json!("http://x");
        assert_eq!(
            TransformRequest::parse(b, Mode::Strict)
                .unwrap_err()
                .field(),
            Some("TransformInput.DataSource.S3DataSource.S3Uri")
        );
        let mut b = body();
        b["TransformOutput"]["Extra"] = json!(1);
        assert_eq!(
            TransformRequest::parse(b, Mode::Strict)
                .unwrap_err()
                .field(),
            Some("TransformOutput.Extra")
        );
        let mut b = body();
        b["TransformResources"]
            .as_object_mut()
            .unwrap()
            .remove("InstanceCount");
        assert_eq!(
            TransformRequest::parse(b, Mode::Strict)
                .unwrap_err()
                .field(),
            Some("TransformResources.InstanceCount")
        );
        let mut b = body();
        b["TransformJobName"] = json!("bad_name");
        assert_eq!(
            TransformRequest::parse(b, Mode::Strict)
                .unwrap_err()
                .field(),
            Some("TransformJobName")
        );
    }

    #[test]
    fn the_backends_extra_keys_and_blank_values_are_ignored_in_essedum_mode() {
        let mut b = body();
        b["ModelClientConfig"] = json!("");
        b["DataProcessing"] = json!({"JoinSource": "Input"});
        b["TransformJobName"] = json!("");
        b["TransformOutput"]["Extra"] = json!(1);
        let r = TransformRequest::parse(b.clone(), Mode::Essedum).unwrap();
        assert_eq!(r.job_name, None);
        assert!(TransformRequest::parse(b, Mode::Strict).is_err());
        let mut b = body();
        b["TransformResources"]["InstanceCount"] = json!("1");
        assert_eq!(
            TransformRequest::parse(b, Mode::Essedum)
                .unwrap_err()
                .field(),
            Some("TransformResources.InstanceCount")
        );
    }
}
