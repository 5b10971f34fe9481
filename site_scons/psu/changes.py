"""Change analysis: from two manifests to the change set of a bundle, or the refusals.

The pipeline (each step's result holds from there on):
  1. correlate units, functions and variables by qualified name;
  2. classify each: same, changed, added, removed;
  3. pull in the DSU callers of changed direct code (SPEC §4.4);
  4. refuse what cannot be applied live, all refusals collected;
  5. plan each unit the bundle compiles.
"""
from dataclasses import dataclass, field

from .errors import NoChanges, RefusedChanges


@dataclass
class Refusal:
    kind: str          # signature, state-type, outside-dsu, direct-unreachable, dsu-status
    where: str         # file:line
    what: str          # the entity
    detail: str

    def __str__(self):
        return f"{self.where}: {self.kind}: {self.what}: {self.detail}"


@dataclass
class ChangeSet:
    replaced: dict = field(default_factory=dict)      # qualname -> unit
    added: dict = field(default_factory=dict)         # qualname -> unit
    pulled_in: dict = field(default_factory=dict)     # qualname -> [helper names]
    removed: dict = field(default_factory=dict)       # qualname -> unit
    bound: dict = field(default_factory=dict)         # variable qualname -> unit
    added_variables: dict = field(default_factory=dict)
    removed_variables: dict = field(default_factory=dict)
    transformed: dict = field(default_factory=dict)   # variable qualname -> transformer name
    notes: list = field(default_factory=list)
    refusals: list = field(default_factory=list)
    units: list = field(default_factory=list)         # units the bundle compiles

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
                          "transformed": {k: v["transformer"] for k, v in
                                          sorted(self.transformed.items())}},
            "notes": list(self.notes),
            "units": list(self.units),
        }


def compare(old, new):
    """The change set that takes a process from manifest `old` to manifest `new`."""
    changes = ChangeSet()
    old_units, new_units = old["units"], new["units"]
    if old.get("flags") != new.get("flags") or old.get("compiler") != new.get("compiler"):
        changes.refusals.append(Refusal("build", new["program"], "compiler and flags",
                                        "FROM and TO are built differently; a bundle must be "
                                        "compiled like the program it patches"))

    for path in sorted(set(old_units) | set(new_units)):
        before, after = old_units.get(path), new_units.get(path)
        if before is None or after is None:
            entry = after or before
            if not entry["dsu"]:
                changes.refusals.append(Refusal("outside-dsu", path, path,
                                                "unit " + ("added" if after else "removed") +
                                                " outside the DSU units"))
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
            if before["text_hash"] != after["text_hash"]:
                changes.refusals.append(Refusal(
                    "outside-dsu", path, path,
                    "changed, but it is not a DSU unit (add it to PSU_UNITS to update it live)"))
            continue
        _compare_unit(changes, path, before, after)

    if changes.refusals:
        raise RefusedChanges(changes.refusals, report=report(changes, old, new))
    if not changes.replaced and not changes.added and not changes.added_variables:
        raise NoChanges(f"psu: {old.get('label')} and {new.get('label')} build the same "
                        f"code ({new['build_id'][:12]}); there is nothing to patch")
    units = {u for u in list(changes.replaced.values()) + list(changes.added.values()) +
             list(changes.added_variables.values())}
    changes.units = sorted(units)
    return changes


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
                        "direct-unreachable", where, q,
                        "the entry point is running and cannot be replaced"))
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
    _compare_variables(changes, path, before, after)
    for q in sorted(q for q in new_functions if q in changes.replaced or q in changes.added):
        if new_functions[q].get("header_statics"):
            changes.refusals.append(Refusal(
                "state-binding", f"{path}:{new_functions[q]['line']}", q,
                "uses mutable static state defined in a header, which a patch cannot bind "
                f"(the patch would get its own copy): {', '.join(new_functions[q]['header_statics'])}; "
                "define it in a .c file and declare it extern in the header"))


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
    for name in sorted(changed_direct - reached_any):
        own = direct_by_name.get(name)
        if own is not None and own["static"]:
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
            continue  # constant data is private to each version
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
        if was["type_hash"] != now["type_hash"] or was["thread_local"] != now["thread_local"]:
            transformer = "psu_transform_" + (f"{now['function']}_{now['name']}"
                                              if now["scope"] == "function" else now["name"])
            if transformer in transformers and now["static"]:
                changes.transformed[q] = {"transformer": transformer,
                                          "old_type_hash": was["type_hash"]}
                changes.added_variables[q] = path
                continue
            changes.refusals.append(Refusal(
                "state-type", where, q,
                f"type of existing state changed from '{_short(was['type'])}' to "
                f"'{_short(now['type'])}'" + ("" if not now["static"] else
                                              f"; define {transformer}() to convert it")))
            continue
        changes.bound[q] = path
        if was["init_hash"] != now["init_hash"]:
            changes.notes.append(f"{where}: {q}: initializer changed; the running value is kept")


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
