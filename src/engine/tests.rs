//! Engine tests on a real SQLite file with a manual clock and an in-memory AWS double.
//! (The emulator-backed tests in `tests/` cover the same paths through the real SDK.)

use super::*;
use crate::aws::AwsPort;
use crate::aws::{
    AutomlJobSpec, AwsError, AwsErrorKind, AwsResult, JobDescription, TrainingJobSpec,
};
use crate::clock::ManualClock;
use crate::store::NewRun;
use crate::workflows::input::InputLimits;
use crate::workflows::job::JobContext;
use crate::workflows::training::{TrainingRequest, job_name};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use uuid::Uuid;

#[derive(Default)]
struct FakeAws {
    jobs: Mutex<HashMap<String, JobDescription>>,
    /// Errors returned by the next describe calls, in order.
    describe_errors: Mutex<VecDeque<AwsError>>,
    /// Errors returned by the next uploads, in order.
    put_errors: Mutex<VecDeque<AwsError>>,
    /// Errors returned by the next stop calls, in order.
    stop_errors: Mutex<VecDeque<AwsError>>,
    stops: Mutex<u32>,
    creates: Mutex<u32>,
}

fn aws_error(kind: AwsErrorKind, code: &str) -> AwsError {
    AwsError {
        kind,
        operation: "DescribeTrainingJob",
        code: Some(code.into()),
        message: "emulated".into(),
    }
}

#[async_trait]
impl crate::aws::ObjectStore for FakeAws {
    async fn list_objects(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: i32,
    ) -> AwsResult<crate::aws::ObjectPage> {
        unimplemented!()
    }
    async fn head_object(&self, _: &str, _: &str) -> AwsResult<Option<crate::aws::ObjectInfo>> {
        unimplemented!()
    }
    async fn delete_object(&self, _: &str, _: &str) -> AwsResult<()> {
        unimplemented!()
    }
    async fn copy_object(&self, _: &str, _: &str, _: &str, _: &str) -> AwsResult<()> {
        unimplemented!()
    }
    async fn download_to_file(
        &self,
        _: &str,
        _: &str,
        _: &std::path::Path,
        _: u64,
    ) -> AwsResult<u64> {
        unimplemented!()
    }
    async fn upload_stream(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: crate::aws::UploadBody,
    ) -> AwsResult<u64> {
        unimplemented!()
    }
}

