"""Change analysis: from two manifests to the change set of a bundle, or the refusals.

The pipeline (each step's result holds from there on):
  1. correlate units, functions, variables and types by qualified name;
  2. classify each: same, changed, added, removed (a status per function and
     variable; units outside PSU_UNITS by what they define, not their text);
  3. pull in the DSU callers of changed direct code (SPEC §4.4) and every DSU
     reader of a changed constant (each version has its own copy);
  4. refuse what cannot be applied live: one refusal per cause, a changed type
     once with what changed in it and what it reaches; refusals the user
     vouched for by name (`PSU_ACCEPT`) become notes;
  5. plan each unit the bundle compiles.
"""
from dataclasses import dataclass, field

from .errors import NoChanges, RefusedChanges


@dataclass
class Refusal:
    kind: str          # see docs/refusals.md
    where: str         # file:line
    what: str          # the entity
    detail: str
    accept: str = ""   # the PSU_ACCEPT name that accepts it, or "" (it cannot be accepted)
    accept_each: tuple = ()  # or: PSU_ACCEPT names that together accept it
    subject: dict = None     # a changed type: {"type", "unit", "was", "now"} (for measuring it)

    def __str__(self):
        hint = f" (to accept: PSU_ACCEPT=['{self.accept}'])" if self.accept else ""
        return f"{self.where}: {self.kind}: {self.what}: {self.detail}{hint}"


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
    # working state of the analysis
    changed_direct: dict = field(default_factory=dict)  # unit -> names of changed direct functions
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


def compare(old, new, accept=()):
    """The change set that takes a process from manifest `old` to manifest `new`;
    `accept`: PSU_ACCEPT names of refusals the user vouches for."""
    changes = ChangeSet()
    old_units, new_units = old["units"], new["units"]
    if _without_macros(old.get("flags")) != _without_macros(new.get("flags")) or \
            old.get("compiler") != new.get("compiler"):
        changes.refusals.append(Refusal("build", new["program"], "compiler and flags",
                                        "FROM and TO are built differently; a bundle must be "
                                        "compiled like the program it patches"))

    # 1-3 per unit: correlate, classify, pull in
    for path in sorted(set(old_units) | set(new_units)):
        before, after = old_units.get(path), new_units.get(path)
        if before is None or after is None:
            entry = after or before
            if not entry["dsu"]:
                changes.refusals.append(Refusal("outside-dsu", path, path,
                                                "unit " + ("added" if after else "removed") +
                                                " outside the DSU units", accept=f"stale:{path}"))
            elif after is None:
                for q in entry["functions"]:
                    if entry["functions"][q]["direct"] is None:
                        changes.removed[q] = path
            else:
                _compare_unit(changes, path, _empty_unit(), after)
            continue
        if before["dsu"] != after["dsu"]:
            changes.refusals.append(Refusal("outside-dsu", path, path,
                                            "unit moved in or out of PSU_UNITS"))
            continue
        if not after["dsu"]:
            _compare_outside(changes, path, before, after)
            continue
        _compare_unit(changes, path, before, after)
    # 3 across units: constants reach their readers
    _propagate_constants(changes, old_units, new_units)
    # 4 types, once each; then what the user vouched for
    _compare_types(changes, old_units, new_units)
    _take_accepted(changes, accept)

    if changes.refusals:
        raise RefusedChanges(changes.refusals, report=report(changes, old, new), change_set=changes)
    if not changes.replaced and not changes.added and not changes.added_variables:
        raise NoChanges(f"psu: {old.get('label')} and {new.get('label')} build the same "
                        f"code ({new['build_id'][:12]}); there is nothing to patch")
    # 5 plan
    units = {u for u in list(changes.replaced.values()) + list(changes.added.values()) +
             list(changes.added_variables.values())}
    changes.units = sorted(units)
    return changes


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


def _empty_unit():
    return {"dsu": True, "functions": {}, "variables": {}, "helpers": {}}


