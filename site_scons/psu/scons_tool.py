"""The SCons adapter: `env.Tool('psu')` and `env.PSUProgram(...)`, plus `scons patch`.

Holds no analysis: it turns construction variables into calls of the library
and declares every output, dependency and setting so SCons rebuilds exactly
what must be rebuilt.

Construction variables (defaults in `generate`):
  PSU_UNITS       sources whose functions are updatable (DSU units)
  PSU_EXCLUDE     function names (or `unit:name`) kept direct
  PSU_DIRECT_STATICS  static functions whose address is never taken stay direct:
                  'all' (default), 'none', or those under N AST nodes (policy.DsuPolicy)
  PSU_VERSION     label of the version built (default: `git describe --tags --always --dirty`)
  PSU_ACCEPT      refused changes the user vouches for, by name (docs/refusals.md):
                  'type:<type name>', 'stale:<function>', 'init:<variable>' ([])
  PSU_BUILD_DIR   where generated sources, analyses and patch work go ('#.psu-build')
  PSU_PATCH_DIR   where `scons patch` writes bundles ('#psu-patches')
  PSU_PATCH_FROM  versions still deployed (revisions): the build also writes a bundle
                  from each to the version built, `<program>-<FROM>-<PSU_VERSION>.psu`
                  in PSU_PATCH_DIR (alias `psu-bundles`; `scons -c` removes them)

psu.toml is for the compiler-wrapper route (`psu cc`); this tool does not read it.
"""
import dataclasses
import json
import os
import shlex
import sys

import SCons.Action
import SCons.Builder
import SCons.Scanner.C
import SCons.Subst
import SCons.Script

from . import build, buildconfig, console, entryhooks, patch, policy, resources, revisions
from .errors import NoChanges, PsuError

_FLAGS = "$CCFLAGS $CFLAGS $_CCCOMCOM"
DEFAULT_DIRECT_STATICS = policy.DEFAULT_DIRECT_STATICS


def _exit(error):
    """Stop reading the SConscripts: `error` reported as every front end reports
    it, SCons exiting with its exit code."""
    SCons.Script.Exit(console.report_error(error))


def code_flags(env):
    """The flags that make the code (and so the build id), as the compiler sees them.

    SCons runs a compile through the shell (`sh -c`), so a string define escaped
    for it (backslash before each double quote) loses its backslashes on the way;
    psu runs the compiler without a shell, so it does the same unquoting here."""
    words = env.subst_list(_FLAGS)[0]
    if os.name != "posix":
        return [str(f) for f in words]
    line = " ".join(SCons.Subst.escape_list(words, env.get("ESCAPE", lambda word: word)))
    try:
        return shlex.split(line)
    except ValueError as error:
        _exit(PsuError(f"the compile flags {line!r} do not parse as the shell reads them: {error}"))


def _relative(node):
    """The unit's path from the project root (as in the manifest), whatever the variant dir."""
    top = node.fs.Dir("#").abspath
    return os.path.relpath(node.srcnode().abspath, top).replace(os.sep, "/")


def _inside(relative):
    """`relative` as a path under the work folder, even for a source outside the project."""
    return "/".join("_up_" if part == ".." else part for part in relative.split("/"))


# -- actions -----------------------------------------------------------------------

def _action(step, exits=False):
    """The SCons action function of one step `step(target, source, env)`.

    A PsuError is reported as every front end reports it.  A build step then
    fails with the error's exit code (SCons goes on with -k, and ends with its
    own 2).  A patch step (`exits`) makes SCons exit with that code, as `psu
    patch` does (3 for a refusal, 6 for nothing to patch): SCons turns the
    SystemExit of an action into its exit status, without a traceback."""
    def action(target, source, env):
        try:
            step(target, source, env)
        except PsuError as error:
            code = console.report_error(error)
            if exits:
                sys.exit(code)
            return code
        return 0
    action.__name__ = step.__name__
    return action


def _analyse(target, source, env):
    build.analyse_unit(env["PSU_UNIT_PATH"], env.subst("$CC"), code_flags(env),
                       env.Dir("#").abspath, env["PSU_UNIT_DSU"], target[0].abspath,
                       cache_dir=env.Dir("$PSU_BUILD_DIR").Dir("cache").abspath)


def _policy(env):
    return policy.DsuPolicy(env["PSU_EXCLUDE"], env["PSU_DIRECT_STATICS"])


def _transform(target, source, env):
    build.generate_unit(source[1].abspath, source[0].srcnode().abspath, _policy(env),
                        target[0].abspath, output_name=target[0].get_path(),
                        entry_hooks=entryhooks.wanted(code_flags(env)))


