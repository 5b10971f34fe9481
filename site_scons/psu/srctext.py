"""The user's original C text as tokens with offsets, and edits on it.

psu never regenerates user code: it edits declarations in the original text
(renaming a definition, turning a static into a bound `extern`) and appends
generated code.  This module finds the places to edit from the coordinates the
front end reports; `#line` directives keep diagnostics on the user's lines.
"""
import bisect
import contextlib
import gc
import re

from .errors import CSourceError

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\f\v]+|\\\n)
  | (?P<nl>\n)
  | (?P<comment>/\*.*?\*/|//[^\n]*)
  | (?P<string>[LuU]?8?"(?:\\.|[^"\\\n])*"|[LuU]?'(?:\\.|[^'\\\n])*')
  | (?P<ident>[A-Za-z_]\w*)
  | (?P<number>\.?\d(?:[eEpP][+-]|[\w.])*)
  | (?P<punct>\.\.\.|<<=|>>=|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^!~<>=?:;,.(){}\[\]#])
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)

_STORAGE = {"static", "extern"}
_DECLARATOR_STOP = {"=", ",", ";", "{", "__attribute__", "__attribute", "__asm__", "__asm", "asm"}


_DIRECTIVE = re.compile(r"#[ \t]*([A-Za-z_]\w*)")
_CLOSING = {"(": ")", "[": "]", "{": "}"}
_OPENING = {close: open_ for open_, close in _CLOSING.items()}


