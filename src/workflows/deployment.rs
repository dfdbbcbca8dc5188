//! The endpoint deployment workflow (`workflows/deployment.toml`): put an endpoint config into
//! service on an endpoint. Submitted creates the endpoint (CreateEndpoint) or, when it serves
//! another config, updates it (UpdateEndpoint); Polling waits through Creating / Updating; the run
//! is Done only when the endpoint is InService **with the requested config**. An update that
//! SageMaker rolled back (InService on the old config after our update) is Failed with its reason.
//!
//! Restart safety: the endpoint name is the intent (it comes from the route); Submitted always
//! describes first. UpdateEndpoint is sent **at most once per run**: its intent (`update_intent`:
//! the config it moves from and the endpoint's LastModifiedTime then) is committed in a
//! transition of its own before the call. A resumed run that finds the intent but no record of
//! the call decides from the endpoint: Updating means the call went through (it is followed,
//! never sent again); InService and unchanged since the intent (same config, same
//! LastModifiedTime) means it never reached SageMaker (it is sent now); anything else means it
//! may have gone through and been rolled back, and the run fails saying so rather than update
//! the endpoint twice (an operator retry starts afresh).

use super::{Due, StepContext, StepError, StepOutput, Workflow};
use crate::aws::{AwsErrorKind, AwsPort, EndpointConfigSpec, EndpointDescription, ModelSpec};
use crate::failpoint;
use crate::model::{Kind, State};
use crate::store::Run;
use crate::validate::{self, Fields, InputError, InputResult};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A validated deployment request, as stored with the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeployRequest {
    pub endpoint_name: String,
    pub endpoint_config_name: String,
    /// Tags for an endpoint this run creates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// A model to create first when missing (a deployment started by AutoML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSpec>,
    /// An endpoint config to create first when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<EndpointConfigSpec>,
    /// The run that started this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run: Option<String>,
}

impl DeployRequest {
    /// `endpoint` comes from the route; the body is `{EndpointConfigName, EndpointName?, Tags?}`
    /// as the Essedum backend sends it (unknown keys ignored, `""` absent). The backend repeats
    /// the route's endpoint as `EndpointName` (ICIPModelAWSServiceSageMaker.deployModelFromRemoteVM);
    /// a different `EndpointName` is ambiguous and refused, naming it.
    pub fn parse(endpoint: &str, body: Value) -> InputResult<DeployRequest> {
        let endpoint_name = validate::sagemaker_name("id", endpoint)?;
        let mut f = Fields::essedum(body, &["EndpointConfigName", "EndpointName", "Tags"])?;
        if let Some(named) = f.opt_str("EndpointName")?
            && named != endpoint_name
        {
            return Err(InputError::invalid(
                "EndpointName",
                format!(
                    "names endpoint {named:?} but the path names {endpoint_name:?}; leave it out or make them equal"
                ),
            ));
        }
        Self::rest(endpoint_name, f)
    }

    /// The UI's deploy body on `models/{id}/export`: `{EndpointConfigName, EndpointName,
    /// Tags?}` (unknown keys such as `Model Id` ignored, `""` absent).
    pub fn parse_export(body: Value) -> InputResult<DeployRequest> {
        let mut f = Fields::essedum(body, &["EndpointConfigName", "EndpointName", "Tags"])?;
        let endpoint_name = validate::sagemaker_name("EndpointName", &f.str("EndpointName")?)?;
        Self::rest(endpoint_name, f)
    }

    fn rest(endpoint_name: String, mut f: Fields) -> InputResult<DeployRequest> {
        let endpoint_config_name =
            validate::sagemaker_name("EndpointConfigName", &f.str("EndpointConfigName")?)?;
        let tags = f.opt_string_map("Tags")?.unwrap_or_default();
        Ok(DeployRequest {
            endpoint_name,
            endpoint_config_name,
            tags,
            model: None,
            config: None,
            parent_run: None,
        })
    }
}