def _quiet_entry_hooks(target, source, env):
    """The compiled DSU unit's entry hooks made no-ops (entryhooks.py)."""
    entryhooks.quiet(target[0].abspath)


def _manifest(target, source, env):
    build.describe_program(env["PSU_PROGRAM"], env.subst("$PSU_VERSION"),
                           [node.abspath for node in source], env.subst("$CC"),
                           code_flags(env), _policy(env),
                           target[0].abspath, target[1].abspath)


def _bundle(target, source, env):
    config = buildconfig.from_json(env["PSU_PATCH_CONFIG"])
    to_label = env.get("PSU_TO_LABEL")
    try:
        _, text = patch.make_bundle(config, env["PSU_FROM"], env["PSU_TO"], target[0].abspath,
                                    from_sha=env["PSU_FROM_SHA"], to_sha=env["PSU_TO_SHA"],
                                    to_label=to_label)
    except NoChanges as error:
        if not to_label:
            raise
        # a release build of a deployed version itself: nothing to update
        sys.stdout.write(f"psu: {env['PSU_FROM']} -> {to_label}: {error.text}; no bundle\n")
        return
    sys.stdout.write(text + "\n" + f"psu: bundle written to {target[0].get_path()}\n")


def _explain(target, source, env):
    from . import changes
    config = buildconfig.from_json(env["PSU_PATCH_CONFIG"])
    comparison = patch.compare(config, env["PSU_FROM"], env["PSU_TO"],
                               from_sha=env["PSU_FROM_SHA"], to_sha=env["PSU_TO_SHA"])
    sys.stdout.write(changes.report(comparison.changes, comparison.old, comparison.new,
                                    verbose=True) + "\n")


def _actions():
    common = ["CC", "CCFLAGS", "CFLAGS", "CPPFLAGS", "_CPPDEFFLAGS", "_CPPINCFLAGS"]
    return {
        "analyse": SCons.Action.Action(_action(_analyse), "psu: analysing $SOURCE",
                                       varlist=common + ["PSU_UNIT_PATH", "PSU_UNIT_DSU"]),
        "transform": SCons.Action.Action(_action(_transform), "psu: generating $TARGET",
                                         varlist=common + ["PSU_EXCLUDE", "PSU_DIRECT_STATICS"]),
        "manifest": SCons.Action.Action(_action(_manifest),
                                        "psu: describing $PSU_PROGRAM in $TARGET",
                                        varlist=common + ["PSU_VERSION", "PSU_EXCLUDE", "PSU_PROGRAM",
                                                          "PSU_DIRECT_STATICS"]),
        "bundle": SCons.Action.Action(_action(_bundle, exits=True), "psu: making $TARGET",
                                      varlist=["PSU_PATCH_CONFIG", "PSU_FROM", "PSU_TO",
                                               "PSU_TO_LABEL"]),
        "explain": SCons.Action.Action(_action(_explain, exits=True),
                                       "psu: comparing $PSU_FROM and $PSU_TO"),
    }


# -- the pseudo-builder --------------------------------------------------------------

def PSUProgram(env, target, source=None, **overrides):
    """Build `target` with its DSU units updatable; also its manifest `target.psu.json`.

    The phases: check the settings, analyse (and transform) each unit, describe
    the program (manifest, identity), compile the runtime, link; then the build
    description and the bundles it asks for."""
    if overrides:
        env = env.Override(overrides)
    program, sources, units = _program_and_units(env, target, source)
    name = program.name
    work = env.Dir("$PSU_BUILD_DIR").Dir(name)
    objects, analyses = _unit_objects(env, work, sources, units)
    manifest_json, identity = _identity_objects(env, work, name, program, analyses)
    objects += identity + _runtime_objects(env, work)
    built = env.Program(program, objects,
                        LINKFLAGS=env["LINKFLAGS"] + ["-rdynamic", "-pthread"],
                        LIBS=env.get("LIBS", []) + ["dl"])
    env.Clean(built, [manifest_json, work])

    config, config_json = _build_description(env, name, sources, units)
    env.Depends(built, env.Textfile(work.File("build.json"), [env.Value(config_json)]))
    for from_ref in env.Flatten([env["PSU_PATCH_FROM"]]):
        _release_bundle(env, config, config_json, str(from_ref), manifest_json, built)
    if "patch" in SCons.Script.COMMAND_LINE_TARGETS:
        _patch_target(env, config, config_json)
    return built


