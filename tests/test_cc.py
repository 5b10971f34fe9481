"""`psu cc`, the compiler wrapper: make, CMake and Meson projects of the corpus
built with it and updated live; what it must leave alone left byte for byte
alone; the compiler's options honoured; bad input reported."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from projects import REPO, SITE_SCONS, Process, Project, environment, run

CORPUS = REPO / "tests" / "corpus"
IGNORED = "build/\n.psu-build/\npsu-patches/\n*.o\n*.d\n*.a\nstateful\n*.psu.json\nrun/\n"


def wrapper_environment(tmp_path, **extra):
    """PATH with `psu` and `psu-cc` running this checkout."""
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        for name, prefix in (("psu", ""), ("psu-cc", "cc ")):
            script = bin_dir / name
            script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m psu {prefix}"$@"\n')
            script.chmod(0o755)
    env = environment(**extra)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(SITE_SCONS)
    env.pop("PSU_CONFIG", None)
    return env


def stateful_repository(root, build_files):
    """The stateful corpus program with the given build files, tagged v1 and v2."""
    project = Project(root)
    shutil.rmtree(project.root / "site_scons")
    shutil.copytree(CORPUS / "stateful" / "src", project.root / "src")
    for name in os.listdir(build_files):
        shutil.copy(build_files / name, project.root / name)
    (project.root / ".gitignore").write_text(IGNORED)
    project.commit("v1")
    state_c = project.root / "src" / "state.c"
    state_c.write_text(state_c.read_text().replace('"v1"', '"v2"').replace("v * 2", "v * 7"))
    project.commit("v2")
    project.checkout("v1")
    return project


def update_live(tmp_path, program, bundle, cwd):
    """Run `program`, apply `bundle`, and check the answers before and after."""
    process = Process([program], cwd, tmp_path / "run", stdin=True)
    try:
        assert process.read_line() == "ready"
        process.wait_for_socket()

        ask = process.ask
        assert ask("version") == "v1" and ask("calc") == "calc 11" and ask("count") == "count 1"
        # the wrapper's runtime (compiled -fPIC) is linked into the executable: stubs too
        status = json.loads(process.psu("status", process.pid, "--json").stdout)
        assert (status["entry_hooks"], status["entry_stubs"]) == ("on", "on"), status
        applied = process.psu("apply", process.pid, bundle)
        assert applied.returncode == 0, applied.stderr
        assert ask("version") == "v2" and ask("calc") == "calc 36" and ask("count") == "count 2"
    finally:
        process.stop()


def test_make_project_with_its_unit_in_a_static_library_is_updated_live(tmp_path):
    project = stateful_repository(tmp_path / "repo", CORPUS / "make")
    env = wrapper_environment(tmp_path)
    built = run(["make", "CC=psu cc gcc"], project.root, env=env)
    assert "psu cc gcc" in built.stdout
    manifest = json.loads((project.root / "stateful.psu.json").read_text())
    assert manifest["units"]["src/state.c"]["dsu"] and not manifest["units"]["src/main.c"]["dsu"]
    # the dependency file names the user's source and headers, not psu's copy
    depfile = (project.root / "src" / "state.d").read_text()
    assert depfile.startswith("src/state.o:") and " src/state.c" in depfile
    assert " src/state.h" in depfile and ".psu.c" not in depfile
    # every compile recorded in the standard form
    commands = json.loads((project.root / ".psu-build" / "compile_commands.json").read_text())
    assert {pathlib.Path(c["file"]).name for c in commands} == {"main.c", "state.c"}
    assert all(c["arguments"][0] == "gcc" and c["directory"] == str(project.root) for c in commands)
    # nothing changed: nothing rebuilt
    assert "is up to date" in run(["make", "CC=psu cc gcc"], project.root, env=env).stdout

    made = run(["psu", "patch", "v1", "v2", "-o", tmp_path / "v1-v2.psu"], project.root,
               env=env, check=False)
    assert made.returncode == 0, made.stderr
    assert "handle  (pulled in by scale)" in made.stdout
    diff = run(["psu", "diff", "FROM=v1", "TO=v2"], project.root, env=env)   # scons patch's spelling
    assert "handle" in diff.stdout
    update_live(tmp_path, project.root / "stateful", tmp_path / "v1-v2.psu", project.root)

    # a second program linked from the same objects: psu patch asks which
    run(["psu", "cc", "gcc", "-o", "again", "src/main.o", "libstate.a", "-lpthread"],
        project.root, env=env)
    assert (project.root / "again.psu.json").exists()
    both = run(["psu", "patch", "v1", "v2"], project.root, env=env, check=False)
    assert both.returncode == 2 and "2 programs" in both.stderr and "--program" in both.stderr
    (project.root / "again").unlink()
    shutil.rmtree(project.root / ".psu-build" / "again")

    # the release build of v2 writes the bundles from the versions deployed (patch_from)
    project.checkout("v2")
    run(["make", "CC=psu cc gcc"], project.root, env=env)
    made = run(["psu", "patch", "--release"], project.root, env=env, check=False)
    assert made.returncode == 0, made.stderr
    bundle = project.root / "psu-patches" / "stateful-v1-v2.psu"
    described = run(["psu", "inspect", bundle], project.root, env=env).stdout
    assert "target   v2" in described and "base     v1" in described


@pytest.mark.parametrize("config", [None, 'units = ["src/nothing-matches/*.c"]\n'])
def test_a_build_selecting_no_dsu_unit_is_the_plain_build_byte_for_byte(tmp_path, config):
    project = stateful_repository(tmp_path / "repo", CORPUS / "make")
    if config is None:
        (project.root / "psu.toml").unlink()
    else:
        (project.root / "psu.toml").write_text(config)
    env = wrapper_environment(tmp_path)
    outputs = ["stateful", "libstate.a", "src/main.o", "src/state.o", "src/main.d", "src/state.d"]
    run(["make", "CC=gcc"], project.root, env=env)
    plain = {name: (project.root / name).read_bytes() for name in outputs}
    run(["make", "clean"], project.root, env=env)
    run(["make", "CC=psu cc gcc"], project.root, env=env)
    for name in outputs:
        assert (project.root / name).read_bytes() == plain[name], name
    assert not (project.root / "stateful.psu.json").exists()


def test_compiler_options_are_honoured(tmp_path):
    """-E and -M as written; -S, response files, several sources and -x c through psu."""
    project = stateful_repository(tmp_path / "repo", CORPUS / "make")
    root, env = project.root, wrapper_environment(tmp_path)

    def both(*args):
        plain = run(["gcc", *args], root, env=env)
        wrapped = run(["psu", "cc", "gcc", *args], root, env=env)
        return plain, wrapped
    plain, wrapped = both("-E", "-O2", "src/state.c")
    assert plain.stdout == wrapped.stdout
    plain, wrapped = both("-MM", "src/state.c")
    assert plain.stdout == wrapped.stdout
    # -S: the assembler of the DSU copy (its functions check their slots)
    run(["psu", "cc", "gcc", "-S", "-O2", "-std=gnu11", "src/state.c"], root, env=env)
    assert "psu_export_handle" in (root / "state.s").read_text()
    # a response file, two sources in one -c, one of them a DSU unit
    (root / "args.rsp").write_text("-O2 -std=gnu11 -MD\n-c src/main.c src/state.c\n")
    run(["psu", "cc", "gcc", "@args.rsp"], root, env=env)
    assert b"psu_functions" in (root / "state.o").read_bytes()
    assert b"psu_functions" not in (root / "main.o").read_bytes()
    assert "state.c" in (root / "state.d").read_text()
    assert ".psu.c" not in (root / "state.d").read_text()
    # older automake names the dependency file through the preprocessor
    run(["psu", "cc", "gcc", "-O2", "-std=gnu11", "-Wp,-MD,state.Po", "-c", "src/state.c",
         "-o", "state2.o"], root, env=env)
    assert "src/state.c" in (root / "state.Po").read_text()
    assert ".psu.c" not in (root / "state.Po").read_text()
    # compile and link in one command, the unit after -x c
    run(["psu", "cc", "gcc", "-O2", "-std=gnu11", "-o", "onestep", "src/main.c",
         "-x", "c", "src/state.c", "-x", "none", "-lpthread"], root, env=env)
    manifest = json.loads((root / "onestep.psu.json").read_text())
    assert manifest["units"]["src/state.c"]["dsu"] and not manifest["units"]["src/main.c"]["dsu"]
    answer = subprocess.run([str(root / "onestep")], input="calc\n", capture_output=True, text=True,
                            env=environment(tmp_path / "run", PSU_QUIET=1), timeout=60)
    assert answer.stdout.splitlines()[1] == "calc 11"
    # a unit psu would have to read as C against its name is refused by name
    shutil.copy(root / "src" / "state.c", root / "src" / "state.inc")
    (root / "psu.toml").write_text('units = ["src/state.*"]\n')
    refused = run(["psu", "cc", "gcc", "-c", "-x", "c", "src/state.inc"], root, env=env, check=False)
    assert refused.returncode == 2 and "src/state.inc: a DSU unit needs a .c name" in refused.stderr


def test_a_dsu_unit_of_c89_code_compiles_and_links(tmp_path):
    """`inline` is no keyword in C89: what psu adds to a unit must not need it."""
    root = tmp_path / "c89"
    root.mkdir()
    (root / "psu.toml").write_text('units = ["counter.c"]\n')
    (root / "counter.c").write_text("static int count;\nint bump(int by)\n{\n    count += by;\n"
                                    "    return count;\n}\n")
    (root / "main.c").write_text('#include <stdio.h>\nint bump(int by);\nint main(void)\n{\n'
                                 '    printf("%d\\n", bump(2) + bump(3));\n    return 0;\n}\n')
    env = wrapper_environment(tmp_path)
    for unit in ("counter.c", "main.c"):
        run(["psu", "cc", "gcc", "-std=c89", "-ansi", "-O2", "-c", unit], root, env=env)
    run(["psu", "cc", "gcc", "-o", "counter", "main.o", "counter.o"], root, env=env)
    assert (root / "counter.psu.json").exists()
    assert run([root / "counter"], root, env=environment(tmp_path / "run", PSU_QUIET=1)).stdout == "7\n"


def test_a_unit_psu_cannot_parse_fails_its_compile_with_its_location(tmp_path):
    project = stateful_repository(tmp_path / "repo", CORPUS / "make")
    env = wrapper_environment(tmp_path)
    state_c = project.root / "src" / "state.c"
    # a nested function: GNU C that gcc compiles and psu cannot read
    state_c.write_text(state_c.read_text() + "\nint doubled(int v)\n{\n"
                       "    int twice(int x) { return x * 2; }\n    return twice(v);\n}\n")
    built = run(["make", "CC=psu cc gcc"], project.root, env=env, check=False)
    assert built.returncode != 0
    assert re.search(r"^src/state\.c:\d+:\d+: psu: cannot parse a nested function", built.stderr, re.M), \
        built.stderr
    assert "Traceback" not in built.stderr
    assert not (project.root / "src" / "state.o").exists()
    # the compiler's own errors come first, as without psu
    state_c.write_text(state_c.read_text() + "\nint broken(void) { return ; }}\n")
    broken = run(["make", "CC=psu cc gcc"], project.root, env=env, check=False)
    assert broken.returncode != 0 and "error:" in broken.stderr and "psu:" not in broken.stderr


def test_a_compiler_that_is_not_gcc_compatible_is_named(tmp_path):
    project = stateful_repository(tmp_path / "repo", CORPUS / "make")
    env = wrapper_environment(tmp_path)
    other = tmp_path / "bin" / "othercc"
    # a compiler that compiles, but is not GNU C (no __GNUC__)
    other.write_text('#!/bin/sh\nexec gcc -U__GNUC__ -undef "$@"\n')
    other.chmod(0o755)
    done = run(["psu", "cc", "othercc", "-c", "src/state.c"], project.root, env=env, check=False)
    assert done.returncode == 2, done.stderr
    assert "'othercc' is not a gcc-compatible compiler" in done.stderr
    assert "Traceback" not in done.stderr
    missing = run(["psu", "cc", "no-such-cc", "-c", "src/main.c"], project.root, env=env, check=False)
    assert missing.returncode != 0 and "no-such-cc" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_recorded_flags_move_into_an_exported_revision(tmp_path):
    """Project folders are searched in the revision first, then in the build tree
    (for the headers the build generated); folders outside stay as they are."""
    from psu.buildconfig import map_flags
    top, revision = "/p", "/p/.psu-build/revisions/abc"
    flags = ["-O2", "-I/p/src", "-I/usr/include/x", "-iquote", "/p/build", "-DX=1",
             "-include", "/p/config.h"]
    assert map_flags(flags, top, revision) == [
        "-O2", "-I", "/p/.psu-build/revisions/abc/src", "-I", "/p/src", "-I", "/usr/include/x",
        "-iquote", "/p/.psu-build/revisions/abc/build", "-iquote", "/p/build", "-DX=1",
        "-include", "/p/config.h"]         # not in the revision: the build tree's
    assert map_flags(flags, top, top) == flags


def test_configuration_files(tmp_path):
    from psu import config
    from psu.errors import UsageError
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert config.find(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text('[tool.psu]\nunits = ["src/**/*.c"]\n'
                                             'exclude_units = ["src/vendor/*.c"]\n')
    (tmp_path / "sub").mkdir()
    found = config.find(tmp_path / "sub")
    assert found.root == str(tmp_path)
    assert found.is_dsu_unit(str(tmp_path / "src" / "a.c"))
    assert found.is_dsu_unit(str(tmp_path / "src" / "x" / "y" / "b.c"))
    assert not found.is_dsu_unit(str(tmp_path / "src" / "vendor" / "c.c"))
    assert not found.is_dsu_unit(str(tmp_path / "other" / "a.c"))
    (tmp_path / "psu.toml").write_text('units = ["*.c"]\nunits_typo = 1\n')
    with pytest.raises(UsageError, match="unknown setting"):
        config.find(tmp_path)
    (tmp_path / "psu.toml").write_text('units = "a.c"\n')
    with pytest.raises(UsageError, match="list of strings"):
        config.find(tmp_path)
    (tmp_path / "psu.toml").write_text('units = [\n')
    with pytest.raises(UsageError, match="not valid TOML"):
        config.find(tmp_path)
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text('units = ["a.c"]\ndirect_statics = "none"\n')
    os.environ["PSU_CONFIG"] = str(elsewhere)
    try:
        assert config.find(tmp_path / "sub").direct_statics == "none"
    finally:
        del os.environ["PSU_CONFIG"]


def test_cmake_project_through_the_launchers_is_updated_live(tmp_path):
    if not shutil.which("cmake"):
        pytest.skip("cmake is not installed (pip install cmake, in the test extra)")
    project = stateful_repository(tmp_path / "repo", CORPUS / "cmake")
    env = wrapper_environment(tmp_path)
    run(["cmake", "-S", ".", "-B", "build", "-G", "Unix Makefiles", "-DCMAKE_BUILD_TYPE=Release",
         "-DCMAKE_C_COMPILER_LAUNCHER=psu-cc", "-DCMAKE_C_LINKER_LAUNCHER=psu-cc"],
        project.root, env=env)
    run(["cmake", "--build", "build"], project.root, env=env)
    manifest = json.loads((project.root / "build" / "stateful.psu.json").read_text())
    assert manifest["units"]["src/state.c"]["dsu"]
    made = run(["psu", "patch", "v1", "v2", "-o", tmp_path / "v1-v2.psu"], project.root,
               env=env, check=False)
    assert made.returncode == 0, made.stderr
    update_live(tmp_path, project.root / "build" / "stateful", tmp_path / "v1-v2.psu", project.root)


def test_meson_project_through_cc_is_updated_live(tmp_path):
    pytest.importorskip("mesonbuild", reason="meson is installed by the test extra")
    project = stateful_repository(tmp_path / "repo", CORPUS / "meson-cc")
    env = wrapper_environment(tmp_path, CC="psu cc gcc")
    run(["meson", "setup", "build"], project.root, env=env)
    run(["meson", "compile", "-C", "build"], project.root, env=env)
    manifest = json.loads((project.root / "build" / "stateful.psu.json").read_text())
    assert manifest["units"]["src/state.c"]["dsu"]
    again = run(["ninja", "-C", "build", "-n", "-d", "explain"], project.root, env=env)
    assert "no work to do" in again.stdout
    made = run(["psu", "patch", "v1", "v2", "-o", tmp_path / "v1-v2.psu"], project.root,
               env=env, check=False)
    assert made.returncode == 0, made.stderr
    update_live(tmp_path, project.root / "build" / "stateful", tmp_path / "v1-v2.psu", project.root)
