"""soak: many consecutive live updates (alternating kvd v1->v2 and the revert
v2->v1) on a running kvd under load; samples RSS (VmRSS), psu memfd mappings in
/proc/PID/maps ("/memfd:psu-") and open fds throughout, and reports
first/last/max and whether each is flat.

    python bench/soak.py [--quick] [--updates N]   (default 1000, --quick 100)"""
import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

PERIOD = 0.02       # seconds between two update requests (~50 updates/s)


def main(quick=False, updates=None):
    updates = updates or (100 if quick else 1000)
    root = common.kvd_project()
    env = common.runtime_env()
    server, port = common.start_kvd(root, "kvd", workers=4, env=env)
    samples = []
    try:
        common.wait_socket(server.pid, env)
        seconds = int(updates * (PERIOD + 0.01) + 4)
        load = common.kvload(root, port, threads=2, seconds=seconds, interval_ms=500, popen=True)
        time.sleep(1.0)
        t0 = time.monotonic()
        count = [0]
        stop = threading.Event()

        def sample():
            while True:
                s = common.proc_sample(server.pid)
                s.update(t=round(time.monotonic() - t0, 3), updates=count[0])
                samples.append(s)
                if stop.wait(0.1):
                    break
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        common.log(f"soak: {updates} updates on kvd pid {server.pid} under kvload -t 2")

        def on_update(i, rec):
            count[0] = i
            if i % max(1, updates // 10) == 0:
                common.log(f"soak: {i} updates, last round trip {rec['rtt_ms']} ms")
        updater = common.Updater(root, server.pid, env, PERIOD, limit=updates,
                                 on_update=on_update).start()
        updater.thread.join()
        time.sleep(1.0)                        # let the update thread unload the last module
        stop.set()
        sampler.join()
        samples.append({**common.proc_sample(server.pid), "t": round(time.monotonic() - t0, 3),
                        "updates": count[0]})
        status = common.control(server.pid, "status", env)
        out = load.stdout.read()
        load.wait(timeout=seconds + 30)
        _, final = common.parse_kvload(out.splitlines())
    finally:
        common.stop(server)
    # skip samples taken before the first update completes for "first"
    metrics = {}
    for key in ("rss_kb", "memfd_mappings", "memfd_objects", "fds"):
        vals = [s[key] for s in samples]
        after_warm = [s[key] for s in samples if s["updates"] >= min(10, updates)]
        first_half = after_warm[: len(after_warm) // 2] or vals
        second_half = after_warm[len(after_warm) // 2:] or vals
        metrics[key] = {"first": vals[0], "last": vals[-1], "max": max(vals), "min": min(vals),
                        "max_first_half": max(first_half), "max_second_half": max(second_half),
                        "median_first_half": common.median(first_half),
                        "median_second_half": common.median(second_half),
                        # flat: the second half of the soak sits no higher than the first
                        # (RSS: within 1 MiB of noise).  Medians, not peaks: a sample taken
                        # while one update has its new bundle mapped and the old one not
                        # yet unloaded is a spike, whereas a leak of anything per update
                        # would move the whole second half up (500 updates later).
                        "flat": common.median(second_half) <= common.median(first_half)
                        + (1024 if key == "rss_kb" else 0)}
    rtts = [e["rtt_ms"] for e in updater.events]
    result = {
        "description": __doc__.split("\n\n")[0],
        "updates_requested": updates, "updates_applied": sum(
            1 for e in updater.events if e["result"] == "applied"),
        "update_failures": updater.failures[:20], "update_period_s": PERIOD,
        "apply_round_trip_ms": {"p50": common.median(rtts), "p99": common.percentile(rtts, 99),
                                "max": max(rtts) if rtts else None},
        "load": {"ok": final.get("ok"), "failed": final.get("failed"),
                 "versions": final.get("versions"), "latency_us": final.get("latency_us")},
        "final_status": {k: status.get(k) for k in ("label", "updates", "unloaded", "modules")},
        "metrics": metrics, "samples": samples,
    }
    common.write_result("soak", result)
    plot(samples, updates)
    print(f"\nsoak: {result['updates_applied']}/{updates} updates applied, "
          f"{len(updater.failures)} failures; load ok {final.get('ok')} failed {final.get('failed')}")
    for key, m in metrics.items():
        print(f"  {key:<15} first {m['first']:>8}  last {m['last']:>8}  max {m['max']:>8}  "
              f"median 1st/2nd half {m['median_first_half']:>7}/{m['median_second_half']:<7} "
              f"flat: {'yes' if m['flat'] else 'NO'}")
    print(f"  apply round trip p50 {result['apply_round_trip_ms']['p50']} ms, "
          f"max {result['apply_round_trip_ms']['max']} ms")
    return {"updates_applied": result["updates_applied"],
            "flat": all(m["flat"] for m in metrics.values()),
            "rss_growth_kb": metrics["rss_kb"]["last"] - metrics["rss_kb"]["first"]}


def plot(samples, updates):
    plt = common.pyplot()
    if not plt:
        return
    fig, axes = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True)
    xs = [s["updates"] for s in samples]
    axes[0].plot(xs, [s["rss_kb"] / 1024 for s in samples], ".-", ms=3)
    axes[0].set_ylabel("RSS (MiB)")
    axes[0].set_ylim(bottom=0)
    axes[1].plot(xs, [s["memfd_mappings"] for s in samples], ".-", ms=3, label="mappings")
    axes[1].plot(xs, [s["memfd_objects"] for s in samples], ".-", ms=3, label="distinct objects")
    axes[1].set_ylabel("/memfd:psu- in maps")
    axes[1].legend(fontsize=8)
    axes[1].set_ylim(bottom=0)
    axes[2].plot(xs, [s["fds"] for s in samples], ".-", ms=3)
    axes[2].set_ylabel("open fds")
    axes[2].set_ylim(bottom=0)
    axes[2].set_xlabel("updates applied (alternating v1->v2, v2->v1)")
    fig.suptitle(f"kvd under load: {updates} consecutive live updates (sampled every 100 ms)")
    common.save_plot(fig, "soak")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--updates", type=int)
    a = p.parse_args()
    main(a.quick, a.updates)
