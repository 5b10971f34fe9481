"""`pip install .` gives a working package: the `psu` command, the templates and
runtime sources as package data, and the SCons tool with one documented line."""
import os
import shutil
import subprocess
import sys

import pytest

from projects import REPO, run

CORPUS = REPO / "tests" / "corpus" / "constructs"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    # a copy of the checkout, so the build leaves nothing behind in the repository
    source = tmp_path_factory.mktemp("source") / "psu"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", "*.egg-info", "build", "__pycache__", ".psu-build", "bench", "tests"))
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--target", target, source], tmp_path_factory.getbasetemp())
    return target


def clean_env(site):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def test_psu_command_runs_from_any_directory(installed, tmp_path):
    env = clean_env(installed)
    for command in ([installed / "bin" / "psu", "--help"], [sys.executable, "-m", "psu", "--help"]):
        done = subprocess.run([str(c) for c in command], cwd=tmp_path, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "apply" in done.stdout and "rollback" in done.stdout


def test_package_data_is_installed(installed, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "import psu, psu.resources as r; print(psu.__file__); "
         "print(r.templates_dir()); print(len(r.runtime_sources())); print(r.runtime_sources_dir())"],
        cwd=tmp_path, env=clean_env(installed), capture_output=True, text=True)
    where, templates, sources, runtime = done.stdout.split()
    assert where.startswith(str(installed)) and templates.startswith(str(installed))
    assert runtime.startswith(str(installed)) and int(sources) >= 4
    assert os.path.exists(os.path.join(runtime, "psu_fast.h"))
    assert os.path.exists(os.path.join(os.path.dirname(where), "include", "stdatomic.h"))


def test_scons_tool_works_from_the_installed_package(installed, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(CORPUS, project)
    (project / "site_scons").mkdir()
    (project / "site_scons" / "site_init.py").write_text("import psu; psu.add_to_toolpath()\n")
    done = subprocess.run([sys.executable, "-m", "SCons", "-Q"], cwd=project,
                          env=clean_env(installed), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(installed) in done.stdout          # the runtime compiled from the package
    output = run([project / "constructs"], project, env={"PSU_DISABLE": "1"}).stdout
    assert "fib(20)=6765" in output


def test_psu_cc_is_installed_as_one_word(installed, tmp_path):
    (tmp_path / "a.c").write_text("int main(void) { return 0; }\n")
    for wrapper in ([installed / "bin" / "psu-cc"], [installed / "bin" / "psu", "cc"]):
        done = subprocess.run([*map(str, wrapper), "gcc", "-c", "a.c", "-o", "a.o"], cwd=tmp_path,
                              env=clean_env(installed), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "a.o").exists()
        (tmp_path / "a.o").unlink()
