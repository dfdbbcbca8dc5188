//! The endpoint teardown workflow (`workflows/teardown.toml`): DeleteEndpoint, then wait until
//! the endpoint is gone. An endpoint that does not exist ends the run Done with that reported
//! (never an error); a repeated delete of a Deleting endpoint is harmless.

use super::deployment::DeployContext;
use super::{Due, StepContext, StepError, StepOutput, Workflow};
use crate::aws::AwsErrorKind;
use crate::failpoint;
use crate::model::{Kind, State};
use crate::store::Run;
use crate::validate::{self, InputResult};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A validated teardown request, as stored with the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeardownRequest {
    pub endpoint_name: String,
    /// Also delete the endpoint config the endpoint served, when it is one of `owned_configs`
    /// (the endpoint configs registered here when the teardown was asked for).
    #[serde(default)]
    pub delete_config: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owned_configs: Vec<String>,
}

impl TeardownRequest {
    pub fn parse(
        endpoint: &str,
        delete_config: bool,
        owned_configs: Vec<String>,
    ) -> InputResult<TeardownRequest> {
        Ok(TeardownRequest {
            endpoint_name: validate::sagemaker_name("id", endpoint)?,
            delete_config,
            owned_configs: if delete_config {
                owned_configs
            } else {
                Vec::new()
            },
        })
    }
}

use State::*;

const EDGES: &[(State, State)] = &[
    (Submitted, Polling),
    (Submitted, Done),
    (Submitted, Cancelled),
    (Polling, Polling),
    (Polling, Done),
    (Polling, Failed),
    (Polling, Cancelled),
];

pub struct TeardownWorkflow;

#[async_trait]
impl Workflow for TeardownWorkflow {
    fn kind(&self) -> Kind {
        Kind::Teardown
    }

    fn handled_states(&self) -> &'static [State] {
        &[Submitted, Polling]
    }

    fn edges(&self) -> &'static [(State, State)] {
        EDGES
    }

    async fn step(&self, run: &Run, cx: &StepContext) -> Result<StepOutput, StepError> {
        let req: TeardownRequest = serde_json::from_value(run.request.clone())
            .map_err(|e| StepError::terminal(format!("stored request is unreadable: {e}")))?;
        let mut ctx: DeployContext = serde_json::from_value(run.context.clone())
            .map_err(|e| StepError::terminal(format!("stored context is unreadable: {e}")))?;
        if run.cancel_requested {
            return Ok(StepOutput::to(Cancelled, ctx.to_value())
                .detail("cancelled; a delete already sent continues in SageMaker"));
        }
        let Some(d) = cx.aws.describe_endpoint(&req.endpoint_name).await? else {
            ctx.sagemaker_status = Some("Deleted".into());
            if run.state == Submitted {
                return Ok(StepOutput::to(Done, ctx.to_value()).detail(format!(
                    "endpoint {} does not exist; nothing to delete",
                    req.endpoint_name
                )));
            }
            let mut detail = format!("endpoint {} is deleted", req.endpoint_name);
            let mut forget = Vec::new();
            if let Some(config) = ctx.endpoint_config_name.clone()
                && req.delete_config
                && req.owned_configs.contains(&config)
            {
                match cx.aws.delete_endpoint_config(&config).await {
                    Ok(())
                    | Err(crate::aws::AwsError {
                        kind: AwsErrorKind::NotFound,
                        ..
                    }) => {}
                    Err(e) => return Err(e.into()),
                }
                detail.push_str(&format!("; deleted its endpoint config {config}"));
                forget.push((crate::store::OwnedKind::EndpointConfig, config));
            }
            let mut out = StepOutput::to(Done, ctx.to_value()).detail(detail);
            out.forget = forget;
            return Ok(out);
        };
        ctx.sagemaker_status = Some(d.status.clone());
        ctx.endpoint_config_name.clone_from(&d.config_name);
        ctx.job_arn.clone_from(&d.arn);
        let again = Due::After(cx.poll_interval(ctx.polls));
        match (run.state, d.status.as_str()) {
            (Submitted, status) => {
                if status != "Deleting" {
                    failpoint::hit("teardown.before_delete").await;
                    match cx.aws.delete_endpoint(&req.endpoint_name).await {
                        Ok(())
                        | Err(crate::aws::AwsError {
                            kind: AwsErrorKind::NotFound,
                            ..
                        }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(StepOutput::to(Polling, ctx.to_value())
                    .due(Due::After(cx.poll_interval(0)))
                    .detail(format!(
                        "DeleteEndpoint accepted (it served {})",
                        d.config_name.as_deref().unwrap_or("no config")
                    )))
            }
            (_, "Deleting") => {
                ctx.polls += 1;
                Ok(StepOutput::to(Polling, ctx.to_value()).due(again))
            }
            (_, other) => Err(StepError::terminal(format!(
                "endpoint {} is {other} after DeleteEndpoint; it was not deleted",
                req.endpoint_name
            ))),
        }
    }
}
