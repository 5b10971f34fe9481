"""Analysing a unit again after a few function bodies changed: only those are parsed and described.

The preprocessed unit is cut into top-level chunks (a declaration, or a
function definition, each on lines of its own).  Every declaration is parsed
again -- the types, variables and prototypes every description reads come
from them -- but a function definition whose record is cached is parsed up
to its body only, and its record (describe.FunctionRecord) taken from the
cache.  A record's key is everything its description reads:

- the definition's text, its line markers relative to its first line (so a
  definition moved up or down by lines inserted above it keeps its key; its
  record's lines are moved with it), or absolute where a marker names another
  file;
- the typedef names in scope where it starts (they decide how it parses);
- every declaration of the unit, in order, with the file each is in (types,
  variables, prototypes, linkage), without positions: no description reads
  where a declaration is; and the head of a definition that defines a type;
- the lines of the original source it spans (names made by macros are judged
  on them);
- the unit's path, and the analyser's own code.

Of the other definitions a description reads only which names they define:
a record keeps the names it probed and their answers, and is described again
when one answers otherwise (describe._Describer._check_known_records).  What depends on other definitions (an address taken, a local static bound,
the named types the unit uses) is decided when the unit is put together, as
for a full analysis; the result is the full analysis's, byte for byte.
Anything the cutter is unsure of (a K&R definition, unbalanced braces) or a
parse error falls back to the full analysis.
"""
import bisect
import hashlib
import json
import os
import re
from dataclasses import asdict

from pycparser import c_ast
from pycparser.c_parser import Coord
from pycparser.c_parser import _TokenStream

from . import analysis_cache, jsonfile
from .describe import FunctionRecord, describe_reusing
from .gnuc import GnuCParser, OpaqueFunction
from .model import Unit

# Tokens that decide where a top-level declaration ends, strings and
# characters (which may hold them), and directive lines.
_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|[{}();]|^#[^\n]*', re.M)
_MARKER = re.compile(r'^# (\d+) ("(?:[^"\\]|\\.)*")(.*)$')


class _Unsure(Exception):
    """The cutter cannot tell where a definition ends: analyse the whole unit."""


class Chunk:
    """Lines `first`..`last` (0-based, inclusive) of the preprocessed text."""
    __slots__ = ("first", "last", "body", "file", "line", "text", "relocatable", "key_text",
                 "span")

    def __init__(self, first, last, body):
        self.first, self.last, self.body = first, last, body   # body: offset of `{` in text, or None


def cut(preprocessed):
    """The chunks of a preprocessed unit, in order, and the offset of each line."""
    line_starts = [0]
    find = preprocessed.find
    position = find("\n")
    while position != -1:
        line_starts.append(position + 1)
        position = find("\n", position + 1)
    chunks, parens, braces, start, body, function_brace, mixed = [], 0, 0, None, None, False, False
    for token in _TOKENS.finditer(preprocessed):
        text = token.group()
        first = text[0]
        if first == "#":
            if start is None and not _MARKER.match(text):     # a #pragma between declarations
                line = _line_index(line_starts, token.start())
                if _first_content_line(preprocessed, line_starts, chunks) != line:
                    raise _Unsure("a directive inside a declaration")
                chunks.append(Chunk(line, line, None))
            continue
        if start is None:
            start = _first_content_line(preprocessed, line_starts, chunks)
            if chunks and chunks[-1].last is None:      # a line shared with the last chunk
                chunks.pop()
                mixed = True
        if first == "(":
            parens += 1
        elif first == ")":
            parens -= 1
        elif first == "{":
            if braces == 0 and parens == 0:
                before = _previous_character(preprocessed, token.start())
                if before == ")":
                    function_brace, body = True, token.start()
                elif before == ";":
                    raise _Unsure("a K&R definition")
            braces += 1
        elif first == "}":
            braces -= 1
            if braces == 0 and function_brace:
                function_brace = False
                _end_chunk(preprocessed, line_starts, token.end(), start, None if mixed else body, chunks)
                start, body, mixed = None, None, False
        elif first == ";" and parens == 0 and braces == 0:
            _end_chunk(preprocessed, line_starts, token.end(), start, None, chunks)
            start, body, mixed = None, None, False
        if parens < 0 or braces < 0:
            raise _Unsure("unbalanced")
    if start is not None or parens or braces or (chunks and chunks[-1].last is None):
        raise _Unsure("unbalanced at the end")
    return chunks, line_starts


