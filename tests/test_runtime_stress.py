"""The call path and the unload decision under stress (tests/c/stress.c).

Each run is bounded by an iteration count; assertions are on counts of
failures, never on time."""
import os
import re
import subprocess

import pytest

import cbuild

STRESS = cbuild.TESTS_C / "stress.c"


# PSU_SANITIZE=thread|address (docs/operations.md, "Sanitizers") builds every
# variant under that sanitizer too.
# (gcc 12 warns at -O2 that ThreadSanitizer does not model the runtime's
# fallback seq_cst fence: it is what the fallback variant checks, not a report)
SANITIZE = {"": [], "thread": ["-g", "-fsanitize=thread", "-Wno-tsan"],
            "address": ["-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]}[
    os.environ.get("PSU_SANITIZE", "")]


# The teeth of the general path's protocol show where every call takes it.
NO_HOOKS = {"PSU_ENTRY_HOOKS": "0"}


def build(tmp_path, name, flags):
    if not any(f.startswith("-fsanitize") for f in flags):
        flags = list(flags) + SANITIZE
    return cbuild.build_executable([STRESS], tmp_path / name, flags=flags, entry_hooks=True)


def run(exe, iterations, callers, window, *extra, env_extra=None):
    env = dict(os.environ, PSU_DISABLE="1", PSU_QUIET="1", STRESS_MAX_SECONDS="5")
    env.update(env_extra or {})
    proc = subprocess.run([str(exe), str(iterations), str(callers), str(window), *extra],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Sanitizer" not in proc.stderr and "runtime error" not in proc.stderr, proc.stderr
    m = re.search(r"switches=(\d+) calls=(\d+) reclaims=(\d+) failures=(\d+) "
                  r"leftover=(\d+) accounting_errors=(\d+) membarrier=(\d) stale=(\d+) "
                  r"fast=(\d+) churned=(\d+) hooks=(on|off) stubs=(on|off)", proc.stdout)
    assert m, proc.stdout
    keys = ["switches", "calls", "reclaims", "failures", "leftover", "accounting_errors",
            "membarrier", "stale", "fast", "churned"]
    result = dict(zip(keys, map(int, m.groups()[:10])))
    result.update(hooks=m.group(11), stubs=m.group(12))
    return result, proc.stderr


def assert_clean(result):
    assert result["failures"] == 0, result
    assert result["leftover"] == 0, result
    assert result["accounting_errors"] == 0, result
    assert result["stale"] == 0, result
    assert result["reclaims"] > 0, result


# Calls that reach `work`'s entry take its hook to a stub; with the hooks
# off every call takes the entry check and the general path (psu_fast.h).
CALL_PATHS = {"stubs": {}, "general path": NO_HOOKS}


@pytest.mark.parametrize("window, path", [(0, "stubs"), (3000, "stubs"), (3000, "general path")])
def test_stress_membarrier(tmp_path, window, path):
    exe = build(tmp_path, "stress", ["-O2"])
    result, _ = run(exe, 30000, 2, window, env_extra=CALL_PATHS[path])
    assert result["membarrier"] == 1
    assert result["fast"] > 0, result       # counted on the callers' TLS
    if path == "stubs" and os.environ.get("PSU_SANITIZE") != "thread":
        assert (result["hooks"], result["stubs"]) == ("on", "on"), result
    assert_clean(result)


def test_stress_with_the_stub_area_full(tmp_path):
    """Room for two stubs, four bundle versions: the other two modules' calls
    go from the hook to the general path, and nothing runs reclaimed code."""
    exe = build(tmp_path, "stress-two-stubs", ["-O2", "-DPSU_STUB_COUNT=2"])
    result, _ = run(exe, 30000, 2, 300)
    if os.environ.get("PSU_SANITIZE") != "thread":
        assert result["stubs"] == "on", result
    assert_clean(result)


def test_stress_fallback_fence(tmp_path):
    exe = build(tmp_path, "stress", ["-O2"])
    result, _ = run(exe, 30000, 2, 3000, "fallback")
    assert result["membarrier"] == 0
    assert result["fast"] == 0, result      # no plain count without membarrier
    assert_clean(result)


def test_stress_thread_churn(tmp_path):
    """Callers that come and go, on stacks unmapped once they are joined (their
    TLS, where their fast counts are, goes too), some leaving by pthread_exit
    inside a counted call: the scan reads only live threads' counts."""
    exe = build(tmp_path, "stress", ["-O2"])
    result, _ = run(exe, 30000, 2, 300, env_extra={"STRESS_CHURN": "1"})
    assert result["churned"] > 0 and result["fast"] > 0, result
    assert_clean(result)


def test_stress_has_teeth_when_a_finished_thread_keeps_its_counts_published(tmp_path):
    """A thread that ended without taking its fast counts back from the scan
    leaves the scan reading unmapped memory (or a count of a call that no
    longer exists): the churn test must see it."""
    exe = build(tmp_path, "stress-broken-retire", ["-O2", "-DPSU_TEST_BROKEN_RETIRE"])
    env = dict(os.environ, PSU_DISABLE="1", PSU_QUIET="1", STRESS_MAX_SECONDS="5",
               STRESS_CHURN="1")
    proc = subprocess.run([str(exe), "30000", "2", "300"], capture_output=True, text=True,
                          env=env, timeout=300)
    m = re.search(r"failures=(\d+) leftover=(\d+)", proc.stdout)
    assert proc.returncode != 0 or (m and (int(m.group(1)) or int(m.group(2)))), proc.stdout


def test_stress_three_callers_unoptimised(tmp_path):
    exe = build(tmp_path, "stress", ["-O0", "-g"])
    assert_clean(run(exe, 5000, 3, 1000)[0])


@pytest.mark.parametrize("mode", [(), ("fallback",)])
def test_stress_thread_sanitizer(tmp_path, mode):
    exe = build(tmp_path, "stress-tsan", ["-O1", "-g", "-fsanitize=thread"])
    result, stderr = run(exe, 2000, 2, 300, *mode,
                         env_extra={"TSAN_OPTIONS": "halt_on_error=1 exitcode=66"})
    assert "ThreadSanitizer" not in stderr, stderr
    assert_clean(result)


def test_stress_has_teeth_without_recheck(tmp_path):
    """Without psu_enter's re-check, a caller that read the old slot before a
    switch and publishes its count after the scan runs reclaimed code: the
    test must see it."""
    exe = build(tmp_path, "stress-broken", ["-O2", "-DPSU_TEST_BROKEN_NO_RECHECK"])
    result, _ = run(exe, 8000, 2, 3000, env_extra=NO_HOOKS)
    assert result["failures"] > 0, result


def test_stress_has_teeth_with_a_stub_that_does_not_count(tmp_path):
    """`work`'s entry jumps to the stub of the current version's module: a
    stub that called the version without counting lets versions be reclaimed
    under running calls, and the test must see it (so the stubs are what the
    stress runs through)."""
    if os.environ.get("PSU_SANITIZE") == "thread":
        pytest.skip("no stubs under ThreadSanitizer (it must see every count)")
    exe = build(tmp_path, "stress-broken-stub", ["-O2", "-DPSU_TEST_BROKEN_STUB"])
    result, _ = run(exe, 8000, 2, 3000)
    assert result["stubs"] == "on" and result["failures"] > 0, result


def test_stress_has_teeth_with_an_unheld_nested_shortcut(tmp_path):
    """A nested call may skip counting only while this thread holds the module
    it is about to run; a shortcut taken without that hold lets reclaimed
    versions run, and the test must see it.  (Which module is asked about is
    checked exactly in test_runtime_cffi.)"""
    exe = build(tmp_path, "stress-broken-nested", ["-O2", "-DPSU_TEST_BROKEN_NESTED"])
    result, _ = run(exe, 8000, 2, 3000, env_extra=NO_HOOKS)
    assert result["failures"] > 0, result


def test_stress_has_teeth_with_a_bundle_version_that_does_not_check_its_slot(tmp_path):
    """A bundle's call of its own version may skip the program's function only
    while the slot still names that version; a version that does not ask runs
    on after it was switched away, and calls that began after the switch run
    it (guarantee 2): the test must see those stale calls."""
    exe = build(tmp_path, "stress-broken-self", ["-O2", "-DPSU_TEST_BROKEN_SELF_CHECK"])
    result, _ = run(exe, 8000, 2, 3000, env_extra=NO_HOOKS)
    assert result["stale"] > 0, result
