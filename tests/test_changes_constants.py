"""Issue 10: changed constants reach the new code or are refused by name;
changed initializers of existing state are refused; PSU_ACCEPT accepts a
refusal by name only; `scons patch` exits 3 on a refusal.

The program reads commands on stdin; `src/app.c` and `src/consts.c` are DSU
units, `src/main.c` is not.
"""
import pytest

from projects import CommandProgram, Project, psu

SCONSTRUCT = """\
env = Environment(tools=['default', 'psu'])
env.Append(CCFLAGS=['-O2', '-Wall'], CFLAGS=['-std=gnu11'])
accept = [name for name in ARGUMENTS.get('ACCEPT', '').split(',') if name]
env.PSUProgram('consts', Glob('src/*.c'), PSU_UNITS=['src/app.c', 'src/consts.c'], PSU_ACCEPT=accept)
"""

APP_H = """\
#ifndef APP_H
#define APP_H
enum level { LOW, MID, HIGH };
extern const char version_text[];
extern const int weights[];
extern const int *heaviest;
const char *version(void);
void handle(const char *command, char *out, unsigned long size);
#endif
"""

CONSTS_C = """\
#include "app.h"
const char version_text[] = "1.0";
const int weights[] = { 10, 20, 30, 40 };
"""

APP_C = """\
#include <stdio.h>
#include <string.h>
#include "app.h"
const char *version(void) { return version_text; }
void handle(const char *command, char *out, unsigned long size)
{
    if (strcmp(command, "version") == 0)
        snprintf(out, size, "version %s", version());
    else if (strcmp(command, "weight") == 0)
        snprintf(out, size, "weight %d", weights[MID]);
    else
        snprintf(out, size, "unknown %s", command);
}
"""

