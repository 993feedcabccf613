//! Issue #19, classes 8 and 9, through the real Envoy (HTTP/1.1 and HTTP/2).
//!
//! Class 8, time claims: a validly signed token whose `exp`, `nbf`, `iat` or `auth_time` is not
//! a sane NumericDate (a finite number in 0 ..= 9999-12-31T23:59:59Z) is refused 401
//! `claim-invalid`, and the upstream sees nothing. Before the fix `exp: 1e30`, `2^64 + now` or
//! `2^53` made a never-expiring token, and negative `nbf`/`iat` or any `auth_time` passed.
//!
//! Class 9, key hygiene: an Ed25519 key of small order (with which the signature R = identity,
//! S = 0 verifies for every message), a 2047-bit RSA modulus (256 bytes, so it passed a byte
//! count) and a ROCA modulus are refused at key load: an inline JWKS refuses the configuration,
//! a remote JWKS loses those keys (the rest of the set keeps working), so tokens for them are
//! 401 `key-unknown`.

// The root crate denies these lints for the filter; test helpers outside #[test] functions
// panic on purpose, with the message a failing test should show.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use testkit::config::{self, set};
use testkit::problem::assert_invalid_token;
use testkit::{fixtures, Envoy, JwksServer, Key, Stack, TokenBuilder, Upstream};

/// `builder`'s claims with `name` set to the raw JSON text `raw` (exactly as written: serde_json
/// would turn `18446744075509551616` into a float), signed as the builder would sign.
fn with_raw_claim(builder: TokenBuilder, alg: Algorithm, name: &str, raw: &str) -> String {
    let placeholder = "\u{1}raw\u{1}";
    let builder = builder.claim(name, placeholder);
    let claims = serde_json::to_string(builder.claims()).unwrap();
    let claims = claims.replace(&serde_json::to_string(placeholder).unwrap(), raw);
    let header =
        json!({"alg": format!("{alg:?}"), "typ": "JWT", "kid": Key::for_algorithm(alg).kid()});
    testkit::tokens::sign_raw(
        header.to_string().as_bytes(),
        claims.as_bytes(),
        Key::for_algorithm(alg),
        alg,
    )
}

/// The values an attacker tries for a time claim, as raw JSON.
fn absurd_dates() -> Vec<String> {
    let now = testkit::tokens::now();
    vec![
        "1e30".into(),
        ((1u128 << 64) + now as u128).to_string(), // 2^64 + now
        "18446744073709551615".into(),             // u64::MAX
        "9223372036854775807".into(),              // i64::MAX
        (1u64 << 53).to_string(),                  // 2^53
        "253402300800".into(),                     // 10000-01-01T00:00:00Z
        "253402300800.5".into(),
        "1e308".into(),
        "-1".into(),
        "-1e30".into(),
        format!("-{now}"),
        "-0.5".into(),
        format!("\"{}\"", now + 300),
        "true".into(),
        "null".into(),
        format!("[{}]", now + 300),
    ]
}

#[test]
fn absurd_time_claims_are_claim_invalid_over_http1_and_http2() {
    let stack = Stack::start(&config::base());
    let envoy = &stack.envoy;
    let mut sent = 0;
    for claim in ["exp", "nbf", "iat", "auth_time"] {
        for raw in absurd_dates() {
            // RS256 (rsa-a) over HTTP/1.1, ES256 (ec-a) over HTTP/2: both signed validly.
            let token = with_raw_claim(TokenBuilder::rs256(), Algorithm::RS256, claim, &raw);
            let response = envoy.get("/v1/accounts").bearer(&token).send();
            assert_eq!(
                response.status, 401,
                "{claim}: {raw} over HTTP/1.1 was not refused:\n{response:?}"
            );
            assert_invalid_token(&response, "claim-invalid", &token);
            let token = with_raw_claim(
                TokenBuilder::new(Algorithm::ES256),
                Algorithm::ES256,
                claim,
                &raw,
            );
            let response = testkit::h2::Request::new(envoy.addr(), "GET", "/v1/accounts")
                .bearer(&token)
                .send()
                .expect("HTTP/2 request");
            assert_eq!(
                (response.status, response.slug().as_deref()),
                (Some(401), Some("claim-invalid")),
                "{claim}: {raw} over HTTP/2:\n{}",
                response.text()
            );
            sent += 2;
        }
    }
    assert!(sent > 100);
    assert_eq!(
        stack.upstream.count(),
        0,
        "the upstream saw a refused token"
    );

    // Beyond f64, the payload is not JSON finguard reads at all.
    let token = with_raw_claim(TokenBuilder::rs256(), Algorithm::RS256, "exp", "1e400");
    let response = envoy.get("/v1/accounts").bearer(&token).send();
    assert_invalid_token(&response, "token-malformed", &token);
    assert_eq!(stack.upstream.count(), 0);
}

