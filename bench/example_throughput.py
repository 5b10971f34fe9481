"""example_throughput: kvd built with psu (DSU units store.c, engine.c,
protocol.c, runtime linked in) against the plain build of the same sources
(gcc -O2, no psu), under one load that interleaves its requests between them.

    python bench/example_throughput.py [--quick]

Both servers run at once; bench/c/kvd_ab sends every request to both, back
to back, alternating which goes first, so whatever the shared machine does
(slow and fast phases, other tenants) falls on both within microseconds.  At
a fixed number of requests in flight, throughput = concurrency / mean latency
(Little's law), so plain's mean latency over the DSU build's is their
throughput ratio; it is taken per one-second window and the median window
reported, with the spread.  Loopback TCP dominates this server's cost, so
the engine alone completes the picture: `kvd --batch` on a fixed request
file, by CPU time (beside the plain build given an idle second thread, as
psu's update thread gives the DSU build one) and by instructions executed
(cachegrind, deterministic; also with psu's update thread disabled)."""
import argparse
import json
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

VARIANTS = {"dsu": "kvd", "plain": "kvd-plain"}


def build_client():
    out = common.WORK / "kvd_ab"
    common.WORK.mkdir(parents=True, exist_ok=True)
    common.run(["gcc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-pthread",
                "-I", common.REPO / "example_project" / "tools",
                common.BENCH / "c" / "kvd_ab.c", "-o", out])
    return out


def interleaved(root, env, client, seconds, threads=2):
    """One kvd_ab run against a DSU and a plain server started side by side."""
    servers = {v: common.start_kvd(root, VARIANTS[v], workers=4, env=env) for v in VARIANTS}
    try:
        done = subprocess.run([str(client), "-a", servers["dsu"][1], "-b", servers["plain"][1],
                               "-t", str(threads), "-d", str(seconds)],
                              capture_output=True, text=True, timeout=seconds + 60)
    finally:
        for proc, _ in servers.values():
            common.stop(proc)
    if done.returncode != 0:
        raise RuntimeError(f"kvd_ab failed ({done.returncode}): {done.stderr[-2000:]}")
    run = json.loads(done.stdout)
    dsu, plain = run["a"], run["b"]
    windows = []
    for d_n, d_ns, p_n, p_ns in run["windows"]:
        if d_n and p_n:
            windows.append({"requests": d_n,
                            "dsu_mean_us": d_ns / d_n / 1e3, "plain_mean_us": p_ns / p_n / 1e3,
                            "ratio": (p_ns / p_n) / (d_ns / d_n)})
    return {"threads": threads, "seconds": seconds, "requests_each": dsu["requests"],
            "dsu_mean_us": dsu["latency_ns"] / dsu["requests"] / 1e3,
            "plain_mean_us": plain["latency_ns"] / plain["requests"] / 1e3,
            "mismatched_replies": run["mismatched"], "windows": windows}


