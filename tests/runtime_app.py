"""The runtime's own test programs (tests/c/app.c and tests/c/faults.c) and
the bundles the runtime tests write by hand from shared objects, without
psu's Python side (docs/bundle-format.md is the contract both follow)."""
import hashlib
import json
import struct

from projects import DEADLINE, Process, control_connection, control_exchange, control_request, wait_for

A, B, C_ID, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)


def bundle_bytes(sections):
    """docs/bundle-format.md: header, section table, data, SHA-256 trailer."""
    names = list(sections)
    offset = 16 + 32 * len(names)
    table, data = b"", b""
    for name in names:
        blob = sections[name]
        table += name.encode().ljust(16, b"\0") + struct.pack("<QQ", offset, len(blob))
        data += blob
        offset += len(blob)
    body = b"PSUBNDL1" + struct.pack("<II", len(names), 0) + table + data
    return body + hashlib.sha256(body).digest()


def make_bundle(build, path, code="v2", base=A, target=B, label="v2", program="app", state=None):
    """A bundle at `path` of the built objects `code` (and `state`); `label`
    may be bytes (not UTF-8: the manifest gets it as Latin-1)."""
    label_bytes = label if isinstance(label, bytes) else label.encode()
    sections = {
        "manifest": json.dumps({"base": base, "target": target,
                                "label": label_bytes.decode("latin-1") if isinstance(label, bytes)
                                else label}).encode(),
        "program": program.encode(), "base": base.encode(), "target": target.encode(),
        "label": label_bytes, "code": build[code].read_bytes(),
    }
    if state:
        sections["state"] = build[state].read_bytes()
    path.write_bytes(bundle_bytes(sections))
    return path


class App(Process):
    """tests/c/app.c or faults.c running: says "ready" once started, answers
    "call N" with "answer M", ends on "quit".  Its psu log lines are kept
    (PSU_QUIET is not set unless `extra_env` sets it); the runtime makes its
    runtime folder itself."""

    def __init__(self, exe, runtime_dir, extra_env=None, user=None):
        super().__init__([exe], ".", runtime_dir, stdin=True, quiet=False, env=extra_env, user=user,
                         make_runtime_dir=False)
        self.expect("ready")

    def call(self, n):
        self.send(f"call {n}")
        return int(self.expect("answer ").split()[1])

    def request(self, line, path=None):
        """A control request, to its socket or to another at `path`."""
        self.wait_for_socket()
        return control_request(path or self.socket, line, DEADLINE)

    def connect(self):
        """An open connection to its control socket (for requests sent piecemeal)."""
        self.wait_for_socket()
        return control_connection(self.socket, DEADLINE)

    def exchange(self, payload):
        """Sends raw bytes as one request; returns the answer's bytes."""
        self.wait_for_socket()
        return control_exchange(self.socket, payload, DEADLINE)

    def ask_to_exit(self):
        self.send("release 1000000")
        self.send("quit")


__all__ = ["A", "B", "C_ID", "D", "App", "bundle_bytes", "make_bundle", "wait_for"]
