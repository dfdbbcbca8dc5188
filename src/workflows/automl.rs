//! The SageMaker AutoML workflow (`workflows/automl.toml`): the shared job steps
//! ([`super::job`]) around CreateAutoMLJobV2, DescribeAutoMLJobV2 and StopAutoMLJob. Done records
//! the best candidate (name, objective metric and value, inference containers).

use super::StepError;
use super::deployment::{DeployContext, DeployRequest};
use super::input::{DATA_FIELDS, DataSpec, InputLimits, InputSource, Origin};
use super::job::{JobContext, JobWorkflow, SageMakerJob};
use crate::aws::{
    AutomlJobSpec, AwsError, AwsPort, AwsResult, ContainerSpec, EndpointConfigSpec, JobDescription,
    ModelSpec, VariantSpec,
};
use crate::model::Kind;
use crate::store::NewRun;
use crate::store::Run;
use crate::validate::{self, Fields, InputError, InputResult, Mode};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use tokio::io::AsyncReadExt;
use uuid::Uuid;

/// A validated AutoML request, as stored with the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutomlRequest {
    #[serde(flatten)]
    pub data: DataSpec,
    pub target_attribute_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective_metric: Option<String>,
    pub max_candidates: i32,
    pub max_runtime_secs: i32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Deploy the best candidate once the job completed (a linked deployment run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<AutomlDeploy>,
    /// The job name the caller chose (`job_name` of the snake_case body), else one is derived
    /// from the run id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Where the job writes, when the request says so (`output_data_config.s3_output_path`, or
    /// `s3://{Bucket}/{S3Prefix}/output` for the Python service's `/train` body); else under the
    /// run's own prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_s3_path: Option<String>,
}

/// Where and how to serve AutoML's best candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutomlDeploy {
    pub endpoint_name: String,
    pub instance_type: String,
    pub instance_count: i32,
}

/// The AutoML-specific request fields (besides [`DATA_FIELDS`]).
pub const REQUEST_FIELDS: &[&str] = &[
    "target_attribute_name",
    "problem_type",
    "objective_metric",
    "max_candidates",
    "max_runtime_seconds",
    "Tags",
    "type",
    "deploy",
];

const PROBLEM_TYPES: &[&str] = &[
    "BinaryClassification",
    "MulticlassClassification",
    "Regression",
];

const METRICS: &[&str] = &[
    "Accuracy",
    "MSE",
    "F1",
    "F1macro",
    "AUC",
    "RMSE",
    "BalancedAccuracy",
    "R2",
    "Recall",
    "RecallMacro",
    "Precision",
    "PrecisionMacro",
    "MAE",
    "MAPE",
    "MASE",
    "WAPE",
    "AverageWeightedQuantileLoss",
];

/// The keys of the Python service's snake_case AutoML body (others are ignored).
pub const SNAKE_FIELDS: &[&str] = &[
    "job_name",
    "input_data_config",
    "output_data_config",
    "target_attribute_name",
    "role_arn",
    "problem_type",
    "objective",
    "max_candidates",
    "total_job_runtime_in_seconds",
    "tags",
];

/// AutoML's CSV content type.
const AUTOML_CSV: &str = "text/csv;header=present";

/// AutoML accepts CSV only as `text/csv;header=present`: a plain `text/csv` is read as that (as
/// the Python service did); anything else is passed on for SageMaker to judge.
fn automl_content_type(c: &str) -> String {
    let lower = c.to_ascii_lowercase();
    if lower.starts_with("text/csv") && !lower.contains("header=") {
        AUTOML_CSV.to_string()
    } else {
        c.to_string()
    }
}

fn target_column(target: String) -> InputResult<String> {
    if target.len() > 256 || target.chars().any(char::is_control) {
        return Err(InputError::invalid(
            "target_attribute_name",
            "must be a column name of at most 256 characters",
        ));
    }
    Ok(target)
}

