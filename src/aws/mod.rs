//! The AWS side: one place that builds the SDK clients, and a narrow port ([`AwsPort`]) with
//! exactly the operations the workflows use, returning domain results and classified errors.
//!
//! The SDK's own retries are off for SageMaker (the engine owns retries, and records each attempt
//! in the run's history) and low for S3 (a multipart part is retried locally rather than
//! restarting a whole upload).

mod classify;
pub mod limit;
pub mod objects;
pub mod provider;
pub mod sdk;

pub use classify::{classify, is_throttling};
pub use limit::{RateLimiter, RateLimits};
pub use objects::{ObjectInfo, ObjectPage, ObjectStore, OpenMultipartUpload, UploadBody};
pub use provider::{AwsProvider, AwsTarget, ResolvedRun, RunSecret, StaticCredentials, TargetKey};
pub use sdk::SdkAws;

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::Path;

/// How the caller should treat an AWS error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// Throttling, 5xx, timeouts, connection errors.
    Retryable,
    /// Capacity or quota: try again much later.
    Capacity,
    /// Validation, access denied, missing role: the request can never succeed as is.
    Terminal,
    /// The named resource does not exist.
    NotFound,
    /// A resource with that name exists already (`ResourceInUse`).
    AlreadyExists,
}

impl AwsErrorKind {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            AwsErrorKind::Retryable => "retryable",
            AwsErrorKind::Capacity => "capacity",
            AwsErrorKind::Terminal => "terminal",
            AwsErrorKind::NotFound => "not_found",
            AwsErrorKind::AlreadyExists => "already_exists",
        }
    }
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("{operation}: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct AwsError {
    pub kind: AwsErrorKind,
    pub operation: &'static str,
    pub code: Option<String>,
    pub message: String,
}

pub type AwsResult<T> = Result<T, AwsError>;

impl AwsError {
    /// An error that retrying cannot fix, raised on our side of a call.
    pub fn terminal(operation: &'static str, message: String) -> AwsError {
        AwsError {
            kind: AwsErrorKind::Terminal,
            operation,
            code: None,
            message,
        }
    }
}

/// Everything CreateTrainingJob needs, already validated.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingJobSpec {
    pub name: String,
    pub role_arn: String,
    pub image: String,
    pub instance_type: String,
    pub instance_count: i32,
    pub volume_size_gb: i32,
    pub max_runtime_secs: i32,
    pub hyperparameters: BTreeMap<String, String>,
    pub input_s3_uri: String,
    pub content_type: String,
    pub output_s3_path: String,
}

/// What a Describe*Job call says about a job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobDescription {
    pub arn: Option<String>,
    /// InProgress | Completed | Failed | Stopping | Stopped
    pub status: String,
    pub secondary_status: Option<String>,
    pub failure_reason: Option<String>,
    /// Training: the model artifacts; AutoML: the best candidate's first model data.
    pub model_artifacts: Option<String>,
    /// AutoML: the best candidate (name, objective metric, inference containers).
    pub best_candidate: Option<serde_json::Value>,
}

/// Everything CreateTransformJob needs, already validated (SageMaker's own field names).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TransformJobSpec {
    pub model_name: String,
    pub input_s3_uri: String,
    /// `S3Prefix` or `ManifestFile`.
    pub s3_data_type: String,
    pub content_type: Option<String>,
    pub split_type: Option<String>,
    pub compression_type: Option<String>,
    pub output_s3_path: String,
    pub accept: Option<String>,
    pub assemble_with: Option<String>,
    pub instance_type: String,
    pub instance_count: i32,
    pub max_concurrent_transforms: Option<i32>,
    #[serde(rename = "MaxPayloadInMB")]
    pub max_payload_in_mb: Option<i32>,
    pub batch_strategy: Option<String>,
    pub environment: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

/// One container of a model (SageMaker's field names).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSpec {
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_data_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_hostname: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
}

/// A model as CreateModel takes it and DescribeModel shows it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModelSpec {
    pub model_name: String,
    pub execution_role_arn: String,
    pub containers: Vec<ContainerSpec>,
}

/// One production variant of an endpoint config.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VariantSpec {
    pub variant_name: String,
    pub model_name: String,
    pub initial_instance_count: i32,
    pub instance_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_variant_weight: Option<f32>,
}

