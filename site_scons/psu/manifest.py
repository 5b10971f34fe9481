"""The manifest: a deterministic JSON description of one version of a program (SPEC §5).

Also the DSU policy (which functions go through the runtime) and the build id,
the hash of everything that makes the code what it is — never of where the
source was checked out or what it is called.
"""
import hashlib
import json
import subprocess

from . import jsonfile
from .errors import ToolError, UsageError

FORMAT = "psu-manifest/1"
ENTRY_POINTS = {"main"}
TRANSFORMER_PREFIX = "psu_transform_"
# Default of PSU_DIRECT_STATICS (see direct_reason); bench/sqlite_bench.py measures
# the choices: on SQLite, "all" keeps ~91 % of plain throughput, "none" ~62 %.
DEFAULT_DIRECT_STATICS = "all"


def direct_limit(direct_statics):
    """The body size (AST nodes) below which a static function whose address is
    never taken stays direct: "all" (no limit), "none" (0), or a number."""
    text = str(direct_statics).strip().lower()
    if text in ("all", "true"):
        return float("inf")
    if text in ("none", "false", "0", ""):
        return 0
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"psu: PSU_DIRECT_STATICS={direct_statics!r}: expected all, none "
                         "or a number of AST nodes")


def direct_reason(function, exclude=(), direct_statics=DEFAULT_DIRECT_STATICS):
    """Why `function` is called directly rather than through the runtime, or None.

    A static function whose address is never taken can only be called by name
    from its own unit.  Left direct (`direct_statics`), the compiler inlines and
    optimises it as in the plain build, and it costs no updatability: a changed
    direct function pulls every DSU function that reaches it into the patch
    (SPEC 4.4), as kpatch does for inlined code.  Calls through pointers always
    reach trampolines, since such functions stay DSU functions.
    """
    if function.name in ENTRY_POINTS:
        return "entry point"
    if function.name.startswith(TRANSFORMER_PREFIX):
        return "state transformer"
    if function.macro_made:
        return "defined by a macro"
    if function.inline:
        return "inline"
    if function.name in exclude or function.qualname in exclude:
        return "excluded"
    if function.static and not function.address_taken and \
            function.size < direct_limit(direct_statics):
        return "static, called by name"
    return None


def dsu_names(unit, exclude=(), direct_statics=DEFAULT_DIRECT_STATICS):
    return {f.name for f in unit.functions if direct_reason(f, exclude, direct_statics) is None}


def compiler_identity(cc):
    try:
        done = subprocess.run([cc, "--version"], capture_output=True, text=True)
    except FileNotFoundError:
        raise ToolError(f"psu: compiler '{cc}' not found", hint="set CC to a C compiler")
    first = done.stdout.splitlines()[0] if done.stdout else cc
    return first.strip()


def _unit_entry(unit, exclude, direct_statics):
    """A unit as the manifest records it.  A unit outside the DSU units records
    its definitions too (so a declaration added to a header it includes is no
    change of its code), unless it could not be parsed."""
    if not unit.described:
        return {"dsu": False, "text_hash": unit.text_hash, "described": False}
    functions, variables = {}, {}
    for f in unit.functions:
        functions[f.qualname] = {
            "name": f.name, "static": f.static, "line": f.location.line,
            "direct": direct_reason(f, exclude, direct_statics) if unit.dsu else "outside the DSU units",
            "variadic": f.variadic,
            "signature": f.signature.replace("@NAME@", f.name),
            "signature_hash": f.signature_hash, "body_hash": f.body_hash,
            "callees": f.callees, "reads": f.reads,
            "signature_types": f.signature_types, "body_types": f.body_types,
            "members": f.members,
        }
        if f.header_statics:
            functions[f.qualname]["header_statics"] = f.header_statics
        for local in f.locals:
            variables[local.qualname] = {
                "name": local.name, "scope": "function", "function": f.name,
                "static": True, "thread_local": local.thread_local, "const": local.const,
                "line": local.location.line, "type": local.type,
                "type_hash": local.type_hash, "init_hash": local.init_hash,
                "type_refs": local.type_refs,
            }
            if local.unbound:
                variables[local.qualname]["unbound"] = local.unbound
    for v in unit.variables:
        if not v.definition:
            continue
        variables[v.qualname] = {
            "name": v.name, "scope": "file", "static": v.static,
            "thread_local": v.thread_local, "const": v.const, "line": v.locations[0].line,
            "type": v.type, "type_hash": v.type_hash, "init_hash": v.init_hash,
            "type_refs": v.type_refs, "reads": v.reads,
        }
        if v.unbound:
            variables[v.qualname]["unbound"] = v.unbound
    return {"dsu": unit.dsu, "text_hash": unit.text_hash, "functions": functions,
            "variables": variables, "helpers": unit.helpers, "types": unit.types}


def build(program, label, units, compiler, flags, exclude=(),
          direct_statics=DEFAULT_DIRECT_STATICS):
    """The manifest of a program built from `units` (model.Unit, DSU and plain)."""
    body = {
        "format": FORMAT, "program": program, "compiler": compiler,
        "flags": list(flags), "exclude": sorted(exclude), "direct_statics": str(direct_statics),
        "units": {u.path: _unit_entry(u, exclude, direct_statics)
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
