//! finguard through a real Envoy (`FINGUARD_WASM`, `ENVOY_BIN`; `make test-e2e`). One test
//! binary for every end-to-end suite: one link serves them all, and `--test-threads` spreads
//! every suite's tests over the same threads (they mostly wait on Envoy, timers and sockets,
//! so a suite's slowest test no longer holds the next suite back). One module per behaviour area;
//! run one with `cargo test -p finguard --test e2e -- ratelimit::`.

mod authn_jwt;
mod authz;
mod config;
mod hardening_authn;
mod hardening_availability;
mod hardening_body;
mod hardening_detect;
mod hardening_request;
mod hardening_response;
mod jwks_remote;
mod operations;
mod ratelimit;
mod redaction;
mod robustness;
mod validation;
mod verification_budget;
