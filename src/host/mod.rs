//! The host adapter: the only code that talks to the proxy-wasm ABI. It reads what the core
//! needs (headers, clock, shared data, HTTP call results), runs the core, and applies the
//! decision. Every host call goes through `proxy_wasm::hostcalls` and handles its `Status`:
//! the SDK's trait helpers panic on host errors, and a panic takes the whole VM down.

mod abi;
mod apply;
mod http;
mod jwks_sync;
mod response;
mod root;
mod shared_store;
mod state;
mod telemetry;

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;
use std::time::UNIX_EPOCH;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(root::Root::default()));
}}

/// Logs through Envoy's `wasm` logger; a failing log call is ignored (nothing better to do).
fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Milliseconds since the Unix epoch by Envoy's clock (0 if the host cannot tell, which makes
/// every token look expired: fail closed).
fn now_ms() -> i64 {
    now_ns() / 1_000_000
}

/// Nanoseconds since the Unix epoch by Envoy's clock (0 if the host cannot tell). One host call:
/// the phases read it once at their start and once at their end (filter time).
fn now_ns() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
