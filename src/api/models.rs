//! Essedum's model and endpoint-config routes: SageMaker models (CreateModel) and endpoint
//! configs (CreateEndpointConfig), registered idempotently. These are single calls, not
//! workflows: registering is repeatable (an identical existing resource is adopted, a different
//! one with the same name is a 409), and what we registered is recorded first, so that a model an
//! endpoint config of ours uses is not deleted.
// Every Essedum route takes the backend's query parameters and Referer, so handlers have many
// parameters by contract.
#![allow(clippy::too_many_arguments)]

use super::body::RawBody;
use super::dto::{Tag, time};
use super::operator::state_of;
use super::scope::AwsScope;
use super::{ApiError, AppState};
use crate::aws::{
    AwsError, AwsErrorKind, ContainerSpec, EndpointConfigSpec, ModelSpec, VariantSpec,
};
use crate::store::OwnedKind;
use crate::validate::{self, Fields, InputError, InputResult};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use serde_json::Value;

pub struct ModelsApi(pub Option<AppState>);

/// `{ModelName, ExecutionRoleArn, Containers: [{Image, ModelDataUrl?, Mode?, ContainerHostname?,
/// Environment?}]}` (one to fifteen containers; several form an inference pipeline).
#[derive(Object)]
#[oai(rename = "ModelRegistration", deny_unknown_fields)]
#[allow(dead_code)]
struct ModelSchema {
    #[oai(rename = "ModelName")]
    model_name: String,
    #[oai(rename = "ExecutionRoleArn")]
    execution_role_arn: String,
    #[oai(rename = "Containers")]
    containers: Vec<Value>,
}

/// `{EndpointConfigName, ModelName, VariantName?, InitialInstanceCount, InstanceType,
/// InitialVariantWeight?}`: one production variant serving the model.
#[derive(Object)]
#[oai(rename = "EndpointConfigRegistration", deny_unknown_fields)]
#[allow(dead_code)]
struct EndpointConfigSchema {
    #[oai(rename = "EndpointConfigName")]
    endpoint_config_name: String,
    #[oai(rename = "ModelName")]
    model_name: String,
    /// Default `AllTraffic`.
    #[oai(rename = "VariantName")]
    variant_name: Option<String>,
    #[oai(rename = "InitialInstanceCount")]
    initial_instance_count: i32,
    #[oai(rename = "InstanceType")]
    instance_type: String,
    #[oai(rename = "InitialVariantWeight")]
    initial_variant_weight: Option<f64>,
}

/// A model or endpoint config in Essedum's record shape.
#[derive(Object)]
struct ResourceRecord {
    #[oai(rename = "sourceID")]
    source_id: String,
    name: String,
    id: String,
    /// `Created` (this call created it), `Adopted` (an identical one existed) or `Registered`.
    status: String,
    #[oai(rename = "type")]
    kind: String,
    /// The ARN.
    container: Option<String>,
    /// The model data (models).
    artifacts: Option<String>,
    #[oai(rename = "createdOn")]
    created_on: Option<String>,
    /// The resource as SageMaker takes it, as a JSON string.
    #[oai(rename = "rawPayload")]
    raw_payload: String,
}

#[derive(ApiResponse)]
enum RegisterReply {
    /// Created now.
    #[oai(status = 201)]
    Created(Json<ResourceRecord>),
    /// An identical resource existed and is adopted.
    #[oai(status = 200)]
    Adopted(Json<ResourceRecord>),
}

#[derive(Object)]
struct ModelDeleted {
    name: String,
    deleted: bool,
}

fn record(
    kind: &str,
    name: &str,
    status: &str,
    arn: Option<String>,
    spec: &Value,
    created: Option<String>,
) -> ResourceRecord {
    ResourceRecord {
        source_id: name.to_string(),
        name: name.to_string(),
        id: name.to_string(),
        status: status.to_string(),
        kind: kind.to_string(),
        container: arn,
        artifacts: spec["Containers"][0]["ModelDataUrl"]
            .as_str()
            .map(str::to_string),
        created_on: created,
        raw_payload: spec.to_string(),
    }
}

