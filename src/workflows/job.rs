//! The shape every SageMaker job workflow shares (training, AutoML; later transform and
//! processing): Uploading → Submitted → Polling → Done | Failed, plus Cancelling → Cancelled.
//!
//! The job's name is derived from the run id and stored with the run when it is accepted, so it
//! is in the checkpoint long before the create call. Submitted always describes the job by that
//! name first and adopts a job that exists; `ResourceInUse` on create also means adopt. Nothing
//! ever lists jobs to find one. A kind supplies only its AWS calls ([`SageMakerJob`]).

use super::input::{DataSpec, InputSource};
use super::{Due, StepContext, StepError, StepOutput, Workflow};
use crate::aws::{AwsErrorKind, AwsPort, AwsResult, JobDescription};
use crate::failpoint;
use crate::model::{Kind, State};
use crate::store::Run;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a job workflow remembers between steps (the run's context).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobContext {
    pub job_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_s3_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sagemaker_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The model artifacts (training) or the best candidate's model data (AutoML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_artifacts: Option<String>,
    /// AutoML's best candidate as SageMaker describes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_candidate: Option<Value>,
    #[serde(default)]
    pub polls: u32,
    #[serde(default)]
    pub stop_sent: bool,
}

impl JobContext {
    pub fn new(job_name: String) -> Self {
        JobContext {
            job_name,
            ..Default::default()
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("context serialises")
    }

    fn record(&mut self, d: &JobDescription) {
        if d.arn.is_some() {
            self.job_arn.clone_from(&d.arn);
        }
        self.sagemaker_status = Some(d.status.clone());
        self.secondary_status.clone_from(&d.secondary_status);
        self.failure_reason.clone_from(&d.failure_reason);
        self.model_artifacts.clone_from(&d.model_artifacts);
        self.best_candidate.clone_from(&d.best_candidate);
    }
}

/// One kind of SageMaker job: its name in failpoints and messages, and its three AWS calls.
#[async_trait]
pub trait SageMakerJob: Send + Sync + 'static {
    fn kind(&self) -> Kind;
    /// "training job", "AutoML job": for history details.
    fn noun(&self) -> &'static str;
    /// The shared data part of the stored request.
    fn data(&self, request: &Value) -> Result<DataSpec, StepError> {
        serde_json::from_value(request.clone())
            .map_err(|e| StepError::terminal(format!("stored request is unreadable: {e}")))
    }
    async fn describe(&self, aws: &dyn AwsPort, name: &str) -> AwsResult<Option<JobDescription>>;
    /// Creates the job named in `ctx` for `run`; returns its ARN.
    async fn create(&self, aws: &dyn AwsPort, run: &Run, ctx: &JobContext) -> AwsResult<String>;
    async fn stop(&self, aws: &dyn AwsPort, name: &str) -> AwsResult<()>;
    /// The edges this kind's runs take: all of [`EDGES`], or [`EDGES_WITHOUT_UPLOAD`] for a
    /// kind whose runs start in Submitted.
    fn edges(&self) -> &'static [(State, State)] {
        EDGES
    }
    /// Linked runs to start when the job completes (AutoML's optional deployment).
    fn on_done(
        &self,
        _run: &Run,
        _ctx: &JobContext,
    ) -> Result<Vec<crate::store::NewRun>, StepError> {
        Ok(Vec::new())
    }
}

use State::*;

/// Every edge the job steps below can take.
pub const EDGES: &[(State, State)] = &[
    (Uploading, Submitted),
    (Uploading, Cancelled),
    (Submitted, Polling),
    (Submitted, Cancelling),
    (Polling, Polling),
    (Polling, Done),
    (Polling, Failed),
    (Polling, Cancelling),
    (Cancelling, Cancelling),
    (Cancelling, Cancelled),
    (Cancelling, Done),
    (Cancelling, Failed),
    (Cancelling, Polling),
];

/// The edges of a kind whose input is always in S3 already (its runs start in Submitted).
pub const EDGES_WITHOUT_UPLOAD: &[(State, State)] = &[
    (Submitted, Polling),
    (Submitted, Cancelling),
    (Polling, Polling),
    (Polling, Done),
    (Polling, Failed),
    (Polling, Cancelling),
    (Cancelling, Cancelling),
    (Cancelling, Cancelled),
    (Cancelling, Done),
    (Cancelling, Failed),
    (Cancelling, Polling),
];

/// A job workflow: the shared steps around one kind's AWS calls.
pub struct JobWorkflow<J>(pub J);

#[async_trait]
impl<J: SageMakerJob> Workflow for JobWorkflow<J> {
    fn kind(&self) -> Kind {
        self.0.kind()
    }