def _compare_unit(changes, path, before, after):
    old_functions, new_functions = before["functions"], after["functions"]
    changed_direct = set()

    for q in sorted(set(old_functions) | set(new_functions)):
        was, now = old_functions.get(q), new_functions.get(q)
        where = f"{path}:{(now or was)['line']}"
        if now is None:
            if was["direct"] is None:
                changes.removed[q] = path
                changes.notes.append(f"{where}: {q} removed; kept in the running program")
            continue
        if was is None:
            if now["direct"] is None:
                changes.added[q] = path
            elif now["direct"] != "state transformer":
                changed_direct.add(now["name"])
            continue
        if was["direct"] is not None and now["direct"] is None \
                and was["signature_hash"] == now["signature_hash"]:
            # Direct before (e.g. its address is taken now): it gets a slot and a
            # trampoline like an added function, and its callers, which called
            # the old direct copy, come into the patch.
            changes.added[q] = path
            changed_direct.add(now["name"])
            continue
        if (was["direct"] is None) != (now["direct"] is None):
            changes.refusals.append(Refusal(
                "dsu-status", where, q,
                f"was {'a DSU function' if was['direct'] is None else 'direct (' + was['direct'] + ')'}"
                f", now {'a DSU function' if now['direct'] is None else 'direct (' + now['direct'] + ')'}"))
            continue
        if now["direct"] is not None:
            if was["body_hash"] != now["body_hash"] or was["signature_hash"] != now["signature_hash"]:
                if now["direct"] not in ("entry point", "state transformer"):
                    changed_direct.add(now["name"])
                elif now["direct"] == "entry point":
                    changes.refusals.append(Refusal(
                        "entry-point", where, q,
                        "changed, but the entry point is running and cannot be replaced; "
                        "if accepted, it stays at its old version", accept=f"stale:{now['name']}"))
            continue
        if was["signature_hash"] != now["signature_hash"]:
            changes.refusals.append(Refusal(
                "signature", where, q, f"signature changed from '{was['signature']}' "
                f"to '{now['signature']}' (callers compiled against the old one still run)"))
            continue
        if was["body_hash"] != now["body_hash"]:
            changes.replaced[q] = path

    for name, helper in after.get("helpers", {}).items():
        old_helper = before.get("helpers", {}).get(name)
        if old_helper is None or old_helper["body_hash"] != helper["body_hash"]:
            changed_direct.add(name)

    _pull_in_callers(changes, path, after, changed_direct)
    changes.changed_direct[path] = set(changed_direct)
    _compare_variables(changes, path, before, after)
    _refuse_unbound_state(changes, path, new_functions, after["variables"])
    for q in sorted(q for q in new_functions if q in changes.replaced or q in changes.added):
        if new_functions[q].get("header_statics"):
            changes.refusals.append(Refusal(
                "state-binding", f"{path}:{new_functions[q]['line']}", q,
                "uses mutable static state defined in a header, which a patch cannot bind "
                f"(the patch would get its own copy): {', '.join(new_functions[q]['header_statics'])}; "
                "define it in a .c file and declare it extern in the header"))


def _refuse_unbound_state(changes, path, functions, variables):
    """A function of the patch, or a direct one it calls (the patch's own copy),
    that names mutable file-scope state psu could not bind would use a copy of
    its own: refused, by function, with the reason."""
    unbound = {v["name"]: v["unbound"] for v in variables.values()
               if v["scope"] == "file" and not v["const"] and v.get("unbound")}
    if not unbound:
        return
    direct = {f["name"]: q for q, f in functions.items() if f["direct"] is not None}
    running = [q for q in functions if q in changes.replaced or q in changes.added]
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
                "state-binding", f"{path}:{functions[q]['line']}", q,
                "the patch's code would use its own copy of mutable state psu cannot bind: " +
                ", ".join(f"{name} ({unbound[name]})" for name in names)))


