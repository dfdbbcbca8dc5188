//! Models and endpoint configs: idempotent registration, the delete rule, the account's models
//! listed in Essedum's record shape, the bodies the Essedum backend really sends, the UI's deploy
//! path (`models/{id}/export`), and the whole Essedum path from a model to an answer.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::fault_proxy::FaultProxy;
use support::{Emulator, RECORD_KEYS, ROLE, Scratch, Service, client, unique};

fn model(name: &str, image: &str) -> Value {
    json!({"ModelName": name, "ExecutionRoleArn": ROLE, "Containers": [{
        "Image": image, "ModelDataUrl": "s3://models-bkt/churn/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py"}}]})
}

fn config(name: &str, model: &str, count: i64) -> Value {
    json!({"EndpointConfigName": name, "ModelName": model, "InitialInstanceCount": count, "InstanceType": "ml.m5.large"})
}

async fn delete(svc: &Service, path: &str) -> (u16, Value) {
    let r = client().delete(svc.url(path)).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// A POST whose raw body text is returned too (the backend looks at its first character).
async fn post_raw(svc: &Service, path: &str, body: &Value) -> (u16, String) {
    let r = client()
        .post(svc.url(path))
        .header("Content-Type", "application/json")
        .header("Referer", "https://essedum.example/")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The query the backend's SageMaker plugin sends on every MLOps call
/// (ICIPModelAWSServiceSageMaker.registerModelFromRemoteVM and friends).
const BACKEND_QUERY: &str = "adapter_instance=SM01&project=Demo&isCached=false&isRemoteDS=true";

/// The checks the backend's model parser makes on a record (ICIPModelAWSServiceSageMaker
/// .parseMLFedModel(JSONObject, ICIPDatasource, String)): `get("description")`,
/// `get("artifacts")`, `get("container")` throw on a missing key, `getString("name")` on a
/// missing or non-string name; `createdOn` is read as `yyyy-MM-dd HH-mm-ss`. And every key of
/// the record shape is there (ESSEDUM-CONTRACT.md).
fn assert_backend_parses_record(r: &Value) {
    for key in RECORD_KEYS {
        assert!(r.get(key).is_some(), "{key} missing in {r}");
    }
    assert!(r["name"].is_string(), "{r}");
    for date in ["createdOn", "syncDate"] {
        let d = r[date].as_str().unwrap_or_else(|| panic!("{date} in {r}"));
        assert!(
            chrono::NaiveDateTime::parse_from_str(d, "%Y-%m-%d %H-%M-%S").is_ok(),
            "{date} {d:?} is not yyyy-MM-dd HH-mm-ss"
        );
    }
    let raw: Value = serde_json::from_str(r["rawPayload"].as_str().unwrap()).unwrap();
    assert!(raw.is_object(), "{raw}");
}

#[tokio::test]
async fn registration_is_idempotent_and_a_used_model_is_not_deleted() {
    let emu = Emulator::shared();
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let m = unique("model");
    let image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:1";

    let (code, rec) = svc
        .post("/api/service/v1/models/register", &model(&m, image))
        .await;
    assert_eq!(
        (code, rec["registration"].as_str(), rec["status"].as_str()),
        (201, Some("Created"), Some("Registered")),
        "{rec}"
    );
    assert_backend_parses_record(&rec);
    assert!(
        rec["container"].as_str().unwrap().contains(":model/"),
        "{rec}"
    );
    assert_eq!(rec["artifacts"], "s3://models-bkt/churn/model.tar.gz");
    let (code, again) = svc
        .post("/api/service/v1/models/register", &model(&m, image))
        .await;
    assert_eq!(
        (code, again["registration"].as_str()),
        (200, Some("Adopted")),
        "{again}"
    );
    let (code, err) = svc
        .post(
            "/api/service/v1/models/register",
            &model(&m, "other/image:2"),
        )
        .await;
    assert_eq!(code, 409, "{err}");
    assert_eq!(emu.job_stats("models", &m).await["creates"], 1);

    let (code, got) = svc.get(&format!("/api/service/v1/models/{m}")).await;
    assert_eq!((code, got["name"].as_str()), (200, Some(m.as_str())));
    assert_backend_parses_record(&got);
    assert_eq!(got["registeredHere"], true);
    let (_, list) = svc.get("/api/service/v1/models/list").await;
    let ours = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == m.as_str())
        .expect("listed");
    assert_eq!(ours["artifacts"], "s3://models-bkt/churn/model.tar.gz");

    let c = unique("cfg");
    let (code, rec) = svc
        .post("/api/service/v1/endpoints/register", &config(&c, &m, 1))
        .await;
    assert_eq!(
        (code, rec["registration"].as_str()),
        (201, Some("Created")),
        "{rec}"
    );
    assert_backend_parses_record(&rec);
    let (code, _) = svc
        .post("/api/service/v1/endpoints/register", &config(&c, &m, 1))
        .await;
    assert_eq!(code, 200);
    let (code, _) = svc
        .post("/api/service/v1/endpoints/register", &config(&c, &m, 2))
        .await;
    assert_eq!(code, 409);

    let (code, err) = delete(&svc, &format!("/api/service/v1/models/{m}")).await;
    assert_eq!(code, 409, "{err}");
    assert!(err["error"].as_str().unwrap().contains(&c), "{err}");
    let lone = unique("model");
    svc.post("/api/service/v1/models/register", &model(&lone, image))
        .await;
    let (code, _) = delete(&svc, &format!("/api/service/v1/models/{lone}")).await;
    assert_eq!(code, 200);
    assert_eq!(
        svc.get(&format!("/api/service/v1/models/{lone}")).await.0,
        404
    );
    assert_eq!(
        delete(&svc, &format!("/api/service/v1/models/{lone}"))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn bad_registrations_name_the_field_and_create_nothing() {
    let emu = Emulator::shared();
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let m = unique("model");
    let base = model(&m, "img:1");
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut b = base.clone();
        f(&mut b);
        b
    };
    for (body, want, field) in [
        (edit(&|b| b["Containers"] = json!([])), 422, "Containers"),
        (
            edit(&|b| {
                b["Containers"][0].as_object_mut().unwrap().remove("Image");
            }),
            422,
            "Containers[0].Image",
        ),
        (
            edit(&|b| b["Containers"][0]["Image"] = json!("")),
            422,
            "Containers[0].Image",
        ),
        (
            edit(&|b| b["Containers"][0]["Mode"] = json!("Many")),
            422,
            "Containers[0].Mode",
        ),
        (
            edit(&|b| b["Containers"][0]["Environment"] = json!(5)),
            422,
            "Containers[0].Environment",
        ),
        (
            edit(&|b| b["ExecutionRoleArn"] = json!("role")),
            422,
            "ExecutionRoleArn",
        ),
        (
            edit(&|b| b["ModelName"] = json!("no spaces")),
            422,
            "ModelName",
        ),
        (edit(&|b| b["ModelName"] = json!(7)), 422, "ModelName"),
    ] {
        let (code, err) = svc.post("/api/service/v1/models/register", &body).await;
        assert_eq!((code, err["field"].as_str()), (want, Some(field)), "{err}");
    }
    assert_eq!(
        svc.get(&format!("/api/service/v1/models/{m}")).await.0,
        404,
        "no model was created"
    );
    // An endpoint config for a model that does not exist, with nothing to create it from.
    let c = unique("cfg");
    let (code, err) = svc
        .post(
            "/api/service/v1/endpoints/register",
            &json!({"EndpointConfigName": c, "ModelName": m, "InstanceType": "ml.m5.large"}),
        )
        .await;
    assert_eq!(
        (code, err["field"].as_str()),
        (422, Some("ModelName")),
        "{err}"
    );
    let (code, err) = svc
        .post(
            "/api/service/v1/endpoints/register",
            &json!({"EndpointConfigName": c, "ModelName": m, "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": "2"}),
        )
        .await;
    assert_eq!(
        (code, err["field"].as_str()),
        (422, Some("InitialInstanceCount")),
        "{err}"
    );
    let (code, err) = svc
        .post(
            "/api/service/v1/endpoints/register",
            &json!({"EndpointConfigName": c, "ModelName": m, "InstanceType": "ml.m5.large",
                    "ExplainerConfig": {"ClarifyExplainerConfig": {"ShapConfig": {"ShapBaselineConfig": {}}}}}),
        )
        .await;
    assert_eq!(
        (code, err["field"].as_str()),
        (
            422,
            Some("ExplainerConfig.ClarifyExplainerConfig.ShapConfig.ShapBaselineConfig")
        ),
        "{err}"
    );
    assert!(
        emu.job_stats("endpoint_configs", &c).await.is_null(),
        "no config was created"
    );
}

/// The body the backend builds for models/register
/// (ICIPModelAWSServiceSageMaker.getModelBodyForRegister): every container value read with
/// optString, so blank form fields arrive as "", and Environment as an object (empty when the
/// form had no variables). Its reply must start with `{` (registerModelFromRemoteVM) and parse
/// as a model record.
#[tokio::test]
async fn backend_model_registration_with_blank_container_values_is_accepted() {
    let emu = Emulator::shared();
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let m = unique("model");
    let body = json!({"ExecutionRoleArn": ROLE, "ModelName": m, "Containers": [{
        "ContainerHostname": "", "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:1",
        "Mode": "", "ModelDataUrl": "", "Environment": {}}]});
    let (code, text) = post_raw(
        &svc,
        &format!("/api/service/v1/models/register?{BACKEND_QUERY}"),
        &body,
    )
    .await;
    assert_eq!(code, 201, "{text}");
    assert!(text.starts_with('{'), "{text}");
    let rec: Value = serde_json::from_str(&text).unwrap();
    assert_backend_parses_record(&rec);
    assert_eq!(
        (rec["adapter"].as_str(), rec["project"].as_str()),
        (Some("SM01"), Some("Demo"))
    );
    assert!(rec["artifacts"].is_null(), "no model data: {rec}");
    let described = emu
        .sagemaker("DescribeModel", json!({"ModelName": m}))
        .await;
    let container = &described["PrimaryContainer"];
    assert!(
        container.get("ContainerHostname").is_none() && container.get("ModelDataUrl").is_none(),
        "blank values were not sent to SageMaker: {described}"
    );
    // Environment as "" (a blank field) is absent too.
    let m2 = unique("model");
    let mut body2 = body.clone();
    body2["ModelName"] = json!(m2);
    body2["Containers"][0]["Environment"] = json!("");
    body2["Containers"][0]["Unknown"] = json!("x");
    let (code, text) = post_raw(&svc, "/api/service/v1/models/register", &body2).await;
    assert_eq!(code, 201, "{text}");
}

/// The body the backend builds for endpoints/register
/// (ICIPModelAWSServiceSageMaker.getBodyObjForEndpointsRegister): ExecutionRoleArn and
/// PrimaryContainer ride along, and InitialInstanceCount is read with optInt (0 when blank).
#[tokio::test]
async fn backend_endpoint_config_registration_with_role_and_primary_container_is_accepted() {
    let emu = Emulator::shared();
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:1";

    // The model exists: PrimaryContainer and ExecutionRoleArn are accepted and not needed.
    let m = unique("model");
    assert_eq!(
        svc.post("/api/service/v1/models/register", &model(&m, image))
            .await
            .0,
        201
    );
    let c = unique("cfg");
    let body = json!({"ExecutionRoleArn": ROLE, "ModelName": m, "VariantName": "",
        "InitialInstanceCount": 0, "InstanceType": "ml.m5.large", "EndpointConfigName": c,
        "PrimaryContainer": {"Image": "", "ModelDataUrl": ""}});
    let (code, text) = post_raw(
        &svc,
        &format!("/api/service/v1/endpoints/register?{BACKEND_QUERY}"),
        &body,
    )
    .await;
    assert_eq!(code, 201, "{text}");
    assert!(
        text.starts_with('{'),
        "createEndpointFromRemoteVM needs an object: {text}"
    );
    let rec: Value = serde_json::from_str(&text).unwrap();
    assert_backend_parses_record(&rec);
    let variant = &emu
        .sagemaker("DescribeEndpointConfig", json!({"EndpointConfigName": c}))
        .await["ProductionVariants"][0];
    assert_eq!(
        (
            variant["VariantName"].as_str(),
            variant["InitialInstanceCount"].as_i64()
        ),
        (Some("AllTraffic"), Some(1)),
        "blank name and count 0 take the defaults"
    );

    // The model does not exist: it is created from PrimaryContainer and ExecutionRoleArn.
    let fresh = unique("model");
    let c2 = unique("cfg");
    let body = json!({"ExecutionRoleArn": ROLE, "ModelName": fresh, "VariantName": "v1",
        "InitialInstanceCount": 2, "InstanceType": "ml.m5.large", "EndpointConfigName": c2,
        "PrimaryContainer": {"Image": image, "ModelDataUrl": "s3://models-bkt/m.tar.gz"}});
    let (code, text) = post_raw(&svc, "/api/service/v1/endpoints/register", &body).await;
    assert_eq!(code, 201, "{text}");
    let described = emu
        .sagemaker("DescribeModel", json!({"ModelName": fresh}))
        .await;
    assert_eq!(
        described["PrimaryContainer"]["ModelDataUrl"],
        "s3://models-bkt/m.tar.gz"
    );
    let (_, got) = svc.get(&format!("/api/service/v1/models/{fresh}")).await;
    assert_eq!(got["registeredHere"], true, "{got}");
}

/// models/list shows every model of the account and region, not only ours (as the Python
/// executor's projects_models_list did), reading every ListModels page.
#[tokio::test]
async fn the_model_list_shows_models_created_elsewhere_across_pages() {
    // An emulator of its own, so that the number of models (and pages) is this test's.
    let emu = Emulator::start();
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let s = Scratch::new();
    let svc = Service::start(s.config(proxy.url()));
    let mine = unique("model");
    assert_eq!(
        svc.post(
            "/api/service/v1/models/register",
            &model(
                &mine,
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:1"
            )
        )
        .await
        .0,
        201
    );
    // More than one page (SageMaker pages at most 100 models), created without the service.
    let names: Vec<String> = (0..104).map(|i| format!("outside-{i:03}")).collect();
    futures_join_all(names.iter().map(|n| {
        emu.sagemaker(
            "CreateModel",
            json!({"ModelName": n, "ExecutionRoleArn": ROLE,
                   "PrimaryContainer": {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"}}),
        )
    }))
    .await;
    let (code, list) = svc
        .get(&format!("/api/service/v1/models/list?{BACKEND_QUERY}"))
        .await;
    assert_eq!(code, 200, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 105, "every model once");
    for n in &names {
        let r = list.iter().find(|r| r["name"] == n.as_str()).expect(n);
        assert_backend_parses_record(r);
        assert_eq!(r["registeredHere"], false);
    }
    let ours = list.iter().find(|r| r["name"] == mine.as_str()).unwrap();
    assert_eq!(ours["registeredHere"], true);
    let dates: Vec<&str> = list
        .iter()
        .map(|r| r["createdOn"].as_str().unwrap())
        .collect();
    assert!(
        dates.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {dates:?}"
    );
    assert!(
        proxy.call_count("ListModels") >= 2,
        "paged: {:?}",
        proxy.calls()
    );
    // A model made elsewhere can be read one by one too.
    let (code, one) = svc.get("/api/service/v1/models/outside-007").await;
    assert_eq!((code, one["registeredHere"].as_bool()), (200, Some(false)));
    assert_backend_parses_record(&one);
}

/// Runs `fs` eight at a time (the emulator is one process).
async fn futures_join_all<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    use futures_util::StreamExt;
    futures_util::stream::iter(fs)
        .buffer_unordered(8)
        .collect()
        .await
}

/// The UI's deploy screen posts `{EndpointName, EndpointConfigName, "Model Id"}` to
/// models/{id}/export (model-deploy.component.ts, service.ts deployModel); the Python executor
/// had no function behind it. Here it starts the deployment run deploy_model starts.
#[tokio::test]
async fn exporting_a_model_deploys_it_as_deploy_model_does() {
    let emu = Emulator::shared();
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:1";
    let (m, other) = (unique("model"), unique("model"));
    for name in [&m, &other] {
        assert_eq!(
            svc.post("/api/service/v1/models/register", &model(name, image))
                .await
                .0,
            201
        );
    }
    let c = unique("cfg");
    assert_eq!(
        svc.post("/api/service/v1/endpoints/register", &config(&c, &m, 1))
            .await
            .0,
        201
    );
    let e = unique("ep");
    let body = json!({"EndpointName": e, "EndpointConfigName": c, "Model Id": m,
                      "Tags": {"_emulator_polls": "0"}});
    let (code, text) = post_raw(
        &svc,
        &format!("/api/service/v1/models/{m}/export?{BACKEND_QUERY}"),
        &body,
    )
    .await;
    assert_eq!(code, 202, "{text}");
    let accepted: Value = serde_json::from_str(&text).unwrap();
    // model-deploy.component.ts links the model to the endpoint when status is SUCCESS.
    assert_eq!(
        (
            accepted["status"].as_str(),
            accepted["type"].as_str(),
            accepted["name"].as_str()
        ),
        (
            Some("SUCCESS"),
            Some("sagemaker-deployment"),
            Some(e.as_str())
        )
    );
    let run = svc
        .wait_terminal(accepted["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(run["state"], "Done", "{run}");
    let (_, ep) = svc.get(&format!("/api/service/v1/endpoints/{e}")).await;
    assert_eq!(
        (ep["status"].as_str(), ep["endpointConfigName"].as_str()),
        (Some("InService"), Some(c.as_str()))
    );

    // A config that does not serve the model, or does not exist, is refused before any run.
    let runs = svc.run_count().await;
    for (body, field) in [
        (
            json!({"EndpointName": unique("ep"), "EndpointConfigName": c}),
            "EndpointConfigName",
        ),
        (
            json!({"EndpointName": unique("ep"), "EndpointConfigName": "no-such-config"}),
            "EndpointConfigName",
        ),
        (
            json!({"EndpointName": "", "EndpointConfigName": c}),
            "EndpointName",
        ),
    ] {
        let (code, err) = svc
            .post(&format!("/api/service/v1/models/{other}/export"), &body)
            .await;
        assert_eq!((code, err["field"].as_str()), (422, Some(field)), "{err}");
    }
    assert_eq!(svc.run_count().await, runs, "nothing stored");
}

#[tokio::test]
async fn from_a_model_to_an_answer_through_the_essedum_routes() {
    let emu = Emulator::shared();
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let m = unique("model");
    let c = unique("cfg");
    let e = unique("ep");
    assert_eq!(
        svc.post("/api/service/v1/models/register", &model(&m, "img:1"))
            .await
            .0,
        201
    );
    assert_eq!(
        svc.post("/api/service/v1/endpoints/register", &config(&c, &m, 1))
            .await
            .0,
        201
    );
    let (code, d) = svc
        .post(
            &format!("/api/service/v1/endpoints/{e}/deploy_model"),
            &json!({"EndpointConfigName": c, "Tags": {"_emulator_polls": "1"}}),
        )
        .await;
    assert_eq!(code, 202, "{d}");
    assert_eq!(
        svc.wait_terminal(d["id"].as_str().unwrap(), Duration::from_secs(60))
            .await["state"],
        "Done"
    );
    let r = client()
        .post(svc.url(&format!("/api/service/v1/endpoints/{e}/infer")))
        .header("Content-Type", "text/csv")
        .body("1,2,3\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Deleting the endpoint also deletes the config registered here; then the model can go.
    assert_eq!(
        delete(&svc, &format!("/api/service/v1/models/{m}")).await.0,
        409
    );
    let (code, t) = delete(&svc, &format!("/api/service/v1/endpoints/{e}/delete")).await;
    assert_eq!(code, 202, "{t}");
    assert_eq!(
        svc.wait_terminal(t["id"].as_str().unwrap(), Duration::from_secs(60))
            .await["state"],
        "Done"
    );
    let (_, run) = svc
        .get(&format!("/api/v1/runs/{}", t["id"].as_str().unwrap()))
        .await;
    let last = run["history"].as_array().unwrap().last().unwrap()["detail"].clone();
    assert_eq!(
        last,
        format!("endpoint {e} is deleted; deleted its endpoint config {c}")
    );
    assert_eq!(emu.job_stats("endpoint_configs", &c).await["deletes"], 1);
    assert_eq!(
        delete(&svc, &format!("/api/service/v1/models/{m}")).await.0,
        200
    );
}

/// A list made under an Essedum connection (adapter_instance, project and an allow-listed
/// Referer) shows that connection's account and region, as the Python executor's lists did with
/// the connection's credentials.
#[tokio::test]
async fn lists_under_a_connection_show_the_connections_region() {
    use support::fake_backend::FakeBackend;
    let emu = Emulator::shared();
    let backend = FakeBackend::start().await;
    backend.set_connection(
        "p1",
        "a1",
        json!({"accessKey": "AKIACONNECTION", "secretKey": "connection-secret", "region": "eu-west-1"}),
    );
    let s = Scratch::new();
    let mut config = s.config(emu.url());
    config
        .extra_env
        .push(("EXECUTOR_CONNECTION_ALLOW".into(), backend.base_url()));
    let svc = Service::start(config);
    let (eu, us) = (unique("eu-model"), unique("us-model"));
    let container = json!({"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"});
    let (code, _) = emu
        .sagemaker_in(
            "eu-west-1",
            "CreateModel",
            json!({"ModelName": eu, "ExecutionRoleArn": ROLE, "PrimaryContainer": container}),
        )
        .await;
    assert_eq!(code, 200);
    emu.sagemaker(
        "CreateModel",
        json!({"ModelName": us, "ExecutionRoleArn": ROLE, "PrimaryContainer": container}),
    )
    .await;
    let eu_endpoint = unique("eu-ep");
    for (op, body) in [
        (
            "CreateEndpointConfig",
            json!({"EndpointConfigName": eu_endpoint, "ProductionVariants": [{"VariantName": "v1",
                   "ModelName": eu, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]}),
        ),
        (
            "CreateEndpoint",
            json!({"EndpointName": eu_endpoint, "EndpointConfigName": eu_endpoint}),
        ),
    ] {
        assert_eq!(emu.sagemaker_in("eu-west-1", op, body).await.0, 200);
    }
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    for (path, present, absent) in [
        ("/api/service/v1/models/list", &eu, &us),
        ("/api/service/v1/endpoints/list", &eu_endpoint, &us),
    ] {
        let r = client()
            .get(svc.url(&format!(
                "{path}?adapter_instance=a1&project=p1&isCached=false&isRemoteDS=true"
            )))
            .header("Referer", backend.base_url())
            .send()
            .await
            .unwrap();
        let (code, list) = support::reply(r).await;
        assert_eq!(code, 200, "{list}");
        let listed = names(&list);
        assert!(listed.contains(present), "{path}: {listed:?}");
        assert!(!listed.contains(absent), "{path}: {listed:?}");
        assert!(
            list.as_array()
                .unwrap()
                .iter()
                .all(|r| r["adapter"] == "a1")
        );
    }
    let (_, default_list) = svc.get("/api/service/v1/models/list").await;
    assert!(
        !names(&default_list).contains(&eu),
        "without a connection: the default region"
    );
}
