//! Workflows: the declared state machines (`workflows/*.toml`, embedded in the binary) and the
//! step handlers that implement them. A handler decides; the engine commits (effects as data).

pub mod automl;
pub mod definition;
pub mod deployment;
pub mod input;
pub mod job;
pub mod script;
pub mod teardown;
pub mod training;
pub mod transform;

pub use definition::{DefinitionError, PollPolicy, RetryPolicy, WorkflowDef};

use crate::aws::{AwsError, AwsErrorKind, AwsPort};
use crate::clock::Timestamp;
use crate::model::{ErrorClass, Kind, State};
use crate::store::Run;
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// When a run is next due after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    Now,
    After(Duration),
}

/// What a step decided. The engine checks the edge, commits it, and only then moves on.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutput {
    pub to: State,
    pub context: Value,
    pub due: Due,
    /// Recorded in the history row.
    pub detail: Option<String>,
    /// Append a history row even when the state does not change (e.g. a new secondary status).
    pub record: bool,
    /// The run ends Failed for this reason (an outcome such as SageMaker's FailureReason).
    pub failure: Option<String>,
    /// Linked runs to start with this transition (same transaction).
    pub spawn: Vec<crate::store::NewRun>,
    /// Registered resources this step deleted, to forget with this transition.
    pub forget: Vec<(crate::store::OwnedKind, String)>,
}

impl StepOutput {
    pub fn to(to: State, context: Value) -> Self {
        StepOutput {
            to,
            context,
            due: Due::Now,
            detail: None,
            record: false,
            failure: None,
            spawn: Vec::new(),
            forget: Vec::new(),
        }
    }
    pub fn spawn(mut self, runs: Vec<crate::store::NewRun>) -> Self {
        self.spawn = runs;
        self
    }
    pub fn due(mut self, due: Due) -> Self {
        self.due = due;
        self
    }
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self.record = true;
        self
    }
    pub fn failure(mut self, reason: impl Into<String>) -> Self {
        self.failure = Some(reason.into());
        self
    }
}

/// A step that could not finish, with how to treat it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub class: ErrorClass,
    pub message: String,
    /// The step failed while only looking (a Describe*/Get*/List* call, or resolving the run's
    /// credentials), not while changing anything. In a state that follows a job which may be
    /// live (`follows_job`), such an error never fails the run (DESIGN.md invariant 4).
    pub observation: bool,
    /// AWS refused the credentials (AccessDenied, ExpiredToken, …): the engine drops the run's
    /// cached credentials so that the next attempt resolves them again.
    pub auth: bool,
}

impl StepError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        StepError {
            class,
            message: message.into(),
            observation: false,
            auth: false,
        }
    }

    pub fn terminal(message: impl Into<String>) -> Self {
        StepError::new(ErrorClass::Terminal, message)
    }

    /// The same error, marked as raised while only looking.
    pub fn observing(mut self) -> Self {
        self.observation = true;
        self
    }
}

impl From<AwsError> for StepError {
    fn from(e: AwsError) -> Self {
        let class = match e.kind {
            AwsErrorKind::Retryable => ErrorClass::Retryable,
            AwsErrorKind::Capacity => ErrorClass::Capacity,
            AwsErrorKind::Terminal | AwsErrorKind::NotFound | AwsErrorKind::AlreadyExists => {
                ErrorClass::Terminal
            }
        };
        StepError {
            class,
            message: e.to_string(),
            observation: e.is_observation(),
            auth: e.is_auth(),
        }
    }
}

/// What a step may use.
pub struct StepContext {
    /// The AWS the run talks to (its connection, its own credentials, or the default chain).
    pub aws: Arc<dyn AwsPort>,
    pub now: Timestamp,
    pub poll: PollPolicy,
    /// The workflow part of the run's sealed secret, opened (script jobs); Null when none.
    pub secret: Value,
    /// Builds clients for other targets (a script job's object store).
    pub provider: Arc<crate::aws::AwsProvider>,
    /// The safety-net interval while a List* sweep covers this run's kind and AWS target (it
    /// succeeded recently): a job seen still running is described again only after it, since
    /// the sweep makes the run due as soon as the job's status changes. None: poll as usual.
    pub swept: Option<Duration>,
}

impl StepContext {
    /// The interval before poll number `polls` (0-based): grows from min by the factor to max.
    pub fn poll_interval(&self, polls: u32) -> Duration {
        self.poll.interval(polls)
    }
}

/// A kind of work: its handler for every non-terminal state of its definition.
#[async_trait]
pub trait Workflow: Send + Sync + 'static {
    fn kind(&self) -> Kind;
    /// The states this handler has a step for.
    fn handled_states(&self) -> &'static [State];
    /// Every edge the handler's code can take (checked against the definition at start-up).
    fn edges(&self) -> &'static [(State, State)];
    /// Runs one step of `run` in its current state: at most one external side effect.
    async fn step(&self, run: &Run, cx: &StepContext) -> Result<StepOutput, StepError>;
}

/// The embedded definitions, one per kind.
pub fn embedded_definitions() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "workflows/training.toml",
            include_str!("../../workflows/training.toml"),
        ),
        (
            "workflows/automl.toml",
            include_str!("../../workflows/automl.toml"),
        ),
        (
            "workflows/transform.toml",
            include_str!("../../workflows/transform.toml"),
        ),
        (
            "workflows/deployment.toml",
            include_str!("../../workflows/deployment.toml"),
        ),
        (
            "workflows/teardown.toml",
            include_str!("../../workflows/teardown.toml"),
        ),
        (
            "workflows/script.toml",
            include_str!("../../workflows/script.toml"),
        ),
    ]
}

/// Every workflow handler the service runs.
pub fn handlers() -> Vec<Arc<dyn Workflow>> {
    vec![
        Arc::new(training::workflow()),
        Arc::new(automl::workflow()),
        Arc::new(transform::workflow()),
        Arc::new(deployment::DeploymentWorkflow),
        Arc::new(teardown::TeardownWorkflow),
        Arc::new(script::ScriptWorkflow),
    ]
}

/// Loads every embedded definition.
pub fn load_definitions() -> Result<Vec<WorkflowDef>, DefinitionError> {
    embedded_definitions()
        .into_iter()
        .map(|(file, text)| WorkflowDef::parse(file, text))
        .collect()
}

/// Markdown for every workflow: a Mermaid diagram and a table of its states. The README's copy
/// between its `workflows` markers is generated by `sagemaker-executor workflows` (a test checks).
pub fn markdown(defs: &[WorkflowDef]) -> String {
    let mut out = String::new();
    for d in defs {
        out.push_str(&format!(
            "### `{}`: {}\n\n```mermaid\n{}```\n\n",
            d.kind,
            d.description,
            d.mermaid()
        ));
        out.push_str("| state | what happens |\n| --- | --- |\n");
        for s in &d.states {
            let follows = if s.follows_job {
                " *Follows the live job: a failed status check never fails the run (backoff \
                 up to the observation cap; the run shows as degraded).*"
            } else {
                ""
            };
            out.push_str(&format!("| `{}` | {}{follows} |\n", s.name, s.doc));
        }
        out.push('\n');
    }
    out
}
