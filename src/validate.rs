//! Parsing untrusted JSON bodies into domain values, with errors that name the field.
//!
//! Parse, don't validate: a handler turns the body into a domain type here, once; past this
//! point a value is known to be valid. Unknown fields and a body that is not an object are
//! `400`; a missing or invalid value is `422`, always naming the field.
//!
//! The Essedum backend's routes are read in [`Mode::Essedum`] instead: the backend sends keys we
//! do not use and `""` for blank optional values (ESSEDUM-CONTRACT.md), so there unknown keys are
//! ignored and an empty string counts as absent. A known key with a wrong value is still a 422
//! naming it, in either mode.

pub mod raw;

use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The request's shape is wrong (not an object, unknown field): HTTP 400.
    #[error("{message}")]
    Malformed {
        field: Option<String>,
        message: String,
    },
    /// A field is missing or its value is invalid: HTTP 422.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl InputError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        InputError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
    pub fn field(&self) -> Option<&str> {
        match self {
            InputError::Malformed { field, .. } => field.as_deref(),
            InputError::Invalid { field, .. } => Some(field),
        }
    }
}

pub type InputResult<T> = Result<T, InputError>;

/// How a body's keys are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Our own API: an unknown key is a 400 naming it; `""` is a value (and usually invalid).
    Strict,
    /// A route the Essedum backend calls: unknown keys are ignored and `""` means absent.
    Essedum,
}

/// The fields of one JSON object, taken one by one; `finish` rejects whatever is left.
pub struct Fields {
    map: Map<String, Value>,
    /// `Outer.` for a nested object, so that errors name the full path.
    prefix: String,
    mode: Mode,
}

impl Fields {
    /// Checks the body is an object whose keys are all in `allowed`.
    pub fn new(body: Value, allowed: &[&str]) -> InputResult<Fields> {
        Self::at(body, allowed, String::new(), Mode::Strict)
    }

    /// A body the Essedum backend sends: keys outside `known` are dropped, `""` is absent.
    pub fn essedum(body: Value, known: &[&str]) -> InputResult<Fields> {
        Self::at(body, known, String::new(), Mode::Essedum)
    }

    /// Reads `body` in the given mode.
    pub fn with_mode(body: Value, allowed: &[&str], mode: Mode) -> InputResult<Fields> {
        Self::at(body, allowed, String::new(), mode)
    }

