//! Response protection through a real Envoy (issue 5): field rules (mask, PAN, remove, replace,
//! tokenise), detectors (card numbers, IBANs, e-mail addresses), unmasking by scope, header
//! scrubbing, sanitised upstream 5xx, and the fail-closed cases (compressed or oversized bodies),
//! against an upstream serving realistic account, card and payment JSON
//! (`testkit::json_upstream`), with multi-chunk bodies.
//!
//! Each test starts its own Envoy (2 workers) on fresh loopback ports. They need the built module
//! (`make build`) and Envoy (`make envoy` or `ENVOY_BIN`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use testkit::config::hs_provider;
use testkit::json_upstream::{Fixture, JsonUpstream};
use testkit::problem::assert_problem;
use testkit::{Algorithm, Envoy, Request, Response, TokenBuilder};

/// base64 of 32 bytes: the tokenisation key of these tests.
const TOKEN_KEY: &str = "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k=";

const ACCOUNTS: &str = r#"{
  "customer": {"id": "cust-42", "name": "Jane Doe", "email": "jane.doe@bank.example"},
  "accounts": [
    {"id": "acc-1", "account_number": "DE-0012345678", "iban": "DE89370400440532013000",
     "customer_id": "cust-42", "internal_ref": "core-7731/branch-12", "ssn": "123-45-6789",
     "balance": {"amount": 12345678901234567890, "rate": 0.1000000000000000055511, "currency": "EUR"},
     "card": {"pan": "4111 1111 1111 1111", "expiry": "12/29"}},
    {"id": "acc-2", "account_number": "DE-0098765432", "iban": "GB82 WEST 1234 5698 7654 32",
     "customer_id": "cust-42", "internal_ref": "core-7732/branch-12", "ssn": "987-65-4321",
     "balance": {"amount": 10.00, "currency": "EUR"},
     "card": {"pan": "5500000000000004", "expiry": "01/30"}}
  ],
  "order_id": "4111111111111112",
  "next": null
}"#;

const PAYMENT: &str = r#"{"payment_id": "pay-981", "status": "settled",
  "debtor": {"iban": "FR1420041010050500013M02606", "card": 4111111111111111},
  "remittance": "Invoice 2026-11 paid with card 3782-822463-10005, questions to billing@shop.example",
  "reference": "RF712348231", "amount": "149.99"}"#;

fn config() -> Value {
    json!({
        "providers": [hs_provider()],
        "response": {
            "detect": ["pan", "iban", {"detector": "email", "action": "mask"}],
            "headers": {"remove": ["x-backend-version"]},
            "tokenise_key": TOKEN_KEY
        },
        "routes": [
            {"id": "accounts", "match": {"methods": ["GET", "HEAD"], "path": "/v1/accounts"},
             "auth": {"scopes": {"all": ["accounts:read"]}},
             "response": {"rules": [
                {"pointer": "/accounts/*/account_number", "action": "mask", "keep_last": 4, "unmask_scope": "pii:read"},
                {"pointer": "/accounts/*/iban", "action": "mask", "keep_last": 4, "unmask_scope": "pii:read"},
                {"pointer": "/accounts/*/internal_ref", "action": "remove"},
                {"pointer": "/accounts/*/ssn", "action": "replace", "value": "[redacted]"},
                {"pointer": "/accounts/*/customer_id", "action": "tokenise", "prefix": "cus_"},
                {"pointer": "/customer/id", "action": "tokenise", "prefix": "cus_"},
                {"pointer": "/accounts/*/card/pan", "action": "pan"}
             ]}},
            {"id": "accounts-length", "match": {"methods": ["GET"], "path": "/v1/accounts-length"},
             "auth": {"scopes": {"all": ["accounts:read"]}},
             "response": {"rules": [
                {"pointer": "/accounts/*/internal_ref", "action": "remove"}
             ]}},
            {"id": "payment", "match": {"methods": ["GET"], "path": "/v1/payments/{id}"},
             "auth": {"scopes": {"all": ["accounts:read"]}}},
            {"id": "small", "match": {"methods": ["GET"], "prefix": "/v1/small/"},
             "auth": {"scopes": {"all": ["accounts:read"]}},
             "response": {"max_body_bytes": 4096}},
            {"id": "raw-errors", "match": {"methods": ["GET"], "path": "/v1/debug/fail"},
             "auth": {"scopes": {"all": ["accounts:read"]}},
             "response": {"upstream_errors": "pass", "non_json": "pass"}},
            {"id": "other", "match": {"prefix": "/v1/"},
             "auth": {"scopes": {"all": ["accounts:read"]}}},
            {"id": "rates", "match": {"methods": ["GET"], "path": "/public/rates"}, "public": true}
        ]
    })
}

