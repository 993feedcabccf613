//! The fixed order of checks for one request.
//!
//! Headers phase ([`on_request_headers`]):
//! client identity headers stripped -> path spelling checked -> route matched (unknown: 404/403,
//! wrong method: 405) -> public routes forwarded -> exactly one credential (JWT or API key, as the
//! route allows) -> authenticated (token cache, else verify; keys not loaded yet: wait) ->
//! authorized (scopes, claims, path-bound objects, unconditional step-up) -> forwarded with
//! verified identity headers, or held for the body phase.
//!
//! Body phase ([`on_request_body`], only for routes whose rules read the body):
//! size -> content type -> strict JSON -> body-bound objects, amount-conditional step-up.
//!
//! Pure: the host adapter passes the request, the clock and the per-VM state in, and applies the
//! [`Verdict`] that comes out.

use crate::authn::budget::VerificationBudget;
use crate::authn::cache::TokenCache;
use crate::authn::keys::ProviderKeys;
use crate::authn::{extract, Authenticator, AuthnError, AuthnState};
use crate::authz::{AuthPolicy, Principal};
use crate::config::{Config, Mode};
use crate::decision::{Caller, Forward, PendingBody, Reason, Refusal, RefusalContext, Verdict};
use crate::json;
use crate::ratelimit::concurrency::{self, ConcurrencyLimit};
use crate::ratelimit::{self, store::CounterStore, Identity, Limit, LimitDecision};
use crate::request::RequestView;
use crate::response;
use crate::routes::{self, RoutePolicy};

/// Seconds a client is told to wait when keys are unavailable.
const KEYS_RETRY_AFTER_SECONDS: u64 = 5;

/// Mutable per-VM (and shared) state the headers phase reads and updates.
pub struct VmState<'a> {
    pub keys: &'a mut [ProviderKeys],
    pub cache: &'a mut TokenCache,
    /// Shared data: rate-limit buckets and lockouts.
    pub store: &'a mut dyn CounterStore,
    /// This worker's budget of cold signature verifications.
    pub budget: &'a mut VerificationBudget,
}

/// Turns a refusal into a verdict: sent in enforce mode, logged and forwarded in monitor mode.
struct Judge<'a> {
    config: &'a Config,
    request_id: Option<&'a str>,
    /// The matched route, named in refusals for the audit record.
    route_id: Option<&'a str>,
}

impl Judge<'_> {
    fn refuse(&self, reason: Reason, mode: Mode, forward: Forward) -> Verdict {
        self.refuse_with(reason, mode, forward, RefusalContext::default())
    }

    fn refuse_with(
        &self,
        reason: Reason,
        mode: Mode,
        forward: Forward,
        ctx: RefusalContext<'_>,
    ) -> Verdict {
        if mode == Mode::Monitor {
            return Verdict::Allow(Forward {
                monitored: Some(reason),
                ..forward
            });
        }
        let ctx = RefusalContext {
            realm: &self.config.realm,
            request_id: self.request_id,
            retry_after_seconds: ctx
                .retry_after_seconds
                .or((reason == Reason::KeysUnavailable).then_some(KEYS_RETRY_AFTER_SECONDS)),
            ..ctx
        };
        let mut refusal = Refusal::new(reason, &ctx);
        refusal.route_id = self.route_id.map(str::to_owned);
        Verdict::Refuse(refusal)
    }

    /// A refusal that tells the client when to come back (`Retry-After`).
    fn refuse_after(&self, reason: Reason, mode: Mode, forward: Forward, seconds: u64) -> Verdict {
        let ctx = RefusalContext {
            retry_after_seconds: Some(seconds),
            ..Default::default()
        };
        self.refuse_with(reason, mode, forward, ctx)
    }

    /// Monitor if the route (or, without a route setting, the global mode) says so, or if the
    /// token's provider is being rolled out in monitor mode.
    fn mode(&self, route: Option<&RoutePolicy>, provider: Option<usize>) -> Mode {
        let route_mode = route.and_then(|r| r.mode).unwrap_or(self.config.mode);
        let provider_mode = provider
            .and_then(|p| self.config.providers.get(p))
            .map_or(Mode::Enforce, |p| p.mode);
        if route_mode == Mode::Monitor || provider_mode == Mode::Monitor {
            Mode::Monitor
        } else {
            Mode::Enforce
        }
    }
}

