//! The finishing pass over the OpenAPI document poem-openapi generates, so that the document says
//! what the service really answers. Two things poem-openapi cannot express from the types alone:
//!
//! * **Nullable optional fields.** An `Option<T>` field is rendered as "not required" but not as
//!   nullable, while the service answers `null` for an unknown value (and its parsers read `null`
//!   as absent). Every property that is not required becomes `nullable: true` (a `$ref` is wrapped
//!   in `allOf`, as OpenAPI 3.0 ignores siblings of `$ref`).
//! * **The statuses middleware and poem answer.** Authentication (401, 403), the body limit (411,
//!   413), poem's own rejections of a query, path or body it cannot parse (400) or of a wrong
//!   `Content-Type` (415), the connection lookup (403, 404, 502, 503), the request timeout (503)
//!   and the panic guard (500) answer before or around a handler, so no handler's return type
//!   lists them. Each operation gets those that can reach it, with the JSON error schema; a
//!   status a handler documents itself keeps its own description.
//!
//! * **One `$ref` per `allOf`.** poem-openapi documents a described (or `#[oai(nullable)]`)
//!   `$ref` as `allOf: [{$ref}, {description}]` (or `{nullable: true}`); such annotation-only
//!   members make generators (openapi-python-client) refuse the schema ("cannot take allOf a
//!   non-object"), so their keys move onto the schema that holds the `allOf`.
//! * **A named type beside `*/*`.** A body of any type is also listed as
//!   `application/octet-stream`, which generators can send (they skip a wildcard-only body).
//!
//! Everything here is derived from the generated document, so the committed document stays what
//! the code generates.

use serde_json::{Map, Value, json};

/// The component every error reply uses (`super::ErrorBody`).
const ERROR_SCHEMA: &str = "#/components/schemas/ErrorBody";
/// The content type of every JSON reply, errors included.
const JSON: &str = "application/json; charset=utf-8";

/// Routes that answer without a token.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// The finished document, pretty-printed, as committed under `openapi/openapi.json`.
pub fn complete(generated: &str) -> String {
    let mut doc: Value = serde_json::from_str(generated).expect("poem-openapi emits JSON");
    lift_annotation_members(&mut doc);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for schema in schemas.values_mut() {
            nullable_optionals(schema);
        }
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                if method == "post" && super::idempotency::SUBMIT_ROUTES.contains(&path.as_str()) {
                    add_idempotency_key(operation);
                }
                add_common_responses(path, operation);
                name_octet_stream(operation);
            }
        }
    }
    let mut s = serde_json::to_string_pretty(&doc).expect("a JSON value serialises");
    s.push('\n');
    s
}

