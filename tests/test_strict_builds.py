"""Real builds under strict flags (tests/corpus/strict): psu's generated code
adds no warning to a warning-free DSU unit, a string define written for the
shell reaches psu's preprocessing as the compiler sees it, and tables of an
anonymous struct type sized by their initializers are bound in a bundle.

The corpus builds with -Werror and every strict warning (its SConstruct), in
gnu99, gnu11 and C89 (-std=c89 -ansi), as a program and as a bundle.
"""
import shutil

import pytest

from projects import Project, REPO, run
from test_cc import wrapper_environment

CORPUS = REPO / "tests" / "corpus" / "strict"
UNIT_C = "src/unit.c"
STRICT = ["-Wall", "-Wextra", "-Werror", "-pedantic", "-Wdeclaration-after-statement",
          "-Wcast-qual", "-Wredundant-decls", "-Wdeprecated-declarations",
          "-Wstrict-prototypes", "-Wmissing-prototypes", "-Wshadow"]


def make_v2(project):
    """v2 (the unit): the uses of the tables change."""
    project.edit(UNIT_C, ('"%s=%d", command + 7', '"%s is %d", command + 7'),
                 ("return ++counters[i].hits;", "return counters[i].hits += 10;"),
                 ("return names[i].value;", "return names[i].value * 100;"),
                 ("return (int)i * 10 + ++levels[i].seen;", "return (int)i * 100 + ++levels[i].seen;"),
                 ("return directives[i].handler(v);", "return directives[i].handler(v) + 1000 * directives[i].uses;"))
    # and a variable and a function are added (the bundle's state object)
    project.edit("src/unit.h", ("int total_calls(void);", "int total_calls(void);\nint next_added(void);"))
    project.edit(UNIT_C, ("static int calls;", "static int calls;\nstatic int added_total = 40;\n\n"
                                                        "int next_added(void)\n{\n    return ++added_total;\n}"),
                 ('    else if (strncmp(command, "run ", 4) == 0)',
                  '    else if (strcmp(command, "added") == 0)\n'
                  '        sprintf(text, "added %d", next_added());\n'
                  '    else if (strncmp(command, "run ", 4) == 0)'))


@pytest.mark.parametrize("std", ["gnu99", "gnu11", "c89"])
def test_strict_program_and_bundle_build_with_werror_and_apply(std, tmp_path):
    project = Project(tmp_path / "repo")
    shutil.copytree(CORPUS, project.root, dirs_exist_ok=True)
    (project.root / ".gitignore").write_text(
        ".psu-build/\npsu-patches/\n*.o\n*.psu.json\n.sconsign.dblite\nstrict\n")
    project.commit("v1")
    project.edit("SConstruct", ('\\\\"1.0\\\\"', '\\\\"2.0\\\\"'))     # the string define
    make_v2(project)
    project.commit("v2")
    project.checkout("v1")
    project.build(f"STD={std}")    # -Werror: any warning of psu's code fails here, and in the bundle
    running = project.start("strict", tmp_path / "run")
    try:
        assert running("version") == "version 1.0"
        assert running("lookup two") == "two=2"
        assert running("hit b") == "hits 1"
        assert running("run twice") == "14"
        assert running("run square") == "49"
        assert running("level high") == "level 41"
        assert running("level nothing") == "level 5"
        # the deployed build's manifest: FROM is analysed with the define it was built with
        deployed = shutil.copy(project.root / "strict.psu.json", tmp_path / "deployed.psu.json")
        project.checkout("v2")
        patched = project.patch("v1", "v2", extra=[f"STD={std}", f"FROM_MANIFEST={deployed}"])
        assert "handle" in patched.stdout
        done = running.process.psu("apply", running.process.pid, project.bundle("strict", "v1", "v2"))
        assert done.returncode == 0, done.stderr
        assert running("version") == "version 2.0"
        assert running("lookup three") == "three is 300"
        # the mutable table is the running program's: its count goes on
        assert running("hit b") == "hits 11"
        assert running("hit a") == "hits 10"
        # the global table too: its handlers and use counts are the program's
        assert running("run twice") == "2014"
        assert running("run square") == "2049"
        assert running("level high") == "level 402"
        assert running("level mid") == "level 201"
        assert running("level nothing") == "level 5"
        assert running("added") == "added 41"
        assert running("added") == "added 42"
        assert running("banner") == "banner 12"
    finally:
        running.stop()


def test_strict_c89_unit_through_the_compiler_wrapper(tmp_path):
    """The same unit through `psu cc` (a make-style build): program and bundle
    compiled with the user's recorded flags, -Werror included."""
    project = Project(tmp_path / "repo")
    shutil.rmtree(project.root / "site_scons")
    shutil.copytree(CORPUS / "src", project.root / "src")
    (project.root / "psu.toml").write_text('units = ["src/unit.c"]\n')
    (project.root / ".gitignore").write_text(".psu-build/\n*.o\nstrict\n*.psu.json\n")
    project.commit("v1")
    make_v2(project)
    project.commit("v2")
    project.checkout("v1")
    env = wrapper_environment(tmp_path)
    flags = ["-std=c89", "-ansi", "-O2", *STRICT, '-DVERSION="1.0"']
    for unit in ("main", "unit"):
        run(["psu", "cc", "gcc", *flags, "-c", "-o", f"src/{unit}.o", f"src/{unit}.c"],
            project.root, env=env)
    run(["psu", "cc", "gcc", "-o", "strict", "src/main.o", "src/unit.o"], project.root, env=env)
    bundle = tmp_path / "strict-v1-v2.psu"
    made = run(["psu", "patch", "v1", "v2", "-o", bundle], project.root, env=env, check=False)
    assert made.returncode == 0, made.stdout + made.stderr
    running = project.start("strict", tmp_path / "run")
    try:
        assert running("lookup two") == "two=2"
        assert running("hit a") == "hits 1"
        done = running.process.psu("apply", running.process.pid, bundle)
        assert done.returncode == 0, done.stderr
        assert running("version") == "version 1.0"
        assert running("lookup two") == "two is 200"
        assert running("hit a") == "hits 11"
        assert running("level low") == "level 101"
        assert running("added") == "added 41"
    finally:
        running.stop()


def test_a_patch_of_a_function_naming_an_array_psu_cannot_size_is_refused_by_name(tmp_path):
    """A mutable array sized by an initializer psu cannot count is not bound (a
    bundle keeps `sizeof` of it compiling); a patch of a function naming it would
    fork its state, so it is refused, naming the function, the array and why."""
    project = Project(tmp_path / "repo")
    shutil.copytree(CORPUS, project.root, dirs_exist_ok=True)
    (project.root / ".gitignore").write_text(
        ".psu-build/\npsu-patches/\n*.o\n*.psu.json\n.sconsign.dblite\nstrict\n")
    project.commit("v1")
    project.edit(UNIT_C, ("return (int)sizeof banner;", "return (int)sizeof banner + 1;"))
    project.commit("v2")
    project.checkout("v1")
    project.build()
    refused = project.patch("v1", "v2", check=False)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "src/unit.c:" in refused.stdout and "state-binding: banner_size:" in refused.stdout
    assert "banner (psu cannot count the elements its initializer gives it)" in refused.stdout
