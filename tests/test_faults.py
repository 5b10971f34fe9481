"""Faults: signals, longjmp, coroutines, fork and hostile clients must not
crash, wedge or exhaust a DSU process (issue 11).

The program is tests/c/faults.c, linked with the runtime; bundles carry
tests/c/faults_patch.c.  Every wait is bounded by a generous deadline that
only catches a hang; assertions are on outcomes and on the order of events,
never on durations.

Sanitizers: `PSU_SANITIZE=thread python -m pytest -q tests/test_faults.py`
(or `address`, for ASan+UBSan) builds the program under that sanitizer and
fails a test on any report (docs/operations.md, "Sanitizers")."""
import json
import os
import pathlib
import random
import shutil
import socket
import stat
import subprocess
import threading
import time

import pytest

import cbuild
import runtime_app
from projects import DEADLINE, control_exchange, psu, read_to_end
from runtime_app import A, B, App, wait_for

C = cbuild.TESTS_C
REPO = cbuild.REPO

SANITIZE = os.environ.get("PSU_SANITIZE", "")
SANITIZER_FLAGS = {
    "": [],
    "thread": ["-O1", "-g", "-fsanitize=thread"],
    "address": ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                "-fno-omit-frame-pointer"],
}
if SANITIZE not in SANITIZER_FLAGS:
    raise RuntimeError(f"PSU_SANITIZE={SANITIZE!r}: expected thread or address")
SANITIZER_ENV = {"TSAN_OPTIONS": "halt_on_error=1 exitcode=66 die_after_fork=0",
                 "ASAN_OPTIONS": "detect_leaks=0 halt_on_error=1 exitcode=66 "
                                 "detect_stack_use_after_return=0",
                 "UBSAN_OPTIONS": "halt_on_error=1 exitcode=66 print_stacktrace=1"}
HOOK = "-DPSU_TEST_REGISTER_HOOK()=({ extern void faults_register_hook(void); faults_register_hook(); })"


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults")
    flags = SANITIZER_FLAGS[SANITIZE] or ["-O2"]
    objs = {
        "faults": cbuild.build_executable([C / "faults.c"], out / "faults", flags=flags + [HOOK]),
        # 8 module indices: a leak of one per update shows within 7 updates
        "faults_small": cbuild.build_executable([C / "faults.c"], out / "faults_small",
                                                flags=flags + [HOOK, "-DPSU_MAX_MODULES=8"]),
    }
    for v in (2, 3):
        objs[f"v{v}"] = cbuild.build_shared([C / "faults_patch.c"], out / f"v{v}.so",
                                            flags=["-O2", f"-DVERSION={v}"])
        objs[f"v{v}_chk"] = cbuild.build_shared(
            [C / "faults_patch.c"], out / f"v{v}_chk.so",
            flags=["-O2", "-D_FORTIFY_SOURCE=2", f"-DVERSION={v}"])
    objs["dir"] = out
    return objs


def make_bundle(build, path, code, base, target, label, program="faults"):
    return runtime_app.make_bundle(build, path, code, base, target, label, program)


def forth_and_back(build, tmp_path, suffix=""):
    """v2 (A -> B) and v3 (B -> A): applied alternately, each apply switches."""
    return (make_bundle(build, tmp_path / f"forth{suffix}.psu", f"v2{suffix}", A, B, "v2"),
            make_bundle(build, tmp_path / f"back{suffix}.psu", f"v3{suffix}", B, A, "v3"))


class Faults(App):
    def stop(self):
        stderr = super().stop()
        if SANITIZE:
            assert "Sanitizer" not in stderr and "runtime error" not in stderr, stderr
        return stderr


@pytest.fixture
def start(build, tmp_path):
    started = []

    def start(name="faults", **env):
        a = Faults(build[name], tmp_path / "run", {**SANITIZER_ENV, **env})
        started.append(a)
        return a
    yield start
    for a in started:
        a.stop()


# ---- 1. signal handlers calling DSU functions --------------------------------

