"""C front end: preprocess a unit like its real compile, parse it with pycparser, build a `model.Unit`.

Only definitions whose coordinates lie in the unit itself are described; what
headers define is summarised as helpers (for the inlined-helper rule, SPEC §4.4).
Everything that could differ between two checkouts of the same source
(`__FILE__`, `__LINE__`, `__DATE__`, line markers, directories) is neutralised
before hashing, so a manifest is a function of the source and flags alone.
"""
import contextlib
import copy
import hashlib
import json
import os
import re
import subprocess

from pycparser import c_ast
from pycparser.c_parser import ParseError

from . import resources
from .gnuc import (FuncDef, GnuCGenerator, GnuCParser, IndexDesignator, LabelAddress, OpaqueFunction,
                   Range, Unsupported)

from .errors import CSourceError, ToolError
from .model import Function, LocalStatic, Location, Unit, Variable

# Parse-only defines: they make glibc's headers and common GNU C digestible for
# pycparser.  The real compile never sees them.
PARSE_ONLY_DEFINES = [
    "-D__attribute__(x)=", "-D__extension__=", "-D__alignof__=_Alignof", "-D__alignof=_Alignof",
    "-D__restrict=", "-D__restrict__=", "-D__inline=inline", "-D__inline__=inline",
    "-D__signed__=signed", "-D__builtin_va_list=char*", "-D_Float128=long double",
    "-D_Float64x=long double", "-D_Float64=double", "-D_Float32x=double",
    "-D_Float32=float", "-D_Float16=float", "-D__bf16=float", "-D__uint128_t=unsigned __int128", "-D__int128_t=__int128",
    "-D__builtin_offsetof=offsetof",
    "-D__builtin_va_arg(a,t)=(*(t*)__builtin_va_arg_p(a))",
    "-D__volatile__=volatile", "-D__const=const", "-D__const__=const",
    "-D_Noreturn=", "-D__thread=_Thread_local",
    "-DPSU_PARSE_ONLY",          # psu_fast.h: no GNU statement expressions
]

# Neutralise what differs between two builds of the same source, so unchanged
# functions do not look changed (e.g. `assert` moved down a line).
NORMALISING_DEFINES = [
    "-Wno-builtin-macro-redefined", "-D__LINE__=0", "-D__DATE__=\"psu\"",
    "-D__TIME__=\"psu\"", "-D__TIMESTAMP__=\"psu\"",
]

_KEEP_FLAG = re.compile(r"^(-D|-U|-I|-iquote|-isystem|-idirafter|-include|-imacros|-std=|-ansi"
                        r"|-m|-f|-pthread$|--sysroot|-nostdinc|-undef|-trigraphs)")
_FLAGS_WITH_ARGUMENT = {"-D", "-U", "-I", "-iquote", "-isystem", "-idirafter", "-include",
                        "-imacros", "-o", "-MF", "-MT", "-MQ", "-x", "--sysroot"}

_CONSTRUCT_HINTS = [
    (re.compile(r"\b(__typeof__|__typeof|typeof)\b"), "typeof"),
    (re.compile(r"\b__auto_type\b"), "__auto_type"),
    (re.compile(r"\b(asm|__asm__|__asm)\s*(volatile|__volatile__|goto)?\s*\("), "an asm statement"),
    (re.compile(r"\(\s*\{"), "a statement expression"),
    (re.compile(r"\bcase\b[^:]*\.\.\."), "a case range"),
    (re.compile(r"(?:^|[=,({:?]|\breturn)\s*&&\s*[A-Za-z_]\w*"), "a label address"),
    (re.compile(r"\bgoto\s*\*"), "a computed goto"),
    (re.compile(r"\b__label__\b"), "a local label declaration (__label__)"),
]


def preprocessing_flags(flags):
    """The subset of compile flags that influence preprocessing, minus optimisation
    (glibc adds `extern inline` bodies under -O)."""
    kept, pending = [], False
    for flag in flags:
        if pending:
            kept.append(flag)
            pending = False
            continue
        if flag in _FLAGS_WITH_ARGUMENT:
            if flag not in ("-o", "-MF", "-MT", "-MQ", "-x"):
                kept.append(flag)
                pending = True
            continue
        if _KEEP_FLAG.match(flag):
            kept.append(flag)
    return kept


# Parse-only replacements of headers pycparser cannot read (see include/stdatomic.h).
PARSE_ONLY_INCLUDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


def preprocess(path, cc, flags, cwd):
    """Run the compiler's preprocessor on `path` (relative to `cwd`); keep line markers."""
    command = [cc, "-E", "-isystem", PARSE_ONLY_INCLUDE, *preprocessing_flags(flags),
               "-idirafter", resources.runtime_sources_dir(), *PARSE_ONLY_DEFINES,
               *NORMALISING_DEFINES, f"-D__FILE__=\"{path}\"", path]
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise ToolError(f"psu: compiler '{cc}' not found", hint="set CC to a C compiler")
    if done.returncode != 0:
        raise ToolError(f"psu: preprocessing {path} failed:\n{done.stderr.strip()}")
    return done.stdout


_STORAGE_MACRO = re.compile(r"^#define ([A-Za-z_]\w*) (static|extern)\s*$")


