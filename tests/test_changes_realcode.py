"""Issue 10 on real releases: Lua 5.4.3 -> 5.4.4 (from the lupa sdists) is
refused naming its causes -- global_State's member renamed (same layout) and
the two real signature changes -- not every function that reaches them."""
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
