//! finguard-demo: the demo API behind Envoy and finguard, on fixed local ports.
//!
//! Starts the demo upstream (accounts and payments payloads), a JWKS server with the fixture keys,
//! and Envoy with `envoy/envoy.yaml` and `envoy/demo-config.json`, prints curl commands that show
//! an allowed request and the main refusals, and runs until Ctrl-C or SIGTERM.
//!
//! Ports (env overrides): LISTEN_PORT 10000, ADMIN_PORT 9901, UPSTREAM_PORT 18080,
//! JWKS_PORT 18081; LISTEN_ADDRESS 127.0.0.1. Envoy's rendered config and log are kept in
//! `envoy/build/demo/`.

use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use testkit::envoy::EnvoyBuilder;
use testkit::{fixtures, workspace_root, Algorithm, JwksServer, TokenBuilder, Upstream};

const USAGE: &str = "usage: finguard-demo [--docker | --reload [POLICY.json]]

Runs the demo API behind Envoy and finguard until Ctrl-C. With --docker, Envoy runs in the pinned
envoyproxy/envoy image (envoy/docker-compose.yml, host networking) with the same envoy.yaml.
With --reload, replaces the running demo's policy (default envoy/demo-config.json) through ECDS
and reports whether Envoy applied or rejected it. Environment: LISTEN_ADDRESS
(127.0.0.1), LISTEN_PORT (10000), ADMIN_PORT (9901), UPSTREAM_PORT (18080), JWKS_PORT (18081),
ENVOY_BIN, FINGUARD_WASM.";

fn main() -> Result<()> {
    // Refuse anything unknown loudly rather than run something unasked for.
    let docker = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--docker") => true,
        Some("--reload") => return reload(std::env::args().nth(2)),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return Ok(());
        }
        Some(arg) => anyhow::bail!("unknown argument {arg:?}\n\n{USAGE}"),
    };
    let listen_address = env_or("LISTEN_ADDRESS", "127.0.0.1".to_owned())?;
    let listen_port: u16 = env_or("LISTEN_PORT", 10000)?;
    let admin_port: u16 = env_or("ADMIN_PORT", 9901)?;
    let upstream_port: u16 = env_or("UPSTREAM_PORT", 18080)?;
    let jwks_port: u16 = env_or("JWKS_PORT", 18081)?;

    let config_path = workspace_root().join("envoy/demo-config.json");
    let config = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;

    let upstream = Upstream::start_demo(upstream_port)?;
    let jwks = JwksServer::start_on(jwks_port, &fixtures::jwks())?;
    if docker {
        return run_in_docker(
            &config,
            &listen_address,
            listen_port,
            admin_port,
            &upstream,
            &jwks,
        );
    }
    let work_dir = workspace_root().join("envoy/build/demo");
    println!("starting Envoy (log: {}/envoy.log) ...", work_dir.display());
    let mut envoy = EnvoyBuilder::with_config_text(config)
        .upstream(upstream.addr())
        .jwks(jwks.addr())
        .listen(&listen_address, listen_port)
        .admin_port(admin_port)
        .work_dir(&work_dir)
        .start()?;

    print_walkthrough(listen_port, admin_port);

    let (stop_tx, stop_rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })
    .context("installing the Ctrl-C / SIGTERM handler")?;
    loop {
        match stop_rx.recv_timeout(Duration::from_secs(1)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = envoy.exited() {
                    eprintln!(
                        "Envoy exited ({status}); see {}",
                        envoy.log_path().display()
                    );
                    break;
                }
            }
        }
    }
    println!("stopping");
    // Envoy first (its Drop kills the process), then the backends.
    drop(envoy);
    drop(jwks);
    drop(upstream);
    Ok(())
}

