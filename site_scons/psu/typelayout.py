"""Sizes and offsets of changed types, as the compiler lays them out: a refusal
of a changed type says what moved, by how much."""
import os
import re
import subprocess

from . import changes, resources
from .errors import RefusedChanges


# A probe line `int psu_probe_N = ((char (*)[EXPR])0) + (char *)0;` is an error in
# every gcc (and clang), and the message spells the type, EXPR's value included.
_PROBE_ANSWER = re.compile(r"psu_probe\.c:(\d+):\d+: error: invalid operands to binary \+ "
                           r"\(have .char \(\*\)\[(\d+)\]")


def measure_types(config, root, unit, types):
    """{type: {"size": n, "offsets": {member: n}}} for `types` (name -> member
    names) of `unit` under `root`, from a probe compiled with -fsyntax-only
    that includes the unit; what the compiler could not answer is left out."""
    lines = [f'#include "{os.path.join(root, unit)}"', "#include <stddef.h>"]
    asks = {}
    for name, members in types.items():
        for member in [None, *members]:
            expression = f"sizeof({name})" if member is None else f"offsetof({name}, {member})"
            lines.append(f"int psu_probe_{len(lines)} = ((char (*)[{expression}])0) + (char *)0;")
            asks[len(lines)] = (name, member)
    folder = config.path("probes")
    os.makedirs(folder, exist_ok=True)
    probe = os.path.join(folder, "psu_probe.c")
    with open(probe, "w") as f:
        f.write("\n".join(lines) + "\n")
    command = [config.cc, "-fsyntax-only", *config.flags, "-iquote", os.path.join(root, os.path.dirname(unit)),
               "-idirafter", resources.runtime_sources_dir(), probe]
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, LC_ALL="C"))
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found = {}
    for match in _PROBE_ANSWER.finditer(done.stderr):
        line, value = int(match.group(1)), int(match.group(2))
        if line in asks:
            name, member = asks[line]
            layout = found.setdefault(name, {"offsets": {}})
            if member is None:
                layout["size"] = value
            else:
                layout["offsets"][member] = value
    return found


def with_layouts(config, refused, old_root, new_root, old, new):
    """The refusals of changed types with their sizes and offsets, where the
    compiler can tell (a report a person can act on: what moved, by how much)."""
    subjects = [r.subject for r in refused.refusals if r.subject and r.subject["now"]["kind"] != "enum"]
    if not subjects or refused.change_set is None:
        return refused
    layouts = {}
    for side, root in (("was", old_root), ("now", new_root)):
        by_unit = {}
        for subject in subjects:
            members = [m for m, _ in subject[side]["members"] if m]
            by_unit.setdefault(subject["unit"], {})[subject["type"]] = members
        for unit, types in by_unit.items():
            for name, layout in measure_types(config, root, unit, types).items():
                layouts[(side, name)] = layout
    refusals = [changes.measured(r, layouts.get(("was", r.subject["type"])), layouts.get(("now", r.subject["type"])))
                if r.subject else r for r in refused.refusals]
    refused.change_set.refusals = refusals
    return RefusedChanges(refusals, report=changes.report(refused.change_set, old, new),
                          change_set=refused.change_set)
