//! Request-side hardening of the body (issue 19, classes 3 to 5) through a real Envoy: what
//! finguard judges must be what the backend parses.
//!
//! - media types: `Content-Type` is parsed strictly (RFC 9110: one media type, tokens,
//!   parameters); lists, repeated headers, junk, non-UTF-8 charsets and types that are not
//!   `application/json` or `application/*+json` are 415, on routes with and without a
//!   `content_types` list;
//! - member names: names that collide under Unicode simple case folding (`amount` / `AMOUNT`,
//!   `kind` / `\u212Aind`) are refused like exact duplicates (400 `body-malformed`), unless the
//!   route says `member_names: "unique_exact"`;
//! - step-up currency: a currency that is not exactly an ISO 4217 code in use (`kwd`, `" KWD"`,
//!   Cyrillic look-alikes, numbers, missing) requires step-up instead of falling back to the
//!   default threshold.
//!
//! Every refusal is checked for its status, its problem type and for having left the upstream
//! untouched; legitimate neighbours are checked to pass, over HTTP/1.1 and HTTP/2.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{json, Value};
use testkit::config;
use testkit::problem::assert_problem;
use testkit::upstream::SeenRequest;
use testkit::{Algorithm, Request, Response, Stack, TokenBuilder};

/// | route | match | rules |
/// |---|---|---|
/// | import | POST /v1/import (public) | body required, any JSON media type, default member names |
/// | import-exact | POST /v1/import-exact (public) | as import, `member_names: "unique_exact"` |
/// | typed | POST /v1/typed (public) | `content_types: [application/json, application/merge-patch+json]` |
/// | payments | POST /v1/payments (JWT payments:write) | no schema; step-up (mfa) above 1000, KWD 300, JPY 150000 |
fn hardening_config() -> Value {
    json!({
        "mode": "enforce",
        "realm": "finguard",
        "providers": [config::hs_provider()],
        "routes": [
            {"id": "health", "match": {"methods": ["GET"], "path": "/healthz"}, "public": true},
            {"id": "import", "match": {"methods": ["POST"], "path": "/v1/import"}, "public": true,
             "request": {"body": "required"}},
            {"id": "import-exact", "match": {"methods": ["POST"], "path": "/v1/import-exact"},
             "public": true,
             "request": {"body": "required", "member_names": "unique_exact"}},
            {"id": "typed", "match": {"methods": ["POST"], "path": "/v1/typed"}, "public": true,
             "request": {"content_types": ["application/json", "Application/Merge-Patch+JSON"]}},
            {"id": "payments", "match": {"methods": ["POST"], "path": "/v1/payments"},
             "request": {"max_body_bytes": 4096},
             "auth": {"scopes": {"all": ["payments:write"]},
                      "step_up": {"amr_any": ["mfa"],
                                  "when": {"amount": "/amount", "gt": "1000",
                                           "currency": "/currency",
                                           "gt_by_currency": {"KWD": "300", "JPY": "150000"}}}}}
        ]
    })
}

fn start() -> Stack {
    let stack = Stack::start(&hardening_config());
    let response = stack.envoy.get("/healthz").send();
    assert_eq!(
        response.status,
        200,
        "finguard refused the configuration:\n{}",
        stack.envoy.logs()
    );
    stack
}

fn token(amr: &[&str]) -> String {
    TokenBuilder::new(Algorithm::HS256)
        .subject("cust-A")
        .scope("payments:write")
        .claim("amr", json!(amr))
        .sign()
}

/// Sends `request`; asserts a problem+json refusal with `status` and `slug` and that the
/// upstream saw nothing of it (not even the request head).
fn refused(stack: &Stack, request: Request, status: u16, slug: &str, what: &str) -> Response {
    let (arrived, count) = (stack.upstream.arrived(), stack.upstream.count());
    let response = request.send();
    assert!(
        response.status == status && testkit::problem::slug(&response).as_deref() == Some(slug),
        "{what}: expected {status} {slug}, got:\n{response:?}"
    );
    assert_problem(&response, status, slug);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        (stack.upstream.arrived(), stack.upstream.count()),
        (arrived, count),
        "{what}: refused, but the upstream saw the request"
    );
    response
}

