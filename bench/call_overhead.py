"""call_overhead: per-call cost of a direct call, a plain function pointer, a
psu DSU call while the executable's version is current (`dsu`) and once a real
bundle's version is (`dsu-bundle`), and a naive DSU design (one shared atomic
reference count per module), for a trivial callee, a ~50 ns callee and a
recursion of depth 10 (inside the bundle, for dsu-bundle), on 1 and 2 threads.

    python bench/call_overhead.py [--quick]

The program is bench/c/callbench, a small SCons project: its DSU unit
(src/dsu.c) is generated and compiled by psu as a user's unit is, and the
bundle is the one `scons patch` makes from a revision that rewrites each DSU
function without changing what it computes; each dsu-bundle process gets it
through its control socket before it starts timing.  Each (variant, callee,
threads) is one process; the repetitions are interleaved (rep 1 of every
configuration, then rep 2, ...) and medians reported with min and max.  With
valgrind installed, the instructions one call executes (cachegrind: steady on
a noisy machine) are reported beside them."""
import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

VARIANTS = ["direct", "pointer", "dsu", "dsu-bundle", "naive"]
CALLEES = {"triv": "trivial callee", "work": "~50 ns callee", "rec": "recursion, depth 10"}
THREADS = [1, 2]
PROJECT = common.BENCH / "c" / "callbench"
# v2: each DSU function rewritten, computing the same
V2_EDITS = [("return x + 1;", "return 1 + x;"), ("return (int)(v >> 1);", "return (int)(v / 2);"),
            ("if (x <= 0)", "if (x < 1)")]


def git(root, *args):
    common.run(["git", "-c", "user.email=bench@psu", "-c", "user.name=psu bench", *args], cwd=root)


