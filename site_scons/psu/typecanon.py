"""Location-free text, hashes and layouts of C types, from a unit's AST."""
import os

from pycparser import c_ast

from .digest import sha256
from .gnuc import GnuCGenerator


class TypeCanon:
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


def stronger(how, than):
    return TypeCanon._STRENGTH[how] > TypeCanon._STRENGTH.get(than, 0)


def type_key(key):
    """A named type as a person writes it: `struct S`, `union U`, `enum E`, or a typedef's name."""
    return key[1] if key[0] == "typedef" else f"{key[0]} {key[1]}"
