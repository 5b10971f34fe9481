"""A function pointer a bundle's code stores outlives the bundle (SPEC §4.2:
pointers to a DSU function reach its newest version): the address of a
static DSU function taken in a bundle is the program's function, not a
forwarder in the bundle's code object, which is unmapped once it unloads.

The program (tests/corpus/fnptr): `install` stores the static `twice` in a
variable, `call` calls through it.  v2 changes `install`; v3 changes
`version` and carries `install`, so v2's module unloads."""

import pytest

from projects import CommandProgram, Project, REPO, wait_until

CORPUS = REPO / "tests" / "corpus" / "fnptr"


@pytest.fixture(scope="module")
def fnptr(tmp_path_factory):
    project = Project.from_corpus(tmp_path_factory.mktemp("fnptr") / "repo", CORPUS,
                                  ignored=["/fnptr"])
    cb = project.root / "src" / "cb.c"
    cb.write_text(cb.read_text().replace("handler = twice;", "handler = twice; (void)2;")
                  .replace("return 1;", "return 2;"))
    project.commit("v2")
    cb.write_text(cb.read_text().replace("return 2;", "return 3;"))
    project.commit("v3")
    project.checkout("v1")
    project.build()
    project.patch("v1", "v2")
    project.patch("v2", "v3")
    return project


def test_an_address_taken_in_a_bundle_outlives_it(fnptr, tmp_path):
    generated = next((fnptr.root / ".psu-build" / "patches").glob("fnptr-*/code/src/cb.c"))
    assert "handler = psu_ext_twice;" in generated.read_text()
    program = CommandProgram(fnptr.root / "fnptr", fnptr.root, tmp_path / "run")
    try:
        assert program.first == "ready"
        program.apply(fnptr.bundle("fnptr", "v1", "v2"))
        assert program("install") == "installed"        # by v2's code
        assert program("call 5") == "10"
        program.apply(fnptr.bundle("fnptr", "v2", "v3"))
        assert program("version") == "3"
        assert wait_until(lambda: "psu-v2-code" not in program.process.maps(), timeout=10)
        assert program("call 5") == "10"
    finally:
        program.stop()
