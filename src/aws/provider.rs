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
//! Clients are built once per distinct set of credentials and reused; the cache is bounded
//! (`EXECUTOR_AWS_CLIENT_CACHE`, default [`DEFAULT_CLIENT_CACHE`]): when full, the least recently
//! used client set is dropped (a later use builds it again). When AWS refuses a run's
//! credentials (AccessDenied, ExpiredToken, …), the engine calls
//! [`AwsProvider::forget_credentials`]: a connection-backed run's cached lookup is dropped, so the
//! next attempt asks the Essedum backend again (rotated or refreshed keys are picked up).

use super::sdk::{AwsSettings, Overrides, SdkAws};
use super::{AwsError, AwsErrorKind, AwsPort};
use crate::connection::{ConnectionError, ConnectionRef, ConnectionResolver};
use crate::secrets::{Secret, SecretBox};
use crate::store::Run;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How many client sets (distinct credentials, region, endpoint) are kept by default.
pub const DEFAULT_CLIENT_CACHE: usize = 64;

/// Built client sets by digest, the least recently used dropped first when full.
struct ClientCache<T> {
    capacity: usize,
    /// A use counter: the entry with the smallest stamp is the least recently used.
    tick: u64,
    clients: HashMap<[u8; 32], (u64, T)>,
}

impl<T: Clone> ClientCache<T> {
    fn new(capacity: usize) -> ClientCache<T> {
        ClientCache {
            capacity: capacity.max(1),
            tick: 0,
            clients: HashMap::new(),
        }
    }

    fn get(&mut self, key: &[u8; 32]) -> Option<T> {
        self.tick += 1;
        let (used, value) = self.clients.get_mut(key)?;
        *used = self.tick;
        Some(value.clone())
    }

    /// Keeps `value` under `key` (or returns the one another task built first), evicting the
    /// least recently used entry when full.
    fn insert(&mut self, key: [u8; 32], value: T) -> T {
        if let Some(existing) = self.get(&key) {
            return existing;
        }
        while self.clients.len() >= self.capacity {
            let Some(oldest) = self
                .clients
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.clients.remove(&oldest);
        }
        self.tick += 1;
        self.clients.insert(key, (self.tick, value.clone()));
        value
    }

