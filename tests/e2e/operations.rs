//! Monitoring, audit trail and incident-response levers through a real Envoy (issue 7).
//!
//! Audit lines (Envoy's `wasm` logger, `finguard-audit {json}`) and access-log lines (stdout,
//! `"access_log":"finguard-demo"`) both land in the Envoy log testkit captures. Metrics are read
//! from the admin `/stats/prometheus`. Policy changes go through ECDS: `Envoy::reload` rewrites the
//! watched policy file, exactly what `make reload` does for the demo.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::config;
use testkit::problem::assert_problem;
use testkit::{eventually, Algorithm, Envoy, Response, Stack, TokenBuilder};

const SUBJECT: &str = "alice.personal@example.com";
const JTI: &str = "jti-4f2a-secret-ish";

fn policy(extra: Value) -> Value {
    let mut cfg = json!({
        "realm": "finguard",
        "providers": [config::hs_provider()],
        "routes": [
            {"id": "health", "match": {"methods": ["GET"], "path": "/healthz"}, "public": true},
            {"id": "accounts", "match": {"methods": ["GET"], "path": "/v1/accounts/{id}"},
             "auth": {"providers": ["hs"], "scopes": {"all": ["accounts:read"]}}},
            {"id": "pay", "match": {"methods": ["POST"], "path": "/v1/customers/{customer_id}/payments"},
             "auth": {"providers": ["hs"], "owner": [{"param": "customer_id", "claim": "sub"},
                                                      {"body": "/customer_id", "claim": "sub"}]}}
        ]
    });
    for (key, value) in extra.as_object().unwrap() {
        cfg[key] = value.clone();
    }
    cfg
}

fn token(scope: &str) -> String {
    TokenBuilder::new(Algorithm::HS256)
        .iss(config::HS_ISSUER)
        .subject(SUBJECT)
        .claim("client_id", "mobile-app")
        .claim("jti", JTI)
        .scope(scope)
        .sign()
}

fn get(stack: &Stack, path: &str, token: &str) -> Response {
    stack.envoy.get(path).bearer(token).send()
}

/// The id Envoy gave the request (an edge Envoy replaces client-chosen ids).
fn request_id(response: &Response) -> String {
    response
        .header("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id in {response:?}"))
        .to_owned()
}

/// Audit events logged so far, parsed.
fn audit_events(envoy: &Envoy) -> Vec<Value> {
    envoy
        .logs()
        .lines()
        .filter_map(|line| line.split_once("finguard-audit ").map(|(_, json)| json))
        .filter_map(|json| serde_json::from_str(json.trim()).ok())
        .collect()
}

fn access_log_lines(envoy: &Envoy) -> Vec<Value> {
    envoy
        .logs()
        .lines()
        .filter(|line| line.contains("\"access_log\":\"finguard-demo\""))
        .filter_map(|line| serde_json::from_str(line.trim()).ok())
        .collect()
}

/// Waits for the audit event of the request with this id.
fn audit_of(envoy: &Envoy, request_id: &str) -> Value {
    eventually(Duration::from_secs(5), || {
        audit_events(envoy)
            .into_iter()
            .find(|e| e["request_id"] == request_id)
    })
    .unwrap_or_else(|| panic!("no audit event for {request_id}:\n{}", envoy.logs()))
}

