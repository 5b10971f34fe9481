"""Making a bundle: export two revisions, analyse both like the release build,
compare, learn what older bundles hold, plan what to compile (bundleplan.py),
generate the patch units, compile and link them, pack the bundle.

Knows nothing of SCons: the build adapters hand it a `buildconfig.BuildConfig`;
revisions come from `revisions`, changed types' layouts from `typelayout`.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field, replace

from . import bundle, bundleplan, changes, codegen, frontend, jsonfile, manifest, resources, revisions, typelayout
from .errors import RefusedChanges, ToolError, UnresolvedSymbols, UsageError

# -- analysis ----------------------------------------------------------------------

def analyse_tree(config, root, label):
    """Units and manifest of the program as its sources stand under `root`."""
    units = []
    for path in config.sources:
        where = root
        if not os.path.exists(os.path.join(root, path)):
            if path not in config.unit_flags or path in config.dsu_units or \
                    not os.path.exists(os.path.join(config.top, path)):
                continue
            where = config.top    # a source the build generated (not in the revision)
        units.append(frontend.analyse(path, config.cc, config.flags_of(path, where), where,
                                      dsu=path in config.dsu_units,
                                      cache_dir=config.path("cache")))
    compiler = manifest.compiler_identity(config.cc)
    flags = config.flags if config.manifest_flags is None else config.manifest_flags
    return units, manifest.build(config.program, label, units, compiler, flags, config.policy)


@dataclass
class Comparison:
    old: dict
    new: dict
    new_units: list
    new_root: str
    to_sha: str
    changes: object
    old_units: list = field(default_factory=list)


def compare(config, from_ref, to_ref, from_sha=None, to_sha=None, to_label=None):
    """Analyse FROM and TO like the release build and compare them (raises
    RefusedChanges or NoChanges)."""
    from_sha = from_sha or revisions.resolve(config.top, from_ref, "FROM")
    to_sha = to_sha or revisions.resolve(config.top, to_ref, "TO")
    old_root = revisions.export(config, from_sha)
    new_root = config.top if to_sha == "WORKTREE" else revisions.export(config, to_sha)
    old_config = config
    if config.from_flags is not None:
        old_config = replace(config, flags=list(config.from_flags), unit_flags={}, manifest_flags=None)
    old_units, old = analyse_tree(old_config, old_root, from_ref)
    new_units, new = analyse_tree(config, new_root, to_label or to_ref)
    try:
        change_set = changes.compare(old, new, accept=config.accept)
    except RefusedChanges as refused:
        raise typelayout.with_layouts(config, refused, old_root, new_root, old, new) from None
    return Comparison(old, new, new_units, new_root, to_sha, change_set, old_units)


def may_not_return(units):
    """Functions of the DSU `units` a call of which may never return, each with
    why: it has a loop nothing leaves, or calls such a function, or it is a
    thread's start routine (passed to pthread_create by one of these units; a
    thread may run it for as long as the process lives).  A replaced function's
    calls in progress run their old version to the end, so for these the new
    code may never run but on their next call (SPEC §2)."""
    dsu_units = [u for u in units if u.dsu]
    external = {f.name: f.qualname for u in dsu_units for f in u.functions if not f.static}
    reasons, callees, routines = {}, {}, {}
    for unit in dsu_units:
        own = {f.name: f.qualname for f in unit.functions}

        def resolve(name):       # a name in this unit: its own static, else the global
            return own.get(name) or external.get(name)
        for name in unit.thread_routines:
            if resolve(name):
                routines[resolve(name)] = "a thread's start routine"
        for f in unit.functions:
            callees[f.qualname] = [q for q in map(resolve, f.callees) if q and q != f.qualname]
            if f.loops_forever:
                reasons[f.qualname] = "loops forever"
    changed = True
    while changed:
        changed = False
        for qualname, called in sorted(callees.items()):
            reached = next((q for q in called if q in reasons), None)
            if qualname not in reasons and reached:
                reasons[qualname] = f"calls {reached.rsplit(':', 1)[-1]}, which may not return"
                changed = True
    return {**routines, **reasons}


# -- building the bundle -----------------------------------------------------------

# How a bundle's objects reach other modules and their own functions, after
# the user's flags.  They are loaded with RTLD_NOW (every symbol bound before
# any of their code runs), so a call of a function another module defines
# needs no lazily bound PLT stub: -fno-plt makes it one `call *GOT` rather
# than a call of a stub that jumps through the GOT.  The code object is
# linked -Bsymbolic-functions (its calls of its own functions bind to its own
# definitions, never to the program's same-named ones), which
# -fno-semantic-interposition tells the compiler too, so that it may inline
# them as it does in the program.
_CODEGEN = {codegen.Role.CODE: ["-fPIC", "-fno-plt", "-fno-semantic-interposition"],
            codegen.Role.STATE: ["-fPIC", "-fno-plt"]}


def _compile(config, root, source):
    command = [config.cc, "-c", *source.flags, *_CODEGEN[source.role], *source.extra,
               "-o", source.obj, source.path]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolError(f"compiling the patch failed:\n{' '.join(command)}\n{done.stderr.strip()}")


# What ld says of a symbol the object declares hidden but the bundle does not define.
_HIDDEN_REFERENCE = re.compile(r"undefined reference to `([^']+)'|"
                               r"(?:hidden|internal|protected) symbol `([^']+)' isn't defined|"
                               r"against undefined (?:hidden |internal |protected )?symbol `([^']+)'")


def _link(config, root, objects, output, extra=()):
    command = [config.cc, "-shared", "-fPIC", "-o", output, *objects, *extra]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if done.returncode == 0:
        return
    unreachable = sorted({next(filter(None, names)) for names in _HIDDEN_REFERENCE.findall(done.stderr)})
    if unreachable:
        shown = ", ".join(unreachable[:8]) + (f" and {len(unreachable) - 8} more" if len(unreachable) > 8 else "")
        raise UnresolvedSymbols(
            f"the patch's code refers to {len(unreachable)} symbol(s) the running program "
            f"does not export: {shown}",
            hint="they are declared with hidden or internal visibility (an attribute, often behind "
                 "a macro, or -fvisibility=hidden): a bundle reaches DSU functions through aliases "
                 "the program exports, but variables and functions of units outside PSU_UNITS only "
                 "if the program exports them; give those default visibility. "
                 "The linker's last words:\n" + "\n".join(done.stderr.strip().splitlines()[-6:]),
            symbols=unreachable)
    raise ToolError(f"linking the patch failed:\n{' '.join(command)}\n{done.stderr.strip()}")


# -- making a bundle, step by step ---------------------------------------------------
#
# compare FROM and TO -> learn what older bundles provide -> plan what to compile
# -> generate the units' text -> compile -> link -> pack.

def make_bundle(config, from_ref, to_ref, output, from_sha=None, to_sha=None, to_label=None):
    """Build the bundle `output` updating FROM to TO; returns (bundle manifest, report)."""
    comparison = compare(config, from_ref, to_ref, from_sha, to_sha, to_label)
    previous = previous_bundle(config, comparison.old["build_id"])
    contents = plan_bundle(config, comparison, previous)
    work = work_folder(config, comparison)
    label = to_label or (to_ref if comparison.to_sha != "WORKTREE" else comparison.new["label"])
    lingering = replaced_may_not_return(comparison)
    try:
        code_bytes, state_bytes = build_objects(config, comparison, contents, work, label, lingering)
    except UnresolvedSymbols as unresolved:
        # What the plan left out defines them: data a header defines in a unit
        # (the analysis reads a unit's own definitions only).  Every DSU unit
        # compiled, their DSU definitions still cut, provides it as before.
        contents = plan_bundle(config, comparison, previous, every_unit=True)
        if not contents.every_unit_added:
            raise
        contents.fallback = unresolved.symbols
        code_bytes, state_bytes = build_objects(config, comparison, contents, work, label, lingering)
    text_report, full_report = _reports(comparison, contents, previous, lingering)
    bundle_manifest = manifest_of(config, comparison, contents, from_ref, label, full_report,
                                  lingering)
    pack(config, output, bundle_manifest, code_bytes, state_bytes)
    return bundle_manifest, text_report


def manifest_of(config, comparison, contents, from_ref, label, report, lingering):
    """The bundle's manifest (bundle-format.md): what `psu inspect` prints."""
    return {
        "format": "psu-bundle/1", "program": config.program,
        "base_build_id": comparison.old["build_id"], "base_label": from_ref,
        "target_build_id": comparison.new["build_id"], "label": label,
        "compiler": comparison.new["compiler"], "flags": comparison.new["flags"],
        "changes": comparison.changes.to_json(), "report": report,
        "may_not_return": lingering,
        "carried": contents.carried, "in_bundles": contents.in_bundles,
        "compiled_units": sorted(contents.code_units),
    }


