//! Essedum's model and endpoint-config routes: SageMaker models (CreateModel) and endpoint
//! configs (CreateEndpointConfig), registered idempotently; the account's models listed in
//! Essedum's record shape; and the UI's deploy path (`models/{id}/export`). These are single calls, not
//! workflows: registering is repeatable (an identical existing resource is adopted, a different
//! one with the same name is a 409), and what we registered is recorded first, so that a model an
//! endpoint config of ours uses is not deleted.
// Every Essedum route takes the backend's query parameters and Referer, so handlers have many
// parameters by contract.
#![allow(clippy::too_many_arguments)]

use super::auth::Caller;
use super::body::RawBody;
use super::dto::{Record, Tag, record_date};
use super::endpoints::{DeployReply, start_deployment};
use super::operator::state_of;
use super::scope::AwsScope;
use super::{ApiError, AppState};
use crate::aws::{
    AwsError, AwsErrorKind, AwsPort, ClarifyExplainerConfig, ClarifyInferenceConfig,
    ClarifyShapBaselineConfig, ClarifyShapConfig, ContainerSpec, EndpointConfigSpec,
    ExplainerConfig, ModelSpec, VariantSpec,
};
use crate::clock::Timestamp;
use crate::store::OwnedKind;
use crate::validate::{self, Fields, InputError, InputResult};
use crate::workflows::deployment::DeployRequest;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use serde_json::Value;

pub struct ModelsApi(pub Option<AppState>);

/// `{ModelName, ExecutionRoleArn, Containers: [{Image, ModelDataUrl?, Mode?, ContainerHostname?,
/// Environment?}]}` (one to fifteen containers; several form an inference pipeline). As the
/// Essedum backend sends it: unknown keys are ignored and `""` (or `{}` for `Environment`) means
/// absent.
#[derive(Object)]
#[oai(rename = "ModelRegistration")]
#[allow(dead_code)]
struct ModelSchema {
    #[oai(rename = "ModelName")]
    model_name: String,
    #[oai(rename = "ExecutionRoleArn")]
    execution_role_arn: String,
    #[oai(rename = "Containers")]
    containers: Vec<Value>,
}

/// `{EndpointConfigName, ModelName, VariantName?, InitialInstanceCount?, InstanceType,
/// InitialVariantWeight?, ExecutionRoleArn?, PrimaryContainer?, ExplainerConfig?}`: one
/// production variant serving the model. `InitialInstanceCount` absent or `0` (what the backend
/// sends for a blank field) is 1. With `PrimaryContainer.Image` and `ExecutionRoleArn`, a model
/// `ModelName` that does not exist yet is registered first. `ExplainerConfig` (SageMaker's
/// Clarify shape) makes `POST /endpoints/{id}/explain` work on endpoints serving this config.
/// Unknown keys are ignored and `""` means absent.
#[derive(Object)]
#[oai(rename = "EndpointConfigRegistration")]
#[allow(dead_code)]
struct EndpointConfigSchema {
    #[oai(rename = "EndpointConfigName")]
    endpoint_config_name: String,
    #[oai(rename = "ModelName")]
    model_name: String,
    /// Default `AllTraffic`.
    #[oai(rename = "VariantName")]
    variant_name: Option<String>,
    /// Default 1.
    #[oai(rename = "InitialInstanceCount")]
    initial_instance_count: Option<i32>,
    #[oai(rename = "InstanceType")]
    instance_type: String,
    #[oai(rename = "InitialVariantWeight")]
    initial_variant_weight: Option<f64>,
    #[oai(rename = "ExecutionRoleArn")]
    execution_role_arn: Option<String>,
    /// `{Image, ModelDataUrl?}`: the model to create when `ModelName` does not exist.
    #[oai(rename = "PrimaryContainer")]
    primary_container: Option<Value>,
    /// `{ClarifyExplainerConfig: {EnableExplanations?, InferenceConfig?, ShapConfig:
    /// {ShapBaselineConfig: {MimeType?, ShapBaseline?, ShapBaselineUri?}, NumberOfSamples?,
    /// UseLogit?, Seed?}}}`
    #[oai(rename = "ExplainerConfig")]
    explainer_config: Option<Value>,
}

