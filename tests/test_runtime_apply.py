"""The loader and the control socket, driven directly: a tiny DSU program
(tests/c/app.c) linked with the runtime, bundles written here from real
shared objects (tests/c/patch.c, tests/c/state.c), requests over the socket.

No timing assertions: waits have generous deadlines and only bound a hang."""
import os
import pathlib
import shutil
import stat
import subprocess
import tempfile

import pytest

import cbuild

from projects import DEADLINE, control_connection
from runtime_app import A, B, C_ID, D, App, make_bundle, wait_for

C = cbuild.TESTS_C


# ---- the objects --------------------------------------------------------------

@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """Builds the app and the code objects once for the module."""
    out = tmp_path_factory.mktemp("build")
    objs = {"app": cbuild.build_executable([C / "app.c"], out / "app"),
            # room for three bundle modules: the capacity limit within reach
            "app_small": cbuild.build_executable([C / "app.c"], out / "app_small",
                                                 flags=["-O2", "-DPSU_MAX_MODULES=4"])}

    def so(name, *defines, src="patch.c"):
        objs[name] = cbuild.build_shared([C / src], out / f"{name}.so",
                                         flags=["-O2"] + [f"-D{d}" for d in defines])
    for v in (2, 3, 4):
        so(f"v{v}", f"VERSION={v}")
    so("unresolved", "VERSION=2", "UNRESOLVED")
    so("unknown_name", "VERSION=2", "UNKNOWN_NAME")
    so("unaligned", "VERSION=2", "UNALIGNED")
    so("failing_transformer", "VERSION=2", "FAILING_TRANSFORMER")
    so("uses_added", "VERSION=2", "USES_ADDED")
    so("state", src="state.c")
    objs["dir"] = out
    return objs


@pytest.fixture
def app(build, tmp_path):
    a = App(build["app"], tmp_path / "run")
    yield a
    a.stop()


def mapped(app, label, kind="code"):
    return f"psu-{label}-{kind}" in app.maps()


def bundle_modules(app):
    return [m for m in app.request("status")["modules"] if m["kind"] == "bundle"]


# ---- tests -------------------------------------------------------------------

def test_ping_and_status(app):
    assert app.request("ping") == {"ok": True, "pid": app.pid, "program": "app"}
    st = app.request("status")
    assert st["build_id"] == A and st["original_build_id"] == A and st["label"] == "v1"
    assert st["membarrier"] is True and st["updates"] == 0 and st["history"] == []
    assert st["modules"] == [{"index": 0, "kind": "executable", "label": "v1", "build_id": A,
                              "functions_current": 2, "active_calls": 0, "pins": 0,
                              "state": "current"}]
    assert oct(stat.S_IMODE(os.stat(app.socket).st_mode)) == "0o600"
    assert oct(stat.S_IMODE(os.stat(app.socket.parent).st_mode)) == "0o700"


def test_apply_switches_and_unloads_old_module(app, build, tmp_path):
    assert app.call(5) == 1005
    r = app.request(f"apply {make_bundle(build, tmp_path / 'v2.psu')}")
    assert r == {"ok": True, "result": "applied", "from": A, "to": B, "label": "v2",
                 "functions": 2, "module": 1, "old_versions_running": []}
    assert app.call(5) == 2005
    assert mapped(app, "v2")
    r = app.request(f"apply {make_bundle(build, tmp_path / 'v3.psu', 'v3', B, C_ID, 'v3')}")
    assert r["result"] == "applied" and r["to"] == C_ID
    assert app.call(5) == 3005
    wait_for(lambda: not mapped(app, "v2"), "v2 unloaded")
    st = app.request("status")
    assert st["build_id"] == C_ID and st["label"] == "v3" and st["updates"] == 2
    assert st["unloaded"] == 1
    assert [(m["label"], m["functions_current"]) for m in st["modules"]] == [("v1", 0), ("v3", 2)]
    assert [h["build_id"] for h in st["history"]] == [A, B]


def test_parked_thread_pins_exactly_its_module(app, build, tmp_path):
    app.request(f"apply {make_bundle(build, tmp_path / 'v2.psu')}")
    app.send("park 1")
    app.expect("parked v2 1")
    app.request(f"apply {make_bundle(build, tmp_path / 'v3.psu', 'v3', B, C_ID, 'v3')}")
    app.request(f"apply {make_bundle(build, tmp_path / 'v4.psu', 'v4', C_ID, D, 'v4')}")
    # v3 never had a caller: unloaded; v2 has the parked call: stays.
    wait_for(lambda: not mapped(app, "v3"), "v3 unloaded")
    assert mapped(app, "v2")
    v2 = [m for m in bundle_modules(app) if m["label"] == "v2"][0]
    assert v2["active_calls"] == 1 and v2["state"] == "pending-unload"
    assert v2["functions_current"] == 0
    assert app.call(1) == 4001          # new calls run the newest version
    app.send("release 1")
    app.expect("unparked v2 1")
    wait_for(lambda: not mapped(app, "v2"), "v2 unloaded after its call returned")
    assert [m["label"] for m in bundle_modules(app)] == ["v4"]


