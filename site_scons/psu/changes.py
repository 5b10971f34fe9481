"""Change analysis: from two manifests to the change set of a bundle, or the refusals.

`compare` is the pipeline; what each step establishes holds from there on:
  1. match: pair the units, and in each the functions and variables, by
     qualified name (`UnitMatch`, `Entity`: FROM's entry and TO's);
  2. classify: a `Status` per function and variable (units outside PSU_UNITS
     by what they define, not their text); the changed constants, who reads
     them, and the changed direct code of each unit;
  3. refuse what the statuses alone forbid: one refusal per cause;
  4. plan what the bundle switches (replaces, adds), binds, adds and
     transforms: changed direct code and changed constants pull in their DSU
     callers and readers (SPEC §4.4, each version has its own constants);
  5. check the plan: refusals that depend on what the patch holds (state its
     code cannot bind, changed direct code nothing in it reaches, types that
     existing state holds, once each); refusals the user vouched for by name
     (`PSU_ACCEPT`) become notes;
  6. the units the bundle compiles.
A new refusal goes into step 3 if an entity's status decides it, into step 5
if it depends on what the patch holds (docs/refusals.md).
"""
import enum
from dataclasses import dataclass, field

from . import typechanges
from .errors import NoChanges, RefusedChanges
from .policy import Direct, transformer_name
from .refusal import Kind, Refusal, few, short
from .typechanges import measured

__all__ = ["compare", "report", "measured", "ChangeSet", "Refusal", "Kind",
           "match", "classify", "refuse", "plan", "check", "Status", "Entity", "UnitMatch"]


@dataclass
class ChangeSet:
    replaced: dict = field(default_factory=dict)      # qualname -> unit
    added: dict = field(default_factory=dict)         # qualname -> unit
    pulled_in: dict = field(default_factory=dict)     # qualname -> [helper names, constants]
    removed: dict = field(default_factory=dict)       # qualname -> unit
    bound: dict = field(default_factory=dict)         # variable qualname -> unit
    added_variables: dict = field(default_factory=dict)
    removed_variables: dict = field(default_factory=dict)
    transformed: dict = field(default_factory=dict)   # variable qualname -> transformer name
    constants: dict = field(default_factory=dict)     # changed constant name -> unit
    notes: list = field(default_factory=list)
    refusals: list = field(default_factory=list)
    accepted: list = field(default_factory=list)      # refusals PSU_ACCEPT took
    units: list = field(default_factory=list)         # units the bundle compiles
    relayout: set = field(default_factory=set)        # variables whose held types changed layout

    @property
    def switched(self):
        return sorted(set(self.replaced) | set(self.added))

    def to_json(self):
        return {
            "functions": {"replaced": sorted(self.replaced), "added": sorted(self.added),
                          "pulled_in": {k: sorted(v) for k, v in sorted(self.pulled_in.items())},
                          "removed_kept": sorted(self.removed)},
            "variables": {"bound": sorted(self.bound), "added": sorted(self.added_variables),
                          "removed": sorted(self.removed_variables),
                          "constants": sorted(self.constants),
                          "transformed": {k: v["transformer"] for k, v in
                                          sorted(self.transformed.items())}},
            "accepted": [str(r) for r in self.accepted],
            "notes": list(self.notes),
            "units": list(self.units),
        }


def compare(old, new, accept=()):
    """The change set that takes a process from manifest `old` to manifest `new`;
    `accept`: PSU_ACCEPT names of refusals the user vouches for."""
    units = match(old, new)
    changes = ChangeSet(constants=classify(units))
    refuse(changes, old, new, units)
    plan(changes, units)
    check(changes, units, old["units"], new["units"])
    _take_accepted(changes, accept)
    return _outcome(changes, old, new)