def test_signal_handlers_register_and_call_during_updates(start, build, tmp_path):
    """Threads whose first counted call is a SIGUSR1 handler's, and threads
    interrupted by one in the middle of registration, call DSU functions and
    exit while updates switch and unload under them.  Before the fix: a
    handler inside registration self-deadlocked on the registry lock (or
    registered the thread twice, and the update thread read an exited
    thread's counters)."""
    forth, back = forth_and_back(build, tmp_path)
    a = start()
    assert a.request(f"apply {forth}")["result"] == "applied"     # calls are counted now
    applied, stop = [], threading.Event()

    def updates():
        for i in range(400):
            if stop.is_set():
                break
            r = a.request(f"apply {back if i % 2 == 0 else forth}")
            applied.append(r.get("result"))

    updater = threading.Thread(target=updates)
    updater.start()
    try:
        for _ in range(3):
            a.send("storm 16 300")
            handled, errors = map(int, a.expect("storm ").split()[1:])
            assert errors == 0 and handled > 0
    finally:
        stop.set()
        updater.join(timeout=DEADLINE)
    assert applied and set(applied) == {"applied"}, applied
    # Every storm thread has exited: none is left registered (the kernel may
    # take a moment past pthread_join to forget a thread; main made no DSU
    # call), no count is left.
    wait_for(lambda: a.request("status")["threads"] == 0, "exited threads reclaimed")
    status = a.request("status")
    assert all(m["active_calls"] == 0 for m in status["modules"]), status
    wait_for(lambda: len(a.request("status")["modules"]) == 2, "old modules unloaded")
    assert a.call(1) % 1000 == 1


# ---- 2. longjmp out of counted calls ------------------------------------------

@pytest.mark.parametrize("how,code,updates", [(0, "", 300), (1, "", 300), (2, "", 60), (3, "", 60),
                                              (0, "_chk", 60)],
                         ids=["longjmp", "siglongjmp", "_longjmp", "handler-on-altstack",
                              "__longjmp_chk"])
def test_longjmp_out_of_counted_calls_releases_them(start, build, tmp_path, how, code, updates):
    """Hundreds of alternating updates of a function that always longjmps out:
    every old module is unloaded and no apply is refused for capacity (8
    module indices: before the fix, the 8th apply was refused)."""
    forth, back = forth_and_back(build, tmp_path, code)
    a = start("faults_small")
    for i in range(updates):
        r = a.request(f"apply {forth if i % 2 == 0 else back}")
        assert r.get("result") == "applied", (i, r)
        a.send(f"jump 3 {how}")
        assert a.expect("jumped ") == "jumped 3"
    status = a.request("status")
    assert status["updates"] == updates and all(m["active_calls"] == 0 for m in status["modules"])
    wait_for(lambda: a.request("status")["unloaded"] >= updates - 1, "old modules unloaded")


def test_a_thread_ending_inside_a_call_pins_nothing(start, build, tmp_path):
    """pthread_exit inside a bundle's version: the thread's count goes with
    it (its record is reclaimed once the kernel has forgotten the thread)."""
    forth, back = forth_and_back(build, tmp_path)
    a = start()
    assert a.request(f"apply {forth}")["result"] == "applied"
    a.send("exitin")
    a.expect("exited")
    assert a.request(f"apply {back}")["result"] == "applied"
    wait_for(lambda: "psu-v2-code" not in a.maps(), "v2 unloaded")
    assert a.request("status")["threads"] == 0


def test_a_coroutine_suspended_in_a_call_keeps_its_module(start, build, tmp_path):
    """ucontext: a coroutine suspended inside v2 holds v2 across an update and
    across a longjmp on the main stack (not a stack it can prove discarded);
    v2 is unloaded once the coroutine returns."""
    forth, back = forth_and_back(build, tmp_path)
    a = start()
    assert a.request(f"apply {forth}")["result"] == "applied"
    a.send("coro start")
    assert a.expect("coro in") == "coro in v2"
    assert a.request(f"apply {back}")["result"] == "applied"
    a.send("mainjump")
    a.expect("mainjumped")
    a.send("jump 5 1")                  # jumps out of v3 on the main stack
    a.expect("jumped 5")
    time.sleep(0.1)                     # a few unload scans (5 ms each)
    assert "psu-v2-code" in a.maps()
    modules = [m for m in a.request("status")["modules"] if m["kind"] == "bundle"]
    assert [(m["label"], m["active_calls"]) for m in modules] == [("v2", 1), ("v3", 0)]
    a.send("coro resume")
    assert a.expect("coro ") == "coro done"
    wait_for(lambda: "psu-v2-code" not in a.maps(), "v2 unloaded after the coroutine returned")
    assert a.call(2) == 3002