def _first_content_line(text, line_starts, chunks):
    """Where the next chunk starts: the line after the last chunk's that is
    neither blank nor a directive (or the last chunk's first, if it ended
    mid-line)."""
    if chunks and chunks[-1].last is None:
        return chunks[-1].first
    line = chunks[-1].last + 1 if chunks else 0
    while line < len(line_starts):
        end = line_starts[line + 1] if line + 1 < len(line_starts) else len(text)
        content = text[line_starts[line]:end].strip()
        if content and not content.startswith("#"):
            return line
        if content.startswith("#") and not _MARKER.match(content):
            return line
        line += 1
    return line


def _end_chunk(text, line_starts, end, start, body, chunks):
    """A chunk ends at the end of the line of its last token if nothing follows
    on that line; else it goes on as a mixed chunk (one that holds several
    declarations or definitions: parsed and described afresh every time)."""
    newline = text.find("\n", end)
    if text[end:newline if newline != -1 else len(text)].strip():
        chunks.append(Chunk(start, None, None))
    else:
        chunks.append(Chunk(start, _line_index(line_starts, end), body))


def _previous_character(text, offset):
    """The last character before `offset` that is not space nor in a directive line."""
    position = offset - 1
    while position >= 0:
        character = text[position]
        if character in " \t\n\r\f\v":
            position -= 1
            continue
        line_start = text.rfind("\n", 0, position) + 1
        if text[line_start] == "#":
            position = line_start - 1
            continue
        return character
    return ""


def _locate(chunks, preprocessed, line_starts, path, original_lines):
    """Each chunk's text, first position (file, line), and the text of its key."""
    marker_file, marker_line, marker_at = path, 1, -1   # the last marker, by its line's index
    markers = list(_marker_lines(preprocessed, line_starts))
    index = 0
    for chunk in chunks:
        while index < len(markers) and markers[index][0] < chunk.first:
            marker_at, match = markers[index]
            marker_file, marker_line = _unquote(match.group(2)), int(match.group(1))
            index += 1
        chunk.file = marker_file
        chunk.line = marker_line + (chunk.first - marker_at - 1)
        end = line_starts[chunk.last + 1] if chunk.last + 1 < len(line_starts) else len(preprocessed)
        chunk.text = preprocessed[line_starts[chunk.first]:end]
        inner = []
        while index < len(markers) and markers[index][0] <= chunk.last:
            inner.append(markers[index])
            marker_at, match = markers[index]
            marker_file, marker_line = _unquote(match.group(2)), int(match.group(1))
            index += 1
        lowest, highest = _key_text(chunk, inner)
        chunk.span = "\n".join(original_lines[max(lowest, 1) - 1:highest]) if chunk.file == path else ""


def _key_text(chunk, inner):
    """Set the chunk's key text: its text with each line marker inside it
    relative to its first line, so a chunk moved by lines inserted above keeps
    its key; where a marker names another file, its first line too (such a
    chunk is not moved).  Returns the lowest and highest line of its own file
    it spans (the original lines its description may read)."""
    chunk.relocatable, current, lowest, highest = True, chunk.line, chunk.line, chunk.line
    lines = chunk.text.split("\n") if inner else None
    for at, match in inner:
        relative = at - chunk.first
        target_file, target = _unquote(match.group(2)), int(match.group(1))
        highest = max(highest, current + relative)
        if target_file != chunk.file:
            chunk.relocatable = False
        else:
            lines[relative] = f"# +{target - chunk.line} {match.group(2)}{match.group(3)}"
            lowest = min(lowest, target)
            current = target - relative - 1      # the line at index j is current + j
    highest = max(highest, current + chunk.last - chunk.first)
    chunk.key_text = "\n".join(lines) if inner else chunk.text
    if not chunk.relocatable:
        chunk.key_text = f"@{chunk.line}\n" + chunk.key_text
    return lowest, highest