/// `{EndpointConfigName, EndpointName}` (what the Essedum UI's deploy screen sends; other keys
/// such as `Model Id` are ignored).
#[derive(Object)]
#[oai(rename = "ModelExport")]
#[allow(dead_code)]
struct ExportSchema {
    #[oai(rename = "EndpointConfigName")]
    endpoint_config_name: String,
    #[oai(rename = "EndpointName")]
    endpoint_name: String,
    #[oai(rename = "Tags")]
    tags: Option<std::collections::HashMap<String, String>>,
}

/// A model or endpoint config in Essedum's record shape (every key present, `null` when
/// unknown), plus how this registration went.
#[derive(Object)]
#[oai(rename = "RegisteredResource")]
struct RegisteredRecord {
    #[oai(flatten)]
    record: Record,
    /// `Created` (this call created it) or `Adopted` (an identical one existed).
    registration: String,
}

/// A SageMaker model in Essedum's record shape: `status` is `Registered`, `container` the model
/// ARN, `artifacts` its model data (`s3://...`) when known, dates `yyyy-MM-dd HH-mm-ss` UTC.
#[derive(Object)]
#[oai(rename = "ModelRecord")]
struct ModelRecord {
    #[oai(flatten)]
    record: Record,
    /// Registered through this service.
    #[oai(rename = "registeredHere")]
    registered_here: bool,
}

#[derive(ApiResponse)]
enum RegisterReply {
    /// Created now.
    #[oai(status = 201)]
    Created(Json<RegisteredRecord>),
    /// An identical resource existed and is adopted.
    #[oai(status = 200)]
    Adopted(Json<RegisteredRecord>),
}

#[derive(Object)]
struct ModelDeleted {
    name: String,
    deleted: bool,
}

/// Who asked: the Essedum connection's names, echoed in records.
#[derive(Clone, Default)]
pub(super) struct Origin {
    pub adapter: Option<String>,
    pub project: Option<String>,
}

impl Origin {
    pub fn of(adapter: &Query<Option<String>>, project: &Query<Option<String>>) -> Origin {
        Origin {
            adapter: adapter.0.clone().filter(|s| !s.is_empty()),
            project: project.0.clone().filter(|s| !s.is_empty()),
        }
    }
}

/// A time as JSON in rawPayload (RFC 3339).
pub(super) fn rfc3339(t: Option<Timestamp>) -> Value {
    t.map(|t| Value::String(t.to_rfc3339()))
        .unwrap_or(Value::Null)
}

/// A model's record. `spec` is what we know of its definition; `raw` the AWS description.
fn model_record(
    name: &str,
    arn: Option<String>,
    spec: Option<&ModelSpec>,
    created: Option<Timestamp>,
    now: Timestamp,
    origin: &Origin,
) -> Record {
    let first = spec.and_then(|s| s.containers.first());
    let mut raw =
        serde_json::json!({"ModelName": name, "ModelArn": arn, "CreationTime": rfc3339(created)});
    if let Some(s) = spec {
        raw["ExecutionRoleArn"] = Value::String(s.execution_role_arn.clone());
        raw["Containers"] = serde_json::to_value(&s.containers).expect("containers serialise");
    }
    Record {
        source_id: Some(name.to_string()),
        name: Some(name.to_string()),
        id: Some(name.to_string()),
        status: Some("Registered".into()),
        kind: Some("sagemaker-model".into()),
        container: arn,
        artifacts: first.and_then(|c| c.model_data_url.clone()),
        adapter: origin.adapter.clone(),
        project: origin.project.clone(),
        created_on: created.map(record_date),
        sync_date: Some(record_date(now)),
        description: Some(match first {
            Some(c) => format!("SageMaker model serving {}", c.image),
            None => "SageMaker model".into(),
        }),
        source_org: Some("AWS".into()),
        sourcename: Some(name.to_string()),
        deployment: None,
        raw_payload: Some(raw.to_string()),
    }
}

