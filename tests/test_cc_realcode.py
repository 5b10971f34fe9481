"""`psu cc` on real builds no one here wrote, fetched at test time: GNU hello
(autotools, from Debian's source packages) and the Lua 5.4 developer makefile
shipped in the lupa sdist (its objects reach the link inside liblua.a), with a
live update of a running interpreter."""
import os
import pathlib
import shutil
import subprocess
import tarfile

import pytest

from projects import Process, Project, run
from test_cc import wrapper_environment

pytestmark = pytest.mark.realcode

CACHE = pathlib.Path(os.environ.get("PSU_REALCODE_CACHE", pathlib.Path.home() / ".cache" / "psu-realcode"))


def fetched(folder, name, command):
    """The file `name` under the cache's `folder`, fetched by `command` if missing."""
    directory = CACHE / folder
    if not (directory / name).exists():
        directory.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(command, cwd=directory, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as error:
            pytest.skip(f"cannot fetch {name}: {error}")
        if done.returncode != 0 or not (directory / name).exists():
            pytest.skip(f"cannot fetch {name}: {done.stderr.strip()[-300:]}")
    return directory / name


def debian_source(package, version, archive):
    return fetched("deb", archive, ["apt-get", "source", "--download-only", f"{package}={version}"])


def test_gnu_hello_configured_and_built_with_psu_cc(tmp_path):
    archive = debian_source("hello", "2.10-3", "hello_2.10.orig.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path)
    root = tmp_path / "hello-2.10"
    (root / "psu.toml").write_text('units = ["src/*.c"]\n')
    env = wrapper_environment(tmp_path)
    configured = run(["./configure", "CC=psu cc gcc"], root, env=env, timeout=1200)
    # configure's checks passed through: it found a working compiler and wrote its config.h
    assert "checking whether the C compiler works... yes" in configured.stdout
    assert (root / "config.h").exists()
    run(["make", "-j2"], root, env=env, timeout=1200)
    manifest = (root / "hello.psu.json").read_text()
    assert '"src/hello.c"' in manifest
    (tmp_path / "run").mkdir(mode=0o700)
    env = dict(env, PSU_RUNTIME_DIR=str(tmp_path / "run"), PSU_QUIET="1")
    assert run([root / "hello"], root, env=env).stdout == "Hello, world!\n"
    assert run([root / "hello", "--greeting=hi"], root, env=env).stdout == "hi\n"


LUA_FLAGS = ["MYLIBS=-ldl",
             # lvm.c's computed-goto dispatch (ljumptab.h) is GNU C pycparser cannot
             # read; Lua's own switch is the portable alternative
             "MYCFLAGS=-std=c99 -DLUA_USE_LINUX -DLUA_USE_JUMPTABLE=0"]
LUA_LOOP = "for line in io.lines() do print(string.upper(line)); io.stdout:flush() end\n"


def test_lua_makefile_built_with_psu_cc_and_interpreter_updated_live(tmp_path):
    sdist = fetched("lupa-2.8", "lupa-2.8.tar.gz",
                    ["pip", "download", "--no-binary", "lupa", "--no-deps", "lupa==2.8", "-d", "."])
    project = Project(tmp_path / "lua")
    shutil.rmtree(project.root / "site_scons")
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("lupa-2.8/third-party/lua54/")
                   and m.isfile() and "/" not in m.name[len("lupa-2.8/third-party/lua54/"):]
                   and (m.name.endswith((".c", ".h")) or m.name.endswith("/makefile"))]
        for member in members:
            member.name = member.name.rsplit("/", 1)[1]
            tar.extract(member, project.root)
    assert (project.root / "makefile").exists() and (project.root / "lstrlib.c").exists()
    (project.root / "psu.toml").write_text('units = ["l*.c"]\nexclude_units = ["lua.c"]\n')
    (project.root / ".gitignore").write_text("*.o\n*.a\nlua\nall\n*.psu.json\n.psu-build/\n")
    (project.root / "loop.lua").write_text(LUA_LOOP)
    project.commit("v1")
    strlib = project.root / "lstrlib.c"
    text = strlib.read_text()
    assert text.count("p[i] = toupper(uchar(s[i]));") == 1
    strlib.write_text(text.replace("p[i] = toupper(uchar(s[i]));",
                                   "p[i] = (s[i] == 'a') ? '4' : toupper(uchar(s[i]));"))
    project.commit("v2")
    project.checkout("v1")

    env = wrapper_environment(tmp_path)
    run(["make", "-j2", "CC=psu cc gcc", *LUA_FLAGS], project.root, env=env, timeout=1200)
    manifest = (project.root / "lua.psu.json").read_text()
    assert '"lstrlib.c:str_upper"' in manifest
    bundle = tmp_path / "lua-v1-v2.psu"
    made = run(["psu", "patch", "v1", "v2", "-o", bundle], project.root, env=env, check=False,
               timeout=1200)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "lstrlib.c:str_upper" in made.stdout

    process = Process([project.root / "lua", "loop.lua"], project.root, tmp_path / "run", stdin=True)
    try:
        process.wait_for_socket()

        def ask(line):
            process.process.stdin.write(line + "\n")
            process.process.stdin.flush()
            return process.read_line()
        assert ask("banana") == "BANANA"
        applied = process.psu("apply", process.pid, bundle)
        assert applied.returncode == 0, applied.stderr
        assert ask("banana") == "B4N4N4"
        assert ask("cherry") == "CHERRY"
    finally:
        process.process.stdin.close()
        process.stop()
