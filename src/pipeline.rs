//! The fixed order of checks for one request. Headers phase, today:
//!
//! route match (unknown: 404/405) -> identity headers stripped -> token extracted (exactly one)
//! -> authenticated (cache, else verify; keys not loaded yet: wait) -> scopes -> forward with
//! verified claim headers.
//!
//! Pure: the host adapter passes the request, the clock and the per-VM state in, and applies the
//! [`Verdict`] that comes out.

use crate::authn::cache::TokenCache;
use crate::authn::keys::ProviderKeys;
use crate::authn::{extract, Authenticator, AuthnError};
use crate::authz;
use crate::config::{Config, Mode};
use crate::decision::{Forward, Reason, Refusal, RefusalContext, Verdict};
use crate::request::RequestView;
use crate::routes::RouteAuth;

/// Seconds a client is told to wait when keys are unavailable.
const KEYS_RETRY_AFTER_SECONDS: u64 = 5;

/// Mutable per-VM state the headers phase reads and updates.
pub struct VmState<'a> {
    pub keys: &'a mut [ProviderKeys],
    pub cache: &'a mut TokenCache,
}

/// Judges the request headers. `may_wait`: false when re-judging a request that already waited
/// for keys, so it is answered now.
pub fn on_request_headers(
    config: &Config,
    request: &RequestView,
    state: VmState<'_>,
    now: i64,
    may_wait: bool,
) -> Verdict {
    let mut forward = Forward::default();
    // Client-supplied copies of the headers finguard vouches for are never forwarded, whatever
    // the outcome below.
    for header in &config.identity_headers {
        if request.has_header(header) {
            forward.remove.push(header.clone());
        }
    }
    if config.strip_authorization && request.has_header("authorization") {
        forward.remove.push("authorization".into());
    }

    let refuse =
        |reason: Reason, mode: Mode, forward: Forward, scopes: &[String], allowed: &[String]| {
            if mode == Mode::Monitor {
                return Verdict::Allow(Forward {
                    monitored: Some(reason),
                    ..forward
                });
            }
            let ctx = RefusalContext {
                realm: &config.realm,
                request_id: request.request_id(),
                required_scopes: scopes,
                allowed_methods: allowed,
                retry_after_seconds: (reason == Reason::KeysUnavailable)
                    .then_some(KEYS_RETRY_AFTER_SECONDS),
            };
            Verdict::Refuse(Refusal::new(reason, &ctx))
        };

    let route = match config.routes.lookup(request.method(), request.path()) {
        Ok(matched) => matched.route,
        Err(no_route) => {
            return refuse(
                no_route.reason,
                config.mode,
                forward,
                &[],
                &no_route.allowed_methods,
            )
        }
    };
    let (allowed_providers, scope_rule) = match &route.auth {
        RouteAuth::Anonymous => return Verdict::Allow(forward),
        RouteAuth::Jwt { providers, scopes } => (providers.as_deref(), scopes),
    };

    let token = match extract::extract(&config.token_sources, request) {
        Ok(Some(token)) => token,
        Ok(None) => return refuse(Reason::TokenMissing, config.mode, forward, &[], &[]),
        Err(reason) => return refuse(reason, config.mode, forward, &[], &[]),
    };
    let authenticator = Authenticator {
        providers: &config.providers,
        sources: &config.key_sources,
        max_token_bytes: config.max_token_bytes,
    };
    // Monitor mode must not add latency: it never waits for keys.
    let may_wait = may_wait && config.mode == Mode::Enforce;
    let verified = match authenticator.authenticate(
        token,
        allowed_providers,
        state.keys,
        state.cache,
        now,
        may_wait,
    ) {
        Ok(verified) => verified,
        Err(AuthnError::WaitForKeys(provider)) => return Verdict::WaitForKeys { provider },
        Err(AuthnError::Refused(reason, provider)) => {
            let mode = provider_mode(config, provider);
            return refuse(reason, mode, forward, &[], &[]);
        }
    };
    if let Err(reason) = authz::check_scopes(scope_rule, &verified) {
        let mode = provider_mode(config, Some(verified.provider));
        return refuse(reason, mode, forward, &scope_rule.named(), &[]);
    }
    forward.set.extend(verified.forward_headers.iter().cloned());
    Verdict::Allow(forward)
}