fn parse_model(body: Value) -> InputResult<ModelSpec> {
    let mut f = Fields::new(body, &["ModelName", "ExecutionRoleArn", "Containers"])?;
    let model_name = validate::sagemaker_name("ModelName", &f.str("ModelName")?)?;
    let execution_role_arn = validate::role_arn("ExecutionRoleArn", &f.str("ExecutionRoleArn")?)?;
    let containers = f.array("Containers", 1, 15)?;
    let mut specs = Vec::new();
    for (i, c) in containers.into_iter().enumerate() {
        let mut c = Fields::at_path(
            c,
            &[
                "Image",
                "ModelDataUrl",
                "Mode",
                "ContainerHostname",
                "Environment",
            ],
            &format!("Containers[{i}]."),
        )?;
        let image = validate::token(&format!("Containers[{i}].Image"), &c.str("Image")?, 255)?;
        let model_data_url = c
            .opt_str("ModelDataUrl")?
            .map(|u| validate::s3_uri(&format!("Containers[{i}].ModelDataUrl"), &u))
            .transpose()?;
        let mode = c.opt_str("Mode")?;
        if let Some(m) = &mode
            && !matches!(m.as_str(), "SingleModel" | "MultiModel")
        {
            return Err(InputError::invalid(
                &format!("Containers[{i}].Mode"),
                "must be SingleModel or MultiModel",
            ));
        }
        let container_hostname = c
            .opt_str("ContainerHostname")?
            .map(|h| validate::sagemaker_name(&format!("Containers[{i}].ContainerHostname"), &h))
            .transpose()?;
        let environment = c.opt_string_map("Environment")?.unwrap_or_default();
        specs.push(ContainerSpec {
            image,
            model_data_url,
            mode,
            container_hostname,
            environment,
        });
    }
    Ok(ModelSpec {
        model_name,
        execution_role_arn,
        containers: specs,
    })
}

fn parse_config(body: Value) -> InputResult<EndpointConfigSpec> {
    let mut f = Fields::new(
        body,
        &[
            "EndpointConfigName",
            "ModelName",
            "VariantName",
            "InitialInstanceCount",
            "InstanceType",
            "InitialVariantWeight",
        ],
    )?;
    let endpoint_config_name =
        validate::sagemaker_name("EndpointConfigName", &f.str("EndpointConfigName")?)?;
    let model_name = validate::sagemaker_name("ModelName", &f.str("ModelName")?)?;
    let variant_name = match f.opt_str("VariantName")? {
        Some(v) => validate::sagemaker_name("VariantName", &v)?,
        None => "AllTraffic".into(),
    };
    let initial_instance_count = f
        .opt_int("InitialInstanceCount", 1, 100)?
        .ok_or_else(|| InputError::invalid("InitialInstanceCount", "is required"))?
        as i32;
    let instance_type = f.str("InstanceType")?;
    if !instance_type.starts_with("ml.") {
        return Err(InputError::invalid(
            "InstanceType",
            "must be a SageMaker instance type such as ml.m5.large",
        ));
    }
    let initial_variant_weight = f
        .opt_number("InitialVariantWeight", 0.0, 1.0)?
        .map(|w| w as f32);
    Ok(EndpointConfigSpec {
        endpoint_config_name,
        production_variants: vec![VariantSpec {
            variant_name,
            model_name,
            initial_instance_count,
            instance_type,
            initial_variant_weight,
        }],
    })
}

