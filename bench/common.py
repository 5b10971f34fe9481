"""Shared helpers of the psu benchmarks: machine description, result files,
plots, compiling C with the runtime, the kvd example project, the control
socket, and process sampling.  Nothing here asserts on timings."""
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

BENCH = pathlib.Path(__file__).resolve().parent
REPO = BENCH.parent
RUNTIME = REPO / "runtime"
RESULTS = BENCH / "results"
WORK = RESULTS / "work"          # scratch: builds, repositories, downloads (git-ignored)
SCONS = [sys.executable, "-m", "SCons", "-Q"]
# Downloaded source distributions, shared by the benchmarks and kept across runs
# (outside the repository: never committed).
DOWNLOADS = pathlib.Path(os.environ.get("PSU_BENCH_DOWNLOADS",
                                        pathlib.Path.home() / ".cache" / "psu-realcode"))


def log(*parts):
    print("[bench]", *parts, flush=True)


def run(args, cwd=None, env=None, check=True, timeout=None):
    done = subprocess.run([str(a) for a in args], cwd=str(cwd) if cwd else None, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise RuntimeError(f"`{' '.join(map(str, args))}` failed ({done.returncode})")
    return done.stdout


def sdist(name, version):
    """The source distribution of `name==version` from PyPI (pip download, no
    binary of the package itself: its build requirements may come as wheels),
    cached under DOWNLOADS/<name>-<version>/."""
    folder = DOWNLOADS / f"{name}-{version}"
    found = [p for p in folder.glob("*.tar.gz")] if folder.exists() else []
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        log(f"pip download {name}=={version} (source distribution) ...")
        run([sys.executable, "-m", "pip", "download", "-q", "--no-binary", name, "--no-deps",
             f"{name}=={version}", "-d", folder], timeout=1800)
        found = list(folder.glob("*.tar.gz"))
    if not found:
        raise RuntimeError(f"no source distribution of {name}=={version} in {folder}")
    return found[0]


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "runtime", "site_scons",
                                "templates"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        rev, dirty = "?", ""
    gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.splitlines()
    return {
        "uname": " ".join(platform.uname()),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "git_revision": rev + (" (psu sources modified)" if dirty else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "gcc": gcc[0] if gcc else "?",
    }


def write_result(name, data):
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "machine": machine(), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    log(f"wrote {path.relative_to(REPO)}")
    return path


def pyplot():
    """matplotlib.pyplot with the Agg backend, or None (plots are skipped)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        log("matplotlib missing (pip install matplotlib): no plot")
        return None


def save_plot(fig, name):
    path = RESULTS / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"wrote {path.relative_to(REPO)}")


def median(xs):
    return statistics.median(xs) if xs else None


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(round(q / 100.0 * (len(xs) - 1)))))
    return xs[k]


def runtime_env():
    """Environment with a private 0700 PSU_RUNTIME_DIR for the DSU processes."""
    d = WORK / "psu-run"
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    return dict(os.environ, PSU_RUNTIME_DIR=str(d), PSU_QUIET="1")


def gcc_with_runtime(sources, out, flags=("-O2",), includes=()):
    """A C program linked with the psu runtime, as tests/cbuild.py links one."""
    args = ["gcc", "-std=gnu11", *flags, "-pthread", "-I", RUNTIME]
    for inc in includes:
        args += ["-I", inc]
    args += [*sources, *sorted(RUNTIME.glob("*.c")), "-o", out, "-rdynamic", "-pthread", "-ldl"]
    run(args)
    return pathlib.Path(out)


# ---- control socket ---------------------------------------------------------

def control(pid, request, env, timeout=30.0):
    """One request line to <PSU_RUNTIME_DIR>/<pid>.sock; the JSON answer."""
    path = os.path.join(env["PSU_RUNTIME_DIR"], f"{pid}.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall((request + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data.decode())


def wait_socket(pid, env, timeout=10.0):
    path = os.path.join(env["PSU_RUNTIME_DIR"], f"{pid}.sock")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path):
            try:
                return control(pid, "ping", env)
            except OSError:
                pass
        time.sleep(0.02)
    raise RuntimeError(f"no control socket for pid {pid}")


# ---- process sampling -------------------------------------------------------

def proc_sample(pid):
    rss = None
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    maps = open(f"/proc/{pid}/maps").read().splitlines()
    memfd_maps = sum(1 for m in maps if "/memfd:psu-" in m)
    memfd_objects = len({m.split()[-2] if m.endswith("(deleted)") else m.split()[-1]
                         for m in maps if "/memfd:psu-" in m})
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {"rss_kb": rss, "memfd_mappings": memfd_maps, "memfd_objects": memfd_objects,
            "fds": fds, "maps": len(maps)}


def psu_objects(pid):
    """Inodes of the psu objects (bundle code and state, loaded from memfds)
    mapped in a process: an object's inode disappears when it is unloaded."""
    with open(f"/proc/{pid}/maps") as f:
        return {line.split()[4] for line in f if "/memfd:psu-" in line}


# ---- the kvd example project -----------------------------------------------

def psu_fingerprint():
    """Hash of psu's own sources (package, templates, runtime): cached benchmark
    builds are reused only while it is unchanged."""
    import hashlib
    h = hashlib.sha256()
    for folder in ("site_scons/psu", "templates", "runtime"):
        for path in sorted((REPO / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def kvd_project(rebuild=False):
    """bench/results/work/kvd: git repository of example_project with tags v1..v3,
    built (v1, DSU), bundles v1->v2 and v2->v1, and a plain (non-DSU) kvd."""
    root = WORK / "kvd"
    marker = root / ".bench-ready"
    if marker.exists() and marker.read_text().strip() == psu_fingerprint() and not rebuild:
        return root
    if root.exists():
        import shutil
        shutil.rmtree(root)
    sys.path.insert(0, str(REPO / "example_project"))
    import demo                                   # example_project/demo.py
    log("kvd: making the repository (tags v1, v2, v3) and building v1 with psu ...")
    demo.make_repository(root)
    # this checkout's psu, not whichever version pip installed
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO / "site_scons"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    run(SCONS, cwd=root, env=env)
    for a, b in (("v1", "v2"), ("v2", "v1")):
        run(SCONS + ["patch", f"FROM={a}", f"TO={b}"], cwd=root, env=env)
    srcs = sorted(str(p) for p in (root / "src").glob("*.c"))
    run(["gcc", "-std=gnu11", "-O2", "-g", "-pthread", *srcs, "-o", root / "kvd-plain", "-pthread"])
    marker.write_text(psu_fingerprint() + "\n")
    return root


def start_kvd(root, binary="kvd", workers=4, env=None):
    proc = subprocess.Popen([str(root / binary), "-p", "0", "-w", str(workers)], cwd=root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    port = line.split()[-1]
    return proc, port


def process_cpu_seconds(pid):
    """User + system CPU seconds a running process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cachegrind(out="/dev/null"):
    """The command prefix that counts a program's instructions (valgrind's
    cachegrind: exact, unaffected by the machine's noise); None without valgrind.
    --smc-check=all: psu writes jumps over entry hooks in the program's text,
    which valgrind otherwise would not see change (it is mapped from a file)."""
    if not shutil.which("valgrind"):
        return None
    return ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--smc-check=all",
            f"--cachegrind-out-file={out}"]


def instructions_counted(stderr):
    """The instruction total cachegrind printed on stderr."""
    m = re.search(r"I\s+refs:\s+([\d,]+)", stderr)
    if not m:
        raise RuntimeError("no instruction count in valgrind's output: " + stderr[-2000:])
    return int(m.group(1).replace(",", ""))


def instructions_executed(args, stdin_text, env=None):
    """Instructions one run executes; None when valgrind is not installed."""
    prefix = cachegrind()
    if not prefix:
        return None
    done = subprocess.run([*prefix, *map(str, args)], input=stdin_text, capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"valgrind {args[0]}: {done.returncode} {done.stderr[-2000:]}")
    return instructions_counted(done.stderr)


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kvload(root, port, threads, seconds, interval_ms=250, popen=False):
    args = [str(root / "kvload"), "-p", port, "-t", str(threads), "-d", str(seconds),
            "--interval", str(interval_ms)]
    if popen:
        return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    out = subprocess.run(args, capture_output=True, text=True).stdout
    return parse_kvload(out.splitlines())


def parse_kvload(lines):
    samples, final = [], {}
    for line in lines:
        line = line.strip()
        if not line:
            continue
        rec = json.loads(line)
        (final.update(rec) if rec.get("final") else samples.append(rec))
    return samples, final


class Updater:
    """Applies kvd-v1-v2.psu and kvd-v2-v1.psu alternately to pid over the
    control socket, every `period` seconds (or back to back when period=0),
    in a thread, until stop() or `limit` updates.  Records each answer and the
    round-trip time of the request (bundle load + switch + answer)."""

    def __init__(self, root, pid, env, period, limit=None, on_update=None):
        import threading
        self.bundles = [str(root / "psu-patches" / "kvd-v1-v2.psu"),
                        str(root / "psu-patches" / "kvd-v2-v1.psu")]
        self.pid, self.env, self.period, self.limit = pid, env, period, limit
        self.on_update = on_update
        self.events = []          # (t since start, label/result, round trip ms)
        self.failures = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started = None

    def start(self):
        self.started = time.monotonic()
        self.thread.start()
        return self

    def _run(self):
        i = 0
        next_at = time.monotonic() + self.period
        while not self._stop.is_set() and (self.limit is None or i < self.limit):
            if self.period:
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                next_at += self.period
            t0 = time.monotonic()
            try:
                answer = control(self.pid, "apply " + self.bundles[i % 2], self.env)
            except (OSError, ValueError) as e:
                answer = {"ok": False, "error": repr(e)}
            t1 = time.monotonic()
            rec = {"t": round(t0 - self.started, 4), "rtt_ms": round((t1 - t0) * 1e3, 3),
                   "result": answer.get("result"), "label": answer.get("label"),
                   "functions": answer.get("functions"), "module": answer.get("module")}
            if not answer.get("ok") or answer.get("result") != "applied":
                rec["answer"] = answer
                self.failures.append(rec)
            self.events.append(rec)
            i += 1
            if self.on_update:
                self.on_update(i, rec)

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=60)
        return self
