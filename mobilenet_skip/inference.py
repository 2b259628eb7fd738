"""Exported models at work: one image preprocessed exactly like validation, top-k class
names, and single-crop evaluation over a ``.rec`` through ``SymbolBlock`` or ``Module``.

Validation (``data.val_iter``, MXNet's ``ImageRecordIter``) decodes with the OpenCV
built into MXNet, resizes the shorter side to ``round(input_size / crop_ratio)``
with bilinear interpolation (``inter_method`` 1, its default), scaling the longer
side by integer division, keeps the central ``input_size`` square (offsets rounded
down) and normalises RGB with the mean/std. :func:`preprocess` does the same
through ``mx.image``, which calls that same OpenCV, so one image gives the network
the input it had in validation.
"""
import os

import mxnet as mx
import numpy as np

from . import data
from .errors import UserError
from .export import load_symbolic, open_export
from .training import evaluate

__all__ = ["resize_side", "decode_image", "preprocess", "load_image", "top_k", "softmax",
           "ModuleNet", "evaluate_export", "compare_exports", "APIS"]

APIS = ("symbolblock", "module")


def resize_side(input_size, crop_ratio):
    """Shorter side before the centre crop: 256 for 224 at the usual 0.875."""
    return int(round(input_size / crop_ratio))


def decode_image(raw, name="image"):
    """RGB ``H x W x 3`` uint8 NDArray from encoded bytes (JPEG, PNG, ...).

    Raises
    ------
    UserError
        When the bytes are empty or not an image OpenCV can decode.
    """
    if not raw:
        raise UserError("%s is empty" % name)
    try:
        img = mx.image.imdecode(raw, flag=1, to_rgb=True)
    except mx.base.MXNetError:
        img = None
    if img is None or img.ndim != 3 or min(img.shape[:2]) < 1:
        raise UserError("%s cannot be decoded as an image (JPEG, PNG, BMP, ...)" % name)
    return img


def preprocess(img, input_size=224, crop_ratio=0.875, mean_rgb=data.DEFAULTS["mean_rgb"],
               std_rgb=data.DEFAULTS["std_rgb"]):
    """Validation's transform of one decoded RGB image: a ``1 x 3 x S x S`` float32 batch.

    Parameters
    ----------
    img : NDArray
        ``H x W x 3`` uint8, RGB (:func:`decode_image`).
    input_size, crop_ratio, mean_rgb, std_rgb
        As in the recipe (an export's sidecar holds them).
    """
    h, w = img.shape[:2]
    short = resize_side(input_size, crop_ratio)
    # ImageRecordIter's arithmetic: integer division for the longer side.
    new_h, new_w = (short * h // w, short) if h > w else (short, short * w // h)
    img = mx.image.imresize(img, new_w, new_h, interp=1)
    y, x = (new_h - input_size) // 2, (new_w - input_size) // 2
    crop = img[y:y + input_size, x:x + input_size].astype("float32")
    mean = mx.nd.array(mean_rgb).reshape((1, 1, 3))
    std = mx.nd.array(std_rgb).reshape((1, 1, 3))
    return ((crop - mean) / std).transpose((2, 0, 1)).expand_dims(0)


def load_image(path, info):
    """Read, decode and preprocess one image file for an export described by ``info``.

    Raises
    ------
    UserError
        Naming the file: missing, unreadable, or not an image.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise UserError("%s: %s" % (path, err.strerror or err))
    img = decode_image(raw, path)
    return preprocess(img, info["input_size"], info["crop_ratio"], info["mean_rgb"],
                      info["std_rgb"])


def softmax(logits):
    """Row-wise softmax of a NumPy array, in float64 for stable probabilities."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def top_k(probs, synsets, k=5):
    """The ``k`` most likely classes of one probability vector.

    Returns
    -------
    list of dict
        ``index``, ``name`` and ``probability``, most likely first.
    """
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"index": int(i), "name": synsets[i] if synsets else str(i),
             "probability": float(probs[i])} for i in order]


