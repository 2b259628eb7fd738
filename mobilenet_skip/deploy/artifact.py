"""An export on disk: ``<prefix>-symbol.json`` + ``<prefix>-0000.params``, the class
names ``<prefix>.synsets.txt`` and the sidecar ``<prefix>.json``, written last.

The set is written as one: every file is staged beside its place first, the old
sidecar goes, the files are renamed into place and the sidecar comes last. The
sidecar is the commit point: a reader that finds it finds the whole set, and one that
finds none refuses the export unless told its input size. A full disk leaves the
earlier export as it was and no temporary file. The sidecar records the SHA-256 of the
graph and the weights, hashed from the staged files, and of the one-file forms written
beside them (:func:`record_digests`); :func:`verify_form_file` checks such a file.

The graph takes one input named ``data`` (NCHW float32, normalised as in validation)
and returns logits. The sidecar records the model and the preprocessing it expects
(:mod:`mobilenet_skip.runs.sidecar`), so nothing else is needed to use it; here it is
checked against the registered forms and read. In memory an export is a :class:`Graph`:
the symbol and its weights, from which every deployment form is derived.
"""
import glob
import json
import os
import shutil
from collections import namedtuple

import mxnet as mx
import numpy as np

from ..data.preprocess import Preprocessing
from ..errors import UserError
from ..models import MIN_INPUT_SIZE
from ..models.fusion import fused_count, set_bn_relu_fusion
from ..runs.checkpoints import checkpoint_model, is_checkpoint_file, read_json, read_marker
from ..runs.digests import file_sha256
from ..runs.folder import RunDir
from ..runs.sidecar import (DEFAULT_INPUT_SIZE, DIGESTED, DIGESTS, FORMAT, describe,
                            export_paths, preprocessing_entries, recorded_digests,
                            sidecar_path, summary, verify_export_files)
from ..utils.fs import atomic_save, final_path, remove_if_exists, stage
from .registry import FORMS, kinds

# describe, summary, export_paths, sidecar_path, FORMAT and DEFAULT_INPUT_SIZE are the
# sidecar's (runs.sidecar), named here too because an export is read and written here
__all__ = ["Graph", "graph_of", "export_paths", "sidecar_path", "describe", "summary",
           "check_info", "read_info", "input_size_warning", "write_graph", "export_network",
           "written_files", "refuse_overwrites", "record_digests", "verify_form_file",
           "FORMAT", "DEFAULT_INPUT_SIZE"]

# read_info's notes, not the file's; the digests are the files', written with them
NOT_WRITTEN = ("sidecar", "trained_input_size", DIGESTS)

Graph = namedtuple("Graph", ["sym", "arg_params", "aux_params"])
Graph.__doc__ = "A network as MXNet's symbolic API sees it: symbol, arg and aux NDArrays (CPU)."


def written_files(out, kind):
    """The files a form of sidecar ``kind`` writes at ``out``: an export's four, or ``out``
    itself for a one-file form (``kind`` None)."""
    return [out] if kind is None else list(export_paths(out)) + [sidecar_path(out)]


def refuse_overwrites(paths, flag="--output"):
    """A one-line :class:`UserError` if writing ``paths`` would replace a checkpoint's file
    or a JSON that is not an export's sidecar (a checkpoint marker, say), or would write
    a sidecar under a checkpoint marker's name in a run folder (training would read it as
    one, and delete it with the checkpoint)."""
    for path in paths:
        if not os.path.exists(path):
            _refuse_checkpoint_name(path, flag)
            continue
        if is_checkpoint_file(path):
            what = "a training checkpoint's file (the run could no longer resume)"
        elif path.endswith(".json") and not path.endswith("-symbol.json") \
                and not _is_sidecar(path):
            what = "a JSON file that is not an export's sidecar"
        else:
            _refuse_checkpoint_name(path, flag)
            continue  # an earlier export's file: replaced as a whole set
        raise UserError("%s would overwrite %s, %s; choose another %s, such as %s"
                        % (flag, path, what, flag,
                           os.path.join(os.path.dirname(path) or ".", "deploy", "m")))


def _refuse_checkpoint_name(path, flag):
    """Refuse a sidecar ``<model>-NNNN.json`` or ``<model>-interrupted.json`` in a folder
    that holds a run of ``<model>`` (its config.yaml's model, or a marker of it)."""
    if not path.endswith(".json") or path.endswith("-symbol.json"):
        return
    model = checkpoint_model(path[:-len(".json")])
    if model is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    run = RunDir(folder)
    if not (os.path.isfile(run.config_path) and run.model == model) and not any(
            read_marker(m) for m in glob.glob(os.path.join(glob.escape(folder),
                                                           glob.escape(model) + "-*.json"))):
        return
    raise UserError("%s would write %s, the name of a checkpoint marker of the %s run in %s "
                    "(%s-NNNN, %s-interrupted), which training reads and deletes; choose "
                    "another %s, such as %s" % (flag, path, model, folder, model, model, flag,
                                                os.path.join(folder, "deploy", "m")))


