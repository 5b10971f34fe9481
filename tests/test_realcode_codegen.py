"""Issue 10 on real code: Lua 5.4.7 -> 5.4.8 (a function added, declared hidden
by LUAI_FUNC in ldo.h) applies live and Lua's own test suite passes in the
updated process; a change to Lua's variadic error functions applies live.

Lua's sources come from the lupa sdists on PyPI (2.3 has Lua 5.4.7, 2.8 has
5.4.8), cached under ~/.cache/psu-realcode, never committed.
"""
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile

import pytest

from projects import Process, Project

pytestmark = pytest.mark.realcode

CACHE = pathlib.Path(os.environ.get("PSU_REALCODE_CACHE", pathlib.Path.home() / ".cache" / "psu-realcode"))
# every unit of the interpreter but the amalgamation and the test library
LEFT_OUT = {"onelua.c", "ltests.c", "ltests.h", "luac.c"}
SCONSTRUCT = """\
env = Environment(tools=['default', 'psu'])
# LUA_USE_JUMPTABLE=0: the front end cannot read computed gotos (ljumptab.h)
env.Append(CCFLAGS=['-O2', '-Wall'], CFLAGS=['-std=gnu99'],
           CPPDEFINES=['LUA_USE_LINUX', ('LUA_USE_JUMPTABLE', 0)], LIBS=['m', 'dl'])
sources = sorted(str(f) for f in Glob('*.c'))
env.PSUProgram('lua', sources, PSU_UNITS=sources)
"""


def lua_sources(lupa_version):
    """The lua54 folder of the lupa sdist `lupa_version`, extracted in the cache."""
    folder = CACHE / f"codegen-lupa-{lupa_version}"
    lua = folder / f"lupa-{lupa_version}" / "third-party" / "lua54"
    if lua.is_dir():
        return lua
    archive = CACHE / f"lupa-{lupa_version}" / f"lupa-{lupa_version}.tar.gz"
    if not archive.exists():
        archive.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:",
                               "--no-deps", f"lupa=={lupa_version}", "-d", str(archive.parent)],
                              capture_output=True, text=True, timeout=900)
        if not archive.exists():
            pytest.skip(f"lupa {lupa_version} sdist not available: {done.stderr[-500:]}")
    temporary = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/third-party/lua54/" in m.name]
        tar.extractall(temporary, members=members, filter="data")
    shutil.rmtree(folder, ignore_errors=True)
    os.rename(temporary, folder)
    return lua


def copy_lua(source, destination):
    for item in source.iterdir():
        if item.suffix in (".c", ".h") and item.name not in LEFT_OUT:
            shutil.copy(item, destination / item.name)


@pytest.fixture(scope="module")
def lua(tmp_path_factory):
    lua547, lua548 = lua_sources("2.3"), lua_sources("2.8")
    project = Project(tmp_path_factory.mktemp("lua") / "repo")
    project.write({"SConstruct": SCONSTRUCT})
    copy_lua(lua547, project.root)
    project.commit("v5.4.7")
    copy_lua(lua548, project.root)
    project.commit("v5.4.8")
    # from 5.4.7: Lua's variadic error functions say they were patched
    project.checkout("v5.4.7")
    ldebug = project.root / "ldebug.c"
    old = "  msg = luaO_pushvfstring(L, fmt, argp);  /* format message */\n  va_end(argp);\n"
    assert old in ldebug.read_text()
    ldebug.write_text(ldebug.read_text().replace(
        old, old + '  msg = luaO_pushfstring(L, "patched %d %f %s", 7, 2.5, msg);\n'))
    project.commit("v5.4.7-errors")
    project.checkout("v5.4.7")
    project.build()
    project.testes = lua548.parent / "lua54" / "testes"
    return project


WAIT_THEN_RUN = """\
local flag = arg[1]
print(pcall(function() return 1 + nil end))
io.stdout:flush()
while true do
  local f = io.open(flag)
  if f then f:close(); break end
  os.execute("sleep 0.05")
end
print(pcall(function() return 1 + nil end))
io.stdout:flush()
if arg[2] == "all" then dofile("all.lua") end
"""


def run_updated(lua, tmp_path, bundle, then):
    """Starts the 5.4.7 interpreter on a script that waits for a flag, applies
    `bundle`, raises the flag and returns the output lines once it ends."""
    testes = tmp_path / "testes"
    shutil.copytree(lua.testes, testes)
    (testes / "wait.lua").write_text(WAIT_THEN_RUN)
    flag = tmp_path / "go"
    running = Process([lua.root / "lua", "-e", "_port=true", "wait.lua", flag, then], testes,
                      tmp_path / "run")
    try:
        running.wait_for_socket()
        before = running.read_line()
        applied = running.psu("apply", running.pid, bundle)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        flag.write_text("")
        output, errors = running.process.communicate(timeout=600)
        assert running.process.returncode == 0, output[-2000:] + errors[-2000:]
        return [before] + output.splitlines()
    finally:
        running.stop()


def test_lua_547_to_548_applies_live_and_its_tests_pass(lua, tmp_path):
    """Defect 1 on Lua: 5.4.8 adds luaD_errerr, declared hidden (LUAI_FUNC) in
    ldo.h and called by the replaced luaD_throw and luaE_checkcstack."""
    done = lua.patch("v5.4.7", "v5.4.8")
    assert "added:\n    luaD_errerr" in done.stdout
    lines = run_updated(lua, tmp_path, lua.bundle("lua", "v5.4.7", "v5.4.8"), "all")
    assert "final OK !!!" in lines


def test_lua_variadic_error_function_changed_live(lua, tmp_path):
    """Capability 3 on Lua: luaG_runerror (variadic, noreturn, leaves by
    longjmp) changed; the running interpreter's next error says so, with an
    int and a double among the new call's variable arguments."""
    lua.patch("v5.4.7", "v5.4.7-errors")
    lines = run_updated(lua, tmp_path, lua.bundle("lua", "v5.4.7", "v5.4.7-errors"), "none")
    assert lines == ["false\twait.lua:2: attempt to perform arithmetic on a nil value",
                     "false\twait.lua:9: patched 7 2.5 attempt to perform arithmetic on a nil value"]
