//! A fake Essedum backend for integration tests: a real HTTP server on loopback that answers
//! `GET /api/aip/services/fetchConnectionDetailsByAdapterInstance` from connections registered
//! by the test, and records what it was asked.
//!
//! Answers: a registered connection gives 200 with
//! `{"connection": {"name": …, "connectionDetails": "<details as a JSON string>"}}`; an unknown
//! one gives 404; after [`FakeBackend::fail_next`] the next requests get the given status.
//! The server stops when the [`FakeBackend`] is dropped.
//!
//! [`FakeBackend::start_tls`] serves the same over https with a certificate for `127.0.0.1` and
//! `localhost`, issued by a throwaway CA made with the `openssl` command line
//! ([`TestCa::create`]); a client trusts it through the CA's PEM file.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::http::{HeaderMap, StatusCode, header};
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{Data, Query};
use poem::web::{LocalAddr, RemoteAddr};
use poem::{EndpointExt, Response, Route, Server, get, handler};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Path of the connection endpoint (without the leading `/`).
pub const CONNECTION_PATH: &str = "api/aip/services/fetchConnectionDetailsByAdapterInstance";

#[derive(Default)]
struct State {
    /// (project, adapter_instance) → (status, body).
    answers: HashMap<(String, String), (u16, Value)>,
    calls: usize,
    last_authorization: Option<String>,
    /// Every header of the latest request (names lowercase).
    last_headers: HashMap<String, String>,
    /// TLS handshakes that failed (https backends only).
    failed_handshakes: usize,
    last_query: Option<HashMap<String, String>>,
    /// Remaining forced failures and their status.
    fail: (u32, u16),
}

/// A running fake backend.
pub struct FakeBackend {
    addr: SocketAddr,
    https: bool,
    state: Arc<Mutex<State>>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeBackend {
    /// Starts a backend on `127.0.0.1` with a free port.
    pub async fn start() -> FakeBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake backend");
        let acceptor = TcpAcceptor::from_tokio(listener).expect("fake backend acceptor");
        FakeBackend::serve(acceptor, false, Arc::default())
    }

    /// Starts a backend serving https on `127.0.0.1` with a certificate issued by `ca`.
    pub async fn start_tls(ca: &TestCa) -> FakeBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake backend");
        let state: Arc<Mutex<State>> = Arc::default();
        let acceptor = TlsAcceptor {
            local: LocalAddr(listener.local_addr().expect("address").into()),
            listener,
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config())),
            state: state.clone(),
        };
        FakeBackend::serve(acceptor, true, state)
    }

    fn serve(
        acceptor: impl Acceptor + 'static,
        https: bool,
        state: Arc<Mutex<State>>,
    ) -> FakeBackend {
        let addr = acceptor.local_addr()[0]
            .as_socket_addr()
            .copied()
            .expect("fake backend address");
        let app = Route::new()
            .at(format!("/{CONNECTION_PATH}"), get(connection))
            .data(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    app,
                    async move {
                        let _ = stopped.await;
                    },
                    Some(Duration::from_millis(200)),
                )
                .await;
        });
        FakeBackend {
            addr,
            https,
            state,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:PORT/` (`https://` for a TLS backend).
    pub fn base_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Registers a connection; the endpoint answers it with `details` serialised into the
    /// `connectionDetails` string (e.g. `{"accessKey": …, "secretKey": …, "region": …}`).
    pub fn set_connection(&self, project: &str, adapter_instance: &str, details: Value) {
        let body = json!({
            "connection": {
                "name": format!("{adapter_instance}-connection"),
                "connectionDetails": details.to_string(),
            }
        });
        self.set_answer(project, adapter_instance, 200, body);
    }

    /// Registers a verbatim answer (status and JSON body) for a connection.
    pub fn set_answer(&self, project: &str, adapter_instance: &str, status: u16, body: Value) {
        self.state().answers.insert(
            (project.to_owned(), adapter_instance.to_owned()),
            (status, body),
        );
    }

    /// Forgets a connection (the endpoint answers 404 for it again).
    pub fn remove_connection(&self, project: &str, adapter_instance: &str) {
        self.state()
            .answers
            .remove(&(project.to_owned(), adapter_instance.to_owned()));
    }

    /// Answers the next `n` requests to the connection endpoint with `status` (e.g. 503).
    pub fn fail_next(&self, n: u32, status: u16) {
        self.state().fail = (n, status);
    }

    /// Requests received by the connection endpoint so far (failed ones included).
    pub fn calls(&self) -> usize {
        self.state().calls
    }

    /// The `Authorization` header of the latest request, if it had one.
    pub fn last_authorization(&self) -> Option<String> {
        self.state().last_authorization.clone()
    }

    /// A header of the latest request (`name` in lowercase), if it had one.
    pub fn last_header(&self, name: &str) -> Option<String> {
        self.state().last_headers.get(name).cloned()
    }

    /// TLS handshakes that failed so far (a client that does not trust the certificate).
    pub fn failed_handshakes(&self) -> usize {
        self.state().failed_handshakes
    }

    /// The decoded query parameters of the latest request.
    pub fn last_query(&self) -> Option<HashMap<String, String>> {
        self.state().last_query.clone()
    }
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json")
        .body(body.to_string())
}

