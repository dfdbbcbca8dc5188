//! The `/execute` body as the Essedum backend builds it, parsed into the request stored with a
//! script run (no secrets in it) and the secret sealed beside it.
//!
//! The backend's `RemoteBody` (sv/icip-adp-remote/.../model/models/RemoteBody.java, serialised
//! by org.json, which drops null fields) carries `bucket`, `project_id`, `name`, `version` (a
//! string), `credentials` {`endpoint`, `access_key`, `secret_key`} (blank strings when its
//! storage connection has none), `input_artifacts` (the folder
//! `{org}/remote/{pipeline}/{version}/Input` it uploaded the script to), `command`, `storage`
//! (`s3`, `minio` or `local`) and `environment` only when the job has variables. It never sends
//! `configs` (ICIPRemoteExecutorJob.java: the setter is commented out). So the body is read in
//! Essedum mode ([`Fields::essedum`]): unknown keys are ignored, `""` means absent, a known key
//! with a wrong type is a 422 naming it; and every SageMaker setting `configs` could carry falls
//! back to a service setting ([`ScriptSettings`]).

use crate::aws::{AwsTarget, RunSecret, StaticCredentials};
use crate::connection::ConnectionRef;
use crate::secrets::Secret;
use crate::validate::{self, Fields, InputError, InputResult};
use crate::workflows::input::InputLimits;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Default of `EXECUTOR_SCRIPT_INSTANCE_TYPE`.
pub const DEFAULT_INSTANCE_TYPE: &str = "ml.t3.medium";
/// Default of `EXECUTOR_SCRIPT_MAX_INPUT_FILES`.
pub const DEFAULT_MAX_INPUT_FILES: usize = 1000;
/// Default of `EXECUTOR_SCRIPT_MAX_INPUT_BYTES` (the job's volume is 30 GB).
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 20 * 1024 * 1024 * 1024;

/// The service's settings for script jobs: what a request's `configs` would carry, and the
/// bounds of what a job may stage.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptSettings {
    /// `EXECUTOR_SCRIPT_ROLE_ARN`.
    pub role_arn: Option<String>,
    /// `EXECUTOR_SCRIPT_IMAGE`.
    pub image: Option<String>,
    /// `EXECUTOR_SCRIPT_INSTANCE_TYPE`.
    pub instance_type: String,
    /// `EXECUTOR_SCRIPT_INSTANCE_COUNT`.
    pub instance_count: i32,
    /// `EXECUTOR_SCRIPT_REGION`.
    pub region: Option<String>,
    /// `EXECUTOR_SCRIPT_BUCKET`.
    pub bucket: Option<String>,
    /// `EXECUTOR_SCRIPT_MAX_INPUT_FILES`.
    pub max_input_files: usize,
    /// `EXECUTOR_SCRIPT_MAX_INPUT_BYTES`.
    pub max_input_bytes: u64,
}

impl Default for ScriptSettings {
    fn default() -> Self {
        ScriptSettings {
            role_arn: None,
            image: None,
            instance_type: DEFAULT_INSTANCE_TYPE.into(),
            instance_count: 1,
            region: None,
            bucket: None,
            max_input_files: DEFAULT_MAX_INPUT_FILES,
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
        }
    }
}

impl ScriptSettings {
    /// Checks every setting as a request's value would be checked (blank means unset); the
    /// error names the setting, for a start-up failure.
    pub fn validated(self) -> Result<ScriptSettings, String> {
        fn blank(v: Option<String>) -> Option<String> {
            v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
        }
        fn named(setting: &'static str, flag: &'static str) -> impl Fn(InputError) -> String {
            move |e: InputError| {
                let msg = match e {
                    InputError::Invalid { message, .. } | InputError::Malformed { message, .. } => {
                        message
                    }
                };
                format!("{setting} (--{flag}): {msg}")
            }
        }
        let role_arn = blank(self.role_arn)
            .map(|r| validate::role_arn("role", &r))
            .transpose()
            .map_err(named("EXECUTOR_SCRIPT_ROLE_ARN", "script-role-arn"))?;
        let image = blank(self.image)
            .map(|i| validate::token("image", &i, 255))
            .transpose()
            .map_err(named("EXECUTOR_SCRIPT_IMAGE", "script-image"))?;
        let instance_type = instance_type("instance_type", self.instance_type.trim().into())
            .map_err(named(
                "EXECUTOR_SCRIPT_INSTANCE_TYPE",
                "script-instance-type",
            ))?;
        if !(1..=100).contains(&self.instance_count) {
            return Err(
                "EXECUTOR_SCRIPT_INSTANCE_COUNT (--script-instance-count): must be from 1 to 100"
                    .into(),
            );
        }
        let region = blank(self.region)
            .map(|r| region("region", r))
            .transpose()
            .map_err(named("EXECUTOR_SCRIPT_REGION", "script-region"))?;
        let bucket = blank(self.bucket)
            .map(|b| validate::bucket_name("bucket", &b))
            .transpose()
            .map_err(named("EXECUTOR_SCRIPT_BUCKET", "script-bucket"))?;
        if self.max_input_files == 0 {
            return Err(
                "EXECUTOR_SCRIPT_MAX_INPUT_FILES (--script-max-input-files): must be at least 1"
                    .into(),
            );
        }
        Ok(ScriptSettings {
            role_arn,
            image,
            instance_type,
            instance_count: self.instance_count,
            region,
            bucket,
            max_input_files: self.max_input_files,
            max_input_bytes: self.max_input_bytes,
        })
    }
}

