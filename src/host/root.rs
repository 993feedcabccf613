//! The root context: one per VM (per Envoy worker). It compiles the configuration, keeps the
//! per-VM state (keys, token cache, requests waiting for keys) and drives the remote JWKS: on
//! every tick it installs keys other VMs published, fetches when due and it holds the lease, and
//! answers waiting requests whose keys arrived or whose wait ran out.

use super::abi;
use super::apply::{apply_forward, apply_verdict};
use super::http::FilterContext;
use super::response;
use super::shared_store::SharedData;
use super::state::{hold_permits, judge_complete_body, Shared, Stream, Vm, Waiter};
use super::{jwks_sync, log, now_ms, telemetry};
use crate::audit::metric;
use crate::authn::jwks::{KeyOrigin, KeySet};
use crate::authn::keys::KeySource;
use crate::config::Config;
use crate::decision::{Forward, Verdict};
use crate::pipeline::{self, VmState};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType};
use std::rc::Rc;
use std::time::Duration;

const TICK: Duration = Duration::from_millis(200);

#[derive(Default)]
pub struct Root {
    vm: Shared,
    /// When the shared tables' occupancy gauges are next reported (ms).
    occupancy_due_ms: i64,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let now = now_ms();
        let Ok(mut guard) = self.vm.try_borrow_mut() else {
            return;
        };
        let Some(vm) = guard.as_mut() else { return };
        let Some(provider) = vm.fetches.remove(&token) else {
            return;
        };
        let config = Rc::clone(&vm.config);
        let (Some(p), Some(KeySource::Remote(remote))) = (
            config.providers.get(provider),
            config.key_sources.get(provider),
        ) else {
            return;
        };
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten();
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten();
        let parsed = match (status.as_deref(), body) {
            (Some("200"), Some(body)) => {
                KeySet::parse(&body, KeyOrigin::Remote).map(|keys| (keys, body))
            }
            (Some(status), _) => Err(format!("HTTP status {status}")),
            (None, _) => Err("no response (connection failure or timeout)".into()),
        };
        match parsed {
            Ok((keys, body)) => {
                // Rounded up: a refresh interval is never shorter than configured.
                let fetched_at = (now + 999) / 1000;
                if !jwks_sync::publish(&p.name, fetched_at, &body) {
                    log(LogLevel::Warn, "could not publish JWKS to shared data");
                }
                log(
                    LogLevel::Info,
                    &format!(
                        "provider {}: fetched JWKS with {} usable keys",
                        p.name,
                        keys.len()
                    ),
                );
                telemetry::count(&metric::jwks_fetch(&p.name, true), 1);
                // Release the lease; the published fetch time now decides when the next is due.
                jwks_sync::hold_lease_until(&p.name, vm.nonce, now);
                vm.install(provider, keys, fetched_at, None);
            }
            Err(why) => {
                telemetry::count(&metric::jwks_fetch(&p.name, false), 1);
                log(
                    LogLevel::Warn,
                    &format!("provider {}: JWKS fetch failed: {why}", p.name),
                );
                jwks_sync::hold_lease_until(&p.name, vm.nonce, now + remote.retry_seconds * 1000);
            }
        }
        drop(guard);
        self.answer_waiters(now);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let text = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => Vec::new(),
            Err(_) => {
                log(
                    LogLevel::Critical,
                    "configuration refused: cannot read the plugin configuration",
                );
                return false;
            }
        };
        let config = match Config::compile(&text) {
            Ok(config) => config,
            Err(e) => {
                log(LogLevel::Critical, &format!("configuration refused: {e}"));
                telemetry::count(metric::CONFIG_REJECTED, 1);
                return self.refuse_configuration();
            }
        };
        let has_remote = config
            .key_sources
            .iter()
            .any(|s| matches!(s, KeySource::Remote(_)));
        // Every slot exists before traffic: later updates are all compare-and-swaps.
        if config.has_rate_limits {
            config.rate_limits.buckets.create_slots(&mut SharedData);
        }
        if config.rate_limits.lockout.is_some() {
            config.rate_limits.lockouts.create_slots(&mut SharedData);
        }
        let now = now_ms();
        let Ok(mut slot) = self.vm.try_borrow_mut() else {
            return false;
        };
        *slot = Some(Vm::new(config, now));
        drop(slot);
        // The timer drives remote key fetches and the table occupancy gauges.
        let tables = config_has_tables(&self.vm);
        if (has_remote || tables) && hostcalls::set_tick_period(TICK).is_err() {
            log(
                LogLevel::Critical,
                "configuration refused: cannot start the timer",
            );
            return false;
        }
        // Remember, for this Envoy process, that a valid policy has been serving.
        let _ = hostcalls::set_shared_data(CONFIG_LOADED_KEY, Some(b"1"), None);
        log(LogLevel::Info, "configuration loaded");
        telemetry::count(metric::CONFIG_LOADED, 1);
        true
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        self.sync_keys(now);
        self.report_key_age(now);
        self.answer_waiters(now);
        if now >= self.occupancy_due_ms {
            self.occupancy_due_ms = now + OCCUPANCY_PERIOD_MS;
            self.report_table_occupancy(now);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FilterContext::new(
            context_id,
            Rc::clone(&self.vm),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// How often the table occupancy gauges are sampled: [`crate::ratelimit::OCCUPANCY_SAMPLE`] shared-data
/// reads a table each time, off the request path.
const OCCUPANCY_PERIOD_MS: i64 = 10_000;

/// Whether the loaded configuration uses a shared slot table (rate limits or lockout).
fn config_has_tables(vm: &Shared) -> bool {
    vm.try_borrow().is_ok_and(|guard| {
        guard
            .as_ref()
            .is_some_and(|vm| vm.config.has_rate_limits || vm.config.rate_limits.lockout.is_some())
    })
}

/// Set in shared data once any valid configuration has loaded in this Envoy process.
const CONFIG_LOADED_KEY: &str = "finguard:config-loaded";

impl Root {
    /// An invalid configuration. At start (no valid policy ever loaded in this process) finguard
    /// loads with no policy and answers every request 503 `policy-unavailable`: Envoy keeps
    /// running, nothing passes. Once a valid policy has served, an invalid update is rejected
    /// instead (`false`), so Envoy keeps the previous one rather than denying everything.
    fn refuse_configuration(&mut self) -> bool {
        let served_before = matches!(
            hostcalls::get_shared_data(CONFIG_LOADED_KEY),
            Ok((Some(_), _))
        );
        if served_before {
            return false;
        }
        if let Ok(mut slot) = self.vm.try_borrow_mut() {
            *slot = None;
        }
        true
    }

    /// The shared tables' estimated occupancy in percent, as gauges
    /// `finguard.table_occupancy.table.<buckets|lockouts>` (every worker samples the same
    /// process-wide tables, so whichever reported last is current).
    fn report_table_occupancy(&self, now_ms: i64) {
        let Ok(guard) = self.vm.try_borrow() else {
            return;
        };
        let Some(vm) = guard.as_ref() else { return };
        let config = &vm.config;
        let tables =
            config
                .rate_limits
                .occupancy(&mut SharedData, now_ms * 1000, config.has_rate_limits);
        for (table, occupancy) in tables {
            let name = format!("finguard.table_occupancy.table.{table}");
            telemetry::gauge(&name, occupancy.percent());
        }
    }

    /// Seconds since each remote provider's keys were fetched (a gauge per provider).
    fn report_key_age(&self, now: i64) {
        let Ok(guard) = self.vm.try_borrow() else {
            return;
        };
        let Some(vm) = guard.as_ref() else { return };
        for (provider, (state, source)) in vm
            .config
            .providers
            .iter()
            .zip(vm.keys.iter().zip(&vm.config.key_sources))
        {
            if let (KeySource::Remote(_), Some(fetched_at)) = (source, state.fetched_at) {
                let age = u64::try_from(now / 1000 - fetched_at).unwrap_or(0);
                telemetry::gauge(&metric::jwks_key_age(&provider.name), age);
            }
        }
    }

    /// Installs newer published keys; fetches where due and the lease is ours.
    fn sync_keys(&mut self, now: i64) {
        let Ok(mut guard) = self.vm.try_borrow_mut() else {
            return;
        };
        let Some(vm) = guard.as_mut() else { return };
        let config = Rc::clone(&vm.config);
        for (index, (provider, source)) in
            config.providers.iter().zip(&config.key_sources).enumerate()
        {
            let KeySource::Remote(remote) = source else {
                continue;
            };
            let seen = vm.key_versions.get(index).copied().flatten();
            if let Some(published) = jwks_sync::read_published(&provider.name, seen) {
                let newer = vm
                    .keys
                    .get(index)
                    .and_then(|k| k.fetched_at)
                    .is_none_or(|mine| published.fetched_at >= mine);
                if newer {
                    vm.install(
                        index,
                        published.keys,
                        published.fetched_at,
                        Some(published.version),
                    );
                } else if let Some(v) = vm.key_versions.get_mut(index) {
                    *v = Some(published.version);
                }
            }
            let state = vm.keys.get(index);
            let fetched_at = jwks_sync::published_fetch_time(&provider.name)
                .or(state.and_then(|s| s.fetched_at));
            let wanted = state.is_some_and(|s| s.refetch_wanted);
            if vm.fetches.values().any(|&p| p == index)
                || !remote.fetch_due(fetched_at, wanted, now / 1000)
            {
                continue;
            }
            let hold_ms = i64::try_from(remote.timeout_ms).unwrap_or(60_000) + 1000;
            if !jwks_sync::try_acquire_lease(&provider.name, vm.nonce, now, hold_ms) {
                continue;
            }
            match jwks_sync::dispatch_fetch(remote) {
                Some(token) => {
                    vm.fetches.insert(token, index);
                }
                None => {
                    log(
                        LogLevel::Warn,
                        &format!(
                            "provider {}: cannot dispatch JWKS fetch to cluster {}",
                            provider.name, remote.cluster
                        ),
                    );
                    jwks_sync::hold_lease_until(
                        &provider.name,
                        vm.nonce,
                        now + remote.retry_seconds * 1000,
                    );
                }
            }
        }
    }

    /// Re-judges waiting requests whose keys changed or whose wait is over, and applies the
    /// verdicts. The state borrow ends before any verdict is applied: applying one calls into
    /// Envoy, which may call back into this VM.
    fn answer_waiters(&mut self, now: i64) {
        let mut ready: Vec<(u32, Verdict, Option<Forward>, telemetry::SharedRecord)> = Vec::new();
        {
            let Ok(mut guard) = self.vm.try_borrow_mut() else {
                return;
            };
            let Some(vm) = guard.as_mut() else { return };
            let generation = vm.key_generation;
            let due: Vec<u32> = vm
                .streams
                .iter()
                .filter_map(|(id, stream)| match stream {
                    Stream::Waiting(w)
                        if now >= w.deadline_ms || w.key_generation != generation =>
                    {
                        Some(*id)
                    }
                    _ => None,
                })
                .collect();
            for context_id in due {
                let Some(Stream::Waiting(waiter)) = vm.streams.remove(&context_id) else {
                    continue;
                };
                let timed_out = now >= waiter.deadline_ms;
                let config = Rc::clone(&vm.config);
                let state = VmState {
                    keys: &mut vm.keys,
                    cache: &mut vm.cache,
                    store: &mut SharedData,
                    budget: &mut vm.budget,
                };
                let verdict =
                    pipeline::on_request_headers(&config, &waiter.request, state, now, !timed_out);
                telemetry::note(&waiter.record, &config, &verdict);
                match verdict {
                    Verdict::WaitForKeys { .. } => {
                        vm.streams.insert(
                            context_id,
                            Stream::Waiting(Waiter {
                                key_generation: generation,
                                ..waiter
                            }),
                        );
                    }
                    Verdict::ReadBody { forward, pending } => {
                        match judge_complete_body(&config, &pending, &waiter.body, now / 1000) {
                            Some(verdict) => {
                                telemetry::note(&waiter.record, &config, &verdict);
                                ready.push((context_id, verdict, Some(forward), waiter.record));
                            }
                            None => {
                                // The body is still arriving: its callbacks finish the job.
                                vm.streams.insert(context_id, Stream::ReadingBody(pending));
                                ready.push((
                                    context_id,
                                    Verdict::Allow(Forward::default()),
                                    Some(forward),
                                    waiter.record,
                                ));
                            }
                        }
                    }
                    verdict => ready.push((context_id, verdict, None, waiter.record)),
                }
            }
        }
        for (context_id, verdict, headers_forward, record) in ready {
            // The stream may be gone (client hung up): then there is nothing to answer.
            if hostcalls::set_effective_context(context_id).is_err() {
                continue;
            }
            telemetry::publish(&record);
            if let Some(forward) = &headers_forward {
                hold_permits(&self.vm, context_id, forward);
                if !apply_forward(forward) {
                    continue;
                }
            }
            if let Verdict::Allow(forward) = &verdict {
                hold_permits(&self.vm, context_id, forward);
                response::hold(
                    &self.vm,
                    context_id,
                    headers_forward.as_ref().unwrap_or(forward),
                );
            }
            let still_reading = matches!(self.vm.try_borrow().ok().as_deref(), Some(Some(vm)) if vm.streams.contains_key(&context_id));
            if apply_verdict(&verdict) && !still_reading {
                let _ = abi::resume_request();
            }
        }
    }
}
