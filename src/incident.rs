//! Incident-response levers: lockdown and revocation lists. Both are plain configuration, so they
//! change on a running Envoy by a policy reload (ECDS, `make reload`) and take effect on the
//! next request, on every worker. Both are enforced whatever the mode: a lever pulled during an
//! incident must not be softened by a route still rolling out in monitor mode.

use crate::config_error::ConfigError;
use crate::reason::Reason;
use serde::Deserialize;
use std::collections::HashSet;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLockdown {
    #[serde(default)]
    enabled: bool,
    /// Routes (by id) still served during the lockdown, e.g. health checks or a read-only view.
    #[serde(default)]
    allow_routes: Vec<String>,
    /// Methods still served on every route, e.g. `["GET", "HEAD"]` for a read-only lockdown.
    #[serde(default)]
    allow_methods: Vec<String>,
    /// Told to clients in `Retry-After`.
    #[serde(default = "default_retry_after")]
    retry_after_seconds: u64,
}

fn default_retry_after() -> u64 {
    60
}

/// Refuse everything (or everything but an allowlist) with 503 `lockdown`.
#[derive(Debug, Default)]
pub struct Lockdown {
    pub enabled: bool,
    allow_routes: Vec<String>,
    allow_methods: Vec<String>,
    pub retry_after_seconds: u64,
}

impl Lockdown {
    pub fn compile(raw: RawLockdown, route_ids: &[&str]) -> Result<Lockdown, ConfigError> {
        for (i, id) in raw.allow_routes.iter().enumerate() {
            if !route_ids.contains(&id.as_str()) {
                return Err(ConfigError {
                    path: format!("lockdown.allow_routes[{i}]"),
                    message: "names no route".into(),
                });
            }
        }
        let mut allow_methods = Vec::with_capacity(raw.allow_methods.len());
        for (i, method) in raw.allow_methods.iter().enumerate() {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(ConfigError {
                    path: format!("lockdown.allow_methods[{i}]"),
                    message: "must be an HTTP method name".into(),
                });
            }
            allow_methods.push(method.to_ascii_uppercase());
        }
        Ok(Lockdown {
            enabled: raw.enabled,
            allow_routes: raw.allow_routes,
            allow_methods,
            retry_after_seconds: raw.retry_after_seconds.min(86_400),
        })
    }

    /// Whether the lockdown refuses this request. `route`: the matched route's id, if any (an
    /// unmatched path is refused as locked down too, so the lockdown does not reveal routes).
    pub fn refuses(&self, method: &str, route: Option<&str>) -> bool {
        if !self.enabled {
            return false;
        }
        let route_allowed = route.is_some_and(|id| self.allow_routes.iter().any(|r| r == id));
        let method_allowed = self.allow_methods.iter().any(|m| m == method);
        !(route_allowed || method_allowed)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRevocations {
    /// Token ids (`jti` claim values).
    #[serde(default)]
    jti: Vec<String>,
    /// `sub` claim values: every token of that subject.
    #[serde(default)]
    subjects: Vec<String>,
    /// `client_id` (or `azp`) claim values, and API-key clients: every credential of that client.
    #[serde(default)]
    clients: Vec<String>,
    /// API key ids (`api_keys.keys[].id`).
    #[serde(default)]
    api_keys: Vec<String>,
}

/// Credentials refused although they verify. Sets, so a long list costs one hash per lookup.
#[derive(Debug, Default)]
pub struct Revocations {
    jti: HashSet<String>,
    subjects: HashSet<String>,
    clients: HashSet<String>,
    api_keys: HashSet<String>,
}

/// What a caller is known by, for the revocation check.
#[derive(Debug, Default, Clone, Copy)]
pub struct CredentialIds<'a> {
    pub jti: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub client: Option<&'a str>,
    pub api_key: Option<&'a str>,
}

