//! The response phase on the ABI side: reads the response head, applies what
//! [`crate::response`] decides (header changes, hold and buffer the body, or answer locally
//! instead), and at the end of a held body replaces it with the rewritten one and fixes
//! `content-length`.
//!
//! A held response never slips through: while the body streams in, every body callback answers
//! `Pause` (Envoy buffers); a body over the limit, trailers, or a body that cannot be rewritten
//! are answered with a 502 problem instead. Envoy sends a local reply made in the response phase
//! directly to the client (its headers were held, nothing was sent yet).

use super::abi;
use super::apply::send_local;
use super::log;
use super::state::Shared;
use super::telemetry::{self, SharedRecord};
use crate::decision::Forward;
use crate::problem::Refusal;
use crate::response::{
    on_response_body, on_response_headers, on_response_refused, BodyDecision, BodyFormat, Handling,
    ResponseHead, ResponsePlan,
};
use proxy_wasm::types::{Action, LogLevel, MapType};

/// The response phase of one stream, kept by its HTTP context.
#[derive(Default)]
pub enum Held {
    /// Nothing held: callbacks continue.
    #[default]
    Nothing,
    /// Headers held, body buffering.
    Buffering(ResponsePlan, BodyFormat),
    /// Answered locally: nothing of the upstream's response may continue.
    Replaced,
}

impl Held {
    /// Whether the response phase has anything to do for this stream (a plan is waiting, or a
    /// body is held or replaced): lets the HTTP context skip timing and calls otherwise.
    pub fn expected(&self, vm: &Shared, context_id: u32) -> bool {
        self.is_active()
            || vm
                .try_borrow()
                .ok()
                .and_then(|vm| vm.as_ref().map(|vm| vm.responses.contains_key(&context_id)))
                .unwrap_or(false)
    }

    pub fn is_active(&self) -> bool {
        !matches!(self, Held::Nothing)
    }
}

/// Remembers the response plan of a forwarded request until its response arrives.
pub fn hold(vm: &Shared, context_id: u32, forward: &Forward) {
    let Some(plan) = &forward.response else {
        return;
    };
    if let Ok(mut guard) = vm.try_borrow_mut() {
        if let Some(vm) = guard.as_mut() {
            vm.responses.insert(context_id, plan.clone());
        }
    }
}

/// The request was answered locally: its response is finguard's own.
pub fn forget(vm: &Shared, context_id: u32) {
    if let Ok(mut guard) = vm.try_borrow_mut() {
        if let Some(vm) = guard.as_mut() {
            vm.responses.remove(&context_id);
        }
    }
}

/// `on_http_response_headers`.
pub fn on_headers(
    vm: &Shared,
    context_id: u32,
    end_of_stream: bool,
    held: &mut Held,
    record: &SharedRecord,
) -> Action {
    let action = headers_phase(vm, context_id, end_of_stream, held, record);
    if action == Action::Pause && !matches!(held, Held::Buffering(..)) {
        *held = Held::Replaced;
    }
    action
}

fn headers_phase(
    vm: &Shared,
    context_id: u32,
    end_of_stream: bool,
    held: &mut Held,
    record: &SharedRecord,
) -> Action {
    let plan = match vm.try_borrow_mut() {
        Ok(mut guard) => guard
            .as_mut()
            .and_then(|vm| vm.responses.remove(&context_id)),
        Err(_) => None,
    };
    let Some(plan) = plan else {
        return Action::Continue;
    };
    // One host call for the whole head; removals only for headers that are present.
    let Ok(pairs) = abi::header_map(MapType::HttpResponseHeaders) else {
        return refuse(&on_response_refused(&plan), record);
    };
    let value = |name: &str| pairs.get(name);
    // Two Content-Type headers are no media type: joined, they fail the strict parse.
    let content_types: Vec<&str> = pairs.all("content-type").collect();
    let joined_types = (content_types.len() > 1).then(|| content_types.join(", "));
    let head = ResponseHead {
        status: value(":status").and_then(|s| s.parse().ok()).unwrap_or(0),
        content_type: joined_types.as_deref().or(value("content-type")),
        content_encoding: value("content-encoding"),
        content_range: value("content-range"),
        retry_after: value("retry-after"),
        end_of_stream,
    };
    if (100..200).contains(&head.status) {
        // An informational response: the plan is for the final one.
        if let Ok(mut guard) = vm.try_borrow_mut() {
            if let Some(vm) = guard.as_mut() {
                vm.responses.insert(context_id, plan);
            }
        }
        return Action::Continue;
    }
    let decision = on_response_headers(&plan, &head);
    if let Handling::Replace(refusal) = &decision.handling {
        return refuse(refusal, record);
    }
    let changed = decision
        .remove
        .iter()
        .filter(|name| pairs.contains(name))
        .all(|name| abi::remove_header(MapType::HttpResponseHeaders, name).is_ok())
        && decision.set.iter().all(|(name, value)| {
            abi::set_header(MapType::HttpResponseHeaders, name, value).is_ok()
        });
    if !changed {
        return refuse(&on_response_refused(&plan), record);
    }
    if let Handling::Buffer(format) = decision.handling {
        *held = Held::Buffering(plan, format);
        return Action::Pause;
    }
    Action::Continue
}

/// `on_http_response_body`.
pub fn on_body(
    held: &mut Held,
    body_size: usize,
    end_of_stream: bool,
    record: &SharedRecord,
) -> Action {
    let plan = match held {
        Held::Nothing => return Action::Continue,
        Held::Replaced => return Action::Pause,
        Held::Buffering(plan, _) => plan,
    };
    if body_size > plan.policy.max_body_bytes {
        let refusal = on_response_refused(plan);
        *held = Held::Replaced;
        return refuse(&refusal, record);
    }
    if !end_of_stream {
        return Action::Pause;
    }
    let Held::Buffering(plan, format) = std::mem::replace(held, Held::Replaced) else {
        return Action::Pause;
    };
    let Ok(body) = abi::response_body(body_size) else {
        return refuse(&on_response_refused(&plan), record);
    };
    let length = match on_response_body(&plan, format, &body) {
        // Nothing redacted: the upstream's body and length stand (one host call less).
        BodyDecision::Unchanged => {
            *held = Held::Nothing;
            return Action::Continue;
        }
        BodyDecision::Rewritten(new, fields) => {
            if abi::set_response_body(body_size, &new).is_err() {
                return refuse(&on_response_refused(&plan), record);
            }
            telemetry::note_redacted(record, fields);
            new.len()
        }
        BodyDecision::Replace(refusal) => return refuse(&refusal, record),
    };
    // The headers are still held: the length must match what is sent. A rewrite that kept the
    // length (masking only) leaves the upstream's framing as it was: one host call less.
    if length != body_size
        && abi::set_header(
            MapType::HttpResponseHeaders,
            "content-length",
            &length.to_string(),
        )
        .is_err()
        && abi::remove_header(MapType::HttpResponseHeaders, "content-length").is_err()
    {
        return refuse(&on_response_refused(&plan), record);
    }
    *held = Held::Nothing;
    Action::Continue
}

/// `on_http_response_trailers`: a held body ended by trailers is refused rather than released
/// unredacted (its final body callback does not come in every case).
pub fn on_trailers(held: &mut Held, record: &SharedRecord) -> Action {
    match std::mem::take(held) {
        Held::Buffering(plan, _) => {
            *held = Held::Replaced;
            refuse(&on_response_refused(&plan), record)
        }
        Held::Replaced => {
            *held = Held::Replaced;
            Action::Pause
        }
        Held::Nothing => Action::Continue,
    }
}

fn refuse(refusal: &Refusal, record: &SharedRecord) -> Action {
    telemetry::note_response(record, refusal.reason);
    log(
        LogLevel::Warn,
        &format!("response replaced ({})", refusal.reason.slug()),
    );
    if !send_local(refusal) {
        log(
            LogLevel::Error,
            "cannot replace the response; resetting the stream",
        );
        let _ = abi::reset_response();
    }
    Action::Pause
}
