//! The backend's answer: `{"connection": {"name": …, "connectionDetails": "<JSON string>"}}`
//! (`sv/icip-lib-iai/.../rest/ICIPServicesController.java`), read without ever quoting a secret.

use serde_json::Value;

use super::{ConnectionDetails, ConnectionError};
use crate::secrets::Secret;

/// Describes a JSON syntax problem without quoting any of the input.
fn json_problem(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// Parses the backend's answer
/// `{"connection": {"name": "...", "connectionDetails": "<JSON string>"}}`.
/// `connectionDetails` may also be an object.
pub fn parse_answer(body: &[u8]) -> Result<ConnectionDetails, ConnectionError> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| {
        ConnectionError::BadAnswer(format!("answer is not JSON ({})", json_problem(&e)))
    })?;
    let Value::Object(answer) = answer else {
        return Err(ConnectionError::BadAnswer(
            "answer is not a JSON object".into(),
        ));
    };
    let connection = match answer.get("connection") {
        None | Some(Value::Null) => {
            return Err(ConnectionError::NotFound("answer has no connection".into()));
        }
        Some(Value::Object(c)) if c.is_empty() => {
            return Err(ConnectionError::NotFound(
                "answer has an empty connection".into(),
            ));
        }
        Some(Value::Object(c)) => c,
        Some(_) => {
            return Err(ConnectionError::BadAnswer(
                "`connection` is not an object".into(),
            ));
        }
    };
    let name = optional_string(connection, "name", "connection.name")?;
    let details = match connection.get("connectionDetails") {
        None | Some(Value::Null) => {
            return Err(ConnectionError::BadAnswer(
                "connection has no `connectionDetails`".into(),
            ));
        }
        Some(Value::String(text)) => serde_json::from_str::<Value>(text).map_err(|e| {
            ConnectionError::BadAnswer(format!(
                "`connectionDetails` is not JSON ({})",
                json_problem(&e)
            ))
        })?,
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            return Err(ConnectionError::BadAnswer(
                "`connectionDetails` is neither a JSON string nor an object".into(),
            ));
        }
    };
    let Value::Object(details) = details else {
        return Err(ConnectionError::BadAnswer(
            "`connectionDetails` does not hold a JSON object".into(),
        ));
    };
    let access_key = required_string(&details, "accessKey")?;
    let secret_key = Secret::new(required_string(&details, "secretKey")?);
    let session_token = optional_string(&details, "sessionToken", "sessionToken")?.map(Secret::new);
    let region = optional_string(&details, "region", "region")?;
    let bucket = optional_string(&details, "bucketName", "bucketName")?;
    Ok(ConnectionDetails {
        access_key,
        secret_key,
        session_token,
        region,
        bucket,
        name,
    })
}

fn required_string(
    obj: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<String, ConnectionError> {
    optional_string(obj, field, field)?
        .ok_or_else(|| ConnectionError::BadAnswer(format!("connection details lack `{field}`")))
}

/// A string field; absent, null or blank is `None`; another type is an error naming `shown`.
fn optional_string(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    shown: &str,
) -> Result<Option<String>, ConnectionError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(ConnectionError::BadAnswer(format!(
            "`{shown}` is not a string"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(details: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "connection": {"name": "aws-conn", "connectionDetails": details.to_string()}
        }))
        .unwrap()
    }

    #[test]
    fn parses_full_answer() {
        let d = parse_answer(&answer(serde_json::json!({
            "accessKey": "AKIAEXAMPLE",
            "secretKey": "SECRETVALUE",
            "sessionToken": "TOKENVALUE",
            "region": "eu-west-1",
            "bucketName": "my-bucket",
            "other": 42
        })))
        .unwrap();
        assert_eq!(d.access_key, "AKIAEXAMPLE");
        assert_eq!(d.secret_key.expose(), "SECRETVALUE");
        assert_eq!(d.session_token.as_ref().unwrap().expose(), "TOKENVALUE");
        assert_eq!(d.region.as_deref(), Some("eu-west-1"));
        assert_eq!(d.bucket.as_deref(), Some("my-bucket"));
        assert_eq!(d.name.as_deref(), Some("aws-conn"));
        let shown = format!("{d:?}");
        assert!(
            !shown.contains("SECRETVALUE") && !shown.contains("TOKENVALUE"),
            "{shown}"
        );
    }

    #[test]
    fn parses_minimal_answer_and_object_details() {
        let d = parse_answer(&answer(
            serde_json::json!({"accessKey": "A", "secretKey": "S"}),
        ))
        .unwrap();
        assert_eq!((d.region, d.bucket, d.session_token), (None, None, None));
        let body = serde_json::json!({"connection": {"connectionDetails": {"accessKey": "A", "secretKey": "S", "sessionToken": ""}}});
        let d = parse_answer(body.to_string().as_bytes()).unwrap();
        assert_eq!(d.name, None);
        assert_eq!(d.session_token, None);
    }

    #[test]
    fn missing_fields_named_without_values() {
        let err =
            parse_answer(&answer(serde_json::json!({"secretKey": "SECRETVALUE"}))).unwrap_err();
        assert!(
            matches!(&err, ConnectionError::BadAnswer(m) if m.contains("accessKey")),
            "{err}"
        );
        assert!(!err.to_string().contains("SECRETVALUE"));
        let err = parse_answer(&answer(
            serde_json::json!({"accessKey": "AKIAX", "secretKey": ""}),
        ))
        .unwrap_err();
        assert!(
            matches!(&err, ConnectionError::BadAnswer(m) if m.contains("secretKey")),
            "{err}"
        );
        assert!(!err.to_string().contains("AKIAX"));
        let err = parse_answer(&answer(
            serde_json::json!({"accessKey": "A", "secretKey": 12345678}),
        ))
        .unwrap_err();
        assert!(
            matches!(&err, ConnectionError::BadAnswer(m) if m.contains("secretKey")),
            "{err}"
        );
        assert!(!err.to_string().contains("12345678"));
        assert!(!err.retryable());
    }

    #[test]
    fn malformed_answers() {
        // Invalid inner JSON: the message must not quote it.
        let body = serde_json::json!({"connection": {"connectionDetails": "{\"secretKey\": \"SECRETVALUE\" oops"}});
        let err = parse_answer(body.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, ConnectionError::BadAnswer(_)), "{err}");
        assert!(!err.to_string().contains("SECRETVALUE"), "{err}");
        let err = parse_answer(b"<html>SECRETVALUE</html>").unwrap_err();
        assert!(matches!(err, ConnectionError::BadAnswer(_)));
        assert!(!err.to_string().contains("SECRETVALUE"), "{err}");
        for body in [
            r#"[]"#,
            r#"{"connection": "x"}"#,
            r#"{"connection": {"name": "n"}}"#,
            r#"{"connection": {"connectionDetails": "[1]"}}"#,
            r#"{"connection": {"connectionDetails": 5}}"#,
        ] {
            assert!(
                matches!(
                    parse_answer(body.as_bytes()),
                    Err(ConnectionError::BadAnswer(_))
                ),
                "{body}"
            );
        }
        for body in [r#"{}"#, r#"{"connection": null}"#, r#"{"connection": {}}"#] {
            assert!(
                matches!(
                    parse_answer(body.as_bytes()),
                    Err(ConnectionError::NotFound(_))
                ),
                "{body}"
            );
        }
    }
}
