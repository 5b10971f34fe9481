"""Issue 15, calls inside a bundle: a bundle's code calls the functions it
provides directly (each version begins by checking that its slot still names
it), so recursion runs as in the plain build -- and every SPEC §2 guarantee
still holds when a further update switches those functions mid-recursion.

The program (tests/corpus/selfcalls) runs a recursive `walk` and the mutually
recursive `is_even`/`is_odd` in a thread that waits at a chosen level; each
call leaves its version's digit in a trace on entry and on exit, and on exit
also the value `leaf` (patched by every revision) gives."""
import json
import platform
import subprocess

import pytest

from projects import CommandProgram, Project, REPO, wait_until

CORPUS = REPO / "tests" / "corpus" / "selfcalls"
WALK_C = "src/walk.c"


def version(digit):
    """walk.c as revision `digit` writes it: every DSU function's digit changed."""
    return [(f"record('{c}', 1);", f"record('{c}', {digit});") for c in "><eo"] + \
        [("int leaf(void)\n{\n    return 1;", f"int leaf(void)\n{{\n    return {digit};")]


@pytest.fixture(scope="module")
def selfcalls(tmp_path_factory):
    project = Project.from_corpus(tmp_path_factory.mktemp("selfcalls") / "repo", CORPUS)
    for digit in (2, 3):
        project.checkout("v1")
        text = (project.root / WALK_C).read_text()
        for old, new in version(digit):
            assert old in text, old
            text = text.replace(old, new)
        (project.root / WALK_C).write_text(text)
        project.commit(f"v{digit}")
    project.checkout("v1")
    project.build()
    project.patch("v1", "v2")
    project.patch("v2", "v3")
    return project


@pytest.fixture
def program(selfcalls, tmp_path):
    running = CommandProgram(selfcalls.root / "selfcalls", selfcalls.root, tmp_path / "run")
    assert running.first == "ready"
    running.apply(selfcalls.bundle("selfcalls", "v1", "v2"))
    yield running
    running.stop()


def test_a_bundle_generates_direct_calls_to_the_functions_it_provides(selfcalls):
    """The code role calls its own versions through the check of their slots;
    the versions themselves (which the program's general path calls) are as written."""
    generated = next((selfcalls.root / ".psu-build" / "patches").glob("selfcalls-*/code/src/walk.c"))
    text = generated.read_text()
    assert "r = psu_self_walk(n - 1);" in text
    assert "return psu_self_is_odd(n - 1)" in text and "return psu_self_is_even(n - 1);" in text
    for name in ("walk", "leaf", "is_even", "is_odd"):
        assert f"psu_version_is_current(&psu_slot_{name}_" in text
    assert "record('=', psu_self_leaf());" in text
    assert "int psu_impl_walk(int n)\n{\n" in text      # the version itself, as written


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 relocation names")
def test_a_bundle_calls_other_modules_without_plt_stubs(selfcalls):
    """Loaded with every symbol bound, a bundle calls the program's and the C
    library's functions through its GOT (snprintf here): no lazily bound stub."""
    for code in (selfcalls.root / ".psu-build" / "patches").glob("selfcalls-*/code.so"):
        relocations = subprocess.run(["readelf", "-rW", str(code)], capture_output=True,
                                     text=True, check=True).stdout
        assert "R_X86_64_JUMP_SLOT" not in relocations, relocations
        assert "snprintf" in relocations


def test_recursion_in_a_bundle_runs_the_newest_version_after_a_switch_mid_recursion(
        selfcalls, program):
    """Guarantee 1: the calls already running finish in v2's version; guarantee 2:
    every call that begins after v3's switch -- the deeper recursive calls made
    from v2's code, and `leaf`, patched by v2 then by v3, called from v2's code --
    runs v3.  v2's module stays while its calls run and unloads once they return."""
    assert program("walk 3") == "4 >2>2>2>2<2=2<2=2<2=2<2=2"
    assert program("start walk 4 2") == "paused"
    process = program.process
    answer = process.request(f"apply {selfcalls.bundle('selfcalls', 'v2', 'v3')}")
    assert answer["ok"], answer
    assert {"function": "walk", "label": "v2", "module": 1, "certain": True} in \
        answer["old_versions_running"]
    assert "psu-v2-code" in process.maps()
    assert program("go") == "5 >2>2>2>3>3<3=3<3=3<2=3<2=3<2=3"
    assert program("walk 2") == "3 >3>3>3<3=3<3=3<3=3"
    assert wait_until(lambda: "psu-v2-code" not in process.maps(), timeout=10)
    status = json.loads(process.psu("status", process.pid, "--json").stdout)
    assert [m["label"] for m in status["modules"]] == ["v1", "v3"]


def test_mutual_recursion_in_a_bundle_runs_the_newest_version_after_a_switch(
        selfcalls, program):
    assert program("even 4") == "1 e2o2e2o2e2"
    assert program("start even 5 2") == "paused"
    process = program.process
    answer = process.request(f"apply {selfcalls.bundle('selfcalls', 'v2', 'v3')}")
    assert answer["ok"], answer
    assert program("go") == "0 e2o2e2o2e3o3"
    assert program("odd 3") == "1 o3e3o3e3"
    assert wait_until(lambda: "psu-v2-code" not in process.maps(), timeout=10)