/// What the workflow remembers (key names shared with the job context, for the status views).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployContext {
    /// The endpoint's name.
    pub job_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sagemaker_status: Option<String>,
    /// The config the endpoint serves now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_config_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// UpdateEndpoint was accepted for the requested config.
    #[serde(default)]
    pub update_sent: bool,
    /// This run creates the endpoint (committed before CreateEndpoint): cancelling it deletes
    /// the endpoint, and the model and config it brought along when no other endpoint uses them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub creates_endpoint: bool,
    /// UpdateEndpoint is about to be sent (committed before the call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_intent: Option<UpdateIntent>,
    #[serde(default)]
    pub polls: u32,
}

/// What the endpoint looked like when this run decided to update it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateIntent {
    /// The config it served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_config: Option<String>,
    /// Its LastModifiedTime (RFC 3339), which any UpdateEndpoint changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

impl UpdateIntent {
    fn of(d: &EndpointDescription) -> UpdateIntent {
        UpdateIntent {
            from_config: d.config_name.clone(),
            last_modified: d.last_modified.map(crate::clock::to_db),
        }
    }

    /// The endpoint is exactly as it was when the intent was recorded: no update reached it.
    fn unchanged(&self, d: &EndpointDescription) -> bool {
        self.last_modified.is_some() && *self == UpdateIntent::of(d)
    }
}