def _pull_in_callers(changes, path, unit, changed_direct):
    """Every DSU function reaching a changed direct function through direct calls."""
    if not changed_direct:
        return
    functions = unit["functions"]
    direct_by_name = {f["name"]: f for f in functions.values() if f["direct"] is not None}
    helpers = unit.get("helpers", {})

    def reaches(callees, seen):
        hits = set()
        for callee in callees:
            if callee in seen:
                continue
            seen.add(callee)
            if callee in changed_direct:
                hits.add(callee)
            inner = direct_by_name.get(callee) or helpers.get(callee)
            if inner is not None:
                hits |= reaches(inner["callees"], seen)
        return hits

    reached_any = set()
    for q, f in sorted(functions.items()):
        if f["direct"] is not None:
            continue
        hits = reaches(f["callees"], set())
        if hits:
            reached_any |= hits
            if q not in changes.added:
                changes.replaced[q] = path
                changes.pulled_in[q] = sorted(hits)
    for name in sorted(changed_direct):
        own = direct_by_name.get(name)
        if own is not None and not own["static"]:
            changes.refusals.append(Refusal(
                "direct-global", f"{path}:{own['line']}", name,
                f"changed, but it is called directly ({own['direct']}) and has external "
                "linkage: code outside the patch would go on calling the old copy; make it "
                "a DSU function (not excluded, not inline) or static"))
    unreachable = sorted(name for name in changed_direct - reached_any
                         if name in direct_by_name and direct_by_name[name]["static"])
    # Helpers only an entry point calls stay old with it: one line, accepted with it.
    for q, entry in sorted(functions.items()):
        if entry["direct"] != "entry point" or not unreachable:
            continue
        only_its = sorted(reaches(entry["callees"], set()) & set(unreachable))
        if only_its:
            unreachable = [n for n in unreachable if n not in only_its]
            changes.refusals.append(Refusal(
                "direct-unreachable", f"{path}:{entry['line']}", entry["name"],
                f"{len(only_its)} changed function(s) only it calls ({_few(only_its)}) stay at "
                f"their old version with it (it is running and is never replaced); if accepted, "
                "they stay old", accept=f"stale:{entry['name']}"))
    for name in unreachable:
        own = direct_by_name[name]
        changes.refusals.append(Refusal(
            "direct-unreachable", f"{path}:{own['line']}", name,
            f"changed, but it is called directly ({own['direct']}) and no DSU function "
            "calls it, so the change could never take effect"))


def _compare_variables(changes, path, before, after):
    old_vars, new_vars = before["variables"], after["variables"]
    transformers = {f["name"] for f in after["functions"].values()
                    if f["direct"] == "state transformer"}
    for q in sorted(set(old_vars) | set(new_vars)):
        was, now = old_vars.get(q), new_vars.get(q)
        where = f"{path}:{(now or was)['line']}"
        if now is None:
            if not was["const"]:
                changes.removed_variables[q] = path
                changes.notes.append(f"{where}: {q} no longer used; its storage stays")
            continue
        if now["const"]:
            # constant data: each version has its own copy; a changed one reaches
            # every reader (_propagate_constants)
            if was is not None and was["const"] and now["scope"] == "file" and not now["static"] \
                    and (was["init_hash"] != now["init_hash"] or was["type_hash"] != now["type_hash"]):
                changes.constants[now["name"]] = path
            continue
        if now.get("unbound"):
            patched_here = {q.rsplit(":", 1)[-1] for q, unit in changes.replaced.items()
                            if unit == path}
            if now["scope"] == "function" and now["function"] in patched_here:
                changes.notes.append(f"{where}: {q} is not bound ({now['unbound']}): "
                                     "the new version has its own")
            continue
        if was is None or was["const"]:
            changes.added_variables[q] = path
            continue
        transformer = "psu_transform_" + (f"{now['function']}_{now['name']}"
                                          if now["scope"] == "function" else now["name"])
        if was["type_hash"] != now["type_hash"] or was["thread_local"] != now["thread_local"]:
            if transformer in transformers and now["static"]:
                changes.transformed[q] = {"transformer": transformer,
                                          "old_type_hash": was["type_hash"]}
                changes.added_variables[q] = path
                continue
            if was["type"] == now["type"] and was["thread_local"] == now["thread_local"]:
                # same text, new layout: a type it holds changed, which
                # _compare_types reports once, naming this variable
                changes.relayout.add(q)
                continue
            changes.refusals.append(Refusal(
                "state-type", where, q,
                f"type of existing state changed from '{_short(was['type'])}' to "
                f"'{_short(now['type'])}'" + ("" if not now["static"] else
                                              f"; define {transformer}() to convert it")))
            continue
        changes.bound[q] = path
        if was["init_hash"] != now["init_hash"] and transformer in transformers and now["static"]:
            # same type, same storage: the transformer fixes the running value up in place
            changes.transformed[q] = {"transformer": transformer, "old_type_hash": was["type_hash"]}
            changes.notes.append(f"{where}: {q}: initializer changed; {transformer}() sets the "
                                 "running value when the bundle loads")
        elif was["init_hash"] != now["init_hash"]:
            changes.refusals.append(Refusal(
                "state-init", where, q,
                "initializer changed (in its text, or in a constant, enumerator or macro it is "
                "computed from): the running program holds the value of the old one, which "
                "the new code would read; if accepted, the running value is kept",
                accept=f"init:{now['name']}"))


