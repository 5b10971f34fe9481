"""The `psu` command: apply, status, rollback, ps, inspect, diff, patch.

A front end: it prints (errors through console.report_error, as `psu cc` and
the SCons adapter do) and chooses exit codes; the library raises typed
exceptions.  Exit codes: docs/operations.md.
"""
import argparse
import os
import sys

from . import __version__, console, jsonfile
from .errors import ControlError, PsuError, UsageError

EXIT_OK = 0
EXIT_UNREACHABLE = 8
# What the running process answered, by class of its refusal.
EXIT_BY_ERROR_CLASS = {
    "format": 10, "checksum": 10, "io": 10,
    "program": 11, "base": 11,
    "load": 12, "link": 12, "capacity": 12,
    "transform": 13,
    "history": 14,
    "request": 2,
}


def _print_json(data):
    sys.stdout.write(jsonfile.dumps(data))


# -- one process: apply, rollback, status ------------------------------------------

def _ask_one_process(arguments, request, describe):
    """Send `request` to the process `arguments.target`; print its answer (as
    JSON, or `describe(arguments, answer)` when it succeeded, or its refusal);
    the exit code follows the class of the refusal."""
    from . import control
    answer = control.request(arguments.target, request)
    if arguments.json:
        _print_json(answer)
    if not answer.get("ok"):
        if not arguments.json:
            console.report_error(ControlError(f"refused ({answer.get('error')}): "
                                              f"{answer.get('message')}", answer.get("error")))
        return EXIT_BY_ERROR_CLASS.get(answer.get("error"), 1)
    if not arguments.json:
        describe(arguments, answer)
    return EXIT_OK


def command_apply(arguments):
    path = os.path.abspath(arguments.bundle)
    if not os.path.isfile(path):
        raise UsageError(f"{arguments.bundle}: no such bundle file")
    return _ask_one_process(arguments, f"apply {path}", _describe_applied)


def _describe_applied(arguments, answer):
    if answer.get("result") == "already":
        print(f"psu: {arguments.target}: already at {answer.get('label')} "
              f"({str(answer.get('build_id'))[:12]}); nothing changed")
        return
    print(f"psu: {arguments.target}: applied {answer.get('label')}: "
          f"{str(answer.get('from'))[:12]} -> {str(answer.get('to'))[:12]}, "
          f"{answer.get('functions')} function(s) switched (module {answer.get('module')})")
    _print_old_versions(answer)
    _print_older_bundles_kept(answer)


def _print_older_bundles_kept(answer):
    """Older bundles the applied one did not take functions over from: they stay loaded."""
    for item in answer.get("older_bundles_kept") or []:
        print(f"  bundle {item.get('label')} (module {item.get('module')}) stays loaded: this "
              f"bundle does not carry {', '.join(item.get('functions') or [])} (built without "
              f"the record of the bundle that produced the running build)")


def _print_old_versions(answer):
    """The replaced functions with calls in progress in an old version (SPEC §2)."""
    running = answer.get("old_versions_running") or []
    if running:
        print("  the new code runs on their next call; calls in progress run their old version:")
    for item in running:
        how = "still running" if item.get("certain") else "may still run"
        print(f"    {item['function']}: {how} {item.get('label')} (module {item.get('module')})")


def command_rollback(arguments):
    return _ask_one_process(arguments, "rollback", _describe_rolled_back)


def _describe_rolled_back(arguments, answer):
    print(f"psu: {arguments.target}: rolled back to {answer.get('label')} "
          f"({str(answer.get('to'))[:12]}), {answer.get('functions')} function(s) switched")


def command_status(arguments):
    return _ask_one_process(arguments, "status", _describe_status)


