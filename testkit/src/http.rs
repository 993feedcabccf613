//! A deliberately small HTTP/1.1 client.
//!
//! Tests need to send things a well-behaved client library would refuse or normalise (two
//! `Authorization` headers, odd header casing, a token in a cookie and a header at once), so
//! requests are written byte for byte. Every request uses `connection: close` and the response is
//! read to EOF, which keeps the parser trivial: a status line, headers, then either a
//! `content-length` body, a chunked body, or everything until the connection closes.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Default bound on one request, connect to last byte.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// A request to send to `addr`.
#[derive(Clone, Debug)]
pub struct Request {
    addr: SocketAddr,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send the body with `transfer-encoding: chunked` in chunks of this size (no
    /// `content-length`), so the receiver cannot know the body size from the headers.
    chunk_size: Option<usize>,
    /// Wait this long between the head and the body (the body then arrives in a later read).
    body_delay: Option<Duration>,
    timeout: Duration,
    /// Stop reading once the response is complete instead of waiting for the server to close.
    stop_at_end: bool,
}

impl Request {
    /// A request for `target` (path and query, e.g. `/v1/accounts?limit=2`).
    pub fn new(addr: SocketAddr, method: &str, target: &str) -> Self {
        Request {
            addr,
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            chunk_size: None,
            body_delay: None,
            timeout: DEFAULT_TIMEOUT,
            stop_at_end: false,
        }
    }

    /// Adds a header line; calling it twice with the same name sends the header twice.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds `authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Sets a raw body (a `content-length` header is added when sending).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    pub fn json(self, value: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(value.to_string())
    }

    /// Sends the body chunked (`transfer-encoding: chunked`, no `content-length`), in chunks of
    /// `chunk_size` bytes (at least 1).
    pub fn chunked(mut self, chunk_size: usize) -> Self {
        self.chunk_size = Some(chunk_size.max(1));
        self
    }

    /// Sends the head, waits `delay`, then sends the body: the receiver sees the headers well
    /// before the body. Only for requests the server does not answer from the headers alone
    /// (an early answer and close would meet the late body with a TCP reset).
    pub fn body_delay(mut self, delay: Duration) -> Self {
        self.body_delay = Some(delay);
        self
    }

    /// Returns as soon as the response is complete (its `content-length` bytes or last chunk
    /// read) instead of reading until the server closes. Envoy closes the connection after a
    /// local reply (a filter's refusal) only when its `delayed_close_timeout` (1 s) runs out, so
    /// reading to EOF makes every refusal take a second; timing-sensitive tests use this.
    pub fn stop_at_end(mut self) -> Self {
        self.stop_at_end = true;
        self
    }