def _compare_outside(changes, path, before, after):
    """A unit outside PSU_UNITS is never rebuilt into a bundle: what it defines
    stays at its old version.  Compared by its definitions (a declaration added
    to a header it includes changes nothing); each changed function or variable
    is refused by name, and can be accepted as staying old."""
    if not before.get("described", True) or not after.get("described", True):
        if before["text_hash"] != after["text_hash"]:
            changes.refusals.append(Refusal(
                "outside-dsu", path, path, "changed, but it is not a DSU unit (add it to "
                "PSU_UNITS to update it live); psu could not parse it, so it compares its text",
                accept=f"stale:{path}"))
        return
    old_functions, new_functions = before["functions"], after["functions"]
    changed = set()
    for q in sorted(set(new_functions)):
        was, now = old_functions.get(q), new_functions[q]
        if was is None or was["body_hash"] != now["body_hash"] or \
                was["signature_hash"] != now["signature_hash"]:
            changed.add(q)
    # a changed inline helper of a header changes the functions that reach it
    helpers_changed = {name for name, helper in after.get("helpers", {}).items()
                       if before.get("helpers", {}).get(name, {}).get("body_hash") != helper["body_hash"]}
    if helpers_changed:
        helpers = after.get("helpers", {})

        def reaches(callees, seen):
            for callee in callees:
                if callee not in seen:
                    seen.add(callee)
                    if callee in helpers_changed or reaches(helpers.get(callee, {}).get("callees", ()), seen):
                        return True
            return False
        changed |= {q for q, f in new_functions.items() if reaches(f["callees"], set())}
    entities = [(q, new_functions[q], q not in old_functions) for q in sorted(changed)]
    old_vars, new_vars = before["variables"], after["variables"]
    for q in sorted(new_vars):
        was, now = old_vars.get(q), new_vars[q]
        if was is not None and was["type_hash"] == now["type_hash"] and was["init_hash"] == now["init_hash"]:
            continue
        if was is not None and now["const"] and not now["static"]:
            changes.constants[now["name"]] = path      # its readers are traced too
        entities.append((q, now, was is None))
    if len(entities) == 1:
        q, now, added = entities[0]
        changes.refusals.append(Refusal(
            "outside-dsu", f"{path}:{now['line']}", q,
            ("added" if added else "changed") + f" outside the DSU units (add {path} to "
            "PSU_UNITS to update it live); if accepted, it stays at its old version",
            accept=f"stale:{now['name']}"))
    elif entities:
        # one line for the unit: the names, a few of them, and one name to accept them all
        changed_names = [q for q, _, added in entities if not added]
        added_names = [q for q, _, added in entities if added]
        what = "; ".join(part for part in (
            f"{len(changed_names)} changed ({_few(changed_names, 6)})" if changed_names else "",
            f"{len(added_names)} added ({_few(added_names, 3)})" if added_names else "") if part)
        changes.refusals.append(Refusal(
            "outside-dsu", path, path,
            f"definitions outside the DSU units (add it to PSU_UNITS to update them live): {what}; "
            "if accepted, they stay at their old version", accept=f"stale:{path}",
            accept_each=tuple(sorted({f"stale:{now['name']}" for _, now, _ in entities}))))