def _is_sidecar(path):
    info = read_json(path)
    return isinstance(info, dict) and info.get("format") == FORMAT


# --- the sidecar ---------------------------------------------------------------------

def check_info(info, path):
    """``info`` if it is a valid sidecar, else a :class:`UserError` naming ``path``."""
    known = kinds()
    if info.get("format") == FORMAT and isinstance(info.get("kind"), str) \
            and info["kind"] not in known:
        raise UserError("%s is an export of kind %r, which no registered form writes (known: "
                        "%s); register its Form in mobilenet_skip/deploy/registry.py, or use "
                        "a newer mobilenet_skip" % (path, info["kind"], ", ".join(sorted(known))))
    try:
        ok = (info.get("format") == FORMAT and info.get("kind") in known
              and int(info["input_size"]) >= MIN_INPUT_SIZE
              and all(k in info for k in ("crop_ratio", "mean_rgb", "std_rgb")))
        Preprocessing.from_dict(info)  # raises on a bad crop ratio, mean or std
    except (KeyError, TypeError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise UserError("%s is not a valid export description (format %s: kind, input_size, "
                        "crop_ratio, mean_rgb, std_rgb); re-export with tools/export_model.py "
                        "or delete it to use the defaults" % (path, FORMAT))
    return info


def read_info(prefix, input_size=None):
    """The sidecar of ``prefix``; without one, the ImageNet defaults at ``input_size``.

    Without a sidecar ``input_size`` is required (a :class:`UserError` otherwise: a
    32 px export run at 224 answers wrongly without a word), the crop ratio is 0.875
    with the ImageNet mean/std, and ``kind``, ``variant``, ``multiplier`` and
    ``classes`` are None. ``input_size``, when given, overrides the sidecar's
    (``trained_input_size`` then keeps the sidecar's).
    """
    path = sidecar_path(prefix)
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except ValueError:
            info = None
        info = check_info(info if isinstance(info, dict) else {}, path)
        info.pop(DIGESTS, None)  # the files', checked as they are read (verify_export_files)
        info["sidecar"] = True
    elif not input_size:
        raise UserError("%s has no sidecar %s saying the input size it was trained at; pass "
                        "--input-size S (224 for ImageNet, 32 for the demo digits)"
                        % (prefix, path))
    else:
        info = describe({}, DEFAULT_INPUT_SIZE, kind=None, sidecar=False)
    if input_size:
        if int(input_size) < MIN_INPUT_SIZE:
            raise UserError("--input-size %d is too small: the network has stride 32, so use "
                            "at least %d" % (input_size, MIN_INPUT_SIZE))
        if info["sidecar"] and int(info["input_size"]) != int(input_size):
            info["trained_input_size"] = int(info["input_size"])
        info.update(preprocessing_entries(info, input_size))
    return info


def input_size_warning(prefix, info):
    """One line when ``--input-size`` overrode the size the export was trained at, else None."""
    trained = info.get("trained_input_size")
    if trained is None:
        return None
    return ("--input-size %d differs from the %d that %s was trained at (%s); expect worse "
            "predictions" % (info["input_size"], trained, prefix, sidecar_path(prefix)))


# --- writing -------------------------------------------------------------------------

def graph_of(net, input_size):
    """The :class:`Graph` of a Gluon block, as ``HybridBlock.export`` would write it.

    The block is hybridized and run once on a ``1 x 3 x S x S`` input; its cached
    graph is the symbol ``export`` saves (byte for byte: a symbol traced anew numbers
    the BatchNorm state versions differently), with the weights it reads. It is always
    the unfused graph: the fused BatchNorm-ReLU operator of CPU training has no GPU,
    ONNX, Module-without-oneDNN or INT8 kernel, and the weights are the same. A fused
    ``net`` is fused again afterwards (and traces anew at its next call).
    """
    refuse = fused_count(net) > 0
    set_bn_relu_fusion(net, False)
    net.hybridize(static_alloc=True, static_shape=True)
    net(mx.nd.zeros((1, 3, input_size, input_size), ctx=mx.cpu())).wait_to_read()
    sym = net._cached_graph[1]
    if refuse:
        set_bn_relu_fusion(net, True)
    params = {name: p.list_data()[0].as_in_context(mx.cpu())
              for name, p in net.collect_params().items()}
    return Graph(sym, {n: params[n] for n in sym.list_arguments() if n in params},
                 {n: params[n] for n in sym.list_auxiliary_states() if n in params})


def write_graph(prefix, graph, synsets=None, info=None):
    """Write ``graph`` under ``prefix`` as one set: symbol, params, synsets, sidecar last.

    ``synsets`` is a list of names or a file to copy (or None); ``info`` the sidecar
    (or None for none). Every file is staged first (a full disk is a one-line
    :class:`UserError` that leaves the earlier export whole), then the old sidecar
    goes and the files are renamed into place, the sidecar last.

    Returns
    -------
    tuple of str
        The symbol, params and synsets paths.
    """
    sym_path, params_path, synsets_file = export_paths(prefix)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    saved = {"arg:%s" % k: v.as_in_context(mx.cpu()) for k, v in graph.arg_params.items()}
    saved.update({"aux:%s" % k: v.as_in_context(mx.cpu()) for k, v in graph.aux_params.items()})
    writes = [(sym_path, graph.sym.save), (params_path, lambda tmp: mx.nd.save(tmp, saved)),
              (synsets_file, _synsets_writer(synsets, synsets_file))]
    needed = sum(v.size * np.dtype(v.dtype).itemsize for v in saved.values())
    _write_set([(path, write) for path, write in writes if write], prefix,
               None if info is None else _written(info), needed)
    return sym_path, params_path, synsets_file


def _written(info):
    """The entries of ``info`` a sidecar file holds."""
    return {k: v for k, v in info.items() if k not in NOT_WRITTEN}


def _sidecar_text(info):
    return json.dumps(info, indent=1, sort_keys=True) + "\n"


def _write_set(writes, prefix, info=None, size_hint=None):
    """Stage every ``(path, write)`` and then the sidecar ``info`` of ``prefix`` (None: no
    sidecar) with the :data:`DIGESTED` files' digests, hashed from the staged files;
    remove the old sidecar, then rename the staged files into place in order, the
    sidecar last. No temporary file outlives a failure."""
    staged = []
    try:
        for path, write in writes:
            staged.append(stage(path, write, size_hint))
        if info is not None:
            suffixes = {final_path(tmp)[len(prefix):]: tmp for tmp in staged}
            digests = {s: file_sha256(suffixes[s]) for s in DIGESTED if s in suffixes}
            staged.append(stage(sidecar_path(prefix),
                                _text_writer(_sidecar_text(dict(info, **{DIGESTS: digests})))))
        # a reader must never pair the old sidecar with new files
        remove_if_exists(sidecar_path(prefix))
        for tmp in staged:
            os.replace(tmp, final_path(tmp))
    finally:
        for tmp in staged:
            remove_if_exists(tmp)


def record_digests(prefix, files):
    """Add the SHA-256 of one-file forms written beside the export at ``prefix``
    (``{suffix: path}``, such as ``{".onnx": PREFIX.onnx}``) to its sidecar."""
    info, recorded = recorded_digests(prefix)
    if info is None or not files:
        return
    info[DIGESTS] = dict(recorded if isinstance(recorded, dict) else {},
                         **{suffix: file_sha256(path) for suffix, path in files.items()})
    atomic_save(sidecar_path(prefix), _sidecar_text(info))


def verify_form_file(path):
    """Check a one-file form's file (``PREFIX.onnx``, ``PREFIX-int8.onnx``) against the
    digest that the sidecar of the export it was written beside records, before it is
    read (:func:`~mobilenet_skip.runs.sidecar.verify_export_files`).

    The longest form suffix the name ends with decides first (``-int8.onnx`` before
    ``.onnx``); a file whose candidate sidecars record no digest of it gets one note.
    """
    described = []  # (form, prefix, digests) with a sidecar at prefix, longest suffix first
    for form in sorted(FORMS.values(), key=lambda f: -len(f.suffix)):
        if form.kind is None and form.suffix and path.endswith(form.suffix):
            prefix = path[:-len(form.suffix)]
            info, recorded = recorded_digests(prefix)
            if info is not None:
                described.append((form, prefix, recorded))
    chosen = next((d for d in described if isinstance(d[2], dict) and d[0].suffix in d[2]),
                  described[0] if described else None)
    if chosen is not None:
        form, prefix, _ = chosen
        verify_export_files(prefix, (form.suffix,), form.name)


def _text_writer(text):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return write


def _synsets_writer(synsets, path):
    """How to write class names to ``path``: a list as lines, a file copied (None when
    there are none, or the file is ``path`` itself)."""
    if synsets is None:
        return None
    if isinstance(synsets, str):
        if os.path.abspath(synsets) == os.path.abspath(path):
            return None
        return lambda tmp: shutil.copyfile(synsets, tmp)
    return _text_writer("".join("%s\n" % name for name in synsets))


def export_network(net, prefix, input_size=224, synsets=None, preprocessing=None, info=None):
    """Hybridize ``net`` for a 1 x 3 x S x S input and export it under ``prefix``.

    Parameters
    ----------
    net : HybridBlock
        A :class:`~mobilenet_skip.models.MobileNetSkip` or a loaded ``SymbolBlock``.
    synsets : list of str or str, optional
        Class names, or a file of them.
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
    return write_graph(prefix, graph_of(net, input_size), synsets, info)
