"""Deployment files: a hybridized network as ``<prefix>-symbol.json`` + ``<prefix>-0000.params``.

The exported graph takes one input named ``data`` (NCHW float32, normalised as in
validation) and returns logits; ``<prefix>.synsets.txt`` beside it names the classes
and ``<prefix>.json`` (the sidecar, written last) records the model and the
preprocessing it expects, so that nothing else is needed to use it.

From a plain FP32 export this module derives the CPU deployment forms:

- fused FP32 (:func:`export_fused`): MXNet's MKLDNN (oneDNN) subgraph backend folds
  each BN into its conv and fuses the following ReLU and residual sum;
- INT8 (:func:`export_int8`): post-training quantization with
  ``mxnet.contrib.quantization``, calibrated on real images;
- ONNX (:func:`export_onnx`), with the weights as initializers only, so that ONNX
  Runtime can fold them.
"""
import json
import os
import shutil
import sys
import warnings
from collections import namedtuple

import mxnet as mx
import numpy as np

from . import data
from .checkpoint import CheckpointDir, atomic_save, atomic_write
from .errors import UserError
from .models import MIN_INPUT_SIZE, get_model, norm_kwargs_from

__all__ = ["load_checkpoint_params", "network_from_checkpoint", "export_network",
           "export_paths", "sidecar_path", "describe", "read_info", "load_symbolic",
           "open_export", "Export", "summary", "export_fused", "export_int8", "export_onnx",
           "calibration_images", "load_source", "Source", "require_mkldnn", "deploy", "KINDS",
           "onnx_ir_version", "onnx_versions", "read_onnx_info", "input_size_warning",
           "output_prefix", "forward_memory", "DEFAULT_ONNX_OPSET"]

FORMAT = "mobilenet-skip-export"
KINDS = ("fp32", "fused", "int8")
PREPROCESSING_KEYS = ("crop_ratio", "mean_rgb", "std_rgb")
DEFAULT_INPUT_SIZE = 224
# Opset 13 (IR version 7, onnx 1.8, 2020): old runtimes load it (tested with ONNX Runtime
# 1.15.0, 1.16.3 and 1.32.0) and MXNet's converter writes every op of these networks in it.
DEFAULT_ONNX_OPSET = 13
MIN_ONNX_OPSET = 12  # MXNet 1.9's converter has no translations below opset 12
ONNX_INFO_KEY = "mobilenet_skip"  # metadata_props entry holding the sidecar
CALIB_MIN_IMAGES = 32  # fewer and a layer's min/max rests on a handful of images
MAX_SYMBOL_BYTES = 64 << 20  # an exported graph is < 1 MB; more is not one


def export_paths(prefix):
    """The files an export writes: symbol, params, synsets."""
    return prefix + "-symbol.json", prefix + "-0000.params", prefix + ".synsets.txt"


def sidecar_path(prefix):
    """``<prefix>.json``: what the export is and how to preprocess its input."""
    return prefix + ".json"


def load_checkpoint_params(net, path, ctx=None):
    """Load a ``save_parameters`` file into ``net``, naming any model/width mismatch.

    Raises
    ------
    UserError
        If the file is missing or unreadable, or its parameter names or shapes do
        not fit ``net`` (another model, width or number of classes).
    """
    if not os.path.isfile(path):
        raise UserError("checkpoint %s not found" % path)
    try:
        saved = mx.nd.load(path)
    except mx.base.MXNetError as err:
        raise UserError("cannot read checkpoint %s (%s); is it a complete .params file?"
                        % (path, str(err).strip().splitlines()[0][:120]))
    if not isinstance(saved, dict):
        raise UserError("%s holds no named parameters; is it a training checkpoint?" % path)
    ours = {name: p.shape for name, p in net._collect_params_with_prefix().items()}
    described = "%s at width %g with %d classes" % (net.variant, net.multiplier, net.classes)
    extra, missing = sorted(set(saved) - set(ours)), sorted(set(ours) - set(saved))
    if extra or missing:
        raise UserError("checkpoint %s does not fit %s: %s; pass the --model the checkpoint "
                        "was trained with" % (path, described,
                                              ("it has %s which the model lacks" % extra[0]) if extra
                                              else ("it lacks %s" % missing[0])))
    for name, shape in ours.items():
        if tuple(saved[name].shape) != tuple(shape):
            raise UserError("checkpoint %s does not fit %s: %s is %s in the file, %s in the "
                            "model; pass the --multiplier/--classes it was trained with"
                            % (path, described, name, saved[name].shape, shape))
    net.load_parameters(path, ctx=ctx or mx.cpu(), cast_dtype=True, dtype_source="current")
    return net


def network_from_checkpoint(path, model, multiplier=1.0, classes=1000, ctx=None,
                            norm_kwargs=None):
    """A fresh float32 network with a checkpoint's weights.

    ``norm_kwargs`` are the BatchNorm arguments it was trained with
    (:func:`~mobilenet_skip.models.norm_kwargs_from` of its config): the file holds no
    epsilon, and the inference graph uses it.
    """
    return load_checkpoint_params(get_model(model, multiplier, classes,
                                            norm_kwargs=norm_kwargs), path, ctx)


# --- the sidecar ---------------------------------------------------------------------

