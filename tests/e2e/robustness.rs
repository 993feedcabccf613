//! Hostile bytes never take the filter down: a panic in the Wasm VM would stop every request on
//! that worker (fail closed, 503 for everyone), so a single crafted request would be a denial of
//! service. Header values that are not UTF-8 (HTTP's obs-text) are the concrete case: the
//! proxy-wasm SDK's `get_map` would panic on them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use testkit::{config, Stack, TokenBuilder};

/// Sends raw bytes as one HTTP/1.1 request on a new connection; returns the status code.
fn raw_status(stack: &Stack, request: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(stack.envoy.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn non_utf8_header_values_are_judged_not_fatal() {
    let stack = Stack::start(&config::base());
    let rs = |scope: &str| TokenBuilder::rs256().scope(scope).sign();
    let (reader, other) = (rs("accounts:read"), rs("profile"));
    let with_junk = |path: &str, token: Option<&str>| {
        let mut request = format!("GET {path} HTTP/1.1\r\nhost: api\r\n").into_bytes();
        request.extend_from_slice(b"x-note: caf\xe9 \xff\xfe\xc3\x28\r\n");
        if let Some(token) = token {
            request.extend_from_slice(format!("authorization: Bearer {token}\r\n").as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        request
    };
    // New connections spread over both workers: every VM judges such requests. (The answers are
    // the filter's own, so the test upstream never has to parse the odd bytes.)
    for _ in 0..12 {
        assert_eq!(
            raw_status(&stack, &with_junk("/v1/accounts", None)),
            401,
            "token-missing"
        );
        assert_eq!(
            raw_status(&stack, &with_junk("/v1/accounts", Some(&other))),
            403,
            "scope-insufficient"
        );
        assert_eq!(
            raw_status(&stack, &with_junk("/nowhere", Some(&reader))),
            404,
            "route-not-found"
        );
        // A "token" that is not UTF-8 is refused as a bad token, not a crash.
        let bad = b"GET /v1/accounts HTTP/1.1\r\nhost: api\r\nauthorization: Bearer \xff\xfe.\xfd.\xfc\r\n\r\n";
        assert_eq!(raw_status(&stack, bad), 401, "non-UTF-8 bearer token");
    }
    // Every worker's VM is still alive and serving.
    for _ in 0..12 {
        let clean = format!(
            "GET /v1/accounts HTTP/1.1\r\nhost: api\r\nauthorization: Bearer {reader}\r\n\r\n"
        );
        assert_eq!(raw_status(&stack, clean.as_bytes()), 200);
    }
    let logs = stack.envoy.logs();
    assert!(!logs.contains("panicked"), "the filter panicked:\n{logs}");
}