/// Keys that only annotate a schema; an `allOf` member made of nothing else adds no constraint.
const ANNOTATIONS: [&str; 8] = [
    "description",
    "title",
    "nullable",
    "default",
    "example",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Lifts annotation-only members of every `allOf` in the document (poem-openapi's
/// `{description}` and, for `#[oai(nullable)]`, `{nullable: true}`) onto the schema holding the
/// `allOf`, and removes them.
fn lift_annotation_members(value: &mut Value) {
    match value {
        Value::Object(obj) => {
            let mut lifted = Vec::new();
            if let Some(Value::Array(members)) = obj.get_mut("allOf") {
                let annotation_only = |m: &Value| {
                    m.as_object()
                        .is_some_and(|o| o.keys().all(|k| ANNOTATIONS.contains(&k.as_str())))
                };
                if members.iter().any(|m| !annotation_only(m)) {
                    for m in members.iter().filter(|m| annotation_only(m)) {
                        lifted.extend(
                            m.as_object()
                                .into_iter()
                                .flatten()
                                .map(|(k, v)| (k.clone(), v.clone())),
                        );
                    }
                    members.retain(|m| !annotation_only(m));
                }
            }
            for (k, v) in lifted {
                obj.entry(k).or_insert(v);
            }
            obj.values_mut().for_each(lift_annotation_members);
        }
        Value::Array(items) => items.iter_mut().for_each(lift_annotation_members),
        _ => {}
    }
}

/// Marks every property an object schema does not require as nullable, in this schema and in
/// the inline schemas it contains.
fn nullable_optionals(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let required: Vec<String> = obj
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, prop) in props.iter_mut() {
            nullable_optionals(prop);
            if !required.contains(name) {
                make_nullable(prop);
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = obj.get_mut(key) {
            nullable_optionals(inner);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = obj.get_mut(key).and_then(Value::as_array_mut) {
            list.iter_mut().for_each(nullable_optionals);
        }
    }
}

fn make_nullable(prop: &mut Value) {
    let Some(obj) = prop.as_object_mut() else {
        return;
    };
    if let Some(reference) = obj.remove("$ref") {
        // OpenAPI 3.0 ignores every sibling of `$ref`; `allOf` carries it instead.
        obj.insert("allOf".into(), json!([{ "$ref": reference }]));
    }
    obj.insert("nullable".into(), Value::Bool(true));
}

/// A body of any type (`*/*`, the model routes) is also listed as `application/octet-stream`:
/// generators (openapi-python-client) skip an operation whose only body type is a wildcard.
fn name_octet_stream(operation: &mut Value) {
    let Some(content) = operation
        .pointer_mut("/requestBody/content")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if content.len() == 1
        && let Some(any) = content.get("*/*").cloned()
    {
        content.insert("application/octet-stream".into(), any);
    }
}

/// The `Idempotency-Key` header of a submit route (`super::idempotency`), and its 409.
fn add_idempotency_key(operation: &mut Value) {
    let Some(op) = operation.as_object_mut() else {
        return;
    };
    if let Some(params) = op
        .entry("parameters")
        .or_insert_with(|| json!([]))
        .as_array_mut()
    {
        params.push(json!({
            "name": super::idempotency::HEADER,
            "in": "header",
            "required": false,
            "description": "A key the client chooses for this submission (e.g. a UUID). The same \
                key with the same request, within the retention (24 h by default), returns the \
                first reply (same status, same run) instead of starting another run; with \
                another request it is a 409.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        }));
    }
    if let Some(responses) = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        responses.entry("409").or_insert_with(|| {
            json!({
                "description": "The Idempotency-Key was used with another request, or its first \
                    request has not been answered yet.",
                "content": { JSON: { "schema": { "$ref": ERROR_SCHEMA } } },
            })
        });
    }
}

/// What an operation has that decides which common statuses can reach it.
struct Shape {
    open: bool,
    has_input: bool,
    has_body: bool,
    has_json_body: bool,
    names_connection: bool,
}

fn shape(path: &str, operation: &Value) -> Shape {
    let params = operation
        .get("parameters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let body_types: Vec<String> = operation
        .pointer("/requestBody/content")
        .and_then(Value::as_object)
        .map(|c| c.keys().cloned().collect())
        .unwrap_or_default();
    Shape {
        open: OPEN_PATHS.contains(&path),
        has_input: !params.is_empty() || !body_types.is_empty(),
        has_body: !body_types.is_empty(),
        has_json_body: body_types.iter().any(|t| t.starts_with("application/json")),
        names_connection: params
            .iter()
            .any(|p| p["name"] == "adapter_instance" && p["in"] == "query"),
    }
}

/// The statuses answered around the handlers, each with when it applies.
fn common_statuses(s: &Shape) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if s.has_input {
        out.push((
            "400",
            "The request is malformed: a path or query parameter or the body cannot be parsed, \
             or a JSON body gives a key twice.",
        ));
    }
    if !s.open {
        out.push((
            "401",
            "Tokens are configured and the request carries no valid token.",
        ));
        out.push((
            "403",
            "The token's role may not do this, or the Referer is not an allowed Essedum backend.",
        ));
    }
    if s.names_connection {
        out.push(("404", "No such resource, or no such Essedum connection."));
    }
    if s.has_body {
        out.push(("411", "The body was sent without a Content-Length."));
        out.push(("413", "The body is larger than the service accepts."));
        // Also for a body of any type: poem refuses a body without a Content-Type.
        out.push((
            "415",
            "The body has no Content-Type, or one this operation does not accept.",
        ));
    }
    if s.has_json_body {
        out.push((
            "422",
            "A string in the body holds a NUL character, or a key holds a control character.",
        ));
    }
    out.push(("500", "The service failed; details are in its log."));
    if s.names_connection {
        out.push((
            "502",
            "The Essedum backend gave an unusable answer for the connection.",
        ));
    }
    out.push((
        "503",
        "The request took too long, or a dependency (the store, the Essedum backend) is unavailable.",
    ));
    out
}

fn add_common_responses(path: &str, operation: &mut Value) {
    let s = shape(path, operation);
    let Some(op) = operation.as_object_mut() else {
        return;
    };
    let responses = op
        .entry("responses")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(responses) = responses.as_object_mut() else {
        return;
    };
    for (status, description) in common_statuses(&s) {
        responses.entry(status).or_insert_with(|| {
            json!({
                "description": description,
                "content": { JSON: { "schema": { "$ref": ERROR_SCHEMA } } },
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_properties_become_nullable_and_refs_are_wrapped() {
        let doc = json!({
            "openapi": "3.0.0",
            "paths": {},
            "components": {"schemas": {"S": {
                "type": "object",
                "required": ["a"],
                "properties": {
                    "a": {"type": "string"},
                    "b": {"type": "string"},
                    "c": {"$ref": "#/components/schemas/E"},
                    "d": {"allOf": [{"$ref": "#/components/schemas/E"}, {"description": "x"}],
                          "description": "x"},
                    "e": {"allOf": [{"$ref": "#/components/schemas/E"}, {"nullable": true}]}
                }
            }}}
        });
        let out: Value = serde_json::from_str(&complete(&doc.to_string())).unwrap();
        let p = &out["components"]["schemas"]["S"]["properties"];
        assert_eq!(p["a"], json!({"type": "string"}));
        assert_eq!(p["b"], json!({"type": "string", "nullable": true}));
        assert_eq!(
            p["c"],
            json!({"allOf": [{"$ref": "#/components/schemas/E"}], "nullable": true})
        );
        assert_eq!(
            p["d"],
            json!({"allOf": [{"$ref": "#/components/schemas/E"}], "description": "x", "nullable": true})
        );
        assert_eq!(
            p["e"],
            json!({"allOf": [{"$ref": "#/components/schemas/E"}], "nullable": true})
        );
    }

    #[test]
    fn operations_get_the_statuses_that_can_reach_them_and_keep_their_own() {
        let doc = json!({
            "openapi": "3.0.0",
            "paths": {
                "/healthz": {"get": {"responses": {"200": {"description": "ok"}}}},
                "/x": {"post": {
                    "parameters": [{"name": "adapter_instance", "in": "query"}],
                    "requestBody": {"content": {"application/json; charset=utf-8": {}}},
                    "responses": {"404": {"description": "mine"}}
                }},
                "/raw": {"post": {"requestBody": {"content": {"*/*": {}}}, "responses": {}}}
            }
        });
        let out: Value = serde_json::from_str(&complete(&doc.to_string())).unwrap();
        let codes = |p: &str, m: &str| -> Vec<String> {
            out["paths"][p][m]["responses"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(codes("/healthz", "get"), ["200", "500", "503"]);
        assert_eq!(
            codes("/x", "post"),
            [
                "400", "401", "403", "404", "411", "413", "415", "422", "500", "502", "503"
            ]
        );
        assert_eq!(
            out["paths"]["/x"]["post"]["responses"]["404"]["description"],
            "mine"
        );
        assert_eq!(
            out["paths"]["/x"]["post"]["responses"]["415"]["content"][JSON]["schema"]["$ref"],
            ERROR_SCHEMA
        );
        assert!(codes("/raw", "post").contains(&"415".to_string()));
        let raw_types: Vec<&String> = out["paths"]["/raw"]["post"]["requestBody"]["content"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(raw_types, ["*/*", "application/octet-stream"]);
    }
}
