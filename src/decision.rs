//! The outcome of judging a request, and the one table that turns a refusal [`Reason`] into what
//! the client sees: HTTP status, `WWW-Authenticate` challenge (RFC 6750), problem+json body
//! (RFC 9457) and the stable identifiers used by logs and metrics.
//!
//! Every refusal anywhere in finguard is one of these reasons; adding a reason means adding one
//! row to each `match` below, and the compiler points at every place that needs it.

use std::fmt::Write as _;

/// Why a request is refused. Nothing here carries request data: a reason is safe to log and to
/// show to the client as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No configured route matches the path.
    RouteNotFound,
    /// A route matches the path, but not the method.
    MethodNotAllowed,
    /// The route requires a token and none was sent.
    TokenMissing,
    /// More than one token in one request (two headers, or header and cookie).
    TokenMultiple,
    /// A token in the query string while query tokens are not enabled.
    TokenInQuery,
    /// Not three strict base64url segments of strict JSON.
    TokenMalformed,
    /// Larger than `token.max_bytes`.
    TokenTooLarge,
    /// `alg` is not in the provider's allowlist (or is `none`).
    AlgorithmNotAllowed,
    /// A header such as `crit`, `jku`, `x5u`, `jwk` or `x5c` that finguard never honours.
    TokenHeaderForbidden,
    /// `iss` names no configured provider, or one the route does not accept.
    IssuerUnknown,
    /// No key of the provider matches the token's `kid`, algorithm family and use.
    KeyUnknown,
    /// The signature does not verify.
    SignatureInvalid,
    /// `exp` is in the past (beyond the clock skew).
    TokenExpired,
    /// `nbf` is in the future (beyond the clock skew).
    TokenNotYetValid,
    /// `iat` is in the future (beyond the clock skew).
    TokenIssuedInFuture,
    /// `exp - iat` exceeds the provider's `max_lifetime_seconds`.
    TokenLifetimeTooLong,
    /// `aud` contains none of the provider's audiences.
    AudienceInvalid,
    /// `typ` header not in the provider's allowlist.
    TokenTypeInvalid,
    /// A required claim (`exp`, or one the route needs) is absent.
    ClaimMissing,
    /// A claim has the wrong type, or a value that cannot be forwarded safely.
    ClaimInvalid,
    /// The token lacks a scope the route requires.
    ScopeInsufficient,
    /// The provider's keys are not loaded (first fetch pending or failed, or past the grace).
    KeysUnavailable,
    /// finguard has no valid configuration (it was refused at start): fail closed.
    PolicyUnavailable,
    /// No route matches and `unmatched_route_status` is 403.
    RouteForbidden,
    /// A path spelling that could reach a route as another (`..`, `%2F`, `;`, `//`, ...).
    PathInvalid,
    /// A `claims` or `roles` rule of the route does not hold.
    ClaimRequirementUnmet,
    /// An object named in the path or body is not bound to the caller (BOLA). Says nothing about
    /// whether the object exists.
    ObjectAccessDenied,
    /// The operation needs a stronger or more recent authentication (RFC 9470).
    StepUpRequired,
    /// Unknown or disabled API key (not distinguished: no oracle for revoked keys).
    ApiKeyInvalid,
    /// An API-key-only route without the key.
    ApiKeyMissing,
    /// Body over the route's `max_body_bytes` on a route that reads it.
    BodyTooLarge,
    /// A route that reads the body got a content type it does not accept.
    ContentTypeUnsupported,
    /// The body is not strict JSON.
    BodyMalformed,
    /// A rate limit of the route (or a global one) is exhausted.
    RateLimited,
    /// Too many failed authentications from this address: locked out for a while.
    AuthLockedOut,
    /// Too many requests of this client in flight at once.
    ConcurrencyLimited,
    /// The worker's budget of cold signature verifications is spent (a new token must wait).
    VerificationOverloaded,
    /// Request trailers on a request held for its body: its end cannot be judged, so it is
    /// refused rather than released unchecked.
    TrailersUnsupported,
    /// The operation requires a request body and none was sent.
    BodyRequired,
    /// The operation takes no request body and one was sent.
    BodyForbidden,
    /// The JSON body exceeds a structure limit (depth, members, array length, string or number
    /// length): checked before the schema, so hostile shapes cost little.
    JsonLimitExceeded,
    /// The JSON body is well formed but does not match the route's schema.
    SchemaViolation,
    /// A query parameter, header or path parameter does not match the route's declaration.
    ParameterInvalid,
    /// A string value matched an enforced negative-model detector (SQL/command injection, path
    /// traversal).
    InputSuspicious,
    /// A response that must be redacted cannot be (compressed, over the buffer limit, not
    /// parseable): it is replaced rather than passed through unredacted.
    ResponseUnredactable,
    /// An upstream 5xx whose body was replaced by a generic problem (the upstream status is kept).
    UpstreamFailure,
    /// The incident-response lockdown lever refuses this request.
    Lockdown,
    /// The token, its subject or its client is on the revocation list.
    CredentialRevoked,
    /// A method-override header or `_method` parameter on a route that does not allow overrides,
    /// or overrides that disagree or name no method: the backend would execute another method
    /// than the one finguard authorized.
    MethodOverrideRefused,
    /// Beside the credential finguard verified, the request carries another one (another
    /// `Authorization` scheme, a cookie or query `access_token`, ...) that a backend could act on.
    CredentialUnverified,
}

