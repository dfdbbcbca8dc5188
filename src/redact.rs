//! Log redaction: no credential reaches the log, whatever the level, the AWS SDK's own events
//! included (at `trace` the SDK prints its runtime components with the resolved credentials,
//! sigv4 prints the canonical request with `x-amz-security-token`, hyper prints headers).
//!
//! Every formatted log line passes through [`redact`] on its way to stderr ([`Stderr`]). It
//! masks AWS access key ids (`AKIA…`, `ASIA…`), the value after a credential-like name
//! (`Authorization`, `x-amz-security-token`, `secretKey`, `session_token`, `Signature=`,
//! `Credential=`, `password`, `access-token`, `Bearer`), long base64-like runs of mixed case and
//! digits (secret access keys, session tokens), and every value registered with [`register`]
//! (the configured static tokens). It errs on the side of masking: a log line that loses an
//! innocent long identifier is cheaper than one that leaks a key.

use regex::Regex;
use std::borrow::Cow;
use std::io::Write;
use std::sync::{LazyLock, RwLock};

const MASK: &str = "[redacted]";

/// Exact values to mask (static tokens of the configuration); shorter ones are ignored, they
/// would mask ordinary words.
static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Masks `secret` wherever it appears in the log from now on.
pub fn register(secret: &str) {
    if secret.len() >= 8 {
        let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
        if !known.iter().any(|k| k == secret) {
            known.push(secret.to_string());
        }
    }
}

static ACCESS_KEY_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA)[A-Z0-9]{8,}").expect("valid regex")
});

static NAMED_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(authorization|x-amz-security-token|x-amz-signature|security[_-]?token|session[_-]?token|secret[_-]?(?:access[_-]?)?key|access[_-]?token|api[_-]?key|password|signature|credential)(\\?["']?\s*[:=]\s*(?:Some\()?\\?["']?)([^\s"'\\,;&)}\]]+)"#,
    )
    .expect("valid regex")
});

static SCHEME_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b(bearer|basic|AWS4-HMAC-SHA256)(\s+)([^\s"',;]+)"#).expect("valid regex")
});

static LONG_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z0-9/+=]{40,}").expect("valid regex"));

/// `line` with every credential masked.
pub fn redact(line: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(line);
    {
        let known = KNOWN.read().unwrap_or_else(|e| e.into_inner());
        for k in known.iter() {
            if out.contains(k.as_str()) {
                out = Cow::Owned(out.replace(k.as_str(), MASK));
            }
        }
    }
    let replace = |out: Cow<'_, str>, re: &Regex, with: &str| -> String {
        re.replace_all(&out, with).into_owned()
    };
    if SCHEME_VALUE.is_match(&out) {
        out = Cow::Owned(replace(out, &SCHEME_VALUE, &format!("${{1}}${{2}}{MASK}")));
    }
    if NAMED_VALUE.is_match(&out) {
        out = Cow::Owned(replace(out, &NAMED_VALUE, &format!("${{1}}${{2}}{MASK}")));
    }
    if ACCESS_KEY_ID.is_match(&out) {
        out = Cow::Owned(replace(out, &ACCESS_KEY_ID, &format!("${{1}}{MASK}")));
    }
    if LONG_RUN.is_match(&out) {
        let masked = LONG_RUN.replace_all(&out, |c: &regex::Captures<'_>| {
            let run = &c[0];
            let mixed = run.bytes().any(|b| b.is_ascii_uppercase())
                && run.bytes().any(|b| b.is_ascii_lowercase())
                && run.bytes().any(|b| b.is_ascii_digit());
            if mixed {
                MASK.to_string()
            } else {
                run.to_string()
            }
        });
        out = Cow::Owned(masked.into_owned());
    }
    out
}

/// Standard error, through [`redact`]: the writer of every log line of the service.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Stderr;
    fn make_writer(&'a self) -> Stderr {
        Stderr
    }
}

impl Write for Stderr {
    /// The formatter writes one whole event per call, so a credential is never split across two.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_key_ids_and_signing_headers_are_masked() {
        let line = r#"headers: {"authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261130/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0123abcd", "x-amz-security-token": "FwoGZXIvYXdzEBYaDExample"}"#;
        let out = redact(line);
        for secret in [
            "AKIAIOSFODNN7EXAMPLE",
            "0123abcd",
            "FwoGZXIvYXdzEBYaDExample",
        ] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(out.contains("SignedHeaders=host"), "{out}");
    }

    #[test]
    fn secret_keys_and_session_tokens_are_masked_by_name_and_by_shape() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        for line in [
            format!(r#"{{"secretKey":"{secret}"}}"#),
            format!("secret_access_key: Some({secret})"),
            format!("value {secret} in free text"),
            "x-amz-security-token:IQoJb3JpZ2luX2VjEXAMPLE".to_string(),
            "Authorization: Bearer abc.def.ghi".to_string(),
            r#"{"detail":"lookup said {\"secretKey\":\"IQoJb3.abc\"}"}"#.to_string(),
        ] {
            let out = redact(&line);
            assert!(out.contains(MASK), "{out}");
            assert!(
                !out.contains(secret) && !out.contains("IQoJb3") && !out.contains("abc.def"),
                "{out}"
            );
            if line.starts_with('{') {
                let _: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
            }
        }
    }

    #[test]
    fn registered_values_are_masked_and_ordinary_lines_are_untouched() {
        register("my-static-token-1234");
        assert_eq!(
            redact("token my-static-token-1234 sent"),
            "token [redacted] sent"
        );
        let ordinary = "run 01a22e0b-25fd-727a-ba01-47c3c07a5887 moved Polling -> Done (sha 3f2a9c0e1b7d4a5f6e8c9b0a1d2e3f4a5b6c7d8e)";
        assert_eq!(redact(ordinary), ordinary);
    }
}
