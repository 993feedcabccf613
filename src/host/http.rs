//! The HTTP context: one per request. It reads the request headers in one host call, runs the
//! core's headers phase and applies the verdict: forward with header changes, answer locally,
//! hold the request until its provider's keys arrive (the root context answers it then), or hold
//! it while the body streams in and judge the body at its end.
//!
//! A held request must never slip through: while it waits (for keys or for the rest of its body)
//! every body callback answers `Pause`, which keeps Envoy buffering instead of forwarding.

use super::abi;
use super::apply::{apply_forward, apply_verdict, send, send_refusal_internal};
use super::response;
use super::shared_store::SharedData;
use super::state::{hold_permits, BodyProgress, Shared, Stream, Waiter};
use super::telemetry::{self, SharedRecord};
use super::{log, now_ms, now_ns};
use crate::audit::{metric, StreamFacts};
use crate::decision::Verdict;
use crate::pipeline::{self, VmState};
use crate::problem::{Refusal, RefusalContext};
use crate::ratelimit::concurrency;
use crate::reason::Reason;
use crate::request::RequestView;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};
use std::rc::Rc;

pub struct FilterContext {
    context_id: u32,
    vm: Shared,
    /// Added to the upstream's response (rate-limit fields on allowed requests).
    response_headers: Vec<(&'static str, String)>,
    /// What the audit line and the metrics will say about this request.
    record: SharedRecord,
    /// For the audit line (read once with the headers, when auditing is on).
    request_id: Option<String>,
    method: Option<String>,
    route_has_limits: bool,
    /// The response phase (response policies: see host/response.rs).
    held: response::Held,
    /// This request's audit line will be written (decided when its headers arrive).
    audit_line: bool,
    /// This request's phases are timed: its audit line is written, or it is in the sample.
    timing: bool,
    /// When the request headers were judged (ms): the body phase's time unless its rules
    /// compare times ([`crate::decision::PendingBody::reads_clock`]).
    headers_at_ms: i64,
}

impl FilterContext {
    pub fn new(context_id: u32, vm: Shared) -> FilterContext {
        FilterContext {
            context_id,
            vm,
            response_headers: Vec::new(),
            record: SharedRecord::default(),
            request_id: None,
            method: None,
            route_has_limits: false,
            held: response::Held::default(),
            audit_line: false,
            timing: false,
            headers_at_ms: 0,
        }
    }

    /// Records a phase's verdict for the audit line and the access log (on this stream).
    fn decided(&self, config: &crate::config::Config, verdict: &Verdict) {
        telemetry::note(&self.record, config, verdict);
        if !matches!(verdict, Verdict::WaitForKeys { .. }) {
            telemetry::publish(&self.record);
        }
    }

    /// Adds the time since `started_ns` to this request's filter time and to the phase's
    /// histogram, if this request is timed.
    fn timed(&self, phase_metric: &str, started_ns: i64) {
        if !self.timing {
            return;
        }
        let micros = u64::try_from(now_ns().saturating_sub(started_ns) / 1000).unwrap_or(0);
        if let Ok(mut record) = self.record.try_borrow_mut() {
            record.filter_us = record.filter_us.saturating_add(micros);
        }
        telemetry::histogram(phase_metric, micros);
    }
}

impl Context for FilterContext {}

impl HttpContext for FilterContext {
    fn on_http_request_headers(&mut self, headers: usize, end_of_stream: bool) -> Action {
        let started = now_ns();
        self.headers_at_ms = started / 1_000_000;
        self.audit_line = self.vm.try_borrow().is_ok_and(|guard| {
            guard
                .as_ref()
                .is_some_and(|vm| telemetry::audit_line_wanted(&vm.config, started / 1_000_000))
        });
        self.timing = self.audit_line || telemetry::sampled_for_timing();
        let action = self.judge_headers(headers, end_of_stream, started / 1_000_000);
        self.timed(metric::phase_time::REQUEST_HEADERS, started);
        action
    }

    /// Trailers end the request without a final body callback. A held request must not be
    /// released by them (the SDK's default answer would be Continue): a waiting request records
    /// it, a request whose body is being judged is refused.
    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        let verdict = {
            let Ok(mut guard) = self.vm.try_borrow_mut() else {
                return refuse_internal();
            };
            let Some(vm) = guard.as_mut() else {
                return Action::Continue;
            };
            let config = Rc::clone(&vm.config);
            match vm.streams.get_mut(&self.context_id) {
                None => return Action::Continue,
                Some(Stream::Waiting(waiter)) => {
                    if matches!(waiter.body, BodyProgress::Open) {
                        waiter.body = BodyProgress::EndedWithTrailers;
                    }
                    return Action::Pause;
                }
                Some(Stream::ReadingBody(pending)) => {
                    let verdict = pipeline::on_request_trailers(&config, pending);
                    vm.streams.remove(&self.context_id);
                    self.decided(&config, &verdict);
                    verdict
                }
            }
        };
        self.settle(&verdict)
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        for (name, value) in self.response_headers.drain(..) {
            let _ = abi::set_header(MapType::HttpResponseHeaders, name, &value);
        }
        if !self.held.expected(&self.vm, self.context_id) {
            return Action::Continue;
        }
        let started = if self.timing { now_ns() } else { 0 };
        let action = response::on_headers(
            &self.vm,
            self.context_id,
            end_of_stream,
            &mut self.held,
            &self.record,
        );
        self.timed(metric::phase_time::RESPONSE_HEADERS, started);
        action
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.held.is_active() {
            return Action::Continue;
        }
        let started = if self.timing { now_ns() } else { 0 };
        let action = response::on_body(&mut self.held, body_size, end_of_stream, &self.record);
        if end_of_stream {
            self.timed(metric::phase_time::RESPONSE_BODY, started);
        }
        action
    }