def _outcome(changes, old, new):
    """The refusals, or that nothing changed, or the change set with the units
    the bundle compiles."""
    if changes.refusals:
        raise RefusedChanges(changes.refusals, report=report(changes, old, new), change_set=changes)
    if not changes.replaced and not changes.added and not changes.added_variables:
        raise NoChanges(f"{old.get('label')} and {new.get('label')} build the same "
                        f"code ({new['build_id'][:12]}); there is nothing to patch")
    changes.units = sorted(set(changes.replaced.values()) | set(changes.added.values()) |
                           set(changes.added_variables.values()))
    return changes


# -- 1. match ------------------------------------------------------------------------

class Status(enum.Enum):
    """What happened to a function or variable between FROM and TO."""

    SAME = "same"
    ADDED = "added"
    REMOVED = "removed"
    BODY_CHANGED = "body changed"                  # a function's code (its body, or what it uses)
    SIGNATURE_CHANGED = "signature changed"        # a function's declared parameters or result
    NOW_DSU = "now a DSU function"                 # direct before (same signature): added, as it were
    DSU_STATUS_CHANGED = "DSU status changed"      # a DSU function now direct, or vice versa with a new signature
    TYPE_CHANGED = "type changed"                  # a variable's declared type or thread-locality
    INIT_CHANGED = "initializer changed"           # a variable's initializer (text, or what it is computed from)


@dataclass
class Entity:
    """A function or variable of one unit, matched across the versions by
    qualified name: its manifest entry in FROM (`was`, None if added) and in
    TO (`now`, None if removed)."""

    qualname: str
    was: dict = None
    now: dict = None
    status: Status = None     # classify
    constants: list = field(default_factory=list)   # classify: the changed constants it reads

    @property
    def entry(self):
        return self.now if self.now is not None else self.was

    @property
    def name(self):
        return self.entry["name"]

    @property
    def direct(self):
        """Why TO calls it directly (policy.Direct), or None: a DSU function."""
        return self.entry["direct"]


@dataclass
class UnitMatch:
    """A unit in FROM (`before`) and TO (`after`); either is None if the unit
    is not in that version.  Its functions and variables are matched where
    both versions describe it, and for a DSU unit TO adds (against nothing)."""

    path: str
    before: dict = None
    after: dict = None
    functions: list = field(default_factory=list)        # Entity, by qualified name
    variables: list = field(default_factory=list)        # Entity, by qualified name
    changed_helpers: set = field(default_factory=set)    # classify: header helpers added or changed
    changed_direct: set = field(default_factory=set)     # classify: names of changed direct code
    reached_direct: set = field(default_factory=set)     # plan: those a DSU function calls

    @property
    def dsu(self):
        return (self.after or self.before)["dsu"]

    @property
    def moved(self):
        """Moved in or out of PSU_UNITS."""
        return self.before is not None and self.after is not None and \
            self.before["dsu"] != self.after["dsu"]

    @property
    def paired(self):
        """In both versions, in the same role (DSU or not)."""
        return self.before is not None and self.after is not None and not self.moved

    @property
    def described(self):
        """Both versions could be parsed (only a unit outside PSU_UNITS may not be)."""
        return all(u is None or u.get("described", True) for u in (self.before, self.after))

    def where(self, entity):
        return f"{self.path}:{entity.entry['line']}"

    def transformers(self):
        return {f["name"] for f in self.after["functions"].values() if f["direct"] == Direct.TRANSFORMER}


def match(old, new):
    """The units of both versions by path; in each, the functions and variables
    by qualified name."""
    old_units, new_units = old["units"], new["units"]
    units = []
    for path in sorted(set(old_units) | set(new_units)):
        unit = UnitMatch(path, old_units.get(path), new_units.get(path))
        # both versions readable, or a DSU unit one version lacks (matched against nothing)
        if unit.paired and unit.described or unit.dsu and not unit.paired and not unit.moved:
            before, after = unit.before or _EMPTY_UNIT, unit.after or _EMPTY_UNIT
            unit.functions = _pairs(before["functions"], after["functions"])
            unit.variables = _pairs(before["variables"], after["variables"])
        units.append(unit)
    return units