    /// Bounds the whole exchange (default 15 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends the request and reads the whole response.
    pub fn try_send(&self) -> Result<Response> {
        let mut stream = TcpStream::connect_timeout(&self.addr, self.timeout)
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        stream.set_nodelay(true)?;

        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        let has = |name: &str| {
            self.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        if !has("host") {
            head.push_str(&format!("host: {}\r\n", self.addr));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if self.chunk_size.is_some() {
            head.push_str("transfer-encoding: chunked\r\n");
        } else if !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH")
        {
            head.push_str(&format!("content-length: {}\r\n", self.body.len()));
        }
        head.push_str("connection: close\r\n\r\n");

        // One write for the whole request: when Envoy answers from the headers alone (a local
        // reply) and closes the connection, body bytes still in flight would arrive after the
        // close, draw a TCP reset and could destroy the response before it is read.
        let head_len = head.len();
        let mut wire = head.into_bytes();
        match self.chunk_size {
            Some(size) => {
                for chunk in self.body.chunks(size) {
                    wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    wire.extend_from_slice(chunk);
                    wire.extend_from_slice(b"\r\n");
                }
                wire.extend_from_slice(b"0\r\n\r\n");
            }
            None => wire.extend_from_slice(&self.body),
        }
        match self.body_delay {
            Some(delay) => {
                stream.write_all(&wire[..head_len])?;
                stream.flush()?;
                std::thread::sleep(delay);
                stream.write_all(&wire[head_len..])?;
            }
            None => stream.write_all(&wire)?,
        }
        stream.flush()?;

        let mut raw = Vec::new();
        if self.stop_at_end {
            let mut buf = [0u8; 16 * 1024];
            loop {
                if let Some(response) = Response::parse_complete(&raw) {
                    return Ok(response);
                }
                let n = stream.read(&mut buf).with_context(|| {
                    format!("reading response to {} {}", self.method, self.target)
                })?;
                if n == 0 {
                    return Response::parse(&raw);
                }
                raw.extend_from_slice(&buf[..n]);
            }
        }
        stream
            .read_to_end(&mut raw)
            .with_context(|| format!("reading response to {} {}", self.method, self.target))?;
        Response::parse_with(&raw, self.method == "HEAD")
    }

    /// Like [`Request::try_send`], panicking with the request line on failure (for tests).
    pub fn send(&self) -> Response {
        match self.try_send() {
            Ok(response) => response,
            Err(err) => panic!("{} {} failed: {err:#}", self.method, self.target),
        }
    }
}

/// A complete response. Header names are lowercased.
#[derive(Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The response, if `raw` holds all of it: the head and a body whose end is known
    /// (`content-length` or the last chunk; a response without either ends at EOF only).
    fn parse_complete(raw: &[u8]) -> Option<Response> {
        let head_end = find(raw, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&raw[..head_end])
            .ok()?
            .to_ascii_lowercase();
        let rest = &raw[head_end + 4..];
        let value = |name: &str| {
            head.split("\r\n")
                .filter_map(|line| line.split_once(':'))
                .find(|(n, _)| n.trim() == name)
                .map(|(_, v)| v.trim().to_owned())
        };
        let complete = if value("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
            rest.ends_with(b"0\r\n\r\n") && dechunk(rest).is_ok()
        } else if let Some(length) = value("content-length") {
            rest.len() >= length.parse::<usize>().ok()?
        } else {
            false
        };
        if complete {
            Response::parse(raw).ok()
        } else {
            None
        }
    }

    fn parse(raw: &[u8]) -> Result<Response> {
        Self::parse_with(raw, false)
    }

    /// A response to HEAD: `content-length` describes a body that is never sent.
    fn parse_with(raw: &[u8], bodiless: bool) -> Result<Response> {
        let Some(head_end) = find(raw, b"\r\n\r\n") else {
            bail!(
                "incomplete response ({} bytes): {:?}",
                raw.len(),
                String::from_utf8_lossy(raw)
            );
        };
        let head = std::str::from_utf8(&raw[..head_end]).context("response head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();

        let rest = &raw[head_end + 4..];
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let body = if bodiless {
            Vec::new()
        } else if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
            dechunk(rest)?
        } else if let Some(length) = header("content-length") {
            let length: usize = length.parse().context("bad content-length")?;
            if rest.len() < length {
                bail!("body truncated: {} of {length} bytes", rest.len());
            }
            rest[..length].to_vec()
        } else {
            rest.to_vec()
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body text when it is not JSON.
    pub fn json(&self) -> Value {
        match serde_json::from_slice(&self.body) {
            Ok(value) => value,
            Err(err) => panic!(
                "response body is not JSON ({err}): status {} body {:?}",
                self.status,
                self.text()
            ),
        }
    }
}

impl fmt::Debug for Response {
    // Printed by failing assertions: show the whole exchange readably.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "HTTP {}", self.status)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {value}")?;
        }
        // Keep failure messages readable: echoes of oversized tokens run to kilobytes.
        const SHOWN: usize = 2000;
        let text = self.text();
        match text.char_indices().nth(SHOWN) {
            Some((cut, _)) => write!(f, "\n{}... ({} bytes in all)", &text[..cut], text.len()),
            None => write!(f, "\n{text}"),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").context("chunk size line not terminated")?;
        let size_text = std::str::from_utf8(&data[..line_end])?;
        // Chunk extensions (`;name=value`) are allowed after the size.
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 {
            bail!("chunk truncated");
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_chunked_bodies() {
        let plain =
            Response::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nhi").unwrap();
        assert_eq!(plain.status, 200);
        assert_eq!(plain.header("x-a"), Some("1"));
        assert_eq!(plain.text(), "hi");

        let chunked = Response::parse(
            b"HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.status, 401);
        assert_eq!(chunked.text(), "abcde");
    }
}
