"""The build's step for entry hooks (psu.entryhooks): eight one-byte nops at the
entry of each DSU function's object code merged into one 8-byte no-op, and
nothing else touched.  (The runtime's side: test_live_update.py.)"""
import subprocess

from psu import entryhooks

UNIT = r"""
#define HOOK __attribute__((patchable_function_entry(8, 0), noinline))
HOOK int dsu(int x) { return x + 1; }
static int psu_general_dsu(int x) { return x; }
HOOK int other(int x) { return x + 2; }      /* padded, but no DSU function */
int plain(int x) { return x + 3; }
int (*keep[])(int) = { psu_general_dsu };
"""


def _entry(obj, name):
    """The first 8 bytes of `name`'s code in `obj` (objdump)."""
    raw = subprocess.run(["objdump", "-d", "-j", ".text", obj], capture_output=True, text=True,
                         check=True).stdout
    block = raw.split(f"<{name}>:\n", 1)[1]
    data = bytearray()
    for line in block.splitlines():
        if not line.strip():
            break
        data += bytes.fromhex("".join(line.split("\t")[1].split()))
    return bytes(data[:8])


def test_padded_entries_of_dsu_functions_become_one_no_op(tmp_path):
    source = tmp_path / "unit.c"
    source.write_text(UNIT)
    obj = tmp_path / "unit.o"
    subprocess.run(["gcc", "-O2", "-c", source, "-o", obj], check=True)
    assert _entry(obj, "dsu") == entryhooks.COMPILER_PADDING
    assert entryhooks.quiet(obj) == 1
    assert _entry(obj, "dsu") == entryhooks.HOOK
    assert _entry(obj, "other") == entryhooks.COMPILER_PADDING
    assert _entry(obj, "plain")[:3] != entryhooks.HOOK[:3]
    assert entryhooks.quiet(obj) == 0       # done once
    linked = tmp_path / "a.out"
    (tmp_path / "main.c").write_text("int dsu(int);\nint main(void) { return dsu(41) - 42; }\n")
    subprocess.run(["gcc", "-O2", obj, tmp_path / "main.c", "-o", linked], check=True)
    assert subprocess.run([linked]).returncode == 0


def test_other_files_are_left_alone(tmp_path):
    text = tmp_path / "notes.o"
    text.write_bytes(b"not an object")
    assert entryhooks.quiet(text) == 0 and text.read_bytes() == b"not an object"
    assert entryhooks.quiet(tmp_path / "missing.o") == 0


def test_no_hooks_under_link_time_optimisation():
    assert entryhooks.wanted(["-O2", "-g"])
    assert not entryhooks.wanted(["-O2", "-flto"])
    assert not entryhooks.wanted(["-flto=auto"])
    assert entryhooks.wanted(["-flto", "-fno-lto"])