_EMPTY_UNIT = {"dsu": True, "functions": {}, "variables": {}, "helpers": {}}


def _pairs(old_entries, new_entries):
    return [Entity(q, old_entries.get(q), new_entries.get(q))
            for q in sorted(set(old_entries) | set(new_entries))]


# -- 2. classify ---------------------------------------------------------------------

def classify(units):
    """A status for every matched function and variable; the changed constants
    (name -> unit), each entity's reads of them, and each DSU unit's changed
    direct code.  Returns the changed constants."""
    for unit in units:
        for entity in unit.functions:
            entity.status = _function_status(entity.was, entity.now)
        for entity in unit.variables:
            entity.status = _variable_status(entity.was, entity.now)
        if unit.after is not None:
            old_helpers = (unit.before or _EMPTY_UNIT).get("helpers", {})
            unit.changed_helpers = {name for name, helper in unit.after.get("helpers", {}).items()
                                    if old_helpers.get(name, {}).get("body_hash") != helper["body_hash"]}
    constants = _changed_constants(units)
    for unit in units:
        if unit.before is not None:     # in a unit TO adds, all code is new anyway
            for entity in unit.functions + unit.variables:
                if entity.now is not None:
                    entity.constants = sorted(set(entity.now.get("reads", ())) & set(constants))
        if unit.dsu and unit.after is not None and not unit.moved:
            unit.changed_direct = _changed_direct(unit)
    return constants


def _function_status(was, now):
    if was is None:
        return Status.ADDED
    if now is None:
        return Status.REMOVED
    if (was["direct"] is None) != (now["direct"] is None):
        if now["direct"] is None and was["signature_hash"] == now["signature_hash"]:
            return Status.NOW_DSU
        return Status.DSU_STATUS_CHANGED
    if was["signature_hash"] != now["signature_hash"]:
        return Status.SIGNATURE_CHANGED
    if was["body_hash"] != now["body_hash"]:
        return Status.BODY_CHANGED
    return Status.SAME


def _variable_status(was, now):
    if was is None:
        return Status.ADDED
    if now is None:
        return Status.REMOVED
    if was["type_hash"] != now["type_hash"] or was["thread_local"] != now["thread_local"]:
        return Status.TYPE_CHANGED
    if was["init_hash"] != now["init_hash"]:
        return Status.INIT_CHANGED
    return Status.SAME


def _changed_constants(units):
    """Constant data with external linkage whose value or type changed: each
    version has its own copy, so every reader is part of the change."""
    constants = {}
    for unit in units:
        for entity in unit.variables:
            was, now = entity.was, entity.now
            if entity.status in (Status.SAME, Status.ADDED, Status.REMOVED) or \
                    not now["const"] or now["static"]:
                continue
            # in a DSU unit: file-scope data constant in both versions;
            # outside them, whatever it was before
            if not unit.dsu or was["const"] and now["scope"] == "file":
                constants[now["name"]] = unit.path
    return constants


def _changed_direct(unit):
    """Names of the direct code of a DSU unit that changed: direct functions
    added (an entry point too: it moved here), changed or reading a changed
    constant (not a running entry point, which is refused, nor state
    transformers, which run once), functions direct before, and the header
    helpers it calls."""
    names = set(unit.changed_helpers)
    for entity in unit.functions:
        if entity.status is Status.NOW_DSU:
            names.add(entity.name)
        elif entity.now is None or entity.direct is None or entity.direct == Direct.TRANSFORMER:
            continue
        elif entity.status is Status.ADDED:
            names.add(entity.name)
        elif entity.direct != Direct.ENTRY_POINT and (
                entity.status in (Status.BODY_CHANGED, Status.SIGNATURE_CHANGED) or entity.constants):
            names.add(entity.name)
    return names


# -- 3. refuse -----------------------------------------------------------------------

