"""Code generation: a DSU unit's original text, edited, plus generated C from templates.

Three roles share one set of edits (see docs/architecture.md):
- `program`: the release build.  Each DSU function keeps its definition and
  name; its body begins with a check of its slot, and the general path that
  calls a bundle's version is appended; static state gets global names
  (aliases for file-scope statics, hoisted definitions for function-local
  ones) so patches can bind to it.
- `code`: a bundle's unloadable code.  Functions of the patch are compiled
  and exported to the bundle table; the definitions of the other DSU
  functions are cut (`UnitPlan.cut`, `_cut_definitions`), and calls of them
  reach the running program's function by its exported alias; all existing state is `extern`,
  bound by symbol name; constant data stays private to the bundle.
- `state`: a bundle's never-unloaded object: the variables the patch adds and
  the slots and general paths of the functions it adds.
"""
import enum
import functools
import hashlib
import re

import jinja2

from . import resources
from .errors import CSourceError
from .srctext import SourceText, without_collector

class Role(str, enum.Enum):
    """What a DSU unit's generated text is for (see the module's docstring)."""

    PROGRAM = "program"
    CODE = "code"
    STATE = "state"

    def __str__(self):
        return self.value


class EntryKind(str, enum.Enum):
    """What the generated text defines for one DSU function (unit_trailer.c.j2)."""

    SLOT = "slot"               # its slot and the general path that calls the slot's version
    FORWARDER = "forwarder"     # a static that calls the running program's version by its alias

    def __str__(self):
        return self.value


# Every version a bundle compiles is aligned so that its address leaves the
# slot word's low byte to the module index (PSU_CODE_ALIGN, runtime/psu_fast.h;
# the runtime refuses a version that is not).
VERSION_ALIGNMENT = "__attribute__((aligned(256))) "


def mangle(qualname, *distinguishing):
    """A readable, unique C identifier fragment for a qualified name (and anything
    else that must tell two symbols of the same name apart)."""
    readable = re.sub(r"[^A-Za-z0-9]+", "_", qualname).strip("_")
    key = "\0".join((qualname, *distinguishing))
    return f"{readable}_{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def export_symbol(qualname):
    return "psu_export_" + mangle(qualname)


def var_symbol(qualname, type_hash):
    """The global name state is bound by.  It carries the type, so a variable whose
    type a transformer changed is a new object, and a patch never binds new code
    to storage of the old type."""
    return "psu_var_" + mangle(qualname, type_hash)


def va_export_symbol(qualname):
    """The exported name of a variadic function's va_list variant."""
    return "psu_vexport_" + mangle(qualname)


def patch_symbol(qualname):
    return "psu_patch_" + mangle(qualname)


def record_symbol(qualname):
    return "psu_fn_" + mangle(qualname)


def slot_symbol(qualname):
    """The exported name of a DSU function's slot (its record), by which a
    bundle's version of the function asks whether it is still current."""
    return "psu_slot_" + mangle(qualname)


@functools.lru_cache(maxsize=None)
def _environment():
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(resources.templates_dir()),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render(template, **values):
    return _environment().get_template(template).render(**values)


class UnitPlan:
    """What a bundle does with one unit: functions switched, state bound or added."""

    def __init__(self, patched=(), added_functions=(), added_variables=(), carried=(), cut=()):
        self.patched = set(patched)              # qualnames the bundle switches
        self.carried = set(carried)              # unchanged, brought to retire older bundles
        self.added_functions = set(added_functions)
        self.added_variables = set(added_variables)
        # DSU functions whose definitions the bundle leaves out (its code reaches
        # them in the running program through their exported aliases)
        self.cut = set(cut)


def const_symbol(name):
    """A bundle's own copy of the constant `name` (code role only)."""
    return "psu_const_" + mangle(name)