def build(rebuild=False):
    """bench/results/work/callbench: the project at tags v1 and v2, v1 built
    with psu, and the bundle v1 -> v2; rebuilt when psu or the project changes."""
    root = common.WORK / "callbench"
    marker = root / ".bench-ready"
    stamp = common.psu_fingerprint() + "".join(
        p.read_text() for p in sorted(PROJECT.rglob("*")) if p.is_file())
    import hashlib
    stamp = hashlib.sha256(stamp.encode()).hexdigest()[:16]
    if marker.exists() and marker.read_text().strip() == stamp and not rebuild:
        return root
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(PROJECT, root)
    (root / "site_scons").mkdir()
    (root / "site_scons" / "site_init.py").write_text(
        "import sys\nsys.path.insert(0, %r)\nimport psu\npsu.add_to_toolpath()\n"
        % str(common.REPO / "site_scons"))
    (root / ".gitignore").write_text(".psu-build/\npsu-patches/\n*.o\n*.psu.json\n.sconsign.dblite\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "v1")
    git(root, "tag", "v1")
    dsu = root / "src" / "dsu.c"
    text = dsu.read_text()
    for old, new in V2_EDITS:
        assert old in text, old
        text = text.replace(old, new)
    dsu.write_text(text)
    git(root, "commit", "-q", "-am", "v2")
    git(root, "tag", "v2")
    git(root, "checkout", "-q", "v1")
    common.log("call_overhead: building the benchmark with psu, and the bundle v1 -> v2 ...")
    common.run(common.SCONS, cwd=root)
    common.run(common.SCONS + ["patch", "FROM=v1", "TO=v2"], cwd=root)
    marker.write_text(stamp + "\n")
    return root


def measure(root, variant, callee, threads, calls, env, prefix=()):
    """One process: started, given the bundle (dsu-bundle), run; its JSON line
    (and, under a prefix such as valgrind, its stderr)."""
    proc = subprocess.Popen([*prefix, str(root / "call_bench"), variant, callee, str(threads),
                             str(calls)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"call_bench {variant}: {proc.stderr.read()[-2000:]}")
        if variant == "dsu-bundle":
            common.wait_socket(proc.pid, env, timeout=120)
            bundle = root / "psu-patches" / "call_bench-v1-v2.psu"
            answer = common.control(proc.pid, f"apply {bundle}", env, timeout=120)
            if not answer.get("ok"):
                raise RuntimeError(f"apply: {answer}")
        out, err = proc.communicate("go\n", timeout=600)
    finally:
        common.stop(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"call_bench {variant} {callee}: {proc.returncode} {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1]), err


def instructions_per_call(root, env, calls):
    """Instructions one call executes, 1 thread: cachegrind's totals of two
    runs that differ only in the number of calls, divided by that difference."""
    prefix = common.cachegrind()
    if not prefix:
        return None
    table = {}
    for c in CALLEES:
        for v in VARIANTS:
            runs = [measure(root, v, c, 1, n, env, prefix) for n in (calls, 2 * calls)]
            made = [r[0]["calls_total"] for r in runs]
            counted = [common.instructions_counted(r[1]) for r in runs]
            table[f"{v}/{c}"] = round((counted[1] - counted[0]) / (made[1] - made[0]), 2)
    return table


def main(quick=False, instructions=True):
    root = build()
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
            out, _ = measure(root, v, c, t, calls[c], env)
            raw.setdefault(f"{v}/{c}/{t}", []).append(out["ns_per_call"])
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
    bundle = {t: table[f"triv/{t}"]["dsu-bundle"]["over_direct_ns"] for t in THREADS}
    level = table["rec/1"]["dsu-bundle"]["over_direct_ns"]
    summary = {
        "dsu_over_direct_ns_1_thread_trivial": one,
        "dsu_over_direct_ns_2_threads_trivial": two,
        "target": "DSU <= 2 ns over direct on one thread, and no worse with 2 threads",
        "met_1_thread": one <= 2.0,
        "no_worse_2_threads": two <= max(one, 0) + 0.5,
        "bundle_over_direct_ns_1_thread_trivial": bundle[1],
        "bundle_over_direct_ns_2_threads_trivial": bundle[2],
        "bundle_recursion_over_direct_ns_per_level": level,
        "bundle_target": "a call into a bundle's version <= 1.6 ns over direct (1 and 2 threads); "
                         "recursion inside a bundle <= 1 ns per level",
    }
    per_call = None
    if instructions:
        common.log("call_overhead: instructions per call (cachegrind) ...")
        per_call = instructions_per_call(root, env, 200_000 if quick else 1_000_000)
    common.write_result("call_overhead", {
        "description": __doc__.split("\n\n")[0],
        "unit": "ns per call (median over repetitions; per process: median over threads)",
        "repetitions": reps, "calls_per_thread": calls,
        "summary": summary, "table": table, "raw": raw,
        "instructions_per_call_1_thread": per_call,
    })
    plot(table)
    print("\ncall_overhead (ns/call, median; ratio to direct)")
    print(f"  {'callee/threads':<16}" + "".join(f"{v:>18}" for v in VARIANTS))
    for key, row in table.items():
        print(f"  {key:<16}" + "".join(
            f"{row[v]['ns_per_call']:>9.2f} (x{row[v]['ratio_to_direct']:.2f})" for v in VARIANTS))
    print(f"  DSU over direct, trivial callee: {one:+.2f} ns (1 thread), {two:+.2f} ns (2 threads)")
    print(f"  bundle's version over direct, trivial callee: {bundle[1]:+.2f} ns (1 thread), "
          f"{bundle[2]:+.2f} ns (2 threads); recursion inside the bundle {level:+.2f} ns per level")
    for key, row in table.items():
        print(f"  {key:<16}" + "".join(
            f"  {v} [{row[v]['min']:.2f}, {row[v]['max']:.2f}]" for v in VARIANTS))
    if per_call:
        print("  instructions per call (1 thread): " + ", ".join(f"{k} {v}" for k, v in per_call.items()))
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
    p.add_argument("--no-instructions", action="store_true", help="skip the cachegrind counts")
    args = p.parse_args()
    main(args.quick, not args.no_instructions)