    fn on_http_response_trailers(&mut self, _trailers: usize) -> Action {
        response::on_trailers(&mut self.held, &self.record)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Most bodies are not held (the route reads none): let them pass without the clock and
        // histogram host calls, which would otherwise cost every frame of every upload.
        if !self.is_held() {
            return Action::Continue;
        }
        let started = if self.timing { now_ns() } else { 0 };
        let action = self.judge_body(body_size, end_of_stream, started);
        self.timed(metric::phase_time::REQUEST_BODY, started);
        action
    }

    /// Stream end: one audit line and the request's metrics.
    fn on_log(&mut self) {
        let Ok(guard) = self.vm.try_borrow() else {
            return;
        };
        let Some(vm) = guard.as_ref() else {
            return;
        };
        let Ok(record) = self.record.try_borrow() else {
            return;
        };
        telemetry::finish(&record);
        telemetry::table_pressure(&vm.config);
        if self.audit_line {
            let facts = StreamFacts {
                now_ms: now_ns() / 1_000_000,
                request_id: self.request_id.as_deref(),
                method: self.method.as_deref(),
                status: telemetry::response_code(),
                route_has_limits: self.route_has_limits,
            };
            telemetry::write_audit_line(&record, &vm.config, facts);
        }
    }
}

impl FilterContext {
    /// This request waits for keys or for its body. True when the VM state cannot be read,
    /// so that the body phase fails closed.
    fn is_held(&self) -> bool {
        self.vm.try_borrow().map_or(true, |guard| {
            guard
                .as_ref()
                .is_some_and(|vm| vm.streams.contains_key(&self.context_id))
        })
    }

    fn judge_headers(&mut self, _headers: usize, end_of_stream: bool, now: i64) -> Action {
        // One host call for every header (values that are not UTF-8 are kept lossily: see
        // HeaderMap). The SDK's `get_map` would panic on such a value and take the VM down.
        let Ok(headers) = abi::header_map(MapType::HttpRequestHeaders) else {
            log(LogLevel::Error, "cannot read request headers; refusing");
            return refuse_internal();
        };
        let mut request = RequestView::from_map(headers);
        // The borrow ends before the verdict is applied (applying calls into Envoy).
        let (verdict, config) = {
            let Ok(mut guard) = self.vm.try_borrow_mut() else {
                return refuse_internal();
            };
            let Some(vm) = guard.as_mut() else {
                drop(guard);
                return refuse_without_policy(&request);
            };
            let config = Rc::clone(&vm.config);
            if config.needs_client_address {
                if let Some(address) = source_address() {
                    request = request.with_source_address(&address);
                }
            }
            let state = VmState {
                keys: &mut vm.keys,
                cache: &mut vm.cache,
                store: &mut SharedData,
                budget: &mut vm.budget,
            };
            let verdict = pipeline::on_request_headers(&config, &request, state, now, true);
            if self.audit_line {
                self.request_id = request.request_id().map(str::to_owned);
                self.method = Some(request.method().to_owned());
            }
            if let Verdict::WaitForKeys { route, .. } = verdict {
                self.route_has_limits = config
                    .routes
                    .routes()
                    .get(route)
                    .is_some_and(|r| !r.rate_limits.is_empty());
                let deadline_ms =
                    now.saturating_add(i64::try_from(config.jwks_wait_ms).unwrap_or(0));
                let waiter = Waiter {
                    record: Rc::clone(&self.record),
                    request,
                    deadline_ms,
                    key_generation: vm.key_generation,
                    route,
                    body: if end_of_stream {
                        BodyProgress::Complete(Vec::new())
                    } else {
                        BodyProgress::Open
                    },
                };
                vm.streams.insert(self.context_id, Stream::Waiting(waiter));
                return Action::Pause;
            }
            self.decided(&config, &verdict);
            self.route_has_limits = !config.rate_limits.global.is_empty()
                || matches!(&verdict, Verdict::Allow(f) | Verdict::ReadBody { forward: f, .. }
                    if f.route.and_then(|i| config.routes.routes().get(i)).is_some_and(|r| !r.rate_limits.is_empty()));
            (verdict, config)
        };
        match verdict {
            Verdict::ReadBody { forward, pending } => {
                hold_permits(&self.vm, self.context_id, &forward);
                if !apply_forward(&forward) {
                    return Action::Pause;
                }
                response::hold(&self.vm, self.context_id, &forward);
                if end_of_stream {
                    // No body will come: judge the empty one now.
                    let verdict = pipeline::on_request_body(&config, &pending, &[], now / 1000);
                    self.decided(&config, &verdict);
                    return self.settle(&verdict);
                }
                self.set_stream(Stream::ReadingBody(pending));
                Action::Pause
            }
            Verdict::Allow(forward) => {
                hold_permits(&self.vm, self.context_id, &forward);
                self.response_headers = forward.response_headers.clone();
                if apply_forward(&forward) {
                    response::hold(&self.vm, self.context_id, &forward);
                    Action::Continue
                } else {
                    Action::Pause
                }
            }
            verdict if apply_verdict(&verdict) => Action::Continue,
            _ => Action::Pause,
        }
    }

