"""Issue 12: every process of a program on a host (`psu apply|status|rollback --all`),
and fleets through the Ansible collection psu.live, on local "hosts" (each its own
runtime folder and its own kvd processes) under load."""
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from projects import REPO, Process, environment, example_repository, psu, run, wait_until

V1_V2, V2_V3, V1_V3 = ("v1", "v2"), ("v2", "v3"), ("v1", "v3")


@pytest.fixture(scope="module")
def kvd(tmp_path_factory):
    """The example at v1, built, with bundles v1->v2, v2->v3 and v1->v3."""
    project = example_repository(tmp_path_factory.mktemp("kvd") / "repo")
    project.build()
    for old, new in (V1_V2, V2_V3, V1_V3):
        project.patch(old, new)
    return project


class Host:
    """A pretend host: its own runtime folder and its own kvd processes."""

    def __init__(self, name, kvd, folder):
        self.name, self.kvd = name, kvd
        self.runtime_dir = folder / name / "run"
        self.bundle_dir = folder / name / "bundles"
        self.servers, self.ports = [], []

    def start(self, count, at=None):
        for _ in range(count):
            server = Process([self.kvd.root / "kvd", "-p", "0", "-w", "3"], self.kvd.root,
                             self.runtime_dir)
            self.servers.append(server)
            self.ports.append(int(server.read_line().split()[-1]))
            server.wait_for_socket()
            if at is not None:
                done = server.psu("apply", server.pid, self.kvd.bundle("kvd", *at))
                assert done.returncode == 0, done.stderr
        return self

    def psu(self, *args):
        return psu(*args, runtime_dir=self.runtime_dir)

    def status(self):
        """pid -> (label, updates) of every process, from psu itself."""
        from psu import control
        report = json.loads(self.psu("status", "--all", "--json").stdout)
        result = {}
        for row in report["processes"]:
            answer = control.request(row["socket"], "status")
            result[row["pid"]] = (answer["label"], answer["updates"])
        return result

    def versions_served(self):
        """The version word each server answers INFO with (what clients see)."""
        return sorted(_info(port).split()[2]
                      for server, port in zip(self.servers, self.ports) if server.alive())

    def stop(self):
        for server in self.servers:
            server.stop()


def _info(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"INFO\n")
        return connection.makefile("r").readline().strip()


@pytest.fixture
def hosts(kvd, tmp_path):
    made = []

    def make(name, count, at=None):
        host = Host(name, kvd, tmp_path).start(count, at)
        made.append(host)
        return host
    yield make
    for host in made:
        host.stop()


# --- psu apply|status|rollback --all -------------------------------------------------

def test_apply_all_updates_processes_at_the_base_and_leaves_others_alone(kvd, hosts):
    host = hosts("h", 3)
    other = host.start(1, at=V1_V3).servers[-1]        # the same runtime folder, at v3
    bundle = kvd.bundle("kvd", *V1_V2)

    checked = host.psu("apply", "--all", "--check", "--json", bundle)
    report = json.loads(checked.stdout)
    assert checked.returncode == 9 and report["check"] and report["changed"]
    assert sorted(p["result"] for p in report["processes"]) == ["skipped"] + ["would-apply"] * 3
    assert host.versions_served() == ["v1", "v1", "v1", "v3"]     # check mode changed nothing

    applied = host.psu("apply", "--all", "--json", bundle)
    report = json.loads(applied.stdout)
    assert applied.returncode == 9, applied.stderr         # not every process reached v2
    rows = {p["pid"]: p for p in report["processes"]}
    skipped = rows.pop(other.pid)
    assert skipped["result"] == "skipped" and skipped["from_label"] == "v3"
    assert "runs v3" in skipped["message"] and skipped["error"] is None
    base, target = report["bundle"]["base"], report["bundle"]["target"]
    for row in rows.values():
        assert (row["result"], row["program"], row["from"], row["to"], row["error"]) == \
            ("applied", "kvd", base, target, None)
    assert report["changed"] and not report["complete"]
    assert host.versions_served() == ["v2", "v2", "v2", "v3"]
    assert host.status()[other.pid] == ("v3", 1)          # untouched: still its one update

    again = host.psu("apply", "--all", bundle)
    assert again.returncode == 9
    assert "psu: nothing changed (3 already at, 1 skipped)" in again.stdout
    assert "1 process(es) run another version and were left alone" in again.stdout
    assert sorted(host.status().values()) == [("v2", 1)] * 3 + [("v3", 1)]
    listed = host.psu("status", "--all", "--program", "kvd")
    assert listed.returncode == 0 and "psu: 4 processes of kvd" in listed.stdout
    assert f"{other.pid}  kvd          runs             v3 " in listed.stdout

    # the program alone, without the v3 process, reaches the target: exit 0
    other.stop()
    assert wait_until(lambda: not other.socket.exists())
    assert host.psu("apply", "--all", "--program", "kvd", bundle).returncode == 0

    checked = json.loads(host.psu("rollback", "--all", "--check", "--json", bundle).stdout)
    assert [p["result"] for p in checked["processes"]] == ["would-roll-back"] * 3
    assert host.versions_served() == ["v2", "v2", "v2"]
    rolled = json.loads(host.psu("rollback", "--all", "--json", bundle).stdout)
    assert [p["result"] for p in rolled["processes"]] == ["rolled-back"] * 3
    assert all(p["to_label"] == "v1" for p in rolled["processes"])
    assert host.versions_served() == ["v1", "v1", "v1"]
    again = host.psu("rollback", "--all", bundle)
    assert again.returncode == 0 and "nothing changed (3 already at)" in again.stdout

    # without a bundle: one update back wherever there is one
    assert host.psu("apply", host.servers[0].pid, bundle).returncode == 0
    stepped = json.loads(host.psu("rollback", "--all", "--json").stdout)
    assert sorted(p["result"] for p in stepped["processes"]) == ["nothing", "nothing", "rolled-back"]
    assert host.versions_served() == ["v1", "v1", "v1"]
    assert "nothing changed (3 nothing to roll back)" in host.psu("rollback", "--all").stdout