impl Revocations {
    pub fn compile(raw: RawRevocations, api_key_ids: &[&str]) -> Result<Revocations, ConfigError> {
        for (name, list) in [
            ("jti", &raw.jti),
            ("subjects", &raw.subjects),
            ("clients", &raw.clients),
            ("api_keys", &raw.api_keys),
        ] {
            if let Some(i) = list.iter().position(String::is_empty) {
                return Err(ConfigError {
                    path: format!("revoked.{name}[{i}]"),
                    message: "must not be empty".into(),
                });
            }
        }
        // A typo in an emergency revocation must not pass silently.
        if let Some(i) = raw
            .api_keys
            .iter()
            .position(|id| !api_key_ids.contains(&id.as_str()))
        {
            return Err(ConfigError {
                path: format!("revoked.api_keys[{i}]"),
                message: "names no configured API key".into(),
            });
        }
        Ok(Revocations {
            jti: raw.jti.into_iter().collect(),
            subjects: raw.subjects.into_iter().collect(),
            clients: raw.clients.into_iter().collect(),
            api_keys: raw.api_keys.into_iter().collect(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.jti.is_empty()
            && self.subjects.is_empty()
            && self.clients.is_empty()
            && self.api_keys.is_empty()
    }

    /// The refusal for a revoked credential. A revoked API key is refused exactly like an unknown
    /// one (no oracle for which keys exist); a revoked token says so (RFC 6750 `invalid_token`).
    pub fn check(&self, ids: CredentialIds<'_>) -> Result<(), Reason> {
        if self.is_empty() {
            return Ok(());
        }
        let listed = |set: &HashSet<String>, id: Option<&str>| id.is_some_and(|v| set.contains(v));
        if listed(&self.api_keys, ids.api_key) {
            return Err(Reason::ApiKeyInvalid);
        }
        if listed(&self.jti, ids.jti)
            || listed(&self.subjects, ids.subject)
            || listed(&self.clients, ids.client)
        {
            return Err(Reason::CredentialRevoked);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn lockdown(v: serde_json::Value) -> Result<Lockdown, ConfigError> {
        Lockdown::compile(serde_json::from_value(v).unwrap(), &["health", "pay"])
    }

    #[test]
    fn lockdown_refuses_all_but_its_allowlist() {
        let off = lockdown(serde_json::json!({})).unwrap();
        assert!(!off.refuses("POST", Some("pay")));
        let all = lockdown(serde_json::json!({"enabled": true})).unwrap();
        assert!(all.refuses("GET", Some("health")));
        assert!(all.refuses("GET", None));
        let some = lockdown(serde_json::json!({
            "enabled": true, "allow_routes": ["health"], "allow_methods": ["get"]
        }))
        .unwrap();
        assert!(!some.refuses("POST", Some("health")));
        assert!(!some.refuses("GET", Some("pay")));
        assert!(some.refuses("POST", Some("pay")));
        assert!(some.refuses("POST", None));
    }

    #[test]
    fn lockdown_names_only_real_routes() {
        let e = lockdown(serde_json::json!({"allow_routes": ["nope"]})).unwrap_err();
        assert_eq!(e.path, "lockdown.allow_routes[0]");
        let e = lockdown(serde_json::json!({"allow_methods": ["G T"]})).unwrap_err();
        assert_eq!(e.path, "lockdown.allow_methods[0]");
    }

    #[test]
    fn revocation_lists() {
        let raw = serde_json::from_value(serde_json::json!({
            "jti": ["t-1"], "subjects": ["alice"], "clients": ["app-9"], "api_keys": ["k1"]
        }))
        .unwrap();
        let r = Revocations::compile(raw, &["k1", "k2"]).unwrap();
        let ok = CredentialIds {
            jti: Some("t-2"),
            subject: Some("bob"),
            client: Some("app-1"),
            api_key: None,
        };
        assert_eq!(r.check(ok), Ok(()));
        for ids in [
            CredentialIds {
                jti: Some("t-1"),
                ..ok
            },
            CredentialIds {
                subject: Some("alice"),
                ..ok
            },
            CredentialIds {
                client: Some("app-9"),
                ..ok
            },
        ] {
            assert_eq!(r.check(ids), Err(Reason::CredentialRevoked));
        }
        let key = CredentialIds {
            api_key: Some("k1"),
            client: Some("partner"),
            ..CredentialIds::default()
        };
        assert_eq!(r.check(key), Err(Reason::ApiKeyInvalid));
        let raw = serde_json::from_value(serde_json::json!({"api_keys": ["k3"]})).unwrap();
        let e = Revocations::compile(raw, &["k1"]).unwrap_err();
        assert_eq!(e.path, "revoked.api_keys[0]");
    }
}