def _describe_status(arguments, answer):
    print(f"{answer['program']} (pid {answer['pid']}): {answer['label']} "
          f"{answer['build_id'][:12]}, {answer.get('updates', 0)} update(s), "
          f"{answer.get('threads', 0)} thread(s) registered, "
          f"{answer.get('unloaded', 0)} module(s) unloaded so far")
    print(f"  {'module':>6}  {'kind':<10} {'label':<16} {'current':>7} {'active':>6}  state")
    for m in answer.get("modules", []):
        print(f"  {m['index']:>6}  {m['kind']:<10} {str(m.get('label')):<16} "
              f"{m['functions_current']:>7} {m['active_calls']:>6}  {m['state']}")
    # older bundles still current for some functions (not carried by a later one)
    for m in answer.get("modules", []):
        if m.get("functions") and m["kind"] == "bundle" and m.get("build_id") != answer["build_id"]:
            more = m["functions_current"] - len(m["functions"])
            print(f"  bundle {m.get('label')} (module {m['index']}) stays loaded for: "
                  f"{', '.join(m['functions'])}" + (f" and {more} more" if more > 0 else ""))
    _print_old_versions(answer)


# -- every process of a program: apply|status|rollback --all ---------------------------

# `psu apply|rollback --all` exit code when nothing failed but some processes
# run another version: they were left alone, so not every process is at the target.
EXIT_SKIPPED = 9
FLEET_VERBS = {"applied": "applied", "rolled-back": "rolled back", "already": "already at",
               "would-apply": "would apply", "would-roll-back": "would roll back",
               "nothing": "nothing to roll back", "skipped": "skipped", "failed": "FAILED",
               "gone": "exited", "running": "runs"}


def command_fleet(arguments):
    """`psu apply|status|rollback --all`: every process of a program on this host."""
    from . import fleet
    if arguments.command == "apply":
        report = fleet.apply_all(arguments.bundle, arguments.program, check=arguments.check)
    elif arguments.command == "rollback":
        report = fleet.rollback_all(arguments.bundle, arguments.program, check=arguments.check)
    else:
        report = fleet.status_all(arguments.program)
    if arguments.json:
        _print_json(report.to_json())
    else:
        _print_fleet(report)
    if report.failed:           # the first failure's code, as for one process
        error = report.failed[0].error
        if error in ("unreachable", "not-ours") or not error:
            return EXIT_UNREACHABLE
        return EXIT_BY_ERROR_CLASS.get(error, 1)
    return EXIT_SKIPPED if report.skipped else EXIT_OK


def _short(build_id):
    return str(build_id)[:12] if build_id else "?"


def _print_fleet(report):
    what = f"processes of {report.program}" if report.program else "DSU processes"
    if not report.processes:
        print(f"psu: no {what} of yours (looked in {report.runtime_dir})")
        return
    for row in report.processes:
        verb = FLEET_VERBS.get(row.result, row.result)
        line = f"{row.pid:>8}  {row.program or '?':<12} {verb:<16} "
        if row.result in ("applied", "rolled-back", "would-apply", "would-roll-back"):
            line += (f"{row.from_label} {_short(row.from_build_id)} -> "
                     f"{row.to_label} {_short(row.to_build_id)}")
        elif row.result == "failed":
            line += f"({row.error}) {row.message}"
        elif row.result in ("running", "already"):
            line += f"{row.from_label} {_short(row.from_build_id)}"
        else:
            line += row.message
        print(line.rstrip())
    counts = ", ".join(f"{n} {FLEET_VERBS.get(r, r)}" for r, n in sorted(report.summary().items()))
    if report.action == "status":
        print(f"psu: {len(report.processes)} {what}")
    elif report.changed:
        print(f"psu: {counts}" + (" (check: nothing was changed)" if report.check else ""))
    else:
        print(f"psu: nothing changed ({counts})")
    if report.skipped:
        print(f"psu: {len(report.skipped)} process(es) run another version and were left alone")


def command_ps(arguments):
    from . import control
    rows = []
    for pid, path in control.processes():
        try:
            answer = control.request(path, "status", timeout=5)
        except ControlError as error:
            answer = {"ok": False, "message": error.text}
        rows.append({"pid": pid, "socket": path, **({k: answer.get(k) for k in
                                                      ("program", "label", "build_id")}
                                                     if answer.get("ok") else
                                                     {"error": answer.get("message")})})
    if arguments.json:
        _print_json(rows)
    elif not rows:
        print(f"psu: no DSU processes of yours (looked in {control.socket_dir()})")
    else:
        for row in rows:
            if "error" in row:
                print(f"{row['pid']:>8}  ? {row['error']}")
            else:
                print(f"{row['pid']:>8}  {row['program']}  {row['label']}  {row['build_id'][:12]}")
    return EXIT_OK


