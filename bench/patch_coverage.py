"""patch_coverage: can every function of a real program be patched live?  N
functions of Lua 5.4.8 (every unit a DSU unit; SQLite 3.47.0 with --target
sqlite) are sampled, seeded and stratified by kind (extern, static called by
name, static or extern whose address is taken, variadic, K&R, inline, ...),
among all functions the DSU units define but `main`.  Each gets, as its own
commit, (a) a behaviour-preserving body change, `volatile int psu_cov = 0;
(void)psu_cov;` at the start of its body, and (b) a new file-scope `static`
counter incremented there.  The places come from psu's own front end (the
unit's analysis and psu.srctext), not from patterns over the C text.  Each
bundle is built with `scons patch`, applied to a freshly started interpreter
mid-workload, and the program's tests run in the patched process (Lua: its
test suite, testes/all.lua in portable mode; SQLite: a SQL workload whose
output must equal the plain build's).  Writes
bench/results/patch_coverage.{json,md} (SQLite: patch_coverage_sqlite.*).

    python bench/patch_coverage.py [--n 20] [--seed 1] [--target lua|sqlite] [--changes body,static]"""
import argparse
import json
import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import release_stream  # noqa: E402
import sqlite_bench  # noqa: E402
import targets  # noqa: E402

from psu import model as psu_model, policy as psu_policy, srctext  # noqa: E402

RELEASE = {"lua": "5.4.8", "sqlite": "3.47.0"}
CHANGES = ("body", "static")


def kind_of(function, direct):
    """The kind of function, as the coverage table groups them."""
    if function.variadic:
        return "variadic"
    if function.kr_style:
        return "K&R"
    if function.inline:
        return "inline"
    if function.macro_made:
        return "name made by a macro"
    scope = "static" if function.static else "extern"
    if function.address_taken:
        return scope + ", address taken"
    if direct == psu_policy.Direct.STATIC_CALLED_BY_NAME:
        return "static, called by name (direct)"
    return scope


def project(target):
    """WORK/coverage-<name>: one commit (tag `base`) of the release, built with psu."""
    label = RELEASE[target.name]
    root = common.WORK / f"coverage-{target.name}"
    ready = root / ".bench-ready"
    fingerprint = common.psu_fingerprint() + target.sconstruct()
    if ready.exists() and ready.read_text() == fingerprint:
        return root
    if root.exists():
        shutil.rmtree(root)
    (root / "site_scons").mkdir(parents=True)
    (root / "SConstruct").write_text(target.sconstruct())
    (root / "site_scons" / "site_init.py").write_text(targets.SITE_INIT % str(common.REPO / "site_scons"))
    (root / ".gitignore").write_text(targets.GITIGNORE + target.program + "\n.bench-ready\n")
    shutil.copytree(target.release_dir(label) / "src", root / "src")
    targets.git(root, "init", "-q")
    targets.git(root, "add", "-A")
    targets.git(root, "commit", "-q", "-m", f"{target.name} {label}")
    targets.git(root, "tag", "base")
    common.log(f"coverage: building {target.name} {label} with psu ...")
    seconds, code, output = targets.scons_build(root)
    if code != 0 and target.fallback_dsu_units:
        common.log(f"coverage: every unit DSU does not build; going on with "
                   f"PSU_UNITS={target.fallback_dsu_units}")
        (root / "dsu-units.json").write_text(json.dumps(target.fallback_dsu_units))
        (root / "every-unit-failure.json").write_text(json.dumps(targets.failure_lines(output)))
        seconds, code, output = targets.scons_build(root)
    if code != 0:
        sys.stderr.write(output[-4000:])
        raise RuntimeError(f"coverage: psu build of {target.name} failed")
    ready.write_text(fingerprint)
    return root


def candidates(target, root):
    """Every function the DSU units define but `main`: (unit, Function, direct reason)."""
    built = json.loads((root / f"{target.program}.psu.json").read_text())
    out = []
    for unit_path, entry in sorted(built["units"].items()):
        if not entry.get("dsu"):
            continue
        analysis = root / ".psu-build" / target.program / (unit_path + ".unit.json")
        unit = psu_model.Unit.from_json(json.loads(analysis.read_text()))
        for f in unit.functions:
            if f.name in psu_policy.ENTRY_POINTS:
                continue
            direct = entry["functions"].get(f.qualname, {}).get("direct")
            out.append((unit_path, f, direct))
    return out


