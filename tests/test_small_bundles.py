"""Issue 15, bundle size: a bundle compiles what it needs, not every unit.

The program (tests/corpus/manyunits) has four DSU units holding a K&R
definition, a variadic function, a static function reached only from a data
initializer, a body with a `#pragma`, a body a macro writes and constant data
another unit reads; a thread calls all of them without pause while bundles
are applied.  Revisions change one function's return value each.
"""
import shutil
import subprocess

import pytest

from projects import CommandProgram, Project, REPO, wait_until

from psu import buildconfig, bundle, patch
from psu.errors import UsageError

CORPUS = REPO / "tests" / "corpus" / "manyunits"
UNITS = ["alpha", "beta", "gamma", "delta"]
CHAIN = 20
# where each unit's function of `values` returns its number (edited per revision)
RETURNS = {"alpha": ("src/alpha.c", "int alpha_value(void)\n{\n    return "),
           "beta": ("src/beta.c", "    beta_count();\n    return "),
           "gamma": ("src/gamma.c", "return gamma_inline(sum) + "),
           "delta": ("src/delta.c", "int delta_value(void)\n{\n    return ")}


def set_value(project, unit, value):
    """Make `unit`'s value function return `value` (the text after the marker up to `;`)."""
    path, marker = RETURNS[unit]
    file = project.root / path
    text = file.read_text()
    at = text.index(marker) + len(marker)
    file.write_text(text[:at] + str(value) + text[text.index(";", at):])


def revision(project, base, tag, **values):
    project.checkout(base)
    for unit, value in values.items():
        set_value(project, unit, value)
    project.commit(tag)


@pytest.fixture(scope="module")
def manyunits(tmp_path_factory):
    project = Project.from_corpus(tmp_path_factory.mktemp("manyunits") / "repo", CORPUS, "r0",
                                  ignored=["/manyunits"])
    # a chain changing one function of another unit each time
    revision(project, "r0", "r1", beta=102)
    revision(project, "r1", "r2", gamma=200)
    revision(project, "r2", "r3", delta=304)
    # a side line, for a bundle built without the record of the one before it
    revision(project, "r0", "q1", beta=502)
    revision(project, "q1", "q2", gamma=600)
    revision(project, "q2", "q3", delta=700)
    # a long chain, round the units
    tag = "r0"
    for k in range(1, CHAIN + 1):
        unit = UNITS[k % 4]
        revision(project, tag, f"c{k}", **{unit: 1000 + k - (3 if unit == "gamma" else 0)})
        tag = f"c{k}"
    project.checkout("r0")
    project.build()
    yield project


def build_config(project):
    found = list((project.root / ".psu-build").rglob("build.json"))
    assert len(found) == 1, found
    return buildconfig.read(str(found[0]))


def make(project, from_ref, to_ref):
    """The bundle FROM -> TO, made as `scons patch` makes it (in process: faster)."""
    output = project.root / "psu-patches" / f"manyunits-{from_ref}-{to_ref}.psu"
    manifest, report = patch.make_bundle(build_config(project), from_ref, to_ref, str(output))
    return output, manifest, report


