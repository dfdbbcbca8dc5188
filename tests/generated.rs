//! Generated documents must equal what the code generates: the OpenAPI document under
//! `openapi/` and the README's workflow section.
//! To refresh them: `scripts/regenerate`.

#[test]
fn committed_openapi_document_is_current() {
    let generated = sagemaker_executor::api::spec_json();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let committed = std::fs::read_to_string(path).expect("openapi/openapi.json exists");
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run scripts/regenerate and commit it"
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

#[test]
fn readme_workflow_section_is_current() {
    let defs = sagemaker_executor::workflows::load_definitions().unwrap();
    let generated = sagemaker_executor::workflows::markdown(&defs);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let begin = "<!-- workflows:begin -->\n";
    let start = readme
        .find(begin)
        .expect("README has the workflows:begin marker")
        + begin.len();
    let end = readme
        .find("<!-- workflows:end -->")
        .expect("README has the workflows:end marker");
    assert!(
        readme[start..end] == generated,
        "README's workflow section is stale: run scripts/regenerate"
    );
}
