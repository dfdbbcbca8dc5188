//! The real [`AwsPort`] on the AWS SDK.

mod listing;
mod objects;
mod upload_guard;
pub use upload_guard::settle_uploads;

use super::{
    AutomlJobSpec, AwsError, AwsErrorKind, AwsPort, AwsResult, ClarifyExplainerConfig,
    ClarifyInferenceConfig, ClarifyShapBaselineConfig, ClarifyShapConfig, ContainerSpec,
    EndpointConfigSpec, EndpointDescription, EndpointSummary, ExplainerConfig, InvokeOutput,
    JobDescription, JobLog, JobQuery, JobSummary, Listing, ModelInfo, ModelSpec, ModelSummary,
    ProcessingJobSpec, RateLimiter, RateLimits, TrainingJobSpec, TransformJobSpec, VariantSpec,
    classify,
};
use crate::clock::Timestamp;
use crate::metrics;
use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sagemaker::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sagemaker::operation::RequestId;
use aws_sdk_sagemaker::types::{
    AlgorithmSpecification, Channel, DataSource, OutputDataConfig, ResourceConfig,
    S3DataDistribution, S3DataSource, S3DataType, StoppingCondition, TrainingInputMode,
    TrainingInstanceType,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// How the clients are built. The region, credentials and `AWS_ENDPOINT_URL` come from the
/// standard AWS configuration chain (environment, profile, SSO, web identity, instance role).
#[derive(Clone, Debug)]
pub struct AwsSettings {
    pub force_path_style: bool,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    pub multipart_threshold: u64,
    pub multipart_part_size: u64,
    /// The per-operation token buckets of each client set built with these settings.
    pub rate_limits: RateLimits,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            force_path_style: false,
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(60),
            multipart_threshold: 16 * 1024 * 1024,
            multipart_part_size: 8 * 1024 * 1024,
            rate_limits: RateLimits::unlimited(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SdkAws {
    s3: aws_sdk_s3::Client,
    sagemaker: aws_sdk_sagemaker::Client,
    runtime: aws_sdk_sagemakerruntime::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    settings: AwsSettings,
    /// Shared by every run and the sweeper that use this client set (one AWS target).
    limiter: std::sync::Arc<RateLimiter>,
}

/// What differs from the standard configuration chain for one set of clients.
#[derive(Clone, Default)]
pub struct Overrides {
    /// Static credentials instead of the chain's.
    pub credentials: Option<super::provider::StaticCredentials>,
    pub region: Option<String>,
    /// Another S3-compatible endpoint (a script job's object store).
    pub endpoint: Option<String>,
}

impl SdkAws {
    pub async fn from_env(settings: AwsSettings) -> SdkAws {
        Self::build(settings, Overrides::default()).await
    }

    /// Clients from the standard chain with `overrides` applied.
    pub async fn build(settings: AwsSettings, overrides: Overrides) -> SdkAws {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.connect_timeout)
                .operation_attempt_timeout(settings.operation_timeout)
                .build(),
        );
        if let Some(c) = overrides.credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                c.access_key,
                c.secret_key.expose(),
                c.session_token.map(|t| t.expose().to_string()),
                None,
                "sagemaker-executor",
            ));
        }
        if let Some(r) = overrides.region {
            loader = loader.region(aws_config::Region::new(r));
        }
        if let Some(e) = overrides.endpoint {
            loader = loader.endpoint_url(e);
        }
        let shared = loader.load().await;
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(settings.force_path_style)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .build();
        let sagemaker = aws_sdk_sagemaker::config::Builder::from(&shared)
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .build();
        // A model may take up to a minute to answer; SageMaker's own limit is 60 s.
        let runtime = aws_sdk_sagemakerruntime::config::Builder::from(&shared)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(settings.connect_timeout)
                    .operation_attempt_timeout(Duration::from_secs(70))
                    .operation_timeout(Duration::from_secs(70))
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .build();
        let logs = aws_sdk_cloudwatchlogs::config::Builder::from(&shared)
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .build();
        SdkAws {
            logs: aws_sdk_cloudwatchlogs::Client::from_conf(logs),
            runtime: aws_sdk_sagemakerruntime::Client::from_conf(runtime),
            s3: aws_sdk_s3::Client::from_conf(s3),
            sagemaker: aws_sdk_sagemaker::Client::from_conf(sagemaker),
            limiter: std::sync::Arc::new(RateLimiter::new(settings.rate_limits.clone())),
            settings,
        }
    }

    /// The region the clients use, if any was configured.
    pub fn region(&self) -> Option<String> {
        self.sagemaker.config().region().map(|r| r.to_string())
    }
}

/// A request that waits for its operation's token before it is sent (futures do nothing until
/// awaited, so `req.send().limited(..)` takes the token first). Every SDK call of this port goes
/// through it.
trait Limited: std::future::Future + Sized + Send {
    fn limited<'a>(
        self,
        limiter: &'a RateLimiter,
        operation: &'static str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'a>>
    where
        Self: 'a,
    {
        Box::pin(async move {
            limiter.acquire(operation).await;
            self.await
        })
    }
}

impl<F: std::future::Future + Send> Limited for F {}

