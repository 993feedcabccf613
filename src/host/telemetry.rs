//! What a request leaves behind: the audit line (Envoy's `wasm` logger, `info`, prefixed
//! `finguard-audit`), the decision in filter state for the access log, and Envoy metrics
//! (`/stats`, `/stats/prometheus`, prefixed `wasmcustom.` by Envoy).
//!
//! Metric ids are defined lazily by name and kept per VM. A host error on a metric is ignored:
//! telemetry must never change a decision.

use super::abi::{self, MetricKind};
use super::log;
use crate::audit::{metric, AuditRecord, Decision, StreamFacts};
use crate::config::Config;
use crate::decision::Verdict;
use crate::reason::{Class, Reason};
use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// The audit record of one request, shared by its HTTP context and (while it waits for keys)
/// the root context that answers it.
pub type SharedRecord = Rc<RefCell<AuditRecord>>;

thread_local! {
    static METRICS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

fn metric_id(kind: MetricKind, name: &str) -> Option<u32> {
    METRICS.with(|ids| {
        let mut ids = ids.try_borrow_mut().ok()?;
        if let Some(id) = ids.get(name) {
            return Some(*id);
        }
        let id = abi::define_metric(kind, name).ok()?;
        ids.insert(name.to_owned(), id);
        Some(id)
    })
}

pub fn count(name: &str, by: i64) {
    if let Some(id) = metric_id(MetricKind::Counter, name) {
        let _ = abi::increment_metric(id, by);
    }
}

pub fn gauge(name: &str, value: u64) {
    if let Some(id) = metric_id(MetricKind::Gauge, name) {
        let _ = abi::record_metric(id, value);
    }
}

pub fn histogram(name: &str, value: u64) {
    if let Some(id) = metric_id(MetricKind::Histogram, name) {
        let _ = abi::record_metric(id, value);
    }
}

/// Full-table events of the shared tables since the last request on this worker, as counters
/// `finguard.table_pressure.table.<buckets|lockouts>.event.<evicted|no_room|overflow>`.
pub fn table_pressure(config: &Config) {
    let limiting = &config.rate_limits;
    for (table, slots) in [
        ("buckets", &limiting.buckets),
        ("lockouts", &limiting.lockouts),
    ] {
        let pressure = slots.take_pressure();
        for (event, by) in [
            ("evicted", pressure.evicted),
            ("no_room", pressure.no_room),
            ("overflow", pressure.overflow),
        ] {
            if by > 0 {
                let name = format!("finguard.table_pressure.table.{table}.event.{event}");
                count(&name, i64::try_from(by).unwrap_or(i64::MAX));
            }
        }
    }
}

/// Folds a phase's verdict into the request's record and, when called on the request's own
/// stream (`on_stream`), publishes the decision in filter state for the access log.
pub fn note(record: &SharedRecord, config: &Config, verdict: &Verdict) {
    let Ok(mut record) = record.try_borrow_mut() else {
        return;
    };
    match verdict {
        Verdict::Allow(forward) | Verdict::ReadBody { forward, .. } => {
            if let Some(route) = forward.route.and_then(|i| config.routes.routes().get(i)) {
                record.route = Some(route.id.clone());
            }
            if forward.caller.is_some() {
                record.caller.clone_from(&forward.caller);
            }
            if let Some(reason) = forward.monitored {
                record.decision = Decision::Monitor;
                record.reason = Some(reason);
            }
        }
        Verdict::Refuse(refused) => {
            record.decision = Decision::Refuse;
            record.reason = Some(refused.refusal.reason);
            record.locked_out |= refused.locked_out;
            if refused.route_id.is_some() {
                record.route.clone_from(&refused.route_id);
            }
            if refused.caller.is_some() {
                record.caller.clone_from(&refused.caller);
            }
        }
        Verdict::WaitForKeys { .. } => {}
    }
}

/// The response phase replaced the upstream's response: a fail-closed refusal (decision
/// `refuse`), or a sanitised upstream 5xx (the request stays `allow`ed, the reason says why its
/// body was replaced). Runs on the stream: published at once.
pub fn note_response(record: &SharedRecord, reason: Reason) {
    if let Ok(mut record) = record.try_borrow_mut() {
        if reason != Reason::UpstreamFailure {
            record.decision = Decision::Refuse;
        }
        record.reason = Some(reason);
    }
    publish(record);
}

/// Fields the response phase redacted.
pub fn note_redacted(record: &SharedRecord, fields: usize) {
    if let Ok(mut record) = record.try_borrow_mut() {
        let fields = u32::try_from(fields).unwrap_or(u32::MAX);
        record.redacted_fields = record.redacted_fields.saturating_add(fields);
    }
}

/// Sets `wasm.finguard_decision` (and `wasm.finguard_reason`) on the current stream, for the
/// access log. Must run with the request's stream effective (its own callbacks, or after
/// `set_effective_context`).
/// Nothing is set when both are what was published last (each set is a host call).
pub fn publish(record: &SharedRecord) {
    let Ok(mut record) = record.try_borrow_mut() else {
        return;
    };
    let now = (record.decision, record.reason);
    if record.published == Some(now) {
        return;
    }
    record.published = Some(now);
    let _ = abi::set_property("finguard_decision", record.decision.as_str().as_bytes());
    if let Some(reason) = record.reason {
        let _ = abi::set_property("finguard_reason", reason.slug().as_bytes());
    }
}

/// One request in this many has its phases timed for `finguard.filter_time_us` when its audit
/// line is not written (timing costs two host calls per phase; the sample keeps the
/// distribution).
pub const PHASE_TIME_SAMPLE: u32 = 16;

thread_local! {
    static REQUESTS_SEEN: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether this VM's next request is one of the timing sample.
pub fn sampled_for_timing() -> bool {
    REQUESTS_SEEN.with(|seen| {
        let n = seen.get().wrapping_add(1);
        seen.set(n);
        n % PHASE_TIME_SAMPLE == 0
    })
}

thread_local! {
    /// Envoy's answer to "does the `wasm` logger emit info?", and when it was asked (ms).
    static LOGS_INFO: std::cell::Cell<Option<(i64, bool)>> = const { std::cell::Cell::new(None) };
}

/// How long the logger's level is taken as known: a level changed through Envoy's admin
/// endpoint takes effect on the audit line within this time.
const LOG_LEVEL_TTL_MS: i64 = 1000;

/// Whether the audit line of a request starting at `now_ms` will be written: auditing is on and
/// Envoy's `wasm` logger emits `info` (asked at most once a second, not once per request).
pub fn audit_line_wanted(config: &Config, now_ms: i64) -> bool {
    if !config.audit.enabled {
        return false;
    }
    LOGS_INFO.with(|known| match known.get() {
        Some((asked, answer)) if (0..LOG_LEVEL_TTL_MS).contains(&now_ms.saturating_sub(asked)) => {
            answer
        }
        _ => {
            let answer = abi::logs_info();
            known.set(Some((now_ms, answer)));
            answer
        }
    })
}

/// At stream end: the per-request metrics.
pub fn finish(record: &AuditRecord) {
    let reason = record.reason;
    count(
        &metric::requests(record.decision.as_str(), reason, record.route.as_deref()),
        1,
    );
    if let Some(reason) = reason {
        match reason.class() {
            Class::CredentialInvalid | Class::CredentialMissing => {
                count(metric::AUTHN_FAILURES, 1);
            }
            Class::Limited => count(metric::RATE_LIMITED, 1),
            Class::Other => {}
        }
    }
    if record.locked_out {
        count(metric::LOCKOUTS, 1);
    }
    if record.redacted_fields > 0 {
        count(metric::REDACTED_FIELDS, i64::from(record.redacted_fields));
    }
}

/// At stream end, when [`audit_line_wanted`] said so at its start: the audit line.
pub fn write_audit_line(record: &AuditRecord, config: &Config, facts: StreamFacts<'_>) {
    let event = record.event(&config.audit, &config.api_keys, facts);
    match serde_json::to_string(&event) {
        Ok(line) => log(LogLevel::Info, &format!("finguard-audit {line}")),
        Err(_) => log(LogLevel::Warn, "finguard-audit: cannot serialise an event"),
    }
}

/// Envoy's `response.code` property (an 8-byte little-endian integer).
pub fn response_code() -> Option<u32> {
    let bytes = hostcalls::get_property(vec!["response", "code"])
        .ok()
        .flatten()?;
    let raw: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    u32::try_from(i64::from_le_bytes(raw)).ok()
}
