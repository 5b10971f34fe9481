"""Issue 2: a program built with psu behaves exactly as its plain build, every DSU
function really goes through the runtime, and the build behaves as SCons users expect."""
import json
import re
import shutil
import subprocess

import pytest

from projects import REPO, Project, run

CORPUS = REPO / "tests" / "corpus" / "constructs"
TRACE_HEADER = REPO / "tests" / "c" / "trace_calls.h"


@pytest.fixture
def constructs(tmp_path):
    return Project.from_corpus(tmp_path / "constructs", CORPUS)


def plain_output(project, tmp_path):
    binary = tmp_path / "plain"
    sources = sorted(str(p) for p in (project.root / "src").glob("*.c") if p.name != "trace_calls.c")
    run(["gcc", "-std=gnu11", "-O2", "-pthread", "-o", binary, *sources], project.root)
    return run([binary], project.root).stdout


def test_dsu_build_behaves_like_plain_build(constructs, tmp_path):
    constructs.build()
    dsu = run([constructs.root / "constructs"], constructs.root,
              env={"PSU_DISABLE": "1", "PATH": "/usr/bin:/bin"}).stdout
    assert dsu == plain_output(constructs, tmp_path)
    assert "fib(20)=6765" in dsu and "threads=300" in dsu


def test_every_dsu_function_is_entered_through_the_runtime(constructs, tmp_path):
    shutil.copy(REPO / "tests" / "c" / "trace_calls.c", constructs.root / "src")
    flags = f"-include {TRACE_HEADER}"
    constructs.build(env=_env(PSU_TEST_CCFLAGS=flags))
    trace = tmp_path / "trace.txt"
    run([constructs.root / "constructs"], constructs.root,
        env=_env(PSU_TEST_TRACE=trace, PSU_DISABLE=1))
    entered = set(trace.read_text().split())
    manifest = constructs.manifest("constructs")
    functions = manifest["units"]["src/calc.c"]["functions"]
    dsu = {q for q, f in functions.items() if f["direct"] is None}
    direct = {q: f["direct"] for q, f in functions.items() if f["direct"] is not None}
    # the program calls every DSU function of calc.c (tally_thread through
    # pthread_create): each read its slot (through its trampoline), and nothing else did
    assert entered == dsu
    assert {"fib", "ackermann", "midpoint", "grow", "add", "mul", "fold",
            "src/calc.c:is_even", "src/calc.c:is_odd"} <= entered
    assert direct == {"src/calc.c:square": "inline", "excluded_twice": "excluded"}
    assert "say" in entered                     # variadic: a DSU function too (issue 10)
    assert not entered & {"excluded_twice", "src/calc.c:square", "main"}


def test_function_pointer_is_the_trampoline(constructs):
    """`add`, whose address main takes, is the trampoline: the code at that
    address reads add's slot before it runs any version (the compiler may fold
    the executable's version into it), and only the trampoline is exported."""
    constructs.build()
    exe = constructs.root / "constructs"
    code = run(["objdump", "-d", "--no-show-raw-insn", "--disassemble=add", exe], constructs.root).stdout
    body = code[code.index("<add>:"):]
    # (the record, or its exported name psu_slot_..., at the same address)
    assert "<psu_fn_add>" in body or "<psu_slot_add_" in body, body
    dynamic = run(["nm", "-D", "--defined-only", exe], constructs.root).stdout
    assert " add\n" in dynamic and "psu_impl_add" not in dynamic


def test_second_build_is_up_to_date_and_clean_removes_everything(constructs):
    constructs.build()
    again = constructs.build("--debug=explain")
    assert "Rebuilding" not in again.stdout and "building" not in again.stdout.lower(), again.stdout
    generated = [constructs.root / "constructs", constructs.root / "constructs.psu.json",
                 constructs.root / ".psu-build" / "constructs" / "src" / "calc.psu.c"]
    assert all(p.exists() for p in generated)
    constructs.build("-c")
    assert not any(p.exists() for p in generated)


def compiled(output):
    """Object files an SCons run compiled (not merely linked)."""
    objects = set()
    for line in output.splitlines():
        words = line.split()
        if "-c" in words and "-o" in words:
            objects.add(words[words.index("-o") + 1].rsplit("/", 1)[-1])
    return objects


def test_editing_one_unit_rebuilds_only_what_it_must(constructs):
    constructs.build()
    main_c = constructs.root / "src" / "main.c"
    main_c.write_text(main_c.read_text().replace("fib(20)", "fib(21)"))
    assert compiled(constructs.build().stdout) == {"main.o", "constructs.psu_info.o"}
    calc = constructs.root / "src" / "calc.c"
    calc.write_text(calc.read_text().replace("return n + 1;", "return 1 + n;"))
    assert compiled(constructs.build().stdout) == {"calc.psu.o", "constructs.psu_info.o"}


