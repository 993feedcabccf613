"""Where does a scenario's Envoy CPU go? `perf` profile of one benchmark scenario's Envoy.

Starts the helper upstream and the scenario's measured Envoy exactly as bench/run.py does, drives
the workload with wrk for --seconds while `perf record` samples the measured Envoy, and prints the
top of `perf report` (Envoy's own frames are named; frames of V8's compiled Wasm are anonymous and
show as one `[unknown]`/JIT bucket, which is what separates host cost from filter cost). Also
prints finguard's own per-phase time (`finguard_filter_time_us`) from the admin endpoint, and the
CPU per request split into what ran outside Wasm, the Wasm code, and the host calls it made.

Run: .venv/bin/python bench/profile.py V2 [--workload post] [--seconds 5]
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario")
    ap.add_argument("--workload")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--wasm", help="finguard module (default: $FINGUARD_WASM, then the release build)")
    ap.add_argument("--out", type=Path, default=bench.BENCH / "out" / "profile")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args(argv)

    spec = bench.load_spec()
    raw = next((s for s in spec["scenarios"] if s["id"] == args.scenario), None)
    if raw is None:
        raise bench.BenchError(f"unknown scenario {args.scenario}")
    sc = bench.Scenario(raw["id"], raw["title"], raw, raw["workloads"], raw["token"])
    if raw.get("wasm"):
        w = args.wasm if args.wasm and raw["wasm"] == bench.DEFAULT_WASM else raw["wasm"]
        sc.wasm = (bench.ROOT / w).resolve()
    workload = args.workload or sc.workloads[0]
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokens").mkdir(exist_ok=True)
    envoy_bin = bench.find_envoy(None)
    bench._jwt()
    if sc.cycle_alg:
        sc.pool = bench.TokenPool(out, sc.cycle_alg)
    else:
        sc.token_file = out / "tokens" / f"static-{sc.token}.txt"
        sc.token_file.write_text((bench.token_for(spec, sc.token) or "") + "\n")
    try:
        upstream = bench.start_envoy(envoy_bin, "upstream", bench.upstream_config(), 1, out, "warning")
        sc.envoy = bench.start_envoy(envoy_bin, f"envoy-{sc.id}", bench.measured_config(sc, upstream.port), 0,
                                     out, "warning")
        wl = spec["workloads"][workload]
        bench.verify(sc, spec, workload, sc.request_token(), wl["expect_status"], True)
        wa = bench.WrkArgs(1, 8, 1)
        count = int(20000 * args.seconds) if sc.pool else 0
        slice_ = sc.take_tokens(count) if sc.pool else None
        bench.run_wrk(sc, spec, workload, 1, wa, slice_)  # warm-up (JIT tiers up)
        data = out / f"{sc.id}-{workload}.perf.data"
        perf = subprocess.Popen(["perf", "record", "-q", "-F", "2999", "-g", "-o", str(data), "-p",
                                 str(sc.envoy.pid), "--", "sleep", str(args.seconds)])
        time.sleep(0.2)
        slice_ = sc.take_tokens(count) if sc.pool else None
        r = bench.run_wrk(sc, spec, workload, args.seconds, wa, slice_)
        perf.wait(timeout=args.seconds + 30)
        print(f"{sc.id}/{workload}: {r['requests']} requests in {args.seconds}s")
        # Mean time inside the filter per phase, from the histogram's buckets (a CPU/request
        # figure is a mean too: a P50 would hide a slow tail).
        _, stats = bench.http_get(sc.envoy.admin_port,
                                  "/stats?format=json&filter=filter_time&histogram_buckets=detailed")
        for h in json.loads(stats).get("stats", [{}])[-1].get("histograms", {}).get("details", []):
            buckets = h.get("totals", [])
            calls = sum(b["count"] for b in buckets)
            if calls:
                mean = sum((b["lower_bound"] + b["width"] / 2) * b["count"] for b in buckets) / calls
                print(f"in filter, {h['name'].rsplit('.', 1)[-1]}: mean {mean:.1f} µs over {calls} calls")
        print_split(data, r["requests"])
        report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "dso,sym",
                                 "--stdio", "-g", "none", "--percent-limit", "0.7"],
                                capture_output=True, text=True)
        lines = [l for l in report.stdout.splitlines() if l.strip() and not l.startswith("#")]
        print("\n".join(lines[: args.top]))
    finally:
        bench.PROCS.stop_all()
    return 0


def print_split(data: Path, requests: int) -> None:
    """CPU per request by where it ran: Envoy's binary (V8 included), the kernel, the Wasm code
    itself (`[JIT]`), and the host calls it made (samples below a `[JIT]` frame in Envoy's
    code). µs of sampled time; `perf` itself inflates the total by 10-20 %, so compare two
    profiles with each other, not with `run.py`'s figures."""
    def by_dso(children: bool) -> tuple[int, dict[str, float]]:
        out = subprocess.run(["perf", "report", "-i", str(data), "--children" if children else "--no-children",
                              "--sort", "dso", "--stdio", "-g", "none"], capture_output=True, text=True).stdout
        m = re.search(r"Event count \(approx.\): (\d+)", out)
        shares: dict[str, float] = {}
        for line in out.splitlines():
            cols = re.match(r"\s+([\d.]+)%\s+(?:[\d.]+%\s+)?(\[JIT\]|\S+)", line)
            if cols:
                shares[cols.group(2)] = shares.get(cols.group(2), 0.0) + float(cols.group(1))
        return (int(m.group(1)) if m else 0), shares
    total, own = by_dso(False)
    _, inclusive = by_dso(True)
    if not total or not requests:
        return
    us = lambda share: share * total / 1e5 / requests  # noqa: E731 (ns * % -> µs per request)
    wasm = own.get("[JIT]", 0.0)
    wasm_incl = inclusive.get("[JIT]", wasm)
    print(f"CPU per request (sampled, µs): total {total / 1e3 / requests:.1f} = outside Wasm "
          f"{total / 1e3 / requests - us(wasm_incl):.1f} + Wasm code {us(wasm):.1f} + its host calls "
          f"{us(wasm_incl - wasm):.1f}; by binary: envoy {us(own.get('envoy', 0.0)):.1f}, kernel "
          f"{us(own.get('[kernel.kallsyms]', 0.0)):.1f}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