/// An endpoint config's record (register replies).
fn config_record(
    spec: &EndpointConfigSpec,
    arn: Option<String>,
    created: Option<Timestamp>,
    now: Timestamp,
    origin: &Origin,
) -> Record {
    let name = &spec.endpoint_config_name;
    let mut raw = serde_json::to_value(spec).expect("spec serialises");
    raw["EndpointConfigArn"] = arn.clone().map(Value::String).unwrap_or(Value::Null);
    Record {
        source_id: Some(name.clone()),
        name: Some(name.clone()),
        id: Some(name.clone()),
        status: Some("Registered".into()),
        kind: Some("sagemaker-endpoint-config".into()),
        container: arn,
        artifacts: None,
        adapter: origin.adapter.clone(),
        project: origin.project.clone(),
        created_on: created.map(record_date),
        sync_date: Some(record_date(now)),
        description: Some(format!(
            "SageMaker endpoint config serving {}",
            spec.production_variants
                .iter()
                .map(|v| v.model_name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        source_org: Some("AWS".into()),
        sourcename: Some(name.clone()),
        deployment: None,
        raw_payload: Some(raw.to_string()),
    }
}

fn parse_model(body: Value) -> InputResult<ModelSpec> {
    let mut f = Fields::essedum(body, &["ModelName", "ExecutionRoleArn", "Containers"])?;
    let model_name = validate::sagemaker_name("ModelName", &f.str("ModelName")?)?;
    let execution_role_arn = validate::role_arn("ExecutionRoleArn", &f.str("ExecutionRoleArn")?)?;
    let containers = f.array("Containers", 1, 15)?;
    let mut specs = Vec::new();
    for (i, c) in containers.into_iter().enumerate() {
        let mut c = Fields::at_path_mode(
            c,
            &[
                "Image",
                "ModelDataUrl",
                "Mode",
                "ContainerHostname",
                "Environment",
            ],
            &format!("Containers[{i}]."),
            f.mode(),
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

/// An endpoint config registration: the config, and a model to create first when missing.
#[derive(Debug)]
struct ConfigRegistration {
    spec: EndpointConfigSpec,
    model: Option<ModelSpec>,
}

fn opt_i32(f: &mut Fields, name: &str, min: i64, max: i64) -> InputResult<Option<i32>> {
    Ok(f.opt_int(name, min, max)?.map(|n| n as i32))
}

fn opt_strings(f: &mut Fields, name: &str, path: &str) -> InputResult<Vec<String>> {
    match f.take_value(name) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                _ => Err(InputError::invalid(
                    &format!("{path}{name}[{i}]"),
                    "must be a string",
                )),
            })
            .collect(),
        Some(_) => Err(InputError::invalid(
            &format!("{path}{name}"),
            "must be an array of strings",
        )),
    }
}

/// SageMaker's Clarify `ExplainerConfig`, checked field by field.
fn parse_explainer(f: &mut Fields) -> InputResult<Option<ExplainerConfig>> {
    let Some(mut e) = f.opt_object("ExplainerConfig", &["ClarifyExplainerConfig"])? else {
        return Ok(None);
    };
    let p = "ExplainerConfig.ClarifyExplainerConfig.";
    let mut c = e.object(
        "ClarifyExplainerConfig",
        &["EnableExplanations", "InferenceConfig", "ShapConfig"],
    )?;
    let enable_explanations = c.opt_str("EnableExplanations")?;
    let inference_config = match c.opt_object(
        "InferenceConfig",
        &[
            "FeaturesAttribute",
            "ContentTemplate",
            "MaxRecordCount",
            "MaxPayloadInMB",
            "ProbabilityIndex",
            "LabelIndex",
            "ProbabilityAttribute",
            "LabelAttribute",
            "LabelHeaders",
            "FeatureHeaders",
        ],
    )? {
        None => None,
        Some(mut i) => {
            let ip = format!("{p}InferenceConfig.");
            Some(ClarifyInferenceConfig {
                features_attribute: i.opt_str("FeaturesAttribute")?,
                content_template: i.opt_str("ContentTemplate")?,
                max_record_count: opt_i32(&mut i, "MaxRecordCount", 1, i32::MAX as i64)?,
                max_payload_in_mb: opt_i32(&mut i, "MaxPayloadInMB", 1, 25)?,
                probability_index: opt_i32(&mut i, "ProbabilityIndex", 0, i32::MAX as i64)?,
                label_index: opt_i32(&mut i, "LabelIndex", 0, i32::MAX as i64)?,
                probability_attribute: i.opt_str("ProbabilityAttribute")?,
                label_attribute: i.opt_str("LabelAttribute")?,
                label_headers: opt_strings(&mut i, "LabelHeaders", &ip)?,
                feature_headers: opt_strings(&mut i, "FeatureHeaders", &ip)?,
            })
        }
    };
    let mut shap = c.object(
        "ShapConfig",
        &["ShapBaselineConfig", "NumberOfSamples", "UseLogit", "Seed"],
    )?;
    let mut b = shap.object(
        "ShapBaselineConfig",
        &["MimeType", "ShapBaseline", "ShapBaselineUri"],
    )?;
    let baseline = ClarifyShapBaselineConfig {
        mime_type: b.opt_str("MimeType")?,
        shap_baseline: b.opt_str("ShapBaseline")?,
        shap_baseline_uri: b
            .opt_str("ShapBaselineUri")?
            .map(|u| {
                validate::s3_uri(
                    &format!("{p}ShapConfig.ShapBaselineConfig.ShapBaselineUri"),
                    &u,
                )
            })
            .transpose()?,
    };
    if baseline.shap_baseline.is_some() == baseline.shap_baseline_uri.is_some() {
        return Err(InputError::invalid(
            &format!("{p}ShapConfig.ShapBaselineConfig"),
            "needs exactly one of ShapBaseline and ShapBaselineUri",
        ));
    }
    let use_logit = match shap.take_value("UseLogit") {
        None => None,
        Some(Value::Bool(v)) => Some(v),
        Some(_) => {
            return Err(InputError::invalid(
                &format!("{p}ShapConfig.UseLogit"),
                "must be a boolean",
            ));
        }
    };
    let shap_config = ClarifyShapConfig {
        shap_baseline_config: baseline,
        number_of_samples: opt_i32(&mut shap, "NumberOfSamples", 1, i32::MAX as i64)?,
        use_logit,
        seed: opt_i32(&mut shap, "Seed", 0, i32::MAX as i64)?,
    };
    Ok(Some(ExplainerConfig {
        clarify_explainer_config: ClarifyExplainerConfig {
            enable_explanations,
            inference_config,
            shap_config,
        },
    }))
}

fn parse_config(body: Value) -> InputResult<ConfigRegistration> {
    let mut f = Fields::essedum(
        body,
        &[
            "EndpointConfigName",
            "ModelName",
            "VariantName",
            "InitialInstanceCount",
            "InstanceType",
            "InitialVariantWeight",
            "ExecutionRoleArn",
            "PrimaryContainer",
            "ExplainerConfig",
        ],
    )?;
    let endpoint_config_name =
        validate::sagemaker_name("EndpointConfigName", &f.str("EndpointConfigName")?)?;
    let model_name = validate::sagemaker_name("ModelName", &f.str("ModelName")?)?;
    let variant_name = match f.opt_str("VariantName")? {
        Some(v) => validate::sagemaker_name("VariantName", &v)?,
        None => "AllTraffic".into(),
    };
    // The backend reads the form's count with optInt, so a blank field arrives as 0
    // (ICIPModelAWSServiceSageMaker.getBodyObjForEndpointsRegister): 0 is "not given".
    let initial_instance_count = match f.opt_int("InitialInstanceCount", 0, 100)? {
        None | Some(0) => 1,
        Some(n) => n as i32,
    };
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
    let role = f
        .opt_str("ExecutionRoleArn")?
        .map(|r| validate::role_arn("ExecutionRoleArn", &r))
        .transpose()?;
    let image = match f.opt_object("PrimaryContainer", &["Image", "ModelDataUrl"])? {
        None => None,
        Some(mut c) => {
            let image = c
                .opt_str("Image")?
                .map(|i| validate::token("PrimaryContainer.Image", &i, 255))
                .transpose()?;
            let data = c
                .opt_str("ModelDataUrl")?
                .map(|u| validate::s3_uri("PrimaryContainer.ModelDataUrl", &u))
                .transpose()?;
            image.map(|i| (i, data))
        }
    };
    let model = match (image, role) {
        (Some((image, model_data_url)), Some(execution_role_arn)) => Some(ModelSpec {
            model_name: model_name.clone(),
            execution_role_arn,
            containers: vec![ContainerSpec {
                image,
                model_data_url,
                ..Default::default()
            }],
        }),
        _ => None,
    };
    let explainer_config = parse_explainer(&mut f)?;
    Ok(ConfigRegistration {
        spec: EndpointConfigSpec {
            endpoint_config_name,
            production_variants: vec![VariantSpec {
                variant_name,
                model_name,
                initial_instance_count,
                instance_type,
                initial_variant_weight,
            }],
            explainer_config,
        },
        model,
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

/// Configs are the same when their variants are (an unset weight is SageMaker's default, 1) and
/// so is their explainer.
fn same_config(a: &EndpointConfigSpec, b: &EndpointConfigSpec) -> bool {
    let norm = |v: &VariantSpec| VariantSpec {
        initial_variant_weight: Some(v.initial_variant_weight.unwrap_or(1.0)),
        ..v.clone()
    };
    a.explainer_config == b.explainer_config
        && a.production_variants.len() == b.production_variants.len()
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
    name: &'a str,
    spec: Value,
}

/// How a registration went: created now (with its ARN) or adopted (with the existing ARN).
enum Registered {
    Created(Option<String>),
    Adopted(Option<String>),
}

/// The one registration procedure: adopt an identical existing resource, refuse a different one
/// (409), else record the intent and create it; a create SageMaker refuses for good forgets the
/// intent again.
async fn register<S>(
    app: &AppState,
    what: Registration<'_>,
    existing: Option<(S, Option<String>)>,
    same: impl Fn(&S) -> bool,
    create: impl std::future::Future<Output = Result<String, AwsError>>,
) -> Result<Registered, ApiError> {
    let Registration {
        kind,
        noun,
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
        return Ok(Registered::Adopted(arn));
    }
    app.store
        .record_owned(kind, name, &spec, app.clock.now())
        .await?;
    match create.await {
        Ok(arn) => Ok(Registered::Created(Some(arn).filter(|a| !a.is_empty()))),
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

/// Registers a model (adopting an identical one).
async fn register_model_spec(
    app: &AppState,
    aws: &dyn AwsPort,
    spec: &ModelSpec,
) -> Result<(Registered, Option<Timestamp>), ApiError> {
    let name = spec.model_name.clone();
    let existing = aws.describe_model_info(&name).await.map_err(aws_failure)?;
    let created = existing.as_ref().and_then(|m| m.created);
    let what = Registration {
        kind: OwnedKind::Model,
        noun: "model",
        name: &name,
        spec: serde_json::to_value(spec).expect("spec serialises"),
    };
    let outcome = register(
        app,
        what,
        existing.map(|m| (m.spec, m.arn)),
        |e| same_model(e, spec),
        aws.create_model(spec),
    )
    .await?;
    Ok((outcome, created))
}

pub(super) fn aws_failure(e: AwsError) -> ApiError {
    match e.kind {
        AwsErrorKind::Retryable | AwsErrorKind::Capacity => {
            ApiError::unavailable(format!("SageMaker did not answer; try again: {e}"))
        }
        _ => InputError::invalid("request", format!("SageMaker refused it: {e}")).into(),
    }
}

fn reply(outcome: Registered, record: impl FnOnce(Option<String>) -> Record) -> RegisterReply {
    match outcome {
        Registered::Created(arn) => RegisterReply::Created(Json(RegisteredRecord {
            record: record(arn),
            registration: "Created".into(),
        })),
        Registered::Adopted(arn) => RegisterReply::Adopted(Json(RegisteredRecord {
            record: record(arn),
            registration: "Adopted".into(),
        })),
    }
}

/// How many ListModels / ListEndpoints pages one list reads at most (100 items each).
pub(super) const LIST_PAGES: u32 = 50;
pub(super) const LIST_PAGE_SIZE: i32 = 100;

#[OpenApi(tag = "Tag::Endpoints")]
impl ModelsApi {
    /// Register a model (CreateModel) and answer its record. An identical existing model is
    /// adopted (200); a different one with the same name is a 409.
    #[oai(path = "/api/service/v1/models/register", method = "post")]
    async fn register_model(
        &self,
        body: Json<RawBody<ModelSchema>>,
        #[oai(name = "adapter_instance")] adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
    ) -> Result<RegisterReply, ApiError> {
        let app = state_of(&self.0)?;
        let origin = Origin::of(&adapter_instance, &project);
        let spec = parse_model(body.0.value)?;
        let (outcome, created) = register_model_spec(app, scope.aws.as_ref(), &spec).await?;
        let now = app.clock.now();
        let created = created.or(Some(now));
        Ok(reply(outcome, |arn| {
            model_record(&spec.model_name, arn, Some(&spec), created, now, &origin)
        }))
    }

    /// Every model in the account and region (ListModels, page after page), newest first, in
    /// Essedum's record shape; models registered here carry their definition. 503 when
    /// SageMaker cannot be listed (a partial list would make a sync drop models).
    #[oai(path = "/api/service/v1/models/list", method = "get")]
    async fn list_models(
        &self,
        #[oai(name = "adapter_instance")] adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
    ) -> Result<Json<Vec<ModelRecord>>, ApiError> {
        let app = state_of(&self.0)?;
        let origin = Origin::of(&adapter_instance, &project);
        let listing = scope
            .aws
            .list_models(LIST_PAGE_SIZE, LIST_PAGES)
            .await
            .map_err(aws_failure)?;
        if listing.truncated {
            tracing::warn!(
                pages = LIST_PAGES,
                "ListModels has more pages than one list reads"
            );
        }
        let owned: std::collections::HashMap<String, ModelSpec> = app
            .store
            .list_owned(OwnedKind::Model)
            .await?
            .into_iter()
            .filter_map(|o| Some((o.name, serde_json::from_value(o.spec).ok()?)))
            .collect();
        let now = app.clock.now();
        let mut items = listing.items;
        items.sort_by(|a, b| b.created.cmp(&a.created).then(a.name.cmp(&b.name)));
        let mut seen = std::collections::HashSet::new();
        Ok(Json(
            items
                .into_iter()
                .filter(|m| seen.insert(m.name.clone()))
                .map(|m| {
                    let spec = owned.get(&m.name);
                    ModelRecord {
                        record: model_record(&m.name, m.arn, spec, m.created, now, &origin),
                        registered_here: spec.is_some(),
                    }
                })
                .collect(),
        ))
    }

    /// A model as SageMaker describes it, in Essedum's record shape.
    #[oai(path = "/api/service/v1/models/:id", method = "get")]
    async fn get_model(
        &self,
        id: Path<String>,
        #[oai(name = "adapter_instance")] adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
    ) -> Result<Json<ModelRecord>, ApiError> {
        let app = state_of(&self.0)?;
        let origin = Origin::of(&adapter_instance, &project);
        let name = validate::sagemaker_name("id", &id.0)?;
        let m = scope
            .aws
            .describe_model_info(&name)
            .await
            .map_err(aws_failure)?
            .ok_or_else(|| ApiError::not_found(format!("no model {name:?}")))?;
        let registered_here = app.store.is_owned(OwnedKind::Model, &name).await?;
        Ok(Json(ModelRecord {
            record: model_record(
                &name,
                m.arn,
                Some(&m.spec),
                m.created,
                app.clock.now(),
                &origin,
            ),
            registered_here,
        }))
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

    /// The Essedum UI's deploy path: put model `{id}` into service on `EndpointName` with
    /// `EndpointConfigName`, as the same durable deployment run as
    /// `POST /endpoints/{EndpointName}/deploy_model`, answered the same way (202). The config
    /// must exist and serve model `{id}` (422 naming `EndpointConfigName` otherwise).
    #[oai(path = "/api/service/v1/models/:id/export", method = "post")]
    async fn export_model(
        &self,
        id: Path<String>,
        body: Json<RawBody<ExportSchema>>,
        #[oai(name = "adapter_instance")] _adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] _project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        caller: Data<&Caller>,
        scope: Data<&AwsScope>,
    ) -> Result<DeployReply, ApiError> {
        let app = state_of(&self.0)?;
        let model = validate::sagemaker_name("id", &id.0)?;
        let req = DeployRequest::parse_export(body.0.value)?;
        let (config, _) = scope
            .aws
            .describe_endpoint_config(&req.endpoint_config_name)
            .await
            .map_err(aws_failure)?
            .ok_or_else(|| {
                InputError::invalid(
                    "EndpointConfigName",
                    format!(
                        "no endpoint config {:?}; register it first (POST /api/service/v1/endpoints/register)",
                        req.endpoint_config_name
                    ),
                )
            })?;
        if !config
            .production_variants
            .iter()
            .any(|v| v.model_name == model)
        {
            return Err(InputError::invalid(
                "EndpointConfigName",
                format!(
                    "endpoint config {:?} does not serve model {model:?}",
                    req.endpoint_config_name
                ),
            )
            .into());
        }
        start_deployment(app, req, &caller, &scope).await
    }

    /// Register an endpoint config (CreateEndpointConfig) with one variant serving a model, and
    /// answer its record. An identical existing config is adopted (200); a different one with
    /// the same name is a 409. A missing model is created first from `PrimaryContainer` and
    /// `ExecutionRoleArn` when given, else the request is a 422 naming `ModelName`.
    #[oai(path = "/api/service/v1/endpoints/register", method = "post")]
    async fn register_endpoint_config(
        &self,
        body: Json<RawBody<EndpointConfigSchema>>,
        #[oai(name = "adapter_instance")] adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
    ) -> Result<RegisterReply, ApiError> {
        let app = state_of(&self.0)?;
        let origin = Origin::of(&adapter_instance, &project);
        let ConfigRegistration { spec, model } = parse_config(body.0.value)?;
        let name = spec.endpoint_config_name.clone();
        let existing = scope
            .aws
            .describe_endpoint_config(&name)
            .await
            .map_err(aws_failure)?;
        if existing.is_none() {
            let model_name = &spec.production_variants[0].model_name;
            let model_exists = scope
                .aws
                .describe_model(model_name)
                .await
                .map_err(aws_failure)?
                .is_some();
            match (&model, model_exists) {
                (_, true) => {}
                (Some(m), false) => {
                    register_model_spec(app, scope.aws.as_ref(), m).await?;
                }
                (None, false) => {
                    return Err(InputError::invalid(
                        "ModelName",
                        format!(
                            "no model {model_name:?}; register it first, or send PrimaryContainer.Image and ExecutionRoleArn to create it"
                        ),
                    )
                    .into());
                }
            }
        }
        let what = Registration {
            kind: OwnedKind::EndpointConfig,
            noun: "endpoint config",
            name: &name,
            spec: serde_json::to_value(&spec).expect("spec serialises"),
        };
        let outcome = register(
            app,
            what,
            existing,
            |e| same_config(e, &spec),
            scope.aws.create_endpoint_config(&spec),
        )
        .await?;
        let now = app.clock.now();
        Ok(reply(outcome, |arn| {
            config_record(&spec, arn, Some(now), now, &origin)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROLE: &str = "arn:aws:iam::123456789012:role/SageMakerRole";

    #[test]
    fn the_backends_model_body_reads_blank_container_values_as_absent() {
        // ICIPModelAWSServiceSageMaker.getModelBodyForRegister
        let spec = parse_model(
            json!({"ExecutionRoleArn": ROLE, "ModelName": "m", "Containers": [{
            "ContainerHostname": "", "Image": "img:1", "Mode": "", "ModelDataUrl": "",
            "Environment": {}}], "Unknown": 1}),
        )
        .unwrap();
        assert_eq!(
            spec.containers,
            vec![ContainerSpec {
                image: "img:1".into(),
                ..Default::default()
            }]
        );
    }

    #[test]
    fn the_backends_config_body_takes_defaults_for_blank_values() {
        // ICIPModelAWSServiceSageMaker.getBodyObjForEndpointsRegister
        let r = parse_config(
            json!({"ExecutionRoleArn": ROLE, "ModelName": "m", "VariantName": "",
            "InitialInstanceCount": 0, "InstanceType": "ml.m5.large", "EndpointConfigName": "c",
            "PrimaryContainer": {"Image": "", "ModelDataUrl": ""}}),
        )
        .unwrap();
        let v = &r.spec.production_variants[0];
        assert_eq!(
            (v.variant_name.as_str(), v.initial_instance_count),
            ("AllTraffic", 1)
        );
        assert!(r.model.is_none(), "no image: nothing to create");
        let r = parse_config(json!({"ExecutionRoleArn": ROLE, "ModelName": "m",
            "InstanceType": "ml.m5.large", "EndpointConfigName": "c",
            "PrimaryContainer": {"Image": "img:1", "ModelDataUrl": "s3://bkt/m.tar.gz"}}))
        .unwrap();
        assert_eq!(
            r.model.unwrap().containers[0].model_data_url.as_deref(),
            Some("s3://bkt/m.tar.gz")
        );
    }

    #[test]
    fn explainer_configs_are_checked_field_by_field() {
        let base =
            json!({"ModelName": "m", "InstanceType": "ml.m5.large", "EndpointConfigName": "c"});
        let with = |e: Value| {
            let mut b = base.clone();
            b["ExplainerConfig"] = e;
            parse_config(b)
        };
        let ok = with(json!({"ClarifyExplainerConfig": {"ShapConfig": {
            "ShapBaselineConfig": {"ShapBaselineUri": "s3://bkt/baseline.csv"}, "Seed": 1}}}))
        .unwrap();
        let e = ok.spec.explainer_config.unwrap().clarify_explainer_config;
        assert_eq!(e.shap_config.seed, Some(1));
        for (e, field) in [
            (json!({}), "ExplainerConfig.ClarifyExplainerConfig"),
            (
                json!({"ClarifyExplainerConfig": {"ShapConfig": {"ShapBaselineConfig": {
                    "ShapBaseline": "1", "ShapBaselineUri": "s3://bkt/x"}}}}),
                "ExplainerConfig.ClarifyExplainerConfig.ShapConfig.ShapBaselineConfig",
            ),
            (
                json!({"ClarifyExplainerConfig": {"ShapConfig": {"ShapBaselineConfig": {
                    "ShapBaseline": "1"}, "UseLogit": "yes"}}}),
                "ExplainerConfig.ClarifyExplainerConfig.ShapConfig.UseLogit",
            ),
            (
                json!({"ClarifyExplainerConfig": {"InferenceConfig": {"FeatureHeaders": [1]},
                    "ShapConfig": {"ShapBaselineConfig": {"ShapBaseline": "1"}}}}),
                "ExplainerConfig.ClarifyExplainerConfig.InferenceConfig.FeatureHeaders[0]",
            ),
        ] {
            assert_eq!(with(e).unwrap_err().field(), Some(field));
        }
    }
}