/// An endpoint config as CreateEndpointConfig takes it and DescribeEndpointConfig shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointConfigSpec {
    pub endpoint_config_name: String,
    pub production_variants: Vec<VariantSpec>,
    /// A SageMaker Clarify explainer: the endpoint can answer with explanations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explainer_config: Option<ExplainerConfig>,
}

/// SageMaker's `ExplainerConfig` (only its Clarify form exists).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExplainerConfig {
    pub clarify_explainer_config: ClarifyExplainerConfig,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClarifyExplainerConfig {
    /// A JMESPath expression deciding per record whether to explain (default: always).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_explanations: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_config: Option<ClarifyInferenceConfig>,
    pub shap_config: ClarifyShapConfig,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClarifyInferenceConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features_attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_record_count: Option<i32>,
    #[serde(
        default,
        rename = "MaxPayloadInMB",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_payload_in_mb: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability_index: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_index: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability_attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feature_headers: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClarifyShapConfig {
    pub shap_baseline_config: ClarifyShapBaselineConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_samples: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_logit: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClarifyShapBaselineConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shap_baseline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shap_baseline_uri: Option<String>,
}

/// A model as DescribeModel shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub spec: ModelSpec,
    pub arn: Option<String>,
    pub created: Option<crate::clock::Timestamp>,
}

/// One model of a ListModels page.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSummary {
    pub name: String,
    pub arn: Option<String>,
    pub created: Option<crate::clock::Timestamp>,
}

/// One endpoint of a ListEndpoints page.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointSummary {
    pub name: String,
    pub arn: Option<String>,
    pub status: Option<String>,
    pub created: Option<crate::clock::Timestamp>,
    pub last_modified: Option<crate::clock::Timestamp>,
}

/// Everything a List* call returned, page after page.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing<T> {
    pub items: Vec<T>,
    /// Stopped at the page limit although SageMaker had more.
    pub truncated: bool,
}

/// What DescribeEndpoint says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointDescription {
    pub arn: Option<String>,
    /// Creating | Updating | SystemUpdating | RollingBack | InService | OutOfService | Deleting | Failed
    pub status: String,
    /// The config the endpoint serves.
    pub config_name: Option<String>,
    /// The config an update in progress is moving to.
    pub pending_config_name: Option<String>,
    pub failure_reason: Option<String>,
    pub created: Option<crate::clock::Timestamp>,
    pub last_modified: Option<crate::clock::Timestamp>,
}

/// The kinds of SageMaker job a List* sweep can follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKind {
    Training,
    Transform,
    Processing,
    /// AutoML (V2) jobs: ListAutoMLJobs lists both generations.
    AutoMl,
}

impl JobKind {
    /// The List* operation that lists jobs of this kind.
    pub fn list_operation(self) -> &'static str {
        match self {
            JobKind::Training => "ListTrainingJobs",
            JobKind::Transform => "ListTransformJobs",
            JobKind::Processing => "ListProcessingJobs",
            JobKind::AutoMl => "ListAutoMLJobs",
        }
    }
}

/// One job of a List*Jobs page.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSummary {
    pub name: String,
    /// InProgress | Completed | Failed | Stopping | Stopped
    pub status: String,
    pub last_modified: Option<crate::clock::Timestamp>,
}

/// What a List*Jobs sweep asks for: the jobs of one kind modified after a time (strictly), by
/// status when given, 100 a page, at most `max_pages` pages.
#[derive(Clone, Debug, PartialEq)]
pub struct JobQuery {
    pub kind: JobKind,
    pub modified_after: crate::clock::Timestamp,
    pub status: Option<String>,
    pub max_pages: u32,
}

/// A model's answer to InvokeEndpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct InvokeOutput {
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Everything CreateAutoMLJobV2 needs (a tabular job), already validated.
#[derive(Clone, Debug, PartialEq)]
pub struct AutomlJobSpec {
    pub name: String,
    pub role_arn: String,
    pub input_s3_uri: String,
    pub content_type: String,
    pub output_s3_path: String,
    pub target_attribute_name: String,
    pub problem_type: Option<String>,
    pub objective_metric: Option<String>,
    pub max_candidates: i32,
    pub max_runtime_secs: i32,
    pub tags: BTreeMap<String, String>,
}

