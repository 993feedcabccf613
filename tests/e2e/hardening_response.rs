//! Response-side hardening through a real Envoy (issue 21): on a route that redacts, what
//! finguard cannot read does not leave, and the upstream is asked only for what can be redacted.
//!
//! - responses finguard cannot parse (CSV, HTML, plain text, JavaScript, octet streams, a missing
//!   or malformed media type, two `Content-Type` headers) are refused, 502 `response-unredactable`;
//!   JSON spelled `text/json`, `application/x-json` or `+json` is redacted, NDJSON / JSON Lines /
//!   JSON text sequences record by record; a route may opt out (`non_json: "pass"`);
//! - the request's `Accept` is narrowed to what can be redacted, so content negotiation cannot
//!   choose CSV or HTML;
//! - partial content: `Range` and `If-Range` never reach the upstream of a redacting route, and
//!   a `206` (or `Content-Range`) that arrives anyway is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use testkit::config::hs_provider;
use testkit::json_upstream::{Fixture, JsonUpstream};
use testkit::problem::assert_problem;
use testkit::{Algorithm, Envoy, Response, TokenBuilder};

const PAN: &str = "4111111111111111";

fn config() -> Value {
    json!({
        "providers": [hs_provider()],
        "response": {"detect": ["pan", "iban"]},
        "routes": [
            {"id": "opted-out", "match": {"methods": ["GET"], "prefix": "/v1/raw/"},
             "auth": {"scopes": {"all": ["accounts:read"]}},
             "response": {"non_json": "pass"}},
            {"id": "api", "match": {"methods": ["GET"], "prefix": "/v1/"},
             "auth": {"scopes": {"all": ["accounts:read"]}}}
        ]
    })
}

fn fixtures() -> Vec<(&'static str, Fixture)> {
    let json_doc = format!(r#"{{"card": "{PAN}", "n": 1}}"#);
    let unreadable = |content_type: &str| Fixture::new(200, content_type, format!("card,{PAN}\n"));
    let mut no_type = unreadable("x");
    no_type.headers.clear();
    vec![
        ("/v1/csv", unreadable("text/csv")),
        ("/v1/html", unreadable("text/html; charset=utf-8")),
        ("/v1/plain", unreadable("text/plain")),
        ("/v1/js", unreadable("application/javascript")),
        ("/v1/octets", unreadable("application/octet-stream")),
        ("/v1/none", no_type),
        (
            "/v1/comma",
            Fixture::new(200, "application/json, charset=utf-8", json_doc.clone()),
        ),
        (
            "/v1/list",
            Fixture::new(
                200,
                "application/x-www-form-urlencoded, a/b+json",
                json_doc.clone(),
            ),
        ),
        (
            "/v1/two-types",
            Fixture::json(json_doc.clone()).header("content-type", "text/html"),
        ),
        (
            "/v1/jsonx",
            Fixture::new(200, "application/jsonx", json_doc.clone()),
        ),
        // DRF's browsable API (`?format=api`) answers HTML.
        ("/v1/browsable", unreadable("text/html")),
        (
            "/v1/text-json",
            Fixture::new(200, "text/json", json_doc.clone()),
        ),
        (
            "/v1/x-json",
            Fixture::new(200, "application/x-json", json_doc.clone()),
        ),
        (
            "/v1/vnd",
            Fixture::new(
                200,
                "application/vnd.bank.v2+json; charset=utf-8",
                json_doc.clone(),
            ),
        ),
        (
            "/v1/ndjson",
            Fixture::new(
                200,
                "application/x-ndjson",
                format!("{json_doc}\n{{\"n\": 2}}\n{json_doc}\n"),
            )
            .chunked(7),
        ),
        (
            "/v1/jsonl",
            Fixture::new(
                200,
                "application/jsonl",
                format!("{json_doc}\r\n{json_doc}\r\n"),
            ),
        ),
        (
            "/v1/seq",
            Fixture::new(
                200,
                "application/json-seq",
                format!("\u{1e}{json_doc}\n\u{1e}[\"{PAN}\"]\n"),
            ),
        ),
        (
            "/v1/ndjson-bad",
            Fixture::new(
                200,
                "application/x-ndjson",
                format!("{json_doc}\ncard {PAN}\n"),
            ),
        ),
        ("/v1/account", Fixture::json(json_doc.clone())),
        (
            "/v1/partial",
            Fixture::new(206, "application/json", format!("\"{PAN}\""))
                .header("content-range", "bytes 9-26/40"),
        ),
        (
            "/v1/ranged",
            Fixture::json(format!("\"{PAN}\"")).header("content-range", "bytes 9-26/40"),
        ),
        (
            "/v1/multipart",
            Fixture::new(
                206,
                "multipart/byteranges; boundary=x",
                format!("--x\r\ncontent-range: bytes 0-9/40\r\n\r\n{PAN}\r\n--x--"),
            ),
        ),
        ("/v1/raw/csv", unreadable("text/csv")),
    ]
}

fn token() -> String {
    TokenBuilder::new(Algorithm::HS256)
        .scope("accounts:read")
        .sign()
}

struct Env {
    envoy: Envoy,
    upstream: JsonUpstream,
}

fn start() -> Env {
    let upstream = JsonUpstream::start(fixtures()).expect("starting the fixture upstream");
    let envoy = Envoy::builder(&config())
        .upstream(upstream.addr())
        .start()
        .unwrap_or_else(|err| panic!("starting Envoy: {err:#}"));
    Env { envoy, upstream }
}

fn get(env: &Env, path: &str) -> Response {
    env.envoy.get(path).bearer(&token()).send()
}

fn assert_unredactable(response: &Response, what: &str) {
    assert_eq!(response.status, 502, "{what}: {response:?}");
    assert_problem(response, 502, "response-unredactable");
    assert!(!response.text().contains(PAN), "{what}: the PAN left");
}

#[test]
fn responses_finguard_cannot_read_do_not_leave_a_redacting_route() {
    let env = start();
    for path in [
        "/v1/csv",
        "/v1/html",
        "/v1/plain",
        "/v1/js",
        "/v1/octets",
        "/v1/none",
        "/v1/comma",
        "/v1/list",
        "/v1/two-types",
        "/v1/jsonx",
        "/v1/browsable?format=api",
        "/v1/ndjson-bad",
        "/v1/no-such-fixture",
    ] {
        assert_unredactable(&get(&env, path), path);
    }
    // JSON in other spellings is redacted as JSON.
    for path in ["/v1/text-json", "/v1/x-json", "/v1/vnd", "/v1/account"] {
        let r = get(&env, path);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.json()["card"], "411111******1111", "{path}");
    }
    // Record formats are redacted record by record, framing kept.
    let r = get(&env, "/v1/ndjson");
    assert_eq!(r.status, 200, "{r:?}");
    let lines: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{}", r.text());
    assert_eq!(lines[0]["card"], "411111******1111");
    assert_eq!(lines[1]["n"], 2);
    assert_eq!(lines[2]["card"], "411111******1111");
    let r = get(&env, "/v1/jsonl");
    assert_eq!(r.status, 200);
    assert!(
        !r.text().contains(PAN) && r.text().matches("\r\n").count() == 2,
        "{}",
        r.text()
    );
    let r = get(&env, "/v1/seq");
    assert_eq!(r.status, 200);
    assert!(
        r.body.starts_with(b"\x1e") && !r.text().contains(PAN),
        "{}",
        r.text()
    );
    // Only where the route opts out (a documented risk) does unreadable content pass.
    let r = get(&env, "/v1/raw/csv");
    assert_eq!(r.status, 200);
    assert!(r.text().contains(PAN));
}

