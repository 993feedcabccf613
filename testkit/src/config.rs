//! Plugin configurations (the JSON finguard receives) used by the end-to-end tests.
//!
//! Tests start from [`base`] and change what they exercise with [`set`], e.g.
//! `set(&mut cfg, "/providers/0/jwks/remote/refresh_seconds", json!(2))`.

use serde_json::{json, Value};

use crate::fixtures;

/// Issuer of the remote-JWKS provider `idp` (keys rsa-a, ec-a, ed-a).
pub const ISSUER: &str = "https://idp.example";
/// Issuer of the inline HS256 provider `hs`.
pub const HS_ISSUER: &str = "https://hs.example";
/// The audience both providers accept.
pub const AUDIENCE: &str = "payments-api";

/// Provider `idp`: remote JWKS through the `idp_jwks` cluster, asymmetric algorithms, claim
/// forwarding for every claim shape (string, array via JSON pointer, number, object). Timings are
/// short so that refetch and retry happen within a test.
pub fn remote_provider() -> Value {
    json!({
        "name": "idp",
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "algorithms": ["RS256", "PS256", "ES256", "EdDSA"],
        "jwks": {"remote": {
            "cluster": "idp_jwks",
            "path": "/jwks.json",
            "authority": "idp.example",
            "refresh_seconds": 300,
            "timeout_ms": 1000,
            "grace_seconds": 3600,
            "min_refetch_seconds": 1,
            "retry_seconds": 1
        }},
        "clock_skew_seconds": 60,
        "forward_claims": {
            "sub": "x-auth-subject",
            "client_id": "x-auth-client",
            "/realm/roles": "x-auth-roles",
            "limit": "x-auth-limit",
            "ctx": "x-auth-ctx"
        }
    })
}

/// Provider `hs`: HS256 with the inline `oct` key hs-a.
pub fn hs_provider() -> Value {
    json!({
        "name": "hs",
        "issuer": HS_ISSUER,
        "audiences": [AUDIENCE],
        "algorithms": ["HS256"],
        "jwks": {"inline": {"keys": [fixtures::hs256_jwk()]}},
        "clock_skew_seconds": 60,
        "forward_claims": {"sub": "x-auth-subject"}
    })
}

/// Routes shared by the tests:
///
/// | route | auth |
/// |---|---|
/// | `GET /v1/accounts`, `GET /v1/accounts/{account_id}` | idp, scope accounts:read |
/// | `POST /v1/customers/{customer_id}/payments` | idp, scope payments:write |
/// | `GET /v1/whoami` | no `auth`: any provider, no scope |
/// | `GET /healthz` | anonymous |
pub fn routes() -> Value {
    json!([
        {"id": "list-accounts", "match": {"methods": ["GET"], "path": "/v1/accounts"},
         "auth": {"providers": ["idp"], "scopes": {"all": ["accounts:read"]}}},
        {"id": "get-account", "match": {"methods": ["GET"], "path": "/v1/accounts/{account_id}"},
         "auth": {"providers": ["idp"], "scopes": {"all": ["accounts:read"]}}},
        {"id": "create-payment", "match": {"methods": ["POST"], "path": "/v1/customers/{customer_id}/payments"},
         "auth": {"providers": ["idp"], "scopes": {"all": ["payments:write"]}}},
        {"id": "whoami", "match": {"methods": ["GET"], "path": "/v1/whoami"}},
        {"id": "health", "match": {"methods": ["GET"], "path": "/healthz"},
         "public": true}
    ])
}

/// Both providers, the shared routes, enforce mode, 3 s initial JWKS wait.
pub fn base() -> Value {
    json!({
        "mode": "enforce",
        "realm": "finguard",
        "jwks_wait_ms": 3000,
        "providers": [remote_provider(), hs_provider()],
        "routes": routes()
    })
}

/// Only the inline HS256 provider (no JWKS fetch at all).
pub fn inline_only() -> Value {
    let mut cfg = base();
    set(&mut cfg, "/providers", json!([hs_provider()]));
    cfg
}

/// The demo configuration committed at `envoy/demo-config.json`.
pub fn demo() -> Value {
    let path = crate::workspace_root().join("envoy/demo-config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()))
}

/// Sets the value at a JSON pointer, creating missing object members on the way.
/// Panics if the path runs through a non-object or a missing array element.
pub fn set(cfg: &mut Value, pointer: &str, value: Value) {
    let mut node = cfg;
    let mut segments = pointer.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        let last = segments.peek().is_none();
        node = match node {
            Value::Object(map) => {
                if last {
                    map.insert(segment, value);
                    return;
                }
                map.entry(segment).or_insert_with(|| json!({}))
            }
            Value::Array(items) => {
                let index: usize = segment
                    .parse()
                    .unwrap_or_else(|_| panic!("{pointer}: {segment:?} is not an index"));
                let len = items.len();
                let slot = items
                    .get_mut(index)
                    .unwrap_or_else(|| panic!("{pointer}: index {index} out of {len}"));
                if last {
                    *slot = value;
                    return;
                }
                slot
            }
            other => panic!("{pointer}: cannot descend into {other}"),
        };
    }
    *node = value;
}

/// Removes the member at a JSON pointer (no-op when absent).
pub fn remove(cfg: &mut Value, pointer: &str) {
    let (parent, name) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    if let Some(Value::Object(map)) = cfg.pointer_mut(parent) {
        map.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_remove_by_pointer() {
        let mut cfg = base();
        set(
            &mut cfg,
            "/providers/0/jwks/remote/refresh_seconds",
            json!(2),
        );
        set(&mut cfg, "/token/sources", json!([{"cookie": "fg"}]));
        assert_eq!(cfg["providers"][0]["jwks"]["remote"]["refresh_seconds"], 2);
        assert_eq!(cfg["token"]["sources"][0]["cookie"], "fg");
        remove(&mut cfg, "/token");
        assert!(cfg.get("token").is_none());
    }
}
