"""Issue 10 on real releases, analysed as `scons patch` does (no build):
- Lua 5.4.3 -> 5.4.4 (lupa sdists) is refused naming its causes --
  global_State's member renamed (same layout) and the two real signature
  changes -- not every function that reaches them;
- SQLite 3.45.0 -> 3.45.1 (sqlean.py sdists) is refused only for the shell's
  `main` (it compares SQLITE_SOURCE_ID); accepted, the changed version string
  brings its reader into the patch."""
import pathlib
import subprocess
import sys
import tarfile

import pytest

from psu import changes, frontend, manifest
from psu.errors import RefusedChanges

CACHE = pathlib.Path.home() / ".cache" / "psu-realcode"
# the computed-goto jump table is a GNU C construct the front end parses elsewhere
FLAGS = ["-O2", "-std=gnu99", "-DLUA_USE_LINUX", "-DLUA_USE_JUMPTABLE=0"]
PROGRAMS = {"lua.c", "luac.c", "onelua.c", "ltests.c"}


def lua_sources(version, folder, tmp):
    download = CACHE / f"lupa-{version}"
    if not list(download.glob("lupa-*.tar.gz")):
        download.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:",
                        "--no-deps", f"lupa=={version}", "-d", str(download)], check=True)
    with tarfile.open(next(download.glob("lupa-*.tar.gz"))) as archive:
        members = [m for m in archive.getmembers() if f"/third-party/{folder}/" in m.name]
        archive.extractall(tmp, members=members, filter="data")
    return next(tmp.glob(f"lupa-*/third-party/{folder}"))


def lua_manifest(root, label, cache):
    units = [frontend.analyse(p.name, "cc", FLAGS, str(root), cache_dir=str(cache))
             for p in sorted(root.glob("*.c")) if p.name not in PROGRAMS]
    return manifest.build("lua", label, units, "cc", FLAGS)


@pytest.mark.realcode
def test_lua_5_4_3_to_5_4_4_is_refused_by_cause(tmp_path):
    old = lua_manifest(lua_sources("1.10", "lua", tmp_path / "old"), "5.4.3", tmp_path / "cache")
    new = lua_manifest(lua_sources("2.0", "lua54", tmp_path / "new"), "5.4.4", tmp_path / "cache")
    with pytest.raises(RefusedChanges) as refused:
        changes.compare(old, new)
    # variadic functions are direct until they become DSU functions (issue 10, capability 3)
    causes = sorted((r.kind, r.what) for r in refused.value.refusals if r.kind != "variadic")
    assert causes == [("signature", "luaD_pretailcall"), ("signature", "luaD_tryfuncTM"),
                      ("type", "struct global_State")]
    global_state = next(r for r in refused.value.refusals if r.kind == "type")
    assert global_state.detail.startswith("gcrunning renamed gcstp, same layout; existing state holds it")
    assert global_state.accept == "type:struct global_State"
    with pytest.raises(RefusedChanges) as accepted:
        changes.compare(old, new, accept=["type:global_State"])
    assert "global_State" not in str(accepted.value)


SQLITE_FLAGS = ["-O2", "-DSQLITE_THREADSAFE=0", "-DSQLITE_OMIT_LOAD_EXTENSION"]


def sqlite_sources(version, tmp):
    download = CACHE / f"sqlean-{version}"
    if not list(download.glob("sqlean*.tar.gz")):
        download.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:",
                        "--no-deps", f"sqlean.py=={version}", "-d", str(download)], check=True)
    with tarfile.open(next(download.glob("sqlean*.tar.gz"))) as archive:
        members = [m for m in archive.getmembers()
                   if m.name.endswith(("/sqlite/sqlite3.c", "/sqlite/shell.c", "/sqlite/sqlite3.h"))]
        archive.extractall(tmp, members=members, filter="data")
    root = next(tmp.glob("*/sqlite"))
    # the sdist appends its extensions to the amalgamation: keep SQLite itself
    amalgamation = root / "sqlite3.c"
    text = amalgamation.read_text(errors="surrogateescape")
    end = "/************************** End of sqlite3.c ******************************/"
    amalgamation.write_text(text[:text.index(end) + len(end)] + "\n", errors="surrogateescape")
    return root


def sqlite_manifest(root, label, cache):
    units = [frontend.analyse("sqlite3.c", "cc", SQLITE_FLAGS, str(root), cache_dir=str(cache)),
             frontend.analyse("shell.c", "cc", SQLITE_FLAGS, str(root), dsu=False, cache_dir=str(cache))]
    return manifest.build("sqlite3", label, units, "cc", SQLITE_FLAGS)


@pytest.mark.realcode
def test_sqlite_3_45_0_to_3_45_1_refuses_only_main_and_brings_the_new_version_string(tmp_path):
    old = sqlite_manifest(sqlite_sources("3.45.0", tmp_path / "old"), "3.45.0", tmp_path / "cache")
    new = sqlite_manifest(sqlite_sources("3.45.1", tmp_path / "new"), "3.45.1", tmp_path / "cache")
    with pytest.raises(RefusedChanges) as refused:
        changes.compare(old, new)
    assert [(r.kind, r.what, r.accept) for r in refused.value.refusals] == [
        ("outside-dsu", "main", "stale:main")]
    change_set = changes.compare(old, new, accept=["stale:main"])
    assert change_set.constants == {"sqlite3_version": "sqlite3.c"}
    assert change_set.pulled_in["sqlite3_libversion"] == ["sqlite3_version (constant)"]
