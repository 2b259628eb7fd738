"""The input sizes a graph can run at here, judged from shape inference alone before
anything is allocated: MXNet 1.9.1's oneDNN crashes on some (:func:`fatal_conv`), and the
memory one image needs (:func:`forward_memory`) must be available
(:func:`~mobilenet_skip.utils.cores.memory_available`).
"""
import json
import os

import mxnet as mx
import numpy as np

from ..errors import UserError
from ..runs.sidecar import sidecar_path
from ..utils.cores import memory_available

__all__ = ["node_shapes", "forward_memory", "fatal_conv", "check_input_size", "out_of_memory",
           "is_allocation_failure", "FIXED_BYTES", "MAP_COPIES", "INPUT_COPIES",
           "FATAL_CONV_VALUES"]

# What one image of side S adds to the peak RSS of tools/predict.py, measured with 0.25
# and 1.0 full-connect-pre-act exports from 512 to 3072 px (MXNet 1.9.1 with MKLDNN, one
# CPU thread): about 32 MB whatever the size (MKLDNN's primitives and scratch), plus
# 3.35 times the largest feature map, plus 0.3 times the input. The estimate rounds each
# term up, so that it stays above every measurement (by 10 to 45 %).
FIXED_BYTES, MAP_COPIES, INPUT_COPIES = 64 << 20, 3.5, 1.0


def node_shapes(sym, input_size):
    """``[(output name, shape)]`` of every node of ``sym`` for one image of
    ``input_size``, by shape inference alone; None when the graph does not take it."""
    internals = sym.get_internals()
    try:
        _, shapes, _ = internals.infer_shape(data=(1, 3, input_size, input_size))
    except mx.base.MXNetError:
        return None
    return list(zip(internals.list_outputs(), shapes or []))


def forward_memory(shapes, input_size):
    """The bytes one image of ``input_size`` adds to predict's (or eval's) process, from
    the graph's :func:`node_shapes` at that size (0 when it has none).

    :data:`FIXED_BYTES`, plus :data:`MAP_COPIES` times the largest feature map, plus
    :data:`INPUT_COPIES` times the input (float32): a fit to measured peaks that stays
    above each of them. Computed from shape inference alone, so nothing is allocated.
    """
    if shapes is None:
        return 0  # the forward itself reports a graph that does not fit
    sizes = [int(np.prod(s)) for _, s in shapes if s]
    return int(FIXED_BYTES + 4 * (INPUT_COPIES * 3 * input_size ** 2
                                  + MAP_COPIES * max(sizes or [0])))


def out_of_memory(side, prefix, detail=None):
    """The one line for a forward of ``side`` px through ``prefix`` that ran out of memory."""
    return ("--input-size %d is too large: one %dx%d image through %s ran out of memory%s; "
            "use the size it was trained at (%s) or a smaller one"
            % (side, side, side, prefix, " (%s)" % detail if detail else "",
               sidecar_path(prefix) if os.path.isfile(sidecar_path(prefix)) else "224 for "
               "ImageNet"))


# MXNet 1.9.1's oneDNN 1x1 convolution dies by SIGFPE (no message, no traceback) when its
# output for one image holds a multiple of 2^26 values on a square map: measured here for
# 16 and 64 channels at 2048 and 1024 px (2^26), 128 and 256 at 1024 (2^27, 2^28); 2^26 - 1
# or + 2^20 values run, as does any size that is not such a multiple.
FATAL_CONV_VALUES = 1 << 26


def fatal_conv(sym, input_size):
    """The 1x1 convolution of ``sym`` that ``input_size`` would crash (see
    :data:`FATAL_CONV_VALUES`), as ``(node name, output shape)``, or None."""
    return _fatal_conv(sym, node_shapes(sym, input_size))


def _fatal_conv(sym, shapes):
    nodes = {n["name"]: n for n in json.loads(sym.tojson())["nodes"]}
    for out, shape in shapes or []:
        node = nodes.get(out[:-len("_output")]) if out.endswith("_output") else None
        if not node or node["op"] != "Convolution" or not shape:
            continue
        attrs = node.get("attrs", {})
        values = int(np.prod(shape))
        if (attrs.get("kernel") in ("(1, 1)", "(1,1)") and shape[2] == shape[3]
                and values % FATAL_CONV_VALUES == 0):
            return node["name"], tuple(shape)
    return None


def check_input_size(sym, side, prefix):
    """Refuse an input size that would crash oneDNN (:func:`fatal_conv`) or whose forward
    cannot fit in the memory available (:func:`forward_memory`), from shape inference
    alone, before anything is allocated; ``prefix`` names the network in the message."""
    shapes = node_shapes(sym, side)
    hit = _fatal_conv(sym, shapes)
    if hit is not None:
        near = next(s for d in range(8, side, 8) for s in (side - d, side + d)
                    if fatal_conv(sym, s) is None)
        raise UserError("--input-size %d would crash MXNet 1.9.1 (SIGFPE inside oneDNN): %s's "
                        "1x1 convolution %s outputs %s = %d x 2^26 values, a size its kernel "
                        "cannot run; use --input-size %d, or any size that avoids it"
                        % (side, prefix, hit[0], "x".join(map(str, hit[1])),
                           int(np.prod(hit[1])) // FATAL_CONV_VALUES, near))
    need, have = forward_memory(shapes, side), memory_available()
    if have is not None and need > have:
        raise UserError("--input-size %d is too large: one %dx%d image through %s needs "
                        "about %.1f GB, and %.1f GB of memory is available; use the size it "
                        "was trained at or a smaller one"
                        % (side, side, side, prefix, need / 1e9, have / 1e9))


def is_allocation_failure(err):
    """Whether MXNet's ``err`` says an allocation failed."""
    text = str(err).lower()
    return any(word in text for word in ("bad_alloc", "out of memory", "failed to allocate",
                                         "cannot allocate", "memory allocation"))
