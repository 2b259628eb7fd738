"""mobilenet-skip: MobileNet v1 with residual skip connections (Huang, Dong, Bai).

The five networks of the paper's Table 1 as Gluon ``HybridBlock`` s, plus the
data, training, export and counting code around them.
"""
__version__ = "0.1.0"

MXNET_INSTALL_HINT = ("mobilenet_skip needs MXNet 1.9.1: run `pip install mxnet==1.9.1` "
                      "(CPU) or `pip install mxnet-cu112==1.9.1` (GPU, CUDA 11.2), "
                      "or `make test` to build the pinned .venv")

try:
    import mxnet as _mx  # noqa: F401
except ImportError:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(MXNET_INSTALL_HINT) from None

from .models import (  # noqa: E402
    VARIANTS, TABLE1, Stem, DWUnit, Projection, DWBlock, MobileNetSkip,
    get_model, list_models)
from .compat import load_gluoncv_params  # noqa: E402
from .flops import count_model, count_symbol  # noqa: E402

__all__ = ["VARIANTS", "TABLE1", "Stem", "DWUnit", "Projection", "DWBlock",
           "MobileNetSkip", "get_model", "list_models", "load_gluoncv_params",
           "count_model", "count_symbol", "MXNET_INSTALL_HINT"]
