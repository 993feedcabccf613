//! Input validation through a real Envoy (issue 4): body schemas with fintech formats, JSON
//! structure limits, content types, body required/forbidden, UTF-8, duplicate names, size
//! limits enforced while the body streams in, query/header/path parameter schemas and the
//! negative model. Every refusal is checked for its status, problem type and `errors` list, for
//! not echoing the value that was sent, and for having left the upstream untouched (not even the
//! request head arrived: the request is held until its body is judged).
//!
//! Each test starts its own Envoy (`testkit::Stack`); they need the built module (`make build`)
//! and Envoy (`make envoy` or `ENVOY_BIN`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::config;
use testkit::problem::assert_problem;
use testkit::upstream::SeenRequest;
use testkit::{Algorithm, Request, Response, Stack, TokenBuilder};

const IBAN: &str = "DE89370400440532013000";
const KEY: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

/// The payment schema: what a create-payment operation accepts, and nothing more.
fn payment_schema() -> Value {
    json!({
        "type": "object",
        "required": ["amount", "currency", "creditor"],
        "additionalProperties": false,
        "properties": {
            "amount": {"type": "string", "format": "decimal-amount"},
            "currency": {"type": "string", "format": "iso4217"},
            "creditor": {
                "type": "object", "required": ["name", "iban"], "additionalProperties": false,
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 70},
                    "iban": {"type": "string", "format": "iban"},
                    "bic": {"type": "string", "format": "bic"}
                }
            },
            "reference": {"type": "string", "maxLength": 140},
            "execution_date": {"type": "string", "format": "date"},
            "metadata": {"type": "object", "maxProperties": 8,
                         "additionalProperties": {"type": "string", "maxLength": 64}}
        }
    })
}

/// | route | match | request rules |
/// |---|---|---|
/// | create-payment | POST /v1/customers/{customer_id}/payments (JWT, payments:write) | schema above, application/json only, ≤ 4096 bytes, customer_id pattern, idempotency-key uuid required, negative model enforced |
/// | quotes | GET /v1/quotes (public) | query: currency (iso4217) required, amount (decimal-amount), nothing else; body forbidden |
/// | import | POST /v1/import (public) | body required, JSON, ≤ 256 KiB, depth ≤ 16 (no schema) |
fn validation_config() -> Value {
    json!({
        "mode": "enforce",
        "realm": "finguard",
        "providers": [config::hs_provider()],
        "routes": [
            {"id": "health", "match": {"methods": ["GET"], "path": "/healthz"}, "public": true},
            {"id": "create-payment",
             "match": {"methods": ["POST"], "path": "/v1/customers/{customer_id}/payments"},
             "auth": {"scopes": {"all": ["payments:write"]}},
             "request": {
                 "content_types": ["application/json"],
                 "max_body_bytes": 4096,
                 "schema": payment_schema(),
                 "path": {"properties": {"customer_id": {"pattern": "^cust-[A-Za-z0-9]{1,20}$"}}},
                 "headers": {"properties": {"idempotency-key": {"type": "string", "format": "uuid"}},
                             "required": ["idempotency-key"]},
                 "negative": {"mode": "enforce",
                              "detectors": ["sql_injection", "command_injection", "path_traversal"]}
             }},
            {"id": "quotes", "match": {"methods": ["GET"], "path": "/v1/quotes"}, "public": true,
             "request": {
                 "body": "forbidden",
                 "query": {"required": ["currency"], "additionalProperties": false,
                           "properties": {"currency": {"format": "iso4217"},
                                          "amount": {"format": "decimal-amount"}}}
             }},
            {"id": "import", "match": {"methods": ["POST"], "path": "/v1/import"}, "public": true,
             "request": {"body": "required", "max_body_bytes": 262144, "limits": {"max_depth": 16}}}
        ]
    })
}

fn start() -> Stack {
    let stack = Stack::start(&validation_config());
    let response = stack.envoy.get("/healthz").send();
    assert_eq!(
        response.status,
        200,
        "finguard refused the configuration:\n{}",
        stack.envoy.logs()
    );
    stack
}

fn token() -> String {
    TokenBuilder::new(Algorithm::HS256)
        .subject("cust-A")
        .scope("payments:write")
        .sign()
}

fn pay(stack: &Stack, token: &str) -> Request {
    stack
        .envoy
        .post("/v1/customers/cust-A/payments")
        .bearer(token)
        .header("idempotency-key", KEY)
}

