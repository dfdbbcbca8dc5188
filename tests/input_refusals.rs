//! Input that AWS would refuse later is refused at the door: repeated JSON keys (which a parser
//! would silently resolve to the last one) and NUL or control characters where AWS refuses them.
//! Each refusal names the field, and nothing is stored.

mod support;

use serde_json::Value;
use support::{Emulator, ROLE, Scratch, Service, client, unique};

const TRAIN: &str = "/api/service/v1/pipelines/training/train?project=p1";

async fn setup() -> (Scratch, Service, String) {
    let emu = Emulator::shared();
    let bucket = unique("refuse");
    emu.create_bucket(&bucket).await;
    let scratch = Scratch::new();
    let svc = Service::start(scratch.config(emu.url()));
    (scratch, svc, bucket)
}

/// POSTs `body` byte for byte as JSON.
async fn post_text(svc: &Service, path: &str, body: &str) -> (u16, Value) {
    let r = client()
        .post(svc.url(path))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// A training body with `extra` spliced in as the last members (raw JSON text).
fn training(bucket: &str, extra: &str) -> String {
    format!(
        r#"{{"RoleArn":"{ROLE}","Bucket":"{bucket}","TrainingImage":"123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1","inline_csv":"label,x\n1,0.5\n"{extra}}}"#
    )
}

#[tokio::test]
async fn a_key_given_twice_is_refused_naming_it_at_any_depth() {
    let (_s, svc, bucket) = setup().await;
    let (code, e) = post_text(&svc, TRAIN, &training(&bucket, r#","Bucket":"other""#)).await;
    assert_eq!(code, 400, "{e}");
    assert_eq!(e["field"], "Bucket", "{e}");
    let (code, e) = post_text(
        &svc,
        TRAIN,
        &training(
            &bucket,
            r#","HyperParameters":{"eta":"0.1","depth":"3","eta":"0.9"}"#,
        ),
    )
    .await;
    assert_eq!(code, 400, "{e}");
    assert_eq!(e["field"], "HyperParameters.eta", "{e}");
    assert!(e["error"].as_str().unwrap().contains("twice"), "{e}");
    // Our own strict route as well.
    let (code, e) = post_text(
        &svc,
        "/api/service/v1/pipelines/training",
        &training(&bucket, r#","InstanceCount":1,"InstanceCount":2"#),
    )
    .await;
    assert_eq!((code, e["field"].as_str()), (400, Some("InstanceCount")));
    assert_eq!(svc.run_count().await, 0);
}

#[tokio::test]
async fn nul_in_any_string_and_control_characters_in_keys_are_refused_naming_the_field() {
    let (_s, svc, bucket) = setup().await;
    for (extra, field) in [
        (
            r#","HyperParameters":{"eta":"0.1\u0000"}"#,
            "HyperParameters.eta",
        ),
        (
            r#","HyperParameters":{"e\u0000ta":"0.1"}"#,
            r#"HyperParameters."e\u0000ta""#,
        ),
        (
            r#","HyperParameters":{"e\tta":"0.1"}"#,
            r#"HyperParameters."e\tta""#,
        ),
        (r#","S3Prefix":"runs/\u0000""#, "S3Prefix"),
    ] {
        let (code, e) = post_text(&svc, TRAIN, &training(&bucket, extra)).await;
        assert_eq!(code, 422, "{extra}: {e}");
        assert_eq!(e["field"], field, "{e}");
    }
    // NUL inside the CSV text itself.
    let body = training(&bucket, "").replace(r#"1,0.5\n"#, r#"1,0.5\u0000\n"#);
    let (code, e) = post_text(&svc, TRAIN, &body).await;
    assert_eq!(
        (code, e["field"].as_str()),
        (422, Some("inline_csv")),
        "{e}"
    );
    // `/execute`: an environment variable name with a line break, a command with a NUL.
    let script = |extra: &str| {
        format!(
            r#"{{"bucket":"{bucket}","project_id":"p","name":"n","version":"1","credentials":{{"endpoint":"http://x","access_key":"a","secret_key":"s"}},"input_artifacts":"in/","storage":"s3"{extra}}}"#
        )
    };
    let (code, e) = post_text(
        &svc,
        "/execute",
        &script(r#","command":"python a.py","environment":{"A\nB":"1"}"#),
    )
    .await;
    assert_eq!(
        (code, e["field"].as_str()),
        (422, Some(r#"environment."A\nB""#)),
        "{e}"
    );
    let (code, e) = post_text(
        &svc,
        "/execute",
        &script(r#","command":"python\u0000 a.py""#),
    )
    .await;
    assert_eq!((code, e["field"].as_str()), (422, Some("command")), "{e}");
    assert_eq!(svc.run_count().await, 0);
}

#[tokio::test]
async fn tabs_and_line_breaks_in_values_are_accepted() {
    let (_s, svc, bucket) = setup().await;
    let body = training(&bucket, r#","HyperParameters":{"note":"a\tb\r\nc"}"#)
        .replace(r#"1,0.5\n"#, "1,0.5\\r\\n0,\\t0.1\\n");
    let (code, a) = post_text(&svc, TRAIN, &body).await;
    assert_eq!(code, 202, "{a}");
    assert_eq!(svc.run_count().await, 1);
}
