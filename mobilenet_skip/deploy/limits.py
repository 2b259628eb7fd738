"""The input sizes a graph can run at here, judged from shape inference alone before
anything is allocated: ``--input-size`` must be a size whose input MXNet can hold
(:func:`checked_input_size`), MXNet must be able to run every array of a batch
(:func:`check_batch`), MXNet 1.9.1's oneDNN crashes on some sizes (:func:`fatal_conv`), and
the memory one image needs (:func:`forward_memory`) must be available
(:func:`~mobilenet_skip.utils.cores.memory_available`).
"""
import json
import os

import mxnet as mx
import numpy as np

from ..errors import UserError
from ..models import MAX_ARRAY_VALUES, MAX_INPUT_SIZE, MAX_MAP_VALUES, MIN_INPUT_SIZE
from ..runs.sidecar import sidecar_path
from ..utils.cores import memory_available

__all__ = ["checked_input_size", "node_shapes", "oversized_array", "check_batch",
           "forward_memory", "fatal_conv", "check_input_size", "check_network",
           "out_of_memory",
           "is_allocation_failure", "FIXED_BYTES", "MAP_COPIES", "INPUT_COPIES",
           "FATAL_CONV_VALUES"]

# What one image of side S adds to the peak RSS of tools/predict.py, measured with 0.25
# and 1.0 full-connect-pre-act exports from 512 to 3072 px (MXNet 1.9.1 with MKLDNN, one
# CPU thread): about 32 MB whatever the size (MKLDNN's primitives and scratch), plus
# 3.35 times the largest feature map, plus 0.3 times the input. The same 1536 px image
# through the 0.25 export peaks at 183 MB in one fresh process and 239-243 MB in the next
# (about 3.9 maps: MXNet's engine frees its intermediates at varying times), so the map
# term is 4.25: above every measurement, and within 1.5 times the lowest.
FIXED_BYTES, MAP_COPIES, INPUT_COPIES = 64 << 20, 4.25, 1.0


def checked_input_size(side):
    """``--input-size`` where a tool takes it in: None when the flag is left out, else
    ``side`` if it is a size whose ``1 x 3 x S x S`` input MXNet can hold
    (:data:`~mobilenet_skip.models.MAX_INPUT_SIZE`); a one-line :class:`UserError`
    otherwise. A side under :data:`~mobilenet_skip.models.MIN_INPUT_SIZE` is refused where
    the model is read, and the graph's own arrays by :func:`check_input_size`."""
    if side is None:
        return None
    if side < 1:
        raise UserError("--input-size %d is not a size: give a side of at least %d px, or "
                        "leave the flag out to use the size the model was trained at"
                        % (side, MIN_INPUT_SIZE))
    if side > MAX_INPUT_SIZE:
        raise UserError("--input-size %d is too large: MXNet %s holds at most %s values in one "
                        "array (it is built without USE_INT64_TENSOR_SIZE), so a 3xSxS input "
                        "allows a side of %d at most and the network's feature maps less; leave "
                        "the flag out to use the size the model was trained at, or give a "
                        "smaller one" % (side, mx.__version__, format(MAX_ARRAY_VALUES, ","),
                                         MAX_INPUT_SIZE))
    return side


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


def oversized_array(shapes, batch=1):
    """The largest array that ``batch`` images cannot have here, from one image's
    :func:`node_shapes`, as ``(output name, one image's shape, kind)``, or None.

    ``kind`` is ``"map"`` for a layer's output of more than
    :data:`~mobilenet_skip.models.MAX_MAP_VALUES` per image (oneDNN crashes on it) and
    ``"array"`` for a batch's array of more than
    :data:`~mobilenet_skip.models.MAX_ARRAY_VALUES` (MXNet refuses it)."""
    for values, out, shape in sorted(((int(np.prod(s)), out, tuple(s))
                                      for out, s in shapes or [] if s), reverse=True):
        if out != "data" and values > MAX_MAP_VALUES:  # the input feeds no BatchNorm
            return out, shape, "map"
        if batch * values > MAX_ARRAY_VALUES:
            return out, shape, "array"
    return None


def check_batch(sym, side, batch, prefix, shapes=None):
    """Refuse ``batch`` images of ``side`` px through ``sym`` when one of its arrays is
    one MXNet cannot run (:func:`oversized_array`), from shape inference alone
    (``shapes``, :func:`node_shapes`, when already inferred).

    The line names the layer and the largest ``--input-size`` (or ``--batch-size``) that
    fits; ``prefix`` names the network."""
    shapes = node_shapes(sym, side) if shapes is None else shapes
    hit = oversized_array(shapes, batch)
    if hit is None:
        return
    out, shape, kind = hit
    layer = out[:-len("_output")] if out.endswith("_output") else out
    values = int(np.prod(shape))
    if kind == "array":
        raise UserError("--input-size %d is too large for a batch of %d images through %s: "
                        "it makes its layer %s an array of %s = %s values, more than the %s "
                        "that MXNet %s holds in one array; use --batch-size %d or less, or a "
                        "smaller --input-size"
                        % (side, batch, prefix, layer,
                           "x".join(map(str, (batch,) + shape[1:])),
                           format(batch * values, ","), format(MAX_ARRAY_VALUES, ","),
                           mx.__version__, MAX_ARRAY_VALUES // values))
    low, high = MIN_INPUT_SIZE, side  # fits at low (or nothing does), not at high
    while high - low > 1:
        mid = (low + high) // 2
        fits = oversized_array(node_shapes(sym, mid), batch) is None
        low, high = (mid, high) if fits else (low, mid)
    raise UserError("--input-size %d is too large for %s: one %dx%d image makes its layer %s "
                    "a %s map of %.1f GB (float32), and MXNet %s's oneDNN kernels crash "
                    "(SIGSEGV) on a map of 2 GiB or more; use --input-size %d or less"
                    % (side, prefix, side, side, layer, "x".join(map(str, shape)),
                       4 * values / 1e9, mx.__version__, low))


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
    """Refuse an input size that would crash oneDNN (:func:`fatal_conv`), whose forward
    cannot fit in the memory available (:func:`forward_memory`) or whose arrays MXNet
    cannot run (:func:`checked_input_size`, :func:`check_batch` for one image), from shape
    inference alone, before anything is allocated; ``prefix`` names the network in the
    message."""
    checked_input_size(side)  # shape inference itself raises past 2^31 - 1 per side
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
    check_batch(sym, side, 1, prefix, shapes)


def check_network(net, side, name):
    """:func:`check_input_size` of a network in memory (a checkpoint's, or an export's
    block) at ``side``, from the graph it traces on a symbol: tracing it for export or
    evaluation runs a forward at that size."""
    check_input_size(net(mx.sym.var("data")), side, name)


def is_allocation_failure(err):
    """Whether MXNet's ``err`` says an allocation failed."""
    text = str(err).lower()
    return any(word in text for word in ("bad_alloc", "out of memory", "failed to allocate",
                                         "cannot allocate", "memory allocation"))