@dataclass
class PreviousBundle:
    """What the bundle that produced FROM left in bundles (None: not known)."""

    path: str
    label: str
    in_bundles: list


def previous_bundle(config, from_build_id):
    """The record of the bundle whose target is FROM's build: the one named by
    `config.previous_bundle`, else the last one built in this work folder
    (`pack` records each); None when there is none (FROM is a release, or the
    bundle was built elsewhere)."""
    if config.previous_bundle:
        found, _, _ = bundle.read(config.previous_bundle)
        if found.get("target_build_id") != from_build_id:
            raise UsageError(f"{config.previous_bundle} updates to build "
                             f"{str(found.get('target_build_id'))[:12]}, not to FROM's "
                             f"{from_build_id[:12]}")
        record = {"bundle": config.previous_bundle, "label": found.get("label"),
                  "in_bundles": found.get("in_bundles")}
    else:
        try:
            with open(_record_path(config, from_build_id)) as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
    if record.get("in_bundles") is None:    # a bundle from before psu recorded it
        return None
    return PreviousBundle(record["bundle"], record.get("label"), list(record["in_bundles"]))


def _record_path(config, build_id):
    return config.path("bundles", f"{config.program}-{build_id}.json")


def build_objects(config, comparison, contents, work, label, lingering):
    """Generate, compile and link the planned units: the bytes of the code
    object and of the state object (None when the bundle adds no state)."""
    sources = generate(config, comparison, contents, work, label, lingering)
    objects = compile_sources(config, comparison.new_root, sources)
    return link(config, comparison.new_root, objects, work)


