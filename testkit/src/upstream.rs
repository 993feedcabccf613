//! The API behind Envoy.
//!
//! By default every request is answered `200 application/json` with an echo of what arrived:
//! `{"method", "path", "headers": {lowercased name: value}, "body"}` (repeated headers are joined
//! with `,`), so a test reads what finguard forwarded straight from the response. Requests are
//! also counted and kept, so a test can prove the upstream saw nothing.
//!
//! [`Upstream::start_demo`] additionally serves fixed banking payloads for the demo routes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde_json::{json, Value};
use tiny_http::{Header, Response, Server};

use crate::loopback;

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    /// Lowercased names, in arrival order, repeats kept.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl SeenRequest {
    /// Every value of a header.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Default)]
struct State {
    /// Request heads received (counted before the body is read).
    arrived: AtomicUsize,
    count: AtomicUsize,
    seen: Mutex<Vec<SeenRequest>>,
    stop: AtomicBool,
}

/// A running upstream; stops on drop.
pub struct Upstream {
    port: u16,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Echo upstream on a free loopback port.
    pub fn start() -> Result<Upstream> {
        Self::start_on(0, false)
    }

    /// Echo upstream that also serves the demo payloads (see [`demo_response`]).
    pub fn start_demo(port: u16) -> Result<Upstream> {
        Self::start_on(port, true)
    }

    fn start_on(port: u16, demo: bool) -> Result<Upstream> {
        let server = Server::http(loopback(port))
            .map_err(|err| anyhow!("upstream: binding 127.0.0.1:{port}: {err}"))?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|addr| addr.port())
            .ok_or_else(|| anyhow!("upstream: not an IP listener"))?;
        let state = Arc::new(State::default());
        let thread = {
            let state = Arc::clone(&state);
            std::thread::Builder::new()
                .name(format!("upstream-{port}"))
                .spawn(move || serve(&server, &state, demo))?
        };
        Ok(Upstream {
            port,
            state,
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        loopback(self.port)
    }

    /// Request heads received so far, counted as soon as a head arrives, before its body: shows
    /// whether a request was forwarded while its body was still being held or judged.
    pub fn arrived(&self) -> usize {
        self.state.arrived.load(Ordering::SeqCst)
    }

    /// Requests received so far (head and body read).
    pub fn count(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    /// Copies of the requests received so far.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.state
            .seen
            .lock()
            .map(|seen| seen.clone())
            .unwrap_or_default()
    }

    /// The last request received, if any.
    pub fn last(&self) -> Option<SeenRequest> {
        self.seen().pop()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(server: &Server, state: &State, demo: bool) {
    // Poll so that Drop can stop the loop within a tenth of a second.
    while !state.stop.load(Ordering::SeqCst) {
        let mut request = match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(request)) => request,
            Ok(None) | Err(_) => continue,
        };
        state.arrived.fetch_add(1, Ordering::SeqCst);
        let mut body = String::new();
        let _ = request.as_reader().read_to_string(&mut body);
        let seen = SeenRequest {
            method: request.method().as_str().to_owned(),
            path: request.url().to_owned(),
            headers: request
                .headers()
                .iter()
                .map(|h| {
                    (
                        h.field.as_str().as_str().to_ascii_lowercase(),
                        h.value.as_str().to_owned(),
                    )
                })
                .collect(),
            body,
        };
        state.count.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut log) = state.seen.lock() {
            log.push(seen.clone());
        }

        let (status, payload) = demo
            .then(|| demo_response(&seen))
            .flatten()
            .unwrap_or_else(|| (200, echo(&seen)));
        let response = Response::from_string(payload.to_string())
            .with_status_code(status)
            .with_header(json_content_type());
        let _ = request.respond(response);
    }
}

fn echo(seen: &SeenRequest) -> Value {
    let mut headers: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in &seen.headers {
        headers
            .entry(name)
            .and_modify(|joined| {
                joined.push(',');
                joined.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    json!({"method": seen.method, "path": seen.path, "headers": headers, "body": seen.body})
}

/// The demo API's answers: `GET /v1/accounts`, `GET /v1/accounts/{id}`,
/// `POST /v1/customers/{id}/payments`, `GET /healthz`. They carry the data finguard is meant to
/// protect (account numbers, IBANs, balances). Other requests fall back to the echo.
pub fn demo_response(seen: &SeenRequest) -> Option<(u16, Value)> {
    let path = seen.path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (seen.method.as_str(), segments.as_slice()) {
        ("GET", ["healthz"]) => Some((200, json!({"status": "ok"}))),
        ("GET", ["v1", "accounts"]) => Some((
            200,
            json!({"accounts": [demo_account("acc-001"), demo_account("acc-002")]}),
        )),
        ("GET", ["v1", "accounts", id]) => Some((200, demo_account(id))),
        ("POST", ["v1", "customers", customer, "payments"]) => {
            let request: Value = serde_json::from_str(&seen.body).unwrap_or(Value::Null);
            Some((
                201,
                json!({
                    "payment_id": "pay-7f3a9c",
                    "customer_id": customer,
                    "status": "accepted",
                    "amount": request.get("amount").cloned().unwrap_or(Value::Null),
                    "currency": request.get("currency").cloned().unwrap_or_else(|| json!("EUR")),
                    "creditor_iban": request.get("creditor_iban").cloned().unwrap_or(Value::Null),
                }),
            ))
        }
        _ => None,
    }
}

fn demo_account(id: &str) -> Value {
    // Fictitious data; the IBAN is the standard documentation example.
    let (number, iban, balance) = match id {
        "acc-002" => ("00412345", "DE89370400440532013000", "18250.00"),
        _ => ("31926819", "GB29NWBK60161331926819", "1024.50"),
    };
    json!({
        "id": id,
        "owner": "cust-42",
        "account_number": number,
        "iban": iban,
        "balance": {"amount": balance, "currency": "EUR"}
    })
}

fn json_content_type() -> Header {
    Header::from_bytes("content-type", "application/json").expect("constant header is valid")
}
