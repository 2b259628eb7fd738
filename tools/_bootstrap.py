"""Imported first by every tool: finds the package from a plain checkout, sizes MXNet's
OpenMP pool to the physical cores, and turns a missing MXNet into one line naming the pip
command instead of a traceback. Importing the package loads no MXNet (its names resolve on
first use), so the core count is read before MXNet starts its thread pool."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


from mobilenet_skip.utils.cores import physical_cores  # noqa: E402 - MXNet-free
from mobilenet_skip.utils.threads import SOURCE_ENV  # noqa: E402 - MXNet-free


# MXNet sizes its OpenMP pool to half the logical CPUs on x86, assuming two hyper-threads
# per core; where cores have one (most cloud VMs) that leaves half the machine idle, and
# training runs at half speed. One thread per physical core is right either way. It must be
# set before MXNet loads; an OMP_NUM_THREADS or MXNET_OMP_MAX_THREADS of your own wins.
# SOURCE_ENV marks the value as ours, so that the trainer may still pick one thread for a
# small network (mobilenet_skip/utils/threads.py).
if not {"OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS"} & set(os.environ):
    _cores = physical_cores()
    if _cores:
        os.environ["OMP_NUM_THREADS"] = str(_cores)
        os.environ[SOURCE_ENV] = "cores"

# Under an ASCII locale (LC_ALL=C with PYTHONUTF8=0) a print naming a class or file such as
# café would die of UnicodeEncodeError; such names print escaped (caf\xe9) instead.
for _stream in (sys.stdout, sys.stderr):
    if (getattr(_stream, "encoding", None) or "").lower() in ("ascii", "ansi_x3.4-1968"):
        _stream.reconfigure(errors="backslashreplace")

import mobilenet_skip  # noqa: E402

try:
    mobilenet_skip.require_mxnet()
except ImportError as err:
    sys.exit("error: %s" % err)
