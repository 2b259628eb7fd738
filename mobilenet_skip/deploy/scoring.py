"""Single-centre-crop top-1/top-5 of an export over a validation ``.rec``: through
``SymbolBlock`` or ``Module``, in ONNX Runtime, and several forms side by side.

The batches come from ``data.val_iter`` configured by the export's
:class:`~mobilenet_skip.data.preprocess.Preprocessing` (its sidecar) and are scored by the
one :func:`.evaluate`, whichever runtime runs the network.
"""
import os

import mxnet as mx
import numpy as np

from ..data import records as data
from ..errors import UserError
from ..train.evaluation import evaluate
from .artifact import describe, read_info, sidecar_path
from .loading import open_export
from .runtime import ModuleNet, OnnxNet, val_config

__all__ = ["evaluate_export", "evaluate_onnx", "compare_exports", "APIS", "SCORERS"]

APIS = ("symbolblock", "module")


def _network(exported, api, ctxs, batch_size):
    side = exported.info["input_size"]
    if api == "module":
        net = ModuleNet(exported.graph, ctxs, batch_size, side)
    elif api == "symbolblock":
        net = exported.block
        net.hybridize(static_alloc=True, static_shape=True)
    else:
        raise UserError("--api must be one of %s, got %r" % (", ".join(APIS), api))
    for ctx in ctxs:  # build the graphs before the clock starts
        net(mx.nd.zeros((batch_size, 3, side, side), ctx=ctx)).wait_to_read()
    return net


class _Recorder(object):
    """Passes calls through to ``net`` and keeps every output, in call order."""

    def __init__(self, net):
        self.net, self.outputs = net, []

    def __call__(self, x):
        out = self.net(x)
        self.outputs.append(out.astype("float32"))  # a copy: a Module reuses its output
        return out

    def logits(self):
        """Every output so far as one NumPy array, in call order."""
        return np.concatenate([o.asnumpy() for o in self.outputs])


def evaluate_export(prefix, rec, ctxs=None, api="symbolblock", batch_size=32, input_size=None,
                    threads=None, keep_logits=False, per_image=False):
    """Single-centre-crop top-1/top-5 of an export over a ``.rec``.

    Parameters
    ----------
    prefix : str
        The export.
    rec : str
        Validation ``.rec`` (with its ``.idx``).
    ctxs : list of Context, optional
        Devices; a batch holds ``batch_size`` images per device (default one CPU).
    api : {"symbolblock", "module"}
    input_size : int, optional
        Overrides the sidecar's.
    keep_logits : bool
        Also return every image's logits, to compare two exports image by image.
    per_image : bool
        Also return each image's ``label``, ``pred`` and ``confidence``, for a
        :class:`~mobilenet_skip.deploy.report.ClassReport`.

    Returns
    -------
    dict
        :func:`.evaluate`'s (``top1``, ``top5``, ``loss``, ``images``, ``seconds``,
        ``classes`` and, with ``per_image``, its arrays), ``images_per_s`` (decoding
        included, after one untimed batch), ``info`` (the sidecar) and, with
        ``keep_logits``, ``logits`` (``images x classes``, file order).
    """
    ctxs = list(ctxs or [mx.cpu()])
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    exported = open_export(prefix, input_size, ctx=ctxs)
    net = _network(exported, api, ctxs, batch_size)
    if keep_logits:
        net = _Recorder(net)
    result = evaluate(net, data.val_iter(val_config(exported.info, rec, batch_size, threads),
                                         len(ctxs)), ctxs, per_image=per_image)
    result["images_per_s"] = result["images"] / max(result["seconds"], 1e-9)
    result["info"] = exported.info
    if keep_logits:
        # split_and_load cuts each batch into consecutive runs, one per device, in order
        result["logits"] = net.logits()
    return result


def _onnx_info(path, input_size):
    """Input size and preprocessing of an ONNX file: its stored sidecar, the ``.json``
    beside it, or the defaults at the graph's input size."""
    from .onnx import read_onnx_info  # the ONNX form's module, only when reading its file
    info = read_onnx_info(path)
    base = path[:-5] if path.endswith(".onnx") else path
    if info is None and os.path.isfile(sidecar_path(base)):
        info = read_info(base)
    if info is None:
        info = describe({}, input_size or 224, kind=None, sidecar=False)
    return info


def evaluate_onnx(path, rec, batch_size=32, input_size=None, threads=None, keep_logits=False,
                  per_image=False):
    """Single-centre-crop top-1/top-5 of an ONNX file in ONNX Runtime over a ``.rec``.

    The images come from the same validation iterator as :func:`evaluate_export` (the
    C++ ``ImageRecordIter``, same resize, crop and normalisation) and are scored by
    the same :func:`.evaluate`; only the network runs in ONNX Runtime. The
    preprocessing is the one stored in the file by ``export_onnx``.

    Returns
    -------
    dict
        As :func:`evaluate_export` (its ``keep_logits`` and ``per_image`` too).
    """
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if not os.path.isfile(path):
        raise UserError("ONNX file %s not found (tools/export_model.py --onnx writes "
                        "PREFIX.onnx)" % path)
    info = _onnx_info(path, input_size)  # says which onnx to install if it is missing
    net = OnnxNet(path, threads=None)
    side = net.shape[2] if len(net.shape) == 4 and isinstance(net.shape[2], int) else None
    if input_size and side and int(input_size) != side:
        raise UserError("--input-size %d: %s takes %dx%d images only (its input is %s); "
                        "re-export with export_model.py --input-size %d --onnx"
                        % (input_size, path, side, side, net.shape, input_size))
    if side and side != info["input_size"]:
        if info.get("sidecar") is False:
            info["input_size"] = side
        else:
            raise UserError("%s takes %dx%d images but its description says %d; re-export it"
                            % (path, side, side, info["input_size"]))
    if keep_logits:
        net = _Recorder(net)
    result = evaluate(net, data.val_iter(val_config(info, rec, batch_size, threads)),
                      [mx.cpu()], per_image=per_image)
    result["images_per_s"] = result["images"] / max(result["seconds"], 1e-9)
    result["info"] = info
    if keep_logits:
        result["logits"] = net.logits()
    return result


# How a form's output is scored, by the runtime that runs it (registry.RUNTIMES).
SCORERS = {"mxnet": evaluate_export, "onnxruntime": evaluate_onnx}


def compare_exports(outputs, rec, batch_size=32):
    """Top-1 of several forms of one model over ``rec``, and their agreement.

    Parameters
    ----------
    outputs : dict
        Name (``fp32``, ``int8``, ...) to ``(runtime, path)``: a key of :data:`SCORERS`
        and an export prefix (``mxnet``) or an ONNX file (``onnxruntime``); the first is
        the reference. A plain string is an MXNet export prefix.

    Returns
    -------
    list of dict
        Per form: ``kind`` (its name), ``top1``, ``top5``, ``images``, ``agreement``
        (share of images whose top-1 class equals the reference's) and ``top1_drop``
        (reference top-1 minus this one).
    """
    rows, reference = [], None
    for name, output in outputs.items():
        runtime, path = ("mxnet", output) if isinstance(output, str) else output
        r = SCORERS[runtime](path, rec, batch_size=batch_size, keep_logits=True)
        pred = r["logits"].argmax(axis=1)
        if reference is None:
            reference = {"pred": pred, "top1": r["top1"]}
        rows.append({"kind": name, "top1": r["top1"], "top5": r["top5"], "images": r["images"],
                     "agreement": float((pred == reference["pred"]).mean()),
                     "top1_drop": reference["top1"] - r["top1"]})
    return rows
