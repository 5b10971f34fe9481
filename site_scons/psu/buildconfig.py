"""The build description: how one program is built, as `patch` and `psu diff`
analyse it.  Every build adapter (the SCons tool, the compiler wrapper, `psu
program`) writes one with `write`; `patch` and the CLI read it back with `read`.
"""
import json
import os
from dataclasses import asdict, dataclass, field, fields

from . import jsonfile
from .errors import UsageError
from .policy import DEFAULT_DIRECT_STATICS, DsuPolicy


@dataclass
class BuildConfig:
    """How one program is built; paths relative to `top` unless said otherwise."""

    program: str
    top: str                                     # absolute project root
    sources: list                                # every unit of the program
    dsu_units: list
    cc: str = "cc"
    flags: list = field(default_factory=list)    # flags that change code, as on the command line
    exclude: list = field(default_factory=list)          # PSU_EXCLUDE, and
    direct_statics: str = DEFAULT_DIRECT_STATICS         # PSU_DIRECT_STATICS: see `policy`
    libraries: list = field(default_factory=list)  # what the program links: a bundle may need them too
    accept: list = field(default_factory=list)   # refusals the user vouches for (PSU_ACCEPT)
    work_dir: str = ".psu-build"                 # absolute or relative to top
    # The wrapper route (cc.py): each unit's own flags, include paths absolute in
    # the build it was recorded from, and the program's flags in its manifest.
    unit_flags: dict = field(default_factory=dict)
    manifest_flags: list = None
    # The flags of the deployed FROM build (its manifest's), where the build
    # files changed them since (a define): FROM is analysed as it was built.
    from_flags: list = None
    # The bundle that updated the running process to FROM (a .psu file), where
    # this work folder did not build it: its record says what older bundles
    # provide, which this bundle carries so they unload (see docs/bundle-format.md).
    previous_bundle: str = None

    @property
    def policy(self):
        """The DSU policy this program is built with (its two settings stay
        fields of their own: they are the build description's JSON)."""
        return DsuPolicy(self.exclude, self.direct_statics)

    def path(self, *parts):
        return os.path.join(self.top, self.work_dir, *parts)

    def flags_of(self, unit, root):
        """The flags unit `unit` is analysed and compiled with in the tree at `root`."""
        if unit not in self.unit_flags:
            return self.flags
        return map_flags(self.unit_flags[unit], self.top, root)


_PATH_VALUED = ("-I", "-iquote", "-isystem", "-idirafter")


def map_flags(flags, top, root):
    """Recorded flags moved into the revision exported at `root`: a folder of the
    project is searched in the revision first, then where the build had it, so
    generated headers (autotools' config.h, a build folder's) are still found."""
    if os.path.abspath(root) == os.path.abspath(top):
        return list(flags)

    def inside(path):
        relative = os.path.relpath(path, top)
        return None if relative == ".." or relative.startswith(".." + os.sep) else relative
    mapped, index = [], 0
    while index < len(flags):
        flag = flags[index]
        option = next((o for o in _PATH_VALUED[::-1] if flag.startswith(o)), None)
        if option is None and flag in ("-include", "-imacros") and index + 1 < len(flags):
            relative = inside(flags[index + 1])
            moved = os.path.join(root, relative) if relative is not None else None
            mapped += [flag, moved if moved and os.path.exists(moved) else flags[index + 1]]
            index += 2
            continue
        if option is None:
            mapped.append(flag)
            index += 1
            continue
        if flag == option and index + 1 < len(flags):
            value, index = flags[index + 1], index + 2
        else:
            value, index = flag[len(option):], index + 1
        relative = inside(value)
        if relative is not None:
            mapped += [option, os.path.normpath(os.path.join(root, relative))]
        mapped += [option, value]
    return mapped


def to_json(config):
    """`config` as the build description's JSON text (byte-stable)."""
    return jsonfile.dumps(asdict(config))


def from_json(text, origin="the build description"):
    """The BuildConfig a build description's JSON text describes."""
    try:
        described = json.loads(text)
        return BuildConfig(**described)
    except (ValueError, TypeError) as error:
        raise UsageError(f"{origin}: not a psu build description ({error})")


def write(path, config):
    jsonfile.write(path, asdict(config))


def read(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as error:
        raise UsageError(f"{path}: not a psu build description ({error})")
    return from_json(text, path)


KNOWN_FIELDS = frozenset(f.name for f in fields(BuildConfig))
