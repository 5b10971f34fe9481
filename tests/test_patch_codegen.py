"""Issue 10, code generation: every function can be patched (variadic and K&R
definitions), functions and state a patch adds link where the unit's functions
are declared hidden, and an update says which replaced functions may still be
running their old version.

The program (tests/corpus/everyfn) answers commands on stdin; two threads
check the variadic and K&R functions' results without pause while updates are
applied.  Revisions are made from v1 by text edits, tagged in a git repository.
"""
import json

import pytest

from projects import Project, REPO, psu, wait_until

CORPUS = REPO / "tests" / "corpus" / "everyfn"
CORE_C, CORE_INTERNAL_H = "src/core.c", "src/core_internal.h"


def revision(project, base, tag, *edits):
    """Tag `tag`: revision `base` with `edits` ((path, old, new), ...) applied."""
    project.checkout(base)
    for path, old, new in edits:
        project.edit(path, (old, new), count=1)
    project.commit(tag)


# A function added by the patch, declared hidden in the header, called by a
# replaced function (defect 1).
ADD_HIDDEN_FUNCTION = [
    (CORE_INTERNAL_H, "CORE_FUNC int core_scale(int x);",
     "CORE_FUNC int core_scale(int x);\nCORE_FUNC int core_added(int x);"),
    (CORE_C, "int core_step(int x)\n{\n    return core_scale(x) + 1;",
     "int core_added(int x)\n{\n    return x + 100;\n}\n\n"
     "int core_step(int x)\n{\n    return core_added(core_scale(x)) + 1;"),
]
# State added to a unit whose functions are hidden (defect 2).
ADD_STATE = [
    (CORE_C, "static long ticks;", "static long ticks;\nstatic int steps = 40;\n"
                                   "static int count_step(void) { return ++steps; }"),
    (CORE_C, "return core_scale(x) + 1;", "return core_scale(x) + count_step();"),
]

# Every variadic and K&R function changed; the thread main loop too.
CHANGE_EVERY_KIND = [
    (CORE_C, "n = vsnprintf(out, size, fmt, ap);",
     'n = snprintf(out, size, "v2 ");\n    n += vsnprintf(out + n, size - n, fmt, ap);'),
    (CORE_C, "return 1 + core_nest(", "return 2 + core_nest("),
    (CORE_C, "int total = 0;", "int total = 10;"),
    (CORE_INTERNAL_H, "CORE_FUNC int core_scale(int x);",
     "CORE_FUNC int core_scale(int x);\nCORE_FUNC int core_joined(int n, ...);"),
    (CORE_C, "/* never reads", "int core_joined(int n, ...)\n{\n    va_list ap;\n    double d;\n"
                              "    va_start(ap, n);\n    d = va_arg(ap, double);\n    va_end(ap);\n"
                              "    return n + (int)d;\n}\n\n/* never reads"),
    (CORE_C, "return a + 1;", "return core_joined(a, 2.0);"),
    (CORE_C, "int sum = 0;", "int sum = 1;"),
    (CORE_C, "tally(1, 100);", "tally(1, 200);"),
    (CORE_C, "return c + (int)(f * 100) + n;", "return 1000 + c + (int)(f * 100) + n;"),
    (CORE_C, "return n <= 1 ? 1 :", "return n <= 1 ? 2 :"),
    (CORE_C, "usleep(1000);\n    }", "usleep(2000);\n    }"),
    (CORE_C, "return 1;\n}\n\nint core_waiting", "return 2;\n}\n\nint core_waiting"),
]


@pytest.fixture(scope="module")
def everyfn(tmp_path_factory):
    project = Project.from_corpus(tmp_path_factory.mktemp("everyfn") / "repo", CORPUS)
    revision(project, "v1", "hidden-added", *ADD_HIDDEN_FUNCTION)
    revision(project, "v1", "state-added", *ADD_STATE)
    revision(project, "v1", "hidden-address", (CORE_C, "return fn(x);", "return fn(x) + 1;"))
    revision(project, "v1", "v2", *CHANGE_EVERY_KIND)
    revision(project, "v2", "v3", (CORE_C, "return 2;\n}\n\nint core_waiting",
                                   "return 3;\n}\n\nint core_waiting"))
    project.checkout("v1")
    project.build()
    return project


@pytest.fixture
def program(everyfn, tmp_path):
    running = everyfn.start("everyfn", tmp_path / "run")
    yield running
    running.stop()


