//! The allow-list of Essedum backends: which base URLs may be asked for connections, and which
//! one a request's `Referer` belongs to (never the raw header).

use url::{Host, Url};

use super::{ConnectionError, ConnectionRef};

/// Base URLs of the Essedum backends the executor may call.
#[derive(Clone, Debug, Default)]
pub struct AllowList {
    /// Parsed entries; their paths end with `/`.
    pub(super) entries: Vec<Url>,
}

impl AllowList {
    /// Parses base URLs: each must be `http` or `https` with a host and no user info, query or
    /// fragment. Paths are normalised to end with `/`.
    pub fn parse(bases: &[String]) -> Result<AllowList, String> {
        let mut entries: Vec<Url> = Vec::with_capacity(bases.len());
        for raw in bases {
            let base = raw.trim();
            let mut url = Url::parse(base)
                .map_err(|e| format!("allowed backend URL {base:?} is not a valid URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "allowed backend URL {base:?} must be http or https"
                ));
            }
            if url.host().is_none() {
                return Err(format!("allowed backend URL {base:?} has no host"));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(format!(
                    "allowed backend URL {base:?} must not contain user info"
                ));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(format!(
                    "allowed backend URL {base:?} must not have a query or fragment"
                ));
            }
            if !url.path().ends_with('/') {
                let path = format!("{}/", url.path());
                url.set_path(&path);
            }
            if !entries.contains(&url) {
                entries.push(url);
            }
        }
        Ok(AllowList { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The normalised entries.
    pub fn entries(&self) -> Vec<String> {
        self.entries.iter().map(Url::to_string).collect()
    }

    /// The allowed base URL (normalised) that `referer` belongs to: same scheme, host and
    /// effective port, and a path under the entry's path. A Referer with user info is never
    /// admitted. When several entries match, the one with the longest path wins.
    pub fn admit(&self, referer: &str) -> Option<String> {
        let url = Url::parse(referer.trim()).ok()?;
        if !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let host = url.host()?;
        let port = url.port_or_known_default()?;
        let path = url.path();
        self.entries
            .iter()
            .filter(|e| {
                e.scheme() == url.scheme()
                    && e.host().is_some_and(|h| same_host(&h, &host))
                    && e.port_or_known_default() == Some(port)
                    && under(path, e.path())
            })
            .max_by_key(|e| e.path().len())
            .map(Url::to_string)
    }

    /// Whether `base_url` (as stored in a [`ConnectionRef`]) is exactly an allowed entry.
    pub fn contains(&self, base_url: &str) -> bool {
        self.entries.iter().any(|e| e.as_str() == base_url)
    }

    /// A [`ConnectionRef`] for a request from the backend that sent `referer`, or
    /// [`ConnectionError::NotAllowed`].
    pub fn reference(
        &self,
        referer: &str,
        project: &str,
        adapter_instance: &str,
        is_instance: Option<&str>,
    ) -> Result<ConnectionRef, ConnectionError> {
        let base_url = self.admit(referer).ok_or_else(|| {
            ConnectionError::NotAllowed("the Referer is not an allow-listed Essedum backend".into())
        })?;
        if project.is_empty() || adapter_instance.is_empty() {
            return Err(ConnectionError::NotAllowed(
                "project and adapter_instance are required to look up a connection".into(),
            ));
        }
        Ok(ConnectionRef {
            base_url,
            project: project.to_owned(),
            adapter_instance: adapter_instance.to_owned(),
            is_instance: is_instance.filter(|s| !s.is_empty()).map(str::to_owned),
        })
    }
}

fn same_host(a: &Host<&str>, b: &Host<&str>) -> bool {
    match (a, b) {
        (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
        _ => a == b,
    }
}

/// Whether `path` lies under `base` (which ends with `/`); `/app` counts as under `/app/`.
fn under(path: &str, base: &str) -> bool {
    path.starts_with(base) || base.strip_suffix('/') == Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(bases: &[&str]) -> AllowList {
        AllowList::parse(&bases.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn parse_normalises_and_validates() {
        let a = allow(&[
            "http://Backend:8080",
            "https://essedum.example/app",
            "http://b/x/",
        ]);
        assert_eq!(
            a.entries(),
            vec![
                "http://backend:8080/",
                "https://essedum.example/app/",
                "http://b/x/"
            ]
        );
        assert!(!a.is_empty());
        assert!(allow(&[]).is_empty());
        // Default port is dropped.
        assert_eq!(allow(&["http://b:80/"]).entries(), vec!["http://b/"]);
        for bad in [
            "ftp://backend/",
            "backend:8080",
            "http://user:pw@backend/",
            "http://user@backend/",
            "http://backend/?x=1",
            "http://backend/#frag",
            "file:///etc/passwd",
            "not a url",
            "",
        ] {
            assert!(AllowList::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn admit_positive() {
        let a = allow(&["http://backend:8080/"]);
        assert_eq!(
            a.admit("http://backend:8080/").as_deref(),
            Some("http://backend:8080/")
        );
        assert_eq!(
            a.admit("http://backend:8080").as_deref(),
            Some("http://backend:8080/")
        );
        assert_eq!(
            a.admit("http://BACKEND:8080/some/page?x=1#y").as_deref(),
            Some("http://backend:8080/")
        );
        let a = allow(&["http://backend/"]);
        assert_eq!(
            a.admit("http://backend:80/").as_deref(),
            Some("http://backend/")
        );
        assert_eq!(
            a.admit("http://backend/").as_deref(),
            Some("http://backend/")
        );
        let a = allow(&["https://ess.example/essedum"]);
        assert_eq!(
            a.admit("https://ess.example/essedum/").as_deref(),
            Some("https://ess.example/essedum/")
        );
        assert_eq!(
            a.admit("https://ess.example:443/essedum").as_deref(),
            Some("https://ess.example/essedum/")
        );
        assert_eq!(
            a.admit("https://ess.example/essedum/page").as_deref(),
            Some("https://ess.example/essedum/")
        );
        let a = allow(&["http://127.0.0.1:9000/", "http://[::1]:9000/"]);
        assert_eq!(
            a.admit("http://127.0.0.1:9000/").as_deref(),
            Some("http://127.0.0.1:9000/")
        );
        assert_eq!(
            a.admit("http://[::1]:9000/x").as_deref(),
            Some("http://[::1]:9000/")
        );
        // Longest matching path wins.
        let a = allow(&["http://b/", "http://b/app/"]);
        assert_eq!(a.admit("http://b/app/x").as_deref(), Some("http://b/app/"));
        assert_eq!(a.admit("http://b/other").as_deref(), Some("http://b/"));
    }

    #[test]
    fn admit_refuses_tricks() {
        let a = allow(&["http://allowed.example/", "http://backend:8080/app/"]);
        for bad in [
            "http://allowed.example@evil/",
            "http://allowed.example:80@evil/",
            "http://allowed.example.evil.com/",
            "http://evil.allowed.example/",
            "http://evil/?http://allowed.example/",
            "http://evil/#http://allowed.example/",
            "http://evil/http://allowed.example/",
            "http://user@allowed.example/",
            "http://user:pw@allowed.example/",
            "http://allowed.example:8080/",
            "https://allowed.example/",
            "http://backend:8081/app/",
            "http://backend/app/",
            "http://backend:8080/",
            "http://backend:8080/application/",
            "http://backend:8080/ap",
            "http://backend:8080/app/../other/",
            "http://backend:8080/app/%2e%2e/other/",
            "http://allowed.example./",
            "//allowed.example/",
            "allowed.example",
            "ftp://allowed.example/",
            "",
            "not a url",
        ] {
            assert_eq!(a.admit(bad), None, "{bad}");
        }
    }

    #[test]
    fn reference_uses_allowed_entry_not_referer() {
        let a = allow(&["http://backend:8080/"]);
        let r = a
            .reference(
                "http://BACKEND:8080/ui/page?q=1",
                "proj",
                "ai-1",
                Some("true"),
            )
            .unwrap();
        assert_eq!(r.base_url, "http://backend:8080/");
        assert_eq!(r.is_instance.as_deref(), Some("true"));
        assert!(matches!(
            a.reference("http://evil/", "proj", "ai", None),
            Err(ConnectionError::NotAllowed(_))
        ));
        assert!(matches!(
            a.reference("http://backend:8080/", "", "ai", None),
            Err(ConnectionError::NotAllowed(_))
        ));
        // Stored form omits a missing is_instance.
        let r = a.reference("http://backend:8080/", "p", "a", None).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"base_url":"http://backend:8080/","project":"p","adapter_instance":"a"}"#
        );
        let back: ConnectionRef =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
