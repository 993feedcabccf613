//! Remote JWKS through the `idp_jwks` cluster: key rotation, an identity provider that is down
//! at start or goes down later, and how often keys are fetched with two Envoy workers.
//!
//! Timings are shortened through the provider's `jwks.remote` settings; every wait is bounded.

// The root crate denies these lints for the filter; test helpers outside #[test] functions
// panic on purpose, with the message a failing test should show.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::config::{self, set};
use testkit::problem::{assert_invalid_token, assert_problem};
use testkit::{eventually, fixtures, Envoy, JwksServer, Key, ReservedPort, Stack, TokenBuilder};
use testkit::{Response, Upstream};

/// `config::base()` with `jwks.remote` settings of provider idp overridden.
fn config_with_remote(settings: Value) -> Value {
    let mut cfg = config::base();
    if let Value::Object(settings) = settings {
        for (name, value) in settings {
            set(&mut cfg, &format!("/providers/0/jwks/remote/{name}"), value);
        }
    }
    cfg
}

/// GET /v1/accounts with a fresh rsa-a token (a new `jti`, so never a token-cache hit).
fn fresh_request(envoy: &Envoy) -> Response {
    let token = TokenBuilder::rs256().sign();
    envoy.get("/v1/accounts").bearer(&token).send()
}

fn assert_keys_unavailable(response: &Response) {
    assert_problem(response, 503, "keys-unavailable");
    assert!(
        response.header("retry-after").is_some(),
        "keys-unavailable without Retry-After:\n{response:?}"
    );
}

#[test]
fn rotated_key_is_accepted_after_the_refetch_an_unknown_kid_triggers() {
    let cfg = config_with_remote(json!({"refresh_seconds": 300, "min_refetch_seconds": 1}));
    let stack = Stack::start(&cfg);
    let envoy = &stack.envoy;
    assert_eq!(fresh_request(envoy).status, 200, "rsa-a not accepted");

    // The identity provider rotates: rsa-b in, rsa-a out. Nothing tells finguard, and the next
    // scheduled refresh is minutes away: only the unknown kid can trigger the refetch.
    stack.jwks.set_body(&fixtures::jwks_rsa_b());
    let fetches_before = stack.jwks.count();
    std::thread::sleep(Duration::from_millis(1100)); // past min_refetch_seconds
    let accepted = eventually(Duration::from_secs(10), || {
        let token = TokenBuilder::rs256().key(Key::RsaB).sign();
        let response = envoy.get("/v1/accounts").bearer(&token).send();
        match response.status {
            200 => Some(response),
            401 => {
                // While the refetch is in flight the kid is still unknown.
                assert_invalid_token(&response, "key-unknown", &token);
                None
            }
            _ => panic!("unexpected answer during rotation:\n{response:?}"),
        }
    });
    let accepted = accepted.unwrap_or_else(|| {
        panic!(
            "rsa-b token never accepted; JWKS fetches: {} before, {} after",
            fetches_before,
            stack.jwks.count()
        )
    });
    assert_eq!(accepted.json()["headers"]["x-auth-subject"], "cust-42");
    assert!(stack.jwks.count() > fetches_before, "no refetch happened");

    // rsa-a was removed from the set: once every worker has the new set (the fetch landed in
    // one VM), a new rsa-a token no longer verifies.
    let removed = eventually(Duration::from_secs(5), || {
        let token = TokenBuilder::rs256().sign();
        let response = envoy.get("/v1/accounts").bearer(&token).send();
        (response.status == 401).then_some((token, response))
    });
    let (token, response) = removed.expect("rsa-a still accepted 5 s after it left the JWKS");
    assert_invalid_token(&response, "key-unknown", &token);
    for _ in 0..6 {
        let token = TokenBuilder::rs256().sign();
        let response = envoy.get("/v1/accounts").bearer(&token).send();
        assert_eq!(
            response.status, 401,
            "a worker still accepts the removed key rsa-a:\n{response:?}"
        );
    }
}

#[test]
fn unknown_kid_refetches_are_rate_limited() {
    let cfg = config_with_remote(json!({"refresh_seconds": 300, "min_refetch_seconds": 30}));
    let stack = Stack::start(&cfg);
    assert_eq!(fresh_request(&stack.envoy).status, 200);
    let fetches_before = stack.jwks.count();

    // An attacker sprays random kids; each one must not cost a JWKS fetch.
    for i in 0..12 {
        let token = TokenBuilder::rs256()
            .header("kid", format!("random-{i}"))
            .sign();
        let response = stack.envoy.get("/v1/accounts").bearer(&token).send();
        assert_invalid_token(&response, "key-unknown", &token);
    }
    let extra = stack.jwks.count() - fetches_before;
    assert!(
        extra <= 2,
        "{extra} JWKS fetches for 12 unknown kids within min_refetch_seconds"
    );
}