/// What the WWW-Authenticate challenge says, per RFC 6750 section 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    None,
    /// No credentials were sent: a bare challenge.
    Bare,
    InvalidRequest,
    InvalidToken,
    InsufficientScope,
    /// RFC 9470 step-up: `insufficient_user_authentication` with `acr_values` / `max_age`.
    InsufficientUserAuthentication,
    /// API-key credentials: not a registered scheme, named so clients know what is expected.
    ApiKey,
}

impl Reason {
    pub const ALL: [Reason; 50] = [
        Reason::RouteNotFound,
        Reason::MethodNotAllowed,
        Reason::TokenMissing,
        Reason::TokenMultiple,
        Reason::TokenInQuery,
        Reason::TokenMalformed,
        Reason::TokenTooLarge,
        Reason::AlgorithmNotAllowed,
        Reason::TokenHeaderForbidden,
        Reason::IssuerUnknown,
        Reason::KeyUnknown,
        Reason::SignatureInvalid,
        Reason::TokenExpired,
        Reason::TokenNotYetValid,
        Reason::TokenIssuedInFuture,
        Reason::TokenLifetimeTooLong,
        Reason::AudienceInvalid,
        Reason::TokenTypeInvalid,
        Reason::ClaimMissing,
        Reason::ClaimInvalid,
        Reason::ScopeInsufficient,
        Reason::KeysUnavailable,
        Reason::PolicyUnavailable,
        Reason::RouteForbidden,
        Reason::PathInvalid,
        Reason::ClaimRequirementUnmet,
        Reason::ObjectAccessDenied,
        Reason::StepUpRequired,
        Reason::ApiKeyInvalid,
        Reason::ApiKeyMissing,
        Reason::BodyTooLarge,
        Reason::ContentTypeUnsupported,
        Reason::BodyMalformed,
        Reason::RateLimited,
        Reason::AuthLockedOut,
        Reason::TrailersUnsupported,
        Reason::ConcurrencyLimited,
        Reason::VerificationOverloaded,
        Reason::BodyRequired,
        Reason::BodyForbidden,
        Reason::JsonLimitExceeded,
        Reason::SchemaViolation,
        Reason::ParameterInvalid,
        Reason::InputSuspicious,
        Reason::ResponseUnredactable,
        Reason::UpstreamFailure,
        Reason::Lockdown,
        Reason::CredentialRevoked,
        Reason::MethodOverrideRefused,
        Reason::CredentialUnverified,
    ];