fn forwarded(stack: &Stack, request: Request, what: &str) -> SeenRequest {
    let before = stack.upstream.count();
    let response = request.send();
    assert_eq!(
        response.status, 200,
        "{what}: expected to be forwarded, got:\n{response:?}"
    );
    assert_eq!(stack.upstream.count(), before + 1, "{what}");
    stack.upstream.last().unwrap()
}

/// The same over HTTP/2 (h2c, one request per connection): `status`/`slug` of a refusal (the
/// status also read from the problem body, in case the client cannot decode it).
fn h2_refused(stack: &Stack, request: testkit::h2::Request, status: u16, slug: &str, what: &str) {
    let (arrived, count) = (stack.upstream.arrived(), stack.upstream.count());
    let r = request.send().expect("HTTP/2 request");
    let body_status = serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v["status"].as_u64())
        .and_then(|s| u16::try_from(s).ok());
    assert_eq!(
        (r.status.or(body_status), r.slug().as_deref()),
        (Some(status), Some(slug)),
        "HTTP/2 {what}: {r:?} {}",
        r.text()
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        (stack.upstream.arrived(), stack.upstream.count()),
        (arrived, count),
        "HTTP/2 {what}: refused, but the upstream saw the request"
    );
}

fn h2_forwarded(stack: &Stack, request: testkit::h2::Request, what: &str) -> SeenRequest {
    let before = stack.upstream.count();
    let r = request.send().expect("HTTP/2 request");
    assert_eq!(r.status, Some(200), "HTTP/2 {what}: {r:?} {}", r.text());
    assert_eq!(stack.upstream.count(), before + 1, "HTTP/2 {what}");
    stack.upstream.last().unwrap()
}

fn h2_post(stack: &Stack, path: &str, body: &str) -> testkit::h2::Request {
    testkit::h2::Request::new(stack.envoy.addr(), "POST", path).body(body.to_owned())
}

// ---- class 3: media types -------------------------------------------------------------------

/// Content types a backend may read as something other than one JSON document.
const NOT_ONE_JSON_TYPE: &[&str] = &[
    // Lists: PHP, Rack and others read the first type (a form), finguard used to read the last.
    "application/x-www-form-urlencoded, a/b+json",
    "application/x-www-form-urlencoded,application/json",
    "application/json, text/plain",
    "multipart/form-data; boundary=x, application/json",
    // Other types with a +json suffix: Rack's multipart parser matches `multipart/...boundary=`.
    "multipart/form-data+json; boundary=x",
    "text/x+json",
    "a/b+json",
    // Junk and near misses.
    "application/json+x",
    "application/jsonx",
    "application/+json",
    "application /json",
    "application/ json",
    "application/js on",
    "application",
    "application/",
    "/json",
    "json",
    "*/*",
    "application/*",
    "application/json/x",
    "application/json; charset",
    "application/json; =utf-8",
    "application/json; charset=",
    "application/json; charset = utf-8",
    "application/json; charset=\"utf-8",
    "application/json; charset=\"utf\\-8\"",
    "application/json; charset=utf-8; charset=utf-16",
    "application/json; charset=utf-16",
    "application/json; charset=UTF-16LE",
    "application/json; charset=latin1",
    "application/json; charset=iso-8859-1",
    "application/json; charset=us-ascii",
    "application/json; charset=utf8",
    "application/json; a=b c",
];

/// Control and non-ASCII bytes: Envoy's codec may refuse them itself (400, not problem+json);
/// either way nothing reaches the upstream.
const NOT_TEXT: &[&str] = &[
    "application/json; \u{1}=x",
    "application/json\u{7f}",
    "appl\u{ec}cation/json",
    "application/json; charset=utf-8\u{a0}",
];

/// Content types that name one JSON document, UTF-8: forwarded.
const ONE_JSON_TYPE: &[&str] = &[
    "application/json",
    "Application/JSON",
    "APPLICATION/JSON; CHARSET=UTF-8",
    "application/json;charset=utf-8",
    "application/json ; charset=\"utf-8\"",
    "application/json;",
    "application/json; charset=utf-8;",
    "application/merge-patch+json",
    "application/vnd.payments.v2+json; version=2",
    "application/problem+json; profile=\"https://example.com/p\"",
];