def plan_bundle(config, comparison, previous, every_unit=False):
    """What the bundle compiles (bundleplan.plan_bundle over TO's analysis);
    `every_unit`: every DSU unit, when what the plan chose left a symbol out."""
    units = {u.path: u for u in comparison.new_units}
    dsu_by_path = {path: config.policy.dsu_names(units[path])
                   for path, u in comparison.new["units"].items() if u["dsu"]}
    return bundleplan.plan_bundle(comparison.changes, units, dsu_by_path,
                                  previous.in_bundles if previous else (), every_unit)


def work_folder(config, comparison):
    key = hashlib.sha256(f"{comparison.old['build_id']}{comparison.new['build_id']}".encode()).hexdigest()[:16]
    work = config.path("patches", f"{config.program}-{key}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    return work


def replaced_may_not_return(comparison):
    """Replaced functions whose calls in the running version may never end."""
    never_returning = may_not_return(comparison.old_units)
    return {q: never_returning[q] for q in sorted(comparison.changes.replaced) if q in never_returning}


def _reports(comparison, plan, previous, lingering):
    """The change report (short and verbose) with what the bundle carries."""
    change_set, old, new = comparison.changes, comparison.old, comparison.new
    notes = []
    if lingering:
        notes.append("  may still run their old version until their next call:\n" +
                     "\n".join(f"    {q} ({why})" for q, why in lingering.items()))
    if previous is None:
        notes.append("  carries nothing: no bundle built here updates to FROM's build "
                     f"{old['build_id'][:12]} (a release; if a process runs a bundle "
                     "built elsewhere, that bundle stays loaded for its functions and "
                     "psu apply and psu status name them)")
    elif plan.carried or plan.stranded:
        notes.append(f"  carries {len(plan.carried)} function(s) unchanged since "
                     f"{previous.label}, current in older bundles, so those unload" +
                     "".join(f"\n    {q}" for q in plan.carried[:20]) +
                     (f"\n    and {len(plan.carried) - 20} more" if len(plan.carried) > 20 else ""))
        if plan.stranded:
            notes.append("  stay in an older bundle (no longer DSU functions): " +
                         ", ".join(plan.stranded))
    if plan.fallback:
        notes.append("  compiled every DSU unit: the units psu chose left "
                     + ", ".join(plan.fallback[:8]) + " undefined (defined by a header a "
                     "unit includes?)")
    note = "".join("\n" + n for n in notes)
    return (changes.report(change_set, old, new) + note,
            changes.report(change_set, old, new, verbose=True) + note)


@dataclass
class Source:
    """One generated C file, compiled with `flags` then `extra` into `obj`."""

    path: str
    obj: str
    flags: list
    extra: list
    role: codegen.Role    # CODE or STATE: which shared object it goes into


# Constant data and functions each in a section of its own, so the link keeps
# only what the exported tables (and default-visibility symbols) reach.
SECTIONS = ["-ffunction-sections", "-fdata-sections"]
# A bundle's units leave out definitions: what only those used (a static
# function or table, a macro) is unused here, which the user's -Werror must
# not turn into an error.
_PSU_WARNINGS = ["-Wno-unused-function", "-Wno-unused-variable", "-Wno-unused-but-set-variable",
                 "-Wno-unused-const-variable", "-Wno-unused-macros"]


def generate(config, comparison, plan, work, label, lingering):
    """The C text of every unit the plan compiles, and the bundle's tables."""
    root, new, change_set = comparison.new_root, comparison.new, comparison.changes
    include = ["-I" + resources.runtime_sources_dir(), *_PSU_WARNINGS]
    units = {u.path: u for u in comparison.new_units}
    dsu_by_path = {path: config.policy.dsu_names(units[path])
                   for path, u in new["units"].items() if u["dsu"]}
    # external DSU functions, reached through their psu_export_ aliases: the
    # running program's, and (from its state object) those this patch adds
    program_functions = {f.name for path, dsu in dsu_by_path.items() for f in units[path].functions
                         if f.name in dsu and not f.static}
    # constant data with external linkage the DSU units define: the bundle reads its own copies
    constants = {v.name for path in dsu_by_path for v in units[path].variables
                 if v.const and not v.static and v.definition and not v.thread_local}
    sources = []
    for role, unit_plans in ((codegen.Role.CODE, plan.code_units), (codegen.Role.STATE, plan.state_units)):
        for path, unit_plan in sorted(unit_plans.items()):
            with open(os.path.join(root, path), encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
            generated = os.path.join(work, role, path)
            os.makedirs(os.path.dirname(generated), exist_ok=True)
            with open(generated, "w") as f:
                f.write(codegen.transform(units[path], text, role, dsu_by_path[path], generated,
                                          unit_plan, program_functions, constants))
            quote = ["-iquote", os.path.dirname(path) or "."]
            sources.append(Source(generated, generated + ".o", config.flags_of(path, root),
                                  quote + include + SECTIONS, role))
    main = os.path.join(work, "bundle_main.c")
    with open(main, "w") as f:
        f.write(codegen.bundle_main(label, comparison.old["build_id"], new["build_id"],
                                    plan.switched, change_set.transformed, plan.carried, lingering))
    sources.append(Source(main, main + ".o", config.flags, include, codegen.Role.CODE))
    if plan.state_units:
        state_c = os.path.join(work, "state_main.c")
        with open(state_c, "w") as f:
            f.write(codegen.state_main(label, set(change_set.added)))
        sources.append(Source(state_c, state_c + ".o", config.flags, include, codegen.Role.STATE))
    return sources


def compile_sources(config, root, sources):
    """Compile every generated file, two at a time; {role: [object]}."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda s: _compile(config, root, s), sources))
    objects = {codegen.Role.CODE: [], codegen.Role.STATE: []}
    for s in sources:
        objects[s.role].append(s.obj)
    return objects


def link(config, root, objects, work):
    """The code object (and the state object, if the bundle adds to the state):
    their bytes."""
    libraries = [f"-l{name}" for name in config.libraries]
    code_so = os.path.join(work, "code.so")
    _link(config, root, objects[codegen.Role.CODE], code_so,
          ["-Wl,-Bsymbolic-functions", "-Wl,--gc-sections", *libraries])
    with open(code_so, "rb") as f:
        code_bytes = f.read()
    if not objects[codegen.Role.STATE]:
        return code_bytes, None
    state_so = os.path.join(work, "state.so")
    _link(config, root, objects[codegen.Role.STATE], state_so, ["-Wl,--gc-sections", *libraries])
    with open(state_so, "rb") as f:
        return code_bytes, f.read()


def pack(config, output, bundle_manifest, code_bytes, state_bytes):
    """Write the bundle, and record what it leaves in bundles for the next one
    built here (`previous_bundle`)."""
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    bundle.write(output, bundle_manifest, code_bytes, state_bytes)
    record = _record_path(config, bundle_manifest["target_build_id"])
    os.makedirs(os.path.dirname(record), exist_ok=True)
    # Several bundles may lead to one build (from v1 and from v2, say): a
    # process may run any of them, so the next bundle carries what any holds.
    in_bundles = set(bundle_manifest["in_bundles"])
    try:
        with open(record) as f:
            in_bundles |= set(json.load(f).get("in_bundles") or ())
    except (OSError, ValueError):
        pass
    jsonfile.write(record, {"bundle": os.path.abspath(output), "label": bundle_manifest["label"],
                            "base_build_id": bundle_manifest["base_build_id"],
                            "in_bundles": sorted(in_bundles)})


def bundle_name(program, from_ref, to_ref):
    def clean(ref):
        return "".join(c if c.isalnum() or c in "._-" else "_" for c in ref)
    return f"{program}-{clean(from_ref)}-{clean(to_ref)}.psu"
