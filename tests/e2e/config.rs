//! Invalid plugin configurations through a real Envoy: finguard refuses them, logs
//! `finguard: configuration refused: <path>: <message>` naming the bad field, and requests are
//! answered 503 (failure_policy FAIL_CLOSED) without reaching the upstream.

// The root crate denies these lints for the filter; test helpers outside #[test] functions
// panic on purpose, with the message a failing test should show.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{json, Value};
use testkit::config::{self, set};
use testkit::{Envoy, TokenBuilder, Upstream};

const REFUSED: &str = "finguard: configuration refused:";

/// Starts Envoy with `cfg`, asserts the refusal log line contains every one of `path_parts`, that
/// a request with a valid token gets 503, and that the upstream saw nothing. Returns the line.
fn assert_config_refused(cfg: &Value, path_parts: &[&str]) -> String {
    let upstream = Upstream::start().expect("starting the upstream");
    let envoy = Envoy::builder(cfg)
        .upstream(upstream.addr())
        .start()
        .unwrap_or_else(|err| {
            panic!(
                "Envoy did not come up with a refused finguard configuration (contract: it \
                 starts and answers 503):\n{err:#}"
            )
        });
    let line = envoy
        .wait_for_log(REFUSED, Duration::from_secs(10))
        .unwrap_or_else(|err| panic!("{err:#}"));
    for part in path_parts {
        assert!(
            line.contains(part),
            "refusal does not name {part:?}: {line}"
        );
    }

    let token = TokenBuilder::rs256().sign();
    let response = envoy.get("/v1/accounts").bearer(&token).send();
    assert_eq!(
        response.status, 503,
        "refused configuration did not fail closed:\n{response:?}"
    );
    let response = envoy.get("/healthz").send();
    assert_eq!(
        response.status, 503,
        "anonymous route passed with a refused configuration:\n{response:?}"
    );
    assert_eq!(upstream.count(), 0, "the upstream saw a request");
    line
}

#[test]
fn unknown_provider_field_is_refused_with_its_path() {
    let mut cfg = config::base();
    set(&mut cfg, "/providers/0/isuer", json!("https://idp.example"));
    assert_config_refused(&cfg, &["providers[0]", "isuer"]);
}

#[test]
fn unknown_top_level_field_is_refused_with_its_name() {
    let mut cfg = config::base();
    set(&mut cfg, "/moed", json!("monitor"));
    assert_config_refused(&cfg, &["moed"]);
}

#[test]
fn unsupported_algorithm_is_refused_with_its_path() {
    let mut cfg = config::base();
    set(
        &mut cfg,
        "/providers/0/algorithms",
        json!(["RS256", "XS999"]),
    );
    assert_config_refused(&cfg, &["providers[0].algorithms"]);
}

#[test]
fn algorithm_none_is_refused() {
    let mut cfg = config::base();
    set(&mut cfg, "/providers/0/algorithms", json!(["none"]));
    assert_config_refused(&cfg, &["providers[0].algorithms"]);
}

#[test]
fn hmac_algorithm_with_a_remote_jwks_is_refused() {
    // HS256 is only allowed with an inline oct key: a remote JWKS would make the verification key
    // something the network can supply.
    let mut cfg = config::base();
    set(
        &mut cfg,
        "/providers/0/algorithms",
        json!(["RS256", "HS256"]),
    );
    assert_config_refused(&cfg, &["providers[0]"]);
}

#[test]
fn invalid_route_is_refused_with_its_path() {
    let mut cfg = config::base();
    set(
        &mut cfg,
        "/routes/2/match/path",
        json!("/v1/customers/{customer_id/payments"),
    );
    assert_config_refused(&cfg, &["routes[2]"]);
}