def transform(unit, text, role, dsu_names, output_path, plan=None, program_functions=(),
              constants=(), entry_hooks=False):
    """The source of `unit` for `role`; `dsu_names` are its DSU functions' names;
    `program_functions` (bundle roles): the external DSU functions, by name, that
    calls from the bundle reach through their exported `psu_export_` aliases --
    the running program's, and those the bundle's state object adds.  Plain
    names would not link where a header declares the function hidden.
    `constants` (code role): names of the constant data with external linkage
    the DSU units define, which the bundle's code reads from its own copies.
    `entry_hooks` (program role): each DSU function gets an entry hook (the
    runtime's jump to its general path, or its stub, while a bundle's version
    is current), for builds that pass its objects through `entryhooks.quiet`."""
    with without_collector():     # the unit's tokens are freed before it runs again
        return _transform(unit, text, Role(role), dsu_names, output_path, plan or UnitPlan(),
                          program_functions, constants, entry_hooks)


def _transform(unit, text, role, dsu_names, output_path, plan, program_functions, constants,
               entry_hooks):
    source = SourceText(unit.path, text, unit.storage_macros)
    cut = _cut_definitions(source, unit, dsu_names, plan.cut) if role is not Role.PROGRAM else _CutSpans()
    entries = _edit_functions(source, unit, role, dsu_names, plan, cut, entry_hooks)
    _edit_variables(source, unit, role, plan, cut, constants)
    if role is Role.CODE:
        _bundle_self_calls(source, unit, dsu_names, plan, cut.functions)
    redirected = [] if role is Role.PROGRAM else \
        _redirect_program_calls(source, unit, role, dsu_names, plan, program_functions, cut)
    body = source.edited()
    if not body.endswith("\n"):
        body += "\n"
    if role is Role.CODE:
        body += _own_constant_declarations(unit, constants)
    first_line = body.count("\n") + 3
    trailer = render("unit_trailer.c.j2", unit=unit.path, role=role, functions=entries,
                     hoisted=_hoisted_locals(unit, role, plan), first_line=first_line,
                     redirected=redirected, output_path=output_path.replace("\\", "/"))
    return f'#line 1 "{unit.path}"\n' + body + trailer


def _edit_functions(source, unit, role, dsu_names, plan, cut, entry_hooks):
    """Each DSU function's definition edited for `role`, and what the trailer
    needs of it (a list of `_function_entry`).  In the program its body begins
    with the entry check; in a bundle it is renamed `psu_impl_f` (hidden: only
    the table names it), the function's own name staying declared."""
    entries = []
    for function in unit.functions:
        if function.qualname in cut.functions:
            entries.append(_function_entry(function, role, plan))
            continue
        for local in function.locals:
            _bind_local(source, local)
        if function.name not in dsu_names:
            continue
        if function.unreadable:
            raise _unreadable(function)
        name_index = source.find_name(function.name, function.location.line, function.location.column)
        entry = _function_entry(function, role, plan, entry_hooks)
        entries.append(entry)
        if function.va_head:
            _va_list_variant(source, function, name_index, entry["name"] if role is Role.PROGRAM
                             else entry["impl"])
            _named_as_written(source, function, name_index)
        if role is Role.PROGRAM:
            if function.va_head:
                source.insert_lines_before(source.declaration_start(name_index),
                                           f"static {entry['head']};")
            _check_on_entry(source, function, name_index, entry, first=len(entries) == 1)
            continue
        source.replace(name_index, entry["impl"])
        if not function.va_head:
            _named_as_written(source, function, name_index)
        # (the function's own name stays declared for calls above its
        # definition: a redeclaration of the header's, by psu, not the user)
        prototype = "#pragma GCC diagnostic push\n" \
            "#pragma GCC diagnostic ignored \"-Wredundant-decls\"\n" + \
            ("static " if function.static else "") + \
            function.signature.replace("@NAME@", function.name) + ";\n" + \
            "#pragma GCC diagnostic pop\n" + \
            ("static " if function.static else "__attribute__((visibility(\"hidden\"))) ") + \
            VERSION_ALIGNMENT + (function.va_head or function.signature).replace("@NAME@", entry["impl"])
        source.insert_lines_before(source.declaration_start(name_index), prototype + ";")
    return entries


