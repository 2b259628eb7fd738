"""What the INT8 exports buy and what they do not: measured latency and file size, of
MXNet's INT8 export against the FP32 one and of ONNX Runtime's INT8 file against the FP32
ONNX file (:func:`onnx_int8_report`: there the weights are stored as int8).

MXNet 1.9.1 cannot store INT8 weights for these networks in a form that runs fast, so
the INT8 ``.params`` file is as large as the FP32 one:

- ``quantize_model_mkldnn`` (what :func:`~.int8.export_int8` uses) turns every conv
  into an ``_sg_mkldnn_conv`` subgraph that takes FP32 weights, folds the BN into them
  and quantizes them to INT8 in memory when it first runs (``QuantizeConvWeightBias``
  in ``src/operator/subgraph/mkldnn/mkldnn_conv.cc``); only the classifier gets INT8
  weights on disk (``_contrib_quantize_v2`` offline): for full-connect-pre-act, 144 float32 tensors and
  2 int8.
- ``quantize_model(quantize_mode="full")``, which stores offline INT8 conv weights
  (``_contrib_quantized_conv``), refuses the graph: "quantized_conv only supports
  num_group=1" (the depthwise convs); with those kept FP32, oneDNN's quantized conv
  then refuses int8 inputs ("only supports uint8 as input type") because calibration
  leaves most of its quantize nodes without ranges. Measured on the demo network.

So INT8 buys latency (oneDNN's INT8 kernels: x1.0 at 224, batch 1, one thread, 4.6 ms
against 19.9 ms here) and not disk or download size: the file
shrinks by the classifier's weights alone (demo x0.5, 10 classes: 4.05 to 4.03 MB;
x1.0 with 1000 classes: 19.8 to 16.7 MB, 0.84x).
"""
import os
import tempfile
import time
from collections import Counter

import mxnet as mx
import numpy as np

from .artifact import export_paths, read_info
from .loading import load_symbolic
from .onnx import export_onnx, import_onnx
from .runtime import OnnxRunner, export_runner

__all__ = ["params_storage", "median_latency", "int8_report", "format_int8_report",
           "latency_verdict",
           "onnx_int8_report", "format_onnx_int8_report", "REPORTS", "form_reports"]


def params_storage(params_path):
    """Size and tensor dtypes of a ``.params`` file.

    Returns
    -------
    dict
        ``bytes`` (the file), ``dtypes`` (dtype name to tensor count) and
        ``int8_bytes`` (bytes of the int8/uint8 tensors).
    """
    saved = mx.nd.load(params_path)
    arrays = list(saved.values()) if isinstance(saved, dict) else list(saved)
    dtypes = Counter(np.dtype(a.dtype).name for a in arrays)
    small = sum(a.size for a in arrays if np.dtype(a.dtype).itemsize == 1)
    return {"bytes": os.path.getsize(params_path), "dtypes": dict(dtypes), "int8_bytes": small}