#[test]
fn sane_time_claims_still_pass_including_fractions_and_the_last_second() {
    let stack = Stack::start(&config::base());
    let envoy = &stack.envoy;
    let now = testkit::tokens::now();
    let cases = [
        ("exp", format!("{}.75", now + 300)),
        ("exp", format!("{}e0", now + 300)),
        // The last accepted second; the provider sets no max_lifetime_seconds.
        ("exp", "253402300799".into()),
        ("nbf", format!("{}.25", now - 10)),
        ("nbf", "0".into()),
        ("nbf", "-0".into()),
        ("iat", format!("{}.5", now - 10)),
        ("auth_time", format!("{}", now - 30)),
        ("auth_time", "0.0".into()),
    ];
    for (claim, raw) in &cases {
        let token = with_raw_claim(TokenBuilder::rs256(), Algorithm::RS256, claim, raw);
        let response = envoy.get("/v1/accounts").bearer(&token).send();
        assert_eq!(response.status, 200, "{claim}: {raw}:\n{response:?}");
    }
    assert_eq!(stack.upstream.count(), cases.len());
}

/// 32 bytes of the Ed25519 identity point (y = 1): a key of order 1.
fn identity_x() -> String {
    let mut x = [0u8; 32];
    x[0] = 1;
    URL_SAFE_NO_PAD.encode(x)
}

/// The identity spelled y = p + 1 (non-canonical): the same point of order 1.
fn identity_non_canonical_x() -> String {
    let mut x = [0xffu8; 32];
    x[0] = 0xee;
    x[31] = 0x7f;
    URL_SAFE_NO_PAD.encode(x)
}