def _marker_lines(text, line_starts):
    for match in re.finditer(r'^# \d+ "[^\n]*$', text, re.M):
        marker = _MARKER.match(match.group())
        if marker:
            yield _line_index(line_starts, match.start()), marker


def _line_index(line_starts, offset):
    return bisect.bisect_right(line_starts, offset) - 1


def _unquote(quoted):
    return quoted[1:-1].replace('\\\\', '\\').replace('\\"', '"')


class _ChunkParser(GnuCParser):
    """One parser for a unit's chunks in order, its file scope carried from one
    to the next; it notes the typedef names each adds."""

    def __init__(self):
        super().__init__()
        self._scope_stack = [dict()]
        self.added_typedefs = []

    def _add_typedef_name(self, name, coord):
        if len(self._scope_stack) == 1:
            self.added_typedefs.append(name)
        super()._add_typedef_name(name, coord)

    def declare(self, name):
        """Enter a definition's name as its parse would (False: it is a typedef)."""
        if self._scope_stack[0].get(name):
            return False
        self._scope_stack[0][name] = False
        return True

    def parse_chunk(self, text, file, line):
        self.clex.input(f'# {line} "{file}"\n' + text, file)
        self._tokens = _TokenStream(self.clex)
        exts = self._parse_translation_unit_or_empty().ext
        if self._peek() is not None or len(self._scope_stack) != 1:
            raise _Unsure("a chunk that does not parse alone")
        return exts


def _fold(text):
    """Text without line markers' numbers and with whitespace folded."""
    return " ".join(re.sub(r'^# \d+ ', "# ", text, flags=re.M).split())


def analyse(preprocessed, path, dsu, original, source_hash, cache_dir):
    """The unit described from its chunks, reusing cached function records.
    None when the cutter is unsure or a chunk does not parse alone (the caller
    then analyses the whole unit, which also reports any error as it should)."""
    try:
        chunks, line_starts = cut(preprocessed)
    except _Unsure:
        return None
    _locate(chunks, preprocessed, line_starts, path, original.splitlines())
    context = _context_key(chunks, preprocessed, line_starts, path, dsu)
    try:
        exts, known, pending, reparse = _read(chunks, preprocessed, line_starts, context, cache_dir)
        unit, records = describe_reusing(c_ast.FileAST(exts), path, "", dsu, source_hash, original, known,
                                         reparse)
    except Exception:       # noqa: BLE001 -- the whole-unit parse reports it, located
        return None
    for ext_id, record in records.items():
        if ext_id in pending:
            key, chunk = pending[ext_id]
            _store_record(cache_dir, key, record, chunk.line)
    return unit


def _context_key(chunks, preprocessed, line_starts, path, dsu):
    """What every description reads besides its own definition: each
    declaration, in order, with its file, without positions.  Of the other
    definitions a description reads only which names they define (checked
    against the record's probes, see describe._Describer), unless a head
    defines a type (`struct s { ... } f(void) { ... }`): such a head counts."""
    context = hashlib.sha256(f"{analysis_cache.analyser_hash()}\n{path}\n{dsu}\n".encode())
    for chunk in chunks:
        text = chunk.text
        if chunk.body is not None:
            text = preprocessed[line_starts[chunk.first]:chunk.body]
            if "{" not in text:
                continue
        context.update(f"{chunk.file}\0".encode() + _fold(text).encode() + b"\n")
    return context.hexdigest()