/// One S3 location mounted into (or collected from) a processing job's container.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProcessingChannel {
    pub name: String,
    pub s3_uri: String,
    pub local_path: String,
}

/// Everything CreateProcessingJob needs for a script job, already validated.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessingJobSpec {
    pub name: String,
    pub role_arn: String,
    pub image: String,
    pub entrypoint: Vec<String>,
    pub instance_type: String,
    pub instance_count: i32,
    pub volume_size_gb: i32,
    pub max_runtime_secs: i32,
    pub environment: BTreeMap<String, String>,
    pub inputs: Vec<ProcessingChannel>,
    pub output: ProcessingChannel,
    pub tags: BTreeMap<String, String>,
}

/// A job's log as read so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobLog {
    pub text: String,
    /// The log was longer than the reader's limit; `text` is its start.
    pub truncated: bool,
}

/// How far a reader of a processing job's log has got: each log stream read so far, with the
/// CloudWatch forward token to go on from. The default (no stream) reads from the start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogCursor {
    pub streams: BTreeMap<String, String>,
}

#[async_trait]
pub trait AwsPort: ObjectStore {
    /// Writes one object (small data) at a deterministic key; repeating it is harmless.
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> AwsResult<()>;
    /// Uploads a local file, as a multipart upload above the threshold (aborted on failure).
    async fn upload_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        content_type: &str,
    ) -> AwsResult<()>;
    /// Reads at most `max` bytes from the start of an object; `Ok(None)` when it does not exist.
    async fn read_object_start(
        &self,
        bucket: &str,
        key: &str,
        max: u64,
    ) -> AwsResult<Option<Vec<u8>>>;
    /// Returns the job ARN.
    async fn create_training_job(&self, spec: &TrainingJobSpec) -> AwsResult<String>;
    /// `Ok(None)` when no job has that name.
    async fn describe_training_job(&self, name: &str) -> AwsResult<Option<JobDescription>>;
    async fn stop_training_job(&self, name: &str) -> AwsResult<()>;
    /// CreateAutoMLJobV2; returns the job ARN.
    async fn create_automl_job(&self, spec: &AutomlJobSpec) -> AwsResult<String>;
    /// DescribeAutoMLJobV2; `Ok(None)` when no job has that name.
    async fn describe_automl_job(&self, name: &str) -> AwsResult<Option<JobDescription>>;
    async fn stop_automl_job(&self, name: &str) -> AwsResult<()>;
    /// CreateTransformJob named `name`; returns the job ARN.
    async fn create_transform_job(&self, name: &str, spec: &TransformJobSpec) -> AwsResult<String>;
    /// DescribeTransformJob; `Ok(None)` when no job has that name. `model_artifacts` holds the
    /// output location.
    async fn describe_transform_job(&self, name: &str) -> AwsResult<Option<JobDescription>>;
    async fn stop_transform_job(&self, name: &str) -> AwsResult<()>;
    /// CreateModel; returns its ARN. An existing name is `AlreadyExists`.
    async fn create_model(&self, spec: &ModelSpec) -> AwsResult<String>;
    /// DescribeModel: the model and its ARN; `Ok(None)` when no model has that name.
    async fn describe_model(&self, name: &str) -> AwsResult<Option<(ModelSpec, Option<String>)>>;
    /// DeleteModel; a missing model is `NotFound`.
    async fn delete_model(&self, name: &str) -> AwsResult<()>;
    /// CreateEndpointConfig; returns its ARN. An existing name is `AlreadyExists`.
    async fn create_endpoint_config(&self, spec: &EndpointConfigSpec) -> AwsResult<String>;
    /// DescribeEndpointConfig; `Ok(None)` when no config has that name.
    async fn describe_endpoint_config(
        &self,
        name: &str,
    ) -> AwsResult<Option<(EndpointConfigSpec, Option<String>)>>;
    /// `Ok(None)` when no endpoint has that name.
    async fn describe_endpoint(&self, name: &str) -> AwsResult<Option<EndpointDescription>>;
    /// CreateEndpoint; returns its ARN. An existing name is `AlreadyExists`.
    async fn create_endpoint(
        &self,
        name: &str,
        config: &str,
        tags: &BTreeMap<String, String>,
    ) -> AwsResult<String>;
    async fn update_endpoint(&self, name: &str, config: &str) -> AwsResult<()>;
    /// DeleteEndpoint; an endpoint that does not exist is `NotFound`.
    async fn delete_endpoint(&self, name: &str) -> AwsResult<()>;
    /// DeleteEndpointConfig; a config that does not exist is `NotFound`.
    async fn delete_endpoint_config(&self, name: &str) -> AwsResult<()>;
    /// CreateProcessingJob; returns the job ARN.
    async fn create_processing_job(&self, spec: &ProcessingJobSpec) -> AwsResult<String>;
    /// DescribeProcessingJob; `Ok(None)` when no job has that name. `model_artifacts` holds the
    /// first output's S3 location; `failure_reason` the FailureReason (or ExitMessage).
    async fn describe_processing_job(&self, name: &str) -> AwsResult<Option<JobDescription>>;
    async fn stop_processing_job(&self, name: &str) -> AwsResult<()>;
    /// The processing job's CloudWatch log (group `/aws/sagemaker/ProcessingJobs`, streams
    /// `<job>/...`), events joined by newlines, at most `max_bytes`. No stream yet: empty.
    async fn processing_job_log(&self, name: &str, max_bytes: usize) -> AwsResult<JobLog>;
    /// The processing job's log events after `cursor` (at most `max_bytes`), and the cursor past
    /// them: a stream already read is asked only from its saved token, so a reader that keeps
    /// the cursor fetches each event once. Streams appear in name order; events a stream gets
    /// later come after those read before, whatever the stream.
    async fn processing_job_log_from(
        &self,
        name: &str,
        cursor: &LogCursor,
        max_bytes: usize,
    ) -> AwsResult<(JobLog, LogCursor)>;
    /// InvokeEndpoint, once (the caller decides about retries). A model's own failure is an
    /// error with code `ModelError`; an unknown or not-in-service endpoint `ValidationError`.
    async fn invoke_endpoint(
        &self,
        endpoint: &str,
        content_type: &str,
        accept: Option<&str>,
        body: Vec<u8>,
        inference_id: &str,
    ) -> AwsResult<InvokeOutput>;
    /// DescribeModel with its ARN and creation time.
    async fn describe_model_info(&self, name: &str) -> AwsResult<Option<ModelInfo>> {
        Ok(self
            .describe_model(name)
            .await?
            .map(|(spec, arn)| ModelInfo {
                spec,
                arn,
                created: None,
            }))
    }
    /// ListModels, following NextToken to the end or to `max_pages` pages of `page_size`.
    async fn list_models(
        &self,
        page_size: i32,
        max_pages: u32,
    ) -> AwsResult<Listing<ModelSummary>> {
        let _ = (page_size, max_pages);
        Err(AwsError::terminal(
            "ListModels",
            "not supported here".into(),
        ))
    }
    /// ListEndpoints, following NextToken to the end or to `max_pages` pages of `page_size`.
    async fn list_endpoints(
        &self,
        page_size: i32,
        max_pages: u32,
    ) -> AwsResult<Listing<EndpointSummary>> {
        let _ = (page_size, max_pages);
        Err(AwsError::terminal(
            "ListEndpoints",
            "not supported here".into(),
        ))
    }
    /// List{Training,Transform,Processing,AutoML}Jobs with `LastModifiedTimeAfter` (and
    /// `StatusEquals` when asked), following NextToken up to `query.max_pages` pages of 100. Only
    /// the sweep uses it, to learn which followed jobs changed; never to find a job (adoption
    /// describes by name, DESIGN.md invariant 1).
    async fn list_jobs(&self, query: &JobQuery) -> AwsResult<Listing<JobSummary>> {
        Err(AwsError::terminal(
            query.kind.list_operation(),
            "not supported here".into(),
        ))
    }
    /// InvokeEndpoint with `EnableExplanations` (an endpoint with a Clarify explainer answers
    /// with predictions and explanations).
    async fn explain_endpoint(
        &self,
        endpoint: &str,
        content_type: &str,
        body: Vec<u8>,
        enable_explanations: &str,
        inference_id: &str,
    ) -> AwsResult<InvokeOutput> {
        let _ = (
            endpoint,
            content_type,
            body,
            enable_explanations,
            inference_id,
        );
        Err(AwsError::terminal(
            "InvokeEndpoint",
            "not supported here".into(),
        ))
    }
}
