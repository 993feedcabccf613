//! JWT authentication through a real Envoy: accepted tokens and the headers the upstream sees,
//! every refusal reason with its status, challenge and problem body, and monitor mode.
//!
//! Each test starts its own Envoy (`testkit::Stack`) on fresh loopback ports, so tests run in
//! parallel. They need the built module (`make build`) and Envoy (`make envoy` or `ENVOY_BIN`).
//! The configuration is `testkit::config::base()`: provider `idp` (remote JWKS: RS256, PS256,
//! ES256, EdDSA) and provider `hs` (inline HS256 key), routes listed in `testkit::config::routes`.

// The root crate denies these lints for the filter; test helpers outside #[test] functions
// panic on purpose, with the message a failing test should show.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use testkit::config::{self, set};
use testkit::problem::{
    assert_invalid_request, assert_invalid_token, assert_no_token, assert_problem, challenge,
};
use testkit::upstream::SeenRequest;
use testkit::{tokens, Algorithm, Key, Response, Stack, TokenBuilder};

/// The echo upstream's view of a forwarded request: the `headers` object of its JSON answer.
fn forwarded_headers(response: &Response) -> Value {
    assert_eq!(response.status, 200, "not forwarded:\n{response:?}");
    response.json()["headers"].clone()
}

/// The one request the upstream received.
fn only_request(stack: &Stack) -> SeenRequest {
    let seen = stack.upstream.seen();
    assert_eq!(seen.len(), 1, "expected exactly one upstream request");
    seen.into_iter().next().expect("one request")
}

/// Sends `token` as a Bearer token to `GET /v1/accounts` (scope accounts:read) and asserts a 401
/// `invalid_token` refusal whose problem type is one of `slugs`, that never reached the upstream.
fn assert_refused(config: &Value, token: &str, slugs: &[&str]) {
    let stack = Stack::start(config);
    let response = stack.envoy.get("/v1/accounts").bearer(token).send();
    let slug = testkit::problem::slug(&response);
    let Some(slug) = slug.filter(|slug| slugs.contains(&slug.as_str())) else {
        panic!("expected 401 with problem type {slugs:?}, got:\n{response:?}");
    };
    assert_invalid_token(&response, &slug, token);
    assert_eq!(
        stack.upstream.count(),
        0,
        "the upstream saw a refused request"
    );
}

// ---- accepted tokens ------------------------------------------------------------------------

/// The asymmetric algorithms finguard verifies with its own arithmetic.
const ASYMMETRIC_ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

#[test]
fn valid_tokens_of_every_asymmetric_algorithm_are_forwarded_with_claim_headers() {
    let stack = Stack::start(&config::base());
    for alg in ASYMMETRIC_ALGORITHMS {
        let sub = format!("cust-{alg:?}").to_lowercase();
        let token = TokenBuilder::new(alg)
            .subject(&sub)
            .claim("client_id", "mobile-app")
            .sign();
        let response = stack.envoy.get("/v1/accounts").bearer(&token).send();
        assert_eq!(response.status, 200, "{alg:?} refused:\n{response:?}");
        let headers = forwarded_headers(&response);
        assert_eq!(headers["x-auth-subject"], sub.as_str(), "{alg:?}");
        assert_eq!(headers["x-auth-client"], "mobile-app", "{alg:?}");
    }
    assert_eq!(stack.upstream.count(), 4);
}

#[test]
fn valid_hs256_token_with_the_inline_key_is_forwarded() {
    let stack = Stack::start(&config::base());
    let token = TokenBuilder::new(Algorithm::HS256)
        .subject("svc-batch")
        .sign();
    // /v1/whoami has no "auth": any provider, here `hs` (selected by iss https://hs.example).
    let response = stack.envoy.get("/v1/whoami").bearer(&token).send();
    assert_eq!(forwarded_headers(&response)["x-auth-subject"], "svc-batch");
}

