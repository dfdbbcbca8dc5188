//! sagemaker-executor: runs Essedum's machine-learning work on AWS SageMaker as durable workflow
//! runs. See `../shared/design/DESIGN.md` for the architecture; each module says what it owns.

pub mod api;
pub mod aws;
pub mod beat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connection;
pub mod engine;
pub mod failpoint;
pub mod janitor;
pub mod listener;
pub mod metrics;
pub mod model;
pub mod redact;
pub mod secrets;
pub mod store;
pub mod sweep;
pub mod validate;
pub mod workflows;
