"""sqlite_patched: the SQLite shell (all of sqlite3.c a DSU unit, psu's
default policy; the build bench/sqlite_bench.py measures) with its most-called
DSU functions patched live, against the plain build and the same DSU build
unpatched, on sqlite_bench's SQL workload.

The functions are measured, not named: callgrind counts the calls of each
function while the unpatched DSU shell runs the workload, and the --top (20)
most-called ones that psu made DSU functions (the manifest's `direct` is
empty) are changed.  Each gets a behaviour-preserving body change that
compiles to no code, `(void)0;` after its `{`, placed with psu's front end
(the manifest's line, psu.srctext): every instruction the patched shell runs
beyond the unpatched one is psu's cost of calling a bundle's version and of
the bundle's code (position-independent, calls back into the program through
its exported aliases).  The revision is a commit of the scratch repository;
`scons patch FROM=v1 TO=<it>` must replace exactly those functions and
refuse nothing.

Then, side by side in one run:
- instructions of the workload alone (callgrind, instrumentation switched on
  only once the shell is ready and, patched, once the bundle is applied), of
  the plain build, the DSU build and the DSU build with the bundle applied;
  checked against bench/sqlite_bench.py's method (cachegrind, whole runs of
  plain and DSU): the DSU/plain ratios must agree;
- CPU time of the workload alone (the shell's threads' run time from
  /proc/PID/task/*/schedstat, read once the shell is ready -- and patched --
  and again once its last answer arrived), repetitions interleaved, median and
  spread.
The patched process is checked: the apply switched exactly the patched
functions, `status` shows the bundle current for that many, the bundle's
code ran (instructions in code mapped from no file: its memfd), callgrind
sees every patched function's calls go the runtime's way to a bundle's
version (from the function's entry to a stub in `psu_stub_area`, or to its
general path `psu_general_<name>`, where the runtime has such symbols), and
the workload's output equals the plain build's.  The run
stops with an error if any of this fails.

    python bench/sqlite_patched.py [--quick] [--top 20]"""
import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import sqlite_bench  # noqa: E402
import targets  # noqa: E402

from psu import codegen as psu_codegen, patch as psu_patch, srctext  # noqa: E402

UNIT = "src/sqlite3.c"
PROGRAM = "sqlite3"
TOP = 20
PROJECT = "sqlite-dsu-default"      # shared with sqlite_bench: the same build
POLICY = "all"
CHANGE = " (void)0;"               # behaviour-preserving, compiles to nothing
TARGET = "patched >= 95 % of the plain build's instructions"


# ---- callgrind ------------------------------------------------------------------

def callgrind(out):
    """Command prefix: callgrind with instrumentation off until switched on
    (and, as every count here, seeing the program's code change: psu writes
    jumps over its functions' entry hooks, in text mapped from the file,
    which valgrind checks only when told: --smc-check=all)."""
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--cache-sim=no",
            "--branch-sim=no", "--smc-check=all", f"--callgrind-out-file={out}"]


def base_name(symbol):
    """The C function a symbol is code of: gcc's clones (`f.part.0`,
    `f.isra.0`, `f.cold`) and callgrind's recursion levels (`f'2`) folded."""
    return symbol.split("'")[0].split(".")[0]


