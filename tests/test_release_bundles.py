"""Release builds produce bundles: `PSU_PATCH_FROM` names the versions still
deployed, and the ordinary SCons build writes one bundle from each of them to
the version it builds, as build outputs."""
import shutil

from projects import REPO, Process, Project

STATEFUL = REPO / "tests" / "corpus" / "stateful"


def test_release_build_writes_bundles_as_build_outputs(tmp_path):
    project = Project(tmp_path / "repo")
    shutil.copytree(STATEFUL / "src", project.root / "src")
    sconstruct = (STATEFUL / "SConstruct").read_text()
    assert "PSU_UNITS=['src/state.c'])" in sconstruct
    (project.root / "SConstruct").write_text(
        sconstruct.replace("PSU_UNITS=['src/state.c'])",
                           "PSU_UNITS=['src/state.c'], PSU_PATCH_FROM=['v1'])"))
    with open(project.root / ".gitignore", "a") as f:
        f.write("stateful\n")
    project.commit("v1")
    # the release build of v1 itself: nothing to update from v1, no bundle
    first = project.build()
    assert "no bundle" in first.stdout
    shutil.copy(project.root / "stateful", tmp_path / "stateful-v1")

    state_c = project.root / "src" / "state.c"
    state_c.write_text(state_c.read_text().replace('"v1"', '"v2"').replace("v * 2", "v * 7"))
    project.commit("v2")
    built = project.build()
    bundle = project.bundle("stateful", "v1", "v2")
    assert bundle.exists(), built.stdout
    assert "handle  (pulled in by scale)" in built.stdout
    # up to date when nothing changed
    again = project.build()
    assert "psu: making" not in again.stdout and "is up to date" in again.stdout

    process = Process([tmp_path / "stateful-v1"], project.root, tmp_path / "run", stdin=True)
    try:
        assert process.read_line() == "ready"
        process.wait_for_socket()
        applied = process.psu("apply", process.pid, bundle)
        assert applied.returncode == 0, applied.stderr
        assert process.ask("calc") == "calc 36"
    finally:
        process.stop()

    project.build("-c")
    assert not bundle.exists() and not (project.root / "stateful").exists()


def test_an_unknown_deployed_version_is_named(tmp_path):
    project = Project(tmp_path / "repo")
    shutil.copytree(STATEFUL / "src", project.root / "src")
    (project.root / "SConstruct").write_text(
        (STATEFUL / "SConstruct").read_text().replace(
            "PSU_UNITS=['src/state.c'])", "PSU_UNITS=['src/state.c'], PSU_PATCH_FROM=['v0.9'])"))
    project.commit("v1")
    failed = project.build(check=False)
    assert failed.returncode == 2
    assert "PSU_PATCH_FROM of stateful: FROM=v0.9: not a revision" in failed.stderr