/// A point of order 8 (`c7176a70...ac037a`).
fn order8_x() -> String {
    let hex = "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a";
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A 2048-bit modulus of the ROCA form (the unit tests' constructed fixture).
const ROCA_N: &str = "gEASOcG2QyjSUSx9ikIIOOp9ohiN-EXMkhqupU7UDh_QC80wTpJHrzVlDZsMy5herAyDdUa14VPjfqTmkClSjo6WEB661peJ2pflDU_NqkkdW8ySwf3PEjY3d6VO1A4f0AvNME6SR681ZQ2bDMuYXqwMg3VGteFT436k5pApUo6OlhAeutaXidqX5Q1PzapJHVvMksH9zxI2N3elTtQOH9ALzTBOkkevNWUNmwzLmF6sDIN1RrXhU-N-pOaQKVKOjpYQHrrWl4nal-UNT82qSR1bzJLB_c8SNjd3pU7UDh_QC80wTsSqyTAe5qX88UB0GhsRKFKeT-kyW7eE5VkSFQ";

fn weak_keys() -> Vec<(&'static str, Value)> {
    let rsa_2047: Value = serde_json::from_slice(&fixtures::read("rsa-2047.jwk.json")).unwrap();
    vec![
        (
            "Ed25519 key is of small order",
            json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed-weak", "use": "sig", "x": identity_x()}),
        ),
        (
            "Ed25519 key is not canonically encoded",
            json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed-weak-alias", "use": "sig", "x": identity_non_canonical_x()}),
        ),
        (
            "Ed25519 key is of small order",
            json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed-order8", "use": "sig", "x": order8_x()}),
        ),
        ("RSA modulus shorter than 2048 bits", rsa_2047),
        (
            "ROCA",
            json!({"kty": "RSA", "kid": "rsa-roca", "use": "sig", "n": ROCA_N, "e": "AQAB"}),
        ),
    ]
}

/// A provider with an inline JWKS holding `key` next to a good one.
fn inline_provider(key: Value) -> Value {
    let good: Value = serde_json::from_str(&fixtures::jwks()).unwrap();
    let mut keys = good["keys"].as_array().unwrap().clone();
    keys.push(key);
    json!({
        "name": "inline",
        "issuer": "https://inline.example",
        "audiences": [config::AUDIENCE],
        "algorithms": ["RS256", "EdDSA"],
        "jwks": {"inline": {"keys": keys}},
        "clock_skew_seconds": 60
    })
}

#[test]
fn inline_weak_keys_refuse_the_configuration() {
    for (message, key) in weak_keys() {
        let mut cfg = config::base();
        let mut providers = cfg["providers"].as_array().unwrap().clone();
        providers.push(inline_provider(key));
        set(&mut cfg, "/providers", Value::Array(providers));
        let upstream = Upstream::start().expect("starting the upstream");
        let envoy = Envoy::builder(&cfg)
            .upstream(upstream.addr())
            .start()
            .unwrap_or_else(|err| panic!("Envoy did not start: {err:#}"));
        let line = envoy
            .wait_for_log("finguard: configuration refused:", Duration::from_secs(15))
            .unwrap_or_else(|err| panic!("{message}: configuration not refused: {err:#}"));
        assert!(
            line.contains("providers[2]") && line.contains("keys[3]") && line.contains(message),
            "{message}: {line}"
        );
        let token = TokenBuilder::rs256().sign();
        let response = envoy.get("/v1/accounts").bearer(&token).send();
        assert_eq!(response.status, 503, "{message}:\n{response:?}");
        assert_eq!(upstream.count(), 0);
    }
}

/// (R = identity, S = 0): valid for every message under the identity key, before the fix.
fn forged_eddsa(kid: &str) -> String {
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    let claims = TokenBuilder::new(Algorithm::EdDSA).claims().clone();
    let mut signature = [0u8; 64];
    signature[0] = 1;
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// A genuine RS256 signature by the 2047-bit key.
fn signed_by_rsa_2047() -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-2047"});
    let claims = TokenBuilder::rs256().claims().clone();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    let key = EncodingKey::from_rsa_pem(&fixtures::read("rsa-2047.pem")).unwrap();
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::RS256).unwrap();
    format!("{input}.{signature}")
}

#[test]
fn remote_weak_keys_are_dropped_and_their_tokens_refused() {
    let mut doc: Value = serde_json::from_str(&fixtures::jwks()).unwrap();
    let keys = doc["keys"].as_array_mut().unwrap();
    for (_, key) in weak_keys() {
        keys.push(key);
    }
    let jwks = JwksServer::start(&doc.to_string()).expect("starting the JWKS server");
    let stack = Stack::start_with(&config::base(), jwks);
    let envoy = &stack.envoy;

    // The rest of the set serves: the good keys of the same document verify.
    let good = TokenBuilder::rs256().sign();
    assert_eq!(envoy.get("/v1/accounts").bearer(&good).send().status, 200);
    let good_ed = TokenBuilder::new(Algorithm::EdDSA).sign();
    assert_eq!(
        envoy.get("/v1/accounts").bearer(&good_ed).send().status,
        200
    );
    let served = stack.upstream.count();

    for token in [
        forged_eddsa("ed-weak"),
        forged_eddsa("ed-weak-alias"),
        forged_eddsa("ed-order8"),
        signed_by_rsa_2047(),
    ] {
        let response = envoy.get("/v1/accounts").bearer(&token).send();
        assert_invalid_token(&response, "key-unknown", &token);
        let response = testkit::h2::Request::new(envoy.addr(), "GET", "/v1/accounts")
            .bearer(&token)
            .send()
            .expect("HTTP/2 request");
        assert_eq!(
            (response.status, response.slug().as_deref()),
            (Some(401), Some("key-unknown")),
            "HTTP/2:\n{}",
            response.text()
        );
    }
    // Without a kid the forged signature is tried against every Ed25519 key: none verifies it.
    let no_kid = {
        let token = forged_eddsa("x");
        let (_, rest) = token.split_once('.').unwrap();
        format!(
            "{}.{rest}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "EdDSA", "typ": "JWT"}).to_string())
        )
    };
    let response = envoy.get("/v1/accounts").bearer(&no_kid).send();
    assert_invalid_token(&response, "signature-invalid", &no_kid);
    assert_eq!(
        stack.upstream.count(),
        served,
        "the upstream saw a forged token"
    );
}
