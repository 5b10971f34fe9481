"""Every DSU process of a program on this host: pick them by the version they
run, update or roll back each one, and report one result per process.

The selection rule is the same for the CLI (`psu apply --all`) and for the
Ansible modules: a process is touched only when its running build id is the
bundle's base (apply) or its target with the base as previous version
(rollback); one already at the goal is "already"; one at any other version is
"skipped" and never sent anything but `status`.  Each process is updated
all-or-nothing by its own runtime; a refusal is recorded, not raised, so one
stubborn process never hides the others' results.
"""
import os
from dataclasses import dataclass, field
from typing import List, Optional

from . import bundle as bundle_file
from . import control
from .errors import ControlError, UsageError

# Per-process results.  CHANGED ones mean the process now runs another version.
APPLIED, ROLLED_BACK = "applied", "rolled-back"
WOULD_APPLY, WOULD_ROLL_BACK = "would-apply", "would-roll-back"
ALREADY, NOTHING = "already", "nothing"
SKIPPED, FAILED, GONE, RUNNING = "skipped", "failed", "gone", "running"
CHANGED = (APPLIED, ROLLED_BACK)
WOULD_CHANGE = (WOULD_APPLY, WOULD_ROLL_BACK)
# Results that leave a process where the command wanted it (or gone: it exited).
AT_GOAL = CHANGED + WOULD_CHANGE + (ALREADY, NOTHING, GONE, RUNNING)

STATUS_TIMEOUT = 10.0


@dataclass
class ProcessResult:
    """What happened to one process.  `from_*` is the version it ran when
    looked at; `to_*` the version it runs now (or would run, or should have)."""

    pid: int
    socket: str
    result: str
    program: Optional[str] = None
    from_build_id: Optional[str] = None
    from_label: Optional[str] = None
    to_build_id: Optional[str] = None
    to_label: Optional[str] = None
    error: Optional[str] = None        # error class (docs/control-protocol.md, or
    message: str = ""                  # unreachable / not-ours from the client)
    functions: Optional[int] = None

    def to_json(self):
        return {"pid": self.pid, "socket": self.socket, "program": self.program,
                "result": self.result, "from": self.from_build_id, "from_label": self.from_label,
                "to": self.to_build_id, "to_label": self.to_label, "error": self.error,
                "message": self.message, "functions": self.functions}


@dataclass
class BundleInfo:
    """The part of a bundle's manifest that decides which processes it is for."""

    path: str
    sha256: str
    program: str
    base_build_id: str
    base_label: str
    target_build_id: str
    target_label: str
    report: str = ""

    def to_json(self):
        return {"path": self.path, "sha256": self.sha256, "program": self.program,
                "base": self.base_build_id, "base_label": self.base_label,
                "target": self.target_build_id, "target_label": self.target_label}


@dataclass
class FleetReport:
    """The results of one command over every selected process of this host."""

    action: str                       # apply, rollback, status
    program: Optional[str]
    runtime_dir: str                  # the processes' socket folder (control.socket_dir,
                                      # PSU_RUNTIME_DIR); "runtime_dir" in the JSON
    check: bool = False
    bundle: Optional[BundleInfo] = None
    processes: List[ProcessResult] = field(default_factory=list)

    def count(self, *results):
        return sum(1 for p in self.processes if p.result in results)

    @property
    def changed(self):
        """True when a process runs another version now (or would, in check mode)."""
        return self.count(*(WOULD_CHANGE if self.check else CHANGED)) > 0

    @property
    def failed(self):
        return [p for p in self.processes if p.result == FAILED]

    @property
    def skipped(self):
        return [p for p in self.processes if p.result == SKIPPED]

    @property
    def complete(self):
        """Every selected process reached (or, in check mode, would reach) the goal."""
        return all(p.result in AT_GOAL for p in self.processes)

    def summary(self):
        counts = {}
        for p in self.processes:
            counts[p.result] = counts.get(p.result, 0) + 1
        return counts

    def to_json(self):
        return {"action": self.action, "program": self.program, "runtime_dir": self.runtime_dir,
                "check": self.check, "changed": self.changed, "complete": self.complete,
                "bundle": self.bundle.to_json() if self.bundle else None,
                "summary": self.summary(),
                "processes": [p.to_json() for p in self.processes]}


