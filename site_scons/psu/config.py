"""The wrapper route's configuration: `psu.toml`, or `[tool.psu]` in a `pyproject.toml`.

Found from a starting folder upward (the working directory of the compile),
or named by `PSU_CONFIG`.  Paths and globs are relative to the file's folder.
The SCons tool does not read it: there, the construction variables rule.

    units = ["src/*.c"]            # DSU units (globs; `**` crosses folders)
    exclude_units = ["src/main.c"] # globs taken back out of `units`
    exclude = ["fn", "src/a.c:helper"]   # functions kept direct (PSU_EXCLUDE)
    direct_statics = "all"         # PSU_DIRECT_STATICS
    version = "git describe --tags --always --dirty"   # command printing the label
    build_dir = ".psu-build"       # generated sources, analyses, compile_commands.json
    patch_dir = "psu-patches"      # where `psu patch` writes bundles
    patch_from = ["v1.0", "v1.1"]  # deployed versions `psu patch --release` updates
"""
import fnmatch
import os
import sys

from .errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the backport, a dependency below 3.11
    import tomli as tomllib

NAMES = ("psu.toml", "pyproject.toml")
_KEYS = {"units", "exclude_units", "exclude", "accept", "direct_statics", "version", "build_dir",
         "patch_dir", "patch_from"}


class Config:
    """One configuration file's settings (read at every compile: no heavy imports)."""

    def __init__(self, path, root, units=(), exclude_units=(), exclude=(), direct_statics="all",
                 version="", build_dir=".psu-build", patch_dir="psu-patches", patch_from=(),
                 accept=()):
        self.path = path                  # the file it came from
        self.root = root                  # its folder: what paths are relative to
        self.units, self.exclude_units = list(units), list(exclude_units)
        self.exclude, self.patch_from = list(exclude), list(patch_from)
        self.accept = list(accept)        # refusals the user vouches for (as PSU_ACCEPT)
        self.direct_statics, self.version = str(direct_statics), version
        self.build_dir, self.patch_dir = build_dir, patch_dir

    def build_path(self, *parts):
        return os.path.join(self.root, self.build_dir, *parts)

    def relative(self, path):
        """`path` (absolute) relative to the root, or None when it lies outside."""
        relative = os.path.relpath(path, self.root).replace(os.sep, "/")
        return None if relative == ".." or relative.startswith("../") else relative

    def is_dsu_unit(self, path):
        """Whether the source at absolute `path` is a DSU unit."""
        relative = self.relative(path)
        if relative is None:
            return False
        return any(_match(relative, g) for g in self.units) and \
            not any(_match(relative, g) for g in self.exclude_units)

    def label(self):
        if not self.version:
            from .build import git_label
            return git_label(self.root)
        import subprocess
        done = subprocess.run(self.version, shell=True, cwd=self.root, capture_output=True, text=True)
        if done.returncode != 0:
            raise UsageError(f"{self.path}: version command `{self.version}` failed: "
                             f"{done.stderr.strip()}")
        return done.stdout.strip() or "unversioned"


def _match(relative, pattern):
    """A glob on '/'-separated paths: `*` stays in one folder, `**/` spans any."""
    pattern = pattern[2:] if pattern.startswith("./") else pattern
    if "**" in pattern:
        head, _, tail = pattern.partition("**")
        tail = tail.lstrip("/")
        if not relative.startswith(head):
            return False
        rest = relative[len(head):].split("/")
        return any(_match("/".join(rest[i:]), tail) for i in range(len(rest)))
    parts, names = pattern.split("/"), relative.split("/")
    return len(parts) == len(names) and all(fnmatch.fnmatchcase(n, p) for n, p in zip(names, parts))


def load(path):
    """The configuration in `path`, or None for a pyproject.toml without [tool.psu]."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror}")
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: not valid TOML ({error})")
    if os.path.basename(path) == "pyproject.toml":
        data = data.get("tool", {}).get("psu")
        if data is None:
            return None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise UsageError(f"{path}: unknown setting(s) {', '.join(unknown)}",
                         hint="known: " + ", ".join(sorted(_KEYS)))
    for key in ("units", "exclude_units", "exclude", "accept", "patch_from"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{path}: {key} must be a list of strings")
    path = os.path.abspath(path)
    config = Config(path=path, root=os.path.dirname(path), **data)
    if str(config.direct_statics).strip().lower() not in ("all", "true", "none", "false") and \
            not str(config.direct_statics).strip().isdigit():
        raise UsageError(f"{path}: direct_statics = {config.direct_statics!r}: expected "
                         "all, none or a number of AST nodes")
    return config


def find(start):
    """The configuration that applies in folder `start`: PSU_CONFIG, else the
    nearest psu.toml (or pyproject.toml with [tool.psu]) from `start` upward."""
    named = os.environ.get("PSU_CONFIG")
    if named:
        found = load(named)
        if found is None:
            raise UsageError(f"PSU_CONFIG={named} has no [tool.psu] table")
        return found
    folder = os.path.abspath(start)
    while True:
        for name in NAMES:
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate):
                found = load(candidate)
                if found is not None:
                    return found
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent
