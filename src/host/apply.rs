//! Applying the core's decisions to the current stream: header changes of a forwarded request,
//! local replies for refusals, and the fail-closed 500 when the host itself misbehaves.

use super::{abi, log};
use crate::decision::{Forward, Verdict};
use crate::problem::Refusal;
use proxy_wasm::types::{LogLevel, MapType};

/// Applies a verdict to the current (effective) stream. True when the request may continue.
pub fn apply_verdict(verdict: &Verdict) -> bool {
    match verdict {
        Verdict::Allow(forward) => apply_forward(forward),
        Verdict::Refuse(refused) => {
            if refused.locked_out {
                log(
                    LogLevel::Warn,
                    "failed-authentication lockout: client address locked out",
                );
            }
            send(&refused.refusal);
            false
        }
        // Only the HTTP context registers waiters and body readers; a re-judged request
        // reaching here is a bug: fail closed.
        Verdict::WaitForKeys { .. } | Verdict::ReadBody { .. } => send_refusal_internal(),
    }
}

/// Header changes of a forwarded request. False (and a 500 sent) if the host refuses them.
pub fn apply_forward(forward: &Forward) -> bool {
    for name in &forward.remove {
        if abi::remove_header(MapType::HttpRequestHeaders, name).is_err() {
            return send_refusal_internal();
        }
    }
    for (name, value) in &forward.set {
        if abi::set_header(MapType::HttpRequestHeaders, name, value).is_err() {
            return send_refusal_internal();
        }
    }
    if let Some(reason) = forward.monitored {
        log(
            LogLevel::Info,
            &format!("monitor mode: would refuse ({})", reason.slug()),
        );
    }
    true
}

/// Answers the current stream with `refusal`; false if the host refused to.
pub fn send_local(refusal: &Refusal) -> bool {
    let headers: Vec<(&str, &str)> = refusal
        .headers
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    abi::send_local_response(refusal.status, &headers, refusal.body.as_bytes()).is_ok()
}

pub fn send(refusal: &Refusal) {
    if !send_local(refusal) {
        log(
            LogLevel::Error,
            "cannot send the local response; resetting the stream",
        );
        let _ = abi::reset_request();
    }
}

/// Fail closed when the host itself misbehaves: a generic 500, nothing forwarded.
pub fn send_refusal_internal() -> bool {
    let body = br#"{"type":"about:blank","title":"Internal error","status":500}"#;
    let headers = [
        ("content-type", "application/problem+json"),
        ("cache-control", "no-store"),
    ];
    if abi::send_local_response(500, &headers, body).is_err() {
        let _ = abi::reset_request();
    }
    false
}
