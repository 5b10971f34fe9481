"""Bundle size and build time of a one-function patch, before and after a
bundle compiled only what it needs (issue 15), and a chain of such patches
applied to a running process.

Targets: Lua 5.4.8 (every unit DSU, `str_upper` of lstrlib.c changed) and
SQLite 3.45.1's amalgamation (`sqlite3.c`, one function changed).  "old" is
psu at OLD_REF (every DSU unit compiled, every function carried), run from an
export of that commit on the same repository; "new" is this checkout, whose
time is split into the analysis (`compare`: FROM and TO analysed like the
release build) and the rest (plan, generate, compile, link, pack).  The chain
applies CHAIN bundles, each changing str_upper again, to one running Lua and
samples its mappings and loaded modules after each.

    python bench/bundle_size.py [--targets lua,sqlite] [--chain 200] [--old-ref REF]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import targets  # noqa: E402

sys.path.insert(0, str(common.REPO / "site_scons"))
from psu import buildconfig, patch  # noqa: E402

# The last commit before bundles were cut to what they need.
OLD_REF = "cc56360"

# One behaviour-preserving change of one function per target: (unit, old, new
# with {k}, distinct per revision of a chain).
EDITS = {
    "lua": ("src/lstrlib.c",
            "  for (i=0; i<l; i++)\n    p[i] = toupper(uchar(s[i]));",
            "  for (i=0; i<l + 0 * {k}; i++)\n    p[i] = toupper(uchar(s[i]));"),
    "sqlite": ("src/sqlite3.c",
               "SQLITE_API int sqlite3_libversion_number(void){ return SQLITE_VERSION_NUMBER; }",
               "SQLITE_API int sqlite3_libversion_number(void){ return SQLITE_VERSION_NUMBER + 0 * {k}; }"),
}
RELEASE = {"lua": "5.4.8", "sqlite": "3.45.1"}


def repository(target, chain):
    """WORK/bundle-size-<name>: the release as tag p0, then p1..p<chain>, each
    making the one change with its own k."""
    root = common.WORK / f"bundle-size-{target.name}"
    stamp = {"release": RELEASE[target.name], "edit": EDITS[target.name],
             "sconstruct": target.sconstruct()}
    ready = root / ".bench-ready"
    if ready.exists():
        made = json.loads(ready.read_text())
        if made.get("stamp") == stamp and made.get("chain", 0) >= chain:
            return root
    if root.exists():
        shutil.rmtree(root)
    (root / "site_scons").mkdir(parents=True)
    (root / "SConstruct").write_text(target.sconstruct())
    (root / "site_scons" / "site_init.py").write_text(targets.SITE_INIT % str(common.REPO / "site_scons"))
    (root / ".gitignore").write_text(targets.GITIGNORE + target.program + "\n.bench-ready\n")
    shutil.copytree(target.release_dir(RELEASE[target.name]) / "src", root / "src")
    targets.git(root, "init", "-q")
    targets.git(root, "add", "-A")
    targets.git(root, "commit", "-q", "-m", "p0")
    targets.git(root, "tag", "p0")
    unit, old, new = EDITS[target.name]
    original = (root / unit).read_text(errors="surrogateescape")
    if old not in original:
        raise RuntimeError(f"{unit} of {target.name} {RELEASE[target.name]} lacks the edited text")
    for k in range(1, max(chain, 1) + 1):
        (root / unit).write_text(original.replace(old, new.replace("{k}", str(k)), 1),
                                 errors="surrogateescape")
        targets.git(root, "commit", "-q", "-am", f"p{k}")
        targets.git(root, "tag", f"p{k}")
    targets.git(root, "checkout", "-q", "p0")
    ready.write_text(json.dumps({"stamp": stamp, "chain": max(chain, 1)}))
    return root


def build_config(root):
    found = list((root / ".psu-build").rglob("build.json"))
    return buildconfig.read(str(found[0]))


def code_size(bundle_path):
    from psu import bundle
    _, sections, _ = bundle.read(str(bundle_path))
    return len(sections["code"])


def new_bundle(root, from_ref, to_ref):
    """This checkout's bundle, its size and its time split in steps."""
    config = build_config(root)
    output = root / "psu-patches" / f"new-{from_ref}-{to_ref}.psu"
    t0 = time.monotonic()
    comparison = patch.compare(config, from_ref, to_ref)
    t1 = time.monotonic()
    previous = patch.previous_bundle(config, comparison.old["build_id"])
    contents = patch.plan_bundle(config, comparison, previous)
    work = patch.work_folder(config, comparison)
    lingering = patch.replaced_may_not_return(comparison)
    sources = patch.generate(config, comparison, contents, work, to_ref, lingering)
    t2 = time.monotonic()
    objects = patch.compile_sources(config, comparison.new_root, sources)
    code, state = patch.link(config, comparison.new_root, objects, work)
    t3 = time.monotonic()
    manifest = patch.manifest_of(config, comparison, contents, from_ref, to_ref, "", lingering)
    patch.pack(config, str(output), manifest, code, state)
    return output, {"bundle_bytes": output.stat().st_size, "code_bytes": len(code),
                    "units_compiled": sorted(contents.code_units),
                    "analysis_s": round(t1 - t0, 2), "generate_s": round(t2 - t1, 2),
                    "compile_link_s": round(t3 - t2, 2), "total_s": round(time.monotonic() - t0, 2)}


OLD_SCRIPT = """
import dataclasses, json, sys, time
from psu import patch
known = {f.name for f in dataclasses.fields(patch.BuildConfig)}
config = patch.BuildConfig(**{k: v for k, v in json.load(open(sys.argv[1])).items() if k in known})
t0 = time.monotonic()
patch.make_bundle(config, sys.argv[2], sys.argv[3], sys.argv[4])
print(json.dumps({"total_s": round(time.monotonic() - t0, 2)}))
"""


