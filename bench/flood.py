"""Forged-token flood against the verification budget (issue 9), bounded in time.

One finguard Envoy worker (CPU 0) with `verification_budget` = BUDGET/s. Client B sends requests
with one cached, valid token; client A floods tokens that pass every cheap check (known kid, right
issuer, audience, times) but carry a wrong signature, each one new. B's throughput is measured
alone and during the flood; both figures and A's rate go to bench/out/flood.md.

Run: .venv/bin/python bench/flood.py [--budget 100] [--seconds 5]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (the harness's helpers: Envoy start, templates, token minting)


def finguard_config(budget: int) -> str:
    config = json.loads(bench.finguard_config_text("f1.json"))
    config["verification_budget"] = {"requests": budget, "per_seconds": 1}
    return json.dumps(config, separators=(",", ":"))


def measured_config(upstream_port: int, budget: int, wasm: Path) -> str:
    values = {
        "UPSTREAM_PORT": str(upstream_port),
        "JWKS_JSON": json.dumps((bench.FIXTURES / "jwks.json").read_text()),
        "FINGUARD_WASM": json.dumps(str(wasm)),
        "FINGUARD_CONFIG": json.dumps(finguard_config(budget)),
    }
    filters = bench.render((bench.CONFIGS / "filters" / "finguard.yaml").read_text(), values)
    values["HTTP_FILTERS"] = "\n".join(l for l in filters.splitlines() if not l.lstrip().startswith("#"))
    return bench.render((bench.CONFIGS / "envoy.yaml").read_text(), values)


def forged(n: int) -> list[str]:
    """New tokens that pass every cheap check (kid rsa-a, issuer, audience, times) with a random
    256-byte signature: only the signature check could refuse them."""
    import base64
    import os
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    header, payload, _ = bench.mint("RS256").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tokens = []
    for i in range(n):
        claims["jti"] = f"forged-{i}-{os.urandom(4).hex()}"
        body = b64(json.dumps(claims, separators=(",", ":")).encode())
        tokens.append(f"{header}.{body}.{b64(os.urandom(256))}")
    return tokens


def flood_wrk(port: int, tokens_file: Path, rate: int, seconds: int) -> subprocess.Popen:
    """The flood, paced to about `rate` requests/s: 10 connections, each waiting 10000/rate ms."""
    connections = 10
    delay_ms = max(1, connections * 1000 // rate)
    argv = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
            "-s", str(bench.BENCH / "wrk" / "flood.lua"), f"http://127.0.0.1:{port}/v1/accounts/acc-1",
            "--", "/v1/accounts/acc-1", str(tokens_file), str(delay_ms)]
    return bench.PROCS.start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wrk(port: int, tokens_file: Path, count: int, seconds: int, connections: int) -> subprocess.Popen:
    argv = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
            "-s", str(bench.BENCH / "wrk" / "workload.lua"), f"http://127.0.0.1:{port}/v1/accounts/acc-1",
            "--", "GET", "/v1/accounts/acc-1", "-", str(tokens_file), "1", str(count)]
    return bench.PROCS.start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(p: subprocess.Popen, seconds: int) -> dict:
    stdout, stderr = p.communicate(timeout=seconds + 60)
    bench.PROCS.live.remove(p) if p in bench.PROCS.live else None
    for line in stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    raise bench.BenchError(f"wrk failed:\n{stdout}\n{stderr}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--flood-factor", type=int, default=10, help="flood rate as a multiple of the budget")
    args = ap.parse_args()
    envoy_bin = bench.find_envoy(None)
    out = bench.BENCH / "out" / "flood"
    out.mkdir(parents=True, exist_ok=True)
    wasm = bench.ROOT / bench.DEFAULT_WASM
    try:
        upstream = bench.start_envoy(envoy_bin, "flood-upstream", bench.upstream_config(), 1, out, "warning")
        envoy = bench.start_envoy(envoy_bin, "flood-finguard", measured_config(upstream.port, args.budget, wasm),
                                  0, out, "warning")
        cached = out / "cached.txt"
        cached.write_text(bench.mint("RS256") + "\n")
        # Enough forged tokens that none repeats: the flood gets 503s fast, so it runs well
        # above the budget.
        flood_tokens = out / "forged.txt"
        n = 20_000
        flood_tokens.write_text("\n".join(forged(n)) + "\n")
        # Warm the cache (one verification) and the connection pools.
        result(wrk(envoy.port, cached, 1, 1, 4), 1)
        alone = result(wrk(envoy.port, cached, 1, args.seconds, 4), args.seconds)
        flood = flood_wrk(envoy.port, flood_tokens, args.budget * args.flood_factor, args.seconds)
        time.sleep(0.2)
        during = result(wrk(envoy.port, cached, 1, args.seconds, 4), args.seconds)
        flooded = result(flood, args.seconds)
    finally:
        bench.PROCS.stop_all()
    rate = lambda r: r["requests"] / max(r["duration_us"] / 1e6, 1e-9)  # noqa: E731
    share = rate(during) / rate(alone)
    report = (
        f"# Forged-token flood against the verification budget\n\n"
        f"Generated by `bench/flood.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"one Envoy worker on CPU 0, both wrk clients on CPU 1, {args.seconds} s each.\n\n"
        f"| figure | value |\n|---|---|\n"
        f"| verification budget | {args.budget}/s per worker |\n"
        f"| client B (cached token) alone | {rate(alone):.0f} req/s |\n"
        f"| client B during the flood | {rate(during):.0f} req/s ({share:.0%} of alone) |\n"
        f"| flood of forged tokens (client A) | {rate(flooded):.0f} req/s "
        f"({rate(flooded) / args.budget:.0f}× the budget) |\n"
        f"| flood answers not 2xx (503 verification-overloaded or 401) | {flooded['errors']['status']} |\n"
    )
    (bench.BENCH / "out" / "flood.md").write_text(report)
    print(report)
    return 0 if share >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