    /// The mode this object (and every object nested in it) is read in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn at(body: Value, allowed: &[&str], prefix: String, mode: Mode) -> InputResult<Fields> {
        let Value::Object(mut map) = body else {
            return Err(InputError::Malformed {
                field: None,
                message: "the request body must be a JSON object".into(),
            });
        };
        if mode == Mode::Essedum {
            map.retain(|k, v| {
                allowed.contains(&k.as_str()) && !matches!(v, Value::String(s) if s.is_empty())
            });
        }
        let mut unknown: Vec<&String> = map
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect();
        unknown.sort();
        if let Some(first) = unknown.first() {
            return Err(InputError::Malformed {
                field: Some(format!("{prefix}{first}")),
                message: format!(
                    "unknown field {first:?}; allowed fields are: {}",
                    allowed.join(", ")
                ),
            });
        }
        Ok(Fields { map, prefix, mode })
    }

    fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A required nested object, read with its own allowed fields; errors name `Outer.Inner`.
    pub fn object(&mut self, name: &str, allowed: &[&str]) -> InputResult<Fields> {
        self.opt_object(name, allowed)?
            .ok_or_else(|| InputError::invalid(&self.path(name), "is required"))
    }

    /// An optional nested object.
    pub fn opt_object(&mut self, name: &str, allowed: &[&str]) -> InputResult<Option<Fields>> {
        match self.take(name) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => {
                Fields::at(v, allowed, format!("{}.", self.path(name)), self.mode).map(Some)
            }
            Some(other) => Err(InputError::invalid(
                &self.path(name),
                format!("must be an object, not {}", type_name(&other)),
            )),
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        match self.map.remove(name) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// A required array of `min..=max` elements.
    pub fn array(&mut self, name: &str, min: usize, max: usize) -> InputResult<Vec<Value>> {
        match self.take(name) {
            None => Err(InputError::invalid(&self.path(name), "is required")),
            Some(Value::Array(items)) if (min..=max).contains(&items.len()) => Ok(items),
            Some(Value::Array(_)) => Err(InputError::invalid(
                &self.path(name),
                format!("must have {min} to {max} elements"),
            )),
            Some(other) => Err(InputError::invalid(
                &self.path(name),
                format!("must be an array, not {}", type_name(&other)),
            )),
        }
    }

    /// An array element (or any object) read with its own allowed fields, errors named `prefix…`.
    pub fn at_path(body: Value, allowed: &[&str], prefix: &str) -> InputResult<Fields> {
        Self::at_path_mode(body, allowed, prefix, Mode::Strict)
    }

    /// [`Fields::at_path`] in a chosen mode (pass the parent's [`Fields::mode`]).
    pub fn at_path_mode(
        body: Value,
        allowed: &[&str],
        prefix: &str,
        mode: Mode,
    ) -> InputResult<Fields> {
        if !body.is_object() {
            return Err(InputError::invalid(
                prefix.trim_end_matches('.'),
                format!("must be an object, not {}", type_name(&body)),
            ));
        }
        Fields::at(body, allowed, prefix.to_string(), mode)
    }

    /// An optional number within `min..=max`.
    pub fn opt_number(&mut self, name: &str, min: f64, max: f64) -> InputResult<Option<f64>> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if (min..=max).contains(&x) => Ok(Some(x)),
                _ => Err(InputError::invalid(
                    &self.path(name),
                    format!("must be a number from {min} to {max}"),
                )),
            },
            Some(other) => Err(InputError::invalid(
                &self.path(name),
                format!("must be a number, not {}", type_name(&other)),
            )),
        }
    }

    /// Takes a value as it is (null counts as absent), for types this module has no reader for.
    pub fn take_value(&mut self, name: &str) -> Option<Value> {
        self.take(name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.map.get(name).is_some_and(|v| !v.is_null())
    }

    pub fn opt_str(&mut self, name: &str) -> InputResult<Option<String>> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(InputError::invalid(
                &self.path(name),
                format!("must be a string, not {}", type_name(&other)),
            )),
        }
    }

    pub fn str(&mut self, name: &str) -> InputResult<String> {
        let s = self
            .opt_str(name)?
            .ok_or_else(|| InputError::invalid(&self.path(name), "is required"))?;
        if s.trim().is_empty() {
            return Err(InputError::invalid(&self.path(name), "must not be empty"));
        }
        Ok(s)
    }

    /// An optional integer within `min..=max`.
    pub fn opt_int(&mut self, name: &str, min: i64, max: i64) -> InputResult<Option<i64>> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) if (min..=max).contains(&i) => Ok(Some(i)),
                _ => Err(InputError::invalid(
                    &self.path(name),
                    format!("must be an integer from {min} to {max}"),
                )),
            },
            Some(other) => Err(InputError::invalid(
                &self.path(name),
                format!("must be an integer, not {}", type_name(&other)),
            )),
        }
    }

    /// An optional object of string values (numbers and booleans are accepted and turned into
    /// their JSON text, as SageMaker hyperparameters are strings).
    pub fn opt_string_map(&mut self, name: &str) -> InputResult<Option<BTreeMap<String, String>>> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Object(m)) => {
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    let s = match v {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => {
                            return Err(InputError::invalid(
                                &format!("{}.{k}", self.path(name)),
                                format!("must be a string, not {}", type_name(&other)),
                            ));
                        }
                    };
                    out.insert(k, s);
                }
                Ok(Some(out))
            }
            Some(other) => Err(InputError::invalid(
                &self.path(name),
                format!("must be an object, not {}", type_name(&other)),
            )),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An S3 bucket name by S3's rules (3–63 of lowercase letters, digits, dots and hyphens,
/// starting and ending with a letter or digit, not an IP address).
pub fn bucket_name(field: &str, s: &str) -> InputResult<String> {
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let looks_like_ip = s.split('.').count() == 4 && s.split('.').all(|p| p.parse::<u8>().is_ok());
    if !(3..=63).contains(&s.len())
        || !ok_chars
        || !ends_ok(s.bytes().next())
        || !ends_ok(s.bytes().last())
        || s.contains("..")
        || looks_like_ip
    {
        return Err(InputError::invalid(
            field,
            "must be a valid S3 bucket name (3-63 lowercase letters, digits, '.' or '-')",
        ));
    }
    Ok(s.to_string())
}

/// An S3 key prefix: no leading '/', no '..' segment, no control characters; trailing '/' dropped.
pub fn key_prefix(field: &str, s: &str) -> InputResult<String> {
    let p = s.trim_end_matches('/');
    if p.starts_with('/')
        || p.len() > 512
        || p.chars().any(|c| c.is_control())
        || p.split('/').any(|seg| seg == ".." || seg == ".")
        || p.contains("//")
    {
        return Err(InputError::invalid(
            field,
            "must be a relative S3 key prefix (no leading '/', no '.' or '..' segments, at most 512 characters)",
        ));
    }
    Ok(p.to_string())
}