def _program_and_units(env, target, source):
    """The program's node, its source nodes and its DSU units (paths from the
    root); every unit must be one of the sources."""
    sources = env.arg2nodes(env.Flatten([source]), env.fs.File)
    program = env.File(env.subst(str(target)) if not isinstance(target, (list, tuple))
                       else env.subst(str(target[0])))
    units = {_relative(env.File(u)) for u in env.Flatten([env["PSU_UNITS"]])}
    unknown = sorted(units - {_relative(s) for s in sources})
    if unknown:
        _exit(PsuError(f"PSU_UNITS of {program.name} names {', '.join(unknown)}, "
                       "which is not among its sources"))
    return program, sources, units


def _unit_objects(env, work, sources, units):
    """Each source analysed; a DSU unit transformed and its copy compiled, the
    others compiled as they are.  Returns (objects, analyses)."""
    generator_files = resources.package_files()
    objects, analyses = [], []
    for node in sources:
        relative = _relative(node)
        dsu = relative in units
        analysis = env._PSUAnalyse(work.File(_inside(relative) + ".unit.json"), node,
                                   PSU_UNIT_PATH=relative, PSU_UNIT_DSU=dsu)
        env.Depends(analysis, generator_files)
        analyses += analysis
        if not dsu:
            objects += env.Object(node)
            continue
        transformed = env._PSUTransform(work.File(_inside(relative)[:-2] + ".psu.c"),
                                        [node, analysis])
        env.Depends(transformed, generator_files)
        directory = os.path.dirname(node.srcnode().abspath)
        compiled = env.Object(transformed, CCFLAGS=env["CCFLAGS"] + ["-iquote", directory],
                              CPPPATH=env.get("CPPPATH", []) + [resources.runtime_sources_dir()])
        env.AddPostAction(compiled, SCons.Action.Action(_action(_quiet_entry_hooks), None))
        objects += compiled
    return objects, analyses


def _identity_objects(env, work, name, program, analyses):
    """The manifest beside the program, and the object embedding its identity."""
    manifest_json = program.dir.File(name + ".psu.json")
    info_c = work.File(name + ".psu_info.c")
    env._PSUManifest([manifest_json, info_c], analyses, PSU_PROGRAM=name)
    env.Depends([manifest_json, info_c], resources.package_files())
    return manifest_json, env.Object(info_c)


def _runtime_objects(env, work):
    """The runtime is psu's C11 code, not the user's: it keeps only the target
    flags (-m...), so a strict or older language setting does not apply to it."""
    target_flags = [f for f in env.Flatten([env.subst_list("$CCFLAGS $CFLAGS")[0]])
                    if str(f).startswith("-m")]
    objects = []
    for c_file in resources.runtime_sources():
        stem = os.path.splitext(os.path.basename(c_file))[0]
        objects += env.Object(work.File("runtime/" + stem + env["OBJSUFFIX"]), env.File(c_file),
                              CPPPATH=[resources.runtime_sources_dir()], CPPDEFINES=[],
                              CPPFLAGS=[], CFLAGS=[],
                              CCFLAGS=[str(f) for f in target_flags] + ["-O2", "-g", "-pthread"])
    return objects


def _build_description(env, name, sources, units):
    """What `scons patch`, `psu diff` and `psu patch` analyse with: (BuildConfig, its JSON)."""
    top = env.Dir("#").abspath
    config = buildconfig.BuildConfig(
        program=name, top=top, sources=sorted({_relative(s) for s in sources}),
        dsu_units=sorted(units), cc=env.subst("$CC"), flags=code_flags(env),
        exclude=list(env["PSU_EXCLUDE"]), direct_statics=str(env["PSU_DIRECT_STATICS"]),
        accept=[str(item) for item in env.Flatten([env["PSU_ACCEPT"]])],
        libraries=[str(lib) for lib in env.Flatten([env.get("LIBS", [])]) if str(lib)],
        work_dir=os.path.relpath(env.Dir("$PSU_BUILD_DIR").abspath, top))
    return config, buildconfig.to_json(config)


def _release_bundle(env, config, config_json, from_ref, manifest_json, built):
    """The bundle from deployed version `from_ref` to the version being built: a
    build output, rebuilt when FROM's commit or the program's manifest changes."""
    try:
        from_sha = revisions.resolve(config.top, from_ref, "FROM")
    except PsuError as error:
        error.message = f"PSU_PATCH_FROM of {config.program}: {error.text}"
        _exit(error)
    label = env.subst("$PSU_VERSION")
    output = env.Dir("$PSU_PATCH_DIR").File(patch.bundle_name(config.program, from_ref, label))
    bundle_node = env._PSUBundle(output, [env.Value(from_sha), manifest_json],
                                 PSU_PATCH_CONFIG=config_json, PSU_FROM=from_ref, PSU_TO="WORKTREE",
                                 PSU_TO_LABEL=label, PSU_FROM_SHA=from_sha, PSU_TO_SHA="WORKTREE")
    env.Depends(bundle_node, resources.package_files() + resources.runtime_sources())
    env.Alias("psu-bundles", bundle_node)
    env.Clean(built, bundle_node)