def describe(model, input_size, preprocessing=None, kind="fp32", **extra):
    """The sidecar of an export: model, input and preprocessing.

    Parameters
    ----------
    model : MobileNetSkip or dict
        Where ``variant``, ``multiplier`` and ``classes`` are read from.
    input_size : int
        Side of the square input the network was trained for.
    preprocessing : dict, optional
        ``crop_ratio``, ``mean_rgb``, ``std_rgb`` (a recipe will do); missing keys
        take the validation defaults of :data:`mobilenet_skip.data.DEFAULTS`.
    kind : {"fp32", "fused", "int8"}
    **extra
        More JSON-serialisable entries (where the weights came from, calibration).
    """
    def get(key):
        return model.get(key) if isinstance(model, dict) else getattr(model, key, None)
    pre = dict(data.DEFAULTS)
    pre.update({k: v for k, v in (preprocessing or {}).items() if k in PREPROCESSING_KEYS})
    info = {"format": FORMAT, "kind": kind, "variant": get("variant"),
            "multiplier": get("multiplier"), "classes": get("classes"),
            "input_name": "data", "input_size": int(input_size),
            "crop_ratio": float(pre["crop_ratio"]),
            "mean_rgb": [float(v) for v in pre["mean_rgb"]],
            "std_rgb": [float(v) for v in pre["std_rgb"]]}
    info.update(extra)
    return info


def summary(info):
    """One line on an export: model, width, classes, input and preprocessing, kind."""
    model = ("%s x%g" % (info["variant"], info["multiplier"]) if info.get("variant")
             else "network")
    return "%s, %s classes, input %d (shorter side to %d, centre crop), %s" % (
        model, info.get("classes") or "?", info["input_size"],
        int(round(info["input_size"] / info["crop_ratio"])),
        info.get("kind") or "no sidecar: ImageNet defaults")


def _check_info(info, path):
    try:
        ok = (info.get("format") == FORMAT and info.get("kind") in KINDS
              and int(info["input_size"]) >= MIN_INPUT_SIZE
              and 0 < float(info["crop_ratio"]) <= 1
              and len(info["mean_rgb"]) == 3 and len(info["std_rgb"]) == 3
              and min(float(v) for v in info["std_rgb"]) > 0)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise UserError("%s is not a valid export description (format %s: kind, input_size, "
                        "crop_ratio, mean_rgb, std_rgb); re-export with tools/export_model.py "
                        "or delete it to use the defaults" % (path, FORMAT))
    return info


def read_info(prefix, input_size=None):
    """The sidecar of ``prefix``, or the ImageNet defaults when there is none.

    Without a sidecar the input is 224 (crop ratio 0.875, ImageNet mean/std) and
    ``kind``, ``variant``, ``multiplier`` and ``classes`` are None. ``input_size``,
    when given, overrides either.
    """
    path = sidecar_path(prefix)
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except ValueError:
            info = None
        info = _check_info(info if isinstance(info, dict) else {}, path)
        info["sidecar"] = True
    else:
        info = describe({}, DEFAULT_INPUT_SIZE, kind=None, sidecar=False)
    if input_size:
        if int(input_size) < MIN_INPUT_SIZE:
            raise UserError("--input-size %d is too small: the network has stride 32, so use "
                            "at least %d" % (input_size, MIN_INPUT_SIZE))
        if info["sidecar"] and int(info["input_size"]) != int(input_size):
            info["trained_input_size"] = int(info["input_size"])
        info["input_size"] = int(input_size)
    return info


def input_size_warning(prefix, info):
    """One line when ``--input-size`` overrode the size the export was trained at, else None."""
    trained = info.get("trained_input_size")
    if trained is None:
        return None
    return ("--input-size %d differs from the %d that %s was trained at (%s); expect worse "
            "predictions" % (info["input_size"], trained, prefix, sidecar_path(prefix)))


# --- writing -------------------------------------------------------------------------

def _write_export(net, prefix, synsets, info):
    """Write an already built (hybridized and run) ``net`` under ``prefix``, sidecar last."""
    sym_path, params_path, synsets_file = export_paths(prefix)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    staging = "%s.export-tmp-%d" % (prefix, os.getpid())
    try:
        net.export(staging, epoch=0)
        atomic_write(sym_path, lambda tmp: shutil.move(staging + "-symbol.json", tmp))
        atomic_write(params_path, lambda tmp: shutil.move(staging + "-0000.params", tmp))
    finally:
        for leftover in export_paths(staging)[:2]:
            if os.path.exists(leftover):
                os.remove(leftover)
    _write_synsets(synsets, synsets_file)
    _write_sidecar(prefix, info)
    return sym_path, params_path, synsets_file


def _write_synsets(synsets, path):
    if synsets is None:
        return
    if isinstance(synsets, str):
        if os.path.abspath(synsets) != os.path.abspath(path):
            atomic_write(path, lambda tmp: shutil.copyfile(synsets, tmp))
    else:
        atomic_save(path, "".join("%s\n" % name for name in synsets))


def _write_sidecar(prefix, info):
    info = {k: v for k, v in info.items() if k not in ("sidecar", "trained_input_size")}
    atomic_save(sidecar_path(prefix), json.dumps(info, indent=1, sort_keys=True) + "\n")