def _edit_variables(source, unit, role, plan, cut, constants):
    """File-scope state bound by global names: in the program a static gets one
    (patches bind to it); in a bundle existing state becomes `extern`, what the
    patch adds is defined in the state object, and the code object labels its
    own copies of constants with external linkage."""
    for variable in unit.variables:
        locations = [l for l in variable.locations if not cut.holds(l)]
        if role is Role.CODE and variable.name in constants and variable.const and not variable.static:
            for location in locations:
                _label_constant(source, variable, location)
        if variable.const or not variable.definition or variable.unbound:
            continue
        if role is Role.PROGRAM:
            if variable.static:
                for location in locations:
                    _bind_file_variable(source, variable, location, define=True)
            continue
        define = role is Role.STATE and variable.qualname in plan.added_variables
        for location in locations:
            _bind_file_variable(source, variable, location, define)


def _hoisted_locals(unit, role, plan):
    """Function-local statics defined at file scope under their global names:
    all of them in the program, those a patch adds in its state object."""
    hoisted = []
    for function in unit.functions:
        for local in function.locals:
            if local.const or local.unbound:
                continue
            if role is Role.PROGRAM or (role is Role.STATE and local.qualname in plan.added_variables):
                hoisted.append({"qualname": local.qualname,
                                "definition": local.decl.replace("@NAME@", var_symbol(local.qualname, local.type_hash))})
    return hoisted


def _redirect_program_calls(source, unit, role, dsu_names, plan, program_functions, cut):
    """Bundle roles: the external DSU functions the unit calls, reached by their
    exported aliases (the trailer's redirects; names in bodies by
    `_name_in_bodies_by_default_visibility`).  The state object defines the
    slots and general paths of the functions it adds (under their own names):
    those are not redirected there.
    In the code object the unit's static DSU functions are named in bodies by
    their exported aliases too: an address taken there (`handler = twice`) is
    the program's function, like the program's own `&twice`, and not the
    code object's forwarder to it, which dangles once the bundle unloads.
    (A variadic one keeps its forwarder: its alias is its va_list variant.)"""
    defined_here = {f.name for f in unit.functions if f.qualname in plan.added_functions} \
        if role is Role.STATE else set()
    called = set().union(*(f.callees for f in unit.functions))
    redirected = [{"name": name, "symbol": export_symbol(name)}
                  for name in sorted((called & set(program_functions)) - defined_here)]
    in_bodies = {r["name"]: r["symbol"] for r in redirected}
    if role is Role.CODE:
        in_bodies.update({f.name: export_symbol(f.qualname) for f in unit.functions
                          if f.static and f.name in dsu_names and not f.va_head and not f.unreadable})
    _name_in_bodies_by_default_visibility(source, unit, in_bodies, cut.functions)
    return redirected


def _own_constant_declarations(unit, constants):
    """Code role: constant data is private to each version.  The executable's
    copy would interpose on a same-named one here, so the bundle's copy and
    every use of it get a name of the bundle's own (gcc renames earlier uses
    too), hidden so that uses bind to it when the bundle links.  (A unit that
    defines or declares one labels its own declarations: `_edit_variables`.)"""
    used = {n for f in unit.functions for n in f.reads} | {n for v in unit.variables for n in v.reads}
    used -= {v.name for v in unit.variables}
    return "".join(f'extern __typeof__({name}) {name} __asm__("{const_symbol(name)}") '
                   '__attribute__((visibility("hidden")));\n'
                   for name in sorted(used & set(constants)))


def _unreadable(function):
    """The front end's located error for a function it could not read (its text
    is `file:line:col: psu: message`), raised when that function should be a DSU function."""
    found = re.match(r"^(.*?):(\d+)(?::(\d+))?: psu: (.*)$", function.unreadable, re.DOTALL)
    if not found:
        loc = function.location
        return CSourceError(loc.file, loc.line, loc.column, function.unreadable)
    return CSourceError(found.group(1), int(found.group(2)), int(found.group(3) or 0), found.group(4))