/// An AutoML job name: 1 to 32 letters, digits and hyphens, starting and ending with a letter or
/// digit (SageMaker's pattern for AutoML jobs).
pub fn automl_job_name(field: &str, s: &str) -> InputResult<String> {
    if s.len() > 32 {
        return Err(InputError::invalid(field, "must be at most 32 characters"));
    }
    validate::sagemaker_name(field, s)
}

/// How much of the data is read to find the CSV header.
const HEADER_BYTES: u64 = 64 * 1024;

fn one_of(field: &str, value: Option<String>, allowed: &[&str]) -> InputResult<Option<String>> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(InputError::invalid(
            field,
            format!("must be one of {}", allowed.join(", ")),
        )),
        other => Ok(other),
    }
}

impl AutomlRequest {
    /// Parses an untrusted body. Unknown fields are `Malformed`; bad values name their field.
    pub fn parse(body: Value, limits: &InputLimits) -> InputResult<AutomlRequest> {
        Self::parse_mode(body, limits, Mode::Strict)
    }

    /// [`AutomlRequest::parse`] in a chosen mode ([`Mode::Essedum`] on the backend's routes:
    /// unknown keys ignored, `""` absent).
    pub fn parse_mode(body: Value, limits: &InputLimits, mode: Mode) -> InputResult<AutomlRequest> {
        let allowed: Vec<&str> = DATA_FIELDS.iter().chain(REQUEST_FIELDS).copied().collect();
        let mut f = Fields::with_mode(body, &allowed, mode)?;
        if let Some(t) = f.opt_str("type")?
            && !matches!(t.as_str(), "automl" | "sagemaker-automl")
        {
            return Err(InputError::invalid(
                "type",
                format!("{t:?} is not an AutoML type; use \"automl\""),
            ));
        }
        let mut data = DataSpec::parse(&mut f, limits, AUTOML_CSV)?;
        data.content_type = automl_content_type(&data.content_type);
        let target = target_column(f.str("target_attribute_name")?)?;
        let problem_type = one_of("problem_type", f.opt_str("problem_type")?, PROBLEM_TYPES)?;
        let objective_metric = one_of("objective_metric", f.opt_str("objective_metric")?, METRICS)?;
        let max_candidates = f.opt_int("max_candidates", 1, 750)?.unwrap_or(250) as i32;
        let max_runtime_secs = f
            .opt_int("max_runtime_seconds", 1, 2_592_000)?
            .unwrap_or(2_592_000) as i32;
        let tags = f.opt_string_map("Tags")?.unwrap_or_default();
        if tags.len() > 50 {
            return Err(InputError::invalid("Tags", "at most 50 tags"));
        }
        for (k, v) in &tags {
            if k.is_empty() || k.len() > 128 || v.len() > 256 || k.starts_with("aws:") {
                return Err(InputError::invalid(
                    &format!("Tags.{k}"),
                    "keys are 1-128 characters not starting with aws:, values at most 256",
                ));
            }
        }
        let deploy = match f.opt_object(
            "deploy",
            &["endpoint_name", "instance_type", "instance_count"],
        )? {
            None => None,
            Some(mut d) => {
                let endpoint_name = d
                    .opt_str("endpoint_name")?
                    .map(|n| crate::validate::sagemaker_name("deploy.endpoint_name", &n))
                    .transpose()?
                    .unwrap_or_default();
                let instance_type = d.str("instance_type")?;
                if !instance_type.starts_with("ml.") {
                    return Err(InputError::invalid(
                        "deploy.instance_type",
                        "must be a SageMaker instance type such as ml.m5.large",
                    ));
                }
                let instance_count = d
                    .opt_int("instance_count", 1, 100)?
                    .ok_or_else(|| InputError::invalid("deploy.instance_count", "is required"))?
                    as i32;
                Some(AutomlDeploy {
                    endpoint_name,
                    instance_type,
                    instance_count,
                })
            }
        };
        Ok(AutomlRequest {
            deploy,
            data,
            target_attribute_name: target,
            problem_type,
            objective_metric,
            max_candidates,
            max_runtime_secs,
            tags,
            origin: None,
            job_name: None,
            output_s3_path: None,
        })
    }

