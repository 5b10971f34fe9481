"""A function names itself as written wherever psu renames its definition: in
a variadic function's va_list variant (`psu_va_f`, program and bundles) and
in a bundle's version (`psu_impl_f`), `__func__`, `__FUNCTION__` and
`__PRETTY_FUNCTION__` are `f` (codegen._named_as_written), so a patch does
not change what the function logs.

The program (tests/corpus/funcnames) prints the names its functions see; v2
changes the order `compare_keys` sorts in and what the variadic `say_key`
writes, so the bundle's versions of both run."""

import pytest

from projects import CommandProgram, Process, Project, REPO, environment, run
from psu import codegen, frontend
from psu.policy import DsuPolicy

CORPUS = REPO / "tests" / "corpus" / "funcnames"
KEYS_C = "src/keys.c"


@pytest.fixture(scope="module")
def funcnames(tmp_path_factory):
    project = Project.from_corpus(tmp_path_factory.mktemp("funcnames") / "repo", CORPUS)
    project.edit(KEYS_C, ("memcmp(p1 + 1, p2 + 1,", "memcmp(p2 + 1, p1 + 1,"),
                 ("vsnprintf(out, (size_t)size, format, ap);",
                  "vsnprintf(out, (size_t)size, format, ap);\n    out[0] = '[';"))
    project.commit("v2")
    project.checkout("v1")
    project.build()
    project.patch("v1", "v2")
    return project


def test_functions_name_themselves_in_the_program_and_in_a_bundle(funcnames, tmp_path):
    """The program's definitions (the variadic one's variant among them) and,
    once v2 is applied, the bundle's versions: every name is the function's."""
    running = CommandProgram(funcnames.root / "funcnames", funcnames.root, tmp_path / "run")
    try:
        assert running.first == "ready"
        assert running("compare apple banana") == "-1 compare_keys"
        assert running("compare same same") == "0 compare_keys"
        assert running("note key") == "note_key:key:2"
        assert running("note loud!") == "note_key"
        assert running("say hi") == "<hi> say_key"
        running.apply(funcnames.bundle("funcnames", "v1", "v2"))
        assert running("compare apple banana") == "1 compare_keys"     # v2's version ran
        assert running("say hi") == "[hi> say_key"
        assert running("note key") == "note_key:key:2"
    finally:
        running.stop()
    failing = Process([funcnames.root / "funcnames"], funcnames.root, tmp_path / "run2",
                      stdin=True)
    try:
        assert failing.read_line() == "ready"
        failing.send("fail boom")
        assert failing.process.wait(timeout=30) == 3
        assert "fail_key: boom" in failing.stderr_text()
    finally:
        failing.stop()


UNIT = """\
#include <stdarg.h>
#include <stdio.h>
int traced(const char *format, ...)
{
    va_list ap;
    char *p = __func__;               /* the original's type is const char[]: a warning */
    va_start(ap, format);
    vprintf(format, ap);
    va_end(ap);
    return (int)sizeof __func__ + (__FUNCTION__ == __func__) + (p != 0);
}
int plain(int x)
{
    return printf("%s %d\\n", __PRETTY_FUNCTION__, x);
}
"""


@pytest.mark.parametrize("role", list(codegen.Role))
def test_the_names_keep_the_type_and_diagnostics_of_the_originals(tmp_path, role):
    """`__func__` stays an array of `const char` of the same size in every
    role: what the compiler says of the original it says of the generated
    unit (here: discarding `const`), with a note at the same line."""
    (tmp_path / "unit.c").write_text(UNIT)
    unit = frontend.analyse("unit.c", "gcc", ["-O2"], str(tmp_path))
    plan = codegen.UnitPlan(patched={"traced", "plain"})
    generated = codegen.transform(unit, UNIT, role, DsuPolicy().dsu_names(unit), "gen.c", plan)
    (tmp_path / "gen.c").write_text(generated)

    def diagnostics(name):
        done = run(["gcc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-function",
                    f"-I{REPO}/runtime", "-c", name, "-o", name + ".o"], tmp_path,
                   env=environment(LC_ALL="C"))
        return [line.split(" [-W")[0] for line in done.stderr.splitlines()
                if "warning:" in line or "note:" in line]
    expected = diagnostics("unit.c")
    assert expected == ["unit.c:6:15: warning: initialization discards 'const' qualifier "
                        "from pointer target type"], expected
    # the warning names psu's macro, and its note the user's line and column
    assert diagnostics("gen.c") == [
        "<psu: __func__ of traced>:4:18: warning: initialization discards 'const' qualifier "
        "from pointer target type",
        "unit.c:6:15: note: in expansion of macro '__func__'"]
