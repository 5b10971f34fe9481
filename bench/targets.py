"""Real code bases for the release-stream and patch-coverage benchmarks: Lua
(from the lupa sdists) and SQLite (from the sqlean.py sdists), each imported
release by release as tagged commits of a scratch git repository that builds
it with psu, every unit of the program a DSU unit; plain builds of the same
sources for reference answers; and the long-running processes the updates
are applied to (a Lua driver script, the SQLite shell), both reading
commands from a pipe.  Downloads are cached outside the repository
(common.DOWNLOADS), everything else goes to bench/results/work/."""
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import sqlite_bench  # noqa: E402

sys.path.insert(0, str(common.REPO / "site_scons"))
from psu import patch as psu_patch  # noqa: E402

SITE_INIT = sqlite_bench.SITE_INIT
GITIGNORE = (".psu-build/\npsu-patches/\n*.o\n*.psu.json\n.sconsign.dblite\n__pycache__/\n"
             "dsu-units.json\n")


def git(cwd, *args, check=True):
    return common.run(["git", "-c", "user.email=bench@psu", "-c", "user.name=psu bench",
                       "-c", "advice.detachedHead=false", *args], cwd=cwd, check=check)


# ---- the code bases -----------------------------------------------------------

class Target:
    """One code base: its releases, how to unpack one, how to build it."""
    name = program = ""
    releases = []            # [(label, sdist version)], oldest first
    flags = []
    libs = []
    build_note = ""

    def unpack(self, label, dest):
        """Write release `label`'s sources into dest/src (and its tests into dest/tests)."""
        raise NotImplementedError

    def units(self, src):
        raise NotImplementedError

    fallback_dsu_units = None   # PSU_UNITS to go on with when every unit DSU does not build

    def sconstruct(self):
        # dsu-units.json (untracked): PSU_UNITS other than every unit, see fallback_dsu_units
        return (f"import json, os\n"
                f"env = Environment(tools=['default', 'psu'])\n"
                f"env.Append(CCFLAGS={self.flags!r}, LIBS={self.libs!r})\n"
                f"units = {self.unit_expression}\n"
                f"dsu = json.load(open('dsu-units.json')) if os.path.exists('dsu-units.json') else units\n"
                f"env.PSUProgram({self.program!r}, units, PSU_UNITS=dsu,\n"
                f"               PSU_DIRECT_STATICS=ARGUMENTS.get('PSU_DIRECT_STATICS', 'all'),\n"
                # a running process's `main` never returns: its operator accepts
                # that it stays at its old version, as docs/refusals.md says
                f"               PSU_ACCEPT=['stale:main'])\n")

    def release_dir(self, label):
        """WORK/<name>-<label>: src/ (the build's sources) and tests/."""
        dest = common.WORK / f"{self.name}-{label}"
        if not (dest / ".unpacked").exists():
            if dest.exists():
                shutil.rmtree(dest)
            (dest / "src").mkdir(parents=True)
            self.unpack(label, dest)
            (dest / ".unpacked").write_text("")
        return dest

    def plain_build(self, label):
        """The release built with gcc alone (the reference for its answers)."""
        out = common.WORK / f"{self.name}-{label}" / f"{self.program}-plain"
        if out.exists():
            return out
        src = self.release_dir(label) / "src"
        common.log(f"{self.name} {label}: plain gcc build ...")
        objects = []
        for unit in self.units(src):
            obj = out.parent / "plain-obj" / (unit.name[:-2] + ".o")
            obj.parent.mkdir(exist_ok=True)
            common.run(["gcc", *self.flags, "-c", unit, "-o", obj])
            objects.append(obj)
        common.run(["gcc", *objects, "-o", out, *[f"-l{lib}" for lib in self.libs]])
        return out


