"""The C front end: real headers parse, bad C is a located error (never a traceback),
the model round-trips, and generated C re-parses."""
import json

import pytest

from projects import REPO, Project, run
from psu import codegen, frontend
from psu.policy import DsuPolicy
from psu.errors import CSourceError
from psu.model import Unit

HEADERS = ["stdio.h", "stdlib.h", "string.h", "pthread.h", "stdatomic.h", "stdint.h",
           "unistd.h", "sys/socket.h", "netinet/in.h", "errno.h", "signal.h", "time.h",
           "assert.h", "stdbool.h", "stddef.h", "limits.h", "arpa/inet.h", "sys/mman.h"]

UNIT_USING_HEADERS = "".join(f"#include <{h}>\n" for h in HEADERS) + """
static _Atomic(unsigned long) hits;
static atomic_int flags;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int legacy_tls;
struct __attribute__((packed)) wire { uint8_t kind; uint32_t length; };

int serve(int fd, const struct sockaddr_in *peer)
{
    struct wire w = { 1, 2 };
    pthread_mutex_lock(&lock);
    atomic_fetch_add_explicit(&hits, 1, memory_order_relaxed);
    legacy_tls += atomic_load(&flags);
    pthread_mutex_unlock(&lock);
    if (__builtin_expect(fd < 0, 0))
        return -errno;
    return (int)(w.length + ntohs(peer->sin_port) + (int)sizeof w) + (int)time(NULL) % 2;
}
"""


def analyse(tmp_path, text, name="unit.c", flags=("-O2",)):
    (tmp_path / name).write_text(text)
    return frontend.analyse(name, "gcc", list(flags), str(tmp_path))


def compiles_cleanly(tmp_path, name, generated, *flags):
    """Writes generated C to `name` and compiles it (as psu does: -fPIC, the
    runtime's headers) under -Wall -Wextra -Werror."""
    (tmp_path / name).write_text(generated)
    run(["gcc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-fPIC", *flags, f"-I{REPO}/runtime",
         "-c", name, "-o", name + ".o"], tmp_path)


def test_real_system_headers_parse(tmp_path):
    unit = analyse(tmp_path, UNIT_USING_HEADERS)
    assert [f.name for f in unit.functions] == ["serve"]
    variables = {v.name: v for v in unit.variables}
    assert variables["legacy_tls"].thread_local and variables["hits"].static
    # only the unit's own definitions: nothing from the headers
    assert all(v.locations[0].file == "unit.c" for v in unit.variables)


@pytest.mark.parametrize("code", [
    "int f(int x) {\n  typeof(x) y = x;\n  return y;\n}\n",
    "int f(int x) {\n  __auto_type y = x;\n  return y;\n}\n",
    "int f(int x) {\n\n  __asm__ volatile (\"nop\");\n  return x;\n}\n",
])
def test_gnu_constructs_that_stopped_the_front_end_parse(tmp_path, code):
    unit = analyse(tmp_path, code)
    assert [(f.name, f.unreadable) for f in unit.functions] == [("f", "")]


def test_a_function_the_parser_cannot_read_is_located_and_the_rest_of_the_unit_stays(tmp_path):
    code = ("int g(int x) { return x + 1; }\n"
            "int f(int x)\n{\n  int twice(int y) { return 2 * y; }\n  if (x) return twice(x);\n"
            "  return g(x);\n}\n"
            "int h(int x) { return f(x) * 2; }\n")
    unit = analyse(tmp_path, code)
    functions = {f.name: f for f in unit.functions}
    assert sorted(functions) == ["f", "g", "h"]
    assert not functions["g"].unreadable and not functions["h"].unreadable
    assert functions["f"].unreadable.startswith("unit.c:4:7: psu: cannot parse a nested function: "
                                                "nested function 'twice' (a GCC extension)")
    assert "add 'f' to PSU_EXCLUDE" in functions["f"].unreadable
    assert functions["f"].callees == ["g"] and functions["h"].callees == ["f"]
    changed = analyse(tmp_path, code.replace("2 * y", "3 * y"))
    assert {f.name: f.body_hash for f in changed.functions}["f"] != functions["f"].body_hash


