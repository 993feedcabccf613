//! Why a request is refused: the one table of [`Reason`]s. Each row gives a reason's stable slug
//! (the problem `type`'s last segment, the audit `reason`, the metric tag), its HTTP status, its
//! `WWW-Authenticate` challenge (RFC 6750), its class (what it counts as for lockout and metrics)
//! and its title. The enum, [`Reason::ALL`] and every accessor are generated from the rows, so
//! adding a reason is adding one row, and no accessor has a catch-all arm.
//! `docs/reasons.md` is checked against this table by `tests/docs.rs`.

/// What the `WWW-Authenticate` challenge says, per RFC 6750 section 3.
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

/// What a refusal counts as, beyond its own slug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A credential was presented and is not valid: counts towards the address's lockout and
    /// the `authn_failures` metric.
    CredentialInvalid,
    /// A route needing a credential got none: counts as an authentication failure in the
    /// metrics, never towards lockout (a client that sends nothing is guessing nothing).
    CredentialMissing,
    /// A rate or in-flight limit refused the request (the `rate_limited` metric).
    Limited,
    /// Everything else.
    Other,
}

macro_rules! reasons {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident => ($slug:literal, $status:literal, $challenge:ident, $class:ident, $title:literal);
    )*) => {
        /// Why a request is refused. Nothing here carries request data: a reason is safe to log
        /// and to show to the client as it is.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $( $(#[doc = $doc])* $name, )*
        }

        impl Reason {
            /// How many reasons there are.
            pub const COUNT: usize = [$(stringify!($name)),*].len();

            /// Every reason, in table order.
            pub const ALL: [Reason; Reason::COUNT] = [$(Reason::$name),*];

            /// The stable slug: last segment of the problem `type`, the audit `reason` and the
            /// metric tag.
            pub fn slug(self) -> &'static str {
                match self { $(Reason::$name => $slug,)* }
            }

            /// The HTTP status of the refusal.
            pub fn status(self) -> u32 {
                match self { $(Reason::$name => $status,)* }
            }

            /// A short human title. Deliberately generic: it names the rule, never the input.
            pub fn title(self) -> &'static str {
                match self { $(Reason::$name => $title,)* }
            }

            /// The `WWW-Authenticate` challenge sent with the refusal.
            pub fn challenge(self) -> Challenge {
                match self { $(Reason::$name => Challenge::$challenge,)* }
            }

            /// What the refusal counts as for lockout and metrics.
            pub fn class(self) -> Class {
                match self { $(Reason::$name => Class::$class,)* }
            }
        }
    };
}