def test_apply_all_reports_each_failure_by_class_and_still_updates_the_rest(kvd, hosts, tmp_path):
    host = hosts("h", 2)
    # a socket in the runtime folder whose owner (alive: this test) never answers
    stuck = socket.socket(socket.AF_UNIX)
    stuck.bind(str(host.runtime_dir / f"{os.getpid()}.sock"))
    os.chmod(host.runtime_dir / f"{os.getpid()}.sock", 0o600)
    stuck.listen(4)

    def close_every_connection():
        try:
            while True:
                stuck.accept()[0].close()
        except OSError:         # the test closed the listener
            pass
    threading.Thread(target=close_every_connection, daemon=True).start()
    done = host.psu("apply", "--all", "--json", kvd.bundle("kvd", *V1_V2))
    report = json.loads(done.stdout)
    assert done.returncode == 8
    rows = {p["pid"]: p for p in report["processes"]}
    assert rows[os.getpid()]["result"] == "failed"
    assert rows[os.getpid()]["error"] == "unreachable"
    assert f"{os.getpid()}.sock" in rows[os.getpid()]["message"]     # psu's own words
    assert sorted(rows[s.pid]["result"] for s in host.servers) == ["applied", "applied"]
    assert host.versions_served() == ["v2", "v2"]
    stuck.close()
    os.unlink(host.runtime_dir / f"{os.getpid()}.sock")

    # undoing v2 -> v3: only where v3 came from v2
    direct = host.start(1, at=V1_V3).servers[-1]              # v3 straight from v1
    stepped = host.servers[0]
    assert stepped.psu("apply", stepped.pid, kvd.bundle("kvd", *V2_V3)).returncode == 0
    undone = host.psu("rollback", "--all", "--json", kvd.bundle("kvd", *V2_V3))
    rows = {p["pid"]: p for p in json.loads(undone.stdout)["processes"]}
    assert undone.returncode == 9
    assert rows[stepped.pid]["result"] == "rolled-back" and rows[stepped.pid]["to_label"] == "v2"
    assert rows[host.servers[1].pid]["result"] == "already"
    assert rows[direct.pid]["result"] == "skipped"
    assert "reached v3 from v1, not from the bundle's base v2" in rows[direct.pid]["message"]
    assert host.versions_served() == ["v2", "v2", "v3"]

    wrong = host.psu("apply", "--all", "--program", "other", kvd.bundle("kvd", *V1_V2))
    assert wrong.returncode == 2 and "bundle is for program 'kvd', not 'other'" in wrong.stderr
    mixed = host.psu("apply", "123", "--check", kvd.bundle("kvd", *V1_V2))
    assert mixed.returncode == 2 and "unrecognized arguments: --check" in mixed.stderr
    stray = host.psu("apply", "--all", "123", kvd.bundle("kvd", *V1_V2))
    assert stray.returncode == 2 and "unrecognized arguments" in stray.stderr
    torn = tmp_path / "torn.psu"
    torn.write_bytes(kvd.bundle("kvd", *V1_V2).read_bytes()[:-7])
    bad = host.psu("apply", "--all", torn)
    assert bad.returncode == 7 and "checksum mismatch" in bad.stderr


