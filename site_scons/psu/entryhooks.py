"""Entry hooks in the compiled objects of a DSU program's units.

Each DSU function of the program begins with 8 bytes the runtime overwrites
with a jump to the function's general path (or to a stub running its counted
call) while a bundle's version is current (PSU_ENTRY_HOOK in
runtime/psu_fast.h: gcc's `patchable_function_entry(8, 0)`).  The compiler pads them with eight
one-byte nops, and a thread can stand between two of them when the jump is
written: after each DSU unit is compiled, the adapters rewrite them into the
single 8-byte no-op `nopl 0x0(%rax,%rax,1)`, which no thread can be inside
of.  The runtime writes hooks only where it finds that instruction, so a unit
compiled without this step (an LTO object, another compiler's padding) runs
as before, through the check in the function's body.

Only the entries of the unit's DSU functions are touched: function symbols
`f` of the object beside which psu defined `psu_general_f`.
"""
import struct

COMPILER_PADDING = b"\x90" * 8                     # eight `nop`
HOOK = bytes.fromhex("0f1f840000000000")           # nopl 0x0(%rax,%rax,1)

_SHT_SYMTAB = 2
_SHF_EXECINSTR = 0x4
_STT_FUNC = 2
_SHN_LORESERVE = 0xff00
_GENERAL_PATH = b"psu_general_"


def wanted(flags):
    """Whether a unit compiled with `flags` gets entry hooks: not under link-time
    optimisation, whose objects hold no code to rewrite (the link would leave
    eight one-byte nops, which the runtime never writes, in every call)."""
    lto = False
    for flag in flags:
        if flag.startswith("-flto"):
            lto = True
        elif flag == "-fno-lto":
            lto = False
    return not lto


def quiet(path):
    """Rewrite the padded entries of object file `path` in place; returns how many."""
    try:
        with open(path, "rb") as f:
            data = bytearray(f.read())
    except OSError:
        return 0
    offsets = list(_entry_offsets(data))
    for offset in offsets:
        data[offset:offset + 8] = HOOK
    if offsets:
        with open(path, "r+b") as f:
            f.write(data)
    return len(offsets)


def _entry_offsets(data):
    """File offsets of the padded entries of the DSU functions of a
    little-endian ELF64 relocatable object (none for anything else)."""
    if data[:4] != b"\x7fELF" or data[4:6] != b"\x02\x01" or \
            struct.unpack_from("<H", data, 16)[0] != 1:         # ELFCLASS64, LSB, ET_REL
        return
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3a)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != _SHT_SYMTAB or entsize != 24 or link >= shnum:
            continue
        names = sections[link]
        functions = []
        for at in range(offset, offset + size, 24):
            name, info, _, shndx, value, _ = struct.unpack_from("<IBBHQQ", data, at)
            if info & 0xf == _STT_FUNC and 0 < shndx < min(_SHN_LORESERVE, shnum):
                end = data.index(b"\0", names[4] + name)
                functions.append((bytes(data[names[4] + name:end]), shndx, value))
        generals = {n[len(_GENERAL_PATH):] for n, _, _ in functions if n.startswith(_GENERAL_PATH)}
        for name, shndx, value in functions:
            text = sections[shndx]
            if name not in generals or not text[2] & _SHF_EXECINSTR or value + 8 > text[5]:
                continue
            start = text[4] + value
            if data[start:start + 8] == COMPILER_PADDING:
                yield start