// Statuses: 400 malformed or ambiguous input; 401 credential problems; 403 authenticated but not
// entitled; 422 well-formed JSON that breaks the contract (so clients can tell it from 400);
// 429 limits; 502 a response that cannot be delivered safely; 503 finguard cannot judge now.
reasons! {
    /// No configured route matches the path.
    RouteNotFound => ("route-not-found", 404, None, Other, "No such resource");
    /// A route matches the path, but not the method.
    MethodNotAllowed => ("method-not-allowed", 405, None, Other, "Method not allowed on this resource");
    /// The route requires a token and none was sent.
    TokenMissing => ("token-missing", 401, Bare, CredentialMissing, "An access token is required");
    /// More than one token in one request (two headers, or header and cookie).
    TokenMultiple => ("token-multiple", 401, InvalidRequest, Other, "More than one access token was sent");
    /// A token in the query string while query tokens are not enabled.
    TokenInQuery => ("token-in-query", 401, InvalidRequest, Other, "Access tokens are not accepted in the query string");
    /// Not three strict base64url segments of strict JSON.
    TokenMalformed => ("token-malformed", 401, InvalidToken, CredentialInvalid, "The access token is malformed");
    /// Larger than `token.max_bytes`.
    TokenTooLarge => ("token-too-large", 401, InvalidToken, CredentialInvalid, "The access token is too large");
    /// `alg` is not in the provider's allowlist (or is `none`).
    AlgorithmNotAllowed => ("algorithm-not-allowed", 401, InvalidToken, CredentialInvalid, "The access token's signing algorithm is not allowed");
    /// A header such as `crit`, `jku`, `x5u`, `jwk` or `x5c` that finguard never honours.
    TokenHeaderForbidden => ("token-header-forbidden", 401, InvalidToken, CredentialInvalid, "The access token carries a forbidden header parameter");
    /// `iss` names no configured provider, or one the route does not accept.
    IssuerUnknown => ("issuer-unknown", 401, InvalidToken, CredentialInvalid, "The access token's issuer is not accepted");
    /// No key of the provider matches the token's `kid`, algorithm family and use.
    KeyUnknown => ("key-unknown", 401, InvalidToken, CredentialInvalid, "The access token's signing key is unknown");
    /// The signature does not verify.
    SignatureInvalid => ("signature-invalid", 401, InvalidToken, CredentialInvalid, "The access token's signature is invalid");
    /// `exp` is in the past (beyond the clock skew).
    TokenExpired => ("token-expired", 401, InvalidToken, CredentialInvalid, "The access token has expired");
    /// `nbf` is in the future (beyond the clock skew).
    TokenNotYetValid => ("token-not-yet-valid", 401, InvalidToken, CredentialInvalid, "The access token is not valid yet");
    /// `iat` is in the future (beyond the clock skew).
    TokenIssuedInFuture => ("token-issued-in-future", 401, InvalidToken, CredentialInvalid, "The access token was issued in the future");
    /// `exp - iat` exceeds the provider's `max_lifetime_seconds`.
    TokenLifetimeTooLong => ("token-lifetime-too-long", 401, InvalidToken, CredentialInvalid, "The access token's lifetime is too long");
    /// `aud` contains none of the provider's audiences.
    AudienceInvalid => ("audience-invalid", 401, InvalidToken, CredentialInvalid, "The access token is not meant for this API");
    /// `typ` header not in the provider's allowlist.
    TokenTypeInvalid => ("token-type-invalid", 401, InvalidToken, CredentialInvalid, "The access token's type is not accepted");
    /// A required claim (`exp`, or one the route needs) is absent.
    ClaimMissing => ("claim-missing", 401, InvalidToken, CredentialInvalid, "The access token lacks a required claim");
    /// A claim has the wrong type, or a value that cannot be forwarded safely.
    ClaimInvalid => ("claim-invalid", 401, InvalidToken, CredentialInvalid, "The access token has an invalid claim");
    /// The token lacks a scope the route requires.
    ScopeInsufficient => ("scope-insufficient", 403, InsufficientScope, Other, "The access token lacks a required scope");
    /// The provider's keys are not loaded (first fetch pending or failed, or past the grace).
    KeysUnavailable => ("keys-unavailable", 503, None, Other, "Token verification keys are unavailable");
    /// finguard has no valid configuration (it was refused at start): fail closed.
    PolicyUnavailable => ("policy-unavailable", 503, None, Other, "The security policy is unavailable");
    /// No route matches and `unmatched_route_status` is 403.
    RouteForbidden => ("route-forbidden", 403, None, Other, "Access to this resource is forbidden");
    /// A path spelling that could reach a route as another (`..`, `%2F`, `;`, `//`, ...).
    PathInvalid => ("path-invalid", 400, None, Other, "The request path is not in canonical form");
    /// A `claims` or `roles` rule of the route does not hold.
    ClaimRequirementUnmet => ("claim-requirement-unmet", 403, None, Other, "The caller is not entitled to this operation");
    /// An object named in the path or body is not bound to the caller (BOLA). Says nothing about
    /// whether the object exists.
    ObjectAccessDenied => ("object-access-denied", 403, None, Other, "The caller may not access this object");
    /// The operation needs a stronger or more recent authentication (RFC 9470).
    StepUpRequired => ("step-up-required", 401, InsufficientUserAuthentication, Other, "A stronger or more recent authentication is required");
    /// Unknown or disabled API key (not distinguished: no oracle for revoked keys).
    ApiKeyInvalid => ("api-key-invalid", 401, ApiKey, CredentialInvalid, "The API key is not valid");
    /// An API-key-only route without the key.
    ApiKeyMissing => ("api-key-missing", 401, ApiKey, CredentialMissing, "An API key is required");
    /// Body over the route's `max_body_bytes` on a route that reads it.
    BodyTooLarge => ("body-too-large", 413, None, Other, "The request body is too large");
    /// A route that reads the body got a content type it does not accept.
    ContentTypeUnsupported => ("content-type-unsupported", 415, None, Other, "The request content type is not accepted");
    /// The body is not strict JSON.
    BodyMalformed => ("body-malformed", 400, None, Other, "The request body is not valid JSON or names a member twice");
    /// A rate limit of the route (or a global one) is exhausted.
    RateLimited => ("rate-limited", 429, None, Limited, "Too many requests");
    /// Too many failed authentications from this address: locked out for a while.
    AuthLockedOut => ("auth-locked-out", 429, None, Other, "Too many failed authentications; try again later");
    /// Too many requests of this client in flight at once.
    ConcurrencyLimited => ("concurrency-limited", 429, None, Limited, "Too many requests in flight");
    /// The worker's budget of cold signature verifications is spent (a new token must wait).
    VerificationOverloaded => ("verification-overloaded", 503, None, Other, "Token verification is overloaded; retry shortly");
    /// Request trailers on a request held for its body: its end cannot be judged, so it is
    /// refused rather than released unchecked.
    TrailersUnsupported => ("request-trailers-unsupported", 400, None, Other, "Request trailers are not accepted on this route");
    /// The operation requires a request body and none was sent.
    BodyRequired => ("body-required", 400, None, Other, "This operation requires a request body");
    /// The operation takes no request body and one was sent.
    BodyForbidden => ("body-forbidden", 400, None, Other, "This operation takes no request body");
    /// The JSON body exceeds a structure limit (depth, members, array length, string or number
    /// length): checked before the schema, so hostile shapes cost little.
    JsonLimitExceeded => ("json-limit-exceeded", 400, None, Other, "The request body exceeds the JSON structure limits");
    /// The JSON body is well formed but does not match the route's schema.
    SchemaViolation => ("schema-violation", 422, None, Other, "The request body does not match the API contract");
    /// A query parameter, header or path parameter does not match the route's declaration.
    ParameterInvalid => ("parameter-invalid", 400, None, Other, "A request parameter does not match the API contract");
    /// A string value matched an enforced negative-model detector (SQL/command injection, path
    /// traversal).
    InputSuspicious => ("input-suspicious", 400, None, Other, "The request contains a disallowed pattern");
    /// A response that must be redacted cannot be (compressed, over the buffer limit, not
    /// parseable): it is replaced rather than passed through unredacted.
    ResponseUnredactable => ("response-unredactable", 502, None, Other, "The response could not be delivered safely");
    /// An upstream 5xx whose body was replaced by a generic problem (the upstream status is kept).
    UpstreamFailure => ("upstream-failure", 502, None, Other, "The service failed to process the request");
    /// The incident-response lockdown lever refuses this request.
    Lockdown => ("lockdown", 503, None, Other, "The API is temporarily unavailable");
    /// The token, its subject or its client is on the revocation list.
    CredentialRevoked => ("credential-revoked", 401, InvalidToken, CredentialInvalid, "The credential has been revoked");
    /// A method-override header or `_method` parameter on a route that does not allow overrides,
    /// or overrides that disagree or name no method: the backend would execute another method
    /// than the one finguard authorized.
    MethodOverrideRefused => ("method-override-refused", 400, None, Other, "Method overrides are not accepted on this resource");
    /// Beside the credential finguard verified, the request carries another one (another
    /// `Authorization` scheme, a cookie or query `access_token`, ...) that a backend could act on.
    CredentialUnverified => ("credential-unverified", 401, InvalidRequest, Other, "The request carries a credential this resource does not accept");
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn slugs_are_distinct_and_classes_follow_the_challenges() {
        let mut slugs: Vec<&str> = Reason::ALL.iter().map(|r| r.slug()).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), Reason::COUNT);
        for reason in Reason::ALL {
            // Every token refusal that says `invalid_token` is a presented, invalid credential.
            if reason.challenge() == Challenge::InvalidToken {
                assert_eq!(reason.class(), Class::CredentialInvalid, "{reason:?}");
            }
            if reason.class() == Class::CredentialInvalid {
                assert_eq!(reason.status(), 401, "{reason:?}");
            }
        }
    }
}
