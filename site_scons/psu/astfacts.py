"""Visitors that collect what a piece of AST names, defines or does (no model, no hashing)."""
import re

from pycparser import c_ast


class BodyFacts(c_ast.NodeVisitor):
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


class EndlessLoops(c_ast.NodeVisitor):
    """Finds a loop that never ends: no condition (or a constant true one) and
    nothing that leaves it.  A call of such a function may never return."""

    def __init__(self):
        self.found = False

    def _loop(self, node):
        if _always_true(node.cond) and (node.stmt is None or not _leaves(node.stmt)):
            self.found = True
        self.generic_visit(node)

    visit_For = visit_While = visit_DoWhile = _loop


class ThreadRoutines(c_ast.NodeVisitor):
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


def names_in(node):
    """Named types (as (kind, name)) and identifiers that appear in `node`."""
    found = BodyFacts()
    found.visit(node)
    return found.tags | {("typedef", n) for n in found.typenames}, found.ids


def typenames_in(node):
    """The type names (c_ast.Typename) written in an expression."""
    found = []

    class Finder(c_ast.NodeVisitor):
        def visit_Typename(self, typename):
            found.append(typename)

    Finder().visit(node)
    return found


def defines_a_type(node):
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


def written_on(lines, name, line):
    """Whether the identifier `name` is spelled on source line `line` (not made by a macro)."""
    if lines is None:
        return True
    return 0 < line <= len(lines) and re.search(rf"\b{re.escape(name)}\b", lines[line - 1]) is not None


class References(c_ast.NodeVisitor):
    """Names used other than as the callee of a direct call: functions whose
    address is taken (they must stay DSU functions: a pointer reaches the entry check)."""

    def __init__(self):
        self.referenced = set()

    def visit_FuncCall(self, node):
        if not isinstance(node.name, c_ast.ID):
            self.visit(node.name)
        if node.args is not None:
            self.visit(node.args)

    def visit_ID(self, node):
        self.referenced.add(node.name)


class NodeCount(c_ast.NodeVisitor):
    def __init__(self):
        self.nodes = 0

    def generic_visit(self, node):
        self.nodes += 1
        super().generic_visit(node)
