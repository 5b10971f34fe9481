#!/usr/bin/env python3
"""The live-update demo: kvd v1 serves load while it is updated to v2 and then v3.

    python example_project/demo.py [--workdir DIR] [--seconds N]

1. makes a git repository of the example with tags v1, v2, v3 (revisions/*.patch);
2. builds v1 with SCons and psu, and starts it with a load generator;
3. runs `scons patch` for v1->v2 and v2->v3 and applies each with `psu apply`;
4. reports requests served and failed, the version every reply showed over time,
   and the modules loaded and unloaded; writes a throughput plot.
Exit status 0 only if no request failed and the v2 code was unloaded.
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent


def run(args, cwd, quiet=True):
    done = subprocess.run([str(a) for a in args], cwd=str(cwd), capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"demo: `{' '.join(map(str, args))}` failed ({done.returncode})")
    return done.stdout


def git(cwd, *args):
    return run(["git", "-c", "user.email=demo@psu", "-c", "user.name=psu demo", *args], cwd)


def make_repository(root):
    """The example as a user would have it: a git repository with tags v1, v2, v3."""
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for item in ("SConstruct", "src", "tools", "site_scons"):
        source = HERE / item
        if source.is_dir():
            shutil.copytree(source, root / item, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, root / item)
    (root / ".gitignore").write_text(".psu-build/\npsu-patches/\n*.o\nkvd\nkvload\n*.psu.json\n"
                                     ".sconsign.dblite\n__pycache__/\n")
    site_init = root / "site_scons" / "site_init.py"
    # outside this checkout the fallback path to psu's sources must be absolute
    site_init.write_text(site_init.read_text().replace(
        'os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "site_scons")',
        repr(str(HERE.parent / "site_scons"))))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "kvd v1")
    git(root, "tag", "v1")
    for revision in ("v2", "v3"):
        git(root, "apply", str(HERE / "revisions" / f"{revision}.patch"))
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", f"kvd {revision}")
        git(root, "tag", revision)
    git(root, "checkout", "-q", "v1")
    return root


def psu(*args, env):
    done = subprocess.run([sys.executable, "-m", "psu", *args], capture_output=True, text=True, env=env)
    return done


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="where to put the repository (default: a new temp folder)")
    parser.add_argument("--seconds", type=float, default=4.0, help="load between two updates")
    parser.add_argument("--plot", default=None, help="throughput plot (default: <workdir>/demo.png)")
    arguments = parser.parse_args()

    workdir = pathlib.Path(arguments.workdir or tempfile.mkdtemp(prefix="psu-demo-")).resolve()
    repository = make_repository(workdir / "kvd")
    runtime_dir = workdir / "run"
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ, PSU_RUNTIME_DIR=str(runtime_dir))
    scons = [sys.executable, "-m", "SCons", "-Q"]
    print(f"demo: repository {repository} (tags v1, v2, v3); building v1 ...", flush=True)
    run(scons, repository)

    updates = (("v1", "v2"), ("v2", "v3"))
    for old, new in updates:
        # built before the load starts, so the plot shows the updates, not the compiler
        print(f"demo: scons patch FROM={old} TO={new}", flush=True)
        report = run(scons + ["patch", f"FROM={old}", f"TO={new}"], repository)
        print("".join("      " + line + "\n" for line in report.strip().splitlines()[1:]), end="")

    server = subprocess.Popen(["./kvd", "-p", "0", "-w", "6"], cwd=repository, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = server.stdout.readline().split()[-1]
    print(f"demo: kvd v1 running as pid {server.pid} on port {port}, under load from 4 clients",
          flush=True)
    total = int(3 * arguments.seconds + 1)
    load = subprocess.Popen(["./kvload", "-p", port, "-t", "4", "-d", str(total), "--interval", "250"],
                            cwd=repository, stdout=subprocess.PIPE, text=True)
    samples, final = [], {}

    def collect():
        for line in load.stdout:
            record = json.loads(line)
            if record.get("final"):
                final.update(record)
            else:
                samples.append(record)
    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    started = time.monotonic()
    events = []
    try:
        for old, new in updates:
            time.sleep(arguments.seconds)
            bundle = repository / "psu-patches" / f"kvd-{old}-{new}.psu"
            applied = psu("apply", str(server.pid), str(bundle), env=env)
            events.append((time.monotonic() - started, new))
            print("demo: " + (applied.stdout + applied.stderr).strip(), flush=True)
            if applied.returncode != 0:
                raise SystemExit("demo: the update was refused")
        load.wait(timeout=total + 30)
        reader.join(timeout=5)
        if not final:
            raise SystemExit(f"demo: the load generator ended without a summary ({load.returncode})")
        status = json.loads(psu("status", str(server.pid), "--json", env=env).stdout)
        maps = pathlib.Path(f"/proc/{server.pid}/maps").read_text()
    finally:
        if load.poll() is None:
            load.kill()
        server.terminate()
        server.wait(timeout=10)

    v2_mapped = "psu-v2-code" in maps
    versions = final.get("versions", {})
    print()
    print(f"requests served  {final.get('ok', 0)}")
    print(f"requests failed  {final.get('failed', '?')}")
    print("replies by version  " + ", ".join(f"{k}: {v}" for k, v in sorted(versions.items())))
    print(f"now at           {status['label']} ({status['build_id'][:12]}) after {status['updates']} updates")
    print("modules loaded   " + ", ".join(f"{m['index']}:{m.get('label')}" for m in status["modules"]))
    print(f"modules unloaded {status.get('unloaded', 0)}  (v2 code still mapped: {'yes' if v2_mapped else 'no'})")
    latency = final.get("latency_us", {})
    print(f"latency          p50 {latency.get('p50')} us, p99 {latency.get('p99')} us, "
          f"p99.9 {latency.get('p999')} us, max {latency.get('max')} us")

    plot = pathlib.Path(arguments.plot or workdir / "demo.png")
    if _plot(samples, events, plot):
        print(f"plot             {plot}")
    ok = final.get("failed", 1) == 0 and not v2_mapped and status["label"] == "v3"
    print("demo: " + ("OK: every request served, old code unloaded" if ok else "FAILED"))
    return 0 if ok else 1


def _plot(samples, events, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("demo: (pip install matplotlib for a throughput plot)")
        return False
    figure, axes = plt.subplots(figsize=(8, 3.5))
    axes.plot([s["t"] for s in samples], [s["rps"] for s in samples], label="requests/s")
    for at, label in events:
        axes.axvline(at, color="red", linestyle="--")
        axes.annotate(f"apply {label}", (at, 0), textcoords="offset points", xytext=(4, 8), color="red")
    axes.set_xlabel("seconds")
    axes.set_ylabel("requests per second")
    axes.set_title("kvd under load, updated live v1 -> v2 -> v3")
    axes.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return True


if __name__ == "__main__":
    sys.exit(main())