def _propagate_constants(changes, old_units, new_units):
    """Each version has its own copy of constant data (a bundle compiles its
    own, under a name of its own), so every DSU function that reads a changed
    constant is part of the patch; a reader that cannot be replaced (the entry
    point, a function outside the DSU units, a direct function) is refused."""
    if not changes.constants:
        return
    for path, unit in sorted(new_units.items()):
        if not unit.get("described", True) or path not in old_units:
            continue
        readers = {}
        for q, f in sorted(unit["functions"].items()):
            names = sorted(set(f.get("reads", ())) & set(changes.constants))
            if names:
                readers[q] = names
        for q, names in readers.items():
            f = unit["functions"][q]
            where = f"{path}:{f['line']}"
            constants = ", ".join(names)
            if not unit["dsu"]:
                changes.refusals.append(Refusal(
                    "stale-constant", where, q,
                    f"reads {constants}, whose value changed, and it is outside the DSU units: "
                    "it would go on reading the old copy; if accepted, it stays at its old version",
                    accept=f"stale:{f['name']}"))
            elif f["direct"] is None:
                if q not in changes.added:
                    changes.replaced[q] = path
                    changes.pulled_in.setdefault(q, [])
                    changes.pulled_in[q] = sorted(set(changes.pulled_in[q]) |
                                                  {f"{n} (constant)" for n in names})
            elif f["direct"] == "entry point":
                changes.refusals.append(Refusal(
                    "stale-constant", where, q,
                    f"reads {constants}, whose value changed, but the entry point is running and "
                    "cannot be replaced; if accepted, it stays at its old version (and reads the old copy)",
                    accept=f"stale:{f['name']}"))
            elif f["direct"] != "state transformer":
                _pull_in_callers(changes, path, unit, {f["name"]} - changes.changed_direct.get(path, set()))
        transformers = {f["name"] for f in unit["functions"].values() if f["direct"] == "state transformer"}
        for q, v in sorted(unit["variables"].items()):
            names = sorted(set(v.get("reads", ())) & set(changes.constants))
            if not names or v["const"] or q not in changes.bound or q in changes.transformed:
                continue
            transformer = f"psu_transform_{v['name']}"
            if v["static"] and v["scope"] == "file" and transformer in transformers:
                changes.transformed[q] = {"transformer": transformer, "old_type_hash": v["type_hash"]}
                changes.notes.append(f"{path}:{v['line']}: {q}: computed from {', '.join(names)}; "
                                     f"{transformer}() sets the running value when the bundle loads")
            else:
                changes.refusals.append(Refusal(
                    "state-init", f"{path}:{v['line']}", q,
                    f"its initializer names {', '.join(names)}, whose value changed: the running "
                    "value was computed from the old one; if accepted, the running value is kept",
                    accept=f"init:{v['name']}"))


# -- types ---------------------------------------------------------------------------

def _type_changed(was, now):
    if was["kind"] == "enum" and now["kind"] == "enum":
        # enumerators appended keep every existing value
        return was["members"] != now["members"][:len(was["members"])]
    return was["members"] != now["members"] or was["layout"] != now["layout"] or was["kind"] != now["kind"]


def _describe_type_change(was, now):
    """What changed in a type, for a person: renamed, added, removed, retyped members."""
    old_members, new_members = was["members"], now["members"]
    if was["kind"] == "enum":
        new_values = dict(map(tuple, new_members))
        moved = [f"{name} ({'removed' if name not in new_values else 'renumbered'})"
                 for index, (name, value) in enumerate(old_members)
                 if index >= len(new_members) or new_members[index] != [name, value]]
        return "enumerators " + _few(moved) + "; values stored by the running program keep the old numbering"
    if len(old_members) == 1 and old_members[0][0] == "" and len(new_members) == 1 and new_members[0][0] == "":
        what = [f"now '{_short(new_members[0][1], 60)}' (was '{_short(old_members[0][1], 60)}')"] \
            if old_members != new_members else []
    else:
        old_names = {name: text for name, text in old_members}
        new_names = {name: text for name, text in new_members}
        what = []
        for index, (name, text) in enumerate(old_members):
            if name in new_names:
                if new_names[name] != text:
                    what.append(f"{name}: '{_short(text, 40)}' -> '{_short(new_names[name], 40)}'")
            elif index < len(new_members) and new_members[index][0] not in old_names \
                    and new_members[index][1] == text:
                what.append(f"{name} renamed {new_members[index][0]}")
            else:
                what.append(f"{name} removed")
        renamed_to = {new_members[i][0] for i, (n, t) in enumerate(old_members)
                      if n not in new_names and i < len(new_members) and new_members[i][1] == t}
        what += [f"{name} added" for name, _ in new_members
                 if name not in old_names and name not in renamed_to]
        if [n for n, _ in old_members if n in new_names] != [n for n, _ in new_members if n in old_names]:
            what.append("members reordered")
    if was["layout"] == now["layout"]:
        what.append("same layout")
    else:
        what.append("layout changed" + ("" if old_members != new_members else
                                        " (a type it holds by value changed)"))
    return _few(what, 6)