def test_header_change_recompiles_the_dsu_unit(constructs):
    constructs.build()
    header = constructs.root / "src" / "shapes.h"
    header.write_text(header.read_text().replace("char tag[8];", "char tag[16];"))
    assert {"calc.psu.o", "main.o"} <= compiled(constructs.build().stdout)


def test_manifest_is_deterministic_across_checkouts(constructs, tmp_path):
    constructs.build()
    other = tmp_path / "elsewhere" / "deeper"
    other.parent.mkdir()
    run(["git", "clone", "-q", constructs.root, other], tmp_path)
    shutil.copytree(constructs.root / "site_scons", other / "site_scons", dirs_exist_ok=True)
    Project.build(type("P", (), {"root": other})())
    first = (constructs.root / "constructs.psu.json").read_bytes()
    second = (other / "constructs.psu.json").read_bytes()
    assert first == second
    manifest = json.loads(first)
    assert manifest["build_id"].encode() in (constructs.root / "constructs").read_bytes()
    calc = manifest["units"]["src/calc.c"]
    assert calc["functions"]["src/calc.c:is_even"]["static"] is True
    # static by an earlier declaration though its definition does not say so
    assert calc["functions"]["src/calc.c:twice_static"]["static"] is True
    assert "src/calc.c:fib:entered" in calc["variables"]
    assert calc["variables"]["src/calc.c:per_thread"]["thread_local"] is True


def test_moving_lines_does_not_change_function_hashes(constructs):
    constructs.build()
    before = constructs.manifest("constructs")["units"]["src/calc.c"]["functions"]
    calc = constructs.root / "src" / "calc.c"
    calc.write_text("\n\n\n/* moved down */\n" + calc.read_text())
    constructs.build()
    after = constructs.manifest("constructs")["units"]["src/calc.c"]["functions"]
    assert {q: f["body_hash"] for q, f in before.items()} == \
           {q: f["body_hash"] for q, f in after.items()}
    assert before["fib"]["line"] != after["fib"]["line"]


def test_compiler_errors_point_at_the_users_file(constructs):
    calc = constructs.root / "src" / "calc.c"
    lines = calc.read_text().splitlines()
    line = next(i for i, l in enumerate(lines) if "return n < 2" in l)
    lines[line] = lines[line].replace("return n < 2", "return undeclared_thing + n < 2")
    calc.write_text("\n".join(lines) + "\n")
    failed = constructs.build(check=False)
    assert failed.returncode != 0
    assert f"src/calc.c:{line + 1}:" in failed.stderr


def test_gdb_shows_the_users_source_line(constructs):
    if shutil.which("gdb") is None:
        pytest.skip("gdb not installed")
    constructs.build()
    lines = (constructs.root / "src" / "calc.c").read_text().splitlines()
    # the function's `{` (the line its entry check shares) or its first statement
    first = next(i for i, l in enumerate(lines) if "return m == 0" in l or "if (m == 0)" in l) + 1
    done = subprocess.run(["gdb", "-batch", "-ex", "break ackermann", "-ex", "run",
                           "-ex", "info line", constructs.root / "constructs"],
                          cwd=constructs.root, capture_output=True, text=True,
                          env=_env(PSU_DISABLE=1))
    assert "psu_fast.h" not in done.stdout and ".psu.c" not in done.stdout, done.stdout
    assert any(re.search(rf"Breakpoint 1, ackermann \(.*\) at src/calc.c:{line}\n", done.stdout)
               and f"Line {line} of \"src/calc.c\"" in done.stdout
               for line in (first - 1, first)), done.stdout


def _env(**extra):
    from projects import environment
    return environment(**extra)


def test_variant_dir_and_parallel_build(tmp_path):
    project = Project(tmp_path / "variant")
    shutil.copytree(CORPUS / "src", project.root / "src")
    project.commit("v1", {
        "SConstruct": "SConscript('src/SConscript', variant_dir='build', duplicate=0)\n",
        "src/SConscript": "env = Environment(tools=['default', 'psu'])\n"
                          "env.Append(CCFLAGS=['-O2'], LIBS=['pthread'])\n"
                          "env.PSUProgram('constructs', Glob('*.c'), PSU_UNITS=['calc.c'])\n"})
    project.build("-j2")
    assert sorted(p.name for p in (project.root / "src").iterdir()) == \
        ["SConscript", "calc.c", "main.c", "shapes.h"]          # nothing generated in the sources
    output = run([project.root / "build" / "constructs"], project.root, env={"PSU_DISABLE": "1"})
    assert "fib(20)=6765" in output.stdout
    manifest = json.loads((project.root / "build" / "constructs.psu.json").read_text())
    assert set(manifest["units"]) == {"src/calc.c", "src/main.c"}
    assert "is up to date" in project.build("-j2").stdout
