"""MXNet's own distributed launcher (``mxnet/tools/launch.py``), made to run on Python 3.11.

Two things stop the launcher shipped with mxnet 1.9.1 from running:

* the wheel ships ``launch.py`` but not the ``dmlc_tracker`` package it imports (that
  lives in dmlc-core's source tree, which is not on PyPI). :func:`install_tracker`
  extracts it from a hash-pinned PyPI source archive that vendors dmlc-core
  (``requirements/tracker.txt``);
* ``dmlc_tracker`` calls ``Thread.isAlive``, removed in Python 3.9. :func:`run`
  restores the alias and then runs MXNet's ``launch.py`` unchanged.
"""
import glob
import os
import runpy
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import threading

from .errors import UserError

__all__ = ["TRACKER_REQUIREMENT", "tracker_available", "install_tracker", "mxnet_launch_script",
           "run"]

TRACKER_REQUIREMENT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                   "requirements", "tracker.txt")
_MEMBER = "/xgboost/dmlc-core/tracker/dmlc_tracker/"


def tracker_available():
    """Whether ``import dmlc_tracker`` would succeed."""
    import importlib.util
    return importlib.util.find_spec("dmlc_tracker") is not None


def install_tracker(target=None, requirement=TRACKER_REQUIREMENT):
    """Download the pinned source archive and extract ``dmlc_tracker`` into ``target``
    (default: this interpreter's site-packages). Returns the package directory."""
    target = target or sysconfig.get_paths()["purelib"]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
               "--no-build-isolation", "--require-hashes", "-r", requirement, "-d", tmp]
        if subprocess.call(cmd) != 0:
            raise UserError("could not download the dmlc_tracker source pinned in %s; check "
                            "network access to PyPI" % requirement)
        archive = glob.glob(os.path.join(tmp, "*.tar.gz"))[0]
        staging = os.path.join(tmp, "dmlc_tracker")
        os.makedirs(staging)
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = member.name
                if _MEMBER in name and member.isfile() and name.endswith(".py") and \
                        "/" not in name.split(_MEMBER, 1)[1]:
                    with tar.extractfile(member) as src, \
                            open(os.path.join(staging, os.path.basename(name)), "wb") as dst:
                        shutil.copyfileobj(src, dst)
        if not os.path.isfile(os.path.join(staging, "tracker.py")):
            raise UserError("%s holds no dmlc_tracker package" % os.path.basename(archive))
        dest = os.path.join(target, "dmlc_tracker")
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        shutil.copytree(staging, dest)
    return dest


def mxnet_launch_script():
    """Path of the ``launch.py`` inside the installed mxnet package."""
    import mxnet
    path = os.path.join(os.path.dirname(mxnet.__file__), "tools", "launch.py")
    if not os.path.isfile(path):
        raise UserError("this mxnet install has no tools/launch.py (%s)" % path)
    return path


def run(argv):
    """Run MXNet's ``launch.py`` with ``argv``, after the Python 3.9+ fix."""
    if not hasattr(threading.Thread, "isAlive"):
        threading.Thread.isAlive = threading.Thread.is_alive
    if not tracker_available():
        raise UserError("dmlc_tracker is not installed; run `make venv` or "
                        "`python tools/launch.py --install-tracker`")
    script = mxnet_launch_script()
    sys.argv = [script] + list(argv)
    runpy.run_path(script, run_name="__main__")
