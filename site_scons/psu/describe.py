"""The model of one unit (`model.Unit`) from its AST: what the unit itself defines.

Only definitions whose coordinates lie in the unit itself are described; what
headers define is summarised as helpers (for the inlined-helper rule, SPEC §4.4).
"""
import dataclasses
from dataclasses import dataclass, field

from pycparser import c_ast

from .astfacts import (BodyFacts, EndlessLoops, NodeCount, References, ThreadRoutines, defines_a_type,
                       names_in, typenames_in, written_on)
from .cparse import located_error
from .declarators import (array_length, declaration_text, innermost_typedecl, is_const, is_prototype,
                          kr_prototyped, sized_by_uncounted_initializer, takes_label_addresses, temporarily)
from .digest import sha256
from .errors import CSourceError
from .gnuc import FuncDef, GnuCGenerator, OpaqueFunction, Unsupported
from .model import Function, LocalStatic, Location, Unit, Variable
from .typecanon import TypeCanon, stronger, type_key

def qualname_of(unit_path, name, static):
    return f"{unit_path}:{name}" if static else name


def describe(ast, unit_path, text_hash, dsu=True, source_hash="", original_text=None):
    """Build the model of one unit from its AST (only what the unit itself defines).
    With the unit's `original_text`, names a macro made are recognised: such
    functions stay direct and such variables unbound."""
    return describe_reusing(ast, unit_path, text_hash, dsu, source_hash, original_text)[0]


def describe_reusing(ast, unit_path, text_hash, dsu=True, source_hash="", original_text=None,
                     known_records=None, reparse=None):
    """`describe`, taking the record of each definition in `known_records`
    (id(FuncDef) -> FunctionRecord) as it is; returns the unit and the records
    of the definitions described now."""
    unit = Unit(path=unit_path, text_hash=text_hash, dsu=dsu, source_hash=source_hash)
    describer = _Describer(ast, unit, original_text, known_records, reparse)
    describer.run()
    return unit, describer.new_records


@dataclass
class FunctionRecord:
    """What one function definition contributes to its unit.  It depends on the
    definition and on the unit's declarations (types, variables, prototypes),
    never on another definition: what does (whether its address is taken, which
    function-local static of a name is bound) is decided when the unit is put
    together (`_Describer.add_function`).  So a record can be reused for an
    unchanged definition of an otherwise changed unit (incremental.py)."""
    name: str
    helper: dict = None        # defined in a header: {"body_hash", "callees"}
    function: Function = None  # address_taken not set, locals' `unbound` as far as known
    referenced: list = field(default_factory=list)       # names used other than as a callee
    thread_routines: list = field(default_factory=list)  # names it passes to pthread_create
    type_uses: list = field(default_factory=list)        # [kind, name, how] of each named type used
    # What the unit's other parts read of its head: its storage class, and
    # whether its parameters define a type (then the head must be parsed).
    storage: list = field(default_factory=list)
    head_defines_type: bool = False
    # The names its description looked up among the unit's definitions, and
    # the answers (name_answers): checked before the record is reused.
    probes: list = field(default_factory=list)
    answers: list = field(default_factory=list)

    def stand_in(self, coord):
        """A FuncDef with this record's name and storage, for a definition
        whose head need not be parsed: what the rest of the unit reads of it."""
        int_type = c_ast.TypeDecl(self.name, [], None, c_ast.IdentifierType(["int"]))
        decl = c_ast.Decl(self.name, [], [], list(self.storage), [], c_ast.FuncDecl(None, int_type),
                          None, None, coord)
        return FuncDef(decl, None, c_ast.Compound([], coord), coord)


class _Prototype:
    """A definition's type as a prototype and the texts codegen declares it with
    (attributes set by `_Describer._prototype`)."""


def _node_count(body):
    count = NodeCount()
    count.visit(body)
    return count.nodes


