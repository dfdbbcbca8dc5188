//! Logs at `trace` never show credentials: not the AWS SDK's own events (signing, headers), not
//! the connection lookup, not the static tokens of the configuration.

mod support;

use serde_json::json;
use std::time::Duration;
use support::fake_backend::FakeBackend;
use support::{Emulator, Scratch, Service, client, reply, training_body, unique};

const ACCESS_KEY: &str = "AKIAUPTIMEREDACT0001";
const SECRET_KEY: &str = "uptimeSecretKey/With+Mixed9Case012345678";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEUptimeSessionToken/0123456789+abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789==";
const CONNECTION_TOKEN: &str = "uptime-static-token-value-42";
const OPERATOR_TOKEN: &str = "uptime-operator-token-value-7";

#[tokio::test]
async fn trace_logs_of_a_connection_backed_run_show_no_credentials() {
    let emu = Emulator::shared();
    let bucket = unique("redact");
    emu.create_bucket(&bucket).await;
    let backend = FakeBackend::start().await;
    backend.set_connection(
        "p1",
        "a1",
        json!({
            "accessKey": ACCESS_KEY,
            "secretKey": SECRET_KEY,
            "sessionToken": SESSION_TOKEN,
            "region": "us-east-1",
        }),
    );
    let scratch = Scratch::new();
    let mut config = scratch.config(emu.url());
    config.extra_env.extend([
        ("EXECUTOR_LOG".to_string(), "trace".to_string()),
        ("EXECUTOR_CONNECTION_ALLOW".into(), backend.base_url()),
        ("EXECUTOR_CONNECTION_TOKEN".into(), CONNECTION_TOKEN.into()),
        ("EXECUTOR_OPERATOR_TOKEN".into(), OPERATOR_TOKEN.into()),
    ]);
    let svc = Service::start(config);

    let r = client()
        .post(svc.url(
            "/api/service/v1/pipelines/training/train?adapter_instance=a1&project=p1&isCached=false&isInstance=false",
        ))
        .header("Referer", backend.base_url())
        .bearer_auth(OPERATOR_TOKEN)
        .json(&training_body(&bucket, "Completed", 1))
        .send()
        .await
        .unwrap();
    let (code, accepted) = reply(r).await;
    assert_eq!(code, 202, "{accepted}");
    let done = svc
        .wait_terminal_with_token(accepted["id"].as_str().unwrap(), OPERATOR_TOKEN)
        .await;
    assert_eq!(done["state"], "Done", "{done}");
    assert_eq!(
        backend.last_header("access-token").as_deref(),
        Some(CONNECTION_TOKEN),
        "the lookup carried the token"
    );
    svc.stderr
        .wait_for("the SDK's own trace events", Duration::from_secs(10), |l| {
            l.contains("aws_sigv4") || l.contains("aws_smithy")
        });

    let logs = svc.stderr.all();
    for secret in [
        ACCESS_KEY,
        SECRET_KEY,
        SESSION_TOKEN,
        CONNECTION_TOKEN,
        OPERATOR_TOKEN,
    ] {
        let shown: Vec<&String> = logs.iter().filter(|l| l.contains(secret)).collect();
        assert!(
            shown.is_empty(),
            "{} log lines show {secret}, e.g. {:?}",
            shown.len(),
            shown.first()
        );
    }
}
