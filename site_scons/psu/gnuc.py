"""GNU C for pycparser: the extensions real code uses, read through pycparser's own extension points.

pycparser 3.0 is a recursive-descent parser whose `_parse_*` methods are its
grammar rules; `GnuCParser` overrides the few rules GNU C extends and adds
nodes for what standard C has no node for (`StmtExpr`, `Range`, ...).  Each
node keeps its sub-expressions and statements as children, so visitors find
the calls and names inside (callees, touched state), and `GnuCGenerator`
prints each back, so a body's hash changes when any part of it does.  psu
never compiles this output: it only hashes it (codegen edits the user's text).

What the preprocessor's parse-only defines remove (attributes, `__extension__`)
never reaches this module; `typeof` and `__auto_type` become type names in the
lexer; the rest is grammar:

    primary     : '(' compound_statement ')'                     statement expression
                | '_Generic' '(' assignment ',' association (',' association)* ')'
    unary       : '&&' ID                                        label as value
                | ('__real__' | '__imag__') cast_expression
    conditional : binary '?' ':' conditional                     omitted operand
    block_item  : '__label__' ID (',' ID)* ';'                   local labels
    argument    : assignment_expression | type_name              __builtin_types_compatible_p
    statement   : asm_statement | 'goto' '*' expression ';'      computed goto
    case        : 'case' constant '...' constant ':'             case range
    designator  : '[' constant '...' constant ']'                range designator
    declarator  : declarator asm_label                           asm("symbol")

A function whose body still cannot be read is kept as an `OpaqueFunction`:
its head is parsed, its body tokens skipped by brace matching, and the unit
goes on (the front end keeps that function direct; see frontend.py).
"""
import re

from pycparser import c_ast, c_generator, c_parser
from pycparser.c_lexer import CLexer, _Token
from pycparser.c_parser import ParseError

ASM_WORDS = {"asm", "__asm__", "__asm"}
TYPEOF_WORDS = {"typeof", "__typeof__", "__typeof"}
# Names the lexer hands over as type names (a typedef of unknown type, for parsing).
BUILTIN_TYPE_NAMES = {"__auto_type"}
COMPLEX_PARTS = {"__real__", "__imag__", "__real", "__imag"}


class Unsupported(ParseError):
    """A construct psu recognises but cannot read (a nested function)."""

    def __init__(self, coord, construct, detail):
        super().__init__(f"{coord}: {detail}")
        self.coord, self.construct, self.detail = coord, construct, detail


# -- nodes ----------------------------------------------------------------------------

class _GnuNode(c_ast.Node):
    __slots__ = ()
    child_names = ()

    def children(self):
        found = []
        for name in self.child_names:
            value = getattr(self, name)
            if isinstance(value, list):
                found.extend((f"{name}[{i}]", v) for i, v in enumerate(value) if v is not None)
            elif value is not None:
                found.append((name, value))
        return tuple(found)

    def __iter__(self):
        for _, child in self.children():
            yield child


class StmtExpr(_GnuNode):
    """`({ ... })`: its value is that of its last statement."""
    __slots__ = ("stmt", "coord", "__weakref__")
    child_names = ("stmt",)

    def __init__(self, stmt, coord=None):
        self.stmt, self.coord = stmt, coord


class Range(_GnuNode):
    """`first ... last` of a case range or a range designator."""
    __slots__ = ("first", "last", "coord", "__weakref__")
    child_names = ("first", "last")

    def __init__(self, first, last, coord=None):
        self.first, self.last, self.coord = first, last, coord


class IndexDesignator(_GnuNode):
    """`[NAME] =` in an initializer.  pycparser keeps `[NAME]` and `.NAME` both
    as an ID, and its generator prints `.NAME`: the hoisted definition of
    sparse's `static int type_class[] = { [SYM_PTR] = ... }` did not compile."""
    __slots__ = ("expr", "coord", "__weakref__")
    child_names = ("expr",)

    def __init__(self, expr, coord=None):
        self.expr, self.coord = expr, coord


class LabelAddress(_GnuNode):
    """`&&label` (labels as values)."""
    __slots__ = ("name", "coord", "__weakref__")
    attr_names = ("name",)

    def __init__(self, name, coord=None):
        self.name, self.coord = name, coord