def export_network(net, prefix, input_size=224, synsets=None, preprocessing=None, info=None):
    """Hybridize ``net`` for a 1 x 3 x S x S input and export it under ``prefix``.

    Writes ``<prefix>-symbol.json`` and ``<prefix>-0000.params``, given ``synsets``
    (a list of names or a path) ``<prefix>.synsets.txt``, and the sidecar
    ``<prefix>.json``, each atomically.

    Parameters
    ----------
    net : HybridBlock
        A :class:`~mobilenet_skip.models.MobileNetSkip` or a loaded ``SymbolBlock``.
    preprocessing : dict, optional
        Recipe values for the sidecar (``crop_ratio``, ``mean_rgb``, ``std_rgb``).
    info : dict, optional
        The whole sidecar (default: :func:`describe` of ``net``).

    Returns
    -------
    tuple of str
        The symbol, params and synsets paths.
    """
    if info is None:
        info = describe(net, input_size, preprocessing)
    net.hybridize(static_alloc=True, static_shape=True)
    net(mx.nd.zeros((1, 3, input_size, input_size), ctx=mx.cpu()))
    return _write_export(net, prefix, synsets, info)


def _save_symbolic(prefix, sym, arg_params, aux_params):
    """``mx.model.save_checkpoint``, atomically: symbol, then params."""
    sym_path, params_path, _ = export_paths(prefix)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    atomic_write(sym_path, sym.save)
    saved = {"arg:%s" % k: v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
    saved.update({"aux:%s" % k: v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
    atomic_write(params_path, lambda tmp: mx.nd.save(tmp, saved))


# --- reading back --------------------------------------------------------------------

def _check_files(prefix):
    sym_path, params_path, _ = export_paths(prefix)
    for path in (sym_path, params_path):
        if not os.path.isfile(path):
            hint = ""
            for ending in ("-symbol.json", "-0000.params", ".params", ".json"):
                if prefix.endswith(ending):
                    hint = "; give the prefix without the %s ending" % ending
                    break
            raise UserError("%s not found: an export PREFIX is the path before -symbol.json and "
                            "-0000.params (tools/export_model.py --output PREFIX)%s"
                            % (path, hint))
    return sym_path, params_path


def load_symbolic(prefix):
    """``(symbol, arg_params, aux_params)`` of an export, checked to belong together.

    Raises
    ------
    UserError
        A missing or unreadable file, a graph without a ``data`` input, or params
        that lack some of the graph's weights.
    """
    sym_path, params_path = _check_files(prefix)
    sym = _read_symbol(sym_path)
    try:
        saved = mx.nd.load(params_path)
    except mx.base.MXNetError as err:
        raise UserError("cannot read %s (%s); it is truncated or not an MXNet .params file, "
                        "re-export it" % (params_path, _mxnet_message(err)))
    if not isinstance(saved, dict):
        raise UserError("%s holds unnamed arrays, not an export's arg:/aux: weights; re-export "
                        "it" % params_path)
    arg_params = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
    aux_params = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
    if "data" not in sym.list_arguments():
        raise UserError("%s has no input named data; is it an exported classifier?" % sym_path)
    missing = ([n for n in sym.list_arguments() if n != "data" and n not in arg_params]
               + [n for n in sym.list_auxiliary_states() if n not in aux_params])
    if missing:
        raise UserError("%s does not fit %s: it lacks %s (%d weights missing); the two files "
                        "come from different exports, re-export them together"
                        % (params_path, sym_path, missing[0], len(missing)))
    return sym, arg_params, aux_params


def _read_symbol(path):
    """The graph in ``path``, or a :class:`UserError` saying what is wrong with the file.

    MXNet's own loader reports an empty file as a UTF-8 codec error and a truncated one
    as a C++ traceback; reading the JSON first names the file and the problem.
    """
    size = os.path.getsize(path)
    if size == 0:
        raise UserError("%s is empty (0 bytes): an interrupted copy or export; re-export it"
                        % path)
    if size > MAX_SYMBOL_BYTES:
        raise UserError("%s is %.0f MB, not an exported graph (those are well under 1 MB)"
                        % (path, size / 2.0 ** 20))
    with open(path, "rb") as f:
        raw = f.read()
    try:
        graph = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError("%s is not text: not a -symbol.json graph (is it a .params file?); "
                        "re-export it" % path) from None
    except ValueError as err:
        raise UserError("%s is not valid JSON (%s; %d bytes): truncated or not a graph; "
                        "re-export it" % (path, err, size)) from None
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list) \
            or "heads" not in graph:
        raise UserError("%s is JSON but not an MXNet graph (no nodes/heads); give the "
                        "-symbol.json that tools/export_model.py wrote" % path)
    try:
        return mx.sym.load_json(raw.decode("utf-8"))
    except mx.base.MXNetError as err:
        raise UserError("%s is not a graph this MXNet can load (%s); re-export it"
                        % (path, _mxnet_message(err)))


Export = namedtuple("Export", ["prefix", "block", "info", "synsets", "classes"])
Export.__doc__ = ("An export read back: its prefix, a SymbolBlock, the sidecar (or defaults), "
                  "the class names (or None) and the number of outputs.")


def open_export(prefix, input_size=None, ctx=None, need_synsets=False):
    """Load an export as a ``SymbolBlock`` and check that its files match.

    One forward of zeros at the export's input size catches weights of another
    shape; the synsets file must name as many classes as the network outputs.

    Parameters
    ----------
    prefix : str
    input_size : int, optional
        Overrides the sidecar's (default 224 without a sidecar).
    ctx : Context or list of Context, optional
        Where the weights go (default CPU).
    need_synsets : bool
        Raise if ``<prefix>.synsets.txt`` is missing (otherwise ``synsets`` is None).

    Returns
    -------
    Export
    """
    info = read_info(prefix, input_size)
    sym, _, _ = load_symbolic(prefix)
    sym_path, params_path, synsets_file = export_paths(prefix)
    ctxs = ctx if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()]
    with warnings.catch_warnings():
        # SymbolBlock warns that it cannot infer the type of `data`: it is the input.
        warnings.simplefilter("ignore")
        block = mx.gluon.SymbolBlock(sym, mx.sym.var("data"))
        try:
            # as SymbolBlock.imports does: INT8 weights keep their saved dtype
            block.collect_params().load(params_path, ctx=ctxs, ignore_extra=True,
                                        cast_dtype=True, dtype_source="saved")
        except (AssertionError, mx.base.MXNetError) as err:
            raise UserError("cannot load %s into %s (%s); re-export both together"
                            % (params_path, sym_path, _mxnet_message(err)))
    side = info["input_size"]
    _check_memory(sym, side, prefix)
    try:
        out = block(mx.nd.zeros((1, 3, side, side), ctx=ctxs[0]))
        out.wait_to_read()
    except MemoryError:
        raise UserError(_out_of_memory(side, prefix)) from None
    except mx.base.MXNetError as err:
        if _is_allocation_failure(err):
            raise UserError(_out_of_memory(side, prefix, _mxnet_message(err))) from None
        raise UserError("%s does not fit %s at input %dx%d (%s); the two files come from "
                        "different exports, or pass the right --input-size"
                        % (params_path, sym_path, side, side,
                           _mxnet_message(err)))
    classes = out.shape[1]
    synsets = None
    if os.path.isfile(synsets_file) or need_synsets:
        if not os.path.isfile(synsets_file):
            raise UserError("%s not found: the class names of the export; copy the "
                            "train .synsets.txt there (or re-export with --synsets)"
                            % synsets_file)
        synsets = data.read_synsets(synsets_file)
        if len(synsets) != classes:
            raise UserError("%s names %d classes but %s outputs %d; they belong to different "
                            "models" % (synsets_file, len(synsets), sym_path, classes))
    if info.get("classes") not in (None, classes):
        raise UserError("%s says %d classes but %s outputs %d; re-export"
                        % (sidecar_path(prefix), info["classes"], sym_path, classes))
    info.setdefault("classes", None)
    info["classes"] = info["classes"] or classes
    return Export(prefix, block, info, synsets, classes)


def _available_memory():
    """Bytes the kernel says a new allocation can get (MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def forward_memory(sym, input_size):
    """A lower bound on the bytes one image of ``input_size`` needs through ``sym``.

    The input plus three copies of the largest feature map: a conv reads one map and
    writes another while a skip connection keeps the block's input alive. Computed
    from shape inference alone, so nothing is allocated.
    """
    internals = sym.get_internals()
    try:
        _, shapes, _ = internals.infer_shape(data=(1, 3, input_size, input_size))
    except mx.base.MXNetError:
        return 0  # the forward itself reports a graph that does not fit
    sizes = [int(np.prod(s)) for s in shapes or [] if s]
    return 4 * (3 * input_size ** 2 + 3 * max(sizes or [0]))


def _out_of_memory(side, prefix, detail=None):
    return ("--input-size %d is too large: one %dx%d image through %s ran out of memory%s; "
            "use the size it was trained at (%s) or a smaller one"
            % (side, side, side, prefix, " (%s)" % detail if detail else "",
               sidecar_path(prefix) if os.path.isfile(sidecar_path(prefix)) else "224 for "
               "ImageNet"))


def _check_memory(sym, side, prefix):
    """Refuse an input size whose forward cannot fit in memory, before allocating it."""
    need, have = forward_memory(sym, side), _available_memory()
    if have is not None and need > have:
        raise UserError("--input-size %d is too large: one %dx%d image through %s needs at "
                        "least %.1f GB, and %.1f GB of memory is available; use the size it "
                        "was trained at or a smaller one"
                        % (side, side, side, prefix, need / 1e9, have / 1e9))


def _is_allocation_failure(err):
    text = str(err).lower()
    return any(word in text for word in ("bad_alloc", "out of memory", "failed to allocate",
                                         "cannot allocate", "memory allocation"))


def _mxnet_message(err):
    """The informative line of an MXNetError (the C++ check), shortened."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    checks = [line for line in lines if "Check failed" in line or "Error" in line]
    return (checks[-1] if checks else lines[0] if lines else type(err).__name__)[:200]


# --- derived forms -------------------------------------------------------------------

def require_mkldnn(what):
    """Raise unless this MXNet has the MKLDNN (oneDNN) backend that ``what`` needs."""
    if not mx.runtime.Features().is_enabled("MKLDNN"):
        raise UserError("%s needs MXNet's MKLDNN (oneDNN) CPU backend, which this build lacks; "
                        "use the CPU wheel (pip install mxnet==1.9.1)" % what)


def export_fused(src_prefix, prefix):
    """Fused FP32 export of the plain export ``src_prefix``, written under ``prefix``.

    ``optimize_for(backend="MKLDNN")`` partitions the graph into oneDNN subgraphs:
    each conv with the BN after it (folded into its weights when the graph first
    runs), the ReLU after that and a residual sum after the conv. The exported
    graph keeps the unfolded weights, so it stays loadable and equals the plain one
    to float rounding; it is for inference only and needs the CPU build.
    """
    require_mkldnn("--fused")
    src = open_export(src_prefix)
    side = src.info["input_size"]
    src.block.optimize_for(mx.nd.zeros((1, 3, side, side)), backend="MKLDNN",
                           static_alloc=True, static_shape=True)
    info = dict(src.info, kind="fused", derived_from=os.path.basename(src_prefix))
    return _write_export(src.block, prefix, export_paths(src_prefix)[2] if src.synsets else None,
                         info)


def calibration_images(rec, info, batches, batch_size=32):
    """The first ``batches`` batches of ``rec`` through the validation transform.

    ``info`` supplies the input size and preprocessing (a sidecar). im2rec shuffles
    its list, so the first records of a ``.rec`` mix the classes.

    Returns
    -------
    NDArray
        ``N x 3 x S x S`` float32 on the CPU.
    """
    if batches < 1:
        raise UserError("--calib-batches must be at least 1")
    cfg = {k: info[k] for k in PREPROCESSING_KEYS}
    cfg.update(rec_val=rec, input_size=info["input_size"], batch_size=batch_size,
               preprocess_threads=min(4, os.cpu_count() or 1))
    data.check_record(rec)
    it = data.val_iter(cfg)
    images = []
    for i, batch in enumerate(it):
        if i >= batches:
            break
        n = batch.data[0].shape[0] - batch.pad
        images.append(batch.data[0][:n].as_in_context(mx.cpu()))
    return mx.nd.concat(*images, dim=0)


def _end_layers(sym):
    """Names of the first layer (the one reading ``data``) and the output layer of a graph."""
    nodes = json.loads(sym.tojson())["nodes"]
    data_id = next(i for i, n in enumerate(nodes) if n["name"] == "data")
    first = next(n["name"] for n in nodes if any(inp[0] == data_id for inp in n["inputs"]))
    return [first, sym.list_outputs()[0].rsplit("_output", 1)[0]]


def _check_calib_mode(mode):
    if mode not in ("naive", "entropy"):
        raise UserError("--calib-mode must be naive or entropy, got %r" % (mode,))


def export_int8(src_prefix, prefix, calib_images, calib_mode="naive", keep_ends_fp32=False,
                **describe_extra):
    """Post-training INT8 export of the plain export ``src_prefix``.

    ``quantize_model_mkldnn`` fuses the graph like :func:`export_fused`, then
    quantizes every layer that oneDNN runs in INT8 (``quantize_mode="smart"``), with
    thresholds calibrated on ``calib_images``: ``"naive"`` takes each layer's
    min/max over them (fast), ``"entropy"`` minimises the KL divergence (slower,
    better with long-tailed activations). Weights are quantized per tensor, inputs
    to int8 or uint8 as their calibrated range allows (``quantized_dtype="auto"``).

    Parameters
    ----------
    calib_images : NDArray
        Preprocessed images (:func:`calibration_images`); use training images, not
        the ones you evaluate on.
    keep_ends_fp32 : bool
        Leave the first conv and the classifier in FP32 (a common fix when
        quantizing them costs accuracy; not needed on the demo, see README).
    """
    require_mkldnn("--int8")
    from mxnet.contrib.quantization import quantize_model_mkldnn

    _check_calib_mode(calib_mode)
    src = open_export(src_prefix)
    sym, arg_params, aux_params = load_symbolic(src_prefix)
    excluded = _end_layers(sym.get_backend_symbol("MKLDNN_QUANTIZE")) if keep_ends_fp32 else []
    calib = mx.io.NDArrayIter(calib_images, batch_size=min(32, calib_images.shape[0]))
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # no log line per bound graph
    qsym, qargs, qaux = quantize_model_mkldnn(
        sym, arg_params, aux_params, ctx=mx.cpu(), data_names=("data",), label_names=None,
        excluded_sym_names=excluded, calib_mode=calib_mode, calib_data=calib,
        quantized_dtype="auto", quantize_mode="smart")
    _save_symbolic(prefix, qsym, qargs, qaux)
    _write_synsets(export_paths(src_prefix)[2] if src.synsets else None, export_paths(prefix)[2])
    info = dict(src.info, kind="int8", derived_from=os.path.basename(src_prefix),
                calib_mode=calib_mode, calib_images=int(calib_images.shape[0]),
                fp32_layers=excluded, **describe_extra)
    _write_sidecar(prefix, info)
    return export_paths(prefix)


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise UserError("--onnx needs the onnx package: pip install onnx==1.18.0 (below 1.19, "
                        "which removed onnx.mapping that MXNet's exporter uses)") from None
    if not hasattr(onnx, "mapping"):
        raise UserError("onnx %s is too new for MXNet 1.9's exporter (it needs onnx.mapping, "
                        "removed in 1.19): pip install onnx==1.18.0" % onnx.__version__)
    return onnx


def onnx_ir_version(opset):
    """The IR version that goes with ``opset``: the lowest one an onnx release paired with it.

    From ``onnx.helper.VERSION_TABLE`` (opset 13: IR 7, onnx 1.8). A runtime reads a
    file only if it knows its IR version, so the file carries the oldest that fits.

    Raises
    ------
    UserError
        An opset that MXNet's converter or the installed onnx cannot write.
    """
    onnx = _import_onnx()
    newest = onnx.defs.onnx_opset_version()
    irs = [row[1] for row in onnx.helper.VERSION_TABLE if row[2] == opset]
    if not MIN_ONNX_OPSET <= opset <= newest or not irs:
        raise UserError("--onnx-opset %s: MXNet 1.9's exporter with onnx %s writes opsets %d "
                        "to %d (default %d)" % (opset, onnx.__version__, MIN_ONNX_OPSET, newest,
                                                DEFAULT_ONNX_OPSET))
    return min(irs)


def _mxnet_to_onnx(onnx, sym, params, side, opset, dynamic_batch):
    """MXNet's exporter at ``opset``: a ``ModelProto`` declaring that opset and its IR version.

    ``mx.onnx.export_model`` of MXNet 1.9.1 has no opset argument: it asks onnx for its
    newest opset (23 with onnx 1.18, IR version 11, which ONNX Runtime before 1.20
    refuses) and hands it to its converter, ``MXNetGraph.create_onnx_graph_proto``.
    That converter takes the opset and picks each op's translation for it, so this
    calls it as ``export_model`` does, with ``opset`` instead, and declares ``opset``
    and :func:`onnx_ir_version` in the model rather than re-stamping a finished file.
    """
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    graph = MXNetGraph().create_onnx_graph_proto(
        sym, params, in_shapes=[(1, 3, side, side)], in_types=[onnx.TensorProto.FLOAT],
        opset_version=opset, dynamic=dynamic_batch,
        dynamic_input_shapes=[(None, 3, side, side)] if dynamic_batch else None)
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                  ir_version=onnx_ir_version(opset),
                                  producer_name="mobilenet-skip (MXNet %s mx2onnx)"
                                  % mx.__version__)


