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

    /// Echo upstream (no demo payloads) with a thread per connection instead of tiny_http.
    ///
    /// tiny_http 0.12 serves each connection as a task in a pool that can leave a task queued
    /// while every thread sits on an idle keep-alive connection (connections accepted in a
    /// burst see one waiting thread, and all but one `notify_one` are lost); Envoy keeps its
    /// upstream connections open, so a request sent on such a connection is never read and ends
    /// in a 504 after the route timeout. Tests that send many requests in parallel use this one.
    /// Same echo, counters and [`Upstream::seen`] as [`Upstream::start`]; HTTP/1.1 with
    /// `content-length` or chunked bodies, keep-alive.
    pub fn start_threaded() -> Result<Upstream> {
        let listener = std::net::TcpListener::bind(loopback(0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State::default());
        let thread = {
            let state = Arc::clone(&state);
            std::thread::Builder::new()
                .name(format!("upstream-{port}"))
                .spawn(move || threaded::accept(&listener, &state))?
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

/// The thread-per-connection server behind [`Upstream::start_threaded`].
mod threaded {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    use super::{echo, SeenRequest, State};

    pub(super) fn accept(listener: &TcpListener, state: &Arc<State>) {
        while !state.stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let state = Arc::clone(state);
                    let _ = std::thread::Builder::new()
                        .name("upstream-conn".into())
                        .spawn(move || serve_connection(stream, &state));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    fn serve_connection(stream: TcpStream, state: &State) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_nodelay(true);
        // Idle connections are checked for the stop flag every 100 ms.
        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
        let Ok(mut writer) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(stream);
        while let Some(seen) = read_request(&mut reader, state) {
            state.count.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut log) = state.seen.lock() {
                log.push(seen.clone());
            }
            let body = echo(&seen).to_string();
            let close = seen
                .headers
                .iter()
                .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"));
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n",
                body.len(),
                if close { "connection: close\r\n" } else { "" }
            );
            if writer.write_all(head.as_bytes()).is_err()
                || writer.write_all(body.as_bytes()).is_err()
                || close
            {
                return;
            }
        }
    }

    /// Reads one line, retrying read timeouts until the upstream stops. None at EOF or stop.
    fn read_line(reader: &mut BufReader<TcpStream>, state: &State) -> Option<String> {
        let mut line = Vec::new();
        loop {
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => return None,
                Ok(_) if line.ends_with(b"\n") => {
                    return Some(String::from_utf8_lossy(&line).trim_end().to_owned());
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if state.stop.load(Ordering::SeqCst) {
                        return None;
                    }
                }
                Err(_) => return None,
            }
        }
    }

    fn read_exact(reader: &mut BufReader<TcpStream>, state: &State, n: usize) -> Option<Vec<u8>> {
        let mut out = vec![0u8; n];
        let mut filled = 0;
        while filled < n {
            match reader.read(&mut out[filled..]) {
                Ok(0) => return None,
                Ok(k) => filled += k,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if state.stop.load(Ordering::SeqCst) {
                        return None;
                    }
                }
                Err(_) => return None,
            }
        }
        Some(out)
    }

    fn read_request(reader: &mut BufReader<TcpStream>, state: &State) -> Option<SeenRequest> {
        let request_line = loop {
            let line = read_line(reader, state)?;
            if !line.is_empty() {
                break line;
            }
        };
        state.arrived.fetch_add(1, Ordering::SeqCst);
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let line = read_line(reader, state)?;
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            loop {
                let size_line = read_line(reader, state)?;
                let size_hex = size_line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size_hex, 16).ok()?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !read_line(reader, state)?.is_empty() {}
                    break;
                }
                body.extend(read_exact(reader, state, size)?);
                read_line(reader, state)?;
            }
        } else if let Some(length) = header("content-length").and_then(|l| l.parse().ok()) {
            body = read_exact(reader, state, length)?;
        }
        Some(SeenRequest {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
