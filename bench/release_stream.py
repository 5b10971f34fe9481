"""release_stream: real releases applied live, one after the other.  Lua 5.4.3
-> 5.4.4 -> 5.4.7 -> 5.4.8 (lupa sdists 1.10, 2.0, 2.3, 2.8) and SQLite 3.45.0
-> 3.45.1 -> 3.47.0 (sqlean.py sdists), each release a tagged commit of a
scratch repository that builds the program with psu, every unit a DSU unit
(Lua's `lua` from its core, library and lua.c units; SQLite's shell from
sqlite3.c and shell.c).  The oldest release is built and started (Lua: a
driver script reading commands from a pipe; SQLite: the shell reading SQL
from a pipe); for each consecutive pair `scons patch FROM TO` is run and its
bundle applied to the running process while it executes a workload; then
the new release's checks run inside the updated process: Lua's own test
suite (testes/all.lua of the new release, portable "user" mode) and probes
whose answers differ between plain builds of the two releases; SQLite: the
same probes (`sqlite_version()` among them) and a SQL workload whose output
must equal the plain new release's.  A refused update, or one that does not
build or apply, is recorded and the stream goes on from a fresh process of
the next release.  Writes bench/results/release_stream.{json,md}.

    python bench/release_stream.py [--only lua|sqlite] [--quick]"""
import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import sqlite_bench  # noqa: E402
import targets  # noqa: E402

# Probes: one-line checks whose answers, compared between plain builds of two
# releases, show behaviour the update changes (the fixes and features of the
# release); the updated process must give the new release's answer.
LUA_PROBES = {
    "utf8.codes rejects a stray continuation byte":
        "return tostring(pcall(function() for _ in utf8.codes('a\\x80') do end end))",
    "message and line of a call of a nil field":
        "return select(2, pcall(load('local a = {}\\nlocal b = a.x\\n(\\nb\\n)()')))",
    "coroutine.close of a coroutine whose __close raised":
        "local co = coroutine.create(function() local x <close> = setmetatable({}, "
        "{__close = function() error('c') end}) coroutine.yield() end) coroutine.resume(co) "
        "return tostring(coroutine.close(co)) .. ' ' .. select('#', coroutine.close(co))",
    "error in an error handler":
        "local function g() return 1 + g() end "
        "return tostring(select(2, xpcall(error, function() return g() end, 'x')))",
    "to-be-closed variable on error":
        "return tostring(select(2, pcall(function() local x <close> = setmetatable({}, "
        "{__close = function(_, e) error(tostring(e) .. '+c', 0) end}) error('e', 0) end)))",
    "_VERSION": "return _VERSION",
}
SQLITE_PROBES = {
    "sqlite_version()": "sqlite_version()",
    "JSON text given as a BLOB": "json_extract(CAST('{\"a\":1}' AS BLOB), '$.a')",
    "json_pretty()": "json_pretty('{\"a\":[1,2]}')",
    "strftime %V (ISO week)": "strftime('%V', '2024-12-30')",
    "date modifier 'ceiling'": "date('2024-01-31', '+1 month', 'ceiling')",
    "concat_ws()": "concat_ws('-', 1, 'b', NULL, 3.5)",
    "json_group_array of JSON values": "(SELECT json_group_array(json(v)) FROM (SELECT '[1]' AS v))",
    "unixepoch() with a fraction": "unixepoch('2024-01-01 00:00:00.5', 'subsec')",
}
LUA_WORK_SECONDS = 3          # the workload the update lands in


def lua_checks(process, release_dir, rundir):
    """Lua's test suite of the release (if shipped) inside the process."""
    tests = release_dir / "tests"
    if not (tests / "all.lua").exists():
        return {"suite": "not shipped in this sdist"}
    for f in rundir.iterdir():
        (shutil.rmtree if f.is_dir() else os.unlink)(f)
    shutil.copytree(tests, rundir, dirs_exist_ok=True)
    t0 = time.monotonic()
    try:
        ok, message, out = process.command("tests all.lua", timeout=1800)
    except (TimeoutError, RuntimeError) as e:
        return {"suite": "testes/all.lua (_U)", "passed": False, "error": str(e)[:500]}
    return {"suite": "testes/all.lua (_U)", "passed": ok and "final OK !!!" in out,
            "seconds": round(time.monotonic() - t0, 1),
            "error": None if ok else message[:500]}