    fn handled_states(&self) -> &'static [State] {
        &[Uploading, Submitted, Polling, Cancelling]
    }

    fn edges(&self) -> &'static [(State, State)] {
        self.0.edges()
    }

    async fn step(&self, run: &Run, cx: &StepContext) -> Result<StepOutput, StepError> {
        let job = &self.0;
        let ctx: JobContext = serde_json::from_value(run.context.clone())
            .map_err(|e| StepError::terminal(format!("stored context is unreadable: {e}")))?;
        match run.state {
            Uploading => upload(job, run, ctx, cx).await,
            _ => job_step(job, run, ctx, cx).await,
        }
    }
}

/// The steps every job kind shares once its input is staged: Submitted, Polling and Cancelling
/// (a cancel request moves Submitted and Polling to Cancelling).
pub(super) async fn job_step(
    job: &dyn SageMakerJob,
    run: &Run,
    mut ctx: JobContext,
    cx: &StepContext,
) -> Result<StepOutput, StepError> {
    match run.state {
        Submitted if run.cancel_requested => Ok(StepOutput::to(Cancelling, ctx.to_value())
            .detail("cancel requested before the job was confirmed")),
        Submitted => submit(job, run, ctx, cx).await,
        Polling if run.cancel_requested => {
            Ok(StepOutput::to(Cancelling, ctx.to_value()).detail("cancel requested"))
        }
        Polling => poll(job, run, ctx, cx).await,
        Cancelling => cancel(job, &mut ctx, cx).await,
        Uploading | Collecting => Err(StepError::terminal(format!(
            "{} is not a job step of {} runs",
            run.state,
            job.kind()
        ))),
        Done | Failed | Cancelled => Err(StepError::terminal(format!("{} is terminal", run.state))),
    }
}

fn failpoint_name(job: &dyn SageMakerJob, point: &str) -> String {
    format!("{}.{point}", job.kind())
}

async fn upload(
    job: &dyn SageMakerJob,
    run: &Run,
    mut ctx: JobContext,
    cx: &StepContext,
) -> Result<StepOutput, StepError> {
    if run.cancel_requested {
        return Ok(StepOutput::to(Cancelled, ctx.to_value())
            .detail(format!("cancelled before any {} was created", job.noun())));
    }
    let data = job.data(&run.request)?;
    let uri = match (&data.input, data.staging_key(run.id)) {
        (InputSource::S3 { uri }, _) => {
            ctx.input_s3_uri = Some(uri.clone());
            return Ok(StepOutput::to(Submitted, ctx.to_value()).detail(format!(
                "input already in S3 at {uri}; job name {}",
                ctx.job_name
            )));
        }
        (InputSource::InlineCsv { csv }, Some(key)) => {
            cx.aws
                .put_object(
                    &data.bucket,
                    &key,
                    csv.clone().into_bytes(),
                    &data.content_type,
                )
                .await?;
            format!("s3://{}/{key}", data.bucket)
        }
        (InputSource::LocalFile { path }, Some(key)) => {
            cx.aws
                .upload_file(&data.bucket, &key, path, &data.content_type)
                .await?;
            format!("s3://{}/{key}", data.bucket)
        }
        (_, None) => return Err(StepError::terminal("no staging key for this input")),
    };
    failpoint::hit(&failpoint_name(job, "after_upload")).await;
    ctx.input_s3_uri = Some(uri.clone());
    Ok(StepOutput::to(Submitted, ctx.to_value())
        .detail(format!("staged input at {uri}; job name {}", ctx.job_name)))
}

async fn submit(
    job: &dyn SageMakerJob,
    run: &Run,
    mut ctx: JobContext,
    cx: &StepContext,
) -> Result<StepOutput, StepError> {
    let first_poll = Due::After(cx.poll_interval(0));
    if let Some(existing) = job.describe(cx.aws.as_ref(), &ctx.job_name).await? {
        ctx.record(&existing);
        return Ok(StepOutput::to(Polling, ctx.to_value())
            .due(first_poll)
            .detail(format!(
                "adopted existing {} {} ({})",
                job.noun(),
                ctx.job_name,
                existing.status
            )));
    }
    failpoint::hit(&failpoint_name(job, "before_create")).await;
    match job.create(cx.aws.as_ref(), run, &ctx).await {
        Ok(arn) => {
            failpoint::hit(&failpoint_name(job, "after_create")).await;
            ctx.job_arn = Some(arn).filter(|a| !a.is_empty());
            Ok(StepOutput::to(Polling, ctx.to_value())
                .due(first_poll)
                .detail(format!(
                    "create accepted for {} {}",
                    job.noun(),
                    ctx.job_name
                )))
        }
        Err(e) if e.kind == AwsErrorKind::AlreadyExists => {
            Ok(StepOutput::to(Polling, ctx.to_value())
                .due(Due::Now)
                .detail(format!(
                    "{} {} already exists (ResourceInUse); adopted",
                    job.noun(),
                    ctx.job_name
                )))
        }
        Err(e) => Err(e.into()),
    }
}