/// Judges the request headers at `now_ms` (Unix milliseconds). `may_wait`: false when re-judging
/// a request that already waited for keys, so it is answered now.
pub fn on_request_headers(
    config: &Config,
    request: &RequestView,
    state: VmState<'_>,
    now_ms: i64,
    may_wait: bool,
) -> Verdict {
    let now = now_ms.div_euclid(1000);
    let now_us = now_ms.saturating_mul(1000);
    let judge = Judge {
        config,
        request_id: request.request_id(),
        route_id: None,
    };
    let mut forward = Forward::default();
    // Client-supplied copies of the headers finguard vouches for are never forwarded, whatever
    // the outcome below; neither is an API key (a secret the upstream has no use for).
    for header in &config.identity_headers {
        if request.has_header(header) {
            forward.remove.push(header.clone());
        }
    }
    if !config.api_keys.keys.is_empty() && request.has_header(&config.api_keys.header) {
        forward.remove.push(config.api_keys.header.clone());
    }
    if config.strip_authorization && request.has_header("authorization") {
        forward.remove.push("authorization".into());
    }

    let path = request.path();
    if let Err(reason) = routes::check_path(path) {
        return judge.refuse(reason, judge.mode(None, None), forward);
    }
    let host = request.header(":authority").unwrap_or("");
    let matched = match config.routes.lookup(host, request.method(), path) {
        Ok(matched) => matched,
        Err(no_route) => {
            // Forwarded only in monitor mode: the global response policy still applies.
            forward.response = response::plan(config.response.global(), request);
            let ctx = RefusalContext {
                allowed_methods: &no_route.allowed_methods,
                ..Default::default()
            };
            return judge.refuse_with(no_route.reason, judge.mode(None, None), forward, ctx);
        }
    };
    let route = matched.route;
    let judge = Judge {
        route_id: Some(&route.id),
        ..judge
    };
    forward.response = response::plan(route.response.as_ref(), request);
    if forward.response.as_ref().is_some_and(|p| p.rewrites_body()) {
        // A compressed response could not be rewritten (it would be refused): ask for none.
        forward
            .set
            .push(("accept-encoding".into(), "identity".into()));
    }
    let limiting = &config.rate_limits;
    let address = request.client_address(limiting.trusted_forwarded_hops);
    let Some(policy) = &route.auth else {
        let who = Identity {
            address,
            route: &route.id,
            ..Identity::default()
        };
        return apply_limits(&judge, config, route, &who, state.store, now_us, forward);
    };

    // Locked-out addresses are refused before any credential is looked at.
    if let (Some(lockout), Some(address)) = (&limiting.lockout, address) {
        if let Some(seconds) = lockout.locked(state.store, &limiting.lockouts, address, now_us) {
            return judge.refuse_after(
                Reason::AuthLockedOut,
                judge.mode(Some(route), None),
                forward,
                seconds,
            );
        }
    }
    let authn_state = AuthnState {
        keys: state.keys,
        cache: state.cache,
        budget: state.budget,
    };
    let caller = match authenticate(config, policy, request, authn_state, now_ms, may_wait) {
        Ok(caller) => caller,
        Err(AuthnError::Overloaded(seconds)) => {
            return judge.refuse_after(
                Reason::VerificationOverloaded,
                judge.mode(Some(route), None),
                forward,
                seconds,
            );
        }
        Err(AuthnError::WaitForKeys(provider)) => {
            return Verdict::WaitForKeys {
                provider,
                route: matched.index,
            };
        }
        Err(AuthnError::Refused(reason, provider)) => {
            let mut verdict = judge.refuse(reason, judge.mode(Some(route), provider), forward);
            if let (Some(lockout), Some(address)) = (&limiting.lockout, address) {
                if is_credential_failure(reason)
                    && lockout.record_failure(state.store, &limiting.lockouts, address, now_us)
                {
                    if let Verdict::Refuse(refusal) = &mut verdict {
                        refusal.locked_out = true;
                    }
                }
            }
            return verdict;
        }
    };
    let Some((principal, provider)) = principal_of(config, &caller) else {
        return judge.refuse(
            Reason::ApiKeyInvalid,
            judge.mode(Some(route), None),
            forward,
        );
    };
    if let Some(plan) = &mut forward.response {
        plan.grant(principal.scopes());
    }
    let mode = judge.mode(Some(route), provider);
    if let Err(reason) = policy.check_headers(principal, |name| matched.params.get(name), now) {
        return refuse_unauthorized(&judge, policy, reason, mode, forward);
    }

    let who = identity(config, &caller, address, &route.id);
    let verdict = apply_limits(&judge, config, route, &who, state.store, now_us, forward);
    let Verdict::Allow(mut forward) = verdict else {
        return verdict;
    };
    if forward.monitored.is_some() {
        return Verdict::Allow(forward);
    }
    let in_flight: Vec<&ConcurrencyLimit> = route
        .concurrency
        .iter()
        .chain(limiting.concurrency.iter())
        .collect();
    if !in_flight.is_empty() {
        match concurrency::acquire(state.store, &limiting.buckets, &in_flight, &who, now_us) {
            Some(permits) => forward.permits = permits,
            None => {
                return judge.refuse_after(
                    Reason::ConcurrencyLimited,
                    judge.mode(Some(route), None),
                    forward,
                    1,
                );
            }
        }
    }
    match &caller {
        Caller::Token(token) => forward.set.extend(token.forward_headers.iter().cloned()),
        Caller::ApiKey(index) => forward.set.extend(config.api_keys.forward_headers(*index)),
    }
    if policy.needs_body() {
        let pending = PendingBody {
            route: matched.index,
            principal: caller,
            content_type: request.header("content-type").map(str::to_owned),
            request_id: request.request_id().map(str::to_owned),
        };
        return Verdict::ReadBody { forward, pending };
    }
    Verdict::Allow(forward)
}