def command_inspect(arguments):
    from . import bundle
    path = arguments.path
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic == bundle.MAGIC:
        return _inspect_bundle(arguments, path)
    manifest_path = path if path.endswith(".psu.json") else path + ".psu.json"
    if not os.path.exists(manifest_path):
        raise UsageError(f"{path} is neither a bundle nor a program with a manifest "
                         f"({manifest_path} is missing)")
    return _inspect_program(arguments, manifest_path)


def _inspect_bundle(arguments, path):
    from . import bundle
    data, sections, digest = bundle.read(path)
    if arguments.json:
        _print_json({"sha256": digest, "sections": {k: len(v) for k, v in sections.items()},
                     "manifest": data})
        return EXIT_OK
    print(f"bundle {path}")
    print(f"  sha256   {digest}")
    print(f"  program  {data['program']}")
    print(f"  base     {data['base_label']} {data['base_build_id']}")
    print(f"  target   {data['label']} {data['target_build_id']}")
    print("  sections " + ", ".join(f"{k} ({len(v)} bytes)" for k, v in sections.items()))
    print(data.get("report", ""))
    return EXIT_OK


def _inspect_program(arguments, manifest_path):
    from . import manifest
    data = manifest.load(manifest_path)
    if arguments.json:
        _print_json(data)
        return EXIT_OK
    program = manifest_path[:-len(".psu.json")]
    embedded = None
    if os.path.exists(program):
        with open(program, "rb") as f:
            embedded = data["build_id"].encode() in f.read()
    print(f"program  {data['program']}  ({program})")
    print(f"label    {data['label']}")
    print(f"build id {data['build_id']}" + ("" if embedded is None else
                                            "  (embedded in the binary)" if embedded else
                                            "  (NOT the one embedded in the binary: rebuild)"))
    print(f"compiler {data['compiler']}")
    print(f"flags    {' '.join(data['flags'])}")
    for unit_path, unit in sorted(data["units"].items()):
        if not unit["dsu"]:
            print(f"  {unit_path}: plain")
            continue
        dsu = [q for q, f in unit["functions"].items() if f["direct"] is None]
        direct = [f"{q} ({f['direct']})" for q, f in unit["functions"].items() if f["direct"]]
        print(f"  {unit_path}: {len(dsu)} DSU function(s), {len(unit['variables'])} variable(s)")
        for item in direct:
            print(f"    direct: {item}")
    return EXIT_OK


def _config(arguments):
    from . import buildconfig
    # `psu patch FROM=v1 TO=v2`, as `scons patch` spells it, means `psu patch v1 v2`
    for name, prefix in (("from_ref", "FROM="), ("to_ref", "TO=")):
        value = getattr(arguments, name, None)
        if value and value.startswith(prefix):
            setattr(arguments, name, value[len(prefix):])
    if not arguments.config:
        arguments.config = _recorded_config(arguments)
    return buildconfig.read(arguments.config)


def command_diff(arguments):
    from . import changes, patch
    comparison = patch.compare(_config(arguments), arguments.from_ref, arguments.to_ref)
    if arguments.json:
        _print_json(comparison.changes.to_json())
    else:
        print(changes.report(comparison.changes, comparison.old, comparison.new, verbose=True))
    return EXIT_OK