def sample(functions, n, seed):
    """n functions, seeded, stratified: kinds taken in turn, each shuffled."""
    rng = random.Random(seed)
    by_kind = {}
    for item in functions:
        by_kind.setdefault(kind_of(item[1], item[2]), []).append(item)
    for items in by_kind.values():
        rng.shuffle(items)
    picked, kinds = [], sorted(by_kind)
    while len(picked) < n and any(by_kind.values()):
        for kind in kinds:
            if by_kind[kind] and len(picked) < n:
                picked.append(by_kind[kind].pop())
    return picked


def edit(root, unit_path, function, change):
    """The unit's text with `change` made in `function` (psu.srctext finds the
    places from the front end's coordinates)."""
    path = root / unit_path
    text = path.read_text(errors="surrogateescape")
    source = srctext.SourceText(unit_path, text)
    name_index = source.find_name(function.name, function.location.line, function.location.column)
    brace = source.body_start(name_index)
    if change == "body":
        source.insert_after(brace, " volatile int psu_cov = 0; (void)psu_cov;")
    else:
        counter = f"psu_cov_calls_{function.name}"
        source.insert_before(source.declaration_start(name_index),
                             f"static unsigned long {counter};\n")
        source.insert_after(brace, f" {counter}++;")
    return source.edited()


def commit_change(root, unit_path, function, change, tag):
    targets.git(root, "checkout", "-q", "base")
    path = root / unit_path
    original = path.read_text(errors="surrogateescape")
    try:
        path.write_text(edit(root, unit_path, function, change), errors="surrogateescape")
        targets.git(root, "commit", "-q", "-a", "-m", f"coverage: {change} change in {function.qualname}")
        targets.git(root, "tag", "-f", tag)
    finally:
        targets.git(root, "checkout", "-q", "base")
        if path.read_text(errors="surrogateescape") != original:
            path.write_text(original, errors="surrogateescape")


def run_tests(target, process, rundir, plain_output):
    if target.name == "lua":
        return release_stream.lua_checks(process, target.release_dir(RELEASE["lua"]), rundir)
    return release_stream.sqlite_checks(process, plain_output)


def try_one(target, root, env, work, rundir, unit_path, function, direct, change, index, plain_output):
    row = {"function": function.qualname, "unit": unit_path, "kind": kind_of(function, direct),
           "direct": direct, "change": change}
    tag = f"cov-{index}-{change}"
    try:
        commit_change(root, unit_path, function, change, tag)
    except Exception as e:                      # the harness could not place the change
        row.update(outcome="harness: no change made", reason=[str(e)[:300]])
        return row
    made = targets.make_patch(target, root, "base", tag)
    report = made.pop("report")
    (work / f"patch-{tag}.txt").write_text(report)
    row.update({k: made[k] for k in ("outcome", "patch_build_s", "replaced", "added",
                                     "refusals_by_kind", "exit_code")})
    if made["outcome"] == "refused":
        row["reason"] = targets.parse_report(report).get("refused", [])[:5]
        return row
    if made["outcome"] == "build failed":
        row["reason"] = made.get("failure", [])[:5]
        return row
    row["bundle_bytes"] = made["bundle_bytes"]
    process = targets.start(target, root / target.program, rundir, env, work / f"{tag}.stderr")
    try:
        release_stream.start_workload(target, process)
        time.sleep(0.3)
        answer, ms = targets.apply_bundle(process, made["bundle"], env)
        row["apply"] = {"result": answer.get("result"), "error": answer.get("error"),
                        "round_trip_ms": ms}
        try:
            release_stream.finish_workload(target, process)
        except (TimeoutError, RuntimeError) as e:
            row["workload_error"] = str(e)[:300]
        if answer.get("result") != "applied":
            row["outcome"] = "apply failed"
            row["reason"] = [str(answer.get("error") or answer)[:300]]
            return row
        row["tests"] = run_tests(target, process, rundir, plain_output)
        row["outcome"] = "applied, tests pass" if row["tests"].get("passed") else "applied, tests FAIL"
    except (TimeoutError, RuntimeError, OSError) as e:
        row["outcome"] = "process failed"
        row["reason"] = [str(e)[:300]]
    finally:
        process.stop()
    return row