def storage_macros(path, cc, flags, cwd):
    """Object-like macros that expand to exactly `static` or `extern` (SQLite's
    SQLITE_PRIVATE): the text edits treat them as the storage class they are."""
    command = [cc, "-E", "-dM", *preprocessing_flags(flags), *PARSE_ONLY_DEFINES, path]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    found = {}
    for line in done.stdout.splitlines():
        match = _STORAGE_MACRO.match(line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def normalised_text(preprocessed, keep_pragmas=False):
    """Preprocessed text without line markers and blank lines, whitespace folded
    (`#pragma` lines kept with `keep_pragmas`: visibility pragmas change code)."""
    out = []
    for line in preprocessed.splitlines():
        if line.startswith("#") and not (keep_pragmas and line.startswith("#pragma")):
            continue
        line = " ".join(line.split())
        if line:
            out.append(line)
    return "\n".join(out) + "\n"


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def parse(preprocessed, path, original_text=None, cwd=None):
    """pycparser AST of a preprocessed unit; a parse failure becomes a CSourceError."""
    try:
        return GnuCParser().parse(preprocessed, path)
    except Unsupported as error:
        coord = error.coord
        raise CSourceError(coord.file, coord.line, coord.column or 0,
                           f"cannot parse {error.construct}: {error.detail}") from None
    except ParseError as error:
        raise _located_error(str(error), path, original_text, cwd) from None
    except Exception as error:  # pycparser asserts on a few malformed inputs
        raise CSourceError(path, 0, 0, f"cannot parse ({type(error).__name__}: {error})") from None


def _located_error(message, path, original_text, cwd=None):
    match = re.match(r"^(.*?):(\d+):(\d+):\s*(.*)$", message)
    if match:
        file, line, column, detail = match.group(1), int(match.group(2)), int(match.group(3)), match.group(4)
    else:
        # pycparser gives some errors ("Invalid expression") no line: look in the
        # file it names for the first construct it cannot read
        match = re.match(r"^(.*?):\s*(.*)$", message)
        file, detail = (match.group(1), match.group(2)) if match else (path, message)
        line = column = 0
    lines = None
    if file == path and original_text is not None:
        lines = original_text.splitlines()
    elif cwd is not None:
        try:
            with open(os.path.join(cwd, file), encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            pass
    construct = None
    if lines:
        candidates = [line] if 0 < line <= len(lines) else [] if line else range(1, len(lines) + 1)
        for number in candidates:
            for pattern, name in _CONSTRUCT_HINTS:
                found = pattern.search(lines[number - 1])
                if found:
                    construct, line = name, number
                    if not column or found.start() + 1 < column:
                        column = found.start() + 1
                    break
            if construct:
                break
    what = f"cannot parse {construct}" if construct else "cannot parse this code"
    detail = detail.replace("before:", "syntax error before").strip()
    if file != path:
        what += f" (in a header included by {path})"
    return CSourceError(file, line, column, f"{what}: {detail}")


class _Canon:
    """Location-free text and hashes of C types.

    `type_text` is shallow: named structs, unions, enums and typedefs appear by
    name.  `type_hash` is deep: it covers the definition of every named type
    reachable from the type (through members and pointers alike), so a layout
    change anywhere below a type changes its hash.  Hashes of named types are
    memoised per name; big programs (SQLite) share a few hundred of them.
    """

    def __init__(self, ast):
        self.definitions, self.enum_of_constant = {}, {}
        self.generator = GnuCGenerator()
        canon = self

        class Collector(c_ast.NodeVisitor):
            def visit_Struct(self, node):
                if node.decls is not None and node.name:
                    canon.definitions[("struct", node.name)] = node
                self.generic_visit(node)

            def visit_Union(self, node):
                if node.decls is not None and node.name:
                    canon.definitions[("union", node.name)] = node
                self.generic_visit(node)

            def visit_Enum(self, node):
                if node.values is not None:
                    if node.name:
                        canon.definitions[("enum", node.name)] = node
                    for value in node.values.enumerators:
                        canon.enum_of_constant[value.name] = node

            def visit_FuncDef(self, node):
                self.visit(node.decl)

        for ext in ast.ext:
            if isinstance(ext, c_ast.Typedef):
                self.definitions[("typedef", ext.name)] = ext.type
            Collector().visit(ext)
        self._entity_text, self._entity_deps, self._entity_deep = {}, {}, {}
        self._layouts = {}

    # -- shallow text and the named types it refers to --------------------------

    def type_text(self, node, deps=None):
        if isinstance(node, c_ast.TypeDecl):
            quals = " ".join(sorted(node.quals or []))
            return (quals + " " if quals else "") + self.type_text(node.type, deps)
        if isinstance(node, c_ast.IdentifierType):
            if len(node.names) == 1 and ("typedef", node.names[0]) in self.definitions:
                if deps is not None:
                    deps.add(("typedef", node.names[0]))
            return " ".join(node.names)
        if isinstance(node, (c_ast.Struct, c_ast.Union, c_ast.Enum)):
            kind = {c_ast.Struct: "struct", c_ast.Union: "union", c_ast.Enum: "enum"}[type(node)]
            if node.name:
                if deps is not None and (kind, node.name) in self.definitions:
                    deps.add((kind, node.name))
                return f"{kind} {node.name}"
            return self._body_text(kind, node, deps)   # anonymous: its body is its name
        if isinstance(node, c_ast.PtrDecl):
            quals = " ".join(sorted(node.quals or []))
            return f"*{quals}({self.type_text(node.type, deps)})"
        if isinstance(node, c_ast.ArrayDecl):
            dim = self.expr_text(node.dim) if node.dim is not None else ""
            return f"[{dim}]({self.type_text(node.type, deps)})"
        if isinstance(node, c_ast.FuncDecl):
            params = []
            for p in (node.args.params if node.args else []):
                if isinstance(p, c_ast.EllipsisParam):
                    params.append("...")
                elif isinstance(p, c_ast.ID):
                    params.append(p.name)
                else:
                    params.append(self.type_text(p.type, deps))
            return f"fn({','.join(params)})->{self.type_text(node.type, deps)}"
        if isinstance(node, (c_ast.Typename, c_ast.Decl)):
            return self.type_text(node.type, deps)
        return type(node).__name__

    def _body_text(self, kind, node, deps):
        if kind == "enum":
            values = node.values.enumerators if node.values else []
            body = ",".join(f"{e.name}={self.expr_text(e.value) if e.value else ''}" for e in values)
        else:
            body = ";".join(
                f"{d.name}:{self.type_text(d.type, deps)}" +
                (f":{self.expr_text(d.bitsize)}" if getattr(d, "bitsize", None) else "")
                for d in (node.decls or []))
        return f"{kind} {node.name or ''}{{{body}}}"

    def _entity(self, key):
        """Shallow definition text and direct dependencies of a named type."""
        if key not in self._entity_text:
            deps = set()
            node = self.definitions[key]
            if key[0] == "typedef":
                text = f"typedef {key[1]}={self.type_text(node, deps)}"
            else:
                text = self._body_text(key[0], node, deps)
            self._entity_text[key], self._entity_deps[key] = text, deps
        return self._entity_text[key], self._entity_deps[key]

    def entity_hash(self, key):
        """Hash of a named type's definition and of everything reachable from it."""
        if key not in self._entity_deep:
            reached, pending = set(), [key]
            while pending:
                current = pending.pop()
                if current in reached:
                    continue
                reached.add(current)
                pending.extend(self._entity(current)[1] - reached)
            texts = sorted(self._entity(k)[0] for k in reached)
            self._entity_deep[key] = sha256("\n".join(texts))
        return self._entity_deep[key]

    def type_hash(self, node):
        deps = set()
        text = self.type_text(node, deps)
        return sha256(text + "\n" + "\n".join(sorted(self.entity_hash(k) for k in deps)))

    # -- layout and references: the change report's view of types ---------------

    def layout(self, node):
        """What decides the memory layout of a value of this type: member types
        and order, array sizes, bit-field widths; not member names, not what a
        pointer points to (every pointer has one size).  Attributes are not seen
        (the parse drops them); the build id covers them."""
        if isinstance(node, (c_ast.TypeDecl, c_ast.Typename, c_ast.Decl)):
            return self.layout(node.type)
        if isinstance(node, c_ast.IdentifierType):
            key = ("typedef", node.names[0]) if len(node.names) == 1 else None
            return self.named_layout(key) if key in self.definitions else " ".join(node.names)
        if isinstance(node, c_ast.Enum):
            return "enum"
        if isinstance(node, (c_ast.Struct, c_ast.Union)):
            kind = "struct" if isinstance(node, c_ast.Struct) else "union"
            if node.name and (kind, node.name) in self.definitions:
                return self.named_layout((kind, node.name))
            if node.decls is None:
                return f"{kind} {node.name}?"         # incomplete: never held by value
            return self._aggregate_layout(kind, node)
        if isinstance(node, c_ast.PtrDecl):
            return "*"
        if isinstance(node, c_ast.ArrayDecl):
            dim = self.expr_text(node.dim) if node.dim is not None else ""
            return f"[{dim}]{self.layout(node.type)}"
        if isinstance(node, c_ast.FuncDecl):
            return "fn"
        return type(node).__name__

    def _aggregate_layout(self, kind, node):
        members = ";".join(self.layout(d.type) + (f":{self.expr_text(d.bitsize)}"
                                                   if getattr(d, "bitsize", None) else "")
                           for d in (node.decls or []))
        return f"{kind}#" + sha256(members)[:16]

    def named_layout(self, key):
        if key not in self._layouts:
            node = self.definitions[key]
            if key[0] == "enum":
                self._layouts[key] = "enum"
            elif key[0] == "typedef":
                self._layouts[key] = self.layout(node)
            else:
                self._layouts[key] = self._aggregate_layout(key[0], node)
        return self._layouts[key]

    _STRENGTH = {"value": 3, "pointer": 2, "fnparam": 1}

    def references(self, node, mode="value", found=None):
        """Named types `node` refers to, each with how: held by `value`, through a
        `pointer`, or only as a parameter or result of a function-pointer type
        (`fnparam`); the strongest way wins."""
        found = {} if found is None else found

        def note(key, how):
            if key in self.definitions and self._STRENGTH[how] > self._STRENGTH.get(found.get(key), 0):
                found[key] = how

        if isinstance(node, (c_ast.TypeDecl, c_ast.Typename, c_ast.Decl)):
            self.references(node.type, mode, found)
        elif isinstance(node, c_ast.IdentifierType):
            if len(node.names) == 1:
                note(("typedef", node.names[0]), mode)
        elif isinstance(node, (c_ast.Struct, c_ast.Union, c_ast.Enum)):
            kind = {c_ast.Struct: "struct", c_ast.Union: "union", c_ast.Enum: "enum"}[type(node)]
            if node.name:
                note((kind, node.name), mode)
            elif kind != "enum":
                for member in node.decls or []:
                    self.references(member.type, mode, found)
        elif isinstance(node, c_ast.PtrDecl):
            self.references(node.type, "pointer" if mode == "value" else mode, found)
        elif isinstance(node, c_ast.ArrayDecl):
            self.references(node.type, mode, found)
        elif isinstance(node, c_ast.FuncDecl):
            for p in (node.args.params if node.args else []):
                if not isinstance(p, (c_ast.EllipsisParam, c_ast.ID)):
                    self.references(p.type, "fnparam", found)
            self.references(node.type, "fnparam", found)
        return found

    def describe_type(self, key):
        """A named type as the manifest records it: its members (name and type
        text), its layout, and the named types its members refer to."""
        kind, node = key[0], self.definitions[key]
        refs = {}
        if kind == "enum":
            members = [[e.name, self.expr_text(e.value)] for e in node.values.enumerators]
        else:
            aggregate = node
            if kind == "typedef":
                inner = node.type if isinstance(node, c_ast.TypeDecl) else None
                aggregate = inner if isinstance(inner, (c_ast.Struct, c_ast.Union)) and \
                    inner.name is None and inner.decls is not None else None
            if aggregate is None:
                members = [["", self.type_text(node)]]
                self.references(node, "value", refs)
            else:
                members = []
                for d in aggregate.decls:
                    members.append([d.name or "", self.type_text(d.type) +
                                    (f":{self.expr_text(d.bitsize)}" if getattr(d, "bitsize", None) else "")])
                    self.references(d.type, "value", refs)
        coord = node.coord
        where = ""
        if coord is not None:    # a project's header by its relative path; a system one by name
            where = f"{coord.file if not os.path.isabs(coord.file) else os.path.basename(coord.file)}:{coord.line}"
        return {"kind": kind, "members": members, "where": where,
                "layout": "enum" if kind == "enum" else self.named_layout(key),
                "refs": {type_key(k): how for k, how in sorted(refs.items())}}

    def reachable(self, roots):
        """Named types reachable from `roots` (key -> how) through values and
        pointers: those existing state or a signature can hold."""
        reached, pending = set(), [k for k, how in roots.items() if how != "fnparam"]
        while pending:
            key = pending.pop()
            if key in reached or key not in self.definitions:
                continue
            reached.add(key)
            if key[0] != "enum":
                node = self.definitions[key]
                inner = {}
                if key[0] == "typedef":
                    self.references(node, "value", inner)
                else:
                    for d in node.decls or []:
                        self.references(d.type, "value", inner)
                pending.extend(k for k, how in inner.items() if how != "fnparam")
        return reached

    def deep_hashes(self, keys):
        """The deep hashes of the named types among `keys` (those a function
        body mentions), sorted: a list the body hash covers."""
        return sorted(self.entity_hash(k) for k in keys if k in self.definitions)

    def expr_text(self, node):
        return self.generator.visit(node) if node is not None else ""


def _stronger(how, than):
    return _Canon._STRENGTH[how] > _Canon._STRENGTH.get(than, 0)


def type_key(key):
    """A named type as a person writes it: `struct S`, `union U`, `enum E`, or a typedef's name."""
    return key[1] if key[0] == "typedef" else f"{key[0]} {key[1]}"


def _innermost_typedecl(node):
    while not isinstance(node, c_ast.TypeDecl):
        node = node.type
    return node


@contextlib.contextmanager
def _temporarily(settings):
    """Set (object, attribute, value) triples for a moment: cheaper than copying an AST."""
    saved = [(target, attribute, getattr(target, attribute)) for target, attribute, _ in settings]
    try:
        for target, attribute, value in settings:
            setattr(target, attribute, value)
        yield
    finally:
        for target, attribute, value in reversed(saved):
            setattr(target, attribute, value)


def _declaration_text(decl, name, storage=(), param_names=()):
    """`decl` re-generated as a declaration named `name`, its parameters renamed
    (types only: never user code)."""
    settings = [(decl, "name", name), (_innermost_typedecl(decl.type), "declname", name),
                (decl, "storage", list(storage)), (decl, "funcspec", [])]
    for param, param_name in param_names:
        settings.append((_innermost_typedecl(param.type), "declname", param_name))
    with _temporarily(settings):
        return GnuCGenerator().visit(decl)


def _is_prototype(func_type):
    """Whether a function declarator is a prototype (not `f()` or an identifier list)."""
    params = func_type.args.params if func_type.args else None
    return bool(params) and not any(isinstance(p, c_ast.ID) for p in params)


# Integer types narrower than int: an argument of one is passed as int where no
# prototype is in scope (C11 6.5.2.2p6); float is passed as double.
_PROMOTED_TO_INT = {"char", "short", "_Bool"}


def _promoted(type_node, canon):
    """The type an argument of `type_node` is passed as without a prototype."""
    names, seen = None, set()
    node = type_node
    while isinstance(node, c_ast.TypeDecl) and isinstance(node.type, c_ast.IdentifierType):
        names = node.type.names
        key = ("typedef", names[0])
        if len(names) != 1 or key not in canon.definitions or key in seen:
            break
        seen.add(key)
        node = canon.definitions[key]
    if names is None or not isinstance(node, c_ast.TypeDecl):
        return type_node
    if _PROMOTED_TO_INT & set(names):
        promoted = "int"
    elif names == ["float"]:
        promoted = "double"
    else:
        return type_node
    return c_ast.TypeDecl(None, [], None, c_ast.IdentifierType([promoted]))


def _kr_prototyped(decl, ext, prototype, canon):
    """The declaration of a K&R definition as a prototype (parameters named as in
    its identifier list): the types of the prototype in scope, if there is one
    and it agrees in count, else the declared types after the default argument
    promotions -- the types its callers pass, so a pointer of this type calls
    it correctly.  A parameter the declaration list omits is an int."""
    names = [p.name for p in (decl.type.args.params if decl.type.args else [])]
    declared = {d.name: d for d in (ext.param_decls or [])}
    typed = prototype.args.params if prototype is not None else None
    if typed is not None and len(typed) != len(names) or any(isinstance(p, c_ast.EllipsisParam)
                                                                for p in typed or []):
        typed = None
    params = []
    for index, name in enumerate(names):
        if typed is not None:
            type_node = copy.deepcopy(typed[index].type)
        elif name in declared:
            type_node = _promoted(copy.deepcopy(declared[name].type), canon)
        else:
            type_node = c_ast.TypeDecl(None, [], None, c_ast.IdentifierType(["int"]))
        _innermost_typedecl(type_node).declname = name
        params.append(c_ast.Decl(name, [], [], [], [], type_node, None, None))
    if not params:
        params = [c_ast.Typename(None, [], None, c_ast.TypeDecl(
            None, [], None, c_ast.IdentifierType(["void"])))]
    return c_ast.Decl(decl.name, decl.quals, decl.align, decl.storage, decl.funcspec,
                      c_ast.FuncDecl(c_ast.ParamList(params), decl.type.type), None, None,
                      decl.coord)


def _array_length(decl, enums=None):
    """Elements of `T x[] = {...}`: a bound `extern T x[]` keeps its size (so
    `sizeof x` still compiles in a patch).  None when the type has its size or it
    cannot be counted simply.  `enums`: the enum of each enumerator (`[NAME] =`)."""
    if not isinstance(decl.type, c_ast.ArrayDecl) or decl.type.dim is not None or decl.init is None:
        return None
    if isinstance(decl.init, c_ast.InitList):
        index = longest = 0
        for item in decl.init.exprs:
            if isinstance(item, c_ast.NamedInitializer):
                designator = item.name[0]
                if isinstance(designator, Range):       # [first ... last] =
                    designator = designator.last
                elif isinstance(designator, IndexDesignator):   # [NAME] =
                    designator = designator.expr
                elif isinstance(designator, c_ast.ID):   # .member = : no array's
                    return None
                index = _constant_value(designator, enums)
                if index is None:
                    return None
            index += 1
            longest = max(longest, index)
        return longest
    if isinstance(decl.init, c_ast.Constant) and decl.init.type == "string":
        text = decl.init.value
        if text.startswith('"') and text.endswith('"') and "\\" not in text and '"' not in text[1:-1]:
            return len(text) - 1      # the characters and the terminating NUL
    return None


_ARITHMETIC = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
               "<<": lambda a, b: a << b if 0 <= b < 64 else None, "|": lambda a, b: a | b}


def _constant_value(node, enums=None, depth=0):
    """The value of an integer or plain character constant, of an enumerator
    (`enums`: the enum declaring each), or of simple arithmetic on them; or None."""
    if depth > 50:
        return None
    if isinstance(node, c_ast.ID):
        return _enumerator_value(node.name, enums, depth + 1) if enums else None
    if isinstance(node, c_ast.UnaryOp) and node.op in ("-", "+"):
        value = _constant_value(node.expr, enums, depth + 1)
        return None if value is None else (-value if node.op == "-" else value)
    if isinstance(node, c_ast.BinaryOp) and node.op in _ARITHMETIC:
        left = _constant_value(node.left, enums, depth + 1)
        right = _constant_value(node.right, enums, depth + 1)
        return None if left is None or right is None else _ARITHMETIC[node.op](left, right)
    if not isinstance(node, c_ast.Constant):
        return None
    if node.type == "int":
        try:
            return int(node.value.rstrip("uUlL"), 0)
        except ValueError:
            return int(node.value.rstrip("uUlL"), 8) if node.value.startswith("0") else None
    if node.type == "char" and len(node.value) == 3 and node.value[0] == node.value[2] == "'":
        return ord(node.value[1])          # ['+'] = "add" (sparse's operator names)
    return None


def _enumerator_value(name, enums, depth):
    """The value of enumerator `name`: its own, or one more than the one before."""
    enum = enums.get(name)
    if enum is None or enum.values is None:
        return None
    value = -1
    for enumerator in enum.values.enumerators:
        if enumerator.value is not None:
            value = _constant_value(enumerator.value, enums, depth + 1)
            if value is None:
                return None
        else:
            value += 1
        if enumerator.name == name:
            return value
    return None


def _takes_label_addresses(node):
    """Whether `&&label` appears in `node` (a dispatch table: only its function can hold it)."""
    if isinstance(node, LabelAddress):
        return True
    return any(_takes_label_addresses(child) for _, child in node.children())


def _sized_by_uncounted_initializer(decl, enums=None):
    """`T x[] = {...}` whose length psu cannot count: bound as `extern T x[]`,
    `sizeof x` would no longer compile."""
    return isinstance(decl.type, c_ast.ArrayDecl) and decl.type.dim is None and \
        decl.init is not None and _array_length(decl, enums) is None


def _is_const(type_node):
    if isinstance(type_node, c_ast.TypeDecl):
        return "const" in (type_node.quals or [])
    if isinstance(type_node, c_ast.ArrayDecl):
        return _is_const(type_node.type)
    if isinstance(type_node, c_ast.PtrDecl):
        return "const" in (type_node.quals or [])
    return False


class _BodyFacts(c_ast.NodeVisitor):
    """Names a function body refers to: identifiers, type names, struct tags, statics."""

    def __init__(self):
        self.ids, self.typenames, self.tags, self.statics = set(), set(), set(), []
        self.members = set()        # member names the body selects (`x.m`, `p->m`)
        self.local_names = set()
        self.local_types = set()    # tags and typedef names the body itself declares

    def visit_ID(self, node):
        self.ids.add(node.name)

    def visit_StructRef(self, node):
        self.visit(node.name)
        self.members.add(node.field.name)

    def visit_IdentifierType(self, node):
        self.typenames.update(node.names)

    def visit_Struct(self, node):
        if node.name:
            self.tags.add(("struct", node.name))
            if node.decls is not None:
                self.local_types.add(("struct", node.name))
        self.generic_visit(node)

    def visit_Union(self, node):
        if node.name:
            self.tags.add(("union", node.name))
            if node.decls is not None:
                self.local_types.add(("union", node.name))
        self.generic_visit(node)

    def visit_Enum(self, node):
        if node.values is not None:
            self.local_names.update(e.name for e in node.values.enumerators)
            if node.name:
                self.local_types.add(("enum", node.name))
        self.generic_visit(node)

    def visit_Typedef(self, node):
        self.local_types.add(("typedef", node.name))
        self.generic_visit(node)

    def visit_Decl(self, node):
        if node.name:
            self.local_names.add(node.name)
        if "static" in (node.storage or []) and not isinstance(node.type, c_ast.FuncDecl):
            self.statics.append(node)
        self.generic_visit(node)


def _always_true(condition):
    """Whether a loop condition is absent or a non-zero integer constant."""
    if condition is None:
        return True
    if isinstance(condition, c_ast.Constant) and condition.type == "int":
        try:
            return int(condition.value.rstrip("uUlL"), 0) != 0
        except ValueError:
            return False
    return False


def _leaves(node, in_inner=False):
    """Whether control can leave the loop whose body is `node`: a `return`, a
    `goto` (anywhere: it may jump out), or a `break` not owned by an inner loop
    or switch."""
    if isinstance(node, (c_ast.Return, c_ast.Goto)):
        return True
    if isinstance(node, c_ast.Break):
        return not in_inner
    inner = in_inner or isinstance(node, (c_ast.For, c_ast.While, c_ast.DoWhile, c_ast.Switch))
    return any(_leaves(child, inner) for _, child in node.children())


class _EndlessLoops(c_ast.NodeVisitor):
    """Finds a loop that never ends: no condition (or a constant true one) and
    nothing that leaves it.  A call of such a function may never return."""

    def __init__(self):
        self.found = False

    def _loop(self, node):
        if _always_true(node.cond) and (node.stmt is None or not _leaves(node.stmt)):
            self.found = True
        self.generic_visit(node)

    visit_For = visit_While = visit_DoWhile = _loop


class _ThreadRoutines(c_ast.NodeVisitor):
    """Functions passed to pthread_create (or thrd_create) as a thread's start routine."""

    def __init__(self):
        self.names = set()

    def visit_FuncCall(self, node):
        position = {"pthread_create": 2, "thrd_create": 1}.get(
            node.name.name if isinstance(node.name, c_ast.ID) else None)
        if position is not None and node.args is not None and len(node.args.exprs) > position:
            routine = node.args.exprs[position]
            while isinstance(routine, (c_ast.Cast, c_ast.UnaryOp)):
                routine = routine.expr
            if isinstance(routine, c_ast.ID):
                self.names.add(routine.name)
        self.generic_visit(node)


def _names_in(node):
    """Named types (as (kind, name)) and identifiers that appear in `node`."""
    found = _BodyFacts()
    found.visit(node)
    return found.tags | {("typedef", n) for n in found.typenames}, found.ids


def _typenames_in(node):
    """The type names (c_ast.Typename) written in an expression."""
    found = []

    class Finder(c_ast.NodeVisitor):
        def visit_Typename(self, typename):
            found.append(typename)

    Finder().visit(node)
    return found


def _defines_a_type(node):
    """Whether a declaration's type defines a struct, union or enum (anonymous too:
    `static struct { ... } table[] = ...` inside a function)."""
    found = []

    class Finder(c_ast.NodeVisitor):
        def visit_Struct(self, n):
            found.append(n.decls is not None)

        def visit_Union(self, n):
            found.append(n.decls is not None)

        def visit_Enum(self, n):
            found.append(n.values is not None)

    Finder().visit(node)
    return any(found)


def _written_on(lines, name, line):
    """Whether the identifier `name` is spelled on source line `line` (not made by a macro)."""
    if lines is None:
        return True
    return 0 < line <= len(lines) and re.search(rf"\b{re.escape(name)}\b", lines[line - 1]) is not None


class _References(c_ast.NodeVisitor):
    """Names used other than as the callee of a direct call: functions whose
    address is taken (they must stay DSU functions: pointers reach trampolines)."""

    def __init__(self):
        self.referenced = set()

    def visit_FuncCall(self, node):
        if not isinstance(node.name, c_ast.ID):
            self.visit(node.name)
        if node.args is not None:
            self.visit(node.args)

    def visit_ID(self, node):
        self.referenced.add(node.name)


class _Size(c_ast.NodeVisitor):
    def __init__(self):
        self.nodes = 0

    def generic_visit(self, node):
        self.nodes += 1
        super().generic_visit(node)


def _qualname(unit_path, name, static):
    return f"{unit_path}:{name}" if static else name


def describe(ast, unit_path, text_hash, dsu=True, source_hash="", original_text=None):
    """Build the model of one unit from its AST (only what the unit itself defines).
    With the unit's `original_text`, names a macro made are recognised: such
    functions stay direct and such variables unbound."""
    unit = Unit(path=unit_path, text_hash=text_hash, dsu=dsu, source_hash=source_hash)
    _Describer(ast, unit, original_text).run()
    return unit


class _Describer:
    """One pass over a unit's AST: its variables, then its functions."""

    def __init__(self, ast, unit, original_text):
        self.ast, self.unit, self.path = ast, unit, unit.path
        self.lines = original_text.splitlines() if original_text is not None else None
        self.canon = _Canon(ast)
        self.generator = GnuCGenerator()
        self.file_vars = {}       # name -> Variable, for variables of the unit
        self.header_statics = {}  # name -> header: mutable statics a header defines here
        self.functions_known = set()
        # `static int f(int);` then `int f(int x) {...}`: the definition has internal
        # linkage too (C11 6.2.2p5), though its own declaration says nothing.
        self.declared_static = set()
        # K&R definition -> the prototype in scope where it is defined, if any
        self.prototype_of = {}
        prototypes = {}
        for ext in ast.ext:
            decl = ext.decl if isinstance(ext, (c_ast.FuncDef, OpaqueFunction)) else ext
            if isinstance(decl, c_ast.Decl) and self.function_type(decl.type):
                self.functions_known.add(decl.name)
                if "static" in (decl.storage or []):
                    self.declared_static.add(decl.name)
                if isinstance(ext, c_ast.FuncDef):
                    self.prototype_of[id(ext)] = prototypes.get(decl.name)
                elif isinstance(decl.type, c_ast.FuncDecl) and _is_prototype(decl.type):
                    prototypes[decl.name] = decl.type
        # A bound function-local static becomes a block-scope `extern` of its own
        # name; every such declaration of one name in a unit, and any file-scope
        # declaration of it, is one object (C11 6.2.2p4): only the first
        # function-local static of a name no file scope declares can be bound.
        self.file_scope_names = {(ext.decl if isinstance(ext, (c_ast.FuncDef, OpaqueFunction)) else ext).name
                                 for ext in ast.ext if isinstance(ext, (c_ast.Decl, c_ast.FuncDef, OpaqueFunction))}
        self.bound_local_names = set()
        self.references = _References()
        for ext in ast.ext:
            if ext.coord is not None and ext.coord.file == self.path:
                self.references.visit(ext)
                if isinstance(ext, OpaqueFunction):   # unread: any name may be a reference
                    self.references.referenced.update(ext.body_ids)
        # file-scope variables by name, wherever declared: what a body reads
        self.file_scope_variables = {ext.name for ext in ast.ext if isinstance(ext, c_ast.Decl) and ext.name
                                     and not self.function_type(ext.type)
                                     and "typedef" not in (ext.storage or [])}
        self.type_roots = {}      # named types the unit's state, signatures and bodies use

    def function_type(self, type_node):
        """Whether a declaration of this type declares a function: `int f(void);`
        or, through a typedef, `static declarator_t struct_specifier;` (sparse)."""
        seen = set()
        while isinstance(type_node, c_ast.TypeDecl) and isinstance(type_node.type, c_ast.IdentifierType) \
                and len(type_node.type.names) == 1:
            key = ("typedef", type_node.type.names[0])
            if key in seen or key not in self.canon.definitions:
                return False
            seen.add(key)
            type_node = self.canon.definitions[key]
        return isinstance(type_node, c_ast.FuncDecl)

    def run(self):
        routines = _ThreadRoutines()
        for ext in self.ast.ext:
            if isinstance(ext, c_ast.FuncDef) and ext.coord is not None and ext.coord.file == self.path:
                routines.visit(ext.body)
        self.unit.thread_routines = sorted(routines.names)
        for ext in self.ast.ext:
            if isinstance(ext, c_ast.Decl) and ext.name and \
                    not self.function_type(ext.type) and "typedef" not in (ext.storage or []):
                self.variable(ext)
        for ext in self.ast.ext:
            if isinstance(ext, c_ast.FuncDef):
                self.function(ext)
            elif isinstance(ext, OpaqueFunction):
                self.opaque_function(ext)
        self.unit.types = {type_key(k): self.canon.describe_type(k)
                           for k in sorted(self.canon.reachable(self.type_roots))}

    def use_types(self, found):
        for key, how in found.items():
            if _stronger(how, self.type_roots.get(key)):
                self.type_roots[key] = how
        return sorted(type_key(k) for k, how in found.items() if how != "fnparam")

    def facts(self, decl):
        """Type text, type hash, initializer hash of a variable declaration.  The
        type hash covers the type's text and layout (not what its pointers point
        to: a changed type is reported by itself); the initializer hash covers
        the values of the enumeration constants and the types it names."""
        canon = self.canon
        text = canon.type_text(decl.type)
        return (text, sha256(text + "\n" + canon.layout(decl.type)), self.init_hash(decl.init))

    def init_reads(self, init):
        return sorted(_names_in(init)[1] & self.file_scope_variables) if init is not None else []

    def init_hash(self, init):
        if init is None:
            return sha256("")
        _, ids = _names_in(init)
        canon = self.canon
        enums = sorted(canon.expr_text(canon.enum_of_constant[n]) for n in ids if n in canon.enum_of_constant)
        # a type named in it (sizeof, offsetof, a cast, a compound literal) matters
        # by the layout of what it holds by value, not by what it points to
        held = {}
        for typename in _typenames_in(init):
            canon.references(typename.type, "value", held)
        layouts = sorted(f"{type_key(k)}={canon.named_layout(k)}" for k, how in held.items() if how == "value")
        return sha256("\n".join([canon.expr_text(init), *enums, *layouts]))

    def uncounted(self, ext):
        """Why mutable `T x[] = {...}` cannot be bound ("" if it can): bound as
        `extern T x[]`, `sizeof x` would no longer compile in a patch."""
        if not _is_const(ext.type) and _sized_by_uncounted_initializer(ext, self.canon.enum_of_constant):
            return "psu cannot count the elements its initializer gives it"
        return ""

    def variable(self, ext):
        storage = ext.storage or []
        if ext.coord.file != self.path:
            if "static" in storage and not _is_const(ext.type):
                self.header_statics[ext.name] = ext.coord.file
            return
        location = Location(self.path, ext.coord.line, ext.coord.column)
        known = self.file_vars.get(ext.name)
        if known is not None:                     # another declaration of it
            known.locations.append(location)
            if "extern" not in storage:
                known.definition = True
                if ext.init is not None:
                    known.init_hash = self.init_hash(ext.init)
                    known.reads = self.init_reads(ext.init)
                    known.length = _array_length(ext, self.canon.enum_of_constant)
                    known.unbound = known.unbound or self.uncounted(ext)
            return
        static = "static" in storage
        type_text, type_hash, init_hash = self.facts(ext)
        variable = Variable(
            unbound=("" if _written_on(self.lines, ext.name, ext.coord.line) else "made by a macro")
            or self.uncounted(ext),
            name=ext.name, qualname=_qualname(self.path, ext.name, static), static=static,
            thread_local="_Thread_local" in storage, const=_is_const(ext.type),
            definition="extern" not in storage, type=type_text, type_hash=type_hash,
            init_hash=init_hash, locations=[location],
            length=_array_length(ext, self.canon.enum_of_constant),
            type_refs=self.use_types(self.canon.references(ext.type)),
            reads=self.init_reads(ext.init))
        self.file_vars[ext.name] = variable
        self.unit.variables.append(variable)

    def function(self, ext):
        decl, canon = ext.decl, self.canon
        facts = _BodyFacts()
        facts.visit(ext.body)
        body_text = self.generator.visit(ext.body)
        if ext.coord.file != self.path:
            self.unit.helpers[decl.name] = {"body_hash": sha256(body_text),
                                            "callees": sorted(facts.ids & self.functions_known)}
            return
        size = _Size()
        size.visit(ext.body)
        static = "static" in (decl.storage or []) or decl.name in self.declared_static
        params = decl.type.args.params if decl.type.args else []
        variadic = any(isinstance(p, c_ast.EllipsisParam) for p in params)
        kr_style = ext.param_decls is not None or any(isinstance(p, c_ast.ID) for p in params)
        parameter_names = [p.name for p in params if not isinstance(p, c_ast.EllipsisParam)]
        if kr_style:
            # its type as a prototype: the one in scope, or the promoted types
            decl = _kr_prototyped(decl, ext, self.prototype_of.get(id(ext)), canon)
            params = decl.type.args.params
        func_type = decl.type
        if len(params) == 1 and isinstance(params[0], c_ast.Typename) and \
                canon.type_text(params[0].type) == "void":
            params = parameter_names = []
        fixed = [p for p in params if not isinstance(p, c_ast.EllipsisParam)]
        head = _declaration_text(decl, "@NAME@", param_names=[
            (param, f"psu_a{index}") for index, param in enumerate(fixed)])
        va_head = ""
        if variadic:
            # the variant every version is compiled as: `...` becomes a va_list
            va_list = c_ast.Decl(f"psu_a{len(fixed)}", [], [], [], [], c_ast.TypeDecl(
                f"psu_a{len(fixed)}", [], None, c_ast.IdentifierType(["__builtin_va_list"])),
                None, None)
            va_decl = c_ast.Decl(decl.name, decl.quals, decl.align, decl.storage, decl.funcspec,
                                 c_ast.FuncDecl(c_ast.ParamList(fixed + [va_list]), func_type.type),
                                 None, None)
            va_head = _declaration_text(va_decl, "@NAME@", param_names=[
                (param, f"psu_a{index}") for index, param in enumerate(fixed)])
        returns = func_type.type
        returns_void = isinstance(returns, c_ast.TypeDecl) and canon.type_text(returns) == "void"
        result = ""
        if not returns_void:
            holder = c_ast.Decl(name="psu_result", quals=[], align=[], storage=[], funcspec=[],
                                type=returns, init=None, bitsize=None)
            result = _declaration_text(holder, "psu_result")

        # The body hash covers the body text and the layout of every type and the
        # type of every file-scope variable the body names: a struct change shows.
        named = set(facts.tags) | {("typedef", n) for n in facts.typenames}
        named |= {("enum", canon.enum_of_constant[n].name) for n in facts.ids
                  if n in canon.enum_of_constant and canon.enum_of_constant[n].name}
        touched = canon.deep_hashes(named)
        touched += sorted(canon.expr_text(canon.enum_of_constant[n]) for n in facts.ids
                          if n in canon.enum_of_constant and not canon.enum_of_constant[n].name)
        # Constant data is private to each version, so its value is part of the code.
        touched += sorted(f"{n}:{self.file_vars[n].type_hash}" +
                          (f"={self.file_vars[n].init_hash}" if self.file_vars[n].const else "")
                          for n in facts.ids if n in self.file_vars and n not in facts.local_names)
        touched.append(canon.type_hash(func_type))
        # Its own signature: text, and the layout of what it takes or returns by value.
        signature_refs = {}
        for p in params:
            if not isinstance(p, (c_ast.EllipsisParam, c_ast.ID)):
                canon.references(p.type, "value", signature_refs)
        canon.references(func_type.type, "value", signature_refs)
        signature_text = canon.type_text(func_type)
        signature_hash = sha256(signature_text + "\n" + "\n".join(
            f"{type_key(k)}={canon.named_layout(k)}" for k, how in sorted(signature_refs.items())
            if how == "value"))
        body_types = {k: "value" for k in named if k in canon.definitions and k not in facts.local_types}
        if ext.param_decls:      # K&R: `char c;` and `int c;` are one promoted signature
            touched.append(";".join(self.generator.visit(d) for d in ext.param_decls))

        seen = {}
        locals_ = [self.local_static(decl.name, local, facts, seen) for local in facts.statics]
        endless = _EndlessLoops()
        endless.visit(ext.body)
        self.unit.functions.append(Function(
            name=decl.name, qualname=_qualname(self.path, decl.name, static), static=static,
            inline="inline" in (decl.funcspec or []), variadic=variadic, kr_style=kr_style,
            macro_made=not _written_on(self.lines, decl.name, decl.coord.line),
            size=size.nodes, address_taken=decl.name in self.references.referenced,
            signature=_declaration_text(decl, "@NAME@"), head=head, va_head=va_head,
            arity=len(fixed),
            returns_void=returns_void, result=result, signature_hash=signature_hash,
            body_hash=sha256(body_text + "\n" + "\n".join(touched)),
            callees=sorted((facts.ids & self.functions_known) - facts.local_names),
            header_statics=sorted(f"{n} ({self.header_statics[n]})" for n in
                                  (facts.ids & set(self.header_statics)) - facts.local_names),
            locals=locals_, location=Location(self.path, decl.coord.line, decl.coord.column),
            parameters=parameter_names, loops_forever=endless.found,
            body_line=ext.body.coord.line if ext.body.coord else 0,
            signature_types=self.use_types(signature_refs),
            body_types=self.use_types(body_types),
            reads=sorted((facts.ids & self.file_scope_variables) - facts.local_names - self.functions_known),
            members=sorted(facts.members),
            body_end_line=ext.end[0] if isinstance(ext, FuncDef) and ext.end else 0))

    def opaque_function(self, ext):
        """A definition whose body the parser could not read: kept direct.  Its
        hash is its body's token text, its callees the known functions it names;
        the error (with its location) says what to exclude."""
        decl = ext.decl
        body_hash = sha256(ext.body_text)
        callees = sorted(set(ext.body_ids) & self.functions_known)
        if ext.coord.file != self.path:
            self.unit.helpers[decl.name] = {"body_hash": body_hash, "callees": callees}
            return
        if isinstance(ext.error, Unsupported):
            coord = ext.error.coord
            error = CSourceError(coord.file, coord.line, coord.column or 0,
                                 f"cannot parse {ext.error.construct}: {ext.error.detail}")
        else:
            error = _located_error(str(ext.error), self.path,
                                   "\n".join(self.lines) if self.lines else None)
        static = "static" in (decl.storage or []) or decl.name in self.declared_static
        params = decl.type.args.params if decl.type.args else []
        self.unit.functions.append(Function(
            name=decl.name, qualname=_qualname(self.path, decl.name, static), static=static,
            inline="inline" in (decl.funcspec or []),
            variadic=any(isinstance(p, c_ast.EllipsisParam) for p in params),
            kr_style=any(isinstance(p, c_ast.ID) for p in params),
            macro_made=not _written_on(self.lines, decl.name, decl.coord.line),
            size=len(ext.body_text), address_taken=decl.name in self.references.referenced,
            signature=_declaration_text(decl, "@NAME@"), head="", va_head="", arity=len(params),
            returns_void=False, result="", signature_hash=self.canon.type_hash(decl.type),
            body_hash=body_hash, callees=callees, locals=[],
            location=Location(self.path, decl.coord.line, decl.coord.column), parameters=[],
            body_line=ext.body_coord.line, body_end_line=ext.end[0],
            unreadable=f"{error}; add '{decl.name}' to PSU_EXCLUDE (psu then calls it directly, "
                       "and the rest of its unit stays updatable)" +
                       ("; its static variables cannot be bound, so keep it unchanged across updates"
                        if ext.has_static else "")))

    def local_static(self, function, local, facts, seen):
        """A function-local static: its model, and whether it can be bound."""
        seen[local.name] = seen.get(local.name, 0) + 1
        qualname = f"{self.path}:{function}:{local.name}" + \
            (f"#{seen[local.name]}" if seen[local.name] > 1 else "")
        type_text, type_hash, init_hash = self.facts(local)
        type_names, init_ids = _names_in(local.type)
        if local.init is not None:
            init_types, init_ids = _names_in(local.init)
            type_names |= init_types
        unbound = ""
        if type_names & facts.local_types or _defines_a_type(local.type):
            unbound = "its type is declared inside the function"
        elif (init_ids & facts.local_names) - {local.name}:
            unbound = "its initializer names something declared inside the function"
        elif not _written_on(self.lines, local.name, local.coord.line):
            unbound = "made by a macro"
        elif local.init is not None and _takes_label_addresses(local.init):
            unbound = "its initializer takes the address of a label of the function"
        elif _sized_by_uncounted_initializer(local, self.canon.enum_of_constant):
            unbound = "psu cannot count the elements its initializer gives it"
        elif local.name in self.file_scope_names:
            unbound = f"a file-scope declaration of '{local.name}' would be the same object"
        elif local.name in self.bound_local_names and not (_is_const(local.type)):
            unbound = f"another function-local static '{local.name}' of this unit is bound, " \
                      "and one name can be bound once"
        if not unbound and not _is_const(local.type):
            self.bound_local_names.add(local.name)
        storage = [s for s in local.storage if s != "static"]
        with _temporarily([(local, "name", "@NAME@"),
                           (_innermost_typedecl(local.type), "declname", "@NAME@"),
                           (local, "storage", storage), (local, "funcspec", [])]):
            hoisted = self.generator.visit(local)
        return LocalStatic(
            name=local.name, qualname=qualname, type=type_text, type_hash=type_hash,
            init_hash=init_hash, decl=hoisted,
            thread_local="_Thread_local" in local.storage, const=_is_const(local.type),
            location=Location(self.path, local.coord.line, local.coord.column),
            length=_array_length(local, self.canon.enum_of_constant), unbound=unbound,
            type_refs=self.use_types(self.canon.references(local.type)))


# Bump when the model or its hashing changes: cached analyses are keyed by it
# (and by the text of the parser and of this module, so an edit to either counts).
ANALYSIS_VERSION = "14"


def code_text_hash(path, cc, flags, cwd):
    """Hash of the unit as the compiler sees it (attributes and visibility pragmas
    included, which the parse-only defines drop): part of the build id."""
    command = [cc, "-E", *preprocessing_flags(flags), "-idirafter", resources.runtime_sources_dir(),
               *NORMALISING_DEFINES,
               f"-D__FILE__=\"{path}\"", path]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolError(f"psu: preprocessing {path} failed:\n{done.stderr.strip()}")
    return sha256(normalised_text(done.stdout, keep_pragmas=True))


def _analyser_hash():
    from . import gnuc
    digest = hashlib.sha256(ANALYSIS_VERSION.encode())
    for module_file in (__file__, gnuc.__file__):
        with open(module_file, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def analyse(path, cc, flags, cwd, dsu=True, cache_dir=None):
    """Preprocess, parse and describe the unit `path` (relative to `cwd`).  A unit
    outside the DSU units is described too (its definitions are compared, not its
    text), unless it cannot be parsed: then its text is all there is to compare."""
    preprocessed = preprocess(path, cc, flags, cwd)
    text_hash = code_text_hash(path, cc, flags, cwd)
    source_hash = sha256(preprocessed)
    cache_file = None
    with open(os.path.join(cwd, path), "rb") as f:
        original_hash = hashlib.sha256(f.read()).hexdigest()
    if cache_dir:
        key = sha256(f"{_analyser_hash()}\n{path}\n{dsu}\n{original_hash}\n{preprocessed}")
        cache_file = os.path.join(cache_dir, key[:2], key + ".json")
        if os.path.exists(cache_file):
            with open(cache_file) as f:
                unit = Unit.from_json(json.load(f))
            unit.text_hash = text_hash
            return unit
    with open(os.path.join(cwd, path), encoding="utf-8", errors="surrogateescape") as f:
        original = f.read()
    try:
        unit = describe(parse(preprocessed, path, original, cwd), path, text_hash, dsu=dsu,
                        source_hash=source_hash, original_text=original)
    except CSourceError:
        if dsu:
            raise
        # outside the DSU units psu only compares what a unit defines: when it
        # cannot read the unit, its text is compared instead
        unit = Unit(path=path, text_hash=text_hash, dsu=False, source_hash=source_hash,
                    described=False)
    if dsu:
        unit.storage_macros = storage_macros(path, cc, flags, cwd)
    if cache_file:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        temporary = cache_file + f".{os.getpid()}"
        with open(temporary, "w") as f:
            json.dump(unit.to_json(), f, sort_keys=True)
        os.replace(temporary, cache_file)
    return unit