#[test]
fn audit_events_name_the_decision_but_never_the_token_or_personal_data() {
    let stack = Stack::start(&policy(
        json!({"audit": {"hash_key": "c2VjcmV0LWtleS0xMjM0NTY3OA=="}}),
    ));
    let good = token("accounts:read");
    let weak = token("profile");
    let ok = get(&stack, "/v1/accounts/acc-1", &good);
    assert_eq!(ok.status, 200, "{ok:?}");
    let denied = get(&stack, "/v1/accounts/acc-22", &weak);
    assert_problem(&denied, 403, "scope-insufficient");
    let anonymous = stack.envoy.get("/v1/accounts/acc-333").send();
    assert_problem(&anonymous, 401, "token-missing");
    assert_eq!(
        denied.json()["request_id"].as_str(),
        Some(request_id(&denied).as_str()),
        "the problem body quotes the id the client got"
    );

    let allowed = audit_of(&stack.envoy, &request_id(&ok));
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["route"], "accounts");
    assert_eq!(allowed["status"], 200);
    assert_eq!(allowed["credential"], "jwt");
    assert_eq!(allowed["client_id"], "mobile-app");
    assert_eq!(allowed["method"], "GET");
    assert!(allowed["subject"].as_str().unwrap().starts_with("h:"));
    assert_eq!(allowed["jti_hash"].as_str().unwrap().len(), 32);
    assert!(allowed["filter_us"].as_u64().is_some());
    assert_eq!(allowed["reason"], Value::Null);

    let refused = audit_of(&stack.envoy, &request_id(&denied));
    assert_eq!(refused["decision"], "refuse");
    assert_eq!(refused["reason"], "scope-insufficient");
    assert_eq!(refused["status"], 403);
    assert_eq!(
        refused["subject"], allowed["subject"],
        "one subject, one hash: correlation works"
    );
    let anon = audit_of(&stack.envoy, &request_id(&anonymous));
    assert_eq!(
        (anon["reason"].as_str(), anon["credential"].as_str()),
        (Some("token-missing"), Some("none"))
    );

    // Nothing a reader of the audit trail must not see.
    let trail: String = stack
        .envoy
        .logs()
        .lines()
        .filter(|l| l.contains("finguard-audit"))
        .collect();
    for secret in [
        good.as_str(),
        weak.as_str(),
        SUBJECT,
        "alice",
        JTI,
        "acc-1",
        "acc-22",
    ] {
        assert!(
            !trail.contains(secret),
            "audit trail leaks {secret:?}:\n{trail}"
        );
    }
    // The token's payload segment (base64 of the claims) must not appear either.
    let payload = good.split('.').nth(1).unwrap();
    assert!(!trail.contains(payload));
}

#[test]
fn access_log_lines_carry_decision_and_reason() {
    let stack = Stack::start(&policy(json!({})));
    let ok = get(&stack, "/v1/accounts/acc-1", &token("accounts:read"));
    assert_eq!(ok.status, 200);
    let denied = get(&stack, "/v1/accounts/acc-22", &token("profile"));
    assert_eq!(denied.status, 403);
    let lines = eventually(Duration::from_secs(15), || {
        let lines = access_log_lines(&stack.envoy);
        (lines.len() >= 2).then_some(lines)
    })
    .unwrap_or_else(|| panic!("no access log lines:\n{}", stack.envoy.logs()));
    let allowed = lines
        .iter()
        .find(|l| l["request_id"] == request_id(&ok))
        .unwrap();
    assert_eq!(
        (allowed["decision"].as_str(), allowed["status"].as_i64()),
        (Some("allow"), Some(200))
    );
    let refused = lines
        .iter()
        .find(|l| l["request_id"] == request_id(&denied))
        .unwrap();
    assert_eq!(refused["decision"], "refuse");
    assert_eq!(refused["reason"], "scope-insufficient");
    assert_eq!(refused["status"], 403);
}

