//! Authorization through a real Envoy (issue 3): which credentials a route accepts, API keys,
//! claims and roles, object-level binding of path and body ids to the token (BOLA), step-up for
//! high-value payments (RFC 9470), body limits on routes that read the body, path tricks (over
//! HTTP/1.1 and HTTP/2) that must not reach a protected route unchecked, host variants,
//! deny-by-default for unknown routes, requests held for their body or for keys (never released
//! early, not even by HTTP/2 trailers), and per-route monitor mode.
//!
//! Each test starts its own Envoy (`testkit::Stack`) on fresh loopback ports, so tests run in
//! parallel; requests are grouped per Stack to keep the suite fast. They need the built module
//! (`make build`) and Envoy (`make envoy` or `ENVOY_BIN`). The configuration is [`authz_config`]:
//! provider `hs` (inline HS256, most tokens here) and `idp` (remote JWKS, RS256 in the matrix),
//! three API keys, and the routes listed there.
//!
//! Every refusal is also checked to have left the upstream untouched: no request line, no body.

// The root crate denies these lints for the filter; test helpers outside #[test] functions
// panic on purpose, with the message a failing test should show.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use testkit::config::{self, set};
use testkit::problem::{
    assert_invalid_request, assert_no_token, assert_problem, challenge, parse_challenge,
};
use testkit::tokens::now;
use testkit::upstream::SeenRequest;
use testkit::{Algorithm, Request, Response, Stack, TokenBuilder};

// ---- configuration --------------------------------------------------------------------------

/// API key `batch-1` (client acme-batch, scopes payments:read reports:read).
const KEY_BATCH: &str = "fgk_live_7Qm2vX9pLr4TzK8wNc3Hs6Yd";
/// API key `readonly-1` (client acme-readonly, scope payments:read only).
const KEY_READONLY: &str = "fgk_live_Jd5Rb1Wq8Ue3Ny7Kp2Lz9Ct4";
/// API key `old-1`, disabled (revoked).
const KEY_DISABLED: &str = "fgk_live_Xo6Gh2Ms9Va4Fp7Ty1Bk5Ed3";
/// Never configured.
const KEY_UNKNOWN: &str = "fgk_live_Zz0Zz0Zz0Zz0Zz0Zz0Zz0Zz0";

/// Lowercase hex SHA-256, the only form API keys take in the configuration.
fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The configuration of this file:
///
/// | route | match | requirement |
/// |---|---|---|
/// | health | GET /healthz | public |
/// | whoami | GET /v1/whoami | JWT (default credentials), no scope |
/// | reports | GET /v1/reports | API key only, scope reports:read |
/// | batches | GET /v1/batches | JWT or API key, scope payments:read |
/// | get-account | GET /v1/accounts/{account_id} | account_id in the `accounts` claim (array) |
/// | list-payments | GET /v1/customers/{customer_id}/payments | customer_id == sub |
/// | create-payment | POST /v1/customers/{customer_id}/payments | customer_id == sub, body /debtor_customer == sub, step-up (amr mfa/hwk) when /amount > 1000 (JPY: 150000), body ≤ 1024 bytes |
/// | transfer | POST /v1/transfers | step-up always: acr gold, amr mfa/hwk, auth_time within 300 s |
/// | ledger | GET /v1/ledger | claims: tenant == acme, country in DE/FR, groups contains payments |
/// | admin | GET prefix /v1/admin/ | roles: all staff, any admin/auditor |
/// | admin-health | GET /v1/admin/health | public (more specific than the prefix) |
/// | statements | GET /v1/customers/{customer_id}/statements | customer_id == sub, route in monitor mode |
/// | standing-orders | POST /v1/customers/{customer_id}/standing-orders | customer_id and body /debtor_customer == sub, body ≤ 256 bytes, monitor mode |
/// | internal-ping | GET /v1/internal/ping, host internal.example | public |
/// | status | GET /v1/status | public |
/// | partner-status | GET /v1/status, host partner.example | JWT with scope partner:read |
fn authz_config() -> Value {
    let mut idp = config::remote_provider();
    // Only the subject: x-auth-client is the API-key client header here.
    idp["forward_claims"] = json!({"sub": "x-auth-subject"});
    json!({
        "mode": "enforce",
        "realm": "finguard",
        "jwks_wait_ms": 3000,
        "providers": [idp, config::hs_provider()],
        "api_keys": {
            "header": "x-api-key",
            "forward": {"id": "x-auth-api-key-id", "client": "x-auth-client"},
            "keys": [
                {"id": "batch-1", "client": "acme-batch", "sha256": sha256_hex(KEY_BATCH),
                 "scopes": ["payments:read", "reports:read"]},
                {"id": "readonly-1", "client": "acme-readonly", "sha256": sha256_hex(KEY_READONLY),
                 "scopes": ["payments:read"]},
                {"id": "old-1", "client": "acme-legacy", "sha256": sha256_hex(KEY_DISABLED),
                 "scopes": ["payments:read", "reports:read"], "disabled": true}
            ]
        },
        "routes": [
            {"id": "health", "match": {"methods": ["GET"], "path": "/healthz"}, "public": true},
            {"id": "whoami", "match": {"methods": ["GET"], "path": "/v1/whoami"}},
            {"id": "reports", "match": {"methods": ["GET"], "path": "/v1/reports"},
             "auth": {"credentials": ["api_key"], "scopes": {"all": ["reports:read"]}}},
            {"id": "batches", "match": {"methods": ["GET"], "path": "/v1/batches"},
             "auth": {"credentials": ["jwt", "api_key"], "scopes": {"all": ["payments:read"]}}},
            {"id": "get-account", "match": {"methods": ["GET"], "path": "/v1/accounts/{account_id}"},
             "auth": {"scopes": {"any": ["accounts:read", "accounts:admin"]},
                      "owner": [{"param": "account_id", "claim": "/accounts"}]}},
            {"id": "list-payments",
             "match": {"methods": ["GET"], "path": "/v1/customers/{customer_id}/payments"},
             "auth": {"scopes": {"all": ["payments:read"]},
                      "owner": [{"param": "customer_id", "claim": "sub"}]}},
            {"id": "create-payment",
             "match": {"methods": ["POST"], "path": "/v1/customers/{customer_id}/payments"},
             "request": {"max_body_bytes": 1024},
             "auth": {"scopes": {"all": ["payments:write"]},
                      "owner": [{"param": "customer_id", "claim": "/sub"},
                                {"body": "/debtor_customer", "claim": "/sub"}],
                      "step_up": {"amr_any": ["mfa", "hwk"],
                                  "when": {"amount": "/amount", "gt": "1000",
                                           "currency": "/currency",
                                           "gt_by_currency": {"JPY": "150000"}}}}},
            {"id": "transfer", "match": {"methods": ["POST"], "path": "/v1/transfers"},
             "auth": {"scopes": {"all": ["payments:write"]},
                      "step_up": {"acr": ["gold"], "amr_any": ["mfa", "hwk"],
                                  "max_age_seconds": 300}}},
            {"id": "ledger", "match": {"methods": ["GET"], "path": "/v1/ledger"},
             "auth": {"claims": [{"claim": "/tenant", "equals": "acme"},
                                 {"claim": "country", "one_of": ["DE", "FR"]},
                                 {"claim": "/groups", "contains": "payments"}]}},
            {"id": "admin", "match": {"methods": ["GET"], "prefix": "/v1/admin/"},
             "auth": {"roles": {"claim": "/realm_access/roles", "any": ["admin", "auditor"],
                                "all": ["staff"]}}},
            {"id": "admin-health", "match": {"methods": ["GET"], "path": "/v1/admin/health"},
             "public": true},
            {"id": "statements",
             "match": {"methods": ["GET"], "path": "/v1/customers/{customer_id}/statements"},
             "mode": "monitor",
             "auth": {"owner": [{"param": "customer_id", "claim": "/sub"}]}},
            {"id": "standing-orders",
             "match": {"methods": ["POST"], "path": "/v1/customers/{customer_id}/standing-orders"},
             "mode": "monitor",
             "request": {"max_body_bytes": 256},
             "auth": {"owner": [{"param": "customer_id", "claim": "/sub"},
                                {"body": "/debtor_customer", "claim": "/sub"}]}},
            {"id": "internal-ping",
             "match": {"methods": ["GET"], "path": "/v1/internal/ping", "host": "internal.example"},
             "public": true},
            {"id": "status", "match": {"methods": ["GET"], "path": "/v1/status"}, "public": true},
            {"id": "partner-status",
             "match": {"methods": ["GET"], "path": "/v1/status", "host": "partner.example"},
             "auth": {"scopes": {"all": ["partner:read"]}}}
        ]
    })
}

