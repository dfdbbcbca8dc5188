//! Models and endpoint configs: idempotent registration, the delete rule, and the whole Essedum
//! path from a model to an answer (register, register config, deploy, infer).

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Emulator, ROLE, Scratch, Service, client, unique};

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
        (code, rec["status"].as_str()),
        (201, Some("Created")),
        "{rec}"
    );
    assert!(
        rec["container"].as_str().unwrap().contains(":model/"),
        "{rec}"
    );
    assert_eq!(rec["artifacts"], "s3://models-bkt/churn/model.tar.gz");
    let (code, again) = svc
        .post("/api/service/v1/models/register", &model(&m, image))
        .await;
    assert_eq!(
        (code, again["status"].as_str()),
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
    let (_, list) = svc.get("/api/service/v1/models/list").await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == m.as_str())
    );

    let c = unique("cfg");
    let (code, rec) = svc
        .post("/api/service/v1/endpoints/register", &config(&c, &m, 1))
        .await;
    assert_eq!(
        (code, rec["status"].as_str()),
        (201, Some("Created")),
        "{rec}"
    );
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
async fn bad_registrations_name_the_field() {
    let s = Scratch::new();
    let svc = Service::start(s.config(Emulator::shared().url()));
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
            edit(&|b| b["Containers"][0]["Mode"] = json!("Many")),
            422,
            "Containers[0].Mode",
        ),
        (
            edit(&|b| b["Containers"][0]["Extra"] = json!(1)),
            400,
            "Containers[0].Extra",
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
    ] {
        let (code, err) = svc.post("/api/service/v1/models/register", &body).await;
        assert_eq!((code, err["field"].as_str()), (want, Some(field)), "{err}");
    }
    let (code, err) = svc
        .post(
            "/api/service/v1/endpoints/register",
            &json!({"EndpointConfigName": "c1", "ModelName": m}),
        )
        .await;
    assert_eq!(
        (code, err["field"].as_str()),
        (422, Some("InitialInstanceCount")),
        "{err}"
    );
    let (_, list) = svc.get("/api/service/v1/models/list").await;
    assert!(list.as_array().unwrap().is_empty(), "nothing registered");
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
