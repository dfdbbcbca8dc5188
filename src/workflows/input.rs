//! Where a job's data comes from and where its results go: the request fields every SageMaker
//! job kind shares (`RoleArn`, `Bucket`, `S3Prefix`, one input, `content_type`), parsed once, and
//! the deterministic S3 keys derived from them.

use crate::validate::{self, Fields, InputError, InputResult};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Where a job's data comes from: exactly one of the three request fields.
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

/// Limits that come from configuration.
#[derive(Clone, Debug)]
pub struct InputLimits {
    /// Where `local_dataset_path` files may live; None disables that input.
    pub data_dir: Option<PathBuf>,
    pub max_inline_csv_bytes: usize,
}

/// Essedum's `project` and `adapter_instance` query parameters of the submitting call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_instance: Option<String>,
}

/// The request fields [`DataSpec::parse`] reads.
pub const DATA_FIELDS: &[&str] = &[
    "RoleArn",
    "Bucket",
    "S3Prefix",
    "inputs",
    "inline_csv",
    "local_dataset_path",
    "content_type",
];

/// The shared part of a job request, as stored with the run (flattened into the request).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    pub role_arn: String,
    pub bucket: String,
    pub s3_prefix: String,
    pub input: InputSource,
    pub content_type: String,
}

impl DataSpec {
    /// Reads the shared fields; `default_content_type` when `content_type` is absent.
    pub fn parse(
        f: &mut Fields,
        limits: &InputLimits,
        default_content_type: &str,
    ) -> InputResult<DataSpec> {
        let role_arn = validate::role_arn("RoleArn", &f.str("RoleArn")?)?;
        let bucket = validate::bucket_name("Bucket", &f.str("Bucket")?)?;
        let s3_prefix =
            validate::key_prefix("S3Prefix", &f.opt_str("S3Prefix")?.unwrap_or_default())?;
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
                path: local_path("local_dataset_path", &f.str("local_dataset_path")?, limits)?,
            },
        };
        let content_type = match f.opt_str("content_type")? {
            Some(c) => validate::token("content_type", &c, 256)?,
            None => default_content_type.to_string(),
        };
        Ok(DataSpec {
            role_arn,
            bucket,
            s3_prefix,
            input,
            content_type,
        })
    }

    /// `{S3Prefix}/{run id}/{rest}`: every key a run writes is under its own prefix.
    pub fn key(&self, run_id: Uuid, rest: &str) -> String {
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

/// Resolves a local file path (the request field `field`) inside the data directory, following
/// symlinks, so that no path (absolute, `..`, or a link) can name a file outside it.
pub fn local_path(field: &str, given: &str, limits: &InputLimits) -> InputResult<PathBuf> {
    let Some(dir) = &limits.data_dir else {
        return Err(InputError::invalid(
            field,
            "local files are disabled: the service has no data directory configured (EXECUTOR_DATA_DIR)",
        ));
    };
    let root = dir
        .canonicalize()
        .map_err(|_| InputError::invalid(field, "the configured data directory does not exist"))?;
    let candidate = Path::new(given);
    let joined = if candidate.is_absolute() {
        candidate.to_path_buf()
    } else {
        root.join(candidate)
    };
    let outside = || InputError::invalid(field, "must name a file inside the data directory");
    let real = joined.canonicalize().map_err(|_| {
        if joined.starts_with(&root) && !given.contains("..") {
            InputError::invalid(field, "no such file in the data directory")
        } else {
            outside()
        }
    })?;
    if !real.starts_with(&root) {
        return Err(outside());
    }
    if !real.is_file() {
        return Err(InputError::invalid(field, "must name a regular file"));
    }
    Ok(real)
}
