//! The crash matrix: every workflow kind at every named failpoint it passes. Each case starts the
//! real binary armed with one failpoint, submits runs through the API as the Essedum backend
//! would, waits until each run is parked at the point, SIGKILLs the process, restarts it on the
//! same database without failpoints and checks that every run reaches the right end state with
//! exactly one AWS effect (create, update, stop or delete, counted by the emulator) and that no
//! run was lost or invented. `every_failpoint_in_the_source_has_a_crash_case` fails when a
//! failpoint is added without a row here.

mod support;

#[path = "crash/failpoints.rs"]
mod failpoints;
#[path = "crash/harness.rs"]
mod harness;

use harness::{Plan, crash, crash_after};
use sagemaker_executor::model::Kind;
use std::collections::BTreeSet;

/// One row per case: `test name: Kind at "failpoint" => Plan;`. Each row is a test, named so a
/// failure says which kind crashed where; the rows also form `MATRIX` for the completeness check.
macro_rules! matrix {
    ($($test:ident: $kind:ident at $point:literal => $plan:ident;)*) => {
        $(
            #[tokio::test]
            async fn $test() {
                crash(Kind::$kind, $point, Plan::$plan).await;
            }
        )*
        const MATRIX: &[&str] = &[$($point),*];
    };
}

matrix! {
    // Training (job.rs steps; the engine's point before each state's commit).
    training_killed_after_upload: Training at "training.after_upload" => Completes;
    training_killed_before_create: Training at "training.before_create" => Completes;
    training_killed_after_create: Training at "training.after_create" => Completes;
    training_killed_during_polling: Training at "training.during_polling" => Completes;
    training_of_a_failing_job_killed_during_polling: Training at "training.during_polling" => Fails;
    training_killed_before_committing_uploading: Training at "training.uploading.before_commit" => Completes;
    training_killed_before_committing_submitted: Training at "training.submitted.before_commit" => Completes;
    training_killed_before_committing_polling: Training at "training.polling.before_commit" => Completes;
    training_killed_before_committing_cancelling: Training at "training.cancelling.before_commit" => Cancelled;
    // AutoML.
    automl_killed_after_upload: Automl at "automl.after_upload" => Completes;
    automl_killed_before_create: Automl at "automl.before_create" => Completes;
    automl_killed_after_create: Automl at "automl.after_create" => Completes;
    automl_killed_during_polling: Automl at "automl.during_polling" => Completes;
    automl_killed_before_committing_uploading: Automl at "automl.uploading.before_commit" => Completes;
    automl_killed_before_committing_submitted: Automl at "automl.submitted.before_commit" => Completes;
    automl_killed_before_committing_polling: Automl at "automl.polling.before_commit" => Completes;
    automl_killed_before_committing_cancelling: Automl at "automl.cancelling.before_commit" => Cancelled;
    // Batch transform (its runs start in Submitted: no upload).
    transform_killed_before_create: Transform at "transform.before_create" => Completes;
    transform_killed_after_create: Transform at "transform.after_create" => Completes;
    transform_killed_during_polling: Transform at "transform.during_polling" => Completes;
    transform_killed_before_committing_submitted: Transform at "transform.submitted.before_commit" => Completes;
    transform_killed_before_committing_polling: Transform at "transform.polling.before_commit" => Completes;
    transform_killed_before_committing_cancelling: Transform at "transform.cancelling.before_commit" => Cancelled;
    // Script jobs (`/execute`: staging, then a processing job, then Collecting).
    script_killed_after_upload: Script at "script.after_upload" => Completes;
    script_killed_after_input: Script at "script.after_input" => Completes;
    script_killed_before_create: Script at "script.before_create" => Completes;
    script_killed_after_create: Script at "script.after_create" => Completes;
    script_killed_during_polling: Script at "script.during_polling" => Completes;
    script_killed_before_committing_uploading: Script at "script.uploading.before_commit" => Completes;
    script_killed_before_committing_submitted: Script at "script.submitted.before_commit" => Completes;
    script_killed_before_committing_polling: Script at "script.polling.before_commit" => Completes;
    script_killed_before_committing_cancelling: Script at "script.cancelling.before_commit" => Cancelled;
    script_killed_before_committing_collecting: Script at "script.collecting.before_commit" => Completes;
    // Deployments (create, or update of an endpoint serving another config).
    deployment_killed_before_create: Deployment at "deployment.before_create" => Completes;
    deployment_killed_after_create: Deployment at "deployment.after_create" => Completes;
    deployment_killed_before_update: Deployment at "deployment.before_update" => Updates;
    deployment_killed_before_committing_its_create: Deployment at "deployment.submitted.before_commit" => Completes;
    deployment_killed_before_committing_its_update: Deployment at "deployment.submitted.before_commit" => Updates;
    deployment_killed_before_committing_polling: Deployment at "deployment.polling.before_commit" => Completes;
    deployment_killed_after_its_update_intent: Deployment at "deployment.after_update_intent" => Updates;
    deployment_killed_after_update: Deployment at "deployment.after_update" => Updates;
    deployment_cancel_killed_before_delete: Deployment at "deployment.before_delete" => Cancelled;
    deployment_cancel_killed_before_committing_cancelling: Deployment at "deployment.cancelling.before_commit" => Cancelled;
    automl_deployment_killed_before_create: Automl at "deployment.before_create" => Deploys;
    automl_deployment_killed_before_committing_its_create: Automl at "deployment.submitted.before_commit" => Deploys;
    // Teardowns.
    teardown_killed_before_delete: Teardown at "teardown.before_delete" => Completes;
    teardown_killed_before_committing_its_delete: Teardown at "teardown.submitted.before_commit" => Completes;
    teardown_killed_before_committing_polling: Teardown at "teardown.polling.before_commit" => Completes;
    teardown_killed_before_deleting_an_automl_config: Teardown at "teardown.before_config_delete" => DeletesConfig;
}