def sqlite_checks(process, plain_output):
    """The SQL workload's output in the process, against the plain build's."""
    lines = process.sql(sqlite_bench.workload(1) + "\nPRAGMA integrity_check;", timeout=900)
    return {"suite": "SQL workload (bench/sqlite_bench.workload(1)) + integrity_check, "
                     "output compared with the plain build of the release",
            "passed": lines == plain_output, "lines": len(lines)}


def probes(target, process):
    table = LUA_PROBES if target.name == "lua" else SQLITE_PROBES
    return {name: process.probe(code) for name, code in table.items()}


def reference(target, env, work):
    """Per release: the probes' answers and (SQLite) the workload's output of
    the plain build."""
    answers = {}
    for label, _ in target.releases:
        exe = target.plain_build(label)
        process = targets.start(target, exe, work, env, work / f"plain-{label}.stderr")
        try:
            answers[label] = {"probes": probes(target, process)}
            if target.name == "sqlite":
                answers[label]["workload"] = process.sql(
                    sqlite_bench.workload(1) + "\nPRAGMA integrity_check;", timeout=900)
        finally:
            process.stop()
    return answers


def start_workload(target, process):
    if target.name == "lua":
        process.start_command(f"work {LUA_WORK_SECONDS}")
    else:   # a query that runs for a few seconds
        process.start_sql("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s "
                          "WHERE i<3000000) SELECT count(*), sum(i % 7) FROM s;")


def finish_workload(target, process):
    if target.name == "lua":
        ok, message, _ = process.finish_command(timeout=600)
        return ok
    return bool(process.finish_sql(timeout=600))


