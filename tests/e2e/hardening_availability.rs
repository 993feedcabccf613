//! Availability under attack through a real Envoy (issue 20): what many addresses do to
//! finguard's shared tables costs them, not others. Client addresses vary through
//! `x-forwarded-for` with `rate_limits.trusted_forwarded_hops: 1`; the tables are tiny
//! (`slots: 16`) so that a few hundred addresses fill them.
//!
//! - Lockout table: thousands of failing addresses never lock out an address that did not fail
//!   itself (nor the plain TCP peer), and a lock in force is not taken over.
//! - Rate-limit table: full of an attacker's live buckets, a newcomer still gets a bucket of its
//!   own (no shared, drained overflow bucket), and a heavy client's debt is kept.
//! - Verification budget: one address flooding forged tokens takes only its share; a botnet of
//!   them drains the open part only, and addresses that proved themselves keep the reserve.
//! - Both tables export their pressure as metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use testkit::problem::assert_problem;
use testkit::{config, eventually, Algorithm, Request, Stack, TokenBuilder};

fn cfg(rate_limits: Value) -> Value {
    json!({
        "mode": "enforce",
        "providers": [config::hs_provider()],
        "rate_limits": rate_limits,
        "routes": [
            {"id": "health", "match": {"methods": ["GET"], "path": "/healthz"}, "public": true},
            {"id": "whoami", "match": {"methods": ["GET"], "path": "/v1/whoami"}},
            {"id": "rates", "match": {"methods": ["GET"], "path": "/v1/rates"}, "public": true,
             "rate_limit": [{"name": "per-address", "key": ["address"], "requests": 3, "per_seconds": 3600}]}
        ]
    })
}

fn valid() -> String {
    TokenBuilder::new(Algorithm::HS256).sign()
}

/// A token whose signature no longer verifies (same length, canonical base64url).
fn forged() -> String {
    let token = valid();
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let replacement = if signature.starts_with('A') { 'B' } else { 'A' };
    format!("{signed}.{replacement}{}", &signature[1..])
}

fn start(cfg: &Value) -> Stack {
    let stack = Stack::start(cfg);
    assert_eq!(
        stack.envoy.get("/healthz").send().status,
        200,
        "finguard refused the configuration:\n{}",
        stack.envoy.logs()
    );
    stack
}

/// Sends `requests` from 4 threads; returns the statuses in order.
fn send_all(requests: &[Request]) -> Vec<u16> {
    let next = AtomicUsize::new(0);
    let statuses: Vec<AtomicUsize> = requests.iter().map(|_| AtomicUsize::new(0)).collect();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(request) = requests.get(i) else {
                    return;
                };
                statuses[i].store(usize::from(request.send().status), Ordering::SeqCst);
            });
        }
    });
    statuses
        .iter()
        .map(|s| u16::try_from(s.load(Ordering::SeqCst)).unwrap())
        .collect()
}

/// A counter finguard defined (Envoy prefixes `wasmcustom.`), once it is above zero.
fn counter_above_zero(stack: &Stack, name: &str) -> u64 {
    stat_reaches(stack, name, 1, Duration::from_secs(10))
}

/// Waits until the stat `name` (a counter or gauge) is at least `least`.
fn stat_reaches(stack: &Stack, name: &str, least: u64, within: Duration) -> u64 {
    let name = format!("wasmcustom.{name}");
    eventually(within, || {
        let stats = stack.envoy.admin("/stats").ok()?;
        let value: u64 = stats
            .text()
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())?;
        (value >= least).then_some(value)
    })
    .unwrap_or_else(|| {
        let stats = stack
            .envoy
            .admin("/stats")
            .map(|r| r.text())
            .unwrap_or_default();
        let seen: Vec<&str> = stats
            .lines()
            .filter(|l| l.contains("finguard.table"))
            .collect();
        panic!("{name} never reached {least}; table stats: {seen:?}")
    })
}

