"""The manifest: a deterministic JSON description of one version of a program (SPEC §5).

Also the build id, the hash of everything that makes the code what it is —
never of where the source was checked out or what it is called.  Which
functions are DSU functions is the policy's to say (policy.py); the manifest
records its answer, function by function.
"""
import hashlib
import json
import subprocess

from . import jsonfile
from .errors import ToolError
from .policy import Direct, DsuPolicy

FORMAT = "psu-manifest/1"


def compiler_identity(cc):
    try:
        done = subprocess.run([cc, "--version"], capture_output=True, text=True)
    except FileNotFoundError:
        raise ToolError(f"compiler '{cc}' not found", hint="set CC to a C compiler")
    first = done.stdout.splitlines()[0] if done.stdout else cc
    return first.strip()


def _unit_entry(unit, policy):
    """A unit as the manifest records it.  A unit outside the DSU units records
    its definitions too (so a declaration added to a header it includes is no
    change of its code), unless it could not be parsed."""
    if not unit.described:
        return {"dsu": False, "text_hash": unit.text_hash, "described": False}
    functions, variables = {}, {}
    for f in unit.functions:
        direct = policy.direct_reason(f) if unit.dsu else Direct.OUTSIDE_DSU_UNITS
        functions[f.qualname] = _function_entry(f, direct)
        for local in f.locals:
            variables[local.qualname] = _local_entry(local, f)
    for v in unit.variables:
        if v.definition:
            variables[v.qualname] = _variable_entry(v)
    return {"dsu": unit.dsu, "text_hash": unit.text_hash, "functions": functions,
            "variables": variables, "helpers": unit.helpers, "types": unit.types}


def _function_entry(f, direct):
    entry = {
        "name": f.name, "static": f.static, "line": f.location.line, "direct": direct,
        "variadic": f.variadic,
        "signature": f.signature.replace("@NAME@", f.name),
        "signature_hash": f.signature_hash, "body_hash": f.body_hash,
        "callees": f.callees, "reads": f.reads,
        "signature_types": f.signature_types, "body_types": f.body_types,
        "members": f.members,
    }
    if f.header_statics:
        entry["header_statics"] = f.header_statics
    return entry


def _local_entry(local, function):
    """A function-local static of `function`."""
    entry = {
        "name": local.name, "scope": "function", "function": function.name,
        "static": True, "thread_local": local.thread_local, "const": local.const,
        "line": local.location.line, "type": local.type,
        "type_hash": local.type_hash, "init_hash": local.init_hash,
        "type_refs": local.type_refs,
    }
    if local.unbound:
        entry["unbound"] = local.unbound
    return entry


def _variable_entry(v):
    """A file-scope variable the unit defines."""
    entry = {
        "name": v.name, "scope": "file", "static": v.static,
        "thread_local": v.thread_local, "const": v.const, "line": v.locations[0].line,
        "type": v.type, "type_hash": v.type_hash, "init_hash": v.init_hash,
        "type_refs": v.type_refs, "reads": v.reads,
    }
    if v.unbound:
        entry["unbound"] = v.unbound
    return entry


def build(program, label, units, compiler, flags, policy=DsuPolicy()):
    """The manifest of a program built from `units` (model.Unit, DSU and plain)
    under `policy` (a policy.DsuPolicy)."""
    body = {
        "format": FORMAT, "program": program, "compiler": compiler,
        "flags": list(flags), "exclude": sorted(policy.exclude), "direct_statics": policy.direct_statics,
        "units": {u.path: _unit_entry(u, policy)
                  for u in sorted(units, key=lambda u: u.path)},
    }
    manifest = dict(body, label=label, build_id=build_id(body))
    return manifest


def build_id(body):
    """Hash of what makes the code: the manifest without label and build id."""
    content = {k: v for k, v in body.items() if k not in ("label", "build_id")}
    return hashlib.sha256(jsonfile.dumps(content).encode()).hexdigest()


def write(manifest, path):
    jsonfile.write(path, manifest)


def load(path):
    with open(path) as f:
        return json.load(f)
