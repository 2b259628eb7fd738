"""The ONNX Runtime INT8 form: ONNX Runtime's static quantisation of the opset-13 file
that the ONNX form writes, calibrated like the MXNet INT8 form.

The FP32 graph goes through :func:`~.onnx.export_onnx` (weights as initializers, opset
``--onnx-opset``), ONNX Runtime's quantisation pre-processing (shape inference and its
graph optimisations, which fold each BN that follows a conv into it) and
``quantize_static``: weights INT8 per output channel, activations UINT8 with ranges
calibrated on ``--calib-rec`` images through validation's preprocessing
(:func:`~.int8.calibration_for`, the MXNet INT8 form's images and size rules).
``--calib-mode`` maps naive to ONNX Runtime's MinMax and entropy to its Entropy;
``--int8-keep-ends`` keeps the first conv and the classifier FP32. Unlike MXNet's INT8
export the weights are stored as int8 (about a quarter of the FP32 file).

The sidecar goes into the file's metadata as the ONNX form's does, with the MXNet INT8
form's entries (``kind`` int8, ``derived_from``, ``calib_rec``, ``calib_mode``,
``calib_images``, ``fp32_layers``) and ``quant_format``.
"""
import json
import os
import tempfile

import numpy as np

from ..errors import UserError
from ..utils.fs import atomic_write
from .int8 import check as check_calibration
from .onnx import ONNX_INFO_KEY, export_onnx, import_onnx, onnx_ir_version

__all__ = ["export_onnx_int8", "import_quantization", "add_arguments", "check", "note",
           "QUANT_FORMATS", "PIP_PINS"]

# The pip command for each module ONNX Runtime's quantiser needs (requirements/test.txt pins
# the same): onnxruntime.quantization imports ml_dtypes, which the onnxruntime wheel lists
# under its `quantization` extra only. sympy is not needed: the pre-processing here skips
# symbolic shape inference.
PIP_PINS = {"ml_dtypes": "ml_dtypes==0.5.1", "onnxruntime": "onnxruntime==1.32.0"}
# QOperator: QLinearConv/QLinearAdd kernels (com.microsoft ops, ONNX Runtime only); QDQ:
# QuantizeLinear/DequantizeLinear pairs around float ops, which a runtime fuses.
QUANT_FORMATS = ("qoperator", "qdq")
# Full-connect-pre-act 1.0-224, batch 1, ONNX Runtime 1.32, two runs on a loaded 2-core
# machine: qoperator 0.60x and 0.48x ORT FP32, qdq 0.63x and 0.56x (same runs).
DEFAULT_QUANT_FORMAT = "qoperator"
FLAG = "--onnx-int8"
# Left FP32 besides quantize_static's own choice: the pre-activation BN (after a skip's sum,
# before a ReLU) has no conv to fold into, and QDQ's per-channel BN gets a wrong axis.
FP32_OPS = {"BatchNormalization"}


def add_arguments(parser):
    """``--onnx-int8-format`` of ``tools/export_model.py`` (calibration: the INT8 options)."""
    parser.add_argument("--onnx-int8-format", choices=QUANT_FORMATS, default=DEFAULT_QUANT_FORMAT,
                        help="PREFIX-int8.onnx as QLinear* operators (qoperator) or as "
                        "QuantizeLinear/DequantizeLinear pairs around FP32 ops (qdq) (%s)"
                        % DEFAULT_QUANT_FORMAT)


def import_quantization():
    """``onnxruntime.quantization``, or a one-line :class:`UserError` naming the pip command."""
    import_onnx()
    try:
        import onnxruntime.quantization as quantization
    except ImportError as err:
        name = (getattr(err, "name", None) or "").split(".")[0]
        pin = PIP_PINS.get(name, name or "onnxruntime")
        raise UserError("%s needs %s, which ONNX Runtime's quantisation imports: pip install "
                        "%s" % (FLAG, name or "a missing module", pin)) from None
    return quantization


