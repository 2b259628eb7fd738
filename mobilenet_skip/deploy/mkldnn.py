"""MXNet's MKLDNN (oneDNN) CPU backend: the check that a build has it, and the fused
inference graph it makes. Apart from the forms so that INT8 and the benchmark use it
without importing the form registry."""
import mxnet as mx

from ..errors import UserError
from .artifact import Graph

__all__ = ["require_mkldnn", "fuse"]


def require_mkldnn(what):
    """Raise unless this MXNet has the MKLDNN (oneDNN) backend that ``what`` needs."""
    if not mx.runtime.Features().is_enabled("MKLDNN"):
        raise UserError("%s needs MXNet's MKLDNN (oneDNN) CPU backend, which this build lacks; "
                        "use the CPU wheel (pip install mxnet==1.9.1)" % what)


def fuse(graph, input_size):
    """``graph`` partitioned by MXNet's MKLDNN (oneDNN) subgraph backend.

    Each conv with the BN after it (folded into its weights when the graph first
    runs), the ReLU after that and a residual sum after the conv become one
    ``_sg_mkldnn_conv``; this is what ``HybridBlock.optimize_for`` does. The graph keeps
    the unfolded weights, so it equals the plain one to float rounding; it is for
    inference only and needs the CPU build.
    """
    require_mkldnn("--fused")
    args = dict(graph.arg_params, data=mx.nd.zeros((1, 3, input_size, input_size)))
    sym = graph.sym.optimize_for("MKLDNN", args, dict(graph.aux_params), mx.cpu())
    return Graph(sym, {n: args[n] for n in sym.list_arguments() if n != "data"},
                 {n: graph.aux_params[n] for n in sym.list_auxiliary_states()})