# --- the Ansible collection -----------------------------------------------------------

def _ansible_tool(name):
    beside = pathlib.Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is missing: install the test extra (pip install -e '.[test]')")
    return found


class Ansible:
    """ansible / ansible-playbook against an inventory of local hosts, hermetic:
    the collection from this checkout, configuration and temporary files in tmp_path."""

    def __init__(self, folder, hosts, extra_host_vars=None):
        self.folder = folder
        folder.mkdir(exist_ok=True)
        (folder / "ansible.cfg").write_text("")
        inventory = {"all": {"vars": {"ansible_connection": "local",
                                      "ansible_python_interpreter": sys.executable},
                             "hosts": {}}}
        for host in hosts:
            inventory["all"]["hosts"][host.name] = {
                "psu_runtime_dir": str(host.runtime_dir), "psu_bundle_dir": str(host.bundle_dir),
                "kvd_ports": host.ports, **(extra_host_vars or {}).get(host.name, {})}
        self.inventory = folder / "hosts.json"
        self.inventory.write_text(json.dumps(inventory))
        self.env = environment(
            ANSIBLE_CONFIG=folder / "ansible.cfg", ANSIBLE_HOME=folder / "home",
            ANSIBLE_LOCAL_TEMP=folder / "tmp", ANSIBLE_REMOTE_TEMP=folder / "tmp",
            ANSIBLE_COLLECTIONS_PATH=REPO, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="False",
            ANSIBLE_NOCOWS=1, ANSIBLE_NOCOLOR=1, ANSIBLE_RETRY_FILES_ENABLED="False",
            ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_HOST_KEY_CHECKING="False")
        self.env.pop("PSU_RUNTIME_DIR", None)       # each host names its own

    def playbook(self, *args):
        return run([_ansible_tool("ansible-playbook"), "-i", self.inventory, *args],
                   self.folder, env=self.env, check=False)

    def module(self, pattern, name, arguments, *options):
        """An ad-hoc module run; returns (exit code, {host: result JSON}, output)."""
        done = run([_ansible_tool("ansible"), pattern, "-i", self.inventory, "-m", name,
                    "-a", json.dumps(arguments), *options], self.folder, env=self.env, check=False)
        results = {}
        # the minimal callback prints `host | STATUS => {json}` for each host
        for match in re.finditer(r"^(\S+) \| [A-Z]+!? => (\{.*?^\})", done.stdout, re.S | re.M):
            results[match.group(1)] = json.loads(match.group(2))
        return done.returncode, results, done.stdout + done.stderr


def recap(output):
    """host -> {ok, changed, failed, ...} from the PLAY RECAP."""
    counts = {}
    for line in output.split("PLAY RECAP")[-1].splitlines()[1:]:
        fields = re.findall(r"(\w+)=(\d+)", line)
        if fields:
            counts[line.split()[0]] = {k: int(v) for k, v in fields}
    return counts


HEALTH_CHECK = """\
import socket, sys
# the operator's check for kvd: every server of the host answers INFO with the version
expect, ports = sys.argv[1], sys.argv[2:]
for port in ports:
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as c:
            c.sendall(b"INFO\\n")
            answer = c.makefile("r").readline().split()
    except OSError as error:
        sys.exit(f"port {port}: {error}")
    if answer[:3] != ["INFO", "kvd", expect]:
        sys.exit(f"port {port}: {' '.join(answer)}")
print(f"{len(ports)} server(s) at {expect}")
"""


def health_check(folder):
    """The command line, for each host: its servers must answer at its `kvd_expect`."""
    script = folder / "kvcheck.py"
    script.write_text(HEALTH_CHECK)
    return f"{sys.executable} {script} {{{{ kvd_expect }}}} {{{{ kvd_ports | join(' ') }}}}"


class Load:
    """kvload against one server, its cumulative counters read as they come."""

    def __init__(self, kvd, port):
        self.process = subprocess.Popen([str(kvd.root / "kvload"), "-p", str(port), "-t", "1",
                                         "-d", "600", "--interval", "200"],
                                        stdout=subprocess.PIPE, text=True)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(json.loads(line))

    def finish(self):
        """The last counters after a few more requests; then stop."""
        seen = len(self.lines)
        assert wait_until(lambda: len(self.lines) >= seen + 2, timeout=30), "kvload stalled"
        self.process.terminate()
        self.process.wait(10)
        return self.lines[-1]