/// Renders envoy.yaml for the container (the module mounted at /etc/finguard/finguard.wasm; host
/// networking, so loopback addresses are the same) and runs `docker compose up` until it exits.
fn run_in_docker(
    config: &str,
    listen_address: &str,
    listen_port: u16,
    admin_port: u16,
    upstream: &Upstream,
    jwks: &JwksServer,
) -> Result<()> {
    let root = workspace_root();
    let template = std::fs::read_to_string(root.join("envoy/envoy.yaml"))?;
    let vars = [
        ("ADMIN_PORT", admin_port.to_string()),
        ("LISTEN_ADDRESS", listen_address.to_owned()),
        ("LISTEN_PORT", listen_port.to_string()),
        ("UPSTREAM_ADDRESS", upstream.addr().ip().to_string()),
        ("UPSTREAM_PORT", upstream.addr().port().to_string()),
        ("JWKS_ADDRESS", jwks.addr().ip().to_string()),
        ("JWKS_PORT", jwks.addr().port().to_string()),
        ("POLICY_DIR", "/etc/envoy/policy".to_owned()),
    ];
    let rendered = testkit::envoy::render(&template, &vars)?;
    let out_dir = root.join("envoy/build/docker");
    std::fs::create_dir_all(out_dir.join("policy"))?;
    testkit::envoy::write_policy(
        &out_dir.join("policy"),
        std::path::Path::new(DOCKER_WASM),
        config,
    )?;
    std::fs::write(out_dir.join("envoy.yaml"), rendered)?;
    print_walkthrough(listen_port, admin_port);
    let status = std::process::Command::new("docker")
        .args(["compose", "-f"])
        .arg(root.join("envoy/docker-compose.yml"))
        .arg("up")
        .status()
        .context("running docker compose (is Docker installed?)")?;
    anyhow::ensure!(status.success(), "docker compose exited with {status}");
    Ok(())
}

/// The module's path inside the container (docker-compose.yml mounts it there).
const DOCKER_WASM: &str = "/etc/finguard/finguard.wasm";