class Lua(Target):
    name, program = "lua", "lua"
    releases = [("5.4.3", "1.10"), ("5.4.4", "2.0"), ("5.4.7", "2.3"), ("5.4.8", "2.8")]
    # LUA_USE_JUMPTABLE=0: lvm.c's dispatch by computed goto (ljumptab.h, on by
    # default with gcc) is C that psu's front end cannot parse (it says so).
    flags = ["-O2", "-std=gnu99", "-DLUA_COMPAT_5_3", "-DLUA_USE_LINUX", "-DLUA_USE_JUMPTABLE=0"]
    build_note = ("built with -DLUA_USE_JUMPTABLE=0: with gcc's default, lvm.c dispatches by "
                  "computed goto (ljumptab.h), which psu's front end refuses to parse")
    libs = ["m", "dl"]
    # onelua.c is every unit in one; ltests.c is the test-only internal library
    # (empty without LUA_USER_H): neither is part of the `lua` the makefile builds.
    skipped = ("onelua.c", "ltests.c")
    unit_expression = ("sorted(f for f in Glob('src/*.c', strings=True)\n"
                       "             if f.split('/')[-1] not in ('onelua.c', 'ltests.c'))")

    def unpack(self, label, dest):
        version = dict(self.releases)[label]
        tarball = common.sdist("lupa", version)
        scratch = dest / "unpack"
        scratch.mkdir()
        common.run(["tar", "-xzf", tarball, "-C", scratch, "--wildcards",
                    "*/third-party/lua/*", "*/third-party/lua54/*"], check=False)
        folder = next(p for p in [*scratch.glob("*/third-party/lua54"), *scratch.glob("*/third-party/lua")]
                      if (p / "lua.h").exists())
        header = (folder / "lua.h").read_text()
        release = ".".join(re.search(rf'#define LUA_VERSION_{k}\s+"(\d+)"', header).group(1)
                           for k in ("MAJOR", "MINOR", "RELEASE"))
        if release != label:
            raise RuntimeError(f"lupa {version} carries Lua {release}, not {label}")
        for f in folder.iterdir():
            if f.suffix in (".c", ".h") and f.name not in self.skipped:
                shutil.copy(f, dest / "src" / f.name)
        if (folder / "testes" / "all.lua").exists():
            shutil.copytree(folder / "testes", dest / "tests")
        shutil.rmtree(scratch)

    def units(self, src):
        return sorted(p for p in src.glob("*.c") if p.name not in self.skipped)


class SQLite(Target):
    name, program = "sqlite", "sqlite3"
    releases = [("3.45.0", "3.45.0"), ("3.45.1", "3.45.1"), ("3.47.0", "3.47.0")]
    flags = sqlite_bench.FLAGS
    libs = ["m", "pthread"]
    unit_expression = "['src/sqlite3.c', 'src/shell.c']"
    fallback_dsu_units = ["src/sqlite3.c"]

    def unpack(self, label, dest):
        sqlite_bench.fetch(dict(self.releases)[label], dest / "src")

    def units(self, src):
        return [src / "sqlite3.c", src / "shell.c"]


TARGETS = {"lua": Lua(), "sqlite": SQLite()}


# ---- the scratch repository ---------------------------------------------------

def repository(target, name=None):
    """WORK/<name>: a git repository with one commit per release, tagged
    v<label>, building the program with psu (SConstruct, site_scons)."""
    root = common.WORK / (name or f"stream-{target.name}")
    ready = root / ".bench-ready"
    labels = [label for label, _ in target.releases]
    stamp = {"releases": labels, "sconstruct": target.sconstruct()}
    if ready.exists() and json.loads(ready.read_text()) == stamp:
        return root
    if root.exists():
        shutil.rmtree(root)
    (root / "site_scons").mkdir(parents=True)
    (root / "SConstruct").write_text(target.sconstruct())
    (root / "site_scons" / "site_init.py").write_text(SITE_INIT % str(common.REPO / "site_scons"))
    (root / ".gitignore").write_text(GITIGNORE + target.program + "\n.bench-ready\n")
    git(root, "init", "-q")
    for label in labels:
        if (root / "src").exists():
            shutil.rmtree(root / "src")
        shutil.copytree(target.release_dir(label) / "src", root / "src")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", f"{target.name} {label}")
        git(root, "tag", f"v{label}")
    ready.write_text(json.dumps(stamp))
    return root


