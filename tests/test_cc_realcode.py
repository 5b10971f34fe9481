"""`psu cc` on real builds no one here wrote, fetched at test time: GNU hello
(autotools, from Debian's source packages), the tinyproxy daemon (autotools,
Debian) updated live, and the Lua 5.4 developer makefile shipped in the lupa
sdist (its objects reach the link inside liblua.a), with a live update of a
running interpreter."""
import os
import pathlib
import shutil
import socket
import subprocess
import tarfile

import pytest

from projects import Process, Project, run, wait_until
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


def extracted(archive, destination, folder):
    """The release tarball unpacked as files of this user (git refuses others')."""
    run(["tar", "-xf", archive, "--no-same-owner", "-C", destination], destination)
    return destination / folder


def test_gnu_hello_configured_and_built_with_psu_cc(tmp_path):
    archive = debian_source("hello", "2.10-3", "hello_2.10.orig.tar.gz")
    root = extracted(archive, tmp_path, "hello-2.10")
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

        ask = process.ask
        assert ask("banana") == "BANANA"
        applied = process.psu("apply", process.pid, bundle)
        assert applied.returncode == 0, applied.stderr
        assert ask("banana") == "B4N4N4"
        assert ask("cherry") == "CHERRY"
    finally:
        process.stop()


TINYPROXY_CONF = """Port {port}
Listen 127.0.0.1
Timeout 60
MaxClients 10
StatHost "tinyproxy.stats"
"""


def stats_heading(port):
    """The heading of tinyproxy's built-in statistics page, asked through the proxy."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(b"GET http://tinyproxy.stats/ HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
    return [line for line in data.decode(errors="replace").splitlines() if "<h1>" in line]


def test_tinyproxy_daemon_built_with_psu_cc_and_updated_live(tmp_path):
    archive = debian_source("tinyproxy", "1.11.1-2.1+deb12u1", "tinyproxy_1.11.1.orig.tar.xz")
    project = Project(extracted(archive, tmp_path, "tinyproxy-1.11.1"))
    shutil.rmtree(project.root / "site_scons")
    # Every unit DSU: reqs.c has two function-local statics of one name and two
    # types, upstream.c and conf.c arrays sized by [ENUM] = designators (conf.c's
    # of an anonymous struct type, its size read by sizeof in a bundle).
    (project.root / "psu.toml").write_text(
        'units = ["src/*.c"]\nexclude_units = []\n')
    (project.root / ".gitignore").unlink()
    project.commit("v1")
    stats_c = project.root / "src" / "stats.c"
    text = stats_c.read_text()
    assert text.count("<h1>%s version %s run-time statistics</h1>") == 1
    stats_c.write_text(text.replace("<h1>%s version %s run-time statistics</h1>",
                                    "<h1>%s version %s live statistics</h1>"))
    project.commit("v2")
    project.checkout("v1")

    env = wrapper_environment(tmp_path)
    run(["./configure", "CC=psu cc gcc"], project.root, env=env, timeout=1200)
    assert (project.root / "config.h").exists()      # generated, not in git: psu patch uses it
    run(["make", "-j2"], project.root, env=env, timeout=1200)
    bundle = tmp_path / "tinyproxy-v1-v2.psu"
    made = run(["psu", "patch", "v1", "v2", "-o", bundle], project.root, env=env, check=False,
               timeout=1200)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "showstats" in made.stdout

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "tinyproxy.conf").write_text(TINYPROXY_CONF.format(port=port))
    process = Process([project.root / "src" / "tinyproxy", "-d", "-c", tmp_path / "tinyproxy.conf"],
                      tmp_path, tmp_path / "run")
    try:
        process.wait_for_socket(timeout=30)
        assert wait_until(lambda: _answers(port), timeout=30)
        assert stats_heading(port) == ["<h1>tinyproxy version 1.11.1 run-time statistics</h1>"]
        applied = process.psu("apply", process.pid, bundle)
        assert applied.returncode == 0, applied.stderr
        assert stats_heading(port) == ["<h1>tinyproxy version 1.11.1 live statistics</h1>"]
        assert process.alive()
    finally:
        process.stop()


def _answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return True
    except OSError:
        return False
