"""The release build's steps, shared by the build adapters (SCons tool, `psu unit`/`psu program`).

Each step reads and writes files, so any build system can schedule it.
"""
import json
import os
import subprocess

from . import codegen, frontend, jsonfile, manifest, resources
from .errors import ToolError
from .model import Unit


def read_unit(path):
    with open(path) as f:
        return Unit.from_json(json.load(f))


def analyse_unit(path, cc, flags, root, dsu, output, cache_dir=None):
    """Analyse unit `path` (relative to `root`) into the JSON file `output`."""
    unit = frontend.analyse(path, cc, flags, root, dsu=dsu, cache_dir=cache_dir)
    jsonfile.write(output, unit.to_json())
    return unit


def generate_unit(analysis, source, policy, output, output_name=None, entry_hooks=False):
    """The DSU unit `source` edited for the release build, from its analysis,
    under `policy` (a policy.DsuPolicy); with `entry_hooks`, for a build that
    passes the unit's object through `entryhooks.quiet` once compiled."""
    unit = read_unit(analysis)
    with open(source, encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    generated = codegen.transform(unit, text, codegen.Role.PROGRAM,
                                  policy.dsu_names(unit),
                                  output_name or output, entry_hooks=entry_hooks)
    with open(output, "w", newline="\n") as f:
        # the preprocessed text's hash makes a header change recompile this unit
        f.write(f"/* psu: {unit.path}, preprocessed text {unit.source_hash} */\n" + generated)


def describe_program(program, label, analyses, cc, flags, policy, manifest_path, info_path):
    """The manifest of the program and the C file embedding its identity, under
    `policy` (a policy.DsuPolicy)."""
    units = [read_unit(path) for path in analyses]
    result = manifest.build(program, label, units, manifest.compiler_identity(cc), flags, policy)
    manifest.write(result, manifest_path)
    with open(info_path, "w", newline="\n") as f:
        f.write(codegen.program_info(result["program"], result["build_id"], result["label"]))
    return result


def git_label(root):
    """`git describe` of the project, the default version label."""
    try:
        done = subprocess.run(["git", "describe", "--tags", "--always", "--dirty"],
                              cwd=root, capture_output=True, text=True)
    except FileNotFoundError:
        return "unversioned"
    return done.stdout.strip() or "unversioned"


def depfile(path, cc, flags, root, target, output):
    """A Make-style depfile: the unit's headers (absolute, since the build system
    may run elsewhere) and psu's own generator files."""
    done = subprocess.run([cc, "-M", "-MT", "psu-target", *frontend.preprocessing_flags(flags), path],
                          cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolError(f"listing the headers of {path} failed:\n{done.stderr.strip()}")
    words = done.stdout.replace("\\\n", " ").replace("\\ ", "\0").split()[1:]
    files = [os.path.join(root, w.replace("\0", " ")) for w in words]
    files += resources.package_files()
    with open(output, "w") as f:
        f.write(target.replace(" ", "\\ ") + ":" +
                "".join(f" \\\n {name.replace(' ', chr(92) + ' ')}" for name in files) + "\n")
