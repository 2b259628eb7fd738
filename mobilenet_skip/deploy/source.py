"""Where the weights to deploy come from: an export, a training run's epoch, or a
checkpoint file. A run folder is read through
:class:`~mobilenet_skip.runs.folder.RunDir` alone (it knows the file names).
"""
import os
from collections import namedtuple

import mxnet as mx

from ..errors import UserError, mxnet_message
from ..models import get_model, norm_kwargs_from
from ..runs.checkpoints import verify_checkpoint_file
from ..runs.folder import RunDir
from .artifact import DEFAULT_INPUT_SIZE, describe, export_paths
from .loading import open_export

__all__ = ["Source", "load_source", "load_checkpoint_params", "network_from_checkpoint",
           "output_prefix"]

Source = namedtuple("Source", ["kind", "path", "net", "info", "synsets", "config"])
Source.__doc__ = ("Weights to deploy: kind 'checkpoint' (net is a MobileNetSkip) or 'export' "
                  "(net is a SymbolBlock); info is the sidecar to write; synsets a path or "
                  "None; config the training config.yaml found beside them, or {}.")


def load_checkpoint_params(net, path, ctx=None):
    """Load a ``save_parameters`` file into ``net``, naming any model/width mismatch.

    Raises
    ------
    UserError
        If the file is missing, damaged (its digest is not its marker's) or unreadable,
        or its parameter names or shapes do not fit ``net`` (another model, width or
        number of classes).
    """
    if not os.path.isfile(path):
        raise UserError("checkpoint %s not found" % path)
    try:
        saved = mx.nd.load(path)
    except mx.base.MXNetError as err:
        raise UserError("cannot read checkpoint %s (%s); is it a complete .params file?"
                        % (path, mxnet_message(err))) from None
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
    verify_checkpoint_file(path)  # last: a file of another kind or model is named as such
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


def load_source(prefix=None, save_dir=None, epoch=None, params=None, model=None,
                multiplier=None, classes=None, input_size=None, synsets=None):
    """The weights to deploy or evaluate, from exactly one of three places.

    ``prefix``: an export (its sidecar says the rest). ``save_dir`` + ``epoch``: a
    training checkpoint, with model, width, classes, input size, preprocessing
    and BatchNorm settings from the run's ``config.yaml``. ``params``: a checkpoint
    file anywhere, with a ``config.yaml`` beside it or ``model`` (and ``multiplier``,
    default 1.0) given. Explicit arguments override ``config.yaml``; a model or width
    that does not fit the weights is a :class:`UserError` naming the flag to fix.

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
    cfg = RunDir(save_dir or os.path.dirname(os.path.abspath(params))).config()
    model = model or cfg.get("model")
    if not model:
        raise UserError("no config.yaml beside %s says which network it holds; pass --model "
                        "(and --multiplier if not 1.0)" % (params or save_dir))
    multiplier = multiplier or cfg.get("multiplier", 1.0)
    path = params or RunDir(save_dir, model).checkpoint_path(epoch)
    if classes is None:
        classes = cfg.get("classes") or _classes_in(path)
    net = network_from_checkpoint(path, model, multiplier, classes,
                                  norm_kwargs=norm_kwargs_from(cfg))
    side = input_size or cfg.get("input_size", DEFAULT_INPUT_SIZE)
    # the class names beside the checkpoint: its run's export's, else the training .rec's
    syn = synsets or RunDir(os.path.dirname(os.path.abspath(path))).synsets_path(net.variant,
                                                                                 cfg)
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