def refuse(changes, old, new, units):
    """One refusal per cause an entity's status decides."""
    _refuse_build(changes, old, new)
    for unit in units:
        if unit.moved or not unit.dsu and not unit.paired:
            _refuse_unit(changes, unit)
        elif not unit.dsu:
            _refuse_outside(changes, unit)
        elif unit.after is not None:
            _refuse_functions(changes, unit)
            _refuse_direct_globals(changes, unit)
            _refuse_state(changes, unit)


def _refuse_build(changes, old, new):
    if _without_macros(old.get("flags")) != _without_macros(new.get("flags")) or \
            old.get("compiler") != new.get("compiler"):
        changes.refusals.append(Refusal(Kind.BUILD, new["program"], "compiler and flags",
                                        "FROM and TO are built differently; a bundle must be "
                                        "compiled like the program it patches"))


def _without_macros(flags):
    """`flags` less the macro definitions (-D, -U): what a define changes is in
    the preprocessed text the analysis compares, function by function and type
    by type; any other flag may change the code of unchanged functions."""
    if flags is None:
        return None
    kept, skip = [], False
    for flag in flags:
        if skip:
            skip = False
        elif flag in ("-D", "-U"):
            skip = True
        elif not flag.startswith(("-D", "-U")):
            kept.append(flag)
    return kept


def _refuse_unit(changes, unit):
    """A unit added or removed outside the DSU units, or moved in or out of them."""
    if unit.moved:
        changes.refusals.append(Refusal(Kind.OUTSIDE_DSU, unit.path, unit.path,
                                        "unit moved in or out of PSU_UNITS"))
    elif not unit.dsu:
        changes.refusals.append(Refusal(Kind.OUTSIDE_DSU, unit.path, unit.path,
                                        "unit " + ("added" if unit.after else "removed") +
                                        " outside the DSU units", accept=f"stale:{unit.path}"))


def _refuse_functions(changes, unit):
    """Function changes a running program cannot take: a DSU function made
    direct, a new signature, a changed entry point (or one reading a changed
    constant)."""
    for entity in unit.functions:
        was, now, where, q = entity.was, entity.now, unit.where(entity), entity.qualname
        if entity.status is Status.DSU_STATUS_CHANGED:
            changes.refusals.append(Refusal(
                Kind.DSU_STATUS, where, q, f"was {_dsu_status(was)}, now {_dsu_status(now)}"))
        elif entity.status in (Status.BODY_CHANGED, Status.SIGNATURE_CHANGED) and \
                now["direct"] == Direct.ENTRY_POINT:
            changes.refusals.append(Refusal(
                Kind.ENTRY_POINT, where, q,
                "changed, but the entry point is running and cannot be replaced; "
                "if accepted, it stays at its old version", accept=f"stale:{now['name']}"))
        elif entity.status is Status.SIGNATURE_CHANGED and now["direct"] is None:
            changes.refusals.append(Refusal(
                Kind.SIGNATURE, where, q, f"signature changed from '{was['signature']}' "
                f"to '{now['signature']}' (callers compiled against the old one still run)"))
        if entity.constants and now["direct"] == Direct.ENTRY_POINT:
            changes.refusals.append(Refusal(
                Kind.STALE_CONSTANT, where, q,
                f"reads {', '.join(entity.constants)}, whose value changed, but the entry point is "
                "running and cannot be replaced; if accepted, it stays at its old version (and reads "
                "the old copy)", accept=f"stale:{now['name']}"))


def _dsu_status(entry):
    return "a DSU function" if entry["direct"] is None else f"direct ({entry['direct']})"


def _refuse_direct_globals(changes, unit):
    """Changed direct code with external linkage: other units call their own copy."""
    direct_by_name = _direct_functions(unit.after)
    for name in sorted(unit.changed_direct):
        own = direct_by_name.get(name)
        if own is not None and not own["static"]:
            changes.refusals.append(Refusal(
                Kind.DIRECT_GLOBAL, f"{unit.path}:{own['line']}", name,
                f"changed, but it is called directly ({own['direct']}) and has external "
                "linkage: code outside the patch would go on calling the old copy; make it "
                "a DSU function (not excluded, not inline) or static"))


