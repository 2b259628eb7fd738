"""The ONNX form: MXNet's own converter at a chosen opset, the weights as initializers
only (so ONNX Runtime can fold them), and the sidecar inside the file's metadata.
"""
import json
import os

import mxnet as mx

from ..utils.fs import atomic_write
from ..errors import UserError
from .artifact import NOT_WRITTEN, check_info, verify_form_file

__all__ = ["export_onnx", "read_onnx_info", "onnx_ir_version", "onnx_versions", "import_onnx",
           "add_arguments", "DEFAULT_ONNX_OPSET", "MIN_ONNX_OPSET"]

# Opset 13 (IR version 7, onnx 1.8, 2020): old runtimes load it (tested with ONNX Runtime
# 1.15.0, 1.16.3 and 1.32.0) and MXNet's converter writes every op of these networks in it.
DEFAULT_ONNX_OPSET = 13
MIN_ONNX_OPSET = 12  # MXNet 1.9's converter has no translations below opset 12
ONNX_INFO_KEY = "mobilenet_skip"  # metadata_props entry holding the sidecar


def add_arguments(parser):
    """``--onnx-opset`` of ``tools/export_model.py``."""
    parser.add_argument("--onnx-opset", type=int, default=DEFAULT_ONNX_OPSET, metavar="N",
                        help="ONNX opset of PREFIX.onnx, %d to onnx's newest; its IR version "
                        "follows (%d: IR 7, which ONNX Runtime 1.15 and later load) (%d)"
                        % (MIN_ONNX_OPSET, DEFAULT_ONNX_OPSET, DEFAULT_ONNX_OPSET))


def import_onnx():
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
    onnx = import_onnx()
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


def export_onnx(graph, info, path, dynamic_batch=True, weights_as_inputs=False,
                opset=DEFAULT_ONNX_OPSET):
    """ONNX file of the FP32 ``graph`` (sidecar ``info``), checked by ``onnx.checker``.

    Written at ``opset`` (default 13, IR version 7) through MXNet's own converter (see
    :func:`_mxnet_to_onnx`), so that runtimes that read IR 7 load it (tested: ONNX
    Runtime 1.15.0 and 1.16.3, which refuse the IR 11 of onnx's newest opset). The
    sidecar goes into the model's metadata (``mobilenet_skip``), so the file alone
    says how to preprocess its input.

    ``mx.onnx.export_model`` lists every weight both as an initializer and as a
    graph input; a graph input may be overridden at run time, so ONNX Runtime
    cannot fold it (BN into conv, for one) and runs about twice as slow. The
    weights are therefore removed from the inputs, leaving ``data`` alone. With
    ``dynamic_batch`` the batch dimension is free; ONNX Runtime folds constants
    either way. ``weights_as_inputs`` keeps the exporter's graph inputs (only for
    measuring what removing them gains).
    """
    onnx = import_onnx()
    ir_version = onnx_ir_version(opset)
    params = dict(graph.arg_params)
    params.update(graph.aux_params)
    model = _mxnet_to_onnx(onnx, graph.sym, params, info["input_size"], opset, dynamic_batch)
    if not weights_as_inputs:
        weights = {init.name for init in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in weights]
        del model.graph.input[:]
        model.graph.input.extend(inputs)
    side = {k: v for k, v in info.items() if k not in NOT_WRITTEN}
    onnx.helper.set_model_props(model, {ONNX_INFO_KEY: json.dumps(side, sort_keys=True)})
    onnx.checker.check_model(model, full_check=True)  # every node against its opset-`opset` schema
    if onnx_versions(model) != (ir_version, opset):
        raise AssertionError("ONNX model declares %s, expected (%d, %d)"
                             % (onnx_versions(model), ir_version, opset))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda tmp: onnx.save(model, tmp))
    return path


def read_onnx_info(path):
    """The sidecar stored in an ONNX file by :func:`export_onnx`, or None; the file is
    checked against the digest its export's sidecar records once it has parsed (so that
    a file of another kind keeps its own message).

    Raises
    ------
    UserError
        When the file is not an ONNX model protobuf can parse (cut short, damaged, or
        another kind of file), or differs from the digest its sidecar records.
    """
    onnx = import_onnx()
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as err:
        if type(err).__name__ != "DecodeError":  # protobuf's, which onnx passes on as it is
            raise
        raise UserError("%s is not an ONNX model: protobuf cannot parse it (%s), so it is cut "
                        "short, damaged or another kind of file; re-export it with "
                        "tools/export_model.py --onnx" % (path, str(err).strip()[:200]
                                                          or type(err).__name__)) from None
    props = {p.key: p.value for p in model.metadata_props}
    info = None
    if ONNX_INFO_KEY in props:
        try:
            info = check_info(json.loads(props[ONNX_INFO_KEY]), path)
        except (ValueError, TypeError):
            raise UserError("%s carries an unreadable %s description; re-export it"
                            % (path, ONNX_INFO_KEY)) from None
    verify_form_file(path)
    return info
