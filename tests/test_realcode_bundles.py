"""Issue 15, bundle size on real code: Lua 5.4.8 (every unit DSU, from the
lupa sdist cached in ~/.cache/psu-realcode), a one-function patch of
`str_upper` (lstrlib.c), and a chain of such patches applied to a running
interpreter.  The repository and builds are bench/bundle_size.py's (under
bench/results/work, reused across runs)."""
import os
import sys

import pytest

from projects import REPO

sys.path.insert(0, str(REPO / "bench"))
import bundle_size  # noqa: E402
import targets  # noqa: E402

pytestmark = pytest.mark.realcode

CHAIN = int(os.environ.get("PSU_REALCODE_CHAIN", "30"))


@pytest.fixture(scope="module")
def lua():
    target = targets.TARGETS["lua"]
    root = bundle_size.repository(target, CHAIN)
    targets.git(root, "checkout", "-q", "p0")
    _, code, output = targets.scons_build(root)
    assert code == 0, output[-3000:]
    return target, root


def test_a_one_function_patch_of_lua_is_under_200_kib(lua):
    target, root = lua
    path, figures = bundle_size.new_bundle(root, "p0", "p1")
    assert figures["bundle_bytes"] < 200 * 1024, figures
    assert figures["units_compiled"] == ["src/lstrlib.c"], figures


def test_a_chain_of_lua_patches_keeps_mappings_flat(lua):
    target, root = lua
    samples = bundle_size.chain(target, root, CHAIN)
    assert all(s["answer"] == "PSU" for s in samples), samples[-1]
    # the executable and the newest bundle; every older one unloaded
    assert max(s["modules"] for s in samples) <= 2, [s["modules"] for s in samples]
    settled = samples[min(4, len(samples) - 1)]["mappings"]
    assert max(s["mappings"] for s in samples[5:]) <= settled + 2, [s["mappings"] for s in samples]
