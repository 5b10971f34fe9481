"""bench/sqlite_patched.py counts the instructions of a workload alone: callgrind
with instrumentation off until the program waits for its input.  Checked on a
small program whose calls are known: the calls counted are exactly the
workload's, and the start is not counted."""
import os
import shutil
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
sys.path.insert(0, BENCH)
import sqlite_patched  # noqa: E402

pytestmark = pytest.mark.skipif(not (shutil.which("valgrind") and shutil.which("callgrind_control")),
                                reason="needs valgrind's callgrind")

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((noinline)) static long step(long x) { return x * 3 + 1; }
__attribute__((noinline)) static long twice(long x) { return step(step(x)); }
static long (*volatile through_pointer)(long) = twice;
int main(void)
{
    /* the start: calls of step that must not be counted */
    long sum = 0;
    for (int i = 0; i < 1000; i++)
        sum += step(i);
    long n;
    if (scanf("%ld", &n) != 1)
        return 1;
    for (long i = 0; i < n; i++)
        sum += through_pointer(i);
    printf("%ld\n", sum % 1000);
    return 0;
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    folder = tmp_path_factory.mktemp("counting")
    (folder / "p.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-O2", "-g", str(folder / "p.c"), "-o", str(folder / "p")], check=True)
    return folder / "p"


def test_only_the_workload_is_counted(program, tmp_path):
    env = dict(os.environ, PSU_RUNTIME_DIR=str(tmp_path))
    counts = {}
    for n in (100000, 200000):
        profile, output, _ = sqlite_patched.count_workload(
            program, f"{n}\n", env, tmp_path / f"p{n}.callgrind", dsu=False, label=str(n))
        calls = profile.calls_by_function({})
        # the start's 1000 calls of step are not in the count, the workload's are
        assert calls["twice"] == n
        assert calls["step"] == 2 * n
        assert output.strip().isdigit()
        counts[n] = profile.total
    # twice the workload, about twice the instructions: nothing but the loop is counted
    assert 1.9 < counts[200000] / counts[100000] < 2.1


def test_clones_and_recursion_levels_fold_to_the_function():
    assert sqlite_patched.base_name("vdbeSorterCompare.part.0") == "vdbeSorterCompare"
    assert sqlite_patched.base_name("sqlite3VdbeExec'2") == "sqlite3VdbeExec"
    assert sqlite_patched.base_name("f.isra.0'2") == "f"
