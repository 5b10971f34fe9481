#!/usr/bin/env python3
"""Runs the psu benchmarks and prints a short table of ratios.

    python bench/run.py [--quick] [--only NAME[,NAME...]]

release_stream and patch_coverage (real Lua and SQLite releases, tens of
minutes) run only when named: --only release_stream,patch_coverage.

Results: bench/results/<name>.json and bench/results/<name>.png.  Each
benchmark also runs alone: python bench/<module>.py [--quick]."""
import argparse
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

BENCHMARKS = {                       # name -> module
    "call_overhead": "call_overhead",
    "update_latency": "update_latency",
    "soak": "soak",
    "example_throughput": "example_throughput",
    "sqlite": "sqlite_bench",
    "sqlite_patched": "sqlite_patched",
    "bundle_size": "bundle_size",
    "incremental_analysis": "incremental_analysis",
    "release_stream": "release_stream",
    "patch_coverage": "patch_coverage",
}
# Long (they build whole releases of Lua and SQLite): run only when named with --only.
ON_REQUEST = {"release_stream", "patch_coverage", "bundle_size", "incremental_analysis"}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller runs (whole run ~6 minutes from scratch)")
    p.add_argument("--only", help="comma-separated names: " + ", ".join(BENCHMARKS))
    a = p.parse_args()
    names = a.only.split(",") if a.only else [n for n in BENCHMARKS if n not in ON_REQUEST]
    for n in names:
        if n not in BENCHMARKS:
            p.error(f"unknown benchmark {n!r} (known: {', '.join(BENCHMARKS)})")
    summaries, status = {}, 0
    for n in names:
        t0 = time.monotonic()
        common.log(f"=== {n} ===")
        try:
            module = __import__(BENCHMARKS[n])
            summaries[n] = module.main(a.quick)
        except Exception:                            # report and go on with the others
            traceback.print_exc()
            summaries[n] = {"error": traceback.format_exc().strip().splitlines()[-1]}
            status = 1
        common.log(f"=== {n}: {time.monotonic() - t0:.0f} s ===")
    print("\n==== summary (" + ("quick" if a.quick else "full") + " run) ====")
    for n, s in summaries.items():
        print(f"{n:<20} " + json.dumps(s))
    return status


if __name__ == "__main__":
    sys.exit(main())