def read_bundle(path):
    """BundleInfo of the bundle file at `path` (BundleError when it is not a valid bundle)."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such bundle file")
    data, sections, digest = bundle_file.read(path)
    return BundleInfo(path=path, sha256=digest, program=sections["program"].decode(),
                      base_build_id=sections["base"].decode(),
                      base_label=data.get("base_label", "?"),
                      target_build_id=sections["target"].decode(),
                      target_label=sections["label"].decode(), report=data.get("report", ""))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _unreached(pid, path, error):
    """A process we could not talk to: gone if it exited, else a failure."""
    if not _alive(pid):
        return ProcessResult(pid, path, GONE, message="exited before it could be asked")
    return ProcessResult(pid, path, FAILED, error=error.error_class or "unreachable",
                         message=error.text)


def _survey(program):
    """(ProcessResult with the running version, status answer or None) of every DSU
    process of this user running `program` (all programs when None).  A process
    whose status cannot be read is kept (we cannot tell it is not `program`)."""
    found = []
    for pid, path in control.processes():
        try:
            status = control.request(path, "status", timeout=STATUS_TIMEOUT)
        except ControlError as error:
            found.append((_unreached(pid, path, error), None))
            continue
        if not status.get("ok"):
            found.append((ProcessResult(pid, path, FAILED, error=status.get("error"),
                                        message=status.get("message", "")), None))
            continue
        if program is not None and status.get("program") != program:
            continue
        found.append((ProcessResult(pid, path, RUNNING, program=status.get("program"),
                                    from_build_id=status.get("build_id"),
                                    from_label=status.get("label"),
                                    to_build_id=status.get("build_id"),
                                    to_label=status.get("label")), status))
    return found


def _program_for(bundle, program):
    if program is not None and program != bundle.program:
        raise UsageError(f"the bundle is for program '{bundle.program}', not '{program}'")
    return bundle.program


def status_all(program=None):
    """The running version of every DSU process (of `program`) of this user."""
    report = FleetReport("status", program, control.socket_dir())
    report.processes = [row for row, _ in _survey(program)]
    return report


def _send(row, line, answer_result):
    """Send an apply/rollback request for `row`; fill in what the process answered."""
    try:
        answer = control.request(row.socket, line)
    except ControlError as error:
        failed = _unreached(row.pid, row.socket, error)
        row.result, row.error, row.message = failed.result, failed.error, failed.message
        return row
    if not answer.get("ok"):
        row.result, row.error, row.message = FAILED, answer.get("error"), answer.get("message", "")
        return row
    if answer.get("result") == "already":
        row.result = ALREADY
    else:
        row.result = answer_result
        row.to_build_id, row.to_label = answer.get("to"), answer.get("label")
        row.functions = answer.get("functions")
    return row


def apply_all(bundle_path, program=None, check=False):
    """Apply the bundle to every process of its program running its base.

    Processes at the target are "already"; others are "skipped" and untouched.
    With `check`, nothing is sent but `status`: results say what would happen."""
    info = read_bundle(bundle_path)
    program = _program_for(info, program)
    report = FleetReport("apply", program, control.socket_dir(), check=check, bundle=info)
    for row, status in _survey(program):
        report.processes.append(row)
        if status is None:
            continue
        if row.from_build_id == info.target_build_id:
            row.result, row.message = ALREADY, f"already at {info.target_label}"
        elif row.from_build_id != info.base_build_id:
            row.result = SKIPPED
            row.message = (f"runs {row.from_label} ({row.from_build_id[:12]}); the bundle "
                           f"updates {info.base_label} ({info.base_build_id[:12]})")
        else:
            row.to_build_id, row.to_label = info.target_build_id, info.target_label
            if check:
                row.result = WOULD_APPLY
            else:
                _send(row, f"apply {info.path}", APPLIED)
    return report


def _left_alone_by_rollback(row, previous, info):
    """Whether undoing bundle `info` leaves `row`'s process alone (already at the
    base, or not at the target by way of the base); says why in `row`."""
    if row.from_build_id == info.base_build_id:
        row.result, row.message = ALREADY, f"already at {info.base_label}"
    elif row.from_build_id != info.target_build_id:
        row.result = SKIPPED
        row.message = (f"runs {row.from_label} ({row.from_build_id[:12]}), not the "
                       f"bundle's target {info.target_label}")
    elif previous.get("build_id") != info.base_build_id:
        row.result = SKIPPED
        row.message = (f"reached {info.target_label} from "
                       f"{previous.get('label', 'its start')}, not from the bundle's "
                       f"base {info.base_label}: a rollback would not undo this bundle")
    else:
        return False
    return True


def rollback_all(bundle_path=None, program=None, check=False):
    """Undo a bundle on every process that runs its target and came from its base.

    Without a bundle: every selected process goes back one update (not
    idempotent: a second run goes back one more); those with no update to
    undo are "nothing"."""
    info = read_bundle(bundle_path) if bundle_path else None
    if info is not None:
        program = _program_for(info, program)
    report = FleetReport("rollback", program, control.socket_dir(), check=check, bundle=info)
    for row, status in _survey(program):
        report.processes.append(row)
        if status is None:
            continue
        history = status.get("history") or []
        previous = history[-1] if history else {}
        if info is not None and _left_alone_by_rollback(row, previous, info):
            continue
        if info is None and not previous:
            row.result = NOTHING
            continue
        row.to_build_id, row.to_label = previous.get("build_id"), previous.get("label")
        if check:
            row.result = WOULD_ROLL_BACK
        else:
            _send(row, "rollback", ROLLED_BACK)
    return report