def _recorded_config(arguments):
    """The build description `psu cc` wrote at the link of the program (psu.toml's build_dir)."""
    from . import config as configuration
    found = configuration.find(os.getcwd())
    if found is None:
        raise UsageError("no --config, and no psu.toml (or PSU_CONFIG) here or above",
                         hint="SCons and Meson builds write .psu-build/<program>/build.json")
    folder = found.build_path()
    programs = sorted(name for name in (os.listdir(folder) if os.path.isdir(folder) else ())
                      if os.path.isfile(os.path.join(folder, name, "build.json")))
    if arguments.program:
        if arguments.program not in programs:
            raise UsageError(f"no program {arguments.program} linked by psu cc in {folder} "
                             f"(found: {', '.join(programs) or 'none'})")
        programs = [arguments.program]
    if len(programs) != 1:
        raise UsageError(f"{len(programs)} programs linked by psu cc in {folder}"
                         + (f" ({', '.join(programs)}): name one with --program" if programs else
                            ": build the project with CC=\"psu cc gcc\" first"))
    return os.path.join(folder, programs[0], "build.json")


def command_release_patches(arguments):
    """`psu patch --release`: a bundle from each of psu.toml's patch_from to this build."""
    from . import config as configuration, patch, revisions
    config = _config(arguments)
    found = configuration.find(os.getcwd())
    if found is None or not found.patch_from:
        raise UsageError("patch --release needs patch_from = [...] in psu.toml")
    label = found.label()
    to_ref = label if revisions.git(config.top, "rev-parse", "--verify", "--quiet",
                                f"{label}^{{commit}}").returncode == 0 else "WORKTREE"
    for from_ref in found.patch_from:
        output = os.path.join(found.root, found.patch_dir, patch.bundle_name(config.program, from_ref, label))
        _, text = patch.make_bundle(config, from_ref, to_ref, output)
        print(text)
        print(f"psu: bundle written to {output}")
    return EXIT_OK


def command_patch(arguments):
    from . import patch
    if arguments.release:
        return command_release_patches(arguments)
    if not arguments.from_ref or not arguments.to_ref:
        raise UsageError("patch needs FROM and TO (or --release)")
    config = _config(arguments)
    if arguments.previous:
        config.previous_bundle = os.path.abspath(arguments.previous)
    output = arguments.output or os.path.join(
        config.top, "psu-patches", patch.bundle_name(config.program, arguments.from_ref, arguments.to_ref))
    _, text = patch.make_bundle(config, arguments.from_ref, arguments.to_ref, output)
    print(text)
    print(f"psu: bundle written to {output}")
    return EXIT_OK


def command_unit(arguments):
    """One unit of the release build (for Meson's custom_target and other build systems)."""
    from . import build
    from .policy import DsuPolicy
    root = os.path.abspath(arguments.root)
    build.analyse_unit(arguments.unit, arguments.cc, arguments.flags, root, not arguments.plain,
                       arguments.analysis, cache_dir=arguments.cache)
    if arguments.output:
        if arguments.plain:
            raise UsageError("--output makes no sense for a --plain unit")
        build.generate_unit(arguments.analysis, os.path.join(root, arguments.unit),
                            DsuPolicy(arguments.exclude, arguments.direct_statics), arguments.output)
    if arguments.depfile:
        build.depfile(arguments.unit, arguments.cc, arguments.flags, root,
                      arguments.output or arguments.analysis, arguments.depfile)
    return EXIT_OK


def command_program(arguments):
    """The manifest, the identity C file and the build description of a program."""
    from . import build, buildconfig
    from .policy import DsuPolicy
    root = os.path.abspath(arguments.root)
    label = arguments.label or build.git_label(root)
    result = build.describe_program(arguments.name, label, arguments.analyses, arguments.cc,
                                    arguments.flags, DsuPolicy(arguments.exclude, arguments.direct_statics),
                                    arguments.manifest, arguments.info)
    if arguments.config:
        config = buildconfig.BuildConfig(
            program=arguments.name, top=root, sources=sorted(arguments.sources),
            dsu_units=sorted(arguments.dsu), cc=arguments.cc, flags=list(arguments.flags),
            exclude=list(arguments.exclude), direct_statics=arguments.direct_statics,
            libraries=list(arguments.library), accept=list(arguments.accept),
            work_dir=arguments.work_dir)
        buildconfig.write(arguments.config, config)
    if not arguments.quiet:
        print(f"psu: {result['program']} {result['label']} {result['build_id'][:12]}")
    return EXIT_OK


