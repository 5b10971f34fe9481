"""Issue 16: the GNU C real projects are written in, read by the front end.

The corpus (tests/corpus/gnuc) is built through psu with every unit but main.c
a DSU unit, run against the plain build, and patched live: a statement
expression, a typedef name shadowed in its own initializer and macro-made
braces each sit in a function a bundle changes.
"""

import pytest

from projects import REPO, Process, Project, run
from psu import frontend

CORPUS = REPO / "tests" / "corpus" / "gnuc"
CONSTRUCTS = ["stmtexpr", "shadow", "braces", "kr", "nested", "attributes", "asm", "goto",
              "cases", "arrays", "int128", "atomics", "generic", "variadic", "pragma", "operators"]
# v1 -> v2: one change in a function using each construct of the issue, and a few more
CHANGES = {
    "src/stmtexpr.c": [("int b = scale(x); b + 1;", "int b = scale(x); b + 2;")],
    "src/shadow.c": [("rax->total += i;", "rax->total += 2 * i;")],
    "src/braces.c": [("        *out = 1;", "        *out = 3;")],
    "src/misc.c": [("    x += 100;", "    x += 200;"), ("    acc += 5;\n", "    acc += 6;\n")],
}


@pytest.fixture(scope="module")
def gnuc(tmp_path_factory):
    project = Project.from_corpus(tmp_path_factory.mktemp("gnuc") / "repo", CORPUS)
    for path, replacements in CHANGES.items():
        project.edit(path, *replacements)
    project.commit("v2")
    project.checkout("v1")
    project.build()
    project.patch("v1", "v2")
    return project


def plain_output(project, tmp_path):
    binary = tmp_path / "plain"
    run(["gcc", "-std=gnu11", "-O2", "-pthread", "-o", binary,
         *sorted(str(p) for p in (project.root / "src").glob("*.c"))], project.root)
    return run([binary], project.root).stdout


def test_every_construct_builds_as_a_dsu_unit_and_behaves_like_the_plain_build(gnuc, tmp_path):
    dsu = run([gnuc.root / "gnuc"], gnuc.root).stdout
    assert dsu == plain_output(gnuc, tmp_path)
    assert [line.split()[0] for line in dsu.splitlines()] == CONSTRUCTS
    units = gnuc.manifest("gnuc")["units"]
    direct = {q: f["direct"] for u in units.values() if u["dsu"] for q, f in u.get("functions", {}).items()
              if f["direct"] is not None}
    # nothing left direct for want of reading it: only policy and the one exclusion
    assert set(direct.values()) <= {"K&R definition", "variadic", "inline", "excluded"}
    assert direct["with_nested"] == "excluded"
    for unit in ("src/stmtexpr.c", "src/shadow.c", "src/braces.c", "src/misc.c"):
        functions = units[unit]["functions"]
        assert any(f["direct"] is None for f in functions.values()), unit
    assert units["src/stmtexpr.c"]["functions"]["stmt_expr_demo"]["direct"] is None
    assert units["src/shadow.c"]["functions"]["shadow_demo"]["direct"] is None
    assert units["src/braces.c"]["functions"]["classify_into"]["direct"] is None


def test_a_change_to_each_construct_applies_live(gnuc, tmp_path):
    process = Process([gnuc.root / "gnuc", "--serve"], gnuc.root, tmp_path / "run", stdin=True)
    try:
        assert process.read_line() == "ready"
        process.wait_for_socket()

        ask = process.ask
        before = {what: ask(what) for what in ("stmtexpr", "shadow", "braces", "asm", "goto")}
        assert before == {"stmtexpr": "stmtexpr 51 21", "shadow": "shadow 45",
                          "braces": "braces 1 -11 -10 20", "asm": "asm 105", "goto": "goto 15 5 10"}
        applied = process.psu("apply", process.pid, gnuc.bundle("gnuc", "v1", "v2"))
        assert applied.returncode == 0, applied.stdout + applied.stderr
        after = {what: ask(what) for what in before}   # asm_demo counts its calls in state
        assert after == {"stmtexpr": "stmtexpr 53 21", "shadow": "shadow 90",
                         "braces": "braces 3 -11 -10 20", "asm": "asm 206", "goto": "goto 16 5 10"}
    finally:
        process.stop()


