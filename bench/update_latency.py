"""update_latency: (a) time to switch 1, 10, 100, 1,000 loaded functions with
the runtime's psu_switch (one batch, one membarrier), idle and with a busy
thread calling the switched functions; (b) kvd request latency (kvload's
p50/p99/p99.9/max) with and without a live update every ~300 ms (alternating
the v1->v2 bundle and its revert v2->v1), same load, runs interleaved, plus the
round-trip time of each apply request; (c) time from the return of the last
call running in an old module to that module's unloading.

    python bench/update_latency.py [--quick]"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

NS = [1, 10, 100, 1000]
PCTS = ["p50", "p99", "p999", "max"]


def switch_part(quick):
    exe = common.WORK / "switch_bench"
    common.WORK.mkdir(parents=True, exist_ok=True)
    common.gcc_with_runtime([common.BENCH / "c" / "switch_bench.c"], exe, flags=("-O2", "-Wall"))
    env = common.runtime_env()
    runs = 3 if quick else 7
    reps = 200 if quick else 500
    per_run = []
    for _ in range(runs):
        per_run += [json.loads(l) for l in common.run([exe, reps] + NS, env=env).splitlines()]
    table = {}
    for cond in ("idle", "busy"):
        for n in NS:
            rows = [r for r in per_run if r["condition"] == cond and r["n"] == n]
            table[f"{cond}/{n}"] = {k: round(common.median([r[k] for r in rows]), 3)
                                    for k in ("p50_us", "p90_us", "p99_us", "max_us")}
    return {"processes": runs, "switches_per_n_per_process": reps,
            "unit": "microseconds per psu_switch call (median over processes of the "
                    "per-process percentile)", "table": table}


def server_part(quick):
    root = common.kvd_project()
    env = common.runtime_env()
    runs = 2 if quick else 4
    seconds = 3 if quick else 6
    period = 0.3
    results = {"without_updates": [], "with_updates": []}
    apply_rtts = []
    for rep in range(runs):
        for mode in ("without_updates", "with_updates"):
            server, port = common.start_kvd(root, "kvd", workers=4, env=env)
            try:
                common.wait_socket(server.pid, env)
                updater = None
                if mode == "with_updates":
                    updater = common.Updater(root, server.pid, env, period).start()
                _, final = common.kvload(root, port, threads=2, seconds=seconds)
                if updater:
                    updater.stop()
                    apply_rtts += [e["rtt_ms"] for e in updater.events]
                    if updater.failures:
                        common.log(f"update failures: {updater.failures[:3]}")
            finally:
                common.stop(server)
            lat = final.get("latency_us", {})
            results[mode].append({"ok": final.get("ok"), "failed": final.get("failed"),
                                  "updates": len(updater.events) if updater else 0,
                                  "update_failures": len(updater.failures) if updater else 0,
                                  "versions": final.get("versions"),
                                  **{p: lat.get(p) for p in PCTS}})
            common.log(f"kvd {mode} run {rep + 1}: {results[mode][-1]}")
    summary = {mode: {p: common.median([r[p] for r in rs]) for p in PCTS + ["ok"]}
               for mode, rs in results.items()}
    summary["apply_round_trip_ms"] = {
        "count": len(apply_rtts), "p50": common.median(apply_rtts),
        "p99": common.percentile(apply_rtts, 99), "max": max(apply_rtts) if apply_rtts else None}
    return {"runs_per_mode": runs, "seconds_per_run": seconds, "update_period_s": period,
            "load": "kvload -t 2 against kvd -w 4 (DSU build), fresh server each run",
            "unit": "microseconds (kvload client-side request latency)",
            "summary": summary, "runs": results, "apply_round_trips_ms": apply_rtts}


def unload_part(quick):
    """From the return of the last call running in an old module to its
    unloading (SPEC: within 10 ms).  The program is the loader tests' small DSU
    program (tests/c/app.c, its versions tests/c/patch.c): a thread parks in
    version 2, version 3 is applied, the parked call is released and prints
    "unparked v2" as it returns; then /proc/PID/maps is polled until v2's code
    is gone.  (Polling the control socket instead would itself trigger an
    unload scan.)  A fresh process per measurement."""
    sys.path.insert(0, str(common.REPO / "site_scons"))
    from psu import bundle
    out = common.WORK / "unload_bench"
    out.mkdir(parents=True, exist_ok=True)
    tests_c = common.REPO / "tests" / "c"
    app = out / "app"
    common.gcc_with_runtime([tests_c / "app.c"], app)
    ids = {1: "a" * 64, 2: "b" * 64, 3: "c" * 64}
    bundles = {}
    for v in (2, 3):
        code = out / f"v{v}.so"
        common.run(["gcc", "-std=gnu11", "-O2", "-fPIC", "-shared", "-I", common.RUNTIME,
                    f"-DVERSION={v}", tests_c / "patch.c", "-o", code])
        bundles[v] = out / f"v{v}.psu"
        bundle.write(bundles[v], {"program": "app", "base_build_id": ids[v - 1],
                                  "target_build_id": ids[v], "label": f"v{v}"}, code.read_bytes())
    env = common.runtime_env()
    env.pop("PSU_DISABLE", None)
    waits_ms, timeouts = [], 0
    for _ in range(10 if quick else 30):
        proc = subprocess.Popen([str(app)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, env=env, bufsize=1)
        try:
            common.wait_socket(proc.pid, env)
            _apply(proc.pid, bundles[2], env)
            _ask(proc, "park 1", "parked v2 1")          # a call running in version 2
            _apply(proc.pid, bundles[3], env)
            returned = _ask(proc, "release 1", "unparked v2 1")
            while "psu-v2-code" in open(f"/proc/{proc.pid}/maps").read():
                if time.monotonic() - returned > 2.0:
                    timeouts += 1
                    break
                time.sleep(0.0001)
            else:
                waits_ms.append((time.monotonic() - returned) * 1e3)
        finally:
            proc.kill()
            proc.wait()
    return {"measurements": len(waits_ms), "timeouts_2s": timeouts,
            "unit": "milliseconds from the last call in the old module returning (as its "
                    "output reached us) until its code left /proc/PID/maps",
            "p50_ms": common.median(waits_ms), "p99_ms": common.percentile(waits_ms, 99),
            "max_ms": max(waits_ms) if waits_ms else None, "waits_ms": [round(w, 3) for w in waits_ms]}


def _apply(pid, path, env):
    answer = common.control(pid, f"apply {path}", env)
    if answer.get("result") != "applied":
        raise RuntimeError(f"apply {path.name}: {answer}")


def _ask(proc, line, expect):
    """Sends a command to the test program; the time its answer `expect` arrived."""
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    while True:
        got = proc.stdout.readline()
        if not got:
            raise RuntimeError(f"app exited waiting for {expect!r}")
        if got.startswith(expect):
            return time.monotonic()


def main(quick=False):
    common.log("update_latency: psu_switch of 1..1000 functions")
    sw = switch_part(quick)
    common.log("update_latency: kvd latency with and without updates every 300 ms")
    srv = server_part(quick)
    common.log("update_latency: from an old module's last call returning to its unloading")
    unload = unload_part(quick)
    common.write_result("update_latency", {"description": __doc__.split("\n\n")[0],
                                           "switch": sw, "server": srv, "unload": unload})
    plot(sw, srv)
    print("\nupdate_latency: psu_switch (us, median of per-process p50 / p99)")
    for cond in ("idle", "busy"):
        print(f"  {cond:<5}" + "".join(
            f"  n={n}: {sw['table'][f'{cond}/{n}']['p50_us']:.2f} / {sw['table'][f'{cond}/{n}']['p99_us']:.2f}"
            for n in NS))
    s = srv["summary"]
    print("update_latency: kvd request latency (us, medians of runs)")
    for mode in ("without_updates", "with_updates"):
        print(f"  {mode:<16}" + "".join(f"  {p} {s[mode][p]}" for p in PCTS) + f"  ok {s[mode]['ok']}")
    a = s["apply_round_trip_ms"]
    print(f"  apply round trip: p50 {a['p50']} ms, p99 {a['p99']} ms, max {a['max']} ms ({a['count']} applies)")
    print(f"  old module unloaded after its last call returned: p50 {unload['p50_ms']:.2f} ms, p99 "
          f"{unload['p99_ms']:.2f} ms, max {unload['max_ms']:.2f} ms ({unload['measurements']} "
          f"runs, {unload['timeouts_2s']} not unloaded within 2 s)")
    return {"switch_1000_idle_p50_us": sw["table"]["idle/1000"]["p50_us"],
            "unload_after_update_max_ms": unload["max_ms"],
            "p99_ratio_with_over_without": (s["with_updates"]["p99"] / s["without_updates"]["p99"])
            if s["without_updates"]["p99"] else None}


def plot(sw, srv):
    plt = common.pyplot()
    if not plt:
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for cond, style in (("idle", "o-"), ("busy", "s--")):
        a1.plot(NS, [sw["table"][f"{cond}/{n}"]["p50_us"] for n in NS], style, label=f"{cond}: p50")
        a1.plot(NS, [sw["table"][f"{cond}/{n}"]["p99_us"] for n in NS], style, alpha=0.4,
                label=f"{cond}: p99")
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("functions switched in one update")
    a1.set_ylabel("psu_switch time (µs)")
    a1.set_title("Switch time, code already loaded\n(busy: a thread calls the switched functions)")
    a1.legend(fontsize=8)
    s = srv["summary"]
    xs = range(len(PCTS))
    w = 0.38
    for i, (mode, color) in enumerate((("without_updates", "#4c72b0"), ("with_updates", "#c44e52"))):
        ys = [s[mode][p] for p in PCTS]
        bars = a2.bar([x + (i - 0.5) * w for x in xs], ys, w, color=color,
                      label=mode.replace("_", " "))
        for b, y in zip(bars, ys):
            a2.annotate(f"{y}", (b.get_x() + b.get_width() / 2, y), ha="center", va="bottom", fontsize=7)
    a2.set_xticks(list(xs))
    a2.set_xticklabels(["p50", "p99", "p99.9", "max"])
    a2.set_yscale("log")
    a2.set_ylabel("request latency (µs)")
    a2.set_title(f"kvd request latency, update every {srv['update_period_s'] * 1000:.0f} ms vs none")
    a2.legend(fontsize=8)
    common.save_plot(fig, "update_latency")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    main(p.parse_args().quick)
