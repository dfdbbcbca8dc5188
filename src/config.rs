//! Command line and configuration: every setting is a flag with an environment fallback.

use clap::{ArgAction, Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "sagemaker-executor",
    version,
    about = "Runs Essedum ML work on AWS SageMaker as durable, restart-safe workflow runs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API and run the workflow engine.
    Serve(Box<ServeArgs>),
    /// Print the OpenAPI document (JSON).
    Openapi,
    /// Print the declared workflows as Markdown (Mermaid diagrams and state tables).
    Workflows,
    /// Read a token on standard input and print the SHA-256 line for the tokens file.
    HashToken,
    /// Create or upgrade the database schema, then exit.
    Migrate(DbArgs),
    /// Copy every run, its history and sealed credentials, and the other records from a SQLite
    /// database to an empty PostgreSQL database, in one transaction (stop the service first).
    MigrateStore(MigrateStoreArgs),
    /// Inspect, retry, cancel and watch runs of a running service (over its API).
    Runs {
        #[command(flatten)]
        client: crate::cli::ClientArgs,
        #[command(subcommand)]
        command: crate::cli::RunsCommand,
    },
}

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// Database URL; a SQLite file is created and migrated at start-up.
    #[arg(
        long,
        env = "EXECUTOR_DATABASE_URL",
        default_value = "sqlite://executor.db"
    )]
    pub database_url: String,
}

#[derive(Args, Debug, Clone)]
pub struct MigrateStoreArgs {
    /// The SQLite database to copy (`sqlite://path`); it is left as it was.
    #[arg(long)]
    pub from: String,
    /// The PostgreSQL database to copy into (`postgres://…`): it must hold no runs.
    #[arg(long, env = "EXECUTOR_DATABASE_URL")]
    pub to: String,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// A TOML file of settings, keys named like the flags (`bind = "0.0.0.0:5002"`,
    /// `poll_min_ms = 5000`); flags and environment variables take precedence over it.
    #[arg(long, env = "EXECUTOR_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format: `text` or `json` (one object a line, with the run's span fields).
    #[arg(long, env = "EXECUTOR_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    #[command(flatten)]
    pub db: DbArgs,

    /// Address to listen on (Essedum expects this executor on port 5002).
    #[arg(long, env = "EXECUTOR_BIND", default_value = "127.0.0.1:5002")]
    pub bind: SocketAddr,

    /// Override of every workflow's first interval between status polls, in milliseconds.
    /// Unset: each workflow's own `poll.min_ms` (workflows/<kind>.toml) holds.
    #[arg(long, env = "EXECUTOR_POLL_MIN_MS")]
    pub poll_min_ms: Option<u64>,

    /// Override of every workflow's longest interval between status polls, in milliseconds (the
    /// interval grows to it). Unset: each workflow's own `poll.max_ms` holds.
    #[arg(long, env = "EXECUTOR_POLL_MAX_MS")]
    pub poll_max_ms: Option<u64>,

    /// Address S3 buckets path-style (needed by most emulators).
    #[arg(long, env = "EXECUTOR_S3_FORCE_PATH_STYLE", default_value_t = false, action = ArgAction::Set)]
    pub s3_force_path_style: bool,

    /// Directory that `local_dataset_path` inputs must be inside; unset disables them.
    #[arg(long, env = "EXECUTOR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Largest `inline_csv` accepted in a request body, in bytes.
    #[arg(long, env = "EXECUTOR_MAX_INLINE_CSV_BYTES", default_value_t = 1024 * 1024)]
    pub max_inline_csv_bytes: usize,

    /// Files above this size are uploaded to S3 as multipart uploads, in bytes.
    #[arg(long, env = "EXECUTOR_MULTIPART_THRESHOLD_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub multipart_threshold_bytes: u64,

    /// This worker's id (without '#'). Each start of the service leases runs as `<id>#<nonce>`
    /// and, at start-up, releases only the leases of this id's dead instances (and expired
    /// leases), so processes sharing one database, even with the same id, never take each
    /// other's live leases.
    #[arg(long, env = "EXECUTOR_WORKER_ID", default_value = "local")]
    pub worker_id: String,