/// Models are the same when SageMaker would serve them the same way (unset fields match
/// SageMaker's defaults).
fn same_model(a: &ModelSpec, b: &ModelSpec) -> bool {
    let norm = |c: &ContainerSpec| ContainerSpec {
        mode: Some(c.mode.clone().unwrap_or_else(|| "SingleModel".into())),
        ..c.clone()
    };
    a.execution_role_arn == b.execution_role_arn
        && a.containers.len() == b.containers.len()
        && a.containers
            .iter()
            .zip(&b.containers)
            .all(|(x, y)| norm(x) == norm(y))
}

/// Configs are the same when their variants are (an unset weight is SageMaker's default, 1).
fn same_config(a: &EndpointConfigSpec, b: &EndpointConfigSpec) -> bool {
    let norm = |v: &VariantSpec| VariantSpec {
        initial_variant_weight: Some(v.initial_variant_weight.unwrap_or(1.0)),
        ..v.clone()
    };
    a.production_variants.len() == b.production_variants.len()
        && a.production_variants
            .iter()
            .zip(&b.production_variants)
            .all(|(x, y)| norm(x) == norm(y))
}

/// What a registration is about.
struct Registration<'a> {
    kind: OwnedKind,
    /// "model", "endpoint config": for messages.
    noun: &'static str,
    /// Essedum's `type` word.
    type_word: &'static str,
    name: &'a str,
    spec: Value,
}

/// The one registration procedure: adopt an identical existing resource (200), refuse a different
/// one (409), else record the intent and create it (201); a create SageMaker refuses for good
/// forgets the intent again.
async fn register<S>(
    app: &AppState,
    what: Registration<'_>,
    existing: Option<(S, Option<String>)>,
    same: impl Fn(&S) -> bool,
    create: impl std::future::Future<Output = Result<String, AwsError>>,
) -> Result<RegisterReply, ApiError> {
    let Registration {
        kind,
        noun,
        type_word,
        name,
        spec,
    } = what;
    if let Some((existing, arn)) = existing {
        if !same(&existing) {
            return Err(ApiError::conflict(format!(
                "a different {noun} named {name:?} exists"
            )));
        }
        app.store
            .record_owned(kind, name, &spec, app.clock.now())
            .await?;
        return Ok(RegisterReply::Adopted(Json(record(
            type_word, name, "Adopted", arn, &spec, None,
        ))));
    }
    app.store
        .record_owned(kind, name, &spec, app.clock.now())
        .await?;
    match create.await {
        Ok(arn) => Ok(RegisterReply::Created(Json(record(
            type_word,
            name,
            "Created",
            Some(arn).filter(|a| !a.is_empty()),
            &spec,
            Some(time(app.clock.now())),
        )))),
        Err(e) if e.kind == AwsErrorKind::AlreadyExists => Err(ApiError::conflict(format!(
            "a {noun} named {name:?} was created meanwhile; register again"
        ))),
        Err(e) => {
            if e.kind == AwsErrorKind::Terminal {
                app.store.forget_owned(kind, name).await?;
            }
            Err(aws_failure(e))
        }
    }
}

fn aws_failure(e: AwsError) -> ApiError {
    match e.kind {
        AwsErrorKind::Retryable | AwsErrorKind::Capacity => {
            ApiError::unavailable(format!("SageMaker did not answer; try again: {e}"))
        }
        _ => InputError::invalid("request", format!("SageMaker refused it: {e}")).into(),
    }
}

#[OpenApi(tag = "Tag::Endpoints")]
impl ModelsApi {
    /// Register a model (CreateModel). An identical existing model is adopted (200); a different
    /// one with the same name is a 409.
    #[oai(path = "/api/service/v1/models/register", method = "post")]
    async fn register_model(
        &self,
        body: Json<RawBody<ModelSchema>>,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
    ) -> Result<RegisterReply, ApiError> {
        let app = state_of(&self.0)?;
        let spec = parse_model(body.0.value)?;
        let name = spec.model_name.clone();
        let existing = scope.aws.describe_model(&name).await.map_err(aws_failure)?;
        let what = Registration {
            kind: OwnedKind::Model,
            noun: "model",
            type_word: "sagemaker-model",
            name: &name,
            spec: serde_json::to_value(&spec).expect("spec serialises"),
        };
        register(
            app,
            what,
            existing,
            |e| same_model(e, &spec),
            scope.aws.create_model(&spec),
        )
        .await
    }