/// Where the input artifacts come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// Files inside the service's data directory.
    Local,
    /// Objects in a MinIO (S3-compatible) store at `credentials.endpoint`.
    Minio,
    /// Objects in S3 (or an S3-compatible store at `credentials.endpoint`).
    S3,
}

/// One `input_artifacts` entry (or `configs.source`), resolved when the request is accepted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Artifact {
    /// A file inside the data directory.
    Local { path: PathBuf },
    /// A directory inside the data directory: every file under it, names kept.
    LocalDir { path: PathBuf },
    /// In the request's object store: the folder `key/` when objects lie under it (every one,
    /// names kept), else the object `key`. A key ending in `/` is always a folder.
    Store { bucket: String, key: String },
}

impl Artifact {
    pub(super) fn describe(&self) -> String {
        match self {
            Artifact::Local { path } | Artifact::LocalDir { path } => path.display().to_string(),
            Artifact::Store { bucket, key } => format!("{bucket}/{key}"),
        }
    }
}

/// The SageMaker settings of a script job, each from `configs` or else the service setting.
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

/// How much one job may stage (from the service settings when it was accepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputBounds {
    pub max_files: usize,
    pub max_bytes: u64,
}

impl Default for InputBounds {
    fn default() -> Self {
        InputBounds {
            max_files: DEFAULT_MAX_INPUT_FILES,
            max_bytes: DEFAULT_MAX_INPUT_BYTES,
        }
    }
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
    /// The object store's URL (not a secret; its keys are sealed). Empty: the run's own S3.
    pub storage_endpoint: String,
    /// The names of the environment variables (their values are sealed).
    pub environment_keys: Vec<String>,
    pub configs: ScriptConfigs,
    /// Where the run's script, inputs, outputs and log live.
    pub staging_bucket: String,
    #[serde(default)]
    pub input_bounds: InputBounds,
    /// The Essedum connection whose AWS credentials the run uses, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionRef>,
}

/// What is sealed with a script run, beside its AWS target.
#[derive(Clone, Serialize, Deserialize)]
pub struct ScriptSecrets {
    /// The object store the input artifacts come from; None: the run's own AWS (S3 storage
    /// without an endpoint or keys, or local storage).
    #[serde(default)]
    pub storage: Option<AwsTarget>,
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

/// The keys of an `/execute` body this service reads; any other is ignored.
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

/// A setting a request did not carry and the service does not have: 422 naming both.
fn missing_setting(field: &str, env: &str, flag: &str) -> InputError {
    InputError::invalid(
        field,
        format!(
            "is required: the request carries no {field} and the service has no default; \
             set {env} (flag --{flag}, config key {key}) or send {field}",
            key = flag.replace('-', "_"),
        ),
    )
}

/// An optional string, trimmed; blank means unset.
fn opt_text(f: &mut Fields, name: &str) -> InputResult<Option<String>> {
    Ok(f.opt_str(name)?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty()))
}