def scons_build(root, *arguments, timeout=3600):
    """(seconds, return code, output) of one scons run in root."""
    t0 = time.monotonic()
    done = subprocess.run([*common.SCONS, *arguments], cwd=root, capture_output=True, text=True,
                          timeout=timeout)
    return time.monotonic() - t0, done.returncode, done.stdout + done.stderr


class BuildFailed(RuntimeError):
    def __init__(self, message, output):
        super().__init__(message)
        self.output = output


def build_release(target, root, label):
    """Check out v<label> and build it with psu; the build's seconds."""
    git(root, "checkout", "-q", f"v{label}")
    seconds, code, output = scons_build(root)
    if code != 0:
        sys.stderr.write(output[-4000:])
        raise BuildFailed(f"{target.name} {label}: psu build failed ({code})", output)
    return seconds


def failure_lines(output, limit=12):
    """What a failed psu build or bundle said: psu's own lines, then the compiler's."""
    said = [line.strip() for line in output.splitlines()
            if line.startswith("psu: ") and not line.startswith(("psu: analysing", "psu: making",
                                                                 "psu: hint", "psu: generating",
                                                                 "psu: describing"))]
    return (said + [line.strip() for line in output.splitlines()
                    if FAILURE.search(line) and not line.startswith("psu: ")])[:limit]


# ---- `scons patch` and its report --------------------------------------------

# `file:line: kind: entity: reason`, or `file: kind: ...` for a whole unit
REFUSAL = re.compile(r"^(?P<where>[^\s:]+(?::\d+)*): (?P<kind>[a-z][a-z-]*): ")
FAILURE = re.compile(r"undefined (reference|symbol)|error:|cannot|failed", re.I)


def parse_report(text):
    """Sections of psu's change report: {title: [items]}.  A section starts
    with a two-space-indented `title:`, its items are indented by four
    (deeper lines are details of the item above)."""
    sections, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^  (\S[^:]*):\s*$", line)
        if m:
            current = sections.setdefault(m.group(1), [])
            continue
        if current is not None and re.match(r"^    \S", line):
            current.append(line.strip())
        elif current is not None and not line.startswith("     "):
            current = None
    return sections


def refusal_kinds(sections):
    kinds = {}
    for item in sections.get("refused", []):
        m = REFUSAL.match(item)
        kind = m.group("kind") if m else "other"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def make_patch(target, root, from_ref, to_ref, extra=()):
    """`scons patch FROM TO`: outcome, report, counts, bundle, seconds."""
    seconds, code, output = scons_build(root, "patch", f"FROM={from_ref}", f"TO={to_ref}", *extra)
    sections = parse_report(output)
    bundle = root / "psu-patches" / psu_patch.bundle_name(target.program, from_ref, to_ref)
    kinds = refusal_kinds(sections)
    result = {
        "from": from_ref, "to": to_ref, "exit_code": code,
        "patch_build_s": round(seconds, 1),
        "replaced": len(sections.get("replaced", [])), "added": len(sections.get("added", [])),
        "refusals": sum(kinds.values()), "refusals_by_kind": kinds,
        "notes": len(sections.get("notes", [])),
    }
    if code == 0 and bundle.exists():
        result["outcome"] = "built"
        result["bundle"] = str(bundle)
        result["bundle_bytes"] = bundle.stat().st_size
    elif kinds:
        result["outcome"] = "refused"
    else:
        result["outcome"] = "build failed"
        result["failure"] = failure_lines(output)
        # the change set of a bundle that did not build (nothing is built)
        _, _, explained = scons_build(root, "patch", f"FROM={from_ref}", f"TO={to_ref}",
                                      "PSU_EXPLAIN=1", *extra)
        sections = parse_report(explained)
        result["replaced"] = len(sections.get("replaced", []))
        result["added"] = len(sections.get("added", []))
        output += "\n--- PSU_EXPLAIN=1 ---\n" + explained
    result["report"] = output
    return result