    /// The Python service's snake_case body of `POST /pipelines/training/automl`, read in
    /// [`Mode::Essedum`]: `{job_name?, input_data_config {s3_uri, content_type?},
    /// output_data_config {s3_output_path}, target_attribute_name, role_arn, problem_type?,
    /// objective {metric_name}?, max_candidates?, total_job_runtime_in_seconds?, tags [{Key,
    /// Value}]?}`.
    pub fn parse_snake(body: Value) -> InputResult<AutomlRequest> {
        let mut f = Fields::essedum(body, SNAKE_FIELDS)?;
        let job_name = f
            .opt_str("job_name")?
            .map(|n| automl_job_name("job_name", &n))
            .transpose()?;
        let mut input = f.object("input_data_config", &["s3_uri", "content_type"])?;
        let uri = validate::s3_uri("input_data_config.s3_uri", &input.str("s3_uri")?)?;
        let content_type = match input.opt_str("content_type")? {
            Some(c) => {
                automl_content_type(&validate::token("input_data_config.content_type", &c, 256)?)
            }
            None => AUTOML_CSV.to_string(),
        };
        let mut output = f.object("output_data_config", &["s3_output_path"])?;
        let output_s3_path = validate::s3_uri(
            "output_data_config.s3_output_path",
            &output.str("s3_output_path")?,
        )?;
        let target = target_column(f.str("target_attribute_name")?)?;
        let role_arn = validate::role_arn("role_arn", &f.str("role_arn")?)?;
        let problem_type = one_of("problem_type", f.opt_str("problem_type")?, PROBLEM_TYPES)?;
        let objective_metric = match f.opt_object("objective", &["metric_name"])? {
            Some(mut o) => one_of("objective.metric_name", o.opt_str("metric_name")?, METRICS)?,
            None => None,
        };
        let max_candidates = f.opt_int("max_candidates", 1, 750)?.unwrap_or(250) as i32;
        let max_runtime_secs = f
            .opt_int("total_job_runtime_in_seconds", 1, 2_592_000)?
            .unwrap_or(2_592_000) as i32;
        let mut tags = BTreeMap::new();
        if let Some(items) = f.take_value("tags") {
            let Value::Array(items) = items else {
                return Err(InputError::invalid(
                    "tags",
                    "must be an array of {Key, Value}",
                ));
            };
            if items.len() > 50 {
                return Err(InputError::invalid("tags", "at most 50 tags"));
            }
            for (i, item) in items.into_iter().enumerate() {
                let path = format!("tags[{i}]");
                let mut t =
                    Fields::at_path_mode(item, &["Key", "Value"], &format!("{path}."), f.mode())?;
                let key = t.str("Key")?;
                let value = t.opt_str("Value")?.unwrap_or_default();
                if key.len() > 128 || value.len() > 256 || key.starts_with("aws:") {
                    return Err(InputError::invalid(
                        &path,
                        "keys are 1-128 characters not starting with aws:, values at most 256",
                    ));
                }
                tags.insert(key, value);
            }
        }
        let (bucket, _) = uri
            .trim_start_matches("s3://")
            .split_once('/')
            .unwrap_or((uri.trim_start_matches("s3://"), ""));
        Ok(AutomlRequest {
            data: DataSpec {
                role_arn,
                bucket: bucket.to_string(),
                s3_prefix: String::new(),
                input: InputSource::S3 { uri },
                content_type,
            },
            target_attribute_name: target,
            problem_type,
            objective_metric,
            max_candidates,
            max_runtime_secs,
            tags,
            origin: None,
            deploy: None,
            job_name,
            output_s3_path: Some(output_s3_path),
        })
    }

    /// Where the job writes.
    pub fn output_path(&self, run_id: Uuid) -> String {
        self.output_s3_path
            .clone()
            .unwrap_or_else(|| self.data.output_path(run_id))
    }