/// The caller as authorization sees it, with the provider that vouched for it (`None`: an API
/// key). `None` overall only if a key index names no key, which one configuration never does.
fn principal_of<'c>(
    config: &'c Config,
    caller: &'c Caller,
) -> Option<(Principal<'c>, Option<usize>)> {
    match caller {
        Caller::Token(token) => Some((Principal::Token(token), Some(token.provider))),
        Caller::ApiKey(index) => config
            .api_keys
            .keys
            .get(*index)
            .map(|key| (Principal::ApiKey(key), None)),
    }
}

/// A presented credential that did not verify: what a guessing attacker produces.
fn is_credential_failure(reason: Reason) -> bool {
    use crate::decision::Challenge;
    matches!(reason.challenge(), Challenge::InvalidToken) || reason == Reason::ApiKeyInvalid
}

/// Bucket keys for an authenticated caller.
fn identity<'a>(
    config: &'a Config,
    caller: &'a Caller,
    address: Option<&'a str>,
    route: &'a str,
) -> Identity<'a> {
    match caller {
        Caller::Token(token) => {
            let claim = |name: &str| token.claims.get(name).and_then(serde_json::Value::as_str);
            Identity {
                client: claim("client_id").or_else(|| claim("azp")),
                subject: claim("sub"),
                api_key: None,
                address,
                route,
            }
        }
        Caller::ApiKey(index) => {
            let key = config.api_keys.keys.get(*index);
            Identity {
                client: key.map(|k| k.client.as_str()),
                subject: None,
                api_key: key.map(|k| k.id.as_str()),
                address,
                route,
            }
        }
    }
}