def markdown(target, rows, n, seed, population):
    kinds = sorted({r["kind"] for r in rows})
    head = ["| kind of function | change | sampled | applied, tests pass | applied, tests fail | "
            "refused (kind) | bundle failed to build/link | apply failed | change not placed |",
            "|---|---|---|---|---|---|---|---|---|"]
    for kind in kinds:
        for change in CHANGES:
            group = [r for r in rows if r["kind"] == kind and r["change"] == change]
            if not group:
                continue
            count = lambda *outcomes: sum(1 for r in group if r["outcome"] in outcomes)  # noqa: E731
            refused = {}
            for r in group:
                if r["outcome"] == "refused":
                    for k, v in (r.get("refusals_by_kind") or {}).items():
                        refused[k] = refused.get(k, 0) + 1
            head.append(
                f"| {kind} | {change} | {len(group)} | {count('applied, tests pass')} | "
                f"{count('applied, tests FAIL')} | {count('refused')}"
                + (" (" + ", ".join(f"{k}" for k in sorted(refused)) + ")" if refused else "")
                + f" | {count('build failed')} | "
                f"{count('apply failed', 'process failed')} | {count('harness: no change made')} |")
    total = {c: [r for r in rows if r["change"] == c] for c in CHANGES}
    summary = "; ".join(
        f"{c}: {sum(1 for r in rs if r['outcome'] == 'applied, tests pass')}/{len(rs)} applied "
        "with the tests passing" for c, rs in total.items() if rs)
    # "change not placed": the front end's coordinates of the function do not lead to
    # its body in the text (a name made by a macro): psu itself keeps such functions direct
    details = ["", "| function | kind | change | outcome | reason |", "|---|---|---|---|---|"]
    for r in rows:
        if r["outcome"] != "applied, tests pass":
            reasons = r.get("reason") or [r.get("tests", {}).get("error")]
            reasons = [reasons] if isinstance(reasons, str) else reasons
            reason = "; ".join(str(x)[:140] for x in reasons)
            details.append(f"| `{r['function']}` | {r['kind']} | {r['change']} | {r['outcome']} | "
                           f"{reason.replace('|', '/')} |")
    among = ", ".join(f"{k} {v}" for k, v in sorted(population.items(), key=lambda kv: -kv[1]))
    return (f"Patch coverage, {target.name} {RELEASE[target.name]} (N={n}, seed {seed}): {summary}.\n"
            f"Sampled (stratified by kind) among the functions of the DSU units but `main`: {among}.\n\n"
            + "\n".join(head) + ("\n" + "\n".join(details) if len(details) > 3 else "") + "\n")


def main(quick=False, n=None, seed=1, target_name="lua", changes=CHANGES):
    n = n or (4 if quick else 20)
    target = targets.TARGETS[target_name]
    env = common.runtime_env()
    work = common.WORK / f"coverage-{target.name}-run"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    rundir = work / "cwd"
    rundir.mkdir()
    root = project(target)
    functions = candidates(target, root)
    population = {}
    for _, f, direct in functions:
        k = kind_of(f, direct)
        population[k] = population.get(k, 0) + 1
    picked = sample(functions, n, seed)
    plain_output = None
    if target.name == "sqlite":
        plain = targets.start(target, target.plain_build(RELEASE["sqlite"]), work, env,
                              work / "plain.stderr")
        plain_output = plain.sql(sqlite_bench.workload(1) + "\nPRAGMA integrity_check;", timeout=900)
        plain.stop()
    rows = []
    for i, (unit_path, f, direct) in enumerate(picked):
        for change in changes:
            common.log(f"coverage {i + 1}/{len(picked)}: {f.qualname} ({kind_of(f, direct)}), {change} ...")
            row = try_one(target, root, env, work, rundir, unit_path, f, direct, change, i,
                          plain_output)
            common.log(f"  -> {row['outcome']}")
            rows.append(row)
    failure = root / "every-unit-failure.json"
    data = {"description": __doc__.split("\n\n")[0], "target": target.name,
            "dsu_units": (json.loads((root / "dsu-units.json").read_text())
                          if (root / "dsu-units.json").exists() else "every unit"),
            "every_unit_dsu_build_failure": json.loads(failure.read_text()) if failure.exists() else None,
            "release": RELEASE[target.name], "flags": target.flags, "build_note": target.build_note,
            "n": n, "seed": seed, "population_by_kind": population, "results": rows}
    name = "patch_coverage" + ("" if target.name == "lua" else "_" + target.name)
    common.write_result(name, data)
    table = markdown(target, rows, n, seed, population)
    (common.RESULTS / f"{name}.md").write_text(table)
    print("\n" + table)
    by = {}
    for r in rows:
        by.setdefault(r["change"], {}).setdefault(r["outcome"], 0)
        by[r["change"]][r["outcome"]] += 1
    return by


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="N=4")
    p.add_argument("--n", type=int, help="functions sampled (default 20)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--target", choices=sorted(targets.TARGETS), default="lua")
    p.add_argument("--changes", default=",".join(CHANGES), help="body,static")
    a = p.parse_args()
    main(a.quick, a.n, a.seed, a.target, tuple(a.changes.split(",")))