def old_bundle(root, from_ref, to_ref, old_ref):
    """psu at `old_ref`'s bundle (run from an export of that commit)."""
    old_tree = common.WORK / f"psu-{old_ref}"
    if not (old_tree / "site_scons").exists():
        old_tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", old_ref, "site_scons", "templates", "runtime"],
                                 cwd=common.REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", old_tree], input=archive, check=True)
    output = root / "psu-patches" / f"old-{from_ref}-{to_ref}.psu"
    config_path = next((root / ".psu-build").rglob("build.json"))
    env = dict(os.environ, PYTHONPATH=str(old_tree / "site_scons"))
    done = subprocess.run([sys.executable, "-c", OLD_SCRIPT, config_path, from_ref, to_ref, output],
                          cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"old psu failed: {done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {"bundle_bytes": output.stat().st_size, "code_bytes": code_size(output), **figures}


def one_function(target, root, old_ref):
    common.log(f"{target.name}: one-function bundle, new psu (warming the analysis cache) ...")
    new_bundle(root, "p0", "p1")          # both runs below find FROM and TO analysed
    common.log(f"{target.name}: one-function bundle, old psu ({old_ref}) ...")
    old = old_bundle(root, "p0", "p1", old_ref)
    common.log(f"{target.name}: one-function bundle, new psu ...")
    _, new = new_bundle(root, "p0", "p1")
    common.log(f"{target.name}: old {old['bundle_bytes']} B in {old['total_s']} s, "
               f"new {new['bundle_bytes']} B in {new['total_s']} s "
               f"(compile+link {new['compile_link_s']} s)")
    return {"old": old, "new": new}


def mappings(pid):
    with open(f"/proc/{pid}/maps") as f:
        return sum(1 for _ in f)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def chain(target, root, length):
    """Apply p0->p1->...->p<length> to one running interpreter."""
    exe = root / target.program
    env = dict(os.environ, PSU_RUNTIME_DIR=tempfile.mkdtemp(prefix="psu-bundle-size-"), PSU_QUIET="1")
    process = targets.start(target, exe, root, env, common.WORK / "bundle-size-lua.stderr")
    samples = []
    analyse_tree = patch.analyse_tree
    patch.analyse_tree = _remembered(analyse_tree)
    try:
        for k in range(1, length + 1):
            bundle, figures = new_bundle(root, f"p{k - 1}", f"p{k}")
            answer, ms = targets.apply_bundle(process, bundle, env)
            if not answer.get("ok"):
                raise RuntimeError(f"p{k}: {answer}")
            ok, message, _ = process.command('eval return string.upper("psu")')
            deadline = time.monotonic() + 10        # the older module unloads once idle
            while True:
                status = common.control(process.pid, "status", env)
                if len(status["modules"]) <= 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            samples.append({"k": k, "bundle_bytes": figures["bundle_bytes"],
                            "build_s": figures["total_s"], "apply_ms": ms,
                            "mappings": mappings(process.pid), "rss_kib": rss_kib(process.pid),
                            "modules": len(status["modules"]), "answer": message})
            if k % 10 == 0 or k == length:
                common.log(f"chain {k}/{length}: {samples[-1]}")
    finally:
        patch.analyse_tree = analyse_tree
        process.stop()
    return samples


def _remembered(analyse_tree):
    """`analyse_tree` remembering each exported revision's analysis (a
    revision's folder never changes): step k's FROM is step k-1's TO.  The
    chain measures the process; the analysis is timed in one_function."""
    known = {}

    def analyse(config, root, label):
        key = (root, label, tuple(config.flags), tuple(sorted(config.unit_flags)))
        if key not in known:
            known[key] = analyse_tree(config, root, label)
        return known[key]
    return analyse


def main(quick=False, arguments=None):
    """bench/run.py's entry (`quick`: a chain of 20); the command line's below."""
    if arguments is None:
        arguments = argparse.Namespace(targets="lua,sqlite", chain=20 if quick else 200,
                                       old_ref=OLD_REF)
    # a run of some targets keeps the other targets' figures of an earlier run
    previous = common.RESULTS / "bundle_size.json"
    results = json.loads(previous.read_text()) if previous.exists() else {}
    results.pop("benchmark", None)
    results.pop("machine", None)
    results["old_ref"] = arguments.old_ref
    for name in arguments.targets.split(","):
        target = targets.TARGETS[name]
        root = repository(target, arguments.chain if name == "lua" else 1)
        common.log(f"{name}: psu build of p0 ...")
        targets.git(root, "checkout", "-q", "p0")
        seconds, code, output = targets.scons_build(root)
        if code != 0:
            raise RuntimeError(f"{name}: psu build failed:\n{output[-3000:]}")
        results[name] = one_function(target, root, arguments.old_ref)
        results[name]["release_build_s"] = round(seconds, 1)
        if name == "lua" and arguments.chain:
            samples = chain(target, root, arguments.chain)
            results["lua_chain"] = {
                "length": arguments.chain, "samples": samples,
                "mappings_first_last": [samples[0]["mappings"], samples[-1]["mappings"]],
                "modules_max": max(s["modules"] for s in samples),
                "rss_kib_first_last": [samples[0]["rss_kib"], samples[-1]["rss_kib"]],
            }
        common.write_result("bundle_size", results)
    return {name: results.get(name) for name in arguments.targets.split(",")}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="lua,sqlite")
    parser.add_argument("--chain", type=int, default=200, help="Lua chain length (0: none)")
    parser.add_argument("--old-ref", default=OLD_REF)
    main(arguments=parser.parse_args())