class Profile:
    """One callgrind output file: the total, calls per callee and self
    instructions per function and per object."""

    def __init__(self, path):
        self.total = None
        self.calls = collections.Counter()       # callee symbol -> calls
        self.edges = collections.Counter()       # (caller, callee) symbols -> calls
        self.self_cost = collections.Counter()   # symbol -> own instructions
        self.object_cost = collections.Counter()  # object file -> own instructions
        names = {"fn": {}, "ob": {}}
        fn = ob = callee = None
        after_calls = False
        with open(path, errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                if not line:
                    continue
                if line[0].isdigit() or line[0] in "+-*":
                    if after_calls:                 # inclusive cost of the call above
                        after_calls = False
                        continue
                    parts = line.split()
                    if len(parts) >= 2 and fn is not None:
                        cost = int(parts[1])
                        self.self_cost[fn] += cost
                        self.object_cost[ob] += cost
                    continue
                key, _, value = line.partition("=")
                if key == "calls":
                    self.calls[callee] += int(value.split()[0])
                    self.edges[(fn, callee)] += int(value.split()[0])
                    after_calls = True
                elif key in ("fn", "cfn"):
                    name = self._name(names["fn"], value)
                    if key == "fn":
                        fn = name
                    else:
                        callee = name
                elif key in ("ob", "cob"):
                    name = self._name(names["ob"], value)
                    if key == "ob":
                        ob = name
                elif line.startswith("totals:") or line.startswith("summary:"):
                    self.total = int(line.split(":", 1)[1].split()[0])
        if self.total is None:
            raise RuntimeError(f"{path}: no total in callgrind's output")

    @staticmethod
    def _name(table, value):
        m = re.match(r"\((\d+)\)(?: (.*))?$", value)
        if not m:
            return value
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), value)

    def calls_by_function(self, aliases):
        """Calls per C function (clones folded, `psu_export_` aliases named)."""
        out = collections.Counter()
        for symbol, n in self.calls.items():
            name = base_name(symbol)
            out[aliases.get(name, name)] += n
        return out

    def unnamed_object_instructions(self):
        """Instructions in code valgrind maps to no file: a bundle's code
        object, which the runtime loads from a memfd (nothing else in the
        shell runs such code: 0 unpatched)."""
        return sum(c for ob, c in self.object_cost.items() if ob in (None, "???"))


def wait_idle(pid, timeout=120):
    """Until the process is blocked (the shell waiting for its input): asleep,
    its CPU time unchanged over half a second (a process starved by a busy
    host is runnable, not asleep)."""
    end = time.monotonic() + timeout
    last, steady = None, 0
    while time.monotonic() < end:
        now = common.process_cpu_seconds(pid)
        with open(f"/proc/{pid}/stat") as f:
            sleeping = f.read().rsplit(")", 1)[1].split()[0] == "S"   # not runnable
        steady = steady + 1 if now == last and sleeping else 0
        if steady >= 5:
            return
        last = now
        time.sleep(0.1)
    raise RuntimeError(f"pid {pid} still busy after {timeout} s")


def count_workload(exe, sql, env, out, dsu, bundle=None, label=""):
    """Instructions of `sql` alone in a fresh shell under callgrind (and, with
    `bundle`, after applying it), the shell's output and what the runtime said."""
    common.log(f"sqlite_patched: callgrind, {label} ...")
    with open(out.with_suffix(".stdout"), "w") as stdout, open(out.with_suffix(".stderr"), "w") as stderr:
        shell = subprocess.Popen([*callgrind(out), str(exe), ":memory:"], stdin=subprocess.PIPE,
                                 stdout=stdout, stderr=stderr, text=True, env=env)
        answers = {}
        try:
            if dsu:
                # valgrind starts the program slowly; the socket says it is ready
                answers["ping"] = common.wait_socket(shell.pid, env, timeout=120)
                if bundle:
                    answers["apply"] = common.control(shell.pid, f"apply {bundle}", env, timeout=300)
                    if answers["apply"].get("result") != "applied":
                        raise RuntimeError(f"apply under callgrind: {answers['apply']}")
                    answers["status"] = common.control(shell.pid, "status", env, timeout=120)
            wait_idle(shell.pid)
            # counted from here: the workload, then the shell's exit
            common.run(["callgrind_control", "-i", "on", shell.pid], timeout=120)
            shell.stdin.write(sql)
            shell.stdin.close()
            code = shell.wait(timeout=1800)
        finally:
            common.stop(shell)
    if code != 0:
        raise RuntimeError(f"{label}: exit {code}: {out.with_suffix('.stderr').read_text()[-2000:]}")
    return Profile(out), out.with_suffix(".stdout").read_text(), answers