def _refuse_state(changes, unit):
    """Existing state whose type or initial value changed, with no transformer
    to convert it; a variable whose type reads the same but whose layout
    changed is the business of its type (check)."""
    transformers = unit.transformers()
    for entity in unit.variables:
        if not _existing_state(entity):
            continue
        was, now, where, q = entity.was, entity.now, unit.where(entity), entity.qualname
        transformer = transformer_name(now)
        if transformer in transformers and now["static"]:
            continue
        if entity.status is Status.TYPE_CHANGED:
            if was["type"] != now["type"] or was["thread_local"] != now["thread_local"]:
                changes.refusals.append(Refusal(
                    Kind.STATE_TYPE, where, q,
                    f"type of existing state changed from '{short(was['type'])}' to "
                    f"'{short(now['type'])}'" + ("" if not now["static"] else
                                                  f"; define {transformer}() to convert it")))
        elif entity.status is Status.INIT_CHANGED:
            changes.refusals.append(Refusal(
                Kind.STATE_INIT, where, q,
                "initializer changed (in its text, or in a constant, enumerator or macro it is "
                "computed from): the running program holds the value of the old one, which "
                "the new code would read; if accepted, the running value is kept",
                accept=f"init:{now['name']}"))
        elif entity.constants:
            changes.refusals.append(Refusal(
                Kind.STATE_INIT, where, q,
                f"its initializer names {', '.join(entity.constants)}, whose value changed: the "
                "running value was computed from the old one; if accepted, the running value is kept",
                accept=f"init:{now['name']}"))


def _existing_state(entity):
    """Mutable state of FROM that TO keeps (and a bundle binds to)."""
    was, now = entity.was, entity.now
    return was is not None and now is not None and not was["const"] and not now["const"] \
        and not now.get("unbound")


def _refuse_outside(changes, unit):
    """A unit outside PSU_UNITS is never rebuilt into a bundle: what it defines
    stays at its old version.  Compared by its definitions (a declaration added
    to a header it includes changes nothing); each changed function or variable
    is refused by name, and can be accepted as staying old; so is each reader
    of a changed constant."""
    path = unit.path
    if not unit.described:
        if unit.before["text_hash"] != unit.after["text_hash"]:
            changes.refusals.append(Refusal(
                Kind.OUTSIDE_DSU, path, path, "changed, but it is not a DSU unit (add it to "
                "PSU_UNITS to update it live); psu could not parse it, so it compares its text",
                accept=f"stale:{path}"))
        return
    entities = _outside_changes(unit)
    if len(entities) == 1:
        entity = entities[0]
        changes.refusals.append(Refusal(
            Kind.OUTSIDE_DSU, unit.where(entity), entity.qualname,
            ("added" if entity.status is Status.ADDED else "changed") + f" outside the DSU units "
            f"(add {path} to PSU_UNITS to update it live); if accepted, it stays at its old version",
            accept=f"stale:{entity.name}"))
    elif entities:
        # one line for the unit: the names, a few of them, and one name to accept them all
        changed_names = [e.qualname for e in entities if e.status is not Status.ADDED]
        added_names = [e.qualname for e in entities if e.status is Status.ADDED]
        what = "; ".join(part for part in (
            f"{len(changed_names)} changed ({few(changed_names, 6)})" if changed_names else "",
            f"{len(added_names)} added ({few(added_names, 3)})" if added_names else "") if part)
        changes.refusals.append(Refusal(
            Kind.OUTSIDE_DSU, path, path,
            f"definitions outside the DSU units (add it to PSU_UNITS to update them live): {what}; "
            "if accepted, they stay at their old version", accept=f"stale:{path}",
            accept_each=tuple(sorted({f"stale:{e.name}" for e in entities}))))
    for entity in unit.functions:
        if entity.constants:
            changes.refusals.append(Refusal(
                Kind.STALE_CONSTANT, unit.where(entity), entity.qualname,
                f"reads {', '.join(entity.constants)}, whose value changed, and it is outside the "
                "DSU units: it would go on reading the old copy; if accepted, it stays at its old "
                "version", accept=f"stale:{entity.name}"))


