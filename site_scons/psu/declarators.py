"""Declarations re-generated under other names, K&R prototypes, constant array lengths.

Small pure functions over pycparser nodes that the describer uses to turn a
definition into the texts and facts codegen needs.
"""
import contextlib
import copy

from pycparser import c_ast

from .gnuc import GnuCGenerator, IndexDesignator, LabelAddress, Range


def innermost_typedecl(node):
    while not isinstance(node, c_ast.TypeDecl):
        node = node.type
    return node


@contextlib.contextmanager
def temporarily(settings):
    """Set (object, attribute, value) triples for a moment: cheaper than copying an AST."""
    saved = [(target, attribute, getattr(target, attribute)) for target, attribute, _ in settings]
    try:
        for target, attribute, value in settings:
            setattr(target, attribute, value)
        yield
    finally:
        for target, attribute, value in reversed(saved):
            setattr(target, attribute, value)


def declaration_text(decl, name, storage=(), param_names=()):
    """`decl` re-generated as a declaration named `name`, its parameters renamed
    (types only: never user code)."""
    settings = [(decl, "name", name), (innermost_typedecl(decl.type), "declname", name),
                (decl, "storage", list(storage)), (decl, "funcspec", [])]
    for param, param_name in param_names:
        settings.append((innermost_typedecl(param.type), "declname", param_name))
    with temporarily(settings):
        return GnuCGenerator().visit(decl)


def is_prototype(func_type):
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


def kr_prototyped(decl, ext, prototype, canon):
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
        innermost_typedecl(type_node).declname = name
        params.append(c_ast.Decl(name, [], [], [], [], type_node, None, None))
    if not params:
        params = [c_ast.Typename(None, [], None, c_ast.TypeDecl(
            None, [], None, c_ast.IdentifierType(["void"])))]
    return c_ast.Decl(decl.name, decl.quals, decl.align, decl.storage, decl.funcspec,
                      c_ast.FuncDecl(c_ast.ParamList(params), decl.type.type), None, None,
                      decl.coord)


def array_length(decl, enums=None):
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


def takes_label_addresses(node):
    """Whether `&&label` appears in `node` (a dispatch table: only its function can hold it)."""
    if isinstance(node, LabelAddress):
        return True
    return any(takes_label_addresses(child) for _, child in node.children())


def sized_by_uncounted_initializer(decl, enums=None):
    """`T x[] = {...}` whose length psu cannot count: bound as `extern T x[]`,
    `sizeof x` would no longer compile."""
    return isinstance(decl.type, c_ast.ArrayDecl) and decl.type.dim is None and \
        decl.init is not None and array_length(decl, enums) is None


def is_const(type_node):
    if isinstance(type_node, c_ast.TypeDecl):
        return "const" in (type_node.quals or [])
    if isinstance(type_node, c_ast.ArrayDecl):
        return is_const(type_node.type)
    if isinstance(type_node, c_ast.PtrDecl):
        return "const" in (type_node.quals or [])
    return False