/// A required free-text value (names may hold spaces): 1 to `max` characters, no control
/// characters.
fn text(f: &mut Fields, name: &str, max: usize) -> InputResult<String> {
    let s = f.str(name)?;
    if s.len() > max || s.chars().any(char::is_control) {
        return Err(InputError::invalid(
            name,
            format!("must be 1 to {max} characters without control characters"),
        ));
    }
    Ok(s)
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

/// An object-store reference: `s3://bucket/key` or a key in the request's `bucket`. A folder
/// (`folder_ok`) may end in `/`.
fn store_artifact(
    field: &str,
    entry: &str,
    bucket: &str,
    folder_ok: bool,
) -> InputResult<Artifact> {
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
    let names_nothing = key.trim_end_matches('/').is_empty();
    if names_nothing
        || (key.ends_with('/') && !folder_ok)
        || key.len() > 1024
        || key.chars().any(char::is_control)
    {
        let what = if folder_ok {
            "an object or a folder"
        } else {
            "an object"
        };
        return Err(InputError::invalid(
            field,
            format!("{entry:?} does not name {what} (bucket/key)"),
        ));
    }
    Ok(Artifact::Store { bucket, key })
}

/// A path inside the data directory (symlinks followed): a file, or (`dir_ok`) a directory.
fn local_artifact(
    field: &str,
    given: &str,
    limits: &InputLimits,
    dir_ok: bool,
) -> InputResult<Artifact> {
    let Some(dir) = &limits.data_dir else {
        return Err(InputError::invalid(
            field,
            "local storage is disabled: the service has no data directory configured (EXECUTOR_DATA_DIR)",
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
    let outside = || InputError::invalid(field, "must name a path inside the data directory");
    let real = joined.canonicalize().map_err(|_| {
        if joined.starts_with(&root) && !given.contains("..") {
            InputError::invalid(
                field,
                format!("{given:?}: no such file in the data directory"),
            )
        } else {
            outside()
        }
    })?;
    if !real.starts_with(&root) {
        return Err(outside());
    }
    if real.is_file() {
        Ok(Artifact::Local { path: real })
    } else if dir_ok && real.is_dir() && real != root {
        Ok(Artifact::LocalDir { path: real })
    } else if dir_ok {
        Err(InputError::invalid(
            field,
            "must name a file or a folder inside the data directory",
        ))
    } else {
        Err(InputError::invalid(field, "must name a regular file"))
    }
}

fn artifact(
    field: &str,
    entry: &str,
    storage: Storage,
    bucket: &str,
    limits: &InputLimits,
    folder_ok: bool,
) -> InputResult<Artifact> {
    match storage {
        Storage::Local => local_artifact(field, entry, limits, folder_ok),
        Storage::Minio | Storage::S3 => store_artifact(field, entry, bucket, folder_ok),
    }
}

/// `credentials.endpoint`: an http(s) URL; a bare `host:port` means http (as the Python
/// executor read MinIO endpoints).
fn endpoint_url(given: &str) -> InputResult<String> {
    let url = if given.contains("://") {
        given.to_string()
    } else {
        format!("http://{}", given.trim_start_matches('/'))
    };
    let ok = url::Url::parse(&url)
        .ok()
        .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
    if ok {
        Ok(url)
    } else {
        Err(InputError::invalid(
            "credentials.endpoint",
            "must be an http(s) URL of the object store",
        ))
    }
}

/// A key pair given together or not at all; `(id field, secret field)` name the error.
fn key_pair(
    id: Option<String>,
    secret: Option<String>,
    fields: (&str, &str),
) -> InputResult<Option<StaticCredentials>> {
    match (id, secret) {
        (Some(access_key), Some(secret)) => Ok(Some(StaticCredentials {
            access_key,
            secret_key: Secret::new(secret),
            session_token: None,
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(InputError::invalid(
            fields.1,
            format!("is required with {}", fields.0),
        )),
        (None, Some(_)) => Err(InputError::invalid(
            fields.0,
            format!("is required with {}", fields.1),
        )),
    }
}

impl ScriptRequest {
    /// Parses an `/execute` body as the Essedum backend builds it (see the module doc); the
    /// settings fill in what `configs` does not carry. Returns the request to store and the
    /// secret to seal; an error names the field (and the setting, for a missing one).
    pub fn parse(
        body: Value,
        limits: &InputLimits,
        settings: &ScriptSettings,
    ) -> InputResult<(ScriptRequest, RunSecret)> {
        let mut f = Fields::essedum(body, &BODY_KEYS)?;
        let bucket = validate::bucket_name("bucket", f.str("bucket")?.trim())?;
        let project_id = text(&mut f, "project_id", 256)?;
        let name = text(&mut f, "name", 256)?;
        let version = text(&mut f, "version", 256)?;
        let command = f.str("command")?;
        if command.len() > 64 * 1024 {
            return Err(InputError::invalid("command", "is longer than 64 KiB"));
        }
        let storage = match f.str("storage")?.trim().to_ascii_lowercase().as_str() {
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

        let (endpoint, store_keys) = match f.opt_object("credentials", &CREDENTIAL_KEYS)? {
            Some(mut c) => {
                let endpoint = opt_text(&mut c, "endpoint")?;
                let access = opt_text(&mut c, "access_key")?;
                let secret = c.opt_str("secret_key")?.filter(|s| !s.is_empty());
                (
                    endpoint,
                    key_pair(
                        access,
                        secret,
                        ("credentials.access_key", "credentials.secret_key"),
                    )?,
                )
            }
            None => (None, None),
        };
        let endpoint = match storage {
            Storage::Local => None,
            _ => endpoint.as_deref().map(endpoint_url).transpose()?,
        };
        if storage == Storage::Minio {
            if endpoint.is_none() {
                return Err(InputError::invalid(
                    "credentials.endpoint",
                    "is required with minio storage (the MinIO server's URL)",
                ));
            }
            if store_keys.is_none() {
                return Err(InputError::invalid(
                    "credentials.access_key",
                    "is required with minio storage",
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
            .map(|e| artifact("input_artifacts", e, storage, &bucket, limits, true))
            .collect::<InputResult<Vec<_>>>()?;

        let environment = match f.take_value("environment") {
            // Absent (the backend sends it only when the job has variables), or a string, as
            // the Python executor accepted: no variables.
            None | Some(Value::String(_)) => BTreeMap::new(),
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
            Some(_) => {
                return Err(InputError::invalid(
                    "environment",
                    "must be an object of strings",
                ));
            }
        };
        if environment.len() > 100 {
            return Err(InputError::invalid(
                "environment",
                "has more than 100 variables",
            ));
        }

        let mut c = match f.opt_object("configs", &CONFIG_KEYS)? {
            Some(c) => c,
            None => Fields::essedum(Value::Object(Default::default()), &CONFIG_KEYS)?,
        };
        let role = match opt_text(&mut c, "role")? {
            Some(r) => validate::role_arn("configs.role", &r)?,
            None => settings.role_arn.clone().ok_or_else(|| {
                missing_setting(
                    "configs.role",
                    "EXECUTOR_SCRIPT_ROLE_ARN",
                    "script-role-arn",
                )
            })?,
        };
        let container = match opt_text(&mut c, "container")? {
            Some(i) => validate::token("configs.container", &i, 255)?,
            None => settings.image.clone().ok_or_else(|| {
                missing_setting("configs.container", "EXECUTOR_SCRIPT_IMAGE", "script-image")
            })?,
        };
        let instance_type = match opt_text(&mut c, "instance_type")? {
            Some(t) => instance_type("configs.instance_type", t)?,
            None => settings.instance_type.clone(),
        };
        let instance_count = match c.take_value("instance_count") {
            None => settings.instance_count,
            Some(Value::String(s)) if s.trim().is_empty() => settings.instance_count,
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
        let region_name = match opt_text(&mut c, "region_name")? {
            Some(r) => Some(region("configs.region_name", r)?),
            None => settings.region.clone(),
        };
        let py_version = opt_text(&mut c, "py_version")?
            .map(|v| validate::token("configs.py_version", &v, 32))
            .transpose()?;
        let source = opt_text(&mut c, "source")?
            .map(|s| artifact("configs.source", &s, storage, &bucket, limits, false))
            .transpose()?;
        let staging_bucket = match opt_text(&mut c, "bucket")? {
            Some(b) => validate::bucket_name("configs.bucket", &b)?,
            None => settings.bucket.clone().unwrap_or_else(|| bucket.clone()),
        };
        let aws_credentials = key_pair(
            opt_text(&mut c, "aws_access_key_id")?,
            c.opt_str("aws_secret_access_key")?
                .filter(|s| !s.is_empty()),
            ("configs.aws_access_key_id", "configs.aws_secret_access_key"),
        )?;
        let aws = (aws_credentials.is_some() || region_name.is_some()).then(|| AwsTarget {
            credentials: aws_credentials,
            region: region_name.clone(),
            endpoint: None,
        });
        let storage_target = match storage {
            Storage::Local => None,
            Storage::S3 if endpoint.is_none() && store_keys.is_none() => None,
            Storage::Minio | Storage::S3 => Some(AwsTarget {
                credentials: store_keys,
                region: region_name.clone(),
                endpoint: endpoint.clone(),
            }),
        };
        let secrets = ScriptSecrets {
            storage: storage_target,
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
            storage_endpoint: endpoint.unwrap_or_default(),
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
            input_bounds: InputBounds {
                max_files: settings.max_input_files,
                max_bytes: settings.max_input_bytes,
            },
            connection: None,
        };
        let secret = RunSecret {
            aws,
            workflow: serde_json::to_value(&secrets).expect("secrets serialise"),
        };
        Ok((request, secret))
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
