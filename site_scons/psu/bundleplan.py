"""What a bundle compiles, decided from the analysis alone (no compiler run).

A bundle's code object holds the functions it switches, the functions it
carries (current in an older bundle: this one takes them over, so the older
module drains and unloads), and what those reach that the running program
cannot give it: the unit's direct functions and the constant data each
version keeps its own copy of.  Every other DSU function is reached in the
running program through its exported alias, so its definition is left out,
and a unit with nothing the bundle needs is not compiled at all.
"""
from dataclasses import dataclass, field

from .codegen import UnitPlan


@dataclass
class BundlePlan:
    code_units: dict = field(default_factory=dict)   # path -> UnitPlan, compiled into the code object
    state_units: dict = field(default_factory=dict)  # path -> UnitPlan, compiled into the state object
    switched: list = field(default_factory=list)
    carried: list = field(default_factory=list)      # unchanged here, current in an older bundle
    # functions whose current version lives in a bundle once this one is
    # applied (the next bundle carries those it does not change)
    in_bundles: list = field(default_factory=list)
    stranded: list = field(default_factory=list)     # in an older bundle, no longer DSU functions here
    # planned with every DSU unit compiled: True when that added units the
    # analysis alone would have left out
    every_unit_added: bool = False
    fallback: list = field(default_factory=list)     # the symbols that made the plan take every unit


def carried_functions(in_older_bundles, switched, dsu_functions):
    """The functions this bundle carries: those an older bundle provides that it
    does not switch and that are still DSU functions (the rest stay where they
    are: `stranded`)."""
    older = set(in_older_bundles) - set(switched)
    return sorted(older & set(dsu_functions)), sorted(older - set(dsu_functions))


def _providers(units, dsu_by_path):
    """name -> unit of what a unit of the bundle may need from another unit's
    compiled text: constant data with external linkage (each version has its
    own copy) and direct functions with external linkage (psu exports no
    alias for them; one hidden by a header's attribute links only here)."""
    provided = {}
    for path, dsu in dsu_by_path.items():
        unit = units[path]
        for v in unit.variables:
            if v.const and not v.static and v.definition and not v.thread_local:
                provided.setdefault(v.name, path)
        for f in unit.functions:
            if f.name not in dsu and not f.static:
                provided.setdefault(f.name, path)
    return provided


def _references(unit, dsu, kept):
    """Names the compiled text of `unit` refers to when only the DSU functions
    `kept` keep their definitions (direct functions are always compiled)."""
    own = {f.name for f in unit.functions} | {v.name for v in unit.variables}
    names = set()
    for f in unit.functions:
        if f.name not in dsu or f.qualname in kept:
            names.update(f.callees)
            names.update(f.reads)
    for v in unit.variables:
        names.update(v.reads)
    return names - own


def units_to_compile(needed, units, dsu_by_path, every_unit=False):
    """{path: qualnames kept} of every DSU unit the code object compiles: the
    units of the `needed` functions ({path: qualnames}), then, to a fixed
    point, the units defining what the compiled text refers to (`_providers`),
    with no DSU function kept."""
    provided = _providers(units, dsu_by_path)
    compiled = {path: set(kept) for path, kept in needed.items() if kept}
    if every_unit:
        compiled.update({path: set() for path in dsu_by_path if path not in compiled})
    pending = sorted(compiled)
    while pending:
        path = pending.pop()
        for name in sorted(_references(units[path], dsu_by_path[path], compiled[path])):
            other = provided.get(name)
            if other is not None and other not in compiled:
                compiled[other] = set()
                pending.append(other)
    return compiled


def plan_bundle(change_set, units, dsu_by_path, in_older_bundles=(), every_unit=False):
    """The plan of a bundle for `change_set` (changes.ChangeSet) over the TO
    revision's `units` ({path: model.Unit}); `dsu_by_path`: each DSU unit's
    DSU function names; `in_older_bundles`: functions whose current version
    the process may hold in an older bundle (the record of the bundle that
    produced FROM); `every_unit`: compile every DSU unit (their DSU
    definitions still cut but for those `needed`), for what the analysis does
    not see (data a header defines in a unit)."""
    switched = set(change_set.switched)
    where = {f.qualname: path for path, dsu in dsu_by_path.items()
             for f in units[path].functions if f.name in dsu}
    carried, stranded = carried_functions(in_older_bundles, switched, where)
    needed = {}
    for qualname in sorted(switched | set(carried)):
        needed.setdefault(where.get(qualname) or _unit_of(change_set, qualname), set()).add(qualname)
    plan = BundlePlan(switched=sorted(switched), carried=carried, stranded=stranded,
                      in_bundles=sorted(switched | set(carried)))
    chosen = units_to_compile(needed, units, dsu_by_path)
    compiled = units_to_compile(needed, units, dsu_by_path, every_unit) if every_unit else chosen
    plan.every_unit_added = set(compiled) != set(chosen)
    for path, kept in sorted(compiled.items()):
        dsu_here = {f.qualname for f in units[path].functions if f.name in dsu_by_path[path]}
        plan.code_units[path] = UnitPlan(
            patched=kept & switched, carried=kept & set(carried),
            added_functions=[q for q, p in change_set.added.items() if p == path],
            added_variables=[q for q, p in change_set.added_variables.items() if p == path],
            cut=dsu_here - kept)
    for path in sorted(set(change_set.added.values()) | set(change_set.added_variables.values())):
        dsu_here = {f.qualname for f in units[path].functions if f.name in dsu_by_path[path]}
        # the state object holds added variables and added functions' slots and
        # general paths: no body of the unit
        plan.state_units[path] = UnitPlan(
            added_functions=[q for q, p in change_set.added.items() if p == path],
            added_variables=[q for q, p in change_set.added_variables.items() if p == path],
            cut=dsu_here)
    return plan


def _unit_of(change_set, qualname):
    return change_set.replaced.get(qualname) or change_set.added.get(qualname)