def test_pin_keeps_module_until_unpinned(app, build, tmp_path):
    app.send("pin")
    assert app.expect("pin ") == "pin 0"        # the executable: nothing to pin
    app.send("unpin")
    assert app.expect("unpin ") == "unpin 0"
    app.request(f"apply {make_bundle(build, tmp_path / 'v2.psu')}")
    app.send("pin")
    assert app.expect("pin ") == "pin 1"
    app.request(f"apply {make_bundle(build, tmp_path / 'v3.psu', 'v3', B, C_ID, 'v3')}")
    v2 = [m for m in bundle_modules(app) if m["label"] == "v2"][0]
    assert v2["pins"] == 1 and v2["functions_current"] == 0 and v2["state"] == "current"
    assert mapped(app, "v2")
    app.send("unpin")
    assert app.expect("unpin ") == "unpin 1"
    # unmapped first, then its index freed: the unload is over once status lists it no more
    wait_for(lambda: not mapped(app, "v2") and
             not [m for m in bundle_modules(app) if m["label"] == "v2"], "v2 unloaded after unpin")
    app.send("unpin")
    assert app.expect("unpin ") == "unpin 0"    # gone: no module holds it now


def assert_unchanged(app):
    st = app.request("status")
    assert st["build_id"] == A and st["updates"] == 0
    assert [m["index"] for m in st["modules"]] == [0]
    assert "psu-" not in app.maps()
    assert app.call(7) == 1007


@pytest.mark.parametrize("case, error, message", [
    ("wrong_base", "base", "applies to build " + B),
    ("wrong_program", "program", "bundle is for program 'other'"),
    ("truncated", "checksum", "does not match"),
    ("too_short", "format", "shorter than header"),
    ("flipped_byte", "checksum", "does not match"),
    ("unresolved", "load", "psu_test_no_such_symbol"),
    ("unknown_name", "link", "app.c:no_such_function"),
    ("unaligned", "link", "the code of 'app.c:park' is not aligned to 256 bytes"),
    ("failing_transformer", "transform", "returned 7"),
    ("missing_file", "io", "No such file"),
    ("relative_path", "request", "must be absolute"),
])
def test_refused_bundle_leaves_process_unchanged(app, build, tmp_path, case, error, message):
    path = tmp_path / f"{case}.psu"
    if case == "wrong_base":
        make_bundle(build, path, "v3", B, C_ID, "v3")
    elif case == "wrong_program":
        make_bundle(build, path, program="other")
    elif case == "truncated":
        make_bundle(build, path)
        path.write_bytes(path.read_bytes()[:-100])
    elif case == "too_short":
        path.write_bytes(b"PSUBNDL1" + bytes(20))
    elif case == "flipped_byte":
        make_bundle(build, path)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif case in ("unresolved", "unknown_name", "unaligned", "failing_transformer"):
        make_bundle(build, path, case)
    target = {"missing_file": tmp_path / "nope.psu", "relative_path": "x.psu"}.get(case, path)
    r = app.request(f"apply {target}")
    assert r["ok"] is False and r["error"] == error, r
    assert message in r["message"], r
    assert_unchanged(app)


def test_unknown_request(app):
    r = app.request("frobnicate \"x\"")
    assert r["ok"] is False and r["error"] == "request"
    assert '"x"' in r["message"]


def test_reapply_answers_already(app, build, tmp_path):
    path = make_bundle(build, tmp_path / "v2.psu")
    assert app.request(f"apply {path}")["result"] == "applied"
    assert app.request(f"apply {path}") == {"ok": True, "result": "already",
                                            "build_id": B, "label": "v2"}
    st = app.request("status")
    assert st["updates"] == 1 and len(bundle_modules(app)) == 1
    assert app.call(1) == 2001