class ComputedGoto(_GnuNode):
    """`goto *expr;`"""
    __slots__ = ("expr", "coord", "__weakref__")
    child_names = ("expr",)

    def __init__(self, expr, coord=None):
        self.expr, self.coord = expr, coord


class GenericSelection(_GnuNode):
    """`_Generic(controlling, type: expr, ..., default: expr)`; a None type is `default`."""
    __slots__ = ("controlling", "types", "exprs", "coord", "__weakref__")
    child_names = ("controlling", "types", "exprs")

    def __init__(self, controlling, types, exprs, coord=None):
        self.controlling, self.types, self.exprs, self.coord = controlling, types, exprs, coord


class OmittedOperand(_GnuNode):
    """`cond ?: otherwise` (the condition is the value when true, evaluated once)."""
    __slots__ = ("cond", "iffalse", "coord", "__weakref__")
    child_names = ("cond", "iffalse")

    def __init__(self, cond, iffalse, coord=None):
        self.cond, self.iffalse, self.coord = cond, iffalse, coord


class LocalLabels(_GnuNode):
    """`__label__ a, b;` (labels local to a block, for statement expressions in macros)."""
    __slots__ = ("names", "coord", "__weakref__")
    attr_names = ("names",)

    def __init__(self, names, coord=None):
        self.names, self.coord = names, coord


class AsmOperand(_GnuNode):
    """`[name] "constraint" (expr)` of an asm statement."""
    __slots__ = ("name", "constraint", "expr", "coord", "__weakref__")
    attr_names = ("name", "constraint")
    child_names = ("expr",)

    def __init__(self, name, constraint, expr, coord=None):
        self.name, self.constraint, self.expr, self.coord = name, constraint, expr, coord


class AsmStatement(_GnuNode):
    """`asm [volatile|inline|goto] (template : outputs : inputs : clobbers : labels);`"""
    __slots__ = ("qualifiers", "template", "outputs", "inputs", "clobbers", "labels",
                 "coord", "__weakref__")
    attr_names = ("qualifiers", "template", "clobbers", "labels")
    child_names = ("outputs", "inputs")

    def __init__(self, qualifiers, template, outputs, inputs, clobbers, labels, coord=None):
        self.qualifiers, self.template = qualifiers, template
        self.outputs, self.inputs, self.clobbers, self.labels = outputs, inputs, clobbers, labels
        self.coord = coord


class FuncDef(c_ast.FuncDef):
    """pycparser's FuncDef (same class name, so visitors treat it alike) with
    the position of the `}` that closes its body, after line markers."""
    __slots__ = ("end",)

    def __init__(self, decl, param_decls, body, coord=None, end=None):
        super().__init__(decl, param_decls, body, coord)
        self.end = end


class OpaqueFunction(c_ast.Node):
    """A function definition whose body the parser could not read: its declaration,
    the text and identifiers of its body tokens, and the parse error."""
    __slots__ = ("decl", "body_text", "body_ids", "has_static", "error", "body_coord", "end",
                 "coord", "__weakref__")
    attr_names = ()

    def __init__(self, decl, body_text, body_ids, has_static, error, body_coord, end, coord=None):
        self.decl, self.body_text, self.body_ids, self.has_static = decl, body_text, body_ids, has_static
        self.error, self.body_coord, self.end, self.coord = error, body_coord, end, coord

    def children(self):
        return (("decl", self.decl),)

    def __iter__(self):
        yield self.decl


# -- lexer -------------------------------------------------------------------------------

