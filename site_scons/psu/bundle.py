"""Bundle files (`*.psu`): write, read and verify them (format: docs/bundle-format.md)."""
import hashlib
import json
import re
import struct

from . import jsonfile
from .errors import BundleError

MAGIC = b"PSUBNDL1"
HEADER = struct.Struct("<8sII")
SECTION = struct.Struct("<16sQQ")
TRAILER_SIZE = 32
MAX_SECTIONS = 32
REQUIRED = ("manifest", "program", "base", "target", "label", "code")
_BUILD_ID = re.compile(rb"[0-9a-f]{64}")


def pack(sections):
    """Bytes of a bundle holding `sections` (name -> bytes), in a fixed order."""
    names = [n for n in REQUIRED if n in sections] + sorted(n for n in sections if n not in REQUIRED)
    offset = HEADER.size + SECTION.size * len(names)
    table, payload = b"", b""
    for name in names:
        data = sections[name]
        table += SECTION.pack(name.encode().ljust(16, b"\0"), offset, len(data))
        payload += data
        offset += len(data)
    body = HEADER.pack(MAGIC, len(names), 0) + table + payload
    return body + hashlib.sha256(body).digest()


def write(path, manifest, code, state=None):
    sections = {
        "manifest": jsonfile.dumps(manifest).encode(),
        "program": manifest["program"].encode(),
        "base": manifest["base_build_id"].encode(),
        "target": manifest["target_build_id"].encode(),
        "label": manifest["label"].encode(),
        "code": code,
    }
    if state is not None:
        sections["state"] = state
    data = pack(sections)
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def unpack(data, source="bundle"):
    """Sections of a bundle after every check the C runtime also makes."""
    if len(data) < HEADER.size + TRAILER_SIZE:
        raise BundleError(f"{source}: not a psu bundle (only {len(data)} bytes)")
    body, trailer = data[:-TRAILER_SIZE], data[-TRAILER_SIZE:]
    if data[:8] != MAGIC:
        raise BundleError(f"{source}: not a psu bundle (bad magic)")
    if hashlib.sha256(body).digest() != trailer:
        raise BundleError(f"{source}: checksum mismatch: the file is corrupt or truncated")
    _, count, _ = HEADER.unpack_from(body)
    if not 1 <= count <= MAX_SECTIONS:
        raise BundleError(f"{source}: bad section count {count}")
    table_end = HEADER.size + SECTION.size * count
    if table_end > len(body):
        raise BundleError(f"{source}: section table runs past the end")
    sections = {}
    for index in range(count):
        raw_name, offset, size = SECTION.unpack_from(body, HEADER.size + SECTION.size * index)
        name = raw_name.split(b"\0")[0].decode("ascii", "replace")
        if offset < table_end or offset + size > len(body):
            raise BundleError(f"{source}: section '{name}' lies outside the file")
        if name in sections:
            raise BundleError(f"{source}: section '{name}' appears twice")
        sections[name] = body[offset:offset + size]
    missing = [n for n in REQUIRED if n not in sections]
    if missing:
        raise BundleError(f"{source}: missing section(s) {', '.join(missing)}")
    if b"\0" in sections["program"] or b"\0" in sections["label"] or len(sections["label"]) > 255:
        raise BundleError(f"{source}: section 'program' or 'label' is not text")
    for name in ("base", "target"):
        if not _BUILD_ID.fullmatch(sections[name]):
            raise BundleError(f"{source}: section '{name}' is not a build id (64 hex digits)")
    return sections


def read(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise BundleError(f"{path}: cannot read: {error.strerror}")
    sections = unpack(data, path)
    try:
        manifest = json.loads(sections["manifest"])
    except ValueError as error:
        raise BundleError(f"{path}: manifest is not JSON: {error}")
    return manifest, sections, hashlib.sha256(data).hexdigest()