@pytest.mark.slow          # two playbook runs over three hosts under load: a minute or more
def test_playbook_updates_every_process_of_every_host_under_load(kvd, hosts, tmp_path):
    fleet = [hosts(f"h{i}", 2) for i in (1, 2)]
    elsewhere = hosts("h3", 2, at=V1_V3)         # runs another version: reported, untouched
    ansible = Ansible(tmp_path / "ansible", fleet + [elsewhere],
                      {h.name: {"kvd_expect": "v2"} for h in fleet} | {"h3": {"kvd_expect": "v3"}})
    loads = [Load(kvd, port) for host in fleet for port in host.ports]
    assert wait_until(lambda: all(len(load.lines) >= 2 for load in loads), timeout=30)
    arguments = ["psu.live.rollout", "-e", f"psu_bundle_src={kvd.bundle('kvd', *V1_V2)}",
                 "-e", json.dumps({"psu_serial": [1, 2],
                                   "psu_health_check": health_check(tmp_path)})]
    first = ansible.playbook(*arguments)
    totals = [load.finish() for load in loads]
    assert first.returncode == 0, first.stdout + first.stderr
    for host in fleet:
        assert host.versions_served() == ["v2", "v2"]
        assert sorted(host.status().values()) == [("v2", 1), ("v2", 1)]
        assert (host.bundle_dir / "kvd-v1-v2.psu").read_bytes() == \
            kvd.bundle("kvd", *V1_V2).read_bytes()
    assert all(t["failed"] == 0 and t["ok"] > 0 for t in totals), totals
    assert all({"v1", "v2"} <= set(t["versions"]) for t in totals), totals
    # the canary ran alone, then the batches: h1's play comes before h2 and h3's
    assert first.stdout.index("changed: [h1]") < first.stdout.index("changed: [h2]")
    # the host at v3 is reported, not touched (and not failed: the health check is the judge)
    assert sorted(elsewhere.status().values()) == [("v3", 1), ("v3", 1)]
    assert "left alone: runs v3" in first.stdout + first.stderr
    counts = recap(first.stdout)
    assert [counts[h]["failed"] for h in ("h1", "h2", "h3")] == [0, 0, 0]
    assert counts["h3"]["changed"] == 1          # only the bundle copied to it

    again = ansible.playbook(*arguments)
    assert again.returncode == 0, again.stdout + again.stderr
    assert {h: c["changed"] for h, c in recap(again.stdout).items()} == \
        {"h1": 0, "h2": 0, "h3": 0}
    for host in fleet:
        assert sorted(host.status().values()) == [("v2", 1), ("v2", 1)]


def test_a_failing_health_check_rolls_its_batch_back_and_stops_the_rollout(kvd, hosts, tmp_path):
    fleet = [hosts(f"h{i}", 2) for i in (1, 2, 3, 4)]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))                # a port nothing answers on, for h2's check
    dead_port = closed.getsockname()[1]
    closed.close()
    host_vars = {h.name: {"kvd_expect": "v2"} for h in fleet}
    host_vars["h2"]["kvd_ports"] = fleet[1].ports + [dead_port]
    ansible = Ansible(tmp_path / "ansible", fleet, host_vars)
    done = ansible.playbook("psu.live.rollout", "-e",
                            f"psu_bundle_src={kvd.bundle('kvd', *V1_V2)}", "-e",
                            json.dumps({"psu_serial": [1, 2],
                                        "psu_health_check": health_check(tmp_path)}))
    assert done.returncode == 2, done.stdout + done.stderr
    failures = {line.split("]")[0].split("[")[1]: line for line in done.stdout.splitlines()
                if line.startswith("fatal: [")}
    assert sorted(failures) == ["h2", "h3"]
    assert "unhealthy after the update" in failures["h2"] and f"port {dead_port}" in failures["h2"]
    assert "healthy, but its batch failed" in failures["h3"]
    assert "rollback: 2 rolled-back" in failures["h3"]
    h1, h2, h3, h4 = fleet
    assert h1.versions_served() == ["v2", "v2"]         # the canary keeps the update
    for host in (h2, h3):                               # the failing batch is rolled back
        assert host.versions_served() == ["v1", "v1"]
        assert sorted(host.status().values()) == [("v1", 1), ("v1", 1)]
    assert sorted(h4.status().values()) == [("v1", 0), ("v1", 0)]   # the rollout stopped
    assert "h4" not in recap(done.stdout)