def test_label_addresses_in_a_header_parse(tmp_path):
    """Lua's ljumptab.h: a table of label addresses and a computed goto, written
    by a header inside the function."""
    (tmp_path / "jump.h").write_text("/* dispatch */\nstatic const void *const table[2] = {\n"
                                      "  &&first, &&second };\n#define dispatch(x) goto *table[x]\n")
    code = ("int run(int x, int y)\n{\n  if (x && y)\n    return 0;\n#include \"jump.h\"\n"
            "  dispatch(x);\nfirst: return 1;\nsecond: return 2;\n}\n")
    unit = analyse(tmp_path, code)
    assert [(f.name, f.unreadable) for f in unit.functions] == [("run", "")]


def failed_build(root, unit, text, environment=""):
    """Builds a one-unit DSU program expected to fail; returns the SCons run."""
    project = Project(root)
    project.commit("v1", {
        "SConstruct": f"env = Environment(tools=['default', 'psu']{environment})\n"
                      f"env.PSUProgram('p', [{unit!r}], PSU_UNITS=[{unit!r}])\n",
        unit: text})
    failed = project.build(check=False)
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr + failed.stdout
    return failed


def test_bad_c_fails_the_build_with_the_location_and_no_traceback(tmp_path):
    failed = failed_build(tmp_path / "bad", "src/bad.c",
                          "int main(void)\n{\n    return 0;\n}\nint x = ;\n")
    assert "src/bad.c:5:" in failed.stderr and "psu: cannot parse" in failed.stderr


def test_model_round_trips_through_json(tmp_path):
    unit = analyse(tmp_path, (REPO / "tests/corpus/constructs/src/calc.c").read_text()
                   .replace('"shapes.h"', f'"{REPO}/tests/corpus/constructs/src/shapes.h"'))
    again = Unit.from_json(json.loads(json.dumps(unit.to_json())))
    assert again == unit


def test_program_functions_begin_with_the_entry_check(tmp_path):
    """In the program a DSU function keeps its name and definition; its body
    begins, on the line of its `{`, with the check that sends a call elsewhere
    unless the executable's version is current.  Calls and pointers are left as
    written, so every one of them passes the check."""
    source = (REPO / "tests/corpus/constructs/src/calc.c").read_text().replace(
        '"shapes.h"', f'"{REPO}/tests/corpus/constructs/src/shapes.h"')
    unit = analyse(tmp_path, source)
    dsu = DsuPolicy(["excluded_twice"]).dsu_names(unit)
    program = codegen.transform(unit, source, "program", dsu, "gen.c")
    body = program[:program.index("generated by psu")]
    fib = next(f for f in unit.functions if f.name == "fib")
    check = (" if (__builtin_expect(!psu_executable_is_current(&psu_fn_fib), 0)) "
             "return psu_general_fib(n);")
    # the check follows the `{` on its line, so the user's lines keep their numbers
    line = next(text for text in body.splitlines() if check in text)
    assert line.replace(check, "") == source.splitlines()[fib.body_line - 1]
    assert line.endswith("{" + check)
    assert "fib(n - 1) + fib(n - 2)" in body and "psu_impl_" not in program
    assert "pthread_create(&threads[i], NULL, tally_thread, &rounds)" in body
    for f in unit.functions:
        checked = f"psu_va_{f.name}" if f.variadic else f.name   # a variadic's va_list variant
        assert (f"psu_executable_is_current(&psu_fn_{checked})" in body) == (f.name in dsu), f.name