/// Turns any SDK error into a classified [`AwsError`].
fn sdk_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus,
{
    let status = err.raw_response().map(HasStatus::status_code);
    let code = err.code().map(str::to_string);
    let message = err
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| DisplayErrorContext(&err).to_string());
    let kind = match &err {
        SdkError::ConstructionFailure(_) => AwsErrorKind::Terminal,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => AwsErrorKind::Retryable,
        _ => classify(code.as_deref(), status, &message),
    };
    metrics::global().aws_call(operation, kind.label());
    record_request_id(operation, err.meta().request_id());
    AwsError {
        kind,
        operation,
        code,
        message,
    }
}

/// Counts a successful call and puts its AWS request id on the current step's span.
fn record_ok(operation: &'static str, request_id: Option<&str>) {
    metrics::global().aws_call(operation, "ok");
    record_request_id(operation, request_id);
}

fn record_request_id(operation: &'static str, request_id: Option<&str>) {
    if let Some(id) = request_id {
        tracing::Span::current().record("aws_request_id", id);
        tracing::debug!(operation, aws_request_id = id, "AWS call");
    }
}

/// Finishes a call whose answer is needed: counts it (with its request id on the step's span) and
/// classifies its error.
trait Sent<T> {
    fn sent(self, operation: &'static str) -> AwsResult<T>;
}

impl<T, E, R> Sent<T> for Result<T, SdkError<E, R>>
where
    T: RequestId,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus,
{
    fn sent(self, operation: &'static str) -> AwsResult<T> {
        self.map_err(|e| sdk_error(operation, e))
            .inspect(|out| record_ok(operation, out.request_id()))
    }
}

/// Finishes a Describe*/Get* call: counts it, and turns "no such resource" into `Ok(None)`.
fn found<T, E, R>(
    operation: &'static str,
    result: Result<T, SdkError<E, R>>,
) -> AwsResult<Option<T>>
where
    T: RequestId,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus,
{
    match result {
        Ok(out) => {
            record_ok(operation, out.request_id());
            Ok(Some(out))
        }
        Err(e) => {
            let err = sdk_error(operation, e);
            if err.kind == AwsErrorKind::NotFound || err.code.as_deref() == Some("NoSuchBucket") {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

pub trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_sagemaker::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn io_error(operation: &'static str, path: &Path, e: std::io::Error) -> AwsError {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            AwsErrorKind::Terminal
        }
        _ => AwsErrorKind::Retryable,
    };
    AwsError {
        kind,
        operation,
        code: None,
        message: format!("reading {}: {e}", path.display()),
    }
}

fn terminal(operation: &'static str, message: String) -> AwsError {
    AwsError {
        kind: AwsErrorKind::Terminal,
        operation,
        code: None,
        message,
    }
}

#[async_trait]
impl AwsPort for SdkAws {
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> AwsResult<()> {
        self.put_body(bucket, key, content_type, ByteStream::from(body))
            .await
    }

    async fn upload_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        content_type: &str,
    ) -> AwsResult<()> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| io_error("UploadFile", path, e))?
            .len();
        if size > self.settings.multipart_threshold {
            let mut parts = objects::FileParts::new(path, size, self.part_size());
            self.multipart_upload(bucket, key, content_type, &mut parts)
                .await?;
            return Ok(());
        }
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| terminal("PutObject", format!("reading {}: {e}", path.display())))?;
        self.put_body(bucket, key, content_type, body).await
    }

    async fn create_training_job(&self, spec: &TrainingJobSpec) -> AwsResult<String> {
        const OP: &str = "CreateTrainingJob";
        let channel = Channel::builder()
            .channel_name("train")
            .content_type(&spec.content_type)
            .data_source(
                DataSource::builder()
                    .s3_data_source(
                        S3DataSource::builder()
                            .s3_data_type(S3DataType::S3Prefix)
                            .s3_uri(&spec.input_s3_uri)
                            .s3_data_distribution_type(S3DataDistribution::FullyReplicated)
                            .build(),
                    )
                    .build(),
            )
            .build();
        let out = self
            .sagemaker
            .create_training_job()
            .training_job_name(&spec.name)
            .role_arn(&spec.role_arn)
            .algorithm_specification(
                AlgorithmSpecification::builder()
                    .training_image(&spec.image)
                    .training_input_mode(TrainingInputMode::File)
                    .build(),
            )
            .set_hyper_parameters(if spec.hyperparameters.is_empty() {
                None
            } else {
                Some(spec.hyperparameters.clone().into_iter().collect())
            })
            .input_data_config(channel)
            .output_data_config(
                OutputDataConfig::builder()
                    .s3_output_path(&spec.output_s3_path)
                    .build(),
            )
            .resource_config(
                ResourceConfig::builder()
                    .instance_type(TrainingInstanceType::from(spec.instance_type.as_str()))
                    .instance_count(spec.instance_count)
                    .volume_size_in_gb(spec.volume_size_gb)
                    .build(),
            )
            .stopping_condition(
                StoppingCondition::builder()
                    .max_runtime_in_seconds(spec.max_runtime_secs)
                    .build(),
            )
            .send()
            .limited(&self.limiter, OP)
            .await
            .sent(OP)?;
        Ok(out.training_job_arn().unwrap_or_default().to_string())
    }

    async fn describe_training_job(&self, name: &str) -> AwsResult<Option<JobDescription>> {
        let Some(out) = found(
            "DescribeTrainingJob",
            self.sagemaker
                .describe_training_job()
                .training_job_name(name)
                .send()
                .limited(&self.limiter, "DescribeTrainingJob")
                .await,
        )?
        else {
            return Ok(None);
        };
        Ok(Some(JobDescription {
            arn: out.training_job_arn().map(str::to_string),
            status: out
                .training_job_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            secondary_status: out.secondary_status().map(|s| s.as_str().to_string()),
            failure_reason: out
                .failure_reason()
                .filter(|r| !r.is_empty())
                .map(str::to_string),
            best_candidate: None,
            model_artifacts: out
                .model_artifacts()
                .and_then(|m| m.s3_model_artifacts())
                .filter(|a| !a.is_empty())
                .map(str::to_string),
        }))
    }

    async fn stop_training_job(&self, name: &str) -> AwsResult<()> {
        self.sagemaker
            .stop_training_job()
            .training_job_name(name)
            .send()
            .limited(&self.limiter, "StopTrainingJob")
            .await
            .sent("StopTrainingJob")?;
        Ok(())
    }

    async fn read_object_start(
        &self,
        bucket: &str,
        key: &str,
        max: u64,
    ) -> AwsResult<Option<Vec<u8>>> {
        let Some(out) = found(
            "GetObject",
            self.s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .range(format!("bytes=0-{}", max.saturating_sub(1)))
                .send()
                .limited(&self.limiter, "GetObject")
                .await,
        )?
        else {
            return Ok(None);
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| AwsError {
                kind: AwsErrorKind::Retryable,
                operation: "GetObject",
                code: None,
                message: format!("reading the object: {e}"),
            })?
            .into_bytes();
        Ok(Some(bytes[..bytes.len().min(max as usize)].to_vec()))
    }

    async fn create_automl_job(&self, spec: &AutomlJobSpec) -> AwsResult<String> {
        use aws_sdk_sagemaker::types::{
            AutoMlChannelType, AutoMlDataSource, AutoMlJobChannel, AutoMlJobCompletionCriteria,
            AutoMlJobObjective, AutoMlMetricEnum, AutoMlOutputDataConfig, AutoMlProblemTypeConfig,
            AutoMls3DataSource, AutoMls3DataType, ProblemType, TabularJobConfig, Tag,
        };
        const OP: &str = "CreateAutoMLJobV2";
        let mut tabular = TabularJobConfig::builder()
            .target_attribute_name(&spec.target_attribute_name)
            .completion_criteria(
                AutoMlJobCompletionCriteria::builder()
                    .max_candidates(spec.max_candidates)
                    .max_auto_ml_job_runtime_in_seconds(spec.max_runtime_secs)
                    .build(),
            );
        if let Some(p) = &spec.problem_type {
            tabular = tabular.problem_type(ProblemType::from(p.as_str()));
        }
        let tabular = tabular.build();
        let mut req = self
            .sagemaker
            .create_auto_ml_job_v2()
            .auto_ml_job_name(&spec.name)
            .role_arn(&spec.role_arn)
            .auto_ml_job_input_data_config(
                AutoMlJobChannel::builder()
                    .channel_type(AutoMlChannelType::Training)
                    .content_type(&spec.content_type)
                    .data_source(
                        AutoMlDataSource::builder()
                            .s3_data_source(
                                AutoMls3DataSource::builder()
                                    .s3_data_type(AutoMls3DataType::S3Prefix)
                                    .s3_uri(&spec.input_s3_uri)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .output_data_config(
                AutoMlOutputDataConfig::builder()
                    .s3_output_path(&spec.output_s3_path)
                    .build(),
            )
            .auto_ml_problem_type_config(AutoMlProblemTypeConfig::TabularJobConfig(tabular));
        if let Some(m) = &spec.objective_metric {
            req = req.auto_ml_job_objective(
                AutoMlJobObjective::builder()
                    .metric_name(AutoMlMetricEnum::from(m.as_str()))
                    .build(),
            );
        }
        for (k, v) in &spec.tags {
            req = req.tags(Tag::builder().key(k).value(v).build());
        }
        let out = req.send().limited(&self.limiter, OP).await.sent(OP)?;
        Ok(out.auto_ml_job_arn().unwrap_or_default().to_string())
    }

    async fn describe_automl_job(&self, name: &str) -> AwsResult<Option<JobDescription>> {
        const OP: &str = "DescribeAutoMLJobV2";
        let Some(out) = found(
            OP,
            self.sagemaker
                .describe_auto_ml_job_v2()
                .auto_ml_job_name(name)
                .send()
                .limited(&self.limiter, OP)
                .await,
        )?
        else {
            return Ok(None);
        };
        let best = out.best_candidate().map(|c| {
            let containers: Vec<serde_json::Value> = c
                .inference_containers()
                .iter()
                .map(|ic| {
                    serde_json::json!({
                        "Image": ic.image(),
                        "ModelDataUrl": ic.model_data_url(),
                        "Environment": ic.environment(),
                    })
                })
                .collect();
            let metric = c.final_auto_ml_job_objective_metric();
            serde_json::json!({
                "CandidateName": c.candidate_name(),
                "CandidateStatus": c.candidate_status().map(|s| s.as_str()),
                "ObjectiveMetric": metric.map(|m| serde_json::json!({
                    "MetricName": m.metric_name().map(|n| n.as_str()),
                    "Value": m.value(),
                })),
                "InferenceContainers": containers,
            })
        });
        let model_data = out
            .best_candidate()
            .and_then(|c| {
                c.inference_containers()
                    .iter()
                    .find_map(|ic| ic.model_data_url())
            })
            .map(str::to_string);
        Ok(Some(JobDescription {
            arn: out.auto_ml_job_arn().map(str::to_string),
            status: out
                .auto_ml_job_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            secondary_status: out
                .auto_ml_job_secondary_status()
                .map(|s| s.as_str().to_string()),
            failure_reason: out
                .failure_reason()
                .filter(|r| !r.is_empty())
                .map(str::to_string),
            // The best candidate exists while the job runs too; it counts once the job completed.
            model_artifacts: model_data,
            best_candidate: best,
        }))
    }

    async fn stop_automl_job(&self, name: &str) -> AwsResult<()> {
        self.sagemaker
            .stop_auto_ml_job()
            .auto_ml_job_name(name)
            .send()
            .limited(&self.limiter, "StopAutoMLJob")
            .await
            .sent("StopAutoMLJob")?;
        Ok(())
    }

    async fn create_transform_job(&self, name: &str, spec: &TransformJobSpec) -> AwsResult<String> {
        use aws_sdk_sagemaker::types::{
            AssemblyType, BatchStrategy, CompressionType, SplitType, Tag, TransformDataSource,
            TransformInput, TransformInstanceType, TransformOutput, TransformResources,
            TransformS3DataSource,
        };
        const OP: &str = "CreateTransformJob";
        let mut input = TransformInput::builder().data_source(
            TransformDataSource::builder()
                .s3_data_source(
                    TransformS3DataSource::builder()
                        .s3_data_type(S3DataType::from(spec.s3_data_type.as_str()))
                        .s3_uri(&spec.input_s3_uri)
                        .build(),
                )
                .build(),
        );
        if let Some(c) = &spec.content_type {
            input = input.content_type(c);
        }
        if let Some(t) = &spec.split_type {
            input = input.split_type(SplitType::from(t.as_str()));
        }
        if let Some(c) = &spec.compression_type {
            input = input.compression_type(CompressionType::from(c.as_str()));
        }
        let mut output = TransformOutput::builder().s3_output_path(&spec.output_s3_path);
        if let Some(a) = &spec.accept {
            output = output.accept(a);
        }
        if let Some(a) = &spec.assemble_with {
            output = output.assemble_with(AssemblyType::from(a.as_str()));
        }
        let mut req = self
            .sagemaker
            .create_transform_job()
            .transform_job_name(name)
            .model_name(&spec.model_name)
            .transform_input(input.build())
            .transform_output(output.build())
            .transform_resources(
                TransformResources::builder()
                    .instance_type(TransformInstanceType::from(spec.instance_type.as_str()))
                    .instance_count(spec.instance_count)
                    .build(),
            )
            .set_max_concurrent_transforms(spec.max_concurrent_transforms)
            .set_max_payload_in_mb(spec.max_payload_in_mb)
            .set_batch_strategy(spec.batch_strategy.as_deref().map(BatchStrategy::from));
        for (k, v) in &spec.environment {
            req = req.environment(k, v);
        }
        for (k, v) in &spec.tags {
            req = req.tags(Tag::builder().key(k).value(v).build());
        }
        let out = req.send().limited(&self.limiter, OP).await.sent(OP)?;
        Ok(out.transform_job_arn().unwrap_or_default().to_string())
    }

    async fn describe_transform_job(&self, name: &str) -> AwsResult<Option<JobDescription>> {
        const OP: &str = "DescribeTransformJob";
        let Some(out) = found(
            OP,
            self.sagemaker
                .describe_transform_job()
                .transform_job_name(name)
                .send()
                .limited(&self.limiter, OP)
                .await,
        )?
        else {
            return Ok(None);
        };
        Ok(Some(JobDescription {
            arn: out.transform_job_arn().map(str::to_string),
            status: out
                .transform_job_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            secondary_status: None,
            failure_reason: out
                .failure_reason()
                .filter(|r| !r.is_empty())
                .map(str::to_string),
            model_artifacts: out
                .transform_output()
                .and_then(|o| o.s3_output_path())
                .map(str::to_string),
            best_candidate: None,
        }))
    }

    async fn stop_transform_job(&self, name: &str) -> AwsResult<()> {
        self.sagemaker
            .stop_transform_job()
            .transform_job_name(name)
            .send()
            .limited(&self.limiter, "StopTransformJob")
            .await
            .sent("StopTransformJob")?;
        Ok(())
    }

    async fn create_processing_job(&self, spec: &ProcessingJobSpec) -> AwsResult<String> {
        use aws_sdk_sagemaker::types::{
            AppSpecification, ProcessingClusterConfig, ProcessingInput, ProcessingInstanceType,
            ProcessingOutput, ProcessingOutputConfig, ProcessingResources, ProcessingS3DataType,
            ProcessingS3Input, ProcessingS3InputMode, ProcessingS3Output, ProcessingS3UploadMode,
            ProcessingStoppingCondition, Tag,
        };
        const OP: &str = "CreateProcessingJob";
        let mut req = self
            .sagemaker
            .create_processing_job()
            .processing_job_name(&spec.name)
            .role_arn(&spec.role_arn)
            .app_specification(
                AppSpecification::builder()
                    .image_uri(&spec.image)
                    .set_container_entrypoint(Some(spec.entrypoint.clone()))
                    .build(),
            )
            .processing_resources(
                ProcessingResources::builder()
                    .cluster_config(
                        ProcessingClusterConfig::builder()
                            .instance_type(ProcessingInstanceType::from(
                                spec.instance_type.as_str(),
                            ))
                            .instance_count(spec.instance_count)
                            .volume_size_in_gb(spec.volume_size_gb)
                            .build(),
                    )
                    .build(),
            )
            .stopping_condition(
                ProcessingStoppingCondition::builder()
                    .max_runtime_in_seconds(spec.max_runtime_secs)
                    .build(),
            )
            .processing_output_config(
                ProcessingOutputConfig::builder()
                    .outputs(
                        ProcessingOutput::builder()
                            .output_name(&spec.output.name)
                            .s3_output(
                                ProcessingS3Output::builder()
                                    .s3_uri(&spec.output.s3_uri)
                                    .local_path(&spec.output.local_path)
                                    .s3_upload_mode(ProcessingS3UploadMode::EndOfJob)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            );
        for input in &spec.inputs {
            req = req.processing_inputs(
                ProcessingInput::builder()
                    .input_name(&input.name)
                    .s3_input(
                        ProcessingS3Input::builder()
                            .s3_uri(&input.s3_uri)
                            .local_path(&input.local_path)
                            .s3_data_type(ProcessingS3DataType::S3Prefix)
                            .s3_input_mode(ProcessingS3InputMode::File)
                            .build(),
                    )
                    .build(),
            );
        }
        for (k, v) in &spec.environment {
            req = req.environment(k, v);
        }
        for (k, v) in &spec.tags {
            req = req.tags(Tag::builder().key(k).value(v).build());
        }
        let out = req.send().limited(&self.limiter, OP).await.sent(OP)?;
        Ok(out.processing_job_arn().unwrap_or_default().to_string())
    }

    async fn describe_processing_job(&self, name: &str) -> AwsResult<Option<JobDescription>> {
        const OP: &str = "DescribeProcessingJob";
        let Some(out) = found(
            OP,
            self.sagemaker
                .describe_processing_job()
                .processing_job_name(name)
                .send()
                .limited(&self.limiter, OP)
                .await,
        )?
        else {
            return Ok(None);
        };
        let failure_reason = out
            .failure_reason()
            .or(out.exit_message())
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        Ok(Some(JobDescription {
            arn: out.processing_job_arn().map(str::to_string),
            status: out
                .processing_job_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            secondary_status: None,
            failure_reason,
            model_artifacts: out
                .processing_output_config()
                .and_then(|c| c.outputs().first())
                .and_then(|o| o.s3_output())
                .and_then(|o| o.s3_uri())
                .map(str::to_string),
            best_candidate: None,
        }))
    }

    async fn stop_processing_job(&self, name: &str) -> AwsResult<()> {
        self.sagemaker
            .stop_processing_job()
            .processing_job_name(name)
            .send()
            .limited(&self.limiter, "StopProcessingJob")
            .await
            .sent("StopProcessingJob")?;
        Ok(())
    }

    async fn processing_job_log(&self, name: &str, max_bytes: usize) -> AwsResult<JobLog> {
        let (log, _) = self
            .processing_job_log_from(name, &super::LogCursor::default(), max_bytes)
            .await?;
        Ok(log)
    }

    async fn processing_job_log_from(
        &self,
        name: &str,
        cursor: &super::LogCursor,
        max_bytes: usize,
    ) -> AwsResult<(JobLog, super::LogCursor)> {
        const GROUP: &str = "/aws/sagemaker/ProcessingJobs";
        let mut cursor = cursor.clone();
        let Some(streams) = found(
            "DescribeLogStreams",
            self.logs
                .describe_log_streams()
                .log_group_name(GROUP)
                .log_stream_name_prefix(format!("{name}/"))
                .send()
                .limited(&self.limiter, "DescribeLogStreams")
                .await,
        )?
        else {
            return Ok((JobLog::default(), cursor));
        };
        let mut names: Vec<String> = streams
            .log_streams()
            .iter()
            .filter_map(|s| s.log_stream_name().map(str::to_string))
            .collect();
        names.sort();
        let mut log = JobLog::default();
        for stream in names {
            // A stream read before goes on from its saved token; a new one starts at its head.
            let mut token: Option<String> = cursor.streams.get(&stream).cloned();
            loop {
                let out = self
                    .logs
                    .get_log_events()
                    .log_group_name(GROUP)
                    .log_stream_name(&stream)
                    .set_start_from_head(token.is_none().then_some(true))
                    .set_next_token(token.clone())
                    .send()
                    .limited(&self.limiter, "GetLogEvents")
                    .await
                    .sent("GetLogEvents")?;
                for event in out.events() {
                    let line = event.message().unwrap_or_default();
                    if log.text.len() + line.len() + 1 > max_bytes {
                        log.truncated = true;
                        return Ok((log, cursor));
                    }
                    log.text.push_str(line);
                    log.text.push('\n');
                }
                // CloudWatch answers the token it was given once nothing new is left.
                let next = out.next_forward_token().map(str::to_string);
                if let Some(t) = next.as_ref().or(token.as_ref()) {
                    cursor.streams.insert(stream.clone(), t.clone());
                }
                if out.events().is_empty() || next.is_none() || next == token {
                    break;
                }
                token = next;
            }
        }
        Ok((log, cursor))
    }

    async fn create_model(&self, spec: &ModelSpec) -> AwsResult<String> {
        use aws_sdk_sagemaker::types::{ContainerDefinition, ContainerMode};
        const OP: &str = "CreateModel";
        let mut req = self
            .sagemaker
            .create_model()
            .model_name(&spec.model_name)
            .execution_role_arn(&spec.execution_role_arn);
        let containers: Vec<ContainerDefinition> = spec
            .containers
            .iter()
            .map(|c| {
                let mut b = ContainerDefinition::builder()
                    .image(&c.image)
                    .set_model_data_url(c.model_data_url.clone())
                    .set_mode(c.mode.as_deref().map(ContainerMode::from))
                    .set_container_hostname(c.container_hostname.clone());
                for (k, v) in &c.environment {
                    b = b.environment(k, v);
                }
                b.build()
            })
            .collect();
        // One container is the primary container; several are an inference pipeline.
        if containers.len() == 1 {
            req = req.primary_container(containers[0].clone());
        } else {
            for c in containers {
                req = req.containers(c);
            }
        }
        let out = req.send().limited(&self.limiter, OP).await.sent(OP)?;
        Ok(out.model_arn().unwrap_or_default().to_string())
    }

    async fn describe_model(&self, name: &str) -> AwsResult<Option<(ModelSpec, Option<String>)>> {
        Ok(self
            .describe_model_info(name)
            .await?
            .map(|m| (m.spec, m.arn)))
    }

    async fn describe_model_info(&self, name: &str) -> AwsResult<Option<ModelInfo>> {
        let Some(out) = found(
            "DescribeModel",
            self.sagemaker
                .describe_model()
                .model_name(name)
                .send()
                .limited(&self.limiter, "DescribeModel")
                .await,
        )?
        else {
            return Ok(None);
        };
        let to_spec = |c: &aws_sdk_sagemaker::types::ContainerDefinition| ContainerSpec {
            image: c.image().unwrap_or_default().to_string(),
            model_data_url: c.model_data_url().map(str::to_string),
            mode: c.mode().map(|m| m.as_str().to_string()),
            container_hostname: c.container_hostname().map(str::to_string),
            environment: c
                .environment()
                .map(|e| e.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        };
        let containers = match out.primary_container() {
            Some(p) => vec![to_spec(p)],
            None => out.containers().iter().map(to_spec).collect(),
        };
        Ok(Some(ModelInfo {
            spec: ModelSpec {
                model_name: out.model_name().unwrap_or(name).to_string(),
                execution_role_arn: out.execution_role_arn().unwrap_or_default().to_string(),
                containers,
            },
            arn: out.model_arn().map(str::to_string),
            created: out.creation_time().and_then(timestamp),
        }))
    }

    async fn list_models(
        &self,
        page_size: i32,
        max_pages: u32,
    ) -> AwsResult<Listing<ModelSummary>> {
        read_pages(max_pages, |token| async move {
            let out = self
                .sagemaker
                .list_models()
                .max_results(page_size)
                .set_next_token(token)
                .send()
                .limited(&self.limiter, "ListModels")
                .await
                .sent("ListModels")?;
            let items = out.models().iter().map(|m| ModelSummary {
                name: m.model_name().unwrap_or_default().to_string(),
                arn: m.model_arn().map(str::to_string),
                created: m.creation_time().and_then(timestamp),
            });
            Ok((items.collect(), out.next_token().map(str::to_string)))
        })
        .await
    }

    async fn list_jobs(&self, query: &JobQuery) -> AwsResult<Listing<JobSummary>> {
        self.list_jobs_paged(query).await
    }

    async fn list_endpoints(
        &self,
        page_size: i32,
        max_pages: u32,
    ) -> AwsResult<Listing<EndpointSummary>> {
        read_pages(max_pages, |token| async move {
            let out = self
                .sagemaker
                .list_endpoints()
                .max_results(page_size)
                .set_next_token(token)
                .send()
                .limited(&self.limiter, "ListEndpoints")
                .await
                .sent("ListEndpoints")?;
            let items = out.endpoints().iter().map(|e| EndpointSummary {
                name: e.endpoint_name().unwrap_or_default().to_string(),
                arn: e.endpoint_arn().map(str::to_string),
                status: e.endpoint_status().map(|s| s.as_str().to_string()),
                created: e.creation_time().and_then(timestamp),
                last_modified: e.last_modified_time().and_then(timestamp),
            });
            Ok((items.collect(), out.next_token().map(str::to_string)))
        })
        .await
    }

    async fn delete_model(&self, name: &str) -> AwsResult<()> {
        const OP: &str = "DeleteModel";
        self.sagemaker
            .delete_model()
            .model_name(name)
            .send()
            .limited(&self.limiter, OP)
            .await
            .sent(OP)?;
        Ok(())
    }

    async fn create_endpoint_config(&self, spec: &EndpointConfigSpec) -> AwsResult<String> {
        use aws_sdk_sagemaker::types::{ProductionVariant, ProductionVariantInstanceType};
        const OP: &str = "CreateEndpointConfig";
        let mut req = self
            .sagemaker
            .create_endpoint_config()
            .endpoint_config_name(&spec.endpoint_config_name);
        for v in &spec.production_variants {
            req = req.production_variants(
                ProductionVariant::builder()
                    .variant_name(&v.variant_name)
                    .model_name(&v.model_name)
                    .initial_instance_count(v.initial_instance_count)
                    .instance_type(ProductionVariantInstanceType::from(
                        v.instance_type.as_str(),
                    ))
                    .set_initial_variant_weight(v.initial_variant_weight)
                    .build(),
            );
        }
        if let Some(e) = &spec.explainer_config {
            req = req.explainer_config(to_sdk_explainer(e));
        }
        let out = req.send().limited(&self.limiter, OP).await.sent(OP)?;
        Ok(out.endpoint_config_arn().unwrap_or_default().to_string())
    }

    async fn describe_endpoint_config(
        &self,
        name: &str,
    ) -> AwsResult<Option<(EndpointConfigSpec, Option<String>)>> {
        let Some(out) = found(
            "DescribeEndpointConfig",
            self.sagemaker
                .describe_endpoint_config()
                .endpoint_config_name(name)
                .send()
                .limited(&self.limiter, "DescribeEndpointConfig")
                .await,
        )?
        else {
            return Ok(None);
        };
        let variants = out
            .production_variants()
            .iter()
            .map(|v| VariantSpec {
                variant_name: v.variant_name().unwrap_or_default().to_string(),
                model_name: v.model_name().unwrap_or_default().to_string(),
                initial_instance_count: v.initial_instance_count().unwrap_or_default(),
                instance_type: v
                    .instance_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                initial_variant_weight: v.initial_variant_weight(),
            })
            .collect();
        Ok(Some((
            EndpointConfigSpec {
                endpoint_config_name: out.endpoint_config_name().unwrap_or(name).to_string(),
                production_variants: variants,
                explainer_config: out.explainer_config().map(from_sdk_explainer),
            },
            out.endpoint_config_arn().map(str::to_string),
        )))
    }

    async fn describe_endpoint(&self, name: &str) -> AwsResult<Option<EndpointDescription>> {
        let Some(out) = found(
            "DescribeEndpoint",
            self.sagemaker
                .describe_endpoint()
                .endpoint_name(name)
                .send()
                .limited(&self.limiter, "DescribeEndpoint")
                .await,
        )?
        else {
            return Ok(None);
        };
        Ok(Some(EndpointDescription {
            arn: out.endpoint_arn().map(str::to_string),
            status: out
                .endpoint_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            config_name: out.endpoint_config_name().map(str::to_string),
            pending_config_name: out
                .pending_deployment_summary()
                .and_then(|p| p.endpoint_config_name())
                .map(str::to_string),
            failure_reason: out
                .failure_reason()
                .filter(|r| !r.is_empty())
                .map(str::to_string),
            created: out.creation_time().and_then(timestamp),
            last_modified: out.last_modified_time().and_then(timestamp),
        }))
    }

    async fn create_endpoint(
        &self,
        name: &str,
        config: &str,
        tags: &BTreeMap<String, String>,
    ) -> AwsResult<String> {
        use aws_sdk_sagemaker::types::Tag;
        const OP: &str = "CreateEndpoint";
        let mut req = self
            .sagemaker
            .create_endpoint()
            .endpoint_name(name)
            .endpoint_config_name(config);
        for (k, v) in tags {
            req = req.tags(Tag::builder().key(k).value(v).build());
        }
        let out = req.send().limited(&self.limiter, OP).await.sent(OP)?;
        Ok(out.endpoint_arn().unwrap_or_default().to_string())
    }

    async fn update_endpoint(&self, name: &str, config: &str) -> AwsResult<()> {
        const OP: &str = "UpdateEndpoint";
        self.sagemaker
            .update_endpoint()
            .endpoint_name(name)
            .endpoint_config_name(config)
            .send()
            .limited(&self.limiter, OP)
            .await
            .sent(OP)?;
        Ok(())
    }

    async fn delete_endpoint(&self, name: &str) -> AwsResult<()> {
        const OP: &str = "DeleteEndpoint";
        self.sagemaker
            .delete_endpoint()
            .endpoint_name(name)
            .send()
            .limited(&self.limiter, OP)
            .await
            .sent(OP)?;
        Ok(())
    }

    async fn delete_endpoint_config(&self, name: &str) -> AwsResult<()> {
        const OP: &str = "DeleteEndpointConfig";
        self.sagemaker
            .delete_endpoint_config()
            .endpoint_config_name(name)
            .send()
            .limited(&self.limiter, OP)
            .await
            .sent(OP)?;
        Ok(())
    }

    async fn invoke_endpoint(
        &self,
        endpoint: &str,
        content_type: &str,
        accept: Option<&str>,
        body: Vec<u8>,
        inference_id: &str,
    ) -> AwsResult<InvokeOutput> {
        const OP: &str = "InvokeEndpoint";
        let out = self
            .runtime
            .invoke_endpoint()
            .endpoint_name(endpoint)
            .content_type(content_type)
            .set_accept(accept.map(str::to_string))
            .inference_id(inference_id)
            .body(aws_sdk_sagemakerruntime::primitives::Blob::new(body))
            .send()
            .limited(&self.limiter, OP)
            .await
            .sent(OP)?;
        Ok(InvokeOutput {
            content_type: out.content_type().map(str::to_string),
            body: out.body().map(|b| b.as_ref().to_vec()).unwrap_or_default(),
        })
    }

    async fn explain_endpoint(
        &self,
        endpoint: &str,
        content_type: &str,
        body: Vec<u8>,
        enable_explanations: &str,
        inference_id: &str,
    ) -> AwsResult<InvokeOutput> {
        const OP: &str = "InvokeEndpoint";
        let out = self
            .runtime
            .invoke_endpoint()
            .endpoint_name(endpoint)
            .content_type(content_type)
            .accept("application/json")
            .enable_explanations(enable_explanations)
            .inference_id(inference_id)
            .body(aws_sdk_sagemakerruntime::primitives::Blob::new(body))
            .send()
            .limited(&self.limiter, OP)
            .await
            .sent(OP)?;
        Ok(InvokeOutput {
            content_type: out.content_type().map(str::to_string),
            body: out.body().map(|b| b.as_ref().to_vec()).unwrap_or_default(),
        })
    }
}

/// An SDK time as ours.
/// Reads a paged List* call to its end, at most `max_pages` pages: `page(token)` sends one
/// request and returns its items and the next token (absent or empty on the last page).
async fn read_pages<T, F, Fut>(max_pages: u32, mut page: F) -> AwsResult<Listing<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = AwsResult<(Vec<T>, Option<String>)>>,
{
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..max_pages {
        let (page_items, next) = page(token.take()).await?;
        items.extend(page_items);
        token = next.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(Listing {
                items,
                truncated: false,
            });
        }
    }
    Ok(Listing {
        items,
        truncated: true,
    })
}

fn timestamp(t: &aws_sdk_sagemaker::primitives::DateTime) -> Option<Timestamp> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn to_sdk_explainer(e: &ExplainerConfig) -> aws_sdk_sagemaker::types::ExplainerConfig {
    use aws_sdk_sagemaker::types as t;
    let c = &e.clarify_explainer_config;
    let b = &c.shap_config.shap_baseline_config;
    let shap = t::ClarifyShapConfig::builder()
        .shap_baseline_config(
            t::ClarifyShapBaselineConfig::builder()
                .set_mime_type(b.mime_type.clone())
                .set_shap_baseline(b.shap_baseline.clone())
                .set_shap_baseline_uri(b.shap_baseline_uri.clone())
                .build(),
        )
        .set_number_of_samples(c.shap_config.number_of_samples)
        .set_use_logit(c.shap_config.use_logit)
        .set_seed(c.shap_config.seed)
        .build();
    let inference = c.inference_config.as_ref().map(|i| {
        t::ClarifyInferenceConfig::builder()
            .set_features_attribute(i.features_attribute.clone())
            .set_content_template(i.content_template.clone())
            .set_max_record_count(i.max_record_count)
            .set_max_payload_in_mb(i.max_payload_in_mb)
            .set_probability_index(i.probability_index)
            .set_label_index(i.label_index)
            .set_probability_attribute(i.probability_attribute.clone())
            .set_label_attribute(i.label_attribute.clone())
            .set_label_headers((!i.label_headers.is_empty()).then(|| i.label_headers.clone()))
            .set_feature_headers((!i.feature_headers.is_empty()).then(|| i.feature_headers.clone()))
            .build()
    });
    t::ExplainerConfig::builder()
        .clarify_explainer_config(
            t::ClarifyExplainerConfig::builder()
                .set_enable_explanations(c.enable_explanations.clone())
                .set_inference_config(inference)
                .shap_config(shap)
                .build(),
        )
        .build()
}

fn from_sdk_explainer(e: &aws_sdk_sagemaker::types::ExplainerConfig) -> ExplainerConfig {
    let Some(c) = e.clarify_explainer_config() else {
        return ExplainerConfig::default();
    };
    let shap = c.shap_config();
    let b = shap.and_then(|s| s.shap_baseline_config());
    ExplainerConfig {
        clarify_explainer_config: ClarifyExplainerConfig {
            enable_explanations: c.enable_explanations().map(str::to_string),
            inference_config: c.inference_config().map(|i| ClarifyInferenceConfig {
                features_attribute: i.features_attribute().map(str::to_string),
                content_template: i.content_template().map(str::to_string),
                max_record_count: i.max_record_count(),
                max_payload_in_mb: i.max_payload_in_mb(),
                probability_index: i.probability_index(),
                label_index: i.label_index(),
                probability_attribute: i.probability_attribute().map(str::to_string),
                label_attribute: i.label_attribute().map(str::to_string),
                label_headers: i.label_headers().to_vec(),
                feature_headers: i.feature_headers().to_vec(),
            }),
            shap_config: ClarifyShapConfig {
                shap_baseline_config: ClarifyShapBaselineConfig {
                    mime_type: b.and_then(|b| b.mime_type()).map(str::to_string),
                    shap_baseline: b.and_then(|b| b.shap_baseline()).map(str::to_string),
                    shap_baseline_uri: b.and_then(|b| b.shap_baseline_uri()).map(str::to_string),
                },
                number_of_samples: shap.and_then(|s| s.number_of_samples()),
                use_logit: shap.and_then(|s| s.use_logit()),
                seed: shap.and_then(|s| s.seed()),
            },
        },
    }
}