async fn poll(
    job: &dyn SageMakerJob,
    run: &Run,
    mut ctx: JobContext,
    cx: &StepContext,
) -> Result<StepOutput, StepError> {
    let Some(d) = job.describe(cx.aws.as_ref(), &ctx.job_name).await? else {
        return Err(StepError::terminal(format!(
            "{} {} no longer exists",
            job.noun(),
            ctx.job_name
        )));
    };
    let previous = (ctx.sagemaker_status.clone(), ctx.secondary_status.clone());
    ctx.record(&d);
    let changed = previous != (ctx.sagemaker_status.clone(), ctx.secondary_status.clone());
    let status_text = describe_status(&d);
    match d.status.as_str() {
        "Completed" => {
            let children = job.on_done(run, &ctx)?;
            Ok(StepOutput::to(Done, ctx.to_value())
                .detail(format!(
                    "{status_text}; model artifacts at {}",
                    ctx.model_artifacts.as_deref().unwrap_or("(none)")
                ))
                .spawn(children))
        }
        "Failed" => {
            let reason = d
                .failure_reason
                .clone()
                .unwrap_or_else(|| "SageMaker reported Failed without a reason".into());
            Ok(StepOutput::to(Failed, ctx.to_value())
                .detail(status_text)
                .failure(reason))
        }
        "Stopped" => Ok(StepOutput::to(Failed, ctx.to_value())
            .detail(status_text)
            .failure(format!(
                "the {} was stopped outside the executor (no cancel was requested)",
                job.noun()
            ))),
        _ => {
            failpoint::hit(&failpoint_name(job, "during_polling")).await;
            let polls = ctx.polls;
            ctx.polls += 1;
            // While a sweep covers the run, it makes the run due when the job's status changes;
            // the own Describe is then only a safety net.
            let next = cx.swept.unwrap_or_else(|| cx.poll_interval(polls + 1));
            let mut out = StepOutput::to(Polling, ctx.to_value()).due(Due::After(next));
            if changed {
                out = out.detail(status_text);
            }
            Ok(out)
        }
    }
}

async fn cancel(
    job: &dyn SageMakerJob,
    ctx: &mut JobContext,
    cx: &StepContext,
) -> Result<StepOutput, StepError> {
    let Some(d) = job.describe(cx.aws.as_ref(), &ctx.job_name).await? else {
        return Ok(StepOutput::to(Cancelled, ctx.to_value())
            .detail(format!("no {} was created", job.noun())));
    };
    ctx.record(&d);
    if let Some(ended) = ended_while_cancelling(job, ctx, &d) {
        return Ok(ended);
    }
    let again = Due::After(cx.poll_interval(0));
    if d.status == "Stopping" || ctx.stop_sent {
        return Ok(StepOutput::to(Cancelling, ctx.to_value()).due(again));
    }
    match job.stop(cx.aws.as_ref(), &ctx.job_name).await {
        Ok(()) => {}
        // Refused for good: either the job ended between the describe and the stop (the
        // describe below tells how), or AWS will not stop it (AccessDenied, …). Then the cancel
        // is answered: the run goes back to following the job, with AWS's reason as its error.
        Err(e) if e.kind == AwsErrorKind::Terminal => {
            if let Some(d) = job.describe(cx.aws.as_ref(), &ctx.job_name).await? {
                ctx.record(&d);
                if let Some(ended) = ended_while_cancelling(job, ctx, &d) {
                    return Ok(ended);
                }
            }
            let polls = ctx.polls;
            ctx.polls += 1;
            return Ok(StepOutput::to(Polling, ctx.to_value())
                .due(Due::After(cx.poll_interval(polls + 1)))
                .detail(format!(
                    "cancel refused: the {} keeps running and is followed to its end; cancel \
                     again once the stop is allowed",
                    job.noun()
                ))
                .failure(format!("cancel refused by SageMaker: {e}")));
        }
        Err(e) => return Err(e.into()),
    }
    ctx.stop_sent = true;
    Ok(StepOutput::to(Cancelling, ctx.to_value())
        .due(again)
        .detail("stop sent"))
}

/// The run's end when the job ended while a cancel was under way.
fn ended_while_cancelling(
    job: &dyn SageMakerJob,
    ctx: &JobContext,
    d: &JobDescription,
) -> Option<StepOutput> {
    match d.status.as_str() {
        "Stopped" => Some(
            StepOutput::to(Cancelled, ctx.to_value()).detail(format!("{} stopped", job.noun())),
        ),
        "Completed" => Some(
            StepOutput::to(Done, ctx.to_value())
                .detail("the job completed before the stop took effect"),
        ),
        "Failed" => {
            let reason = d
                .failure_reason
                .clone()
                .unwrap_or_else(|| "SageMaker reported Failed".into());
            Some(
                StepOutput::to(Failed, ctx.to_value())
                    .detail("the job failed before the stop took effect")
                    .failure(reason),
            )
        }
        _ => None,
    }
}

fn describe_status(d: &JobDescription) -> String {
    match &d.secondary_status {
        Some(s) => format!("SageMaker {} ({s})", d.status),
        None => format!("SageMaker {}", d.status),
    }
}