def test_entry_check_finds_the_body_of_any_declarator(tmp_path):
    """The body's `{` is found after declarators that return function
    pointers (the name sits inside parentheses, as SQLite writes them),
    after attributes, and in a void function; the result compiles cleanly."""
    source = ("static void noop(void) { }\n"
              "static void (*pick(int which))(void) { return which ? noop : 0; }\n"
              "__attribute__((noinline)) int twice(int x) __attribute__((hot));\n"
              "__attribute__((noinline)) int twice(int x)\n{\n    return 2 * x;\n}\n"
              "void run(void (*(*get)(int))(void)) { get(1)(); }\n"
              "int main(void) { run(pick); return twice(0); }\n")
    unit = analyse(tmp_path, source)
    dsu = DsuPolicy().dsu_names(unit)
    assert {"pick", "twice", "run"} <= dsu
    program = codegen.transform(unit, source, "program", dsu, "gen.c")
    assert "static void (*pick(int which))(void) { if (__builtin_expect(" in program
    assert "{ if (__builtin_expect(!psu_executable_is_current(&psu_fn_run), 0)) " \
           "{ psu_general_run(get); psu_after_general_path(run); } else { get(1)(); } }" in program
    compiles_cleanly(tmp_path, "gen.c", program)


def test_noreturn_dsu_functions_compile_cleanly_in_every_role(tmp_path):
    """A void function declared noreturn (by _Noreturn, or by an attribute on
    an earlier declaration) gets no `return` written into it, and the general
    path tells the compiler control does not come back; the aliases a static
    gets in the program and a bundle's exported alias carry the attribute too,
    and a bundle's forwarder to a static does not return.  All roles compile
    under -Werror."""
    source = ("#include <stdlib.h>\n"
              "_Noreturn void die(int code) { exit(code); }\n"
              "void quit(int code) __attribute__((noreturn));\n"
              "void quit(int code)\n{\n    if (code)\n        die(code);\n    exit(0);\n}\n"
              "void note(int *n) { if (*n < 0) return; ++*n; }\n"
              "static void fail(int code) __attribute__((noreturn));\n"
              "void (*fail_hook)(int) = fail;\n"
              "static void fail(int code) { exit(code); }\n")
    unit = analyse(tmp_path, source)
    dsu = DsuPolicy().dsu_names(unit)
    assert {"die", "quit", "note", "fail"} <= dsu        # fail: a static, so aliased and forwarded
    plan = codegen.UnitPlan(patched={"die", "quit", "note"})
    for role in codegen.Role:
        # (a bundle compiles statics it does not use: -Wno-unused-function)
        compiles_cleanly(tmp_path, f"gen_{role}.c", codegen.transform(
            unit, source, role, dsu, f"gen_{role}.c", plan), "-O2", "-Wno-unused-function")
    program = (tmp_path / "gen_program.c").read_text()
    assert "    exit(0);\n} }" in program            # quit's body closed as the `else`
    assert "void note(int *n) { if (__builtin_expect(" in program and \
        "else { if (*n < 0) return; ++*n; } }" in program


def test_void_body_with_a_block_opened_in_each_branch_of_a_conditional(tmp_path):
    """SQLite's decodeIntArray opens a block in both branches of an #ifndef:
    the `else` made of a void function's body still closes at its real end."""
    source = ("void mark(int *p)\n{\n"
              "#ifndef WIDE\n  if (p) {\n#else\n  if (p && *p) {\n#endif\n    *p = 1;\n  }\n}\n"
              "int main(void) { int x = 0; mark(&x); return x - 1; }\n")
    unit = analyse(tmp_path, source)
    program = codegen.transform(unit, source, "program", {"mark"}, "gen.c")
    assert "    *p = 1;\n  }\n} }" in program
    for wide in ([], ["-DWIDE"]):
        compiles_cleanly(tmp_path, "gen.c", program, *wide)


def test_unnamed_parameter_of_a_dsu_function_is_a_clear_error(tmp_path):
    source = "int f(int x, int) { return x; }\n"     # C23; gcc accepts it as gnu2x
    unit = analyse(tmp_path, source)
    with pytest.raises(CSourceError, match="a parameter of 'f' has no name"):
        codegen.transform(unit, source, "program", {"f"}, "gen.c")