/// The route's and the global limits; all must pass. Adds RateLimit fields to the response when
/// configured, and to every 429.
fn apply_limits(
    judge: &Judge<'_>,
    config: &Config,
    route: &RoutePolicy,
    who: &Identity<'_>,
    store: &mut dyn CounterStore,
    now_us: i64,
    mut forward: Forward,
) -> Verdict {
    let limiting = &config.rate_limits;
    if route.rate_limits.is_empty() && limiting.global.is_empty() {
        return Verdict::Allow(forward);
    }
    let limits: Vec<&Limit> = route
        .rate_limits
        .iter()
        .chain(limiting.global.iter())
        .collect();
    let LimitDecision {
        allowed,
        retry_after_seconds,
        headers,
    } = ratelimit::check(
        store,
        &limiting.buckets,
        &limits,
        who,
        now_us,
        limiting.headers_on_allowed,
    );
    if allowed {
        if limiting.headers_on_allowed {
            forward.response_headers = headers;
        }
        return Verdict::Allow(forward);
    }
    let ctx = RefusalContext {
        retry_after_seconds: Some(retry_after_seconds),
        extra_headers: &headers,
        ..Default::default()
    };
    judge.refuse_with(
        Reason::RateLimited,
        judge.mode(Some(route), None),
        forward,
        ctx,
    )
}

/// Exactly one credential of a kind the route accepts, verified.
fn authenticate(
    config: &Config,
    policy: &AuthPolicy,
    request: &RequestView,
    state: AuthnState<'_>,
    now_ms: i64,
    may_wait: bool,
) -> Result<Caller, AuthnError> {
    let token = if policy.jwt {
        extract::extract(&config.token_sources, request)?
    } else {
        None
    };
    let api_key = if policy.api_key {
        // Envoy does not merge repeated custom headers: two keys are two credentials.
        if request
            .headers_named(&config.api_keys.header)
            .nth(1)
            .is_some()
        {
            return Err(Reason::TokenMultiple.into());
        }
        request.header(&config.api_keys.header)
    } else {
        None
    };
    match (token, api_key) {
        (Some(_), Some(_)) => Err(Reason::TokenMultiple.into()),
        (Some(token), None) => {
            let authenticator = Authenticator {
                providers: &config.providers,
                sources: &config.key_sources,
                max_token_bytes: config.max_token_bytes,
            };
            // Monitor mode must not add latency: it never waits for keys.
            let may_wait = may_wait && config.mode == Mode::Enforce;
            let verified = authenticator.authenticate(
                token,
                policy.providers.as_deref(),
                state,
                now_ms,
                may_wait,
            )?;
            Ok(Caller::Token(verified))
        }
        (None, Some(key)) => Ok(Caller::ApiKey(config.api_keys.verify(key)?)),
        (None, None) if policy.jwt => Err(Reason::TokenMissing.into()),
        (None, None) => Err(Reason::ApiKeyMissing.into()),
    }
}

/// Authorization refusals name what would satisfy them (scopes, step-up parameters).
fn refuse_unauthorized(
    judge: &Judge<'_>,
    policy: &AuthPolicy,
    reason: Reason,
    mode: Mode,
    forward: Forward,
) -> Verdict {
    let scopes = policy.scopes.named();
    let (acr_values, max_age) = match &policy.step_up {
        Some(step_up) => (step_up.acr.as_slice(), step_up.max_age_seconds),
        None => (&[][..], None),
    };
    let ctx = RefusalContext {
        required_scopes: if reason == Reason::ScopeInsufficient {
            &scopes
        } else {
            &[]
        },
        acr_values,
        max_age,
        ..Default::default()
    };
    judge.refuse_with(reason, mode, forward, ctx)
}