def command_runtime(arguments):
    from . import resources
    if arguments.sources:
        print("\n".join(resources.runtime_sources()))
    else:
        print(resources.runtime_sources_dir())
    return EXIT_OK


def _add_build_description_options(sub):
    sub.add_argument("--config", help="the build description psu wrote "
                     "(default: the one `psu cc` wrote at the link, found from psu.toml)")
    sub.add_argument("--program", help="which program `psu cc` linked, if several")


def manifest_default():
    from .policy import DEFAULT_DIRECT_STATICS
    return DEFAULT_DIRECT_STATICS


# -- the command line: each command's arguments, then the parser of them all -------------

def _target_arguments(sub):
    sub.add_argument("target", help="process id, or the path of its control socket")
    sub.add_argument("--json", action="store_true", help="print the process's answer as JSON")


def _apply_arguments(sub):
    sub.add_argument("target", help="process id, or the path of its control socket")
    sub.add_argument("bundle", help="the .psu bundle")
    sub.add_argument("--json", action="store_true", help="print the process's answer as JSON")


def _json_arguments(sub):
    sub.add_argument("--json", action="store_true")


def _inspect_arguments(sub):
    sub.add_argument("path", help="a .psu bundle, a program, or its .psu.json manifest")
    sub.add_argument("--json", action="store_true")


def _diff_arguments(sub):
    _add_build_description_options(sub)
    sub.add_argument("from_ref", metavar="FROM")
    sub.add_argument("to_ref", metavar="TO", help="a revision, or WORKTREE")
    sub.add_argument("--json", action="store_true")


def _patch_arguments(sub):
    _add_build_description_options(sub)
    sub.add_argument("from_ref", metavar="FROM", nargs="?")
    sub.add_argument("to_ref", metavar="TO", help="a revision, or WORKTREE", nargs="?")
    sub.add_argument("-o", "--output", help="bundle file to write")
    sub.add_argument("--release", action="store_true",
                     help="a bundle from each of psu.toml's patch_from to this build")
    sub.add_argument("--previous", metavar="BUNDLE",
                     help="the bundle that updated the running process to FROM, if "
                          "not built here: the functions it holds are carried")


def _unit_arguments(sub):
    sub.add_argument("unit", help="the unit, relative to --root")
    sub.add_argument("--root", default=".", help="project root (default: here)")
    sub.add_argument("--cc", default="cc")
    sub.add_argument("--plain", action="store_true", help="not a DSU unit: analysis only")
    sub.add_argument("--exclude", action="append", default=[], help="function kept direct")
    sub.add_argument("--direct-statics", default=manifest_default(),
                     help="static functions called only by name stay direct: all, none, "
                          "or those under N AST nodes")
    sub.add_argument("--analysis", required=True, help="analysis JSON to write")
    sub.add_argument("--output", help="generated C to write (DSU units)")
    sub.add_argument("--depfile", help="Make-style dependency file to write")
    sub.add_argument("--cache", help="folder caching analyses")


def _program_arguments(sub):
    sub.add_argument("--name", required=True)
    sub.add_argument("--label", help="version label (default: git describe)")
    sub.add_argument("--root", default=".")
    sub.add_argument("--cc", default="cc")
    sub.add_argument("--exclude", action="append", default=[])
    sub.add_argument("--direct-statics", default=manifest_default())
    sub.add_argument("--analyses", nargs="+", required=True, help="analysis JSON of every unit")
    sub.add_argument("--manifest", required=True)
    sub.add_argument("--info", required=True, help="C file with the build id to compile in")
    sub.add_argument("--config", help="build description to write, for psu patch / psu diff")
    sub.add_argument("--sources", nargs="*", default=[], help="every unit (for --config)")
    sub.add_argument("--dsu", nargs="*", default=[], help="the DSU units (for --config)")
    sub.add_argument("--work-dir", default=".psu-build", help="psu patch's work folder")
    sub.add_argument("--library", action="append", default=[],
                     help="a library the program links (-l NAME), for bundles")
    sub.add_argument("--accept", action="append", default=[],
                     help="a refusal vouched for by name, as PSU_ACCEPT (docs/refusals.md)")
    sub.add_argument("--quiet", action="store_true")