    /// Days a finished run's step-by-step history (`run_events`) is kept; after that only its
    /// last history row stays (the run itself is kept). 0 keeps history forever; fractions
    /// are allowed.
    #[arg(long, env = "EXECUTOR_HISTORY_RETENTION_DAYS", default_value_t = 90.0, value_parser = non_negative_days)]
    pub history_retention_days: f64,

    /// How long a claimed run stays leased without a heartbeat, in seconds.
    #[arg(long, env = "EXECUTOR_LEASE_SECS", default_value_t = 60)]
    pub lease_secs: u64,

    /// How many run steps may execute at once.
    #[arg(long, env = "EXECUTOR_MAX_CONCURRENCY", default_value_t = 16)]
    pub max_concurrency: usize,

    /// First delay before retrying a step after a retryable error, in milliseconds (overrides
    /// the workflows' `retry.base_ms`; the delay doubles per attempt, with jitter).
    #[arg(long, env = "EXECUTOR_RETRY_BASE_MS")]
    pub retry_base_ms: Option<u64>,

    /// Cap of the backoff between failed status checks of a run whose AWS job may be live, in
    /// milliseconds (overrides the workflows' `retry.observe_max_delay_ms`, default 300000).
    /// Such checks never fail the run; it shows as degraded until a check succeeds.
    #[arg(long, env = "EXECUTOR_OBSERVE_MAX_DELAY_MS")]
    pub observe_max_delay_ms: Option<u64>,

    /// How many AWS client sets (distinct credentials) are kept built; the least recently used
    /// is dropped when more are needed.
    #[arg(long, env = "EXECUTOR_AWS_CLIENT_CACHE", default_value_t = crate::aws::provider::DEFAULT_CLIENT_CACHE)]
    pub aws_client_cache: usize,

    /// On SIGTERM/SIGINT, how long running steps may take to finish, in seconds.
    #[arg(long, env = "EXECUTOR_DRAIN_SECS", default_value_t = 30)]
    pub drain_secs: u64,

    /// Between janitor passes, in seconds (one runs at start-up): stale multipart uploads and
    /// staged inputs past their retention are removed. 0: no janitor.
    #[arg(long, env = "EXECUTOR_JANITOR_INTERVAL_SECS", default_value_t = 3600)]
    pub janitor_interval_secs: u64,

    /// A multipart upload under this service's S3 prefixes that is older than this many hours
    /// was abandoned (by a crash): the janitor aborts it.
    #[arg(long, env = "EXECUTOR_STALE_UPLOAD_HOURS", default_value_t = 24.0)]
    pub stale_upload_hours: f64,

    /// Days after a run finished before the janitor deletes the inputs it staged in S3
    /// (`{S3Prefix}/{run id}/input/`, a script job's `code/` and `input/`); outputs, models and
    /// logs stay. 0: staged inputs are kept forever.
    #[arg(long, env = "EXECUTOR_STAGING_RETENTION_DAYS", default_value_t = 30.0, value_parser = non_negative_days)]
    pub staging_retention_days: f64,

    /// A TOML file of `[[tokens]]` entries (`name`, `role` = submitter|operator, `sha256` of the
    /// token, from `sagemaker-executor hash-token`).
    #[arg(long, env = "EXECUTOR_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// A token with the operator role (hashed at start-up; prefer the tokens file).
    #[arg(long, env = "EXECUTOR_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,

    /// A token with the submitter role (hashed at start-up; prefer the tokens file).
    #[arg(long, env = "EXECUTOR_SUBMITTER_TOKEN", hide_env_values = true)]
    pub submitter_token: Option<String>,

    /// Serve without authentication on a non-loopback address (without tokens the service
    /// otherwise refuses to bind anything but loopback).
    #[arg(long, env = "EXECUTOR_INSECURE_NO_AUTH", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub insecure_no_auth: bool,

    /// Serve /metrics without a token.
    #[arg(long, env = "EXECUTOR_OPEN_METRICS", default_value_t = true, action = ArgAction::Set)]
    pub open_metrics: bool,

    /// Largest request body accepted, in bytes (413 above it).
    #[arg(long, env = "EXECUTOR_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Seconds an HTTP keep-alive connection may stay idle before the service closes it.
    #[arg(long, env = "EXECUTOR_HTTP_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub http_idle_timeout_secs: u64,

