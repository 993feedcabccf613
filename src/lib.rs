//! finguard: an API security filter for Envoy, as a Proxy-Wasm module.
//!
//! Everything that decides is plain Rust with no `proxy_wasm` import (the pure core below);
//! only [`host`] talks to the proxy-wasm ABI. See docs/architecture.md for the shape and
//! docs/configuration.md for the configuration reference.

pub mod ambiguity;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod config;
pub mod config_error;
pub mod decision;
pub mod header_map;
pub mod incident;
pub mod json;
pub mod media_type;
pub mod mode;
pub mod pipeline;
pub mod ratelimit;
pub mod reason;
pub mod redaction;
pub mod request;
pub mod response;
pub mod routes;
pub mod spellings;
pub mod swar;
pub mod tape;
pub mod validation;

// The ABI adapter exists only in the module Envoy loads (wasm32-wasip1); the core also compiles
// natively and for wasm32-unknown-unknown, where its tests run under Node.
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
pub mod host;
