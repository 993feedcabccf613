//! The plugin configuration: JSON in, a compiled [`Config`] out, once per `on_configure`.
//!
//! Two stages: serde parses the text into `Raw*` structs (unknown fields are errors), then
//! [`Config::compile`] validates and turns them into typed structures (key sets, the route
//! matcher, algorithm lists). Every error names the path of the offending field, e.g.
//! `providers[0].jwks.remote.cluster: must not be empty`. Nothing is re-parsed per request.

use crate::ambiguity::{CredentialPlaces, ProtectedHeaders};
use crate::audit::{AuditSettings, RawAudit};
use crate::authn::apikey::{parse_sha256_hex, ApiKey, ApiKeys};
use crate::authn::budget::{BudgetPolicy, RawBudget};
use crate::authn::extract::TokenSource;
use crate::authn::jwks::{parse_algorithm, KeyFamily, KeyOrigin, KeySet};
use crate::authn::keys::{KeySource, RemoteJwks};
use crate::authn::provider::{ClaimHeader, Provider};
use crate::config_error::{describe_serde_error, err, ConfigError};
use crate::incident::{Lockdown, RawLockdown, RawRevocations, Revocations};
use crate::mode::Mode;
use crate::ratelimit::{KeyPart, RateLimiting, RawRateLimits};
use crate::reason::Reason;
use crate::redaction::{RawResponse, ResponseDefaults};
use crate::routes::{RouteSpec, RouteTable};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

// ---- raw configuration, as written -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    mode: Mode,
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default)]
    token: RawTokenConfig,
    #[serde(default)]
    token_cache: RawTokenCache,
    #[serde(default = "default_jwks_wait_ms")]
    jwks_wait_ms: u64,
    #[serde(default)]
    providers: Vec<RawProvider>,
    api_keys: Option<RawApiKeys>,
    #[serde(default = "default_unmatched_status")]
    unmatched_route_status: u16,
    rate_limits: Option<RawRateLimits>,
    #[serde(default)]
    verification_budget: RawBudget,
    response: Option<RawResponse>,
    routes: Vec<RouteSpec>,
    #[serde(default)]
    lockdown: RawLockdown,
    #[serde(default)]
    revoked: RawRevocations,
    #[serde(default)]
    audit: RawAudit,
}