def _function_entry(function, role, plan, entry_hooks=False):
    """What the templates need of one DSU function.  Its slot holds versions of
    `name`: the function itself, or for a variadic `f` its va_list variant
    `psu_va_f` (every version is compiled so, since a call cannot pass `...`
    on), which a generated variadic `f` (the `wrapper`) calls."""
    variadic = bool(function.va_head)
    name = f"psu_va_{function.name}" if variadic else function.name
    head = function.va_head if variadic else function.head
    arity = function.arity + variadic
    alias = (va_export_symbol if variadic else export_symbol)(function.qualname)
    entry = {
        "name": name, "qualname": function.qualname, "static": function.static,
        "head": head.replace("@NAME@", name),
        "args": ", ".join(f"psu_a{i}" for i in range(arity)),
        "returns_void": function.returns_void, "result": function.result,
        "pointer_type": head.replace("@NAME@", "(*)"),
        "export_symbol": alias, "export_declaration": head.replace("@NAME@", alias),
        "patch_declaration": head.replace("@NAME@", patch_symbol(function.qualname)),
        "impl": f"psu_impl_{function.name}",
        "exported": role is Role.CODE and function.qualname in plan.patched | plan.carried,
        "kind": None, "record": f"psu_fn_{name}", "record_static": True,
        "slot": slot_symbol(function.qualname),
        "initial": "PSU_EXECUTABLE_VERSION", "general_static": bool(function.static),
        "wrapper": None, "hooked": False,
    }
    added = function.qualname in plan.added_functions
    if role is Role.PROGRAM:
        # the executable's version is the definition itself, entered by every call
        # the hook at its entry (PSU_ENTRY_HOOK): not for a variadic function's
        # va_list variant, nor a K&R definition, which a prototype with the
        # hook would not match (its parameters arrive promoted)
        entry.update(kind=EntryKind.SLOT, general_static=True,
                     hooked=entry_hooks and not variadic and not function.kr_style,
                     general_head=head.replace("@NAME@", f"psu_general_{name}"),
                     slow_name=f"psu_slow_{name}", slow_head=head.replace("@NAME@", f"psu_slow_{name}"))
    elif role is Role.STATE and added:
        entry.update(kind=EntryKind.SLOT, record=record_symbol(function.qualname),
                     record_static=False, initial="PSU_NO_VERSION", general_head=entry["head"],
                     general_static=function.static or variadic)
    elif function.static:
        entry["kind"] = EntryKind.FORWARDER
    if variadic and entry["kind"] is not None:
        # the variadic function callers call by name: it passes its arguments on
        # as a va_list, to the slot's function (or, in a bundle's code, to the
        # program's, through its exported alias)
        entry["wrapper"] = {
            "name": function.name, "static": function.static,
            "head": function.head.replace("@NAME@", function.name),
            "last": f"psu_a{function.arity - 1}",
            "args": ", ".join(f"psu_a{i}" for i in range(function.arity)),
            "callee": alias if entry["kind"] is EntryKind.FORWARDER else name,
            "export_declaration": None if entry["kind"] is EntryKind.FORWARDER else
            function.head.replace("@NAME@", export_symbol(function.qualname)),
        }
    return entry


def _va_list_variant(source, function, name_index, name):
    """Turn the definition of variadic `f` into its va_list variant `name`:
    `...` becomes the parameter `psu_va_in`, and while the body is compiled
    `va_start` (or `__builtin_va_start`, written directly) copies it instead.
    A body that never calls va_start ignores it."""
    if function.arity == 0:
        loc = function.location
        raise CSourceError(loc.file, loc.line, loc.column,
                           f"'{function.name}' has no named parameter before '...'; "
                           f"add it to PSU_EXCLUDE")
    brace = source.body_start(name_index)
    ellipsis = None
    if source.tokens[name_index + 1].text == "(":
        # the last token of its own parameter list (not of a parameter's)
        close = source.matching_close(name_index + 1)
        if source.tokens[close - 1].text == "...":
            ellipsis = close - 1
    if ellipsis is None:
        token = source.tokens[name_index]
        raise CSourceError(source.path, token.line, token.column,
                           f"cannot find the '...' of '{function.name}' (a macro writes it?); "
                           f"add it to PSU_EXCLUDE")
    source.replace(name_index, name)
    source.replace(ellipsis, "__builtin_va_list psu_va_in")
    start = source.declaration_start(name_index)
    edits = _environment().get_template("function_entry.c.j2").module
    prototype = ("static " if function.static else "") + function.signature.replace("@NAME@", function.name)
    source.insert_lines_before(start, prototype + ";\n" + str(edits.va_start_redirected()) + "\n" +
                               str(edits.format_takes_va_list()))
    source.insert_before(brace, str(edits.format_restored()) + " ")
    # attributes only the definition states (noreturn, say) hold for `f` too
    source.insert_lines_after(source.matching_close(brace), str(edits.va_start_restored()) +
                              f"\n#ifndef PSU_PARSE_ONLY\n__typeof__({function.name}) {function.name} "
                              f"__attribute__((copy({name})));\n#endif")