    fn len(&self) -> usize {
        self.clients.len()
    }
}

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
    built: Mutex<ClientCache<Arc<dyn AwsPort>>>,
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
            built: Mutex::new(ClientCache::new(DEFAULT_CLIENT_CACHE)),
        }
    }

    /// Keeps at most `capacity` client sets (at least one).
    pub fn with_client_cache(self, capacity: usize) -> AwsProvider {
        *self.built.lock().expect("client cache lock") = ClientCache::new(capacity);
        self
    }

    /// How many client sets are cached now.
    pub fn cached_clients(&self) -> usize {
        self.built.lock().expect("client cache lock").len()
    }

    /// AWS refused `run`'s credentials: drop what is cached for it, so that the next step
    /// resolves its connection again (a no-op for runs on the default chain or sealed keys,
    /// which have nothing to look up again).
    pub fn forget_credentials(&self, run: &Run) {
        let (Some(resolver), Some(v)) = (&self.connections, run.request.get("connection")) else {
            return;
        };
        if let Ok(r) = serde_json::from_value::<ConnectionRef>(v.clone()) {
            resolver.forget(&r);
            tracing::info!(
                run_id = %run.id,
                "AWS refused the connection's credentials; it will be looked up again"
            );
        }
    }

    /// Always the same port, whatever the target (for tests with an in-memory double).
    pub fn fixed(aws: Arc<dyn AwsPort>) -> AwsProvider {
        AwsProvider {
            default: aws,
            settings: None,
            connections: None,
            secrets: Arc::new(SecretBox::generate()),
            built: Mutex::new(ClientCache::new(DEFAULT_CLIENT_CACHE)),
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
            return p;
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
            .insert(key, port)
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
        let r = self
            .resolve(run.id, run.request.get("connection"), sealed)
            .await?;
        Ok((r.aws, r.workflow))
    }

    /// [`AwsProvider::for_run`] for a run known by its id, its request's `connection` and its
    /// sealed secret, with the [`TargetKey`] of the AWS it talks to.
    pub async fn resolve(
        &self,
        run_id: uuid::Uuid,
        connection: Option<&serde_json::Value>,
        sealed: Option<&[u8]>,
    ) -> Result<ResolvedRun, AwsError> {
        let secret = match sealed {
            Some(sealed) => self.open(run_id, sealed)?,
            None => RunSecret::default(),
        };
        let target = self.key_of(connection, &secret);
        let aws = match connection {
            None | Some(serde_json::Value::Null) => match &secret.aws {
                Some(t) => self.port(t).await,
                None => self.default.clone(),
            },
            Some(v) => {
                let r = connection_ref(v)?;
                self.for_connection(&r)
                    .await
                    .map_err(|e| connection_error(&e))?
            }
        };
        Ok(ResolvedRun {
            aws,
            workflow: secret.workflow,
            target,
        })
    }

    /// The [`TargetKey`] of a run, without resolving its connection (nothing is looked up).
    pub fn target_key(
        &self,
        run_id: uuid::Uuid,
        connection: Option<&serde_json::Value>,
        sealed: Option<&[u8]>,
    ) -> Result<TargetKey, AwsError> {
        let secret = match sealed {
            Some(sealed) => self.open(run_id, sealed)?,
            None => RunSecret::default(),
        };
        Ok(self.key_of(connection, &secret))
    }

    fn key_of(&self, connection: Option<&serde_json::Value>, secret: &RunSecret) -> TargetKey {
        if self.settings.is_none() {
            return TargetKey::DEFAULT;
        }
        match connection {
            None | Some(serde_json::Value::Null) => match &secret.aws {
                Some(t) if !t.is_default() => TargetKey(t.digest()),
                _ => TargetKey::DEFAULT,
            },
            Some(v) => {
                // The reference, not the credentials it resolves to: runs of one connection
                // share a key whether or not its lookup is cached.
                let mut h = Sha256::new();
                h.update(b"connection\xff");
                h.update(v.to_string().as_bytes());
                TargetKey(h.finalize().into())
            }
        }
    }
}

/// Names the AWS a run talks to (its connection reference, its own credentials, or the default
/// chain) by a digest, never by the credentials themselves. Runs with equal keys share one
/// client set, so one List* sweep serves them all.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey([u8; 32]);

impl TargetKey {
    /// The default credential chain.
    pub const DEFAULT: TargetKey = TargetKey([0; 32]);

    /// The key as a database may keep it (the shared sweeps' table): hex of a digest of the
    /// key, itself a digest, so that what is stored is not even a digest of credentials.
    pub fn stored(&self) -> String {
        if *self == TargetKey::DEFAULT {
            return "default".into();
        }
        let mut h = Sha256::new();
        h.update(b"sweep target\xff");
        h.update(self.0);
        h.finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl std::fmt::Debug for TargetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == TargetKey::DEFAULT {
            return f.write_str("default");
        }
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A run's AWS, the workflow part of its secret, and the key of its target.
pub struct ResolvedRun {
    pub aws: Arc<dyn AwsPort>,
    pub workflow: serde_json::Value,
    pub target: TargetKey,
}

fn connection_ref(v: &serde_json::Value) -> Result<ConnectionRef, AwsError> {
    serde_json::from_value(v.clone()).map_err(|e| AwsError {
        kind: AwsErrorKind::Terminal,
        operation: "ConnectionLookup",
        code: None,
        message: format!("stored connection reference is unreadable: {e}"),
    })
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

#[cfg(test)]
mod tests {
    use super::ClientCache;

    #[test]
    fn the_client_cache_drops_the_least_recently_used_set_when_full() {
        let mut cache = ClientCache::new(2);
        cache.insert([1; 32], "one");
        cache.insert([2; 32], "two");
        assert_eq!(cache.get(&[1; 32]), Some("one"), "one is used again");
        cache.insert([3; 32], "three");
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&[2; 32]), None, "two was the least recently used");
        assert_eq!(cache.get(&[1; 32]), Some("one"));
        assert_eq!(
            cache.insert([3; 32], "again"),
            "three",
            "the first built is kept"
        );
    }
}