    /// Seconds a client may take to send a request's line and headers (from its first byte, or
    /// from opening the connection); the connection is closed after that.
    #[arg(long, env = "EXECUTOR_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub http_header_timeout_secs: u64,

    /// Most HTTP connections open at once; more wait until one closes. Default: the process's
    /// file-descriptor limit less 256 (kept for the store, AWS and logs).
    #[arg(long, env = "EXECUTOR_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Longest a request may take to answer, in seconds (503 after it).
    #[arg(long, env = "EXECUTOR_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Timeout of one AWS call attempt, in seconds.
    #[arg(long, env = "EXECUTOR_AWS_TIMEOUT_SECS", default_value_t = 60)]
    pub aws_timeout_secs: u64,

    /// Seconds between List* sweeps: one paged ListTrainingJobs / ListTransformJobs /
    /// ListProcessingJobs / ListAutoMLJobs per kind and AWS target (modified since the previous
    /// sweep) tells which followed jobs changed; only those are described. While sweeps
    /// succeed, a running job is otherwise described only every `sweep_safety_net_secs`.
    /// 0: no sweeps; every job is polled at its workflow's growing interval.
    #[arg(long, env = "EXECUTOR_SWEEP_INTERVAL_SECS", default_value_t = 30)]
    pub sweep_interval_secs: u64,

    /// While the sweep covers a run (its kind and AWS target were swept successfully within two
    /// intervals), the longest a running job goes without its own Describe, in seconds.
    #[arg(long, env = "EXECUTOR_SWEEP_SAFETY_NET_SECS", default_value_t = 3600)]
    pub sweep_safety_net_secs: u64,

    /// Calls per second allowed per AWS operation, shared by all runs and the sweeper, per AWS
    /// target: `pattern=rate[:burst]`, comma-separated; a pattern is an operation name, a prefix
    /// ending in `*`, or `*`; the most specific applies; rate 0 means no limit; `off` turns the
    /// limiter off. A call waits for its token (within its step's timeout); none fails for it.
    #[arg(long, env = "EXECUTOR_AWS_RATE_LIMITS", default_value = crate::aws::limit::DEFAULT_RATE_LIMITS, value_parser = crate::aws::RateLimits::parse)]
    pub aws_rate_limits: crate::aws::RateLimits,

    /// Largest dataset file accepted by `POST /api/service/v1/datasets`, in bytes (413 above it).
    #[arg(long, env = "EXECUTOR_MAX_DATASET_BYTES", default_value_t = 5 * 1024 * 1024 * 1024)]
    pub max_dataset_bytes: u64,

    /// Longest a dataset upload may take, in seconds.
    #[arg(long, env = "EXECUTOR_UPLOAD_TIMEOUT_SECS", default_value_t = 3600)]
    pub upload_timeout_secs: u64,