def analyse(tmp_path, text, name="unit.c"):
    (tmp_path / name).write_text(text)
    return frontend.analyse(name, "gcc", ["-std=gnu11"], str(tmp_path))


STMT_EXPR = """
static int helper(int v) { return v + 1; }
static int other(int v) { return v - 1; }
#define TWICE(x) ({ __typeof__(x) _x = (x); _x + _x; })
int use(int x)
{
    return TWICE(({ int y = helper(x); y * 3; })) + 1;
}
"""


def test_statement_expressions_keep_their_callees_and_their_content_in_the_hash(tmp_path):
    functions = {f.name: f for f in analyse(tmp_path, STMT_EXPR).functions}
    assert functions["use"].callees == ["helper"] and not functions["use"].unreadable
    changed = {f.name: f for f in analyse(tmp_path, STMT_EXPR.replace("y * 3", "y * 4")).functions}
    assert changed["use"].body_hash != functions["use"].body_hash
    renamed = {f.name: f for f in analyse(tmp_path, STMT_EXPR.replace("helper(x)", "other(x)")).functions}
    assert renamed["use"].callees == ["other"]


def test_a_typedef_name_shadowed_in_its_own_initializer(tmp_path):
    unit = analyse(tmp_path, "#include <stdlib.h>\ntypedef struct rax { int n; } rax;\n"
                             "int count(void)\n{\n    rax *rax = malloc(sizeof(*rax));\n"
                             "    int n = rax->n = 3;\n    free(rax);\n    return n;\n}\n")
    assert [(f.name, f.unreadable, f.callees) for f in unit.functions] == [("count", "", ["free", "malloc"])]


def test_k_and_r_parameters_have_the_types_of_their_declaration_list(tmp_path):
    unit = analyse(tmp_path, "int add(a, b, c, d, e)\n    long b;\n    char *c;\n    unsigned char d;\n"
                             "    float e;\n{\n    return a + (int)b + *c + d + (int)e;\n}\n")
    add = unit.functions[0]
    assert add.kr_style and add.parameters == ["a", "b", "c", "d", "e"] and add.arity == 5
    # promoted as callers pass them: a prototype with `unsigned char`, `float` would not match
    assert add.signature == "int @NAME@(int a, long b, char *c, int d, double e)"
    assert add.head == "int @NAME@(int psu_a0, long psu_a1, char *psu_a2, int psu_a3, double psu_a4)"
    retyped = analyse(tmp_path, "int add(a, b, c, d, e)\n    long b;\n    char *c;\n    unsigned short d;\n"
                                "    float e;\n{\n    return a + (int)b + *c + d + (int)e;\n}\n").functions[0]
    assert retyped.signature == add.signature and retyped.body_hash != add.body_hash


def test_a_nested_function_is_named_and_only_its_function_excluded(tmp_path):
    project = Project(tmp_path / "nested")
    source = ("int outer(int x)\n{\n    int inner(int y) { return y * x; }\n    return inner(2);\n}\n"
              "int other(int x) { return x + 1; }\nint main(void) { return outer(0) + other(-1); }\n")
    sconstruct = ("env = Environment(tools=['default', 'psu'])\n"
                  "env.PSUProgram('p', ['n.c'], PSU_UNITS=['n.c']{})\n")
    project.commit("v1", {"SConstruct": sconstruct.format(""), "n.c": source})
    failed = project.build(check=False)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr + failed.stdout
    assert "n.c:3:9: psu: cannot parse a nested function: nested function 'inner' (a GCC " \
           "extension)" in failed.stderr
    assert "add 'outer' to PSU_EXCLUDE" in failed.stderr
    project.commit("v2", {"SConstruct": sconstruct.format(", PSU_EXCLUDE=['outer']")})
    project.build()
    functions = project.manifest("p")["units"]["n.c"]["functions"]
    assert functions["outer"]["direct"] == "excluded" and functions["other"]["direct"] is None
    assert run([project.root / "p"], project.root, check=False).returncode == 0