/// `make reload`: writes the policy where the running demo's Envoy (local or Docker) watches
/// it, then reads Envoy's ECDS counters to say whether it was applied or rejected.
fn reload(policy: Option<String>) -> Result<()> {
    let root = workspace_root();
    let path = policy.map_or_else(|| root.join("envoy/demo-config.json"), Into::into);
    let config =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let admin_port: u16 = env_or("ADMIN_PORT", 9901)?;
    let admin = testkit::loopback(admin_port);
    let counter = |name: &str| -> u64 {
        testkit::Request::new(admin, "GET", "/stats?filter=extension_config_discovery")
            .timeout(Duration::from_secs(2))
            .try_send()
            .map(|r| {
                r.text()
                    .lines()
                    .filter(|l| l.contains(".finguard.") && l.contains(&format!(".{name}:")))
                    .filter_map(|l| l.rsplit(':').next()?.trim().parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0)
    };
    let (applied, failed) = (counter("update_success"), counter("update_rejected"));
    let mut targets = Vec::new();
    let demo = root.join("envoy/build/demo");
    if demo.join("finguard-policy.yaml").is_file() {
        testkit::envoy::write_policy(&demo, &testkit::envoy::wasm_path()?, &config)?;
        targets.push(demo);
    }
    let docker = root.join("envoy/build/docker/policy");
    if docker.join("finguard-policy.yaml").is_file() {
        testkit::envoy::write_policy(&docker, std::path::Path::new(DOCKER_WASM), &config)?;
        targets.push(docker);
    }
    anyhow::ensure!(
        !targets.is_empty(),
        "no running demo found: start one with `make run`"
    );
    println!("policy {} written to {targets:?}", path.display());
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        if counter("update_success") > applied {
            println!("applied by Envoy (admin :{admin_port})");
            return Ok(());
        }
        if counter("update_rejected") > failed {
            anyhow::bail!(
                "REJECTED by Envoy: the previous policy keeps serving; the reason is in the \
                 Envoy log (configuration refused: <field>: <problem>)"
            );
        }
    }
    anyhow::bail!("Envoy did not report the update within 5 s (is the demo running?)")
}

fn print_walkthrough(listen_port: u16, admin_port: u16) {
    let base = format!("http://127.0.0.1:{listen_port}");
    let hours = 12 * 3600;
    let full = TokenBuilder::rs256()
        .claim("client_id", "demo-app")
        .scope("accounts:read payments:write")
        .expires_in(hours)
        .sign();
    let read_only = TokenBuilder::new(Algorithm::ES256)
        .claim("client_id", "demo-app")
        .scope("accounts:read")
        .expires_in(hours)
        .sign();
    let expired = TokenBuilder::rs256()
        .claim("client_id", "demo-app")
        .issued_in(-7200)
        .expires_in(-3600)
        .sign();
    let payment =
        r#"'{"amount": 250, "currency": "EUR", "creditor_iban": "DE89370400440532013000"}'"#;
    let bad_payment = r#"'{"amount": 250, "currency": "EUR", "creditor_iban": "DE89370400440532013001", "fee_waived": true}'"#;
    let big_payment =
        r#"'{"amount": 5000, "currency": "EUR", "creditor_iban": "DE89370400440532013000"}'"#;
    let mfa = TokenBuilder::rs256()
        .claim("client_id", "demo-app")
        .claim("amr", serde_json::json!(["pwd", "mfa"]))
        .scope("accounts:read payments:write")
        .expires_in(hours)
        .sign();

    println!(
        "\nfinguard demo: API on {base}, Envoy admin on http://127.0.0.1:{admin_port}\n\
         Tokens below are signed with the committed test keys and valid for 12 hours.\n\n\
         # 200: list accounts (scope accounts:read); upstream sees x-auth-subject / x-auth-client;\n\
         # account numbers and IBANs come back masked (the demo upstream sends them in clear)\n\
         curl -i {base}/v1/accounts -H 'authorization: Bearer {full}'\n\n\
         # 422 schema-violation: the creditor IBAN fails its mod-97 check, an unknown field is sent\n\
         curl -i -X POST {base}/v1/customers/cust-42/payments -H 'authorization: Bearer {full}' \
         -H 'content-type: application/json' -d {bad_payment}\n\n\
         # 201: create a payment (scope payments:write)\n\
         curl -i -X POST {base}/v1/customers/cust-42/payments -H 'authorization: Bearer {full}' \
         -H 'content-type: application/json' -d {payment}\n\n\
         # 401 step-up-required: 5000 EUR is above the 1000 EUR threshold and the token has no mfa\n\
         curl -i -X POST {base}/v1/customers/cust-42/payments -H 'authorization: Bearer {full}' \
         -H 'content-type: application/json' -d {big_payment}\n\n\
         # 201: the same payment with a token whose amr says mfa\n\
         curl -i -X POST {base}/v1/customers/cust-42/payments -H 'authorization: Bearer {mfa}' \
         -H 'content-type: application/json' -d {big_payment}\n\n\
         # 403 object-access-denied: cust-42's token on another customer's payments\n\
         curl -i -X POST {base}/v1/customers/cust-7/payments -H 'authorization: Bearer {full}' \
         -H 'content-type: application/json' -d {payment}\n\n\
         # 401 token-missing: no token (bare Bearer challenge)\n\
         curl -i {base}/v1/accounts\n\n\
         # 403 scope-insufficient: the token only has accounts:read\n\
         curl -i -X POST {base}/v1/customers/cust-42/payments -H 'authorization: Bearer {read_only}' \
         -H 'content-type: application/json' -d {payment}\n\n\
         # 401 token-expired: expired an hour ago\n\
         curl -i {base}/v1/accounts/acc-001 -H 'authorization: Bearer {expired}'\n\n\
         # 200: public health check\n\
         curl -i {base}/healthz\n\n\
         # metrics: decisions by reason and route (audit lines: 'finguard-audit' in the Envoy log)\n\
         curl -s http://127.0.0.1:{admin_port}/stats/prometheus | grep '^finguard_requests'\n\n\
         # incident lever, no restart: add \"lockdown\": {{\"enabled\": true}} to envoy/demo-config.json, then\n\
         make reload    # every request now gets 503 lockdown; remove it and reload again\n\n\
         Ctrl-C stops the demo."
    );
}

/// `$name` parsed, or `default` when unset.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .map_err(|err| anyhow::anyhow!("{name}={text:?}: {err}")),
        Err(_) => Ok(default),
    }
}
