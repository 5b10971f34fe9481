"""call_overhead: per-call cost of a direct call, a plain function pointer, a
psu DSU call (psu_fast.h, runtime linked in) and a naive DSU design (one shared
atomic reference count per module), for a trivial callee, a ~50 ns callee and
a recursion of depth 10, on 1 and 2 threads.

    python bench/call_overhead.py [--quick]

Each (variant, callee, threads) is one process of bench/c/call_bench; the
repetitions are interleaved (rep 1 of every configuration, then rep 2, ...)
and medians reported."""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

VARIANTS = ["direct", "pointer", "dsu", "dsu-bundle", "naive"]
CALLEES = {"triv": "trivial callee", "work": "~50 ns callee", "rec": "recursion, depth 10"}
THREADS = [1, 2]


def build():
    out = common.WORK / "call_bench"
    common.WORK.mkdir(parents=True, exist_ok=True)
    c = common.BENCH / "c"
    common.gcc_with_runtime([c / "call_bench.c", c / "callee.c"], out, flags=("-O2", "-Wall"),
                            includes=(c,))
    return out


def main(quick=False):
    exe = build()
    env = common.runtime_env()
    reps = 5 if quick else 11
    calls = {"triv": 10_000_000, "work": 1_000_000, "rec": 10_000_000}
    if not quick:
        calls = {k: v * 3 for k, v in calls.items()}
    raw = {}
    configs = [(v, c, t) for c in CALLEES for t in THREADS for v in VARIANTS]
    common.log(f"call_overhead: {len(configs)} configurations x {reps} interleaved repetitions")
    for rep in range(reps):
        for v, c, t in configs:
            out = common.run([exe, v, c, t, calls[c]], env=env)
            raw.setdefault(f"{v}/{c}/{t}", []).append(json.loads(out)["ns_per_call"])
    table = {}
    for c in CALLEES:
        for t in THREADS:
            direct = common.median(raw[f"direct/{c}/{t}"])
            row = {}
            for v in VARIANTS:
                m = common.median(raw[f"{v}/{c}/{t}"])
                row[v] = {"ns_per_call": round(m, 3), "ratio_to_direct": round(m / direct, 3),
                          "over_direct_ns": round(m - direct, 3),
                          "min": round(min(raw[f"{v}/{c}/{t}"]), 3),
                          "max": round(max(raw[f"{v}/{c}/{t}"]), 3)}
            table[f"{c}/{t}"] = row
    one = table["triv/1"]["dsu"]["over_direct_ns"]
    two = table["triv/2"]["dsu"]["over_direct_ns"]
    summary = {
        "dsu_over_direct_ns_1_thread_trivial": one,
        "dsu_over_direct_ns_2_threads_trivial": two,
        "target": "DSU <= 2 ns over direct on one thread, and no worse with 2 threads",
        "met_1_thread": one <= 2.0,
        "no_worse_2_threads": two <= max(one, 0) + 0.5,
    }
    common.write_result("call_overhead", {
        "description": __doc__.split("\n\n")[0],
        "unit": "ns per call (median over repetitions; per process: median over threads)",
        "repetitions": reps, "calls_per_thread": calls,
        "summary": summary, "table": table, "raw": raw,
    })
    plot(table)
    print("\ncall_overhead (ns/call, median; ratio to direct)")
    print(f"  {'callee/threads':<16}" + "".join(f"{v:>18}" for v in VARIANTS))
    for key, row in table.items():
        print(f"  {key:<16}" + "".join(
            f"{row[v]['ns_per_call']:>9.2f} (x{row[v]['ratio_to_direct']:.2f})" for v in VARIANTS))
    print(f"  DSU over direct, trivial callee: {one:+.2f} ns (1 thread), {two:+.2f} ns (2 threads)")
    return summary


def plot(table):
    plt = common.pyplot()
    if not plt:
        return
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    colors = {"direct": "#4c72b0", "pointer": "#55a868", "dsu": "#c44e52", "dsu-bundle": "#dd8452",
              "naive": "#8172b2"}
    for ax, c in zip(axes, CALLEES):
        width = 0.16
        for i, v in enumerate(VARIANTS):
            ys = [table[f"{c}/{t}"][v]["ns_per_call"] for t in THREADS]
            xs = [j + (i - 2) * width for j in range(len(THREADS))]
            bars = ax.bar(xs, ys, width, label=v, color=colors[v])
            for b, y in zip(bars, ys):
                ax.annotate(f"{y:.1f}", (b.get_x() + b.get_width() / 2, y), ha="center",
                            va="bottom", fontsize=7)
        ax.set_xticks(range(len(THREADS)))
        ax.set_xticklabels([f"{t} thread{'s' if t > 1 else ''}" for t in THREADS])
        ax.set_ylabel("ns per call (median)")
        ax.set_title(CALLEES[c])
        ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle("Per-call cost: direct vs function pointer vs psu DSU call vs naive shared refcount")
    common.save_plot(fig, "call_overhead")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    main(p.parse_args().quick)