impl DeployContext {
    pub fn new(endpoint: &str) -> Self {
        DeployContext {
            job_name: endpoint.to_string(),
            ..Default::default()
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("context serialises")
    }

    /// A run that ends Failed forgets its update, so that an operator retry decides afresh.
    fn forget_update(&mut self) {
        self.update_sent = false;
        self.update_intent = None;
    }

    fn record(&mut self, d: &EndpointDescription) {
        if d.arn.is_some() {
            self.job_arn.clone_from(&d.arn);
        }
        self.sagemaker_status = Some(d.status.clone());
        self.endpoint_config_name.clone_from(&d.config_name);
        self.failure_reason.clone_from(&d.failure_reason);
    }
}

use State::*;

const EDGES: &[(State, State)] = &[
    (Submitted, Submitted),
    (Submitted, Polling),
    (Submitted, Done),
    (Submitted, Failed),
    (Submitted, Cancelled),
    (Submitted, Cancelling),
    (Polling, Polling),
    (Polling, Submitted),
    (Polling, Done),
    (Polling, Failed),
    (Polling, Cancelled),
    (Polling, Cancelling),
    (Cancelling, Cancelling),
    (Cancelling, Cancelled),
];

pub struct DeploymentWorkflow;

/// Creates the model and endpoint config a deployment brings along, when they are missing
/// (describe first; `AlreadyExists` means another attempt created them).
async fn ensure_model_and_config(aws: &dyn AwsPort, req: &DeployRequest) -> Result<(), StepError> {
    if let Some(model) = &req.model
        && aws.describe_model(&model.model_name).await?.is_none()
    {
        match aws.create_model(model).await {
            Ok(_) => {}
            Err(e) if e.kind == AwsErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(config) = &req.config
        && aws
            .describe_endpoint_config(&config.endpoint_config_name)
            .await?
            .is_none()
    {
        match aws.create_endpoint_config(config).await {
            Ok(_) => {}
            Err(e) if e.kind == AwsErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The endpoint is InService on another config than the requested one, and no update of this run
/// is known to have been sent: record the intent, send the update once, or refuse to send it twice.
async fn update(
    run: &Run,
    req: &DeployRequest,
    mut ctx: DeployContext,
    d: &EndpointDescription,
    cx: &StepContext,
) -> Result<StepOutput, StepError> {
    let from = d.config_name.as_deref().unwrap_or("(unknown)").to_string();
    let Some(intent) = ctx.update_intent.clone() else {
        if run.state == Polling {
            return Ok(StepOutput::to(Submitted, ctx.to_value())
                .detail("the endpoint is InService on another config; updating it"));
        }
        // Committed before the call, so that a restart knows the call may have been sent.
        ctx.update_intent = Some(UpdateIntent::of(d));
        return Ok(StepOutput::to(Submitted, ctx.to_value()).detail(format!(
            "about to send UpdateEndpoint from {from} to {}",
            req.endpoint_config_name
        )));
    };
    if !intent.unchanged(d) {
        let seen = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
        let reason = format!(
            "UpdateEndpoint to {} may have been sent before a restart, and the endpoint changed since (it served {} last modified {}; it serves {from} last modified {}){}; it is not updated a second time: retry the run to deploy again",
            req.endpoint_config_name,
            seen(&intent.from_config),
            seen(&intent.last_modified),
            seen(&d.last_modified.map(crate::clock::to_db)),
            d.failure_reason
                .as_deref()
                .map(|r| format!(", with the reason: {r}"))
                .unwrap_or_default(),
        );
        ctx.forget_update();
        ctx.failure_reason = Some(reason.clone());
        return Ok(StepOutput::to(Failed, ctx.to_value())
            .detail("not updating the endpoint twice")
            .failure(reason));
    }
    if run.state == Polling {
        return Ok(StepOutput::to(Submitted, ctx.to_value())
            .detail("the endpoint is InService on another config; updating it"));
    }
    failpoint::hit("deployment.after_update_intent").await;
    failpoint::hit("deployment.before_update").await;
    cx.aws
        .update_endpoint(&req.endpoint_name, &req.endpoint_config_name)
        .await?;
    failpoint::hit("deployment.after_update").await;
    ctx.update_sent = true;
    Ok(StepOutput::to(Polling, ctx.to_value())
        .due(Due::After(cx.poll_interval(0)))
        .detail(format!(
            "UpdateEndpoint accepted from {from} to {}",
            req.endpoint_config_name
        )))
}

/// Cancelling a run that created its endpoint: wait out an operation in progress, DeleteEndpoint,
/// wait until it is gone, then delete the model and config this deployment brought along (unless
/// another endpoint uses them).
async fn cancelling(
    req: &DeployRequest,
    mut ctx: DeployContext,
    cx: &StepContext,
) -> Result<StepOutput, StepError> {
    let described = cx.aws.describe_endpoint(&req.endpoint_name).await?;
    let Some(d) = described else {
        ctx.sagemaker_status = Some("Deleted".into());
        let config = req.config.as_ref().map(|c| c.endpoint_config_name.as_str());
        let model = req.model.as_ref().map(|m| m.model_name.as_str());
        let notes =
            super::teardown::delete_unused(cx.aws.as_ref(), &req.endpoint_name, config, model)
                .await?;
        let mut detail = format!(
            "cancelled; endpoint {} deleted (this run created it)",
            req.endpoint_name
        );
        for note in notes {
            detail.push_str(&format!("; {note}"));
        }
        return Ok(StepOutput::to(Cancelled, ctx.to_value()).detail(detail));
    };
    let changed = ctx.sagemaker_status.as_deref() != Some(d.status.as_str());
    ctx.record(&d);
    let in_progress = matches!(
        d.status.as_str(),
        "Creating" | "Updating" | "SystemUpdating" | "RollingBack"
    );
    let wait = |mut ctx: DeployContext, detail: Option<String>| {
        ctx.polls += 1;
        let mut out =
            StepOutput::to(Cancelling, ctx.to_value()).due(Due::After(cx.poll_interval(ctx.polls)));
        if let Some(detail) = detail {
            out = out.detail(detail);
        }
        Ok(out)
    };
    if d.status == "Deleting" {
        return wait(ctx, changed.then(|| "endpoint Deleting".to_string()));
    }
    failpoint::hit("deployment.before_delete").await;
    match cx.aws.delete_endpoint(&req.endpoint_name).await {
        Ok(()) => {}
        Err(e) if e.kind == AwsErrorKind::NotFound => {}
        // SageMaker may refuse while an operation runs: delete once it has settled.
        Err(e) if e.kind == AwsErrorKind::Terminal && in_progress => {
            return wait(
                ctx,
                changed.then(|| {
                    format!(
                        "SageMaker refuses to delete the endpoint while it is {} ({e}); trying again when it settles",
                        d.status
                    )
                }),
            );
        }
        Err(e) => return Err(e.into()),
    }
    ctx.sagemaker_status = Some("Deleting".into());
    Ok(StepOutput::to(Cancelling, ctx.to_value())
        .due(Due::After(cx.poll_interval(0)))
        .detail(format!(
            "DeleteEndpoint accepted for {} (it was {})",
            req.endpoint_name, d.status
        )))
}

fn parse(run: &Run) -> Result<(DeployRequest, DeployContext), StepError> {
    let req = serde_json::from_value(run.request.clone())
        .map_err(|e| StepError::terminal(format!("stored request is unreadable: {e}")))?;
    let ctx = serde_json::from_value(run.context.clone())
        .map_err(|e| StepError::terminal(format!("stored context is unreadable: {e}")))?;
    Ok((req, ctx))
}

#[async_trait]
impl Workflow for DeploymentWorkflow {
    fn kind(&self) -> Kind {
        Kind::Deployment
    }

    fn handled_states(&self) -> &'static [State] {
        &[Submitted, Polling, Cancelling]
    }

    fn edges(&self) -> &'static [(State, State)] {
        EDGES
    }

    async fn step(&self, run: &Run, cx: &StepContext) -> Result<StepOutput, StepError> {
        let (req, mut ctx) = parse(run)?;
        if run.state == Cancelling && ctx.creates_endpoint {
            return cancelling(&req, ctx, cx).await;
        }
        // (A run re-armed in Cancelling by an operator's cancel of a Failed run lands here when it
        // did not create its endpoint: that endpoint is never deleted.)
        if run.cancel_requested || run.state == Cancelling {
            if ctx.creates_endpoint {
                return Ok(StepOutput::to(Cancelling, ctx.to_value()).detail(format!(
                    "cancel requested; deleting endpoint {}, which this run created",
                    req.endpoint_name
                )));
            }
            // SageMaker cannot stop an endpoint operation; the run stops following it. An
            // endpoint that existed before this run is someone's service: it is never deleted.
            return Ok(StepOutput::to(Cancelled, ctx.to_value()).detail(
                "cancelled; the endpoint was not created by this run, so it is left as it is (an update already sent continues in SageMaker)",
            ));
        }
        let described = cx.aws.describe_endpoint(&req.endpoint_name).await?;
        if let Some(d) = &described {
            ctx.record(d);
        }
        let next_poll = Due::After(cx.poll_interval(ctx.polls));
        match (run.state, described) {
            (Submitted, None) if !ctx.creates_endpoint => {
                // Committed before CreateEndpoint: a cancel after a crash still knows the
                // endpoint is this run's to delete.
                ctx.creates_endpoint = true;
                Ok(StepOutput::to(Submitted, ctx.to_value()).detail(format!(
                    "endpoint {} does not exist; this run creates it",
                    req.endpoint_name
                )))
            }
            (Submitted, None) => {
                ensure_model_and_config(cx.aws.as_ref(), &req).await?;
                failpoint::hit("deployment.before_create").await;
                match cx
                    .aws
                    .create_endpoint(&req.endpoint_name, &req.endpoint_config_name, &req.tags)
                    .await
                {
                    Ok(arn) => {
                        failpoint::hit("deployment.after_create").await;
                        ctx.job_arn = Some(arn).filter(|a| !a.is_empty());
                        Ok(StepOutput::to(Polling, ctx.to_value())
                            .due(Due::After(cx.poll_interval(0)))
                            .detail(format!(
                                "CreateEndpoint accepted with config {}",
                                req.endpoint_config_name
                            )))
                    }
                    Err(e) if e.kind == AwsErrorKind::AlreadyExists => {
                        Ok(StepOutput::to(Polling, ctx.to_value())
                            .detail("the endpoint already exists; following it"))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            (_, None) => Err(StepError::terminal(format!(
                "endpoint {} no longer exists",
                req.endpoint_name
            ))),
            (_, Some(d)) => {
                let serves_requested =
                    d.config_name.as_deref() == Some(req.endpoint_config_name.as_str());
                match d.status.as_str() {
                    "InService" if serves_requested => Ok(StepOutput::to(Done, ctx.to_value())
                        .detail(format!(
                            "InService with config {}",
                            req.endpoint_config_name
                        ))),
                    "InService" if ctx.update_sent => {
                        let reason = d
                            .failure_reason
                            .clone()
                            .unwrap_or_else(|| "SageMaker rolled the update back".into());
                        ctx.forget_update();
                        Ok(StepOutput::to(Failed, ctx.to_value())
                            .detail(format!(
                                "the update to {} was rolled back; the endpoint serves {}",
                                req.endpoint_config_name,
                                d.config_name.as_deref().unwrap_or("(unknown)")
                            ))
                            .failure(reason))
                    }
                    "InService" => update(run, &req, ctx, &d, cx).await,
                    "Failed" => {
                        let reason = d
                            .failure_reason
                            .clone()
                            .unwrap_or_else(|| "the endpoint is Failed".into());
                        ctx.forget_update();
                        Ok(StepOutput::to(Failed, ctx.to_value())
                            .detail("endpoint Failed")
                            .failure(reason))
                    }
                    "Deleting" | "OutOfService" => Err(StepError::terminal(format!(
                        "endpoint {} is {}; it cannot be deployed to now",
                        req.endpoint_name, d.status
                    ))),
                    // Creating, Updating, SystemUpdating, RollingBack: wait.
                    _ => {
                        if ctx.update_intent.is_some() && !ctx.update_sent {
                            // Evidence that our update went through before a restart: follow it.
                            ctx.update_sent = true;
                        }
                        let changed = run.state != Polling
                            || run.context.get("sagemaker_status").and_then(Value::as_str)
                                != Some(d.status.as_str());
                        ctx.polls += 1;
                        let mut out = StepOutput::to(Polling, ctx.to_value()).due(next_poll);
                        if changed {
                            out = out.detail(format!("endpoint {}", d.status));
                        }
                        Ok(out)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_name_their_fields() {
        let r =
            DeployRequest::parse("my-endpoint", json!({"EndpointConfigName": "cfg-1"})).unwrap();
        assert_eq!(
            (r.endpoint_name.as_str(), r.endpoint_config_name.as_str()),
            ("my-endpoint", "cfg-1")
        );
        assert_eq!(
            DeployRequest::parse("bad name", json!({"EndpointConfigName": "c"}))
                .unwrap_err()
                .field(),
            Some("id")
        );
        assert_eq!(
            DeployRequest::parse("e", json!({})).unwrap_err().field(),
            Some("EndpointConfigName")
        );
        // What the backend sends: EndpointName repeats the path; unknown keys and "" are absent.
        let r = DeployRequest::parse(
            "e",
            json!({"EndpointConfigName": "c", "EndpointName": "e", "X": 1, "Tags": ""}),
        )
        .unwrap();
        assert_eq!(r.endpoint_config_name, "c");
        assert_eq!(
            DeployRequest::parse(
                "e",
                json!({"EndpointConfigName": "c", "EndpointName": "other"})
            )
            .unwrap_err()
            .field(),
            Some("EndpointName")
        );
        assert_eq!(
            DeployRequest::parse("e", json!({"EndpointConfigName": 5}))
                .unwrap_err()
                .field(),
            Some("EndpointConfigName")
        );
        let r = DeployRequest::parse_export(
            json!({"EndpointConfigName": "c", "EndpointName": "e2", "Model Id": "m"}),
        )
        .unwrap();
        assert_eq!(r.endpoint_name, "e2");
        assert_eq!(
            DeployRequest::parse_export(json!({"EndpointConfigName": "c", "EndpointName": ""}))
                .unwrap_err()
                .field(),
            Some("EndpointName")
        );
    }
}