def _outside_changes(unit):
    """The functions and variables of a unit outside PSU_UNITS that TO adds or
    changes; a function changes with an inline helper of a header it reaches."""
    helpers = unit.after.get("helpers", {})

    def reaches_changed_helper(callees, seen):
        for callee in callees:
            if callee not in seen:
                seen.add(callee)
                if callee in unit.changed_helpers or \
                        reaches_changed_helper(helpers.get(callee, {}).get("callees", ()), seen):
                    return True
        return False
    functions = [e for e in unit.functions if e.now is not None and (
        e.status is not Status.SAME or
        unit.changed_helpers and reaches_changed_helper(e.now["callees"], set()))]
    variables = [e for e in unit.variables if e.now is not None and e.status is not Status.SAME]
    return functions + variables


# -- 4. plan -------------------------------------------------------------------------

def plan(changes, units):
    """What the bundle does with each DSU unit's functions and variables."""
    for unit in units:
        _plan_unit(changes, unit)


def _plan_unit(changes, unit):
    if not unit.dsu or unit.moved:
        return
    if unit.after is None:
        # a DSU unit TO removes: its functions stay loaded
        for entity in unit.functions:
            if entity.was["direct"] is None:
                changes.removed[entity.qualname] = unit.path
        return
    _plan_functions(changes, unit)
    _pull_in_callers(changes, unit)
    _plan_variables(changes, unit)


def _plan_functions(changes, unit):
    """Switch what changed, add what is new, keep what is gone; a DSU function
    reading a changed constant reads the bundle's copy."""
    for entity in unit.functions:
        q, status = entity.qualname, entity.status
        if status is Status.REMOVED:
            if entity.was["direct"] is None:
                changes.removed[q] = unit.path
                changes.notes.append(f"{unit.where(entity)}: {q} removed; kept in the running program")
        elif status is Status.NOW_DSU or status is Status.ADDED and entity.direct is None:
            # direct before (say its address is taken now): a slot and an entry like an
            # added function; its callers, which called the old direct copy, come in too
            changes.added[q] = unit.path
        elif status is Status.BODY_CHANGED and entity.direct is None:
            changes.replaced[q] = unit.path
    for entity in unit.functions:
        if entity.constants and entity.direct is None and entity.qualname not in changes.added:
            changes.replaced[entity.qualname] = unit.path
            changes.pulled_in[entity.qualname] = sorted(
                set(changes.pulled_in.get(entity.qualname, ())) |
                {f"{name} (constant)" for name in entity.constants})


def _pull_in_callers(changes, unit):
    """Every DSU function reaching changed direct code through direct calls."""
    if not unit.changed_direct:
        return
    for q, f in sorted(unit.after["functions"].items()):
        if f["direct"] is not None:
            continue
        hits = _reached_direct(unit, f["callees"])
        if hits:
            unit.reached_direct |= hits
            if q not in changes.added:
                changes.replaced[q] = unit.path
                changes.pulled_in[q] = sorted(set(changes.pulled_in.get(q, ())) | hits)


def _direct_functions(unit_entry):
    return {f["name"]: f for f in unit_entry["functions"].values() if f["direct"] is not None}


def _reached_direct(unit, callees):
    """The changed direct code that calling `callees` runs, through direct calls."""
    direct_by_name, helpers = _direct_functions(unit.after), unit.after.get("helpers", {})
    hits, seen, pending = set(), set(), list(callees)
    while pending:
        callee = pending.pop()
        if callee in seen:
            continue
        seen.add(callee)
        if callee in unit.changed_direct:
            hits.add(callee)
        inner = direct_by_name.get(callee) or helpers.get(callee)
        if inner is not None:
            pending.extend(inner["callees"])
    return hits