# ---- 3. fork while a connection is being served -------------------------------

def test_a_fork_child_does_not_keep_a_served_connection(start, build, tmp_path):
    a = start()
    forth, _ = forth_and_back(build, tmp_path)
    with a.connect() as s:
        s.sendall(b"apply ")                      # the update thread holds this connection
        time.sleep(0.5)                           # (accepted by now: the fork copies it)
        a.send("fork 3")                          # children that outlive the request
        a.expect("forked 3")
        s.sendall(f"{forth}\n".encode())
        s.settimeout(10)
        answer = json.loads(read_to_end(s))       # EOF comes from the parent alone
    assert answer["result"] == "applied", answer


def test_fork_exec_and_exit_racing_applies(start, build, tmp_path):
    """Children forked and exec'd while updates apply: every apply answered;
    then the process exits while an apply may be in flight, cleanly."""
    forth, back = forth_and_back(build, tmp_path)
    a = start()
    a.wait_for_socket()
    results = []

    def updates(count):
        for i in range(count):
            try:
                answer = control_exchange(a.socket, f"apply {back if i % 2 else forth}\n".encode(),
                                          DEADLINE)      # no wait for the socket
                results.append(json.loads(answer).get("result"))
            except (OSError, ValueError, AssertionError):
                results.append("gone")       # only once the process has exited
                return
    updater = threading.Thread(target=updates, args=(30,))
    updater.start()
    a.send("forkexec 40")
    assert a.expect("execed ") == "execed 40"
    updater.join(timeout=DEADLINE)
    assert results == ["applied"] * 30, results
    results.clear()
    updater = threading.Thread(target=updates, args=(200,))
    updater.start()
    wait_for(lambda: len(results) >= 3, "applies under way")
    a.send("quit")
    assert a.process.wait(timeout=DEADLINE) == 0
    updater.join(timeout=DEADLINE)
    assert set(results) <= {"applied", "gone"}, results


# ---- 4. a bundle path that would block ----------------------------------------

def test_fifo_directory_and_device_paths_are_refused_without_blocking(start, tmp_path):
    a = start()
    fifo = tmp_path / "fifo.psu"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path, pathlib.Path("/dev/zero"), pathlib.Path("/dev/null")):
        with a.connect() as s:
            s.sendall(f"apply {path}\n".encode())
            s.settimeout(10)
            answer = json.loads(read_to_end(s))
        assert answer["ok"] is False and answer["error"] == "io", (path, answer)
        assert "not a regular file" in answer["message"]
    assert a.request("status")["updates"] == 0


# ---- 5. slow and silent clients -----------------------------------------------

def test_a_slow_client_delays_no_other_and_meets_one_deadline(start):
    """A client sending a byte every 0.5 s: others are answered meanwhile, and
    it is dropped when its one 5 s deadline passes (before the fix the
    timeout was per recv, and it held the update thread all along)."""
    a = start()
    slow = a.connect()
    sent, answers = 0, []
    try:
        for i in range(30):
            try:
                slow.sendall(b"p")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
            if i < 3:
                answers.append(a.request("ping")["ok"])    # while the slow one dribbles
            time.sleep(0.5)
        slow.settimeout(DEADLINE)
        text = read_to_end(slow)
    finally:
        slow.close()
    assert answers == [True, True, True]
    assert sent < 30, "the slow client was never dropped"
    assert json.loads(text)["message"] == "no complete request line within 5 s"


def test_hostile_clients(start):
    a = start()
    rng = random.Random(11)
    for _ in range(20):
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) + b"\n"
        answer = a.exchange(payload)
        assert answer.endswith(b"\n") and json.loads(answer.decode("utf-8"))["ok"] is False
    with a.connect() as s:                          # a 10 MB line
        try:
            s.sendall(b"x" * (10 << 20))
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = read_to_end(s)
        except ConnectionResetError:
            answer = b""
        if answer:
            assert "no request line" in json.loads(answer)["message"]
    silent = [a.connect() for _ in range(10)]       # connected, never a byte
    try:
        assert a.request("ping")["ok"]              # served meanwhile
        for s in silent:
            s.settimeout(DEADLINE)
            assert json.loads(read_to_end(s))["message"] == "no complete request line within 5 s"
    finally:
        for s in silent:
            s.close()
    assert a.exchange(b"ping\0\n") and json.loads(a.exchange(b"ping\0\n"))["ok"] is False
    assert a.request("ping")["ok"]
    assert a.call(3) == 1003