class ModuleNet(object):
    """An export bound as ``mx.mod.Module`` s (one per context), called like a block.

    ``mx.model.load_checkpoint``, ``Module.bind`` and ``set_params``: the classic
    symbolic API. ``net(x)`` runs the Module of ``x``'s context (rebinding for a
    smaller last batch) and returns its logits, so :func:`training.evaluate` takes
    it as it takes a ``SymbolBlock``. MXNet's CPU executor applies the MKLDNN
    subgraph backend on bind, so this path runs the fused graph; its logits differ
    from the ``SymbolBlock`` ones by float rounding only.
    """

    def __init__(self, prefix, ctxs, batch_size, input_size):
        sym, arg_params, aux_params = load_symbolic(prefix)
        os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # no log line per bind
        self.mods = {}
        for ctx in ctxs:
            mod = mx.mod.Module(sym, data_names=["data"], label_names=None, context=ctx)
            mod.bind(data_shapes=[("data", (batch_size, 3, input_size, input_size))],
                     for_training=False)
            mod.set_params(arg_params, aux_params)
            self.mods[str(ctx)] = mod

    def __call__(self, x):
        mod = self.mods[str(x.context)]
        mod.forward(mx.io.DataBatch([x]), is_train=False)
        return mod.get_outputs()[0]


def _val_cfg(info, rec, batch_size, threads):
    cfg = {k: info[k] for k in ("input_size", "crop_ratio", "mean_rgb", "std_rgb")}
    cfg.update(rec_val=rec, batch_size=batch_size, preprocess_threads=threads)
    return cfg


def _network(exported, api, ctxs, batch_size):
    side = exported.info["input_size"]
    if api == "module":
        net = ModuleNet(exported.prefix, ctxs, batch_size, side)
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


def evaluate_export(prefix, rec, ctxs=None, api="symbolblock", batch_size=32, input_size=None,
                    threads=None, keep_logits=False):
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

    Returns
    -------
    dict
        ``top1``, ``top5`` (fractions), ``images``, ``seconds`` and ``images_per_s``
        (decoding included, after one untimed batch), ``info`` (the sidecar) and,
        with ``keep_logits``, ``logits`` (``images x classes``, file order).
    """
    ctxs = list(ctxs or [mx.cpu()])
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    exported = open_export(prefix, input_size, ctx=ctxs)
    data.check_record(rec)
    net = _network(exported, api, ctxs, batch_size)
    if keep_logits:
        net = _Recorder(net)
    threads = threads or min(4, os.cpu_count() or 1)
    result = evaluate(net, data.val_iter(_val_cfg(exported.info, rec, batch_size, threads),
                                         len(ctxs)), ctxs)
    result["images_per_s"] = result["images"] / max(result["seconds"], 1e-9)
    result["info"] = exported.info
    if keep_logits:
        # split_and_load cuts each batch into consecutive runs, one per device, in order
        result["logits"] = np.concatenate([o.asnumpy() for o in net.outputs])
    return result


def compare_exports(prefixes, rec, batch_size=32):
    """Top-1 of several exports of one model over ``rec``, and their agreement.

    Parameters
    ----------
    prefixes : dict
        Name (``fp32``, ``fused``, ``int8``) to export prefix; the first is the reference.

    Returns
    -------
    list of dict
        Per export: ``kind``, ``top1``, ``top5``, ``images``, ``agreement`` (share of
        images whose top-1 class equals the reference's) and ``top1_drop``
        (reference top-1 minus this one).
    """
    rows, reference = [], None
    for name, prefix in prefixes.items():
        r = evaluate_export(prefix, rec, batch_size=batch_size, keep_logits=True)
        pred = r["logits"].argmax(axis=1)
        if reference is None:
            reference = {"pred": pred, "top1": r["top1"]}
        rows.append({"kind": name, "top1": r["top1"], "top5": r["top5"], "images": r["images"],
                     "agreement": float((pred == reference["pred"]).mean()),
                     "top1_drop": reference["top1"] - r["top1"]})
    return rows
