//! Request-side hardening through a real Envoy (issue 19): what finguard authorizes must be what
//! the backend executes. Each test is one class of request a backend may read differently from
//! finguard, sent in the spellings an attacker tries next, over HTTP/1.1 and HTTP/2:
//!
//! - method overrides (`X-HTTP-Method-Override` and friends, `_method`): refused, or on a route
//!   that opts in, authorized as the overridden method; also during a read-only lockdown;
//! - look-alike identity headers (`x_auth_subject`): never reach the upstream, whether Envoy
//!   drops them (`envoy/envoy.yaml`) or leaves them to finguard (Envoy's default);
//! - credentials finguard does not verify beside the one it did: refused;
//! - copies of path-bound ids in the query and the body: must carry the path's value; numeric
//!   ids compared exactly.
//!
//! Every refusal is checked to have left the upstream untouched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use testkit::config::{self, set};
use testkit::problem::assert_problem;
use testkit::upstream::SeenRequest;
use testkit::{Algorithm, Request, Stack, TokenBuilder};

/// API key `batch-1` (client acme-batch, scopes reports:read payments:read).
const KEY_BATCH: &str = "fgk_live_7Qm2vX9pLr4TzK8wNc3Hs6Yd";

fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// | route | match | requirement |
/// |---|---|---|
/// | health | GET /healthz | public |
/// | status | GET /v1/status | public |
/// | callbacks | POST /v1/callbacks | public, body not judged |
/// | list-accounts | GET /v1/customers/{customer_id}/accounts | accounts:read, customer_id == sub |
/// | close-accounts | DELETE /v1/customers/{customer_id}/accounts | accounts:admin, customer_id == sub |
/// | reports | GET /v1/reports | API key, reports:read |
/// | batches | GET /v1/batches | JWT or API key, payments:read |
/// | create-payment | POST /v1/customers/{customer_id}/payments | payments:write, customer_id == sub, body held |
/// | ledger | GET /v1/ledgers/{ledger_id} | ledger_id in the `ledgers` claim |
/// | profile | GET /v1/customers/{customer_id}/profile | customer_id == sub, copies ignored |
/// | legacy-update | POST /v1/legacy/{customer_id} | overrides allowed, accounts:write |
/// | legacy-delete | DELETE /v1/legacy/{customer_id} | overrides allowed, accounts:admin |
fn hardening_config() -> Value {
    json!({
        "mode": "enforce",
        "realm": "finguard",
        "providers": [config::hs_provider()],
        "api_keys": {
            "header": "x-api-key",
            "forward": {"id": "x-auth-api-key-id", "client": "x-auth-client"},
            "keys": [
                {"id": "batch-1", "client": "acme-batch", "sha256": sha256_hex(KEY_BATCH),
                 "scopes": ["payments:read", "reports:read"]}
            ]
        },
        "routes": [
            {"id": "health", "match": {"methods": ["GET"], "path": "/healthz"}, "public": true},
            {"id": "status", "match": {"methods": ["GET"], "path": "/v1/status"}, "public": true},
            {"id": "callbacks", "match": {"methods": ["POST"], "path": "/v1/callbacks"}, "public": true},
            {"id": "list-accounts",
             "match": {"methods": ["GET"], "path": "/v1/customers/{customer_id}/accounts"},
             "auth": {"scopes": {"all": ["accounts:read"]},
                      "owner": [{"param": "customer_id", "claim": "sub"}]}},
            {"id": "close-accounts",
             "match": {"methods": ["DELETE"], "path": "/v1/customers/{customer_id}/accounts"},
             "auth": {"scopes": {"all": ["accounts:admin"]},
                      "owner": [{"param": "customer_id", "claim": "sub"}]}},
            {"id": "reports", "match": {"methods": ["GET"], "path": "/v1/reports"},
             "auth": {"credentials": ["api_key"], "scopes": {"all": ["reports:read"]}}},
            {"id": "batches", "match": {"methods": ["GET"], "path": "/v1/batches"},
             "auth": {"credentials": ["jwt", "api_key"], "scopes": {"all": ["payments:read"]}}},
            {"id": "create-payment",
             "match": {"methods": ["POST"], "path": "/v1/customers/{customer_id}/payments"},
             "request": {"body": "required"},
             "auth": {"scopes": {"all": ["payments:write"]},
                      "owner": [{"param": "customer_id", "claim": "sub"}]}},
            {"id": "ledger", "match": {"methods": ["GET"], "path": "/v1/ledgers/{ledger_id}"},
             "auth": {"owner": [{"param": "ledger_id", "claim": "/ledgers"}]}},
            {"id": "profile",
             "match": {"methods": ["GET"], "path": "/v1/customers/{customer_id}/profile"},
             "auth": {"owner": [{"param": "customer_id", "claim": "sub", "copies": "ignore"}]}},
            {"id": "legacy-update", "match": {"methods": ["POST"], "path": "/v1/legacy/{customer_id}"},
             "allow_method_override": true,
             "auth": {"scopes": {"all": ["accounts:write"]},
                      "owner": [{"param": "customer_id", "claim": "sub"}]}},
            {"id": "legacy-delete", "match": {"methods": ["DELETE"], "path": "/v1/legacy/{customer_id}"},
             "allow_method_override": true,
             "auth": {"scopes": {"all": ["accounts:admin"]},
                      "owner": [{"param": "customer_id", "claim": "sub"}]}}
        ]
    })
}