def onnx_versions(model):
    """``(ir_version, default-domain opset)`` of an ONNX model."""
    opsets = {o.domain: o.version for o in model.opset_import}
    return int(model.ir_version), opsets.get("", opsets.get("ai.onnx"))


def export_onnx(src_prefix, path, input_size=None, dynamic_batch=True,
                weights_as_inputs=False, opset=DEFAULT_ONNX_OPSET):
    """ONNX file of the plain export ``src_prefix``, checked by ``onnx.checker``.

    Written at ``opset`` (default 13, IR version 7) through MXNet's own converter (see
    :func:`_mxnet_to_onnx`), so that runtimes that read IR 7 load it (tested: ONNX
    Runtime 1.15.0 and 1.16.3, which refuse the IR 11 of onnx's newest opset). The sidecar goes into the model's metadata
    (``mobilenet_skip``), so the file alone says how to preprocess its input.

    ``mx.onnx.export_model`` lists every weight both as an initializer and as a
    graph input; a graph input may be overridden at run time, so ONNX Runtime
    cannot fold it (BN into conv, for one) and runs about twice as slow. The
    weights are therefore removed from the inputs, leaving ``data`` alone. With
    ``dynamic_batch`` the batch dimension is free; ONNX Runtime folds constants
    either way. ``weights_as_inputs`` keeps the exporter's graph inputs (only for
    measuring what removing them gains).
    """
    onnx = _import_onnx()
    ir_version = onnx_ir_version(opset)
    info = read_info(src_prefix, input_size)
    sym, arg_params, aux_params = load_symbolic(src_prefix)
    params = dict(arg_params)
    params.update(aux_params)
    model = _mxnet_to_onnx(onnx, sym, params, info["input_size"], opset, dynamic_batch)
    if not weights_as_inputs:
        weights = {init.name for init in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in weights]
        del model.graph.input[:]
        model.graph.input.extend(inputs)
    side = {k: v for k, v in info.items() if k not in ("sidecar", "trained_input_size")}
    onnx.helper.set_model_props(model, {ONNX_INFO_KEY: json.dumps(side, sort_keys=True)})
    onnx.checker.check_model(model, full_check=True)  # every node against its opset-`opset` schema
    if onnx_versions(model) != (ir_version, opset):
        raise AssertionError("ONNX model declares %s, expected (%d, %d)"
                             % (onnx_versions(model), ir_version, opset))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda tmp: onnx.save(model, tmp))
    return path