fn default_unmatched_status() -> u16 {
    404
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKeys {
    #[serde(default = "default_api_key_header")]
    header: String,
    #[serde(default)]
    forward: RawApiKeyForward,
    keys: Vec<RawApiKey>,
}

fn default_api_key_header() -> String {
    "x-api-key".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApiKeyForward {
    id: Option<String>,
    client: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    id: String,
    client: String,
    sha256: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    disabled: bool,
}

fn default_realm() -> String {
    "finguard".into()
}
fn default_jwks_wait_ms() -> u64 {
    3000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenConfig {
    #[serde(default = "default_sources")]
    sources: Vec<RawTokenSource>,
    #[serde(default = "default_max_token_bytes")]
    max_bytes: usize,
    #[serde(default)]
    strip_authorization: bool,
}

impl Default for RawTokenConfig {
    fn default() -> Self {
        RawTokenConfig {
            sources: default_sources(),
            max_bytes: default_max_token_bytes(),
            strip_authorization: false,
        }
    }
}

fn default_sources() -> Vec<RawTokenSource> {
    vec![RawTokenSource {
        header: Some("authorization".into()),
        scheme: Some("Bearer".into()),
        cookie: None,
        query: None,
    }]
}
fn default_max_token_bytes() -> usize {
    8192
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenSource {
    header: Option<String>,
    scheme: Option<String>,
    cookie: Option<String>,
    query: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenCache {
    #[serde(default = "default_cache_entries")]
    max_entries: usize,
}

impl Default for RawTokenCache {
    fn default() -> Self {
        RawTokenCache {
            max_entries: default_cache_entries(),
        }
    }
}

fn default_cache_entries() -> usize {
    4096
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<String>,
    jwks: RawJwks,
    #[serde(default = "default_skew")]
    clock_skew_seconds: i64,
    max_lifetime_seconds: Option<i64>,
    typ: Option<Vec<String>>,
    scope_claim: Option<String>,
    #[serde(default)]
    forward_claims: BTreeMap<String, String>,
    mode: Option<Mode>,
}

fn default_skew() -> i64 {
    60
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum RawJwks {
    Inline(serde_json::Value),
    Remote(RawRemoteJwks),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemoteJwks {
    cluster: String,
    path: String,
    authority: Option<String>,
    #[serde(default = "default_refresh")]
    refresh_seconds: i64,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_grace")]
    grace_seconds: i64,
    #[serde(default = "default_min_refetch")]
    min_refetch_seconds: i64,
    #[serde(default = "default_retry")]
    retry_seconds: i64,
}

fn default_refresh() -> i64 {
    300
}
fn default_timeout_ms() -> u64 {
    2000
}
fn default_grace() -> i64 {
    3600
}
fn default_min_refetch() -> i64 {
    30
}
fn default_retry() -> i64 {
    2
}

// ---- compiled configuration -------------------------------------------------------------

#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    pub realm: String,
    pub token_sources: Vec<TokenSource>,
    pub max_token_bytes: usize,
    pub strip_authorization: bool,
    pub token_cache_entries: usize,
    pub jwks_wait_ms: u64,
    pub providers: Vec<Provider>,
    /// Key source per provider, same index as `providers`.
    pub key_sources: Vec<KeySource>,
    pub routes: RouteTable,
    pub api_keys: ApiKeys,
    pub rate_limits: RateLimiting,
    /// Cold signature verifications allowed per worker, and how they are shared.
    pub verification_budget: BudgetPolicy,
    /// Whether any rule needs the client address (Envoy's `source.address`: one host call).
    pub needs_client_address: bool,
    /// Whether any route or global limit exists (slots are created at configuration).
    pub has_rate_limits: bool,
    /// Every header finguard sets upstream (claims, API-key identity): always removed from
    /// client requests.
    pub identity_headers: Vec<String>,
    /// The identity headers, the API-key header and (when stripped) `Authorization`: removed
    /// from client requests in every spelling a backend folds to them (`x_auth_subject`).
    pub protected_headers: ProtectedHeaders,
    /// Where a backend may take a token from (see `ambiguity`), compiled from `token_sources`.
    pub credential_places: CredentialPlaces,
    /// Incident lever: refuse everything but an allowlist (503).
    pub lockdown: Lockdown,
    /// Incident lever: credentials refused although they verify.
    pub revoked: Revocations,
    pub audit: AuditSettings,
    /// The global response policy (each route holds its merged one).
    pub response: ResponseDefaults,
}

const SUPPORTED_ALGORITHMS: &str =
    "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512";

impl Config {
    pub fn compile(text: &[u8]) -> Result<Config, ConfigError> {
        let deserializer = &mut serde_json::Deserializer::from_slice(text);
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            ConfigError {
                path: if path == "." { String::new() } else { path },
                message: describe_serde_error(e.inner()),
            }
        })?;

        let token_sources = compile_sources(&raw.token.sources)?;
        if raw.token.max_bytes == 0 || raw.token.max_bytes > 65536 {
            return err("token.max_bytes", "must be between 1 and 65536");
        }
        if raw.realm.is_empty()
            || !raw
                .realm
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            return err(
                "realm",
                "must be non-empty printable ASCII without quotes or backslashes",
            );
        }

        let mut providers = Vec::with_capacity(raw.providers.len());
        let mut key_sources = Vec::with_capacity(raw.providers.len());
        let mut identity_headers = BTreeSet::new();
        for (i, p) in raw.providers.into_iter().enumerate() {
            let path = format!("providers[{i}]");
            if providers
                .iter()
                .any(|other: &Provider| other.name == p.name)
            {
                return err(format!("{path}.name"), "duplicate provider name");
            }
            if providers
                .iter()
                .any(|other: &Provider| other.issuer == p.issuer)
            {
                return err(
                    format!("{path}.issuer"),
                    "another provider has the same issuer",
                );
            }
            let (provider, source) = compile_provider(&path, p)?;
            identity_headers.extend(provider.forward_claims.iter().map(|c| c.header.clone()));
            providers.push(provider);
            key_sources.push(source);
        }

        let rate_limits = RateLimiting::compile(raw.rate_limits, text)?;
        let verification_budget = BudgetPolicy::compile(&raw.verification_budget)?;
        let api_keys = compile_api_keys(raw.api_keys)?;
        identity_headers.extend(api_keys.forward_id.iter().cloned());
        identity_headers.extend(api_keys.forward_client.iter().cloned());

        let unmatched = match raw.unmatched_route_status {
            404 => Reason::RouteNotFound,
            403 => Reason::RouteForbidden,
            _ => return err("unmatched_route_status", "must be 404 or 403"),
        };
        let provider_names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        let response = ResponseDefaults::compile(raw.response)?;
        let routes = RouteTable::compile(raw.routes, &provider_names, unmatched, &response)?;
        if routes.requires_tokens() && providers.is_empty() {
            return err(
                "providers",
                "routes require tokens but no provider is configured",
            );
        }
        if routes.requires_api_keys() && api_keys.keys.is_empty() {
            return err("api_keys", "routes accept API keys but none is configured");
        }

        let route_ids: Vec<&str> = routes.routes().iter().map(|r| r.id.as_str()).collect();
        let lockdown = Lockdown::compile(raw.lockdown, &route_ids)?;
        let key_ids: Vec<&str> = api_keys.keys.iter().map(|k| k.id.as_str()).collect();
        let revoked = Revocations::compile(raw.revoked, &key_ids)?;
        let audit = AuditSettings::compile(raw.audit)?;

        let route_limits = || routes.routes().iter().flat_map(|r| &r.rate_limits);
        // The verification budget's per-client share and reserve need the address too (one host
        // call per request on a configuration with token routes).
        let needs_client_address = rate_limits.lockout.is_some()
            || (verification_budget.needs_client_address() && routes.requires_tokens())
            || rate_limits
                .global
                .iter()
                .chain(route_limits())
                .any(|l| l.uses(KeyPart::Address));
        let has_rate_limits = !rate_limits.global.is_empty() || route_limits().next().is_some();
        let credential_places = CredentialPlaces::new(&token_sources);
        let protected_headers = ProtectedHeaders::new(
            identity_headers
                .iter()
                .cloned()
                .chain((!api_keys.keys.is_empty()).then(|| api_keys.header.clone()))
                .chain(
                    raw.token
                        .strip_authorization
                        .then(|| "authorization".into()),
                ),
        );
        Ok(Config {
            mode: raw.mode,
            realm: raw.realm,
            token_sources,
            max_token_bytes: raw.token.max_bytes,
            strip_authorization: raw.token.strip_authorization,
            token_cache_entries: raw.token_cache.max_entries.min(1 << 20),
            jwks_wait_ms: raw.jwks_wait_ms.min(60_000),
            providers,
            key_sources,
            routes,
            api_keys,
            verification_budget,
            needs_client_address,
            has_rate_limits,
            rate_limits,
            identity_headers: identity_headers.into_iter().collect(),
            protected_headers,
            credential_places,
            lockdown,
            revoked,
            audit,
            response,
        })
    }
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn compile_sources(raw: &[RawTokenSource]) -> Result<Vec<TokenSource>, ConfigError> {
    if raw.is_empty() {
        return err("token.sources", "at least one token source is required");
    }
    let mut sources = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let path = format!("token.sources[{i}]");
        let source =
            match (&s.header, &s.cookie, &s.query) {
                (Some(header), None, None) => {
                    let name = header.to_ascii_lowercase();
                    if !is_header_name(&name) || name.starts_with(':') {
                        return err(format!("{path}.header"), "not a valid header name");
                    }
                    TokenSource::Header {
                        name,
                        scheme: s.scheme.clone(),
                    }
                }
                (None, Some(cookie), None) if s.scheme.is_none() => TokenSource::Cookie {
                    name: cookie.clone(),
                },
                (None, None, Some(query)) if s.scheme.is_none() => TokenSource::Query {
                    name: query.clone(),
                },
                _ => return err(
                    path,
                    "exactly one of \"header\" (with optional \"scheme\"), \"cookie\" or \"query\"",
                ),
            };
        sources.push(source);
    }
    Ok(sources)
}

fn compile_api_keys(raw: Option<RawApiKeys>) -> Result<ApiKeys, ConfigError> {
    let Some(raw) = raw else {
        return Ok(ApiKeys::default());
    };
    let header = raw.header.to_ascii_lowercase();
    if !is_header_name(&header) || header == "authorization" {
        return err(
            "api_keys.header",
            "not a valid header name (and not authorization)",
        );
    }
    let forward = |field: &str, name: Option<String>| -> Result<Option<String>, ConfigError> {
        match name.map(|n| n.to_ascii_lowercase()) {
            Some(n) if !is_header_name(&n) || n == "authorization" || n == header => err(
                format!("api_keys.forward.{field}"),
                "not a header finguard may set",
            ),
            other => Ok(other),
        }
    };
    let forward_id = forward("id", raw.forward.id)?;
    let forward_client = forward("client", raw.forward.client)?;
    let mut keys: Vec<ApiKey> = Vec::with_capacity(raw.keys.len());
    for (i, k) in raw.keys.into_iter().enumerate() {
        let path = format!("api_keys.keys[{i}]");
        if k.id.is_empty() || keys.iter().any(|other| other.id == k.id) {
            return err(format!("{path}.id"), "must be non-empty and unique");
        }
        let valid_value = |v: &str| !v.is_empty() && v.bytes().all(|b| (0x21..0x7f).contains(&b));
        if !valid_value(&k.id) || !valid_value(&k.client) {
            return err(path, "id and client must be printable ASCII without spaces (they are forwarded as headers)");
        }
        let Some(sha256) = parse_sha256_hex(&k.sha256.to_ascii_lowercase()) else {
            return err(
                format!("{path}.sha256"),
                "64 hex digits of SHA-256(key); the key itself never goes in the configuration",
            );
        };
        if keys.iter().any(|other| other.sha256 == sha256) {
            return err(format!("{path}.sha256"), "the same key is configured twice");
        }
        keys.push(ApiKey {
            id: k.id,
            client: k.client,
            sha256,
            scopes: k.scopes,
            disabled: k.disabled,
        });
    }
    Ok(ApiKeys {
        header,
        keys,
        forward_id,
        forward_client,
    })
}

fn compile_provider(path: &str, p: RawProvider) -> Result<(Provider, KeySource), ConfigError> {
    if p.name.is_empty() {
        return err(format!("{path}.name"), "must not be empty");
    }
    if p.issuer.is_empty() {
        return err(format!("{path}.issuer"), "must not be empty");
    }
    if p.audiences.is_empty() || p.audiences.iter().any(String::is_empty) {
        return err(
            format!("{path}.audiences"),
            "at least one non-empty audience is required",
        );
    }
    if p.algorithms.is_empty() {
        return err(
            format!("{path}.algorithms"),
            "at least one algorithm is required",
        );
    }
    let mut algorithms = Vec::with_capacity(p.algorithms.len());
    for (j, name) in p.algorithms.iter().enumerate() {
        let Some(alg) = parse_algorithm(name) else {
            return err(
                format!("{path}.algorithms[{j}]"),
                format!(
                    "unsupported algorithm (supported: {SUPPORTED_ALGORITHMS}; \"none\" never)"
                ),
            );
        };
        algorithms.push(alg);
    }
    if !(0..=600).contains(&p.clock_skew_seconds) {
        return err(
            format!("{path}.clock_skew_seconds"),
            "must be between 0 and 600",
        );
    }
    if p.max_lifetime_seconds.is_some_and(|m| m <= 0) {
        return err(format!("{path}.max_lifetime_seconds"), "must be positive");
    }
    if p.scope_claim.as_ref().is_some_and(String::is_empty) {
        return err(format!("{path}.scope_claim"), "must not be empty");
    }
    let typ = p.typ.map(|list| {
        list.iter()
            .map(|t| {
                let t = t.to_ascii_lowercase();
                t.strip_prefix("application/").unwrap_or(&t).to_string()
            })
            .collect()
    });
    let mut forward_claims = Vec::with_capacity(p.forward_claims.len());
    for (claim, header) in &p.forward_claims {
        let header_lc = header.to_ascii_lowercase();
        if !is_header_name(&header_lc) || header_lc == "authorization" || header_lc == "host" {
            return err(
                format!("{path}.forward_claims.{claim}"),
                "not a header finguard may set",
            );
        }
        if claim.is_empty() {
            return err(format!("{path}.forward_claims"), "empty claim name");
        }
        let pointer = crate::authz::claim_pointer(claim);
        forward_claims.push(ClaimHeader {
            pointer,
            header: header_lc,
        });
    }

    let uses_hmac = algorithms
        .iter()
        .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
    let source = match p.jwks {
        RawJwks::Inline(doc) => {
            let bytes = serde_json::to_vec(&doc).unwrap_or_default();
            let set = KeySet::parse(&bytes, KeyOrigin::Inline).map_err(|message| ConfigError {
                path: format!("{path}.jwks.inline"),
                message,
            })?;
            for (j, alg) in algorithms.iter().enumerate() {
                if set.candidates(None, *alg).next().is_none() {
                    return err(
                        format!("{path}.algorithms[{j}]"),
                        "no inline key can verify this algorithm",
                    );
                }
            }
            KeySource::Inline(Rc::new(set))
        }
        RawJwks::Remote(r) => {
            let rpath = format!("{path}.jwks.remote");
            if uses_hmac {
                return err(format!("{path}.algorithms"), "HS256/384/512 need an inline secret (\"jwks\": {\"inline\": ...}), never a remote JWKS");
            }
            if r.cluster.is_empty() {
                return err(format!("{rpath}.cluster"), "must not be empty");
            }
            if !r.path.starts_with('/') {
                return err(format!("{rpath}.path"), "must start with /");
            }
            if r.refresh_seconds < 1 {
                return err(format!("{rpath}.refresh_seconds"), "must be at least 1");
            }
            if r.grace_seconds < 0 || r.min_refetch_seconds < 0 || r.retry_seconds < 1 {
                return err(
                    rpath,
                    "grace_seconds and min_refetch_seconds must be >= 0, retry_seconds >= 1",
                );
            }
            if r.timeout_ms == 0 || r.timeout_ms > 60_000 {
                return err(format!("{rpath}.timeout_ms"), "must be between 1 and 60000");
            }
            KeySource::Remote(RemoteJwks {
                authority: r.authority.unwrap_or_else(|| r.cluster.clone()),
                cluster: r.cluster,
                path: r.path,
                refresh_seconds: r.refresh_seconds,
                timeout_ms: r.timeout_ms,
                grace_seconds: r.grace_seconds,
                min_refetch_seconds: r.min_refetch_seconds,
                retry_seconds: r.retry_seconds,
            })
        }
    };
    if let KeySource::Inline(set) = &source {
        if !uses_hmac && set.has_family(|f| f == KeyFamily::Hmac) {
            return err(
                format!("{path}.jwks.inline"),
                "symmetric keys present but no HS algorithm allowed",
            );
        }
    }

    Ok((
        Provider {
            name: p.name,
            issuer: p.issuer,
            audiences: p.audiences,
            algorithms,
            clock_skew_seconds: p.clock_skew_seconds,
            max_lifetime_seconds: p.max_lifetime_seconds,
            typ,
            scope_claim: p.scope_claim,
            forward_claims,
            // A provider in monitor mode is monitored on every route (pipeline::effective_mode).
            mode: p.mode.unwrap_or(Mode::Enforce),
        },
        source,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const SECRET: &str = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI";

    pub fn sample() -> serde_json::Value {
        json!({
            "providers": [{
                "name": "idp", "issuer": "https://idp.example", "audiences": ["payments-api"],
                "algorithms": ["RS256", "ES256"],
                "jwks": {"remote": {"cluster": "idp_jwks", "path": "/jwks.json"}},
                "forward_claims": {"sub": "x-auth-subject", "/realm/roles": "X-Auth-Roles"}
            }],
            "routes": [
                {"id": "accounts", "match": {"methods": ["GET"], "path": "/v1/accounts/{account_id}"},
                 "auth": {"scopes": {"all": ["accounts:read"]}}},
                {"id": "health", "match": {"path": "/healthz"}, "public": true}
            ]
        })
    }

    fn compile(v: &serde_json::Value) -> Result<Config, ConfigError> {
        Config::compile(v.to_string().as_bytes())
    }

    fn error_path(v: serde_json::Value) -> String {
        compile(&v).unwrap_err().path
    }

    #[test]
    fn compiles_the_sample_with_defaults() {
        let c = compile(&sample()).unwrap();
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.max_token_bytes, 8192);
        assert_eq!(c.identity_headers, ["x-auth-roles", "x-auth-subject"]);
        assert_eq!(c.providers[0].forward_claims[1].pointer, "/sub");
        let KeySource::Remote(r) = &c.key_sources[0] else {
            panic!()
        };
        assert_eq!(
            (r.refresh_seconds, r.grace_seconds, r.authority.as_str()),
            (300, 3600, "idp_jwks")
        );
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let mut v = sample();
        v["providers"][0]["jwks"]["remote"]["clustr"] = json!("x");
        let e = compile(&v).unwrap_err();
        assert_eq!(e.path, "providers[0].jwks.remote.clustr");
        assert!(e.message.contains("unknown field `clustr`"), "{e}");
        let mut v = sample();
        v["extra"] = json!(1);
        assert!(compile(&v)
            .unwrap_err()
            .message
            .contains("unknown field `extra`"));
    }

    #[test]
    fn bad_values_are_named_with_their_path() {
        let mut v = sample();
        v["providers"][0]["algorithms"] = json!(["RS256", "none"]);
        assert_eq!(error_path(v), "providers[0].algorithms[1]");
        let mut v = sample();
        v["providers"][0]["jwks"]["remote"]["cluster"] = json!("");
        assert_eq!(error_path(v), "providers[0].jwks.remote.cluster");
        let mut v = sample();
        v["providers"][0]["algorithms"] = json!(["HS256"]);
        assert_eq!(error_path(v), "providers[0].algorithms");
        let mut v = sample();
        v["providers"][0]["forward_claims"] = json!({"sub": "Authorization"});
        assert_eq!(error_path(v), "providers[0].forward_claims.sub");
        let mut v = sample();
        v["token"] = json!({"sources": [{"cookie": "a", "query": "b"}]});
        assert_eq!(error_path(v), "token.sources[0]");
        let mut v = sample();
        v["providers"][0]["audiences"] = json!([]);
        assert_eq!(error_path(v), "providers[0].audiences");
        assert!(Config::compile(b"{not json")
            .unwrap_err()
            .message
            .starts_with("invalid JSON"));
        assert!(Config::compile(b"").is_err());
    }

    #[test]
    fn hmac_requires_an_inline_secret_of_the_right_family() {
        let mut v = sample();
        v["providers"][0]["algorithms"] = json!(["HS256"]);
        v["providers"][0]["jwks"] =
            json!({"inline": {"keys": [{"kty": "oct", "kid": "h", "k": SECRET}]}});
        assert!(compile(&v).is_ok());
        v["providers"][0]["algorithms"] = json!(["HS256", "RS256"]);
        assert_eq!(error_path(v), "providers[0].algorithms[1]");
    }

    #[test]
    fn api_keys_are_stored_as_hashes() {
        let mut v = sample();
        let hash = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
        v["api_keys"] = json!({"forward": {"client": "x-auth-client"}, "keys": [{"id": "k1", "client": "acme", "sha256": hash, "scopes": ["a"]}]});
        v["routes"][0]["auth"]["credentials"] = json!(["jwt", "api_key"]);
        let c = compile(&v).unwrap();
        assert_eq!(c.api_keys.header, "x-api-key");
        assert!(c.identity_headers.contains(&"x-auth-client".to_string()));
        v["api_keys"]["keys"][0]["sha256"] = json!("my-plain-key");
        assert_eq!(error_path(v.clone()), "api_keys.keys[0].sha256");
        v.as_object_mut().unwrap().remove("api_keys");
        assert_eq!(error_path(v), "api_keys");
        let mut v = sample();
        v["unmatched_route_status"] = json!(500);
        assert_eq!(error_path(v), "unmatched_route_status");
    }

    #[test]
    fn monitor_mode_propagates() {
        let mut v = sample();
        v["mode"] = json!("monitor");
        assert_eq!(compile(&v).unwrap().mode, Mode::Monitor);
        let mut v = sample();
        v["providers"][0]["mode"] = json!("monitor");
        let c = compile(&v).unwrap();
        assert_eq!(
            (c.mode, c.providers[0].mode),
            (Mode::Enforce, Mode::Monitor)
        );
    }

    #[test]
    fn no_config_text_panics() {
        for text in [
            "",
            "null",
            "[]",
            "{}",
            "{\"routes\":1}",
            "{\"routes\":[{}]}",
            "\u{0}",
        ] {
            let _ = Config::compile(text.as_bytes());
        }
    }
}
