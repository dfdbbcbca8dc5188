//! A fake Essedum backend for integration tests: a real HTTP server on loopback that answers
//! `GET /api/aip/services/fetchConnectionDetailsByAdapterInstance` from connections registered
//! by the test, and records what it was asked.
//!
//! Answers: a registered connection gives 200 with
//! `{"connection": {"name": …, "connectionDetails": "<details as a JSON string>"}}`; an unknown
//! one gives 404; after [`FakeBackend::fail_next`] the next requests get the given status.
//! The server stops when the [`FakeBackend`] is dropped.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use poem::http::{HeaderMap, StatusCode, header};
use poem::listener::TcpAcceptor;
use poem::web::{Data, Query};
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
    last_query: Option<HashMap<String, String>>,
    /// Remaining forced failures and their status.
    fail: (u32, u16),
}

/// A running fake backend.
pub struct FakeBackend {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeBackend {
    /// Starts a backend on `127.0.0.1` with a free port.
    pub async fn start() -> FakeBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake backend");
        let addr = listener.local_addr().expect("fake backend address");
        let acceptor = TcpAcceptor::from_tokio(listener).expect("fake backend acceptor");
        let state = Arc::new(Mutex::new(State::default()));
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
            state,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:PORT/`
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
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