    /// The stable slug: last segment of the problem `type`, the audit `reason` and the metric tag.
    pub fn slug(self) -> &'static str {
        match self {
            Reason::RouteNotFound => "route-not-found",
            Reason::MethodNotAllowed => "method-not-allowed",
            Reason::TokenMissing => "token-missing",
            Reason::TokenMultiple => "token-multiple",
            Reason::TokenInQuery => "token-in-query",
            Reason::TokenMalformed => "token-malformed",
            Reason::TokenTooLarge => "token-too-large",
            Reason::AlgorithmNotAllowed => "algorithm-not-allowed",
            Reason::TokenHeaderForbidden => "token-header-forbidden",
            Reason::IssuerUnknown => "issuer-unknown",
            Reason::KeyUnknown => "key-unknown",
            Reason::SignatureInvalid => "signature-invalid",
            Reason::TokenExpired => "token-expired",
            Reason::TokenNotYetValid => "token-not-yet-valid",
            Reason::TokenIssuedInFuture => "token-issued-in-future",
            Reason::TokenLifetimeTooLong => "token-lifetime-too-long",
            Reason::AudienceInvalid => "audience-invalid",
            Reason::TokenTypeInvalid => "token-type-invalid",
            Reason::ClaimMissing => "claim-missing",
            Reason::ClaimInvalid => "claim-invalid",
            Reason::ScopeInsufficient => "scope-insufficient",
            Reason::KeysUnavailable => "keys-unavailable",
            Reason::PolicyUnavailable => "policy-unavailable",
            Reason::RouteForbidden => "route-forbidden",
            Reason::PathInvalid => "path-invalid",
            Reason::ClaimRequirementUnmet => "claim-requirement-unmet",
            Reason::ObjectAccessDenied => "object-access-denied",
            Reason::StepUpRequired => "step-up-required",
            Reason::ApiKeyInvalid => "api-key-invalid",
            Reason::ApiKeyMissing => "api-key-missing",
            Reason::BodyTooLarge => "body-too-large",
            Reason::ContentTypeUnsupported => "content-type-unsupported",
            Reason::BodyMalformed => "body-malformed",
            Reason::RateLimited => "rate-limited",
            Reason::AuthLockedOut => "auth-locked-out",
            Reason::TrailersUnsupported => "request-trailers-unsupported",
            Reason::ConcurrencyLimited => "concurrency-limited",
            Reason::VerificationOverloaded => "verification-overloaded",
            Reason::BodyRequired => "body-required",
            Reason::BodyForbidden => "body-forbidden",
            Reason::JsonLimitExceeded => "json-limit-exceeded",
            Reason::SchemaViolation => "schema-violation",
            Reason::ParameterInvalid => "parameter-invalid",
            Reason::InputSuspicious => "input-suspicious",
            Reason::ResponseUnredactable => "response-unredactable",
            Reason::UpstreamFailure => "upstream-failure",
            Reason::Lockdown => "lockdown",
            Reason::CredentialRevoked => "credential-revoked",
            Reason::MethodOverrideRefused => "method-override-refused",
            Reason::CredentialUnverified => "credential-unverified",
        }
    }

    pub fn status(self) -> u32 {
        match self {
            Reason::RouteNotFound => 404,
            Reason::MethodNotAllowed => 405,
            Reason::ScopeInsufficient
            | Reason::RouteForbidden
            | Reason::ClaimRequirementUnmet
            | Reason::ObjectAccessDenied => 403,
            Reason::PathInvalid
            | Reason::BodyMalformed
            | Reason::TrailersUnsupported
            | Reason::BodyRequired
            | Reason::BodyForbidden
            | Reason::JsonLimitExceeded
            | Reason::ParameterInvalid
            | Reason::InputSuspicious
            | Reason::MethodOverrideRefused => 400,
            // Well-formed JSON that breaks the contract: 422, so clients can tell it from 400.
            Reason::SchemaViolation => 422,
            Reason::ResponseUnredactable | Reason::UpstreamFailure => 502,
            Reason::BodyTooLarge => 413,
            Reason::ContentTypeUnsupported => 415,
            Reason::RateLimited | Reason::AuthLockedOut | Reason::ConcurrencyLimited => 429,
            Reason::KeysUnavailable
            | Reason::PolicyUnavailable
            | Reason::VerificationOverloaded
            | Reason::Lockdown => 503,
            _ => 401,
        }
    }

    /// A short human title. Deliberately generic: it names the rule, never the input.
    pub fn title(self) -> &'static str {
        match self {
            Reason::RouteNotFound => "No such resource",
            Reason::MethodNotAllowed => "Method not allowed on this resource",
            Reason::TokenMissing => "An access token is required",
            Reason::TokenMultiple => "More than one access token was sent",
            Reason::TokenInQuery => "Access tokens are not accepted in the query string",
            Reason::TokenMalformed => "The access token is malformed",
            Reason::TokenTooLarge => "The access token is too large",
            Reason::AlgorithmNotAllowed => "The access token's signing algorithm is not allowed",
            Reason::TokenHeaderForbidden => "The access token carries a forbidden header parameter",
            Reason::IssuerUnknown => "The access token's issuer is not accepted",
            Reason::KeyUnknown => "The access token's signing key is unknown",
            Reason::SignatureInvalid => "The access token's signature is invalid",
            Reason::TokenExpired => "The access token has expired",
            Reason::TokenNotYetValid => "The access token is not valid yet",
            Reason::TokenIssuedInFuture => "The access token was issued in the future",
            Reason::TokenLifetimeTooLong => "The access token's lifetime is too long",
            Reason::AudienceInvalid => "The access token is not meant for this API",
            Reason::TokenTypeInvalid => "The access token's type is not accepted",
            Reason::ClaimMissing => "The access token lacks a required claim",
            Reason::ClaimInvalid => "The access token has an invalid claim",
            Reason::ScopeInsufficient => "The access token lacks a required scope",
            Reason::KeysUnavailable => "Token verification keys are unavailable",
            Reason::PolicyUnavailable => "The security policy is unavailable",
            Reason::RouteForbidden => "Access to this resource is forbidden",
            Reason::PathInvalid => "The request path is not in canonical form",
            Reason::ClaimRequirementUnmet => "The caller is not entitled to this operation",
            Reason::ObjectAccessDenied => "The caller may not access this object",
            Reason::StepUpRequired => "A stronger or more recent authentication is required",
            Reason::ApiKeyInvalid => "The API key is not valid",
            Reason::ApiKeyMissing => "An API key is required",
            Reason::BodyTooLarge => "The request body is too large",
            Reason::ContentTypeUnsupported => "The request content type is not accepted",
            Reason::BodyMalformed => "The request body is not valid JSON or names a member twice",
            Reason::RateLimited => "Too many requests",
            Reason::AuthLockedOut => "Too many failed authentications; try again later",
            Reason::TrailersUnsupported => "Request trailers are not accepted on this route",
            Reason::ConcurrencyLimited => "Too many requests in flight",
            Reason::VerificationOverloaded => "Token verification is overloaded; retry shortly",
            Reason::BodyRequired => "This operation requires a request body",
            Reason::BodyForbidden => "This operation takes no request body",
            Reason::JsonLimitExceeded => "The request body exceeds the JSON structure limits",
            Reason::SchemaViolation => "The request body does not match the API contract",
            Reason::ParameterInvalid => "A request parameter does not match the API contract",
            Reason::InputSuspicious => "The request contains a disallowed pattern",
            Reason::ResponseUnredactable => "The response could not be delivered safely",
            Reason::UpstreamFailure => "The service failed to process the request",
            Reason::Lockdown => "The API is temporarily unavailable",
            Reason::CredentialRevoked => "The credential has been revoked",
            Reason::MethodOverrideRefused => "Method overrides are not accepted on this resource",
            Reason::CredentialUnverified => {
                "The request carries a credential this resource does not accept"
            }
        }
    }

    pub fn challenge(self) -> Challenge {
        match self {
            Reason::RouteNotFound
            | Reason::MethodNotAllowed
            | Reason::KeysUnavailable
            | Reason::PolicyUnavailable
            | Reason::RouteForbidden
            | Reason::PathInvalid
            | Reason::ClaimRequirementUnmet
            | Reason::ObjectAccessDenied
            | Reason::BodyTooLarge
            | Reason::ContentTypeUnsupported
            | Reason::BodyMalformed
            | Reason::RateLimited
            | Reason::AuthLockedOut
            | Reason::TrailersUnsupported
            | Reason::ConcurrencyLimited
            | Reason::VerificationOverloaded
            | Reason::BodyRequired
            | Reason::BodyForbidden
            | Reason::JsonLimitExceeded
            | Reason::SchemaViolation
            | Reason::ParameterInvalid
            | Reason::InputSuspicious
            | Reason::ResponseUnredactable
            | Reason::UpstreamFailure
            | Reason::Lockdown
            | Reason::MethodOverrideRefused => Challenge::None,
            Reason::ApiKeyInvalid | Reason::ApiKeyMissing => Challenge::ApiKey,
            Reason::StepUpRequired => Challenge::InsufficientUserAuthentication,
            Reason::TokenMissing => Challenge::Bare,
            Reason::TokenMultiple | Reason::TokenInQuery | Reason::CredentialUnverified => {
                Challenge::InvalidRequest
            }
            Reason::ScopeInsufficient => Challenge::InsufficientScope,
            _ => Challenge::InvalidToken,
        }
    }
}