// ---- helpers --------------------------------------------------------------------------------

/// Requests [`start`] sends itself (one `GET /healthz`), counted by [`assert_upstream_total`].
const PROBES: usize = 1;

/// Starts a Stack and checks that finguard accepted the configuration (the public `/healthz`
/// answers 200), so that a refused configuration fails here with its log line instead of as a
/// confusing 503 further down.
fn start(cfg: &Value) -> Stack {
    let stack = Stack::start(cfg);
    let response = stack.envoy.get("/healthz").send();
    if response.status != 200 {
        let refused: Vec<String> = stack
            .envoy
            .logs()
            .lines()
            .filter(|line| line.contains("configuration refused") || line.contains("finguard"))
            .map(str::to_owned)
            .collect();
        panic!(
            "finguard did not accept the test configuration: GET /healthz answered\n{response:?}\n\
             finguard log lines:\n{}",
            refused.join("\n")
        );
    }
    stack
}

/// An HS256 token (provider `hs`) for `sub`, with the default scopes
/// (accounts:read payments:write) plus payments:read.
fn hs(sub: &str) -> TokenBuilder {
    TokenBuilder::new(Algorithm::HS256)
        .subject(sub)
        .scope("accounts:read payments:read payments:write")
}

/// Sends `request`, asserts it was forwarded (200 from the echo upstream) and that the upstream
/// got exactly one more request; returns what the upstream saw.
fn forwarded(stack: &Stack, request: Request, what: &str) -> SeenRequest {
    let before = stack.upstream.count();
    let response = request.send();
    assert_eq!(
        response.status, 200,
        "{what}: expected to be forwarded, got:\n{response:?}"
    );
    assert_eq!(
        stack.upstream.count(),
        before + 1,
        "{what}: answered 200 but the upstream count did not grow by one"
    );
    stack.upstream.last().expect("a forwarded request")
}

/// Sends `request`, asserts a problem+json refusal with `status` and `slug`, and that the
/// upstream saw nothing of it.
fn refused(stack: &Stack, request: Request, status: u16, slug: &str, what: &str) -> Response {
    let before = stack.upstream.count();
    let response = request.send();
    assert!(
        response.status == status && testkit::problem::slug(&response).as_deref() == Some(slug),
        "{what}: expected {status} {slug}, got:\n{response:?}"
    );
    assert_problem(&response, status, slug);
    assert_eq!(
        stack.upstream.count(),
        before,
        "{what}: refused, but the upstream saw the request"
    );
    response
}

/// At the end of a test: after a moment (a request forwarded despite a local reply would land
/// late), the upstream saw exactly the `expected` forwarded requests (besides [`start`]'s probe)
/// and nothing else.
fn assert_upstream_total(stack: &Stack, expected: usize) {
    std::thread::sleep(Duration::from_millis(300));
    let expected = expected + PROBES;
    let seen = stack.upstream.seen();
    assert_eq!(
        seen.len(),
        expected,
        "the upstream saw {} requests, expected {expected}: {:#?}",
        seen.len(),
        seen.iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect::<Vec<_>>()
    );
}

/// The `WWW-Authenticate` challenge of an API-key refusal: `ApiKey realm="finguard"`.
fn assert_api_key_challenge(response: &Response) {
    let header = response
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("no WWW-Authenticate on an API-key refusal:\n{response:?}"));
    let params = parse_challenge(header).unwrap_or_else(|| panic!("unparseable {header:?}"));
    assert_eq!(
        params.get("scheme").map(String::as_str),
        Some("ApiKey"),
        "{response:?}"
    );
    assert_eq!(
        params.get("realm").map(String::as_str),
        Some("finguard"),
        "{response:?}"
    );
}

/// Asserts the response carries no trace of `secret` (an API key) in its head or body.
fn assert_not_echoed(response: &Response, secret: &str) {
    let head: String = response
        .headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\n"))
        .collect();
    assert!(
        !head.contains(secret) && !response.text().contains(secret),
        "the response echoes the API key:\n{response:?}"
    );
}

/// The step-up challenge (RFC 9470): Bearer, realm, error="insufficient_user_authentication"
/// and an error_description.
fn step_up_challenge(response: &Response) -> std::collections::BTreeMap<String, String> {
    let params = challenge(response);
    assert_eq!(
        params.get("error").map(String::as_str),
        Some("insufficient_user_authentication"),
        "{response:?}"
    );
    assert!(
        params.contains_key("error_description"),
        "step-up challenge without error_description:\n{response:?}"
    );
    params
}

fn payment(amount: Value, currency: &str, debtor: &str) -> Value {
    json!({"amount": amount, "currency": currency, "debtor_customer": debtor,
           "creditor_iban": "DE89370400440532013000"})
}

// ---- credentials matrix ---------------------------------------------------------------------

