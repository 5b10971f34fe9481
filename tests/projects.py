"""Whole-project test fixtures: a user's SCons project in a git repository,
built with psu from this checkout, and its DSU processes.

Subprocesses import psu from this working tree (site_scons/ first on
PYTHONPATH), so the tests exercise the code as it stands; test_packaging.py
checks the installed package separately.
"""
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
SITE_SCONS = REPO / "site_scons"
EXAMPLE = REPO / "example_project"

SITE_INIT = """\
try:
    import psu
except ImportError:  # psu not installed: use the checkout under test
    import sys; sys.path.insert(0, %r); import psu
psu.add_to_toolpath()
""" % str(SITE_SCONS)


def environment(runtime_dir=None, **extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SITE_SCONS) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if runtime_dir is not None:
        env["PSU_RUNTIME_DIR"] = str(runtime_dir)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(args, cwd, env=None, check=True, timeout=600, input=None):
    done = subprocess.run([str(a) for a in args], cwd=str(cwd), env=env or environment(),
                          capture_output=True, text=True, timeout=timeout, input=input)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({done.returncode}):\n"
                             f"{done.stdout}\n{done.stderr}")
    return done


def scons(project, *args, check=True, env=None):
    return run([sys.executable, "-m", "SCons", "-Q", *args], project, env=env, check=check)


def psu(*args, cwd=".", runtime_dir=None, check=False):
    return run([sys.executable, "-m", "psu", *args], cwd, env=environment(runtime_dir), check=check)


class Project:
    """A git repository with an SConstruct using psu; revisions are commits tagged by name."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "site_scons").mkdir(exist_ok=True)
        (self.root / "site_scons" / "site_init.py").write_text(SITE_INIT)
        (self.root / ".gitignore").write_text(
            ".psu-build/\npsu-patches/\n*.o\n*.psu.json\n.sconsign.dblite\n")
        self.git("init", "-q")

    def git(self, *args):
        return run(["git", "-c", "user.email=t@psu", "-c", "user.name=psu test", *args], self.root)

    def write(self, files):
        for name, text in files.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def commit(self, tag, files=None):
        if files:
            self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", tag)
        self.git("tag", "-f", tag)

    def checkout(self, tag):
        self.git("checkout", "-q", tag)

    def build(self, *args, **kw):
        return scons(self.root, *args, **kw)

    def patch(self, from_ref, to_ref, check=True, extra=()):
        return scons(self.root, "patch", f"FROM={from_ref}", f"TO={to_ref}", *extra, check=check)

    def bundle(self, program, from_ref, to_ref):
        return self.root / "psu-patches" / f"{program}-{from_ref}-{to_ref}.psu"

    def manifest(self, program):
        return json.loads((self.root / f"{program}.psu.json").read_text())


def example_repository(root):
    """The example service as a git repository with tags v1, v2, v3."""
    project = Project(root)
    for item in ("SConstruct", "src", "tools"):
        source = EXAMPLE / item
        if source.is_dir():
            shutil.copytree(source, project.root / item, dirs_exist_ok=True)
        else:
            shutil.copy(source, project.root / item)
    project.commit("v1")
    for revision in ("v2", "v3"):
        run(["git", "apply", str(EXAMPLE / "revisions" / f"{revision}.patch")], project.root)
        project.commit(revision)
    project.checkout("v1")
    return project


class Process:
    """A DSU program running in the background, with its own runtime folder."""

    def __init__(self, args, cwd, runtime_dir, stdin=None):
        self.runtime_dir = pathlib.Path(runtime_dir)
        self.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.process = subprocess.Popen([str(a) for a in args], cwd=str(cwd),
                                        env=environment(self.runtime_dir, PSU_QUIET=1),
                                        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pid = self.process.pid
        self.socket = self.runtime_dir / f"{self.pid}.sock"

    def wait_for_socket(self, timeout=10):
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no control socket at {self.socket}:\n{self.stderr_text()}")
            time.sleep(0.02)
        return self

    def read_line(self):
        return self.process.stdout.readline().strip()

    def request(self, line, timeout=30):
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(timeout)
        connection.connect(str(self.socket))
        connection.sendall(line.encode() + b"\n")
        data = b""
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
        connection.close()
        return json.loads(data.decode().splitlines()[0])

    def psu(self, *args):
        return psu(*args, runtime_dir=self.runtime_dir)

    def maps(self):
        return pathlib.Path(f"/proc/{self.pid}/maps").read_text()

    def alive(self):
        return self.process.poll() is None

    def stderr_text(self):
        if self.process.poll() is None:
            return ""
        return self.process.stderr.read()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class CommandProgram:
    """A corpus program that answers each command line on its stdin with one
    line (the shape of the test corpora's programs); `first` is its greeting."""

    def __init__(self, executable, cwd, runtime_dir):
        self.process = Process([executable], cwd, runtime_dir, stdin=True)
        self.first = self.process.read_line()
        self.process.wait_for_socket()

    def __call__(self, command):
        self.process.process.stdin.write(command + "\n")
        self.process.process.stdin.flush()
        return self.process.read_line()

    def apply(self, bundle):
        done = self.process.psu("apply", self.process.pid, bundle)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def stop(self):
        self.process.process.stdin.close()
        self.process.stop()


def wait_until(predicate, timeout=10.0, interval=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