pub const PROBLEM_TYPE_BASE: &str = "https://finguard.dev/problems/";

/// A refusal ready to be sent: status, headers and body, all computed by the pure core.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: Reason,
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// This failed authentication locked the client address out (for the audit record).
    pub locked_out: bool,
    /// The matched route's id, when a route matched (for the audit record).
    pub route_id: Option<String>,
    /// The authenticated caller, when the refusal came after authentication (audit record).
    pub caller: Option<Caller>,
}

/// One field that broke the contract: where (a JSON pointer, RFC 6901) and which rule (the
/// schema keyword, e.g. `type`, `required`, `format`, or a limit name such as `max_depth`).
/// Never the value. Whoever builds a pointer must not copy client-chosen member names into it
/// unless the schema declares them (see `validation`), so the body cannot carry client text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub pointer: String,
    pub keyword: String,
}

/// At most this many violations are listed in one problem body.
pub const MAX_VIOLATIONS: usize = 10;

/// Context a refusal may mention: never request data beyond the request id (which Envoy
/// generated or validated) and configuration values (scopes, allowed methods).
#[derive(Debug, Default, Clone, Copy)]
pub struct RefusalContext<'a> {
    pub realm: &'a str,
    pub request_id: Option<&'a str>,
    /// Scopes to name in an `insufficient_scope` challenge.
    pub required_scopes: &'a [String],
    /// Methods to list in `Allow` for a 405.
    pub allowed_methods: &'a [String],
    pub retry_after_seconds: Option<u64>,
    /// Step-up: acceptable `acr` values and the maximum authentication age (RFC 9470).
    pub acr_values: &'a [String],
    pub max_age: Option<i64>,
    /// More headers (rate-limit fields).
    pub extra_headers: &'a [(&'static str, String)],
    /// Fields that broke the contract, listed as the problem's `errors` member.
    pub violations: &'a [Violation],
}

