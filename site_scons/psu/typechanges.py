"""Changed types: which named types changed between FROM and TO, what
changed in each (for a person), and whether existing state can hold it -- a
bound variable or the signature of an existing DSU function reaches it.  One
refusal per type (the `check` step of change analysis, changes.py)."""
from .refusal import Kind, Refusal, few, short


def refuse_changed_types(changes, old_units, new_units):
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
            Kind.STATE_TYPE, f"{path}:{new_units[path]['variables'][q]['line']}", q,
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
        return "enumerators " + few(moved) + "; values stored by the running program keep the old numbering"
    if len(old_members) == 1 and old_members[0][0] == "" and len(new_members) == 1 and new_members[0][0] == "":
        what = [f"now '{short(new_members[0][1], 60)}' (was '{short(old_members[0][1], 60)}')"] \
            if old_members != new_members else []
    else:
        old_names = {name: text for name, text in old_members}
        new_names = {name: text for name, text in new_members}
        what = []
        for index, (name, text) in enumerate(old_members):
            if name in new_names:
                if new_names[name] != text:
                    what.append(f"{name}: '{short(text, 40)}' -> '{short(new_names[name], 40)}'")
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
    return few(what, 6)


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
        reach.append(f"{len(record['state'])} variable(s) ({few(sorted(record['state']), 3)})")
    if record["signatures"]:
        reach.append(f"the signatures of {len(record['signatures'])} function(s) "
                     f"({few(sorted(record['signatures']), 3)})")
    used = f"; the patch's functions using it: {few(sorted(record['users']), 4)}" \
        if record["users"] else ""
    same_layout = record["was"]["layout"] == record["now"]["layout"]
    held = f" (so does the layout of {few(held_by, 4)}, which hold it by value)" if held_by else ""
    return Refusal(
        Kind.TYPE, record["where"], name,
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
        moves.append("offsets " + few(moved, 4))
    if not moves:
        return refusal
    what, _, rest = refusal.detail.partition("; existing state holds it")
    return Refusal(refusal.kind, refusal.where, refusal.what,
                   f"{what} ({', '.join(moves)}); existing state holds it{rest}",
                   refusal.accept, refusal.accept_each, refusal.subject)