def stream(target, quick=False):
    env = common.runtime_env()
    work = common.WORK / f"stream-{target.name}-run"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    rundir = work / "cwd"
    rundir.mkdir()
    root = targets.repository(target)
    labels = [label for label, _ in target.releases]
    common.log(f"{target.name}: plain builds and reference answers ...")
    ref = reference(target, env, work)
    # a clean start: builds of an earlier psu must not be reused
    for d in (".psu-build", "psu-patches"):
        shutil.rmtree(root / d, ignore_errors=True)
    common.log(f"{target.name}: building {labels[0]} with psu ...")
    (root / "dsu-units.json").unlink(missing_ok=True)
    dsu_units, every_unit_failure = "every unit", None
    try:
        build_s = targets.build_release(target, root, labels[0])
    except targets.BuildFailed as e:
        if not target.fallback_dsu_units:
            raise
        # recorded, then the stream goes on with fewer DSU units
        every_unit_failure = targets.failure_lines(e.output)
        dsu_units = target.fallback_dsu_units
        common.log(f"{target.name}: every unit DSU does not build; going on with "
                   f"PSU_UNITS={dsu_units}")
        (root / "dsu-units.json").write_text(json.dumps(dsu_units))
        build_s = targets.build_release(target, root, labels[0])
    exe = root / target.program
    process = targets.start(target, exe, rundir, env, work / f"{labels[0]}.stderr")
    started = {"release": labels[0], "pid": process.pid, "build_s": round(build_s, 1),
               "dsu_units": dsu_units, "every_unit_dsu_build_failure": every_unit_failure}
    updates = []
    for a, b in zip(labels, labels[1:]):
        row = {"update": f"{target.name} {a} -> {b}"}
        stat = targets.git(root, "diff", "--shortstat", f"v{a}", f"v{b}", "--", "src").strip()
        row["diff"] = stat
        numbers = [int(w) for w in stat.replace(",", "").split() if w.isdigit()]
        row["lines_changed"] = sum(numbers[1:]) if numbers else 0
        row["files_changed"] = numbers[0] if numbers else 0
        row["lines_added"] = numbers[1] if len(numbers) > 1 else 0
        row["lines_removed"] = numbers[2] if len(numbers) > 2 else 0
        common.log(f"{row['update']}: scons patch ({stat}) ...")
        made = targets.make_patch(target, root, f"v{a}", f"v{b}")
        report = made.pop("report")
        (work / f"patch-{a}-{b}.txt").write_text(report)
        row.update(made)
        row["report_excerpt"] = report.splitlines()[:40]
        applied = False
        if made["outcome"] == "built":
            if not process.alive():
                row["apply"] = {"error": "process not running"}
            else:
                start_workload(target, process)
                time.sleep(0.5)                      # the update lands mid-workload
                answer, ms = targets.apply_bundle(process, made["bundle"], env)
                row["apply"] = {"answer": answer, "round_trip_ms": ms}
                applied = answer.get("result") == "applied"
                try:
                    row["workload_finished"] = finish_workload(target, process)
                except (TimeoutError, RuntimeError) as e:
                    row["workload_finished"] = False
                    row["workload_error"] = str(e)[:500]
                if process.alive():
                    try:
                        row["status_after"] = common.control(process.pid, "status", env)
                    except (OSError, ValueError) as e:
                        row["status_after"] = {"error": repr(e)}
        row["applied"] = applied
        if applied and process.alive():
            row["checks_in"] = "updated process"
        else:
            # go on from a fresh process of release b
            process.stop()
            common.log(f"{row['update']}: not applied; building {b} and starting it afresh ...")
            row["fresh_build_s"] = round(targets.build_release(target, root, b), 1)
            process = targets.start(target, exe, rundir, env, work / f"{b}.stderr")
            row["checks_in"] = "fresh process of the new release (no update)"
        row["probes"] = check_probes(target, process, ref, a, b)
        if target.name == "lua":
            row["tests"] = lua_checks(process, target.release_dir(b), rundir)
            if (a, b) != (labels[-2], labels[-1]):
                # Lua's suite assumes a state that never ran it (gc.lua measures the
                # garbage left, events.lua the metatables of basic types): the next
                # update goes to a fresh process of b, which runs the suite once
                process.stop()
                targets.build_release(target, root, b)
                process = targets.start(target, exe, rundir, env, work / f"{b}-next.stderr")
        else:
            row["tests"] = sqlite_checks(process, ref[b]["workload"])
        row["process_alive"] = process.alive()
        common.log(f"{row['update']}: {row['outcome']}, applied={applied}, "
                   f"tests passed={row['tests'].get('passed')}")
        updates.append(row)
        if not process.alive():
            process = targets.start(target, exe, rundir, env, work / f"{b}-restart.stderr")
    process.stop()
    targets.git(root, "checkout", "-q", f"v{labels[0]}")
    (root / "dsu-units.json").unlink(missing_ok=True)
    return {"target": target.name, "releases": labels, "flags": target.flags,
            "build_note": target.build_note, "started": started, "updates": updates,
            "reference_probes": {k: v["probes"] for k, v in ref.items()}}


def check_probes(target, process, ref, a, b):
    """Each probe whose plain answers differ between a and b: did the process
    answer as b does?  (sqlite_version() always counts.)"""
    got = probes(target, process)
    out = {}
    for name, answer in got.items():
        old, new = ref[a]["probes"][name], ref[b]["probes"][name]
        if old != new:
            out[name] = {"expected": new, "old": old, "got": answer, "ok": answer == new}
    return out


def cell_refusals(row):
    kinds = row.get("refusals_by_kind") or {}
    return ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])) or "0"


