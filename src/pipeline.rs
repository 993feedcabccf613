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

use crate::ambiguity::{self, MethodOverride};
use crate::authn::budget::VerificationBudget;
use crate::authn::cache::TokenCache;
use crate::authn::caller::Caller;
use crate::authn::keys::ProviderKeys;
use crate::authn::{extract, Authenticator, AuthnError, AuthnState};
use crate::authz::{check_body_copies, AuthPolicy, Principal};
use crate::config::Config;
use crate::decision::{Forward, PendingBody, Refused, Verdict};
use crate::incident::CredentialIds;
use crate::mode::Mode;
use crate::problem::{Refusal, RefusalContext};
use crate::ratelimit::concurrency::{self, ConcurrencyLimit};
use crate::ratelimit::{self, store::CounterStore, Identity, Limit, LimitDecision};
use crate::reason::{Class, Reason};
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
    /// The authenticated caller, once known (audit record).
    caller: Option<&'a Caller>,
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
                caller: self.caller.cloned(),
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
        Verdict::Refuse(Refused {
            refusal: Refusal::new(reason, &ctx),
            locked_out: false,
            route_id: self.route_id.map(str::to_owned),
            caller: self.caller.cloned(),
        })
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
        caller: None,
    };
    let mut forward = Forward::default();
    // Client-supplied copies of the headers finguard vouches for are never forwarded, whatever
    // the outcome below, in any spelling a backend reads as them (`x_auth_subject`); neither
    // is an API key (a secret the upstream has no use for).
    for name in config.protected_headers.present_in(request) {
        if !forward.remove.iter().any(|n| n == name) {
            forward.remove.push(name.to_owned());
        }
    }

    let path = request.path();
    if let Err(reason) = routes::check_path(path) {
        return judge.refuse(reason, judge.mode(None, None), forward);
    }
    // The method the backend will execute: an override, if the request carries one.
    let (method, overridden) = match ambiguity::method_override(request) {
        MethodOverride::None => (request.method(), false),
        MethodOverride::To(method) => (method, true),
        MethodOverride::Ambiguous => {
            return judge.refuse(Reason::MethodOverrideRefused, Mode::Enforce, forward);
        }
    };
    let host = request.header(":authority").unwrap_or("");
    let matched = match config.routes.lookup(host, method, path) {
        Ok(matched) if overridden && !overrides_allowed(matched.route, request) => {
            let judge = Judge {
                route_id: Some(&matched.route.id),
                ..judge
            };
            return judge.refuse(Reason::MethodOverrideRefused, Mode::Enforce, forward);
        }
        Ok(matched) => matched,
        Err(_) if overridden => {
            return judge.refuse(Reason::MethodOverrideRefused, Mode::Enforce, forward);
        }
        Err(_) if config.lockdown.refuses(method, None) => {
            return refuse_lockdown(&judge, config, forward);
        }
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
    forward.route = Some(matched.index);
    let judge = Judge {
        route_id: Some(&route.id),
        ..judge
    };
    if config.lockdown.refuses(method, Some(&route.id)) {
        return refuse_lockdown(&judge, config, forward);
    }
    forward.response = response::plan(route.response.as_ref(), request);
    if forward.response.as_ref().is_some_and(|p| p.rewrites_body()) {
        // Ask for what can be redacted: a compressed response could not be rewritten, a
        // part of a document escapes pointer rules, and a format finguard cannot parse would
        // be refused.
        forward
            .set
            .push(("accept-encoding".into(), "identity".into()));
        let accept = response::redactable_accept(request.header("accept"));
        forward.set.push(("accept".into(), accept));
        for name in ["range", "if-range"] {
            if request.has_header(name) {
                forward.remove.push(name.into());
            }
        }
    }
    let limiting = &config.rate_limits;
    let address = request.client_address(limiting.trusted_forwarded_hops);
    let Some(policy) = &route.auth else {
        let mode = judge.mode(Some(route), None);
        let (forward, suspicious) =
            match check_params(&judge, route, request, &matched.params, mode, forward) {
                Ok(checked) => checked,
                Err(verdict) => return *verdict,
            };
        let who = Identity {
            address,
            route: &route.id,
            ..Identity::default()
        };
        let verdict = apply_limits(&judge, config, route, &who, state.store, now_us, forward);
        let Verdict::Allow(mut forward) = verdict else {
            return verdict;
        };
        // Held for the body unless monitor mode already let the request through; a monitored
        // negative-model match in the query is logged now and does not skip the body.
        let hold = route.request.reads_body() && forward.monitored.is_none();
        forward.monitored = forward.monitored.or(suspicious);
        if hold {
            let pending = PendingBody {
                route: matched.index,
                principal: None,
                content_type: request.header("content-type").map(str::to_owned),
                request_id: request.request_id().map(str::to_owned),
                reads_clock: false,
                bound_params: Vec::new(),
                form_override_only: false,
            };
            return Verdict::ReadBody { forward, pending };
        }
        return hold_forms(request, matched.index, None, forward);
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
        client: address,
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
                if reason.class() == Class::CredentialInvalid
                    && lockout.record_failure(state.store, &limiting.lockouts, address, now_us)
                {
                    if let Verdict::Refuse(refused) = &mut verdict {
                        refused.locked_out = true;
                    }
                }
            }
            return verdict;
        }
    };
    let judge = Judge {
        caller: Some(&caller),
        ..judge
    };
    // The verified credential must be the only one: a backend may act on any other.
    let api_key_header = policy.api_key.then_some(config.api_keys.header.as_str());
    if config.credential_places.count(api_key_header, request) > 1 {
        return judge.refuse(
            Reason::CredentialUnverified,
            judge.mode(Some(route), None),
            forward,
        );
    }
    let Some((principal, provider)) = principal_of(config, &caller) else {
        return judge.refuse(
            Reason::ApiKeyInvalid,
            judge.mode(Some(route), None),
            forward,
        );
    };
    let who = identity(config, &caller, address, &route.id);
    // Revocation is an incident lever: enforced whatever the mode, cache hits included.
    if let Err(reason) = config.revoked.check(credential_ids(&who, &caller)) {
        return judge.refuse(reason, Mode::Enforce, forward);
    }
    if let Some(plan) = &mut forward.response {
        plan.grant(principal.scopes());
    }
    let mode = judge.mode(Some(route), provider);
    let params = |name: &str| matched.params.get(name);
    if let Err(reason) = policy
        .check_headers(principal, params, now)
        .and_then(|()| policy.check_query_copies(params, request.query()))
    {
        return refuse_unauthorized(&judge, policy, reason, mode, forward);
    }
    let (forward, suspicious) =
        match check_params(&judge, route, request, &matched.params, mode, forward) {
            Ok(checked) => checked,
            Err(verdict) => return *verdict,
        };

    let verdict = apply_limits(&judge, config, route, &who, state.store, now_us, forward);
    let Verdict::Allow(mut forward) = verdict else {
        return verdict;
    };
    if forward.monitored.is_some() {
        return hold_forms(request, matched.index, Some(caller), forward);
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
    forward.caller = Some(caller.clone());
    forward.monitored = forward.monitored.or(suspicious);
    if policy.needs_body() || route.request.reads_body() {
        let pending = PendingBody {
            route: matched.index,
            principal: Some(caller),
            content_type: request.header("content-type").map(str::to_owned),
            request_id: request.request_id().map(str::to_owned),
            reads_clock: policy.needs_body(),
            bound_params: policy.bound_params(params),
            form_override_only: false,
        };
        return Verdict::ReadBody { forward, pending };
    }
    hold_forms(request, matched.index, Some(caller), forward)
}