def _with_deployed_flags(config, manifest_path):
    """The build description with FROM analysed under the flags of the deployed
    build (FROM_MANIFEST=its .psu.json), for when the build files changed them."""
    try:
        with open(manifest_path) as f:
            deployed = json.load(f)
        program, flags = deployed["program"], deployed["flags"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        _exit(PsuError(f"FROM_MANIFEST={manifest_path}: not a psu manifest ({error})"))
    if program != config.program:
        _exit(PsuError(f"FROM_MANIFEST={manifest_path} describes {program}, not {config.program}"))
    return dataclasses.replace(config, from_flags=flags)


def _patch_target(env, config, config_json):
    name, top = config.program, config.top
    arguments = SCons.Script.ARGUMENTS
    from_ref, to_ref = arguments.get("FROM"), arguments.get("TO")
    try:
        from_sha = revisions.resolve(top, from_ref, "FROM")
        to_sha = revisions.resolve(top, to_ref, "TO")
    except PsuError as error:
        _exit(error)
    if arguments.get("FROM_MANIFEST"):
        config = _with_deployed_flags(config, arguments["FROM_MANIFEST"])
    if arguments.get("PREVIOUS"):
        # the bundle that produced FROM, built elsewhere: what it holds is carried
        config = dataclasses.replace(config, previous_bundle=os.path.abspath(arguments["PREVIOUS"]))
    config_json = buildconfig.to_json(config)
    outputs = [os.path.relpath(env.Dir(d).abspath, top) for d in ("$PSU_BUILD_DIR", "$PSU_PATCH_DIR")]
    to_key = revisions.worktree_key(top, outputs) if to_sha == "WORKTREE" else to_sha
    settings = dict(PSU_PATCH_CONFIG=config_json, PSU_FROM=from_ref, PSU_TO=to_ref,
                    PSU_FROM_SHA=from_sha, PSU_TO_SHA=to_sha)
    if arguments.get("PSU_EXPLAIN", "0") not in ("0", ""):
        # the change set only: nothing is built or written
        explain = env.Alias(f"psu-explain-{name}", [], _actions()["explain"], **settings)
        env.AlwaysBuild(explain)
        env.Alias("patch", explain)
        return
    output = env.Dir("$PSU_PATCH_DIR").File(patch.bundle_name(name, from_ref, to_ref))
    bundle_node = env._PSUBundle(output, [env.Value(from_sha), env.Value(to_key),
                                          env.Value(arguments.get("PREVIOUS", ""))], **settings)
    env.Depends(bundle_node, resources.package_files() + resources.runtime_sources())
    env.Alias("patch", bundle_node)


def generate(env):
    top = env.Dir("#").abspath
    env.SetDefault(
        PSU_UNITS=[], PSU_EXCLUDE=[], PSU_ACCEPT=[], PSU_DIRECT_STATICS=DEFAULT_DIRECT_STATICS,
        PSU_PATCH_FROM=[],
        PSU_BUILD_DIR="#.psu-build", PSU_PATCH_DIR="#psu-patches",
        PSU_VERSION=build.git_label(top))
    actions = _actions()
    c_scanner = SCons.Scanner.C.CScanner()
    env["BUILDERS"]["_PSUAnalyse"] = SCons.Builder.Builder(
        action=actions["analyse"], source_scanner=c_scanner)
    env["BUILDERS"]["_PSUTransform"] = SCons.Builder.Builder(action=actions["transform"])
    env["BUILDERS"]["_PSUManifest"] = SCons.Builder.Builder(action=actions["manifest"])
    env["BUILDERS"]["_PSUBundle"] = SCons.Builder.Builder(action=actions["bundle"])
    env.Tool("textfile")
    env.AddMethod(PSUProgram, "PSUProgram")


def exists(env):
    """The tool works wherever its Python dependencies import and a C compiler is found."""
    try:
        import jinja2  # noqa: F401
        import pycparser  # noqa: F401
    except ImportError:
        return False
    return bool(env.Detect(env.subst("$CC") or "cc"))
