"""Code generation: a DSU unit's original text, edited, plus generated C from templates.

Three roles share one set of edits (see docs/architecture.md):
- `program`: the release build.  Each DSU function keeps its definition and
  name; its body begins with a check of its slot, and the general path that
  calls a bundle's version is appended; static state gets global names
  (aliases for file-scope statics, hoisted definitions for function-local
  ones) so patches can bind to it.
- `code`: a bundle's unloadable code.  Functions of the patch are compiled
  and exported to the bundle table; every other DSU function reached from it
  calls the running program's trampoline; all existing state is `extern`,
  bound by symbol name; constant data stays private to the bundle.
- `state`: a bundle's never-unloaded object: the variables the patch adds and
  the slots and trampolines of the functions it adds.
"""
import functools
import hashlib
import re

import jinja2

from . import resources
from .errors import CSourceError
from .srctext import SourceText

ROLES = ("program", "code", "state")


def mangle(qualname, *distinguishing):
    """A readable, unique C identifier fragment for a qualified name (and anything
    else that must tell two symbols of the same name apart)."""
    readable = re.sub(r"[^A-Za-z0-9]+", "_", qualname).strip("_")
    key = "\0".join((qualname, *distinguishing))
    return f"{readable}_{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def tramp_symbol(qualname):
    return "psu_tramp_" + mangle(qualname)


def var_symbol(qualname, type_hash):
    """The global name state is bound by.  It carries the type, so a variable whose
    type a transformer changed is a new object, and a patch never binds new code
    to storage of the old type."""
    return "psu_var_" + mangle(qualname, type_hash)


def patch_symbol(qualname):
    return "psu_patch_" + mangle(qualname)


def record_symbol(qualname):
    return "psu_fn_" + mangle(qualname)


@functools.lru_cache(maxsize=None)
def _environment():
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(resources.templates_dir()),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render(template, **values):
    return _environment().get_template(template).render(**values)


class UnitPlan:
    """What a bundle does with one unit: functions switched, state bound or added."""

    def __init__(self, patched=(), added_functions=(), added_variables=(), carried=()):
        self.patched = set(patched)              # qualnames the bundle switches
        self.carried = set(carried)              # unchanged, brought to retire older bundles
        self.added_functions = set(added_functions)
        self.added_variables = set(added_variables)


def transform(unit, text, role, dsu_names, output_path, plan=None, program_functions=()):
    """The source of `unit` for `role`; `dsu_names` are its DSU functions' names;
    `program_functions` (code role): the external DSU functions of the running
    program, by name, that its calls from the bundle should reach."""
    if role not in ROLES:
        raise ValueError(role)
    plan = plan or UnitPlan()
    source = SourceText(unit.path, text, unit.storage_macros)
    entries = []

    for function in unit.functions:
        for local in function.locals:
            _bind_local(source, local)
        if function.name not in dsu_names:
            continue
        if function.unreadable:
            raise _unreadable(function)
        name_index = source.find_name(function.name, function.location.line, function.location.column)
        entry = _function_entry(function, role, plan)
        entries.append(entry)
        if role == "program":
            _check_on_entry(source, function, name_index, entry, first=len(entries) == 1)
            continue
        source.replace(name_index, f"psu_impl_{function.name}")
        prototype = ("static " if function.static else "") + function.signature.replace("@NAME@", function.name)
        if not function.static:
            # a bundle exports some implementations by alias and compiles the rest
            # unused: hidden, so only the table names them
            prototype += ";\n__attribute__((visibility(\"hidden\"))) " + \
                function.signature.replace("@NAME@", f"psu_impl_{function.name}")
        source.insert_lines_before(source.declaration_start(name_index), prototype + ";")

    for variable in unit.variables:
        if variable.const or not variable.definition or variable.unbound:
            continue
        if role == "program":
            # a static gets a global name patches bind to; a global has one already
            if variable.static:
                for location in variable.locations:
                    _bind_file_variable(source, variable, location, define=True)
            continue
        define = role == "state" and variable.qualname in plan.added_variables
        for location in variable.locations:
            _bind_file_variable(source, variable, location, define)

    hoisted = []
    for function in unit.functions:
        for local in function.locals:
            if local.const or local.unbound:
                continue
            if role == "program" or (role == "state" and local.qualname in plan.added_variables):
                hoisted.append({"qualname": local.qualname,
                                "definition": local.decl.replace("@NAME@", var_symbol(local.qualname, local.type_hash))})

    body = source.edited()
    if not body.endswith("\n"):
        body += "\n"
    first_line = body.count("\n") + 3
    redirected = []
    if role == "code":
        called = set().union(*(f.callees for f in unit.functions))
        redirected = [{"name": name, "symbol": tramp_symbol(name)}
                      for name in sorted(called & set(program_functions))]
    trailer = render("unit_trailer.c.j2", unit=unit.path, role=role, functions=entries,
                     hoisted=hoisted, first_line=first_line, redirected=redirected,
                     output_path=output_path.replace("\\", "/"))
    return f'#line 1 "{unit.path}"\n' + body + trailer


