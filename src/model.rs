//! The closed vocabulary of runs: their kinds and their states. The database backs both with
//! CHECK constraints (`migrations/`), so neither side can hold an impossible value.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The lifecycle of a run. Which states a kind uses, and the edges between them, are declared in
/// `workflows/<kind>.toml`; the engine is the only thing that moves a run between states.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    poem_openapi::Enum,
)]
pub enum State {
    /// Input data is being staged in S3. The engine moves the run on once the upload is done.
    Uploading,
    /// The AWS resource's name is committed; the engine describes it and creates it if missing.
    Submitted,
    /// The AWS job exists; the engine polls it at growing intervals until it ends.
    Polling,
    /// An operator asked to cancel; the engine stops the AWS job and waits for it to stop.
    Cancelling,
    /// The AWS job ended; the engine collects its log and output artifacts, then moves the run
    /// to the outcome it remembered (script jobs).
    Collecting,
    /// Terminal: the work completed and its results are recorded.
    Done,
    /// Terminal: the work failed (AWS reason or the last error is recorded). An operator may retry.
    Failed,
    /// Terminal: cancelled on request.
    Cancelled,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Uploading,
        State::Submitted,
        State::Polling,
        State::Cancelling,
        State::Collecting,
        State::Done,
        State::Failed,
        State::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Uploading => "Uploading",
            State::Submitted => "Submitted",
            State::Polling => "Polling",
            State::Cancelling => "Cancelling",
            State::Collecting => "Collecting",
            State::Done => "Done",
            State::Failed => "Failed",
            State::Cancelled => "Cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, State::Done | State::Failed | State::Cancelled)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of work the executor runs, one workflow definition each.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    poem_openapi::Enum,
)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum Kind {
    /// A SageMaker training job.
    Training,
    /// A SageMaker AutoML (V2) job; Done records its best candidate.
    Automl,
    /// A SageMaker batch transform job; Done records its output location.
    Transform,
    /// Putting an endpoint config into service on an endpoint (CreateEndpoint or UpdateEndpoint).
    Deployment,
    /// Taking an endpoint down (DeleteEndpoint, then waiting until it is gone).
    Teardown,
    /// A script run as a SageMaker Processing job (Essedum's `/execute`); its log and output
    /// artifacts are collected when it ends.
    Script,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Training,
        Kind::Automl,
        Kind::Transform,
        Kind::Deployment,
        Kind::Teardown,
        Kind::Script,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Training => "training",
            Kind::Automl => "automl",
            Kind::Transform => "transform",
            Kind::Deployment => "deployment",
            Kind::Teardown => "teardown",
            Kind::Script => "script",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an error should be handled: the retry policy travels with the error.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, poem_openapi::Enum,
)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum ErrorClass {
    /// Throttling, 5xx, timeouts, dropped connections: retry with backoff, bounded.
    Retryable,
    /// Not enough capacity or a quota: wait longer before trying again.
    Capacity,
    /// The request can never succeed as it is (validation, access denied): fail the run.
    Terminal,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Capacity => "capacity",
            ErrorClass::Terminal => "terminal",
        }
    }
    pub fn parse(s: &str) -> Option<ErrorClass> {
        [
            ErrorClass::Retryable,
            ErrorClass::Capacity,
            ErrorClass::Terminal,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_text_and_only_three_are_terminal() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        let terminal: Vec<_> = State::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, [State::Done, State::Failed, State::Cancelled]);
        assert_eq!(State::parse("done"), None);
    }
}