# ---- 6. exact paths ------------------------------------------------------------

def test_a_newline_in_a_path_is_refused_not_truncated(start, build, tmp_path):
    forth, _ = forth_and_back(build, tmp_path)
    a = start()
    answer = json.loads(a.exchange(f"apply {forth}\nother\n".encode()))
    assert answer["ok"] is False and answer["error"] == "request"
    assert "more than one line" in answer["message"]
    assert a.request("status")["updates"] == 0
    tricky = pathlib.Path(f"{forth}\nother")
    shutil.copy(forth, tricky)                      # the file the user named exists
    cli = psu("apply", a.pid, tricky, runtime_dir=a.socket.parent)
    assert cli.returncode == 2 and "newline" in cli.stderr, cli.stderr
    assert a.request("status")["updates"] == 0


def test_non_utf8_label_is_escaped(start, build, tmp_path):
    path = make_bundle(build, tmp_path / "odd.psu", "v2", A, B, b"v2-\xff\xfe-\xc3\xa9")
    a = start()
    data = a.exchange(f"apply {path}\n".encode())
    answer = json.loads(data.decode("utf-8"))          # strict UTF-8
    assert answer["label"] == "v2-\ufffd\ufffd-\u00e9", answer
    status = a.exchange(b"status\n")
    assert json.loads(status.decode("utf-8"))["label"] == "v2-\ufffd\ufffd-\u00e9"


# ---- 7. the socket: published ready, stale ones removed --------------------------

def test_the_socket_appears_only_when_it_listens_with_mode_0600(build, tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    for i in range(50):       # the old window was a few microseconds wide
        proc = subprocess.Popen([str(build["faults"])], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=dict(os.environ, PSU_RUNTIME_DIR=str(run), **SANITIZER_ENV))
        path = str(run / f"{proc.pid}.sock")
        try:
            end = time.monotonic() + DEADLINE
            while True:                              # the first moment the name exists
                try:
                    mode = stat.S_IMODE(os.lstat(path).st_mode)
                    break
                except FileNotFoundError:
                    assert time.monotonic() < end, "no socket"
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)                      # refused before the fix, sometimes
            assert mode == 0o600, oct(mode)          # 0755 before the fix, mostly
        finally:
            proc.communicate(b"quit\n", timeout=DEADLINE)


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def stale_socket(folder, pid):
    path = folder / f"{pid}.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))                             # bound, never listening again
    os.chmod(path, 0o600)
    return path


def test_stale_sockets_of_dead_processes_are_removed(start, build, tmp_path):
    a = start()
    a.wait_for_socket()
    a.send("fork 2")
    a.expect("forked 2")
    run = a.socket.parent
    wait_for(lambda: len(list(run.glob("*.sock"))) == 3, "children's sockets")
    children = [p for p in run.glob("*.sock") if p != a.socket]
    a.stop()                                          # children _exit: sockets stay
    wait_for(lambda: all(not pathlib.Path(f"/proc/{p.stem}").exists() for p in children),
             "children exited")
    assert all(p.exists() for p in children)
    other = stale_socket(run, dead_pid())
    # psu ps removes them ...
    listing = psu("ps", "--json", runtime_dir=run)
    assert listing.returncode == 0 and json.loads(listing.stdout) == [], listing
    assert not any(p.exists() for p in children) and not other.exists()
    # ... and so does a starting DSU process.
    other = stale_socket(run, dead_pid())
    b = start()
    b.wait_for_socket()
    wait_for(lambda: not other.exists(), "stale socket removed at start-up")
    assert b.socket.exists()


# ---- 8. the client's errors -------------------------------------------------------

def test_ps_with_an_unreadable_folder_says_why(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    result = psu("ps", runtime_dir=not_a_folder)
    assert result.returncode == 8 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot read {not_a_folder}" in result.stderr, result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a folder of mode 0")