#[test]
fn routes_by_credentials_matrix() {
    let stack = start(&authz_config());
    let e = &stack.envoy;
    let jwt = hs("cust-A").sign();
    let rs = TokenBuilder::rs256()
        .subject("cust-R")
        .scope("payments:read")
        .sign();
    let mut allowed = 0;

    // Public route: no credentials at all. An API key sent there is still never forwarded.
    forwarded(&stack, e.get("/healthz"), "public, no credentials");
    allowed += 1;
    let seen = forwarded(
        &stack,
        e.get("/healthz").header("x-api-key", KEY_BATCH),
        "public, stray API key",
    );
    allowed += 1;
    assert!(
        seen.header_all("x-api-key").is_empty(),
        "the API key header reached the upstream on a public route: {:?}",
        seen.headers
    );

    // JWT-only route.
    let seen = forwarded(&stack, e.get("/v1/whoami").bearer(&jwt), "JWT on JWT route");
    allowed += 1;
    assert_eq!(seen.header_all("x-auth-subject"), ["cust-A"]);
    refused(
        &stack,
        e.get("/v1/whoami"),
        401,
        "token-missing",
        "JWT route, nothing",
    );
    // An API key is not a credential on a JWT-only route: token-missing, bare Bearer challenge.
    let r = refused(
        &stack,
        e.get("/v1/whoami").header("x-api-key", KEY_BATCH),
        401,
        "token-missing",
        "JWT route, API key only",
    );
    let params = challenge(&r);
    assert_eq!(
        params.keys().collect::<Vec<_>>(),
        ["realm", "scheme"],
        "API key on a JWT route: challenge is not bare: {:?}",
        r.header("www-authenticate")
    );
    assert_not_echoed(&r, KEY_BATCH);
    // JWT and an API key on a JWT-only route: whatever the answer, the key never goes upstream.
    let before = stack.upstream.count();
    let r = e
        .get("/v1/whoami")
        .bearer(&jwt)
        .header("x-api-key", KEY_BATCH)
        .send();
    match r.status {
        200 => {
            allowed += 1;
            let seen = stack.upstream.last().expect("forwarded");
            assert!(
                seen.header_all("x-api-key").is_empty(),
                "{:?}",
                seen.headers
            );
        }
        401 => assert_eq!(stack.upstream.count(), before),
        _ => panic!("JWT and API key on a JWT-only route:\n{r:?}"),
    }

    // API-key-only route.
    let seen = forwarded(
        &stack,
        e.get("/v1/reports").header("x-api-key", KEY_BATCH),
        "valid API key on API-key route",
    );
    allowed += 1;
    assert_eq!(seen.header_all("x-auth-client"), ["acme-batch"]);
    assert_eq!(seen.header_all("x-auth-api-key-id"), ["batch-1"]);
    assert!(
        seen.header_all("x-api-key").is_empty(),
        "the API key reached the upstream: {:?}",
        seen.headers
    );
    // Header names are case-insensitive.
    let seen = forwarded(
        &stack,
        e.get("/v1/reports").header("X-Api-Key", KEY_BATCH),
        "valid API key, header in another case",
    );
    allowed += 1;
    assert!(
        seen.header_all("x-api-key").is_empty(),
        "{:?}",
        seen.headers
    );
    // A client cannot claim to be another API client.
    let seen = forwarded(
        &stack,
        e.get("/v1/reports")
            .header("x-api-key", KEY_BATCH)
            .header("x-auth-client", "bank-internal")
            .header("x-auth-api-key-id", "root"),
        "valid API key with spoofed identity headers",
    );
    allowed += 1;
    assert_eq!(seen.header_all("x-auth-client"), ["acme-batch"]);
    assert_eq!(seen.header_all("x-auth-api-key-id"), ["batch-1"]);

    let r = refused(
        &stack,
        e.get("/v1/reports").header("x-api-key", KEY_UNKNOWN),
        401,
        "api-key-invalid",
        "unknown API key",
    );
    assert_api_key_challenge(&r);
    assert_not_echoed(&r, KEY_UNKNOWN);
    let r = refused(
        &stack,
        e.get("/v1/reports").header("x-api-key", KEY_DISABLED),
        401,
        "api-key-invalid",
        "disabled API key",
    );
    assert_api_key_challenge(&r);
    assert_not_echoed(&r, KEY_DISABLED);
    // A prefix of a valid key, or the valid key with a suffix, is not the key.
    refused(
        &stack,
        e.get("/v1/reports")
            .header("x-api-key", &KEY_BATCH[..KEY_BATCH.len() - 1]),
        401,
        "api-key-invalid",
        "truncated API key",
    );
    refused(
        &stack,
        e.get("/v1/reports")
            .header("x-api-key", &format!("{KEY_BATCH}x")),
        401,
        "api-key-invalid",
        "API key with a suffix",
    );
    // The hash from the configuration is not the key.
    refused(
        &stack,
        e.get("/v1/reports")
            .header("x-api-key", &sha256_hex(KEY_BATCH)),
        401,
        "api-key-invalid",
        "the configured hash sent as the key",
    );
    let r = refused(
        &stack,
        e.get("/v1/reports"),
        401,
        "api-key-missing",
        "API-key route, nothing",
    );
    assert_api_key_challenge(&r);
    let r = refused(
        &stack,
        e.get("/v1/reports").header("x-api-key", KEY_READONLY),
        403,
        "scope-insufficient",
        "API key without reports:read",
    );
    assert_not_echoed(&r, KEY_READONLY);
    // A JWT is not a credential on an API-key-only route.
    let before = stack.upstream.count();
    let r = e.get("/v1/reports").bearer(&jwt).send();
    assert_eq!(r.status, 401, "JWT on an API-key-only route:\n{r:?}");
    assert_no_token(&r, &jwt);
    assert_eq!(stack.upstream.count(), before);
    // Route accepting both.
    let seen = forwarded(
        &stack,
        e.get("/v1/batches").header("x-api-key", KEY_READONLY),
        "API key on both-route",
    );
    allowed += 1;
    assert_eq!(seen.header_all("x-auth-client"), ["acme-readonly"]);
    assert!(
        seen.header_all("x-api-key").is_empty(),
        "{:?}",
        seen.headers
    );
    assert!(
        seen.header_all("x-auth-subject").is_empty(),
        "{:?}",
        seen.headers
    );
    let seen = forwarded(
        &stack,
        e.get("/v1/batches")
            .bearer(&jwt)
            .header("x-auth-client", "acme-batch")
            .header("x-auth-api-key-id", "batch-1"),
        "HS256 JWT on both-route, spoofed API-key identity headers",
    );
    allowed += 1;
    assert_eq!(seen.header_all("x-auth-subject"), ["cust-A"]);
    assert!(
        seen.header_all("x-auth-client").is_empty(),
        "{:?}",
        seen.headers
    );
    let seen = forwarded(
        &stack,
        e.get("/v1/batches").bearer(&rs),
        "RS256 JWT (remote JWKS) on both-route",
    );
    allowed += 1;
    assert_eq!(seen.header_all("x-auth-subject"), ["cust-R"]);
    let r = refused(
        &stack,
        e.get("/v1/batches")
            .bearer(&jwt)
            .header("x-api-key", KEY_BATCH),
        401,
        "token-multiple",
        "JWT and API key together",
    );
    assert_invalid_request(&r, "token-multiple", &jwt);
    assert_not_echoed(&r, KEY_BATCH);
    refused(
        &stack,
        e.get("/v1/batches"),
        401,
        "token-missing",
        "both-route, nothing",
    );
    let no_scope = hs("cust-A").scope("accounts:read").sign();
    let r = refused(
        &stack,
        e.get("/v1/batches").bearer(&no_scope),
        403,
        "scope-insufficient",
        "JWT without payments:read on both-route",
    );
    assert_eq!(
        challenge(&r).get("scope").map(String::as_str),
        Some("payments:read")
    );

    // Scopes from `scp` (an array) count like `scope`.
    let scp = hs("cust-A")
        .without_claim("scope")
        .claim("scp", json!(["payments:read"]))
        .sign();
    forwarded(&stack, e.get("/v1/batches").bearer(&scp), "scopes from scp");
    allowed += 1;

    assert_upstream_total(&stack, allowed);
}

// ---- deny by default ------------------------------------------------------------------------