def test_a_replaced_function_calls_an_added_function_declared_hidden(everyfn, program):
    """Defect 1: the added function is declared hidden (CORE_FUNC) in the header;
    the bundle reaches it through the name its state object exports."""
    everyfn.patch("v1", "hidden-added")
    assert program("step") == "21"
    program.apply(everyfn.bundle("everyfn", "v1", "hidden-added"))
    assert program("step") == "121"


def test_state_added_to_a_unit_of_hidden_functions_links(everyfn, program):
    """Defect 2: the never-unloaded state object of a unit whose functions are
    hidden reaches them through their exported aliases, not their plain names;
    and the bodies it compiles, which only the code object runs, may use hidden
    constant data another unit defines (Lua's luaT_typenames_)."""
    everyfn.patch("v1", "state-added")
    assert program("step") == "21"
    program.apply(everyfn.bundle("everyfn", "v1", "state-added"))
    assert [program("step") for _ in range(2)] == ["61", "62"]
    assert program("weight") == "3"


def test_a_patch_takes_the_address_of_a_function_declared_hidden(everyfn, program):
    """gcc takes the address of a hidden function PC-relative, which a shared
    object cannot link against the program's symbol: the bundle names it in
    its bodies by a declaration of default visibility (zlib stores zcfree)."""
    everyfn.patch("v1", "hidden-address")
    assert program("apply") == "20"
    program.apply(everyfn.bundle("everyfn", "v1", "hidden-address"))
    assert program("apply") == "21"


def test_variadic_and_kr_functions_are_replaced_live_under_load(everyfn, program):
    """Capability 3: a changed variadic function (doubles and ints among its
    variable arguments, va_start through the macro and the builtin, one that
    never calls it, one recursive, a static one, one added and declared hidden)
    and changed K&R definitions (char and float
    parameters, called without a prototype, one recursive) apply live while two
    threads call them without pause; no call sees anything but the old or the
    new result."""
    everyfn.patch("v1", "v2")
    shown = json.loads(psu("inspect", "--json", everyfn.bundle("everyfn", "v1", "v2")).stdout)
    assert shown["manifest"]["changes"]["functions"]["replaced"] == [
        "core_fact", "core_first", "core_format", "core_kr", "core_nest", "core_sum", "core_tally",
        "core_wait", "core_worker", "src/core.c:tally"]
    assert shown["manifest"]["changes"]["functions"]["added"] == ["core_joined"]
    before = [program(c) for c in ("fmt", "nest", "sum", "first", "tally", "kr", "fact")]
    assert before == ["7|2.50|x|-3", "23", "6", "2", "111", "250", "120"]
    program.apply(everyfn.bundle("everyfn", "v1", "v2"))
    after = [program(c) for c in ("fmt", "nest", "sum", "first", "tally", "kr", "fact")]
    assert after == ["v2 7|2.50|x|-3", "26", "16", "3", "213", "1250", "240"]
    assert wait_until(lambda: program("checks") == "1 0") and program("checks") == "1 0"
    assert program("ticks") == "1"


def test_apply_and_status_name_replaced_functions_still_running_their_old_version(
        everyfn, program):
    """Capability 4: core_worker is a thread's endless main loop, started in the
    executable's version: the bundle says at patch time that it may never
    return, and the apply answer and status say it may still run v1.  A call
    of core_wait in progress in v2's module when v3 replaces it is known
    exactly (the module's calls are counted), and named until it returns."""
    everyfn.patch("v1", "v2")
    everyfn.patch("v2", "v3")
    shown = json.loads(psu("inspect", "--json", everyfn.bundle("everyfn", "v1", "v2")).stdout)
    assert shown["manifest"]["may_not_return"] == {"core_worker": "loops forever"}
    assert "may still run their old version until their next call:\n    core_worker (loops forever)" \
        in shown["manifest"]["report"]
    process = program.process
    applied = process.psu("apply", process.pid, everyfn.bundle("everyfn", "v1", "v2"))
    assert applied.returncode == 0, applied.stderr
    assert "core_worker: may still run v1 (module 0)" in applied.stdout
    assert program("hold") == "held"                 # core_wait running v2's version
    answer = process.request(f"apply {everyfn.bundle('everyfn', 'v2', 'v3')}")
    assert answer["ok"] and answer["old_versions_running"] == [
        {"function": "core_wait", "label": "v2", "module": 1, "certain": True}]
    status = json.loads(process.psu("status", process.pid, "--json").stdout)
    assert status["old_versions_running"] == [
        {"function": "core_worker", "label": "v1", "module": 0, "certain": False},
        {"function": "core_wait", "label": "v2", "module": 1, "certain": True}]
    shown = process.psu("status", process.pid).stdout
    assert "core_wait: still running v2 (module 1)" in shown
    assert program("release") == "2"                 # the call ended in v2's version
    assert program("hold") == "held" and program("release") == "3"
    assert wait_until(lambda: "core_wait" not in process.psu("status", process.pid).stdout)
    status = json.loads(process.psu("status", process.pid, "--json").stdout)
    assert [e["function"] for e in status["old_versions_running"]] == ["core_worker"]