#[test]
fn jwks_down_at_start_fails_closed_then_recovers() {
    // The JWKS port refuses connections until the server starts on it.
    let reserved = ReservedPort::new().expect("reserving the JWKS port");
    let upstream = Upstream::start().expect("starting the upstream");
    let mut cfg = config_with_remote(json!({"retry_seconds": 1, "timeout_ms": 500}));
    set(&mut cfg, "/jwks_wait_ms", json!(500));
    let envoy = Envoy::builder(&cfg)
        .upstream(upstream.addr())
        .jwks(reserved.addr())
        .start()
        .unwrap_or_else(|err| panic!("starting Envoy: {err:#}"));

    let started = Instant::now();
    let response = fresh_request(&envoy);
    let waited = started.elapsed();
    assert_keys_unavailable(&response);
    assert!(
        waited < Duration::from_secs(4),
        "a request waited {waited:?} for keys (jwks_wait_ms is 500)"
    );
    assert_eq!(upstream.count(), 0, "a request passed without keys");

    // The identity provider comes up; the next retry (retry_seconds 1) loads the keys.
    let jwks = reserved
        .start(&fixtures::jwks())
        .expect("starting the JWKS server");
    let recovered = eventually(Duration::from_secs(10), || {
        let response = fresh_request(&envoy);
        match response.status {
            200 => Some(()),
            503 => {
                assert_keys_unavailable(&response);
                None
            }
            _ => panic!("unexpected answer while keys load:\n{response:?}"),
        }
    });
    assert!(
        recovered.is_some(),
        "keys never loaded after the JWKS server came up ({} fetches)",
        jwks.count()
    );
}

#[test]
fn jwks_down_later_is_tolerated_for_the_grace_period_then_fails_closed() {
    let grace = 4;
    let cfg = config_with_remote(json!({
        "refresh_seconds": 1, "retry_seconds": 1, "grace_seconds": grace, "timeout_ms": 500
    }));
    let stack = Stack::start(&cfg);
    let envoy = &stack.envoy;
    // Verified before the outage, on both workers (each request is a new connection, and
    // connections are spread over the workers), so it sits in every VM's token cache.
    let cached = TokenBuilder::rs256().sign();
    for _ in 0..6 {
        assert_eq!(envoy.get("/v1/accounts").bearer(&cached).send().status, 200);
    }

    stack.jwks.set_down(true);
    let down_at = Instant::now();
    std::thread::sleep(Duration::from_millis(1500)); // at least one failed refresh
    let response = fresh_request(envoy);
    assert_eq!(
        response.status, 200,
        "keys dropped as soon as one refresh failed (grace_seconds {grace}):\n{response:?}"
    );

    // Keys were last fetched at most refresh_seconds before the outage: they expire between
    // grace - 1 and grace seconds after it.
    let failed_closed = eventually(Duration::from_secs(grace + 6), || {
        let response = fresh_request(envoy);
        (response.status != 200).then_some(response)
    })
    .unwrap_or_else(|| panic!("still accepting tokens {grace}+6 s into the outage"));
    let after = down_at.elapsed();
    assert_keys_unavailable(&failed_closed);
    assert!(
        after >= Duration::from_secs(grace - 2),
        "failed closed after {after:?}, before grace_seconds {grace}"
    );

    // Fail closed means every token, including one verified (and cached) while keys were valid.
    for _ in 0..6 {
        let response = envoy.get("/v1/accounts").bearer(&cached).send();
        assert_eq!(
            response.status, 503,
            "a token verified before the outage is still accepted after the keys expired \
             (the token cache outlives the key set):\n{response:?}"
        );
        assert_keys_unavailable(&response);
    }

    // The provider comes back: keys load again.
    stack.jwks.set_down(false);
    let recovered = eventually(Duration::from_secs(8), || {
        (fresh_request(envoy).status == 200).then_some(())
    });
    assert!(recovered.is_some(), "keys never reloaded after the outage");
}

#[test]
fn failed_fetches_are_retried_every_retry_seconds() {
    let retry = 1;
    let cfg = config_with_remote(json!({
        "refresh_seconds": 300, "retry_seconds": retry, "timeout_ms": 500
    }));
    let jwks = JwksServer::start(&fixtures::jwks()).expect("starting the JWKS server");
    jwks.set_down(true);
    let stack = Stack::start_with(&cfg, jwks);

    let window = Duration::from_secs(4);
    let before = stack.jwks.count();
    let started = Instant::now();
    std::thread::sleep(window);
    let fetches = stack.jwks.count() - before;
    let elapsed = started.elapsed().as_secs();
    // One attempt per retry period, plus one of slack for timer alignment.
    let bound = (elapsed / retry + 1) as usize;
    assert!(
        fetches <= bound,
        "{fetches} JWKS fetches in {elapsed} s against a failing IdP with retry_seconds {retry} \
         (at most {bound})"
    );
    assert!(fetches >= 1, "no retry in {elapsed} s");
}

#[test]
fn jwks_is_fetched_per_envoy_not_per_worker() {
    let refresh = 2;
    let window = Duration::from_secs(6);
    let cfg = config_with_remote(json!({"refresh_seconds": refresh}));
    let jwks = JwksServer::start(&fixtures::jwks()).expect("starting the JWKS server");
    // Timed from when Envoy is up (its start takes seconds under load); the first fetch may
    // happen during the start, which the +2 of slack below covers.
    let stack = Stack::start_with(&cfg, jwks);
    let started = Instant::now();

    // Keep both workers busy: every request is a new connection, spread over the two workers.
    while started.elapsed() < window {
        assert_eq!(fresh_request(&stack.envoy).status, 200);
        std::thread::sleep(Duration::from_millis(250));
    }
    let elapsed = started.elapsed().as_secs();
    let fetches = stack.jwks.count();
    // One fetch at start, one per refresh period, one of slack for timer alignment. Fetching
    // per worker VM (three with --concurrency 2) would be about three times as many.
    let bound = (elapsed / refresh + 2) as usize;
    assert!(
        fetches <= bound,
        "{fetches} JWKS fetches in {elapsed} s with refresh_seconds {refresh} (at most {bound})"
    );
    assert!(
        fetches >= 2,
        "keys were not refreshed: {fetches} fetch(es) in {elapsed} s"
    );
}
