"""Client of a DSU process's control socket (protocol: docs/control-protocol.md)."""
import json
import os
import socket
import stat

from .errors import ControlError, UsageError


def socket_dir():
    """Where DSU processes of this user put their control sockets (PSU_RUNTIME_DIR,
    else $XDG_RUNTIME_DIR/psu, else /tmp/psu-<uid>); same rule as the C runtime.
    Not the C runtime's sources: those are resources.runtime_sources_dir."""
    if os.environ.get("PSU_RUNTIME_DIR"):
        return os.environ["PSU_RUNTIME_DIR"]
    if os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "psu")
    return f"/tmp/psu-{os.geteuid()}"


# A Unix socket address holds 108 bytes: a path of at most 107 and its NUL.
SOCKET_PATH_MAX = 107


def socket_path(target):
    """A PID names `<runtime dir>/<pid>.sock`; anything else is taken as a socket path."""
    text = str(target)
    if text.isdigit():
        path = os.path.join(socket_dir(), f"{text}.sock")
    elif os.sep in text or text.endswith(".sock"):
        path = text
    else:
        raise UsageError(f"'{text}' is neither a process id nor a socket path")
    size = len(os.fsencode(path))
    if size > SOCKET_PATH_MAX:
        raise ControlError(f"socket path {path} is {size} bytes, more than the "
                           f"{SOCKET_PATH_MAX} a Unix socket address holds (a DSU process "
                           "refuses to serve there too): choose a shorter PSU_RUNTIME_DIR",
                           "unreachable")
    return path


def check_ours(path):
    """Refuse a socket (or its folder) that another user could have planted or can reach."""
    uid = os.geteuid()
    folder = os.path.dirname(os.path.abspath(path))
    for what, place, must_be in (("folder", folder, stat.S_ISDIR), ("socket", path, stat.S_ISSOCK)):
        try:
            info = os.lstat(place)
        except FileNotFoundError:
            if what == "socket":
                raise ControlError(f"no DSU process listens at {path} (is it running, "
                                   "and built with psu?)", "unreachable")
            raise ControlError(f"{folder} does not exist: no DSU process of yours runs",
                               "unreachable")
        if not must_be(info.st_mode):
            raise ControlError(f"{place} is not a {what}", "not-ours")
        if info.st_uid != uid:
            raise ControlError(f"refusing {what} {place}: owned by uid {info.st_uid}, not you "
                               f"({uid})", "not-ours")
        if info.st_mode & 0o077:
            raise ControlError(f"refusing {what} {place}: mode {oct(info.st_mode & 0o777)} lets "
                               "others in (expected 0700 folder, 0600 socket)", "not-ours")


def request(target, line, timeout=60.0):
    """Send one request line; return the process's JSON answer (ok or not)."""
    if any(c in line for c in "\n\r\0"):
        # The protocol carries one line: what follows a newline would be cut
        # off (docs/control-protocol.md), so such a path is refused here.
        raise UsageError(f"{line.split(' ', 1)[-1]!r}: a path with a newline, carriage "
                         "return or NUL cannot be sent to a DSU process; rename the file")
    path = socket_path(target)
    check_ours(path)
    text = _exchange(path, line, timeout)
    if not text:
        raise ControlError(f"{path} closed without answering (not a psu process, or it "
                           "refused our credentials)", "unreachable")
    try:
        return json.loads(text.splitlines()[0])
    except ValueError:
        raise ControlError(f"{path} answered something that is not psu's protocol: "
                           f"{text[:80]!r}", "not-ours")


def _exchange(path, line, timeout):
    """Send `line` to the socket at `path`; the text it answers before closing."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(timeout)
    try:
        connection.connect(path)
        connection.sendall(line.encode() + b"\n")
        chunks = []
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except (ConnectionRefusedError, FileNotFoundError):
        raise ControlError(f"nothing listens at {path} (the process has exited?)", "unreachable")
    except socket.timeout:
        raise ControlError(f"no answer from {path} within {timeout:.0f} s", "unreachable")
    except OSError as error:
        raise ControlError(f"talking to {path} failed: {error.strerror or error}", "unreachable")
    finally:
        connection.close()
    return b"".join(chunks).decode(errors="replace").strip()


def _remove_if_stale(path, pid):
    """Removes the socket (or the half-made `<pid>.tmp`) of a process that died
    without exiting normally: no process has its pid, nothing accepts on it,
    and it is still the same file.  The runtime does the same at start-up."""
    try:
        before = os.lstat(path)
        if not stat.S_ISSOCK(before.st_mode):
            return
        if path.endswith(".sock"):
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(path)
                    return
                except ConnectionRefusedError:
                    pass
        if os.lstat(path).st_ino == before.st_ino:
            os.unlink(path)
    except OSError:
        pass


def processes():
    """(pid, socket path) of live DSU processes of this user; sockets left by
    dead ones are removed on the way."""
    folder = socket_dir()
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    except OSError as error:
        raise ControlError(f"cannot read {folder}: {error.strerror or error}; DSU processes "
                           "of yours list their sockets there (set PSU_RUNTIME_DIR?)", "unreachable")
    found = []
    for name in names:
        stem, dot, suffix = name.partition(".")
        if not stem.isdigit() or suffix not in ("sock", "tmp"):
            continue
        pid = int(stem)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            _remove_if_stale(os.path.join(folder, name), pid)
            continue
        except PermissionError:
            pass
        if suffix == "sock":
            found.append((pid, os.path.join(folder, name)))
    return found
