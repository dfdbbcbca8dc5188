//! Checks on a JSON body's text, before anything parses it into a `serde_json::Value` (which
//! keeps the last of two equal keys and hides which one the client meant).
//!
//! Refused, naming the field by its path (`HyperParameters.lr`, `Containers[0].Image`):
//! - an object with the same key twice, at any depth (400): AWS would see one of them, the
//!   client meant one of them, and nobody can tell which;
//! - a NUL byte in any string, key or value (422): AWS refuses it later, after the run was
//!   accepted (hyperparameters, CSV text, names);
//! - any other C0 control character or DEL in an object key (422): keys are names
//!   (hyperparameters, environment variables, tags). Tab, CR and LF stay legitimate in string
//!   values (CSV text, scripts, commands).
//!
//! Text that is not JSON at all passes: the route's own parser reports it as before.

use super::{InputError, InputResult};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

/// Checks `body` (a JSON text) for duplicate keys and control characters; see the module doc.
pub fn check_json_body(body: &[u8]) -> InputResult<()> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let walk = Walk {
        path: String::new(),
        found: &found,
    };
    if walk.deserialize(&mut de).is_err() {
        // Either our own refusal (recorded in `found`) or text that is not JSON, which the
        // route's parser reports with its usual error.
        return found.into_inner().map_or(Ok(()), Err);
    }
    Ok(())
}

/// One value at `path`; records the first problem in `found` and stops the walk.
struct Walk<'a> {
    path: String,
    found: &'a RefCell<Option<InputError>>,
}

impl Walk<'_> {
    fn refuse<E: serde::de::Error>(&self, e: InputError) -> E {
        let message = e.to_string();
        *self.found.borrow_mut() = Some(e);
        E::custom(message)
    }

    fn field(&self) -> String {
        if self.path.is_empty() {
            "(body)".into()
        } else {
            self.path.clone()
        }
    }

    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

/// A readable form of a key that holds control characters (`"a\u0000b"`).
fn shown(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
        if s.contains('\0') {
            let field = self.field();
            return Err(self.refuse(InputError::invalid(
                &field,
                "holds a NUL character (\\u0000), which AWS refuses",
            )));
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while seq
            .next_element_seed(Walk {
                path: format!("{}[{i}]", self.path),
                found: self.found,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = self.child(&key);
            if key.chars().any(|c| c.is_ascii_control()) {
                return Err(self.refuse(InputError::invalid(
                    &self.child(&shown(&key)),
                    "a key may not hold control characters (NUL, tab, line breaks, ...)",
                )));
            }
            if !seen.insert(key) {
                return Err(self.refuse(InputError::Malformed {
                    message: format!(
                        "{path}: the key is given twice; give each key once (JSON objects with \
                         repeated keys are ambiguous)"
                    ),
                    field: Some(path),
                }));
            }
            map.next_value_seed(Walk {
                path,
                found: self.found,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(body: &str) -> InputError {
        check_json_body(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn a_repeated_key_is_refused_at_any_depth_naming_its_path() {
        let e = refusal(r#"{"RoleArn":"a","RoleArn":"b"}"#);
        assert!(matches!(e, InputError::Malformed { .. }), "{e:?}");
        assert_eq!(e.field(), Some("RoleArn"));
        let e = refusal(r#"{"HyperParameters":{"lr":"1","x":"2","lr":"3"}}"#);
        assert_eq!(e.field(), Some("HyperParameters.lr"));
        let e = refusal(r#"{"Containers":[{"Image":"a"},{"Image":"b","Image":"c"}]}"#);
        assert_eq!(e.field(), Some("Containers[1].Image"));
        // An escaped spelling of the same key is the same key.
        let e = refusal(r#"{"a":1,"\u0061":2}"#);
        assert_eq!(e.field(), Some("a"));
    }

    #[test]
    fn nul_is_refused_in_any_string_and_controls_in_keys() {
        let e = refusal(r#"{"inline_csv":"a,b\n1,\u0000"}"#);
        assert!(matches!(e, InputError::Invalid { .. }), "{e:?}");
        assert_eq!(e.field(), Some("inline_csv"));
        let e = refusal(r#"{"HyperParameters":{"lr":"0.1\u0000"}}"#);
        assert_eq!(e.field(), Some("HyperParameters.lr"));
        let e = refusal(r#"{"HyperParameters":{"l\u0000r":"1"}}"#);
        assert_eq!(e.field(), Some(r#"HyperParameters."l\u0000r""#));
        let e = refusal(r#"{"environment":{"A\nB":"1"}}"#);
        assert_eq!(e.field(), Some(r#"environment."A\nB""#));
        let e = refusal(r#"{"tags":["x\u0000"]}"#);
        assert_eq!(e.field(), Some("tags[0]"));
    }

    #[test]
    fn ordinary_bodies_and_non_json_pass() {
        for ok in [
            r#"{"inline_csv":"a,b\r\n1,\t2\n","command":"python run.py\n","n":[1,2.5,-3,null,true]}"#,
            r#"{"a":{"x":1},"b":{"x":1}}"#,
            r#"[{"k":1},{"k":2}]"#,
            "not json",
            "",
        ] {
            assert_eq!(check_json_body(ok.as_bytes()), Ok(()), "{ok}");
        }
    }
}
