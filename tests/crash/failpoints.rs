//! Every failpoint the source passes, read from the source itself, so that the completeness
//! check fails when a failpoint is added without a crash-matrix row.
//!
//! Three spellings are understood; any other argument to `failpoint::hit(` fails the check (make
//! the name a literal, or teach this file the new spelling):
//! - `failpoint::hit("kind.point")`: that name;
//! - `failpoint::hit(&failpoint_name(job, "point"))` in the shared job steps (job.rs): `point`
//!   for every kind that implements `SageMakerJob`, except the pairs in [`NOT_PASSED`];
//! - `failpoint::hit(&failpoint::before_commit(..))` in the engine: `kind.state.before_commit`
//!   for every non-terminal state of every embedded workflow definition.

use sagemaker_executor::failpoint::before_commit;
use sagemaker_executor::model::Kind;
use sagemaker_executor::workflows::definition::WorkflowDef;
use sagemaker_executor::workflows::embedded_definitions;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Job failpoints a job kind never passes, with the reason.
pub const NOT_PASSED: &[(&str, &str)] = &[(
    "transform.after_upload",
    "transform runs start in Submitted: their input is already in S3",
)];

fn sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path, text));
        }
    }
}

/// The text of the string literal `rest` starts with (after whitespace), if it does.
fn literal(rest: &str) -> Option<&str> {
    let rest = rest.trim_start().strip_prefix('"')?;
    rest.split_once('"').map(|(lit, _)| lit)
}

/// The kinds whose jobs run the shared job steps: each `impl SageMakerJob for X` names its kind
/// as `Kind::Y` in its first function.
fn job_kinds(files: &[(PathBuf, String)]) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    for (path, text) in files {
        for (at, _) in text.match_indices("impl SageMakerJob for") {
            let after = &text[at..];
            let variant: String = after[after.find("Kind::").expect("a kind") + 6..]
                .chars()
                .take_while(|c| c.is_alphanumeric())
                .collect();
            let kind = Kind::parse(&variant.to_lowercase())
                .unwrap_or_else(|| panic!("{}: unknown kind {variant}", path.display()));
            kinds.push(kind.as_str());
        }
    }
    kinds.sort();
    kinds.dedup();
    kinds
}

/// Every failpoint name the source passes.
pub fn in_source() -> BTreeSet<String> {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut names = BTreeSet::new();
    let mut job_points = Vec::new();
    let mut engine = false;
    for (path, text) in &files {
        if path.ends_with("failpoint.rs") {
            continue;
        }
        for (at, call) in text.match_indices("failpoint::hit(") {
            let arg = text[at + call.len()..].trim_start();
            if let Some(name) = literal(arg) {
                names.insert(name.to_string());
            } else if let Some(rest) = arg.strip_prefix("&failpoint_name(job,") {
                job_points.push(literal(rest).expect("a job point literal").to_string());
            } else if arg.starts_with("&failpoint::before_commit(") {
                engine = true;
            } else {
                panic!(
                    "{}: a failpoint whose name this check cannot read: {}",
                    path.display(),
                    arg.lines().next().unwrap_or("")
                );
            }
        }
    }
    let job_names: Vec<String> = job_kinds(&files)
        .into_iter()
        .flat_map(|kind| job_points.iter().map(move |p| format!("{kind}.{p}")))
        .collect();
    for (name, why) in NOT_PASSED {
        assert!(
            job_names.contains(&name.to_string()),
            "NOT_PASSED names {name} ({why}), which is no job failpoint any more"
        );
    }
    names.extend(
        job_names
            .into_iter()
            .filter(|name| !NOT_PASSED.iter().any(|(n, _)| n == name)),
    );
    if engine {
        for (file, text) in embedded_definitions() {
            let def = WorkflowDef::parse(file, text).unwrap();
            for state in def.states.iter().map(|s| s.name) {
                if !def.terminal.contains(&state) {
                    names.insert(before_commit(def.kind.as_str(), state.as_str()));
                }
            }
        }
    }
    names
}