@contextlib.contextmanager
def without_collector():
    """The cyclic garbage collector paused: while a million tokens of a large
    unit (sqlite3.c) are made and edited, it would walk them again and again,
    and none of them is in a cycle (freed by their counts as usual)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


class Token:
    __slots__ = ("kind", "text", "start", "end", "line", "column")

    def __init__(self, kind, text, start, end, line, column):
        self.kind, self.text, self.start, self.end = kind, text, start, end
        self.line, self.column = line, column

    def __repr__(self):
        return f"Token({self.text!r}@{self.line}:{self.column})"


class SourceText:
    def __init__(self, path, text, storage_macros=None):
        self.path, self.text = path, text
        # object-like macros that expand to a storage class (SQLITE_PRIVATE -> static)
        self.storage_macros = dict(storage_macros or {})
        self.tokens = []
        self._edits = []
        self._lines = None                # each token's line, for find_name
        self._texts = None                # each token's text, for identifiers_in
        self._brackets = {}               # _bracket_positions
        self._tokenise()

    def _tokenise(self):
        with without_collector():
            self.tokens = self._tokens()

    def _tokens(self):
        """The text's tokens, blanks and comments left out.  A `#` first on its
        line is a directive: one token for the whole of it."""
        tokens = []
        append = tokens.append
        line, line_start, at_line_start, in_directive = 1, 0, True, False
        for match in _TOKEN.finditer(self.text):
            kind = match.lastgroup
            if kind == "ws" or kind == "comment":
                text = match.group()
                if "\n" in text:
                    line += text.count("\n")
                    line_start = match.start() + text.rfind("\n") + 1
                continue
            if kind == "nl":
                line += 1
                line_start = match.end()
                at_line_start, in_directive = True, False
                continue
            if in_directive and kind != "string":
                continue
            start, end = match.span()
            text = match.group()
            if at_line_start:
                at_line_start = False
                if kind == "punct" and text == "#":
                    # A directive is one opaque token: backward scans stop at it.
                    in_directive = True
                    append(Token("directive", "#", start, start, line, start - line_start + 1))
                    continue
            if not in_directive:
                append(Token(kind, text, start, end, line, start - line_start + 1))
            if "\n" in text:   # a string continued with backslash-newline
                line += text.count("\n")
                line_start = start + text.rfind("\n") + 1
        return tokens

    # -- finding places ------------------------------------------------------------

    def _scan(self, start, brackets, backward=False, first_branch_only=False, brackets_only=False):
        """The one bracket-depth walk every search here makes: tokens from `start`
        to the end (to the beginning when `backward`), each as (index, token,
        depth after it).  Brackets of the kinds `brackets` ("(", "([", ...)
        count as one depth: one opening in the walk's direction (`(` forward,
        `)` backward) adds one, its partner takes one away, so the depth goes
        below 0 past brackets the walk started inside.  With
        `first_branch_only`, of each conditional directive group only the first
        branch is walked (its directives are not yielded either).  With
        `brackets_only`, the walk skips every token but those brackets and
        the directives, for a search that looks at nothing else (a body's
        closing brace, thousands of tokens away)."""
        kinds = set(brackets)
        deeper = kinds if not backward else {_CLOSING[b] for b in kinds}
        shallower = {_CLOSING[b] for b in kinds} if not backward else kinds
        depth, in_later_branch = 0, []
        if brackets_only:
            walked = self._bracket_positions(brackets)
            at = bisect.bisect_left(walked, start)
            if backward and (at == len(walked) or walked[at] != start):
                at -= 1
        else:
            walked, at = range(len(self.tokens)), start
        step = -1 if backward else 1
        while 0 <= at < len(walked):
            i = walked[at]
            at += step
            token = self.tokens[i]
            if first_branch_only and token.kind == "directive":
                word = _DIRECTIVE.match(self.text, token.start)
                word = word.group(1) if word else ""
                if word in ("if", "ifdef", "ifndef"):
                    in_later_branch.append(False)
                elif word in ("elif", "else") and in_later_branch:
                    in_later_branch[-1] = True
                elif word == "endif" and in_later_branch:
                    in_later_branch.pop()
            elif not any(in_later_branch):
                if token.text in deeper:
                    depth += 1
                elif token.text in shallower:
                    depth -= 1
                yield i, token, depth

    def _bracket_positions(self, brackets):
        """Indices of the tokens that are brackets of the kinds `brackets`
        (either partner) or directives, in order."""
        if brackets not in self._brackets:
            wanted = set(brackets) | {_CLOSING[b] for b in brackets}
            self._brackets[brackets] = [i for i, t in enumerate(self.tokens)
                                        if t.text in wanted or t.kind == "directive"]
        return self._brackets[brackets]

    def find_name(self, name, line, column):
        """Index of the identifier `name` on `line`, nearest `column` (columns are
        approximate inside macro expansions and after folded whitespace)."""
        if self._lines is None:
            self._lines = [t.line for t in self.tokens]
        on_line = range(bisect.bisect_left(self._lines, line), bisect.bisect_right(self._lines, line))
        candidates = [i for i in on_line if self.tokens[i].text == name and self.tokens[i].kind == "ident"]
        if not candidates:
            raise CSourceError(self.path, line, column,
                               f"cannot transform '{name}': its name is not written on this line "
                               "(made by a macro?); add it to PSU_EXCLUDE")
        return min(candidates, key=lambda i: abs(self.tokens[i].column - column))

    def identifiers_in(self, names, first, last):
        """Indices of the identifiers among tokens [first, last) whose text is
        one of `names`, in order (found by the names, not a walk of every token)."""
        if self._texts is None:
            self._texts = [t.text for t in self.tokens]
        texts, found = self._texts, []
        for name in set(names).intersection(texts[first:last]):
            i = texts.index(name, first, last)
            while True:
                found.append(i)
                try:
                    i = texts.index(name, i + 1, last)
                except ValueError:
                    break
        return sorted(i for i in found if self.tokens[i].kind == "ident")

    def declaration_start(self, index):
        """Index of the first token of the declaration containing token `index`."""
        i = index - 1
        while i >= 0:
            token = self.tokens[i]
            if token.kind == "directive" or token.text in (";", "{"):
                return i + 1
            if token.text == "}":
                opening = self._matching_open(i)
                before = self.tokens[opening - 1] if opening > 0 else None
                before2 = self.tokens[opening - 2] if opening > 1 else None
                aggregate = before is not None and (
                    before.text in ("struct", "union", "enum") or
                    (before.kind == "ident" and before2 is not None and
                     before2.text in ("struct", "union", "enum")))
                # `static T a[] = {...}, b;`: an initializer, inside the declaration of `b`
                initializer = before is not None and before.text == "="
                if not (aggregate or initializer):
                    return i + 1
                i = opening - 1
                continue
            if token.text in (")", "]"):
                i = self._matching_open(i) - 1
                continue
            i -= 1
        return 0

    def body_start(self, name_index, old_style=False):
        """Index of the `{` opening the body of the function whose definition
        writes its name at `name_index`: the first `{` outside the brackets
        that follow the name (parameter lists, attributes; the depth goes
        below 0 where the name is inside a declarator's parentheses, as in
        `void (*f(int x))(void) {`).  An `old_style` (K&R) definition has its
        parameters' declarations, each ending in `;`, before the `{`."""
        for i, token, depth in self._scan(name_index + 1, "(["):
            if depth <= 0 and token.text == "{":
                return i
            if depth <= 0 and token.text == ";" and not old_style:
                break
        token = self.tokens[name_index]
        raise CSourceError(self.path, token.line, token.column,
                           f"cannot find the body of '{token.text}'")

    def matching_close(self, index):
        """Index of the bracket that closes the one at `index`.  Of each
        conditional directive group only the first branch is counted: code
        that compiles whichever branch is taken has the same brackets net in
        every branch (SQLite opens a block by `#ifndef X ... {` `#else ... {`)."""
        opening = self.tokens[index].text
        closing = _CLOSING[opening]
        for i, token, depth in self._scan(index, opening, first_branch_only=True, brackets_only=True):
            if depth == 0 and token.text == closing:
                return i
        token = self.tokens[index]
        raise CSourceError(self.path, token.line, token.column, f"no '{closing}' closes this '{opening}'")

    def body_end(self, brace, end_line, name):
        """Index of the `}` that closes the function body opened at `brace`.
        `end_line` is the line of that `}` after preprocessing (0: unknown).
        Macros may write braces inside a body (`#define ELSE_IF(c) } else if (c) {`),
        so counting braces in the original text can fail or stop early; the
        line the compiler saw settles it, and a line with several candidates
        is settled by counting, if counting lands on that line."""
        try:
            counted = self.matching_close(brace)
        except CSourceError:
            counted = None
        if not end_line or (counted is not None and self.tokens[counted].line == end_line):
            if counted is None:
                self.matching_close(brace)      # raises, with its location
            return counted
        on_line = [i for i in range(brace + 1, len(self.tokens))
                   if self.tokens[i].line == end_line and self.tokens[i].text == "}"]
        if len(on_line) == 1:
            return on_line[0]
        token = self.tokens[brace]
        raise CSourceError(self.path, end_line, 0,
                           f"cannot find where the body of '{name}' (opened at {token.line}:"
                           f"{token.column}) ends: " +
                           ("a macro writes its '}'" if not on_line else "several '}' on this line") +
                           f"; add '{name}' to PSU_EXCLUDE")

    def _matching_open(self, index):
        """Index of the bracket that opens the one closing at `index`."""
        closing = self.tokens[index].text
        opening = _OPENING[closing]
        for i, token, depth in self._scan(index, opening, backward=True, brackets_only=True):
            if depth == 0 and token.text == opening:
                return i
        raise CSourceError(self.path, self.tokens[index].line, self.tokens[index].column,
                           f"unbalanced '{closing}'")

    def storage_token(self, start, name_index):
        """Index of the storage class (`static`, `extern`, or a macro expanding to
        one) in the specifiers of a declaration, or None."""
        for i in range(start, name_index):
            if self.storage_class(i) is not None:
                return i
        return None

    def storage_class(self, index):
        """`static` or `extern` if token `index` is (or expands to) that storage class."""
        text = self.tokens[index].text
        return text if text in _STORAGE else self.storage_macros.get(text)

    def declarator_end(self, name_index):
        """Index of the first token after the declarator whose name is at `name_index`.
        Brackets the name sits in close below depth 0 (`(*handler)(...)`); a
        stop inside brackets opened after the name (a parameter list's `,`) is
        not the end.  A directive ends it too: bison writes
        `static YYLTYPE yyloc_default\n# if ...\n = { 1, 1, 1, 1 }\n# endif\n;`."""
        floor = 0
        for i, token, depth in self._scan(name_index + 1, "(["):
            if token.text in (")", "]"):
                floor = min(floor, depth)
            elif depth <= floor and token.kind == "directive":
                return i
            elif depth == floor and token.text in _DECLARATOR_STOP:
                return i
        raise CSourceError(self.path, self.tokens[name_index].line, self.tokens[name_index].column,
                           "declaration does not end")

    def initializer_end(self, equals_index):
        """Index of the `,` or `;` that ends the initializer starting at `=`."""
        for i, token, depth in self._scan(equals_index + 1, "([{"):
            if depth == 0 and token.text in (",", ";"):
                return i
        raise CSourceError(self.path, self.tokens[equals_index].line, 0, "initializer does not end")

    def insert_after_declarator(self, name_index, text):
        """Insert `text` (an asm label) right after the declarator named at `name_index`."""
        end = self.declarator_end(name_index)
        if self.tokens[end].kind == "directive":
            self.insert_after(end - 1, text)      # text before a `#` would break the directive
        else:
            self.insert_before(end, text)

    def existing_label(self, name_index):
        end = self.declarator_end(name_index)
        return self.tokens[end].text in ("__asm__", "__asm", "asm")

    # -- editing ---------------------------------------------------------------------

    def edited_so_far(self):
        """A test of whether an edit made so far (not later ones) changes the
        text of a token: `test(index)`, in O(log edits)."""
        spans = sorted((start, end) for start, end, _ in self._edits)
        starts = [start for start, _ in spans]
        furthest, reach = [], -1
        for _, end in spans:
            reach = max(reach, end)
            furthest.append(reach)

        def edited(index):
            token = self.tokens[index]
            before = bisect.bisect_left(starts, token.end)   # edits starting inside or before it
            return before > 0 and furthest[before - 1] > token.start
        return edited

    def replace(self, index, text):
        token = self.tokens[index]
        self._edits.append((token.start, token.end, text))

    def insert_before(self, index, text):
        token = self.tokens[index]
        self._edits.append((token.start, token.start, text))

    def insert_after(self, index, text):
        token = self.tokens[index]
        self._edits.append((token.end, token.end, text))

    def insert_lines_before(self, index, text):
        """Insert whole generated lines before token `index`, then restore its line."""
        token = self.tokens[index]
        restore = f'\n#line {token.line} "{self.path}"\n' + " " * (token.column - 1)
        self._edits.append((token.start, token.start, "\n" + text + restore))

    def insert_lines_after(self, index, text):
        """Insert whole generated lines after token `index`, then restore the line
        and column of what follows it."""
        token = self.tokens[index]
        column = token.column + token.end - token.start
        restore = f'\n#line {token.line} "{self.path}"\n' + " " * (column - 1)
        self._edits.append((token.end, token.end, "\n" + text + restore))

    def delete_range(self, first, last_exclusive, keeps=None):
        """Delete tokens [first, last_exclusive) keeping their newlines (lines stay
        put) and the preprocessor directives among them (SQLite defines macros in
        the middle of an initializer); `keeps(word)`, if given, says which
        directives (by their word: `define`, `pragma`) stay."""
        start, end = self.tokens[first].start, self.tokens[last_exclusive].start
        lines = self.text[start:end].split("\n")
        kept, continued, keeping = [""], False, True
        for text in lines[1:]:
            directive = continued or text.lstrip().startswith("#")
            if directive and not continued and keeps is not None:
                word = _DIRECTIVE.match(text.lstrip())
                keeping = keeps(word.group(1) if word else "")
            kept.append(text if directive and keeping else "")
            continued = directive and text.endswith("\\")
        self._edits.append((start, end, "\n".join(kept)))

    def edited(self):
        # As if applied back to front; insertions at one offset keep the order
        # they were made.  Edits that do not overlap (the rule) are joined in
        # one pass: applying each to the whole text costs the text's length
        # per edit (minutes for SQLite's amalgamation, thousands of edits).
        unique = list(dict.fromkeys(self._edits))
        forward = sorted(enumerate(unique), key=lambda e: (e[1][0], e[1][1], e[0]))
        pieces, at = [], 0
        for _, (start, end, replacement) in forward:
            if start < at:
                return self._edited_back_to_front(unique)
            pieces += [self.text[at:start], replacement]
            at = end
        pieces.append(self.text[at:])
        return "".join(pieces)

    def _edited_back_to_front(self, unique):
        ordered = sorted(enumerate(unique), key=lambda e: (e[1][0], e[1][1], e[0]), reverse=True)
        text = self.text
        for _, (start, end, replacement) in ordered:
            text = text[:start] + replacement + text[end:]
        return text
