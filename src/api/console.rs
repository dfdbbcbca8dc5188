//! The operator console at `/ui`: a few static files (HTML, CSS, JavaScript modules) compiled into
//! the binary, so that the service needs no other host, CDN or build step to show it.
//!
//! The files are served without authentication: they hold no data. The page itself asks for a
//! token when the operator API answers 401 and sends it with every API call, so the data behind it
//! is guarded exactly as for any other client. Every reply here carries a strict
//! Content-Security-Policy (scripts, styles and connections from this origin only, no inline
//! code, no framing), which is why the page has no inline script or style at all.

use super::error::json_response;
use poem::http::{Method, StatusCode, header};
use poem::{Endpoint, Request, Response};

/// The policy on every console reply.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

/// One embedded file: its name under `/ui/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../assets/console/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("format.js", JS),
    asset!("diagram.js", JS),
    asset!("runs.js", JS),
    asset!("run.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The file a path under `/ui` names: the page itself for `/ui` and `/ui/`.
fn lookup(path: &str) -> Option<&'static Asset> {
    let name = match path.strip_prefix("/ui") {
        Some("" | "/") => "index.html",
        Some(rest) => rest.strip_prefix('/')?,
        None => return None,
    };
    ASSETS.iter().find(|a| a.name == name)
}

fn with_policy(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    r
}

/// Serves `/ui` and the files under it (GET and HEAD only).
pub struct Console;

impl Endpoint for Console {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        // Nested under `/ui` without stripping, so the path is the one the browser asked for.
        let path = req.uri().path();
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "the console's files are read with GET",
                None,
            );
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return Ok(with_policy(r));
        }
        let Some(asset) = lookup(path) else {
            return Ok(with_policy(json_response(
                StatusCode::NOT_FOUND,
                &format!("the console has no file {path}"),
                None,
            )));
        };
        let body = if req.method() == Method::HEAD {
            Vec::new()
        } else {
            asset.body.to_vec()
        };
        Ok(with_policy(
            Response::builder()
                .content_type(asset.content_type)
                .header(header::CONTENT_LENGTH, asset.body.len())
                .body(body),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_found_and_nothing_else() {
        assert_eq!(lookup("/ui").unwrap().name, "index.html");
        assert_eq!(lookup("/ui/").unwrap().name, "index.html");
        assert_eq!(lookup("/ui/app.js").unwrap().content_type, JS);
        assert!(lookup("/ui/../Cargo.toml").is_none());
        assert!(lookup("/ui/nope.js").is_none());
        assert!(lookup("/uix").is_none());
    }

    /// The page must work under its own policy: no inline script, no inline style, nothing
    /// loaded from another origin.
    #[test]
    fn the_embedded_files_have_no_inline_code_and_no_outside_url() {
        let handler = regex::Regex::new(r"\son[a-z]+\s*=").unwrap();
        for a in ASSETS {
            let text = std::str::from_utf8(a.body).unwrap();
            assert!(!text.contains("style="), "{}: inline style", a.name);
            assert!(!text.contains("<style"), "{}: inline style", a.name);
            assert!(!text.contains("javascript:"), "{}: script URL", a.name);
            assert!(!text.contains("eval("), "{}: eval", a.name);
            if a.name.ends_with(".html") {
                for script in text.split("<script").skip(1) {
                    let tag = &script[..script.find('>').unwrap()];
                    assert!(tag.contains("src="), "{}: inline script", a.name);
                }
                assert!(!handler.is_match(text), "{}: inline event handler", a.name);
            }
            for scheme in ["http://", "//cdn", "https://"] {
                let allowed = |at: usize| {
                    // The AWS console links (opened by the operator, never fetched) are the only
                    // outside addresses, written in format.js.
                    a.name == "format.js" && text[at..].starts_with("https://")
                        || a.name == "favicon.svg" && text[at..].starts_with("http://www.w3.org/")
                        || text[at..].starts_with("http://www.w3.org/2000/svg")
                };
                for (at, _) in text.match_indices(scheme) {
                    assert!(allowed(at), "{}: outside address at {at}", a.name);
                }
            }
        }
    }
}