    /// How long, in hours, an `Idempotency-Key` of a submit route is remembered: a repeat within
    /// it gets the first reply, a repeat after it starts a new run.
    #[arg(
        long,
        env = "EXECUTOR_IDEMPOTENCY_RETENTION_HOURS",
        default_value_t = 24
    )]
    pub idempotency_retention_hours: u64,

    /// The bucket dataset routes use when a request names none (and its connection none).
    #[arg(long, env = "EXECUTOR_DATASETS_BUCKET")]
    pub datasets_bucket: Option<String>,

    /// Essedum backend base URLs (comma-separated) whose connection endpoint may be asked for AWS
    /// credentials. A request with `adapter_instance`, `project` and a `Referer` on this list
    /// uses that connection; another Referer is refused (403). Empty: connection lookup is off
    /// and every request uses the standard AWS credential chain.
    #[arg(long, env = "EXECUTOR_CONNECTION_ALLOW", value_delimiter = ',')]
    pub connection_allow: Vec<String>,

    /// Timeout of one connection lookup, in milliseconds.
    #[arg(long, env = "EXECUTOR_CONNECTION_TIMEOUT_MS", default_value_t = 3_000)]
    pub connection_timeout_ms: u64,

    /// How long a looked-up connection is reused, in seconds.
    #[arg(long, env = "EXECUTOR_CONNECTION_CACHE_SECS", default_value_t = 300)]
    pub connection_cache_secs: u64,

    /// The Essedum backend's service token (its `config.service-auth.access-token`), sent with
    /// every connection lookup in the header `connection_token_header`.
    #[arg(long, env = "EXECUTOR_CONNECTION_TOKEN", hide_env_values = true)]
    pub connection_token: Option<String>,

    /// Script jobs (`/execute`, `custom_script`): the processing job's execution role when the
    /// request's `configs.role` is absent (the Essedum backend never sends `configs`).
    #[arg(long, env = "EXECUTOR_SCRIPT_ROLE_ARN")]
    pub script_role_arn: Option<String>,

    /// Script jobs: the container image that runs the command when `configs.container` is absent.
    #[arg(long, env = "EXECUTOR_SCRIPT_IMAGE")]
    pub script_image: Option<String>,

    /// Script jobs: the instance type when `configs.instance_type` is absent.
    #[arg(
        long,
        env = "EXECUTOR_SCRIPT_INSTANCE_TYPE",
        default_value = "ml.t3.medium"
    )]
    pub script_instance_type: String,

    /// Script jobs: the instance count when `configs.instance_count` is absent (1 to 100).
    #[arg(long, env = "EXECUTOR_SCRIPT_INSTANCE_COUNT", default_value_t = 1)]
    pub script_instance_count: i32,

    /// Script jobs: the AWS region of the processing job when `configs.region_name` is absent.
    /// Unset: the service's region (or the Essedum connection's).
    #[arg(long, env = "EXECUTOR_SCRIPT_REGION")]
    pub script_region: Option<String>,

    /// Script jobs: the S3 bucket the script, inputs, outputs and log are staged in when
    /// `configs.bucket` is absent. Unset: the request's `bucket`.
    #[arg(long, env = "EXECUTOR_SCRIPT_BUCKET")]
    pub script_bucket: Option<String>,

    /// Script jobs: most input files one job may stage (an `input_artifacts` folder is every
    /// object under it); a job with more fails with a clear reason.
    #[arg(long, env = "EXECUTOR_SCRIPT_MAX_INPUT_FILES", default_value_t = 1000)]
    pub script_max_input_files: usize,

    /// Script jobs: most input bytes one job may stage, in bytes.
    #[arg(long, env = "EXECUTOR_SCRIPT_MAX_INPUT_BYTES", default_value_t = 20 * 1024 * 1024 * 1024)]
    pub script_max_input_bytes: u64,
    /// Header that carries `connection_token` to the backend. The backend reads service tokens
    /// from `access-token` (`Authorization: Bearer` is a user JWT there); `Authorization` sends
    /// `Bearer <token>`.
    #[arg(
        long,
        env = "EXECUTOR_CONNECTION_TOKEN_HEADER",
        default_value = "access-token"
    )]
    pub connection_token_header: String,

    /// Numeric Essedum project id sent as the `Project` header of connection lookups (the
    /// backend's authorisation asks for one unless its permission check is off).
    #[arg(long, env = "EXECUTOR_CONNECTION_PROJECT_ID")]
    pub connection_project_id: Option<String>,

    /// PEM file of CA certificates trusted for `https` backends, besides the system's roots.
    #[arg(long, env = "EXECUTOR_CONNECTION_CA_FILE")]
    pub connection_ca_file: Option<PathBuf>,

    /// Client networks (comma-separated CIDRs, IPv4 or IPv6, e.g. `10.1.0.0/16,fd00::/8`) whose
    /// requests get the submitter role without a token: for the Essedum backend, which sends no
    /// token on remote-job and plugin calls. Matched against the TCP peer address only (never
    /// `X-Forwarded-For`). The operator role always needs an operator token.
    #[arg(long, env = "EXECUTOR_TRUSTED_CLIENTS", value_delimiter = ',')]
    pub trusted_clients: Vec<String>,

    /// The caller name trusted clients act as: the owner of the runs they start (give a tokens
    /// file entry of the backend the same name to share its runs).
    #[arg(long, env = "EXECUTOR_TRUSTED_CLIENTS_NAME", default_value = "essedum")]
    pub trusted_clients_name: String,

    /// Header that carries a static token besides `Authorization: Bearer` (the backend's
    /// service-token header).
    #[arg(long, env = "EXECUTOR_TOKEN_HEADER", default_value = "access-token")]
    pub token_header: String,

    /// Key (64 hex characters) that encrypts credentials stored with runs. Unset: the key file.
    #[arg(long, env = "EXECUTOR_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// File holding the credentials key; created with mode 0600 on first start. Default:
    /// `executor.key` beside the SQLite database.
    #[arg(long, env = "EXECUTOR_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
}

