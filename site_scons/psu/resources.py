"""Where psu's templates and C runtime sources are: inside the installed package, or in the source tree."""
import os

from .errors import ToolError

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPOSITORY = os.path.dirname(os.path.dirname(_HERE))


def _find(name):
    for candidate in (os.path.join(_HERE, name), os.path.join(_REPOSITORY, name)):
        if os.path.isdir(candidate):
            return candidate
    raise ToolError(f"its '{name}' folder is missing from {_HERE}", hint="reinstall psu")


def templates_dir():
    return _find("templates")


def runtime_sources_dir():
    """The folder of the C runtime's sources and headers (not where processes put
    their sockets: that is control.socket_dir)."""
    return _find("runtime")


def runtime_sources():
    directory = runtime_sources_dir()
    return sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".c"))


def package_files():
    """Files whose change must rebuild what psu generated (SCons ignores helper modules)."""
    files = [os.path.join(_HERE, f) for f in sorted(os.listdir(_HERE)) if f.endswith(".py")]
    templates = templates_dir()
    files += [os.path.join(templates, f) for f in sorted(os.listdir(templates)) if f.endswith(".j2")]
    return files