/// Failpoints that are no workflow's step, with the test that stops there instead.
const ELSEWHERE: &[(&str, &str)] = &[
    (
        "store.group.before_commit",
        "the group commit, parked with a batch of transitions applied but not committed: \
         killed_inside_a_group_commit_loses_the_batch_and_nothing_acted_on_it below",
    ),
    (
        "store.group.after_commit",
        "the group commit, parked after its commit and before answering: \
         killed_after_a_group_commit_before_its_answers_keeps_the_batch below",
    ),
    (
        "api.submit_stored",
        "a request's point between its run's commit and its reply: tests/idempotency.rs pauses \
         there (a stored submission is answered even after the request timeout)",
    ),
    (
        "engine-loop",
        "the engine loop's own point: tests/uptime.rs parks the loop there (readyz reports a \
         loop that stopped making progress)",
    ),
];

#[test]
fn every_failpoint_in_the_source_has_a_crash_case() {
    let rows: BTreeSet<&str> = MATRIX
        .iter()
        .copied()
        .chain(ELSEWHERE.iter().map(|(point, _)| *point))
        .collect();
    let in_source = failpoints::in_source();
    let missing: Vec<&String> = in_source
        .iter()
        .filter(|n| !rows.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "failpoints without a crash case; add a row to the matrix in tests/crash.rs for each \
         (`<kind>_killed_<where>: <Kind> at \"<failpoint>\" => <Plan>;`): {missing:?}"
    );
    let stale: Vec<&&str> = rows.iter().filter(|r| !in_source.contains(**r)).collect();
    assert!(
        stale.is_empty(),
        "matrix rows for failpoints the source no longer passes: {stale:?}"
    );
}

// The group commit (src/store/group.rs) is one task for every run's transitions, so it parks once
// for all of them: the kill comes with its first batch of transitions applied but not committed
// (nobody may have acted on them: each run ends with exactly one job), or committed but not yet
// answered (the steps' results stand and nothing is repeated).

#[tokio::test]
async fn killed_inside_a_group_commit_loses_the_batch_and_nothing_acted_on_it() {
    crash_after(
        Kind::Training,
        "store.group.before_commit",
        Plan::Completes,
        1,
    )
    .await;
}

#[tokio::test]
async fn killed_after_a_group_commit_before_its_answers_keeps_the_batch() {
    crash_after(
        Kind::Training,
        "store.group.after_commit",
        Plan::Completes,
        1,
    )
    .await;
}