#[test]
fn the_upstream_is_asked_only_for_what_can_be_redacted() {
    let env = start();
    for (asked, forwarded) in [
        ("text/csv", "application/json"),
        (
            "text/html,application/xhtml+xml,*/*;q=0.8",
            "application/json",
        ),
        ("*/*", "application/json"),
        ("application/x-ndjson, text/csv", "application/x-ndjson"),
    ] {
        let r = env
            .envoy
            .get("/v1/account")
            .bearer(&token())
            .header("accept", asked)
            .send();
        assert_eq!(r.status, 200, "{asked}: {r:?}");
        let seen = env.upstream.seen().pop().unwrap();
        assert_eq!(seen.header_all("accept"), [forwarded], "{asked}");
        assert_eq!(seen.header_all("accept-encoding"), ["identity"], "{asked}");
    }
    // Partial content: Range and If-Range are removed, the whole document comes back redacted.
    for range in ["bytes=0-99,100-160", "bytes=9-26", "bytes=-20"] {
        let r = env
            .envoy
            .get("/v1/account")
            .bearer(&token())
            .header("range", range)
            .header("if-range", "\"etag-1\"")
            .send();
        assert_eq!(r.status, 200, "{range}: {r:?}");
        assert_eq!(r.json()["card"], "411111******1111");
        let seen = env.upstream.seen().pop().unwrap();
        assert!(
            seen.header_all("range").is_empty() && seen.header_all("if-range").is_empty(),
            "{range}: {seen:?}"
        );
        let h2 = testkit::h2::Request::new(env.envoy.addr(), "GET", "/v1/account")
            .bearer(&token())
            .header("range", range)
            .send()
            .expect("h2 request");
        assert_eq!(h2.status, Some(200), "HTTP/2 {range}");
        assert!(!h2.text().contains(PAN));
        let seen = env.upstream.seen().pop().unwrap();
        assert!(
            seen.header_all("range").is_empty(),
            "HTTP/2 {range}: {seen:?}"
        );
    }
    // An upstream that sends a part anyway fails closed.
    for path in ["/v1/partial", "/v1/ranged", "/v1/multipart"] {
        assert_unredactable(&get(&env, path), path);
    }
}