def _few(items, limit=5):
    items = list(items)
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _reaching(types, target):
    """Named types of a unit from which `target` is reachable (through values
    and pointers, not function-pointer parameters), `target` included."""
    into = {}
    for name, desc in types.items():
        for ref, how in desc.get("refs", {}).items():
            if how != "fnparam":
                into.setdefault(ref, set()).add(name)
    found, pending = set(), [target]
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(into.get(name, ()))
    return found


def _held_by(found, derived, name):
    """The changed types that hold `name` by value, directly or through others."""
    result, pending = set(), [name]
    while pending:
        current = pending.pop()
        for holder in found.get(current, {}).get("held_by", ()):
            if holder in derived and holder not in result:
                result.add(holder)
                pending.append(holder)
    # a typedef that only names a type (`typedef struct S S`) is that type
    return sorted(h for h in result if found[h]["now"]["members"] != [["", found[h]["now"]["members"][0][1]]]
                  or found[h]["now"]["members"][0][1] not in found)


def _compare_types(changes, old_units, new_units):
    """One refusal per changed type that existing state can hold: a bound
    variable or the signature of an existing function reaches it (through
    values and pointers).  A type only the patch's function bodies use changes
    with them; one reached only through function-pointer parameters is no
    state.  A type whose layout is unchanged (a member renamed) may be
    accepted by name; one whose layout changed cannot: old objects would not
    fit (shadow data or a state transformer is the way, docs/refusals.md)."""
    found = _changed_types(changes, old_units, new_units)
    # A type whose members read the same but whose layout changed holds a changed
    # type by value: that type's line says so, once, instead of one line each.
    derived = {name for name, r in found.items()
               if r["was"]["members"] == r["now"]["members"] and r["holds"] & set(found)}
    for name in sorted(derived):
        for held in sorted(found[name]["holds"] & set(found)):
            found[held].setdefault("held_by", set()).add(name)
    for name, record in sorted(found.items()):
        if name not in derived and (record["state"] or record["signatures"]):
            changes.refusals.append(_type_refusal(name, record, _held_by(found, derived, name)))
    # a variable whose layout changed was transformed or is refused through its
    # type above; anything else is refused by itself
    covered = set().union(*(r["state"] for r in found.values())) if found else set()
    for q in sorted(changes.relayout - covered):
        path = next(p for p, u in new_units.items() if q in u.get("variables", {}))
        changes.refusals.append(Refusal(
            "state-type", f"{path}:{new_units[path]['variables'][q]['line']}", q,
            "the layout of existing state changed"))