def check(source, options):
    """Before any file is written: the quantiser imports, the opset, the format and the
    calibration settings."""
    import_quantization()
    onnx_ir_version(options.onnx_opset)
    if options.onnx_int8_format not in QUANT_FORMATS:
        raise UserError("--onnx-int8-format must be qoperator or qdq, got %r"
                        % (options.onnx_int8_format,))
    check_calibration(source, options, FLAG)


def note(options):
    """The text after export_model.py's 'wrote onnx-int8' line."""
    return " (%s, weights per channel, from ONNX opset %d)" % (options.onnx_int8_format,
                                                               options.onnx_opset)


def _reader(quantization, images, batch_size):
    """A ``CalibrationDataReader`` over ``images`` (N x 3 x S x S) in batches."""
    batches = [images[i:i + batch_size] for i in range(0, images.shape[0], batch_size)]

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"data": batch}
    return Reader()


def _end_nodes(model):
    """Names of the node reading the graph input and of the last conv/Gemm (the classifier)."""
    inputs = {i.name for i in model.graph.input}
    first = next(n.name for n in model.graph.node if inputs & set(n.input))
    last = [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")][-1]
    return [first, last]


def export_onnx_int8(graph, info, path, calib_images, calib_mode="naive", keep_ends_fp32=False,
                     quant_format=DEFAULT_QUANT_FORMAT, opset=None, batch_size=32):
    """Quantize the FP32 ``graph`` with ONNX Runtime and write ``path`` (sidecar ``info``).

    Parameters
    ----------
    info : dict
        The sidecar (``kind`` int8); the calibration is added to it.
    calib_images : NDArray or numpy.ndarray
        Preprocessed images (:func:`~.int8.calibration_images`); training images, not
        the ones you evaluate on.
    calib_mode : {"naive", "entropy"}
        ONNX Runtime's MinMax or Entropy calibration.
    quant_format : {"qoperator", "qdq"}
    opset : int, optional
        Of the FP32 ONNX file quantized (default: the ONNX form's, 13).
    """
    quantization = import_quantization()
    from onnxruntime.quantization.shape_inference import quant_pre_process
    onnx = import_onnx()
    images = np.ascontiguousarray(getattr(calib_images, "asnumpy", lambda: calib_images)(),
                                  dtype=np.float32)
    methods = {"naive": quantization.CalibrationMethod.MinMax,
               "entropy": quantization.CalibrationMethod.Entropy}
    formats = {"qoperator": quantization.QuantFormat.QOperator,
               "qdq": quantization.QuantFormat.QDQ}
    with tempfile.TemporaryDirectory(prefix="onnx-int8-") as tmp:
        fp32, pre, int8 = (os.path.join(tmp, n + ".onnx") for n in ("fp32", "pre", "int8"))
        export_onnx(graph, info, fp32, **({"opset": opset} if opset else {}))
        # sympy's symbolic shape inference adds nothing for fixed-rank conv nets
        quant_pre_process(fp32, pre, skip_symbolic_shape=True)
        model = onnx.load(pre)
        for i, node in enumerate(model.graph.node):  # mx2onnx leaves some unnamed, and
            node.name = node.name or "%s_%d" % (node.op_type, i)  # exclusion goes by name
        excluded = _end_nodes(model) if keep_ends_fp32 else []
        quantization.quantize_static(
            model, int8, _reader(quantization, images, max(1, batch_size)),
            quant_format=formats[quant_format], per_channel=True,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8, nodes_to_exclude=excluded,
            op_types_to_quantize=sorted({n.op_type for n in model.graph.node} - FP32_OPS),
            calibrate_method=methods[calib_mode])
        model = onnx.load(int8)
    side = json.loads({p.key: p.value for p in model.metadata_props}[ONNX_INFO_KEY])
    side = dict(side, kind="int8", calib_mode=calib_mode, calib_images=int(images.shape[0]),
                fp32_layers=excluded, quant_format=quant_format)
    onnx.helper.set_model_props(model, {ONNX_INFO_KEY: json.dumps(side, sort_keys=True)})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda tmp: onnx.save(model, tmp))
    return path

