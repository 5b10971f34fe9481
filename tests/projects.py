"""Whole-project test fixtures: a user's SCons project in a git repository,
built with psu from this checkout, and its DSU processes.

Subprocesses import psu from this working tree (site_scons/ first on
PYTHONPATH), so the tests exercise the code as it stands; test_packaging.py
checks the installed package separately.
"""
import json
import os
import pathlib
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
SITE_SCONS = REPO / "site_scons"
EXAMPLE = REPO / "example_project"
# Waits are bounded by this, never timed: it only stops a hang.
DEADLINE = 30.0

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

    @classmethod
    def from_corpus(cls, root, corpus, tag="v1", ignored=()):
        """A copy of the corpus project `corpus` at `root`, committed as `tag`;
        `ignored`: its build outputs (the program) for .gitignore."""
        project = cls(root)
        shutil.copytree(corpus, project.root, dirs_exist_ok=True)
        if ignored:
            with open(project.root / ".gitignore", "a") as f:
                f.write("".join(f"{name}\n" for name in ignored))
        project.commit(tag)
        return project

    def git(self, *args):
        return run(["git", "-c", "user.email=t@psu", "-c", "user.name=psu test", *args], self.root)

    def write(self, files):
        for name, text in files.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def edit(self, path, *replacements, count=-1):
        """Replaces in file `path` each (old, new) pair's old, which must be
        there; `count`: how many times each (default: every time)."""
        file = self.root / path
        text = file.read_text()
        for old, new in replacements:
            assert old in text, old
            text = text.replace(old, new, count)
        file.write_text(text)

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

    def start(self, program, runtime_dir, greeting="ready"):
        """The built `program` running as a CommandProgram, once it said `greeting`."""
        running = CommandProgram(self.root / program, self.root, runtime_dir)
        assert running.first == greeting, running.first
        return running


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


# ---- the control socket ----------------------------------------------------------

def control_connection(socket_path, timeout=30):
    """An open connection to a DSU process's control socket."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(timeout)
    try:
        connection.connect(str(socket_path))
    except BaseException:
        connection.close()
        raise
    return connection


def read_to_end(connection):
    """Every byte the process sends until it closes the connection."""
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    return data


def control_exchange(socket_path, payload, timeout=30):
    """Sends `payload` (bytes, sent as they are) and returns the answer's bytes."""
    with control_connection(socket_path, timeout) as connection:
        connection.sendall(payload)
        return read_to_end(connection)


def control_request(socket_path, line, timeout=30):
    """One request line, its one-line JSON answer decoded."""
    data = control_exchange(socket_path, line.encode() + b"\n", timeout)
    assert data.endswith(b"\n"), data
    return json.loads(data.decode().splitlines()[0])


# ---- a running DSU process -----------------------------------------------------

