"""Issue 10, code generation: every function can be patched (variadic and K&R
definitions), functions and state a patch adds link where the unit's functions
are declared hidden, and an update says which replaced functions may still be
running their old version.

The program (tests/corpus/everyfn) answers commands on stdin; two threads
check the variadic and K&R functions' results without pause while updates are
applied.  Revisions are made from v1 by text edits, tagged in a git repository.
"""
import json
import shutil

import pytest

from projects import REPO, Process, Project, psu, wait_until

CORPUS = REPO / "tests" / "corpus" / "everyfn"
CORE_C, CORE_INTERNAL_H = "src/core.c", "src/core_internal.h"


def edit(project, path, *replacements):
    file = project.root / path
    text = file.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    file.write_text(text)


def revision(project, base, tag, *edits):
    """Tag `tag`: revision `base` with `edits` ((path, old, new), ...) applied."""
    project.checkout(base)
    for path, old, new in edits:
        edit(project, path, (old, new))
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


@pytest.fixture(scope="module")
def everyfn(tmp_path_factory):
    project = Project(tmp_path_factory.mktemp("everyfn") / "repo")
    shutil.copytree(CORPUS, project.root, dirs_exist_ok=True)
    project.commit("v1")
    revision(project, "v1", "hidden-added", *ADD_HIDDEN_FUNCTION)
    revision(project, "v1", "state-added", *ADD_STATE)
    project.checkout("v1")
    project.build()
    return project


class Program:
    def __init__(self, project, tmp_path):
        self.process = Process([project.root / "everyfn"], project.root, tmp_path / "run",
                               stdin=True)
        assert self.process.read_line() == "ready"
        self.process.wait_for_socket()

    def __call__(self, command):
        self.process.process.stdin.write(command + "\n")
        self.process.process.stdin.flush()
        return self.process.read_line()

    def apply(self, bundle):
        done = self.process.psu("apply", self.process.pid, bundle)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def stop(self):
        self.process.process.stdin.close()
        self.process.stop()


@pytest.fixture
def program(everyfn, tmp_path):
    running = Program(everyfn, tmp_path)
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
    hidden reaches them through their exported aliases, not their plain names."""
    everyfn.patch("v1", "state-added")
    assert program("step") == "21"
    program.apply(everyfn.bundle("everyfn", "v1", "state-added"))
    assert [program("step") for _ in range(2)] == ["61", "62"]
