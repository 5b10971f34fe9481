"""C front end: preprocess a unit like its real compile, parse it with pycparser, build a `model.Unit`.

Only definitions whose coordinates lie in the unit itself are described; what
headers define is summarised as helpers (for the inlined-helper rule, SPEC §4.4).
Everything that could differ between two checkouts of the same source
(`__FILE__`, `__LINE__`, `__DATE__`, line markers, directories) is neutralised
before hashing, so a manifest is a function of the source and flags alone.
"""
import copy
import hashlib
import json
import os
import re
import subprocess

from pycparser import c_ast, c_generator, c_parser
from pycparser.c_parser import ParseError

from .errors import CSourceError, ToolError
from .model import Function, LocalStatic, Location, Unit, Variable

# Parse-only defines: they make glibc's headers and common GNU C digestible for
# pycparser.  The real compile never sees them.
PARSE_ONLY_DEFINES = [
    "-D__attribute__(x)=", "-D__extension__=", "-D__asm__(...)=", "-D__asm(...)=",
    "-D__restrict=", "-D__restrict__=", "-D__inline=inline", "-D__inline__=inline",
    "-D__signed__=signed", "-D__builtin_va_list=char*", "-D_Float128=long double",
    "-D_Float64x=long double", "-D_Float64=double", "-D_Float32x=double",
    "-D_Float32=float", "-D__uint128_t=unsigned __int128", "-D__int128_t=__int128",
    "-D__builtin_offsetof=offsetof",
    "-D__builtin_va_arg(a,t)=(*(t*)__builtin_va_arg_p(a))",
    "-D__volatile__=volatile", "-D__const=const", "-D__const__=const",
    "-D_Noreturn=", "-D__thread=_Thread_local",
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
    (re.compile(r"&&\s*[A-Za-z_]\w*"), "a label address"),
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
    command = [cc, "-E", "-isystem", PARSE_ONLY_INCLUDE, *preprocessing_flags(flags), *PARSE_ONLY_DEFINES,
               *NORMALISING_DEFINES, f"-D__FILE__=\"{path}\"", path]
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise ToolError(f"psu: compiler '{cc}' not found", hint="set CC to a C compiler")
    if done.returncode != 0:
        raise ToolError(f"psu: preprocessing {path} failed:\n{done.stderr.strip()}")
    return done.stdout


def normalised_text(preprocessed):
    """Preprocessed text without line markers and blank lines, whitespace folded."""
    out = []
    for line in preprocessed.splitlines():
        if line.startswith("#"):
            continue
        line = " ".join(line.split())
        if line:
            out.append(line)
    return "\n".join(out) + "\n"


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def parse(preprocessed, path, original_text=None):
    """pycparser AST of a preprocessed unit; a parse failure becomes a CSourceError."""
    try:
        return c_parser.CParser().parse(preprocessed, path)
    except ParseError as error:
        raise _located_error(str(error), path, original_text) from None
    except Exception as error:  # pycparser asserts on a few malformed inputs
        raise CSourceError(path, 0, 0, f"cannot parse ({type(error).__name__}: {error})") from None


def _located_error(message, path, original_text):
    match = re.match(r"^(.*?):(\d+):(\d+):\s*(.*)$", message)
    if not match:
        return CSourceError(path, 0, 0, f"cannot parse: {message}")
    file, line, column, detail = match.group(1), int(match.group(2)), int(match.group(3)), match.group(4)
    construct = None
    if original_text is not None and file == path:
        lines = original_text.splitlines()
        if 0 < line <= len(lines):
            for pattern, name in _CONSTRUCT_HINTS:
                if pattern.search(lines[line - 1]):
                    construct = name
                    break
    what = f"cannot parse {construct}" if construct else "cannot parse this code"
    detail = detail.replace("before:", "syntax error before").strip()
    if file != path:
        what += f" (in a header included by {path})"
    return CSourceError(file, line, column, f"{what}: {detail}")


class _Canon:
    """Canonical, location-free text of C types with struct/union/enum bodies and
    typedefs expanded, so a layout change anywhere below a type changes its text."""

    def __init__(self, ast):
        self.structs, self.typedefs, self.enum_of_constant = {}, {}, {}
        self.generator = c_generator.CGenerator()

        class Collector(c_ast.NodeVisitor):
            def visit_Struct(v, node):
                if node.decls is not None and node.name:
                    self.structs[("struct", node.name)] = node
                v.generic_visit(node)

            def visit_Union(v, node):
                if node.decls is not None and node.name:
                    self.structs[("union", node.name)] = node
                v.generic_visit(node)

            def visit_Enum(v, node):
                if node.values is not None:
                    for value in node.values.enumerators:
                        self.enum_of_constant[value.name] = node

            def visit_FuncDef(v, node):
                v.visit(node.decl)

        for ext in ast.ext:
            if isinstance(ext, c_ast.Typedef):
                self.typedefs[ext.name] = ext.type
            Collector().visit(ext)
        self._cache = {}

    def type_text(self, node, seen=frozenset()):
        if isinstance(node, c_ast.TypeDecl):
            quals = " ".join(sorted(node.quals or []))
            return (quals + " " if quals else "") + self.type_text(node.type, seen)
        if isinstance(node, c_ast.IdentifierType):
            if len(node.names) == 1 and node.names[0] in self.typedefs:
                name = node.names[0]
                if name in seen:
                    return name
                return f"{name}=<{self.type_text(self.typedefs[name], seen | {name})}>"
            return " ".join(node.names)
        if isinstance(node, (c_ast.Struct, c_ast.Union)):
            kind = "struct" if isinstance(node, c_ast.Struct) else "union"
            key = (kind, node.name)
            body = node if node.decls is not None else self.structs.get(key)
            if body is None or key in seen and node.name:
                return f"{kind} {node.name}"
            members = ";".join(self.decl_text(d, seen | {key}) for d in body.decls)
            return f"{kind} {node.name or ''}{{{members}}}"
        if isinstance(node, c_ast.Enum):
            values = node.values.enumerators if node.values else []
            body = ",".join(f"{e.name}={self.expr_text(e.value) if e.value else ''}" for e in values)
            return f"enum {node.name or ''}{{{body}}}"
        if isinstance(node, c_ast.PtrDecl):
            quals = " ".join(sorted(node.quals or []))
            return f"*{quals}({self.type_text(node.type, seen)})"
        if isinstance(node, c_ast.ArrayDecl):
            dim = self.expr_text(node.dim) if node.dim is not None else ""
            return f"[{dim}]({self.type_text(node.type, seen)})"
        if isinstance(node, c_ast.FuncDecl):
            params = []
            for p in (node.args.params if node.args else []):
                params.append("..." if isinstance(p, c_ast.EllipsisParam) else self.type_text(p.type, seen)
                              if not isinstance(p, c_ast.ID) else p.name)
            return f"fn({','.join(params)})->{self.type_text(node.type, seen)}"
        if isinstance(node, c_ast.Typename):
            return self.type_text(node.type, seen)
        if isinstance(node, c_ast.Decl):
            return self.type_text(node.type, seen)
        return type(node).__name__

    def decl_text(self, decl, seen):
        bits = f":{self.expr_text(decl.bitsize)}" if getattr(decl, "bitsize", None) else ""
        return f"{decl.name}:{self.type_text(decl.type, seen)}{bits}"

    def expr_text(self, node):
        return self.generator.visit(node) if node is not None else ""


def _innermost_typedecl(node):
    while not isinstance(node, c_ast.TypeDecl):
        node = node.type
    return node


def _declaration_text(decl, name, storage=()):
    """`decl` re-generated as a declaration named `name` (types only: never user code)."""
    clone = copy.deepcopy(decl)
    clone.name = name
    _innermost_typedecl(clone.type).declname = name
    clone.storage = list(storage)
    clone.funcspec = []
    return c_generator.CGenerator().visit(clone)


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
        self.local_names = set()

    def visit_ID(self, node):
        self.ids.add(node.name)

    def visit_IdentifierType(self, node):
        self.typenames.update(node.names)

    def visit_Struct(self, node):
        if node.name:
            self.tags.add(("struct", node.name))
        self.generic_visit(node)

    def visit_Union(self, node):
        if node.name:
            self.tags.add(("union", node.name))
        self.generic_visit(node)

    def visit_Decl(self, node):
        if node.name:
            self.local_names.add(node.name)
        if "static" in (node.storage or []) and not isinstance(node.type, c_ast.FuncDecl):
            self.statics.append(node)
        self.generic_visit(node)


def _qualname(unit_path, name, static):
    return f"{unit_path}:{name}" if static else name


def describe(ast, unit_path, text_hash, dsu=True, source_hash=""):
    """Build the model of one unit from its AST (only what the unit itself defines)."""
    canon = _Canon(ast)
    generator = c_generator.CGenerator()
    unit = Unit(path=unit_path, text_hash=text_hash, dsu=dsu, source_hash=source_hash)
    if not dsu:
        return unit

    file_vars = {}       # name -> (Decl, Variable) for variables of the unit
    functions_known = set()
    for ext in ast.ext:
        decl = ext.decl if isinstance(ext, c_ast.FuncDef) else ext
        if isinstance(decl, c_ast.Decl) and isinstance(decl.type, c_ast.FuncDecl):
            functions_known.add(decl.name)
        elif isinstance(ext, c_ast.FuncDef):
            functions_known.add(ext.decl.name)

    def var_facts(decl):
        type_text = canon.type_text(decl.type)
        return type_text, sha256(type_text), sha256(canon.expr_text(decl.init))

    for ext in ast.ext:
        if not isinstance(ext, c_ast.Decl) or isinstance(ext.type, c_ast.FuncDecl) or not ext.name:
            continue
        if "typedef" in (ext.storage or []) or ext.coord.file != unit_path:
            continue
        storage = ext.storage or []
        location = Location(unit_path, ext.coord.line, ext.coord.column)
        if ext.name in file_vars:
            var = file_vars[ext.name][1]
            var.locations.append(location)
            if "extern" not in storage:
                var.definition = True
                if ext.init is not None:
                    var.init_hash = sha256(canon.expr_text(ext.init))
            continue
        static = "static" in storage
        type_text, type_hash, init_hash = var_facts(ext)
        var = Variable(
            name=ext.name, qualname=_qualname(unit_path, ext.name, static), static=static,
            thread_local="_Thread_local" in storage, const=_is_const(ext.type),
            definition="extern" not in storage, type=type_text, type_hash=type_hash,
            init_hash=init_hash, locations=[location])
        file_vars[ext.name] = (ext, var)
        unit.variables.append(var)

    for ext in ast.ext:
        if not isinstance(ext, c_ast.FuncDef):
            continue
        decl = ext.decl
        facts = _BodyFacts()
        facts.visit(ext.body)
        body_text = generator.visit(ext.body)
        if ext.coord.file != unit_path:
            unit.helpers[decl.name] = {"body_hash": sha256(body_text),
                                       "callees": sorted(facts.ids & functions_known)}
            continue
        storage = decl.storage or []
        static = "static" in storage
        func_type = decl.type
        params = func_type.args.params if func_type.args else []
        variadic = any(isinstance(p, c_ast.EllipsisParam) for p in params)
        kr_style = ext.param_decls is not None or any(isinstance(p, c_ast.ID) for p in params)
        if len(params) == 1 and isinstance(params[0], c_ast.Typename) and \
                canon.type_text(params[0].type) == "void":
            params = []
        head = ""
        if not (variadic or kr_style):
            renamed = copy.deepcopy(decl)
            for index, param in enumerate(params):
                _innermost_typedecl(renamed.type.args.params[index].type).declname = f"psu_a{index}"
            head = _declaration_text(renamed, "@NAME@")
        returns = func_type.type
        returns_void = isinstance(returns, c_ast.TypeDecl) and \
            canon.type_text(returns) == "void"
        result = ""
        if not returns_void:
            holder = c_ast.Decl(name="psu_result", quals=[], align=[], storage=[], funcspec=[],
                                type=copy.deepcopy(returns), init=None, bitsize=None)
            _innermost_typedecl(holder.type).declname = "psu_result"
            result = generator.visit(holder)
        signature_text = canon.type_text(func_type)

        # The body hash covers the body text and the layout of every type and the
        # type of every file-scope variable the body names: a struct change shows.
        touched = sorted(canon.type_text(canon.structs[t]) for t in facts.tags if t in canon.structs)
        touched += sorted(f"{n}=<{canon.type_text(canon.typedefs[n])}>"
                          for n in facts.typenames if n in canon.typedefs)
        # Constant data is private to each version, so its value is part of the code.
        touched += sorted(f"{n}:{file_vars[n][1].type}" +
                          (f"={file_vars[n][1].init_hash}" if file_vars[n][1].const else "")
                          for n in facts.ids if n in file_vars and n not in facts.local_names)
        touched += sorted(canon.type_text(canon.enum_of_constant[n]) for n in facts.ids
                          if n in canon.enum_of_constant)
        body_hash = sha256(body_text + "\n" + "\n".join(touched))

        qualname = _qualname(unit_path, decl.name, static)
        locals_ = []
        seen_names = {}
        for local in facts.statics:
            count = seen_names.get(local.name, 0) + 1
            seen_names[local.name] = count
            local_qual = f"{unit_path}:{decl.name}:{local.name}" + (f"#{count}" if count > 1 else "")
            local_storage = [s for s in local.storage if s != "static"]
            type_text, type_hash, init_hash = var_facts(local)
            hoisted = copy.deepcopy(local)
            hoisted.name = "@NAME@"
            _innermost_typedecl(hoisted.type).declname = "@NAME@"
            hoisted.storage = local_storage
            hoisted.funcspec = []
            locals_.append(LocalStatic(
                name=local.name, qualname=local_qual, type=type_text, type_hash=type_hash,
                init_hash=init_hash, decl=generator.visit(hoisted),
                thread_local="_Thread_local" in local.storage, const=_is_const(local.type),
                location=Location(unit_path, local.coord.line, local.coord.column)))

        unit.functions.append(Function(
            name=decl.name, qualname=qualname, static=static,
            inline="inline" in (decl.funcspec or []), variadic=variadic, kr_style=kr_style,
            signature=_declaration_text(decl, "@NAME@"), head=head, arity=len(params),
            returns_void=returns_void, result=result, signature_hash=sha256(signature_text),
            body_hash=body_hash, callees=sorted((facts.ids & functions_known) - facts.local_names),
            locals=locals_, location=Location(unit_path, decl.coord.line, decl.coord.column)))
    return unit


# Bump when the model or its hashing changes: cached analyses are keyed by it.
ANALYSIS_VERSION = "1"


def analyse(path, cc, flags, cwd, dsu=True, cache_dir=None):
    """Preprocess, parse and describe the unit `path` (relative to `cwd`)."""
    preprocessed = preprocess(path, cc, flags, cwd)
    text_hash = sha256(normalised_text(preprocessed))
    source_hash = sha256(preprocessed)
    if not dsu:
        return Unit(path=path, text_hash=text_hash, dsu=False, source_hash=source_hash)
    cache_file = None
    if cache_dir:
        key = sha256(f"{ANALYSIS_VERSION}\n{path}\n{preprocessed}")
        cache_file = os.path.join(cache_dir, key[:2], key + ".json")
        if os.path.exists(cache_file):
            with open(cache_file) as f:
                return Unit.from_json(json.load(f))
    with open(os.path.join(cwd, path), encoding="utf-8", errors="surrogateescape") as f:
        original = f.read()
    unit = describe(parse(preprocessed, path, original), path, text_hash, source_hash=source_hash)
    if cache_file:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        temporary = cache_file + f".{os.getpid()}"
        with open(temporary, "w") as f:
            json.dump(unit.to_json(), f, sort_keys=True)
        os.replace(temporary, cache_file)
    return unit