#[test]
fn no_address_is_locked_out_by_what_other_addresses_do() {
    let stack = start(&cfg(json!({
        "slots": 16, "trusted_forwarded_hops": 1,
        "lockout": {"failures": 3, "window_seconds": 600, "lock_seconds": 600}
    })));
    let e = &stack.envoy;
    let whoami = |address: Option<&str>, token: &str| {
        let request = e.get("/v1/whoami").bearer(token);
        match address {
            Some(address) => request.header("x-forwarded-for", address),
            None => request,
        }
    };
    // A guesser locks itself out.
    for _ in 0..3 {
        assert_eq!(whoami(Some("203.0.113.66"), &forged()).send().status, 401);
    }
    assert_problem(
        &whoami(Some("203.0.113.66"), &valid()).send(),
        429,
        "auth-locked-out",
    );
    // Then 100 addresses fail to the limit, filling the 16-slot table with locks in force.
    let attack: Vec<Request> = (0..100)
        .flat_map(|i| {
            let address = format!("2001:db8::{i:x}");
            (0..3).map(move |_| (address.clone(), forged()))
        })
        .map(|(address, token)| whoami(Some(&address), &token))
        .collect();
    let statuses = send_all(&attack);
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    // Innocent addresses, and the plain TCP peer, are served.
    for innocent in [Some("198.51.100.7"), Some("2001:db8:1::1"), None] {
        let response = whoami(innocent, &valid()).send();
        assert_eq!(response.status, 200, "{innocent:?}: {response:?}");
    }
    // The guesser's lock in force was not taken over by the flood.
    assert_problem(
        &whoami(Some("203.0.113.66"), &valid()).send(),
        429,
        "auth-locked-out",
    );
    counter_above_zero(
        &stack,
        "finguard.table_pressure.table.lockouts.event.no_room",
    );
    // The occupancy gauge, sampled every 10 s off the request path, shows the full table.
    stat_reaches(
        &stack,
        "finguard.table_occupancy.table.lockouts",
        100,
        Duration::from_secs(30),
    );
}

#[test]
fn a_full_rate_limit_table_still_gives_a_newcomer_its_own_bucket() {
    let stack = start(&cfg(json!({"slots": 16, "trusted_forwarded_hops": 1})));
    let e = &stack.envoy;
    let rates = |address: &str| e.get("/v1/rates").header("x-forwarded-for", address);
    // A heavy client spends its 3 requests.
    for _ in 0..3 {
        assert_eq!(rates("203.0.113.66").send().status, 200);
    }
    assert_problem(&rates("203.0.113.66").send(), 429, "rate-limited");
    // 200 fresh addresses, one request each: every one is a live bucket for an hour.
    let flood: Vec<Request> = (0..200)
        .map(|i| rates(&format!("2001:db8::{i:x}")))
        .collect();
    let statuses = send_all(&flood);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "a newcomer of the flood was refused: {statuses:?}"
    );
    // A newcomer gets its own full bucket, not a drained shared one.
    for _ in 0..3 {
        let response = rates("198.51.100.7").send();
        assert_eq!(response.status, 200, "{response:?}");
    }
    assert_problem(&rates("198.51.100.7").send(), 429, "rate-limited");
    // The heavy client's debt was kept: the flood evicted lighter buckets first.
    assert_problem(&rates("203.0.113.66").send(), 429, "rate-limited");
    counter_above_zero(
        &stack,
        "finguard.table_pressure.table.buckets.event.evicted",
    );
}

