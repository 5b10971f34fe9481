"""The thin Meson front end: a Meson project builds a DSU program through
`python -m psu unit/program`, and `psu patch` updates it live."""
import shutil

import pytest

from projects import REPO, Process, Project, environment, psu, run

pytest.importorskip("mesonbuild", reason="meson is installed by the test extra")


def test_meson_project_is_built_and_updated_live(tmp_path):
    project = Project(tmp_path / "repo")
    shutil.copytree(REPO / "tests" / "corpus" / "stateful" / "src", project.root / "src")
    shutil.copy(REPO / "tests" / "corpus" / "meson" / "meson.build", project.root)
    (project.root / ".gitignore").write_text("build/\n.psu-build/\n")
    project.commit("v1")
    state_c = project.root / "src" / "state.c"
    state_c.write_text(state_c.read_text().replace('"v1"', '"v2"').replace("v * 2", "v * 7"))
    project.commit("v2")
    project.checkout("v1")

    env = environment()
    run(["meson", "setup", "build"], project.root, env=env)
    run(["meson", "compile", "-C", "build"], project.root, env=env)
    manifest = (project.root / "build" / "stateful.psu.json").read_text()
    assert '"src/state.c:calc"' in manifest

    bundle = tmp_path / "v1-v2.psu"
    made = psu("patch", "--config", "build/build.json", "v1", "v2", "-o", bundle, cwd=project.root)
    assert made.returncode == 0, made.stderr
    assert "handle  (pulled in by scale)" in made.stdout

    process = Process([project.root / "build" / "stateful"], project.root, tmp_path / "run", stdin=True)
    try:
        assert process.read_line() == "ready"
        process.wait_for_socket()

        ask = process.ask
        assert ask("calc") == "calc 11" and ask("count") == "count 1"
        applied = process.psu("apply", process.pid, bundle)
        assert applied.returncode == 0, applied.stderr
        assert ask("version") == "v2" and ask("calc") == "calc 36" and ask("count") == "count 2"
    finally:
        process.stop()


def test_meson_rebuilds_a_unit_when_its_header_changes(tmp_path):
    project = Project(tmp_path / "repo")
    shutil.copytree(REPO / "tests" / "corpus" / "stateful" / "src", project.root / "src")
    shutil.copy(REPO / "tests" / "corpus" / "meson" / "meson.build", project.root)
    env = environment()
    run(["meson", "setup", "build"], project.root, env=env)
    run(["meson", "compile", "-C", "build"], project.root, env=env)
    again = run(["ninja", "-C", "build", "-n", "-d", "explain"], project.root, env=env)
    assert "no work to do" in again.stdout
    header = project.root / "src" / "state.h"
    header.write_text(header.read_text() + "\n/* touched */\n")
    rebuilt = run(["ninja", "-C", "build"], project.root, env=env).stdout
    assert "Generating src_state_c" in rebuilt and "src_main.c.o" in rebuilt