def _plan_variables(changes, unit):
    """Bind existing state, add new state, convert what a transformer converts;
    removed state keeps its storage; constant data is each version's own."""
    transformers = unit.transformers()
    patched_here = {q.rsplit(":", 1)[-1] for q, path in changes.replaced.items() if path == unit.path}
    for entity in unit.variables:
        was, now, where, q = entity.was, entity.now, unit.where(entity), entity.qualname
        if now is None:
            if not was["const"]:
                changes.removed_variables[q] = unit.path
                changes.notes.append(f"{where}: {q} no longer used; its storage stays")
            continue
        if now["const"]:
            continue
        if now.get("unbound"):
            if now["scope"] == "function" and now["function"] in patched_here:
                changes.notes.append(f"{where}: {q} is not bound ({now['unbound']}): "
                                     "the new version has its own")
            continue
        if was is None or was["const"]:
            changes.added_variables[q] = unit.path
            continue
        transformer = transformer_name(now)
        converted = transformer in transformers and now["static"]
        if entity.status is Status.TYPE_CHANGED:
            if converted:
                changes.transformed[q] = {"transformer": transformer, "old_type_hash": was["type_hash"]}
                changes.added_variables[q] = unit.path
            elif was["type"] == now["type"] and was["thread_local"] == now["thread_local"]:
                # same text, new layout: a type it holds changed, which
                # typechanges reports once, naming this variable
                changes.relayout.add(q)
            continue
        changes.bound[q] = unit.path
        if converted and entity.status is Status.INIT_CHANGED:
            # same type, same storage: the transformer fixes the running value up in place
            changes.transformed[q] = {"transformer": transformer, "old_type_hash": was["type_hash"]}
            changes.notes.append(f"{where}: {q}: initializer changed; {transformer}() sets the "
                                 "running value when the bundle loads")
        elif converted and entity.constants and now["scope"] == "file":
            changes.transformed[q] = {"transformer": transformer, "old_type_hash": was["type_hash"]}
            changes.notes.append(f"{where}: {q}: computed from {', '.join(entity.constants)}; "
                                 f"{transformer}() sets the running value when the bundle loads")


# -- 5. check the plan ---------------------------------------------------------------

def check(changes, units, old_units, new_units):
    """Refusals that depend on what the patch holds."""
    for unit in units:
        if unit.dsu and unit.after is not None and not unit.moved:
            _refuse_unreached_direct(changes, unit)
            _refuse_unbound_state(changes, unit)
            _refuse_header_statics(changes, unit)
    typechanges.refuse_changed_types(changes, old_units, new_units)


def _refuse_unreached_direct(changes, unit):
    """Changed static direct code no DSU function calls could never take
    effect; what only the entry point calls stays old with it (one line)."""
    direct_by_name = _direct_functions(unit.after)
    unreached = sorted(name for name in unit.changed_direct - unit.reached_direct
                       if name in direct_by_name and direct_by_name[name]["static"])
    for q, entry in sorted(unit.after["functions"].items()):
        if entry["direct"] != Direct.ENTRY_POINT or not unreached:
            continue
        only_its = sorted(_reached_direct(unit, entry["callees"]) & set(unreached))
        if only_its:
            unreached = [name for name in unreached if name not in only_its]
            changes.refusals.append(Refusal(
                Kind.DIRECT_UNREACHABLE, f"{unit.path}:{entry['line']}", entry["name"],
                f"{len(only_its)} changed function(s) only it calls ({few(only_its)}) stay at "
                f"their old version with it (it is running and is never replaced); if accepted, "
                "they stay old", accept=f"stale:{entry['name']}"))
    for name in unreached:
        own = direct_by_name[name]
        changes.refusals.append(Refusal(
            Kind.DIRECT_UNREACHABLE, f"{unit.path}:{own['line']}", name,
            f"changed, but it is called directly ({own['direct']}) and no DSU function "
            "calls it, so the change could never take effect"))