def _name_in_bodies_by_default_visibility(source, unit, names, cut=()):
    """Bundle roles: in the unit's function bodies, the running program's
    functions `names` ({name: its exported alias}) are named `psu_ext_f`, a
    declaration of default visibility bound to `f`'s exported alias.  The
    asm-label redirect of `f` (appended) keeps the visibility a header gave
    `f`, and gcc takes the address of a hidden function PC-relative, which no
    shared object can link against another module's symbol (zlib's
    `strm->zfree = zcfree`).  Names a header's
    macro writes still go through the redirect: calls link, addresses do not."""
    first_use, edited = {}, source.edited_so_far()
    for function in unit.functions:
        if function.qualname in cut:
            continue
        try:
            name_index = source.find_name(function.name, function.location.line,
                                          function.location.column)
            brace = source.body_start(name_index, old_style=function.kr_style)
            close = source.matching_close(brace)
        except CSourceError:
            continue        # a body psu does not edit (its name made by a macro)
        # a parameter or local declaration by that name means something else there
        used = source.identifiers_in(names, brace + 1, close)
        shadowed = _names_declared_in_body(source, used) | \
            (set(function.parameters) & set(names))
        for i in used:
            token = source.tokens[i]
            if token.text not in shadowed and \
                    source.tokens[i - 1].text not in (".", "->") and not edited(i):
                source.replace(i, f"psu_ext_{token.text}")
                first_use.setdefault(token.text, source.declaration_start(name_index))
    for name, start in sorted(first_use.items()):
        source.insert_lines_before(start, f"#ifndef PSU_PARSE_ONLY\n"
                                          f"extern __typeof__({name}) psu_ext_{name} "
                                          f'__asm__("{names[name]}") '
                                          f'__attribute__((copy({name}), visibility("default")));\n'
                                          f"#else\n#define psu_ext_{name} {name}\n#endif")


def _bundle_self_calls(source, unit, dsu_names, plan, cut=()):
    """Code role: calls the unit's code makes to a DSU function whose version
    this bundle provides (it switches or carries it) go straight to that
    version, `psu_impl_f`, as in the plain build (gcc inlines and recurses
    them), instead of through the running program's function: a call is
    `psu_self_f` (function_entry.c.j2, inlined), which checks that the slot
    still names `psu_impl_f` (`psu_version_is_current`) and otherwise goes on
    to the program's function through its exported alias, whose entry finds
    the newest version.  Nothing is counted: the caller runs in this module,
    so its thread holds it (docs/memory-ordering.md).  Only calls written by
    name in a body are redirected (`f(`); an address taken still names the
    program's `f`, and a call a macro writes still goes through it.  A
    variadic function (the slot holds its va_list variant) keeps that path.
    `cut`: the functions whose definitions `_cut_definitions` deleted."""
    exported = plan.patched | plan.carried
    provided = {}
    for function in unit.functions:
        if function.name not in dsu_names or function.qualname not in exported or \
                function.va_head or function.unreadable:
            continue
        try:
            name_index = source.find_name(function.name, function.location.line,
                                          function.location.column)
        except CSourceError:
            continue
        provided[function.name] = (function, name_index)
    if not provided:
        return
    edits = _environment().get_template("function_entry.c.j2").module
    in_order = sorted(provided.items(), key=lambda item: item[1][1])
    for number, (name, (function, name_index)) in enumerate(in_order):
        forward = export_symbol(function.qualname)
        self_call = {
            "slot": slot_symbol(function.qualname), "impl": f"psu_impl_{name}", "name": name,
            "forward": forward, "forward_declaration": function.head.replace("@NAME@", forward),
            "self_head": function.head.replace("@NAME@", f"psu_self_{name}"),
            "returns_void": function.returns_void,
            "args": ", ".join(f"psu_a{i}" for i in range(function.arity))}
        source.insert_lines_before(source.declaration_start(name_index),
                                   str(edits.bundle_self(self_call, number == 0)))

    # the calls, in every body of the unit (its direct functions' too: only
    # this module's code calls those)
    edited = source.edited_so_far()
    declared_before = {}
    for function in unit.functions:
        if function.qualname in cut:
            continue        # its definition is not in this bundle
        try:
            name_index = source.find_name(function.name, function.location.line,
                                          function.location.column)
            brace = source.body_start(name_index, old_style=function.kr_style)
            close = source.matching_close(brace)
        except CSourceError:
            continue
        used = source.identifiers_in(provided, brace + 1, close)
        shadowed = _names_declared_in_body(source, used) | \
            (set(function.parameters) & set(provided))
        for i in used:
            token = source.tokens[i]
            if token.text in shadowed or source.tokens[i + 1].text != "(" or \
                    source.tokens[i - 1].text in (".", "->") or edited(i):
                continue
            callee, callee_index = provided[token.text]
            if i < callee_index:
                # a call above the callee's definition: declared by its type
                # (the type of an unprototyped K&R function says too little)
                if callee.kr_style:
                    continue
                declared_before.setdefault(token.text, source.declaration_start(name_index))
            source.replace(i, f"psu_self_{token.text}")
    for name, start in sorted(declared_before.items()):
        source.insert_lines_before(start, "#pragma GCC diagnostic push\n"
                                          "#pragma GCC diagnostic ignored \"-Wredundant-decls\"\n"
                                          f"static __typeof__({name}) psu_self_{name};\n"
                                          "#pragma GCC diagnostic pop")