/// A `POST` whose body is a form, on a route that does not judge its body, is held all the
/// same: Rack, Spring and Symfony take `_method` from a form body (see [`ambiguity`]). Routes
/// that judge their body accept JSON only, so they refuse forms (415) anyway.
fn hold_forms(
    request: &RequestView,
    route: usize,
    caller: Option<Caller>,
    forward: Forward,
) -> Verdict {
    let content_type = request.header("content-type");
    if request.method() != "POST" || !ambiguity::is_form(content_type) {
        return Verdict::Allow(forward);
    }
    let pending = PendingBody {
        route,
        principal: caller,
        content_type: content_type.map(str::to_owned),
        request_id: request.request_id().map(str::to_owned),
        reads_clock: false,
        bound_params: Vec::new(),
        form_override_only: true,
    };
    Verdict::ReadBody { forward, pending }
}

/// Path, query and header parameters against the route's declarations (headers phase). `Ok`
/// gives the forward back with, in negative-model monitor mode, the reason to log once the
/// request is otherwise allowed.
fn check_params(
    judge: &Judge<'_>,
    route: &RoutePolicy,
    request: &RequestView,
    params: &matchit::Params<'_, '_>,
    mode: Mode,
    forward: Forward,
) -> Result<(Forward, Option<Reason>), Box<Verdict>> {
    match route.request.check_params(request, params.iter()) {
        Ok(suspicious) => Ok((forward, suspicious.map(|_| Reason::InputSuspicious))),
        Err(invalid) => {
            let ctx = RefusalContext {
                violations: &invalid.violations,
                ..Default::default()
            };
            Err(Box::new(judge.refuse_with(
                invalid.reason,
                mode,
                forward,
                ctx,
            )))
        }
    }
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

/// An override is authorized only on a route that allows it, and only on a POST: the one method
/// every framework overrides (Rack, Symfony and Express ignore overrides on other methods, so
/// the backend would execute another method than the one authorized).
fn overrides_allowed(route: &RoutePolicy, request: &RequestView) -> bool {
    route.allow_method_override && request.method() == "POST"
}

/// The lockdown lever: always enforced, with `Retry-After`.
fn refuse_lockdown(judge: &Judge<'_>, config: &Config, forward: Forward) -> Verdict {
    let seconds = config.lockdown.retry_after_seconds;
    judge.refuse_after(Reason::Lockdown, Mode::Enforce, forward, seconds)
}

/// What the revocation lists can name a caller by.
fn credential_ids<'a>(who: &Identity<'a>, caller: &'a Caller) -> CredentialIds<'a> {
    let jti = match caller {
        Caller::Token(token) => token.claims.get("jti").and_then(serde_json::Value::as_str),
        Caller::ApiKey(_) => None,
    };
    CredentialIds {
        jti,
        subject: who.subject,
        client: who.client,
        api_key: who.api_key,
    }
}

/// A presented credential that did not verify: what a guessing attacker produces.
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
        caller: pending.principal.as_ref(),
    };
    let Some(route) = config.routes.routes().get(pending.route) else {
        return judge.refuse(Reason::PolicyUnavailable, Mode::Enforce, Forward::default());
    };
    let judge = Judge {
        route_id: Some(&route.id),
        ..judge
    };
    if pending.form_override_only {
        if ambiguity::form_overrides_method(body) {
            return judge.refuse(
                Reason::MethodOverrideRefused,
                Mode::Enforce,
                Forward::default(),
            );
        }
        return Verdict::Allow(Forward::default());
    }
    let principal = match &pending.principal {
        None => None,
        Some(caller) => match principal_of(config, caller) {
            Some(found) => Some(found),
            None => return judge.refuse(Reason::ApiKeyInvalid, Mode::Enforce, Forward::default()),
        },
    };
    let mode = judge.mode(Some(route), principal.and_then(|(_, provider)| provider));
    // Size, content type, structure limits, strict JSON, schema, negative model: parsed once.
    let accepted = match route
        .request
        .judge_body(pending.content_type.as_deref(), body)
    {
        Ok(accepted) => accepted,
        Err(invalid) => {
            let ctx = RefusalContext {
                violations: &invalid.violations,
                ..Default::default()
            };
            return judge.refuse_with(invalid.reason, mode, Forward::default(), ctx);
        }
    };
    let forward = Forward {
        monitored: accepted
            .suspicious
            .as_ref()
            .map(|_| Reason::InputSuspicious),
        ..Forward::default()
    };
    if let (Some(policy), Some((principal, _))) = (&route.auth, principal) {
        // The body as a `Value` is built only for a route whose rules read it.
        let raw: &[u8] = if body.is_empty() { b"null" } else { body };
        if !pending.bound_params.is_empty() {
            if let Err(reason) = check_body_copies(&pending.bound_params, &accepted.document(), raw)
            {
                return refuse_unauthorized(&judge, policy, reason, mode, forward);
            }
        }
        if policy.needs_body() {
            if let Err(reason) = policy.check_body(principal, &accepted.document(), raw, now) {
                return refuse_unauthorized(&judge, policy, reason, mode, forward);
            }
        }
    }
    Verdict::Allow(forward)
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
        caller: pending.principal.as_ref(),
    };
    let provider = match &pending.principal {
        Some(Caller::Token(token)) => Some(token.provider),
        Some(Caller::ApiKey(_)) | None => None,
    };
    judge.refuse(reason, judge.mode(route, provider), Forward::default())
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
                budget: VerificationBudget::new(&config.verification_budget),
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
            Verdict::Refuse(Refused { refusal: r, .. }) => r.reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn lockdown_refuses_all_but_the_allowlist_whatever_the_mode() {
        let c = config(
            json!({"lockdown": {"enabled": true, "allow_routes": ["health"],
                                           "retry_after_seconds": 30}}),
        );
        let mut vm = Vm::new(&c);
        let bearer = format!("Bearer {}", token(claims()));
        let Verdict::Refuse(Refused {
            refusal: r,
            route_id,
            ..
        }) = vm.judge(
            &c,
            &request("/v1/accounts/1", &[("authorization", &bearer)]),
        )
        else {
            panic!()
        };
        assert_eq!((r.reason, r.status), (Reason::Lockdown, 503));
        assert!(r.headers.contains(&("retry-after", "30".to_string())));
        assert_eq!(route_id.as_deref(), Some("accounts"));
        // Unmatched paths too (no route enumeration during a lockdown); monitor routes too.
        assert_eq!(
            refused(vm.judge(&c, &request("/nope", &[]))),
            Reason::Lockdown
        );
        assert_eq!(
            refused(vm.judge(&c, &request("/v1/shadow", &[]))),
            Reason::Lockdown
        );
        assert!(matches!(
            vm.judge(&c, &request("/healthz", &[])),
            Verdict::Allow(_)
        ));
        // A read-only lockdown.
        let c = config(json!({"lockdown": {"enabled": true, "allow_methods": ["GET"]}}));
        assert!(matches!(
            vm.judge(
                &c,
                &request("/v1/accounts/1", &[("authorization", &bearer)])
            ),
            Verdict::Allow(_)
        ));
        let post = request(
            "/v1/customers/alice/payments",
            &[(":method", "POST"), ("authorization", &bearer)],
        );
        assert_eq!(refused(vm.judge(&c, &post)), Reason::Lockdown);
    }

    #[test]
    fn revoked_credentials_are_refused_even_from_the_cache() {
        let mut with_jti = claims();
        with_jti["jti"] = json!("t-1");
        let bearer = format!("Bearer {}", token(with_jti));
        let r = request("/v1/accounts/1", &[("authorization", &bearer)]);
        let open = config(json!({}));
        let mut vm = Vm::new(&open);
        let Verdict::Allow(forward) = vm.judge(&open, &r) else {
            panic!()
        };
        assert!(matches!(forward.caller, Some(Caller::Token(_))));
        assert_eq!(vm.cache.len(), 1);
        for revoked in [json!({"jti": ["t-1"]}), json!({"subjects": ["alice"]})] {
            let c = config(json!({"revoked": revoked}));
            let Verdict::Refuse(Refused {
                refusal, caller, ..
            }) = vm.judge(&c, &r)
            else {
                panic!()
            };
            assert_eq!(
                (refusal.reason, refusal.status),
                (Reason::CredentialRevoked, 401)
            );
            assert!(caller.is_some(), "the audit record names the caller");
        }
        // A revoked API key looks exactly like an unknown one.
        let c = config(json!({"revoked": {"api_keys": ["k1"]}}));
        let keyed = request("/v1/batch", &[("x-api-key", "batch-secret")]);
        assert_eq!(refused(vm.judge(&c, &keyed)), Reason::ApiKeyInvalid);
        assert!(matches!(vm.judge(&open, &keyed), Verdict::Allow(_)));
        // Revocation is enforced on monitor routes too.
        let c = config(json!({"mode": "monitor", "revoked": {"subjects": ["alice"]}}));
        assert_eq!(refused(vm.judge(&c, &r)), Reason::CredentialRevoked);
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
        let Verdict::Refuse(Refused { refusal: r, .. }) = v else {
            panic!()
        };
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
        // An amount-conditional step-up compares times: the body phase reads the clock again.
        assert!(pending.reads_clock);
        assert!(matches!(
            on_request_body(&c, &pending, br#"{"amount": "999.99"}"#, NOW),
            Verdict::Allow(_)
        ));
        let Verdict::Refuse(Refused { refusal: r, .. }) =
            on_request_body(&c, &pending, br#"{"amount": 1000.01}"#, NOW)
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
        let Verdict::Refuse(Refused { refusal: r, .. }) = vm.judge(&c, &from("10.0.0.1:3")) else {
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
        let Verdict::Refuse(Refused {
            refusal: locked, ..
        }) = vm.judge(&c, &from("10.9.9.9:1"))
        else {
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
        let c = config(
            json!({"verification_budget": {"requests": 2, "per_seconds": 60, "proven_reserve_percent": 0}}),
        );
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
        let Verdict::Refuse(Refused { refusal: r, .. }) = vm.judge(&c, &get(&fresh(2))) else {
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

    fn validated_config(mode: &str) -> Config {
        config(json!({"routes": [
            {"id": "pay", "match": {"methods": ["POST"], "path": "/v1/payees/{payee_id}/payments"},
             "public": true, "mode": mode,
             "request": {
                "max_body_bytes": 512,
                "schema": {"type": "object", "required": ["amount", "iban"], "additionalProperties": false,
                           "properties": {"amount": {"type": "string", "format": "decimal-amount"},
                                          "iban": {"type": "string", "format": "iban"},
                                          "memo": {"type": "string"}}},
                "path": {"properties": {"payee_id": {"pattern": "^p-[0-9]{1,6}$"}}},
                "query": {"properties": {"dry_run": {"enum": ["true", "false"]}}, "additionalProperties": false},
                "headers": {"properties": {"idempotency-key": {"format": "uuid"}}, "required": ["idempotency-key"]},
                "negative": {"detectors": ["sql_injection"]}}},
            {"id": "ping", "match": {"methods": ["POST"], "path": "/v1/ping"}, "public": true,
             "request": {"body": "forbidden"}}
        ]}))
    }

    fn post(path: &str, key: &str) -> RequestView {
        request(
            path,
            &[
                (":method", "POST"),
                ("content-type", "application/json"),
                ("idempotency-key", key),
            ],
        )
    }

    const KEY: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

    fn violations(verdict: Verdict) -> (Reason, u32, Vec<(String, String)>, String) {
        let Verdict::Refuse(Refused { refusal: r, .. }) = verdict else {
            panic!("expected a refusal, got {verdict:?}")
        };
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let list = body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        (
                            e["pointer"].as_str().unwrap().to_string(),
                            e["keyword"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        (r.reason, r.status, list, r.body)
    }

    #[test]
    fn validated_public_route_checks_parameters_then_holds_for_the_body() {
        let c = validated_config("enforce");
        let mut vm = Vm::new(&c);
        let Verdict::ReadBody { pending, .. } =
            vm.judge(&c, &post("/v1/payees/p-1/payments?dry_run=true", KEY))
        else {
            panic!()
        };
        assert_eq!(pending.principal, None);
        let good = br#"{"amount": "10.50", "iban": "DE89370400440532013000", "memo": "O'Brien"}"#;
        assert_eq!(
            on_request_body(&c, &pending, good, NOW),
            Verdict::Allow(Forward::default())
        );
        let cases: [(&str, &str, (&str, &str)); 4] = [
            (
                "/v1/payees/p-1/payments?dry_run=maybe",
                KEY,
                ("/query/dry_run", "enum"),
            ),
            (
                "/v1/payees/p-1/payments?user%3Cx%3E=1",
                KEY,
                ("/query", "additionalProperties"),
            ),
            (
                "/v1/payees/x-1/payments",
                KEY,
                ("/path/payee_id", "pattern"),
            ),
            (
                "/v1/payees/p-1/payments",
                "not-a-uuid",
                ("/headers/idempotency-key", "format"),
            ),
        ];
        for (path, key, expected) in cases {
            let (reason, status, errors, body) = violations(vm.judge(&c, &post(path, key)));
            assert_eq!((reason, status), (Reason::ParameterInvalid, 400), "{path}");
            assert_eq!(
                errors,
                [(expected.0.to_string(), expected.1.to_string())],
                "{path}"
            );
            assert!(
                !body.contains("maybe") && !body.contains("not-a-uuid") && !body.contains("x-1")
            );
            assert!(!body.contains("user"), "{body}");
        }
        let no_key = request("/v1/payees/p-1/payments", &[(":method", "POST")]);
        let (reason, _, errors, _) = violations(vm.judge(&c, &no_key));
        assert_eq!(reason, Reason::ParameterInvalid);
        assert_eq!(
            errors,
            [(
                "/headers/idempotency-key".to_string(),
                "required".to_string()
            )]
        );
        let (reason, _, errors, _) = violations(vm.judge(
            &c,
            &post(
                "/v1/payees/p-1/payments?dry_run=1%27%20or%20%271%27%3D%271",
                KEY,
            ),
        ));
        assert_eq!(reason, Reason::ParameterInvalid, "{errors:?}");
    }

    #[test]
    fn body_refusals_follow_the_documented_order_and_statuses() {
        let c = validated_config("enforce");
        let mut vm = Vm::new(&c);
        let Verdict::ReadBody { pending, .. } = vm.judge(&c, &post("/v1/payees/p-1/payments", KEY))
        else {
            panic!()
        };
        let iban = "DE89370400440532013000";
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let cases: Vec<(Vec<u8>, Reason, u32, Vec<(&str, &str)>)> = vec![
            (b"".to_vec(), Reason::BodyRequired, 400, vec![]),
            (vec![b' '; 600], Reason::BodyTooLarge, 413, vec![]),
            (b"{\"amount\": \"1\xff\"}".to_vec(), Reason::BodyMalformed, 400, vec![("", "utf-8")]),
            // Not UTF-8 wins over every other fault of the same body (the check runs on failure).
            (b"{\"amount\": \xff}".to_vec(), Reason::BodyMalformed, 400, vec![("", "utf-8")]),
            (b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\xff]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]".to_vec(),
             Reason::BodyMalformed, 400, vec![("", "utf-8")]),
            (b"{\"amount\": \"\xff".to_vec(), Reason::BodyMalformed, 400, vec![("", "utf-8")]),
            (deep.clone().into_bytes(), Reason::BodyTooLarge, 413, vec![]),
            (b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]".to_vec(),
             Reason::JsonLimitExceeded, 400, vec![("", "max_depth")]),
            (format!(r#"{{"amount": "1", "amount": "2", "iban": "{iban}"}}"#).into_bytes(), Reason::BodyMalformed, 400, vec![]),
            (b"{\"amount\": ".to_vec(), Reason::BodyMalformed, 400, vec![]),
            (format!(r#"{{"amount": 10, "iban": "{iban}"}}"#).into_bytes(), Reason::SchemaViolation, 422, vec![("/amount", "type")]),
            (format!(r#"{{"amount": "10.005", "iban": "{iban}"}}"#).into_bytes(), Reason::SchemaViolation, 422, vec![("/amount", "format")]),
            (br#"{"amount": "10", "iban": "DE00370400440532013000"}"#.to_vec(), Reason::SchemaViolation, 422, vec![("/iban", "format")]),
            (br#"{"amount": "10"}"#.to_vec(), Reason::SchemaViolation, 422, vec![("/iban", "required")]),
            (format!(r#"{{"amount": "1", "iban": "{iban}", "is_admin": true}}"#).into_bytes(), Reason::SchemaViolation, 422, vec![("", "additionalProperties")]),
            (format!(r#"{{"amount": "1", "iban": "{iban}", "memo": "x' OR '1'='1"}}"#).into_bytes(), Reason::InputSuspicious, 400, vec![("/memo", "sql-injection")]),
        ];
        for (body, reason, status, expected) in cases {
            let (got, got_status, errors, text) =
                violations(on_request_body(&c, &pending, &body, NOW));
            let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
            assert_eq!((got, got_status), (reason, status), "{shown}");
            let expected: Vec<(String, String)> = expected
                .iter()
                .map(|(p, k)| (p.to_string(), k.to_string()))
                .collect();
            assert_eq!(errors, expected, "{shown}");
            for echo in ["10.005", "DE00", "is_admin", "OR", "\\u00ff"] {
                assert!(!text.contains(echo), "{text}");
            }
        }
        let mut wrong = pending.clone();
        for content_type in ["text/plain", "application/json; charset=latin1"] {
            wrong.content_type = Some(content_type.into());
            assert_eq!(
                refused(on_request_body(&c, &wrong, br#"{}"#, NOW)),
                Reason::ContentTypeUnsupported
            );
        }
        let ping = request("/v1/ping", &[(":method", "POST")]);
        let Verdict::ReadBody { pending, .. } = vm.judge(&c, &ping) else {
            panic!()
        };
        // Validation alone compares no times: the headers phase's clock reading stands.
        assert!(!pending.reads_clock);
        assert!(matches!(
            on_request_body(&c, &pending, b"", NOW),
            Verdict::Allow(_)
        ));
        assert_eq!(
            refused(on_request_body(&c, &pending, b"{}", NOW)),
            Reason::BodyForbidden
        );
    }

    #[test]
    fn validation_in_monitor_mode_logs_and_forwards() {
        let c = validated_config("monitor");
        let mut vm = Vm::new(&c);
        let Verdict::Allow(forward) = vm.judge(&c, &post("/v1/payees/bad/payments", KEY)) else {
            panic!()
        };
        assert_eq!(forward.monitored, Some(Reason::ParameterInvalid));
        let Verdict::ReadBody { pending, .. } = vm.judge(&c, &post("/v1/payees/p-1/payments", KEY))
        else {
            panic!()
        };
        let Verdict::Allow(forward) = on_request_body(&c, &pending, br#"{"amount": 1}"#, NOW)
        else {
            panic!()
        };
        assert_eq!(forward.monitored, Some(Reason::SchemaViolation));
    }

    #[test]
    fn negative_model_in_monitor_mode_forwards_and_marks_the_log_line() {
        let mut v = json!({"routes": [{"id": "search", "match": {"methods": ["POST"], "path": "/v1/search"}, "public": true,
            "request": {"negative": {"mode": "monitor", "detectors": ["sql_injection", "path_traversal"]}}}]});
        let c = config(v.take());
        let mut vm = Vm::new(&c);
        let r = request(
            "/v1/search?q=..%2F..%2Fetc",
            &[(":method", "POST"), ("content-type", "application/json")],
        );
        let Verdict::ReadBody { forward, pending } = vm.judge(&c, &r) else {
            panic!()
        };
        assert_eq!(
            forward.monitored,
            Some(Reason::InputSuspicious),
            "query match logged now; the body is still judged"
        );
        let Verdict::Allow(forward) =
            on_request_body(&c, &pending, br#"{"q": "1; drop table x"}"#, NOW)
        else {
            panic!()
        };
        assert_eq!(forward.monitored, Some(Reason::InputSuspicious));
        let r = request("/v1/search?q=..%2F..%2Fetc", &[(":method", "GET")]);
        let c2 = config(
            json!({"routes": [{"id": "search", "match": {"path": "/v1/search"}, "public": true,
            "request": {"negative": {"mode": "monitor", "detectors": ["path_traversal"]}, "body": "optional"}}]}),
        );
        let mut vm2 = Vm::new(&c2);
        assert!(matches!(vm2.judge(&c2, &r), Verdict::ReadBody { .. }));
    }

    #[test]
    fn request_configuration_errors_name_the_field() {
        let route = |request: serde_json::Value| {
            let v = json!({"routes": [{"id": "a", "match": {"path": "/a/{id}"}, "public": true, "request": request}]});
            Config::compile(v.to_string().as_bytes()).unwrap_err().path
        };
        assert_eq!(
            route(json!({"schema": {"type": "nope"}})),
            "routes[0].request.schema"
        );
        assert_eq!(
            route(json!({"schema": {"format": "ibna"}})),
            "routes[0].request.schema"
        );
        assert_eq!(
            route(json!({"schema": {"$ref": "https://example.com/x.json"}})),
            "routes[0].request.schema"
        );
        assert_eq!(
            route(json!({"content_types": ["text/plain"]})),
            "routes[0].request.content_types[0]"
        );
        assert_eq!(
            route(json!({"limits": {"max_depth": 0}})),
            "routes[0].request.limits.max_depth"
        );
        assert_eq!(
            route(json!({"path": {"properties": {"other": {}}}})),
            "routes[0].request.path"
        );
        assert_eq!(
            route(json!({"headers": {"properties": {"X-Key": {}}}})),
            "routes[0].request.headers"
        );
        assert_eq!(
            route(json!({"negative": {"detectors": []}})),
            "routes[0].request.negative"
        );
        assert_eq!(
            route(json!({"body": "forbidden", "schema": {}})),
            "routes[0].request.body"
        );
        assert_eq!(
            route(json!({"max_body_bytes": 0})),
            "routes[0].request.max_body_bytes"
        );
    }
}