/// Applies `serve --config FILE` (or `EXECUTOR_CONFIG`): each `key = value` of the TOML file sets
/// the setting's environment variable when the environment does not set it already. Flags beat
/// the environment (clap), and the environment beats the file. Unknown keys are an error.
pub fn apply_config_file(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<(), String> {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if args.get(1).map(String::as_str) != Some("serve") {
        return Ok(());
    }
    let from_flag = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=").map(str::to_string).or_else(|| {
            (a == "--config")
                .then(|| args.get(i + 1).cloned())
                .flatten()
        })
    });
    let Some(path) = from_flag.or_else(|| std::env::var("EXECUTOR_CONFIG").ok()) else {
        return Ok(());
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading config file {path}: {e}"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("config file {path}: {e}"))?;
    let settings = config_keys();
    for (key, value) in table {
        let Some((_, env)) = settings.iter().find(|(k, _)| *k == key) else {
            let known: Vec<&str> = settings.iter().map(|(k, _)| k.as_str()).collect();
            return Err(format!(
                "config file {path}: unknown setting {key:?}; known settings: {}",
                known.join(", ")
            ));
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => {
                return Err(format!(
                    "config file {path}: {key} must be a string, number or boolean, not {}",
                    other.type_str()
                ));
            }
        };
        if std::env::var_os(env).is_none() {
            // SAFETY: called at the very start of main, before any other thread exists.
            unsafe { std::env::set_var(env, text) };
        }
    }
    Ok(())
}

/// `(config key, environment variable)` of every `serve` setting but the config file itself.
pub fn config_keys() -> Vec<(String, String)> {
    use clap::CommandFactory;
    let cli = Cli::command();
    let serve = cli.find_subcommand("serve").expect("serve subcommand");
    serve
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_string_lossy().into_owned();
            (env != "EXECUTOR_CONFIG").then(|| (a.get_id().as_str().to_string(), env))
        })
        .collect()
}

/// A number of days: finite and not negative (fractions allowed).
fn non_negative_days(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(d) if d.is_finite() && d >= 0.0 => Ok(d),
        _ => Err(format!(
            "{s:?} is not a number of days (0 or more; fractions allowed)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_a_config_key_named_like_its_flag() {
        let keys = config_keys();
        for (key, env) in [
            ("bind", "EXECUTOR_BIND"),
            ("database_url", "EXECUTOR_DATABASE_URL"),
            ("poll_min_ms", "EXECUTOR_POLL_MIN_MS"),
            ("tokens_file", "EXECUTOR_TOKENS_FILE"),
            ("log_format", "EXECUTOR_LOG_FORMAT"),
            ("script_role_arn", "EXECUTOR_SCRIPT_ROLE_ARN"),
            ("script_image", "EXECUTOR_SCRIPT_IMAGE"),
            ("script_instance_type", "EXECUTOR_SCRIPT_INSTANCE_TYPE"),
            ("script_instance_count", "EXECUTOR_SCRIPT_INSTANCE_COUNT"),
            ("script_region", "EXECUTOR_SCRIPT_REGION"),
        ] {
            assert!(
                keys.contains(&(key.to_string(), env.to_string())),
                "{key} missing: {keys:?}"
            );
        }
        assert!(!keys.iter().any(|(k, _)| k == "config"));
    }

    #[test]
    fn config_file_is_ignored_for_other_commands() {
        assert!(
            apply_config_file(["x", "openapi", "--config", "/nonexistent"].map(Into::into)).is_ok()
        );
        let err =
            apply_config_file(["x", "serve", "--config", "/nonexistent/file.toml"].map(Into::into))
                .unwrap_err();
        assert!(err.contains("/nonexistent/file.toml"), "{err}");
    }
}
