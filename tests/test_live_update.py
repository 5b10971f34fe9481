"""Issue 3, end to end on the example service: `scons patch`, bundles, `psu apply`
under real load, old code unloaded, refusals that leave the process untouched."""
import contextlib
import json
import os
import socket
import subprocess
import time

import pytest

from projects import Process, example_repository, psu, run, wait_until


@pytest.fixture(scope="module")
def kvd(tmp_path_factory):
    """The example as a git repository at v1, built, with bundles v1->v2, v2->v3, v1->v3."""
    project = example_repository(tmp_path_factory.mktemp("kvd") / "repo")
    project.build()
    for old, new in (("v1", "v2"), ("v2", "v3"), ("v1", "v3"), ("v2", "v1")):
        done = project.patch(old, new)
        assert done.stdout.strip().splitlines()[-1] == \
            f"psu: bundle written to psu-patches/kvd-{old}-{new}.psu"
    return project


class Client:
    def __init__(self, port):
        self.connection = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = self.connection.makefile("r")

    def ask(self, line):
        self.connection.sendall(line.encode() + b"\n")
        return self.reader.readline().strip()

    def close(self):
        self.connection.close()


@pytest.fixture
def start(kvd, tmp_path):
    """Starts kvd v1 (8 workers, its own runtime folder) and returns the process
    and its port; every server a test started is stopped after it."""
    started = []

    def start_server():
        server = Process([kvd.root / "kvd", "-p", "0", "-w", "8"], kvd.root, tmp_path / "run")
        started.append(server)
        port = int(server.read_line().split()[-1])
        server.wait_for_socket()
        return server, port
    yield start_server
    for server in started:
        server.stop()


def info_versions(port, count=10):
    versions = set()
    for _ in range(count):
        client = Client(port)
        versions.add(client.ask("INFO").split()[2])
        client.close()
    return versions


