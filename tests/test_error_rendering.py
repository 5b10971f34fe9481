"""Every front end reports a library error the same way (console.report_error):
one `psu: ` prefix, the hint on its own line, the exit code of the error's class.

The error is real: the compiler named by the build does not exist.  psu's
front end (frontend.py) raises it with a message that still carries its own
`psu: ` (the old spelling the renderer strips) and `psu cc` raises it without
one; either way a user reads the same two lines."""
import sys

import pytest

from projects import REPO, Project, environment, run, scons

MISSING_CC = "/nonexistent/psu-test-cc"
EXPECTED = [f"psu: compiler '{MISSING_CC}' not found",
            "psu: hint: set CC to a C compiler"]
EXIT_TOOL = 4     # errors.ToolError (docs/operations.md)

UNIT = "int twice(int x) { return 2 * x; }\nint main(void) { return twice(0); }\n"
SCONSTRUCT = f"""\
env = Environment(tools=['default', 'psu'], CC={MISSING_CC!r})
env.PSUProgram('app', ['app.c'], PSU_UNITS=['app.c'])
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """One unit, built by SCons and by `psu cc` (psu.toml), committed as v1."""
    project = Project(tmp_path_factory.mktemp("rendering"))
    project.commit("v1", {"app.c": UNIT, "SConstruct": SCONSTRUCT, "psu.toml": 'units = ["*.c"]\n'})
    return project


def psu_lines(stderr):
    """The lines psu wrote on stderr (SCons adds its own, starting `scons:`)."""
    return [line for line in stderr.splitlines() if line.startswith("psu: ")]


def test_the_psu_command_renders_the_error(project):
    done = run([sys.executable, "-m", "psu", "unit", "app.c", "--cc", MISSING_CC,
                "--analysis", "app.unit.json"], project.root, check=False)
    assert done.stderr.splitlines() == EXPECTED
    assert done.returncode == EXIT_TOOL


def test_the_compiler_wrapper_renders_the_error(project):
    env = environment()
    env.pop("PSU_CONFIG", None)
    done = run([sys.executable, "-m", "psu", "cc", MISSING_CC, "-c", "app.c"], project.root,
               env=env, check=False)
    assert done.stderr.splitlines() == EXPECTED
    assert done.returncode == EXIT_TOOL


def test_scons_patch_renders_the_error_and_exits_with_its_code(project):
    done = project.patch("v1", "WORKTREE", check=False)
    assert psu_lines(done.stderr) == EXPECTED
    assert done.returncode == EXIT_TOOL


def test_a_scons_build_step_renders_the_error(project):
    # a failed build step is SCons's to report (its exit status 2, and the
    # step's status in its own line); psu's lines are the same as elsewhere
    done = scons(project.root, check=False)
    assert psu_lines(done.stderr) == EXPECTED
    assert f"Error {EXIT_TOOL}" in done.stderr and done.returncode == 2


def test_scons_patch_with_nothing_to_patch_exits_6_as_documented(tmp_path):
    # docs/operations.md: `scons patch` exits with psu patch's codes, 6 for
    # nothing to patch (it used to fail the step and end with SCons's 2)
    project = Project(tmp_path / "same")
    project.commit("v1", {"app.c": UNIT, "SConstruct": SCONSTRUCT.replace(f", CC={MISSING_CC!r}", "")})
    done = project.patch("v1", "v1", check=False)
    [line] = psu_lines(done.stderr)
    assert line.startswith("psu: v1 and v1 build the same code") and \
        line.endswith("there is nothing to patch")
    assert done.returncode == 6


def test_the_renderer_adds_one_prefix_and_keeps_a_c_diagnostic(capsys):
    from psu import console
    from psu.errors import CSourceError, RefusedChanges, UsageError
    assert console.report_error(UsageError("x.c: bad setting")) == 2
    assert capsys.readouterr().err == "psu: x.c: bad setting\n"
    assert console.report_error(CSourceError("x.c", 3, 7, "cannot parse")) == 5
    assert capsys.readouterr().err == "x.c:3:7: psu: cannot parse\n"
    # a refusal: its report on stdout, then the message and the hint on stderr
    assert console.report_error(RefusedChanges(["f: its type changed"], report="the report")) == 3
    printed = capsys.readouterr()
    assert printed.out == "the report\n"
    assert printed.err == ("psu: 1 change(s) cannot be applied live:\n  f: its type changed\n"
                           "psu: hint: see docs/refusals.md for what to do about each kind\n")


def test_library_messages_leave_the_prefix_to_the_renderer():
    """No raise site of the package writes `psu: ` itself (it would print twice)."""
    import re
    package = REPO / "site_scons" / "psu"
    prefixed = [f"{path.name}:{text[:match.start()].count(chr(10)) + 1}"
                for path in sorted(package.glob("*.py"))
                for text in [path.read_text()]
                for match in re.finditer(r'(?:Error|NoChanges|Changes)\(\s*f?"psu: ', text)]
    assert prefixed == []
