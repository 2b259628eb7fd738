"""Fused BatchNorm-ReLU for CPU training: each BatchNorm that feeds a ReLU directly can run
as MXNet's one oneDNN operator ``_contrib_BatchNormWithReLU`` (what
``gluon.nn.BatchNormReLU`` uses), with the same parameters under the same names.

The blocks mark those BatchNorms (:func:`mark_relu`) and apply the ReLU through
:func:`bn_relu` / :func:`relu_after`, which leave it to the BatchNorm once it is fused.
A network is built unfused, the portable graph every runtime runs;
:func:`set_bn_relu_fusion` switches the marked BatchNorms, and training does so where
:func:`fusion_supported` says the operator has a kernel. MXNet 1.9.1 registers it
only as ``FComputeEx<cpu>`` under ``MXNET_USE_MKLDNN`` (src/operator/contrib/
batch_norm_relu.cc; there is no ``.cu``): no GPU kernel, no kernel in a build without
oneDNN, and a fatal "only supports MKL-DNN Backend" when ``MXNET_MKLDNN_ENABLED=0``.
"""
import os

import mxnet as mx
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

__all__ = ["relu", "mark_relu", "bn_relu", "relu_after", "fusable_norms",
           "set_bn_relu_fusion", "fused_count", "fusion_supported"]


def relu(F, x):
    # Activation(relu) rather than F.relu: it is the op MKLDNN fuses into conv+BN.
    return F.Activation(x, act_type="relu")


def _can_fuse(norm):
    # Only Gluon's own BatchNorm honours `fuse_relu`; a norm_layer with its own
    # hybrid_forward (SyncBatchNorm, ...) keeps its ReLU apart.
    return (isinstance(norm, nn.BatchNorm)
            and type(norm).hybrid_forward is nn.BatchNorm.hybrid_forward)


def mark_relu(norm):
    """Record that a ReLU follows ``norm`` directly (so it may be fused); returns ``norm``."""
    if norm is not None and _can_fuse(norm):
        norm.feeds_relu = True
    return norm


def relu_after(F, norm, y):
    """ReLU of ``y = norm(...)``, unless ``norm`` is fused and applied it already."""
    return y if getattr(norm, "fuse_relu", False) else relu(F, y)


def bn_relu(F, norm, x):
    """``ReLU(norm(x))``: one operator where ``norm`` is fused, two otherwise."""
    return relu_after(F, norm, norm(x))


def fusable_norms(net):
    """The BatchNorms of ``net`` that feed a ReLU directly, in network order."""
    found = []
    net.apply(lambda b: found.append(b) if getattr(b, "feeds_relu", False) else None)
    return found


def set_bn_relu_fusion(net, enabled):
    """Fuse (or unfuse) every marked BatchNorm-ReLU pair of ``net``; returns how many.

    Parameters are untouched, so weights and checkpoints are the same either way. Cached
    graphs are dropped: the next call (or ``hybridize``) traces the new one.
    """
    norms = fusable_norms(net)
    for norm in norms:
        norm.fuse_relu = bool(enabled)
    net.apply(lambda b: b._clear_cached_op() if isinstance(b, HybridBlock) else None)
    return len(norms)


def fused_count(net):
    """How many BatchNorms of ``net`` run fused with their ReLU."""
    return sum(1 for norm in fusable_norms(net) if norm.fuse_relu)


def fusion_supported(ctxs, dtype="float32"):
    """Whether ``_contrib_BatchNormWithReLU`` has a kernel for training on ``ctxs`` in
    ``dtype``.

    Returns
    -------
    tuple of (bool, str)
        The answer and, when it is no, why (for the log).
    """
    if any(ctx.device_type != "cpu" for ctx in ctxs):
        return False, "MXNet has no GPU kernel for BatchNormWithReLU"
    if not mx.runtime.Features().is_enabled("MKLDNN"):
        return False, "this MXNet build has no oneDNN (MKLDNN)"
    if os.environ.get("MXNET_MKLDNN_ENABLED", "1").strip().lower() in ("0", "false"):
        return False, "MXNET_MKLDNN_ENABLED=0 turns oneDNN off"
    if dtype != "float32":
        return False, "the fused operator's backward is float32 only"
    return True, ""
