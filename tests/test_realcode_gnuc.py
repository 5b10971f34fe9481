"""Issue 16 on real code bases known for GNU C idioms, fetched as Debian source
packages at test time (cached in ~/.cache/psu-realcode/deb, never committed).

Each is built by an SConstruct the test writes around the project's sources
(the units and flags of its own build), with every unit it compiles a DSU
unit; then the project's own tests run against the DSU binary.

- xxHash 0.8.1 (`make DISPATCH=1`): asm statements with operands (cpuid,
  compiler guards), target attributes, x86 intrinsics headers, _Static_assert.
- LZ4 1.9.4: always_inline/packed/aligned attributes, builtins, `#pragma`
  and `_Pragma`, function-like macros that make names (XXH_NAMESPACE).
- sparse 0.6.4 (the Linux kernel's checker, written in its style): statement
  expressions with `__typeof__` and macro-made braces in its list iterators
  (`FOR_EACH_PTR(list, p) { ... } END_FOR_EACH_PTR(p);`), functions declared
  through function typedefs, `[ENUM] =` designators.
- zlib 1.2.13: K&R definitions throughout (the last release written so).
- jq 1.6: a bison parser and flex lexer, macro-made loops (jv_array_foreach),
  variadic macros, computed math-function tables (libm.h), `__thread`.
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import tarfile

import pytest

from projects import SITE_INIT, environment, run

pytestmark = pytest.mark.realcode

CACHE = pathlib.Path(os.environ.get("PSU_REALCODE_CACHE", pathlib.Path.home() / ".cache" / "psu-realcode")) / "deb"


def debian_source(package, version, tmp_path, compression="gz"):
    """The upstream tarball of a Debian source package, extracted into tmp_path."""
    tarball = CACHE / f"{package}_{version}.orig.tar.{compression}"
    if not tarball.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(["apt-get", "source", "--download-only", f"{package}"],
                                  cwd=CACHE, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as error:
            pytest.skip(f"apt-get source {package}: {error}")
        if not tarball.exists():
            pytest.skip(f"apt-get source {package} gave no {tarball.name} (deb-src not configured?):"
                        f" {done.stderr.strip()[-300:]}")
    with tarfile.open(tarball) as archive:
        top = archive.getnames()[0].split("/")[0]
        archive.extractall(tmp_path)
    return tmp_path / top


def psu_build(root, sconstruct):
    (root / "site_scons").mkdir(exist_ok=True)
    (root / "site_scons" / "site_init.py").write_text(SITE_INIT)
    (root / "SConstruct").write_text(sconstruct)
    return run([sys.executable, "-m", "SCons", "-Q", "-j2"], root, timeout=900)


def dsu_report(manifest_path):
    """Units, functions, DSU functions, and why the others are direct."""
    manifest = json.loads(pathlib.Path(manifest_path).read_text())
    units = manifest["units"]
    functions = [f for unit in units.values() for f in unit.get("functions", {}).values()]
    dsu = [f for f in functions if f["direct"] is None]
    reasons = sorted({f["direct"] for f in functions if f["direct"] is not None})
    report = {"units": len(units), "dsu_units": sum(1 for u in units.values() if u.get("dsu", True)),
              "functions": len(functions), "dsu_functions": len(dsu), "direct_reasons": reasons}
    print(f"\n{manifest['program']}: {report}")
    return report


def test_xxhash(tmp_path):
    root = debian_source("xxhash", "0.8.1", tmp_path)
    units = ["xxhash.c", "xxh_x86dispatch.c", "cli/xxhsum.c", "cli/xsum_os_specific.c",
             "cli/xsum_output.c", "cli/xsum_sanity_check.c", "cli/xsum_bench.c"]
    psu_build(root, "env = Environment(tools=['default', 'psu'], CCFLAGS=['-O3'],\n"
                    "                  CPPDEFINES=['XXHSUM_DISPATCH=1'])\n"
                    f"env.PSUProgram('xxhsum', {units!r}, PSU_UNITS={units!r})\n")
    report = dsu_report(root / "xxhsum.psu.json")
    assert report["units"] == len(units) and report["dsu_functions"] > 0
    # the project's own `make check`, against the DSU binary (-o: do not rebuild it)
    checked = run(["make", "-o", "xxhsum", "check"], root, timeout=300)
    assert "checks completed successfully" in checked.stdout
    # the self-test of every algorithm against its known vectors
    hashes = run([root / "xxhsum", "-H2", "xxhash.h"], root).stdout
    plain = tmp_path / "plain-xxhsum"
    run(["gcc", "-O3", "-DXXHSUM_DISPATCH=1", "-o", plain, *units], root)
    assert hashes == run([plain, "-H2", "xxhash.h"], root).stdout


def test_lz4(tmp_path):
    root = debian_source("lz4", "1.9.4", tmp_path)
    psu_build(root, "env = Environment(tools=['default', 'psu'], CCFLAGS=['-O3'], CPPPATH=['lib'],\n"
                    "                  CPPDEFINES=['XXH_NAMESPACE=LZ4_'])\n"
                    "units = sorted(Glob('lib/*.c', strings=True) + Glob('programs/*.c', strings=True))\n"
                    "env.PSUProgram('programs/lz4', units, PSU_UNITS=units)\n")
    for link in ("unlz4", "lz4cat"):                  # as programs/Makefile makes them
        os.symlink("lz4", root / "programs" / link)
    report = dsu_report(root / "programs" / "lz4.psu.json")
    assert report["units"] == 9 and report["dsu_functions"] > 100
    # the project's own CLI tests, against the DSU binary (-o: do not rebuild it)
    # (bytes: the tests print binary data)
    tested = subprocess.run(["make", "-C", "tests", "-o", "lz4", "-o", "unlz4", "-o", "lz4cat",
                             "test-lz4-essentials"], cwd=root, capture_output=True, timeout=300)
    assert tested.returncode == 0, tested.stderr.decode(errors="replace")[-2000:]


def _jq_configuration(root):
    """What jq's configure would find on this glibc system: each math function
    libm exports, and the functions and fields glibc has."""
    exported = set(run(["nm", "-D", "--defined-only", "/lib/x86_64-linux-gnu/libm.so.6"], root)
                   .stdout.split())
    # a default version (`@@`) or none: `pow10@GLIBC_2.2.5` is a compat symbol, not linkable
    exported = {name.split("@")[0] for name in exported if "@" not in name or "@@" in name}
    math = re.findall(r"AC_CHECK_MATH_FUNC\((\w+)\)", (root / "configure.ac").read_text())
    defines = [f"HAVE_{name.upper()}" for name in math if name in exported]
    defines += ["HAVE_MEMMEM", "HAVE_MKSTEMP", "HAVE_ALLOCA", "HAVE_ALLOCA_H", "HAVE_ISATTY",
                "HAVE_STRPTIME", "HAVE_STRFTIME", "HAVE_TIMEGM", "HAVE_GMTIME_R", "HAVE_GMTIME",
                "HAVE_LOCALTIME_R", "HAVE_LOCALTIME", "HAVE_GETTIMEOFDAY", "HAVE_TM_TM_GMT_OFF",
                "HAVE___THREAD", "_GNU_SOURCE", "IEEE_8087"]
    return sorted(defines)


def test_jq(tmp_path):
    root = debian_source("jq", "1.6", tmp_path)
    # the two files jq's Makefile.am generates
    lines = (root / "src" / "builtin.jq").read_text().splitlines()
    (root / "src" / "builtin.inc").write_text("".join(
        '"' + line.replace("\\", "\\\\").replace('"', '\\"') + '\\n"\n' for line in lines))
    (root / "src" / "version.h").write_text('#define JQ_VERSION "1.6"\n')
    units = ["src/builtin.c", "src/bytecode.c", "src/compile.c", "src/execute.c", "src/jq_test.c",
             "src/jv.c", "src/jv_alloc.c", "src/jv_aux.c", "src/jv_dtoa.c", "src/jv_file.c",
             "src/jv_parse.c", "src/jv_print.c", "src/jv_unicode.c", "src/linker.c", "src/locfile.c",
             "src/util.c", "src/lexer.c", "src/parser.c", "src/main.c"]
    psu_build(root, "env = Environment(tools=['default', 'psu'], CCFLAGS=['-O2', '-Wall', '-Wextra',\n"
                    "    '-Wno-missing-field-initializers', '-Wno-unused-parameter', '-Wno-unused-function'],\n"
                    f"    CPPPATH=['.', 'src'], CPPDEFINES={_jq_configuration(root)!r}, LIBS=['m'])\n"
                    f"env.PSUProgram('jq', {units!r}, PSU_UNITS={units!r})\n")
    report = dsu_report(root / "jq.psu.json")
    assert report["units"] == len(units) and report["dsu_functions"] > 300
    # the project's own test suite (tests/jqtest: `jq --run-tests tests/jq.test`)
    # (without valgrind, which tests/setup uses when installed: minutes, not seconds)
    tested = subprocess.run(["sh", "tests/jqtest"], cwd=root, capture_output=True, text=True,
                            timeout=300, env=environment(NO_VALGRIND=1))
    assert tested.returncode == 0, tested.stdout[-2000:] + tested.stderr[-2000:]
    passed = re.search(r"(\d+) of (\d+) tests passed", tested.stdout + tested.stderr)
    assert passed and passed.group(1) == passed.group(2), tested.stdout[-2000:]


def test_zlib(tmp_path):
    root = debian_source("zlib", "1.2.13.dfsg", tmp_path, compression="bz2")
    library = ["adler32.c", "crc32.c", "deflate.c", "infback.c", "inffast.c", "inflate.c",
               "inftrees.c", "trees.c", "zutil.c", "compress.c", "uncompr.c", "gzclose.c",
               "gzlib.c", "gzread.c", "gzwrite.c"]
    # the flags zlib's configure chooses on Linux; its Makefile's two test programs
    psu_build(root, "env = Environment(tools=['default', 'psu'], CPPPATH=['.'],\n"
                    "                  CCFLAGS=['-O3', '-D_LARGEFILE64_SOURCE=1', '-DHAVE_HIDDEN'])\n"
                    f"library = {library!r}\n"
                    "for program in ('example', 'minigzip'):\n"
                    "    units = library + [f'test/{program}.c']\n"
                    "    env.PSUProgram(program, units, PSU_UNITS=units)\n")
    report = dsu_report(root / "minigzip.psu.json")
    assert report["units"] == len(library) + 1
    manifest = json.loads((root / "minigzip.psu.json").read_text())
    deflate = manifest["units"]["deflate.c"]["functions"]["deflateInit2_"]
    # a K&R definition, described with the types of its declaration list
    assert deflate["signature"] == ("int deflateInit2_(z_streamp strm, int level, int method, int windowBits, "
                                    "int memLevel, int strategy, const char *version, int stream_size)")
    # the project's own `make teststatic`
    compressed = subprocess.run([root / "minigzip"], input=b"hello world\n", capture_output=True,
                                cwd=root, timeout=60, check=True).stdout
    assert subprocess.run([root / "minigzip", "-d"], input=compressed, capture_output=True, cwd=root,
                          timeout=60, check=True).stdout == b"hello world\n"
    example = run([root / "example", "tmpst"], root, timeout=120).stdout
    assert "large_inflate(): OK" in example and "inflate with dictionary: hello, hello!" in example


def test_sparse(tmp_path):
    root = debian_source("sparse", "0.6.4", tmp_path)
    makefile = (root / "Makefile").read_text()
    library = [name[:-2].replace("$(OS)", "linux") + ".c"
               for name in re.findall(r"^LIB_OBJS \+= (\S+)", makefile, re.M)]
    assert len(library) > 50
    # what its Makefile generates and passes on the command line
    (root / "version.h").write_text('#define SPARSE_VERSION "0.6.4"\n')
    gcc_base = run(["gcc", "--print-file-name="], root).stdout.strip()
    triplet = run(["gcc", "-print-multiarch"], root).stdout.strip()
    (root / "psu-test-config.h").write_text(f'#define GCC_BASE "{gcc_base}"\n'
                                            f'#define MULTIARCH_TRIPLET "{triplet}"\n')
    units = library + ["sparse.c"]
    psu_build(root, "env = Environment(tools=['default', 'psu'], LIBS=['m'],\n"
                    "    CCFLAGS=['-O2', '-g', '-fno-strict-aliasing', '-Wall', '-Wwrite-strings',\n"
                    "             '-include', 'psu-test-config.h'])\n"
                    f"env.PSUProgram('sparse', {units!r}, PSU_UNITS={units!r})\n")
    report = dsu_report(root / "sparse.psu.json")
    assert report["units"] == len(units) and report["dsu_functions"] > 300
    # its own validation suite (`make check`), with the DSU `sparse` (most tests);
    # the suite's other drivers (test-linearize, ...) built by its Makefile
    run(["make", "-j2", "test-linearize", "test-parsing", "test-show-type"], root, timeout=600)
    suite = run(["./test-suite"], root / "validation", timeout=600).stdout
    summary = re.search(r"out of (\d+) tests, (\d+) passed, (\d+) failed\s+(\d+) of them are known to fail",
                        suite)
    assert summary and summary.group(3) == summary.group(4), suite[-3000:]