#[async_trait]
impl AwsPort for FakeAws {
    async fn create_processing_job(&self, _: &crate::aws::ProcessingJobSpec) -> AwsResult<String> {
        unimplemented!()
    }
    async fn describe_processing_job(&self, _: &str) -> AwsResult<Option<JobDescription>> {
        unimplemented!()
    }
    async fn stop_processing_job(&self, _: &str) -> AwsResult<()> {
        unimplemented!()
    }
    async fn processing_job_log(&self, _: &str, _: usize) -> AwsResult<crate::aws::JobLog> {
        unimplemented!()
    }
    async fn processing_job_log_from(
        &self,
        _: &str,
        _: &crate::aws::LogCursor,
        _: usize,
    ) -> AwsResult<(crate::aws::JobLog, crate::aws::LogCursor)> {
        unimplemented!()
    }
    async fn put_object(&self, _: &str, _: &str, _: Vec<u8>, _: &str) -> AwsResult<()> {
        match self.put_errors.lock().unwrap().pop_front() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
    async fn upload_file(&self, _: &str, _: &str, _: &Path, _: &str) -> AwsResult<()> {
        Ok(())
    }
    async fn create_training_job(&self, spec: &TrainingJobSpec) -> AwsResult<String> {
        *self.creates.lock().unwrap() += 1;
        self.jobs.lock().unwrap().insert(
            spec.name.clone(),
            JobDescription {
                arn: Some(format!(
                    "arn:aws:sagemaker:us-east-1:123456789012:training-job/{}",
                    spec.name
                )),
                status: "InProgress".into(),
                ..Default::default()
            },
        );
        Ok(format!("arn:{}", spec.name))
    }
    async fn describe_training_job(&self, name: &str) -> AwsResult<Option<JobDescription>> {
        if let Some(e) = self.describe_errors.lock().unwrap().pop_front() {
            return Err(e);
        }
        Ok(self.jobs.lock().unwrap().get(name).cloned())
    }
    async fn read_object_start(&self, _: &str, _: &str, _: u64) -> AwsResult<Option<Vec<u8>>> {
        Ok(None)
    }
    async fn create_automl_job(&self, _: &AutomlJobSpec) -> AwsResult<String> {
        unimplemented!("the engine tests use training runs")
    }
    async fn describe_automl_job(&self, _: &str) -> AwsResult<Option<JobDescription>> {
        unimplemented!("the engine tests use training runs")
    }
    async fn stop_automl_job(&self, _: &str) -> AwsResult<()> {
        unimplemented!("the engine tests use training runs")
    }
    async fn create_transform_job(
        &self,
        _: &str,
        _: &crate::aws::TransformJobSpec,
    ) -> AwsResult<String> {
        unimplemented!("the engine tests use training runs")
    }
    async fn describe_transform_job(&self, _: &str) -> AwsResult<Option<JobDescription>> {
        unimplemented!("the engine tests use training runs")
    }
    async fn stop_transform_job(&self, _: &str) -> AwsResult<()> {
        unimplemented!("the engine tests use training runs")
    }
    async fn create_model(&self, _: &crate::aws::ModelSpec) -> AwsResult<String> {
        unimplemented!("the engine tests use training runs")
    }
    async fn describe_model(
        &self,
        _: &str,
    ) -> AwsResult<Option<(crate::aws::ModelSpec, Option<String>)>> {
        unimplemented!("the engine tests use training runs")
    }
    async fn delete_model(&self, _: &str) -> AwsResult<()> {
        unimplemented!("the engine tests use training runs")
    }
    async fn create_endpoint_config(
        &self,
        _: &crate::aws::EndpointConfigSpec,
    ) -> AwsResult<String> {
        unimplemented!("the engine tests use training runs")
    }
    async fn describe_endpoint_config(
        &self,
        _: &str,
    ) -> AwsResult<Option<(crate::aws::EndpointConfigSpec, Option<String>)>> {
        unimplemented!("the engine tests use training runs")
    }
    async fn describe_endpoint(
        &self,
        _: &str,
    ) -> AwsResult<Option<crate::aws::EndpointDescription>> {
        unimplemented!("the engine tests use training runs")
    }
    async fn create_endpoint(
        &self,
        _: &str,
        _: &str,
        _: &std::collections::BTreeMap<String, String>,
    ) -> AwsResult<String> {
        unimplemented!("the engine tests use training runs")
    }
    async fn update_endpoint(&self, _: &str, _: &str) -> AwsResult<()> {
        unimplemented!("the engine tests use training runs")
    }
    async fn delete_endpoint(&self, _: &str) -> AwsResult<()> {
        unimplemented!("the engine tests use training runs")
    }
    async fn delete_endpoint_config(&self, _: &str) -> AwsResult<()> {
        unimplemented!("the engine tests use training runs")
    }
    async fn invoke_endpoint(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: Vec<u8>,
        _: &str,
    ) -> AwsResult<crate::aws::InvokeOutput> {
        unimplemented!("the engine tests use training runs")
    }
    async fn stop_training_job(&self, name: &str) -> AwsResult<()> {
        *self.stops.lock().unwrap() += 1;
        if let Some(e) = self.stop_errors.lock().unwrap().pop_front() {
            return Err(e);
        }
        if let Some(j) = self.jobs.lock().unwrap().get_mut(name) {
            j.status = "Stopped".into();
        }
        Ok(())
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    clock: Arc<ManualClock>,
    aws: Arc<FakeAws>,
    engine: Arc<Engine>,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let aws = Arc::new(FakeAws::default());
    let engine = Arc::new(
        Engine::new(
            store.clone(),
            clock.clone(),
            Arc::new(crate::aws::AwsProvider::fixed(aws.clone())),
            EngineConfig {
                poll_min: Some(Duration::from_secs(5)),
                poll_max: Some(Duration::from_secs(60)),
                ..EngineConfig::default()
            },
            crate::workflows::handlers(),
            crate::workflows::load_definitions().unwrap(),
        )
        .unwrap(),
    );
    Harness {
        _dir: dir,
        store,
        clock,
        aws,
        engine,
    }
}

impl Harness {
    async fn submit(&self) -> Uuid {
        let body = serde_json::json!({
            "RoleArn": "arn:aws:iam::123456789012:role/R",
            "Bucket": "bucket",
            "TrainingImage": "img:1",
            "inline_csv": "y,x\n1,2\n",
        });
        let req = TrainingRequest::parse(
            body,
            &InputLimits {
                data_dir: None,
                max_inline_csv_bytes: 100,
            },
        )
        .unwrap();
        let id = Uuid::now_v7();
        self.store
            .insert_run(
                NewRun {
                    id,
                    kind: Kind::Training,
                    state: State::Uploading,
                    request: serde_json::to_value(req).unwrap(),
                    context: serde_json::to_value(JobContext::new(job_name(id))).unwrap(),
                    resource_name: Some(job_name(id)),
                    submitted_by: None,
                    detail: "accepted".into(),
                },
                self.clock.now(),
            )
            .await
            .unwrap();
        id
    }

    fn fail_next_describe(&self, kind: AwsErrorKind, code: &str) {
        self.aws
            .describe_errors
            .lock()
            .unwrap()
            .push_back(aws_error(kind, code));
    }

    async fn run(&self, id: Uuid) -> store::Run {
        self.store.get_run(id).await.unwrap().unwrap()
    }

    /// Moves the clock to the run's next due time and runs one tick.
    async fn step_when_due(&self, id: Uuid) -> Duration {
        let due = self.run(id).await.next_due_at.expect("not terminal");
        let wait = (due - self.clock.now()).to_std().unwrap_or_default();
        self.clock.advance(wait);
        assert_eq!(self.engine.tick().await.unwrap(), 1);
        wait
    }
}

#[tokio::test]
async fn a_run_walks_uploading_submitted_polling_done() {
    let h = harness().await;
    let id = h.submit().await;
    h.step_when_due(id).await;
    assert_eq!(h.run(id).await.state, State::Submitted);
    h.step_when_due(id).await;
    assert_eq!(h.run(id).await.state, State::Polling);
    assert_eq!(*h.aws.creates.lock().unwrap(), 1);
    h.aws
        .jobs
        .lock()
        .unwrap()
        .get_mut(&job_name(id))
        .unwrap()
        .status = "Completed".into();
    h.step_when_due(id).await;
    let run = h.run(id).await;
    assert_eq!(run.state, State::Done);
    assert_eq!(run.next_due_at, None);
    assert_eq!(run.lease_owner, None);
}

#[tokio::test]
async fn nothing_runs_before_it_is_due() {
    let h = harness().await;
    let id = h.submit().await;
    h.step_when_due(id).await; // -> Submitted, due now
    h.step_when_due(id).await; // -> Polling, due in poll_min
    assert_eq!(
        h.engine.tick().await.unwrap(),
        0,
        "the first poll waits poll_min"
    );
    h.clock.advance(Duration::from_millis(4999));
    assert_eq!(h.engine.tick().await.unwrap(), 0);
    h.clock.advance(Duration::from_millis(1));
    assert_eq!(h.engine.tick().await.unwrap(), 1);
}

#[tokio::test]
async fn poll_intervals_grow_to_the_maximum_while_the_job_runs() {
    let h = harness().await;
    let id = h.submit().await;
    h.step_when_due(id).await;
    h.step_when_due(id).await;
    let mut waits = vec![];
    for _ in 0..10 {
        waits.push(h.step_when_due(id).await);
    }
    assert_eq!(waits[0], Duration::from_secs(5));
    assert!(waits.windows(2).all(|w| w[1] >= w[0]), "{waits:?}");
    assert_eq!(*waits.last().unwrap(), Duration::from_secs(60));
    let run = h.run(id).await;
    let history = h.store.events(id).await.unwrap();
    assert_eq!(run.state, State::Polling);
    assert!(
        history.len() < 6,
        "unchanged polls add no history rows: {}",
        history.len()
    );
}

#[tokio::test]
async fn retryable_errors_back_off_then_fail_the_run_with_the_last_error() {
    let h = harness().await;
    let id = h.submit().await;
    h.step_when_due(id).await; // Submitted
    let max = crate::workflows::load_definitions().unwrap()[0]
        .retry
        .max_attempts;
    for _ in 0..=max {
        h.fail_next_describe(AwsErrorKind::Retryable, "ThrottlingException");
    }
    let mut waits = vec![];
    for attempt in 1..=max {
        waits.push(h.step_when_due(id).await);
        let run = h.run(id).await;
        assert_eq!((run.state, run.attempt), (State::Submitted, attempt as i64));
    }
    h.step_when_due(id).await;
    let run = h.run(id).await;
    assert_eq!(run.state, State::Failed);
    assert!(
        run.last_error
            .unwrap()
            .starts_with(&format!("gave up after {} attempts", max + 1))
    );
    let events = h.store.events(id).await.unwrap();
    let errors: Vec<_> = events.iter().filter(|e| e.error.is_some()).collect();
    assert_eq!(
        errors.len(),
        3,
        "identical attempts collapse: the first, the latest, the failure"
    );
    assert_eq!(
        errors.iter().map(|e| e.repeats).sum::<i64>() as u32,
        max + 1,
        "every attempt is counted in the history"
    );
    assert_eq!(*h.aws.creates.lock().unwrap(), 0);
    assert!(
        waits[1..]
            .iter()
            .zip(&waits[2..])
            .filter(|(a, b)| b > a)
            .count()
            > 0,
        "{waits:?}"
    );
}

#[tokio::test]
async fn capacity_errors_wait_longer_than_throttling() {
    let h = harness().await;
    let id = h.submit().await;
    h.step_when_due(id).await;
    h.fail_next_describe(AwsErrorKind::Capacity, "ResourceLimitExceeded");
    h.step_when_due(id).await;
    let run = h.run(id).await;
    let wait = run.next_due_at.unwrap() - h.clock.now();
    assert_eq!(run.state, State::Submitted);
    assert!(
        wait.num_seconds() >= 15,
        "capacity waits at least half its 30 s base: {wait}"
    );
}

#[tokio::test]
async fn a_terminal_error_fails_at_once() {
    let h = harness().await;
    let id = h.submit().await;
    h.step_when_due(id).await;
    h.fail_next_describe(AwsErrorKind::Terminal, "AccessDeniedException");
    h.step_when_due(id).await;
    let run = h.run(id).await;
    assert_eq!((run.state, run.attempt), (State::Failed, 1));
}

/// A Uploading -> Submitted transition, for store-level fencing checks.
fn to_submitted(c: &ClaimedRun, now: clock::Timestamp) -> Transition {
    Transition {
        to: State::Submitted,
        context: c.run.context.clone(),
        attempt: 0,
        next_due_at: Some(now),
        record: true,
        detail: None,
        error: None,
        spawn: Vec::new(),
        forget: Vec::new(),
        withdraw_cancel: false,
        degraded: false,
        collapse: false,
    }
}

#[tokio::test]
async fn a_late_commit_after_a_lease_takeover_is_dropped() {
    let h = harness().await;
    let id = h.submit().await;
    let now = h.clock.now();
    let a = h
        .store
        .claim_due("a", now, clock::add(now, Duration::from_secs(10)), 10)
        .await
        .unwrap();
    assert_eq!(a.len(), 1);
    assert!(
        h.store
            .claim_due("b", now, clock::add(now, Duration::from_secs(10)), 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    h.clock.advance(Duration::from_secs(11));
    let now = h.clock.now();
    let b = h
        .store
        .claim_due("b", now, clock::add(now, Duration::from_secs(10)), 10)
        .await
        .unwrap();
    assert_eq!(b.len(), 1, "an expired lease is claimed again");
    assert!(b[0].took_over, "and counted as a takeover");
    assert!(!a[0].took_over);
    let t = to_submitted(&a[0], now);
    assert_eq!(
        h.store.commit_transition(&a[0], &t, now).await.unwrap(),
        TransitionOutcome::Lost
    );
    assert!(!h.store.renew_lease(&a[0], now).await.unwrap());
    assert!(matches!(
        h.store.commit_transition(&b[0], &t, now).await.unwrap(),
        TransitionOutcome::Committed { .. }
    ));
    let history = h.store.events(id).await.unwrap();
    assert_eq!(history.len(), 2, "only the owner's transition is recorded");
}

#[tokio::test]
async fn a_restarted_worker_releases_its_own_leases_and_fences_old_steps() {
    let h = harness().await;
    let id = h.submit().await;
    let now = h.clock.now();
    let old = h
        .store
        .claim_due("local", now, clock::add(now, Duration::from_secs(600)), 10)
        .await
        .unwrap();
    assert_eq!(h.engine.tick().await.unwrap(), 0, "still leased");
    assert_eq!(h.engine.recover().await.unwrap(), 1);
    let t = to_submitted(&old[0], now);
    assert_eq!(
        h.store.commit_transition(&old[0], &t, now).await.unwrap(),
        TransitionOutcome::Lost
    );
    assert_eq!(h.engine.tick().await.unwrap(), 1);
    assert_eq!(h.run(id).await.state, State::Submitted);
}

#[tokio::test]
async fn a_cancel_request_makes_a_waiting_run_due_now_and_stops_the_job() {
    let h = harness().await;
    let id = h.submit().await;
    h.step_when_due(id).await;
    h.step_when_due(id).await;
    assert!(h.run(id).await.next_due_at.unwrap() > h.clock.now());
    assert!(matches!(
        h.store
            .request_cancel(id, h.clock.now(), "test")
            .await
            .unwrap(),
        store::CancelOutcome::Requested(_)
    ));
    assert_eq!(h.run(id).await.next_due_at, Some(h.clock.now()));
    assert_eq!(h.engine.tick().await.unwrap(), 1);
    assert_eq!(h.run(id).await.state, State::Cancelling);
    h.step_when_due(id).await; // describe InProgress -> stop
    h.step_when_due(id).await; // describe Stopped -> Cancelled
    assert_eq!(h.run(id).await.state, State::Cancelled);
    assert!(matches!(
        h.store
            .request_cancel(id, h.clock.now(), "test")
            .await
            .unwrap(),
        store::CancelOutcome::AlreadyTerminal(State::Cancelled)
    ));
}

#[tokio::test]
async fn an_undeclared_transition_fails_the_run_instead_of_being_committed() {
    let h = harness().await;
    let id = h.submit().await;
    let run = h.run(id).await;
    let def = &h.engine.workflows[&Kind::Training].def;
    let out = StepOutput::to(State::Done, run.context.clone());
    let t = decide(def, &run, Ok(out), h.clock.now());
    assert_eq!(t.to, State::Failed);
    assert!(
        t.error
            .unwrap()
            .1
            .contains("does not declare Uploading -> Done")
    );
}

#[test]
fn retry_delays_grow_exponentially_with_jitter_and_are_capped() {
    let base = Duration::from_millis(100);
    let max = Duration::from_secs(2);
    for attempt in 1..12 {
        let d = retry_delay(base, max, attempt);
        let floor = base * 2u32.pow(attempt - 1);
        assert!(d >= floor.min(max), "attempt {attempt}: {d:?}");
        assert!(d <= max * 2, "attempt {attempt}: {d:?}");
    }
}

/// Fails a run in `state` with a terminal error, retries it as an operator would, and runs it to
/// its end: it must resume in the declared state and never create a second job.
async fn fail_in_then_retry(state: State) -> (Harness, Uuid) {
    let h = harness().await;
    let id = h.submit().await;
    let terminal = |code: &str| aws_error(AwsErrorKind::Terminal, code);
    if state == State::Uploading {
        h.aws
            .put_errors
            .lock()
            .unwrap()
            .push_back(terminal("AccessDenied"));
    } else {
        h.step_when_due(id).await; // Uploading -> Submitted
        if state != State::Submitted {
            h.step_when_due(id).await; // Submitted -> Polling
        }
        match state {
            // A failed status check never fails a run that follows its job; a refused effect
            // (here: a stop throttled past its budget) does.
            State::Cancelling => {
                h.store
                    .request_cancel(id, h.clock.now(), "test")
                    .await
                    .unwrap();
                h.step_when_due(id).await; // Polling -> Cancelling
                let max = h.engine.workflows[&Kind::Training].def.retry.max_attempts;
                for _ in 0..=max {
                    h.aws.stop_errors.lock().unwrap().push_back(AwsError {
                        operation: "StopTrainingJob",
                        ..aws_error(AwsErrorKind::Retryable, "ThrottlingException")
                    });
                }
                while h.run(id).await.state == State::Cancelling {
                    h.step_when_due(id).await;
                }
            }
            // The job vanished: an error of ours, not AWS's outcome for the job.
            State::Polling => {
                let job = h.aws.jobs.lock().unwrap().remove(&job_name(id)).unwrap();
                h.step_when_due(id).await;
                h.aws.jobs.lock().unwrap().insert(job_name(id), job);
            }
            _ => {
                h.aws
                    .describe_errors
                    .lock()
                    .unwrap()
                    .push_back(terminal("AccessDeniedException"));
                h.step_when_due(id).await;
            }
        }
    }
    if state == State::Uploading {
        h.step_when_due(id).await;
    }
    assert_eq!(h.run(id).await.state, State::Failed);
    let def = h.engine.workflows[&Kind::Training].def.clone();
    let outcome = h
        .store
        .retry_run(id, h.clock.now(), "retry by test", |_, _, failed_in| {
            def.retry_target(failed_in?)
        })
        .await
        .unwrap();
    let store::RetryOutcome::Rearmed(run) = outcome else {
        panic!("not re-armed")
    };
    assert_eq!(run.state, state, "resumed where it failed");
    assert_eq!((run.attempt, run.last_error.as_deref()), (0, None));
    while !h.run(id).await.state.is_terminal() {
        if h.run(id).await.state == State::Polling {
            h.aws
                .jobs
                .lock()
                .unwrap()
                .get_mut(&job_name(id))
                .unwrap()
                .status = "Completed".into();
        }
        h.step_when_due(id).await;
    }
    assert!(*h.aws.creates.lock().unwrap() <= 1, "never a second job");
    (h, id)
}

#[tokio::test]
async fn a_run_failed_in_any_state_is_retried_from_that_state() {
    for state in [State::Uploading, State::Submitted, State::Polling] {
        let (h, id) = fail_in_then_retry(state).await;
        assert_eq!(h.run(id).await.state, State::Done, "failed in {state}");
        assert_eq!(*h.aws.creates.lock().unwrap(), 1);
    }
    let (h, id) = fail_in_then_retry(State::Cancelling).await;
    assert_eq!(
        h.run(id).await.state,
        State::Cancelled,
        "a failed cancel is retried as a cancel"
    );
}

#[tokio::test]
async fn done_and_cancelled_runs_are_not_retried() {
    let h = harness().await;
    let id = h.submit().await;
    h.store
        .request_cancel(id, h.clock.now(), "test")
        .await
        .unwrap();
    h.step_when_due(id).await;
    assert_eq!(h.run(id).await.state, State::Cancelled);
    let def = h.engine.workflows[&Kind::Training].def.clone();
    let outcome = h
        .store
        .retry_run(id, h.clock.now(), "retry", |_, s, failed_in| {
            if s.is_terminal() {
                def.retry_target(failed_in?)
            } else {
                Some(s)
            }
        })
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        store::RetryOutcome::Refused {
            state: State::Cancelled,
            failed_in: None
        }
    ));
}

#[test]
fn a_workflows_own_poll_policy_holds_unless_overridden() {
    let own = PollPolicy {
        min_ms: 30_000,
        max_ms: 300_000,
        factor: 1.5,
    };
    let ms = Duration::from_millis;
    assert_eq!(resolve_poll(own, None, None), own);
    let both = resolve_poll(own, Some(ms(50)), Some(ms(200)));
    assert_eq!((both.min_ms, both.max_ms, both.factor), (50, 200, 1.5));
    // One bound alone moves the other only as far as min <= max needs.
    let min_only = resolve_poll(own, Some(ms(400_000)), None);
    assert_eq!((min_only.min_ms, min_only.max_ms), (400_000, 400_000));
    let max_only = resolve_poll(own, None, Some(ms(10_000)));
    assert_eq!((max_only.min_ms, max_only.max_ms), (10_000, 10_000));
    let max_above = resolve_poll(own, None, Some(ms(600_000)));
    assert_eq!((max_above.min_ms, max_above.max_ms), (30_000, 600_000));
}

#[tokio::test]
async fn engine_without_overrides_uses_each_workflows_toml_poll_policy() {
    let defs = crate::workflows::load_definitions().unwrap();
    let h = harness().await;
    let engine = Engine::new(
        h.store.clone(),
        h.clock.clone(),
        Arc::new(crate::aws::AwsProvider::fixed(h.aws.clone())),
        EngineConfig::default(),
        crate::workflows::handlers(),
        defs.clone(),
    )
    .unwrap();
    for def in engine.definitions() {
        let own = defs.iter().find(|d| d.kind == def.kind).unwrap();
        assert_eq!(def.poll, own.poll, "{}", def.kind);
    }
    let automl = defs.iter().find(|d| d.kind == Kind::Automl).unwrap();
    assert_eq!((automl.poll.min_ms, automl.poll.max_ms), (30_000, 300_000));
}

#[tokio::test]
async fn a_step_that_re_enters_its_state_without_progress_is_backed_off_and_surfaced() {
    let h = harness().await;
    let id = h.submit().await;
    let mut run = h.run(id).await;
    run.state = State::Cancelling;
    let def = &h.engine.workflows[&Kind::Training].def;
    let now = h.clock.now();
    let mut delays = Vec::new();
    let mut surfaced = Vec::new();
    for _ in 0..12 {
        let out = StepOutput::to(State::Cancelling, run.context.clone()).detail("stop refused");
        let t = decide(def, &run, Ok(out), now);
        assert_eq!(t.to, State::Cancelling);
        assert_eq!(t.attempt, run.attempt + 1);
        let delay = (t.next_due_at.unwrap() - now).to_std().unwrap();
        assert!(
            delay >= Duration::from_millis(def.retry.base_ms),
            "never at once: {delay:?}"
        );
        assert!(
            delay <= Duration::from_millis(def.retry.max_delay_ms) * 2,
            "capped: {delay:?}"
        );
        if let Some((class, msg)) = &t.error {
            assert_eq!(*class, ErrorClass::Retryable);
            assert!(
                msg.contains("no progress") && msg.contains("stop refused"),
                "{msg}"
            );
            assert!(t.record);
            surfaced.push(t.attempt);
        }
        delays.push(delay);
        run.attempt = t.attempt;
    }
    // The 1st, 2nd, 4th and 8th re-entries are surfaced, not every one.
    assert_eq!(surfaced, vec![1, 2, 4, 8]);
    let floor = |n: u32| Duration::from_millis(def.retry.base_ms) * 2u32.pow(n - 1);
    assert!(delays[3] >= floor(4).min(Duration::from_millis(def.retry.max_delay_ms)));
    assert!(delays[11] >= Duration::from_millis(def.retry.max_delay_ms));
}

#[tokio::test]
async fn waiting_a_poll_interval_or_changing_the_context_is_progress() {
    let h = harness().await;
    let id = h.submit().await;
    let mut run = h.run(id).await;
    run.state = State::Polling;
    let def = &h.engine.workflows[&Kind::Training].def;
    let now = h.clock.now();
    let wait = Duration::from_millis(def.poll.min_ms);
    let out = StepOutput::to(State::Polling, run.context.clone()).due(Due::After(wait));
    let t = decide(def, &run, Ok(out), now);
    assert_eq!((t.attempt, t.error.is_none()), (0, true));
    assert_eq!(t.next_due_at, Some(clock::add(now, wait)));
    let mut changed = run.context.clone();
    changed["polls"] = serde_json::json!(7);
    let t = decide(def, &run, Ok(StepOutput::to(State::Polling, changed)), now);
    assert_eq!((t.attempt, t.next_due_at), (0, Some(now)));
}

#[tokio::test]
async fn a_refused_stop_withdraws_the_cancel_and_the_job_is_followed() {
    let h = harness().await;
    let id = h.submit().await;
    h.step_when_due(id).await; // Uploading -> Submitted
    h.step_when_due(id).await; // Submitted -> Polling
    h.store
        .request_cancel(id, h.clock.now(), "test")
        .await
        .unwrap();
    h.aws.stop_errors.lock().unwrap().push_back(AwsError {
        kind: AwsErrorKind::Terminal,
        operation: "StopTrainingJob",
        code: Some("AccessDeniedException".into()),
        message: "not authorized".into(),
    });
    h.step_when_due(id).await; // Polling -> Cancelling
    h.step_when_due(id).await; // stop refused -> Polling
    let run = h.run(id).await;
    assert_eq!(run.state, State::Polling);
    assert!(!run.cancel_requested);
    assert!(
        run.next_due_at.unwrap() > h.clock.now(),
        "a poll, not at once"
    );
    let err = run.last_error.unwrap();
    assert!(
        err.contains("cancel refused") && err.contains("AccessDenied"),
        "{err}"
    );
    assert_eq!(*h.aws.stops.lock().unwrap(), 1);
    // Polling goes on without another stop.
    h.step_when_due(id).await;
    assert_eq!(h.run(id).await.state, State::Polling);
    assert_eq!(*h.aws.stops.lock().unwrap(), 1);
    // A new cancel request is a new try.
    h.store
        .request_cancel(id, h.clock.now(), "again")
        .await
        .unwrap();
    h.step_when_due(id).await; // Polling -> Cancelling
    h.step_when_due(id).await; // stop sent
    h.step_when_due(id).await; // Stopped -> Cancelled
    assert_eq!(h.run(id).await.state, State::Cancelled);
    assert_eq!(*h.aws.stops.lock().unwrap(), 2);
}

#[tokio::test]
async fn a_cancel_the_step_already_saw_does_not_cut_its_backoff() {
    let h = harness().await;
    let id = h.submit().await;
    h.step_when_due(id).await;
    h.step_when_due(id).await;
    h.store
        .request_cancel(id, h.clock.now(), "test")
        .await
        .unwrap();
    h.step_when_due(id).await; // Polling -> Cancelling
    h.aws.stop_errors.lock().unwrap().push_back(AwsError {
        kind: AwsErrorKind::Retryable,
        operation: "StopTrainingJob",
        code: Some("ThrottlingException".into()),
        message: "Rate exceeded".into(),
    });
    h.step_when_due(id).await; // stop throttled: retry later
    let run = h.run(id).await;
    assert_eq!((run.state, run.attempt), (State::Cancelling, 1));
    assert!(run.cancel_requested);
    assert!(
        run.next_due_at.unwrap() > h.clock.now(),
        "the retry backs off even though a cancel is pending"
    );
    let waited = h.step_when_due(id).await; // stop sent
    assert!(waited >= Duration::from_millis(500), "{waited:?}");
    h.step_when_due(id).await;
    assert_eq!(h.run(id).await.state, State::Cancelled);
}

/// Brings a run to Polling (its job InProgress in the fake).
async fn polling(h: &Harness) -> Uuid {
    let id = h.submit().await;
    h.step_when_due(id).await; // Uploading -> Submitted
    h.step_when_due(id).await; // Submitted -> Polling
    assert_eq!(h.run(id).await.state, State::Polling);
    id
}

#[tokio::test]
async fn failed_status_checks_never_fail_a_polling_run_and_mark_it_degraded() {
    let h = harness().await;
    let id = polling(&h).await;
    let def = h.engine.workflows[&Kind::Training].def.clone();
    let checks = def.retry.max_attempts * 3;
    for n in 0..checks {
        // Any class: throttling, a refusal, expired credentials.
        match n % 3 {
            0 => h.fail_next_describe(AwsErrorKind::Retryable, "ThrottlingException"),
            1 => h.fail_next_describe(AwsErrorKind::Terminal, "AccessDeniedException"),
            _ => h.fail_next_describe(AwsErrorKind::Terminal, "ExpiredTokenException"),
        }
    }
    let first_failure = h.clock.now() + h.step_when_due(id).await;
    let mut waits = vec![];
    for _ in 1..checks {
        waits.push(h.step_when_due(id).await);
        let run = h.run(id).await;
        assert_eq!(run.state, State::Polling, "the job is still followed");
        assert_eq!(
            run.degraded_since,
            Some(first_failure),
            "since the first failure"
        );
        assert!(run.last_error.is_some());
    }
    let cap = Duration::from_millis(def.retry.observe_max_delay_ms);
    assert!(
        waits.iter().all(|w| *w <= cap),
        "capped at {cap:?}: {waits:?}"
    );
    assert!(
        waits.last().unwrap() > &Duration::from_millis(def.retry.max_delay_ms),
        "backs off past the effect budget's cap: {waits:?}"
    );
    let failures: Vec<_> = h
        .store
        .events(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.error.is_some())
        .collect();
    assert_eq!(
        failures.len(),
        2,
        "the first and the latest failure: {failures:?}"
    );
    assert_eq!((failures[0].attempt, failures[0].repeats), (1, 1));
    assert_eq!(failures[1].attempt, i64::from(checks));
    assert_eq!(failures[1].repeats, i64::from(checks) - 1);

    // The next good status check ends the streak.
    h.step_when_due(id).await;
    let run = h.run(id).await;
    assert_eq!(run.state, State::Polling);
    assert_eq!(
        (run.degraded_since, run.attempt, run.last_error),
        (None, 0, None)
    );
    h.aws
        .jobs
        .lock()
        .unwrap()
        .get_mut(&job_name(id))
        .unwrap()
        .status = "Completed".into();
    h.step_when_due(id).await;
    assert_eq!(h.run(id).await.state, State::Done);
}

#[tokio::test]
async fn a_failed_status_check_outside_a_followed_job_keeps_the_bounded_budget() {
    let h = harness().await;
    let id = h.submit().await;
    h.step_when_due(id).await; // Uploading -> Submitted: no job is followed yet
    h.fail_next_describe(AwsErrorKind::Terminal, "AccessDeniedException");
    h.step_when_due(id).await;
    let run = h.run(id).await;
    assert_eq!(run.state, State::Failed);
    assert_eq!(run.degraded_since, None);
}

#[test]
fn decide_keeps_following_on_an_observation_error_and_fails_on_a_refused_effect() {
    let def = crate::workflows::load_definitions()
        .unwrap()
        .into_iter()
        .find(|d| d.kind == Kind::Training)
        .unwrap();
    let now = chrono::Utc::now();
    let run = store::Run {
        id: Uuid::now_v7(),
        kind: Kind::Training,
        state: State::Polling,
        request: serde_json::Value::Null,
        context: serde_json::json!({"job_name": "j"}),
        resource_name: None,
        attempt: 50,
        version: 1,
        next_due_at: Some(now),
        lease_owner: None,
        lease_until: None,
        cancel_requested: false,
        last_error: Some("DescribeTrainingJob: ThrottlingException: x".into()),
        degraded_since: Some(now),
        submitted_by: None,
        created_at: now,
        updated_at: now,
    };
    let observed = StepError::from(AwsError {
        kind: AwsErrorKind::Terminal,
        operation: "DescribeTrainingJob",
        code: Some("ExpiredTokenException".into()),
        message: "expired".into(),
    });
    assert!(observed.observation && observed.auth);
    let t = decide(&def, &run, Err(observed), now);
    assert_eq!(
        (t.to, t.attempt, t.degraded, t.collapse),
        (State::Polling, 51, true, true)
    );
    let wait = (t.next_due_at.unwrap() - now).to_std().unwrap();
    assert!(wait <= Duration::from_millis(def.retry.observe_max_delay_ms));

    let effect = StepError::from(AwsError {
        kind: AwsErrorKind::Terminal,
        operation: "StopTrainingJob",
        code: Some("ValidationException".into()),
        message: "no".into(),
    });
    let cancelling = store::Run {
        state: State::Cancelling,
        ..run.clone()
    };
    let t = decide(&def, &cancelling, Err(effect), now);
    assert_eq!((t.to, t.degraded), (State::Failed, false));
    assert_eq!(
        t.detail.as_deref(),
        Some(Transition::gave_up_detail(State::Cancelling).as_str())
    );

    let ok = StepOutput::to(
        State::Polling,
        serde_json::json!({"job_name": "j", "polls": 1}),
    )
    .due(Due::After(Duration::from_secs(60)));
    let t = decide(&def, &run, Ok(ok), now);
    assert!(!t.degraded, "a successful step ends the streak");

    // A step that timed out never saw AWS's answer: in a followed state it keeps following
    // past any budget; outside one (Submitted: the create may hang) the budget holds.
    let t = decide(
        &def,
        &run,
        Err(super::timed_out(Duration::from_secs(120))),
        now,
    );
    assert_eq!((t.to, t.degraded), (State::Polling, true));
    let submitted = store::Run {
        state: State::Submitted,
        degraded_since: None,
        ..run.clone()
    };
    let t = decide(
        &def,
        &submitted,
        Err(super::timed_out(Duration::from_secs(120))),
        now,
    );
    assert_eq!(
        t.to,
        State::Failed,
        "attempt 51 is past the budget outside a followed state"
    );
}