# -- generated code, without a process -----------------------------------------

from psu import codegen, frontend  # noqa: E402  (after the fixtures above)
from psu.policy import DsuPolicy  # noqa: E402
from projects import run  # noqa: E402

KINDS_OF_DEFINITION = """\
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
typedef unsigned char byte;
int with_prototype(char c, float f);
int with_prototype(c, f) char c; float f; { return c + (int)f; }
int promoted(c, f, b, s, p, a) char c; float f; byte b; short s; char *p; int a[]; { return c + (int)f + b + s + *p + a[0]; }
static long kr_static(n) long n; { return n + 1; }
long calls_kr_static(void) { return kr_static(1); }
__attribute__((noreturn)) void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    exit(1);
}
int check(int ok) { if (ok) return ok; fail("bad %d\\n", ok); }
__attribute__((format(printf, 2, 3))) static void note(int (*sink)(const char *, ...), const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sink("%s", fmt);
    va_end(ap);
}
void notes(void) { note(printf, "x %d %f", 1, 2.0); }
#define FORMAT_ATTR(pos) __attribute__ ((__format__ (__printf__, pos, pos+1)))
static int format(int kind, int string, int first) { return kind + string + first; }
static void FORMAT_ATTR(2) prepend(char *out, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsprintf(out, fmt, args);
    va_end(args);
    out[0] += (char)format(1, 2, 3);   /* a call in the body keeps its three arguments */
}
void prepends(char *out) { prepend(out, "%d", 1); }
void (*handler_of(void))(const char *, ...)
{
    static void (*handler)(const char *, ...) = fail;   /* bound: its initializer goes */
    return handler != fail ? handler : fail;
}
"""


def analyse_text(tmp_path, text):
    (tmp_path / "unit.c").write_text(text)
    return frontend.analyse("unit.c", "gcc", ["-O2"], str(tmp_path))


def test_kr_definitions_take_the_prototype_in_scope_or_the_promoted_types(tmp_path):
    """A K&R definition's type -- its signature, and its general path's and its
    slot's -- is the prototype in scope, else its declared types after the
    default argument promotions (through typedefs), which is what callers pass."""
    unit = analyse_text(tmp_path, KINDS_OF_DEFINITION)
    signatures = {f.name: f.signature.replace("@NAME@", f.name) for f in unit.functions}
    assert signatures["with_prototype"] == "int with_prototype(char c, float f)"
    assert signatures["promoted"] == \
        "int promoted(int c, double f, int b, int s, char *p, int a[])"
    assert signatures["kr_static"] == "long kr_static(long n)"
    heads = {f.name: f.head for f in unit.functions}
    assert heads["promoted"] == \
        "int @NAME@(int psu_a0, double psu_a1, int psu_a2, int psu_a3, char *psu_a4, int psu_a5[])"
    direct = {f.qualname: DsuPolicy(direct_statics="none").direct_reason(f) for f in unit.functions}
    assert set(direct.values()) == {None}      # variadic and K&R: DSU functions like any other


def test_variadic_and_kr_definitions_compile_cleanly_in_every_role(tmp_path):
    """Every role of a unit with K&R definitions (static, prototyped) and variadic
    ones (void, noreturn, static with a function-pointer parameter and a format
    attribute, which the va_list variant takes as vprintf does) compiles
    under -Wall -Wextra -Werror, the functions added and replaced included."""
    unit = analyse_text(tmp_path, KINDS_OF_DEFINITION)
    dsu = DsuPolicy(direct_statics="none").dsu_names(unit)
    assert {"fail", "unit.c:note"} <= {f.qualname for f in unit.functions if f.name in dsu}
    plan = codegen.UnitPlan(patched={"fail", "unit.c:note", "promoted"},
                            added_functions={"check", "unit.c:kr_static"})
    for role in codegen.Role:
        generated = codegen.transform(unit, KINDS_OF_DEFINITION, role, dsu, f"gen_{role}.c", plan,
                                      program_functions={"fail", "promoted", "with_prototype"})
        (tmp_path / f"gen_{role}.c").write_text(generated)
        run(["gcc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unused-function",
             "-fPIC", f"-I{REPO}/runtime", "-c", f"gen_{role}.c", "-o", f"gen_{role}.o"], tmp_path)
    program = (tmp_path / "gen_program.c").read_text()
    # the variadic function callers call by name passes its arguments on as a va_list
    assert "void fail(const char *psu_a0, ...)" in program
    assert "psu_va_fail(psu_a0, psu_ap);" in program
    # a format attribute, written or made by a macro, names the variant's va_list
    # up to its body, and no further
    assert "format(1, 2, 3)" in program


