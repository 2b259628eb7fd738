"""Imported first by every tool: finds the package from a plain checkout, and turns a
missing MXNet into one line naming the pip command instead of a traceback."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

try:
    import mobilenet_skip  # noqa: F401,E402
except ImportError as err:
    sys.exit("error: %s" % err)
