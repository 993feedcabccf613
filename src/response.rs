//! The response phase: what the host does with the upstream's response on a route with a
//! response policy (see [`crate::redaction`]). Pure: the host reads the response head and body,
//! calls these functions and applies what they return.
//!
//! Headers phase ([`on_response_headers`]): headers removed and added; an upstream 5xx is
//! replaced by a generic problem (status kept, request id in it); a JSON body that must be
//! rewritten is held (`Buffer`) — unless it is compressed, which cannot be rewritten and fails
//! closed (502 `response-unredactable`). HEAD, 1xx/204/304 and bodiless responses pass.
//!
//! Body phase ([`on_response_body`], at the end of the buffered body): the rewritten body, or a
//! 502 if it is not JSON or too deep. A body over the route's limit is refused as it streams in
//! ([`on_response_refused`]): never passed through unredacted.

use crate::decision::{Reason, Refusal, RefusalContext};
use crate::pipeline::is_json_media_type;
use crate::redaction::rewrite::rewrite_counted;
use crate::redaction::ResponsePolicy;
use crate::request::RequestView;
use std::rc::Rc;

/// What the response phase needs from the request phase, carried by `decision::Forward`.
#[derive(Debug, Clone)]
pub struct ResponsePlan {
    pub policy: Rc<ResponsePolicy>,
    /// Unmasking scopes the caller holds (bits of `policy.scopes`).
    pub unmasked: u64,
    /// The caller was authenticated (adds `cache-control`).
    pub authenticated: bool,
    pub request_id: Option<String>,
    /// A HEAD request: the response has no body.
    pub head: bool,
}

impl PartialEq for ResponsePlan {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.policy, &other.policy)
            && self.unmasked == other.unmasked
            && self.authenticated == other.authenticated
            && self.request_id == other.request_id
            && self.head == other.head
    }
}

/// The plan for a request on a route with `policy` (`None`: nothing to do for the response).
pub fn plan(policy: Option<&Rc<ResponsePolicy>>, request: &RequestView) -> Option<ResponsePlan> {
    let policy = policy?;
    Some(ResponsePlan {
        policy: Rc::clone(policy),
        unmasked: 0,
        authenticated: false,
        request_id: request.request_id().map(str::to_owned),
        head: request.method() == "HEAD",
    })
}

impl ResponsePlan {
    /// The caller is authenticated and holds `scopes` (as `authz` reads them).
    pub fn grant(&mut self, scopes: &[String]) {
        self.unmasked = self.policy.unmasked_for(scopes);
        self.authenticated = true;
    }

    /// Whether JSON bodies of this response are rewritten (and the upstream is asked for
    /// identity encoding).
    pub fn rewrites_body(&self) -> bool {
        self.policy.rewrites_body()
    }
}

/// What the host read of the response head.
#[derive(Debug, Default, Clone, Copy)]
pub struct ResponseHead<'a> {
    pub status: u32,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub retry_after: Option<&'a str>,
    /// The response has no body (headers ended the stream).
    pub end_of_stream: bool,
}

#[derive(Debug, PartialEq)]
pub enum Handling {
    /// Continue with the header changes.
    Pass,
    /// Hold the headers and buffer the body for [`on_response_body`].
    Buffer,
    /// Answer with this instead of the upstream's response.
    Replace(Refusal),
}

#[derive(Debug, PartialEq)]
pub struct HeadersDecision<'p> {
    pub remove: &'p [String],
    pub set: Vec<(&'static str, &'p str)>,
    pub handling: Handling,
}

pub fn on_response_headers<'p>(
    plan: &'p ResponsePlan,
    head: &ResponseHead<'_>,
) -> HeadersDecision<'p> {
    let policy = &plan.policy;
    let mut set: Vec<(&'static str, &'p str)> = policy
        .headers
        .add
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    if plan.authenticated {
        if let Some(value) = &policy.headers.cache_control {
            set.push(("cache-control", value.as_str()));
        }
    }
    let no_body = plan.head
        || head.end_of_stream
        || head.status < 200
        || head.status == 204
        || head.status == 304;
    let handling = if head.status >= 500 && policy.sanitise_upstream_errors && !plan.head {
        Handling::Replace(upstream_failure(plan, head))
    } else if no_body {
        Handling::Pass
    } else if head.content_type.is_some_and(is_json_media_type) {
        if !policy.rewrites_body() {
            Handling::Pass
        } else if head
            .content_encoding
            .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity") && !e.trim().is_empty())
        {
            // A compressed body cannot be rewritten; it is never passed unredacted.
            Handling::Replace(on_response_refused(plan))
        } else {
            Handling::Buffer
        }
    } else if policy.refuse_non_json {
        Handling::Replace(on_response_refused(plan))
    } else {
        Handling::Pass
    };
    HeadersDecision {
        remove: &policy.headers.remove,
        set,
        handling,
    }
}

#[derive(Debug, PartialEq)]
pub enum BodyDecision {
    Unchanged,
    /// The new body and how many fields were redacted.
    Rewritten(Vec<u8>, usize),
    Replace(Refusal),
}

/// Judges a complete buffered JSON body.
pub fn on_response_body(plan: &ResponsePlan, body: &[u8]) -> BodyDecision {
    if body.len() > plan.policy.max_body_bytes {
        return BodyDecision::Replace(on_response_refused(plan));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return BodyDecision::Unchanged;
    }
    match rewrite_counted(body, &plan.policy, plan.unmasked) {
        Ok(None) => BodyDecision::Unchanged,
        Ok(Some((body, fields))) => BodyDecision::Rewritten(body, fields),
        Err(_) => BodyDecision::Replace(on_response_refused(plan)),
    }
}