MODULES_PLAYBOOK = """\
- hosts: all
  gather_facts: false
  vars:
    common: {runtime_dir: "{{ psu_runtime_dir }}"}
    v1_v2: {src: "{{ bundles }}/kvd-v1-v2.psu", bundle: "{{ psu_bundle_dir }}/kvd-v1-v2.psu"}
  tasks:
    - {name: check and diff, psu.live.psu_apply: "{{ v1_v2 | combine(common) }}",
       check_mode: true, diff: true, register: checked}
    - {name: apply, psu.live.psu_apply: "{{ v1_v2 | combine(common) }}", register: applied}
    - {name: check again, psu.live.psu_apply: "{{ v1_v2 | combine(common) }}",
       check_mode: true, register: rechecked}
    - {name: status, psu.live.psu_status: "{{ common }}", register: status}
    - name: a bundle for another version, skipped processes counted as failure
      psu.live.psu_apply: "{{ common | combine({'src': bundles ~ '/kvd-v1-v3.psu',
                              'bundle': psu_bundle_dir ~ '/kvd-v1-v3.psu', 'fail_on_skipped': true}) }}"
      register: other
      ignore_errors: true
    - name: a torn bundle
      psu.live.psu_apply: "{{ common | combine({'src': torn, 'bundle': psu_bundle_dir ~ '/torn.psu'}) }}"
      register: bad
      ignore_errors: true
    - {name: roll back, psu.live.psu_rollback: "{{ common | combine({'bundle': v1_v2.bundle}) }}",
       register: rolled}
    - name: results for the test
      ansible.builtin.copy:
        dest: "{{ results }}"
        content: "{{ {'checked': checked, 'applied': applied, 'rechecked': rechecked,
                      'status': status, 'other': other, 'bad': bad, 'rolled': rolled} | to_json }}"
"""


def test_modules_check_diff_and_failures_carry_psus_error_class(kvd, hosts, tmp_path):
    host = hosts("h1", 2)
    ansible = Ansible(tmp_path / "ansible", [host])
    placed = host.bundle_dir / "kvd-v1-v2.psu"
    torn = tmp_path / "torn.psu"
    torn.write_bytes(kvd.bundle("kvd", *V1_V2).read_bytes()[:-7])
    playbook = tmp_path / "modules.yml"
    playbook.write_text(MODULES_PLAYBOOK)
    results_file = tmp_path / "results.json"
    done = ansible.playbook(playbook, "-e", json.dumps({
        "bundles": str(kvd.root / "psu-patches"), "torn": str(torn), "results": str(results_file)}))
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(results_file.read_text())

    checked = results["checked"]                 # check mode: from build ids, nothing touched
    assert checked["changed"] and checked["copied"]
    assert [p["result"] for p in checked["processes"]] == ["would-apply"] * 2
    diff = done.stdout.split("TASK [check and diff]")[1].split("TASK [apply]")[0]
    for server in host.servers:                  # diff mode: versions, then the change report
        assert f"-kvd pid {server.pid}: v1" in diff and f"+kvd pid {server.pid}: v2" in diff
    assert f"change report of {placed}" in diff and "src/protocol.c:compare_keys" in diff

    applied = results["applied"]
    assert applied["changed"] and applied["summary"] == {"applied": 2}
    assert all(p["error"] is None and p["to_label"] == "v2" for p in applied["processes"])
    assert not results["rechecked"]["changed"] and not results["rechecked"]["copied"]
    assert results["rechecked"]["summary"] == {"already": 2}
    assert results["status"]["versions"] == {"v2": 2} and not results["status"]["changed"]

    other = results["other"]                     # failures carry psu's class and words
    assert other["failed"] and other["error_class"] == "skipped"
    assert other["summary"] == {"skipped": 2}
    assert any("left alone: runs v2" in w for w in other["warnings"])
    bad = results["bad"]
    assert bad["failed"] and bad["error_class"] == "bundle" and "checksum mismatch" in bad["msg"]

    rolled = results["rolled"]
    assert rolled["changed"] and rolled["summary"] == {"rolled-back": 2}
    assert host.versions_served() == ["v1", "v1"]
    assert placed.read_bytes() == kvd.bundle("kvd", *V1_V2).read_bytes()


def test_module_documentation_parses(tmp_path):
    """ansible-doc reads each module's DOCUMENTATION, EXAMPLES and RETURN (YAML)."""
    ansible = Ansible(tmp_path / "ansible", [])
    modules = ["psu.live.psu_apply", "psu.live.psu_status", "psu.live.psu_rollback"]
    done = run([_ansible_tool("ansible-doc"), "--json", *modules], ansible.folder,
               env=ansible.env, check=False)
    assert done.returncode == 0, done.stderr
    docs = json.loads(done.stdout)
    for name in modules:
        assert docs[name]["doc"]["options"] and docs[name]["return"], name
        assert docs[name]["doc"]["attributes"]["check_mode"]["support"] == "full"