#[test]
fn unmatched_routes_are_refused_404_by_default() {
    let stack = start(&authz_config());
    let e = &stack.envoy;
    let jwt = hs("cust-A").sign();
    refused(
        &stack,
        e.get("/v1/nowhere").bearer(&jwt),
        404,
        "route-not-found",
        "unknown path with a token",
    );
    refused(
        &stack,
        e.get("/v1/nowhere"),
        404,
        "route-not-found",
        "unknown path",
    );
    refused(
        &stack,
        e.get("/v1/admin").bearer(&jwt),
        404,
        "route-not-found",
        "the prefix /v1/admin/ without its slash",
    );
    let r = refused(
        &stack,
        e.post("/v1/ledger").bearer(&jwt),
        405,
        "method-not-allowed",
        "wrong method",
    );
    assert_eq!(r.header("allow"), Some("GET"), "{r:?}");
    // The host-bound route exists only for its host.
    forwarded(
        &stack,
        e.get("/v1/internal/ping")
            .header("host", "internal.example"),
        "host-bound route on its host",
    );
    refused(
        &stack,
        e.get("/v1/internal/ping").header("host", "api.example"),
        404,
        "route-not-found",
        "host-bound route on another host",
    );
    // The most specific match wins: the public exact route under the protected prefix.
    forwarded(
        &stack,
        e.get("/v1/admin/health"),
        "public exact route under a protected prefix",
    );
    assert_upstream_total(&stack, 2);
}

#[test]
fn unmatched_routes_can_be_refused_403() {
    let mut cfg = authz_config();
    set(&mut cfg, "/unmatched_route_status", json!(403));
    let stack = start(&cfg);
    let e = &stack.envoy;
    let jwt = hs("cust-A").sign();
    refused(
        &stack,
        e.get("/v1/nowhere").bearer(&jwt),
        403,
        "route-forbidden",
        "unknown path with a token",
    );
    refused(
        &stack,
        e.get("/internal/debug/vars"),
        403,
        "route-forbidden",
        "unknown path",
    );
    forwarded(&stack, e.get("/v1/whoami").bearer(&jwt), "known route");
    assert_upstream_total(&stack, 1);
}

// ---- object level (BOLA) --------------------------------------------------------------------

#[test]
fn object_level_binding_of_path_and_body_to_the_token() {
    let stack = start(&authz_config());
    let e = &stack.envoy;
    let a = hs("cust-A").sign();
    let b = hs("cust-B").sign();
    let mut allowed = 0;

    // Path parameter == sub.
    let seen = forwarded(
        &stack,
        e.get("/v1/customers/cust-A/payments").bearer(&a),
        "A on A's path",
    );
    allowed += 1;
    assert_eq!(seen.path, "/v1/customers/cust-A/payments");
    let denied_b = refused(
        &stack,
        e.get("/v1/customers/cust-B/payments").bearer(&a),
        403,
        "object-access-denied",
        "A on B's path",
    );
    // No hint whether the object exists: an id nobody has gets the same body (bar request_id).
    let denied_nobody = refused(
        &stack,
        e.get("/v1/customers/cust-nobody/payments").bearer(&a),
        403,
        "object-access-denied",
        "A on a customer that does not exist",
    );
    let strip = |r: &Response| {
        let mut body = r.json();
        body.as_object_mut().map(|o| o.remove("request_id"));
        body
    };
    assert_eq!(strip(&denied_b), strip(&denied_nobody));
    // Exact comparison: no prefix, case or whitespace games.
    for path in [
        "/v1/customers/cust-AB/payments",
        "/v1/customers/cust-a/payments",
        "/v1/customers/CUST-A/payments",
        "/v1/customers/cust-A%20/payments",
    ] {
        refused(
            &stack,
            e.get(path).bearer(&a),
            403,
            "object-access-denied",
            &format!("A on {path}"),
        );
    }
    forwarded(
        &stack,
        e.get("/v1/customers/cust-B/payments").bearer(&b),
        "B on B's path",
    );
    allowed += 1;

    // Body field == sub, checked in the body phase (after the path passed).
    let seen = forwarded(
        &stack,
        e.post("/v1/customers/cust-A/payments")
            .bearer(&a)
            .json(&payment(json!(100), "EUR", "cust-A")),
        "A pays from A",
    );
    allowed += 1;
    assert_eq!(
        serde_json::from_str::<Value>(&seen.body).unwrap(),
        payment(json!(100), "EUR", "cust-A"),
        "the upstream did not get the body as sent"
    );
    refused(
        &stack,
        e.post("/v1/customers/cust-A/payments")
            .bearer(&a)
            .json(&payment(json!(100), "EUR", "cust-B")),
        403,
        "object-access-denied",
        "A's path, B in the body",
    );
    refused(
        &stack,
        e.post("/v1/customers/cust-B/payments")
            .bearer(&a)
            .json(&payment(json!(100), "EUR", "cust-A")),
        403,
        "object-access-denied",
        "B's path, A in the body",
    );
    refused(
        &stack,
        e.post("/v1/customers/cust-A/payments")
            .bearer(&a)
            .json(&json!({"amount": 100, "currency": "EUR"})),
        403,
        "object-access-denied",
        "body without the bound field",
    );
    refused(
        &stack,
        e.post("/v1/customers/cust-A/payments")
            .bearer(&a)
            .json(&json!({"amount": 100, "currency": "EUR", "debtor_customer": ["cust-A"]})),
        403,
        "object-access-denied",
        "bound field as an array",
    );

    // Path parameter member of an array claim.
    let accounts = hs("cust-A")
        .claim("accounts", json!(["acc-1", "acc-2"]))
        .sign();
    forwarded(
        &stack,
        e.get("/v1/accounts/acc-2").bearer(&accounts),
        "account in the accounts claim",
    );
    allowed += 1;
    for account in ["acc-3", "acc", "acc-1,acc-2", "ACC-1"] {
        refused(
            &stack,
            e.get(&format!("/v1/accounts/{account}")).bearer(&accounts),
            403,
            "object-access-denied",
            &format!("{account} not in the accounts claim"),
        );
    }
    let one = hs("cust-A").claim("accounts", "acc-1").sign();
    forwarded(
        &stack,
        e.get("/v1/accounts/acc-1").bearer(&one),
        "account equal to a string claim",
    );
    allowed += 1;
    let joined = hs("cust-A").claim("accounts", "acc-1 acc-2").sign();
    refused(
        &stack,
        e.get("/v1/accounts/acc-1").bearer(&joined),
        403,
        "object-access-denied",
        "a string claim is not split",
    );
    refused(
        &stack,
        e.get("/v1/accounts/acc-1").bearer(&a),
        403,
        "object-access-denied",
        "token without the accounts claim",
    );
    assert_upstream_total(&stack, allowed);
}

// ---- claims and roles -----------------------------------------------------------------------

