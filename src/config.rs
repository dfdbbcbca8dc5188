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
    Serve(ServeArgs),
    /// Print the OpenAPI document (JSON).
    Openapi,
    /// Print the declared workflows as Markdown (Mermaid diagrams and state tables).
    Workflows,
    /// Read a token on standard input and print the SHA-256 line for the tokens file.
    HashToken,
    /// Create or upgrade the database schema, then exit.
    Migrate(DbArgs),
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
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Address to listen on (Essedum expects this executor on port 5002).
    #[arg(long, env = "EXECUTOR_BIND", default_value = "127.0.0.1:5002")]
    pub bind: SocketAddr,

    /// First interval between status polls of a running job, in milliseconds.
    #[arg(long, env = "EXECUTOR_POLL_MIN_MS", default_value_t = 5_000)]
    pub poll_min_ms: u64,

    /// Longest interval between status polls, in milliseconds (the interval grows to it).
    #[arg(long, env = "EXECUTOR_POLL_MAX_MS", default_value_t = 60_000)]
    pub poll_max_ms: u64,

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

    /// This worker's lease owner id. Keep it stable across restarts of the same service, unique
    /// across services sharing one database.
    #[arg(long, env = "EXECUTOR_WORKER_ID", default_value = "local")]
    pub worker_id: String,

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

    /// On SIGTERM/SIGINT, how long running steps may take to finish, in seconds.
    #[arg(long, env = "EXECUTOR_DRAIN_SECS", default_value_t = 30)]
    pub drain_secs: u64,

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

    /// Longest a request may take to answer, in seconds (503 after it).
    #[arg(long, env = "EXECUTOR_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Timeout of one AWS call attempt, in seconds.
    #[arg(long, env = "EXECUTOR_AWS_TIMEOUT_SECS", default_value_t = 60)]
    pub aws_timeout_secs: u64,
}