/// Judges the body of a request the headers phase held with [`Verdict::ReadBody`].
pub fn on_request_body(config: &Config, pending: &PendingBody, body: &[u8], now: i64) -> Verdict {
    let judge = Judge {
        config,
        request_id: pending.request_id.as_deref(),
        route_id: None,
    };
    let Some(route) = config.routes.routes().get(pending.route) else {
        return judge.refuse(Reason::PolicyUnavailable, Mode::Enforce, Forward::default());
    };
    let judge = Judge {
        route_id: Some(&route.id),
        ..judge
    };
    let Some(policy) = &route.auth else {
        return Verdict::Allow(Forward::default());
    };
    let Some((principal, provider)) = principal_of(config, &pending.principal) else {
        return judge.refuse(Reason::ApiKeyInvalid, Mode::Enforce, Forward::default());
    };
    let mode = judge.mode(Some(route), provider);
    if body.len() > route.max_body_bytes {
        return judge.refuse(Reason::BodyTooLarge, mode, Forward::default());
    }
    if !body.is_empty()
        && !pending
            .content_type
            .as_deref()
            .is_some_and(is_json_media_type)
    {
        return judge.refuse(Reason::ContentTypeUnsupported, mode, Forward::default());
    }
    // An absent body is judged as `null`: every body-bound rule then fails closed.
    let raw: &[u8] = if body.is_empty() { b"null" } else { body };
    let Ok(document) = json::parse_strict(raw) else {
        return judge.refuse(Reason::BodyMalformed, mode, Forward::default());
    };
    if std::str::from_utf8(raw).is_err() {
        return judge.refuse(Reason::BodyMalformed, mode, Forward::default());
    }
    match policy.check_body(principal, &document, raw, now) {
        Ok(()) => Verdict::Allow(Forward::default()),
        Err(reason) => refuse_unauthorized(&judge, policy, reason, mode, Forward::default()),
    }
}

/// A body that grew past the route's limit while streaming in.
pub fn on_body_overflow(config: &Config, pending: &PendingBody) -> Verdict {
    refuse_held(config, pending, Reason::BodyTooLarge)
}

/// Trailers ended a request held for its body: Envoy does not hand the body to the filter at
/// that point in every case, so the request is refused rather than released unjudged.
pub fn on_request_trailers(config: &Config, pending: &PendingBody) -> Verdict {
    refuse_held(config, pending, Reason::TrailersUnsupported)
}

/// Refuses a request held for its body, in the mode of its route and caller.
fn refuse_held(config: &Config, pending: &PendingBody, reason: Reason) -> Verdict {
    let route = config.routes.routes().get(pending.route);
    let judge = Judge {
        config,
        request_id: pending.request_id.as_deref(),
        route_id: route.map(|r| r.id.as_str()),
    };
    let provider = match &pending.principal {
        Caller::Token(token) => Some(token.provider),
        Caller::ApiKey(_) => None,
    };
    judge.refuse(reason, judge.mode(route, provider), Forward::default())
}