def test_ps_with_a_folder_of_mode_0_says_why(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    os.chmod(closed, 0)
    try:
        result = psu("ps", runtime_dir=closed)
    finally:
        os.chmod(closed, 0o700)
    assert result.returncode == 8 and "Traceback" not in result.stderr, result.stderr
    assert "cannot read" in result.stderr and "ermission" in result.stderr, result.stderr


def long_folder(tmp_path, length):
    base = str(tmp_path / "r")
    path = pathlib.Path(base + "x" * (length - len(base)))
    assert len(str(path)) == length
    return path


def test_runtime_dir_length_limit_is_the_socket_address_limit(build, tmp_path):
    """The socket path <dir>/<pid>.sock may be 107 bytes; before the fix any
    folder over 87 bytes was refused, without a reason."""
    probe = subprocess.Popen(["true"])
    probe.wait()
    width = len(str(probe.pid)) + 2                   # pids grow: leave a digit
    fits = long_folder(tmp_path, 107 - len("/.sock") - width)
    a = Faults(build["faults"], fits, SANITIZER_ENV)
    try:
        assert len(str(a.socket)) <= 107 and len(str(fits)) > 87
        assert a.request("ping")["ok"]
        status = psu("status", a.pid, runtime_dir=fits)
        assert status.returncode == 0, status.stderr
    finally:
        a.stop()
    too_long = long_folder(tmp_path, 110)
    b = Faults(build["faults"], too_long, SANITIZER_ENV)
    try:
        wait_for(lambda: "not serving updates" in "".join(b.stderr_lines), "refusal line")
    finally:
        stderr = b.stop()
    assert "more than the 107 a Unix socket address holds" in stderr, stderr
    cli = psu("status", b.pid, runtime_dir=too_long)
    assert cli.returncode == 8 and "107" in cli.stderr and "Traceback" not in cli.stderr, cli.stderr


# ---- mutated bundles -------------------------------------------------------------

def test_mutated_bundles_are_refused_and_the_process_is_unchanged(start, build, tmp_path):
    forth, _ = forth_and_back(build, tmp_path)
    good = forth.read_bytes()
    body = good[:-32]
    a = start()
    rng = random.Random(7)
    import hashlib
    for i in range(40):
        mutated = bytearray(body)
        for _ in range(rng.randrange(1, 4)):
            position = rng.randrange(16, min(len(mutated), 600))   # header, table, small sections
            mutated[position] = rng.randrange(256)
        data = bytes(mutated)
        if i % 2:
            data += hashlib.sha256(data).digest()      # a valid trailer: the checks behind it
        else:
            data += good[-32:]
        path = tmp_path / f"m{i}.psu"
        path.write_bytes(data)
        answer = a.request(f"apply {path}")
        if answer["ok"]:                                # a mutation of the manifest text only
            assert a.request("rollback")["ok"]
    status = a.request("status")
    assert status["build_id"] == A and a.call(4) == 1004


# ---- a quick sanitizer run in the default suite ------------------------------------

@pytest.mark.skipif(SANITIZE != "", reason="the whole suite runs under a sanitizer")
def test_signals_and_longjmp_under_thread_sanitizer(build, tmp_path):
    """Registration from handlers, exits and jumps racing updates, under
    ThreadSanitizer (the whole suite: PSU_SANITIZE=thread)."""
    exe = cbuild.build_executable([C / "faults.c"], tmp_path / "faults_tsan",
                                  flags=SANITIZER_FLAGS["thread"] + [HOOK])
    forth, back = forth_and_back(build, tmp_path)
    a = Faults(exe, tmp_path / "run", SANITIZER_ENV)
    try:
        for i in range(20):
            assert a.request(f"apply {forth if i % 2 == 0 else back}")["result"] == "applied"
            a.send(f"jump 2 {i % 4}")
            a.expect("jumped 2")
        a.send("storm 6 100")
        assert a.expect("storm ").split()[2] == "0"
        wait_for(lambda: a.request("status")["unloaded"] >= 19, "old modules unloaded")
    finally:
        stderr = a.stop()
    assert "ThreadSanitizer" not in stderr, stderr
