import os
import sys

import pytest

# One OpenMP thread per test process, as MXNet itself chose on the 2-core machine these
# tests were written on: test processes share the cores with each other and other jobs,
# and a pool sized to the whole machine spin-waits against them. The tools' own default
# (one thread per physical core, tools/_bootstrap.py) is tested explicitly.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
sys.path.insert(0, ROOT)


@pytest.fixture(autouse=True)
def _seed():
    import mxnet as mx
    import numpy as np
    mx.random.seed(0)
    np.random.seed(0)
