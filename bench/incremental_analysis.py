"""incremental_analysis: how long the front end takes over sqlite3.c (255k lines)
when TO differs from an analysed FROM in one function body -- what `scons
patch` does after the release build analysed FROM -- against the full
analysis, and whether the two agree byte for byte.  With --patch, also the
whole `scons patch` of a one-function change of the SQLite shell (release
build first; minutes).

    python bench/incremental_analysis.py [--patch]"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import sqlite_bench  # noqa: E402

sys.path.insert(0, str(common.REPO / "site_scons"))
from psu import frontend  # noqa: E402

VERSION = "3.45.0"            # a release the realcode tests fetch too (one download)
FLAGS = sqlite_bench.FLAGS
# One body changed, two lines added: every definition below it moves down.
EDIT = ("SQLITE_API int sqlite3_libversion_number(void){",
        "SQLITE_API int sqlite3_libversion_number(void){\n  int psu_bench_unused = 1;\n"
        "  (void)psu_bench_unused;\n")


def _timed(function):
    started = time.monotonic()
    result = function()
    return result, round(time.monotonic() - started, 2)


def _tree(name, text, source):
    root = common.WORK / "incremental" / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "sqlite3.c").write_text(text, errors="surrogateescape")
    shutil.copy(source / "sqlite3.h", root / "sqlite3.h")
    return root


def _bytes(unit):
    return json.dumps(unit.to_json(), sort_keys=True)


def analysis():
    source = sqlite_bench.fetch(VERSION, common.WORK / f"sqlite-src-{VERSION}")
    text = (source / "sqlite3.c").read_text(errors="surrogateescape")
    if EDIT[0] not in text:
        raise RuntimeError("the edited function is not in sqlite3.c")
    before = _tree("from", text, source)
    exported = _tree("from-exported", text, source)
    after = _tree("to", text.replace(EDIT[0], EDIT[1], 1), source)
    cache = common.WORK / "incremental" / "cache"
    shutil.rmtree(cache, ignore_errors=True)

    def analyse(root, cached=True):
        return frontend.analyse("sqlite3.c", "cc", FLAGS, str(root), cache_dir=str(cache) if cached else None)

    common.log("full analysis of FROM (no cache) ...")
    _, full_s = _timed(lambda: analyse(before, cached=False))
    common.log("FROM analysed into the cache (the release build) ...")
    _, from_s = _timed(lambda: analyse(before))
    common.log("FROM exported elsewhere (scons patch's FROM) ...")
    _, exported_s = _timed(lambda: analyse(exported))
    common.log("TO, one body changed, FROM cached ...")
    incremental, to_s = _timed(lambda: analyse(after))
    common.log("TO, full analysis (no cache) ...")
    full, to_full_s = _timed(lambda: analyse(after, cached=False))
    return {"sqlite": VERSION, "flags": FLAGS, "full_analysis_s": full_s,
            "from_into_cache_s": from_s, "from_exported_cached_s": exported_s,
            "to_from_cached_s": to_s, "to_full_s": to_full_s,
            "incremental_equals_full": _bytes(incremental) == _bytes(full)}


def patch():
    """A one-function change of the DSU SQLite shell: release build, then `scons patch`."""
    source = sqlite_bench.fetch(VERSION, common.WORK / f"sqlite-src-{VERSION}")
    root = common.WORK / "incremental" / "project"
    shutil.rmtree(root, ignore_errors=True)
    (root / "src").mkdir(parents=True)
    (root / "site_scons").mkdir()
    for name in ("sqlite3.c", "shell.c", "sqlite3.h"):
        shutil.copy(source / name, root / "src" / name)
    (root / "SConstruct").write_text(sqlite_bench.SCONSTRUCT % (FLAGS,))
    (root / "site_scons" / "site_init.py").write_text(sqlite_bench.SITE_INIT % str(common.REPO / "site_scons"))
    (root / "policy.json").write_text(json.dumps("all") + "\n")
    (root / ".gitignore").write_text(".psu-build/\npsu-patches/\n*.o\nsqlite3\n*.psu.json\n"
                                     ".sconsign.dblite\n__pycache__/\n")
    sqlite_bench.git(root, "init", "-q")
    sqlite_bench.git(root, "add", "-A")
    sqlite_bench.git(root, "commit", "-q", "-m", "v1")
    sqlite_bench.git(root, "tag", "v1")
    common.log("release build of the DSU shell ...")
    _, build_s = _timed(lambda: subprocess.run(common.SCONS, cwd=root, check=True, capture_output=True,
                                               timeout=3600))
    text = (root / "src" / "sqlite3.c").read_text(errors="surrogateescape")
    old, new = sqlite_bench.UPPER_PATCH
    (root / "src" / "sqlite3.c").write_text(text.replace(old, new, 1), errors="surrogateescape")
    sqlite_bench.git(root, "commit", "-q", "-a", "-m", "v2")
    sqlite_bench.git(root, "tag", "v2")
    sqlite_bench.git(root, "checkout", "-q", "v1")
    common.log("scons patch FROM=v1 TO=v2 ...")
    _, patch_s = _timed(lambda: common.run(common.SCONS + ["patch", "FROM=v1", "TO=v2"], cwd=root,
                                           timeout=3600))
    bundles = list((root / "psu-patches").glob("*.psu"))
    return {"release_build_s": build_s, "scons_patch_s": patch_s,
            "bundle_bytes": bundles[0].stat().st_size if bundles else None}


def main(quick=False, with_patch=None):
    """bench/run.py's entry: `scons patch` is timed too unless `quick`."""
    result = analysis()
    if with_patch if with_patch is not None else not quick:
        result["patch"] = patch()
    print(json.dumps(result, indent=1))
    common.write_result("incremental_analysis", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", action="store_true", help="also time `scons patch` (minutes)")
    main(with_patch=parser.parse_args().patch)
