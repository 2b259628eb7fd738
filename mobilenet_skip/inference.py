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
import stat

import mxnet as mx
import numpy as np

from . import data
from .errors import UserError
from .export import load_symbolic, open_export
from .evaluation import evaluate

__all__ = ["resize_side", "decode_image", "preprocess", "load_image", "read_image_bytes",
           "top_k", "softmax", "ModuleNet", "OnnxNet", "evaluate_export", "evaluate_onnx",
           "compare_exports", "APIS", "MAX_IMAGE_BYTES"]

APIS = ("symbolblock", "module")
# Decoded, the largest image is ~10x its file; 64 MB is far above any photo and far below
# a MemoryError.
MAX_IMAGE_BYTES = 64 << 20


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


def read_image_bytes(path, limit=None):
    """The bytes of an image file, refusing what is not a regular file of plausible size.

    A FIFO would block the read until someone writes to it and ``/dev/zero`` never
    ends, so the file is checked with ``stat`` (which opens nothing) first, and at
    most ``limit + 1`` bytes are read in case it grows meanwhile.

    Raises
    ------
    UserError
        Naming the file: missing, not a regular file, too large or unreadable.
    """
    limit = MAX_IMAGE_BYTES if limit is None else limit
    try:
        st = os.stat(path)
    except OSError as err:
        raise UserError("%s: %s" % (path, err.strerror or err))
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO (named pipe)"
                if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "not a regular file")
        raise UserError("%s is %s, not an image file; give JPEG/PNG/BMP files" % (path, kind))
    if st.st_size > limit:
        raise UserError("%s is %.1f MB, more than the %.1f MB an image may be here; resize it "
                        "first" % (path, st.st_size / 2.0 ** 20, limit / 2.0 ** 20))
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as err:
        raise UserError("%s: %s" % (path, err.strerror or err))
    if len(raw) > limit:
        raise UserError("%s grew past %.1f MB while being read" % (path, limit / 2.0 ** 20))
    return raw


def load_image(path, info):
    """Read, decode and preprocess one image file for an export described by ``info``.

    Raises
    ------
    UserError
        Naming the file: missing, unreadable, or not an image.
    """
    raw = read_image_bytes(path)
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
    smaller last batch) and returns its logits, so :func:`~mobilenet_skip.evaluation.evaluate` takes
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


class OnnxNet(object):
    """An ONNX file in an ONNX Runtime CPU session, called like a block on NDArrays.

    Returns the logits as an NDArray, so :func:`~mobilenet_skip.evaluation.evaluate` scores it exactly as
    it scores a ``SymbolBlock``, on batches from the same validation iterator.
    """

    def __init__(self, path, threads=None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("--runtime onnxruntime needs the onnxruntime package: pip install "
                            "onnxruntime (requirements/test.txt pins the tested one)") from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own classes, not one base
            raise UserError("ONNX Runtime %s cannot load %s (%s)" % (
                ort.__version__, path, str(err).strip().splitlines()[0][-200:])) from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise UserError("%s has %d graph inputs (%s); an exported classifier has only data"
                            % (path, len(inputs), ", ".join(i.name for i in inputs[:3])))
        self.input_name, self.shape = inputs[0].name, inputs[0].shape

    def __call__(self, x):
        out = self.session.run(None, {self.input_name: x.asnumpy()})[0]
        return mx.nd.array(out, ctx=x.context)


def _onnx_info(path, input_size):
    """Input size and preprocessing of an ONNX file: its stored sidecar, the ``.json``
    beside it, or the defaults at the graph's input size."""
    from .export import read_onnx_info, sidecar_path, read_info, describe
    info = read_onnx_info(path)
    base = path[:-5] if path.endswith(".onnx") else path
    if info is None and os.path.isfile(sidecar_path(base)):
        info = read_info(base)
    if info is None:
        info = describe({}, input_size or 224, kind=None, sidecar=False)
    return info


def evaluate_onnx(path, rec, batch_size=32, input_size=None, threads=None):
    """Single-centre-crop top-1/top-5 of an ONNX file in ONNX Runtime over a ``.rec``.

    The images come from the same validation iterator as :func:`evaluate_export` (the
    C++ ``ImageRecordIter``, same resize, crop and normalisation) and are scored by
    the same :func:`~mobilenet_skip.evaluation.evaluate`; only the network runs in ONNX Runtime. The
    preprocessing is the one stored in the file by ``export_onnx``.

    Returns
    -------
    dict
        As :func:`evaluate_export` (``top1``, ``top5``, ``images``, ``seconds``,
        ``images_per_s``, ``info``).
    """
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if not os.path.isfile(path):
        raise UserError("ONNX file %s not found (tools/export_model.py --onnx writes "
                        "PREFIX.onnx)" % path)
    from .export import _import_onnx
    _import_onnx()
    info = _onnx_info(path, input_size)
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
    data.check_record(rec)
    threads = threads or min(4, os.cpu_count() or 1)
    result = evaluate(net, data.val_iter(_val_cfg(info, rec, batch_size, threads)), [mx.cpu()])
    result["images_per_s"] = result["images"] / max(result["seconds"], 1e-9)
    result["info"] = info
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
