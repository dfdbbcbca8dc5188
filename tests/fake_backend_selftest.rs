//! Self test for the fake Essedum backend in `tests/support/fake_backend.rs`, exercising it
//! through the real [`ConnectionResolver`].

#[path = "support/fake_backend.rs"]
mod fake_backend;

use std::time::Duration;

use fake_backend::FakeBackend;
use sagemaker_executor::connection::{
    AllowList, ConnectionError, ConnectionRef, ConnectionResolver,
};
use sagemaker_executor::secrets::Secret;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(5);

fn resolver(bases: &[String], ttl: Duration, token: Option<&str>) -> ConnectionResolver {
    let allow = AllowList::parse(bases).unwrap();
    ConnectionResolver::new(allow, TIMEOUT, ttl, token.map(Secret::new)).unwrap()
}

fn details() -> serde_json::Value {
    json!({
        "accessKey": "AKIAFAKE",
        "secretKey": "FAKESECRET",
        "sessionToken": "FAKETOKEN",
        "region": "eu-west-1",
        "bucketName": "essedum-bucket"
    })
}

#[tokio::test]
async fn resolves_and_caches() {
    let backend = FakeBackend::start().await;
    backend.set_connection("proj one", "ai/1", details());
    let allow = AllowList::parse(&[backend.base_url()]).unwrap();
    let r = allow
        .reference(
            &format!("{}ui/page", backend.base_url()),
            "proj one",
            "ai/1",
            Some("true"),
        )
        .unwrap();
    assert_eq!(r.base_url, backend.base_url());

    let res = resolver(
        &[backend.base_url()],
        Duration::from_secs(60),
        Some("TOKEN123"),
    );
    let d = res.resolve(&r).await.unwrap();
    assert_eq!(d.access_key, "AKIAFAKE");
    assert_eq!(d.secret_key.expose(), "FAKESECRET");
    assert_eq!(d.session_token.as_ref().unwrap().expose(), "FAKETOKEN");
    assert_eq!(d.region.as_deref(), Some("eu-west-1"));
    assert_eq!(d.bucket.as_deref(), Some("essedum-bucket"));
    assert_eq!(d.name.as_deref(), Some("ai/1-connection"));
    assert_eq!(
        backend.last_authorization().as_deref(),
        Some("Bearer TOKEN123")
    );
    let q = backend.last_query().unwrap();
    assert_eq!(q.get("project").map(String::as_str), Some("proj one"));
    assert_eq!(q.get("adapter_instance").map(String::as_str), Some("ai/1"));
    assert_eq!(q.get("isInstance").map(String::as_str), Some("true"));

    // Served from the cache.
    let again = res.resolve(&r).await.unwrap();
    assert_eq!(again, d);
    assert_eq!(backend.calls(), 1);
    assert_eq!(res.calls(), 1);

    // Forgetting forces a fetch.
    res.forget(&r);
    res.resolve(&r).await.unwrap();
    assert_eq!(backend.calls(), 2);
}

#[tokio::test]
async fn zero_ttl_always_fetches_without_token() {
    let backend = FakeBackend::start().await;
    backend.set_connection("p", "a", json!({"accessKey": "A", "secretKey": "S"}));
    let res = resolver(&[backend.base_url()], Duration::ZERO, None);
    let r = ConnectionRef {
        base_url: backend.base_url(),
        project: "p".into(),
        adapter_instance: "a".into(),
        is_instance: None,
    };
    res.resolve(&r).await.unwrap();
    res.resolve(&r).await.unwrap();
    assert_eq!(backend.calls(), 2);
    assert_eq!(res.calls(), 2);
    assert_eq!(backend.last_authorization(), None);
    assert!(!backend.last_query().unwrap().contains_key("isInstance"));
}

#[tokio::test]
async fn failures_are_classified() {
    let backend = FakeBackend::start().await;
    backend.set_connection("p", "a", json!({"accessKey": "A", "secretKey": "S"}));
    let res = resolver(&[backend.base_url()], Duration::from_secs(60), None);
    let r = |adapter: &str| ConnectionRef {
        base_url: backend.base_url(),
        project: "p".into(),
        adapter_instance: adapter.into(),
        is_instance: None,
    };

    backend.fail_next(1, 503);
    let err = res.resolve(&r("a")).await.unwrap_err();
    assert!(matches!(err, ConnectionError::Unreachable(_)), "{err}");
    assert!(err.retryable());
    // Failures are not cached; the next try succeeds.
    res.resolve(&r("a")).await.unwrap();
    assert_eq!(backend.calls(), 2);

    let err = res.resolve(&r("unknown")).await.unwrap_err();
    assert!(matches!(err, ConnectionError::NotFound(_)), "{err}");
    assert!(!err.retryable());

    backend.set_connection("p", "nosecret", json!({"accessKey": "AKIAVISIBLE"}));
    let err = res.resolve(&r("nosecret")).await.unwrap_err();
    assert!(
        matches!(&err, ConnectionError::BadAnswer(m) if m.contains("secretKey")),
        "{err}"
    );
    assert!(!err.to_string().contains("AKIAVISIBLE"));

    backend.set_answer("p", "forbidden", 403, json!({"message": "no"}));
    let err = res.resolve(&r("forbidden")).await.unwrap_err();
    assert!(matches!(err, ConnectionError::BadAnswer(_)), "{err}");

    backend.set_answer("p", "empty", 200, json!({"connection": null}));
    let err = res.resolve(&r("empty")).await.unwrap_err();
    assert!(matches!(err, ConnectionError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn refs_off_the_allow_list_are_never_fetched() {
    let backend = FakeBackend::start().await;
    backend.set_connection("p", "a", json!({"accessKey": "A", "secretKey": "S"}));
    // The resolver allows some other backend only.
    let res = resolver(
        &["http://127.0.0.1:1/".to_string()],
        Duration::from_secs(60),
        None,
    );
    let r = ConnectionRef {
        base_url: backend.base_url(),
        project: "p".into(),
        adapter_instance: "a".into(),
        is_instance: None,
    };
    let err = res.resolve(&r).await.unwrap_err();
    assert!(matches!(err, ConnectionError::NotAllowed(_)), "{err}");
    assert!(!err.retryable());
    assert_eq!(res.calls(), 0);
    assert_eq!(backend.calls(), 0);
    // Nor is a Referer pointing at it admitted.
    assert_eq!(res.allow_list().admit(&backend.base_url()), None);
}

#[tokio::test]
async fn unreachable_backend_is_retryable() {
    let backend = FakeBackend::start().await;
    let base = backend.base_url();
    drop(backend);
    // Give the server a moment to close its listener.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = resolver(std::slice::from_ref(&base), Duration::from_secs(60), None);
    let r = ConnectionRef {
        base_url: base,
        project: "p".into(),
        adapter_instance: "a".into(),
        is_instance: None,
    };
    let err = res.resolve(&r).await.unwrap_err();
    assert!(matches!(err, ConnectionError::Unreachable(_)), "{err}");
    assert!(err.retryable());
    assert_eq!(res.calls(), 1);
}
