//! The usual unit of an end-to-end test: an echo upstream, a JWKS server and an Envoy in front,
//! all on fresh loopback ports.

use std::time::Duration;

use serde_json::Value;

use crate::envoy::Envoy;
use crate::fixtures;
use crate::jwks::JwksServer;
use crate::upstream::Upstream;

/// Upstream + JWKS + Envoy. Fields drop in order, so Envoy is killed before its backends stop.
pub struct Stack {
    pub envoy: Envoy,
    pub upstream: Upstream,
    pub jwks: JwksServer,
}

impl Stack {
    /// Starts everything with the fixture `jwks.json` (rsa-a, ec-a, ed-a); panics with Envoy's log
    /// (or the reason it could not start, e.g. the module is not built) on failure.
    pub fn start(config: &Value) -> Stack {
        let jwks = JwksServer::start(&fixtures::jwks()).expect("starting the JWKS server");
        Self::start_with(config, jwks)
    }

    /// Starts the upstream and Envoy in front of an already running JWKS server.
    pub fn start_with(config: &Value, jwks: JwksServer) -> Stack {
        Self::start_on(config, jwks, None)
    }

    /// Upstream and Envoy (from `template`, default `envoy/envoy.yaml`) in front of `jwks`.
    fn start_on(config: &Value, jwks: JwksServer, template: Option<&std::path::Path>) -> Stack {
        let upstream = Upstream::start().expect("starting the upstream");
        let mut builder = Envoy::builder(config)
            .upstream(upstream.addr())
            .jwks(jwks.addr());
        if let Some(template) = template {
            builder = builder.template(template);
        }
        let envoy = builder
            .start()
            .unwrap_or_else(|err| panic!("starting Envoy: {err:#}"));
        Stack {
            envoy,
            upstream,
            jwks,
        }
    }
}

impl Stack {
    /// Like [`Stack::start`], with `envoy/envoy.yaml` edited by `edit` first: to show what
    /// finguard itself does where a deployment leaves an Envoy setting of ours at its default.
    /// Panics if `edit` changed nothing (the setting it targets moved).
    pub fn start_with_envoy_yaml(config: &Value, edit: impl Fn(&str) -> String) -> Stack {
        let original = std::fs::read_to_string(crate::workspace_root().join("envoy/envoy.yaml"))
            .expect("reading envoy/envoy.yaml");
        let edited = edit(&original);
        assert_ne!(edited, original, "the envoy.yaml edit changed nothing");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let template = dir.path().join("envoy.yaml");
        std::fs::write(&template, edited).expect("writing the edited envoy.yaml");
        let jwks = JwksServer::start(&fixtures::jwks()).expect("starting the JWKS server");
        Self::start_on(config, jwks, Some(&template))
    }
}

/// Calls `probe` every 100 ms until it returns `Some`, for at most `timeout`.
pub fn eventually<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
