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

use crate::media_type;
use crate::problem::{Refusal, RefusalContext};
use crate::reason::Reason;
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
    /// A part of the document only (`206`, or a `Content-Range` on another status).
    pub content_range: Option<&'a str>,
    pub retry_after: Option<&'a str>,
    /// The response has no body (headers ended the stream).
    pub end_of_stream: bool,
}

#[derive(Debug, PartialEq)]
pub enum Handling {
    /// Continue with the header changes.
    Pass,
    /// Hold the headers and buffer the body, in this format, for [`on_response_body`].
    Buffer(BodyFormat),
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
    } else if !policy.rewrites_body() {
        match body_format(head.content_type) {
            BodyFormat::Unreadable if policy.refuse_non_json => {
                Handling::Replace(on_response_refused(plan))
            }
            _ => Handling::Pass,
        }
    } else if head.status == 206 || head.content_range.is_some() {
        // A part of a document: a range can cut a value out of its member, where no pointer
        // rule reaches it. The request's `Range` was removed; an upstream ignoring that fails closed.
        Handling::Replace(on_response_refused(plan))
    } else {
        match body_format(head.content_type) {
            BodyFormat::Unreadable if !policy.refuse_non_json => Handling::Pass,
            BodyFormat::Unreadable => Handling::Replace(on_response_refused(plan)),
            _ if head.content_encoding.is_some_and(|e| {
                !e.trim().eq_ignore_ascii_case("identity") && !e.trim().is_empty()
            }) =>
            {
                // A compressed body cannot be rewritten; it is never passed unredacted.
                Handling::Replace(on_response_refused(plan))
            }
            format => Handling::Buffer(format),
        }
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

/// How a response body is read for redaction, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON document: `application/json`, `text/json`, `application/x-json`, `*/*+json`.
    Json,
    /// One JSON text per line: NDJSON / JSON Lines (`application/x-ndjson`, `application/jsonl`, ...).
    Lines,
    /// RFC 7464 JSON text sequences: each record starts with RS (0x1E); `application/json-seq`.
    Sequence,
    /// Anything else, a missing type, or a value that is not exactly one media type.
    Unreadable,
}

/// The format of a response body. The `Content-Type` must be exactly one media type
/// (RFC 9110: `type/subtype` tokens, then `;` parameters): Envoy joins repeated headers with
/// `,`, and a value such as `application/json, charset=utf-8` is no media type at all, so what
/// the client's parser does with it is unknown.
pub fn body_format(content_type: Option<&str>) -> BodyFormat {
    let Some(essence) = content_type.and_then(media_type_essence) else {
        return BodyFormat::Unreadable;
    };
    match essence.as_str() {
        "application/json" | "text/json" | "application/x-json" | "text/x-json" => BodyFormat::Json,
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonl"
        | "application/jsonlines"
        | "application/x-jsonlines"
        | "application/json-lines" => BodyFormat::Lines,
        "application/json-seq" => BodyFormat::Sequence,
        other if other.ends_with("+json") => BodyFormat::Json,
        other if other.ends_with("+json-seq") => BodyFormat::Sequence,
        _ => BodyFormat::Unreadable,
    }
}

/// The `Accept` a redacting route forwards: the media ranges of the client's `Accept` finguard
/// can redact, or `application/json`. `*/*` and `application/*` become `application/json`, so
/// content negotiation (`text/csv`, `text/html`) cannot pick a format that would be refused.
pub fn redactable_accept(accept: Option<&str>) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for range in accept.unwrap_or("").split(',').map(str::trim) {
        let essence = media_type_essence(range);
        let readable = essence.as_deref().is_some_and(|e| {
            !e.starts_with("*/") && body_format(Some(e)) != BodyFormat::Unreadable
        });
        if readable && !kept.contains(&range) {
            kept.push(range);
        }
    }
    if kept.is_empty() {
        "application/json".to_owned()
    } else {
        kept.join(", ")
    }
}

/// The lowercase `type/subtype` of a strict media type ([`media_type::parse`]), `None` for
/// anything else.
fn media_type_essence(value: &str) -> Option<String> {
    media_type::parse(value).map(|media| media.essence.to_ascii_lowercase())
}