#[test]
fn content_type_is_one_strict_json_media_type_over_http1() {
    let stack = start();
    let body = r#"{"amount": 10}"#;
    let post = |content_type: &str| {
        stack
            .envoy
            .post("/v1/import")
            .header("content-type", content_type)
            .body(body)
    };
    for content_type in NOT_ONE_JSON_TYPE {
        refused(
            &stack,
            post(content_type),
            415,
            "content-type-unsupported",
            content_type,
        );
    }
    for content_type in NOT_TEXT {
        let (arrived, count) = (stack.upstream.arrived(), stack.upstream.count());
        let response = post(content_type).send();
        assert!(
            matches!(response.status, 400 | 415),
            "{content_type:?}: {response:?}"
        );
        if response.status == 415 {
            assert_problem(&response, 415, "content-type-unsupported");
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            (stack.upstream.arrived(), stack.upstream.count()),
            (arrived, count),
            "{content_type:?} reached the upstream"
        );
    }
    for content_type in ONE_JSON_TYPE {
        let seen = forwarded(&stack, post(content_type), content_type);
        assert_eq!(seen.body, body);
    }
    // Two Content-Type headers: Envoy joins them with `,` (HTTP/1.1 and HTTP/2), a list.
    for (first, second) in [
        ("application/x-www-form-urlencoded", "application/json"),
        ("application/json", "application/x-www-form-urlencoded"),
        ("application/json", "application/json"),
    ] {
        refused(
            &stack,
            stack
                .envoy
                .post("/v1/import")
                .header("content-type", first)
                .header("content-type", second)
                .body(body),
            415,
            "content-type-unsupported",
            &format!("two headers {first} + {second}"),
        );
    }
    // No Content-Type, or an empty one, with a body: 415 (kept from before).
    refused(
        &stack,
        stack.envoy.post("/v1/import").body(body),
        415,
        "content-type-unsupported",
        "no content-type",
    );
    refused(
        &stack,
        post(""),
        415,
        "content-type-unsupported",
        "empty content-type",
    );
}

#[test]
fn explicit_content_types_use_the_same_strict_parser() {
    let stack = start();
    let body = r#"{"amount": 10}"#;
    let post = |content_type: &str| {
        stack
            .envoy
            .post("/v1/typed")
            .header("content-type", content_type)
            .body(body)
    };
    for content_type in [
        "application/x-www-form-urlencoded, application/json",
        "application/json, application/json",
        "application/json; charset=utf-16",
        "application/json; charset=\"utf\\-8\"",
        "application/json x",
        "application/vnd.payments+json",
        "text/plain",
    ] {
        refused(
            &stack,
            post(content_type),
            415,
            "content-type-unsupported",
            content_type,
        );
    }
    for content_type in [
        "application/json",
        "application/JSON; charset=utf-8",
        "application/merge-patch+json",
        "APPLICATION/MERGE-PATCH+JSON",
    ] {
        forwarded(&stack, post(content_type), content_type);
    }
}

#[test]
fn content_type_is_one_strict_json_media_type_over_http2() {
    let stack = start();
    let body = r#"{"amount": 10}"#;
    let post = |content_type: &str| {
        h2_post(&stack, "/v1/import", body).header("content-type", content_type)
    };
    for content_type in [
        "application/x-www-form-urlencoded, a/b+json",
        "multipart/form-data+json; boundary=x",
        "application/json; charset=utf-16",
        "application/json+x",
    ] {
        h2_refused(
            &stack,
            post(content_type),
            415,
            "content-type-unsupported",
            content_type,
        );
    }
    // Two content-type header fields in one HEADERS frame.
    for (first, second) in [
        ("application/x-www-form-urlencoded", "application/json"),
        ("application/json", "application/x-www-form-urlencoded"),
    ] {
        h2_refused(
            &stack,
            post(first).header("content-type", second),
            415,
            "content-type-unsupported",
            &format!("two headers {first} + {second}"),
        );
    }
    for content_type in [
        "application/json",
        "Application/Merge-Patch+JSON; charset=UTF-8",
    ] {
        let seen = h2_forwarded(&stack, post(content_type), content_type);
        assert_eq!(seen.body, body);
    }
}

