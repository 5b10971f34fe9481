"""Compile C for the runtime tests: executables linked with the psu runtime
(as the build tool links a DSU executable) and shared objects for bundles.

Every command line used is also returned, so a failing test can show it."""
import pathlib
import subprocess

REPO = pathlib.Path(__file__).resolve().parent.parent
RUNTIME = REPO / "runtime"
TESTS_C = REPO / "tests" / "c"

WARNINGS = ["-std=gnu11", "-Wall", "-Wextra", "-Werror"]


class BuildError(Exception):
    pass


def runtime_sources():
    return sorted(str(p) for p in RUNTIME.glob("*.c"))


def run_gcc(args):
    cmd = ["gcc"] + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(" ".join(cmd) + "\n" + proc.stderr)
    return cmd


def build_executable(sources, out, flags=("-O2",), entry_hooks=False):
    """Links `sources` (and the runtime) the way a DSU executable is linked:
    user flags plus -pthread, then -rdynamic -pthread -ldl.  entry_hooks:
    `sources` are compiled first and their entry hooks made one no-op each,
    as the build adapters do (psu.entryhooks)."""
    if entry_hooks:
        from psu import entryhooks
        objects = []
        for source in sources:
            obj = pathlib.Path(out).with_name(pathlib.Path(source).stem + ".o")
            run_gcc(WARNINGS + list(flags) + ["-pthread", "-I", RUNTIME, "-c", source, "-o", obj])
            entryhooks.quiet(str(obj))
            objects.append(obj)
        sources = objects
    args = WARNINGS + list(flags) + ["-pthread", "-I", RUNTIME] + list(sources) + runtime_sources()
    args += ["-o", out, "-rdynamic", "-pthread", "-ldl"]
    run_gcc(args)
    return pathlib.Path(out)


def build_shared(sources, out, flags=("-O2",)):
    """A bundle's code or state object."""
    args = WARNINGS + list(flags) + ["-fPIC", "-shared", "-I", RUNTIME] + list(sources)
    args += ["-o", out]
    run_gcc(args)
    return pathlib.Path(out)
