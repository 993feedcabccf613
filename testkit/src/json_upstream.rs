//! An upstream that serves fixed responses per path, the way a real API (or a misbehaving one)
//! would: any status, content type and encoding, extra headers, and a body sent with
//! `content-length` or chunked in several pieces (with a pause between them, so Envoy sees
//! separate frames). Used by the response-protection tests (tests/e2e/redaction.rs).
//!
//! One thread per connection, HTTP/1.1 keep-alive; requests are kept for inspection
//! ([`JsonUpstream::seen`]). A path without a fixture gets `404`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Result;

use crate::loopback;
use crate::upstream::SeenRequest;

/// One canned response.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub status: u16,
    /// Header lines, in order (`content-length` / `transfer-encoding` are added).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send the body chunked, in pieces of this size.
    pub chunk_size: Option<usize>,
}

impl Fixture {
    /// `200 application/json` with this body.
    pub fn json(body: impl Into<Vec<u8>>) -> Fixture {
        Fixture {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            chunk_size: None,
        }
    }

    /// A response with this status, content type and body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Fixture {
        Fixture {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
            chunk_size: None,
        }
    }

    pub fn status(mut self, status: u16) -> Fixture {
        self.status = status;
        self
    }

    /// Adds a header line.
    pub fn header(mut self, name: &str, value: &str) -> Fixture {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends the body with `transfer-encoding: chunked` in pieces of `size` bytes.
    pub fn chunked(mut self, size: usize) -> Fixture {
        self.chunk_size = Some(size.max(1));
        self
    }
}

#[derive(Default)]
struct State {
    fixtures: Mutex<HashMap<String, Fixture>>,
    seen: Mutex<Vec<SeenRequest>>,
    stop: AtomicBool,
}

/// A running fixture upstream; stops on drop.
pub struct JsonUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl JsonUpstream {
    /// Serves `fixtures` (path without query → response) on a free loopback port.
    pub fn start(fixtures: Vec<(&str, Fixture)>) -> Result<JsonUpstream> {
        let listener = TcpListener::bind(loopback(0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        {
            let mut map = state.fixtures.lock().unwrap_or_else(|e| e.into_inner());
            for (path, fixture) in fixtures {
                map.insert(path.to_owned(), fixture);
            }
        }
        let thread = {
            let state = Arc::clone(&state);
            std::thread::Builder::new()
                .name(format!("json-upstream-{}", addr.port()))
                .spawn(move || accept(&listener, &state))?
        };
        Ok(JsonUpstream {
            addr,
            state,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests received so far, in order.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.state
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for JsonUpstream {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept(listener: &TcpListener, state: &Arc<State>) {
    while !state.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let state = Arc::clone(state);
                let _ = std::thread::Builder::new()
                    .name("json-upstream-conn".into())
                    .spawn(move || serve(stream, &state));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve(stream: TcpStream, state: &State) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while !state.stop.load(Ordering::SeqCst) {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = target.split('?').next().unwrap_or_default().to_owned();
        state
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(SeenRequest {
                method: method.clone(),
                path: path.clone(),
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        let fixture = state
            .fixtures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&path)
            .cloned()
            .unwrap_or_else(|| Fixture::new(404, "text/plain", "no fixture"));
        if write_response(&mut writer, &fixture, method == "HEAD").is_err() {
            return;
        }
    }
}

fn write_response(out: &mut TcpStream, f: &Fixture, head_request: bool) -> std::io::Result<()> {
    let bodiless = head_request || f.status == 204 || f.status == 304;
    let mut head = format!("HTTP/1.1 {} X\r\n", f.status);
    for (name, value) in &f.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if f.status != 204 && f.status != 304 {
        match f.chunk_size {
            Some(_) => head.push_str("transfer-encoding: chunked\r\n"),
            None => head.push_str(&format!("content-length: {}\r\n", f.body.len())),
        }
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if bodiless {
        return out.flush();
    }
    match f.chunk_size {
        None => out.write_all(&f.body)?,
        Some(size) => {
            for chunk in f.body.chunks(size) {
                out.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                out.write_all(chunk)?;
                out.write_all(b"\r\n")?;
                out.flush()?;
                // Separate frames for Envoy, not one read.
                std::thread::sleep(Duration::from_millis(2));
            }
            out.write_all(b"0\r\n\r\n")?;
        }
    }
    out.flush()
}
