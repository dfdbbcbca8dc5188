//! Real-time inference through `POST /api/service/v1/endpoints/{id}/infer` against the
//! emulator's endpoints: bodies reach the model intact and its answers come back as they are.

mod support;

use serde_json::{Value, json};
use support::{Emulator, Scratch, Service, client, unique};

async fn infer(
    svc: &Service,
    endpoint: &str,
    content_type: &str,
    body: &str,
) -> (u16, String, String) {
    let r = client()
        .post(svc.url(&format!(
            "/api/service/v1/endpoints/{endpoint}/infer?isOnline=true"
        )))
        .header("Content-Type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

#[tokio::test]
async fn json_csv_and_s3_bodies_reach_the_model_intact_and_answers_come_back_as_they_are() {
    let emu = Emulator::shared();
    let endpoint = unique("ep");
    emu.endpoint(&endpoint, 0).await;
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));

    let json_body = r#"{"instances": [[1.5, 2, "a"]], "note": "ünïcode"}"#;
    let (code, ct, answer) = infer(&svc, &endpoint, "application/json", json_body).await;
    assert_eq!(code, 200, "{answer}");
    assert!(ct.starts_with("application/json"), "{ct}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap(),
        json!({"predictions": [0]})
    );

    emu.queue_answer(
        json!({"endpoint": endpoint, "body": "0.93\n0.07\n", "content_type": "text/csv"}),
    )
    .await;
    let csv = "5.1,3.5,1.4\n4.9,3.0,1.3\n";
    let (code, ct, answer) = infer(&svc, &endpoint, "text/csv", csv).await;
    assert_eq!(
        (code, ct.as_str(), answer.as_str()),
        (200, "text/csv", "0.93\n0.07\n")
    );

    let bucket = unique("inf");
    emu.create_bucket(&bucket).await;
    emu.put_object(&bucket, "batch/rows.csv", "1,2,3\n").await;
    let s3_body = json!({"S3Uri": format!("s3://{bucket}/batch/rows.csv")}).to_string();
    let (code, _, _) = infer(&svc, &endpoint, "application/json", &s3_body).await;
    assert_eq!(code, 200);

    let seen = emu.invocations(&endpoint).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        (seen[0]["content_type"].as_str(), seen[0]["body"].as_str()),
        (Some("application/json"), Some(json_body))
    );
    assert_eq!(
        (seen[1]["content_type"].as_str(), seen[1]["body"].as_str()),
        (Some("text/csv"), Some(csv))
    );
    assert_eq!(
        (seen[2]["content_type"].as_str(), seen[2]["body"].as_str()),
        (Some("text/csv"), Some("1,2,3\n"))
    );
}

#[tokio::test]
async fn model_errors_missing_and_unready_endpoints_and_bad_bodies_get_their_status() {
    let emu = Emulator::shared();
    let ready = unique("ep");
    emu.endpoint(&ready, 0).await;
    let creating = unique("ep");
    emu.endpoint(&creating, 5).await;
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));

    emu.queue_answer(json!({"endpoint": ready, "model_error": {"status": 400, "message": "expected 4 features, got 3"}})).await;
    let (code, _, err) = infer(&svc, &ready, "text/csv", "1,2,3\n").await;
    assert_eq!(code, 424, "{err}");
    assert!(err.contains("expected 4 features, got 3"), "{err}");

    let (code, _, err) = infer(&svc, &unique("nope"), "text/csv", "1\n").await;
    assert_eq!(code, 404, "{err}");
    let (code, _, err) = infer(&svc, &creating, "text/csv", "1\n").await;
    assert_eq!(code, 409, "{err}");
    assert!(err.contains("not in service"), "{err}");

    let (code, _, _) = infer(&svc, &ready, "application/json", "{not json").await;
    assert_eq!(code, 400);
    let (code, _, _) = infer(&svc, &ready, "text/csv", "").await;
    assert_eq!(code, 400);
    let (code, _, err) = infer(&svc, "bad_name!", "text/csv", "1\n").await;
    assert_eq!(code, 400, "{err}");
    let missing = json!({"S3Uri": "s3://no-such-bucket-zz/x.csv"}).to_string();
    let (code, _, err) = infer(&svc, &ready, "application/json", &missing).await;
    assert_eq!(code, 422, "{err}");
    assert_eq!(
        emu.invocations(&ready).await.len(),
        1,
        "only the model-error call reached the model"
    );
}