/// The value of one Prometheus sample (`name{labels} value`) whose line contains every needle.
fn sample(text: &str, name: &str, needles: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn prometheus(envoy: &Envoy) -> String {
    envoy.admin("/stats/prometheus").unwrap().text()
}

#[test]
fn prometheus_shows_decisions_by_reason_and_route() {
    // The remote-JWKS provider too, for the fetch and key-age metrics; a lockout after two
    // failures, for the lockout counter.
    let mut cfg = policy(json!({"rate_limits": {"lockout": {
        "failures": 2, "window_seconds": 60, "lock_seconds": 60}}}));
    cfg["providers"]
        .as_array_mut()
        .unwrap()
        .push(config::remote_provider());
    let stack = Stack::start(&cfg);
    let good = token("accounts:read");
    for _ in 0..3 {
        assert_eq!(get(&stack, "/v1/accounts/acc-1", &good).status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(&stack, "/v1/accounts/acc-1", "not-a-token").status, 401);
    }
    let text = eventually(Duration::from_secs(10), || {
        let text = prometheus(&stack.envoy);
        let allowed = sample(
            &text,
            "finguard_requests",
            &[
                "decision=\"allow\"",
                "route=\"accounts\"",
                "reason=\"none\"",
            ],
        )?;
        let malformed = sample(
            &text,
            "finguard_requests",
            &["decision=\"refuse\"", "reason=\"token-malformed\""],
        )?;
        (allowed >= 3.0 && malformed >= 2.0).then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "counters did not move:\n{}",
            prometheus(&stack.envoy)
                .lines()
                .filter(|l| l.contains("finguard"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert!(sample(&text, "finguard_authn_failures", &[]).unwrap() >= 2.0);
    assert!(sample(&text, "finguard_lockouts", &[]).unwrap() >= 1.0);
    assert!(
        sample(
            &text,
            "finguard_jwks_fetch",
            &["provider=\"idp\"", "result=\"success\""]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        sample(
            &text,
            "finguard_jwks_key_age_seconds",
            &["provider=\"idp\""]
        )
        .is_some(),
        "key age gauge missing"
    );
    assert!(
        text.contains("finguard_filter_time_us_bucket{phase=\"request_headers\""),
        "phase histogram missing"
    );
    assert!(sample(&text, "finguard_config_loaded", &[]).unwrap() >= 1.0);
}

/// With Envoy's `wasm` logger above `info` no audit line is built, and the phase histogram
/// times a sample of the requests (one in 16 per worker) instead of every one: timing costs host
/// calls on every phase. Decisions still reach the metrics and the access log.
#[test]
fn phase_time_is_sampled_when_no_audit_line_is_written() {
    let stack = Stack::start(&policy(json!({})));
    let good = token("accounts:read");
    assert_eq!(get(&stack, "/v1/accounts/acc-1", &good).status, 200);
    let status = stack
        .envoy
        .admin_post("/logging?wasm=warning")
        .unwrap()
        .status;
    assert_eq!(status, 200);
    // finguard asks for the log level at most once a second.
    std::thread::sleep(Duration::from_millis(1200));
    let audit_lines = || stack.envoy.logs().matches("finguard-audit").count();
    let before = audit_lines();
    let requests = 96;
    for _ in 0..requests {
        assert_eq!(get(&stack, "/v1/accounts/acc-1", &good).status, 200);
    }
    // Envoy flushes histograms to the admin endpoint every few seconds.
    let (allowed, timed) = eventually(Duration::from_secs(15), || {
        let text = prometheus(&stack.envoy);
        let allowed = sample(
            &text,
            "finguard_requests",
            &["decision=\"allow\"", "route=\"accounts\""],
        )?;
        let timed = sample(
            &text,
            "finguard_filter_time_us_count",
            &["phase=\"request_headers\""],
        )?;
        (allowed >= f64::from(requests + 1) && timed >= 4.0).then_some((allowed, timed))
    })
    .unwrap_or_else(|| panic!("metrics did not move:\n{}", prometheus(&stack.envoy)));
    assert_eq!(allowed, f64::from(requests + 1), "every request is counted");
    // 96 requests over two workers: 4 to 6 timed, plus the first request (audited, timed).
    assert!(
        timed <= 8.0,
        "{timed} of {requests} requests timed: not a sample"
    );
    assert_eq!(
        audit_lines(),
        before,
        "an audit line was written above info"
    );
}

/// Waits until `probe` (a request) answers `status`; returns how long it took.
fn until_status(timeout: Duration, status: u16, mut probe: impl FnMut() -> Response) -> Duration {
    let started = Instant::now();
    eventually(timeout, || (probe().status == status).then_some(()))
        .unwrap_or_else(|| panic!("no {status} within {timeout:?}"));
    started.elapsed()
}

#[test]
fn lockdown_by_hot_reload_takes_effect_without_disturbing_requests_in_flight() {
    let stack = Stack::start(&policy(json!({})));
    let good = token("accounts:read");
    assert_eq!(get(&stack, "/v1/accounts/acc-1", &good).status, 200);

    // A payment whose body is still on its way when the policy changes: judged, to the end, by
    // the policy it started under.
    let body = json!({"customer_id": SUBJECT, "amount": "10.00"}).to_string();
    let slow = stack
        .envoy
        .post(&format!("/v1/customers/{SUBJECT}/payments"))
        .bearer(&good)
        .header("content-type", "application/json")
        .body(body)
        .body_delay(Duration::from_secs(3));
    let in_flight = std::thread::spawn(move || slow.send());
    std::thread::sleep(Duration::from_millis(500));

    let loaded = stack.envoy.ecds_counter("update_success");
    stack
        .envoy
        .reload(&policy(
            json!({"lockdown": {"enabled": true, "allow_routes": ["health"],
                                             "retry_after_seconds": 120}}),
        ))
        .unwrap();
    let took = until_status(Duration::from_secs(10), 503, || {
        get(&stack, "/v1/accounts/acc-1", &good)
    });
    assert!(stack.envoy.ecds_counter("update_success") > loaded);
    eprintln!("lockdown effective {took:?} after the reload");
    assert!(took < Duration::from_secs(5), "lockdown took {took:?}");
    let locked = get(&stack, "/v1/accounts/acc-1", &good);
    assert_problem(&locked, 503, "lockdown");
    assert_eq!(locked.header("retry-after"), Some("120"));
    let health = stack.envoy.get("/healthz").send();
    assert_eq!(health.status, 200, "allowlisted route still served");

    let finished = in_flight.join().unwrap();
    assert_eq!(
        finished.status, 200,
        "the in-flight payment finished under the policy it started with: {finished:?}"
    );

    // Lifting the lockdown is another reload.
    stack.envoy.reload(&policy(json!({}))).unwrap();
    until_status(Duration::from_secs(10), 200, || {
        get(&stack, "/v1/accounts/acc-1", &good)
    });
}

#[test]
fn revocation_by_hot_reload_refuses_cached_tokens() {
    let stack = Stack::start(&policy(json!({})));
    let good = token("accounts:read");
    let other = TokenBuilder::new(Algorithm::HS256)
        .iss(config::HS_ISSUER)
        .subject("bob")
        .scope("accounts:read")
        .sign();
    // Both tokens are now in the workers' verified-token caches.
    for _ in 0..4 {
        assert_eq!(get(&stack, "/v1/accounts/acc-1", &good).status, 200);
        assert_eq!(get(&stack, "/v1/accounts/acc-1", &other).status, 200);
    }
    stack
        .envoy
        .reload(&policy(json!({"revoked": {"jti": [JTI]}})))
        .unwrap();
    until_status(Duration::from_secs(10), 401, || {
        get(&stack, "/v1/accounts/acc-1", &good)
    });
    let revoked = get(&stack, "/v1/accounts/acc-1", &good);
    assert_problem(&revoked, 401, "credential-revoked");
    assert!(revoked
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    assert_eq!(get(&stack, "/v1/accounts/acc-1", &other).status, 200);

    stack
        .envoy
        .reload(&policy(json!({"revoked": {"subjects": ["bob"]}})))
        .unwrap();
    until_status(Duration::from_secs(10), 401, || {
        get(&stack, "/v1/accounts/acc-1", &other)
    });
    assert_eq!(get(&stack, "/v1/accounts/acc-1", &good).status, 200);
}

#[test]
fn an_invalid_reload_is_rejected_and_the_previous_policy_keeps_serving() {
    let stack = Stack::start(&policy(json!({})));
    let good = token("accounts:read");
    assert_eq!(get(&stack, "/v1/accounts/acc-1", &good).status, 200);
    let failed = stack.envoy.ecds_counter("update_rejected");
    let mut invalid = policy(json!({}));
    invalid["routes"][1]["auth"]["scopes"] = json!({"every": ["x"]});
    stack.envoy.reload(&invalid).unwrap();
    eventually(Duration::from_secs(10), || {
        (stack.envoy.ecds_counter("update_rejected") > failed).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the invalid policy was not rejected:\n{}",
            stack.envoy.logs()
        )
    });
    stack
        .envoy
        .wait_for_log("configuration refused: routes", Duration::from_secs(5))
        .unwrap();
    // Still the old policy: allowed with the scope, refused without, nothing answers 503.
    for _ in 0..10 {
        assert_eq!(get(&stack, "/v1/accounts/acc-1", &good).status, 200);
    }
    assert_eq!(
        get(&stack, "/v1/accounts/acc-1", &token("profile")).status,
        403
    );
    // Not even JSON: rejected the same way.
    stack.envoy.reload_text("{ not json").unwrap();
    eventually(Duration::from_secs(10), || {
        (stack.envoy.ecds_counter("update_rejected") > failed + 1).then_some(())
    })
    .expect("second rejection");
    assert_eq!(get(&stack, "/v1/accounts/acc-1", &good).status, 200);
    let text = prometheus(&stack.envoy);
    assert!(sample(&text, "finguard_config_rejected", &[]).unwrap() >= 2.0);
}