def _read(chunks, preprocessed, line_starts, context, cache_dir):
    """The unit's top-level nodes, chunk by chunk: a definition with a cached
    record as a stand-in (or its head only, where its parameters define a
    type), the rest parsed.  Returns the nodes, the records by id(FuncDef), and
    the record key and chunk of each definition described afresh."""
    parser = _ChunkParser()
    exts, known, pending, typedefs = [], {}, {}, hashlib.sha256()
    typedef_names, stand_ins = [], {}     # every typedef name in order; id(stand-in) -> (chunk, key, count)

    def reparse(stand_in):
        """The definition a stand-in stands for, parsed in the file scope it has."""
        chunk, key, count = stand_ins[id(stand_in)]
        again = _ChunkParser()
        again._scope_stack = [dict.fromkeys(typedef_names[:count], True)]
        found = again.parse_chunk(chunk.text, chunk.file, chunk.line)
        if len(found) != 1 or not isinstance(found[0], c_ast.FuncDef):
            raise _Unsure("a definition that no longer parses alone")
        pending[id(found[0])] = (key, chunk)
        return found[0]

    for chunk in chunks:
        record = key = None
        if chunk.body is not None:
            key = hashlib.sha256("\0".join([context, typedefs.hexdigest(), chunk.file, chunk.key_text,
                                            chunk.span]).encode()).hexdigest()
            record = _load_record(cache_dir, key, chunk.line)
        if record is not None and not record.head_defines_type:
            found = [record.stand_in(Coord(chunk.file, chunk.line))]
            stand_ins[id(found[0])] = (chunk, key, len(typedef_names))
            if not parser.declare(record.name):
                raise _Unsure(f"'{record.name}' is a typedef name here")
        elif record is not None:
            head = preprocessed[line_starts[chunk.first]:chunk.body]
            found = parser.parse_chunk(head + "{}", chunk.file, chunk.line)
        else:
            found = parser.parse_chunk(chunk.text, chunk.file, chunk.line)
        if parser.added_typedefs:       # the typedef names in scope: part of the keys below
            typedefs.update(("\0".join(parser.added_typedefs) + "\n").encode())
            typedef_names += parser.added_typedefs
            parser.added_typedefs = []
        if chunk.body is not None and not (len(found) == 1 and isinstance(found[0], (c_ast.FuncDef,
                                                                                     OpaqueFunction))):
            raise _Unsure("a chunk cut as a definition that is not one")
        if key is not None and len(found) == 1 and isinstance(found[0], c_ast.FuncDef):
            if record is not None:
                known[id(found[0])] = record
            else:
                pending[id(found[0])] = (key, chunk)
        exts.extend(found)
    return exts, known, pending, reparse


# -- the record cache --------------------------------------------------------------

_LINE_FIELDS = ("body_line", "body_end_line")


def _moved(function, delta):
    """A function's record with every line moved by `delta` (0 stays unknown)."""
    if delta == 0:
        return function
    function["location"]["line"] += delta
    for name in _LINE_FIELDS:
        if function[name]:
            function[name] += delta
    for local in function["locals"]:
        local["location"]["line"] += delta
    return function


def _load_record(cache_dir, key, line):
    path = os.path.join(cache_dir, "functions", key[:2], key + ".record")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    function = None
    if data["function"] is not None:
        moved = _moved(data["function"], line - data["line"])
        function = Unit.from_json({"path": "", "text_hash": "", "dsu": True, "functions": [moved],
                                   "variables": [], "helpers": {}}).functions[0]
    return FunctionRecord(data["name"], helper=data["helper"], function=function,
                          referenced=data["referenced"], thread_routines=data["thread_routines"],
                          type_uses=data["type_uses"], storage=data["storage"],
                          head_defines_type=data["head_defines_type"], probes=data["probes"],
                          answers=data["answers"])


def _store_record(cache_dir, key, record, line):
    data = {"name": record.name, "helper": record.helper, "line": line,
            "function": asdict(record.function) if record.function is not None else None,
            "referenced": record.referenced, "thread_routines": record.thread_routines,
            "type_uses": record.type_uses, "storage": record.storage,
            "head_defines_type": record.head_defines_type, "probes": record.probes,
            "answers": record.answers}
    analysis_cache.write_atomically(os.path.join(cache_dir, "functions", key[:2], key + ".record"),
                                    jsonfile.dumps(data, compact=True))