def test_rollback_restores_previous_versions(app, build, tmp_path):
    assert app.request("rollback")["error"] == "history"
    app.request(f"apply {make_bundle(build, tmp_path / 'v2.psu')}")
    app.request(f"apply {make_bundle(build, tmp_path / 'v3.psu', 'v3', B, C_ID, 'v3')}")
    wait_for(lambda: not mapped(app, "v2"), "v2 unloaded")
    # v2's module is gone: rollback re-reads its bundle and loads it again.
    r = app.request("rollback")
    assert r["ok"] and r["result"] == "rolled-back" and r["from"] == C_ID and r["to"] == B
    assert r["label"] == "v2" and r["functions"] == 2
    assert app.call(5) == 2005
    assert mapped(app, "v2")
    wait_for(lambda: not mapped(app, "v3"), "v3 unloaded")
    r = app.request("rollback")
    assert r["to"] == A and r["label"] == "v1"
    assert app.call(5) == 1005
    wait_for(lambda: "psu-" not in app.maps(), "every bundle unloaded")
    st = app.request("status")
    assert st["build_id"] == A and st["label"] == "v1" and st["history"] == []
    assert app.request("rollback")["error"] == "history"
    # The chain can be applied again.
    app.request(f"apply {tmp_path / 'v2.psu'}")
    assert app.call(5) == 2005


def test_history_keeps_the_last_64_updates(app, build, tmp_path):
    """70 updates back and forth: the oldest 6 leave the history, the last 64
    can each be rolled back, and then there is nothing more to roll back."""
    forth = make_bundle(build, tmp_path / "forth.psu")                          # A -> B, v2
    back = make_bundle(build, tmp_path / "back.psu", "v4", B, A, "back")        # B -> A, v4
    for i in range(70):
        r = app.request(f"apply {back if i % 2 else forth}")
        assert r["ok"] and r["result"] == "applied", r
    assert app.call(5) == 4005
    assert len(app.request("status")["history"]) == 64
    for i in range(64):
        r = app.request("rollback")
        assert r["ok"] and r["result"] == "rolled-back", (i, r)
    # back to the state after the 6th update (B -> A, v4's code)
    assert app.call(5) == 4005 and app.request("status")["build_id"] == A
    assert app.request("rollback")["error"] == "history"


def test_a_bundle_beyond_the_module_capacity_is_refused(build, tmp_path):
    """Every module index held by a running call: the next bundle is refused
    ("capacity"), the process keeps its version, and once the calls return the
    indices are free again.  (Built with 4 indices, the executable's and 3.)"""
    forth = make_bundle(build, tmp_path / "forth.psu")                          # A -> B, v2
    back = make_bundle(build, tmp_path / "back.psu", "v4", B, A, "back")        # B -> A, v4
    a = App(build["app_small"], tmp_path / "run")
    try:
        for ticket, bundle, version in ((1, forth, 2), (2, back, 4), (3, forth, 2)):
            assert a.request(f"apply {bundle}")["result"] == "applied"
            a.send(f"park {ticket}")
            a.expect(f"parked v{version} {ticket}")
        refused = a.request(f"apply {back}")
        assert refused["ok"] is False and refused["error"] == "capacity", refused
        assert a.call(5) == 2005
        status = a.request("status")
        assert status["build_id"] == B and status["updates"] == 3 and len(status["modules"]) == 4
        a.send("release 3")
        wait_for(lambda: len(a.request("status")["modules"]) == 2, "parked modules unloaded")
        assert a.request(f"apply {back}")["result"] == "applied"
        assert a.call(5) == 4005
    finally:
        a.stop()


def test_rollback_refuses_when_bundle_file_changed(app, build, tmp_path):
    v2 = make_bundle(build, tmp_path / "v2.psu")
    app.request(f"apply {v2}")
    app.request(f"apply {make_bundle(build, tmp_path / 'v3.psu', 'v3', B, C_ID, 'v3')}")
    wait_for(lambda: not mapped(app, "v2"), "v2 unloaded")
    make_bundle(build, v2, label="v2-other")      # same path, other content
    r = app.request("rollback")
    assert r["ok"] is False and r["error"] == "checksum" and str(v2) in r["message"]
    st = app.request("status")
    assert st["build_id"] == C_ID and len(st["history"]) == 2
    assert app.call(5) == 3005 and not mapped(app, "v2")


def test_bundle_state_adds_function_and_variable(app, build, tmp_path):
    path = make_bundle(build, tmp_path / "v2s.psu", code="uses_added", state="state")
    r = app.request(f"apply {path}")
    assert r["ok"] and r["functions"] == 3, r
    assert app.call(5) == 2505            # 2000 + added(5) = 2000 + 5 + 500
    app.send("added 1")
    assert app.expect("added ") == "added 501"
    assert mapped(app, "v2", "state")
    # Rolling back keeps the added function callable (old code may hold it).
    assert app.request("rollback")["functions"] == 2
    assert app.call(5) == 1005
    app.send("added 2")
    assert app.expect("added ") == "added 502"
    # Re-applying reuses the loaded state: one state object only.
    assert app.request(f"apply {path}")["ok"]
    assert app.call(5) == 2505
    assert app.maps().count("psu-v2-state") == len(
        [l for l in app.maps().splitlines() if "psu-v2-state" in l])
    states = {l.split()[-2] if l.endswith("(deleted)") else l.split()[-1]
              for l in app.maps().splitlines() if "psu-v2-state" in l}
    inodes = {l.split()[4] for l in app.maps().splitlines() if "psu-v2-state" in l}
    assert len(inodes) == 1, (states, inodes)


