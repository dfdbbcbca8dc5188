//! Workflow definitions as data: states, edges, terminal states, poll and retry policy.

use crate::model::{Kind, State};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct DefinitionError {
    pub file: String,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StateDef {
    pub name: State,
    pub doc: String,
    /// Upper bound on one step in this state (not for terminal states).
    pub timeout_secs: Option<u64>,
    /// The run's AWS job (endpoint) may be live in this state: a failed status check (an
    /// observation) never fails the run here, it backs off to `retry.observe_max_delay_ms` and
    /// keeps following, with the run shown as degraded (DESIGN.md invariant 4).
    #[serde(default)]
    pub follows_job: bool,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PollPolicy {
    pub min_ms: u64,
    pub max_ms: u64,
    pub factor: f64,
}

impl PollPolicy {
    pub fn interval(&self, polls: u32) -> Duration {
        let grown = self.min_ms as f64 * self.factor.powi(polls.min(64) as i32);
        Duration::from_millis(grown.min(self.max_ms as f64).max(self.min_ms as f64) as u64)
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_ms: u64,
    pub max_delay_ms: u64,
    pub capacity_max_attempts: u32,
    pub capacity_base_ms: u64,
    pub capacity_max_delay_ms: u64,
    /// Cap of the backoff between failed status checks in a `follows_job` state (which never
    /// give up). Default five minutes.
    #[serde(default = "default_observe_max_delay_ms")]
    pub observe_max_delay_ms: u64,
}

fn default_observe_max_delay_ms() -> u64 {
    300_000
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDef {
    pub kind: Kind,
    pub description: String,
    pub initial: State,
    pub terminal: Vec<State>,
    pub states: Vec<StateDef>,
    pub edges: Vec<(State, State)>,
    pub poll: PollPolicy,
    pub retry: RetryPolicy,
    /// Where an operator's retry re-arms a Failed run, by the state it failed in.
    #[serde(default)]
    pub retry_from: BTreeMap<State, State>,
}

impl WorkflowDef {
    /// Parses and checks a definition: every referenced state is declared, terminal states are
    /// exactly the terminal ones the engine knows, no edge leaves a terminal state, and every
    /// state can be reached from the initial one.
    pub fn parse(file: &str, text: &str) -> Result<WorkflowDef, DefinitionError> {
        let err = |message: String| DefinitionError {
            file: file.to_string(),
            message,
        };
        let def: WorkflowDef = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let declared: BTreeSet<State> = def.states.iter().map(|s| s.name).collect();
        if declared.len() != def.states.len() {
            return Err(err("a state is declared twice".into()));
        }
        if !declared.contains(&def.initial) {
            return Err(err(format!(
                "initial state {} is not declared",
                def.initial
            )));
        }
        for s in &def.states {
            if s.name.is_terminal() != def.terminal.contains(&s.name) {
                return Err(err(format!(
                    "state {} must {}be listed as terminal",
                    s.name,
                    if s.name.is_terminal() { "" } else { "not " }
                )));
            }
            if s.name.is_terminal() && s.follows_job {
                return Err(err(format!(
                    "terminal state {} cannot follow a job",
                    s.name
                )));
            }
            if !s.name.is_terminal() && s.timeout_secs.is_none() {
                return Err(err(format!("state {} needs timeout_secs", s.name)));
            }
        }
        for (from, to) in &def.edges {
            if !declared.contains(from) || !declared.contains(to) {
                return Err(err(format!("edge {from} -> {to} uses an undeclared state")));
            }
            if from.is_terminal() {
                return Err(err(format!("edge {from} -> {to} leaves a terminal state")));
            }
        }
        let mut reached = BTreeSet::from([def.initial]);
        loop {
            let before = reached.len();
            for (from, to) in &def.edges {
                if reached.contains(from) {
                    reached.insert(*to);
                }
            }
            if reached.len() == before {
                break;
            }
        }
        if let Some(unreached) = declared.difference(&reached).next() {
            return Err(err(format!("state {unreached} cannot be reached")));
        }
        for (failed_in, resume) in &def.retry_from {
            for s in [failed_in, resume] {
                if !declared.contains(s) || s.is_terminal() {
                    return Err(err(format!(
                        "retry_from {failed_in} = {resume}: both must be declared, non-terminal states"
                    )));
                }
            }
        }
        if def.retry.observe_max_delay_ms < def.retry.base_ms {
            return Err(err(
                "retry.observe_max_delay_ms must be at least retry.base_ms".into(),
            ));
        }
        if def.poll.min_ms == 0 || def.poll.max_ms < def.poll.min_ms || def.poll.factor < 1.0 {
            return Err(err(
                "poll policy needs 0 < min_ms <= max_ms and factor >= 1".into(),
            ));
        }
        Ok(def)
    }

    pub fn allows(&self, from: State, to: State) -> bool {
        self.edges.contains(&(from, to))
    }

    /// The state a retry re-arms a run in, given the state it failed in.
    pub fn retry_target(&self, failed_in: State) -> Option<State> {
        self.retry_from.get(&failed_in).copied()
    }

    pub fn state(&self, s: State) -> Option<&StateDef> {
        self.states.iter().find(|d| d.name == s)
    }

    /// Whether the run's job may be live in state `s` (see [`StateDef::follows_job`]).
    pub fn follows_job(&self, s: State) -> bool {
        self.state(s).is_some_and(|d| d.follows_job)
    }

    pub fn step_timeout(&self, s: State) -> Duration {
        Duration::from_secs(self.state(s).and_then(|d| d.timeout_secs).unwrap_or(300))
    }

    /// Checks a handler against this definition: it handles every non-terminal state and its
    /// code only takes declared edges.
    pub fn check_handler(
        &self,
        handled: &[State],
        edges: &[(State, State)],
    ) -> Result<(), DefinitionError> {
        let err = |message: String| DefinitionError {
            file: format!("workflows/{}.toml", self.kind),
            message,
        };
        for s in &self.states {
            if !s.name.is_terminal() && !handled.contains(&s.name) {
                return Err(err(format!("no handler for state {}", s.name)));
            }
        }
        for (from, to) in edges {
            if !self.allows(*from, *to) {
                return Err(err(format!(
                    "the handler can take {from} -> {to}, which is not declared"
                )));
            }
        }
        Ok(())
    }

    /// The state machine as a Mermaid state diagram.
    pub fn mermaid(&self) -> String {
        let mut out = String::from("stateDiagram-v2\n");
        out.push_str(&format!("    [*] --> {}\n", self.initial));
        for (from, to) in &self.edges {
            out.push_str(&format!("    {from} --> {to}\n"));
        }
        for t in &self.terminal {
            out.push_str(&format!("    {t} --> [*]\n"));
        }
        for (failed_in, resume) in &self.retry_from {
            out.push_str(&format!(
                "    Failed --> {resume} : operator retry (failed in {failed_in})\n"
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn training() -> &'static str {
        include_str!("../../workflows/training.toml")
    }

    #[test]
    fn embedded_training_definition_is_valid() {
        let def = WorkflowDef::parse("training.toml", training()).unwrap();
        assert_eq!(def.kind, Kind::Training);
        assert_eq!(def.initial, State::Uploading);
        assert!(def.allows(State::Polling, State::Done));
        assert!(!def.allows(State::Done, State::Polling));
        assert!(def.mermaid().contains("Polling --> Done"));
    }

    #[test]
    fn an_edge_out_of_a_terminal_state_is_rejected() {
        let text = training().replace(
            "[\"Polling\", \"Done\"],",
            "[\"Polling\", \"Done\"], [\"Done\", \"Polling\"],",
        );
        let e = WorkflowDef::parse("t", &text).unwrap_err();
        assert!(e.message.contains("leaves a terminal state"), "{e}");
    }

    #[test]
    fn an_unreachable_state_is_rejected() {
        let text = training()
            .replace("    [\"Uploading\", \"Cancelled\"],\n", "")
            .replace("    [\"Cancelling\", \"Cancelled\"],\n", "");
        let e = WorkflowDef::parse("t", &text).unwrap_err();
        assert!(e.message.contains("Cancelled cannot be reached"), "{e}");
    }

    #[test]
    fn a_handler_taking_an_undeclared_edge_is_rejected() {
        let def = WorkflowDef::parse("t", training()).unwrap();
        let handled = [
            State::Uploading,
            State::Submitted,
            State::Polling,
            State::Cancelling,
        ];
        assert!(
            def.check_handler(&handled, &[(State::Polling, State::Done)])
                .is_ok()
        );
        assert!(
            def.check_handler(&handled, &[(State::Uploading, State::Done)])
                .is_err()
        );
        assert!(def.check_handler(&handled[..3], &[]).is_err());
    }

    #[test]
    fn states_following_a_live_job_are_marked() {
        let def = WorkflowDef::parse("t", training()).unwrap();
        assert!(def.follows_job(State::Polling));
        assert!(def.follows_job(State::Cancelling));
        assert!(!def.follows_job(State::Uploading));
        assert!(!def.follows_job(State::Done));
        assert_eq!(def.retry.observe_max_delay_ms, 300_000);
    }

    #[test]
    fn a_terminal_state_cannot_follow_a_job() {
        let text = training().replace("name = \"Done\"\n", "name = \"Done\"\nfollows_job = true\n");
        let e = WorkflowDef::parse("t", &text).unwrap_err();
        assert!(e.message.contains("cannot follow a job"), "{e}");
    }

    #[test]
    fn poll_interval_grows_from_min_to_max() {
        let p = PollPolicy {
            min_ms: 5000,
            max_ms: 60000,
            factor: 1.5,
        };
        assert_eq!(p.interval(0), Duration::from_millis(5000));
        assert_eq!(p.interval(1), Duration::from_millis(7500));
        assert!(p.interval(3) > p.interval(2));
        assert_eq!(p.interval(50), Duration::from_millis(60000));
    }
}
