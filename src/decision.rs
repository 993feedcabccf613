//! What the pipeline decided for one request: forward it (with header changes, limits held and
//! the response plan), refuse it (the rendered [`Refusal`] and what the audit record needs), wait
//! for keys, or read its body first.

use crate::authn::caller::Caller;
use crate::problem::Refusal;
use crate::reason::Reason;

/// A refusal with what the audit record says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub refusal: Refusal,
    /// This failed authentication locked the client address out.
    pub locked_out: bool,
    /// The matched route's id, when a route matched.
    pub route_id: Option<String>,
    /// The authenticated caller, when the refusal came after authentication.
    pub caller: Option<Caller>,
}

/// What the pipeline decided for the headers phase of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Forward upstream after applying these header changes.
    Allow(Forward),
    /// Answer locally; nothing reaches the upstream.
    Refuse(Refused),
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