class GnuCLexer(CLexer):
    """CLexer that hands `typeof (...)` over as one type name (its text) and
    `__auto_type` as a type name: in a declaration both stand where a typedef
    name stands, and the text keeps the body hash honest."""

    def token(self):
        token = super().token()
        if token is not None and token.type in _NUMBER_TOKENS and self._pending_tok is None:
            return self._imaginary(token)
        if token is None or token.type not in ("ID", "TYPEID"):
            return token
        if token.value in BUILTIN_TYPE_NAMES:
            token.type = "TYPEID"
        elif token.value in TYPEOF_WORDS and self._pending_tok is None:
            following = super().token()
            if following is None or following.type != "LPAREN":
                self._pending_tok = following       # `typeof` as a plain name (pre-GNU code)
                return token
            parts, depth = ["__typeof__", "("], 1
            while True:
                part = super().token()
                if part is None:
                    break
                parts.append(part.value)
                depth += {"LPAREN": 1, "RPAREN": -1}.get(part.type, 0)
                if depth <= 0:
                    break
            token = _Token("TYPEID", " ".join(parts), token.lineno, token.column)
        return token


    def _imaginary(self, number):
        """`1.0iF`, `2i` (GNU imaginary constants): one constant, not a number and a name."""
        following = super().token()
        if following is not None and following.type == "ID" and _IMAGINARY_SUFFIX.match(following.value) \
                and following.lineno == number.lineno \
                and following.column == number.column + len(number.value):
            number.value += following.value
            number.type = "FLOAT_CONST"
            return number
        self._pending_tok = following
        return number


_NUMBER_TOKENS = {"INT_CONST_DEC", "INT_CONST_OCT", "INT_CONST_HEX", "INT_CONST_BIN",
                  "FLOAT_CONST", "HEX_FLOAT_CONST"}
_IMAGINARY_SUFFIX = re.compile(r"^(?:[ijIJ][fFlL]?|[fFlL][ijIJ])$")


# -- parser ------------------------------------------------------------------------------

