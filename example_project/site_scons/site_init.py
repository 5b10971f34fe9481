# The one line a project adds so that `env.Tool('psu')` finds the installed package.
# (This example also runs from a source checkout without installing psu.)
try:
    import psu
except ImportError:
    import os, sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "site_scons"))
    import psu
psu.add_to_toolpath()
