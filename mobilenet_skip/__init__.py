"""mobilenet-skip: MobileNet v1 with residual skip connections (Huang, Dong, Bai).

The five networks of the paper's Table 1 as Gluon ``HybridBlock`` s, plus the
data, training, export and counting code around them.

``import mobilenet_skip`` loads nothing heavy: the names below that need MXNet are
resolved on first use (PEP 562), so ``mobilenet_skip.utils`` (what tools read before
MXNet starts, e.g. the core count that sizes its thread pool) imports on its own.
"""
import importlib

__version__ = "0.1.0"

MXNET_INSTALL_HINT = ("mobilenet_skip needs MXNet 1.9.1: run `pip install mxnet==1.9.1` "
                      "(CPU) or `pip install mxnet-cu112==1.9.1` (GPU, CUDA 11.2), "
                      "or `make test` to build the pinned .venv")

# public name -> the module that defines it
_EXPORTS = {
    "VARIANTS": "models", "TABLE1": "models", "Stem": "models", "DWUnit": "models",
    "Projection": "models", "DWBlock": "models", "MobileNetSkip": "models",
    "get_model": "models", "list_models": "models",
    "load_gluoncv_params": "models.gluoncv",
    "count_model": "models.flops", "count_symbol": "models.flops",
}

__all__ = sorted(_EXPORTS) + ["MXNET_INSTALL_HINT"]


def require_mxnet():
    """Import MXNet, or raise ImportError with the one line that says how to install it."""
    try:
        return importlib.import_module("mxnet")
    except ImportError:
        raise ImportError(MXNET_INSTALL_HINT) from None


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError("module 'mobilenet_skip' has no attribute %r" % name)
    require_mxnet()
    value = getattr(importlib.import_module("." + _EXPORTS[name], __name__), name)
    globals()[name] = value  # resolved once
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
