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
import numpy as np

from ..data import records as data
from ..errors import UserError, mxnet_message
from ..models import MIN_INPUT_SIZE, get_model
from .artifact import Graph, export_paths, read_info, sidecar_path

__all__ = ["load_symbolic", "block_of", "open_export", "Export", "forward_memory",
           "node_shapes", "fatal_conv", "MAX_SYMBOL_BYTES"]

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
    """
    graph = load_symbolic(prefix)  # a missing file is named before a missing sidecar
    info = read_info(prefix, input_size)
    sym_path, params_path, synsets_file = export_paths(prefix)
    ctxs = ctx if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()]
    side = info["input_size"]
    shapes = node_shapes(graph.sym, side)  # both checks run before anything is allocated
    _check_fatal_conv(graph.sym, shapes, side, prefix)
    _check_memory(shapes, side, prefix)
    block = block_of(graph, ctxs, params_path)
    try:
        out = block(mx.nd.zeros((1, 3, side, side), ctx=ctxs[0]))
        out.wait_to_read()
    except MemoryError:
        raise UserError(_out_of_memory(side, prefix)) from None
    except mx.base.MXNetError as err:
        if _is_allocation_failure(err):
            raise UserError(_out_of_memory(side, prefix, mxnet_message(err))) from None
        raise UserError("%s does not fit %s at input %dx%d (%s); the two files come from "
                        "different exports, or pass the right --input-size"
                        % (params_path, sym_path, side, side, mxnet_message(err)))
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
    info["classes"] = info.get("classes") or classes
    _check_model(graph, info, prefix)
    return Export(prefix, block, info, synsets, classes, graph)


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


# --- memory --------------------------------------------------------------------------

# What one image of side S adds to the peak RSS of tools/predict.py, measured with 0.25
# and 1.0 full-connect-pre-act exports from 512 to 3072 px (MXNet 1.9.1 with MKLDNN, one
# CPU thread): about 32 MB whatever the size (MKLDNN's primitives and scratch), plus
# 3.35 times the largest feature map, plus 0.3 times the input. The estimate rounds each
# term up, so that it stays above every measurement (by 10 to 45 %).
FIXED_BYTES, MAP_COPIES, INPUT_COPIES = 64 << 20, 3.5, 1.0


def _available_memory():
    """Bytes a new allocation can get: MemAvailable, or less under a cgroup memory limit
    (the OOM killer enforces that one); None if neither can be read."""
    found = [_meminfo_available(), _cgroup_headroom()]
    found = [n for n in found if n is not None]
    return min(found) if found else None


def _meminfo_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom():
    """Limit minus usage of this process's memory cgroup (v2, else v1), or None."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return None
    for _, controllers, path in lines:
        if controllers == "":
            files = ("/sys/fs/cgroup" + path, "memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            files = ("/sys/fs/cgroup/memory" + path, "memory.limit_in_bytes",
                     "memory.usage_in_bytes")
        else:
            continue
        try:
            limit, used = (_read_text(os.path.join(files[0], name)) for name in files[1:])
            if limit != "max" and int(limit) < 1 << 60:  # v1 says "no limit" as ~2**63
                return max(int(limit) - int(used), 0)
        except (OSError, ValueError):
            continue
    return None


def _read_text(path):
    with open(path) as f:
        return f.read().strip()


def forward_memory(sym, input_size):
    """The bytes one image of ``input_size`` adds to predict's (or eval's) process.

    :data:`FIXED_BYTES`, plus :data:`MAP_COPIES` times the largest feature map, plus
    :data:`INPUT_COPIES` times the input (float32): a fit to measured peaks that stays
    above each of them. Computed from shape inference alone, so nothing is allocated.
    """
    return _forward_memory(node_shapes(sym, input_size), input_size)


def node_shapes(sym, input_size):
    """``[(output name, shape)]`` of every node of ``sym`` for one image of
    ``input_size``, by shape inference alone; None when the graph does not take it."""
    internals = sym.get_internals()
    try:
        _, shapes, _ = internals.infer_shape(data=(1, 3, input_size, input_size))
    except mx.base.MXNetError:
        return None
    return list(zip(internals.list_outputs(), shapes or []))


def _forward_memory(shapes, input_size):
    if shapes is None:
        return 0  # the forward itself reports a graph that does not fit
    sizes = [int(np.prod(s)) for _, s in shapes if s]
    return int(FIXED_BYTES + 4 * (INPUT_COPIES * 3 * input_size ** 2
                                  + MAP_COPIES * max(sizes or [0])))


def _out_of_memory(side, prefix, detail=None):
    return ("--input-size %d is too large: one %dx%d image through %s ran out of memory%s; "
            "use the size it was trained at (%s) or a smaller one"
            % (side, side, side, prefix, " (%s)" % detail if detail else "",
               sidecar_path(prefix) if os.path.isfile(sidecar_path(prefix)) else "224 for "
               "ImageNet"))


# MXNet 1.9.1's oneDNN 1x1 convolution dies by SIGFPE (no message, no traceback) when its
# output for one image holds a multiple of 2^26 values on a square map: measured here for
# 16 and 64 channels at 2048 and 1024 px (2^26), 128 and 256 at 1024 (2^27, 2^28); 2^26 - 1
# or + 2^20 values run, as does any size that is not such a multiple.
FATAL_CONV_VALUES = 1 << 26


def fatal_conv(sym, input_size):
    """The 1x1 convolution of ``sym`` that ``input_size`` would crash (see
    :data:`FATAL_CONV_VALUES`), as ``(node name, output shape)``, or None."""
    return _fatal_conv(sym, node_shapes(sym, input_size))


def _fatal_conv(sym, shapes):
    nodes = {n["name"]: n for n in json.loads(sym.tojson())["nodes"]}
    for out, shape in shapes or []:
        node = nodes.get(out[:-len("_output")]) if out.endswith("_output") else None
        if not node or node["op"] != "Convolution" or not shape:
            continue
        attrs = node.get("attrs", {})
        values = int(np.prod(shape))
        if (attrs.get("kernel") in ("(1, 1)", "(1,1)") and shape[2] == shape[3]
                and values % FATAL_CONV_VALUES == 0):
            return node["name"], tuple(shape)
    return None


def _check_fatal_conv(sym, shapes, side, prefix):
    hit = _fatal_conv(sym, shapes)
    if hit is None:
        return
    near = next(s for d in range(8, side, 8) for s in (side - d, side + d)
                if fatal_conv(sym, s) is None)
    raise UserError("--input-size %d would crash MXNet 1.9.1 (SIGFPE inside oneDNN): %s's 1x1 "
                    "convolution %s outputs %s = %d x 2^26 values, a size its kernel cannot "
                    "run; use --input-size %d, or any size that avoids it"
                    % (side, prefix, hit[0], "x".join(map(str, hit[1])),
                       int(np.prod(hit[1])) // FATAL_CONV_VALUES, near))


def _check_memory(shapes, side, prefix):
    """Refuse an input size whose forward cannot fit in memory, before allocating it."""
    need, have = _forward_memory(shapes, side), _available_memory()
    if have is not None and need > have:
        raise UserError("--input-size %d is too large: one %dx%d image through %s needs "
                        "about %.1f GB, and %.1f GB of memory is available; use the size it "
                        "was trained at or a smaller one"
                        % (side, side, side, prefix, need / 1e9, have / 1e9))


def _is_allocation_failure(err):
    text = str(err).lower()
    return any(word in text for word in ("bad_alloc", "out of memory", "failed to allocate",
                                         "cannot allocate", "memory allocation"))