def _changed_types(changes, old_units, new_units):
    """Type name -> what changed and what reaches it, over every DSU unit."""
    found = {}
    for path, after in sorted(new_units.items()):
        before = old_units.get(path)
        if before is None or not before.get("types") or not after.get("dsu"):
            continue
        old_types, new_types = before["types"], after.get("types", {})
        for name in sorted(set(old_types) & set(new_types)):
            was, now = old_types[name], new_types[name]
            if not _type_changed(was, now):
                continue
            reaching = _reaching(new_types, name)
            state = sorted(q for q, v in after["variables"].items()
                           if q in old_units[path]["variables"] and not v["const"]
                           and q not in changes.transformed and not v.get("unbound")
                           and reaching & set(v.get("type_refs", ())))
            # calls cross between versions only through DSU functions (a direct one
            # is called by name from its own unit, and comes into the patch with its callers)
            signatures = sorted(q for q, f in after["functions"].items()
                                if q in before["functions"] and f["direct"] is None
                                and reaching & set(f.get("signature_types", ())))
            users = _users(changes, path, after, name, reaching, _changed_members(was, now))
            # one record per type name, whatever the units that see it
            record = found.setdefault(name, {"where": now.get("where") or path, "was": was, "now": now,
                                             "unit": path,
                                             "state": set(), "signatures": set(), "users": set(),
                                             "holds": set()})
            record["state"] |= set(state)
            record["signatures"] |= set(signatures)
            record["users"] |= set(users)
            record["holds"] |= {ref for ref, how in now.get("refs", {}).items() if how == "value"}
    return found


def _changed_members(was, now):
    """Names of the members renamed (old and new name), added, removed or retyped."""
    if was["kind"] == "enum" or now["kind"] == "enum":
        return set()
    old, new = dict(map(tuple, was["members"])), dict(map(tuple, now["members"]))
    return {m for m in set(old) | set(new) if old.get(m) != new.get(m)} - {""}


def _users(changes, path, unit, name, reaching, members):
    """The patch's functions of `path` that use type `name`: they name it, or
    select one of its changed members from something that reaches it."""
    users = []
    variable_types = {v["name"]: v.get("type_refs", ()) for v in unit["variables"].values()
                      if v["scope"] == "file"}
    for q in changes.switched:
        f = unit["functions"].get(q)
        if f is None or changes.replaced.get(q, changes.added.get(q)) != path:
            continue
        types = set(f.get("body_types", ())) | set(f.get("signature_types", ()))
        types.update(*(variable_types.get(n, ()) for n in f.get("reads", ())))
        if name in types or (members & set(f.get("members", ())) and reaching & types):
            users.append(q)
    return sorted(users)


def _type_refusal(name, record, held_by):
    reach = []
    if record["state"]:
        reach.append(f"{len(record['state'])} variable(s) ({_few(sorted(record['state']), 3)})")
    if record["signatures"]:
        reach.append(f"the signatures of {len(record['signatures'])} function(s) "
                     f"({_few(sorted(record['signatures']), 3)})")
    used = f"; the patch's functions using it: {_few(sorted(record['users']), 4)}" \
        if record["users"] else ""
    same_layout = record["was"]["layout"] == record["now"]["layout"]
    held = f" (so does the layout of {_few(held_by, 4)}, which hold it by value)" if held_by else ""
    return Refusal(
        "type", record["where"], name,
        f"{_describe_type_change(record['was'], record['now'])}{held}; existing state holds it: "
        f"reached by {' and '.join(reach)}{used}",
        accept=f"type:{name}" if same_layout else "",
        subject={"type": name, "unit": record["unit"], "was": record["was"], "now": record["now"]})


def measured(refusal, old_layout, new_layout):
    """`refusal` of a type with the sizes and offsets the compiler gave, where
    they moved: {"size": n, "offsets": {member: n}} of each side, or None."""
    if not old_layout or not new_layout:
        return refusal
    moves = []
    if old_layout.get("size") != new_layout.get("size"):
        moves.append(f"size {old_layout.get('size')} -> {new_layout.get('size')}")
    old_offsets, new_offsets = old_layout.get("offsets", {}), new_layout.get("offsets", {})
    moved = [f"{m} {old_offsets[m]} -> {new_offsets[m]}" for m in old_offsets
             if m in new_offsets and old_offsets[m] != new_offsets[m]]
    if moved:
        moves.append("offsets " + _few(moved, 4))
    if not moves:
        return refusal
    what, _, rest = refusal.detail.partition("; existing state holds it")
    return Refusal(refusal.kind, refusal.where, refusal.what,
                   f"{what} ({', '.join(moves)}); existing state holds it{rest}",
                   refusal.accept, refusal.accept_each, refusal.subject)


def _short(text, limit=120):
    return text if len(text) <= limit else text[:limit] + "..."


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