fn provider_mode(config: &Config, provider: Option<usize>) -> Mode {
    provider
        .and_then(|p| config.providers.get(p))
        .map_or(config.mode, |p| p.mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::keys::KeySource;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: i64 = 1_800_000_000;
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn config(extra: serde_json::Value) -> Config {
        use base64::Engine;
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
        let mut v = json!({
            "providers": [{
                "name": "idp", "issuer": "https://idp.example", "audiences": ["payments-api"],
                "algorithms": ["HS256"],
                "jwks": {"inline": {"keys": [{"kty": "oct", "kid": "h1", "k": k}]}},
                "forward_claims": {"sub": "x-auth-subject"}
            }],
            "routes": [
                {"id": "accounts", "match": {"methods": ["GET"], "path": "/v1/accounts/{id}"},
                 "auth": {"scopes": {"all": ["accounts:read"]}}},
                {"id": "health", "match": {"path": "/healthz"}, "auth": {"anonymous": true}}
            ]
        });
        for (key, value) in extra.as_object().unwrap() {
            v[key] = value.clone();
        }
        Config::compile(v.to_string().as_bytes()).unwrap()
    }

    fn token(claims: serde_json::Value) -> String {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("h1".into());
        encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    fn claims() -> serde_json::Value {
        json!({"iss": "https://idp.example", "aud": "payments-api", "exp": NOW + 300, "sub": "alice", "scope": "accounts:read"})
    }

    fn request(path: &str, headers: &[(&str, &str)]) -> RequestView {
        let mut all = vec![
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), path.to_string()),
        ];
        all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        RequestView::new(all)
    }

    struct Vm {
        keys: Vec<ProviderKeys>,
        cache: TokenCache,
    }

    impl Vm {
        fn new(config: &Config) -> Vm {
            let keys = config
                .key_sources
                .iter()
                .map(|s| match s {
                    KeySource::Inline(set) => ProviderKeys {
                        keys: Some(set.clone()),
                        ..Default::default()
                    },
                    KeySource::Remote(_) => ProviderKeys::default(),
                })
                .collect();
            Vm {
                keys,
                cache: TokenCache::new(16),
            }
        }

        fn judge(&mut self, config: &Config, request: &RequestView) -> Verdict {
            let state = VmState {
                keys: &mut self.keys,
                cache: &mut self.cache,
            };
            on_request_headers(config, request, state, NOW, true)
        }
    }

    fn refused(verdict: Verdict) -> Reason {
        match verdict {
            Verdict::Refuse(r) => r.reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn valid_token_is_forwarded_with_claims_and_spoofed_headers_removed() {
        let c = config(json!({}));
        let mut vm = Vm::new(&c);
        let bearer = format!("Bearer {}", token(claims()));
        let r = request(
            "/v1/accounts/1",
            &[("authorization", &bearer), ("x-auth-subject", "mallory")],
        );
        let Verdict::Allow(forward) = vm.judge(&c, &r) else {
            panic!()
        };
        assert_eq!(forward.remove, ["x-auth-subject"]);
        assert_eq!(
            forward.set,
            [("x-auth-subject".to_string(), "alice".to_string())]
        );
        // Second time: from the cache, same outcome.
        assert_eq!(vm.cache.len(), 1);
        assert!(matches!(vm.judge(&c, &r), Verdict::Allow(_)));
    }

    #[test]
    fn refusals_carry_their_reasons() {
        let c = config(json!({}));
        let mut vm = Vm::new(&c);
        assert_eq!(
            refused(vm.judge(&c, &request("/nope", &[]))),
            Reason::RouteNotFound
        );
        assert_eq!(
            refused(vm.judge(&c, &request("/v1/accounts/1", &[]))),
            Reason::TokenMissing
        );
        let no_scope = format!(
            "Bearer {}",
            token(json!({"iss": "https://idp.example", "aud": "payments-api", "exp": NOW + 300}))
        );
        let v = vm.judge(
            &c,
            &request("/v1/accounts/1", &[("authorization", &no_scope)]),
        );
        let Verdict::Refuse(r) = v else { panic!() };
        assert_eq!((r.reason, r.status), (Reason::ScopeInsufficient, 403));
        let expired = format!(
            "Bearer {}",
            token(json!({"iss": "https://idp.example", "aud": "payments-api", "exp": NOW - 100}))
        );
        assert_eq!(
            refused(vm.judge(
                &c,
                &request("/v1/accounts/1", &[("authorization", &expired)])
            )),
            Reason::TokenExpired
        );
        let other_iss = format!(
            "Bearer {}",
            token(json!({"iss": "https://evil.example", "aud": "payments-api", "exp": NOW + 100}))
        );
        assert_eq!(
            refused(vm.judge(
                &c,
                &request("/v1/accounts/1", &[("authorization", &other_iss)])
            )),
            Reason::IssuerUnknown
        );
        // Same signature over a payload granting more: the signature no longer matches.
        let genuine = token(claims());
        let mut escalated = claims();
        escalated["scope"] = json!("accounts:read payments:write");
        let forged = token(escalated);
        let (g, f): (Vec<&str>, Vec<&str>) =
            (genuine.split('.').collect(), forged.split('.').collect());
        let tampered = format!("{}.{}.{}", g[0], f[1], g[2]);
        let r = vm.judge(
            &c,
            &request(
                "/v1/accounts/1",
                &[("authorization", &format!("Bearer {tampered}"))],
            ),
        );
        assert_eq!(refused(r), Reason::SignatureInvalid);
        assert!(matches!(
            vm.judge(&c, &request("/healthz", &[])),
            Verdict::Allow(_)
        ));
    }

    #[test]
    fn cached_token_expires_on_time() {
        let c = config(json!({}));
        let mut vm = Vm::new(&c);
        let mut short = claims();
        short["exp"] = json!(NOW + 10);
        let bearer = format!("Bearer {}", token(short));
        let r = request("/v1/accounts/1", &[("authorization", &bearer)]);
        assert!(matches!(vm.judge(&c, &r), Verdict::Allow(_)));
        let state = VmState {
            keys: &mut vm.keys,
            cache: &mut vm.cache,
        };
        assert_eq!(
            refused(on_request_headers(&c, &r, state, NOW + 71, true)),
            Reason::TokenExpired
        );
        assert!(vm.cache.is_empty());
    }

    #[test]
    fn monitor_mode_forwards_what_it_would_refuse() {
        let c = config(json!({"mode": "monitor"}));
        let mut vm = Vm::new(&c);
        let Verdict::Allow(forward) = vm.judge(
            &c,
            &request("/v1/accounts/1", &[("x-auth-subject", "mallory")]),
        ) else {
            panic!()
        };
        assert_eq!(forward.monitored, Some(Reason::TokenMissing));
        assert_eq!(forward.remove, ["x-auth-subject"]);
        assert!(forward.set.is_empty());
    }

    #[test]
    fn remote_keys_not_loaded_means_wait_then_unavailable() {
        let mut v = json!({
            "providers": [{"name": "idp", "issuer": "https://idp.example", "audiences": ["payments-api"],
                "algorithms": ["RS256"], "jwks": {"remote": {"cluster": "c", "path": "/j"}}}],
            "routes": [{"id": "a", "match": {"path": "/a"}}]
        });
        let c = Config::compile(v.to_string().as_bytes()).unwrap();
        let mut vm = Vm::new(&c);
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.alg = jsonwebtoken::Algorithm::HS256;
        // An RS256 header is needed for the provider's allowlist; the signature never gets checked.
        let fake = format!(
            "{}.{}.c2ln",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                br#"{"alg":"RS256","kid":"k"}"#
            ),
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                claims().to_string()
            )
        );
        let r = request("/a", &[("authorization", &format!("Bearer {fake}"))]);
        assert_eq!(vm.judge(&c, &r), Verdict::WaitForKeys { provider: 0 });
        let state = VmState {
            keys: &mut vm.keys,
            cache: &mut vm.cache,
        };
        assert_eq!(
            refused(on_request_headers(&c, &r, state, NOW, false)),
            Reason::KeysUnavailable
        );
        v["mode"] = json!("monitor");
        let c = Config::compile(v.to_string().as_bytes()).unwrap();
        let Verdict::Allow(f) = vm.judge(&c, &r) else {
            panic!()
        };
        assert_eq!(f.monitored, Some(Reason::KeysUnavailable));
    }
}