def _no_arguments(sub):
    pass


def _runtime_arguments(sub):
    sub.add_argument("--sources", action="store_true", help="list its .c files")


# name, function, help, arguments: in the order `psu --help` lists them.  A new
# command is a function `command_x(arguments)` returning its exit code, and a row here.
COMMANDS = (
    ("apply", command_apply, "load an update bundle into a running DSU process "
     "(psu apply --all BUNDLE: every process of its program)", _apply_arguments),
    ("status", command_status, "version, loaded modules and active calls of a DSU process "
     "(psu status --all: every process)", _target_arguments),
    ("rollback", command_rollback, "return a DSU process to its previous version "
     "(psu rollback --all [BUNDLE]: every process)", _target_arguments),
    ("ps", command_ps, "list the DSU processes of this user", _json_arguments),
    ("inspect", command_inspect, "describe a bundle, or a program built by psu", _inspect_arguments),
    ("diff", command_diff, "print the change report FROM -> TO without building", _diff_arguments),
    ("patch", command_patch, "build the bundle FROM -> TO (builds through psu cc, Meson, "
     "scripts; SCons users run `scons patch`)", _patch_arguments),
    ("unit", command_unit, "analyse one unit and generate its DSU source "
     "(build systems other than SCons; flags follow --)", _unit_arguments),
    ("program", command_program, "describe a program from its unit analyses: manifest, "
     "identity C file, build description (flags follow --)", _program_arguments),
    # handled before parsing (main): the compiler's arguments are not psu's options
    ("cc", None, "compiler wrapper for make, autotools, CMake, Meson: "
     "psu cc COMPILER ARGS... (docs/build-systems.md)", _no_arguments),
    ("runtime", command_runtime, "where the C runtime is (to compile it in)", _runtime_arguments),
)


def parser():
    top = argparse.ArgumentParser(prog="psu", description="Live updates for C programs.")
    top.add_argument("--version", action="version", version=f"psu {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    for name, function, help_text, add_arguments in COMMANDS:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(function=function)
        add_arguments(sub)
    return top


def fleet_parser():
    """`psu apply|status|rollback --all ...`: a parser of its own, so the one-process
    forms keep their required PID and options may go anywhere in both."""
    top = argparse.ArgumentParser(prog="psu", description="Every DSU process of a program on "
                                  "this host, one result each (docs/operations.md, Fleets).")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    for name, bundle_help in (("apply", "the .psu bundle; processes running its base get it"),
                              ("status", None),
                              ("rollback", "undo this bundle where it was applied (without: "
                                           "every process goes back one update)")):
        sub = commands.add_parser(name, help=f"psu {name} on every process")
        sub.set_defaults(function=command_fleet)
        sub.add_argument("--all", action="store_true", required=True,
                         help="every DSU process of this user (of --program)")
        sub.add_argument("--program", help="only processes of this program (default: the "
                                           "bundle's)")
        sub.add_argument("--json", action="store_true", help="one JSON report")
        if name == "apply":
            sub.add_argument("bundle")
        elif name == "rollback":
            sub.add_argument("bundle", nargs="?", help=bundle_help)
        if name != "status":
            sub.add_argument("--check", action="store_true",
                             help="say what would change, change nothing")
        else:
            sub.set_defaults(check=False, bundle=None)
    return top


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["cc"]:
        # a compiler's arguments, verbatim (cc.py reads them as the compiler would)
        from . import cc
        return cc.main(argv[1:])
    # compile flags follow `--` verbatim (they look like options to argparse)
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    fleet_form = argv[:1] in (["apply"], ["status"], ["rollback"]) and "--all" in argv
    arguments = (fleet_parser() if fleet_form else parser()).parse_args(argv)
    arguments.flags = flags
    if not getattr(arguments, "function", None):
        parser().print_help()
        return 2
    try:
        return arguments.function(arguments)
    except PsuError as error:
        return console.report_error(error)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`psu inspect ... | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
