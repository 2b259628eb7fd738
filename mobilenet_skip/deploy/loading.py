"""Reading an export back, with every broken or mismatched file named in one line.

MXNet's own loaders report an empty symbol file as a UTF-8 codec error, a truncated
one as a C++ traceback and an oversized input as ``bad_alloc``; here each becomes a
:class:`~mobilenet_skip.errors.UserError` naming the file and the fix.
"""
import json
import os
import warnings
from collections import namedtuple

import mxnet as mx

from ..data import records as data
from ..errors import UserError, mxnet_message
from ..models import MIN_INPUT_SIZE, get_model
from ..runs.sidecar import verify_export_files
from .artifact import Graph, export_paths, read_info, sidecar_path
from .limits import check_input_size, is_allocation_failure, out_of_memory

__all__ = ["load_symbolic", "block_of", "open_export", "open_graph", "Export",
           "MAX_SYMBOL_BYTES"]

MAX_SYMBOL_BYTES = 64 << 20  # an exported graph is < 1 MB; more is not one

Export = namedtuple("Export", ["prefix", "block", "info", "synsets", "classes", "graph"])
Export.__doc__ = ("An export read back: its prefix, a SymbolBlock, the sidecar (or defaults), "
                  "the class names (or None), the number of outputs and its Graph.")


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
    """The :class:`~.artifact.Graph` of an export, its files checked to belong together.

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
                        "re-export it" % (params_path, mxnet_message(err)))
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
    return Graph(sym, arg_params, aux_params)


def _read_symbol(path):
    """The graph in ``path``, or a :class:`UserError` saying what is wrong with the file."""
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
                        % (path, mxnet_message(err)))


def block_of(graph, ctx=None, where="the export"):
    """A ``SymbolBlock`` running ``graph`` with its weights on ``ctx`` (default CPU).

    INT8 weights keep their saved dtype, as ``SymbolBlock.imports`` does.
    """
    ctxs = ctx if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()]
    saved = {"arg:%s" % k: v for k, v in graph.arg_params.items()}
    saved.update({"aux:%s" % k: v for k, v in graph.aux_params.items()})
    with warnings.catch_warnings():
        # SymbolBlock warns that it cannot infer the type of `data`: it is the input.
        warnings.simplefilter("ignore")
        block = mx.gluon.SymbolBlock(graph.sym, mx.sym.var("data"))
        try:
            block.collect_params().load_dict(saved, ctx=ctxs, ignore_extra=True,
                                             cast_dtype=True, dtype_source="saved")
        except (AssertionError, mx.base.MXNetError) as err:
            raise UserError("cannot load the weights of %s into its graph (%s); re-export "
                            "both together" % (where, mxnet_message(err)))
    return block


def open_export(prefix, input_size=None, ctx=None, need_synsets=False):
    """Load an export as a ``SymbolBlock`` and check that its files match.

    One forward of zeros at the export's input size catches weights of another
    shape; the synsets file must name as many classes as the network outputs.

    Parameters
    ----------
    input_size : int, optional
        Overrides the sidecar's; required without one.
    ctx : Context or list of Context, optional
        Where the weights go (default CPU).
    need_synsets : bool
        Raise if ``<prefix>.synsets.txt`` is missing (otherwise ``synsets`` is None).

    Returns
    -------
    Export

    Raises
    ------
    UserError
        For any file that is missing, unreadable, damaged (its digest is not the one its
        sidecar records: checked last, so that a file of another kind or export is
        named as such) or not of this export.
    """
    graph = load_symbolic(prefix)  # a missing file is named before a missing sidecar
    info = read_info(prefix, input_size)
    sym_path, params_path, synsets_file = export_paths(prefix)
    block, classes = open_graph(graph, info["input_size"], ctx, prefix,
                                files=(sym_path, params_path))
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
    info["classes"] = info.get("classes") or classes
    _check_model(graph, info, prefix)
    verify_export_files(prefix)
    return Export(prefix, block, info, synsets, classes, graph)


def open_graph(graph, side, ctx=None, name="the network", files=None):
    """A ``SymbolBlock`` of ``graph`` on ``ctx`` that has run one ``side`` px image, and
    its number of outputs.

    An input size that would crash oneDNN or exceed the memory available is refused
    from shape inference, before anything is allocated; a forward that fails is named.

    Parameters
    ----------
    name : str
        What the messages call the network: an export's prefix, a checkpoint's file.
    files : tuple of str, optional
        An export's symbol and params files, named when its weights do not fit its graph.

    Returns
    -------
    tuple
        ``(block, classes)``.
    """
    ctxs = ctx if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()]
    check_input_size(graph.sym, side, name)
    block = block_of(graph, ctxs, files[1] if files else name)
    try:
        out = block(mx.nd.zeros((1, 3, side, side), ctx=ctxs[0]))
        out.wait_to_read()
    except MemoryError:
        raise UserError(out_of_memory(side, name)) from None
    except mx.base.MXNetError as err:
        if is_allocation_failure(err):
            raise UserError(out_of_memory(side, name, mxnet_message(err))) from None
        if files is None:
            raise UserError("%s cannot run at input %dx%d (%s); pass the right --input-size"
                            % (name, side, side, mxnet_message(err)))
        raise UserError("%s does not fit %s at input %dx%d (%s); the two files come from "
                        "different exports, or pass the right --input-size"
                        % (files[1], files[0], side, side, mxnet_message(err)))
    return block, out.shape[1]


# --- the sidecar's model against the graph -----------------------------------------

def _signature(sym, side):
    """Operators in order and the weights' shapes: what the same model and width share."""
    ops = [node["op"] for node in json.loads(sym.tojson())["nodes"] if node["op"] != "null"]
    args, _, aux = sym.infer_shape(data=(1, 3, side, side))
    weights = [tuple(s) for name, s in zip(sym.list_arguments(), args) if name != "data"]
    return ops, weights, [tuple(s) for s in aux]


def _check_model(graph, info, prefix):
    """Refuse a sidecar whose model or width is not the graph's, by building the network
    it names (no weights) and comparing operators and weight shapes.

    Only a plain FP32 export is compared: MXNet rewrites the fused and INT8 graphs,
    and their sidecars are written together with them.
    """
    if info.get("kind") != "fp32" or not info.get("variant") or not info.get("multiplier"):
        return
    described = "%s x%g" % (info["variant"], info["multiplier"])
    try:
        net = get_model(info["variant"], float(info["multiplier"]), int(info["classes"]))
    except (ValueError, TypeError) as err:
        raise UserError("%s describes %s, which this mobilenet-skip cannot build (%s); "
                        "re-export it" % (sidecar_path(prefix), described, err)) from None
    # the smallest input: neither operators nor weight shapes depend on it
    theirs = _signature(graph.sym, MIN_INPUT_SIZE)
    ours = _signature(net(mx.sym.var("data")), MIN_INPUT_SIZE)
    if theirs != ours:
        first = ("its first convolution has %d filters, %s has %d"
                 % (theirs[1][0][0], described, ours[1][0][0])
                 if theirs[1][:1] != ours[1][:1] else "its layers differ from %s's" % described)
        raise UserError("%s describes %s but %s holds another model or width (%s): the "
                        "sidecar belongs to another export; re-export, or put this export's "
                        "own sidecar beside it" % (sidecar_path(prefix), described,
                                                   export_paths(prefix)[0], first))