def _unreadable(function):
    """The front end's located error for a function it could not read (its text
    is `file:line:col: psu: message`), raised when that function should be a DSU function."""
    found = re.match(r"^(.*?):(\d+)(?::(\d+))?: psu: (.*)$", function.unreadable, re.DOTALL)
    if not found:
        loc = function.location
        return CSourceError(loc.file, loc.line, loc.column, function.unreadable)
    return CSourceError(found.group(1), int(found.group(2)), int(found.group(3) or 0), found.group(4))


def _function_entry(function, role, plan):
    args = ", ".join(f"psu_a{i}" for i in range(function.arity))
    entry = {
        "name": function.name, "qualname": function.qualname, "static": function.static,
        "head": function.head.replace("@NAME@", function.name), "args": args,
        "returns_void": function.returns_void, "result": function.result,
        "pointer_type": function.signature.replace("@NAME@", "(*)"),
        "tramp_symbol": tramp_symbol(function.qualname),
        "tramp_declaration": function.signature.replace("@NAME@", tramp_symbol(function.qualname)),
        "patch_declaration": function.signature.replace("@NAME@", patch_symbol(function.qualname)),
        "exported": role == "code" and function.qualname in plan.patched | plan.carried,
        "kind": None, "record": f"psu_fn_{function.name}", "record_static": True,
        "initial": "PSU_EXECUTABLE_VERSION",
    }
    added = function.qualname in plan.added_functions
    if role == "program":
        # the executable's version is the definition itself, entered by every call
        entry.update(kind="trampoline",
                     general_head=function.head.replace("@NAME@", f"psu_general_{function.name}"))
    elif role == "state" and added:
        entry.update(kind="trampoline", record=record_symbol(function.qualname),
                     record_static=False, initial="0", general_head=entry["head"])
    elif function.static:
        entry["kind"] = "forwarder"
    return entry


def _check_on_entry(source, function, name_index, entry, first):
    """Program role: the definition keeps its name, and its body begins with the
    check that sends a call to the general path unless the executable's version
    is current.  Every call -- by name from any unit, through a pointer, from a
    bundle -- arrives here, and the compiler treats the function (inlining it,
    cloning it) as it treats the plain one."""
    if None in function.parameters:
        loc = function.location
        raise CSourceError(loc.file, loc.line, loc.column,
                           f"a parameter of '{function.name}' has no name, so its DSU entry "
                           f"check cannot pass it on; name it or add '{function.name}' to PSU_EXCLUDE")
    brace = source.body_start(name_index)
    if source.tokens[brace].line != function.body_line:
        token = source.tokens[brace]
        raise CSourceError(source.path, token.line, token.column,
                           f"cannot find where the body of '{function.name}' begins (a macro "
                           f"writes its '{{'?); add it to PSU_EXCLUDE")
    edits = _environment().get_template("function_entry.c.j2").module
    source.insert_lines_before(source.declaration_start(name_index),
                               str(edits.declarations(entry, first)))
    check = dict(entry, args=", ".join(function.parameters))
    source.insert_after(brace, " " + str(edits.entry_check(check)))
    end = str(edits.entry_check_end(check))
    if end:
        source.insert_before(source.body_end(brace, function.body_end_line, function.name), end + " ")