// ---- class 4: ambiguous member names ----------------------------------------------------------

/// Bodies whose member names collide under case folding (or exactly, after unescaping).
const AMBIGUOUS: &[(&str, &str)] = &[
    ("amount / AMOUNT", r#"{"amount": 1, "AMOUNT": 5000}"#),
    ("amount / Amount", r#"{"Amount": 5000, "amount": 1}"#),
    (
        "debtor_account / DEBTOR_ACCOUNT",
        r#"{"debtor_account": "A", "DEBTOR_ACCOUNT": "B"}"#,
    ),
    (
        "nested",
        r#"{"payment": {"creditor": {"iban": "A", "IBAN": "B"}}}"#,
    ),
    (
        "in an array of objects",
        r#"{"items": [{"id": 1}, {"id": 2, "iD": 3}]}"#,
    ),
    (
        "escaped exact duplicate",
        r#"{"amount": 1, "am\u006fun\u0074": 2}"#,
    ),
    ("escaped case variant", r#"{"amount": 1, "\u0041MOUNT": 2}"#),
    (
        "Kelvin sign (escaped)",
        r#"{"kind": "a", "\u212Aind": "b"}"#,
    ),
    (
        "Kelvin sign (raw)",
        "{\"kind\": \"a\", \"\u{212A}IND\": \"b\"}",
    ),
    (
        "long s (escaped)",
        r#"{"source_account": "A", "\u017Fource_account": "B"}"#,
    ),
    (
        "long s (raw)",
        "{\"status\": \"ok\", \"\u{17F}tatus\": \"no\"}",
    ),
    ("dotless i", "{\"iban\": \"A\", \"\u{131}ban\": \"B\"}"),
    ("Greek sigma forms", "{\"\u{3a3}\": 1, \"\u{3c2}\": 2}"),
    (
        "sharp s and capital sharp s",
        "{\"stra\u{df}e\": 1, \"STRA\u{1e9e}E\": 2}",
    ),
];

/// Bodies whose member names are distinct to every binder: forwarded.
const DISTINCT: &[(&str, &str)] = &[
    ("different names", r#"{"amount": 1, "amount_minor": 100}"#),
    (
        "same name in sibling objects",
        r#"{"a": {"x": 1}, "b": {"X": 2}}"#,
    ),
    (
        "same name in array items",
        r#"{"items": [{"id": 1}, {"ID": 2}]}"#,
    ),
    // No binder normalises names: precomposed and decomposed e-acute are two names everywhere.
    (
        "NFC and NFD spellings",
        "{\"caf\u{e9}\": 1, \"cafe\u{301}\": 2}",
    ),
    ("fullwidth letters", "{\"amount\": 1, \"\u{ff41}mount\": 2}"),
    ("sharp s and ss", "{\"stra\u{df}e\": 1, \"strasse\": 2}"),
];

fn deep_collision(depth: usize) -> String {
    format!(
        "{}{{\"leaf\": 1, \"LEAF\": 2}}{}",
        "{\"n\": ".repeat(depth),
        "}".repeat(depth)
    )
}

fn wide_collision(members: usize) -> String {
    let mut text = String::from("{");
    for i in 0..members {
        text.push_str(&format!("\"field_{i}\": {i}, "));
    }
    text.push_str("\"FIELD_7\": 0}");
    text
}

#[test]
fn member_names_that_collide_under_case_folding_are_refused_over_http1() {
    let stack = start();
    let post = |path: &str, body: &str| {
        stack
            .envoy
            .post(path)
            .header("content-type", "application/json")
            .body(body.to_owned())
    };
    let deep = deep_collision(20);
    let wide = wide_collision(40);
    let mut ambiguous: Vec<(&str, &str)> = AMBIGUOUS.to_vec();
    ambiguous.push(("deep nesting", &deep));
    ambiguous.push(("wide object (sorted path)", &wide));
    for (what, body) in &ambiguous {
        refused(
            &stack,
            post("/v1/import", body),
            400,
            "body-malformed",
            what,
        );
    }
    for (what, body) in DISTINCT {
        let seen = forwarded(&stack, post("/v1/import", body), what);
        assert_eq!(&seen.body, body);
    }
    // The route that opts out accepts case variants, never exact duplicates.
    for (what, body) in [
        ("amount / AMOUNT", r#"{"amount": 1, "AMOUNT": 5000}"#),
        ("Kelvin sign", r#"{"kind": "a", "\u212Aind": "b"}"#),
    ] {
        forwarded(&stack, post("/v1/import-exact", body), what);
    }
    for (what, body) in [
        ("exact duplicate", r#"{"amount": 1, "amount": 5000}"#),
        (
            "escaped exact duplicate",
            r#"{"amount": 1, "am\u006fun\u0074": 2}"#,
        ),
    ] {
        refused(
            &stack,
            post("/v1/import-exact", body),
            400,
            "body-malformed",
            what,
        );
    }
    // On an authenticated route with body-bound rules, before any rule reads the body.
    let t = token(&["pwd"]);
    refused(
        &stack,
        stack
            .envoy
            .post("/v1/payments")
            .bearer(&t)
            .header("content-type", "application/json")
            .body(r#"{"amount": 10, "AMOUNT": 5000, "currency": "EUR"}"#),
        400,
        "body-malformed",
        "payments amount / AMOUNT",
    );
    refused(
        &stack,
        stack
            .envoy
            .post("/v1/payments")
            .bearer(&t)
            .header("content-type", "application/json")
            .body(r#"{"amount": 500, "currency": "EUR", "Currency": "KWD"}"#),
        400,
        "body-malformed",
        "payments currency / Currency",
    );
}

#[test]
fn member_names_that_collide_under_case_folding_are_refused_over_http2() {
    let stack = start();
    let post = |path: &str, body: &str| {
        h2_post(&stack, path, body).header("content-type", "application/json")
    };
    for (what, body) in [
        ("amount / AMOUNT", r#"{"amount": 1, "AMOUNT": 5000}"#),
        ("Kelvin sign", r#"{"kind": "a", "\u212Aind": "b"}"#),
        (
            "nested",
            r#"{"a": [{"debtor_account": "A", "Debtor_Account": "B"}]}"#,
        ),
    ] {
        h2_refused(
            &stack,
            post("/v1/import", body),
            400,
            "body-malformed",
            what,
        );
    }
    let fine = r#"{"a": {"x": 1}, "b": {"X": 2}}"#;
    assert_eq!(
        h2_forwarded(&stack, post("/v1/import", fine), "distinct").body,
        fine
    );
    h2_forwarded(
        &stack,
        post("/v1/import-exact", r#"{"amount": 1, "AMOUNT": 5000}"#),
        "exact route",
    );
}

// ---- class 5: step-up currency ----------------------------------------------------------------

/// Currencies that are not exactly an ISO 4217 code in use (JSON text of the member value).
const NOT_A_CURRENCY: &[(&str, &str)] = &[
    ("lower case", r#""kwd""#),
    ("mixed case", r#""Kwd""#),
    ("leading space", r#"" KWD""#),
    ("trailing space", r#""KWD ""#),
    ("trailing NUL", r#""KWD\u0000""#),
    ("trailing newline", r#""KWD\n""#),
    ("Cyrillic Ka", r#""\u041aWD""#),
    ("fullwidth", r#""\uff2b\uff37\uff24""#),
    ("four letters", r#""KWDD""#),
    ("two letters", r#""KW""#),
    ("empty", r#""""#),
    ("not in use", r#""KWX""#),
    ("number", "414"),
    ("null", "null"),
    ("array", r#"["KWD"]"#),
    ("object", r#"{"code": "KWD"}"#),
    ("boolean", "true"),
];

#[test]
fn step_up_currency_that_is_not_an_iso_4217_code_fails_closed_over_http1() {
    let stack = start();
    let plain = token(&["pwd"]);
    let mfa = token(&["pwd", "mfa"]);
    let pay = |token: &str, body: String| {
        stack
            .envoy
            .post("/v1/payments")
            .bearer(token)
            .header("content-type", "application/json")
            .body(body)
    };
    let body =
        |amount: &str, currency: &str| format!(r#"{{"amount": {amount}, "currency": {currency}}}"#);
    // The rule as configured: KWD above 300, others above 1000.
    refused(
        &stack,
        pay(&plain, body("500", r#""KWD""#)),
        401,
        "step-up-required",
        "KWD 500",
    );
    forwarded(&stack, pay(&plain, body("250", r#""KWD""#)), "KWD 250");
    forwarded(&stack, pay(&plain, body("500", r#""EUR""#)), "EUR 500");
    // An escaped letter is the letter: every JSON parser reads `KWD` here.
    forwarded(
        &stack,
        pay(&plain, body("250", r#""\u004bWD""#)),
        "escaped K, 250",
    );
    refused(
        &stack,
        pay(&plain, body("500", r#""\u004bWD""#)),
        401,
        "step-up-required",
        "escaped K, 500",
    );
    // A currency finguard cannot read as a code: step-up, not the default threshold of 1000.
    for (what, currency) in NOT_A_CURRENCY {
        refused(
            &stack,
            pay(&plain, body("500", currency)),
            401,
            "step-up-required",
            what,
        );
        // Fail closed means step-up, not a refusal: with mfa it passes.
        forwarded(&stack, pay(&mfa, body("500", currency)), what);
    }
    refused(
        &stack,
        pay(&plain, r#"{"amount": 500}"#.to_owned()),
        401,
        "step-up-required",
        "currency missing",
    );
    // Neighbours of the amount: unreadable amounts fail closed too.
    let long = format!("\"{}\"", "9".repeat(65));
    for (what, amount) in [
        ("leading plus", r#""+500""#),
        ("exponent number", "5e2"),
        ("exponent string", r#""5e2""#),
        ("space inside the string", r#"" 500""#),
        ("comma", r#""1,500""#),
        ("escaped digits", r#""\u0035\u0030\u0030""#),
        (
            "sixty-five digits (a number that long is over max_number_chars)",
            &long,
        ),
        ("arabic-indic digits", r#""\u0665\u0660\u0660""#),
        ("boolean", "true"),
        ("array", "[500]"),
    ] {
        refused(
            &stack,
            pay(&plain, body(amount, r#""EUR""#)),
            401,
            "step-up-required",
            what,
        );
    }
    for (what, amount) in [
        ("string", r#""500.00""#),
        ("negative zero", "-0"),
        ("leading zeros", r#""000500""#),
    ] {
        forwarded(&stack, pay(&plain, body(amount, r#""EUR""#)), what);
    }
    // Case variants of the members themselves are class 4: refused as ambiguous.
    refused(
        &stack,
        pay(
            &plain,
            r#"{"amount": 500, "CURRENCY": "KWD", "currency": "EUR"}"#.into(),
        ),
        400,
        "body-malformed",
        "currency / CURRENCY",
    );
    refused(
        &stack,
        pay(
            &plain,
            r#"{"amount": 500, "currency": "KWD", "currency": "EUR"}"#.into(),
        ),
        400,
        "body-malformed",
        "duplicate currency",
    );
}

#[test]
fn step_up_currency_that_is_not_an_iso_4217_code_fails_closed_over_http2() {
    let stack = start();
    let plain = token(&["pwd"]);
    let pay = |body: &str| {
        h2_post(&stack, "/v1/payments", body)
            .bearer(&plain)
            .header("content-type", "application/json")
    };
    for (what, body) in [
        ("lower case", r#"{"amount": 500, "currency": "kwd"}"#),
        (
            "trailing NUL",
            r#"{"amount": 500, "currency": "KWD\u0000"}"#,
        ),
        ("Cyrillic Ka", r#"{"amount": 500, "currency": "\u041aWD"}"#),
        ("number", r#"{"amount": 500, "currency": 414}"#),
    ] {
        h2_refused(&stack, pay(body), 401, "step-up-required", what);
    }
    let fine = r#"{"amount": 250, "currency": "KWD"}"#;
    assert_eq!(h2_forwarded(&stack, pay(fine), "KWD 250").body, fine);
}