def _loops_forever(body):
    endless = EndlessLoops()
    endless.visit(body)
    return endless.found


class _Describer:
    """One pass over a unit's AST: its variables, then its functions."""

    def __init__(self, ast, unit, original_text, known_records=None, reparse=None):
        self.ast, self.unit, self.path = ast, unit, unit.path
        # id(FuncDef) -> FunctionRecord: definitions described before (their
        # FuncDef holds the head only); new_records: those described now;
        # reparse(FuncDef) -> the definition parsed, for a record found stale
        self.known_records, self.new_records = dict(known_records or {}), {}
        self.reparse = reparse
        self.lines = original_text.splitlines() if original_text is not None else None
        self.canon = TypeCanon(ast)
        self.generator = GnuCGenerator()
        self.file_vars = {}       # name -> Variable, for variables of the unit
        self.header_statics = {}  # name -> header: mutable statics a header defines here
        self.functions_known = set()
        # `static int f(int);` then `int f(int x) {...}`: the definition has internal
        # linkage too (C11 6.2.2p5), though its own declaration says nothing.
        self.declared_static = set()
        # K&R definition -> the prototype in scope where it is defined, if any
        self.prototype_of = {}
        self._index_functions()
        # A bound function-local static becomes a block-scope `extern` of its own
        # name; every such declaration of one name in a unit, and any file-scope
        # declaration of it, is one object (C11 6.2.2p4): only the first
        # function-local static of a name no file scope declares can be bound.
        self.file_scope_names = {(ext.decl if isinstance(ext, (c_ast.FuncDef, OpaqueFunction)) else ext).name
                                 for ext in ast.ext if isinstance(ext, (c_ast.Decl, c_ast.FuncDef, OpaqueFunction))}
        self.bound_local_names = set()
        self._check_known_records()
        self.references = self._references()
        # file-scope variables by name, wherever declared: what a body reads
        self.file_scope_variables = {ext.name for ext in ast.ext if isinstance(ext, c_ast.Decl) and ext.name
                                     and not self.function_type(ext.type)
                                     and "typedef" not in (ext.storage or [])}
        self.type_roots = {}      # named types the unit's state, signatures and bodies use

    def _index_functions(self):
        """Every function the unit declares or defines; which are static; the
        prototype in scope at each K&R definition."""
        prototypes = {}
        for ext in self.ast.ext:
            decl = ext.decl if isinstance(ext, (c_ast.FuncDef, OpaqueFunction)) else ext
            if isinstance(decl, c_ast.Decl) and self.function_type(decl.type):
                self.functions_known.add(decl.name)
                if "static" in (decl.storage or []):
                    self.declared_static.add(decl.name)
                if isinstance(ext, c_ast.FuncDef):
                    self.prototype_of[id(ext)] = prototypes.get(decl.name)
                elif isinstance(decl.type, c_ast.FuncDecl) and is_prototype(decl.type):
                    prototypes[decl.name] = decl.type

    def _references(self):
        """Names the unit's own code uses other than as the callee of a call."""
        references = References()
        for ext in self.ast.ext:
            if ext.coord is not None and ext.coord.file == self.path:
                if id(ext) in self.known_records:
                    references.referenced.update(self.known_records[id(ext)].referenced)
                else:
                    references.visit(ext)
                if isinstance(ext, OpaqueFunction):   # unread: any name may be a reference
                    references.referenced.update(ext.body_ids)
        return references

    def name_answers(self, probes):
        """What a description asks of the unit's other definitions about the
        names it probes: which name a function and which a file-scope name."""
        return [[name in self.functions_known, name in self.file_scope_names] for name in probes]

    def _check_known_records(self):
        """A record is reused only if the names it probed still answer as
        they did (a function defined or removed elsewhere in the unit may
        change its callees or its local statics' binding)."""
        for index, ext in enumerate(self.ast.ext):
            record = self.known_records.get(id(ext))
            if record is not None and record.answers != self.name_answers(record.probes):
                del self.known_records[id(ext)]
                self.ast.ext[index] = self.reparse(ext)

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
        self.unit.thread_routines = sorted(self.thread_routines())
        for ext in self.ast.ext:
            if isinstance(ext, c_ast.Decl) and ext.name and \
                    not self.function_type(ext.type) and "typedef" not in (ext.storage or []):
                self.variable(ext)
        for ext in self.ast.ext:
            if isinstance(ext, c_ast.FuncDef):
                record = self.known_records.get(id(ext))
                if record is None:
                    record = self.new_records[id(ext)] = self.function_record(ext)
                self.add_function(record)
            elif isinstance(ext, OpaqueFunction):
                self.opaque_function(ext)
        self.unit.types = {type_key(k): self.canon.describe_type(k)
                           for k in sorted(self.canon.reachable(self.type_roots))}

    def thread_routines(self):
        """What the unit's own functions pass to pthread_create."""
        names = set()
        for ext in self.ast.ext:
            if isinstance(ext, c_ast.FuncDef) and ext.coord is not None and ext.coord.file == self.path:
                record = self.known_records.get(id(ext))
                if record is not None:
                    names.update(record.thread_routines)
                else:
                    routines = ThreadRoutines()
                    routines.visit(ext.body)
                    names |= routines.names
        return names

    def type_names(self, found, type_uses):
        """The names of the named types in `found` that are held or pointed to;
        `type_uses` collects them all for `use_types`."""
        type_uses.extend([key[0], key[1], how] for key, how in sorted(found.items()))
        return sorted(type_key(k) for k, how in found.items() if how != "fnparam")

    def use_types(self, found):
        for key, how in found.items():
            if stronger(how, self.type_roots.get(key)):
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
        return sorted(names_in(init)[1] & self.file_scope_variables) if init is not None else []

    def init_hash(self, init):
        if init is None:
            return sha256("")
        _, ids = names_in(init)
        canon = self.canon
        enums = sorted(canon.expr_text(canon.enum_of_constant[n]) for n in ids if n in canon.enum_of_constant)
        # a type named in it (sizeof, offsetof, a cast, a compound literal) matters
        # by the layout of what it holds by value, not by what it points to
        held = {}
        for typename in typenames_in(init):
            canon.references(typename.type, "value", held)
        layouts = sorted(f"{type_key(k)}={canon.named_layout(k)}" for k, how in held.items() if how == "value")
        return sha256("\n".join([canon.expr_text(init), *enums, *layouts]))

    def uncounted(self, ext):
        """Why mutable `T x[] = {...}` cannot be bound ("" if it can): bound as
        `extern T x[]`, `sizeof x` would no longer compile in a patch."""
        if not is_const(ext.type) and sized_by_uncounted_initializer(ext, self.canon.enum_of_constant):
            return "psu cannot count the elements its initializer gives it"
        return ""

    def variable(self, ext):
        storage = ext.storage or []
        if ext.coord.file != self.path:
            if "static" in storage and not is_const(ext.type):
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
                    known.length = array_length(ext, self.canon.enum_of_constant)
                    known.unbound = known.unbound or self.uncounted(ext)
            return
        static = "static" in storage
        type_text, type_hash, init_hash = self.facts(ext)
        variable = Variable(
            unbound=("" if written_on(self.lines, ext.name, ext.coord.line) else "made by a macro")
            or self.uncounted(ext),
            name=ext.name, qualname=qualname_of(self.path, ext.name, static), static=static,
            thread_local="_Thread_local" in storage, const=is_const(ext.type),
            definition="extern" not in storage, type=type_text, type_hash=type_hash,
            init_hash=init_hash, locations=[location],
            length=array_length(ext, self.canon.enum_of_constant),
            type_refs=self.use_types(self.canon.references(ext.type)),
            reads=self.init_reads(ext.init))
        self.file_vars[ext.name] = variable
        self.unit.variables.append(variable)

    def function_record(self, ext):
        """What the definition `ext` contributes, from it and the unit's
        declarations alone (see FunctionRecord)."""
        facts = BodyFacts()
        facts.visit(ext.body)
        body_text = self.generator.visit(ext.body)
        if ext.coord.file != self.path:
            probes = sorted(facts.ids)
            return FunctionRecord(ext.decl.name, helper={"body_hash": sha256(body_text),
                                                         "callees": sorted(facts.ids & self.functions_known)},
                                  storage=list(ext.decl.storage or []),
                                  head_defines_type=defines_a_type(ext.decl),
                                  probes=probes, answers=self.name_answers(probes))
        probes = sorted(facts.ids | {local.name for local in facts.statics})
        record = FunctionRecord(ext.decl.name, storage=list(ext.decl.storage or []),
                                head_defines_type=defines_a_type(ext.decl),
                                probes=probes, answers=self.name_answers(probes))
        references, routines = References(), ThreadRoutines()
        references.visit(ext)
        routines.visit(ext.body)
        record.referenced, record.thread_routines = sorted(references.referenced), sorted(routines.names)
        decl, prototype = ext.decl, self._prototype(ext)
        seen = {}
        record.function = Function(
            name=decl.name, qualname=qualname_of(self.path, decl.name, prototype.static),
            static=prototype.static, inline="inline" in (decl.funcspec or []),
            variadic=prototype.variadic, kr_style=prototype.kr_style,
            macro_made=not written_on(self.lines, decl.name, decl.coord.line),
            size=_node_count(ext.body), address_taken=False,
            signature=declaration_text(prototype.decl, "@NAME@"), head=prototype.head,
            va_head=prototype.va_head, arity=len(prototype.fixed),
            returns_void=prototype.returns_void, result=prototype.result,
            signature_hash=self._signature_hash(prototype),
            body_hash=sha256(body_text + "\n" + "\n".join(self._touched(ext, prototype, facts))),
            callees=sorted((facts.ids & self.functions_known) - facts.local_names),
            header_statics=sorted(f"{n} ({self.header_statics[n]})" for n in
                                  (facts.ids & set(self.header_statics)) - facts.local_names),
            locals=[self.local_static(decl.name, local, facts, seen, record.type_uses)
                    for local in facts.statics],
            location=Location(self.path, decl.coord.line, decl.coord.column),
            parameters=prototype.parameter_names, loops_forever=_loops_forever(ext.body),
            body_line=ext.body.coord.line if ext.body.coord else 0,
            signature_types=self.type_names(prototype.signature_refs, record.type_uses),
            body_types=self.type_names({k: "value" for k in self._named_types(facts)
                                        if k in self.canon.definitions and k not in facts.local_types},
                                       record.type_uses),
            reads=sorted((facts.ids & self.file_scope_variables) - facts.local_names - self.functions_known),
            members=sorted(facts.members),
            body_end_line=ext.end[0] if isinstance(ext, FuncDef) and ext.end else 0)
        return record

    def add_function(self, record):
        """Enter a function's record into the unit, deciding what depends on
        the unit's other functions: whether its address is taken, and which of
        its function-local statics are bound (one name can be bound once)."""
        if record.helper is not None:
            self.unit.helpers[record.name] = dict(record.helper)
            return
        # a copy: the record is stored (or reused) as its definition alone decides
        function = dataclasses.replace(record.function,
                                       locals=[dataclasses.replace(local) for local in record.function.locals])
        function.address_taken = function.name in self.references.referenced
        for local in function.locals:
            if not local.unbound and local.name in self.bound_local_names and not local.const:
                local.unbound = f"another function-local static '{local.name}' of this unit is bound, " \
                                "and one name can be bound once"
            if not local.unbound and not local.const:
                self.bound_local_names.add(local.name)
        for kind, name, how in record.type_uses:
            self.use_types({(kind, name): how})
        self.unit.functions.append(function)

    def _prototype(self, ext):
        """The definition's type as a prototype, and the texts codegen declares it with."""
        decl, canon = ext.decl, self.canon
        found = _Prototype()
        found.static = "static" in (decl.storage or []) or decl.name in self.declared_static
        params = decl.type.args.params if decl.type.args else []
        found.variadic = any(isinstance(p, c_ast.EllipsisParam) for p in params)
        found.kr_style = ext.param_decls is not None or any(isinstance(p, c_ast.ID) for p in params)
        found.parameter_names = [p.name for p in params if not isinstance(p, c_ast.EllipsisParam)]
        if found.kr_style:
            # its type as a prototype: the one in scope, or the promoted types
            decl = kr_prototyped(decl, ext, self.prototype_of.get(id(ext)), canon)
            params = decl.type.args.params
        found.decl = decl
        if len(params) == 1 and isinstance(params[0], c_ast.Typename) and \
                canon.type_text(params[0].type) == "void":
            params = found.parameter_names = []
        found.params = params
        found.fixed = [p for p in params if not isinstance(p, c_ast.EllipsisParam)]
        renamed = [(param, f"psu_a{index}") for index, param in enumerate(found.fixed)]
        found.head = declaration_text(decl, "@NAME@", param_names=renamed)
        found.va_head = ""
        if found.variadic:
            # the variant every version is compiled as: `...` becomes a va_list
            va_name = f"psu_a{len(found.fixed)}"
            va_list = c_ast.Decl(va_name, [], [], [], [], c_ast.TypeDecl(
                va_name, [], None, c_ast.IdentifierType(["__builtin_va_list"])), None, None)
            va_decl = c_ast.Decl(decl.name, decl.quals, decl.align, decl.storage, decl.funcspec,
                                 c_ast.FuncDecl(c_ast.ParamList(found.fixed + [va_list]), decl.type.type),
                                 None, None)
            found.va_head = declaration_text(va_decl, "@NAME@", param_names=renamed)
        returns = decl.type.type
        found.returns_void = isinstance(returns, c_ast.TypeDecl) and canon.type_text(returns) == "void"
        found.result = ""
        if not found.returns_void:
            holder = c_ast.Decl(name="psu_result", quals=[], align=[], storage=[], funcspec=[],
                                type=returns, init=None, bitsize=None)
            found.result = declaration_text(holder, "psu_result")
        # what it takes or returns by value decides the signature's layout
        found.signature_refs = {}
        for p in params:
            if not isinstance(p, (c_ast.EllipsisParam, c_ast.ID)):
                canon.references(p.type, "value", found.signature_refs)
        canon.references(returns, "value", found.signature_refs)
        return found

    def _signature_hash(self, prototype):
        """Its own signature: text, and the layout of what it takes or returns by value."""
        canon = self.canon
        return sha256(canon.type_text(prototype.decl.type) + "\n" + "\n".join(
            f"{type_key(k)}={canon.named_layout(k)}" for k, how in sorted(prototype.signature_refs.items())
            if how == "value"))

    def _named_types(self, facts):
        canon = self.canon
        named = set(facts.tags) | {("typedef", n) for n in facts.typenames}
        named |= {("enum", canon.enum_of_constant[n].name) for n in facts.ids
                  if n in canon.enum_of_constant and canon.enum_of_constant[n].name}
        return named

    def _touched(self, ext, prototype, facts):
        """What the body hash covers besides the body's text: the layout of every
        type and the type of every file-scope variable the body names, so a
        struct change shows."""
        canon = self.canon
        touched = canon.deep_hashes(self._named_types(facts))
        touched += sorted(canon.expr_text(canon.enum_of_constant[n]) for n in facts.ids
                          if n in canon.enum_of_constant and not canon.enum_of_constant[n].name)
        # Constant data is private to each version, so its value is part of the code.
        touched += sorted(f"{n}:{self.file_vars[n].type_hash}" +
                          (f"={self.file_vars[n].init_hash}" if self.file_vars[n].const else "")
                          for n in facts.ids if n in self.file_vars and n not in facts.local_names)
        touched.append(canon.type_hash(prototype.decl.type))
        if ext.param_decls:      # K&R: `char c;` and `int c;` are one promoted signature
            touched.append(";".join(self.generator.visit(d) for d in ext.param_decls))
        return touched

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
            error = located_error(str(ext.error), self.path,
                                   "\n".join(self.lines) if self.lines else None)
        static = "static" in (decl.storage or []) or decl.name in self.declared_static
        params = decl.type.args.params if decl.type.args else []
        self.unit.functions.append(Function(
            name=decl.name, qualname=qualname_of(self.path, decl.name, static), static=static,
            inline="inline" in (decl.funcspec or []),
            variadic=any(isinstance(p, c_ast.EllipsisParam) for p in params),
            kr_style=any(isinstance(p, c_ast.ID) for p in params),
            macro_made=not written_on(self.lines, decl.name, decl.coord.line),
            size=len(ext.body_text), address_taken=decl.name in self.references.referenced,
            signature=declaration_text(decl, "@NAME@"), head="", va_head="", arity=len(params),
            returns_void=False, result="", signature_hash=self.canon.type_hash(decl.type),
            body_hash=body_hash, callees=callees, locals=[],
            location=Location(self.path, decl.coord.line, decl.coord.column), parameters=[],
            body_line=ext.body_coord.line, body_end_line=ext.end[0],
            unreadable=f"{error}; add '{decl.name}' to PSU_EXCLUDE (psu then calls it directly, "
                       "and the rest of its unit stays updatable)" +
                       ("; its static variables cannot be bound, so keep it unchanged across updates"
                        if ext.has_static else "")))

    def local_static(self, function, local, facts, seen, type_uses):
        """A function-local static: its model, and whether it can be bound as far
        as its own function decides (`add_function` decides the rest)."""
        seen[local.name] = seen.get(local.name, 0) + 1
        qualname = f"{self.path}:{function}:{local.name}" + \
            (f"#{seen[local.name]}" if seen[local.name] > 1 else "")
        type_text, type_hash, init_hash = self.facts(local)
        type_names, init_ids = names_in(local.type)
        if local.init is not None:
            init_types, init_ids = names_in(local.init)
            type_names |= init_types
        unbound = ""
        if type_names & facts.local_types or defines_a_type(local.type):
            unbound = "its type is declared inside the function"
        elif (init_ids & facts.local_names) - {local.name}:
            unbound = "its initializer names something declared inside the function"
        elif not written_on(self.lines, local.name, local.coord.line):
            unbound = "made by a macro"
        elif local.init is not None and takes_label_addresses(local.init):
            unbound = "its initializer takes the address of a label of the function"
        elif sized_by_uncounted_initializer(local, self.canon.enum_of_constant):
            unbound = "psu cannot count the elements its initializer gives it"
        elif local.name in self.file_scope_names:
            unbound = f"a file-scope declaration of '{local.name}' would be the same object"
        storage = [s for s in local.storage if s != "static"]
        with temporarily([(local, "name", "@NAME@"),
                           (innermost_typedecl(local.type), "declname", "@NAME@"),
                           (local, "storage", storage), (local, "funcspec", [])]):
            hoisted = self.generator.visit(local)
        return LocalStatic(
            name=local.name, qualname=qualname, type=type_text, type_hash=type_hash,
            init_hash=init_hash, decl=hoisted,
            thread_local="_Thread_local" in local.storage, const=is_const(local.type),
            location=Location(self.path, local.coord.line, local.coord.column),
            length=array_length(local, self.canon.enum_of_constant), unbound=unbound,
            type_refs=self.type_names(self.canon.references(local.type), type_uses))
