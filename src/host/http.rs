//! The HTTP context: one per request. It reads the request headers in one host call, runs the
//! core's headers phase and applies the verdict: forward with header changes, answer locally,
//! or hold the request until its provider's keys arrive (the root context answers it then).

use super::root::{Vm, Waiter};
use super::{log, now_ms};
use crate::decision::{Reason, Refusal, RefusalContext, Verdict};
use crate::pipeline::{self, VmState};
use crate::request::RequestView;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel, MapType};
use std::cell::RefCell;
use std::rc::Rc;

/// The VM's state, shared by its root context and every HTTP context. `None` until configured.
pub type Shared = Rc<RefCell<Option<Vm>>>;

pub struct FilterContext {
    context_id: u32,
    vm: Shared,
}

impl FilterContext {
    pub fn new(context_id: u32, vm: Shared) -> FilterContext {
        FilterContext { context_id, vm }
    }
}

impl Context for FilterContext {}

impl HttpContext for FilterContext {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Ok(headers) = hostcalls::get_map(MapType::HttpRequestHeaders) else {
            log(LogLevel::Error, "cannot read request headers; refusing");
            return refuse_internal();
        };
        let request = RequestView::new(headers);
        let now = now_ms();
        // The borrow ends before the verdict is applied (applying calls into Envoy).
        let verdict = {
            let Ok(mut guard) = self.vm.try_borrow_mut() else {
                return refuse_internal();
            };
            let Some(vm) = guard.as_mut() else {
                drop(guard);
                return refuse_without_policy(&request);
            };
            let config = Rc::clone(&vm.config);
            let state = VmState {
                keys: &mut vm.keys,
                cache: &mut vm.cache,
            };
            let verdict = pipeline::on_request_headers(&config, &request, state, now / 1000, true);
            if let Verdict::WaitForKeys { .. } = verdict {
                let deadline_ms =
                    now.saturating_add(i64::try_from(config.jwks_wait_ms).unwrap_or(0));
                vm.waiters.push(Waiter {
                    context_id: self.context_id,
                    request,
                    deadline_ms,
                    key_generation: vm.key_generation,
                });
                return Action::Pause;
            }
            verdict
        };
        if apply_verdict(&verdict) {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

impl Drop for FilterContext {
    fn drop(&mut self) {
        // A request that waited for keys and was abandoned by its client.
        if let Ok(mut guard) = self.vm.try_borrow_mut() {
            if let Some(vm) = guard.as_mut() {
                vm.waiters.retain(|w| w.context_id != self.context_id);
            }
        }
    }
}

/// Applies a verdict to the current (effective) stream. True when the request may continue.
pub fn apply_verdict(verdict: &Verdict) -> bool {
    match verdict {
        Verdict::Allow(forward) => {
            for name in &forward.remove {
                if hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).is_err() {
                    return send_refusal_internal();
                }
            }
            for (name, value) in &forward.set {
                if hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)).is_err()
                {
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
        Verdict::Refuse(refusal) => {
            send(refusal);
            false
        }
        // Only the HTTP context registers waiters; a re-judged request is never told to wait.
        Verdict::WaitForKeys { .. } => send_refusal_internal(),
    }
}

fn send(refusal: &Refusal) {
    let headers: Vec<(&str, &str)> = refusal
        .headers
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    if hostcalls::send_http_response(refusal.status, headers, Some(refusal.body.as_bytes()))
        .is_err()
    {
        log(
            LogLevel::Error,
            "cannot send the local response; resetting the stream",
        );
        let _ = hostcalls::reset_http_request();
    }
}

/// Fail closed when the host itself misbehaves: a generic 500, nothing forwarded.
fn send_refusal_internal() -> bool {
    let body = br#"{"type":"about:blank","title":"Internal error","status":500}"#;
    let headers = vec![
        ("content-type", "application/problem+json"),
        ("cache-control", "no-store"),
    ];
    if hostcalls::send_http_response(500, headers, Some(body)).is_err() {
        let _ = hostcalls::reset_http_request();
    }
    false
}

/// No valid configuration loaded: fail closed with a clear 503.
fn refuse_without_policy(request: &RequestView) -> Action {
    let ctx = RefusalContext {
        realm: "finguard",
        request_id: request.request_id(),
        ..RefusalContext::default()
    };
    send(&Refusal::new(Reason::PolicyUnavailable, &ctx));
    Action::Pause
}

fn refuse_internal() -> Action {
    send_refusal_internal();
    Action::Pause
}