    /// The job's name: the caller's, or one derived from the run id.
    pub fn name_for(&self, run_id: Uuid) -> String {
        self.job_name.clone().unwrap_or_else(|| job_name(run_id))
    }

    /// Checks that the data's CSV header names the target column when the header can be read,
    /// reading only the start of the data (for an S3 object, a ranged GET). `inputs_field` names
    /// the request field of an S3 input. An S3 prefix (AutoML reads every file under it) or an
    /// object this service cannot read (access, S3 unavailable) is not checked, as the Python
    /// service did: SageMaker checks it when the job starts. A missing object is a 422.
    pub async fn check_target_column(
        &self,
        aws: &dyn AwsPort,
        inputs_field: &str,
    ) -> InputResult<()> {
        let (field, start) = match &self.data.input {
            InputSource::InlineCsv { csv } => (
                "inline_csv",
                csv.as_bytes()[..csv.len().min(HEADER_BYTES as usize)].to_vec(),
            ),
            InputSource::LocalFile { path } => {
                let mut buf = Vec::new();
                let read = async {
                    let file = tokio::fs::File::open(path).await?;
                    file.take(HEADER_BYTES).read_to_end(&mut buf).await
                };
                if let Err(e) = read.await {
                    return Err(InputError::invalid(
                        "local_dataset_path",
                        format!("cannot be read: {e}"),
                    ));
                }
                ("local_dataset_path", buf)
            }
            InputSource::S3 { uri } => {
                let rest = uri.trim_start_matches("s3://");
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                if key.is_empty() || key.ends_with('/') {
                    return Ok(());
                }
                let unchecked = |e: &AwsError| {
                    tracing::warn!(
                        error = %e,
                        "could not read the AutoML input's CSV header; SageMaker checks it"
                    );
                };
                match aws.read_object_start(bucket, key, HEADER_BYTES).await {
                    Ok(Some(bytes)) => (inputs_field, bytes),
                    // Not an object: a prefix named without its slash is fine when files lie
                    // under it.
                    Ok(None) => match aws.list_objects(bucket, key, None, 1).await {
                        Ok(page) if !page.objects.is_empty() => return Ok(()),
                        Ok(_) => {
                            return Err(InputError::invalid(
                                inputs_field,
                                format!("{uri} does not exist"),
                            ));
                        }
                        Err(e) if e.code.as_deref() == Some("NoSuchBucket") => {
                            return Err(InputError::invalid(
                                inputs_field,
                                format!("{uri}: no such bucket"),
                            ));
                        }
                        Err(e) => {
                            unchecked(&e);
                            return Ok(());
                        }
                    },
                    Err(e) => {
                        unchecked(&e);
                        return Ok(());
                    }
                }
            }
        };
        let columns = match csv_header(&start) {
            Some(c) => c,
            None => {
                return Err(InputError::invalid(
                    field,
                    "has no CSV header line (or it is longer than 64 KiB)",
                ));
            }
        };
        if columns.iter().any(|c| c == &self.target_attribute_name) {
            Ok(())
        } else {
            Err(InputError::invalid(
                "target_attribute_name",
                format!(
                    "column {:?} is not in the CSV header ({})",
                    self.target_attribute_name,
                    columns.join(", ")
                ),
            ))
        }
    }
}

/// The column names of a CSV header line (quotes and surrounding spaces removed), or None when
/// the data holds no complete, non-empty first line.
pub fn csv_header(start: &[u8]) -> Option<Vec<String>> {
    let text = String::from_utf8_lossy(start);
    let text = text.trim_start_matches('\u{feff}');
    let line = match text.find('\n') {
        Some(i) => &text[..i],
        None if (start.len() as u64) < HEADER_BYTES => text,
        None => return None,
    };
    let line = line.trim_end_matches('\r');
    if line.trim().is_empty() {
        return None;
    }
    let mut columns = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => columns.push(std::mem::take(&mut field).trim().to_string()),
            c => field.push(c),
        }
    }
    columns.push(field.trim().to_string());
    Some(columns)
}