    /// The models registered here, newest first.
    #[oai(path = "/api/service/v1/models/list", method = "get")]
    async fn list_models(
        &self,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
    ) -> Result<Json<Vec<ResourceRecord>>, ApiError> {
        let app = state_of(&self.0)?;
        let owned = app.store.list_owned(OwnedKind::Model).await?;
        Ok(Json(
            owned
                .iter()
                .map(|o| {
                    record(
                        "sagemaker-model",
                        &o.name,
                        "Registered",
                        None,
                        &o.spec,
                        Some(time(o.created_at)),
                    )
                })
                .collect(),
        ))
    }

    /// A model as SageMaker describes it.
    #[oai(path = "/api/service/v1/models/:id", method = "get")]
    async fn get_model(
        &self,
        id: Path<String>,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
    ) -> Result<Json<ResourceRecord>, ApiError> {
        state_of(&self.0)?;
        let name = validate::sagemaker_name("id", &id.0)?;
        let (spec, arn) = scope
            .aws
            .describe_model(&name)
            .await
            .map_err(aws_failure)?
            .ok_or_else(|| ApiError::not_found(format!("no model {name:?}")))?;
        let spec_json = serde_json::to_value(&spec).expect("spec serialises");
        Ok(Json(record(
            "sagemaker-model",
            &name,
            "Registered",
            arn,
            &spec_json,
            None,
        )))
    }

    /// Delete a model; refused (409) while an endpoint config registered here uses it.
    #[oai(path = "/api/service/v1/models/:id", method = "delete")]
    async fn delete_model(
        &self,
        id: Path<String>,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
    ) -> Result<Json<ModelDeleted>, ApiError> {
        let app = state_of(&self.0)?;
        let name = validate::sagemaker_name("id", &id.0)?;
        let users = app.store.configs_using_model(&name).await?;
        if !users.is_empty() {
            return Err(ApiError::conflict(format!(
                "endpoint configs use model {name:?}: {}",
                users.join(", ")
            )));
        }
        match scope.aws.delete_model(&name).await {
            Ok(()) => {}
            Err(e) if e.kind == AwsErrorKind::NotFound => {
                app.store.forget_owned(OwnedKind::Model, &name).await?;
                return Err(ApiError::not_found(format!("no model {name:?}")));
            }
            Err(e) => return Err(aws_failure(e)),
        }
        app.store.forget_owned(OwnedKind::Model, &name).await?;
        Ok(Json(ModelDeleted {
            name,
            deleted: true,
        }))
    }

    /// Register an endpoint config (CreateEndpointConfig) with one variant serving a model. An
    /// identical existing config is adopted (200); a different one with the same name is a 409.
    #[oai(path = "/api/service/v1/endpoints/register", method = "post")]
    async fn register_endpoint_config(
        &self,
        body: Json<RawBody<EndpointConfigSchema>>,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
    ) -> Result<RegisterReply, ApiError> {
        let app = state_of(&self.0)?;
        let spec = parse_config(body.0.value)?;
        let name = spec.endpoint_config_name.clone();
        let existing = scope
            .aws
            .describe_endpoint_config(&name)
            .await
            .map_err(aws_failure)?;
        let what = Registration {
            kind: OwnedKind::EndpointConfig,
            noun: "endpoint config",
            type_word: "sagemaker-endpoint-config",
            name: &name,
            spec: serde_json::to_value(&spec).expect("spec serialises"),
        };
        register(
            app,
            what,
            existing,
            |e| same_config(e, &spec),
            scope.aws.create_endpoint_config(&spec),
        )
        .await
    }
}