/// A token of provider `hs` for `sub` with `scope`.
fn token(sub: &str, scope: &str) -> String {
    TokenBuilder::new(Algorithm::HS256)
        .subject(sub)
        .scope(scope)
        .sign()
}

fn start(cfg: &Value) -> Stack {
    let stack = Stack::start(cfg);
    assert_eq!(
        stack.envoy.get("/healthz").send().status,
        200,
        "finguard refused the test configuration:\n{}",
        stack.envoy.logs()
    );
    stack
}

/// Sends `request` and asserts the refusal (`status`, problem `slug`) left the upstream untouched.
fn refused(stack: &Stack, request: Request, status: u16, slug: &str, what: &str) {
    let before = stack.upstream.count();
    let response = request.send();
    assert_eq!(response.status, status, "{what}: {response:?}");
    assert_problem(&response, status, slug);
    assert_eq!(
        stack.upstream.count(),
        before,
        "{what}: reached the upstream"
    );
}

/// Sends `request`, asserts it was forwarded, returns what the upstream saw.
fn forwarded(stack: &Stack, request: Request, what: &str) -> SeenRequest {
    let before = stack.upstream.count();
    let response = request.send();
    assert_eq!(
        response.status, 200,
        "{what}: expected forwarded, got {response:?}"
    );
    assert_eq!(stack.upstream.count(), before + 1, "{what}");
    stack.upstream.last().expect("a forwarded request")
}

/// The same over HTTP/2: the refusal's status and slug, upstream untouched.
fn refused_h2(stack: &Stack, request: testkit::h2::Request, status: u16, slug: &str, what: &str) {
    let before = stack.upstream.count();
    let response = request.send().unwrap_or_else(|e| panic!("{what}: {e:#}"));
    assert_eq!(response.status, Some(status), "{what}: {}", response.text());
    assert_eq!(response.slug().as_deref(), Some(slug), "{what}");
    assert_eq!(
        stack.upstream.count(),
        before,
        "{what}: reached the upstream"
    );
}

// ---- 1. method overrides ----------------------------------------------------------------------

