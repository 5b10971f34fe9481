"""example_throughput: requests/s of kvd built with psu (DSU units store.c,
engine.c, protocol.c, runtime linked in) vs the plain build of the same
sources (gcc -O2, no psu), under the same kvload load, runs interleaved.

    python bench/example_throughput.py [--quick]"""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

VARIANTS = {"dsu": "kvd", "plain": "kvd-plain"}


def main(quick=False):
    root = common.kvd_project()
    env = common.runtime_env()
    runs = 3 if quick else 7
    seconds = 3 if quick else 5
    rps = {v: [] for v in VARIANTS}
    lat = {v: [] for v in VARIANTS}
    cpu_us = {v: [] for v in VARIANTS}     # server CPU per request
    for rep in range(runs):
        order = list(VARIANTS) if rep % 2 == 0 else list(VARIANTS)[::-1]
        for v in order:
            server, port = common.start_kvd(root, VARIANTS[v], workers=4, env=env)
            try:
                cpu_before = common.process_cpu_seconds(server.pid)
                _, final = common.kvload(root, port, threads=2, seconds=seconds)
                cpu_used = common.process_cpu_seconds(server.pid) - cpu_before
            finally:
                common.stop(server)
            if final.get("failed"):
                common.log(f"{v}: {final['failed']} failed requests")
            rps[v].append(final["ok"] / final["t"])
            cpu_us[v].append(cpu_used * 1e6 / final["ok"])
            lat[v].append(final.get("latency_us", {}).get("p50"))
            common.log(f"example_throughput run {rep + 1} {v}: {rps[v][-1]:.0f} req/s")
    med = {v: common.median(rps[v]) for v in VARIANTS}
    ratio = med["dsu"] / med["plain"]
    pair_ratios = [d / p for d, p in zip(rps["dsu"], rps["plain"])]
    cpu_med = {v: common.median(cpu_us[v]) for v in VARIANTS}
    cpu_ratio = cpu_med["plain"] / cpu_med["dsu"]
    instructions = {v: instructions_per_request(root, VARIANTS[v], env, seconds) for v in VARIANTS}
    instruction_ratio = (instructions["plain"] / instructions["dsu"]
                         if instructions["plain"] else None)
    common.write_result("example_throughput", {
        "description": __doc__.split("\n\n")[0],
        "load": f"kvload -t 2 -d {seconds} against kvd -w 4, fresh server per run",
        "runs": runs, "requests_per_s": rps, "p50_latency_us": lat,
        "median_requests_per_s": med, "ratio_dsu_to_plain": round(ratio, 4),
        "per_pair_ratios": [round(r, 4) for r in pair_ratios],
        "server_cpu_us_per_request": cpu_us,
        "server_cpu_ratio_plain_to_dsu": round(cpu_ratio, 4),
        "instructions_per_request": instructions,
        "instruction_ratio_plain_to_dsu": instruction_ratio and round(instruction_ratio, 4),
        "instruction_note": "user-space instructions the server executed per request served, "
                            "under valgrind's cachegrind (start-up included, amortised over "
                            "the run); deterministic, unlike the figures above",
        "server_cpu_note": "server user+system CPU per request served (from /proc/PID/stat, "
                           "10 ms ticks): steadier than throughput where client and server "
                           "share 2 cores; > 1 would mean the DSU build is cheaper",
        "target": "DSU >= 98 % of plain", "met": ratio >= 0.98})
    plot(rps, ratio)
    print(f"\nexample_throughput: DSU {med['dsu']:.0f} req/s, plain {med['plain']:.0f} req/s, "
          f"ratio {ratio * 100:.1f} % (per-pair ratios "
          f"{', '.join(f'{r * 100:.0f}%' for r in pair_ratios)})")
    print(f"  server CPU per request: DSU {cpu_med['dsu']:.1f} us, plain {cpu_med['plain']:.1f} us "
          f"(plain / DSU {cpu_ratio * 100:.1f} %)")
    if instruction_ratio:
        print(f"  instructions per request: DSU {instructions['dsu']:.0f}, plain "
              f"{instructions['plain']:.0f} (plain / DSU {instruction_ratio * 100:.1f} %)")
    return {"ratio_dsu_to_plain": round(ratio, 4), "server_cpu_ratio_plain_to_dsu": round(cpu_ratio, 4),
            "instruction_ratio_plain_to_dsu": instruction_ratio and round(instruction_ratio, 4)}


def instructions_per_request(root, binary, env, seconds):
    """User-space instructions per request of a server run under cachegrind
    (None without valgrind)."""
    prefix = common.cachegrind(common.WORK / f"cachegrind-{binary}.out")
    if not prefix:
        return None
    server = subprocess.Popen([*prefix, str(root / binary), "-p", "0", "-w", "4"], cwd=root,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().split()[-1]
        _, final = common.kvload(root, port, threads=2, seconds=seconds)
    finally:
        server.terminate()
        _, err = server.communicate(timeout=60)
    if not final.get("ok"):
        raise RuntimeError(f"cachegrind of {binary}: no request served: {err[-2000:]}")
    return common.instructions_counted(err) / final["ok"]


def plot(rps, ratio):
    plt = common.pyplot()
    if not plt:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, v in enumerate(VARIANTS):
        ys = [r / 1000 for r in rps[v]]
        ax.scatter([i] * len(ys), ys, alpha=0.6)
        ax.hlines(common.median(ys), i - 0.25, i + 0.25, color="black")
    ax.set_xticks(range(len(VARIANTS)))
    ax.set_xticklabels(["kvd with psu (DSU)", "kvd plain build"])
    ax.set_ylabel("throughput (thousand requests/s)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"kvd throughput, same load, interleaved runs (median ratio {ratio * 100:.1f} %)")
    common.save_plot(fig, "example_throughput")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    main(p.parse_args().quick)
