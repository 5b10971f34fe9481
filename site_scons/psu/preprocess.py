"""Running the compiler's preprocessor on a unit as its real compile would, for parsing and hashing.

Everything that could differ between two checkouts of the same source
(`__FILE__`, `__LINE__`, `__DATE__`, directories) is neutralised, so the text
is a function of the source and flags alone.
"""
import os
import re
import subprocess

from . import resources
from .digest import sha256
from .errors import ToolError

# Parse-only defines: they make glibc's headers and common GNU C digestible for
# pycparser.  The real compile never sees them.
PARSE_ONLY_DEFINES = [
    "-D__attribute__(x)=", "-D__extension__=", "-D__alignof__=_Alignof", "-D__alignof=_Alignof",
    "-D__restrict=", "-D__restrict__=", "-D__inline=inline", "-D__inline__=inline",
    "-D__signed__=signed", "-D__builtin_va_list=char*", "-D_Float128=long double",
    "-D_Float64x=long double", "-D_Float64=double", "-D_Float32x=double",
    "-D_Float32=float", "-D_Float16=float", "-D__bf16=float", "-D__uint128_t=unsigned __int128", "-D__int128_t=__int128",
    "-D__builtin_offsetof=offsetof",
    "-D__builtin_va_arg(a,t)=(*(t*)__builtin_va_arg_p(a))",
    "-D__volatile__=volatile", "-D__const=const", "-D__const__=const",
    "-D_Noreturn=", "-D__thread=_Thread_local",
    "-DPSU_PARSE_ONLY",          # psu_fast.h: no GNU statement expressions
]

# Neutralise what differs between two builds of the same source, so unchanged
# functions do not look changed (e.g. `assert` moved down a line).
NORMALISING_DEFINES = [
    "-Wno-builtin-macro-redefined", "-D__LINE__=0", "-D__DATE__=\"psu\"",
    "-D__TIME__=\"psu\"", "-D__TIMESTAMP__=\"psu\"",
]

_KEEP_FLAG = re.compile(r"^(-D|-U|-I|-iquote|-isystem|-idirafter|-include|-imacros|-std=|-ansi"
                        r"|-m|-f|-pthread$|--sysroot|-nostdinc|-undef|-trigraphs)")
_FLAGS_WITH_ARGUMENT = {"-D", "-U", "-I", "-iquote", "-isystem", "-idirafter", "-include",
                        "-imacros", "-o", "-MF", "-MT", "-MQ", "-x", "--sysroot"}


def preprocessing_flags(flags):
    """The subset of compile flags that influence preprocessing, minus optimisation
    (glibc adds `extern inline` bodies under -O)."""
    kept, pending = [], False
    for flag in flags:
        if pending:
            kept.append(flag)
            pending = False
            continue
        if flag in _FLAGS_WITH_ARGUMENT:
            if flag not in ("-o", "-MF", "-MT", "-MQ", "-x"):
                kept.append(flag)
                pending = True
            continue
        if _KEEP_FLAG.match(flag):
            kept.append(flag)
    return kept


# Parse-only replacements of headers pycparser cannot read (see include/stdatomic.h).
PARSE_ONLY_INCLUDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


def preprocess(path, cc, flags, cwd):
    """Run the compiler's preprocessor on `path` (relative to `cwd`); keep line markers."""
    command = [cc, "-E", "-isystem", PARSE_ONLY_INCLUDE, *preprocessing_flags(flags),
               "-idirafter", resources.runtime_sources_dir(), *PARSE_ONLY_DEFINES,
               *NORMALISING_DEFINES, f"-D__FILE__=\"{path}\"", path]
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise ToolError(f"compiler '{cc}' not found", hint="set CC to a C compiler")
    if done.returncode != 0:
        raise ToolError(f"preprocessing {path} failed:\n{done.stderr.strip()}")
    return done.stdout


_STORAGE_MACRO = re.compile(r"^#define ([A-Za-z_]\w*) (static|extern)\s*$")


def storage_macros(path, cc, flags, cwd):
    """Object-like macros that expand to exactly `static` or `extern` (SQLite's
    SQLITE_PRIVATE): the text edits treat them as the storage class they are."""
    command = [cc, "-E", "-dM", *preprocessing_flags(flags), *PARSE_ONLY_DEFINES, path]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    found = {}
    for line in done.stdout.splitlines():
        match = _STORAGE_MACRO.match(line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def normalised_text(preprocessed, keep_pragmas=False):
    """Preprocessed text without line markers and blank lines, whitespace folded
    (`#pragma` lines kept with `keep_pragmas`: visibility pragmas change code)."""
    out = []
    for line in preprocessed.splitlines():
        if line.startswith("#") and not (keep_pragmas and line.startswith("#pragma")):
            continue
        line = " ".join(line.split())
        if line:
            out.append(line)
    return "\n".join(out) + "\n"


def code_text_hash(path, cc, flags, cwd):
    """Hash of the unit as the compiler sees it (attributes and visibility pragmas
    included, which the parse-only defines drop): part of the build id."""
    command = [cc, "-E", *preprocessing_flags(flags), "-idirafter", resources.runtime_sources_dir(),
               *NORMALISING_DEFINES,
               f"-D__FILE__=\"{path}\"", path]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolError(f"preprocessing {path} failed:\n{done.stderr.strip()}")
    return sha256(normalised_text(done.stdout, keep_pragmas=True))