def test_functions_that_may_not_return_are_found_with_why(tmp_path):
    """A loop nothing leaves, a thread's start routine (a static one, named by
    pthread_create in its unit), and callers of either; a loop with a break of
    its own, or one that returns, ends."""
    from psu import patch
    unit = analyse_text(tmp_path, """\
#include <pthread.h>
void serve(void) { for (;;) { } }
void run(void) { serve(); }
static void *routine(void *arg) { while (arg) { } return 0; }
void start(void) { pthread_t t; pthread_create(&t, 0, routine, 0); }
int poll_once(int x) { while (1) { if (x) break; } do { return 1; } while (1); }
int nested(int x) { for (;;) { switch (x) { case 1: break; } for (;;) { break; } } }
""")
    assert patch.may_not_return([unit]) == {
        "serve": "loops forever", "run": "calls serve, which may not return",
        "unit.c:routine": "a thread's start routine", "nested": "loops forever"}


SELF_CALLS = """\
#include <stdlib.h>
struct pair { int a, b; };
int later(int n);
int before(int n) { return n > 0 ? later(n - 1) : 0; }          /* above later's definition */
int later(int n) { return n > 0 ? before(n - 1) + 1 : 0; }
static int fact(int n) { return n <= 1 ? 1 : n * fact(n - 1); }
int uses_fact(int n) { return fact(n); }
struct pair swap(struct pair p) { struct pair q = { p.b, p.a }; return p.a ? swap(q) : q; }
__attribute__((noreturn)) void stop(int code) { if (code > 1) stop(code - 1); exit(code); }
int kr(n) int n; { return n > 0 ? kr(n - 1) + 1 : 0; }
int through(int (*later)(int)) { return later(1); }            /* a parameter by that name */
int local(int n) { int (*fact)(int) = abs; return fact(n); }   /* a local by a static's name */
int (*address(void))(int) { return later; }                   /* an address: the program's */
"""


def test_bundle_code_calls_the_functions_it_provides_directly(tmp_path):
    """Code role: calls written by name of a function the bundle switches or
    carries go to its inlined `psu_self_` check (recursion, mutual recursion
    across a definition above the callee's, statics, struct returns, noreturn,
    K&R); names a parameter or local declaration gives another meaning are
    left alone; the unit compiles under -Wall -Wextra -Werror."""
    unit = analyse_text(tmp_path, SELF_CALLS)
    dsu = DsuPolicy(direct_statics="none").dsu_names(unit)
    everything = {f.qualname for f in unit.functions if f.name in dsu}
    plan = codegen.UnitPlan(patched={"later", "before", "unit.c:fact", "swap"},
                            carried=everything - {"later", "before", "unit.c:fact", "swap"})
    generated = codegen.transform(unit, SELF_CALLS, "code", dsu, "gen_code.c", plan,
                                  program_functions={f.name for f in unit.functions
                                                     if f.name in dsu and not f.static})
    (tmp_path / "gen_code.c").write_text(generated)
    run(["gcc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unused-function",
         "-fPIC", f"-I{REPO}/runtime", "-c", "gen_code.c", "-o", "gen_code.o"], tmp_path)
    for call in ("psu_self_later(n - 1)", "psu_self_before(n - 1)", "n * psu_self_fact(n - 1)",
                 "return psu_self_fact(n);", "psu_self_swap(q)", "psu_self_stop(code - 1)",
                 "psu_self_kr(n - 1)"):
        assert call in generated, call
    assert "return later(1);" in generated and "return fact(n);" in generated
    assert "return psu_ext_later;" in generated
    for qualname in ("later", "before", "unit.c:fact", "swap", "stop", "kr"):
        assert f"psu_impl_{qualname.split(':')[-1]}(" in generated
        assert f"psu_version_is_current(&{codegen.slot_symbol(qualname)}," in generated