def test_loose_runtime_dir_is_refused(build, tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    os.chmod(run, 0o755)
    a = App(build["app"], run)
    try:
        # The update thread checks the directory concurrently with main:
        # wait for its one line before judging.
        wait_for(lambda: "not serving updates" in "".join(a.stderr_lines), "refusal line")
        assert a.call(3) == 1003
        assert a.call(4) == 1004
        assert not a.socket.exists()
    finally:
        stderr = a.stop()
    assert "is not a directory owned by uid" in stderr
    assert a.process.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start the program as another user")
def test_a_peer_of_another_uid_gets_no_answer(build):
    """SO_PEERCRED: the update thread closes a connection from another uid
    without a word.  The program runs as nobody; root, who can reach any
    socket, connects and asks; the program goes on unharmed."""
    nobody = 65534
    base = pathlib.Path(tempfile.mkdtemp(prefix="psu-peer-"))
    try:
        os.chmod(base, 0o755)
        exe = base / "app"
        shutil.copy(build["app"], exe)
        os.chmod(exe, 0o755)
        run = base / "run"
        run.mkdir(mode=0o700)
        os.chown(run, nobody, nobody)
        a = App(exe, run, user=nobody)
        try:
            a.wait_for_socket()
            with control_connection(a.socket, DEADLINE) as s:
                try:
                    s.sendall(b"status\n")
                    answer = s.recv(65536)
                except (BrokenPipeError, ConnectionResetError):
                    answer = b""                 # closed before (or with) the request unread
                assert answer == b""
            assert a.call(5) == 1005
            assert a.socket.exists()
        finally:
            a.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_quiet_disables_messages(build, tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o777)
    os.chmod(run, 0o777)
    a = App(build["app"], run, {"PSU_QUIET": "1"})
    assert a.call(1) == 1001
    assert a.stop() == ""


def test_disabled_runtime_serves_nothing(build, tmp_path):
    a = App(build["app"], tmp_path / "run", {"PSU_DISABLE": "1"})
    assert a.call(1) == 1001
    assert not (tmp_path / "run").exists()
    a.stop()


def test_socket_removed_at_exit(app):
    app.wait_for_socket()
    app.stop()
    assert not app.socket.exists()


def test_fork_child_serves_its_own_socket(app, build, tmp_path):
    app.request(f"apply {make_bundle(build, tmp_path / 'v2.psu')}")
    app.send("park 1")                 # a second registered thread, in v2
    app.expect("parked v2 1")
    assert app.call(1) == 2001         # registers the main thread
    assert app.request("status")["threads"] == 2
    app.send("fork")
    child = int(app.expect("child ").split()[1])
    child_sock = app.socket.parent / f"{child}.sock"
    wait_for(child_sock.exists, "child socket")
    try:
        st = app.request("status", path=child_sock)
        # Only the forking thread exists in the child: the parked thread's
        # count on v2 is gone with it.
        assert st["pid"] == child and st["build_id"] == B and st["threads"] == 1
        assert [m["active_calls"] for m in st["modules"]] == [0, 0]
        assert app.request("status")["pid"] == app.pid
        # An update of the child does not touch the parent; the child
        # unloads v2 (nothing runs it there) while the parent keeps it.
        r = app.request(f"apply {make_bundle(build, tmp_path / 'v3.psu', 'v3', B, C_ID, 'v3')}",
                        path=child_sock)
        assert r["ok"], r
        wait_for(lambda: "psu-v2-code" not in pathlib.Path(f"/proc/{child}/maps").read_text(),
                 "v2 unloaded in the child")
        st = app.request("status")
        assert st["build_id"] == B and [m["active_calls"] for m in st["modules"]] == [0, 1]
        assert mapped(app, "v2")
    finally:
        app.stop()
        wait_for(lambda: not child_sock.exists(), "child exit removes its socket")


# The C library functions the runtime interposes (docs/operations.md, "longjmp
# and stack switching"): the only exported names without the psu_ prefix.
INTERPOSED = {"longjmp", "_longjmp", "siglongjmp", "__longjmp_chk", "pthread_create"}


def test_only_psu_symbols_exported(tmp_path):
    so = cbuild.build_shared(cbuild.runtime_sources(), tmp_path / "libruntime.so",
                             flags=["-O2", "-pthread"])
    out = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True,
                         text=True, check=True).stdout
    names = [line.split()[-1] for line in out.splitlines() if line.strip()]
    assert names and all(n.startswith("psu_") or n in INTERPOSED for n in names), names
    assert INTERPOSED <= set(names)