def test_function_local_statics_of_one_name_stay_separate_objects(tmp_path):
    """A bound function-local static becomes a block-scope `extern` of its own
    name, and all such declarations of one name in a unit are one object (gcc
    ignored the second asm label: two functions shared a counter, as xxHash's
    three `static int nbTests` did).  Only the first is bound; the others stay
    private to each version, and say why."""
    project = Project(tmp_path / "statics")
    project.commit("v1", {
        "SConstruct": "env = Environment(tools=['default', 'psu'])\n"
                      "env.PSUProgram('p', ['a.c', 'main.c'], PSU_UNITS=['a.c'])\n",
        "a.c": "int total;\nint first(void) { static int calls = 0; return ++calls; }\n"
               "int second(void) { static int calls = 0; return ++calls; }\n"
               "int third(void) { static int total = 5; return ++total; }\n"
               # bison's yyloc_default: the initializer in a conditional group
               "int fourth(void)\n{\n    static int seed\n#if 1\n        = 41\n#endif\n        ;\n"
               "    return ++seed;\n}\n",
        "main.c": "#include <stdio.h>\nint first(void); int second(void); int third(void); int fourth(void);\n"
                  "int main(void) { first(); first();\n"
                  "  printf(\"%d %d %d\\n\", second(), third(), fourth()); return 0; }\n"})
    built = project.build()
    assert "asm' declaration ignored" not in built.stdout + built.stderr
    assert run([project.root / "p"], project.root).stdout == "1 6 42\n"
    unit = frontend.analyse("a.c", "gcc", [], str(project.root))
    unbound = {local.qualname: local.unbound for f in unit.functions for local in f.locals}
    assert unbound["a.c:first:calls"] == "" and unbound["a.c:fourth:seed"] == ""
    assert "another function-local static 'calls'" in unbound["a.c:second:calls"]
    assert "a file-scope declaration of 'total'" in unbound["a.c:third:total"]


def test_a_body_whose_last_brace_a_macro_writes_is_refused_by_name(tmp_path):
    """Macro-made braces inside a body are fine (the corpus' braces.c); when the
    `}` that closes the body is itself written by a macro, there is no place in
    the user's text to end the entry check: that function is refused by name."""
    from psu import codegen
    text = ("#define END_FUNCTION }\nvoid log_value(int *out, int x)\n{\n    if (x) {\n"
            "        *out = x;\n    }\nEND_FUNCTION\nvoid other(int *out) { *out = 1; }\n")
    unit = analyse(tmp_path, text)
    assert [f.body_end_line for f in unit.functions] == [7, 8]
    with pytest.raises(Exception) as caught:
        codegen.transform(unit, text, "program", {"log_value", "other"}, "unit.psu.c")
    assert str(caught.value).startswith("unit.c:7: psu: cannot find where the body of 'log_value' "
                                        "(opened at 3:1) ends: a macro writes its '}'")
    assert "add 'log_value' to PSU_EXCLUDE" in str(caught.value)
    generated = codegen.transform(unit, text, "program", {"other"}, "unit.psu.c")
    assert "psu_general_other" in generated