def engine_alone(root, env, quick):
    """`kvd --batch` on one request file: CPU seconds of each build (fastest of
    several interleaved runs) and instructions per request.  The batch server
    has one thread, so beside the plain build runs the plain build with an
    idle second thread (bench/c/idle_thread.c): what psu's update thread costs
    a single-threaded program, apart from psu's checks."""
    shim = common.WORK / "idle_thread.so"
    common.run(["gcc", "-O2", "-Wall", "-Wextra", "-shared", "-fPIC", "-pthread",
                common.BENCH / "c" / "idle_thread.c", "-o", shim])
    variants = {"dsu": (VARIANTS["dsu"], {}), "plain": (VARIANTS["plain"], {}),
                "plain+thread": (VARIANTS["plain"], {"LD_PRELOAD": str(shim)})}
    requests = 300_000
    work = common.WORK / f"kvd-requests-{requests}.txt"
    if not work.exists():
        work.write_text(common.run([sys.executable, root / "tools" / "mkworkload.py",
                                    "-n", str(requests), "-s", "7"]))
    text = work.read_text()
    cpu = {v: [] for v in variants}
    replies = {}
    for rep in range(7 if quick else 21):
        for v in (list(variants) if rep % 2 == 0 else list(variants)[::-1]):
            binary, extra = variants[v]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            done = subprocess.run([root / binary, "--batch", "--cycle-every", "1000"], input=text,
                                  capture_output=True, text=True, env=dict(env, **extra), check=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[v].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            replies.setdefault(v, done.stdout)
    best = {v: min(cpu[v]) for v in variants}
    small = "\n".join(text.splitlines()[:30_000 if quick else 100_000]) + "\n"
    counted = len(small.splitlines())
    # "dsu, no update thread": PSU_DISABLE=1 starts no thread, so the process
    # keeps glibc's single-thread paths and the plain build's heap layout (the
    # thread's creation allocates from the main arena): psu's checks alone
    counted_variants = {"dsu": {}, "dsu, no update thread": {"PSU_DISABLE": "1"}, "plain": {}}
    instructions = {v: common.instructions_executed(
        [root / VARIANTS["plain" if v == "plain" else "dsu"], "--batch", "--cycle-every", "1000"],
        small, dict(env, **extra)) for v, extra in counted_variants.items()}
    per_request = ({v: instructions[v] / counted for v in counted_variants}
                   if instructions["plain"] else None)
    return {"requests": requests, "cpu_seconds": cpu, "best_cpu_seconds": best,
            "cpu_ratio_plain_to_dsu": round(best["plain"] / best["dsu"], 4),
            "cpu_ratio_plain_with_thread_to_dsu": round(best["plain+thread"] / best["dsu"], 4),
            "cpu_ratio_plain_to_plain_with_thread": round(best["plain"] / best["plain+thread"], 4),
            "same_replies": all(r == replies["plain"] for r in replies.values()),
            "instructions_per_request": per_request,
            "instruction_ratio_plain_to_dsu": per_request and round(
                per_request["plain"] / per_request["dsu"], 4),
            "instruction_ratio_plain_to_dsu_without_thread": per_request and round(
                per_request["plain"] / per_request["dsu, no update thread"], 4),
            "instructions_counted_over": counted,
            "note": "single-threaded batch mode, fastest run of each; plain+thread = the plain "
                    "build with an idle second thread, as psu's update thread makes the DSU "
                    "build multi-threaded (glibc's stdio and malloc lose their single-thread "
                    "shortcuts); instruction counts depend a little on heap layout, which "
                    "the update thread's creation shifts (libc string routines)"}


def main(quick=False):
    root = common.kvd_project()
    env = common.runtime_env()
    client = build_client()
    seconds = 10 if quick else 40
    run = interleaved(root, env, client, seconds)
    ratios = sorted(w["ratio"] for w in run["windows"])
    ratio = common.median(ratios)
    quartiles = (common.percentile(ratios, 25), common.percentile(ratios, 75))
    overall = run["plain_mean_us"] / run["dsu_mean_us"]
    engine = engine_alone(root, env, quick)
    common.write_result("example_throughput", {
        "description": __doc__.split("\n\n")[0],
        "method": __doc__.split("\n\n")[2],
        "load": f"kvd_ab -t {run['threads']} -d {seconds}: every request to both servers "
                "(kvd -w 4 each), SET/GET on 1,000 keys, INFO every 8th",
        "interleaved": run,
        "ratio_dsu_to_plain": round(ratio, 4),
        "ratio_quartiles": [round(q, 4) for q in quartiles],
        "ratio_whole_run": round(overall, 4),
        "engine_alone": engine,
        "target": "DSU >= 98 % of plain", "met": ratio >= 0.98})
    plot(run, ratio)
    print(f"\nexample_throughput: DSU / plain throughput {ratio * 100:.1f} % "
          f"(median of {len(ratios)} one-second windows, quartiles "
          f"{quartiles[0] * 100:.1f}-{quartiles[1] * 100:.1f} %; whole run {overall * 100:.1f} %; "
          f"mean latency {run['dsu_mean_us']:.2f} vs {run['plain_mean_us']:.2f} us, "
          f"{run['requests_each']} requests each, {run['mismatched_replies']} replies differing)")
    print(f"  engine alone (kvd --batch, {engine['requests']} requests, one thread): CPU time "
          f"{engine['cpu_ratio_plain_to_dsu'] * 100:.1f} % of plain, "
          f"{engine['cpu_ratio_plain_with_thread_to_dsu'] * 100:.1f} % of plain with an idle thread "
          f"(which is itself {engine['cpu_ratio_plain_to_plain_with_thread'] * 100:.1f} % of plain; "
          f"fastest runs), same replies: {engine['same_replies']}")
    if engine["instructions_per_request"]:
        ipr = engine["instructions_per_request"]
        print(f"  instructions per request: DSU {ipr['dsu']:.0f}, plain {ipr['plain']:.0f} "
              f"(plain / DSU {engine['instruction_ratio_plain_to_dsu'] * 100:.1f} %); DSU without "
              f"its update thread {ipr['dsu, no update thread']:.0f} "
              f"({engine['instruction_ratio_plain_to_dsu_without_thread'] * 100:.1f} %)")
    return {"ratio_dsu_to_plain": round(ratio, 4),
            "engine_cpu_ratio": engine["cpu_ratio_plain_to_dsu"],
            "engine_cpu_ratio_to_threaded_plain": engine["cpu_ratio_plain_with_thread_to_dsu"],
            "engine_instruction_ratio": engine["instruction_ratio_plain_to_dsu"],
            "engine_instruction_ratio_without_thread":
                engine["instruction_ratio_plain_to_dsu_without_thread"]}


def plot(run, ratio):
    plt = common.pyplot()
    if not plt:
        return
    windows = run["windows"]
    xs = list(range(1, len(windows) + 1))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    for key, label in (("dsu_mean_us", "kvd with psu (DSU)"), ("plain_mean_us", "kvd plain build")):
        top.plot(xs, [run["threads"] / w[key] * 1e3 for w in windows], marker=".", label=label)
    top.set_ylabel("thousand requests/s\n(concurrency / mean latency)")
    top.set_ylim(bottom=0)
    top.legend(loc="lower right")
    top.set_title("kvd, one load interleaved between the DSU and the plain build")
    bottom.plot(xs, [w["ratio"] * 100 for w in windows], marker=".", color="black")
    bottom.axhline(98, color="red", linestyle="--", label="target 98 %")
    bottom.axhline(ratio * 100, color="grey", linestyle=":", label=f"median {ratio * 100:.1f} %")
    bottom.set_ylabel("DSU / plain (%)")
    bottom.set_xlabel("second of the run")
    bottom.legend(loc="lower right")
    common.save_plot(fig, "example_throughput")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    main(p.parse_args().quick)
