"""Parsing a preprocessed unit with pycparser, a parse failure turned into a located CSourceError.

pycparser names a line and column for most errors; for the rest, and to name
the GNU C construct that is the likely cause, the original text is searched.
"""
import os
import re

from pycparser.c_parser import ParseError

from .errors import CSourceError
from .gnuc import GnuCParser, Unsupported

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


def parse(preprocessed, path, original_text=None, cwd=None):
    """pycparser AST of a preprocessed unit; a parse failure becomes a CSourceError."""
    try:
        return GnuCParser().parse(preprocessed, path)
    except Unsupported as error:
        coord = error.coord
        raise CSourceError(coord.file, coord.line, coord.column or 0,
                           f"cannot parse {error.construct}: {error.detail}") from None
    except ParseError as error:
        raise located_error(str(error), path, original_text, cwd) from None
    except Exception as error:  # pycparser asserts on a few malformed inputs
        raise CSourceError(path, 0, 0, f"cannot parse ({type(error).__name__}: {error})") from None


def located_error(message, path, original_text, cwd=None):
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