#[handler]
fn connection(
    Data(state): Data<&Arc<Mutex<State>>>,
    Query(query): Query<HashMap<String, String>>,
    headers: &HeaderMap,
) -> Response {
    let mut s = state.lock().unwrap();
    s.calls += 1;
    s.last_authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    s.last_headers = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    s.last_query = Some(query.clone());
    if s.fail.0 > 0 {
        s.fail.0 -= 1;
        let status = s.fail.1;
        return json_response(status, &json!({"message": "fake backend failure"}));
    }
    let (Some(project), Some(adapter)) = (query.get("project"), query.get("adapter_instance"))
    else {
        return json_response(
            400,
            &json!({"message": "project and adapter_instance required"}),
        );
    };
    match s.answers.get(&(project.clone(), adapter.clone())) {
        Some((status, body)) => json_response(*status, body),
        None => json_response(404, &json!({"message": "connection not found"})),
    }
}

/// Accepts TCP connections and completes the TLS handshake before handing them to the server; a
/// failed handshake is counted and the connection dropped.
struct TlsAcceptor {
    listener: tokio::net::TcpListener,
    local: LocalAddr,
    tls: tokio_rustls::TlsAcceptor,
    state: Arc<Mutex<State>>,
}

impl Acceptor for TlsAcceptor {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        vec![self.local.clone()]
    }

    async fn accept(&mut self) -> std::io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        loop {
            let (tcp, peer) = self.listener.accept().await?;
            match self.tls.accept(tcp).await {
                Ok(io) => {
                    return Ok((
                        io,
                        self.local.clone(),
                        RemoteAddr(peer.into()),
                        Scheme::HTTPS,
                    ));
                }
                Err(_) => self.state.lock().unwrap().failed_handshakes += 1,
            }
        }
    }
}

/// A throwaway certificate authority and a server certificate it issued for `127.0.0.1` and
/// `localhost`, as PEM files in a directory, made with the `openssl` command line.
pub struct TestCa {
    /// The CA certificate: what a client must trust.
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    /// Creates the CA and the server certificate under `dir`.
    pub fn create(dir: &Path) -> TestCa {
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("run openssl (the https tests need the openssl command line)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=executor test CA",
            ],
        ]
        .concat());
        run(&[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat());
        std::fs::write(
            dir.join("server.ext"),
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        TestCa {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
        }
    }

    fn server_config(&self) -> rustls::ServerConfig {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(&self.cert_file)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&self.key_file).unwrap();
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap()
    }
}