fn fixtures() -> Vec<(&'static str, Fixture)> {
    let big: String = format!(
        "{{\"items\": [{}]}}",
        (0..200)
            .map(|i| format!("{{\"n\": {i}, \"pan\": \"4111111111111111\"}}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    vec![
        (
            "/v1/accounts",
            Fixture::json(ACCOUNTS)
                .header("server", "legacy-core/4.2")
                .header("x-powered-by", "PHP/8.1")
                .header("x-backend-version", "2026.11.3")
                .header("cache-control", "public, max-age=600")
                .chunked(97),
        ),
        // The same document with content-length instead of chunks.
        ("/v1/accounts-length", Fixture::json(ACCOUNTS)),
        ("/v1/payments/pay-981", Fixture::json(PAYMENT)),
        (
            "/v1/payments/charset",
            Fixture::new(200, "application/problem+json; charset=utf-8", PAYMENT),
        ),
        (
            "/v1/gzip",
            Fixture::json(vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]).header("content-encoding", "gzip"),
        ),
        ("/v1/small/big", Fixture::json(big.clone()).chunked(1000)),
        ("/v1/small/big-length", Fixture::json(big)),
        ("/v1/small/ok", Fixture::json(r#"{"pan": "4111111111111111"}"#)),
        (
            "/v1/fail",
            Fixture::new(
                500,
                "text/html",
                "<h1>NullPointerException</h1><pre>at com.bank.core.Ledger.post(Ledger.java:42) db=10.0.3.7</pre>",
            )
            .header("x-powered-by", "Servlet/4.0"),
        ),
        (
            "/v1/unavailable",
            Fixture::new(503, "application/json", r#"{"error": "pool exhausted", "host": "db-7"}"#)
                .header("retry-after", "30"),
        ),
        (
            "/v1/debug/fail",
            Fixture::new(500, "text/plain", "Traceback: ledger.py line 7"),
        ),
        (
            "/v1/report.csv",
            Fixture::new(200, "text/csv", "id,pan\n1,4111111111111111\n"),
        ),
        ("/v1/empty", Fixture::new(204, "application/json", "")),
        ("/v1/not-modified", Fixture::new(304, "application/json", "")),
        ("/v1/blank", Fixture::json("")),
        ("/v1/malformed", Fixture::json(r#"{"pan": "4111111111111111""#)),
        (
            "/public/rates",
            Fixture::json(r#"{"EURUSD": 1.0834567890123456789, "contact": "fx@bank.example"}"#),
        ),
    ]
}

struct Env {
    envoy: Envoy,
    upstream: JsonUpstream,
}

/// The audit event of the request with this id (Envoy's `x-request-id` on the response).
fn audit_of(env: &Env, response: &testkit::Response) -> Value {
    let id = response
        .header("x-request-id")
        .expect("x-request-id")
        .to_owned();
    testkit::eventually(std::time::Duration::from_secs(5), || {
        env.envoy
            .logs()
            .lines()
            .filter_map(|l| l.split_once("finguard-audit ").map(|(_, json)| json))
            .filter_map(|json| serde_json::from_str::<Value>(json.trim()).ok())
            .find(|e| e["request_id"] == id.as_str())
    })
    .unwrap_or_else(|| panic!("no audit event for {id}"))
}

fn start() -> Env {
    let upstream = JsonUpstream::start(fixtures()).expect("starting the fixture upstream");
    let envoy = Envoy::builder(&config())
        .upstream(upstream.addr())
        .start()
        .unwrap_or_else(|err| panic!("starting Envoy: {err:#}"));
    Env { envoy, upstream }
}

fn token(scope: &str) -> String {
    TokenBuilder::new(Algorithm::HS256).scope(scope).sign()
}

fn get(env: &Env, path: &str, scope: &str) -> Response {
    env.envoy.get(path).bearer(&token(scope)).send()
}

#[test]
fn field_rules_and_detectors_redact_a_chunked_accounts_response() {
    let env = start();
    let r = get(&env, "/v1/accounts", "accounts:read");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let body = r.json();
    let first = &body["accounts"][0];
    assert_eq!(first["account_number"], "*********5678");
    assert_eq!(first["iban"], "******************3000");
    assert!(first.get("internal_ref").is_none());
    assert_eq!(first["ssn"], "[redacted]");
    assert_eq!(first["card"]["pan"], "4111 11** **** 1111");
    assert_eq!(first["card"]["expiry"], "12/29");
    assert_eq!(body["accounts"][1]["card"]["pan"], "550000******0004");
    // A field mask keeps the last characters as written (here with the print-form space).
    assert_eq!(body["accounts"][1]["iban"], "***********************4 32");
    let customer = first["customer_id"].as_str().unwrap();
    assert!(customer.starts_with("cus_") && customer != "cust-42");
    assert_eq!(body["customer"]["id"], customer);
    // The e-mail detector runs over strings the rules do not cover.
    assert_eq!(body["customer"]["email"], "j*******@bank.example");
    // Order ids (Luhn-invalid) and everything else untouched, numbers byte for byte.
    assert_eq!(body["order_id"], "4111111111111112");
    assert!(text.contains("\"amount\": 12345678901234567890"), "{text}");
    assert!(
        text.contains("\"rate\": 0.1000000000000000055511"),
        "{text}"
    );
    assert!(text.contains("\"amount\": 10.00"), "{text}");
    for secret in [
        "0012345678",
        "DE89370400440532013000",
        "core-7731",
        "123-45-6789",
        "4111 1111 1111 1111",
        "jane.doe@",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    // content-length matches the rewritten body (or the body is chunked).
    if let Some(length) = r.header("content-length") {
        assert_eq!(length.parse::<usize>().unwrap(), r.body.len());
    }
    // The upstream was asked not to compress.
    let seen = env.upstream.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.header_all("accept-encoding"), ["identity"]);
    // The audit line counts what was redacted, and carries none of it.
    let audit = audit_of(&env, &r);
    assert_eq!(audit["decision"], "allow");
    assert!(audit["redacted_fields"].as_u64().unwrap() >= 10, "{audit}");
    let line = audit.to_string();
    assert!(
        !line.contains("0012345678") && !line.contains("4111"),
        "{line}"
    );
}

#[test]
fn content_length_describes_the_rewritten_body_whether_its_length_changed_or_not() {
    let env = start();
    let r = get(&env, "/v1/accounts-length", "accounts:read");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["accounts"][0].get("internal_ref").is_none());
    assert_ne!(r.body.len(), ACCOUNTS.len());
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    // Masking that keeps the length leaves the upstream's header as it was (finguard skips
    // that host call): it still describes the body.
    let r = get(&env, "/v1/small/ok", "accounts:read");
    assert_eq!(r.text(), r#"{"pan": "411111******1111"}"#);
    assert_eq!(r.header("content-length"), Some("27"));
}

#[test]
fn unmask_scope_shows_clear_values_to_its_holders_only() {
    let env = start();
    let r = get(&env, "/v1/accounts", "accounts:read pii:read");
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["accounts"][0]["account_number"], "DE-0012345678");
    assert_eq!(body["accounts"][0]["iban"], "DE89370400440532013000");
    // Other rules still hold for pii:read holders.
    assert!(body["accounts"][0].get("internal_ref").is_none());
    assert_eq!(body["accounts"][0]["card"]["pan"], "4111 11** **** 1111");
}

#[test]
fn tokens_are_stable_across_requests_workers_and_envoys() {
    let env = start();
    let tokens: Vec<String> = (0..16)
        .map(|_| {
            let r = get(&env, "/v1/accounts", "accounts:read");
            r.json()["accounts"][0]["customer_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    // Another Envoy (other VMs, same configuration): the same token.
    let other = start();
    let r = get(&other, "/v1/accounts", "accounts:read");
    assert_eq!(r.json()["accounts"][0]["customer_id"], tokens[0]);
}

#[test]
fn detectors_mask_numbers_embedded_in_text_on_routes_without_rules() {
    let env = start();
    for path in ["/v1/payments/pay-981", "/v1/payments/charset"] {
        let r = get(&env, path, "accounts:read");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let body = r.json();
        assert_eq!(body["debtor"]["iban"], "***********************2606");
        assert_eq!(body["debtor"]["card"], "411111******1111");
        assert_eq!(
            body["remittance"],
            "Invoice 2026-11 paid with card 3782-82****-*0005, questions to b******@shop.example"
        );
        // A creditor reference (not a card, not an IBAN) and the amount are untouched.
        assert_eq!(body["reference"], "RF712348231");
        assert_eq!(body["amount"], "149.99");
        // The upstream sent content-length; it now describes the rewritten body.
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
    }
}

#[test]
fn headers_are_scrubbed_and_security_headers_added() {
    let env = start();
    let r = get(&env, "/v1/accounts", "accounts:read");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-powered-by"), None);
    assert_eq!(r.header("x-backend-version"), None);
    assert_ne!(r.header("server"), Some("legacy-core/4.2"));
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header_all("cache-control"), ["no-store"]);
    // A public route: scrubbed and hardened, but its caching left to the upstream.
    let r = env.envoy.get("/public/rates").send();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("cache-control"), None);
    assert_eq!(r.json()["contact"], "f*@bank.example");
    assert!(r.text().contains("1.0834567890123456789"));
}

#[test]
fn upstream_5xx_bodies_are_replaced_by_a_problem_with_the_request_id() {
    let env = start();
    let r = get(&env, "/v1/fail", "accounts:read");
    assert_problem(&r, 500, "upstream-failure");
    // The id Envoy generated, which the upstream logged too: the way to find its stack trace.
    let seen = env.upstream.seen();
    let id = seen.last().unwrap().header_all("x-request-id")[0].to_owned();
    assert_eq!(r.json()["request_id"], id);
    for leak in ["NullPointerException", "Ledger.java", "10.0.3.7", "Servlet"] {
        assert!(!format!("{r:?}").contains(leak), "{leak} leaked: {r:?}");
    }
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let r = get(&env, "/v1/unavailable", "accounts:read");
    assert_problem(&r, 503, "upstream-failure");
    assert_eq!(r.header("retry-after"), Some("30"));
    assert!(!r.text().contains("db-7"));
    // A route that opts out passes the upstream's body.
    let r = get(&env, "/v1/debug/fail", "accounts:read");
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), "Traceback: ledger.py line 7");
}

#[test]
fn compressed_oversized_and_malformed_bodies_fail_closed() {
    let env = start();
    let r = get(&env, "/v1/gzip", "accounts:read");
    assert_problem(&r, 502, "response-unredactable");
    assert!(!r.body.starts_with(&[0x1f, 0x8b]));
    let audit = audit_of(&env, &r);
    assert_eq!(
        (
            audit["decision"].as_str(),
            audit["reason"].as_str(),
            audit["status"].as_u64()
        ),
        (Some("refuse"), Some("response-unredactable"), Some(502)),
        "{audit}"
    );
    for path in ["/v1/small/big", "/v1/small/big-length"] {
        let r = get(&env, path, "accounts:read");
        assert_problem(&r, 502, "response-unredactable");
        assert!(!r.text().contains("4111111111111111"), "{path}");
    }
    let r = get(&env, "/v1/small/ok", "accounts:read");
    assert_eq!(r.json()["pan"], "411111******1111");
    let r = get(&env, "/v1/malformed", "accounts:read");
    assert_problem(&r, 502, "response-unredactable");
    assert!(!r.text().contains("4111111111111111"));
}

#[test]
fn bodiless_responses_pass_untouched_and_non_json_is_refused() {
    let env = start();
    let r = env
        .envoy
        .request("HEAD", "/v1/accounts")
        .bearer(&token("accounts:read"))
        .send();
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    for (path, status) in [
        ("/v1/empty", 204),
        ("/v1/not-modified", 304),
        ("/v1/blank", 200),
    ] {
        let r = get(&env, path, "accounts:read");
        assert_eq!(r.status, status, "{path}");
        assert!(r.body.is_empty(), "{path}: {r:?}");
    }
    // Not JSON on a route that redacts: what finguard cannot read cannot be redacted, so it
    // does not leave (issue 21; this answer was 200 with the PAN in clear before).
    let r = get(&env, "/v1/report.csv", "accounts:read");
    assert_problem(&r, 502, "response-unredactable");
    assert!(!r.text().contains("4111111111111111"));
    // Refusals are finguard's own responses, not rewritten.
    let r = env.envoy.get("/v1/accounts").send();
    assert_problem(&r, 401, "token-missing");
}

/// Starts Envoy with `cfg`, which finguard must refuse; returns the refusal log line after
/// checking that requests fail closed (503).
fn refused(cfg: &Value) -> String {
    let envoy = Envoy::builder(cfg)
        .start()
        .unwrap_or_else(|err| panic!("{err:#}"));
    let line = envoy
        .wait_for_log(
            "finguard: configuration refused:",
            std::time::Duration::from_secs(10),
        )
        .unwrap_or_else(|err| panic!("{err:#}"));
    let r = Request::new(envoy.addr(), "GET", "/public/rates").send();
    assert_eq!(r.status, 503, "{r:?}");
    line
}

#[test]
fn response_configuration_errors_name_their_path_and_never_the_key() {
    let mut cfg = config();
    cfg["routes"][0]["response"]["rules"][6]["keep_first"] = json!(8);
    let line = refused(&cfg);
    assert!(
        line.contains("routes[0].response.rules[6].keep_first"),
        "{line}"
    );
    let mut cfg = config();
    cfg["response"]["tokenise_key"] = json!("c2hvcnQta2V5LW9ubHk=");
    let line = refused(&cfg);
    assert!(line.contains("response.tokenise_key"), "{line}");
    assert!(
        !line.contains("c2hvcnQ"),
        "the key must never be logged: {line}"
    );
}
