//! End-to-end test harness for finguard.
//!
//! Everything here is native (never compiled to wasm) and runs on loopback only:
//!
//! - [`envoy`]: finds the Envoy binary and the built `finguard.wasm`, renders `envoy/envoy.yaml`,
//!   starts Envoy on free ports and kills it on drop.
//! - [`upstream`]: the API behind Envoy; echoes what it saw and counts requests.
//! - [`json_upstream`]: an API serving canned responses (status, type, encoding, chunks).
//! - [`jwks`]: a JWKS endpoint that can be rotated, taken down, or started late.
//! - [`tokens`]: JWTs signed with the committed test keys in `testkit/fixtures`, plus malformed ones.
//! - [`http`]: a raw HTTP/1.1 client (so tests can send duplicate headers byte for byte).
//! - [`h2`]: a minimal HTTP/2 (h2c) client, for what HTTP/1.1 cannot carry (request trailers).
//! - [`problem`]: assertions on finguard's problem+json refusals.
//! - [`config`]: plugin configurations shared by the tests and the demo.
//! - [`stack`]: upstream + JWKS + Envoy started together, the usual unit of a test.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

pub mod config;
pub mod envoy;
pub mod fixtures;
pub mod h2;
pub mod http;
pub mod json_upstream;
pub mod jwks;
pub mod problem;
pub mod stack;
pub mod tokens;
pub mod upstream;

pub use envoy::{Envoy, EnvoyBuilder};
pub use http::{Request, Response};
pub use jsonwebtoken::Algorithm;
pub use jwks::{JwksServer, ReservedPort};
pub use stack::{eventually, Stack};
pub use tokens::{Key, TokenBuilder};
pub use upstream::Upstream;

/// The cargo workspace root (the finguard repository), found from this crate's location.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// A loopback port that was free a moment ago.
///
/// The port is released before it is returned, so another process could take it before the
/// caller binds it; the kernel hands out ephemeral ports round-robin, which makes that rare, and
/// [`envoy::EnvoyBuilder::start`] retries with fresh ports when Envoy reports a bind failure.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