def _refuse_unbound_state(changes, unit):
    """A function of the patch, or a direct one it calls (the patch's own copy),
    that names mutable file-scope state psu could not bind would use a copy of
    its own: refused, by function, with the reason."""
    functions, variables = unit.after["functions"], unit.after["variables"]
    unbound = {v["name"]: v["unbound"] for v in variables.values()
               if v["scope"] == "file" and not v["const"] and v.get("unbound")}
    if not unbound:
        return
    direct = {f["name"]: q for q, f in functions.items() if f["direct"] is not None}
    running = [q for q in functions if _in_patch(changes, q)]
    seen = set(running)
    while running:
        for name in functions[running.pop()].get("callees", ()):
            if name in direct and direct[name] not in seen:
                seen.add(direct[name])
                running.append(direct[name])
    for q in sorted(seen):
        names = sorted(name for name in functions[q].get("reads", ()) if name in unbound)
        if names:
            changes.refusals.append(Refusal(
                Kind.STATE_BINDING, f"{unit.path}:{functions[q]['line']}", q,
                "the patch's code would use its own copy of mutable state psu cannot bind: " +
                ", ".join(f"{name} ({unbound[name]})" for name in names)))


def _refuse_header_statics(changes, unit):
    """A function of the patch using a mutable static a header defines would
    get the patch's own copy of it."""
    functions = unit.after["functions"]
    for q in sorted(q for q in functions if _in_patch(changes, q)):
        if functions[q].get("header_statics"):
            changes.refusals.append(Refusal(
                Kind.STATE_BINDING, f"{unit.path}:{functions[q]['line']}", q,
                "uses mutable static state defined in a header, which a patch cannot bind "
                f"(the patch would get its own copy): {', '.join(functions[q]['header_statics'])}; "
                "define it in a .c file and declare it extern in the header"))


def _in_patch(changes, q):
    return q in changes.replaced or q in changes.added


def _take_accepted(changes, accept):
    """Refusals named in PSU_ACCEPT become notes (never by default)."""
    names = set(accept)
    kept = []
    for refusal in changes.refusals:
        key = refusal.accept
        if key and (key in names or _short_name(key) in names or
                    (refusal.accept_each and set(refusal.accept_each) <= names)):
            changes.accepted.append(refusal)
            changes.notes.append(f"accepted {key}: {refusal.what}: {refusal.detail}")
        else:
            kept.append(refusal)
    changes.refusals = kept


def _short_name(key):
    """`type:struct S` is accepted as `type:S` too."""
    kind, _, name = key.partition(":")
    return f"{kind}:{name.split()[-1]}" if name else key


def report(changes, old, new, verbose=False):
    """The change report a person reads (also stored in the bundle's manifest).
    Bound state is listed in full only when `verbose`: it is every variable of
    the units compiled, the same from one bundle to the next."""
    lines = [f"psu: {new['program']}: {old.get('label')} ({old['build_id'][:12]}) -> "
             f"{new.get('label')} ({new['build_id'][:12]})"]

    def section(title, items):
        if items:
            lines.append(f"  {title}:")
            lines.extend(f"    {item}" for item in items)

    section("replaced", [q + (f"  (pulled in by {', '.join(changes.pulled_in[q])})"
                              if q in changes.pulled_in else "") for q in sorted(changes.replaced)])
    section("added", sorted(changes.added))
    section("removed (kept loaded)", sorted(changes.removed))
    if verbose:
        section("state bound", sorted(changes.bound))
    elif changes.bound:
        lines.append(f"  state bound: {len(changes.bound)} variable(s) of the running program "
                     "(listed by psu inspect)")
    section("state added", [q + (f"  (converted by {changes.transformed[q]['transformer']})"
                                 if q in changes.transformed else "")
                            for q in sorted(changes.added_variables)])
    section("notes", changes.notes)
    section("refused", [str(r) for r in changes.refusals])
    return "\n".join(lines)
