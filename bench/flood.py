"""Attacks on finguard's shared state (issues 9 and 20), bounded in time: what a legitimate client keeps.

One measured finguard Envoy with two workers (`--concurrency 2`) per attack. Client B, from its own
address (`x-forwarded-for: 198.51.100.7`, the configuration trusts one hop), is two wrk streams:
- **B-load**: 8 keep-alive connections, closed loop, one cached valid token: B's throughput and
  success rate (non-2xx counted as failures);
- **B-new**: a paced stream of fresh valid tokens, each sent once (--b-new-rate per second): every
  one needs a cold signature verification, so it shows whether B can still get *new* tokens
  verified (the verification budget), which a cached token never asks for.
B is measured alone and during the attack, in interleaved rounds; the figures go to bench/out/flood.md.

Attacks (--attack, default all):
- `fresh`: client A (203.0.113.66) floods tokens that pass every cheap check (known kid, issuer,
  audience, times) with a random signature, each one new: each costs a verification, so it drains
  A's share of the budget (`verification_budget.client_share_percent`) and no more.
- `replay`: A replays one forged token (real header and claims, zeroed signature) over 32
  keep-alive connections: after its first refusal it is answered from the negative cache.
- `lockout`: thousands of addresses (x-forwarded-for 2001:db8:<n>::<i>, fresh per phase) each
  fail authentication `failures` + 1 times in a row (an unknown API key; `--lockout-with forged`:
  fresh forged tokens), so each locks itself out; `rate_limits.slots` is 2048 (a lockout table
  of 512 records, a quarter of the slots) so that the attack-alone first phase fills it and the
  limit behaviour (evictions, no_room) shows (bench/configs/finguard/flood-lockout.json;
  --lockout-slots changes it).
The fresh and replay floods run at --flood-factor x the budget, the lockout attack at
--lockout-rate; all are paced (a fixed delay per connection, corrected for the latency).

Fairness. The question is what the attack costs B through finguard, so the harness keeps
everything else out of B's figure as far as two CPUs allow:
- As root, the Envoys and all wrk clients run under SCHED_FIFO (--priority), and each phase
  waits (bounded) for the other tenants of the machine to go quiet.
- Both workers serve: the measured Envoy, the upstream helper Envoy and the wrk clients all run
  on CPUs 0-1 (no pinning: two workers need both CPUs). The load generators then take CPU from
  the measured Envoy, so the throughput ratio also counts wrk A's own CPU against B.
- Hence a second figure, from the measured Envoy's CPU alone: with c_B its CPU per B request alone
  and T its CPU during the attack, the attack costs F = T - n_B * c_B; with E the Envoy's CPU rate
  while B was alone, "Envoy-bound share" = 1 - (F / wall) / E is what B keeps if the Envoy's CPU
  is the bottleneck.
- Each phase records the CPU time of processes other than the harness's; rounds above
  --disturbed-pct are marked and left out of the medians while a clean round exists.
After each attack, finguard's counters from the Envoy's /stats (table pressure, requests by
reason, e.g. verification-overloaded) and the per-worker connection counts are printed.

`--address-cost` measures instead the one host call the fair budget adds per request (Envoy's
`source.address`, read on configurations with token routes): F1's configuration with the default
share (reads it) against the same with `client_share_percent: 100` (does not), alternated on
fresh single-worker Envoys, B-load with a cached token; Envoy CPU µs per request from /proc.

Run: .venv/bin/python bench/flood.py [--attack all] [--budget 100] [--seconds 5] [--rounds 3]
"""

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (the harness's helpers: Envoy start, templates, token minting)

ATTACKS = ("fresh", "replay", "lockout")
B_ADDRESS = "198.51.100.7"
A_ADDRESS = "203.0.113.66"
CPUS = "0,1"
PATH = "/v1/accounts/acc-1"
B_CONNECTIONS = 8
REPLAY_CONNECTIONS = 32
LOCKOUT_CONNECTIONS = 32
# Lockout thresholds of configs/finguard/flood-lockout.json.
LOCKOUT_FAILURES = 5


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def finguard_config(name: str, budget: int | None, share: int | None = None, slots: int | None = None) -> str:
    config = json.loads(bench.finguard_config_text(name))
    if slots is not None:
        config["rate_limits"]["slots"] = slots
    if budget is not None:
        config["verification_budget"] = {"requests": budget, "per_seconds": 1}
    if share is not None:
        config.setdefault("verification_budget", {"requests": 1000, "per_seconds": 1})
        config["verification_budget"]["client_share_percent"] = share
    return json.dumps(config, separators=(",", ":"))


def measured_config(upstream_port: int, finguard_json: str, wasm: Path) -> str:
    values = {
        "UPSTREAM_PORT": str(upstream_port),
        "JWKS_JSON": json.dumps((bench.FIXTURES / "jwks.json").read_text()),
        "FINGUARD_WASM": json.dumps(str(wasm)),
        "FINGUARD_CONFIG": json.dumps(finguard_json),
    }
    filters = bench.render((bench.CONFIGS / "filters" / "finguard.yaml").read_text(), values)
    values["HTTP_FILTERS"] = "\n".join(l for l in filters.splitlines() if not l.lstrip().startswith("#"))
    return bench.render((bench.CONFIGS / "envoy.yaml").read_text(), values)


def forged(n: int, zeroed: bool = False) -> list[str]:
    """New tokens that pass every cheap check (kid rsa-a, issuer, audience, times) with a random
    (or zeroed) 256-byte signature: only the signature check could refuse them."""
    header, payload, _ = bench.mint("RS256").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tokens = []
    for i in range(n):
        claims["jti"] = f"forged-{i}-{os.urandom(4).hex()}"
        body = b64(json.dumps(claims, separators=(",", ":")).encode())
        tokens.append(f"{header}.{body}.{b64(bytes(256) if zeroed else os.urandom(256))}")
    return tokens


def paced_delay(rate: int, connections: int, delay_ms: int, reached_rps: float) -> int:
    """The per-connection delay that makes a stream reach `rate`. wrk can only make a connection
    wait a fixed time after each response (its Lua has no wall clock to pace on a schedule), so a
    connection sends one request per (delay + response latency); the latency is inferred from the
    rate the last stream reached with `delay_ms` and taken off the delay."""
    if reached_rps <= 0:
        return delay_ms
    latency_ms = connections * 1000 / reached_rps - delay_ms
    return max(1, round(connections * 1000 / rate - max(latency_ms, 0.0)))


@dataclass
class Stream:
    """A paced wrk stream of bench/wrk/flood.lua."""
    connections: int
    rate: int
    header: str = "authorization"
    where: str = "-"  # x-forwarded-for: "-", one address, or "many:<prefix>"
    per_address: int = 1
    delay_ms: int = 0

    def __post_init__(self) -> None:
        self.delay_ms = max(1, round(self.connections * 1000 / self.rate))

    def start(self, port: int, creds: Path, seconds: int, where: str | None = None) -> subprocess.Popen:
        argv = bench.PRIORITY + ["taskset", "-c", CPUS, "wrk", "-t1", f"-c{self.connections}", f"-d{seconds}s",
                                 "--timeout", "5s", "-s", str(bench.BENCH / "wrk" / "flood.lua"),
                                 f"http://127.0.0.1:{port}{PATH}", "--", PATH, str(creds), str(self.delay_ms),
                                 self.header, where or self.where, str(self.per_address)]
        return bench.PROCS.start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def correct(self, reached_rps: float) -> None:
        self.delay_ms = paced_delay(self.rate, self.connections, self.delay_ms, reached_rps)


def b_load(port: int, token_file: Path, seconds: int, cpus: str = CPUS) -> subprocess.Popen:
    """B's closed-loop stream: one cached token, a static request (wrk formats it once)."""
    argv = bench.PRIORITY + ["taskset", "-c", cpus, "wrk", "-t1", f"-c{B_CONNECTIONS}", f"-d{seconds}s",
                             "--timeout", "5s", "-H", f"x-forwarded-for: {B_ADDRESS}",
                             "-s", str(bench.BENCH / "wrk" / "workload.lua"), f"http://127.0.0.1:{port}{PATH}",
                             "--", "GET", PATH, "-", str(token_file), "1", "1"]
    return bench.PROCS.start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(p: subprocess.Popen, seconds: int) -> dict:
    stdout, stderr = p.communicate(timeout=seconds + 60)
    bench.PROCS.live.remove(p) if p in bench.PROCS.live else None
    for line in stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            r = json.loads(line[len("BENCH_RESULT "):])
            r["rps"] = r["requests"] / max(r["duration_us"] / 1e6, 1e-9)
            return r
    raise bench.BenchError(f"wrk failed:\n{stdout}\n{stderr}")


def cpu_busy() -> dict[str, tuple[int, int]]:
    """(busy, all) ticks of cpu0 and cpu1 from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0] in ("cpu0", "cpu1"):
                v = [int(x) for x in parts[1:9]]
                out[parts[0]] = (sum(v) - v[3] - v[4], sum(v))
    return out


def snapshot(envoy_pid: int, upstream_pid: int, attack_pid: int | None) -> dict:
    return {"t": time.time(), "envoy": bench.proc_ticks(envoy_pid), "upstream": bench.proc_ticks(upstream_pid),
            "attack": bench.proc_ticks(attack_pid) if attack_pid else 0, "children": bench.children_ticks(),
            "cpus": cpu_busy()}


@dataclass
class Run:
    """What one attack's phases share."""
    envoy: bench.Envoy
    upstream: bench.Envoy
    cached: Path
    b_new: Stream
    b_new_tokens: list[str]
    out: Path
    seconds: int
    used: int = 0  # B-new tokens handed out so far (each is sent once)

    def b_new_file(self, seconds: int) -> Path:
        n = self.b_new.rate * (seconds + 1) * 2
        if self.used + n > len(self.b_new_tokens):
            raise bench.BenchError("B-new token pool exhausted (harness bug: pool sized too small)")
        path = self.out / "b-new.txt"
        path.write_text("\n".join(self.b_new_tokens[self.used:self.used + n]) + "\n")
        self.used += n
        return path


NO_B = {"requests": 0, "rps": 0.0, "errors": {"status": 0}, "statuses": {"2xx": 0}}


def phase(run: Run, seconds: int, attack: tuple[Stream, Path, str | None] | None, with_b: bool = True) -> dict:
    """B (B-load and B-new) for `seconds`, alone or inside an attack ((stream, credentials file,
    x-forwarded-for override)) that starts before and ends after it; without B (`with_b` False),
    the attack alone for `seconds` (its own Envoy CPU per request)."""
    a_proc = attack[0].start(run.envoy.port, attack[1], seconds + 1, attack[2]) if attack else None
    if a_proc:
        time.sleep(0.3)
    new_file = run.b_new_file(seconds) if with_b else None
    s0 = snapshot(run.envoy.pid, run.upstream.pid, a_proc.pid if a_proc else None)
    if with_b:
        load_proc = b_load(run.envoy.port, run.cached, seconds)
        new_proc = run.b_new.start(run.envoy.port, new_file, seconds, B_ADDRESS)
        b = result(load_proc, seconds)
        bn = result(new_proc, seconds)
    else:
        time.sleep(seconds)
        b, bn = NO_B, NO_B
    s1 = snapshot(run.envoy.pid, run.upstream.pid, a_proc.pid if a_proc else None)
    a = result(a_proc, seconds + 1) if a_proc else None
    wall = s1["t"] - s0["t"]
    busy = {c: 100 * (s1["cpus"][c][0] - s0["cpus"][c][0]) / max(s1["cpus"][c][1] - s0["cpus"][c][1], 1)
            for c in ("cpu0", "cpu1")}
    # CPU time on the two CPUs not spent by this harness's processes (the B clients have exited and
    # been waited for, so they are in the children's ticks; the attack still runs: read directly).
    ours = sum(s1[k] - s0[k] for k in ("envoy", "upstream", "attack", "children"))
    all_busy = sum(s1["cpus"][c][0] - s0["cpus"][c][0] for c in ("cpu0", "cpu1"))
    return {
        "b": b, "b_new": bn, "a": a,
        "b_rps": b["rps"], "b_requests": b["requests"],
        "b_success": 1 - b["errors"]["status"] / max(b["requests"], 1),
        "b_new_success": bn["statuses"]["2xx"] / max(bn["requests"], 1),
        "a_rps": a["rps"] if a else 0.0,
        "envoy_cpu_s": (s1["envoy"] - s0["envoy"]) / bench.CLK_TCK, "wall_s": wall,
        "cpu0_busy_pct": busy["cpu0"], "cpu1_busy_pct": busy["cpu1"],
        "foreign_pct": 100 * max(all_busy - ours, 0) / bench.CLK_TCK / wall,
    }


def finguard_stats(envoy: bench.Envoy) -> list[str]:
    """finguard's non-zero counters and the listener's per-worker connection counts."""
    _, body = bench.http_get(envoy.admin_port, "/stats")
    keep = []
    for line in body.decode().splitlines():
        name, _, value = line.partition(": ")
        if not value.strip().isdigit() or value.strip() == "0":
            continue
        if name.startswith("wasmcustom.finguard.") and "filter_time" not in name:
            keep.append(line)
        elif name.startswith("listener.127.0.0.1_") and name.endswith(".downstream_cx_total") and ".worker_" in name:
            keep.append(line)
    return sorted(keep)


def attack_stream(name: str, args, budget: int) -> Stream:
    rate = budget * args.flood_factor
    if name == "fresh":
        return Stream(max(1, rate // 5), rate, where=A_ADDRESS)
    if name == "replay":
        return Stream(REPLAY_CONNECTIONS, rate, where=A_ADDRESS)
    header = "x-api-key" if args.lockout_with == "apikey" else "authorization"
    return Stream(LOCKOUT_CONNECTIONS, args.lockout_rate, header=header, where="many:",
                  per_address=LOCKOUT_FAILURES + 1)


def attack_creds(name: str, args, stream: Stream, out: Path, seconds: int, replayed: str) -> Path:
    """The attack's credentials for one phase: new forged tokens per phase (never repeated),
    the one replayed token, or unknown API keys."""
    path = out / f"attack-{name}.txt"
    if name == "replay":
        path.write_text(replayed + "\n")
    elif name == "lockout" and args.lockout_with == "apikey":
        path.write_text("\n".join(f"bench-guess-{os.urandom(12).hex()}" for _ in range(64)) + "\n")
    else:
        # The flood is paced, so its rate bounds the count; 1.5x for the pacing's error.
        path.write_text("\n".join(forged(stream.rate * (seconds + 2) * 3 // 2)) + "\n")
    return path


def run_attack(name: str, args, envoy_bin: str, upstream: bench.Envoy, wasm: Path, out: Path,
               host: bench.Host) -> dict:
    config_name = "flood-lockout.json" if name == "lockout" else "flood.json"
    envoy = bench.start_envoy(envoy_bin, f"flood-{name}", measured_config(
        upstream.port, finguard_config(config_name, args.budget, slots=args.lockout_slots if name == "lockout" else None),
        wasm), CPUS, out, "warning",
        concurrency=args.concurrency)
    try:
        cached = out / "cached.txt"
        cached.write_text(bench.mint("RS256") + "\n")
        phases = 1 + 2 * args.rounds
        b_new = Stream(2, args.b_new_rate)
        need = b_new.rate * (args.seconds + 1) * 2 * phases + b_new.rate * 8
        bench.log(f"{name}: minting {need} fresh tokens for B-new")
        run = Run(envoy, upstream, cached, b_new, [bench.mint("RS256") for _ in range(need)], out, args.seconds)
        # Warm the cache (one verification per worker) and the connection pools.
        result(b_load(envoy.port, cached, 1), 1)
        stream = attack_stream(name, args, args.budget)
        replayed = forged(1, zeroed=True)[0]
        phase_no = 0

        def during(seconds: int, with_b: bool = True) -> dict:
            nonlocal phase_no
            phase_no += 1
            creds = attack_creds(name, args, stream, out, seconds, replayed)
            # Each lockout phase uses addresses no earlier phase used.
            where = f"many:2001:db8:{phase_no:x}::" if stream.where == "many:" else None
            d = phase(run, seconds, (stream, creds, where), with_b)
            d["attack_delay_ms"] = stream.delay_ms
            stream.correct(d["a_rps"])
            return d

        # Pacing: a first attack phase, without B, tells how much the response latency slows each
        # connection (every phase after that corrects the delay again) and what one attack request
        # costs the Envoy. The lockout attack's is longer, so that its table is full before B is
        # measured (512 records at 2048 slots: ~3 s at 1000/s).
        calibration = during(4 if name == "lockout" else 3, with_b=False)
        calibration["c_a_us"] = 1e6 * calibration["envoy_cpu_s"] / max(calibration["a"]["requests"], 1)
        rounds = []
        for r in range(args.rounds):
            host.wait_quiet(30.0, args.quiet_wait)
            alone = phase(run, args.seconds, None)
            host.wait_quiet(30.0, args.quiet_wait)
            d = during(args.seconds)
            rounds.append((alone, d))
            print(f"{name} round {r + 1}: B alone {alone['b_rps']:.0f}/s, during {d['b_rps']:.0f}/s "
                  f"({d['b_rps'] / max(alone['b_rps'], 1e-9):.0%}); B success {alone['b_success']:.1%} / "
                  f"{d['b_success']:.1%}; B-new success {alone['b_new_success']:.1%} / "
                  f"{d['b_new_success']:.1%}; attack {d['a_rps']:.0f}/s {d['a']['statuses']}", flush=True)
        stats = finguard_stats(envoy)
    finally:
        bench.PROCS.stop(envoy.proc)
    return {"name": name, "stream": stream, "calibration": calibration, "rounds": rounds, "stats": stats}


def figures(alone: dict, during: dict, disturbed_pct: float) -> dict:
    # A starved client (0 requests) makes a round meaningless, never a crash.
    c_b = alone["envoy_cpu_s"] / max(alone["b_requests"], 1)
    attack_cpu = max(during["envoy_cpu_s"] - during["b_requests"] * c_b, 0.0)
    envoy_rate_alone = alone["envoy_cpu_s"] / max(alone["wall_s"], 1e-9)
    a_requests = during["a_rps"] * during["wall_s"]
    return {
        "throughput": during["b_rps"] / max(alone["b_rps"], 1e-9),
        "success": during["b_success"] / max(alone["b_success"], 1e-9),
        "new_success": during["b_new_success"] / max(alone["b_new_success"], 1e-9),
        "envoy_bound_share": 1 - attack_cpu / max(during["wall_s"], 1e-9) / max(envoy_rate_alone, 1e-9),
        "c_b_us": 1e6 * c_b,
        "c_a_us": 1e6 * attack_cpu / a_requests if a_requests else 0.0,
        "disturbed": max(alone["foreign_pct"], during["foreign_pct"]) > disturbed_pct
        or min(alone["b_requests"], during["b_requests"]) == 0,
    }


TITLES = {
    "fresh": "fresh forged tokens from one address",
    "replay": f"one forged token replayed over {REPLAY_CONNECTIONS} connections",
    "lockout": "thousands of addresses failing authentication until locked",
}


def attack_report(res: dict, args) -> tuple[str, dict]:
    rows = [figures(alone, during, args.disturbed_pct) for alone, during in res["rounds"]]
    undisturbed = [f for f in rows if not f["disturbed"]]
    clean = undisturbed if undisturbed else rows
    med = {k: statistics.median(f[k] for f in clean)
           for k in ("throughput", "success", "new_success", "envoy_bound_share")}
    med["a_rps"] = statistics.median(d["a_rps"] for (_, d), f in zip(res["rounds"], rows) if f in clean)
    med["all_disturbed"] = not undisturbed
    med["clean"], med["rounds"] = len(undisturbed), len(rows)
    s = res["stream"]
    lockout_with = f", credential: {'unknown API key' if args.lockout_with == 'apikey' else 'fresh forged token'}"
    cal = res["calibration"]
    cal_st = cal["a"]["statuses"]
    text = (f"## {res['name']}: {TITLES[res['name']]}\n\n"
            f"Attack: {s.connections} connections paced at {s.rate}/s, x-forwarded-for "
            f"{A_ADDRESS if s.where == A_ADDRESS else f'2001:db8:<phase>::<n> (new per phase), {s.per_address} requests per address'}"
            f"{lockout_with if res['name'] == 'lockout' else ''}. "
            f"Attack alone (first phase, {cal['wall_s']:.0f} s, no B): {cal['a_rps']:.0f}/s, "
            f"2xx/401/429/503/other {cal_st['2xx']}/{cal_st['401']}/{cal_st['429']}/{cal_st['503']}/{cal_st['other']}, "
            f"**{cal['c_a_us']:.0f} µs** of Envoy CPU per attack request "
            f"({100 * cal['envoy_cpu_s'] / cal['wall_s']:.0f} % of a CPU).\n\n"
            "| round | B req/s alone / during | B throughput | B success alone / during | B-new success alone / during "
            "| attack req/s | attack 2xx/401/429/503/other | addresses | Envoy µs per B req / per attack req (estimated) "
            "| Envoy-bound share | CPU 0 / CPU 1 busy % (during) | others' CPU % alone / during |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for i, ((alone, d), f) in enumerate(zip(res["rounds"], rows)):
        st = d["a"]["statuses"]
        text += (f"| {i + 1} | {alone['b_rps']:.0f} / {d['b_rps']:.0f} | **{f['throughput']:.0%}** "
                 f"| {alone['b_success']:.2%} / {d['b_success']:.2%} "
                 f"| {alone['b_new_success']:.1%} ({alone['b_new']['requests']}) / {d['b_new_success']:.1%} "
                 f"({d['b_new']['requests']}) "
                 f"| {d['a_rps']:.0f} | {st['2xx']}/{st['401']}/{st['429']}/{st['503']}/{st['other']} "
                 f"| {d['a']['addresses'] or 1} | {f['c_b_us']:.0f} / {f['c_a_us']:.0f} "
                 f"| **{f['envoy_bound_share']:.0%}** | {d['cpu0_busy_pct']:.0f} / {d['cpu1_busy_pct']:.0f} "
                 f"| {alone['foreign_pct']:.0f} / {d['foreign_pct']:.0f}{' (disturbed)' if f['disturbed'] else ''} |\n")
    scope = (f"every round disturbed (others' CPU > {args.disturbed_pct:.0f} % of a CPU): not trustworthy; over all"
             if med["all_disturbed"] else f"over the {med['clean']} undisturbed of {med['rounds']} rounds")
    met = med["throughput"] >= 0.9 and med["success"] >= 0.9 and med["new_success"] >= 0.9
    med["met"] = met
    text += (f"\nMedians ({scope}): B throughput **{med['throughput']:.0%}** of solo, B success rate "
             f"**{med['success']:.0%}** of solo, B-new success rate **{med['new_success']:.0%}** of solo, "
             f"Envoy-bound share {med['envoy_bound_share']:.0%}; attack {med['a_rps']:.0f}/s. "
             f"Goal (≥ 90 % each): {'met' if met else '**missed**'}.\n\n"
             "finguard counters and per-worker connections at the end of the attack (`/stats`, non-zero):\n\n```\n"
             + "\n".join(res["stats"]) + "\n```\n\n")
    return text, med


def address_cost(args, envoy_bin: str, wasm: Path, out: Path, host: bench.Host) -> int:
    """F1 with and without the per-client share (source.address read or not), alternated on fresh
    Envoys (one worker on CPU 0, wrk and the upstream on CPU 1, as bench/run.py), each run sampled
    with perf as bench/profile.py does, which splits the CPU per request into Wasm code and the host
    calls it made."""
    import contextlib
    import importlib.util
    import io
    import re
    spec = importlib.util.spec_from_file_location("finguard_profile", bench.BENCH / "profile.py")
    profile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile)
    upstream = bench.start_envoy(envoy_bin, "flood-upstream", bench.upstream_config(), 1, out, "warning")
    cached = out / "cached.txt"
    cached.write_text(bench.mint("RS256") + "\n")
    variants = {"share 25 (reads source.address)": None, "share 100 (does not)": 100}
    runs: dict[str, list[dict]] = {k: [] for k in variants}
    try:
        for r in range(args.rounds):
            for label, share in (list(variants.items()) if r % 2 == 0 else list(reversed(variants.items()))):
                envoy = bench.start_envoy(envoy_bin, "flood-address", measured_config(
                    upstream.port, finguard_config("f1.json", None, share), wasm), 0, out, "warning")
                try:
                    result(b_load(envoy.port, cached, 2, "1"), 2)  # warm-up: V8 tiers the code up
                    host.wait_quiet(30.0, args.quiet_wait)
                    data = out / "address.perf.data"
                    perf = subprocess.Popen(["perf", "record", "-q", "-F", "2999", "-g", "-o", str(data), "-p",
                                             str(envoy.pid), "--", "sleep", str(args.seconds)])
                    time.sleep(0.2)
                    t0 = bench.proc_ticks(envoy.pid)
                    b = result(b_load(envoy.port, cached, args.seconds - 1, "1"), args.seconds)
                    cpu_us = 1e6 * (bench.proc_ticks(envoy.pid) - t0) / bench.CLK_TCK / max(b["requests"], 1)
                    perf.wait(timeout=args.seconds + 30)
                    if b["errors"]["status"]:
                        raise bench.BenchError(f"{label}: {b['errors']['status']} non-2xx")
                    split = io.StringIO()
                    with contextlib.redirect_stdout(split):
                        profile.print_split(data, b["requests"])
                    m = re.search(r"total ([\d.]+) = outside Wasm ([\d.]+) \+ Wasm code ([\d.]+) "
                                  r"\+ its host calls ([\d.]+)", split.getvalue())
                    if not m:
                        raise bench.BenchError(f"no perf split: {split.getvalue()!r}")
                    fig = {"cpu_us": cpu_us, "sampled": float(m.group(1)), "outside": float(m.group(2)),
                           "wasm": float(m.group(3)), "host": float(m.group(4)), "rps": b["rps"],
                           "foreign_pct": host.foreign_pct(0.5)}
                    runs[label].append(fig)
                    print(f"round {r + 1} {label}: /proc {cpu_us:.1f} µs per request; perf: total "
                          f"{fig['sampled']:.1f}, outside Wasm {fig['outside']:.1f}, Wasm {fig['wasm']:.1f}, "
                          f"host calls {fig['host']:.1f}; {b['rps']:.0f}/s", flush=True)
                finally:
                    bench.PROCS.stop(envoy.proc)
    finally:
        bench.PROCS.stop_all()
    with_call, without = (runs[k] for k in variants)
    lines = []
    for key, what in (("cpu_us", "Envoy CPU (/proc)"), ("host", "host calls (perf)"), ("wasm", "Wasm code (perf)"),
                      ("outside", "outside Wasm (perf)")):
        diffs = [a[key] - b[key] for a, b in zip(with_call, without)]
        lines.append(f"{what}: with {statistics.median(a[key] for a in with_call):.2f}, without "
                     f"{statistics.median(b[key] for b in without):.2f} µs; paired differences "
                     f"{', '.join(f'{d:+.2f}' for d in diffs)} (median {statistics.median(diffs):+.2f})")
    report = ("# The fair budget's source.address read: cost per request\n\n"
              f"Generated by `bench/flood.py --address-cost` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
              f"F1 (cached token, GET) with the default client share against `client_share_percent: 100`, "
              f"{args.rounds} alternated rounds of {args.seconds - 1} s, a fresh Envoy per run.\n\n"
              + "\n".join(f"- {l}" for l in lines) + "\n")
    (bench.BENCH / "out" / "address-cost.md").write_text(report)
    (bench.BENCH / "out" / "address-cost.json").write_text(json.dumps(runs, indent=1))
    print(report)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attack", choices=ATTACKS + ("all",), default="all")
    ap.add_argument("--budget", type=int, default=100, help="verification budget per worker per second")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved alone/attack rounds (per attack)")
    ap.add_argument("--flood-factor", type=int, default=10,
                    help="fresh and replay flood rate as a multiple of the budget")
    ap.add_argument("--lockout-rate", type=int, default=1000, help="lockout attack requests per second")
    ap.add_argument("--lockout-with", choices=["apikey", "forged"], default="apikey",
                    help="the lockout attack's failing credential: unknown API keys or fresh forged tokens")
    ap.add_argument("--lockout-slots", type=int,
                    help="rate_limits.slots of the lockout attack (default: configs/finguard/flood-lockout.json's "
                         "2048; the lockout table has a quarter of them)")
    ap.add_argument("--b-new-rate", type=int, default=10, help="B's fresh valid tokens per second")
    ap.add_argument("--concurrency", type=int, default=2, help="measured Envoy's workers")
    ap.add_argument("--priority", choices=["rt", "none"], default="rt",
                    help="rt (as root): Envoys and wrk under SCHED_FIFO 10, as in bench/run.py")
    ap.add_argument("--disturbed-pct", type=float, default=30.0,
                    help="a round where other processes used more than this % of a CPU is marked disturbed")
    ap.add_argument("--quiet-wait", type=float, default=5.0, help="max seconds to wait for a quiet machine per phase")
    ap.add_argument("--address-cost", action="store_true",
                    help="measure the source.address host call of the fair budget instead (see above)")
    args = ap.parse_args()
    if args.priority == "rt" and os.geteuid() == 0:
        bench.PRIORITY[:] = ["chrt", "--fifo", "10"]
    envoy_bin = bench.find_envoy(None)
    out = bench.BENCH / "out" / "flood"
    out.mkdir(parents=True, exist_ok=True)
    wasm = Path(os.environ.get("FINGUARD_WASM") or bench.ROOT / bench.DEFAULT_WASM)
    host = bench.Host(cpus=(0, 1))
    if args.address_cost:
        return address_cost(args, envoy_bin, wasm, out, host)
    attacks = ATTACKS if args.attack == "all" else (args.attack,)
    results = []
    started = time.time()
    try:
        upstream = bench.start_envoy(envoy_bin, "flood-upstream", bench.upstream_config(), CPUS, out, "warning")
        for name in attacks:
            results.append(run_attack(name, args, envoy_bin, upstream, wasm, out, host))
    finally:
        bench.PROCS.stop_all()
    sections, summary = [], []
    for res in results:
        text, med = attack_report(res, args)
        sections.append(text)
        summary.append(f"| {res['name']} | {med['throughput']:.0%} | {med['success']:.0%} | {med['new_success']:.0%} "
                       f"| {med['envoy_bound_share']:.0%} | {med['a_rps']:.0f} | {res['calibration']['c_a_us']:.0f} "
                       f"| {med['clean']} of {med['rounds']} | {'met' if med['met'] else '**missed**'} |\n")
    report = (
        "# Attacks on finguard's shared state: what client B keeps\n\n"
        f"Generated by `bench/flood.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in "
        f"{time.time() - started:.0f} s; measured Envoy `--concurrency {args.concurrency}`, it, the upstream and "
        f"every wrk client on CPUs {CPUS}, priority `{' '.join(bench.PRIORITY) or 'default'}`; "
        f"{args.rounds} interleaved rounds of {args.seconds} s per attack; verification budget {args.budget}/s "
        f"per worker (client share 25 %); B-load {B_CONNECTIONS} connections with a cached token, B-new "
        f"{args.b_new_rate} fresh tokens/s, both from {B_ADDRESS}.\n\n"
        "| attack | B throughput | B success rate | B-new success rate | Envoy-bound share | attack req/s "
        "| Envoy µs per attack request (attack alone) | undisturbed rounds | goal ≥ 90 % |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        + "".join(summary) + "\n(ratios: B during the attack over B alone, medians.)\n\n" + "".join(sections))
    (bench.BENCH / "out" / "flood.md").write_text(report)
    raw = [{"name": r["name"], "calibration": r["calibration"], "rounds": r["rounds"], "stats": r["stats"]}
           for r in results]
    (bench.BENCH / "out" / "flood.json").write_text(json.dumps(raw, indent=1))
    print(report)
    return 0 if all(attack_report(r, args)[1]["met"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
