"""psu: live updates for C programs, as a build-system plugin (the Portable Software Update design).

The package is itself the SCons tool: `env.Tool('psu')` calls `generate`.  A
project makes the installed package visible to SCons with one line in its
`site_scons/site_init.py`:

    import psu; psu.add_to_toolpath()
"""
import os

__version__ = "0.1.0"


def generate(env):
    from . import scons_tool
    scons_tool.generate(env)


def exists(env):
    from . import scons_tool
    return scons_tool.exists(env)


def toolpath():
    """The folder to give SCons as `toolpath` so that `env.Tool('psu')` finds this package."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add_to_toolpath():
    """Let every Environment of this SCons run find the tool `psu`."""
    import SCons.Tool
    folder = toolpath()
    if folder not in SCons.Tool.DefaultToolpath:
        SCons.Tool.DefaultToolpath.append(folder)
