//! A deliberately small HTTP/2 (h2c, prior knowledge) client: one request per connection.
//!
//! It exists for what HTTP/1.1 cannot send through Envoy's default codec: request trailers (a
//! trailing HEADERS frame after the body). Everything is written by hand: the connection
//! preface, SETTINGS, HEADERS encoded with HPACK literals (no Huffman, no indexing), DATA frames,
//! and optional trailers that end the stream. The response is read until the stream ends or is
//! reset; its `:status` is decoded for the encodings Envoy uses for it (a static-table index or
//! a literal with the `:status` name and a plain value), the body is the DATA payload.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const STREAM: u32 = 1;
/// The smallest maximum frame size a peer must accept.
const MAX_FRAME: usize = 16_384;

/// An HTTP/2 request to send to `addr`.
#[derive(Clone, Debug)]
pub struct Request {
    addr: SocketAddr,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
    timeout: Duration,
}

/// What came back on the stream.
#[derive(Clone, Debug)]
pub struct Response {
    /// `None` when the stream was reset or closed before a status (or the status used an
    /// encoding this client does not decode).
    pub status: Option<u16>,
    pub body: Vec<u8>,
    /// The server reset the stream (RST_STREAM) or the connection (GOAWAY before an answer).
    pub reset: bool,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The finguard problem slug, if the body is a problem+json refusal.
    pub fn slug(&self) -> Option<String> {
        let body: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        body.get("type")?
            .as_str()?
            .strip_prefix(crate::problem::TYPE_PREFIX)
            .map(str::to_owned)
    }
}

impl Request {
    pub fn new(addr: SocketAddr, method: &str, path: &str) -> Self {
        Request {
            addr,
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            trailers: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Adds a header (the name is lowercased, as HTTP/2 requires).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds a trailer: the request then ends with a trailing HEADERS frame instead of a DATA
    /// frame with END_STREAM.
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends the request on a fresh connection and reads the response.
    pub fn send(&self) -> Result<Response> {
        let mut stream = TcpStream::connect_timeout(&self.addr, self.timeout)
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(self.timeout))?;

        let mut out = PREFACE.to_vec();
        frame(&mut out, SETTINGS, 0, 0, &[]);
        let mut block = Vec::new();
        let authority = self.addr.to_string();
        for (name, value) in [
            (":method", self.method.as_str()),
            (":scheme", "http"),
            (":authority", authority.as_str()),
            (":path", self.path.as_str()),
        ] {
            literal(&mut block, name, value);
        }
        for (name, value) in &self.headers {
            literal(&mut block, name, value);
        }
        let ends_after_headers = self.body.is_empty() && self.trailers.is_empty();
        let flags = END_HEADERS | if ends_after_headers { END_STREAM } else { 0 };
        frame(&mut out, HEADERS, flags, STREAM, &block);
        let chunks: Vec<&[u8]> = self.body.chunks(MAX_FRAME).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let flags = if last && self.trailers.is_empty() {
                END_STREAM
            } else {
                0
            };
            frame(&mut out, DATA, flags, STREAM, chunk);
        }
        if !self.trailers.is_empty() {
            let mut block = Vec::new();
            for (name, value) in &self.trailers {
                literal(&mut block, name, value);
            }
            frame(&mut out, HEADERS, END_HEADERS | END_STREAM, STREAM, &block);
        }
        // One write: a local reply must not race with request bytes still in flight.
        stream.write_all(&out)?;
        stream.flush()?;

        let deadline = Instant::now() + self.timeout;
        let mut response = Response {
            status: None,
            body: Vec::new(),
            reset: false,
        };
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                bail!(
                    "no end of stream within {:?} (so far: {response:?})",
                    self.timeout
                );
            }
            stream.set_read_timeout(Some(remaining))?;
            let Some(Frame {
                kind,
                flags,
                stream: id,
                payload,
            }) = read_frame(&mut stream)?
            else {
                // Connection closed.
                if response.status.is_none() {
                    response.reset = true;
                }
                return Ok(response);
            };
            match kind {
                SETTINGS if flags & ACK == 0 => {
                    let mut ack = Vec::new();
                    frame(&mut ack, SETTINGS, ACK, 0, &[]);
                    stream.write_all(&ack)?;
                }
                PING if flags & ACK == 0 => {
                    let mut pong = Vec::new();
                    frame(&mut pong, PING, ACK, 0, &payload);
                    stream.write_all(&pong)?;
                }
                HEADERS if id == STREAM => {
                    if response.status.is_none() {
                        response.status = status_of(strip_padding(flags, &payload));
                    }
                    if flags & END_STREAM != 0 {
                        return Ok(response);
                    }
                }
                DATA if id == STREAM => {
                    response
                        .body
                        .extend_from_slice(strip_padding(flags & PADDED, &payload));
                    if flags & END_STREAM != 0 {
                        return Ok(response);
                    }
                }
                RST_STREAM if id == STREAM => {
                    response.reset = true;
                    return Ok(response);
                }
                GOAWAY if response.status.is_none() => {
                    response.reset = true;
                    return Ok(response);
                }
                _ => {}
            }
        }
    }
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// One received frame.
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn read_frame(stream: &mut TcpStream) -> Result<Option<Frame>> {
    let mut head = [0u8; 9];
    match stream.read_exact(&mut head) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
        Err(err) => return Err(err).context("reading an HTTP/2 frame"),
    }
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    stream
        .read_exact(&mut payload)
        .context("reading an HTTP/2 frame payload")?;
    Ok(Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: id,
        payload,
    }))
}

