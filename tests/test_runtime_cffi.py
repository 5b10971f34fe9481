"""The C runtime driven in-process through cffi, where a whole program would be
clumsy: its SHA-256 and its bundle reader checked against Python's, on many
mutated bundles (the two readers must refuse exactly the same files)."""
import hashlib
import importlib
import os
import random
import sys

import pytest

from projects import REPO
from psu import bundle
from psu.errors import BundleError

cffi = pytest.importorskip("cffi")

BUILD_ID = "ab" * 32


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    ffi = cffi.FFI()
    ffi.cdef("""
        void psu_sha256(const void *data, size_t n, unsigned char out[32]);
        const char *test_apply(const char *path, char *message, size_t size);
        int test_enter(unsigned held_module, unsigned long held, unsigned slot_module);
    """)
    ffi.set_source("psu_runtime_under_test", f"""
        #include <stdio.h>
        #include "psu_internal.h"
        const char psu_build_id[] = "{BUILD_ID}";
        const char psu_program_name[] = "cffi-test";
        const char psu_version_label[] = "v1";

        /* Apply as the update thread would; returns the refusal class or NULL. */
        const char *test_apply(const char *path, char *message, size_t size)
        {{
            struct psu_update_result result;
            struct psu_error error = {{ 0 }};
            psu_lock(&psu_update_lock);
            int ok = psu_apply_bundle(path, &result, &error);
            psu_unlock(&psu_update_lock);
            snprintf(message, size, "%s", ok ? "" : error.message);
            return ok ? NULL : error.class;
        }}

        /* psu_enter_from for a slot naming `slot_module` (or, for 256, holding
         * the executable's version) while this thread holds `held` calls of
         * `held_module`: 0 = no code (call the executable's version by name),
         * 1 = nested (uncounted), 2 = counted. */
        int test_enter(unsigned held_module, unsigned long held, unsigned slot_module)
        {{
            static struct psu_function fn = {{ 0, "cffi:fn", 0, 0 }};
            uintptr_t word = slot_module == 256 ? PSU_EXECUTABLE_VERSION
                : psu_word(slot_module, (const void *)0x401000);
            atomic_store(&fn.current, word);
            struct psu_thread_record *self = psu_thread_register();
            atomic_fetch_add(&self->calls[held_module], held);
            struct psu_call call = psu_enter_from(&fn, word);
            int decision = !call.code ? 0 : !call.calls ? 1 : 2;
            psu_leave(call);
            atomic_fetch_sub(&self->calls[held_module], held);
            return decision;
        }}
        """,
        sources=sorted(str(p) for p in (REPO / "runtime").glob("*.c")),
        include_dirs=[str(REPO / "runtime")],
        # a shared object cannot have the executable's initial-exec TLS
        extra_compile_args=["-std=gnu11", "-pthread", "-DPSU_TLS="], libraries=["dl"])
    build_dir = tmp_path_factory.mktemp("cffi")
    ffi.compile(tmpdir=str(build_dir))
    os.environ["PSU_DISABLE"] = "1"     # no update thread inside pytest
    sys.path.insert(0, str(build_dir))
    try:
        module = importlib.import_module("psu_runtime_under_test")
        return module.ffi, module.lib
    finally:
        sys.path.remove(str(build_dir))
        del os.environ["PSU_DISABLE"]


def test_sha256_matches_hashlib(runtime):
    ffi, lib = runtime
    generator = random.Random(7)
    for size in list(range(0, 130)) + [1000, 4096, 65537]:
        data = bytes(generator.getrandbits(8) for _ in range(size))
        out = ffi.new("unsigned char[32]")
        lib.psu_sha256(data, len(data), out)
        assert bytes(out) == hashlib.sha256(data).digest(), size


def _bundle(program=b"cffi-test", base=BUILD_ID.encode()):
    return bundle.pack({"manifest": b"{}", "program": program, "base": base,
                        "target": b"cd" * 32, "label": b"v2", "code": b"\x7fELF not really"})


def _mutations(data, generator):
    yield "truncated", data[:generator.randrange(len(data))]
    flipped = bytearray(data)
    flipped[generator.randrange(len(data))] ^= 1 << generator.randrange(8)
    yield "flipped", bytes(flipped)
    # a structural change with the checksum made right again: only the format check can refuse
    body = bytearray(data[:-32])
    field = generator.choice(["count", "offset", "size", "magic", "name"])
    if field == "count":
        body[8:12] = generator.choice([0, 33, 7, 2**31]).to_bytes(4, "little")
    elif field == "magic":
        body[0] ^= 0x20
    else:
        entry = 16 + 32 * generator.randrange(6)
        at = {"offset": entry + 16, "size": entry + 24, "name": entry}[field]
        value = generator.choice([0, 1, len(body), 2**40, generator.randrange(len(body))])
        body[at:at + 8] = value.to_bytes(8, "little")
    yield f"resealed-{field}", bytes(body) + hashlib.sha256(bytes(body)).digest()


def test_c_and_python_readers_refuse_the_same_bundles(runtime, tmp_path):
    ffi, lib = runtime
    generator = random.Random(1234)
    path = tmp_path / "mutated.psu"
    message = ffi.new("char[800]")
    checked = 0
    for _ in range(150):
        for kind, data in _mutations(_bundle(), generator):
            path.write_bytes(data)
            try:
                bundle.unpack(data)
                python_refuses = False
            except BundleError:
                python_refuses = True
            refusal = lib.test_apply(str(path).encode(), message, 800)
            c_class = ffi.string(refusal).decode() if refusal != ffi.NULL else None
            c_refuses_file = c_class in ("format", "checksum")
            assert c_refuses_file == python_refuses, (kind, c_class, ffi.string(message))
            checked += 1
    assert checked == 450


def test_program_and_base_are_checked_before_loading(runtime, tmp_path):
    ffi, lib = runtime
    message = ffi.new("char[800]")
    cases = {"program": _bundle(program=b"other"), "base": _bundle(base=b"ef" * 32),
             "load": _bundle()}
    for expected, data in cases.items():
        path = tmp_path / f"{expected}.psu"
        path.write_bytes(data)
        refusal = lib.test_apply(str(path).encode(), message, 800)
        assert ffi.string(refusal).decode() == expected, ffi.string(message)


def test_a_call_counts_unless_its_code_cannot_be_unloaded(runtime):
    """psu_enter_from (psu_fast.h) counts nothing for the executable's version,
    nor for a nested call into the very module this thread holds, whichever
    others it is inside; every other call is counted."""
    _, lib = runtime
    executable, nested, counted = 0, 1, 2
    assert lib.test_enter(0, 0, 256) == executable
    assert lib.test_enter(7, 1, 256) == executable
    assert lib.test_enter(7, 1, 7) == nested
    assert lib.test_enter(7, 3, 7) == nested
    assert lib.test_enter(255, 1, 255) == nested
    assert lib.test_enter(0, 1, 7) == counted      # inside the executable, calling into a bundle
    assert lib.test_enter(7, 1, 8) == counted
    assert lib.test_enter(3, 0, 3) == counted      # holds nothing