/// `s3://bucket/key...`; returns the URI unchanged.
pub fn s3_uri(field: &str, s: &str) -> InputResult<String> {
    let rest = s
        .strip_prefix("s3://")
        .ok_or_else(|| InputError::invalid(field, "must be an s3:// URI"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    bucket_name(field, bucket)?;
    if key.chars().any(|c| c.is_control()) || key.len() > 1024 {
        return Err(InputError::invalid(field, "has an invalid object key"));
    }
    Ok(s.to_string())
}

/// An IAM role ARN: `arn:<partition>:iam::<12-digit account>:role/<path and name>`.
pub fn role_arn(field: &str, s: &str) -> InputResult<String> {
    let bad = || {
        InputError::invalid(
            field,
            "must be an IAM role ARN like arn:aws:iam::123456789012:role/Name",
        )
    };
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "iam" || !parts[3].is_empty() {
        return Err(bad());
    }
    let partition_ok = parts[1] == "aws" || parts[1].starts_with("aws-");
    let account_ok = parts[4].len() == 12 && parts[4].bytes().all(|b| b.is_ascii_digit());
    let name = parts[5].strip_prefix("role/").ok_or_else(bad)?;
    let name_ok = !name.is_empty()
        && s.len() <= 2048
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_/".contains(c));
    if !(partition_ok && account_ok && name_ok) {
        return Err(bad());
    }
    Ok(s.to_string())
}

/// A short printable token without whitespace (container images, instance types, content types).
pub fn token(field: &str, s: &str, max: usize) -> InputResult<String> {
    if s.is_empty() || s.len() > max || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InputError::invalid(
            field,
            format!("must be 1 to {max} characters without spaces"),
        ));
    }
    Ok(s.to_string())
}

/// A SageMaker resource name: 1 to 63 letters, digits and single hyphens inside.
pub fn sagemaker_name(field: &str, s: &str) -> InputResult<String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok {
        return Err(InputError::invalid(
            field,
            "must be 1-63 letters, digits and hyphens, starting and ending with a letter or digit",
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_field_is_malformed_and_named() {
        let err = Fields::new(json!({"a": 1, "zzz": 2}), &["a"])
            .err()
            .unwrap();
        assert!(matches!(err, InputError::Malformed { .. }));
        assert_eq!(err.field(), Some("zzz"));
    }

    #[test]
    fn essedum_mode_ignores_unknown_keys_and_blank_strings_but_not_bad_values() {
        let mut f = Fields::essedum(
            json!({"a": "", "b": "x", "ExecutionRoleArn": "r", "n": {"c": "", "d": 1, "e": 2}}),
            &["a", "b", "n"],
        )
        .unwrap();
        assert_eq!(f.opt_str("a").unwrap(), None);
        assert_eq!(f.str("b").unwrap(), "x");
        let mut n = f.object("n", &["c", "d"]).unwrap();
        assert_eq!(n.mode(), Mode::Essedum);
        assert_eq!(n.opt_str("c").unwrap(), None);
        let err = n.opt_str("d").err().unwrap();
        assert_eq!(err.field(), Some("n.d"));
        let err = Fields::essedum(json!({"a": ""}), &["a"])
            .unwrap()
            .str("a")
            .err()
            .unwrap();
        assert!(matches!(err, InputError::Invalid { .. }));
    }

    #[test]
    fn non_object_body_is_malformed() {
        assert!(matches!(
            Fields::new(json!([1]), &[]),
            Err(InputError::Malformed { field: None, .. })
        ));
    }

    #[test]
    fn wrong_types_and_ranges_are_invalid_and_named() {
        let mut f = Fields::new(
            json!({"n": "3", "m": 0, "s": 5, "h": {"x": [1]}}),
            &["n", "m", "s", "h"],
        )
        .unwrap();
        assert_eq!(f.opt_int("n", 1, 5).unwrap_err().field(), Some("n"));
        assert_eq!(f.opt_int("m", 1, 5).unwrap_err().field(), Some("m"));
        assert_eq!(f.str("s").unwrap_err().field(), Some("s"));
        assert_eq!(f.opt_string_map("h").unwrap_err().field(), Some("h.x"));
        assert_eq!(f.str("missing").unwrap_err().field(), Some("missing"));
    }

    #[test]
    fn s3_names_follow_s3_rules() {
        assert!(bucket_name("b", "my-bucket.data").is_ok());
        for bad in [
            "ab",
            "Upper",
            "-start",
            "end-",
            "a..b",
            "192.168.1.1",
            "has_underscore",
        ] {
            assert!(bucket_name("b", bad).is_err(), "{bad}");
        }
        assert_eq!(key_prefix("p", "a/b/").unwrap(), "a/b");
        for bad in ["/abs", "a/../b", "a//b", "a/./b"] {
            assert!(key_prefix("p", bad).is_err(), "{bad}");
        }
        assert!(s3_uri("i", "s3://bucket/data/train.csv").is_ok());
        assert!(s3_uri("i", "https://bucket/x").is_err());
    }

    #[test]
    fn role_arns_are_checked() {
        assert!(role_arn("r", "arn:aws:iam::123456789012:role/service-role/SageMaker").is_ok());
        assert!(role_arn("r", "arn:aws-cn:iam::123456789012:role/x").is_ok());
        for bad in [
            "arn:aws:iam::12345:role/x",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::123456789012:role/",
            "role/x",
        ] {
            assert!(role_arn("r", bad).is_err(), "{bad}");
        }
    }
}
