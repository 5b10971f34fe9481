"""The C front end: real headers parse, bad C is a located error (never a traceback),
the model round-trips, and generated C re-parses."""
import json

import pytest

from projects import REPO, Project, run
from psu import codegen, frontend, manifest
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


def test_real_system_headers_parse(tmp_path):
    unit = analyse(tmp_path, UNIT_USING_HEADERS)
    assert [f.name for f in unit.functions] == ["serve"]
    variables = {v.name: v for v in unit.variables}
    assert variables["legacy_tls"].thread_local and variables["hits"].static
    # only the unit's own definitions: nothing from the headers
    assert all(v.locations[0].file == "unit.c" for v in unit.variables)


@pytest.mark.parametrize("construct,code,line", [
    ("typeof", "int f(int x) {\n  typeof(x) y = x;\n  return y;\n}\n", 2),
    ("__auto_type", "int f(int x) {\n  __auto_type y = x;\n  return y;\n}\n", 2),
    ("an asm statement", "void f(void) {\n\n  __asm__ volatile (\"nop\");\n}\n", 3),
])
def test_unparsable_construct_is_a_located_error(tmp_path, construct, code, line):
    with pytest.raises(CSourceError) as caught:
        analyse(tmp_path, code)
    assert str(caught.value).startswith(f"unit.c:{line}:")
    assert f"psu: cannot parse {construct}" in str(caught.value)


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
                          "int main(void)\n{\n    typeof(1) x = 0;\n    return x;\n}\n")
    assert "src/bad.c:3:" in failed.stderr and "psu: cannot parse typeof" in failed.stderr


def test_model_round_trips_through_json(tmp_path):
    unit = analyse(tmp_path, (REPO / "tests/corpus/constructs/src/calc.c").read_text()
                   .replace('"shapes.h"', f'"{REPO}/tests/corpus/constructs/src/shapes.h"'))
    again = Unit.from_json(json.loads(json.dumps(unit.to_json())))
    assert again == unit


def test_generated_units_reparse(tmp_path):
    """Generated C is C the front end itself reads back (all three roles)."""
    source = (REPO / "tests/corpus/constructs/src/calc.c").read_text().replace(
        '"shapes.h"', f'"{REPO}/tests/corpus/constructs/src/shapes.h"')
    unit = analyse(tmp_path, source)
    dsu = manifest.dsu_names(unit, ["excluded_twice"])
    plan = codegen.UnitPlan(patched={"fib"}, added_functions={"add"})
    for role in codegen.ROLES:
        generated = codegen.transform(unit, source, role, dsu, f"gen_{role}.c", plan)
        (tmp_path / f"gen_{role}.c").write_text(generated)
        reparsed = frontend.analyse(f"gen_{role}.c", "gcc", [f"-I{REPO}/runtime"], str(tmp_path))
        # the generated trailer's functions: trampolines and their general paths
        # (program), forwarders to the program's trampolines for statics (code, state)
        names = {f.name for f in reparsed.functions}
        statics = {f.name for f in unit.functions if f.static and f.name in dsu}
        trampolines = dsu | {f"psu_general_{name}" for name in dsu}
        assert names == (trampolines if role == "program" else statics | {"add"} if role == "state"
                         else statics)
        run(["gcc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-Wno-unused-function",
             "-fPIC", f"-I{REPO}/runtime", "-c", f"gen_{role}.c", "-o", f"gen_{role}.o"], tmp_path)


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
    assert str(caught.value) == "psu: compiler 'no-such-cc' not found"
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
    dsu = manifest.dsu_names(unit)
    for role in ("program", "code"):
        (tmp_path / f"{role}.c").write_text(codegen.transform(unit, source, role, dsu, f"{role}.c"))
        run(["gcc", "-std=gnu11", "-Wall", "-Werror", "-fPIC", f"-I{REPO}/runtime", "-c",
             f"{role}.c", "-o", f"{role}.o"], tmp_path)
    symbols = run(["nm", "program.o"], tmp_path).stdout
    label = codegen.var_symbol("unit.c:counter", unit.variables[0].type_hash)
    assert f" D {label}" in symbols          # a global name the patch binds to
    assert "extern int counter" in (tmp_path / "code.c").read_text()