def test_generated_units_reparse(tmp_path):
    """Generated C is C the front end itself reads back (all three roles)."""
    source = (REPO / "tests/corpus/constructs/src/calc.c").read_text().replace(
        '"shapes.h"', f'"{REPO}/tests/corpus/constructs/src/shapes.h"')
    unit = analyse(tmp_path, source)
    dsu = DsuPolicy(["excluded_twice"]).dsu_names(unit)
    plan = codegen.UnitPlan(patched={"fib"}, added_functions={"add"})
    for role in codegen.Role:
        generated = codegen.transform(unit, source, role, dsu, f"gen_{role}.c", plan)
        (tmp_path / f"gen_{role}.c").write_text(generated)
        reparsed = frontend.analyse(f"gen_{role}.c", "gcc", [f"-I{REPO}/runtime"], str(tmp_path))
        # the generated trailer's functions: general paths (program; of a variadic
        # function's va_list variant, with the variadic function itself calling
        # it), forwarders to the program's trampolines for statics (code, state)
        names = {f.name for f in reparsed.functions}
        statics = {f.name for f in unit.functions if f.static and f.name in dsu}
        variadic = {f.name for f in unit.functions if f.variadic and f.name in dsu}
        general = {f"psu_{path}_{'psu_va_' * (name in variadic)}{name}"
                   for name in dsu for path in ("general", "slow")} | variadic
        assert names == (general if role == "program" else statics | {"add"} if role == "state"
                         else statics)
        # the bundle's own calls of fib, which it replaces, check its slot (the
        # check is written among the unit's lines, not the trailer's)
        assert ("psu_self_fib(n - 1)" in generated) == (role == "code")
        compiles_cleanly(tmp_path, f"gen_{role}.c", generated, "-Wno-unused-function")


def test_analysis_is_cached_by_preprocessed_text(tmp_path):
    (tmp_path / "unit.c").write_text("int f(int x) { return x + 1; }\n")
    cache = tmp_path / "cache"
    first = frontend.analyse("unit.c", "gcc", [], str(tmp_path), cache_dir=str(cache))
    assert len(list(cache.rglob("*.json"))) == 1
    second = frontend.analyse("unit.c", "gcc", [], str(tmp_path), cache_dir=str(cache))
    assert first == second
    (tmp_path / "unit.c").write_text("int f(int x) { return x + 2; }\n")
    third = frontend.analyse("unit.c", "gcc", [], str(tmp_path), cache_dir=str(cache))
    assert third.functions[0].body_hash != first.functions[0].body_hash
    assert len(list(cache.rglob("*.json"))) == 2


def test_missing_compiler_is_a_clear_error(tmp_path):
    from psu.errors import ToolError
    (tmp_path / "unit.c").write_text("int f(void) { return 0; }\n")
    with pytest.raises(ToolError) as caught:
        frontend.analyse("unit.c", "no-such-cc", [], str(tmp_path))
    assert str(caught.value) == "compiler 'no-such-cc' not found"
    failed = failed_build(tmp_path / "p", "u.c", "int main(void) { return 0; }\n",
                          environment=", CC='no-such-cc'")
    assert "psu: compiler 'no-such-cc' not found" in failed.stderr


def test_storage_class_behind_a_macro_is_edited_like_the_keyword(tmp_path):
    """SQLite writes `SQLITE_PRIVATE int x;` with SQLITE_PRIVATE defined as static."""
    source = ("#define PRIVATE static\nPRIVATE int counter = 3;\n"
              "PRIVATE const char *names[] = { \"a\", \"b\" };\n"
              "int bump(void) { return ++counter + (int)sizeof names; }\n")
    unit = analyse(tmp_path, source)
    assert unit.storage_macros == {"PRIVATE": "static"}
    dsu = DsuPolicy().dsu_names(unit)
    for role in ("program", "code"):
        compiles_cleanly(tmp_path, f"{role}.c", codegen.transform(unit, source, role, dsu, f"{role}.c"))
    symbols = run(["nm", "program.c.o"], tmp_path).stdout
    label = codegen.var_symbol("unit.c:counter", unit.variables[0].type_hash)
    assert f" D {label}" in symbols          # a global name the patch binds to
    assert "extern int counter" in (tmp_path / "code.c").read_text()
