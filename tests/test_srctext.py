"""psu.srctext: the tokens of the original text and the searches over them."""
import pytest

from psu.errors import CSourceError
from psu.srctext import SourceText

TEXT = (
    '/* a comment\n'
    '   over two lines */ #define A(x) \\\n'
    '    "s\\\n'
    't" x\n'
    'int f(int a) { return a; }\n'
    'x = 1 \\\n'
    ' # 2;\n'
    'char *s = "p\\\n'
    'q"; int g;\n'
    'void h(int b) {\n'
    '#if A\n'
    '  if (b) {\n'
    '#else\n'
    '  if (!b) {\n'
    '#endif\n'
    '  f(1); s.f = f; }\n'
    '}\n'
)


def tokens(source):
    return [(t.kind, t.text, t.line, t.column) for t in source.tokens]


def test_tokens_directives_lines_and_columns():
    found = tokens(SourceText("t.c", TEXT))
    # a `#` after a comment that began its line is a directive: one token for
    # the whole of it, its continued lines and string included
    assert found[:3] == [("directive", "#", 2, 22), ("ident", "int", 5, 1), ("ident", "f", 5, 5)]
    # after a backslash-newline the `#` is not first on its line
    assert found[15] == ("punct", "#", 7, 2)
    # a string continued on the next line: what follows counts from that line
    assert found[22:26] == [("string", '"p\\\nq"', 8, 11), ("punct", ";", 9, 3),
                            ("ident", "int", 9, 5), ("ident", "g", 9, 9)]
    assert [t for t in found if t[0] == "directive"] == [
        ("directive", "#", 2, 22), ("directive", "#", 11, 1), ("directive", "#", 13, 1),
        ("directive", "#", 15, 1)]
    assert found[-1] == ("punct", "}", 17, 1)


def test_edge_texts():
    assert tokens(SourceText("t.c", "")) == []
    assert tokens(SourceText("t.c", "#")) == [("directive", "#", 1, 1)]
    assert tokens(SourceText("t.c", "a // c")) == [("ident", "a", 1, 1)]
    assert tokens(SourceText("t.c", "a /* open")) == [
        ("ident", "a", 1, 1), ("punct", "/", 1, 3), ("punct", "*", 1, 4), ("ident", "open", 1, 6)]


def test_matching_close_takes_the_first_branch_of_a_conditional():
    source = SourceText("t.c", TEXT)
    brace = source.body_start(source.find_name("h", 10, 6))
    close = source.matching_close(brace)
    assert (source.tokens[close].line, source.tokens[close].column) == (17, 1)
    f = source.find_name("f", 5, 5)
    assert source.matching_close(f + 1) == f + 4
    assert source._matching_open(f + 4) == f + 1
    assert source._matching_open(source.matching_close(f + 5)) == f + 5
    assert source.declaration_start(f) == 1


def test_find_name_and_identifiers_in():
    source = SourceText("t.c", TEXT)
    assert source.tokens[source.find_name("f", 16, 2)].column == 3
    assert source.tokens[source.find_name("f", 16, 14)].column == 15
    with pytest.raises(CSourceError):
        source.find_name("f", 15, 1)
    brace = source.body_start(source.find_name("h", 10, 6))
    used = source.identifiers_in({"f", "b", "nothing"}, brace + 1, source.matching_close(brace))
    assert [(source.tokens[i].text, source.tokens[i].line, source.tokens[i].column) for i in used] == [
        ("b", 12, 7), ("b", 14, 8), ("f", 16, 3), ("f", 16, 11), ("f", 16, 15)]