def _names_declared_in_body(source, used):
    """Of the names written at `used` (indices of a body's identifiers), those
    a declaration in the body may give another meaning (a local function
    pointer `int (*walk)(int)`, a variable): written after a type name or a
    `*` and not called.  Their calls in that body are left alone."""
    found = set()
    for i in used:
        token, before = source.tokens[i], source.tokens[i - 1]
        if source.tokens[i + 1].text != "(" and \
                ((before.kind == "ident" and before.text not in _NOT_TYPES) or before.text == "*"):
            found.add(token.text)
    return found


# words that may stand before a function's name in an expression
_NOT_TYPES = {"return", "case", "sizeof", "else", "do", "goto", "__typeof__", "typeof",
              "__typeof", "_Alignof", "__alignof__", "__extension__"}


class _CutSpans:
    """The definitions a bundle unit leaves out: their qualnames, and the
    (line, column) ranges they spanned (so no other edit lands inside deleted
    text)."""

    def __init__(self):
        self.functions, self.spans = set(), []

    def holds(self, location):
        where = (location.line, location.column)
        return any(first <= where <= last for first, last in self.spans)


# Directives of a deleted body that stay: the conditionals (balanced within
# it) and what changes the macros later code sees.  A `#pragma` or `#include`
# there belongs to the body's statements.
_KEPT_DIRECTIVES = {"if", "ifdef", "ifndef", "elif", "elifdef", "elifndef", "else", "endif",
                    "define", "undef", "line", "error", "warning"}