@pytest.mark.parametrize("body,printed", [
    ("return ({ int y = x; y + 1; }) * 2;", "({"),
    ("__auto_type y = x; return y;", "__auto_type y"),
    ("__typeof__(x) y = x; return y;", "__typeof__ ( x ) y"),
    ("return _Generic(x, int: 1, default: 2);", "_Generic(x, int: 1, default: 2)"),
    ("return __builtin_types_compatible_p(__typeof__(x), int);", "__builtin_types_compatible_p"),
    ("__asm__ volatile (\"\" : \"+r\"(x) : : \"memory\"); return x;", "\"+r\" (x)"),
    ("int asm = x; return asm;", "int asm = x"),
    ("static void *t[] = { &&a }; goto *t[0]; a: return x;", "goto *t[0]"),
    ("switch (x) { case 1 ... 3: return 1; } return 0;", "case 1 ... 3:"),
    ("int a[4] = { [0 ... 3] = x }; return a[1];", "[0 ... 3] = x"),
    ("return x ?: 1;", "x ?: 1"),
    ("__label__ out; goto out; out: return x;", "__label__ out;"),
    ("unsigned __int128 w = x; return (int)(w >> 1);", "unsigned __int128 w"),
    ("_Static_assert(sizeof(int) == 4, \"int\"); return x;", "_Static_assert"),
])
def test_each_gnu_construct_is_read_and_kept_in_the_hashed_text(body, printed):
    """The parser reads the construct (no opaque function), and the text that
    is hashed keeps it: a change to it changes the body hash."""
    from psu.gnuc import GnuCGenerator, GnuCParser, OpaqueFunction
    ast = GnuCParser().parse(f"int f(int x) {{ {body} }}", "t.c")
    assert not [e for e in ast.ext if isinstance(e, OpaqueFunction)]
    assert printed in GnuCGenerator().visit(ast)


SPARSE_STYLE = r"""
/* The declarations sparse (the Linux kernel's checker) is written with. */
typedef int handler_t(int);
static handler_t twice, thrice;          /* functions, declared through a typedef */
enum op { OP_ADD, OP_SUB, OP_LAST };

static int twice(int x) { return 2 * x; }
static int thrice(int x) { return 3 * x; }

int lookup(int which, int x)
{
    static struct { const char *name; handler_t *run; } table[] = {
        { "twice", twice }, { "thrice", thrice },
    }, spare[] = { { "spare", twice } };
    static int calls[OP_LAST] = { [OP_ADD] = 10, [OP_SUB] = 20 };
    static const char *names[] = { ['+'] = "add", ['-'] = "sub" };
    static int sized[] = { 1, 2, 3 }, after = 4;
    static void *jumps[] = { &&first, &&second };    /* a dispatch table: stays with its function */
    calls[OP_ADD]++;
    goto *jumps[which];
first:
    after += 0;
second:
    return table[which].run(x) + (int)(sizeof spare / sizeof spare[0]) + calls[OP_ADD] +
           (int)(sizeof names / sizeof names[0]) + (int)(sizeof sized / sizeof sized[0]) + after;
}
"""


def test_declarations_of_sparse_build_and_keep_their_state(tmp_path):
    project = Project(tmp_path / "sparse_style")
    project.commit("v1", {
        "SConstruct": "env = Environment(tools=['default', 'psu'])\n"
                      "env.PSUProgram('p', ['s.c', 'main.c'], PSU_UNITS=['s.c'], PSU_DIRECT_STATICS='none')\n",
        "s.c": SPARSE_STYLE,
        "main.c": "#include <stdio.h>\nint lookup(int, int);\n"
                  "int main(void) { lookup(0, 1); printf(\"%d\\n\", lookup(1, 5)); return 0; }\n"})
    project.build()
    # 15 + 1 + 12 (the second call) + 46 (['-'] is 45) + 3 + 4
    assert run([project.root / "p"], project.root).stdout == "81\n"
    functions = project.manifest("p")["units"]["s.c"]["functions"]
    assert functions["s.c:twice"]["direct"] is None and functions["s.c:thrice"]["direct"] is None
    unit = frontend.analyse("s.c", "gcc", [], str(project.root))
    assert not [v.name for v in unit.variables]           # twice, thrice are functions
    unbound = {local.name: local.unbound for f in unit.functions for local in f.locals}
    assert unbound["table"] == unbound["spare"] == "its type is declared inside the function"
    assert unbound["calls"] == unbound["names"] == unbound["sized"] == unbound["after"] == ""
    assert unbound["jumps"] == "its initializer takes the address of a label of the function"