# ---- the functions and the revision -------------------------------------------

def dsu_functions(root):
    """{name: manifest entry (plus its qualname)} of the DSU functions of UNIT."""
    manifest = json.loads((root / f"{PROGRAM}.psu.json").read_text())
    functions = manifest["units"][UNIT]["functions"]
    return {f["name"]: dict(f, qualname=q) for q, f in functions.items() if f["direct"] is None}


def export_aliases(functions):
    """psu_export_<mangled> -> function name (callgrind may name an address by the alias)."""
    return {psu_codegen.export_symbol(f["qualname"]): name for name, f in functions.items()}


def most_called(calls, functions, n):
    ranked = sorted(((c, name) for name, c in calls.items() if name in functions),
                    key=lambda item: (-item[0], item[1]))
    if len(ranked) < n:
        raise RuntimeError(f"only {len(ranked)} DSU functions were called by the workload")
    return [{"name": name, "qualname": functions[name]["qualname"], "calls": c}
            for c, name in ranked[:n]]


def edited_unit(root, chosen, functions):
    """UNIT's text with CHANGE at the start of every chosen function's body."""
    path = root / UNIT
    source = srctext.SourceText(UNIT, path.read_text(errors="surrogateescape"))
    for item in chosen:
        f = functions[item["name"]]
        index = source.find_name(f["name"], f["line"], 0)
        try:
            brace = source.body_start(index)
        except Exception:                         # a K&R definition: declarations first
            brace = source.body_start(index, old_style=True)
        source.insert_after(brace, CHANGE)
    return source.edited()


def make_revision(root, chosen, functions):
    """A commit (tag hot-<hash of the list>) of v1 with the chosen functions changed."""
    import hashlib
    key = hashlib.sha256("\n".join(i["qualname"] for i in chosen).encode()).hexdigest()[:10]
    tag = f"hot-{key}"
    if targets.git(root, "tag", "-l", tag).strip():
        return tag
    path = root / UNIT
    original = path.read_text(errors="surrogateescape")
    targets.git(root, "checkout", "-q", "v1")
    try:
        path.write_text(edited_unit(root, chosen, functions), errors="surrogateescape")
        targets.git(root, "commit", "-q", "-a", "-m",
                    f"{len(chosen)} most-called DSU functions: a no-op statement in each")
        targets.git(root, "tag", "-f", tag)
    finally:
        targets.git(root, "checkout", "-q", "v1")
        if path.read_text(errors="surrogateescape") != original:
            path.write_text(original, errors="surrogateescape")
    return tag


def make_bundle(root, tag):
    """The bundle v1 -> tag (built once per psu version), and what its report said."""
    bundle = root / "psu-patches" / psu_patch.bundle_name(PROGRAM, "v1", tag)
    stamp = root / f".{tag}-bundle.json"
    if bundle.exists() and stamp.exists():
        made = json.loads(stamp.read_text())
        if made.get("psu") == common.psu_fingerprint():
            return made
    common.log(f"sqlite_patched: scons patch FROM=v1 TO={tag} ...")
    made = targets.make_patch(targets.TARGETS["sqlite"], root, "v1", tag)
    report = made.pop("report")
    (root / f"{tag}-report.txt").write_text(report)
    sections = targets.parse_report(report)
    made["replaced_functions"] = sorted(item.split("  ")[0] for item in sections.get("replaced", []))
    made["refused"] = sections.get("refused", [])
    made["notes_text"] = sections.get("notes", [])
    made["psu"] = common.psu_fingerprint()
    stamp.write_text(json.dumps(made))
    return made


# ---- CPU time ------------------------------------------------------------------