#[test]
fn claim_and_role_requirements() {
    let stack = start(&authz_config());
    let e = &stack.envoy;
    let mut allowed = 0;
    let ledger = |edit: &dyn Fn(TokenBuilder) -> TokenBuilder| {
        edit(
            hs("cust-A")
                .claim("tenant", "acme")
                .claim("country", "FR")
                .claim("groups", json!(["ops", "payments"])),
        )
        .sign()
    };

    forwarded(
        &stack,
        e.get("/v1/ledger").bearer(&ledger(&|t| t)),
        "every claim rule met",
    );
    allowed += 1;
    let cases: [(&str, &dyn Fn(TokenBuilder) -> TokenBuilder); 8] = [
        ("tenant differs", &|t| t.claim("tenant", "acme-evil")),
        ("tenant differs in case", &|t| t.claim("tenant", "ACME")),
        ("tenant missing", &|t| t.without_claim("tenant")),
        ("tenant as an array", &|t| {
            t.claim("tenant", json!(["acme", "other"]))
        }),
        ("country not one of", &|t| t.claim("country", "US")),
        ("country missing", &|t| t.without_claim("country")),
        ("groups lacks payments", &|t| {
            t.claim("groups", json!(["ops", "payment"]))
        }),
        ("groups missing", &|t| t.without_claim("groups")),
    ];
    for (what, edit) in cases {
        let r = refused(
            &stack,
            e.get("/v1/ledger").bearer(&ledger(edit)),
            403,
            "claim-requirement-unmet",
            what,
        );
        // A claim failure is not a scope problem: no insufficient_scope challenge.
        if let Some(header) = r.header("www-authenticate") {
            assert!(
                !header.contains("insufficient_scope"),
                "{what}: claim failure with a scope challenge:\n{r:?}"
            );
        }
    }

    let roles = |roles: Value| {
        hs("cust-A")
            .claim("realm_access", json!({"roles": roles}))
            .sign()
    };
    forwarded(
        &stack,
        e.get("/v1/admin/users")
            .bearer(&roles(json!(["staff", "auditor"]))),
        "staff auditor",
    );
    allowed += 1;
    forwarded(
        &stack,
        e.get("/v1/admin/users/42")
            .bearer(&roles(json!(["admin", "staff"]))),
        "staff admin, deeper under the prefix",
    );
    allowed += 1;
    for (what, value) in [
        ("admin without staff", json!(["admin"])),
        ("staff without admin or auditor", json!(["staff", "teller"])),
        ("no roles", json!([])),
    ] {
        refused(
            &stack,
            e.get("/v1/admin/users").bearer(&roles(value)),
            403,
            "claim-requirement-unmet",
            what,
        );
    }
    refused(
        &stack,
        e.get("/v1/admin/users").bearer(&hs("cust-A").sign()),
        403,
        "claim-requirement-unmet",
        "no realm_access claim",
    );
    refused(
        &stack,
        e.get("/v1/admin/users"),
        401,
        "token-missing",
        "admin prefix without a token",
    );
    assert_upstream_total(&stack, allowed);
}

// ---- path tricks ----------------------------------------------------------------------------

#[test]
fn path_tricks_never_reach_a_protected_route_unchecked() {
    let stack = start(&authz_config());
    let e = &stack.envoy;
    // cust-A may read /v1/customers/cust-A/payments and nothing else under /v1/customers, and
    // has no admin role.
    let a = hs("cust-A").sign();

    // Each of these aims at cust-B's payments (or the admin area) by another spelling. Envoy
    // normalises the path first (normalize_path, merge_slashes, escaped slashes rejected) and
    // finguard matches the result or refuses the path itself: whatever the answer, nothing may
    // reach the upstream.
    let tricks = [
        "/v1/customers/cust-A/../cust-B/payments",
        "/v1/customers/cust-A/./../cust-B/payments",
        "/v1/customers/./cust-B/payments",
        "/v1/customers/cust-A/%2e%2e/cust-B/payments",
        "/v1/customers/cust-A/%2E%2E/cust-B/payments",
        "/v1/customers/cust-A/.%2e/cust-B/payments",
        "/v1/customers/cust-A%2F..%2Fcust-B/payments",
        "/v1/customers/cust-A%2f..%2fcust-B/payments",
        "/v1/customers/cust-A/..%2Fcust-B/payments",
        "/v1/customers/cust-A%5C..%5Ccust-B/payments",
        "/v1/customers/cust-A\\..\\cust-B/payments",
        "/v1/customers/cust-A%2Fx/payments",
        "/v1/customers/%2e%2e/admin",
        "/v1/customers/%2e%2e/%2e%2e/admin/users",
        "/v1/customers/../../v1/admin/users",
        "//v1/customers/cust-B/payments",
        "/v1//customers/cust-B/payments",
        "/v1/customers//cust-B/payments",
        "/V1/CUSTOMERS/cust-B/payments",
        "/v1/Customers/cust-B/payments",
        "/v1/customers/cust-B/payments;x=1",
        "/v1/customers/cust-B;x=1/payments",
        "/v1/customers/cust-A;/../cust-B/payments",
        "/v1/customers/cust-B/payments%3Bx=1",
        "/v1/customers/cust-B/payments/",
        "/v1/customers/cust-B/payments//",
        "/v1/customers/cust-B/payments/.",
        "/v1/customers/cust-%42/payments",
        "/v1/customers/cust-B%00/payments",
        "/v1/customers/cust-B/payments%00",
        "/v1/customers/cust-B/payments?customer=cust-A",
        "/v1/customers/cust-B/payments#cust-A",
        "/v1/customers/cust-B/payments%23",
        "/v1/customers/cust-B/payments%",
        "/v1/customers/cust-B/payments%zz",
    ];
    let mut outcomes = Vec::new();
    for trick in tricks {
        let before = stack.upstream.count();
        let response = match e.get(trick).bearer(&a).try_send() {
            Ok(response) => response,
            // Envoy may close the connection on a request it cannot parse: that is a refusal.
            Err(err) => {
                assert_eq!(stack.upstream.count(), before, "{trick}: {err:#}");
                outcomes.push(format!("{trick} -> connection closed ({err:#})"));
                continue;
            }
        };
        assert!(
            matches!(response.status, 400 | 403 | 404),
            "{trick}: expected 400/403/404, got:\n{response:?}"
        );
        assert_eq!(
            stack.upstream.count(),
            before,
            "{trick}: answered {} but the upstream saw it: {:?}",
            response.status,
            stack.upstream.last()
        );
        assert_no_token(&response, &a);
        outcomes.push(format!(
            "{trick} -> {} {}",
            response.status,
            testkit::problem::slug(&response).unwrap_or_else(|| "(not finguard)".into())
        ));
    }
    // The same over HTTP/2, whose :path is not parsed by the HTTP/1 codec.
    for trick in tricks {
        let before = stack.upstream.count();
        let response = testkit::h2::Request::new(e.addr(), "GET", trick)
            .bearer(&a)
            .send()
            .unwrap_or_else(|err| panic!("HTTP/2 {trick}: {err:#}"));
        assert_eq!(
            stack.upstream.count(),
            before,
            "HTTP/2 {trick}: answered {:?} but the upstream saw it: {:?}",
            response.status,
            stack.upstream.last()
        );
        assert!(
            matches!(response.status, Some(400 | 403 | 404)) || response.reset,
            "HTTP/2 {trick}: expected 400/403/404 or a reset, got {response:?} {}",
            response.text()
        );
        outcomes.push(format!(
            "h2 {trick} -> {:?} {}",
            response.status,
            response.slug().unwrap_or_else(|| "(not finguard)".into())
        ));
    }
    // Printed with --nocapture: which layer answered what.
    println!("{}", outcomes.join("\n"));

    // The same tricks aimed at cust-A's own resource are either refused or forwarded at the
    // canonical path: the upstream never sees a path other than one the token may read.
    for trick in [
        "/v1/customers/cust-B/../cust-A/payments",
        "//v1/customers/cust-A/payments",
        "/v1/customers/./cust-A/payments",
        "/v1/customers/cust-%41/payments",
    ] {
        let before = stack.upstream.count();
        let response = e.get(trick).bearer(&a).send();
        match response.status {
            200 => {
                let seen = stack.upstream.last().expect("forwarded");
                assert_eq!(
                    seen.path, "/v1/customers/cust-A/payments",
                    "{trick}: forwarded at a non-canonical path"
                );
            }
            400 | 403 | 404 => assert_eq!(stack.upstream.count(), before, "{trick}"),
            _ => panic!("{trick}: unexpected\n{response:?}"),
        }
    }
    for seen in stack.upstream.seen().iter().skip(PROBES) {
        assert_eq!(
            seen.path, "/v1/customers/cust-A/payments",
            "the upstream saw a path the token may not read"
        );
    }
}