#[test]
fn claim_headers_render_strings_arrays_numbers_and_objects() {
    let stack = Stack::start(&config::base());
    let token = TokenBuilder::rs256()
        .claim("client_id", "web")
        .claim("realm", json!({"roles": ["teller", "auditor"]}))
        .claim("limit", 5000)
        .claim("ctx", json!({"branch": "LON", "tier": 2}))
        .sign();
    let response = stack.envoy.get("/v1/accounts").bearer(&token).send();
    let headers = forwarded_headers(&response);
    assert_eq!(headers["x-auth-subject"], "cust-42");
    assert_eq!(headers["x-auth-client"], "web");
    assert_eq!(headers["x-auth-roles"], "teller,auditor");
    assert_eq!(headers["x-auth-limit"], "5000");
    let ctx: Value = serde_json::from_str(headers["x-auth-ctx"].as_str().unwrap_or_default())
        .unwrap_or_else(|err| panic!("x-auth-ctx is not compact JSON ({err}): {headers}"));
    assert_eq!(ctx, json!({"branch": "LON", "tier": 2}));
    assert!(
        !headers["x-auth-ctx"]
            .as_str()
            .unwrap_or_default()
            .contains(' '),
        "object claim not compact: {headers}"
    );
}

#[test]
fn scope_claim_as_an_array_is_accepted() {
    let stack = Stack::start(&config::base());
    let token = TokenBuilder::rs256()
        .claim("scope", json!(["profile", "accounts:read"]))
        .sign();
    let response = stack.envoy.get("/v1/accounts").bearer(&token).send();
    assert_eq!(response.status, 200, "{response:?}");
}

#[test]
fn token_expired_within_clock_skew_is_accepted() {
    let stack = Stack::start(&config::base());
    // clock_skew_seconds is 60.
    let token = TokenBuilder::rs256().issued_in(-300).expires_in(-20).sign();
    let response = stack.envoy.get("/v1/accounts").bearer(&token).send();
    assert_eq!(response.status, 200, "{response:?}");
}

#[test]
fn token_from_a_cookie_is_accepted_when_cookies_are_a_source() {
    let mut cfg = config::base();
    set(
        &mut cfg,
        "/token/sources",
        json!([{"header": "authorization", "scheme": "Bearer"}, {"cookie": "fg_session"}]),
    );
    let stack = Stack::start(&cfg);
    let token = TokenBuilder::rs256().sign();
    let response = stack
        .envoy
        .get("/v1/accounts")
        .header("cookie", &format!("theme=dark; fg_session={token}"))
        .send();
    assert_eq!(response.status, 200, "{response:?}");
}

// ---- refusals -------------------------------------------------------------------------------

#[test]
fn missing_token_gets_a_bare_challenge() {
    let stack = Stack::start(&config::base());
    let response = stack.envoy.get("/v1/accounts").send();
    assert_problem(&response, 401, "token-missing");
    // RFC 6750 §3.1: no error code when the request carried no credentials.
    let params = challenge(&response);
    assert_eq!(
        params.keys().collect::<Vec<_>>(),
        ["realm", "scheme"],
        "challenge is not bare: {:?}",
        response.header("www-authenticate")
    );
    assert_eq!(stack.upstream.count(), 0);
}

#[test]
fn expired_token_beyond_clock_skew_is_refused() {
    let token = TokenBuilder::rs256()
        .issued_in(-600)
        .expires_in(-120)
        .sign();
    assert_refused(&config::base(), &token, &["token-expired"]);
}

#[test]
fn token_not_yet_valid_is_refused() {
    let token = TokenBuilder::rs256().not_before_in(300).sign();
    assert_refused(&config::base(), &token, &["token-not-yet-valid"]);
}

#[test]
fn token_from_an_unknown_issuer_is_refused() {
    let token = TokenBuilder::rs256().iss("https://evil.example").sign();
    assert_refused(&config::base(), &token, &["issuer-unknown"]);
}

#[test]
fn token_for_another_audience_is_refused() {
    let token = TokenBuilder::rs256().aud("ledger-api").sign();
    assert_refused(&config::base(), &token, &["audience-invalid"]);
}

