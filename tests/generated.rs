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

/// The service answers `null` for every optional field it does not know, so the document must
/// declare each of them nullable (a plain `Option<T>` is only "not required" in poem-openapi).
#[test]
fn every_optional_property_is_nullable() {
    let spec: serde_json::Value =
        serde_json::from_str(&sagemaker_executor::api::spec_json()).unwrap();
    let mut missing = Vec::new();
    for (name, schema) in spec["components"]["schemas"].as_object().unwrap() {
        let required = schema["required"].as_array().cloned().unwrap_or_default();
        for (prop, s) in schema["properties"].as_object().into_iter().flatten() {
            let is_required = required.iter().any(|r| r == prop);
            if !is_required && s["nullable"] != true {
                missing.push(format!("{name}.{prop}"));
            }
            assert!(
                s.get("$ref").is_none() || is_required,
                "{name}.{prop}: a nullable reference must be wrapped in allOf"
            );
        }
    }
    assert!(missing.is_empty(), "not nullable: {missing:?}");
}

/// Statuses answered around the handlers (authentication, the body limit, poem's own parsing,
/// the timeout) are documented on every operation they can reach, with the error schema.
#[test]
fn every_operation_documents_the_statuses_the_middleware_answers() {
    let spec: serde_json::Value =
        serde_json::from_str(&sagemaker_executor::api::spec_json()).unwrap();
    let mut missing = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut want = vec!["500", "503"];
            if !matches!(path.as_str(), "/healthz" | "/readyz") {
                want.extend(["401", "403"]);
            }
            if op.get("requestBody").is_some() {
                want.extend(["400", "413", "415"]);
            }
            for status in want {
                let schema = &op["responses"][status]["content"]["application/json; charset=utf-8"]
                    ["schema"]["$ref"];
                // The error schema, or a route's own reply for that status that still carries
                // the error message (a refusal with more keys the backend reads).
                let carries_error = schema.as_str().is_some_and(|r| {
                    let name = r.trim_start_matches("#/components/schemas/");
                    let own = &spec["components"]["schemas"][name];
                    own["properties"]["error"]["type"] == "string"
                        && own["required"]
                            .as_array()
                            .is_some_and(|req| req.contains(&"error".into()))
                });
                if schema != "#/components/schemas/ErrorBody" && !carries_error {
                    missing.push(format!("{method} {path} {status}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "undocumented: {missing:?}");
}

/// An `allOf` member that only annotates (`{description}`, `{nullable: true}`) makes
/// openapi-python-client drop the whole schema; the finishing pass lifts such members.
#[test]
fn no_all_of_member_only_annotates() {
    fn walk(v: &serde_json::Value, at: &str, found: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for m in o
                    .get("allOf")
                    .and_then(|a| a.as_array())
                    .into_iter()
                    .flatten()
                {
                    if m.get("$ref").is_none()
                        && m.get("type").is_none()
                        && m.get("properties").is_none()
                    {
                        found.push(format!("{at}: {m}"));
                    }
                }
                for (k, x) in o {
                    walk(x, &format!("{at}/{k}"), found);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, at, found)),
            _ => {}
        }
    }
    let spec: serde_json::Value =
        serde_json::from_str(&sagemaker_executor::api::spec_json()).unwrap();
    let mut found = Vec::new();
    walk(&spec, "", &mut found);
    assert!(found.is_empty(), "annotation-only allOf members: {found:?}");
}