class GnuCParser(c_parser.CParser):
    def __init__(self):
        super().__init__(lexer=GnuCLexer)

    def _is_asm(self, k=1):
        token = self._peek(k)
        return token is not None and token.type == "ID" and token.value in ASM_WORDS

    def _skip_balanced_parens(self):
        """Consume `( ... )`; return the tokens inside."""
        self._expect("LPAREN")
        inside, depth = [], 1
        while True:
            token = self._advance()
            if token.type == "LPAREN":
                depth += 1
            elif token.type == "RPAREN":
                depth -= 1
                if depth == 0:
                    return inside
            inside.append(token)

    # external_declaration : asm_statement (top-level asm) | ...
    # A function definition whose body fails to parse becomes an OpaqueFunction.
    def _parse_external_declaration(self):
        if self._is_asm() and self._peek_type(2) == "LPAREN":
            self._advance()
            self._skip_balanced_parens()
            self._accept("SEMI")
            return []
        mark = self._mark()
        try:
            return super()._parse_external_declaration()
        except ParseError as error:
            opaque = self._opaque_function(mark, error)
            if opaque is None:
                raise
            return [opaque]

    def _opaque_function(self, mark, error):
        """Re-read from `mark` as `specifiers declarator {`; skip the body by
        matching braces.  None when it is not a function definition."""
        failed_at = self._mark()
        self._reset(mark)
        try:
            spec, _, spec_coord = self._parse_declaration_specifiers(allow_no_type=True)
            decl = self._parse_id_declarator()
            if self._starts_declaration():      # K&R parameter declarations
                self._parse_declaration_list()
        except ParseError:
            self._reset(failed_at)
            return None
        lbrace = self._peek()
        if lbrace is None or lbrace.type != "LBRACE":
            self._reset(failed_at)
            return None
        if not spec["type"]:
            spec["type"] = [c_ast.IdentifierType(["int"], coord=spec_coord)]
        declaration = self._build_declarations(
            spec=spec, decls=[dict(decl=decl, init=None, bitsize=None)], typedef_namespace=True)[0]
        depth, texts, ids, has_static = 0, [], set(), False
        while True:
            token = self._advance()
            texts.append(token.value)
            if token.type == "LBRACE":
                depth += 1
            elif token.type == "RBRACE":
                depth -= 1
                if depth == 0:
                    break
            elif token.type == "ID":
                ids.add(token.value)
            elif token.type == "STATIC":
                has_static = True
        return OpaqueFunction(declaration, " ".join(texts), sorted(ids), has_static, error,
                              self._tok_coord(lbrace), (token.lineno, token.column), declaration.coord)

    def _build_function_definition(self, spec, decl, param_decls, body):
        plain = super()._build_function_definition(spec, decl, param_decls, body)
        closing = self._tokens._buffer[self._tokens._index - 1]    # the body's `}`
        return FuncDef(plain.decl, plain.param_decls, plain.body, plain.coord,
                       end=(closing.lineno, closing.column))

    # declaration : decl_body ';' -- and a nested function is named, not misread
    def _parse_declaration(self):
        decls = self._parse_decl_body()
        brace = self._peek()
        if brace is not None and brace.type == "LBRACE" and decls and \
                isinstance(getattr(decls[-1], "type", None), c_ast.FuncDecl):
            raise Unsupported(decls[-1].coord, "a nested function",
                              f"nested function '{decls[-1].name}' (a GCC extension): psu cannot "
                              "update a function defined inside another; move it to file scope")
        self._expect("SEMI")
        return decls

    # init_declarator : declarator asm_label? ('=' initializer)?
    # The declared name is in scope from the end of its declarator on (C11
    # 6.2.1p7): in `rax *rax = malloc(sizeof(*rax));` the second `rax` is the
    # variable, not the type.
    def _parse_init_declarator(self, id_only=False):
        decl = self._parse_id_declarator() if id_only else self._parse_declarator()
        init = None
        if self._peek_type() == "EQUALS":
            name = _declarator_name(decl)
            if name is not None and self._is_type_in_scope(name) and \
                    self._scope_stack[-1].get(name) is not True:
                self._declare_object_early(name)
            self._advance()
            init = self._parse_initializer()
        return dict(decl=decl, init=init, bitsize=None)

    def _declare_object_early(self, name):
        self._scope_stack[-1][name] = False
        # tokens already read ahead were typed while `name` was a type
        stream = self._tokens
        for token in stream._buffer[stream._index:]:
            if token is not None and token.type == "TYPEID" and token.value == name:
                token.type = "ID"

    def _parse_declarator_kind(self, kind, allow_paren):
        declarator = super()._parse_declarator_kind(kind, allow_paren)
        while self._is_asm() and self._peek_type(2) == "LPAREN":    # asm("symbol") label
            self._advance()
            self._skip_balanced_parens()
        return declarator

    # block_item : '__label__' ID (',' ID)* ';' | declaration | statement
    def _parse_block_item(self):
        token = self._peek()
        if token is not None and token.type == "ID" and token.value == "__label__" and \
                self._peek_type(2) == "ID":
            self._advance()
            names = [self._expect("ID").value]
            while self._accept("COMMA"):
                names.append(self._expect("ID").value)
            self._expect("SEMI")
            return LocalLabels(names, self._tok_coord(token))
        return super()._parse_block_item()

    # statement : asm_statement | 'goto' '*' expression ';' | ...
    def _parse_statement(self):
        if self._is_asm() and (self._peek_type(2) in ("LPAREN", "VOLATILE", "INLINE", "GOTO") or
                               self._peek(2).value in ("__volatile__", "__inline__")):
            return self._parse_asm_statement()
        if self._peek_type() == "GOTO" and self._peek_type(2) == "TIMES":
            goto = self._advance()
            self._advance()
            expr = self._parse_expression()
            self._expect("SEMI")
            return ComputedGoto(expr, self._tok_coord(goto))
        return super()._parse_statement()

    # asm_statement : ASM ('volatile' | 'inline' | 'goto')* '(' string
    #                 (':' operands (':' operands (':' strings (':' labels)?)?)?)? ')' ';'
    def _parse_asm_statement(self):
        asm = self._advance()
        qualifiers = []
        while self._peek_type() in ("VOLATILE", "INLINE", "GOTO") or \
                (self._peek_type() == "ID" and self._peek().value in ("__volatile__", "__inline__")):
            qualifiers.append(self._advance().value)
        self._expect("LPAREN")
        template = self._parse_unified_string_literal().value
        sections = [[], [], [], []]
        for index in range(4):
            if not self._accept("COLON"):
                break
            while self._peek_type() not in ("COLON", "RPAREN"):
                if index < 2:
                    sections[index].append(self._parse_asm_operand())
                elif index == 2:
                    sections[index].append(self._parse_unified_string_literal().value)
                else:
                    sections[index].append(self._expect("ID").value)
                if not self._accept("COMMA"):
                    break
        self._expect("RPAREN")
        self._expect("SEMI")
        return AsmStatement(qualifiers, template, *sections, coord=self._tok_coord(asm))

    def _parse_asm_operand(self):
        name = None
        if self._accept("LBRACKET"):
            name = self._parse_identifier_or_typeid().name
            self._expect("RBRACKET")
        constraint = self._parse_unified_string_literal()
        self._expect("LPAREN")
        expr = self._parse_expression()
        self._expect("RPAREN")
        return AsmOperand(name, constraint.value, expr, constraint.coord)

    # labeled_statement : 'case' constant_expression '...' constant_expression ':' statement
    def _parse_labeled_statement(self):
        if self._peek_type() != "CASE":
            return super()._parse_labeled_statement()
        mark = self._mark()
        case = self._advance()
        first = self._parse_constant_expression()
        if not self._accept("ELLIPSIS"):
            self._reset(mark)
            return super()._parse_labeled_statement()
        last = self._parse_constant_expression()
        self._expect("COLON")
        if self._starts_statement():
            stmt = self._parse_pragmacomp_or_statement()
        else:
            stmt = c_ast.EmptyStatement(self._tok_coord(case))
        return c_ast.Case(Range(first, last, first.coord), [stmt], self._tok_coord(case))

    # designator : '[' constant_expression '...' constant_expression ']' | ...
    def _parse_designator(self):
        if self._peek_type() != "LBRACKET":
            return super()._parse_designator()
        self._advance()
        first = self._parse_constant_expression()
        if self._accept("ELLIPSIS"):
            first = Range(first, self._parse_constant_expression(), first.coord)
        elif isinstance(first, c_ast.ID):
            first = IndexDesignator(first, first.coord)
        self._expect("RBRACKET")
        return first

    # conditional_expression : binary_expression '?' ':' conditional_expression | ...
    #                        | binary_expression '?' expression ':' conditional_expression
    def _parse_conditional_expression(self):
        expr = self._parse_binary_expression()
        if not self._accept("CONDOP"):
            return expr
        if self._accept("COLON"):
            return OmittedOperand(expr, self._parse_conditional_expression(), expr.coord)
        iftrue = self._parse_expression()
        self._expect("COLON")
        iffalse = self._parse_conditional_expression()
        return c_ast.TernaryOp(expr, iftrue, iffalse, expr.coord)

    # struct_declaration : static_assert ';' | ...  (C11 6.7.2.1; no layout, not kept)
    def _parse_struct_declaration(self):
        if self._peek_type() == "_STATIC_ASSERT":
            self._parse_static_assert()
            self._accept("SEMI")
            return None
        return super()._parse_struct_declaration()

    # unary_expression : '&&' ID | ('__real__' | '__imag__') cast_expression
    #                  | '__alignof__' '(' expression ')' | ...
    def _parse_unary_expression(self):
        if self._peek_type() == "LAND" and self._peek_type(2) == "ID":
            self._advance()
            label = self._advance()
            return LabelAddress(label.value, self._tok_coord(label))
        token = self._peek()
        if token is not None and token.type == "ID" and token.value in COMPLEX_PARTS and \
                self._starts_expression(self._peek(2)):
            self._advance()
            expr = self._parse_cast_expression()
            return c_ast.UnaryOp(token.value, expr, self._tok_coord(token))
        if self._peek_type() == "_ALIGNOF" and self._peek_type(2) == "LPAREN":
            mark = self._mark()
            alignof = self._advance()
            self._advance()
            if not self._starts_declaration():
                expr = self._parse_expression()
                self._expect("RPAREN")
                return c_ast.UnaryOp(alignof.value, expr, self._tok_coord(alignof))
            self._reset(mark)
        return super()._parse_unary_expression()

    def _starts_expression(self, tok=None):
        tok = tok or self._peek()
        return super()._starts_expression(tok) or (tok is not None and tok.type == "LAND")

    # assignment_expression : conditional_expression (assignment_op assignment_expression)?
    # (pycparser reads `({...})` here, as a whole assignment expression, so
    # `({...}) + 1` fails; this parser reads it as a primary expression)
    def _parse_assignment_expression(self):
        expr = self._parse_conditional_expression()
        if self._is_assignment_op():
            op = self._advance().value
            rhs = self._parse_assignment_expression()
            return c_ast.Assignment(op, expr, rhs, expr.coord)
        return expr

    # primary_expression : '(' compound_statement ')' | generic_selection | ...
    def _parse_primary_expression(self):
        if self._peek_type() == "LPAREN" and self._peek_type(2) == "LBRACE":
            lparen = self._advance()
            stmt = self._parse_compound_statement()
            self._expect("RPAREN")
            return StmtExpr(stmt, self._tok_coord(lparen))
        token = self._peek()
        if token is not None and token.type == "ID" and token.value == "_Generic" and \
                self._peek_type(2) == "LPAREN":
            return self._parse_generic_selection()
        try:
            return super()._parse_primary_expression()
        except ParseError as error:
            if token is None or "Invalid expression" not in str(error):
                raise
            # pycparser gives this error no line: the token it stopped at has one
            self._parse_error(f"before: {token.value}", self._tok_coord(token))

    def _parse_generic_selection(self):
        generic = self._advance()
        self._expect("LPAREN")
        controlling = self._parse_assignment_expression()
        types, exprs = [], []
        while self._accept("COMMA"):
            if self._accept("DEFAULT"):
                types.append(None)
            else:
                types.append(self._parse_type_name())
            self._expect("COLON")
            exprs.append(self._parse_assignment_expression())
        self._expect("RPAREN")
        return GenericSelection(controlling, types, exprs, self._tok_coord(generic))

    # argument_expression_list : (assignment_expression | type_name) (',' ...)*
    # (GCC's builtins take types: __builtin_types_compatible_p(int, long))
    def _parse_argument_expression_list(self):
        first = self._peek()
        args = [self._parse_argument()]
        while self._accept("COMMA"):
            args.append(self._parse_argument())
        return c_ast.ExprList(args, self._tok_coord(first))

    def _parse_argument(self):
        if self._starts_declaration():
            return self._parse_type_name()
        return self._parse_assignment_expression()