impl Refusal {
    pub fn new(reason: Reason, ctx: &RefusalContext<'_>) -> Refusal {
        let mut headers: Vec<(&'static str, String)> = vec![
            ("content-type", "application/problem+json".to_string()),
            ("cache-control", "no-store".to_string()),
        ];
        if let Some(challenge) = www_authenticate(reason, ctx) {
            headers.push(("www-authenticate", challenge));
        }
        if reason == Reason::MethodNotAllowed && !ctx.allowed_methods.is_empty() {
            headers.push(("allow", ctx.allowed_methods.join(", ")));
        }
        if let Some(seconds) = ctx.retry_after_seconds {
            headers.push(("retry-after", seconds.to_string()));
        }
        headers.extend(ctx.extra_headers.iter().cloned());
        Refusal {
            reason,
            status: reason.status(),
            headers,
            body: problem_body(reason, ctx.request_id, ctx.violations),
            locked_out: false,
            route_id: None,
            caller: None,
        }
    }
}

impl Refusal {
    /// A refusal answered with another status than the reason's own (an upstream 5xx keeps its
    /// status when its body is replaced).
    pub fn with_status(reason: Reason, status: u32, ctx: &RefusalContext<'_>) -> Refusal {
        let mut refusal = Refusal::new(reason, ctx);
        refusal.status = status;
        refusal.body = problem_body_with_status(reason, status, ctx.request_id, ctx.violations);
        refusal
    }
}

