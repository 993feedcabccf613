"""Differences of Envoy CPU per request between two scenarios, paired round by round.

    .venv/bin/python bench/paired.py F1,W0 V1,V0 F1,F1@cmp [--results bench/out/results.json]

On this shared host whole rounds run 20-40 % slower than the round before, so two scenarios are
compared within each round (`run.py` interleaves them) and the median of those differences is
reported, with each round's. `A,B` compares every workload the two share; `A/get,B` one workload.

Compare runs made with a fresh Envoy every round (`run.py`'s default). Each Envoy process has a
steady speed of its own (a few µs per request either way, for its whole life): with
`--reuse-envoy` every round pairs the same two processes, so that offset is a bias the median
keeps, not noise it averages out (measured: R0 against R0 with a module that differs only where
R0 never runs, +8 µs in 9 rounds of 10). The script says so when the results were made that way.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="+", help="A,B: scenario ids, optionally /workload")
    ap.add_argument("--results", type=Path, default=BENCH / "out" / "results.json")
    args = ap.parse_args(argv)
    cpu: dict[tuple[str, str], dict[int, float]] = {}
    results = json.loads(args.results.read_text())
    if not results.get("settings", {}).get("fresh_envoy_per_round", True):
        print("note: made with --reuse-envoy: each pair below is two fixed Envoy processes, whose "
              "own speeds differ by a few µs; see this script's docstring")
    for run in results["runs"]:
        if run.get("cpu_us_per_req") is not None:
            cpu.setdefault((run["scenario"], run["workload"]), {})[run["round"]] = run["cpu_us_per_req"]
    for pair in args.pairs:
        (a, wa), (b, wb) = (side.partition("/")[::2] for side in pair.split(",", 1))
        workloads = sorted(w for (s, w) in cpu if s == a and (not wa or w == wa))
        for w in workloads:
            first, second = cpu[(a, w)], cpu.get((b, wb or w), {})
            diffs = [first[r] - second[r] for r in sorted(first) if r in second]
            if not diffs:
                continue
            rounds = " ".join(f"{d:+.0f}" for d in diffs)
            # Two workloads of one scenario (R1P/get,R1P/get-plain) are named by workload.
            label = f"{a} - {b} ({w})" if (wb or w) == w else f"{a}/{w} - {b}/{wb}"
            print(f"{label}: median {statistics.median(diffs):+.1f} µs over {len(diffs)} rounds "
                  f"[{rounds}]; {a} median {statistics.median(first.values()):.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
