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

__all__ = ["count_symbol", "count_model", "COUNTED_OPS"]

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
        ``macs`` and ``params`` (ints) and ``layers``, a list of per-layer
        ``(name, op, macs, params)``.
    """
    data_shape = (1,) + tuple(int(s) for s in data_shape[1:])
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(**{data_name: data_shape})
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    nodes = json.loads(sym.tojson())["nodes"]
    layers = []
    for node in nodes:
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
            "layers": layers}


def count_model(net, input_size=224):
    """Count Mult-Adds and parameters of a Gluon network at ``input_size`` x ``input_size``."""
    shape = (1, 3, int(input_size), int(input_size))
    check_input_shape(shape)
    return count_symbol(net(mx.sym.var("data")), shape)
