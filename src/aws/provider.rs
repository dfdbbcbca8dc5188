//! Which AWS a run or a request talks to. By default the standard credential chain
//! (environment, profile, SSO, web identity, instance role). Two other sources exist:
//!
//! * an Essedum connection, named by a request's `adapter_instance`, `project` and `Referer`,
//!   looked up only toward allow-listed backends ([`crate::connection`]). A run stores the
//!   reference, never the credentials, and the reference is resolved again when a step needs
//!   it (after a restart: from the backend; otherwise from the resolver's short cache);
//! * credentials a script job's request carried, sealed in the store ([`crate::secrets`]) and
//!   opened by the engine for each step.
//!
//! Clients are built once per distinct set of credentials and reused.

use super::sdk::{AwsSettings, Overrides, SdkAws};
use super::{AwsError, AwsErrorKind, AwsPort};
use crate::connection::{ConnectionError, ConnectionRef, ConnectionResolver};
use crate::secrets::{Secret, SecretBox};
use crate::store::Run;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Credentials given explicitly (a request's keys, or a looked-up connection's).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StaticCredentials {
    pub access_key: String,
    pub secret_key: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Secret>,
}

/// A client set other than the default: credentials, region and endpoint, each optional.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AwsTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<StaticCredentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

impl AwsTarget {
    fn is_default(&self) -> bool {
        self.credentials.is_none() && self.region.is_none() && self.endpoint.is_none()
    }

    /// A digest naming the client set, so clients are cached without keeping a second copy of
    /// the secret as a map key.
    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [
            self.credentials.as_ref().map(|c| c.access_key.as_str()),
            self.credentials.as_ref().map(|c| c.secret_key.expose()),
            self.credentials
                .as_ref()
                .and_then(|c| c.session_token.as_ref())
                .map(Secret::expose),
            self.region.as_deref(),
            self.endpoint.as_deref(),
        ] {
            h.update(part.unwrap_or("\u{0}").as_bytes());
            h.update([0xff]);
        }
        h.finalize().into()
    }
}

impl std::fmt::Debug for RunSecret {
    /// The workflow part holds secrets in plain JSON: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSecret")
            .field("aws", &self.aws)
            .field("workflow", &"***")
            .finish()
    }
}

/// Hands out the AWS port for the default chain, a connection, or explicit credentials.
pub struct AwsProvider {
    default: Arc<dyn AwsPort>,
    /// None: every target maps to the default port (unit tests with an in-memory double).
    settings: Option<AwsSettings>,
    connections: Option<ConnectionResolver>,
    secrets: Arc<SecretBox>,
    built: Mutex<HashMap<[u8; 32], Arc<dyn AwsPort>>>,
}

/// What a run's sealed secret holds: its AWS target (if it brought credentials) and whatever
/// else its workflow sealed (a script job's object-store keys and environment).
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct RunSecret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsTarget>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub workflow: serde_json::Value,
}

impl AwsProvider {
    pub fn new(
        default: Arc<dyn AwsPort>,
        settings: AwsSettings,
        connections: Option<ConnectionResolver>,
        secrets: Arc<SecretBox>,
    ) -> AwsProvider {
        AwsProvider {
            default,
            settings: Some(settings),
            connections,
            secrets,
            built: Mutex::new(HashMap::new()),
        }
    }

    /// Always the same port, whatever the target (for tests with an in-memory double).
    pub fn fixed(aws: Arc<dyn AwsPort>) -> AwsProvider {
        AwsProvider {
            default: aws,
            settings: None,
            connections: None,
            secrets: Arc::new(SecretBox::generate()),
            built: Mutex::new(HashMap::new()),
        }
    }

    /// Seals a run's secret; the run id is the associated data, so the blob only opens for it.
    pub fn seal(&self, run_id: uuid::Uuid, secret: &RunSecret) -> Vec<u8> {
        self.secrets.seal_json(secret, run_id.as_bytes())
    }