#[test]
fn method_overrides_are_refused_unless_the_route_authorizes_the_overridden_method() {
    let stack = start(&hardening_config());
    let e = &stack.envoy;
    let reader = token("cust-42", "accounts:read");
    let path = "/v1/customers/cust-42/accounts";
    // The reader's GET itself is fine.
    forwarded(&stack, e.get(path).bearer(&reader), "plain GET");

    let override_headers = [
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("x-http-method-override", "delete"),
        ("X-HTTP-Method-Override", "GET"),
        ("X-HTTP-Method-Override", "DELETE, GET"),
        ("X-HTTP-Method-Override", ""),
    ];
    for (name, value) in override_headers {
        let what = format!("HTTP/1.1 {name}: {value}");
        refused(
            &stack,
            e.get(path).bearer(&reader).header(name, value),
            400,
            "method-override-refused",
            &what,
        );
        let h2 = testkit::h2::Request::new(e.addr(), "GET", path)
            .bearer(&reader)
            .header(&name.to_ascii_lowercase(), value);
        refused_h2(
            &stack,
            h2,
            400,
            "method-override-refused",
            &format!("HTTP/2 {name}: {value}"),
        );
    }
    for query in [
        "_method=DELETE",
        "_method=delete",
        "%5Fmethod=DELETE",
        "%5fmethod=DELETE",
        "_METHOD=DELETE",
        "_method[]=DELETE",
        ".method=DELETE",
        "x=1&_method=DELETE",
        "_method=%44ELETE",
        "_method=",
    ] {
        let target = format!("{path}?{query}");
        refused(
            &stack,
            e.get(&target).bearer(&reader),
            400,
            "method-override-refused",
            &target,
        );
        let h2 = testkit::h2::Request::new(e.addr(), "GET", &target).bearer(&reader);
        refused_h2(
            &stack,
            h2,
            400,
            "method-override-refused",
            &format!("HTTP/2 {target}"),
        );
    }
    // Also on public routes, API-key routes and paths no route matches.
    refused(
        &stack,
        e.get("/v1/status")
            .header("X-HTTP-Method-Override", "DELETE"),
        400,
        "method-override-refused",
        "public",
    );
    refused(
        &stack,
        e.get("/v1/reports?_method=DELETE")
            .header("x-api-key", KEY_BATCH),
        400,
        "method-override-refused",
        "api key",
    );
    refused(
        &stack,
        e.get("/v1/nowhere?_method=DELETE"),
        400,
        "method-override-refused",
        "unknown path",
    );
    // Names that only look similar are not overrides.
    forwarded(
        &stack,
        e.get(&format!("{path}?method=DELETE&x_method=1"))
            .bearer(&reader),
        "harmless names",
    );

    // A route that opts in: the overridden method is the one matched and authorized.
    let writer = token("cust-42", "accounts:write");
    let admin = token("cust-42", "accounts:write accounts:admin");
    let legacy = "/v1/legacy/cust-42";
    forwarded(
        &stack,
        e.post(legacy).bearer(&writer).body("{}"),
        "legacy POST",
    );
    refused(
        &stack,
        e.post(legacy)
            .bearer(&writer)
            .header("X-HTTP-Method-Override", "DELETE")
            .body("{}"),
        403,
        "scope-insufficient",
        "writer overriding to DELETE",
    );
    refused(
        &stack,
        e.post(&format!("{legacy}?_method=DELETE"))
            .bearer(&writer)
            .body("{}"),
        403,
        "scope-insufficient",
        "writer _method DELETE",
    );
    let seen = forwarded(
        &stack,
        e.post(legacy)
            .bearer(&admin)
            .header("X-HTTP-Method-Override", "DELETE")
            .body("{}"),
        "admin overriding to DELETE",
    );
    assert_eq!(
        seen.header_all("x-http-method-override"),
        ["DELETE"],
        "the authorized override reaches the backend"
    );
    // Only a POST may be overridden (frameworks ignore overrides on other methods), and the
    // override must name a route's method.
    refused(
        &stack,
        e.get(legacy)
            .bearer(&admin)
            .header("X-HTTP-Method-Override", "DELETE"),
        400,
        "method-override-refused",
        "GET overridden",
    );
    refused(
        &stack,
        e.post(legacy)
            .bearer(&admin)
            .header("X-HTTP-Method-Override", "PUT")
            .body("{}"),
        400,
        "method-override-refused",
        "no PUT route",
    );
    refused(
        &stack,
        e.post(&format!("{legacy}?_method=PUT"))
            .bearer(&admin)
            .header("X-HTTP-Method-Override", "DELETE")
            .body("{}"),
        400,
        "method-override-refused",
        "disagreeing overrides",
    );

    // Rack, Spring and Symfony also take `_method` from a form body: a form POST is held on
    // routes that do not judge their body, and refused if it names one.
    let multipart = |name: &str| {
        format!(
            "--b0undary\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\nDELETE\r\n--b0undary--\r\n"
        )
    };
    let urlencoded = "application/x-www-form-urlencoded";
    let form_data = "multipart/form-data; boundary=b0undary";
    let forms = [
        (urlencoded, "amount=1&_method=DELETE".to_string()),
        (urlencoded, "amount=1&%5Fmethod=DELETE".to_string()),
        (urlencoded, "_METHOD=delete".to_string()),
        (
            "application/x-www-form-urlencoded; charset=utf-8",
            "_method[]=DELETE".to_string(),
        ),
        (
            "Application/X-WWW-Form-Urlencoded",
            "_method=DELETE".to_string(),
        ),
        (form_data, multipart("_method")),
        (form_data, multipart("%5Fmethod")),
    ];
    for (content_type, body) in &forms {
        for target in ["/v1/callbacks", legacy] {
            let what = format!("{target} form {content_type}: {body:?}");
            refused(
                &stack,
                e.post(target)
                    .bearer(&admin)
                    .header("content-type", content_type)
                    .body(body.as_bytes()),
                400,
                "method-override-refused",
                &what,
            );
        }
        let h2 = testkit::h2::Request::new(e.addr(), "POST", "/v1/callbacks")
            .header("content-type", content_type)
            .body(body.as_bytes());
        refused_h2(
            &stack,
            h2,
            400,
            "method-override-refused",
            &format!("HTTP/2 form {body:?}"),
        );
    }
    for (content_type, body) in [
        (urlencoded, "amount=1&method=DELETE".to_string()),
        (form_data, multipart("amount")),
        ("application/json", r#"{"_method":"DELETE"}"#.to_string()),
    ] {
        let seen = forwarded(
            &stack,
            e.post("/v1/callbacks")
                .header("content-type", content_type)
                .body(body.as_bytes()),
            &format!("form {body:?}"),
        );
        assert_eq!(seen.body, body, "the held body reaches the upstream whole");
    }

    // During a read-only lockdown an override cannot turn a GET or POST into a DELETE.
    let mut locked = hardening_config();
    set(
        &mut locked,
        "/lockdown",
        json!({"enabled": true, "allow_methods": ["GET", "HEAD", "POST"]}),
    );
    e.reload(&locked).expect("lockdown policy");
    let lockdown_active = testkit::eventually(std::time::Duration::from_secs(30), || {
        let response = e.request("DELETE", path).bearer(&admin).send();
        (response.status == 503).then_some(())
    });
    assert!(lockdown_active.is_some(), "lockdown never took effect");
    refused(
        &stack,
        e.get(path)
            .bearer(&admin)
            .header("X-HTTP-Method-Override", "DELETE"),
        400,
        "method-override-refused",
        "lockdown GET override",
    );
    refused(
        &stack,
        e.post(legacy)
            .bearer(&admin)
            .header("X-HTTP-Method-Override", "DELETE")
            .body("{}"),
        503,
        "lockdown",
        "lockdown allowed override",
    );
    forwarded(&stack, e.get(path).bearer(&reader), "lockdown plain GET");
}

// ---- 2. look-alike identity headers -----------------------------------------------------------

/// Spellings a CGI gateway reads as `x-auth-subject`, `x-auth-client`, `x-api-key`.
const LOOK_ALIKES: [(&str, &str); 7] = [
    ("x_auth_subject", "cust-43"),
    ("X_Auth_Subject", "cust-43"),
    ("x-auth_subject", "cust-43"),
    ("x_auth-subject", "cust-43"),
    ("x_auth_client", "acme-admin"),
    ("x_auth_api_key_id", "root"),
    ("x_api_key", "fgk_live_spoofed"),
];

/// No header of `seen` folds (case, `_` as `-`) to a header finguard vouches for, except the
/// exact values finguard set.
fn assert_no_look_alikes(seen: &SeenRequest, what: &str) {
    for (name, value) in &seen.headers {
        let folded = name.to_ascii_lowercase().replace('_', "-");
        if [
            "x-auth-subject",
            "x-auth-client",
            "x-auth-api-key-id",
            "x-api-key",
        ]
        .contains(&folded.as_str())
        {
            assert!(
                !name.contains('_'),
                "{what}: look-alike {name}: {value} reached the upstream"
            );
            assert!(
                !value.contains("cust-43") && value != "root" && !value.contains("spoofed"),
                "{what}: spoofed {name}: {value}"
            );
        }
    }
}

fn look_alike_classes(stack: &Stack) {
    let e = &stack.envoy;
    let reader = token("cust-42", "accounts:read payments:read");
    let mut cases: Vec<(&str, Request)> = vec![
        ("public route", e.get("/v1/status")),
        (
            "API-key route",
            e.get("/v1/reports").header("x-api-key", KEY_BATCH),
        ),
        (
            "token route",
            e.get("/v1/customers/cust-42/accounts").bearer(&reader),
        ),
        ("either route, token", e.get("/v1/batches").bearer(&reader)),
    ];
    for (what, request) in cases.drain(..) {
        let mut request = request;
        for (name, value) in LOOK_ALIKES {
            request = request.header(name, value);
        }
        let seen = forwarded(stack, request, what);
        assert_no_look_alikes(&seen, what);
        if what == "token route" {
            assert_eq!(
                seen.header_all("x-auth-subject"),
                ["cust-42"],
                "{what}: the verified subject"
            );
        }
        if what == "API-key route" {
            assert_eq!(
                seen.header_all("x-auth-client"),
                ["acme-batch"],
                "{what}: the verified client"
            );
        }
    }
    // HTTP/2 carries the same names.
    let mut h2 = testkit::h2::Request::new(e.addr(), "GET", "/v1/status");
    for (name, value) in LOOK_ALIKES {
        h2 = h2.header(&name.to_ascii_lowercase(), value);
    }
    let before = stack.upstream.count();
    let response = h2.send().expect("h2 request");
    assert_eq!(response.status, Some(200), "{}", response.text());
    assert_eq!(stack.upstream.count(), before + 1);
    assert_no_look_alikes(&stack.upstream.last().unwrap(), "HTTP/2 public route");
}

#[test]
fn look_alike_identity_headers_never_reach_the_upstream_with_envoys_setting() {
    look_alike_classes(&start(&hardening_config()));
}

#[test]
fn look_alike_identity_headers_are_removed_by_finguard_where_envoy_lets_them_through() {
    // Istio and Envoy Gateway leave headers_with_underscores_action at ALLOW.
    let stack = Stack::start_with_envoy_yaml(&hardening_config(), |yaml| {
        yaml.replace(
            "headers_with_underscores_action: DROP_HEADER",
            "headers_with_underscores_action: ALLOW",
        )
    });
    // With ALLOW, Envoy passes other underscore headers on: the edit took effect.
    let seen = forwarded(
        &stack,
        stack.envoy.get("/v1/status").header("x_trace_note", "kept"),
        "unrelated underscore header",
    );
    assert_eq!(seen.header_all("x_trace_note"), ["kept"]);
    look_alike_classes(&stack);
}

// ---- 6. credentials finguard does not verify ----------------------------------------------------

#[test]
fn credentials_finguard_does_not_verify_are_refused_beside_the_one_it_did() {
    let stack = start(&hardening_config());
    let e = &stack.envoy;
    let reader = token("cust-42", "accounts:read payments:read");
    let other = token("cust-43", "accounts:read payments:read");
    // The one verified credential alone is fine.
    forwarded(
        &stack,
        e.get("/v1/reports").header("x-api-key", KEY_BATCH),
        "API key alone",
    );
    forwarded(&stack, e.get("/v1/batches").bearer(&reader), "token alone");

    let beside_api_key = [
        ("authorization", format!("Token {other}")),
        ("authorization", format!("JWT {other}")),
        ("authorization", other.clone()),
        ("authorization", format!("Bearer\t{other}")),
        ("authorization", format!("Bearer {other}")),
        ("authorization", "Basic YWRtaW46YWRtaW4=".to_string()),
        ("proxy-authorization", format!("Bearer {other}")),
        ("cookie", format!("theme=dark; access_token={other}")),
        ("cookie", format!("Access_Token={other}")),
        ("cookie", format!("access.token={other}")),
    ];
    for (name, value) in &beside_api_key {
        for route in ["/v1/reports", "/v1/batches"] {
            let what = format!("{route}: API key and {name}: {value:.12}");
            // Where both a token and a key are accepted, a second Bearer is a second credential
            // of an accepted kind (as before); any other carrier is one finguard never verifies.
            let slug = if route == "/v1/batches"
                && value.starts_with("Bearer ")
                && *name == "authorization"
            {
                "token-multiple"
            } else {
                "credential-unverified"
            };
            refused(
                &stack,
                e.get(route)
                    .header("x-api-key", KEY_BATCH)
                    .header(name, value),
                401,
                slug,
                &what,
            );
        }
    }
    for query in [
        "access_token",
        "access%5Ftoken",
        "access%5ftoken",
        "%61ccess_token",
        "access.token",
        "access+token",
        "access_token[]",
        "ACCESS_TOKEN",
    ] {
        let target = format!("/v1/batches?{query}={other}");
        let what = format!("bearer and ?{query}");
        refused(
            &stack,
            e.get(&target).bearer(&reader),
            401,
            "token-in-query",
            &what,
        );
        let h2 = testkit::h2::Request::new(e.addr(), "GET", &target).bearer(&reader);
        refused_h2(&stack, h2, 401, "token-in-query", &format!("HTTP/2 {what}"));
        let target = format!("/v1/reports?{query}={other}");
        refused(
            &stack,
            e.get(&target).header("x-api-key", KEY_BATCH),
            401,
            "credential-unverified",
            &format!("API key and ?{query}"),
        );
    }
    // Beside a bearer token: a cookie no source is configured for.
    refused(
        &stack,
        e.get("/v1/batches")
            .bearer(&reader)
            .header("cookie", &format!("access_token={other}")),
        401,
        "credential-unverified",
        "bearer and cookie",
    );
    refused(
        &stack,
        e.get("/v1/batches")
            .bearer(&reader)
            .header("proxy-authorization", "Basic eDp5"),
        401,
        "credential-unverified",
        "bearer and proxy-authorization",
    );
    let h2 = testkit::h2::Request::new(e.addr(), "GET", "/v1/reports")
        .header("x-api-key", KEY_BATCH)
        .header("authorization", &format!("Token {other}"));
    refused_h2(
        &stack,
        h2,
        401,
        "credential-unverified",
        "HTTP/2 API key and Token",
    );
    // Cookies that are not credentials stay.
    let seen = forwarded(
        &stack,
        e.get("/v1/batches")
            .bearer(&reader)
            .header("cookie", "theme=dark; session_hint=1"),
        "harmless cookie",
    );
    assert_eq!(seen.header_all("cookie"), ["theme=dark; session_hint=1"]);
}

// ---- 7. copies of bound ids -------------------------------------------------------------------

#[test]
fn copies_of_path_bound_ids_must_carry_the_paths_value() {
    let stack = start(&hardening_config());
    let e = &stack.envoy;
    let reader = token("cust-42", "accounts:read payments:write");
    let path = "/v1/customers/cust-42/accounts";
    for query in [
        "customer_id=cust-43",
        "customer%5Fid=cust-43",
        "Customer_Id=cust-43",
        "customer.id=cust-43",
        "customer_id[]=cust-43",
        "customer_id=cust-42&customer_id=cust-43",
        "customer_id=cust%2D43",
        "customer_id=",
    ] {
        let target = format!("{path}?{query}");
        refused(
            &stack,
            e.get(&target).bearer(&reader),
            403,
            "object-access-denied",
            &target,
        );
        let h2 = testkit::h2::Request::new(e.addr(), "GET", &target).bearer(&reader);
        refused_h2(
            &stack,
            h2,
            403,
            "object-access-denied",
            &format!("HTTP/2 {target}"),
        );
    }
    for query in [
        "customer_id=cust-42",
        "customer_id=cust%2D42",
        "page=2&customer=cust-43",
    ] {
        forwarded(
            &stack,
            e.get(&format!("{path}?{query}")).bearer(&reader),
            query,
        );
    }
    // A route that says the backend reads the id from the path only.
    forwarded(
        &stack,
        e.get("/v1/customers/cust-42/profile?customer_id=cust-43")
            .bearer(&reader),
        "copies: ignore",
    );

    // Where the body is judged, a top-level member named like the parameter is a copy too.
    let payments = "/v1/customers/cust-42/payments";
    for body in [
        json!({"customer_id": "cust-43", "amount": "10.00"}),
        json!({"CUSTOMER_ID": "cust-43", "amount": "10.00"}),
        json!({"Customer_Id": "cust-43", "amount": "10.00"}),
        json!({"customer_id": 43, "amount": "10.00"}),
        json!({"customer_id": null, "amount": "10.00"}),
        json!({"customer_id": ["cust-42"], "amount": "10.00"}),
    ] {
        let what = format!("body {body}");
        refused(
            &stack,
            e.post(payments).bearer(&reader).json(&body),
            403,
            "object-access-denied",
            &what,
        );
    }
    forwarded(
        &stack,
        e.post(payments)
            .bearer(&reader)
            .json(&json!({"customer_id": "cust-42", "amount": "10.00"})),
        "body copy equal",
    );
    forwarded(
        &stack,
        e.post(payments)
            .bearer(&reader)
            .json(&json!({"amount": "10.00"})),
        "no body copy",
    );

    // Numeric ids are compared exactly, as decimal text, never rounded through a float.
    let big = TokenBuilder::new(Algorithm::HS256)
        .subject("cust-42")
        .claim(
            "ledgers",
            json!(["123456789012345678901", 9007199254740993u64]),
        )
        .sign();
    forwarded(
        &stack,
        e.get("/v1/ledgers/123456789012345678901").bearer(&big),
        "exact string id",
    );
    forwarded(
        &stack,
        e.get("/v1/ledgers/9007199254740993").bearer(&big),
        "exact u64 id",
    );
    for near in [
        "123456789012345678999",
        "123456789012345680000",
        "9007199254740992",
        "9007199254740994",
    ] {
        refused(
            &stack,
            e.get(&format!("/v1/ledgers/{near}")).bearer(&big),
            403,
            "object-access-denied",
            near,
        );
    }
    // A claim number beyond 64 bits was rounded when the token was read: it binds nothing.
    let rounded = testkit::tokens::sign_raw(
        br#"{"alg":"HS256","typ":"JWT","kid":"hs-a"}"#,
        format!(
            r#"{{"iss":"{}","aud":"{}","sub":"cust-42","exp":{},"ledgers":[123456789012345678901]}}"#,
            config::HS_ISSUER,
            config::AUDIENCE,
            testkit::tokens::now() + 600
        )
        .as_bytes(),
        testkit::Key::Hs,
        Algorithm::HS256,
    );
    for id in ["123456789012345678901", "123456789012345678999"] {
        refused(
            &stack,
            e.get(&format!("/v1/ledgers/{id}")).bearer(&rounded),
            403,
            "object-access-denied",
            &format!("rounded claim, {id}"),
        );
    }
}
