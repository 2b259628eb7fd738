"""The INT8 form: post-training quantization with ``mxnet.contrib.quantization``,
calibrated on real (training) images preprocessed as in validation.
"""
import json
import os
import sys

import mxnet as mx

from ..data import records as data
from ..errors import UserError
from ..runs.sidecar import val_config
from .artifact import Graph, write_graph
from .mkldnn import require_mkldnn

__all__ = ["calibration_images", "calibration_for", "export_int8", "add_arguments", "check",
           "CALIB_MIN_IMAGES", "CALIB_MODES"]

CALIB_MIN_IMAGES = 32  # fewer and a layer's min/max rests on a handful of images
CALIB_MODES = ("naive", "entropy")


def add_arguments(parser):
    """The INT8 calibration options of ``tools/export_model.py``."""
    g = parser.add_argument_group("INT8 calibration")
    g.add_argument("--calib-rec", help="training images to calibrate on (default: the run's "
                   "training .rec from config.yaml); not the images you evaluate on")
    g.add_argument("--calib-batches", type=int, default=10,
                   help="batches to read, at least 1; under 32 images warns (10)")
    g.add_argument("--calib-mode", choices=CALIB_MODES, default="naive",
                   help="naive: each layer's min/max (fast); entropy: KL-optimal thresholds "
                   "(slower) (naive)")
    g.add_argument("--batch-size", type=int, default=32, help="calibration/eval batch (32)")
    g.add_argument("--int8-keep-ends", action="store_true",
                   help="keep the first conv and the classifier in FP32")


def check(source, options, flag="--int8"):
    """Refuse calibration settings that read nothing before any file is written; default
    ``options.calib_rec`` to the run's training ``.rec``. ``flag`` names the form asking."""
    if options.calib_batches < 1:  # a value error first: it needs no file to be refused
        _check_counts(options.calib_batches, options.batch_size)
    if not options.calib_rec:
        rec = source.config.get("rec_train")
        if not rec or not os.path.isfile(rec):
            raise UserError("%s needs --calib-rec: a .rec of training images to "
                            "calibrate on (not the images you will evaluate on)%s"
                            % (flag, "; the run's %s is gone" % rec if rec else ""))
        options.calib_rec = rec
    _check_counts(options.calib_batches, options.batch_size)
    images = min(data.check_record(options.calib_rec),
                 options.calib_batches * options.batch_size)
    if images < CALIB_MIN_IMAGES:
        print("warning: INT8 calibration on %d images (--calib-batches %d x --batch-size %d of "
              "%s): fewer than %d give unreliable ranges; use more"
              % (images, options.calib_batches, options.batch_size, options.calib_rec,
                 CALIB_MIN_IMAGES), file=sys.stderr, flush=True)
    _check_calib_mode(options.calib_mode)


def _check_counts(calib_batches, batch_size):
    if calib_batches < 1:
        raise UserError("--calib-batches must be at least 1 (got %d): INT8 calibration reads "
                        "that many batches of --calib-rec" % calib_batches)
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1 (got %d)" % batch_size)


def _check_calib_mode(mode):
    if mode not in CALIB_MODES:
        raise UserError("--calib-mode must be naive or entropy, got %r" % (mode,))


def calibration_images(rec, info, batches, batch_size=32):
    """The first ``batches`` batches of ``rec`` through the validation transform.

    ``info`` (a sidecar) gives the :class:`~mobilenet_skip.data.preprocess.Preprocessing`.
    im2rec shuffles its list, so the first records of a ``.rec`` mix the classes.

    Returns
    -------
    NDArray
        ``N x 3 x S x S`` float32 on the CPU.
    """
    if batches < 1:
        raise UserError("--calib-batches must be at least 1")
    images = []
    for i, batch in enumerate(data.val_iter(val_config(info, rec, batch_size))):
        if i >= batches:
            break
        n = batch.data[0].shape[0] - batch.pad
        images.append(batch.data[0][:n].as_in_context(mx.cpu()))
    return mx.nd.concat(*images, dim=0)


def calibration_for(info, options):
    """``(images, rec)``: what an INT8 form calibrates on, from its options.

    ``options.calib_images`` (set in code, e.g. by the benchmark's synthetic images)
    wins, with ``rec`` None; otherwise :func:`calibration_images` of
    ``options.calib_rec``, ``rec`` then being its absolute path. Kept in ``options``,
    so that ``--int8 --onnx-int8`` read and decode the images once.
    """
    if getattr(options, "calibration", None) is None:
        images = getattr(options, "calib_images", None)
        options.calibration = (images, None) if images is not None else (
            calibration_images(options.calib_rec, info, options.calib_batches,
                               options.batch_size), os.path.abspath(options.calib_rec))
    return options.calibration


def _end_layers(sym):
    """Names of the first layer (the one reading ``data``) and the output layer of a graph."""
    nodes = json.loads(sym.tojson())["nodes"]
    data_id = next(i for i, n in enumerate(nodes) if n["name"] == "data")
    first = next(n["name"] for n in nodes if any(inp[0] == data_id for inp in n["inputs"]))
    return [first, sym.list_outputs()[0].rsplit("_output", 1)[0]]


def export_int8(graph, info, prefix, calib_images, calib_mode="naive", keep_ends_fp32=False,
                synsets=None):
    """Quantize the FP32 ``graph`` and write it under ``prefix`` with sidecar ``info``.

    ``quantize_model_mkldnn`` fuses the graph like the fused form, then quantizes every
    layer that oneDNN runs in INT8 (``quantize_mode="smart"``), with thresholds
    calibrated on ``calib_images``: ``"naive"`` takes each layer's min/max over them
    (fast), ``"entropy"`` minimises the KL divergence (slower, better with
    long-tailed activations). Weights are quantized per tensor, inputs to int8 or
    uint8 as their calibrated range allows (``quantized_dtype="auto"``).

    Parameters
    ----------
    info : dict
        The sidecar (``kind`` ``int8``); the calibration is added to it.
    calib_images : NDArray
        Preprocessed images (:func:`calibration_images`); use training images, not
        the ones you evaluate on.
    keep_ends_fp32 : bool
        Leave the first conv and the classifier in FP32 (a common fix when
        quantizing them costs accuracy; not needed on the demo, see
        docs/workflow.md, 4. Export).
    """
    from mxnet.contrib.quantization import quantize_model_mkldnn
    require_mkldnn("--int8")
    _check_calib_mode(calib_mode)
    sym = graph.sym
    excluded = _end_layers(sym.get_backend_symbol("MKLDNN_QUANTIZE")) if keep_ends_fp32 else []
    calib = mx.io.NDArrayIter(calib_images, batch_size=min(32, calib_images.shape[0]))
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # no log line per bound graph
    qsym, qargs, qaux = quantize_model_mkldnn(
        sym, dict(graph.arg_params), dict(graph.aux_params), ctx=mx.cpu(), data_names=("data",),
        label_names=None, excluded_sym_names=excluded, calib_mode=calib_mode,
        calib_data=calib, quantized_dtype="auto", quantize_mode="smart")
    info = dict(info, kind="int8", calib_mode=calib_mode,
                calib_images=int(calib_images.shape[0]), fp32_layers=excluded)
    return write_graph(prefix, Graph(qsym, qargs, qaux), synsets, info)
