//! The verification budget through a real Envoy (issue 9): a worker verifies at most so many new
//! tokens per second; over budget a new token gets 503 `verification-overloaded` with
//! Retry-After, while a cached token keeps passing and cheap refusals (expired, unknown issuer)
//! never spend the budget. One worker (`--concurrency 1`): the budget is per worker, and one
//! worker makes the count exact.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::time::Duration;
use testkit::config;
use testkit::problem::assert_problem;
use testkit::{fixtures, Envoy, JwksServer, TokenBuilder, Upstream};

#[test]
fn new_tokens_over_budget_wait_while_cached_ones_pass() {
    let mut cfg = config::base();
    // The worker's budget alone: one client (this test) may take all of it.
    cfg["verification_budget"] =
        json!({"requests": 3, "per_seconds": 60, "client_share_percent": 100});
    let jwks = JwksServer::start(&fixtures::jwks()).expect("JWKS server");
    let upstream = Upstream::start().expect("upstream");
    let envoy = Envoy::builder(&cfg)
        .upstream(upstream.addr())
        .jwks(jwks.addr())
        .concurrency(1)
        .start()
        .unwrap_or_else(|err| panic!("starting Envoy: {err:#}"));
    let get = |token: &str| envoy.get("/v1/whoami").bearer(token).send();
    // Wait for the remote keys (the first requests may wait for them; not what is tested here).
    let cached = TokenBuilder::rs256().sign();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get(&cached).status != 200 {
        assert!(std::time::Instant::now() < deadline, "keys never arrived");
        std::thread::sleep(Duration::from_millis(200));
    }
    // `cached` spent one verification; two more new tokens pass (the second from the quarter kept
    // for proven addresses: `cached` proved this one), then the budget is spent.
    assert_eq!(get(&TokenBuilder::rs256().sign()).status, 200);
    assert_eq!(get(&TokenBuilder::rs256().sign()).status, 200);
    let before = upstream.count();
    for _ in 0..3 {
        let response = get(&TokenBuilder::rs256().sign());
        assert_problem(&response, 503, "verification-overloaded");
        let retry: u64 = response
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        // The open part refills one every 30 s (2 per 60 s).
        assert!((1..=30).contains(&retry), "Retry-After {retry}");
    }
    // A forged signature over a known key is refused without signature work, too.
    let forged = TokenBuilder::rs256()
        .key(testkit::Key::RsaB)
        .header("kid", "rsa-a")
        .sign();
    assert_problem(&get(&forged), 503, "verification-overloaded");
    assert_eq!(
        upstream.count(),
        before,
        "over-budget requests reached the upstream"
    );
    // The cached token never needs the budget; cheap checks refuse before it.
    assert_eq!(get(&cached).status, 200);
    let expired = TokenBuilder::rs256()
        .issued_in(-7200)
        .expires_in(-3600)
        .sign();
    assert_problem(&get(&expired), 401, "token-expired");
}