def _declarator_name(decl):
    while decl is not None and not isinstance(decl, c_ast.TypeDecl):
        decl = getattr(decl, "type", None)
    return decl.declname if decl is not None else None


# -- generator (for hashing) -------------------------------------------------------------

class GnuCGenerator(c_generator.CGenerator):
    """CGenerator that prints the GNU C nodes: only ever hashed, never compiled."""

    def visit_StmtExpr(self, n):
        return "(" + self.visit(n.stmt).strip() + ")"

    def visit_Range(self, n):
        return f"{self.visit(n.first)} ... {self.visit(n.last)}"

    def visit_IndexDesignator(self, n):
        return self.visit(n.expr)

    def visit_LabelAddress(self, n):
        return "&&" + n.name

    def visit_OmittedOperand(self, n):
        return f"({self.visit(n.cond)} ?: {self.visit(n.iffalse)})"

    def visit_LocalLabels(self, n):
        return "__label__ " + ", ".join(n.names) + ";"

    def visit_ComputedGoto(self, n):
        return f"goto *{self.visit(n.expr)};"

    def visit_GenericSelection(self, n):
        associations = ", ".join(f"{'default' if t is None else self.visit(t)}: {self.visit(e)}"
                                 for t, e in zip(n.types, n.exprs))
        return f"_Generic({self.visit(n.controlling)}, {associations})"

    def visit_AsmOperand(self, n):
        return (f"[{n.name}] " if n.name else "") + f"{n.constraint} ({self.visit(n.expr)})"

    def visit_AsmStatement(self, n):
        sections = [", ".join(self.visit(o) for o in n.outputs), ", ".join(self.visit(o) for o in n.inputs),
                    ", ".join(n.clobbers), ", ".join(n.labels)]
        while sections and not sections[-1]:
            sections.pop()
        return f"__asm__ {' '.join(n.qualifiers)} ({' : '.join([n.template, *sections])});"

    def visit_OpaqueFunction(self, n):
        return self.visit(n.decl) + " " + n.body_text
