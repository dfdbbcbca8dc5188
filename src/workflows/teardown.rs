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
            {
                let automl_model = automl_model_of(&config);
                let registered = req.owned_configs.contains(&config);
                if registered || automl_model.is_some() {
                    failpoint::hit("teardown.before_config_delete").await;
                    let notes = delete_unused(
                        cx.aws.as_ref(),
                        &req.endpoint_name,
                        Some(&config),
                        automl_model.as_deref(),
                    )
                    .await?;
                    let deleted = format!("deleted its endpoint config {config}");
                    if registered && notes.contains(&deleted) {
                        forget.push((crate::store::OwnedKind::EndpointConfig, config.clone()));
                    }
                    for note in notes {
                        detail.push_str(&format!("; {note}"));
                    }
                }
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

/// The name prefixes of the model and endpoint config an AutoML run creates for its deployment
/// (`essedum-aml-model-<run>` / `essedum-aml-cfg-<run>`, see `automl.rs`): this service's own.
const AUTOML_CONFIG: &str = "essedum-aml-cfg-";
const AUTOML_MODEL: &str = "essedum-aml-model-";

/// The model that an AutoML deployment's config serves, when `config` is one.
pub(super) fn automl_model_of(config: &str) -> Option<String> {
    config
        .strip_prefix(AUTOML_CONFIG)
        .map(|run| format!("{AUTOML_MODEL}{run}"))
}

/// Deletes `config` and `model` (this service's, created for `endpoint`, which is gone) unless
/// another endpoint still uses them: an endpoint config served by another endpoint, or a model in
/// a variant of a config another endpoint serves, stays. Missing ones are skipped. Returns what
/// was deleted or kept, for the history ("deleted its endpoint config …").
pub(super) async fn delete_unused(
    aws: &dyn crate::aws::AwsPort,
    endpoint: &str,
    config: Option<&str>,
    model: Option<&str>,
) -> Result<Vec<String>, StepError> {
    if config.is_none() && model.is_none() {
        return Ok(Vec::new());
    }
    // What the other endpoints serve (ListEndpoints, then each one's config): a question about
    // other people's resources, not an existence check of ours.
    let others = aws.list_endpoints(100, 50).await?;
    let mut used_configs = std::collections::BTreeSet::new();
    for e in others.items.iter().filter(|e| e.name != endpoint) {
        if let Some(d) = aws.describe_endpoint(&e.name).await?
            && let Some(c) = d.config_name
        {
            used_configs.insert(c);
        }
    }
    let mut notes = Vec::new();
    if let Some(config) = config {
        if used_configs.contains(config) {
            notes.push(format!(
                "kept its endpoint config {config} (another endpoint serves it)"
            ));
        } else {
            match aws.delete_endpoint_config(config).await {
                Ok(()) => notes.push(format!("deleted its endpoint config {config}")),
                Err(e) if e.kind == AwsErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    if let Some(model) = model {
        let mut used = false;
        for c in &used_configs {
            if let Some((spec, _)) = aws.describe_endpoint_config(c).await?
                && spec
                    .production_variants
                    .iter()
                    .any(|v| v.model_name == model)
            {
                used = true;
                break;
            }
        }
        if used {
            notes.push(format!(
                "kept its model {model} (another endpoint serves it)"
            ));
        } else {
            match aws.delete_model(model).await {
                Ok(()) => notes.push(format!("deleted its model {model}")),
                Err(e) if e.kind == AwsErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(notes)
}
