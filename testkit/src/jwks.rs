//! A JWKS endpoint (`GET /jwks.json`) for the `idp_jwks` cluster.
//!
//! The served key set can be replaced at any time (key rotation), the server can answer 503
//! while "down" ([`JwksServer::set_down`]), and it can be started late on a port reserved up front
//! ([`ReservedPort`]) so that Envoy is configured with an address that refuses connections until
//! the test brings the server up. Every request is counted.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use tiny_http::{Header, Response, Server};

use crate::loopback;

/// The path the server answers on; anything else is 404 (and still counted).
pub const JWKS_PATH: &str = "/jwks.json";

struct State {
    body: Mutex<String>,
    down: AtomicBool,
    count: AtomicUsize,
    stop: AtomicBool,
}

/// A running JWKS server; stops on drop.
pub struct JwksServer {
    port: u16,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

/// A loopback port held (bound, not listening) for a JWKS server that starts later.
///
/// While reserved, connections to the port are refused, exactly like an identity provider that
/// is down; no other process can take the port in the meantime.
pub struct ReservedPort {
    socket: Socket,
    port: u16,
}

impl ReservedPort {
    pub fn new() -> Result<ReservedPort> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        socket.bind(&loopback(0).into())?;
        let port = socket
            .local_addr()?
            .as_socket()
            .map(|addr| addr.port())
            .context("reserved socket has no IP address")?;
        Ok(ReservedPort { socket, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// Starts listening and serving `body` on the reserved port.
    pub fn start(self, body: &str) -> Result<JwksServer> {
        self.socket.listen(128)?;
        JwksServer::from_listener(TcpListener::from(self.socket), body)
    }
}

impl JwksServer {
    /// Serves `body` on a free loopback port.
    pub fn start(body: &str) -> Result<JwksServer> {
        Self::start_on(0, body)
    }

    /// Serves `body` on `port` (0: any free port).
    pub fn start_on(port: u16, body: &str) -> Result<JwksServer> {
        let listener = TcpListener::bind(loopback(port))
            .with_context(|| format!("jwks: binding 127.0.0.1:{port}"))?;
        Self::from_listener(listener, body)
    }

    fn from_listener(listener: TcpListener, body: &str) -> Result<JwksServer> {
        let port = listener.local_addr()?.port();
        let server = Server::from_listener(listener, None)
            .map_err(|err| anyhow!("jwks: starting on port {port}: {err}"))?;
        let state = Arc::new(State {
            body: Mutex::new(body.to_owned()),
            down: AtomicBool::new(false),
            count: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let state = Arc::clone(&state);
            std::thread::Builder::new()
                .name(format!("jwks-{port}"))
                .spawn(move || serve(&server, &state))?
        };
        Ok(JwksServer {
            port,
            state,
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// Replaces the key set served from now on.
    pub fn set_body(&self, body: &str) {
        if let Ok(mut current) = self.state.body.lock() {
            *current = body.to_owned();
        }
    }

    /// `true`: answer every request with 503 until set back to `false`.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Requests received so far (served, 503 or 404 alike).
    pub fn count(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(server: &Server, state: &State) {
    while !state.stop.load(Ordering::SeqCst) {
        let request = match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(request)) => request,
            Ok(None) | Err(_) => continue,
        };
        state.count.fetch_add(1, Ordering::SeqCst);
        let path = request.url().split('?').next().unwrap_or_default();
        let response = if state.down.load(Ordering::SeqCst) {
            Response::from_string("identity provider unavailable").with_status_code(503)
        } else if request.method().as_str() != "GET" || path != JWKS_PATH {
            Response::from_string("not found").with_status_code(404)
        } else {
            let body = state
                .body
                .lock()
                .map(|body| body.clone())
                .unwrap_or_default();
            Response::from_string(body).with_header(
                Header::from_bytes("content-type", "application/json")
                    .expect("constant header is valid"),
            )
        };
        let _ = request.respond(response);
    }
}