    /// `started_ns`: the clock read for timing, 0 if this request is not timed.
    fn judge_body(&mut self, body_size: usize, end_of_stream: bool, started_ns: i64) -> Action {
        let (verdict, pending) = {
            let Ok(mut guard) = self.vm.try_borrow_mut() else {
                return refuse_internal();
            };
            let Some(vm) = guard.as_mut() else {
                return Action::Continue;
            };
            let config = Rc::clone(&vm.config);
            match vm.streams.get_mut(&self.context_id) {
                None => return Action::Continue,
                Some(Stream::Waiting(waiter)) => {
                    // Judged later; keep what the body phase may need, bounded by the route.
                    if end_of_stream {
                        let limit = config
                            .routes
                            .routes()
                            .get(waiter.route)
                            .map_or(0, |r| r.request.max_body_bytes);
                        waiter.body = if body_size > limit {
                            BodyProgress::TooLarge
                        } else {
                            read_body(body_size)
                                .map_or(BodyProgress::TooLarge, BodyProgress::Complete)
                        };
                    }
                    return Action::Pause;
                }
                Some(Stream::ReadingBody(pending)) => {
                    let limit = config
                        .routes
                        .routes()
                        .get(pending.route)
                        .map_or(0, |r| r.request.max_body_bytes);
                    if body_size > limit {
                        (
                            pipeline::on_body_overflow(&config, pending),
                            vm.streams.remove(&self.context_id),
                        )
                    } else if !end_of_stream {
                        return Action::Pause;
                    } else {
                        let body = read_body(body_size).unwrap_or_default();
                        let now_ms = match (pending.reads_clock, started_ns) {
                            (false, _) => self.headers_at_ms,
                            (true, 0) => now_ns() / 1_000_000,
                            (true, started) => started / 1_000_000,
                        };
                        (
                            pipeline::on_request_body(&config, pending, &body, now_ms / 1000),
                            vm.streams.remove(&self.context_id),
                        )
                    }
                }
            }
        };
        drop(pending);
        if let Ok(guard) = self.vm.try_borrow() {
            if let Some(vm) = guard.as_ref() {
                self.decided(&vm.config, &verdict);
            }
        }
        self.settle(&verdict)
    }

    /// Applies a body-phase verdict; a refused request's response is finguard's own, so its
    /// response plan is dropped.
    fn settle(&self, verdict: &Verdict) -> Action {
        if apply_verdict(verdict) {
            Action::Continue
        } else {
            response::forget(&self.vm, self.context_id);
            Action::Pause
        }
    }

    fn set_stream(&self, stream: Stream) {
        if let Ok(mut guard) = self.vm.try_borrow_mut() {
            if let Some(vm) = guard.as_mut() {
                vm.streams.insert(self.context_id, stream);
            }
        }
    }
}

impl Drop for FilterContext {
    /// The stream is over, however it ended (completed, reset by the client, answered locally):
    /// forget it if it was held, and give back its in-flight units.
    fn drop(&mut self) {
        if let Ok(mut guard) = self.vm.try_borrow_mut() {
            if let Some(vm) = guard.as_mut() {
                vm.streams.remove(&self.context_id);
                vm.responses.remove(&self.context_id);
                if let Some(permits) = vm.permits.remove(&self.context_id) {
                    concurrency::release(
                        &mut SharedData,
                        &vm.config.rate_limits.buckets,
                        &permits,
                        now_ms().saturating_mul(1000),
                    );
                }
            }
        }
    }
}

/// Envoy's `source.address` (the downstream peer, `ip:port`).
fn source_address() -> Option<String> {
    let bytes = hostcalls::get_property(vec!["source", "address"])
        .ok()
        .flatten()?;
    String::from_utf8(bytes).ok()
}

/// The whole buffered request body (only valid inside a body callback).
pub fn read_body(size: usize) -> Option<Vec<u8>> {
    match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size) {
        Ok(body) => Some(body.unwrap_or_default()),
        Err(_) => None,
    }
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
