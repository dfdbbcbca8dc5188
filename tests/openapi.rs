//! The committed OpenAPI document must equal what the code generates.
//! To refresh it: `cargo run -- openapi > openapi/openapi.json`.

#[test]
fn committed_openapi_document_is_current() {
    let generated = sagemaker_executor::api::spec_json();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let committed = std::fs::read_to_string(path).expect("openapi/openapi.json exists");
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json` and commit it"
    );
}

#[test]
fn document_lists_every_surface() {
    let spec: serde_json::Value =
        serde_json::from_str(&sagemaker_executor::api::spec_json()).unwrap();
    for path in [
        "/api/service/v1/pipelines/training",
        "/api/service/v1/pipelines/training/train",
        "/api/service/v1/pipelines/training/{id}/get",
        "/api/service/v1/pipelines/training/{id}/cancel",
        "/api/service/v1/pipelines/training/list",
        "/status/{id}",
        "/api/v1/runs",
        "/api/v1/runs/{id}",
        "/api/v1/runs/{id}/cancel",
        "/api/v1/workflows",
        "/healthz",
        "/readyz",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} missing");
    }
    let req = &spec["components"]["schemas"]["TrainingRequest"];
    assert_eq!(
        req["required"],
        serde_json::json!(["RoleArn", "Bucket", "TrainingImage"]),
        "{req}"
    );
    assert!(req["properties"]["RoleArn"].is_object());
}