#[tokio::test]
async fn throttling_is_retried_briefly_then_answered_503_with_retry_after() {
    use support::fault_proxy::{Fault, FaultPlan, FaultProxy};
    let emu = Emulator::shared();
    let endpoint = unique("ep");
    emu.endpoint(&endpoint, 0).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let s = Scratch::new();
    let svc = Service::start(s.config(proxy.url()));

    // Every other call throttled: the retry gets through.
    proxy.set_plan(FaultPlan::new(2, vec![Fault::Throttle]).only(["InvokeEndpoint"]));
    for _ in 0..2 {
        let (code, _, answer) = infer(&svc, &endpoint, "text/csv", "1,2\n").await;
        assert_eq!(code, 200, "{answer}");
    }
    assert!(proxy.fault_count("InvokeEndpoint") >= 1);

    // Always throttled: a few tries, then 503 with Retry-After.
    proxy.set_plan(FaultPlan::always(Fault::Throttle).only(["InvokeEndpoint"]));
    let before = proxy.call_count("InvokeEndpoint");
    let r = client()
        .post(svc.url(&format!("/api/service/v1/endpoints/{endpoint}/infer")))
        .header("Content-Type", "text/csv")
        .body("1,2\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let tries = proxy.call_count("InvokeEndpoint") - before;
    assert_eq!(tries, 4, "one call and three brief retries");
    assert_eq!(
        emu.invocations(&endpoint).await.len(),
        2,
        "throttled calls never reached the model"
    );
}

/// The Python executor's infer read only `S3Uri` from the body (projects_endpoints_infer_create):
/// a body naming a CSV object as `S3Uri` next to other keys sends that CSV to the model.
#[tokio::test]
async fn a_backend_infer_body_naming_s3uri_among_other_keys_sends_the_csv() {
    let emu = Emulator::shared();
    let endpoint = unique("ep");
    emu.endpoint(&endpoint, 0).await;
    let bucket = unique("inf");
    emu.create_bucket(&bucket).await;
    emu.put_object(&bucket, "rows.csv", "4,5,6\n").await;
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let body =
        json!({"S3Uri": format!("s3://{bucket}/rows.csv"), "instances": [], "deployModelId": ""});
    let (code, _, answer) = infer(&svc, &endpoint, "application/json", &body.to_string()).await;
    assert_eq!(code, 200, "{answer}");
    let seen = emu.invocations(&endpoint).await;
    assert_eq!(
        (seen[0]["content_type"].as_str(), seen[0]["body"].as_str()),
        (Some("text/csv"), Some("4,5,6\n"))
    );
}

async fn explain(svc: &Service, endpoint: &str, body: &str) -> (u16, Value) {
    let r = client()
        .post(svc.url(&format!(
            "/api/service/v1/endpoints/{endpoint}/explain?adapter_instance=SM01&project=Demo&isCached=false&isRemoteDS=true"
        )))
        .header("Content-Type", "text/csv")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    // The backend treats a reply as JSON only when it starts with { or [.
    assert!(
        text.starts_with('{') || text.starts_with('['),
        "not JSON: {text}"
    );
    (code, serde_json::from_str(&text).unwrap())
}

/// explain: the Python adapter had no function behind it (a 500). Here an endpoint whose config
/// has a Clarify ExplainerConfig is invoked with EnableExplanations and Clarify's answer comes
/// back; an endpoint without one gets a 409 saying why, an unknown one a 404.
#[tokio::test]
async fn explain_asks_clarify_for_explanations_only_where_an_explainer_is_configured() {
    let emu = Emulator::shared();
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let m = unique("model");
    let (code, _) = svc
        .post(
            "/api/service/v1/models/register",
            &json!({"ModelName": m, "ExecutionRoleArn": support::ROLE, "Containers": [{
                "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgb:1"}]}),
        )
        .await;
    assert_eq!(code, 201);
    let with = unique("cfg");
    let explainer = json!({"ClarifyExplainerConfig": {"EnableExplanations": "`true`",
        "ShapConfig": {"ShapBaselineConfig": {"MimeType": "text/csv", "ShapBaseline": "1,2,3"},
                       "NumberOfSamples": 10, "UseLogit": false}}});
    let (code, rec) = svc
        .post(
            "/api/service/v1/endpoints/register",
            &json!({"EndpointConfigName": with, "ModelName": m, "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1, "ExplainerConfig": explainer}),
        )
        .await;
    assert_eq!(code, 201, "{rec}");
    assert_eq!(
        emu.sagemaker(
            "DescribeEndpointConfig",
            json!({"EndpointConfigName": with})
        )
        .await["ExplainerConfig"],
        explainer,
        "the explainer reached SageMaker"
    );
    let without = unique("cfg");
    let (code, _) = svc
        .post(
            "/api/service/v1/endpoints/register",
            &json!({"EndpointConfigName": without, "ModelName": m, "InstanceType": "ml.m5.large"}),
        )
        .await;
    assert_eq!(code, 201);
    let (xai, plain) = (unique("ep"), unique("ep"));
    for (e, c) in [(&xai, &with), (&plain, &without)] {
        let (code, d) = svc
            .post(
                &format!("/api/service/v1/endpoints/{e}/deploy_model"),
                &json!({"EndpointConfigName": c, "Tags": {"_emulator_polls": "0"}}),
            )
            .await;
        assert_eq!(code, 202, "{d}");
        let run = svc
            .wait_terminal(
                d["id"].as_str().unwrap(),
                std::time::Duration::from_secs(60),
            )
            .await;
        assert_eq!(run["state"], "Done", "{run}");
    }

    let (code, answer) = explain(&svc, &xai, "1,2,3\n").await;
    assert_eq!(code, 200, "{answer}");
    assert!(
        answer.get("explanations").is_some() && answer.get("predictions").is_some(),
        "{answer}"
    );
    let seen = emu.invocations(&xai).await;
    assert_eq!(
        (
            seen.last().unwrap()["body"].as_str(),
            seen.last().unwrap()["enable_explanations"].as_str()
        ),
        (Some("1,2,3\n"), Some("`true`"))
    );

    let (code, err) = explain(&svc, &plain, "1,2,3\n").await;
    assert_eq!(code, 409, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("ExplainerConfig"),
        "{err}"
    );
    assert!(
        emu.invocations(&plain).await.is_empty(),
        "nothing reached the model"
    );
    let (code, err) = explain(&svc, &unique("nope"), "1\n").await;
    assert_eq!(code, 404, "{err}");
}
