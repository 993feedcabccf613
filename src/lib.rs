//! finguard: an API security filter for Envoy, as a Proxy-Wasm module.
//!
//! Everything that decides is plain Rust with no `proxy_wasm` import (the pure core below);
//! only [`host`] talks to the proxy-wasm ABI. See docs/architecture.md for the shape and
//! docs/configuration.md for the configuration reference.
//!
//! The import rule, five layers, each importing only from its own layer and those before it,
//! with no cycle between files (`tools/check_layers.py`, run by `make lint`, checks it):
//! 1. vocabulary: `reason`, `problem`, `mode`, `config_error`, `request`, `header_map`,
//!    `media_type`, `spellings`, `json`, `tape`, `swar`;
//! 2. capabilities: `authn`, `authz`, `validation`, `ratelimit`, `redaction`, `incident`,
//!    `audit`, `ambiguity`, each with its own raw configuration and compile step;
//! 3. policy: `routes`, `config` (the top-level configuration calling each compile);
//! 4. pipeline: `pipeline`, `decision`, `response` (the phases of one request);
//! 5. host: `host`, the proxy-wasm adapter.

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
pub mod problem;
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