#[test]
fn a_replayed_forged_token_costs_one_verification_not_the_budget_of_others() {
    let mut config = cfg(json!({}));
    // Five cold verifications per worker per hour: a replay that cost one each would drain it.
    // Both clients share one address here (127.0.0.1): no per-client cap, the cache alone.
    config["verification_budget"] =
        json!({"requests": 5, "per_seconds": 3600, "client_share_percent": 100});
    let stack = start(&config);
    let e = &stack.envoy;
    let forged = forged();
    let replay: Vec<Request> = (0..100)
        .map(|_| e.get("/v1/whoami").bearer(&forged))
        .collect();
    let statuses = send_all(&replay);
    assert!(
        statuses.iter().all(|s| *s == 401),
        "the forged token is refused, never overloads: {statuses:?}"
    );
    // Another client's fresh tokens still verify (each worker spent at most one unit).
    for _ in 0..3 {
        let response = e.get("/v1/whoami").bearer(&valid()).send();
        assert_eq!(response.status, 200, "{response:?}");
    }
    // The replay is still refused for what it is, after the fresh tokens.
    let response = e.get("/v1/whoami").bearer(&forged).send();
    assert_problem(&response, 401, "signature-invalid");
}

#[test]
fn one_client_flooding_fresh_forged_tokens_takes_only_its_share_of_the_budget() {
    let mut config = cfg(json!({"trusted_forwarded_hops": 1}));
    // Eight cold verifications per worker per hour; one address may take a quarter (two).
    config["verification_budget"] = json!({"requests": 8, "per_seconds": 3600});
    let stack = start(&config);
    let e = &stack.envoy;
    let from = |address: &str, token: &str| {
        e.get("/v1/whoami")
            .bearer(token)
            .header("x-forwarded-for", address)
    };
    // Every forged token is new (no negative-cache hit): each would cost a verification.
    let flood: Vec<Request> = (0..60).map(|_| from("203.0.113.66", &forged())).collect();
    let statuses = send_all(&flood);
    let verified = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        verified <= 4 && statuses.iter().all(|s| *s == 401 || *s == 503),
        "at most its share (2 per worker) was verified: {statuses:?}"
    );
    // Other clients' fresh tokens verify: each worker has at least 6 units left.
    for client in ["198.51.100.7", "198.51.100.8", "198.51.100.9"] {
        let response = from(client, &valid()).send();
        assert_eq!(response.status, 200, "{client}: {response:?}");
    }
    assert_problem(
        &from("203.0.113.66", &valid()).send(),
        503,
        "verification-overloaded",
    );
}

#[test]
fn a_botnet_of_forged_tokens_leaves_the_reserve_to_addresses_that_proved_themselves() {
    let mut config = cfg(json!({"trusted_forwarded_hops": 1}));
    // 40 cold verifications per worker per hour: 20 open to anyone, 20 kept for addresses whose
    // token verified on that worker. No per-client cap: the reserve alone is tested here.
    config["verification_budget"] = json!({
        "requests": 40, "per_seconds": 3600,
        "client_share_percent": 100, "proven_reserve_percent": 50
    });
    let stack = start(&config);
    let e = &stack.envoy;
    let from = |address: &str, token: &str| {
        e.get("/v1/whoami")
            .bearer(token)
            .header("x-forwarded-for", address)
    };
    // B verifies 20 tokens, one connection each: both workers see it (the kernel spreads
    // connections; all 20 on one worker has odds of 2^-19), and 20 fit either open part.
    for _ in 0..20 {
        let response = from("198.51.100.7", &valid()).send();
        assert_eq!(response.status, 200, "{response:?}");
    }
    // A botnet: 200 addresses, one fresh forged token each, drains what is open on both workers.
    let botnet: Vec<Request> = (0..200)
        .map(|i| from(&format!("2001:db8::{i:x}"), &forged()))
        .collect();
    let statuses = send_all(&botnet);
    let verified = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        verified <= 20 && statuses.iter().all(|s| *s == 401 || *s == 503),
        "the botnet got at most the open parts (20 left in all): {statuses:?}"
    );
    // A never-seen address shares the open part with the botnet: it waits (documented).
    assert_problem(
        &from("198.51.100.99", &valid()).send(),
        503,
        "verification-overloaded",
    );
    // B's new tokens still verify, from the reserve.
    for _ in 0..8 {
        let response = from("198.51.100.7", &valid()).send();
        assert_eq!(response.status, 200, "{response:?}");
    }
}