/// Judges a complete buffered body of the format the headers phase found.
pub fn on_response_body(plan: &ResponsePlan, format: BodyFormat, body: &[u8]) -> BodyDecision {
    if body.len() > plan.policy.max_body_bytes {
        return BodyDecision::Replace(on_response_refused(plan));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return BodyDecision::Unchanged;
    }
    let rewritten = match format {
        BodyFormat::Json => rewrite_counted(body, &plan.policy, plan.unmasked).map_err(|_| ()),
        BodyFormat::Lines => rewrite_records(body, b'\n', plan),
        BodyFormat::Sequence => rewrite_records(body, 0x1e, plan),
        BodyFormat::Unreadable => Err(()),
    };
    match rewritten {
        Ok(None) => BodyDecision::Unchanged,
        Ok(Some((body, fields))) => BodyDecision::Rewritten(body, fields),
        Err(()) => BodyDecision::Replace(on_response_refused(plan)),
    }
}

/// Rewrites each record of a body split at `separator` (kept in place, as is the whitespace
/// around each record); a record that is not JSON fails the whole body.
fn rewrite_records(
    body: &[u8],
    separator: u8,
    plan: &ResponsePlan,
) -> Result<Option<(Vec<u8>, usize)>, ()> {
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut fields = 0;
    let mut changed = false;
    for (i, record) in body.split(|&b| b == separator).enumerate() {
        if i > 0 {
            out.push(separator);
        }
        let start = record
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(record.len());
        let end = record
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(start, |at| at + 1);
        let (lead, core, trail) = (&record[..start], &record[start..end], &record[end..]);
        out.extend_from_slice(lead);
        if !core.is_empty() {
            match rewrite_counted(core, &plan.policy, plan.unmasked).map_err(|_| ())? {
                None => out.extend_from_slice(core),
                Some((new, count)) => {
                    out.extend_from_slice(&new);
                    fields += count;
                    changed = true;
                }
            }
        }
        out.extend_from_slice(trail);
    }
    Ok(changed.then_some((out, fields)))
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
            Handling::Buffer(BodyFormat::Json)
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
        // Bodiless responses pass.
        for head in [
            json_head(204),
            json_head(304),
            ResponseHead {
                end_of_stream: true,
                ..json_head(200)
            },
        ] {
            assert_eq!(on_response_headers(&p, &head).handling, Handling::Pass);
        }
        // What cannot be read cannot be redacted: refused by default on a redacting route,
        // passed only where the route opts out.
        let opted_out = plan_for(json!({"detect": ["pan"], "non_json": "pass"}), "GET");
        let csv = ResponseHead {
            content_type: Some("text/csv"),
            ..json_head(200)
        };
        assert!(matches!(
            on_response_headers(&p, &csv).handling,
            Handling::Replace(_)
        ));
        assert_eq!(
            on_response_headers(&opted_out, &csv).handling,
            Handling::Pass
        );
        // Partial content never passes a redacting route.
        for partial in [
            json_head(206),
            ResponseHead {
                content_range: Some("bytes 0-9/100"),
                ..json_head(200)
            },
        ] {
            assert!(matches!(
                on_response_headers(&p, &partial).handling,
                Handling::Replace(_)
            ));
        }
        let head_request = plan_for(json!({"detect": ["pan"]}), "HEAD");
        assert_eq!(
            on_response_headers(&head_request, &json_head(200)).handling,
            Handling::Pass
        );
        let refusing = plan_for(json!({"detect": ["pan"], "non_json": "refuse"}), "GET");
        assert!(matches!(
            on_response_headers(&refusing, &csv).handling,
            Handling::Replace(_)
        ));
        // A route that only scrubs headers passes non-JSON unless told to refuse it.
        let headers_only = plan_for(json!({"headers": {"remove": ["x-backend"]}}), "GET");
        assert_eq!(
            on_response_headers(&headers_only, &csv).handling,
            Handling::Pass
        );
    }

    #[test]
    fn bodies_are_rewritten_or_refused() {
        let p = plan_for(json!({"detect": ["pan"], "max_body_bytes": 64}), "GET");
        assert_eq!(
            on_response_body(&p, BodyFormat::Json, b""),
            BodyDecision::Unchanged
        );
        assert_eq!(
            on_response_body(&p, BodyFormat::Json, br#"{"a": 1}"#),
            BodyDecision::Unchanged
        );
        assert_eq!(
            on_response_body(&p, BodyFormat::Json, br#"{"pan": "4111111111111111"}"#),
            BodyDecision::Rewritten(br#"{"pan": "411111******1111"}"#.to_vec(), 1)
        );
        assert!(matches!(
            on_response_body(&p, BodyFormat::Json, b"{oops"),
            BodyDecision::Replace(_)
        ));
        assert!(matches!(
            on_response_body(&p, BodyFormat::Json, &[b' '; 65]),
            BodyDecision::Replace(_)
        ));
    }

    #[test]
    fn formats_from_strict_media_types() {
        for (value, format) in [
            ("application/json", BodyFormat::Json),
            ("Application/JSON; charset=UTF-8", BodyFormat::Json),
            ("application/json;charset=\"utf-8\"", BodyFormat::Json),
            ("application/json;", BodyFormat::Json),
            ("text/json", BodyFormat::Json),
            ("application/x-json", BodyFormat::Json),
            ("application/problem+json", BodyFormat::Json),
            ("application/vnd.api+json; version=2", BodyFormat::Json),
            ("application/x-ndjson", BodyFormat::Lines),
            ("application/jsonl", BodyFormat::Lines),
            ("application/json-seq", BodyFormat::Sequence),
            ("application/geo+json-seq", BodyFormat::Sequence),
        ] {
            assert_eq!(body_format(Some(value)), format, "{value}");
        }
        for value in [
            "application/json, charset=utf-8",
            "application/json,text/html",
            "application/x-www-form-urlencoded, a/b+json",
            "application/json; charset",
            "application/json; charset=\"utf-8",
            "application /json",
            "application/",
            "/json",
            "json",
            "",
            "text/plain",
            "text/csv",
            "text/html; charset=utf-8",
            "application/javascript",
            "application/octet-stream",
            "application/json+x",
            "application/jsonx",
            "application/json\u{0}",
        ] {
            assert_eq!(
                body_format(Some(value)),
                BodyFormat::Unreadable,
                "{value:?}"
            );
        }
        assert_eq!(body_format(None), BodyFormat::Unreadable);
    }

    #[test]
    fn accept_is_pinned_to_what_can_be_redacted() {
        for (asked, pinned) in [
            (None, "application/json"),
            (Some("*/*"), "application/json"),
            (Some("text/csv"), "application/json"),
            (
                Some("text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"),
                "application/json",
            ),
            (Some("application/json"), "application/json"),
            (
                Some("application/problem+json, text/csv"),
                "application/problem+json",
            ),
            (
                Some("application/x-ndjson; q=1, text/plain"),
                "application/x-ndjson; q=1",
            ),
            (Some("application/json, charset=utf-8"), "application/json"),
        ] {
            assert_eq!(redactable_accept(asked), pinned, "{asked:?}");
        }
    }

    #[test]
    fn records_are_redacted_one_by_one() {
        let p = plan_for(json!({"detect": ["pan"]}), "GET");
        let lines = b"{\"pan\": \"4111111111111111\"}\n{\"a\": 1}\r\n\n[\"4111111111111111\"]\n";
        let BodyDecision::Rewritten(out, 2) = on_response_body(&p, BodyFormat::Lines, lines) else {
            panic!("not rewritten")
        };
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("4111111111111111"), "{out}");
        assert_eq!(out.matches('\n').count(), 4, "{out}");
        let seq = b"\x1e{\"pan\": \"4111111111111111\"}\n\x1e{\"a\": 1}\n";
        let BodyDecision::Rewritten(out, 1) = on_response_body(&p, BodyFormat::Sequence, seq)
        else {
            panic!("not rewritten")
        };
        assert!(out.starts_with(b"\x1e") && !String::from_utf8_lossy(&out).contains("41111111"));
        for bad in [&b"{\"a\": 1}\n{oops\n"[..], b"4111111111111111 x\n"] {
            assert!(matches!(
                on_response_body(&p, BodyFormat::Lines, bad),
                BodyDecision::Replace(_)
            ));
        }
        assert!(matches!(
            on_response_body(&p, BodyFormat::Unreadable, b"pan,4111111111111111"),
            BodyDecision::Replace(_)
        ));
    }
}