def defined_symbols(bundle_path, tmp_path):
    """Names the bundle's code object defines (its symbol table, hidden ones included)."""
    _, sections, _ = bundle.read(str(bundle_path))
    code = tmp_path / f"{bundle_path.stem}-code.so"
    code.write_bytes(sections["code"])
    out = subprocess.run(["nm", "--defined-only", str(code)], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


@pytest.fixture
def program(manyunits, tmp_path):
    running = CommandProgram(manyunits.root / "manyunits", manyunits.root, tmp_path / "run")
    assert running.first == "ready"
    yield running
    running.stop()


def status(program):
    return program.process.request("status")


def test_a_one_function_bundle_defines_only_what_it_needs(manyunits, program, tmp_path):
    path, manifest, report = make(manyunits, "r0", "r1")
    symbols = defined_symbols(path, tmp_path)
    # beta_value's new version, and what it reaches that the program cannot give:
    # the unit's direct static, and the constant data of alpha.c beta.c reads
    assert any(s.startswith("psu_patch_beta_value_") for s in symbols)
    assert any(s.startswith("psu_const_alpha_table_") for s in symbols)
    # no other DSU function of any unit is compiled into it
    for name in ("alpha_value", "alpha_other", "beta_kr", "gamma_value", "gamma_sum",
                 "delta_value"):
        assert f"psu_impl_{name}" not in symbols, name
    assert not any(s.startswith(("psu_impl_gamma", "psu_impl_delta", "gamma_", "delta_"))
                   for s in symbols), sorted(symbols)
    assert manifest["carried"] == [] and manifest["in_bundles"] == ["beta_value"]
    # beta.c, and alpha.c for the constant it reads; gamma.c and delta.c not at all
    assert manifest["compiled_units"] == ["src/alpha.c", "src/beta.c"]
    assert "carries nothing" in report        # FROM is a release: said, not silent

    checks_before = int(program("checks").split()[0])
    done = program.apply(path)
    assert "stays loaded" not in done.stdout
    assert program("values") == "1 102 3 4"
    assert wait_until(lambda: int(program("checks").split()[0]) > checks_before + 1000, timeout=30)
    assert program("checks").split()[1] == "0"          # no call saw a wrong result


def test_a_chain_drains_every_older_bundle(manyunits, program):
    expected = ["1 102 3 4", "1 102 203 4", "1 102 203 304"]
    for (from_ref, to_ref), values in zip([("r0", "r1"), ("r1", "r2"), ("r2", "r3")], expected):
        path, manifest, _ = make(manyunits, from_ref, to_ref)
        done = program.apply(path)
        assert "stays loaded" not in done.stdout, done.stdout
        assert program("values") == values
        # the previous bundle's functions moved here: its module unloads
        assert wait_until(lambda: [m["kind"] for m in status(program)["modules"]]
                          == ["executable", "bundle"], timeout=20), status(program)["modules"]
        assert status(program)["modules"][1]["label"] == to_ref
    assert manifest["carried"] == ["beta_value", "gamma_value"]
    assert manifest["in_bundles"] == ["beta_value", "delta_value", "gamma_value"]
    assert program("checks").split()[1] == "0"


def test_without_the_previous_record_the_older_bundle_stays_and_is_named(manyunits, program):
    first, _, _ = make(manyunits, "r0", "q1")
    # built elsewhere: this work folder has no record of the bundle that produced q1
    shutil.rmtree(manyunits.root / ".psu-build" / "bundles")
    second, manifest, report = make(manyunits, "q1", "q2")
    assert manifest["carried"] == [] and "carries nothing" in report
    program.apply(first)
    done = program.apply(second)
    assert program("values") == "1 502 603 4"
    assert "bundle q1" in done.stdout and "stays loaded" in done.stdout and \
        "beta_value" in done.stdout, done.stdout
    modules = {m["label"]: m for m in status(program)["modules"]}
    assert modules["q1"]["functions"] == ["beta_value"]
    assert modules["q2"]["functions"] == ["gamma_value"]
    shown = program.process.psu("status", program.process.pid).stdout
    assert "bundle q1 (module" in shown and "stays loaded for: beta_value" in shown, shown
    assert "gamma_value" not in shown             # the current bundle's own functions
    # given the older bundle explicitly, the next one carries its function
    config = build_config(manyunits)
    config.previous_bundle = str(first)
    with pytest.raises(UsageError, match="not to FROM"):
        patch.make_bundle(config, "q2", "q3", str(manyunits.root / "psu-patches" / "x.psu"))
    refused = manyunits.patch("q2", "q3", check=False, extra=[f"PREVIOUS={first}"])
    assert refused.returncode != 0 and "not to FROM" in refused.stdout + refused.stderr
    config.previous_bundle = str(second)
    third = manyunits.root / "psu-patches" / "manyunits-q2-q3.psu"
    manifest, _ = patch.make_bundle(config, "q2", "q3", str(third))
    assert manifest["carried"] == ["gamma_value"]
    done = program.apply(third)
    assert program("values") == "1 502 603 700"
    assert wait_until(lambda: "q2" not in {m["label"] for m in status(program)["modules"]}, timeout=20)
    assert {m["label"] for m in status(program)["modules"]} >= {"q1", "q3"}


def test_a_long_chain_keeps_modules_and_mappings_flat(manyunits, program):
    tags, values = ["r0"] + [f"c{k}" for k in range(1, CHAIN + 1)], {}
    for k in range(1, CHAIN + 1):
        values[UNITS[k % 4]] = 1000 + k
    mappings = []
    for k in range(1, CHAIN + 1):
        path, _, _ = make(manyunits, tags[k - 1], tags[k])
        program.apply(path)
        assert wait_until(lambda: len(status(program)["modules"]) == 2, timeout=20), \
            status(program)["modules"]
        mappings.append(len(program.process.maps().splitlines()))
    assert program("values") == " ".join(str(values[u]) for u in UNITS)
    assert status(program)["unloaded"] == CHAIN - 1
    # after the first few, the number of mappings no longer grows
    assert max(mappings[5:]) <= mappings[4] + 2, mappings
    assert program("checks").split()[1] == "0"


def test_data_a_header_defines_in_an_unchanged_unit_comes_with_the_bundle(tmp_path):
    """The analysis reads a unit's own definitions, not data a header defines in
    it (zlib's trees.h): a bundle whose code reads such data, hidden, still
    links -- every DSU unit is compiled (their DSU definitions cut), the
    report says why -- and applies live."""
    project = Project.from_corpus(tmp_path / "repo", REPO / "tests" / "corpus" / "headerdata",
                                  ignored=["/headerdata"])
    project.edit("src/user.c", ("pick(index) + 0;", "pick(index) + 10;"))
    project.commit("v2")
    project.checkout("v1")
    project.build()
    done = project.patch("v1", "v2")
    assert "compiled every DSU unit" in done.stdout and "lookup_table" in done.stdout, done.stdout
    running = CommandProgram(project.root / "headerdata", project.root, tmp_path / "run")
    try:
        assert running.first == "ready"
        assert running("value") == "6 7"
        running.apply(project.bundle("headerdata", "v1", "v2"))
        assert running("value") == "16 17"
    finally:
        running.stop()