#[test]
fn alg_none_is_refused() {
    // Either reason is right: "none" is outside every allowlist, and the signature is empty.
    assert_refused(
        &config::base(),
        &tokens::alg_none(),
        &["algorithm-not-allowed", "token-malformed"],
    );
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // Algorithm confusion: provider idp does not allow HS256, whatever the kid points at.
    assert_refused(
        &config::base(),
        &tokens::hs256_with_rsa_public_key(),
        &["algorithm-not-allowed"],
    );
}

#[test]
fn token_with_an_unknown_kid_is_refused() {
    let token = TokenBuilder::rs256().header("kid", "no-such-key").sign();
    assert_refused(&config::base(), &token, &["key-unknown"]);
}

#[test]
fn tampered_payload_is_refused() {
    let token = tokens::tampered(|claims| {
        claims.insert("sub".into(), "cust-1".into());
    });
    assert_refused(&config::base(), &token, &["signature-invalid"]);
}

#[test]
fn a_signature_with_one_bit_flipped_is_refused_for_every_asymmetric_algorithm() {
    // The verification arithmetic is finguard's own (RSA rows, the P-256 field and scalar
    // inverse): through Envoy, a valid token of each algorithm with one bit of its signature
    // flipped must be refused, and the untouched token accepted.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let stack = Stack::start(&config::base());
    for alg in ASYMMETRIC_ALGORITHMS {
        let token = TokenBuilder::new(alg).sign();
        let (signed, signature) = token.rsplit_once('.').expect("a JWS");
        let mut bytes = b64.decode(signature).expect("base64url signature");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        let forged = format!("{signed}.{}", b64.encode(&bytes));
        let response = stack.envoy.get("/v1/accounts").bearer(&forged).send();
        assert_eq!(response.status, 401, "{alg:?} accepted a forged signature");
        assert_eq!(
            testkit::problem::slug(&response).as_deref(),
            Some("signature-invalid"),
            "{alg:?}"
        );
        assert_invalid_token(&response, "signature-invalid", &forged);
        let response = stack.envoy.get("/v1/accounts").bearer(&token).send();
        assert_eq!(response.status, 200, "{alg:?} refused a valid token");
    }
    assert_eq!(stack.upstream.count(), 4);
}

#[test]
fn duplicate_alg_header_member_is_refused() {
    // RFC 7515 §4 lets a parser keep the last member, which would verify this token; finguard
    // rejects duplicate members instead.
    assert_refused(
        &config::base(),
        &tokens::duplicate_alg(),
        &["token-malformed", "token-header-forbidden"],
    );
}

#[test]
fn oversized_token_is_refused() {
    assert_refused(&config::base(), &tokens::oversized(), &["token-too-large"]);
}

#[test]
fn jku_header_is_refused() {
    assert_refused(
        &config::base(),
        &tokens::with_jku(),
        &["token-header-forbidden"],
    );
}

#[test]
fn unknown_crit_header_is_refused() {
    assert_refused(
        &config::base(),
        &tokens::with_crit(),
        &["token-header-forbidden"],
    );
}

#[test]
fn two_authorization_headers_are_refused() {
    let stack = Stack::start(&config::base());
    let first = TokenBuilder::rs256().sign();
    let second = TokenBuilder::rs256().subject("cust-7").sign();
    let response = stack
        .envoy
        .get("/v1/accounts")
        .bearer(&first)
        .bearer(&second)
        .send();
    assert_invalid_request(&response, "token-multiple", &first);
    assert_no_token(&response, &second);
    assert_eq!(stack.upstream.count(), 0);
}

#[test]
fn token_in_header_and_cookie_is_refused_when_both_are_sources() {
    let mut cfg = config::base();
    set(
        &mut cfg,
        "/token/sources",
        json!([{"header": "authorization", "scheme": "Bearer"}, {"cookie": "fg_session"}]),
    );
    let stack = Stack::start(&cfg);
    let token = TokenBuilder::rs256().sign();
    let response = stack
        .envoy
        .get("/v1/accounts")
        .bearer(&token)
        .header("cookie", &format!("fg_session={token}"))
        .send();
    assert_invalid_request(&response, "token-multiple", &token);
    assert_eq!(stack.upstream.count(), 0);
}

