"""Mult-Adds and parameter counts, read off a built network's symbol (Tables 2-4).

What is counted: convolutions and dense layers, the layers the paper's and MobileNet
v1's "Mult-Adds" and "parameters" columns count. BatchNorm, ReLU, pooling and the
skip additions are excluded: BN folds into the preceding conv at inference, and the
rest are a few element-wise ops per activation, not multiply-adds. Parameters are
conv and dense weights and biases; BN's scale/shift (which fold away) are not.
"""
import json

import mxnet as mx

from . import check_input_shape
from .network import TABLE1

__all__ = ["count_symbol", "count_model", "layer_table", "COUNTED_OPS"]

COUNTED_OPS = ("Convolution", "FullyConnected")


def _prod(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n


def count_symbol(sym, data_shape, data_name="data"):
    """Count Mult-Adds and parameters of one sample through ``sym``.

    Parameters
    ----------
    sym : mx.sym.Symbol
        The network's output symbol.
    data_shape : tuple
        Input shape; its batch dimension is ignored (counts are per image).
    data_name : str
        Name of the input variable.

    Returns
    -------
    dict
        ``macs`` and ``params`` (ints), ``layers``, a list of per-layer
        ``(name, op, macs, params)``, and ``output_shapes``, each op node's output shape
        in graph order.
    """
    data_shape = (1,) + tuple(int(s) for s in data_shape[1:])
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(**{data_name: data_shape})
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    nodes = json.loads(sym.tojson())["nodes"]
    layers = []
    output_shapes = {}
    for node in nodes:
        output_shapes[node["name"]] = shapes.get(node["name"] + "_output")
        if node["op"] not in COUNTED_OPS:
            continue
        inputs = [nodes[i[0]]["name"] for i in node["inputs"]]
        weight = shapes[inputs[1]]
        params = sum(_prod(shapes[name]) for name in inputs[1:])
        macs = _prod(weight)  # = C_out * C_in/groups * k * k for conv
        if node["op"] == "Convolution":
            macs *= _prod(shapes[node["name"] + "_output"][2:])
        layers.append((node["name"], node["op"], macs, params))
    return {"macs": sum(l[2] for l in layers), "params": sum(l[3] for l in layers),
            "layers": layers, "output_shapes": output_shapes}


def count_model(net, input_size=224):
    """Count Mult-Adds and parameters of a Gluon network at ``input_size`` x ``input_size``."""
    shape = (1, 3, int(input_size), int(input_size))
    check_input_shape(shape)
    return count_symbol(net(mx.sym.var("data")), shape)


# Table 1's row names for the network's children (stem_, block2_ ... block14_, output_)
ROW_NAMES = dict([("stem", "Conv_1")] + [(block, "Conv_%s" % block[len("block"):])
                                         for block, _, _ in TABLE1]
                 + [("pooling", "Avg Pool"), ("output", "FC")])


def layer_table(net, input_size=224):
    """The paper's Table 1 for ``net``, one row per layer, with what each costs.

    Rows are Conv_1 (the stem), Conv_2 ... Conv_14 (the DW blocks, each with its skip),
    the average pool and the classifier. A DW block's Mult-Adds and parameters include
    its projection skip (full-connect); an identity skip adds neither. The rows add up
    to :func:`count_model`'s totals.

    Returns
    -------
    list of dict
        ``layer`` (Table 1's name), ``output`` ((H, W, C) of the row's output),
        ``skip`` ("identity", "projection" or None), ``macs`` and ``params``.
    """
    counts = count_model(net, input_size)
    prefix = net.prefix
    skips = {block: getattr(net, block).skip for block in net.block_names}
    rows = {}
    for name, shape in counts["output_shapes"].items():
        if not name.startswith(prefix) or shape is None:
            continue
        child = name[len(prefix):].split("_")[0]
        child = "pooling" if child.startswith("pooling") else child
        if child in ROW_NAMES:  # the last node of a child is its output
            rows.setdefault(child, dict(layer=ROW_NAMES[child], skip=skips.get(child),
                                        macs=0, params=0))
            rows[child]["output"] = (tuple(shape[2:]) + (shape[1],) if len(shape) == 4
                                     else tuple(shape[1:]))
    for name, _, macs, params in counts["layers"]:
        child = name[len(prefix):].split("_")[0]
        rows[child]["macs"] += macs
        rows[child]["params"] += params
    order = ["stem"] + list(net.block_names) + ["pooling", "output"]
    return [rows[child] for child in order]