/// The header block of a HEADERS frame without padding and priority fields.
fn strip_padding(flags: u8, payload: &[u8]) -> &[u8] {
    let mut body = payload;
    let mut pad = 0usize;
    if flags & PADDED != 0 {
        pad = body.first().copied().unwrap_or(0) as usize;
        body = body.get(1..).unwrap_or_default();
    }
    if flags & PRIORITY != 0 {
        body = body.get(5..).unwrap_or_default();
    }
    body.get(..body.len().saturating_sub(pad))
        .unwrap_or_default()
}

/// HPACK integer with an `prefix`-bit prefix, the first byte's high bits set to `high`.
fn integer(out: &mut Vec<u8>, high: u8, prefix: u32, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// "Literal header field without indexing, new name", both strings plain (no Huffman).
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    integer(out, 0, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    integer(out, 0, 7, value.len());
    out.extend_from_slice(value.as_bytes());
}

/// `:status` from the start of a response header block (pseudo-headers come first).
fn status_of(block: &[u8]) -> Option<u16> {
    let first = *block.first()?;
    // Indexed field from the static table (RFC 7541 Appendix A, entries 8-14).
    let indexed = match first {
        0x88 => Some(200),
        0x89 => Some(204),
        0x8a => Some(206),
        0x8b => Some(304),
        0x8c => Some(400),
        0x8d => Some(404),
        0x8e => Some(500),
        _ => None,
    };
    if indexed.is_some() {
        return indexed;
    }
    // Literal with the name `:status` by static index 8 (with incremental indexing 0x48,
    // without 0x08, never indexed 0x18), then a plain (non-Huffman) short value.
    if matches!(first, 0x48 | 0x08 | 0x18) {
        let len = *block.get(1)?;
        let value = block.get(2..2 + (len & 0x7f) as usize)?;
        if len & 0x80 != 0 {
            // Huffman: shorter for some statuses ("401": 16 bits, not 24), so Envoy uses it.
            return huffman_digits(value)?.parse().ok();
        }
        return std::str::from_utf8(value).ok()?.parse().ok();
    }
    None
}

/// Decodes a Huffman-coded string of decimal digits (RFC 7541 Appendix B: '0'-'2' are the
/// 5-bit codes 0-2, '3'-'9' the 6-bit codes 0x19-0x1f; padding is up to 7 one bits).
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let total = bytes.len() * 8;
    let bit = |i: usize| (bytes[i / 8] >> (7 - i % 8)) & 1;
    let read = |at: usize, n: usize| (at..at + n).fold(0u8, |v, i| (v << 1) | bit(i));
    let mut out = String::new();
    let mut at = 0;
    while at < total {
        let rest = total - at;
        if rest < 8 && (at..total).all(|i| bit(i) == 1) {
            break;
        }
        if rest < 5 {
            return None;
        }
        match read(at, 5) {
            v @ 0..=2 => {
                out.push(char::from(b'0' + v));
                at += 5;
            }
            _ if rest >= 6 && (0x19..=0x1f).contains(&read(at, 6)) => {
                out.push(char::from(b'3' + read(at, 6) - 0x19));
                at += 6;
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_integers_and_status() {
        let mut out = Vec::new();
        integer(&mut out, 0, 7, 10);
        assert_eq!(out, [10]);
        out.clear();
        integer(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]); // RFC 7541 C.1.2
        assert_eq!(status_of(&[0x88]), Some(200));
        assert_eq!(status_of(b"\x48\x03403"), Some(403));
        assert_eq!(status_of(&[0x82]), None);
        // "401" Huffman-coded: 011010 00000 00001, padded with ones.
        assert_eq!(status_of(&[0x48, 0x82, 0x68, 0x01]), Some(401));
        assert_eq!(huffman_digits(&[0x68, 0x01]).as_deref(), Some("401"));
    }
}