    /// Opens a run's sealed secret.
    pub fn open(&self, run_id: uuid::Uuid, sealed: &[u8]) -> Result<RunSecret, AwsError> {
        self.secrets
            .open_json(sealed, run_id.as_bytes())
            .map_err(|e| AwsError {
                kind: AwsErrorKind::Terminal,
                operation: "OpenCredentials",
                code: None,
                message: format!(
                    "the run's stored credentials cannot be opened ({e}); was the secret key changed?"
                ),
            })
    }

    pub fn default_port(&self) -> Arc<dyn AwsPort> {
        self.default.clone()
    }

    /// The connection resolver, when connection lookup is configured.
    pub fn connections(&self) -> Option<&ConnectionResolver> {
        self.connections.as_ref()
    }

    /// The port for `target`, built on first use.
    pub async fn port(&self, target: &AwsTarget) -> Arc<dyn AwsPort> {
        let Some(settings) = &self.settings else {
            return self.default.clone();
        };
        if target.is_default() {
            return self.default.clone();
        }
        let key = target.digest();
        if let Some(p) = self.built.lock().expect("client cache lock").get(&key) {
            return p.clone();
        }
        let port: Arc<dyn AwsPort> = Arc::new(
            SdkAws::build(
                settings.clone(),
                Overrides {
                    credentials: target.credentials.clone(),
                    region: target.region.clone(),
                    endpoint: target.endpoint.clone(),
                },
            )
            .await,
        );
        self.built
            .lock()
            .expect("client cache lock")
            .entry(key)
            .or_insert(port)
            .clone()
    }

    /// The port for an Essedum connection (resolved through the allow-listed backend).
    pub async fn for_connection(
        &self,
        r: &ConnectionRef,
    ) -> Result<Arc<dyn AwsPort>, ConnectionError> {
        let Some(resolver) = &self.connections else {
            return Err(ConnectionError::NotAllowed(
                "connection lookup is not configured (EXECUTOR_CONNECTION_ALLOW)".into(),
            ));
        };
        let d = resolver.resolve(r).await?;
        Ok(self
            .port(&AwsTarget {
                credentials: Some(StaticCredentials {
                    access_key: d.access_key.clone(),
                    secret_key: d.secret_key.clone(),
                    session_token: d.session_token.clone(),
                }),
                region: d.region.clone(),
                endpoint: None,
            })
            .await)
    }

    /// The port a stored run uses — the connection its request names (`connection`), else the
    /// target in its sealed secret, else the default chain — and the workflow part of that
    /// secret (Null when it has none). The engine calls it for every step and the API for a
    /// run's own reads, so a restart needs nothing kept in memory.
    pub async fn for_run(
        &self,
        run: &Run,
        sealed: Option<&[u8]>,
    ) -> Result<(Arc<dyn AwsPort>, serde_json::Value), AwsError> {
        let secret = match sealed {
            Some(sealed) => self.open(run.id, sealed)?,
            None => RunSecret::default(),
        };
        let aws = match run.request.get("connection") {
            None | Some(serde_json::Value::Null) => match &secret.aws {
                Some(t) => self.port(t).await,
                None => self.default.clone(),
            },
            Some(v) => {
                let r: ConnectionRef = serde_json::from_value(v.clone()).map_err(|e| AwsError {
                    kind: AwsErrorKind::Terminal,
                    operation: "ConnectionLookup",
                    code: None,
                    message: format!("stored connection reference is unreadable: {e}"),
                })?;
                self.for_connection(&r)
                    .await
                    .map_err(|e| connection_error(&e))?
            }
        };
        Ok((aws, secret.workflow))
    }
}

/// A failed lookup as a classified error: retried when the backend was unreachable.
pub fn connection_error(e: &ConnectionError) -> AwsError {
    AwsError {
        kind: if e.retryable() {
            AwsErrorKind::Retryable
        } else {
            AwsErrorKind::Terminal
        },
        operation: "ConnectionLookup",
        code: None,
        message: e.to_string(),
    }
}