#[test]
fn semicolon_path_parameters_are_refused_as_path_invalid() {
    // Envoy keeps `;` in the path (it is not a normalisation target), so finguard itself sees it
    // and, per the contract, refuses it rather than matching `payments;x=1` against a template.
    let stack = start(&authz_config());
    let a = hs("cust-A").sign();
    for path in [
        "/v1/customers/cust-A/payments;x=1",
        "/v1/customers/cust-A;x=1/payments",
    ] {
        refused(
            &stack,
            stack.envoy.get(path).bearer(&a),
            400,
            "path-invalid",
            path,
        );
    }
    assert_upstream_total(&stack, 0);
}

// ---- step-up --------------------------------------------------------------------------------

#[test]
fn step_up_for_high_value_payments() {
    let stack = start(&authz_config());
    let e = &stack.envoy;
    let plain = hs("cust-A").claim("amr", json!(["pwd"])).sign();
    let mfa = hs("cust-A").claim("amr", json!(["pwd", "mfa"])).sign();
    let hwk = hs("cust-A").claim("amr", json!(["hwk"])).sign();
    let no_amr = hs("cust-A").sign();
    let pay = |token: &str, body: &str| {
        e.post("/v1/customers/cust-A/payments")
            .bearer(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
    };
    let body = |amount: &str, currency: &str| {
        format!(r#"{{"amount": {amount}, "currency": "{currency}", "debtor_customer": "cust-A"}}"#)
    };
    let mut allowed = 0;

    // Above the threshold without mfa/hwk: 401 with the RFC 9470 challenge.
    for (what, token, amount) in [
        ("1500 without mfa", &plain, "1500"),
        ("\"1500.00\" without mfa", &plain, r#""1500.00""#),
        ("1500 without any amr", &no_amr, "1500"),
        ("number just above 1000", &plain, "1000.000000000000000001"),
        (
            "string just above 1000",
            &plain,
            r#""1000.000000000000000001""#,
        ),
        ("amount as a non-decimal string", &plain, r#""lots""#),
        ("amount as an exponent string", &plain, r#""1e4""#),
        ("amount null", &plain, "null"),
        ("amount as an object", &plain, r#"{"value": 5}"#),
    ] {
        let r = refused(
            &stack,
            pay(token, &body(amount, "EUR")),
            401,
            "step-up-required",
            what,
        );
        let params = step_up_challenge(&r);
        // This route configures neither acr nor max_age.
        assert!(
            !params.contains_key("acr_values") && !params.contains_key("max_age"),
            "{what}: challenge names requirements the route does not have:\n{r:?}"
        );
        assert_no_token(&r, token);
    }
    refused(
        &stack,
        pay(
            &plain,
            r#"{"currency": "EUR", "debtor_customer": "cust-A"}"#,
        ),
        401,
        "step-up-required",
        "amount missing",
    );

    // With mfa or hwk: forwarded, body intact.
    for (what, token, amount) in [
        ("1500 with mfa", &mfa, "1500"),
        ("\"1500.00\" with mfa", &mfa, r#""1500.00""#),
        ("1500 with hwk", &hwk, "1500"),
    ] {
        let sent = body(amount, "EUR");
        let seen = forwarded(&stack, pay(token, &sent), what);
        allowed += 1;
        assert_eq!(seen.body, sent, "{what}: the body changed on its way");
    }

    // At or below the threshold: no step-up.
    for (what, amount) in [
        ("999.99", "999.99"),
        ("\"999.99\"", r#""999.99""#),
        ("exactly 1000", "1000"),
        ("\"1000.00\"", r#""1000.00""#),
        (
            "\"1000.000000000000000000\"",
            r#""1000.000000000000000000""#,
        ),
        ("0.01", "0.01"),
    ] {
        forwarded(&stack, pay(&plain, &body(amount, "EUR")), what);
        allowed += 1;
    }

    // Per-currency threshold: JPY 150000.
    forwarded(
        &stack,
        pay(&plain, &body("100000", "JPY")),
        "JPY 100000 below its threshold",
    );
    allowed += 1;
    forwarded(
        &stack,
        pay(&plain, &body("1500", "JPY")),
        "JPY 1500: the default threshold does not apply",
    );
    allowed += 1;
    refused(
        &stack,
        pay(&plain, &body("150001", "JPY")),
        401,
        "step-up-required",
        "JPY above its threshold",
    );
    refused(
        &stack,
        pay(&plain, &body(r#""150000.5""#, "JPY")),
        401,
        "step-up-required",
        "JPY string above its threshold",
    );
    refused(
        &stack,
        pay(&plain, &body("1500", "EUR")),
        401,
        "step-up-required",
        "EUR 1500 above the default threshold",
    );
    forwarded(
        &stack,
        pay(&mfa, &body("150001", "JPY")),
        "JPY above its threshold with mfa",
    );
    allowed += 1;

    assert_upstream_total(&stack, allowed);
}

#[test]
fn step_up_with_acr_and_max_age() {
    let stack = start(&authz_config());
    let e = &stack.envoy;
    let transfer = |token: &str| {
        e.post("/v1/transfers")
            .bearer(token)
            .json(&json!({"amount": 10}))
    };
    let strong = || {
        hs("cust-A")
            .claim("acr", "gold")
            .claim("amr", json!(["mfa"]))
            .claim("auth_time", now() - 10)
    };
    forwarded(&stack, transfer(&strong().sign()), "gold, mfa, recent");

    for (what, token) in [
        ("acr silver", strong().claim("acr", "silver").sign()),
        ("acr missing", strong().without_claim("acr").sign()),
        (
            "amr without mfa/hwk",
            strong().claim("amr", json!(["pwd"])).sign(),
        ),
        (
            "auth_time an hour ago",
            strong().claim("auth_time", now() - 3600).sign(),
        ),
        // max_age without auth_time cannot be checked: refused, not assumed recent.
        (
            "auth_time missing",
            strong().without_claim("auth_time").sign(),
        ),
    ] {
        let r = refused(&stack, transfer(&token), 401, "step-up-required", what);
        let params = step_up_challenge(&r);
        assert_eq!(
            params.get("acr_values").map(String::as_str),
            Some("gold"),
            "{what}: {r:?}"
        );
        assert_eq!(
            params.get("max_age").map(String::as_str),
            Some("300"),
            "{what}: {r:?}"
        );
    }
    assert_upstream_total(&stack, 1);
}

// ---- bodies ---------------------------------------------------------------------------------

#[test]
fn body_rules_refuse_oversized_mistyped_and_malformed_bodies() {
    let stack = start(&authz_config());
    let e = &stack.envoy;
    let a = hs("cust-A").sign();
    let pay = || e.post("/v1/customers/cust-A/payments").bearer(&a);
    let ok = r#"{"amount": 10, "currency": "EUR", "debtor_customer": "cust-A"}"#;
    let mut allowed = 0;

    // max_body_bytes is 1024.
    let big = format!(
        r#"{{"amount": 10, "currency": "EUR", "debtor_customer": "cust-A", "memo": "{}"}}"#,
        "x".repeat(1500)
    );
    refused(
        &stack,
        pay()
            .header("content-type", "application/json")
            .body(big.clone()),
        413,
        "body-too-large",
        "body over max_body_bytes",
    );
    refused(
        &stack,
        pay()
            .header("content-type", "application/json")
            .body(big)
            .chunked(256),
        413,
        "body-too-large",
        "chunked body over max_body_bytes",
    );
    let seen = forwarded(
        &stack,
        pay()
            .header("content-type", "application/json")
            .body(ok)
            .chunked(7),
        "small chunked body",
    );
    allowed += 1;
    assert_eq!(seen.body, ok);

    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonx",
    ] {
        refused(
            &stack,
            pay().header("content-type", content_type).body(ok),
            415,
            "content-type-unsupported",
            content_type,
        );
    }
    refused(
        &stack,
        pay().body(ok),
        415,
        "content-type-unsupported",
        "no content-type",
    );
    for content_type in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.payments+json",
    ] {
        forwarded(
            &stack,
            pay().header("content-type", content_type).body(ok),
            content_type,
        );
        allowed += 1;
    }

    for (what, text) in [
        ("truncated JSON", r#"{"amount": 10, "currency": "EUR","#),
        ("not JSON", "amount=10&debtor_customer=cust-A"),
        (
            "trailing garbage",
            r#"{"amount": 10, "currency": "EUR", "debtor_customer": "cust-A"} x"#,
        ),
        (
            "duplicate amount (parser differential)",
            r#"{"amount": 10, "amount": 5000, "currency": "EUR", "debtor_customer": "cust-A"}"#,
        ),
        (
            "duplicate bound field",
            r#"{"amount": 10, "currency": "EUR", "debtor_customer": "cust-A", "debtor_customer": "cust-B"}"#,
        ),
        (
            "duplicate key nested",
            r#"{"amount": 10, "currency": "EUR", "debtor_customer": "cust-A", "meta": {"k": 1, "k": 2}}"#,
        ),
        (
            "duplicate key by escape",
            r#"{"amount": 10, "currency": "EUR", "debtor_customer": "cust-A", "debtor\u005fcustomer": "cust-B"}"#,
        ),
    ] {
        refused(
            &stack,
            pay()
                .header("content-type", "application/json")
                .body(text.to_owned()),
            400,
            "body-malformed",
            what,
        );
    }
    // No body at all is judged as `null` (src/pipeline.rs): the body-bound owner rule fails
    // closed. Either refusal is right; what matters is that nothing is forwarded.
    for request in [pay().header("content-type", "application/json"), pay()] {
        let before = stack.upstream.count();
        let r = request.send();
        let slug = testkit::problem::slug(&r).unwrap_or_default();
        assert!(
            matches!(
                (r.status, slug.as_str()),
                (400, "body-malformed") | (403, "object-access-denied")
            ),
            "empty body: expected 400 body-malformed or 403 object-access-denied, got:\n{r:?}"
        );
        assert_eq!(stack.upstream.count(), before, "empty body forwarded");
    }
    assert_upstream_total(&stack, allowed);
}

// ---- monitor mode ---------------------------------------------------------------------------

#[test]
fn per_route_monitor_mode_forwards_and_logs() {
    let stack = start(&authz_config());
    let e = &stack.envoy;
    let a = hs("cust-A").sign();

    // statements is in monitor mode: A on B's statements would be refused, and is forwarded.
    forwarded(
        &stack,
        e.get("/v1/customers/cust-B/statements").bearer(&a),
        "monitor route, A on B",
    );
    stack
        .envoy
        .wait_for_log(
            "monitor mode: would refuse (object-access-denied)",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|err| panic!("{err:#}"));
    forwarded(
        &stack,
        e.get("/v1/customers/cust-A/statements").bearer(&a),
        "monitor route, A on A",
    );

    // Body-phase rules in monitor mode: the held request is released with its body intact.
    let sent = r#"{"amount": 10, "debtor_customer": "cust-B"}"#;
    let seen = forwarded(
        &stack,
        e.post("/v1/customers/cust-A/standing-orders")
            .bearer(&a)
            .header("content-type", "application/json")
            .body(sent),
        "monitor route, B in the body",
    );
    assert_eq!(seen.body, sent, "the monitored body changed on its way");
    // A body over the route's limit (256 bytes) is forwarded whole as well.
    let big = format!(
        r#"{{"amount": 10, "debtor_customer": "cust-A", "memo": "{}"}}"#,
        "m".repeat(600)
    );
    let seen = forwarded(
        &stack,
        e.post("/v1/customers/cust-A/standing-orders")
            .bearer(&a)
            .header("content-type", "application/json")
            .body(big.clone()),
        "monitor route, body over the limit",
    );
    assert_eq!(
        seen.body, big,
        "the monitored oversized body changed on its way"
    );
    for reason in ["token-missing", "body-too-large"] {
        if reason == "token-missing" {
            forwarded(
                &stack,
                e.get("/v1/customers/cust-A/statements"),
                "monitor route, no token",
            );
        }
        stack
            .envoy
            .wait_for_log(
                &format!("monitor mode: would refuse ({reason})"),
                Duration::from_secs(5),
            )
            .unwrap_or_else(|err| panic!("{err:#}"));
    }

    // Only those routes: the enforcing neighbour still refuses.
    refused(
        &stack,
        e.get("/v1/customers/cust-B/payments").bearer(&a),
        403,
        "object-access-denied",
        "enforcing route, A on B",
    );
    assert_upstream_total(&stack, 5);
}

// ---- hosts ----------------------------------------------------------------------------------

#[test]
fn host_variants_of_a_host_bound_route_get_its_rules() {
    // /v1/status is public for any host, but needs partner:read on partner.example. Spellings of
    // that host must not fall back to the public route.
    let stack = start(&authz_config());
    let e = &stack.envoy;
    let partner = hs("cust-A").scope("partner:read").sign();
    forwarded(
        &stack,
        e.get("/v1/status").header("host", "api.example"),
        "public route on another host",
    );
    forwarded(
        &stack,
        e.get("/v1/status")
            .header("host", "partner.example")
            .bearer(&partner),
        "partner route with partner:read",
    );
    for host in [
        "partner.example",
        "PARTNER.example",
        "partner.example:8443",
        "partner.example.",
        "partner.example.:8443",
    ] {
        refused(
            &stack,
            e.get("/v1/status").header("host", host),
            401,
            "token-missing",
            &format!("partner route without a token, host {host:?}"),
        );
    }
    assert_upstream_total(&stack, 2);
}

// ---- held requests --------------------------------------------------------------------------

#[test]
fn held_body_is_not_forwarded_before_it_is_judged() {
    let stack = start(&authz_config());
    let a = hs("cust-A").sign();
    let addr = stack.envoy.addr();
    let delay = Duration::from_millis(1500);
    for (what, debtor, expect) in [
        ("A in the body", "cust-A", 200),
        ("B in the body", "cust-B", 403),
    ] {
        let arrived = stack.upstream.arrived();
        let body = format!(r#"{{"amount": 10, "currency": "EUR", "debtor_customer": "{debtor}"}}"#);
        let request = testkit::Request::new(addr, "POST", "/v1/customers/cust-A/payments")
            .bearer(&a)
            .header("content-type", "application/json")
            .body(body.clone())
            .body_delay(delay);
        let sender = std::thread::spawn(move || request.send());
        // The headers passed every headers-phase rule; the body is still on its way.
        std::thread::sleep(delay / 2);
        assert_eq!(
            stack.upstream.arrived(),
            arrived,
            "{what}: the upstream got the request head before the body was judged"
        );
        let response = sender.join().expect("sender thread");
        assert_eq!(response.status, expect, "{what}:\n{response:?}");
        if expect == 200 {
            assert_eq!(stack.upstream.last().expect("forwarded").body, body);
        }
    }
    assert_upstream_total(&stack, 1);
}

#[test]
fn http2_trailers_do_not_release_held_requests() {
    // Over HTTP/2 a request can end with trailers instead of a DATA frame with END_STREAM, so
    // the body callback never sees the end of the stream. A request held for its body (or for
    // keys) must still be judged, never released by the trailers.
    let stack = start(&authz_config());
    let addr = stack.envoy.addr();
    let a = hs("cust-A").sign();
    let h2 = |path: &str, body: &str| {
        testkit::h2::Request::new(addr, "POST", path)
            .bearer(&a)
            .header("content-type", "application/json")
            .body(body.to_owned())
    };
    let b_in_body = r#"{"amount": 10, "currency": "EUR", "debtor_customer": "cust-B"}"#;
    let above = r#"{"amount": 5000, "currency": "EUR", "debtor_customer": "cust-A"}"#;
    let fine = r#"{"amount": 10, "currency": "EUR", "debtor_customer": "cust-A"}"#;
    let path = "/v1/customers/cust-A/payments";
    let mut allowed = 0;

    // The client works: without trailers, the usual refusal.
    let r = h2(path, b_in_body).send().expect("HTTP/2 request");
    assert_eq!(
        (r.status, r.slug().as_deref()),
        (Some(403), Some("object-access-denied")),
        "HTTP/2 without trailers: {r:?} {}",
        r.text()
    );

    for (what, body) in [
        ("B in the body", b_in_body),
        ("amount above 1000 without mfa", above),
    ] {
        let before = stack.upstream.count();
        let r = h2(path, body)
            .trailer("x-checksum", "abc")
            .send()
            .expect("HTTP/2 request");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            stack.upstream.count(),
            before,
            "{what}, with trailers: forwarded unjudged (answer {:?} {})",
            r.status,
            r.text()
        );
        assert!(
            matches!(r.status, Some(400..=499)) || r.reset,
            "{what}, with trailers: {r:?} {}",
            r.text()
        );
    }
    // A request that passes may be forwarded (body intact) or refused for its trailers.
    let before = stack.upstream.count();
    let r = h2(path, fine)
        .trailer("x-checksum", "abc")
        .send()
        .expect("HTTP/2 request");
    if r.status == Some(200) {
        allowed += 1;
        assert_eq!(stack.upstream.last().expect("forwarded").body, fine);
    } else {
        assert_eq!(stack.upstream.count(), before, "{r:?}");
    }

    // A forged token whose kid is unknown makes finguard refetch the JWKS and hold the request
    // meanwhile (min_refetch_seconds is 1): trailers must not release it.
    std::thread::sleep(Duration::from_millis(1100));
    let forged = TokenBuilder::rs256()
        .subject("admin")
        .header("kid", "rotated-in")
        .sign();
    let forged = format!("{}.c2lnbmF0dXJl", forged.rsplit_once('.').unwrap().0);
    let before = stack.upstream.count();
    let r = testkit::h2::Request::new(addr, "GET", "/v1/whoami")
        .bearer(&forged)
        .trailer("x-checksum", "abc")
        .send()
        .expect("HTTP/2 request");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        stack.upstream.count(),
        before,
        "forged token with an unknown kid + trailers was forwarded (answer {:?} {})",
        r.status,
        r.text()
    );
    // The minimal HPACK decoder in testkit::h2 cannot read a `:status` Envoy encodes through its
    // dynamic table (401 after an earlier 401 on the connection): then the problem body tells.
    let body_status = serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["status"].as_u64());
    assert!(
        matches!(
            r.status.map(u64::from).or(body_status),
            Some(401 | 400 | 503)
        ) || r.reset,
        "{r:?} {}",
        r.text()
    );
    assert_upstream_total(&stack, allowed);
}

#[test]
fn http2_trailers_do_not_release_requests_waiting_for_keys() {
    // The JWKS endpoint is down: requests with idp tokens wait (jwks_wait_ms) for keys that never
    // come, then get 503. Trailers must not release them meanwhile.
    let mut cfg = authz_config();
    set(&mut cfg, "/jwks_wait_ms", json!(1000));
    let reserved = testkit::ReservedPort::new().expect("reserving the JWKS port");
    let upstream = testkit::Upstream::start().expect("starting the upstream");
    let envoy = testkit::Envoy::builder(&cfg)
        .upstream(upstream.addr())
        .jwks(reserved.addr())
        .start()
        .unwrap_or_else(|err| panic!("starting Envoy: {err:#}"));
    let valid = TokenBuilder::rs256().scope("payments:read").sign();
    let forged = format!("{}.c2lnbmF0dXJl", valid.rsplit_once('.').unwrap().0);
    for (what, token) in [("valid signature", &valid), ("forged signature", &forged)] {
        let r = testkit::h2::Request::new(envoy.addr(), "GET", "/v1/whoami")
            .bearer(token)
            .trailer("x-checksum", "abc")
            .send()
            .expect("HTTP/2 request");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            upstream.count(),
            0,
            "{what}, keys pending, trailers: forwarded (answer {:?} {})",
            r.status,
            r.text()
        );
        assert!(
            matches!(r.status, Some(503 | 401 | 400)) || r.reset,
            "{what}: {r:?} {}",
            r.text()
        );
    }
    drop(reserved);
}

// ---- configuration --------------------------------------------------------------------------

#[test]
fn claim_rules_on_an_api_key_route_are_refused_at_configuration() {
    // An API key has no claims: a route accepting API keys cannot state claim, owner or step-up
    // rules (they would be silently unenforceable for key callers).
    let mut cfg = authz_config();
    assert_eq!(cfg["routes"][3]["id"], "batches");
    set(
        &mut cfg,
        "/routes/3/auth/claims",
        json!([{"claim": "/tenant", "equals": "acme"}]),
    );
    let upstream = testkit::Upstream::start().expect("starting the upstream");
    let envoy = testkit::Envoy::builder(&cfg)
        .upstream(upstream.addr())
        .start()
        .unwrap_or_else(|err| panic!("starting Envoy: {err:#}"));
    let line = envoy
        .wait_for_log("configuration refused", Duration::from_secs(10))
        .unwrap_or_else(|err| panic!("{err:#}"));
    assert!(
        line.contains("routes[3]"),
        "refusal does not name the route: {line}"
    );
    let r = envoy
        .get("/v1/batches")
        .header("x-api-key", KEY_BATCH)
        .send();
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(upstream.count(), 0);
}

#[test]
fn two_api_keys_are_refused() {
    // Two API key headers (Envoy passes both, it does not merge them): as with two Authorization
    // headers, two credentials of a kind are refused, in either order.
    let stack = start(&authz_config());
    let e = &stack.envoy;
    for (first, second) in [
        (KEY_UNKNOWN, KEY_BATCH),
        (KEY_BATCH, KEY_UNKNOWN),
        (KEY_BATCH, KEY_READONLY),
    ] {
        let r = e
            .get("/v1/reports")
            .header("x-api-key", first)
            .header("x-api-key", second)
            .send();
        assert_eq!(
            r.status, 401,
            "two API keys, {first:.12}… then {second:.12}…:\n{r:?}"
        );
        assert_not_echoed(&r, first);
        assert_not_echoed(&r, second);
    }
    assert_upstream_total(&stack, 0);
}