def _cut_definitions(source, unit, dsu_names, wanted):
    """Bundle roles: delete the definitions of the DSU functions `wanted` from
    the text, leaving a prototype of the function's own name (calls above and
    below still see it; the forwarder or redirect appended reaches the running
    program's version).  Lines keep their numbers, and preprocessor directives
    inside a deleted body stay (a `#define` there serves later code).  A
    definition psu cannot delimit exactly (a macro writes its name or braces)
    is kept whole: compiled and unused, as before."""
    cut = _CutSpans()
    for function in unit.functions:
        if function.qualname not in wanted or function.name not in dsu_names or \
                function.unreadable or function.macro_made:
            continue
        try:
            name_index = source.find_name(function.name, function.location.line,
                                          function.location.column)
            start = source.declaration_start(name_index)
        except CSourceError:
            continue
        body = _delimited_body(source, function, name_index)
        if body is None:
            continue
        _, close = body
        if any(source.tokens[i].text == "{" for i in range(start, name_index)):
            continue    # its specifiers define a struct, union or enum later code may use
        prototype = "#pragma GCC diagnostic push\n" \
            "#pragma GCC diagnostic ignored \"-Wredundant-decls\"\n" + \
            ("static " if function.static else "") + \
            function.signature.replace("@NAME@", function.name) + ";\n" + \
            "#pragma GCC diagnostic pop"
        source.insert_lines_before(start, prototype)
        if close + 1 < len(source.tokens):
            source.delete_range(start, close + 1, _KEPT_DIRECTIVES.__contains__)
        else:
            source.delete_range(start, close, _KEPT_DIRECTIVES.__contains__)
            source.replace(close, "")
        cut.functions.add(function.qualname)
        cut.spans.append(((source.tokens[start].line, source.tokens[start].column),
                          (source.tokens[close].line, source.tokens[close].column)))
    return cut


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
    brace = source.body_start(name_index, old_style=function.kr_style)
    if source.tokens[brace].line != function.body_line:
        token = source.tokens[brace]
        raise CSourceError(source.path, token.line, token.column,
                           f"cannot find where the body of '{function.name}' begins (a macro "
                           f"writes its '{{'?); add it to PSU_EXCLUDE")
    edits = _environment().get_template("function_entry.c.j2").module
    source.insert_lines_before(source.declaration_start(name_index),
                               str(edits.declarations(entry, first)))
    check = dict(entry, args=", ".join(function.parameters + ["psu_va_in"] * bool(function.va_head)))
    source.insert_after(brace, " " + str(edits.entry_check(check)))
    end = str(edits.entry_check_end(check))
    if end:
        source.insert_before(source.body_end(brace, function.body_end_line, function.name), end + " ")


def _delimited_body(source, function, name_index):
    """The tokens of a definition's `{` and `}`, or None where psu cannot
    delimit its body exactly (a macro writes its name or braces)."""
    try:
        brace = source.body_start(name_index, old_style=function.kr_style)
        if source.tokens[brace].line != function.body_line:
            return None
        return brace, source.body_end(brace, function.body_end_line, function.name)
    except CSourceError:
        return None


def _named_as_written(source, function, name_index):
    """A definition psu renames: `__func__` (and `__FUNCTION__`,
    `__PRETTY_FUNCTION__`) in its body still name the function as written.
    (Not where psu cannot delimit the body: a macro writes its braces.)"""
    body = _delimited_body(source, function, name_index)
    if body is None:
        return
    _, close = body
    edits = _environment().get_template("function_entry.c.j2").module
    source.insert_lines_before(source.declaration_start(name_index),
                               str(edits.named_as_written(function.name)))
    source.insert_lines_after(close, str(edits.named_as_written_end()))


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


def _label_constant(source, variable, location):
    """Code role: the bundle's own copy of a constant with external linkage."""
    name_index = source.find_name(variable.name, location.line, location.column)
    if not source.existing_label(name_index):
        source.insert_before(source.declarator_end(name_index),
                             f' __asm__("{const_symbol(variable.name)}") __attribute__((visibility("hidden")))')


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


def bundle_main(label, base, target, functions, transformed=None, carried=(), may_not_return=()):
    """The bundle's tables: `functions` switched, `carried` unchanged copies (the
    runtime switches those only away from older bundles, so they can be unloaded);
    `transformed`: variable qualname -> {transformer, old_type_hash};
    `may_not_return`: replaced functions whose running calls may never end."""
    entries = [{"qualname": q, "symbol": patch_symbol(q)} for q in sorted(functions)]
    carried_entries = [{"qualname": q, "symbol": patch_symbol(q)} for q in sorted(carried)]
    transformers = [{"function": t["transformer"], "wrapper": f"psu_run_transformer_{i}",
                     "old": f"psu_old_state_{i}", "old_symbol": var_symbol(q, t["old_type_hash"])}
                    for i, (q, t) in enumerate(sorted((transformed or {}).items()))]
    return render("bundle_main.c.j2", label=label, base=base, target=target, entries=entries,
                  carried=carried_entries, transformers=transformers,
                  may_not_return=sorted(may_not_return))


def state_main(label, added_functions):
    entries = [{"record": record_symbol(q)} for q in sorted(added_functions)]
    return render("state_main.c.j2", label=label, entries=entries)
