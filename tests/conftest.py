import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
# the tests import psu from this checkout, and the shared fixtures beside them
sys.path.insert(0, str(HERE.parent / "site_scons"))
sys.path.insert(0, str(HERE))