# ---- long-running processes ----------------------------------------------------

class Process:
    """A program reading commands on stdin; stdout read line by line in a thread."""

    def __init__(self, args, cwd, env, stderr_path):
        self.stderr_file = open(stderr_path, "w")
        self.proc = subprocess.Popen([str(a) for a in args], cwd=str(cwd), env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr_file, text=True, errors="replace")
        self.pid = self.proc.pid
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def send(self, text):
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def read_until(self, predicate, timeout):
        """Lines up to the first satisfying `predicate` (returned last)."""
        out, end = [], time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"pid {self.pid}: no answer in {timeout} s; last lines: {out[-5:]}")
            if line is None:
                raise RuntimeError(f"pid {self.pid} ended ({self.proc.wait()}); last lines: "
                                   f"{out[-5:]}")
            out.append(line)
            if predicate(line):
                return out

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            common.stop(self.proc)
        self.stderr_file.close()


class LuaProcess(Process):
    DRIVER = common.BENCH / "lua_driver.lua"

    def __init__(self, exe, cwd, env, stderr_path):
        super().__init__([exe, self.DRIVER], cwd, env, stderr_path)

    def command(self, line, timeout=120):
        """(ok, message, output lines) of one driver command."""
        self.send(line + "\n")
        out = self.read_until(lambda l: l.startswith("@@done "), timeout)
        _, status, message = (out[-1] + " ").split(" ", 2)
        return status == "ok", message.strip(), out[:-1]

    def start_command(self, line):
        self.send(line + "\n")

    def finish_command(self, timeout=120):
        out = self.read_until(lambda l: l.startswith("@@done "), timeout)
        _, status, message = (out[-1] + " ").split(" ", 2)
        return status == "ok", message.strip(), out[:-1]

    def probe(self, chunk):
        ok, message, _ = self.command("eval " + chunk, timeout=60)
        return message if ok else "error: " + message.split(" | ")[0][:200]


class SQLiteProcess(Process):
    def __init__(self, exe, cwd, env, stderr_path):
        # stdbuf -oL: the shell writes each result line at once (its stdout is a pipe)
        super().__init__(["stdbuf", "-oL", exe, ":memory:"], cwd, env, stderr_path)
        self.serial = 0

    def sql(self, text, timeout=300):
        """The shell's output lines for `text`."""
        self.serial += 1
        marker = f"@@done{self.serial}"
        self.send(text.rstrip() + f"\nSELECT '{marker}';\n")
        return self.read_until(lambda l: l == marker, timeout)[:-1]

    def start_sql(self, text):
        self.serial += 1
        self.pending = f"@@done{self.serial}"
        self.send(text.rstrip() + f"\nSELECT '{self.pending}';\n")

    def finish_sql(self, timeout=300):
        return self.read_until(lambda l: l == self.pending, timeout)[:-1]

    def probe(self, expression):
        lines = self.sql(f"SELECT {expression};", timeout=60)
        return "\n".join(lines) if lines else "error"


def start(target, exe, cwd, env, stderr_path):
    cls = LuaProcess if target.name == "lua" else SQLiteProcess
    process = cls(exe, cwd, env, stderr_path)
    common.wait_socket(process.pid, env) if not str(exe).endswith("-plain") else None
    return process


def apply_bundle(process, bundle, env):
    """The process's answer to `apply` and the request's round trip (ms)."""
    t0 = time.monotonic()
    try:
        answer = common.control(process.pid, "apply " + str(bundle), env, timeout=120)
    except (OSError, ValueError) as e:
        answer = {"ok": False, "error": repr(e)}
    return answer, round((time.monotonic() - t0) * 1e3, 1)