def cell_tests(row):
    t = row["tests"]
    where = "" if row["applied"] else " (fresh process)"
    if "passed" not in t:
        suite = t.get("suite")
    else:
        suite = ("pass" if t["passed"] else "FAIL") + where
    checks = row.get("probes") or {}
    if checks:
        good = sum(1 for c in checks.values() if c["ok"])
        suite += f"; probes {good}/{len(checks)} as {row['update'].split()[-1]}"
        bad = [n for n, c in checks.items() if not c["ok"]]
        if bad:
            suite += " (not: " + "; ".join(f"{n} = {checks[n]['got']!r}" for n in bad) + ")"
    else:
        suite += "; no probe answers differently in the two releases"
    return suite


def cell_apply(row):
    apply = row.get("apply")
    if not apply:
        return "-"
    answer = apply.get("answer", {})
    result = answer.get("result") or answer.get("error") or "?"
    return f"{result}, {apply.get('round_trip_ms')} ms"


def outcome(row):
    if row["outcome"] == "refused":
        return "refused"
    if row["outcome"] == "build failed":
        link = any("undefined" in f for f in row.get("failure", []))
        return "bundle failed to " + ("link" if link else "build")
    return "applied live" if row["applied"] else "not applied"


def markdown(results):
    lines = ["| update | lines changed | functions replaced / added | refusals by kind | "
             "bundle build | bundle size | result, apply round trip | tests after |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for row in r["updates"]:
            size = f"{row['bundle_bytes'] / 1024:.0f} KiB" if row.get("bundle_bytes") else "-"
            lines.append(
                f"| {row['update']} | +{row['lines_added']} −{row['lines_removed']} "
                f"({row['files_changed']} files) | {row['replaced']} / {row['added']} | "
                f"{cell_refusals(row)} | {row['patch_build_s']} s | {size} | {outcome(row)}; "
                f"{cell_apply(row)} | {cell_tests(row)} |")
    notes = []
    for r in results:
        started = r.get("started") or {}
        if started.get("every_unit_dsu_build_failure"):
            notes.append(f"- {r['target']}: with every unit a DSU unit the psu build of "
                         f"{started['release']} fails (" + "; ".join(
                             f"`{f[:160]}`" for f in started["every_unit_dsu_build_failure"][:3])
                         + f"); the stream ran with PSU_UNITS={started['dsu_units']}")
        if r.get("build_note"):
            notes.append(f"- {r['target']}: {r['build_note']}")
        if r.get("error"):
            notes.append(f"- {r['target']}: the stream failed: {r['error']}")
    for r in results:
        for row in r["updates"]:
            if row.get("failure"):
                notes.append(f"- {row['update']}: " + "; ".join(f"`{f[:160]}`" for f in row['failure'][:3]))
    return "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"


def main(quick=False, only=None):
    names = [only] if only else list(targets.TARGETS)
    results = []
    for name in names:
        try:
            results.append(stream(targets.TARGETS[name], quick))
        except Exception as e:                                  # reported, not hidden
            common.log(f"{name}: stream failed: {e!r}")
            results.append({"target": name, "error": repr(e), "updates": []})
    previous = common.RESULTS / "release_stream.json"
    if only and previous.exists():
        # keep the other code base's stream from the last run
        kept = [s for s in json.loads(previous.read_text()).get("streams", []) if s["target"] != only]
        results = sorted(kept + results, key=lambda s: list(targets.TARGETS).index(s["target"]))
    data = {"description": __doc__.split("\n\n")[0], "streams": results}
    common.write_result("release_stream", data)
    table = markdown(results)
    (common.RESULTS / "release_stream.md").write_text(
        "Release stream (`python bench/release_stream.py`; " + common.machine()["git_revision"][:12]
        + ")\n\n" + table)
    print("\n" + table)
    return {r["target"]: [outcome(row) for row in r["updates"]] or r.get("error") for r in results
            if not only or r["target"] == only}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="(same as the full run: the releases are fixed)")
    p.add_argument("--only", choices=sorted(targets.TARGETS))
    a = p.parse_args()
    main(a.quick, a.only)