fn good_payment() -> Value {
    json!({
        "amount": "125.50", "currency": "EUR",
        "creditor": {"name": "Drop Shipping Ltd", "iban": IBAN, "bic": "DEUTDEFF"},
        "reference": "Invoice 2024-117 for O'Brien & Sons",
        "execution_date": "2026-12-01",
        "metadata": {"order": "A-1"}
    })
}

/// Sends `request`: a refusal with `status`/`slug`, the expected `errors` (pointer, keyword),
/// none of the `secrets` anywhere in the response, and no request head at the upstream.
fn refused(
    stack: &Stack,
    request: Request,
    status: u16,
    slug: &str,
    errors: &[(&str, &str)],
    secrets: &[&str],
) -> Response {
    let (arrived, count) = (stack.upstream.arrived(), stack.upstream.count());
    let response = request.send();
    assert_problem(&response, status, slug);
    let body = response.json();
    let listed: Vec<(String, String)> = body["errors"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    (
                        e["pointer"].as_str().unwrap().to_owned(),
                        e["keyword"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let expected: Vec<(String, String)> = errors
        .iter()
        .map(|(p, k)| (p.to_string(), k.to_string()))
        .collect();
    assert_eq!(listed, expected, "errors of {slug}: {body}");
    let whole = format!("{:?}{}", response.headers, response.text());
    for secret in secrets {
        assert!(
            !whole.contains(secret),
            "the refusal echoes {secret:?}:\n{whole}"
        );
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        (stack.upstream.arrived(), stack.upstream.count()),
        (arrived, count),
        "{slug}: refused, but the upstream saw the request"
    );
    response
}

fn forwarded(stack: &Stack, request: Request) -> SeenRequest {
    let before = stack.upstream.count();
    let response = request.send();
    assert_eq!(response.status, 200, "expected forwarding:\n{response:?}");
    assert_eq!(stack.upstream.count(), before + 1);
    stack.upstream.last().unwrap()
}

#[test]
fn valid_payment_reaches_the_upstream_byte_identical() {
    let stack = start();
    let t = token();
    // Unusual but valid spacing and key order: the upstream must get exactly these bytes.
    let text = format!(
        "{{ \"currency\":\"EUR\",\n  \"amount\" : \"125.50\", \"creditor\": {{\"iban\": \"{IBAN}\", \"name\": \"Drop Shipping Ltd\"}},\"reference\":\"O'Brien\"}}"
    );
    let seen = forwarded(
        &stack,
        pay(&stack, &t)
            .header("content-type", "application/json; charset=utf-8")
            .body(text.clone()),
    );
    assert_eq!(seen.body, text);
    let seen = forwarded(&stack, pay(&stack, &t).json(&good_payment()).chunked(16));
    assert_eq!(seen.body, good_payment().to_string());
}

#[test]
fn schema_violations_are_422_with_pointers_and_no_values() {
    let stack = start();
    let t = token();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut p = good_payment();
        edit(&mut p);
        pay(&stack, &t).json(&p)
    };
    refused(
        &stack,
        with(&|p| p["amount"] = json!(125.5)),
        422,
        "schema-violation",
        &[("/amount", "type")],
        &["125.5"],
    );
    refused(
        &stack,
        with(&|p| {
            p["creditor"].as_object_mut().unwrap().remove("iban");
        }),
        422,
        "schema-violation",
        &[("/creditor/iban", "required")],
        &[],
    );
    // Mass assignment: a field the operation does not declare.
    refused(
        &stack,
        with(&|p| p["is_admin"] = json!(true)),
        422,
        "schema-violation",
        &[("", "additionalProperties")],
        &["is_admin"],
    );
    refused(
        &stack,
        with(&|p| p["creditor"]["iban"] = json!("DE00370400440532013000")),
        422,
        "schema-violation",
        &[("/creditor/iban", "format")],
        &["DE00370400440532013000"],
    );
    refused(
        &stack,
        with(&|p| p["amount"] = json!("125.505")),
        422,
        "schema-violation",
        &[("/amount", "format")],
        &["125.505"],
    );
    refused(
        &stack,
        with(&|p| p["currency"] = json!("XYZ")),
        422,
        "schema-violation",
        &[("/currency", "format")],
        &["XYZ"],
    );
    // A member name the schema does not declare never reaches the pointer.
    refused(
        &stack,
        with(&|p| p["metadata"]["<img src=x>"] = json!("y".repeat(100))),
        422,
        "schema-violation",
        &[("/metadata/*", "maxLength")],
        &["img", "yyyy"],
    );
    // Several violations at once are all listed.
    let response = refused(
        &stack,
        with(&|p| {
            p["amount"] = json!(1);
            p["currency"] = json!(2);
        }),
        422,
        "schema-violation",
        &[("/amount", "type"), ("/currency", "type")],
        &[],
    );
    assert_eq!(response.json()["errors"].as_array().unwrap().len(), 2);
}

#[test]
fn malformed_bodies_and_wrong_media_types_are_refused_before_the_schema() {
    let stack = start();
    let t = token();
    let json_body = |body: Vec<u8>| {
        pay(&stack, &t)
            .header("content-type", "application/json")
            .body(body)
    };
    refused(
        &stack,
        json_body(
            format!(r#"{{"amount": "1.00", "amount": "9999.00", "currency": "EUR", "creditor": {{"name": "a", "iban": "{IBAN}"}}}}"#)
                .into_bytes(),
        ),
        400,
        "body-malformed",
        &[],
        &["9999"],
    );
    let mut latin1 = br#"{"amount": "1.00", "currency": "EUR", "creditor": {"name": "M"#.to_vec();
    latin1.extend_from_slice(&[0xfc]);
    latin1.extend_from_slice(format!(r#"ller", "iban": "{IBAN}"}}}}"#).as_bytes());
    refused(
        &stack,
        json_body(latin1),
        400,
        "body-malformed",
        &[("", "utf-8")],
        &["ller"],
    );
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    refused(
        &stack,
        json_body(deep.into_bytes()),
        400,
        "json-limit-exceeded",
        &[("", "max_depth")],
        &[],
    );
    refused(
        &stack,
        pay(&stack, &t)
            .header("content-type", "text/plain")
            .body(good_payment().to_string()),
        415,
        "content-type-unsupported",
        &[],
        &[],
    );
    // JSON, but not the media type this route lists.
    refused(
        &stack,
        pay(&stack, &t)
            .header("content-type", "application/merge-patch+json")
            .body(good_payment().to_string()),
        415,
        "content-type-unsupported",
        &[],
        &[],
    );
    refused(
        &stack,
        pay(&stack, &t).header("content-type", "application/json"),
        400,
        "body-required",
        &[],
        &[],
    );
    refused(
        &stack,
        pay(&stack, &t).json(
            &json!({"reference": "x' OR '1'='1", "amount": "1", "currency": "EUR",
            "creditor": {"name": "a", "iban": IBAN}}),
        ),
        400,
        "input-suspicious",
        &[("/reference", "sql-injection")],
        &["OR '1'", "x'"],
    );
    refused(
        &stack,
        pay(&stack, &t).json(
            &json!({"reference": "a; cat /etc/hosts", "amount": "1", "currency": "EUR",
            "creditor": {"name": "a", "iban": IBAN}}),
        ),
        400,
        "input-suspicious",
        &[("/reference", "command-injection")],
        &["/etc/hosts"],
    );
}

#[test]
fn parameters_are_checked_in_the_headers_phase() {
    let stack = start();
    let t = token();
    refused(
        &stack,
        stack
            .envoy
            .post("/v1/customers/cust-A%3Cscript%3E/payments")
            .bearer(&t)
            .header("idempotency-key", KEY)
            .json(&good_payment()),
        400,
        "parameter-invalid",
        &[("/path/customer_id", "pattern")],
        &["script", "%3C"],
    );
    refused(
        &stack,
        stack
            .envoy
            .post("/v1/customers/cust-A/payments")
            .bearer(&t)
            .header("idempotency-key", "retry-me-please")
            .json(&good_payment()),
        400,
        "parameter-invalid",
        &[("/headers/idempotency-key", "format")],
        &["retry-me-please"],
    );
    refused(
        &stack,
        stack
            .envoy
            .post("/v1/customers/cust-A/payments")
            .bearer(&t)
            .json(&good_payment()),
        400,
        "parameter-invalid",
        &[("/headers/idempotency-key", "required")],
        &[],
    );
    let seen = forwarded(
        &stack,
        stack.envoy.get("/v1/quotes?currency=CHF&amount=10.50"),
    );
    assert_eq!(seen.path, "/v1/quotes?currency=CHF&amount=10.50");
    refused(
        &stack,
        stack.envoy.get("/v1/quotes?currency=chf"),
        400,
        "parameter-invalid",
        &[("/query/currency", "format")],
        &["chf"],
    );
    refused(
        &stack,
        stack.envoy.get("/v1/quotes?currency=EUR&amount=1e3"),
        400,
        "parameter-invalid",
        &[("/query/amount", "format")],
        &["1e3"],
    );
    refused(
        &stack,
        stack.envoy.get("/v1/quotes?currency=EUR&debug_user=root"),
        400,
        "parameter-invalid",
        &[("/query", "additionalProperties")],
        &["debug_user", "root"],
    );
    refused(
        &stack,
        stack.envoy.get("/v1/quotes?currency=EUR&currency=USD"),
        400,
        "parameter-invalid",
        &[("/query/currency", "duplicate")],
        &["USD"],
    );
    refused(
        &stack,
        stack
            .envoy
            .get("/v1/quotes?currency=EUR")
            .header("content-type", "application/json")
            .body("{}"),
        400,
        "body-forbidden",
        &[],
        &[],
    );
}

#[test]
fn size_is_enforced_while_the_body_streams_in() {
    let stack = start();
    let t = token();
    // 64 KiB in 1 KiB chunks to a 4 KiB route: refused, nothing reached the upstream.
    let big = format!(
        r#"{{"amount": "1.00", "currency": "EUR", "creditor": {{"name": "a", "iban": "{IBAN}"}}, "reference": "{}"}}"#,
        "x".repeat(64 * 1024)
    );
    refused(
        &stack,
        pay(&stack, &t)
            .header("content-type", "application/json")
            .body(big)
            .chunked(1024),
        413,
        "body-too-large",
        &[],
        &["xxxx"],
    );
    // The refusal comes while the body is still open: the final chunk is never sent, so only
    // a check on the data as it arrives can answer.
    let mut stream = TcpStream::connect(stack.envoy.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /v1/customers/cust-A/payments HTTP/1.1\r\nhost: api.example\r\nauthorization: Bearer {t}\r\n\
         idempotency-key: {KEY}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .unwrap();
    for _ in 0..6 {
        let chunk = "y".repeat(1024);
        write!(stream, "{:x}\r\n{chunk}\r\n", chunk.len()).unwrap();
        stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("body-too-large"), "{head}");
    drop(stream);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        stack.upstream.arrived(),
        1,
        "only /healthz reached the upstream"
    );
}

#[test]
fn hostile_nesting_costs_a_refusal_not_a_crash() {
    let stack = start();
    for deep in [
        "[".repeat(100_000),
        format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000)),
        "{\"a\":".repeat(50_000),
    ] {
        refused(
            &stack,
            stack
                .envoy
                .post("/v1/import")
                .header("content-type", "application/json")
                .body(deep),
            400,
            "json-limit-exceeded",
            &[("", "max_depth")],
            &[],
        );
    }
    // The VM survived: the next request is judged normally.
    let seen = forwarded(
        &stack,
        stack
            .envoy
            .post("/v1/import")
            .header("content-type", "application/json")
            .body(r#"{"rows": [[1, 2], [3, 4]]}"#),
    );
    assert_eq!(seen.body, r#"{"rows": [[1, 2], [3, 4]]}"#);
    refused(
        &stack,
        stack
            .envoy
            .post("/v1/import")
            .header("content-type", "application/json"),
        400,
        "body-required",
        &[],
        &[],
    );
}

#[test]
fn monitor_mode_logs_validation_refusals_and_forwards() {
    let mut cfg = validation_config();
    cfg["mode"] = json!("monitor");
    let stack = Stack::start(&cfg);
    let t = token();
    let mut p = good_payment();
    p["is_admin"] = json!(true);
    let seen = forwarded(&stack, pay(&stack, &t).json(&p));
    assert!(seen.body.contains("is_admin"));
    let logged = testkit::eventually(Duration::from_secs(5), || {
        stack
            .envoy
            .logs()
            .contains("monitor mode: would refuse (schema-violation)")
            .then_some(())
    });
    assert!(logged.is_some(), "{}", stack.envoy.logs());
}