/// `application/json` or any `*/*+json`, parameters (charset) allowed, case-insensitive.
pub fn is_json_media_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    !kind.is_empty() && (subtype == "json" && kind == "application" || subtype.ends_with("+json"))
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
                {"id": "health", "match": {"path": "/healthz"}, "public": true},
                {"id": "pay", "match": {"methods": ["POST"], "path": "/v1/customers/{customer_id}/payments"},
                 "auth": {"credentials": ["jwt"], "owner": [{"param": "customer_id", "claim": "sub"}],
                          "step_up": {"amr_any": ["mfa"], "acr": ["gold"], "when": {"amount": "/amount", "gt": "1000"}}},
                 "request": {"max_body_bytes": 256}},
                {"id": "batch", "match": {"methods": ["GET"], "path": "/v1/batch"},
                 "auth": {"credentials": ["jwt", "api_key"], "scopes": {"all": ["batch:read"]}}},
                {"id": "shadow", "match": {"path": "/v1/shadow"}, "mode": "monitor"}
            ]
        });
        // sha256("batch-secret")
        v["api_keys"] = json!({"forward": {"id": "x-auth-api-key-id"}, "keys": [
            {"id": "k1", "client": "acme", "sha256": api_key_hash(), "scopes": ["batch:read"]}]});
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
        // Given headers first: a given ":method" wins over the default GET.
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        all.push((":method".to_string(), "GET".to_string()));
        all.push((":path".to_string(), path.to_string()));
        RequestView::new(all)
    }

    fn api_key_hash() -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(b"batch-secret")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    struct Vm {
        keys: Vec<ProviderKeys>,
        cache: TokenCache,
        store: crate::ratelimit::store::MemoryStore,
        budget: VerificationBudget,
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
                cache: TokenCache::new(16, [1, 2, 3, 4]),
                store: Default::default(),
                budget: VerificationBudget::new(Some(config.verification_rate)),
            }
        }

        fn judge(&mut self, config: &Config, request: &RequestView) -> Verdict {
            let state = VmState {
                keys: &mut self.keys,
                cache: &mut self.cache,
                store: &mut self.store,
                budget: &mut self.budget,
            };
            on_request_headers(config, request, state, NOW * 1000, true)
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
            store: &mut vm.store,
            budget: &mut vm.budget,
        };
        assert_eq!(
            refused(on_request_headers(&c, &r, state, (NOW + 71) * 1000, true)),
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
        assert_eq!(
            vm.judge(&c, &r),
            Verdict::WaitForKeys {
                provider: 0,
                route: 0
            }
        );
        let state = VmState {
            keys: &mut vm.keys,
            cache: &mut vm.cache,
            store: &mut vm.store,
            budget: &mut vm.budget,
        };
        assert_eq!(
            refused(on_request_headers(&c, &r, state, NOW * 1000, false)),
            Reason::KeysUnavailable
        );
        v["mode"] = json!("monitor");
        let c = Config::compile(v.to_string().as_bytes()).unwrap();
        let Verdict::Allow(f) = vm.judge(&c, &r) else {
            panic!()
        };
        assert_eq!(f.monitored, Some(Reason::KeysUnavailable));
    }

    fn header<'r>(refusal: &'r Refusal, name: &str) -> &'r str {
        refusal
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    #[test]
    fn path_spellings_are_refused_before_routing() {
        let c = config(json!({}));
        let mut vm = Vm::new(&c);
        for path in [
            "/v1/accounts/../accounts/1",
            "/v1/accounts/1;x",
            "/v1/accounts/a%2Fb",
        ] {
            assert_eq!(
                refused(vm.judge(&c, &request(path, &[]))),
                Reason::PathInvalid,
                "{path}"
            );
        }
    }

    #[test]
    fn api_keys_where_routes_accept_them() {
        let c = config(json!({}));
        let mut vm = Vm::new(&c);
        let Verdict::Allow(forward) =
            vm.judge(&c, &request("/v1/batch", &[("x-api-key", "batch-secret")]))
        else {
            panic!()
        };
        assert_eq!(forward.remove, ["x-api-key"]);
        assert_eq!(
            forward.set,
            [("x-auth-api-key-id".to_string(), "k1".to_string())]
        );
        assert_eq!(
            refused(vm.judge(&c, &request("/v1/batch", &[("x-api-key", "guess")]))),
            Reason::ApiKeyInvalid
        );
        // A JWT-only route does not look at API keys at all.
        assert_eq!(
            refused(vm.judge(
                &c,
                &request("/v1/accounts/1", &[("x-api-key", "batch-secret")])
            )),
            Reason::TokenMissing
        );
        let bearer = format!("Bearer {}", token(claims()));
        let both = request(
            "/v1/batch",
            &[("x-api-key", "batch-secret"), ("authorization", &bearer)],
        );
        assert_eq!(refused(vm.judge(&c, &both)), Reason::TokenMultiple);
    }

    fn pay(vm: &mut Vm, c: &Config, claims: serde_json::Value, customer: &str) -> Verdict {
        let bearer = format!("Bearer {}", token(claims));
        let path = format!("/v1/customers/{customer}/payments");
        vm.judge(
            c,
            &request(
                &path,
                &[
                    (":method", "POST"),
                    ("authorization", &bearer),
                    ("content-type", "application/json; charset=utf-8"),
                ],
            ),
        )
    }

    #[test]
    fn body_rules_hold_the_request_for_the_body_phase() {
        let c = config(json!({}));
        let mut vm = Vm::new(&c);
        assert_eq!(
            refused(pay(&mut vm, &c, claims(), "bob")),
            Reason::ObjectAccessDenied
        );
        let Verdict::ReadBody { pending, .. } = pay(&mut vm, &c, claims(), "alice") else {
            panic!()
        };
        assert!(matches!(
            on_request_body(&c, &pending, br#"{"amount": "999.99"}"#, NOW),
            Verdict::Allow(_)
        ));
        let Verdict::Refuse(r) = on_request_body(&c, &pending, br#"{"amount": 1000.01}"#, NOW)
        else {
            panic!()
        };
        assert_eq!((r.reason, r.status), (Reason::StepUpRequired, 401));
        assert!(header(&r, "www-authenticate").contains("error=\"insufficient_user_authentication\", error_description=\"A stronger or more recent authentication is required\", acr_values=\"gold\""));
        assert_eq!(
            refused(on_request_body(
                &c,
                &pending,
                br#"{"amount": 1, "amount": 2}"#,
                NOW
            )),
            Reason::BodyMalformed
        );
        assert_eq!(
            refused(on_request_body(&c, &pending, &[b' '; 300], NOW)),
            Reason::BodyTooLarge
        );
        let mut wrong_type = pending.clone();
        wrong_type.content_type = Some("text/plain".into());
        assert_eq!(
            refused(on_request_body(&c, &wrong_type, b"{}", NOW)),
            Reason::ContentTypeUnsupported
        );
        let mut strong = claims();
        strong["amr"] = json!(["pwd", "mfa"]);
        strong["acr"] = json!("gold");
        let Verdict::ReadBody { pending, .. } = pay(&mut vm, &c, strong, "alice") else {
            panic!()
        };
        assert!(matches!(
            on_request_body(&c, &pending, br#"{"amount": 5000}"#, NOW),
            Verdict::Allow(_)
        ));
    }

    #[test]
    fn route_monitor_mode_and_json_media_types() {
        let c = config(json!({}));
        let mut vm = Vm::new(&c);
        let Verdict::Allow(forward) = vm.judge(&c, &request("/v1/shadow", &[])) else {
            panic!()
        };
        assert_eq!(forward.monitored, Some(Reason::TokenMissing));
        for good in [
            "application/json",
            "Application/JSON; charset=UTF-8",
            "application/merge-patch+json",
        ] {
            assert!(is_json_media_type(good), "{good}");
        }
        for bad in [
            "text/json",
            "application/jsonx",
            "json",
            "",
            "application/x-www-form-urlencoded",
        ] {
            assert!(!is_json_media_type(bad), "{bad}");
        }
    }

    #[test]
    fn rate_limits_refuse_with_headers_and_lockout_engages() {
        let c = config(json!({
            "rate_limits": {"slots": 64, "lockout": {"failures": 2, "window_seconds": 60, "lock_seconds": 30},
                            "global": [{"name": "per-client", "key": ["client", "address"], "requests": 2, "per_seconds": 60}]}
        }));
        let mut vm = Vm::new(&c);
        c.rate_limits.buckets.create_slots(&mut vm.store);
        c.rate_limits.lockouts.create_slots(&mut vm.store);
        let mut claims = claims();
        claims["client_id"] = json!("acme");
        let bearer = format!("Bearer {}", token(claims));
        let from = |addr: &str| {
            RequestView::new(vec![
                (":method".into(), "GET".into()),
                (":path".into(), "/v1/accounts/1".into()),
                ("authorization".into(), bearer.clone()),
            ])
            .with_source_address(addr)
        };
        assert!(matches!(
            vm.judge(&c, &from("10.0.0.1:1")),
            Verdict::Allow(_)
        ));
        assert!(matches!(
            vm.judge(&c, &from("10.0.0.1:2")),
            Verdict::Allow(_)
        ));
        let Verdict::Refuse(r) = vm.judge(&c, &from("10.0.0.1:3")) else {
            panic!()
        };
        assert_eq!((r.reason, r.status), (Reason::RateLimited, 429));
        assert_eq!(header(&r, "retry-after"), "30");
        assert_eq!(header(&r, "ratelimit-policy"), "\"per-client\";q=2;w=60");
        assert!(header(&r, "ratelimit").starts_with("\"per-client\";r=0;t="));
        // Another address is another bucket (the key combines client and address).
        assert!(matches!(
            vm.judge(&c, &from("10.0.0.2:1")),
            Verdict::Allow(_)
        ));

        let bad = |addr: &str| {
            RequestView::new(vec![
                (":method".into(), "GET".into()),
                (":path".into(), "/v1/accounts/1".into()),
                ("authorization".into(), "Bearer a.b.c".into()),
            ])
            .with_source_address(addr)
        };
        let Verdict::Refuse(first) = vm.judge(&c, &bad("10.9.9.9:1")) else {
            panic!()
        };
        assert!(!first.locked_out);
        let Verdict::Refuse(second) = vm.judge(&c, &bad("10.9.9.9:1")) else {
            panic!()
        };
        assert!(second.locked_out);
        let Verdict::Refuse(locked) = vm.judge(&c, &from("10.9.9.9:1")) else {
            panic!()
        };
        assert_eq!(
            (locked.reason, header(&locked, "retry-after")),
            (Reason::AuthLockedOut, "30")
        );
    }

    #[test]
    fn refusals_name_their_route_for_the_audit_record() {
        let c = config(json!({}));
        let mut vm = Vm::new(&c);
        let Verdict::Refuse(r) = vm.judge(&c, &request("/v1/accounts/1", &[])) else {
            panic!()
        };
        assert_eq!(r.route_id.as_deref(), Some("accounts"));
        let Verdict::Refuse(r) = vm.judge(&c, &request("/nowhere", &[])) else {
            panic!()
        };
        assert_eq!(r.route_id, None);
    }

    #[test]
    fn response_plan_carries_the_callers_unmasking_scopes() {
        let c = config(json!({"response": {
            "rules": [{"pointer": "/iban", "action": "mask", "unmask_scope": "accounts:read"},
                      {"pointer": "/x", "action": "remove", "unmask_scope": "pii:read"}]}}));
        let mut vm = Vm::new(&c);
        let bearer = format!("Bearer {}", token(claims()));
        let Verdict::Allow(forward) = vm.judge(
            &c,
            &request(
                "/v1/accounts/1",
                &[("authorization", &bearer), ("x-request-id", "r-1")],
            ),
        ) else {
            panic!()
        };
        let plan = forward.response.unwrap();
        assert_eq!(
            (plan.unmasked, plan.authenticated, plan.head),
            (0b01, true, false)
        );
        assert_eq!(plan.request_id.as_deref(), Some("r-1"));
        assert!(forward
            .set
            .contains(&("accept-encoding".to_string(), "identity".to_string())));
        // Public routes get the global policy without scopes; no policy, no plan.
        let Verdict::Allow(forward) = vm.judge(&c, &request("/healthz", &[(":method", "HEAD")]))
        else {
            panic!()
        };
        let plan = forward.response.unwrap();
        assert_eq!(
            (plan.unmasked, plan.authenticated, plan.head),
            (0, false, true)
        );
        let c = config(json!({}));
        let Verdict::Allow(forward) = Vm::new(&c).judge(&c, &request("/healthz", &[])) else {
            panic!()
        };
        assert!(forward.response.is_none() && forward.set.is_empty());
    }

    #[test]
    fn verification_budget_spares_cached_tokens_and_cheap_refusals() {
        let c = config(json!({"verification_budget": {"requests": 2, "per_seconds": 60}}));
        let mut vm = Vm::new(&c);
        let get = |t: &str| {
            request(
                "/v1/accounts/1",
                &[("authorization", &format!("Bearer {t}"))],
            )
        };
        let fresh = |n: u64| {
            let mut claims = claims();
            claims["jti"] = json!(n);
            token(claims)
        };
        let cached = fresh(0);
        assert!(matches!(vm.judge(&c, &get(&cached)), Verdict::Allow(_)));
        assert!(matches!(vm.judge(&c, &get(&fresh(1))), Verdict::Allow(_)));
        let Verdict::Refuse(r) = vm.judge(&c, &get(&fresh(2))) else {
            panic!()
        };
        assert_eq!(
            (r.reason, r.status, header(&r, "retry-after")),
            (Reason::VerificationOverloaded, 503, "30")
        );
        // A cached token never touches the budget; cheap checks refuse before it.
        assert!(matches!(vm.judge(&c, &get(&cached)), Verdict::Allow(_)));
        let mut expired = claims();
        expired["exp"] = json!(NOW - 1000);
        assert_eq!(
            refused(vm.judge(&c, &get(&token(expired)))),
            Reason::TokenExpired
        );
    }
}