def _bind_local(source, local):
    """A function-local static becomes a block-scope `extern` bound to its global name."""
    if local.const or local.unbound:
        return
    name_index = source.find_name(local.name, local.location.line, local.location.column)
    start = source.declaration_start(name_index)
    storage = source.storage_token(start, name_index)
    if storage is None or source.storage_class(storage) != "static":
        raise CSourceError(local.location.file, local.location.line, local.location.column,
                           f"cannot find 'static' of '{local.name}'")
    _make_extern(source, storage, name_index, var_symbol(local.qualname, local.type_hash),
                 local.length)


def _bind_file_variable(source, variable, location, define):
    name_index = source.find_name(variable.name, location.line, location.column)
    start = source.declaration_start(name_index)
    storage = source.storage_token(start, name_index)
    label = var_symbol(variable.qualname, variable.type_hash) if variable.static else None
    if define:
        # An added variable: defined here, under its global name.
        if storage is not None and source.storage_class(storage) == "static":
            source.replace(storage, "")
        if label and not source.existing_label(name_index):
            source.insert_after_declarator(name_index, f' __asm__("{label}")')
        return
    if storage is None:
        source.insert_before(start, "extern ")
    elif source.storage_class(storage) == "static":
        source.replace(storage, "extern")
    _make_extern(source, None, name_index, label, variable.length)


def _make_extern(source, storage, name_index, label, length=None):
    if storage is not None:
        source.replace(storage, "extern")
    tokens = source.tokens
    if length is not None and tokens[name_index + 1].text == "[" and tokens[name_index + 2].text == "]":
        source.insert_before(name_index + 2, str(length))   # `x[]` keeps the size its initializer gave
    end = source.declarator_end(name_index)
    if label and not source.existing_label(name_index):
        source.insert_after_declarator(name_index, f' __asm__("{label}")')
    if source.tokens[end].text == "=":
        source.delete_range(end, source.initializer_end(end))
    elif source.tokens[end].text not in (",", ";"):
        # attributes follow the declarator; the initializer, if any, comes after them
        i = end
        while i < len(source.tokens) and source.tokens[i].text not in ("=", ",", ";"):
            i += 1
        if i < len(source.tokens) and source.tokens[i].text == "=":
            source.delete_range(i, source.initializer_end(i))


def program_info(program, build_id, label):
    return render("program_info.c.j2", program=program, build_id=build_id, label=label)


def bundle_main(label, base, target, functions, transformed=None, carried=()):
    """The bundle's tables: `functions` switched, `carried` unchanged copies (the
    runtime switches those only away from older bundles, so they can be unloaded);
    `transformed`: variable qualname -> {transformer, old_type_hash}."""
    entries = [{"qualname": q, "symbol": patch_symbol(q)} for q in sorted(functions)]
    carried_entries = [{"qualname": q, "symbol": patch_symbol(q)} for q in sorted(carried)]
    transformers = [{"function": t["transformer"], "wrapper": f"psu_run_transformer_{i}",
                     "old": f"psu_old_state_{i}", "old_symbol": var_symbol(q, t["old_type_hash"])}
                    for i, (q, t) in enumerate(sorted((transformed or {}).items()))]
    return render("bundle_main.c.j2", label=label, base=base, target=target, entries=entries,
                  carried=carried_entries, transformers=transformers)


def state_main(label, added_functions):
    entries = [{"record": record_symbol(q)} for q in sorted(added_functions)]
    return render("state_main.c.j2", label=label, entries=entries)