def _median_seconds(run, repeats, warmup):
    """Median seconds of ``run()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def median_latency(prefix, batch_size=1, repeats=30, warmup=3):
    """Median seconds of one forward of ``batch_size`` images through an export (SymbolBlock).

    The warm-up runs include the INT8 graph's first forward, which folds and quantizes
    its weights.
    """
    net = export_runner(prefix, batch_size=batch_size)
    side = net.info["input_size"]
    x = mx.nd.random.normal(shape=(batch_size, 3, side, side))
    return _median_seconds(lambda: net(x).wait_to_read(), repeats, warmup)


def _onnx_latency(path, repeats, warmup=3):
    """Median seconds of one batch-1 ONNX Runtime run of the ONNX file ``path``."""
    net = OnnxRunner(path, batch_size=1)
    side = net.info["input_size"]
    x = {net.input_name: np.random.RandomState(0).normal(size=(1, 3, side, side))
         .astype(np.float32)}
    return _median_seconds(lambda: net.session.run(None, x), repeats, warmup)


def int8_report(fp32_prefix, int8_prefix, repeats=30):
    """File sizes, weight dtypes and batch-1 latency of an INT8 export against its FP32 one."""
    fp32 = params_storage(export_paths(fp32_prefix)[1])
    int8 = params_storage(export_paths(int8_prefix)[1])
    fp32_s = median_latency(fp32_prefix, repeats=repeats)
    int8_s = median_latency(int8_prefix, repeats=repeats)
    return {"fp32_bytes": fp32["bytes"], "int8_bytes": int8["bytes"],
            "size_ratio": int8["bytes"] / float(fp32["bytes"]), "int8_dtypes": int8["dtypes"],
            "int8_weight_bytes": int8["int8_bytes"], "fp32_ms": 1e3 * fp32_s,
            "int8_ms": 1e3 * int8_s, "latency_ratio": int8_s / fp32_s}


def latency_verdict(r):
    """``buys latency`` when INT8 measured faster than FP32 here, else ``is slower here``
    (a small network at batch 1, or a CPU without VNNI, can lose to FP32)."""
    return "buys latency" if r["int8_ms"] < r["fp32_ms"] else "is slower here"


def format_int8_report(r):
    """Two lines: what INT8 did to latency, as measured, and to the file size."""
    dtypes = _dtype_counts(r["int8_dtypes"])
    return ("int8 %s: %.2f ms vs FP32 %.2f ms per image at batch 1 (%.2fx, median "
            "of this machine's runs)\n"
            "int8 file size: .params %.2f MB vs FP32 %.2f MB (%.2fx; %s tensors): only "
            "the classifier is stored as int8, MXNet 1.9's oneDNN INT8 convs keep FP32 "
            "weights on disk and quantize them when first run"
            % (latency_verdict(r), r["int8_ms"], r["fp32_ms"], r["latency_ratio"],
               r["int8_bytes"] / 1e6, r["fp32_bytes"] / 1e6, r["size_ratio"], dtypes))


def onnx_int8_report(fp32_onnx, int8_onnx, repeats=30):
    """File sizes, initializer dtypes and batch-1 ONNX Runtime latency of an INT8 ONNX file
    against the FP32 ONNX file it was quantized from (the keys of :func:`int8_report`)."""
    onnx = import_onnx()
    dtypes = Counter(onnx.helper.tensor_dtype_to_np_dtype(init.data_type).name
                     for init in onnx.load(int8_onnx).graph.initializer)
    fp32_s, int8_s = _onnx_latency(fp32_onnx, repeats), _onnx_latency(int8_onnx, repeats)
    fp32_bytes, int8_bytes = os.path.getsize(fp32_onnx), os.path.getsize(int8_onnx)
    return {"fp32_bytes": fp32_bytes, "int8_bytes": int8_bytes,
            "size_ratio": int8_bytes / float(fp32_bytes), "int8_dtypes": dict(dtypes),
            "fp32_ms": 1e3 * fp32_s, "int8_ms": 1e3 * int8_s, "latency_ratio": int8_s / fp32_s}


def format_onnx_int8_report(r):
    """Two lines, as :func:`format_int8_report`'s: latency and file size against FP32 ONNX."""
    return ("onnx-int8 %s: %.2f ms vs ONNX FP32 %.2f ms per image at batch 1 in ONNX "
            "Runtime (%.2fx, median of this machine's runs)\n"
            "onnx-int8 file size: %.2f MB vs ONNX FP32 %.2f MB (%.2fx; initializers: %s)"
            % (latency_verdict(r), r["int8_ms"], r["fp32_ms"], r["latency_ratio"],
               r["int8_bytes"] / 1e6, r["fp32_bytes"] / 1e6, r["size_ratio"], _dtype_counts(r["int8_dtypes"])))


def _dtype_counts(dtypes):
    return ", ".join("%d %s" % (n, t) for t, n in sorted(dtypes.items(), key=lambda kv: -kv[1]))


def _onnx_int8(written, options):
    """Against the FP32 ONNX file written beside it (``--onnx``), else one made for this."""
    if "onnx" in written:
        return format_onnx_int8_report(onnx_int8_report(written["onnx"], written["onnx-int8"]))
    with tempfile.TemporaryDirectory(prefix="onnx-fp32-") as tmp:
        fp32 = export_onnx(load_symbolic(written["fp32"]), read_info(written["fp32"]),
                           os.path.join(tmp, "fp32.onnx"), opset=options.onnx_opset)
        return format_onnx_int8_report(onnx_int8_report(fp32, written["onnx-int8"]))


def _mxnet_int8(written, options):
    return format_int8_report(int8_report(written["fp32"], written["int8"]))


# What export_model.py reports after writing a form: its name to report(written, options).
REPORTS = {"int8": _mxnet_int8, "onnx-int8": _onnx_int8}


def form_reports(written, options):
    """The report text of each written form that has one, in writing order."""
    return [REPORTS[name](written, options) for name in written if name in REPORTS]