/// The deterministic AutoML job name for a run: AutoML names are at most 32 characters, so it is
/// `aml` and 29 hex digits of the run id (without the UUID's fixed version and variant digits).
pub fn job_name(run_id: Uuid) -> String {
    let hex = run_id.simple().to_string();
    let entropy: String = hex
        .char_indices()
        .filter(|(i, _)| *i != 12 && *i != 16)
        .map(|(_, c)| c)
        .collect();
    format!("aml{}", &entropy[..29])
}

/// SageMaker AutoML (V2) jobs.
pub struct AutomlJob;

/// The AutoML workflow.
pub type AutomlWorkflow = JobWorkflow<AutomlJob>;

pub fn workflow() -> AutomlWorkflow {
    JobWorkflow(AutomlJob)
}

pub fn new_context(run_id: Uuid) -> JobContext {
    JobContext::new(job_name(run_id))
}

#[async_trait]
impl SageMakerJob for AutomlJob {
    fn kind(&self) -> Kind {
        Kind::Automl
    }

    fn noun(&self) -> &'static str {
        "AutoML job"
    }

    async fn describe(&self, aws: &dyn AwsPort, name: &str) -> AwsResult<Option<JobDescription>> {
        aws.describe_automl_job(name).await
    }

    async fn create(&self, aws: &dyn AwsPort, run: &Run, ctx: &JobContext) -> AwsResult<String> {
        const OP: &str = "CreateAutoMLJobV2";
        let req: AutomlRequest = serde_json::from_value(run.request.clone())
            .map_err(|e| AwsError::terminal(OP, format!("stored request is unreadable: {e}")))?;
        let spec = AutomlJobSpec {
            name: ctx.job_name.clone(),
            role_arn: req.data.role_arn.clone(),
            input_s3_uri: ctx
                .input_s3_uri
                .clone()
                .ok_or_else(|| AwsError::terminal(OP, "no input location recorded".into()))?,
            content_type: req.data.content_type.clone(),
            output_s3_path: req.output_path(run.id),
            target_attribute_name: req.target_attribute_name.clone(),
            problem_type: req.problem_type.clone(),
            objective_metric: req.objective_metric.clone(),
            max_candidates: req.max_candidates,
            max_runtime_secs: req.max_runtime_secs,
            tags: req.tags.clone(),
        };
        aws.create_automl_job(&spec).await
    }

    async fn stop(&self, aws: &dyn AwsPort, name: &str) -> AwsResult<()> {
        aws.stop_automl_job(name).await
    }

    /// With `deploy`, a deployment run of the best candidate: its model (the candidate's
    /// inference containers) and endpoint config are named after this run, so a repeated
    /// attempt reuses them.
    fn on_done(&self, run: &Run, ctx: &JobContext) -> Result<Vec<NewRun>, StepError> {
        let req: AutomlRequest = serde_json::from_value(run.request.clone())
            .map_err(|e| StepError::terminal(format!("stored request is unreadable: {e}")))?;
        let Some(deploy) = req.deploy else {
            return Ok(Vec::new());
        };
        let containers: Vec<ContainerSpec> = ctx
            .best_candidate
            .as_ref()
            .and_then(|b| b["InferenceContainers"].as_array())
            .map(|cs| {
                cs.iter()
                    .map(|c| ContainerSpec {
                        image: c["Image"].as_str().unwrap_or_default().to_string(),
                        model_data_url: c["ModelDataUrl"].as_str().map(str::to_string),
                        mode: None,
                        container_hostname: None,
                        environment: serde_json::from_value(c["Environment"].clone())
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if containers.is_empty() {
            return Err(StepError::terminal(
                "the AutoML job completed without a best candidate to deploy",
            ));
        }
        let hex = run.id.simple();
        let endpoint = if deploy.endpoint_name.is_empty() {
            format!("essedum-aml-{hex}")
        } else {
            deploy.endpoint_name.clone()
        };
        let model = ModelSpec {
            model_name: format!("essedum-aml-model-{hex}"),
            execution_role_arn: req.data.role_arn.clone(),
            containers,
        };
        let config = EndpointConfigSpec {
            endpoint_config_name: format!("essedum-aml-cfg-{hex}"),
            production_variants: vec![VariantSpec {
                variant_name: "AllTraffic".into(),
                model_name: model.model_name.clone(),
                initial_instance_count: deploy.instance_count,
                instance_type: deploy.instance_type.clone(),
                initial_variant_weight: None,
            }],
            explainer_config: None,
        };
        let child = DeployRequest {
            endpoint_name: endpoint.clone(),
            endpoint_config_name: config.endpoint_config_name.clone(),
            tags: BTreeMap::new(),
            model: Some(model),
            config: Some(config),
            parent_run: Some(run.id.to_string()),
        };
        let mut request = serde_json::to_value(&child).expect("request serialises");
        // The child deploys with the parent's AWS: it carries the same connection reference.
        if let (Some(connection), Some(map)) =
            (run.request.get("connection"), request.as_object_mut())
        {
            map.insert("connection".into(), connection.clone());
        }
        Ok(vec![NewRun {
            id: Uuid::now_v7(),
            kind: Kind::Deployment,
            state: crate::model::State::Submitted,
            request,
            context: DeployContext::new(&endpoint).to_value(),
            resource_name: None,
            submitted_by: run.submitted_by.clone(),
            detail: format!(
                "started by AutoML run {} to serve its best candidate",
                run.id
            ),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> InputLimits {
        InputLimits {
            data_dir: None,
            max_inline_csv_bytes: 1024,
        }
    }

    #[test]
    fn automl_job_names_are_deterministic_short_and_valid() {
        let id = Uuid::now_v7();
        let name = job_name(id);
        assert_eq!(name, job_name(id));
        assert_eq!(name.len(), 32);
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(job_name(Uuid::now_v7()), name);
    }

    #[test]
    fn csv_headers_are_split_with_quotes_and_bom() {
        assert_eq!(csv_header(b"a,b,c\n1,2,3\n").unwrap(), ["a", "b", "c"]);
        assert_eq!(
            csv_header("\u{feff}\"x, y\", z \r\n".as_bytes()).unwrap(),
            ["x, y", "z"]
        );
        assert_eq!(
            csv_header(b"\"he said \"\"hi\"\"\",b").unwrap(),
            ["he said \"hi\"", "b"]
        );
        assert!(csv_header(b"\n1,2").is_none());
        assert!(csv_header(&vec![b'a'; HEADER_BYTES as usize]).is_none());
    }

    #[test]
    fn requests_are_validated_field_by_field() {
        let body = json!({
            "RoleArn": "arn:aws:iam::123456789012:role/R",
            "Bucket": "bucket",
            "S3Prefix": "p",
            "inline_csv": "label,x\n1,2\n",
            "target_attribute_name": "label",
            "problem_type": "BinaryClassification",
            "type": "automl",
        });
        let r = AutomlRequest::parse(body.clone(), &limits()).unwrap();
        assert_eq!(r.data.content_type, "text/csv;header=present");
        assert_eq!((r.max_candidates, r.max_runtime_secs), (250, 2_592_000));
        for (k, v, field) in [
            ("problem_type", json!("Clustering"), "problem_type"),
            ("objective_metric", json!("Speed"), "objective_metric"),
            ("max_candidates", json!(0), "max_candidates"),
            ("Tags", json!({"aws:x": "1"}), "Tags.aws:x"),
            ("type", json!("training"), "type"),
            ("target_attribute_name", json!(""), "target_attribute_name"),
        ] {
            let mut b = body.clone();
            b[k] = v;
            assert_eq!(
                AutomlRequest::parse(b, &limits()).unwrap_err().field(),
                Some(field),
                "{k}"
            );
        }
    }

    #[test]
    fn the_python_snake_case_body_is_read_in_essedum_mode() {
        let body = json!({
            "job_name": "churn-1",
            "input_data_config": {"s3_uri": "s3://bkt/data/train.csv", "content_type": "text/csv", "compression_type": ""},
            "output_data_config": {"s3_output_path": "s3://out-bkt/automl"},
            "target_attribute_name": "label",
            "role_arn": "arn:aws:iam::123456789012:role/R",
            "problem_type": "",
            "objective": {"metric_name": "AUC"},
            "tags": [{"Key": "team", "Value": "ml"}],
            "algorithm_preference": ["xgboost"],
        });
        let r = AutomlRequest::parse_snake(body.clone()).unwrap();
        assert_eq!(r.name_for(Uuid::nil()), "churn-1");
        assert_eq!(r.output_path(Uuid::nil()), "s3://out-bkt/automl");
        assert_eq!(r.data.content_type, "text/csv;header=present");
        assert_eq!(r.data.bucket, "bkt");
        assert_eq!(r.problem_type, None, "\"\" is absent");
        assert_eq!(r.objective_metric.as_deref(), Some("AUC"));
        assert_eq!(r.tags.get("team").map(String::as_str), Some("ml"));
        // Stored and read back, the request is the same.
        let stored = serde_json::to_value(&r).unwrap();
        assert_eq!(serde_json::from_value::<AutomlRequest>(stored).unwrap(), r);
        for (path, v, field) in [
            ("job_name", json!("has_underscore"), "job_name"),
            ("tags", json!({"team": "ml"}), "tags"),
            ("max_candidates", json!(0), "max_candidates"),
        ] {
            let mut b = body.clone();
            b[path] = v;
            assert_eq!(
                AutomlRequest::parse_snake(b).unwrap_err().field(),
                Some(field)
            );
        }
        // Without job_name the name comes from the run id.
        let mut b = body;
        b["job_name"] = json!("");
        let id = Uuid::now_v7();
        assert_eq!(
            AutomlRequest::parse_snake(b).unwrap().name_for(id),
            job_name(id)
        );
    }

    #[test]
    fn the_linked_deployment_carries_the_parents_connection() {
        let body = json!({
            "RoleArn": "arn:aws:iam::123456789012:role/R",
            "Bucket": "bucket",
            "inline_csv": "label,x\n1,2\n",
            "target_attribute_name": "label",
            "deploy": {"instance_type": "ml.m5.large", "instance_count": 1},
        });
        let req = AutomlRequest::parse(body, &limits()).unwrap();
        let connection = json!({
            "base_url": "http://backend.example/",
            "project": "p1",
            "adapter_instance": "a1",
        });
        // The stored request carries the reference; reading it back ignores the extra key.
        let mut stored = serde_json::to_value(&req).unwrap();
        stored["connection"] = connection.clone();
        assert_eq!(
            serde_json::from_value::<AutomlRequest>(stored.clone()).unwrap(),
            req
        );
        let now = chrono::Utc::now();
        let mut run = Run {
            id: Uuid::now_v7(),
            kind: Kind::Automl,
            state: crate::model::State::Polling,
            request: stored,
            context: Value::Null,
            resource_name: None,
            attempt: 0,
            version: 1,
            next_due_at: None,
            lease_owner: None,
            lease_until: None,
            cancel_requested: false,
            last_error: None,
            degraded_since: None,
            submitted_by: None,
            created_at: now,
            updated_at: now,
        };
        let ctx = JobContext {
            best_candidate: Some(json!({"InferenceContainers": [{"Image": "img:1"}]})),
            ..JobContext::new(job_name(run.id))
        };
        let children = AutomlJob.on_done(&run, &ctx).unwrap();
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].request["connection"], connection);
        let child: DeployRequest = serde_json::from_value(children[0].request.clone()).unwrap();
        assert_eq!(child.parent_run, Some(run.id.to_string()));

        // Without a connection the child has none either.
        run.request.as_object_mut().unwrap().remove("connection");
        let children = AutomlJob.on_done(&run, &ctx).unwrap();
        assert!(children[0].request.get("connection").is_none());
    }
}