class Process:
    """A DSU program running in the background with its own runtime folder:
    its stdout read line by line as it comes, its stderr kept, its control
    socket at hand.  `quiet` sets PSU_QUIET=1; `env` adds to the environment
    (PSU_DISABLE and PSU_QUIET of the caller's are never inherited)."""

    def __init__(self, args, cwd, runtime_dir, stdin=None, quiet=True, env=None, user=None,
                 make_runtime_dir=True):
        self.runtime_dir = pathlib.Path(runtime_dir)
        if make_runtime_dir:
            self.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        environ = environment(self.runtime_dir)
        environ.pop("PSU_DISABLE", None)
        environ.pop("PSU_QUIET", None)
        if quiet:
            environ["PSU_QUIET"] = "1"
        environ.update({k: str(v) for k, v in (env or {}).items()})
        self.process = subprocess.Popen([str(a) for a in args], cwd=str(cwd), env=environ,
                                        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        user=user)
        self.pid = self.process.pid
        self.socket = self.runtime_dir / f"{self.pid}.sock"
        self.lines = queue.Queue()          # stdout lines; None once it ends
        self.stderr_lines = []
        self.stdout_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self.stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.stdout_reader.start()
        self.stderr_reader.start()

    def _read_stdout(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _read_stderr(self):
        for line in self.process.stderr:
            self.stderr_lines.append(line)

    def wait_for_socket(self, timeout=DEADLINE):
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no control socket at {self.socket}:\n{self.stderr_text()}")
            time.sleep(0.02)
        return self

    def _next_line(self, deadline):
        try:
            return self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no line on stdout within {DEADLINE} s:\n{self.stderr_text()}") from None

    def read_line(self):
        """The next line of its stdout (stripped), "" once stdout has ended."""
        line = self._next_line(time.monotonic() + DEADLINE)
        if line is None:
            self.lines.put(None)            # every later read sees the end too
            return ""
        return line.strip()

    def expect(self, prefix):
        """The next stdout line that starts with `prefix` (earlier ones are skipped)."""
        end = time.monotonic() + DEADLINE
        while True:
            line = self._next_line(end)
            if line is None:
                self.lines.put(None)
                raise AssertionError(f"stdout ended before a line {prefix!r}:\n{self.stderr_text()}")
            if line.startswith(prefix):
                return line

    def send(self, line):
        """One line to its stdin (started with stdin=True)."""
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def ask(self, line):
        """Sends a line and returns the line it answers."""
        self.send(line)
        return self.read_line()

    def request(self, line):
        """One control request over its socket (see control_request)."""
        return control_request(self.socket, line, DEADLINE)

    def psu(self, *args):
        return psu(*args, runtime_dir=self.runtime_dir)

    def maps(self):
        return pathlib.Path(f"/proc/{self.pid}/maps").read_text()

    def alive(self):
        return self.process.poll() is None

    def stderr_text(self):
        """What it wrote on stderr (all of it once it has exited)."""
        if self.process.poll() is not None:
            self.stderr_reader.join(timeout=DEADLINE)
        return "".join(self.stderr_lines)

    def rest_of_output(self, timeout):
        """Waits for it to exit by itself; its returncode, the stdout lines not
        read yet (one string) and its stderr."""
        self.process.wait(timeout)
        self.stdout_reader.join(timeout=DEADLINE)
        lines = []
        while (line := self.lines.get_nowait()) is not None:
            lines.append(line + "\n")
        self.lines.put(None)
        return self.process.returncode, "".join(lines), self.stderr_text()

    def close_input(self):
        if self.process.stdin and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except OSError:                 # it has gone, with a line unread
                pass

    def ask_to_exit(self):
        """How stop() asks first: end of input, then SIGTERM (a program with
        a quit command overrides this)."""
        self.close_input()
        self.process.send_signal(signal.SIGTERM)

    def stop(self):
        """Asks it to exit, kills it after DEADLINE; returns its stderr (a fork
        child may hold the pipe open longer: waited for DEADLINE at most)."""
        if self.process.poll() is None:
            self.ask_to_exit()
            try:
                self.process.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.close_input()
        self.stderr_reader.join(timeout=DEADLINE)
        return "".join(self.stderr_lines)


class CommandProgram:
    """A corpus program that answers each command line on its stdin with one
    line (the shape of the test corpora's programs); `first` is its greeting."""

    def __init__(self, executable, cwd, runtime_dir):
        self.process = Process([executable], cwd, runtime_dir, stdin=True)
        self.first = self.process.read_line()
        self.process.wait_for_socket()

    def __call__(self, command):
        return self.process.ask(command)

    def apply(self, bundle):
        done = self.process.psu("apply", self.process.pid, bundle)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def stop(self):
        self.process.stop()


def wait_until(predicate, timeout=10.0):
    """True as soon as predicate() is, False if it is not after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def wait_for(predicate, what):
    """Returns once predicate() is true; fails naming `what` after DEADLINE."""
    if not wait_until(predicate, DEADLINE):
        raise AssertionError(f"timed out waiting for {what}")