def test_updates_under_load_lose_nothing_and_unload_old_code(kvd, start):
    server, port = start()
    client = Client(port)
    for i in range(200):
        assert client.ask(f"SET before{i} value{i}") == "OK"
    load = subprocess.Popen([kvd.root / "kvload", "-p", str(port), "-t", "4", "-d", "6",
                             "--interval", "200"], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    applied = server.psu("apply", server.pid, kvd.bundle("kvd", "v1", "v2"))
    assert applied.returncode == 0, applied.stderr
    assert "applied v2" in applied.stdout
    assert info_versions(port) == {"v2"}          # every request after the apply
    assert client.ask("LEN before7") == "LEN 6"   # the added command, on an old connection
    time.sleep(1.5)
    applied = server.psu("apply", server.pid, kvd.bundle("kvd", "v2", "v3"))
    assert applied.returncode == 0, applied.stderr
    assert info_versions(port) == {"v3"}
    assert client.ask("INFO").startswith("INFO kvd v3 keys=")
    lines = load.communicate(timeout=60)[0].strip().splitlines()
    final = json.loads(lines[-1])
    assert load.returncode == 0 and final["failed"] == 0 and final["ok"] > 1000
    assert set(final["versions"]) == {"v1", "v2", "v3"}
    # state survived both updates: the data, and counters in statics
    assert all(client.ask(f"GET before{i}") == f"VALUE value{i}" for i in range(200))
    assert "keys=" in client.ask("INFO")
    # v2's code is gone once idle (its functions moved to v3 or back to the program)
    assert wait_until(lambda: "psu-v2-code" not in server.maps(), timeout=10)
    assert "psu-v3-code" in server.maps()
    status = json.loads(server.psu("status", server.pid, "--json").stdout)
    assert status["label"] == "v3" and status["updates"] == 2
    assert [m["label"] for m in status["modules"]] == ["v1", "v3"]
    assert status["unloaded"] == 1
    client.close()


def test_function_local_static_keeps_counting_across_updates(kvd, start):
    server, port = start()
    client = Client(port)

    def puts():
        stats = dict(item.split("=") for item in client.ask("STATS").split()[1:])
        return int(stats["puts"])
    for i in range(5):
        client.ask(f"SET k{i} v")
    assert puts() == 5
    assert server.psu("apply", server.pid, kvd.bundle("kvd", "v1", "v2")).returncode == 0
    client.ask("SET k9 v")
    assert puts() == 6
    assert server.psu("apply", server.pid, kvd.bundle("kvd", "v2", "v3")).returncode == 0
    client.ask("SET k10 v")
    assert puts() == 7
    assert client.ask("INFO").endswith("infos=1")     # a variable v3 added
    assert client.ask("INFO").endswith("infos=2")


def test_chains_direct_bundles_and_reverts(kvd, start):
    server, port = start()
    assert server.psu("apply", server.pid, kvd.bundle("kvd", "v1", "v3")).returncode == 0
    assert info_versions(port, 3) == {"v3"}
    server.stop()
    server, port = start()
    assert server.psu("apply", server.pid, kvd.bundle("kvd", "v1", "v2")).returncode == 0
    assert info_versions(port, 3) == {"v2"}
    reverted = server.psu("apply", server.pid, kvd.bundle("kvd", "v2", "v1"))
    assert reverted.returncode == 0, reverted.stderr
    assert info_versions(port, 3) == {"v1"}
    assert Client(port).ask("LEN x") == "ERROR unknown command"


def test_applying_the_same_bundle_twice_changes_nothing(kvd, start):
    server, _ = start()
    bundle = kvd.bundle("kvd", "v1", "v2")
    assert server.psu("apply", server.pid, bundle).returncode == 0
    again = server.psu("apply", server.pid, bundle)
    assert again.returncode == 0 and "already at v2" in again.stdout
    assert json.loads(server.psu("status", server.pid, "--json").stdout)["updates"] == 1


def test_rollback_returns_to_the_previous_version(kvd, start):
    server, port = start()
    client = Client(port)
    client.ask("SET kept 1234")
    for old, new in (("v1", "v2"), ("v2", "v3")):
        assert server.psu("apply", server.pid, kvd.bundle("kvd", old, new)).returncode == 0
    assert client.ask("INFO").endswith("infos=1")
    rolled = server.psu("rollback", server.pid)
    assert rolled.returncode == 0 and "rolled back to v2" in rolled.stdout
    assert info_versions(port, 3) == {"v2"}
    assert client.ask("LEN kept") == "LEN 4" and client.ask("GET kept") == "VALUE 1234"
    assert server.psu("rollback", server.pid).returncode == 0
    assert info_versions(port, 3) == {"v1"}
    nothing = server.psu("rollback", server.pid)
    assert nothing.returncode == 14 and "no update to roll back" in nothing.stderr


@pytest.mark.parametrize("damage,code,message", [
    ("wrong-base", 11, "bundle applies to build"),
    ("flipped-byte", 10, "checksum"),
    ("truncated", 10, ""),
    ("other-program", 11, "program"),
])
def test_bad_bundles_are_refused_and_the_process_is_unchanged(kvd, start, tmp_path, damage, code, message):
    server, port = start()
    if damage == "wrong-base":
        bundle = kvd.bundle("kvd", "v2", "v3")
    else:
        data = bytearray(kvd.bundle("kvd", "v1", "v2").read_bytes())
        if damage == "flipped-byte":
            data[len(data) // 2] ^= 0x40
        elif damage == "truncated":
            data = data[: len(data) // 3]
        else:
            data = _renamed_program(bytes(data))
        bundle = tmp_path / f"{damage}.psu"
        bundle.write_bytes(bytes(data))
    refused = server.psu("apply", server.pid, bundle)
    assert refused.returncode == code, refused.stderr
    assert message in refused.stderr
    assert info_versions(port, 3) == {"v1"}
    status = json.loads(server.psu("status", server.pid, "--json").stdout)
    assert status["updates"] == 0 and len(status["modules"]) == 1
    assert "psu-v2" not in server.maps()


def _renamed_program(data):
    """A well-formed bundle whose `program` section names another program."""
    from psu import bundle
    sections = bundle.unpack(data)
    sections["program"] = b"not-kvd"
    return bundle.pack(sections)


def test_scons_patch_is_up_to_date_on_a_second_run(kvd):
    again = kvd.patch("v1", "v2", extra=["--debug=explain"])
    assert "making" not in again.stdout and "Rebuilding" not in again.stdout


def test_scons_patch_usage_errors(kvd):
    missing = kvd.patch("v1", "", check=False)
    assert missing.returncode == 2 and "TO=<revision> is required" in missing.stderr
    unknown = kvd.patch("v1", "no-such-tag", check=False)
    assert unknown.returncode == 2 and "TO=no-such-tag: not a revision" in unknown.stderr


def test_inspect_bundle_and_program(kvd):
    shown = psu("inspect", kvd.bundle("kvd", "v1", "v2"), cwd=kvd.root)
    assert shown.returncode == 0
    assert "src/protocol.c:compare_keys" in shown.stdout and "sha256" in shown.stdout
    program = psu("inspect", kvd.root / "kvd", cwd=kvd.root)
    assert program.returncode == 0 and "(embedded in the binary)" in program.stdout
    data = json.loads(psu("inspect", "--json", kvd.bundle("kvd", "v1", "v2"), cwd=kvd.root).stdout)
    # compare_keys goes to qsort, so it is a DSU function; cmd_len, static and called
    # by name only, is direct: it came with protocol_handle, which reaches it
    assert data["manifest"]["changes"]["functions"]["added"] == ["src/protocol.c:compare_keys"]
    assert "protocol_handle" in data["manifest"]["changes"]["functions"]["pulled_in"]


def test_ps_lists_running_dsu_processes(kvd, start):
    server, _ = start()
    listed = json.loads(server.psu("ps", "--json").stdout)
    assert [(row["pid"], row["program"]) for row in listed] == [(server.pid, "kvd")]
    server.stop()
    assert wait_until(lambda: not server.socket.exists())
    assert json.loads(server.psu("ps", "--json").stdout) == []


def test_a_socket_that_is_not_ours_is_refused(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(loose / "123.sock"))
    refused = psu("status", loose / "123.sock")
    assert refused.returncode == 8 and "lets others in" in refused.stderr
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    listener2 = socket.socket(socket.AF_UNIX)
    listener2.bind(str(theirs / "456.sock"))
    os.chmod(theirs / "456.sock", 0o600)
    os.chown(theirs, 65534, 65534)
    refused = psu("status", theirs / "456.sock")
    assert refused.returncode == 8 and "owned by uid 65534" in refused.stderr
    listener.close()
    listener2.close()


def test_dsu_build_answers_like_the_plain_build(kvd, tmp_path):
    """A deterministic workload in batch mode: byte-identical replies."""
    workload = run(["python3", kvd.root / "tools" / "mkworkload.py", "-n", "20000", "-s", "5"],
                   kvd.root).stdout
    plain = tmp_path / "kvd-plain"
    run(["gcc", "-std=gnu11", "-O2", "-pthread", "-o", plain,
         *sorted(str(p) for p in (kvd.root / "src").glob("*.c"))], kvd.root)
    dsu_replies = run([kvd.root / "kvd", "--batch", "--cycle-every", "500"], kvd.root,
                      input=workload, env={"PSU_DISABLE": "1"}).stdout
    plain_replies = run([plain, "--batch", "--cycle-every", "500"], kvd.root, input=workload).stdout
    assert dsu_replies == plain_replies
    assert dsu_replies.count("\n") >= 20000 and "VALUE" in dsu_replies


def _symbols(program):
    """{name: (address, size)} of `program`'s symbols."""
    symbols = {}
    listing = subprocess.run(["nm", "-S", program], capture_output=True, text=True, check=True)
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            size = int(fields[1], 16) if len(fields) == 4 else 0
            symbols.setdefault(fields[-1], (int(fields[0], 16), size))
    return symbols


def _read(server, address, size):
    with open(f"/proc/{server.pid}/mem", "rb") as memory:
        memory.seek(address)
        return memory.read(size)


def _entry_bytes(server, program, name):
    """The 8 bytes at function `name`'s entry in the running `server`, its
    address, the address of its general path and the stub area's bounds, as
    the process has them (read through /proc/PID/mem: the runtime may have
    written the entry)."""
    symbols = _symbols(program)
    real = os.path.realpath(program)
    base = min(int(line.split("-")[0], 16) for line in server.maps().splitlines()
               if line.endswith(real))
    entry = base + symbols[name][0]
    stubs, stubs_size = symbols["psu_stub_area"]
    return (_read(server, entry, 8), entry, base + symbols[f"psu_general_{name}"][0],
            (base + stubs, base + stubs + stubs_size))


def _stub_cell_offset(program):
    """Where a stub keeps the code it calls: as in the runtime's template."""
    symbols = _symbols(program)
    return symbols["psu_stub_cell"][0] - symbols["psu_stub_template"][0]


def _jump_target(code, entry):
    assert code[0] == 0xe9 and code[5:] == b"\xcc" * 3, code.hex()
    return entry + 5 + int.from_bytes(code[1:5], "little", signed=True)


def _bundle_code_ranges(server):
    """The address ranges of the bundles' code objects mapped in `server`."""
    ranges = []
    for line in server.maps().splitlines():
        if "memfd:psu-" in line and "-code" in line:
            low, high = (int(x, 16) for x in line.split()[0].split("-"))
            ranges.append((low, high))
    return ranges


NOP8 = bytes.fromhex("0f1f840000000000")


def test_entry_hooks_jump_to_a_stub_while_a_bundle_is_current(kvd, start):
    """A replaced function's entry is the build's 8-byte no-op, a jump to the
    stub made for it and the bundle's module once a bundle's version is
    current (the stub calls that version: its cell is in the bundle's code),
    and the no-op again after the rollback; the calls answer as each version
    must."""
    bundle = kvd.bundle("kvd", "v1", "v2")
    manifest = json.loads(psu("inspect", bundle, "--json").stdout)["manifest"]
    replaced = [q.rsplit(":", 1)[-1] for q in manifest["changes"]["functions"]["replaced"]]
    server, port = start()
    status = json.loads(server.psu("status", server.pid, "--json").stdout)
    assert status["entry_hooks"] == "on" and status["entry_stubs"] == "on"
    program = kvd.root / "kvd"
    assert all(_entry_bytes(server, program, name)[0] == NOP8 for name in replaced)
    assert server.psu("apply", server.pid, bundle).returncode == 0
    assert info_versions(port, 3) == {"v2"}
    code_ranges = _bundle_code_ranges(server)
    cell_at = _stub_cell_offset(program)
    stubs_seen = set()
    for name in replaced:
        code, entry, general, (low, high) = _entry_bytes(server, program, name)
        stub = _jump_target(code, entry)
        assert low <= stub < high and (stub - low) % 128 == 0, name
        stubs_seen.add(stub)
        stub_bytes = _read(server, stub, 128)
        assert stub_bytes[0] == 0x50, stub_bytes.hex()          # push: the template's
        cell = int.from_bytes(stub_bytes[cell_at:cell_at + 8], "little")
        assert any(lo <= cell < hi for lo, hi in code_ranges), (name, hex(cell))
    assert len(stubs_seen) == len(replaced)
    assert server.psu("rollback", server.pid).returncode == 0
    assert info_versions(port, 3) == {"v1"}
    assert all(_entry_bytes(server, program, name)[0] == NOP8 for name in replaced)
    assert Client(port).ask("LEN x") == "ERROR unknown command"


@contextlib.contextmanager
def _v2_applied_with(kvd, tmp_path, env):
    """kvd started with `env`, its status, v1 -> v2 applied and answering:
    (server, status before the apply, the replaced functions' names)."""
    bundle = kvd.bundle("kvd", "v1", "v2")
    replaced = [q.rsplit(":", 1)[-1] for q in
                json.loads(psu("inspect", bundle, "--json").stdout)["manifest"]["changes"]["functions"]["replaced"]]
    server = Process([kvd.root / "kvd", "-p", "0", "-w", "2"], kvd.root, tmp_path / "run", env=env)
    try:
        port = int(server.read_line().split()[-1])
        server.wait_for_socket()
        status = json.loads(server.psu("status", server.pid, "--json").stdout)
        assert server.psu("apply", server.pid, bundle).returncode == 0
        assert info_versions(port, 3) == {"v2"}
        assert Client(port).ask("LEN abc") == "NOTFOUND"
        yield server, status, replaced
    finally:
        server.stop()


def test_without_entry_stubs_hooks_jump_to_the_general_path(kvd, tmp_path):
    """PSU_ENTRY_STUBS=0: status says why, the hooks jump to the general
    paths, and the calls reach the bundle's version."""
    with _v2_applied_with(kvd, tmp_path, {"PSU_ENTRY_STUBS": "0"}) as (server, status, replaced):
        assert status["entry_hooks"] == "on" and status["entry_stubs"] == "PSU_ENTRY_STUBS=0"
        for name in replaced:
            code, entry, general, _ = _entry_bytes(server, kvd.root / "kvd", name)
            assert _jump_target(code, entry) == general, name


def test_without_entry_hooks_updates_go_through_the_check(kvd, tmp_path):
    """PSU_ENTRY_HOOKS=0: nothing is written into the program's text, status
    says why, and every call still reaches the bundle's version."""
    with _v2_applied_with(kvd, tmp_path, {"PSU_ENTRY_HOOKS": "0"}) as (server, status, replaced):
        assert status["entry_hooks"] == "PSU_ENTRY_HOOKS=0"
        assert status["entry_stubs"] == "entry hooks off"
        assert all(_entry_bytes(server, kvd.root / "kvd", name)[0] == NOP8 for name in replaced)


def test_entry_hooks_written_and_restored_under_load(kvd, start):
    """Updates and rollbacks in a loop while four clients call the replaced
    functions: every hook is written and restored under running calls, and
    no request fails or sees a version other than v1 or v2."""
    server, port = start()
    bundle = kvd.bundle("kvd", "v1", "v2")
    load = subprocess.Popen([kvd.root / "kvload", "-p", str(port), "-t", "4", "-d", "4",
                             "--interval", "200"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    for _ in range(25):
        assert server.psu("apply", server.pid, bundle).returncode == 0
        time.sleep(0.05)
        assert server.psu("rollback", server.pid).returncode == 0
        time.sleep(0.05)
    final = json.loads(load.communicate(timeout=60)[0].strip().splitlines()[-1])
    assert load.returncode == 0 and final["failed"] == 0 and final["ok"] > 1000
    assert set(final["versions"]) == {"v1", "v2"}
    assert server.alive() and info_versions(port, 3) == {"v1"}