fn www_authenticate(reason: Reason, ctx: &RefusalContext<'_>) -> Option<String> {
    let error = match reason.challenge() {
        Challenge::None => return None,
        Challenge::Bare => return Some(format!("Bearer realm=\"{}\"", ctx.realm)),
        Challenge::ApiKey => return Some(format!("ApiKey realm=\"{}\"", ctx.realm)),
        Challenge::InsufficientUserAuthentication => "insufficient_user_authentication",
        Challenge::InvalidRequest => "invalid_request",
        Challenge::InvalidToken => "invalid_token",
        Challenge::InsufficientScope => "insufficient_scope",
    };
    let mut value = format!(
        "Bearer realm=\"{}\", error=\"{}\", error_description=\"{}\"",
        ctx.realm,
        error,
        reason.title()
    );
    if reason == Reason::ScopeInsufficient && !ctx.required_scopes.is_empty() {
        // Scope tokens are configuration values restricted to RFC 6749's scope-token charset.
        let _ = write!(value, ", scope=\"{}\"", ctx.required_scopes.join(" "));
    }
    if reason == Reason::StepUpRequired {
        if !ctx.acr_values.is_empty() {
            let _ = write!(value, ", acr_values=\"{}\"", ctx.acr_values.join(" "));
        }
        if let Some(max_age) = ctx.max_age {
            let _ = write!(value, ", max_age={max_age}");
        }
    }
    Some(value)
}

/// RFC 9457 body. The request id is the only request-derived value and is JSON-escaped.
fn problem_body(reason: Reason, request_id: Option<&str>, violations: &[Violation]) -> String {
    problem_body_with_status(reason, reason.status(), request_id, violations)
}

fn problem_body_with_status(
    reason: Reason,
    status: u32,
    request_id: Option<&str>,
    violations: &[Violation],
) -> String {
    let mut body = serde_json::Map::new();
    body.insert(
        "type".into(),
        format!("{PROBLEM_TYPE_BASE}{}", reason.slug()).into(),
    );
    body.insert("title".into(), reason.title().into());
    body.insert("status".into(), status.into());
    if let Some(id) = request_id.filter(|id| is_safe_request_id(id)) {
        body.insert("request_id".into(), id.into());
    }
    if !violations.is_empty() {
        let errors = violations
            .iter()
            .take(MAX_VIOLATIONS)
            .map(|v| serde_json::json!({"pointer": v.pointer, "keyword": v.keyword}))
            .collect();
        body.insert("errors".into(), serde_json::Value::Array(errors));
    }
    serde_json::Value::Object(body).to_string()
}

/// Envoy generates UUIDs; a client-supplied id is echoed only if it looks like one of ours
/// (bounded length, token characters), so the body can never carry arbitrary client text.
pub fn is_safe_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// What the pipeline decided for the headers phase of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Forward upstream after applying these header changes.
    Allow(Forward),
    /// Answer locally; nothing reaches the upstream.
    Refuse(Refusal),
    /// The provider's keys are not loaded yet: hold the request until they are (or time out).
    /// `route`: the matched route (whether its body will be needed).
    WaitForKeys { provider: usize, route: usize },
    /// Apply the header changes, hold the request and judge its body (`pipeline::on_request_body`).
    ReadBody {
        forward: Forward,
        pending: PendingBody,
    },
}

/// What the body phase needs from the headers phase.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingBody {
    /// Index of the route in the route table.
    pub route: usize,
    /// `None` on a public route (validation only).
    pub principal: Option<Caller>,
    pub content_type: Option<String>,
    pub request_id: Option<String>,
    /// The body phase's rules compare times (amount-conditional step-up): the host reads the
    /// clock again when the body completes. Otherwise the headers phase's time stands (one host
    /// call less per validated request).
    pub reads_clock: bool,
    /// Path-bound parameters whose copies in the body must match, as (folded name, value): see
    /// `authz::Copies`.
    pub bound_params: Vec<(String, String)>,
    /// Held only to look for a `_method` field in a form body: a route that does not judge its
    /// body, and a `POST` whose body is a form (see `ambiguity::form_overrides_method`).
    pub form_override_only: bool,
}

/// The authenticated caller, owned, for the body phase.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    Token(std::rc::Rc<crate::authn::verify::VerifiedToken>),
    ApiKey(usize),
}