/// A response that must be redacted and cannot be (compressed, over the limit, not JSON, ended
/// with trailers): 502, never the upstream's body.
pub fn on_response_refused(plan: &ResponsePlan) -> Refusal {
    refusal(plan, Reason::ResponseUnredactable, 502, None)
}

/// The generic problem that replaces an upstream 5xx (same status; `Retry-After` kept).
fn upstream_failure(plan: &ResponsePlan, head: &ResponseHead<'_>) -> Refusal {
    let retry_after = head
        .retry_after
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok());
    refusal(plan, Reason::UpstreamFailure, head.status, retry_after)
}

fn refusal(plan: &ResponsePlan, reason: Reason, status: u32, retry_after: Option<u64>) -> Refusal {
    let ctx = RefusalContext {
        request_id: plan.request_id.as_deref(),
        retry_after_seconds: retry_after,
        ..RefusalContext::default()
    };
    let mut refusal = Refusal::with_status(reason, status, &ctx);
    // A local reply in the response phase skips this filter's header handling: add them here.
    refusal
        .headers
        .extend(plan.policy.headers.add.iter().cloned());
    refusal
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redaction::{RawResponse, ResponseDefaults};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn plan_for(response: serde_json::Value, method: &str) -> ResponsePlan {
        let raw: RawResponse = serde_json::from_value(response).unwrap();
        let defaults = ResponseDefaults::compile(Some(raw)).unwrap();
        let request = RequestView::new(vec![
            (":method".into(), method.into()),
            (":path".into(), "/x".into()),
            ("x-request-id".into(), "req-42".into()),
        ]);
        plan(defaults.global(), &request).unwrap()
    }

    fn json_head(status: u32) -> ResponseHead<'static> {
        ResponseHead {
            status,
            content_type: Some("application/json; charset=utf-8"),
            ..ResponseHead::default()
        }
    }

    #[test]
    fn headers_are_scrubbed_and_security_headers_added() {
        let mut p = plan_for(json!({"headers": {"remove": ["X-Backend"]}}), "GET");
        let d = on_response_headers(&p, &json_head(200));
        assert_eq!(d.remove, ["server", "x-powered-by", "x-backend"]);
        assert!(d.set.contains(&("x-content-type-options", "nosniff")));
        assert!(d.set.iter().any(|(n, _)| *n == "strict-transport-security"));
        assert!(!d.set.iter().any(|(n, _)| *n == "cache-control"));
        // No body rules: JSON passes without buffering.
        assert_eq!(d.handling, Handling::Pass);
        p.grant(&[]);
        let d = on_response_headers(&p, &json_head(200));
        assert!(d.set.contains(&("cache-control", "no-store")));
    }

    #[test]
    fn json_is_buffered_compressed_json_and_5xx_are_replaced() {
        let p = plan_for(json!({"detect": ["pan"]}), "GET");
        assert_eq!(
            on_response_headers(&p, &json_head(200)).handling,
            Handling::Buffer
        );
        let gzip = ResponseHead {
            content_encoding: Some("gzip"),
            ..json_head(200)
        };
        let Handling::Replace(r) = on_response_headers(&p, &gzip).handling else {
            panic!()
        };
        assert_eq!((r.reason, r.status), (Reason::ResponseUnredactable, 502));
        let failing = ResponseHead {
            retry_after: Some("7"),
            content_type: Some("text/html"),
            ..json_head(503)
        };
        let Handling::Replace(r) = on_response_headers(&p, &failing).handling else {
            panic!()
        };
        assert_eq!((r.reason, r.status), (Reason::UpstreamFailure, 503));
        assert!(r.body.contains("req-42") && r.body.contains("\"status\":503"));
        assert!(r.headers.contains(&("retry-after", "7".to_string())));
        // Bodiless responses and non-JSON pass.
        for head in [
            json_head(204),
            json_head(304),
            ResponseHead {
                end_of_stream: true,
                ..json_head(200)
            },
            ResponseHead {
                content_type: Some("text/csv"),
                ..json_head(200)
            },
        ] {
            assert_eq!(on_response_headers(&p, &head).handling, Handling::Pass);
        }
        let head_request = plan_for(json!({"detect": ["pan"]}), "HEAD");
        assert_eq!(
            on_response_headers(&head_request, &json_head(200)).handling,
            Handling::Pass
        );
        let refusing = plan_for(json!({"detect": ["pan"], "non_json": "refuse"}), "GET");
        let csv = ResponseHead {
            content_type: Some("text/csv"),
            ..json_head(200)
        };
        assert!(matches!(
            on_response_headers(&refusing, &csv).handling,
            Handling::Replace(_)
        ));
    }

    #[test]
    fn bodies_are_rewritten_or_refused() {
        let p = plan_for(json!({"detect": ["pan"], "max_body_bytes": 64}), "GET");
        assert_eq!(on_response_body(&p, b""), BodyDecision::Unchanged);
        assert_eq!(
            on_response_body(&p, br#"{"a": 1}"#),
            BodyDecision::Unchanged
        );
        assert_eq!(
            on_response_body(&p, br#"{"pan": "4111111111111111"}"#),
            BodyDecision::Rewritten(br#"{"pan": "411111******1111"}"#.to_vec(), 1)
        );
        assert!(matches!(
            on_response_body(&p, b"{oops"),
            BodyDecision::Replace(_)
        ));
        assert!(matches!(
            on_response_body(&p, &[b' '; 65]),
            BodyDecision::Replace(_)
        ));
    }
}