MAIN_C = """\
#include <stdio.h>
#include <string.h>
#include "app.h"
int main(void)
{
    char line[256], out[256];
    printf("ready %s\\n", "main");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\\n")] = 0;
        handle(line, out, sizeof out);
        printf("%s\\n", out);
        fflush(stdout);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = Project(tmp_path_factory.mktemp("consts") / "repo")
    project.commit("v1", {"SConstruct": SCONSTRUCT, "src/app.h": APP_H, "src/consts.c": CONSTS_C,
                          "src/app.c": APP_C, "src/main.c": MAIN_C})
    # v2: the version string and a table change; no reader's text does
    project.commit("v2", {"src/consts.c": CONSTS_C.replace('"1.0"', '"2.0"').replace("20, 30", "25, 35")})
    # v3: main prints the version itself (main is outside the DSU units)
    project.commit("v3", {"src/main.c": MAIN_C.replace('"main"', "version_text")})
    # v4: a new version, which main (reading it) cannot see
    project.commit("v4", {"src/consts.c": CONSTS_C.replace('"1.0"', '"4.0"')})
    project.checkout("v1")
    project.build()
    return project


def Running(project, tmp_path):
    return CommandProgram(project.root / "consts", project.root, tmp_path / "run")


def test_a_changed_constant_reaches_every_reader_in_the_running_process(project, tmp_path):
    done = project.patch("v1", "v2")
    assert "version  (pulled in by version_text (constant))" in done.stdout
    assert "handle  (pulled in by weights (constant))" in done.stdout
    running = Running(project, tmp_path)
    try:
        assert running("version") == "version 1.0" and running("weight") == "weight 20"
        running.apply(project.bundle("consts", "v1", "v2"))
        assert running("version") == "version 2.0" and running("weight") == "weight 25"
    finally:
        running.stop()


def test_a_reader_that_cannot_be_replaced_is_refused_naming_constant_and_reader(project):
    project.checkout("v3")
    try:
        project.build()
        done = project.patch("v3", "v4", check=False)
        assert done.returncode == 3, done.stdout + done.stderr
        assert ("src/main.c:4: stale-constant: main: reads version_text, whose value changed, and "
                "it is outside the DSU units") in done.stderr
        assert "PSU_ACCEPT=['stale:main']" in done.stderr
        assert not project.bundle("consts", "v3", "v4").exists()
    finally:
        project.checkout("v1")


def test_accepting_a_stale_reader_by_name_applies_the_rest(project, tmp_path):
    project.checkout("v3")
    try:
        project.build()
        done = project.patch("v3", "v4", extra=["ACCEPT=stale:main"])
        assert "accepted stale:main" in done.stdout
        # the build description carries the acceptance to psu diff and psu patch
        project.build("ACCEPT=stale:main")
        diff = psu("diff", "--config", ".psu-build/consts/build.json", "v3", "v4", cwd=project.root)
        assert diff.returncode == 0 and "accepted stale:main" in diff.stdout, diff.stderr
        running = Running(project, tmp_path)
        try:
            assert running.first == "ready 2.0"
            running.apply(project.bundle("consts", "v3", "v4"))
            assert running("version") == "version 4.0"
        finally:
            running.stop()
    finally:
        project.checkout("v1")
        project.build()


def test_state_computed_from_a_changed_constant_is_refused_by_name(project):
    project.checkout("v1")
    app = project.root / "src" / "app.c"
    header = project.root / "src" / "app.h"
    try:
        app.write_text(APP_C + "const int *heaviest = &weights[HIGH - LOW];\n")
        project.git("commit", "-qam", "heaviest")
        project.git("tag", "-f", "heavy")
        header.write_text(APP_H.replace("LOW, MID", "LOW, LOWER, MID"))
        done = project.patch("heavy", "WORKTREE", check=False)
        assert done.returncode == 3
        assert ("src/app.c:14: state-init: heaviest: initializer changed (in its text, or in a "
                "constant, enumerator or macro it is computed from)") in done.stderr
        assert "PSU_ACCEPT=['init:heaviest']" in done.stderr
    finally:
        project.git("checkout", "--", ".")
        project.checkout("v1")


def test_a_state_transformer_sets_state_computed_from_a_changed_constant(project, tmp_path):
    """A static computed from an enumerator: its transformer recomputes the
    running value when the bundle loads (same type, same storage)."""
    project.checkout("v1")
    app = project.root / "src" / "app.c"
    header = project.root / "src" / "app.h"
    with_state = APP_C.replace(
        '#include "app.h"\n', '#include "app.h"\nstatic const int *heaviest_static = &weights[HIGH - LOW];\n').replace(
        '    else\n        snprintf(out, size, "unknown',
        '    else if (strcmp(command, "heaviest") == 0)\n'
        '        snprintf(out, size, "heaviest %d", *heaviest_static);\n'
        '    else\n        snprintf(out, size, "unknown')
    try:
        app.write_text(with_state)
        project.git("commit", "-qam", "heaviest static")
        project.git("tag", "-f", "heavy-static")
        project.build()
        header.write_text(APP_H.replace("LOW, MID", "LOW, LOWER, MID"))
        app.write_text(with_state + "int psu_transform_heaviest_static(void *old)\n"
                       "{\n    (void)old;\n    heaviest_static = &weights[HIGH - LOW];\n    return 0;\n}\n")
        project.git("commit", "-qam", "renumbered")
        project.git("tag", "-f", "heavy-renumbered")
        done = project.patch("heavy-static", "heavy-renumbered")
        assert "psu_transform_heaviest_static() sets the running value when the bundle loads" in done.stdout
        running = Running(project, tmp_path)
        try:
            assert running("heaviest") == "heaviest 30"
            running.apply(project.bundle("consts", "heavy-static", "heavy-renumbered"))
            assert running("heaviest") == "heaviest 40" and running("weight") == "weight 30"
        finally:
            running.stop()
    finally:
        project.checkout("v1")
        project.build()


def test_a_declaration_added_to_a_header_of_a_unit_outside_the_dsu_units_is_no_change(project):
    """main.c (not a DSU unit) includes app.h: a declaration added there changes
    none of main.c's definitions, so the patch applies (issue 10, defect 4)."""
    project.checkout("v1")
    try:
        (project.root / "src" / "app.h").write_text(APP_H.replace("#endif", "int declared_later(int);\n#endif"))
        (project.root / "src" / "app.c").write_text(APP_C.replace("weights[MID]", "weights[HIGH]"))
        done = project.patch("v1", "WORKTREE", check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "replaced:\n    handle" in done.stdout
    finally:
        project.git("checkout", "--", ".")