def run_seconds(pid):
    """Seconds on CPU of every thread of `pid` so far (schedstat: nanoseconds)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass                                       # a thread that just ended
    return total / 1e9


def cpu_of_workload(exe, sql, env, dsu, bundle, work):
    """(CPU seconds of the workload alone, its output lines) in a fresh shell."""
    process = targets.SQLiteProcess(exe, work, env, work / "cpu.stderr")
    try:
        if dsu:
            common.wait_socket(process.pid, env)
            if bundle:
                answer, _ = targets.apply_bundle(process, bundle, env)
                if answer.get("result") != "applied":
                    raise RuntimeError(f"apply: {answer}")
        process.sql("SELECT 1;", timeout=60)          # the shell is reading
        before = run_seconds(process.pid)
        lines = process.sql(sql, timeout=900)
        used = run_seconds(process.pid) - before
    finally:
        process.stop()
    return used, lines


def spread(xs):
    return {"median": round(common.median(xs), 4), "min": round(min(xs), 4),
            "max": round(max(xs), 4), "p25": round(common.percentile(xs, 25), 4),
            "p75": round(common.percentile(xs, 75), 4)}


def plain_build():
    """sqlite_bench's plain shell, rebuilt only when its flags or sources changed
    (sqlite_bench itself rebuilds it every run: it reports the build's time)."""
    exe = common.WORK / "sqlite-plain"
    src = sqlite_bench.fetch()
    stamp_path = common.WORK / "sqlite-plain.stamp.json"
    stamp = {"flags": sqlite_bench.FLAGS,
             "sources": {f: (src / f).stat().st_size for f in ("sqlite3.c", "shell.c")}}
    if exe.exists() and stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        return exe
    exe, _ = sqlite_bench.build_plain()
    stamp_path.write_text(json.dumps(stamp))
    return exe


# ---- the run -------------------------------------------------------------------

STUB_AREA = "psu_stub_area"


def routes(profile, names, aliases):
    """{name: calls} of the runtime's ways to a bundle's version of each
    function, or None for a name with none in the profile: the function's
    own calls of code in no file (its entry jumps to its stub in
    psu_stub_area, which callgrind counts as the function's code, as it does
    any jump that lands past a symbol's start; the stub calls the bundle's
    version, code from a memfd, which has no symbol), calls of psu_stub_area
    by the function (should a tool name the stub), and calls of its general
    path (psu_<lowercase words>_<name>, as psu names it)."""
    found = {}
    for (caller, callee), n in profile.edges.items():
        symbol = base_name(callee or "")
        if symbol == STUB_AREA or symbol.startswith("0x"):
            caller = base_name(caller or "")
            owner = aliases.get(caller, caller)
            if owner in names:
                found[owner] = found.get(owner, 0) + n
            continue
        if not symbol.startswith("psu_"):
            continue
        owners = [name for name in names if symbol.endswith("_" + name) and
                  re.fullmatch(r"psu(_[a-z]+)+", symbol[:-len(name) - 1])]
        if owners:
            owner = max(owners, key=len)
            found[owner] = found.get(owner, 0) + n
    return {name: found.get(name) for name in names}


def breakdown(profile, names):
    """Self instructions of a run: the patched functions' code in the
    executable, psu's symbols, code in no file (a bundle's), the rest."""
    out = collections.Counter()
    for symbol, cost in profile.self_cost.items():
        name = base_name(symbol or "")
        if name in names:   # with their stubs: callgrind counts a stub as the function's code
            out["patched functions, executable's code"] += cost
        elif name.startswith("psu_"):
            out["psu symbols (stubs, general paths, runtime)"] += cost
    out["code in no file (the bundle's code object)"] = profile.unnamed_object_instructions()
    out["everything else"] = profile.total - sum(out.values())
    return dict(out)


def verify(top, answers, patched_profile, names, aliases, outputs, unnamed):
    """What the patched run shows of the bundle's versions running."""
    status = answers.get("status", {})
    modules = [m for m in status.get("modules", []) if m.get("kind") == "bundle"]
    routed = routes(patched_profile, names, aliases)
    visible = all(v is not None for v in routed.values())
    checks = {
        "apply_result": answers["apply"].get("result"),
        "apply_functions_switched": answers["apply"].get("functions"),
        "status_bundle_current_functions": [m.get("functions_current") for m in modules],
        "status_bundle_state": [m.get("state") for m in modules],
        "status_label": status.get("label"),
        "membarrier_under_valgrind": status.get("membarrier"),
        "entry_hooks_under_valgrind": status.get("entry_hooks"),
        "entry_stubs_under_valgrind": status.get("entry_stubs"),
        "bundle_code_instructions": unnamed,
        "route_symbols_visible": visible,
        "every_patched_function_routed_to_the_bundle": visible and all(routed.values()),
        "same_output_as_plain": {k: out == outputs["plain"] for k, out in outputs.items()
                                 if k != "plain"},
    }
    checks["ok"] = bool(checks["apply_result"] == "applied"
                        and checks["apply_functions_switched"] == top
                        and checks["status_bundle_current_functions"] == [top]
                        and unnamed > 0
                        and (checks["every_patched_function_routed_to_the_bundle"] or not visible)
                        and all(checks["same_output_as_plain"].values()))
    return checks, routed


def cpu_times(builds, sql, env, work, runs):
    """CPU seconds of the workload per build, interleaved (the order rotates)."""
    cpu = {k: [] for k in builds}
    outputs = {}
    for rep in range(runs):
        order = list(builds)
        order = order[rep % len(order):] + order[:rep % len(order)]
        for k in order:
            exe, dsu, bundle = builds[k]
            used, lines = cpu_of_workload(exe, sql, env, dsu, bundle, work)
            cpu[k].append(round(used, 4))
            outputs.setdefault(k, lines)
        common.log(f"sqlite_patched run {rep + 1}/{runs}: " +
                   ", ".join(f"{k} {cpu[k][-1]:.3f} s" for k in builds))
    return cpu, outputs


def main(quick=False, top=TOP):
    t_start = time.monotonic()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        raise RuntimeError("sqlite_patched needs valgrind (callgrind, callgrind_control)")
    root, _ = sqlite_bench.make_project(PROJECT, POLICY)
    plain = plain_build()
    dsu_exe = root / PROGRAM
    env = common.runtime_env()
    work = common.WORK / "sqlite-patched-run"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    functions = dsu_functions(root)
    aliases = export_aliases(functions)
    counted_sql = sqlite_bench.workload(1)
    phases = {"builds": time.monotonic() - t_start}

    # 1. the most-called DSU functions, measured on the unpatched DSU shell
    t0 = time.monotonic()
    dsu_profile, dsu_out, _ = count_workload(dsu_exe, counted_sql, env, work / "dsu.callgrind",
                                             dsu=True, label="DSU build, unpatched")
    chosen = most_called(dsu_profile.calls_by_function(aliases), functions, top)
    names = [c["name"] for c in chosen]
    common.log("sqlite_patched: most-called DSU functions: " +
               ", ".join(f"{c['name']} {c['calls']}" for c in chosen))

    # 2. the revision and its bundle
    tag = make_revision(root, chosen, functions)
    t1 = time.monotonic()
    made = make_bundle(root, tag)
    phases["bundle"] = time.monotonic() - t1
    wanted = sorted(c["qualname"] for c in chosen)
    if made["outcome"] != "built" or made["replaced_functions"] != wanted or made["refused"]:
        raise RuntimeError(f"the bundle does not replace exactly the {top} functions: "
                           f"outcome {made['outcome']}, replaced {made['replaced_functions']}, "
                           f"refused {made['refused']}, failure {made.get('failure')}")
    bundle = made["bundle"]

    # 3. instructions of the workload alone, side by side; the method checked
    t1 = time.monotonic()
    plain_profile, plain_out, _ = count_workload(plain, counted_sql, env, work / "plain.callgrind",
                                                 dsu=False, label="plain build")
    patched_profile, patched_out, answers = count_workload(
        dsu_exe, counted_sql, env, work / "patched.callgrind", dsu=True, bundle=bundle,
        label=f"DSU build, bundle applied ({top} functions patched)")
    common.log("sqlite_patched: cachegrind, whole runs of plain and DSU (sqlite_bench's count) ...")
    whole = {"plain": common.instructions_executed([plain, ":memory:"], counted_sql, env),
             "dsu": common.instructions_executed([dsu_exe, ":memory:"], counted_sql, env)}
    phases["valgrind"] = time.monotonic() - t1 + (t1 - t0 - phases["bundle"])
    instructions = {"plain": plain_profile.total, "dsu": dsu_profile.total,
                    "dsu-patched": patched_profile.total}
    ratios = {k: round(instructions["plain"] / v, 4) for k, v in instructions.items() if k != "plain"}
    unnamed = patched_profile.unnamed_object_instructions()
    verified, routed = verify(top, answers, patched_profile, names, aliases,
                              {"plain": plain_out, "dsu": dsu_out, "dsu-patched": patched_out},
                              unnamed)
    patched_calls = patched_profile.calls_by_function(aliases)
    into_bundle = sum(v or 0 for v in routed.values())

    # 4. CPU time of the workload alone, interleaved
    t1 = time.monotonic()
    scale = 3 if quick else 6
    runs = 7 if quick else 15
    builds = {"plain": (plain, False, None), "dsu": (dsu_exe, True, None),
              "dsu-patched": (dsu_exe, True, bundle)}
    cpu, cpu_outputs = cpu_times(builds, sqlite_bench.workload(scale), env, work, runs)
    phases["cpu"] = time.monotonic() - t1
    med = {k: common.median(v) for k, v in cpu.items()}
    best = {k: min(v) for k, v in cpu.items()}
    cpu_ratios = {k: round(med["plain"] / med[k], 4) for k in builds if k != "plain"}
    best_ratios = {k: round(best["plain"] / best[k], 4) for k in builds if k != "plain"}
    # each repetition runs the three back to back, so a slow phase of the host
    # slows all three: the ratio within a repetition is the steadier figure
    paired = {k: spread([p / v for p, v in zip(cpu["plain"], cpu[k])]) for k in builds if k != "plain"}
    verified["same_output_cpu_runs"] = all(cpu_outputs[k] == cpu_outputs["plain"] for k in builds)
    verified["ok"] = verified["ok"] and verified["same_output_cpu_runs"]

    result = {
        "description": __doc__.split("\n\n")[0],
        "flags": sqlite_bench.FLAGS, "policy": {"PSU_DIRECT_STATICS": POLICY},
        "change": f"`{CHANGE.strip()}` after the `{{` of each patched function (no code)",
        "patched": [dict(c, calls_routed_to_bundle=routed[c["name"]],
                         calls_patched_run=patched_calls.get(c["name"], 0)) for c in chosen],
        "patched_note": "calls: callgrind's calls of the function's out-of-line code (gcc's "
                        "clones folded) in the unpatched DSU shell, workload(1); a call gcc "
                        "inlined is not counted there, but goes to the bundle too once patched "
                        "(the entry check is inlined with it). calls_routed_to_bundle: calls "
                        "taking the runtime's ways to the bundle's version (from the function's "
                        "entry to its stub in psu_stub_area, or psu_general_<name>) in the "
                        "patched run",
        "calls_into_bundle": into_bundle,
        "bundle": {"tag": tag, "patch_build_s": made["patch_build_s"],
                   "bundle_bytes": made["bundle_bytes"], "replaced": len(made["replaced_functions"]),
                   "added": made["added"], "refused": made["refused"],
                   "notes": made.get("notes_text", [])},
        "instructions_workload_scale_1": instructions,
        "instruction_ratio_to_plain": ratios,
        "extra_instructions_per_call_into_bundle": (
            round((instructions["dsu-patched"] - instructions["dsu"]) / into_bundle, 1)
            if into_bundle else None),
        "instruction_breakdown": {"dsu": breakdown(dsu_profile, names),
                                  "dsu-patched": breakdown(patched_profile, names)},
        "instruction_method": "callgrind --instr-atstart=no, switched on (callgrind_control -i "
                              "on) once the shell waits for input -- patched: after the apply "
                              "-- until its exit: the workload alone",
        "instruction_check": {
            "whole_run_cachegrind": whole,
            "whole_run_cachegrind_ratio_dsu": (round(whole["plain"] / whole["dsu"], 4)
                                               if whole["plain"] and whole["dsu"] else None),
            "note": "bench/sqlite_bench.py's count (cachegrind, the whole run) of the same "
                    "workload: its plain/DSU ratio must agree with dsu's above; its totals "
                    "differ by the shell's start (~0.25 M instructions) and by the tools' "
                    "counting (callgrind counts ~0.4 % fewer on this workload, whole run "
                    "against whole run)"},
        "workload_scale_cpu": scale, "runs": runs,
        "cpu_seconds_workload": cpu, "cpu_spread": {k: spread(v) for k, v in cpu.items()},
        "cpu_ratio_to_plain_median": cpu_ratios, "cpu_ratio_to_plain_fastest": best_ratios,
        "cpu_ratio_to_plain_per_repetition": paired,
        "cpu_note": "run time of the shell's threads (/proc/PID/task/*/schedstat) from its "
                    "waiting for input (patched: after the apply) to its last answer; ratio = "
                    "plain median / variant median (and of the fastest runs); per repetition: "
                    "plain / variant within each repetition, median and spread",
        "target": TARGET, "target_met": ratios["dsu-patched"] >= 0.95,
        "verified": verified,
        "phase_seconds": {k: round(v, 1) for k, v in phases.items()},
        "seconds": round(time.monotonic() - t_start, 1),
    }
    common.write_result("sqlite_patched", result)
    print(f"\nsqlite_patched: the {top} most-called DSU functions patched ({tag}: bundle "
          f"{made['bundle_bytes'] / 1024:.0f} KiB, built in {made['patch_build_s']} s), "
          f"{into_bundle} calls into the bundle")
    print("  instructions of workload(1), plain / variant: " + ", ".join(
        f"{k} {v * 100:.1f} %" for k, v in ratios.items()) +
        f" (target: {TARGET}; met: {result['target_met']})")
    print(f"  cachegrind whole runs (sqlite_bench's count): plain / dsu "
          f"{(result['instruction_check']['whole_run_cachegrind_ratio_dsu'] or 0) * 100:.1f} %")
    print(f"  CPU seconds of workload({scale}), median [min-max] of {runs}: " + ", ".join(
        f"{k} {s['median']:.3f} [{s['min']:.3f}-{s['max']:.3f}]" for k, s in result["cpu_spread"].items()))
    print("  CPU, plain / variant (medians): " + ", ".join(
        f"{k} {v * 100:.1f} %" for k, v in cpu_ratios.items()) + "; fastest runs: " + ", ".join(
        f"{k} {v * 100:.1f} %" for k, v in best_ratios.items()))
    print("  CPU, plain / variant within a repetition, median [p25-p75]: " + ", ".join(
        f"{k} {s['median'] * 100:.1f} % [{s['p25'] * 100:.1f}-{s['p75'] * 100:.1f}]"
        for k, s in paired.items()))
    print(f"  verified: {json.dumps(verified)}")
    if not verified["ok"]:
        raise RuntimeError(f"sqlite_patched: the patched run is not what it claims: {verified}")
    return {"instruction_ratio_to_plain": ratios, "cpu_ratio_to_plain_median": cpu_ratios,
            "cpu_ratio_to_plain_per_repetition": {k: s["median"] for k, s in paired.items()},
            "target_met": result["target_met"], "verified": verified["ok"]}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--top", type=int, default=TOP)
    a = p.parse_args()
    main(a.quick, a.top)