/// Header changes for a forwarded request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forward {
    /// Headers to remove first (client-supplied identity headers, Authorization if stripped).
    pub remove: Vec<String>,
    /// Headers to set (verified claims).
    pub set: Vec<(String, String)>,
    /// A refusal that monitor mode turned into a forward, for the audit line.
    pub monitored: Option<Reason>,
    /// Headers to add to the response (rate-limit fields on allowed requests).
    pub response_headers: Vec<(&'static str, String)>,
    /// In-flight units taken; the host gives them back when the stream ends.
    pub permits: Vec<crate::ratelimit::concurrency::Permit>,
    /// The matched route's index and the authenticated caller (audit record).
    pub route: Option<usize>,
    pub caller: Option<Caller>,
    /// What the response phase must do (routes with a response policy).
    pub response: Option<crate::response::ResponsePlan>,
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn ctx() -> RefusalContext<'static> {
        RefusalContext {
            realm: "finguard",
            ..Default::default()
        }
    }

    #[test]
    fn every_reason_has_a_distinct_slug_and_a_problem_body() {
        let mut slugs: Vec<_> = Reason::ALL.iter().map(|r| r.slug()).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), Reason::ALL.len());
        for reason in Reason::ALL {
            let refusal = Refusal::new(reason, &ctx());
            let body: serde_json::Value = serde_json::from_str(&refusal.body).unwrap();
            assert_eq!(body["status"], refusal.status);
            assert!(body["type"].as_str().unwrap().ends_with(reason.slug()));
        }
    }

    #[test]
    fn missing_token_gets_a_bare_challenge() {
        let refusal = Refusal::new(Reason::TokenMissing, &ctx());
        assert_eq!(refusal.status, 401);
        let header = refusal
            .headers
            .iter()
            .find(|(n, _)| *n == "www-authenticate")
            .unwrap();
        assert_eq!(header.1, "Bearer realm=\"finguard\"");
    }

    #[test]
    fn invalid_token_and_scope_challenges() {
        let r = Refusal::new(Reason::TokenExpired, &ctx());
        let h = &r
            .headers
            .iter()
            .find(|(n, _)| *n == "www-authenticate")
            .unwrap()
            .1;
        assert!(h.contains("error=\"invalid_token\""));
        let scopes = vec!["payments:write".to_string()];
        let c = RefusalContext {
            required_scopes: &scopes,
            ..ctx()
        };
        let r = Refusal::new(Reason::ScopeInsufficient, &c);
        assert_eq!(r.status, 403);
        let h = &r
            .headers
            .iter()
            .find(|(n, _)| *n == "www-authenticate")
            .unwrap()
            .1;
        assert!(h.contains("error=\"insufficient_scope\""));
        assert!(h.contains("scope=\"payments:write\""));
    }

    #[test]
    fn step_up_challenge_follows_rfc_9470() {
        let acr = vec!["gold".to_string()];
        let c = RefusalContext {
            acr_values: &acr,
            max_age: Some(300),
            ..ctx()
        };
        let r = Refusal::new(Reason::StepUpRequired, &c);
        assert_eq!(r.status, 401);
        let h = &r
            .headers
            .iter()
            .find(|(n, _)| *n == "www-authenticate")
            .unwrap()
            .1;
        assert!(
            h.starts_with("Bearer realm=\"finguard\", error=\"insufficient_user_authentication\""),
            "{h}"
        );
        assert!(h.ends_with(", acr_values=\"gold\", max_age=300"), "{h}");
        let r = Refusal::new(Reason::ApiKeyInvalid, &ctx());
        let h = &r
            .headers
            .iter()
            .find(|(n, _)| *n == "www-authenticate")
            .unwrap()
            .1;
        assert_eq!(h, "ApiKey realm=\"finguard\"");
    }

    #[test]
    fn request_id_is_echoed_only_when_safe() {
        let c = RefusalContext {
            request_id: Some("4c1f-9a"),
            ..ctx()
        };
        assert!(Refusal::new(Reason::TokenMissing, &c)
            .body
            .contains("4c1f-9a"));
        let c = RefusalContext {
            request_id: Some("<script>"),
            ..ctx()
        };
        assert!(!Refusal::new(Reason::TokenMissing, &c)
            .body
            .contains("script"));
    }
}