#[test]
fn token_in_query_is_refused_by_default() {
    let stack = Stack::start(&config::base());
    let token = TokenBuilder::rs256().sign();
    let response = stack
        .envoy
        .get(&format!("/v1/accounts?access_token={token}"))
        .send();
    assert_invalid_request(&response, "token-in-query", &token);
    assert_eq!(stack.upstream.count(), 0);
}

#[test]
fn insufficient_scope_is_forbidden_with_the_required_scope() {
    let stack = Stack::start(&config::base());
    let token = TokenBuilder::rs256().scope("payments:write profile").sign();
    let response = stack
        .envoy
        .get("/v1/accounts/acc-001")
        .bearer(&token)
        .send();
    assert_problem(&response, 403, "scope-insufficient");
    let params = challenge(&response);
    assert_eq!(
        params.get("error").map(String::as_str),
        Some("insufficient_scope")
    );
    assert_eq!(
        params.get("scope").map(String::as_str),
        Some("accounts:read")
    );
    assert_no_token(&response, &token);
    assert_eq!(stack.upstream.count(), 0);
}

#[test]
fn hs256_token_is_refused_on_a_route_limited_to_another_provider() {
    // /v1/accounts accepts only provider idp; an HS256 token from provider hs must not pass.
    let stack = Stack::start(&config::base());
    let token = TokenBuilder::new(Algorithm::HS256).sign();
    let response = stack.envoy.get("/v1/accounts").bearer(&token).send();
    assert_eq!(response.status, 401, "{response:?}");
    assert_no_token(&response, &token);
    assert_eq!(stack.upstream.count(), 0);
}

// ---- identity headers -----------------------------------------------------------------------

#[test]
fn client_supplied_claim_headers_are_replaced_or_removed() {
    let stack = Stack::start(&config::base());
    let token = TokenBuilder::rs256().subject("cust-42").sign();

    // Authenticated route: the spoofed subject is replaced by the token's; headers for claims the
    // token does not have (roles) are removed, not passed through.
    let response = stack
        .envoy
        .get("/v1/accounts")
        .bearer(&token)
        .header("x-auth-subject", "admin")
        .header("X-Auth-Roles", "superuser")
        .send();
    assert_eq!(response.status, 200, "{response:?}");
    let seen = only_request(&stack);
    assert_eq!(seen.header_all("x-auth-subject"), ["cust-42"]);
    assert!(
        seen.header_all("x-auth-roles").is_empty(),
        "spoofed x-auth-roles reached the upstream: {:?}",
        seen.headers
    );

    // Anonymous route: no identity at all, so the spoofed header is simply dropped.
    let response = stack
        .envoy
        .get("/healthz")
        .header("x-auth-subject", "admin")
        .send();
    assert_eq!(response.status, 200, "{response:?}");
    let seen = stack.upstream.last().expect("health check forwarded");
    assert!(
        seen.header_all("x-auth-subject").is_empty(),
        "spoofed x-auth-subject reached the upstream on an anonymous route: {:?}",
        seen.headers
    );
}

// ---- monitor mode ---------------------------------------------------------------------------

#[test]
fn monitor_mode_forwards_requests_it_would_refuse() {
    let mut cfg = config::base();
    set(&mut cfg, "/mode", json!("monitor"));
    let stack = Stack::start(&cfg);

    let expired = TokenBuilder::rs256()
        .key(Key::RsaA)
        .issued_in(-600)
        .expires_in(-120)
        .sign();
    let response = stack.envoy.get("/v1/accounts").bearer(&expired).send();
    assert_eq!(
        response.status, 200,
        "monitor mode refused a bad token:\n{response:?}"
    );
    let response = stack.envoy.get("/v1/accounts").send();
    assert_eq!(
        response.status, 200,
        "monitor mode refused a missing token:\n{response:?}"
    );
    assert_eq!(stack.upstream.count(), 2);
}
