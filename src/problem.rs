//! What a refusal [`Reason`] (the table in [`crate::reason`]) becomes for the client: status,
//! `WWW-Authenticate` challenge (RFC 6750, RFC 9470) and problem+json body (RFC 9457), with the
//! violations a body check found. Vocabulary: every layer may render a refusal; none of this
//! knows who called or which route matched (the pipeline's `Refused` carries that).

use crate::reason::{Challenge, Reason};
use std::fmt::Write as _;

pub const PROBLEM_TYPE_BASE: &str = "https://finguard.dev/problems/";

/// A refusal ready to be sent: status, headers and body, all computed by the pure core.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: Reason,
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
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
