//! Self test for the fake Essedum backend in `tests/support/fake_backend.rs`, exercising it
//! through the real [`ConnectionResolver`].

#[path = "support/fake_backend.rs"]
mod fake_backend;

use std::time::Duration;

use fake_backend::{FakeBackend, TestCa};
use sagemaker_executor::connection::{
    AllowList, ConnectionError, ConnectionRef, ConnectionResolver, LookupSettings,
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
    // The backend's auth filter reads a service token from `access-token`; a Bearer value is a
    // user JWT there (sv/common-app/.../security/jwt/CustomAuthFilter.java).
    assert_eq!(
        backend.last_header("access-token").as_deref(),
        Some("TOKEN123")
    );
    assert_eq!(backend.last_authorization(), None);
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

#[tokio::test]
async fn https_backends_are_verified_against_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::create(dir.path());
    let backend = FakeBackend::start_tls(&ca).await;
    assert!(backend.base_url().starts_with("https://127.0.0.1:"));
    backend.set_connection("p", "a", details());
    let r = ConnectionRef {
        base_url: backend.base_url(),
        project: "p".into(),
        adapter_instance: "a".into(),
        is_instance: None,
    };
    let settings = |ca_file: Option<&std::path::Path>| {
        let mut s = LookupSettings::new(TIMEOUT, Duration::ZERO);
        s.token = Some(Secret::new("TOKEN123"));
        s.project_id = Some("2".into());
        s.ca_file = ca_file.map(Into::into);
        s
    };
    let allow = || AllowList::parse(&[backend.base_url()]).unwrap();

    let trusting = ConnectionResolver::with_settings(allow(), settings(Some(&ca.ca_file))).unwrap();
    let d = trusting.resolve(&r).await.unwrap();
    assert_eq!(d.access_key, "AKIAFAKE");
    assert_eq!(
        backend.last_header("access-token").as_deref(),
        Some("TOKEN123")
    );
    assert_eq!(backend.last_header("project").as_deref(), Some("2"));

    // Without the CA the certificate is not trusted: no request reaches the backend.
    let calls = backend.calls();
    let strict = ConnectionResolver::with_settings(allow(), settings(None)).unwrap();
    let err = strict.resolve(&r).await.unwrap_err();
    assert!(matches!(err, ConnectionError::Unreachable(_)), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(backend.calls(), calls);
    // The server side notices the refused handshake a moment after the client gave up.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while backend.failed_handshakes() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no failed handshake seen"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