def read_onnx_info(path):
    """The sidecar stored in an ONNX file by :func:`export_onnx`, or None."""
    onnx = _import_onnx()
    model = onnx.load(path, load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if ONNX_INFO_KEY not in props:
        return None
    try:
        return _check_info(json.loads(props[ONNX_INFO_KEY]), path)
    except (ValueError, TypeError):
        raise UserError("%s carries an unreadable %s description; re-export it"
                        % (path, ONNX_INFO_KEY)) from None


# --- where the weights come from -----------------------------------------------------

Source = namedtuple("Source", ["kind", "path", "net", "info", "synsets", "config"])
Source.__doc__ = ("Weights to deploy: kind 'checkpoint' (net is a MobileNetSkip) or 'export' "
                  "(net is a SymbolBlock); info is the sidecar to write; synsets a path or "
                  "None; config the training config.yaml found beside them, or {}.")


def _training_config(folder):
    from . import config as config_mod
    path = os.path.join(folder, "config.yaml")
    return config_mod.load_dumped(path) if os.path.isfile(path) else {}


def _checkpoint_path(save_dir, epoch, model):
    if not os.path.isdir(save_dir):
        raise UserError("--save-dir %s is not a folder; pass the training run's --save-dir"
                        % save_dir)
    ckpt = CheckpointDir(save_dir, model)
    path = ckpt.path(int(epoch), "params")
    if not os.path.isfile(path):
        kept = [str(m["epoch"]) for m in ckpt.epochs()]
        raise UserError("no checkpoint of epoch %s in %s (%s); pass one of those to --epoch"
                        % (epoch, save_dir, "complete ones: " + ", ".join(kept) if kept
                           else "it holds no complete %s checkpoint" % model))
    return path


def load_source(prefix=None, save_dir=None, epoch=None, params=None, model=None,
                multiplier=None, classes=None, input_size=None, synsets=None):
    """The weights to deploy or evaluate, from exactly one of three places.

    ``prefix``: an export (its sidecar says the rest). ``save_dir`` + ``epoch``: a
    training checkpoint, with model, width, classes, input size, preprocessing
    and BatchNorm settings from the run's ``config.yaml``. ``params``: a checkpoint
    file anywhere, with a ``config.yaml`` beside it or ``model`` (and ``multiplier``,
    default 1.0) given. Explicit arguments override ``config.yaml``; a model or width that does
    not fit the weights is a :class:`UserError` naming the flag to fix.

    Returns
    -------
    Source
    """
    given = [name for name, v in (("--prefix", prefix), ("--save-dir", save_dir),
                                  ("--params", params)) if v]
    if len(given) != 1:
        raise UserError("give exactly one of --prefix (an export), --save-dir with --epoch (a "
                        "training run) or --params with --model (a checkpoint file); got %s"
                        % (" and ".join(given) or "none"))
    if prefix:
        if model or multiplier or classes:
            raise UserError("--model/--multiplier/--classes describe a checkpoint; an export "
                            "--prefix describes itself")
        src = open_export(prefix, input_size)
        syn = synsets or (export_paths(prefix)[2] if src.synsets else None)
        return Source("export", prefix, src.block, src.info, syn, {})
    if save_dir and epoch is None:
        raise UserError("--save-dir needs --epoch: which epoch's checkpoint to use")
    if params and save_dir is None and epoch is not None:
        raise UserError("--epoch goes with --save-dir; --params already names one file")
    cfg = _training_config(save_dir or os.path.dirname(os.path.abspath(params)))
    model = model or cfg.get("model")
    if not model:
        raise UserError("no config.yaml beside %s says which network it holds; pass --model "
                        "(and --multiplier if not 1.0)" % (params or save_dir))
    multiplier = multiplier or cfg.get("multiplier", 1.0)
    path = params or _checkpoint_path(save_dir, epoch, model)
    if classes is None:
        classes = cfg.get("classes") or _classes_in(path)
    net = network_from_checkpoint(path, model, multiplier, classes,
                                  norm_kwargs=norm_kwargs_from(cfg))
    side = input_size or cfg.get("input_size", DEFAULT_INPUT_SIZE)
    syn = synsets or _find_synsets(os.path.dirname(os.path.abspath(path)), net.variant, cfg)
    info = describe(net, side, cfg, checkpoint=os.path.basename(path))
    return Source("checkpoint", path, net, info, syn, cfg)


def _classes_in(path):
    """Classifier outputs of a checkpoint file (its ``output.bias`` length)."""
    try:
        saved = mx.nd.load(path)
    except mx.base.MXNetError:
        return 1000  # load_checkpoint_params reports the unreadable file
    bias = saved.get("output.bias") if isinstance(saved, dict) else None
    return int(bias.shape[0]) if bias is not None else 1000


def _find_synsets(folder, model, cfg):
    """Class names of a run: its export's, else those beside its training .rec."""
    candidates = [os.path.join(folder, "%s.synsets.txt" % model)]
    if cfg.get("rec_train"):
        candidates.append(data.synsets_path(cfg["rec_train"]))
    return next((c for c in candidates if os.path.isfile(c)), None)


def output_prefix(output, source):
    """The export prefix ``--output`` means: ``dir/`` or an existing folder is ``dir/<model>``.

    A prefix names files (``PREFIX-symbol.json``); ``deploy/`` as a prefix would write
    hidden files named ``-symbol.json`` and ``.json`` inside ``deploy``, so a folder
    gets the model's name (the source's variant, else its file name) appended.
    """
    if not output or not output.strip():
        raise UserError("--output is empty: give a PREFIX such as deploy/m, or a folder")
    if output.endswith(os.sep) or output.endswith("/") or os.path.isdir(output):
        name = source.info.get("variant") or os.path.basename(
            os.path.normpath(source.path)).split(".")[0] or "model"
        return os.path.join(output, name)
    if os.path.basename(output).startswith("."):
        raise UserError("--output %s would write hidden files (%s-symbol.json); give a PREFIX "
                        "such as %s" % (output, os.path.basename(output),
                                        os.path.join(os.path.dirname(output) or ".", "m")))
    return output


def _warn(message):
    print("warning: %s" % message, file=sys.stderr, flush=True)


def _check_calibration(calib_rec, calib_batches, batch_size):
    """Refuse calibration settings that read nothing; warn about too few images."""
    if calib_batches < 1:
        raise UserError("--calib-batches must be at least 1 (got %d): INT8 calibration reads "
                        "that many batches of --calib-rec" % calib_batches)
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1 (got %d)" % batch_size)
    images = min(data.check_record(calib_rec), calib_batches * batch_size)
    if images < CALIB_MIN_IMAGES:
        _warn("INT8 calibration on %d images (--calib-batches %d x --batch-size %d of %s): "
              "fewer than %d give unreliable ranges; use more" % (
                  images, calib_batches, batch_size, calib_rec, CALIB_MIN_IMAGES))
    return images


def deploy(source, output, fused=False, int8=False, onnx=False, calib_rec=None,
           calib_batches=10, calib_mode="naive", batch_size=32, keep_ends_fp32=False,
           onnx_opset=DEFAULT_ONNX_OPSET):
    """Write the deployment set of ``source`` (see :func:`load_source`) under ``output``.

    Always the plain FP32 export ``output`` (a folder means ``folder/<model>``, see
    :func:`output_prefix`); then, derived from it, ``output-fused`` (``fused``),
    ``output-int8`` (``int8``, calibrated on ``calib_batches`` batches of
    ``calib_rec``, by default the run's training ``.rec``) and ``output.onnx``
    (``onnx``, at ``onnx_opset``). Every precondition is checked before the first
    file is written.

    Returns
    -------
    dict
        Form (``fp32``, ``fused``, ``int8``, ``onnx``) to prefix (ONNX: file path).
    """
    if source.info.get("kind") not in (None, "fp32"):
        raise UserError("%s is a %s export; derive deployment forms from the plain FP32 "
                        "export instead" % (source.path, source.info["kind"]))
    output = output_prefix(output, source)
    if fused:
        require_mkldnn("--fused")
    if int8:
        require_mkldnn("--int8")
        if calib_batches < 1:  # a value error first: it needs no file to be refused
            _check_calibration(None, calib_batches, batch_size)
        if not calib_rec:
            calib_rec = source.config.get("rec_train")
            if not calib_rec or not os.path.isfile(calib_rec):
                raise UserError("--int8 needs --calib-rec: a .rec of training images to "
                                "calibrate on (not the images you will evaluate on)%s"
                                % ("; the run's %s is gone" % calib_rec if calib_rec else ""))
        _check_calibration(calib_rec, calib_batches, batch_size)
        _check_calib_mode(calib_mode)
    if onnx:
        _import_onnx()
        onnx_ir_version(onnx_opset)
    if source.synsets is None:
        raise UserError("no class names for %s: pass --synsets FILE (im2rec.py --list "
                        "--recursive wrote PREFIX.synsets.txt beside the training list)"
                        % source.path)
    info = dict(source.info, kind="fp32")
    export_network(source.net, output, info["input_size"], source.synsets, info=info)
    written = {"fp32": output}
    if fused:
        written["fused"] = output + "-fused"
        export_fused(output, written["fused"])
    if int8:
        written["int8"] = output + "-int8"
        images = calibration_images(calib_rec, info, calib_batches, batch_size)
        export_int8(output, written["int8"], images, calib_mode, keep_ends_fp32,
                    calib_rec=os.path.abspath(calib_rec))
    if onnx:
        written["onnx"] = export_onnx(output, output + ".onnx", opset=onnx_opset)
    return written


# TEMP: moves to mobilenet_skip.deploy at merge
def export_run(save_dir, epoch=None, synsets=None):
    """Export a training run's chosen epoch beside its checkpoints, built with the
    recipe's BatchNorm settings; returns the prefix.

    ``epoch`` None takes the recipe's ``export_epoch`` choice (the last or the best
    epoch of ``metrics.csv``); ``synsets`` None takes the run's (beside its training .rec).
    """
    import logging
    from .train.rundir import RunDir, best_row, selected_row
    run = RunDir(save_dir)
    cfg, rows = run.config(), run.metrics()
    if not rows:
        raise UserError("%s has no metrics.csv rows: no trained epoch to export" % save_dir)
    by_epoch = {r["epoch"]: r for r in rows}
    chosen = selected_row(rows, cfg["export_epoch"]) if epoch is None else by_epoch.get(
        int(epoch), {"epoch": int(epoch), "val_top1": float("nan")})
    best = best_row(rows)
    if synsets is None:
        from .recordio import synsets_path
        found = synsets_path(cfg["rec_train"]) if cfg.get("rec_train") else None
        synsets = found if found and os.path.isfile(found) else None
    prefix = run.export_prefix()
    net = network_from_checkpoint(run.checkpoint_path(chosen["epoch"]), cfg["model"],
                                  cfg["multiplier"], cfg["classes"],
                                  norm_kwargs=norm_kwargs_from(cfg))
    export_network(net, prefix, cfg["input_size"], synsets, info=describe(
        net, cfg["input_size"], cfg, epoch=chosen["epoch"], val_top1=chosen["val_top1"],
        export_epoch=cfg["export_epoch"], last_epoch=rows[-1]["epoch"],
        best_epoch=best["epoch"], best_val_top1=best["val_top1"]))
    logging.getLogger("mobilenet_skip").info(
        "exported the %s epoch, %d (val top1 %.4f), to %s-symbol.json and %s-0000.params",
        cfg["export_epoch"], chosen["epoch"], chosen["val_top1"], prefix, prefix)
    return prefix
