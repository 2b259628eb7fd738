"""Deployment files: a hybridized network as ``<prefix>-symbol.json`` + ``<prefix>-0000.params``.

The exported graph takes one input named ``data`` (NCHW float32, normalised as in
validation) and returns logits; ``<prefix>.synsets.txt`` beside it names the classes.
"""
import os
import shutil

import mxnet as mx

from .checkpoint import atomic_save, atomic_write
from .errors import UserError
from .models import get_model

__all__ = ["load_checkpoint_params", "network_from_checkpoint", "export_network",
           "export_paths"]


def export_paths(prefix):
    """The files an export writes: symbol, params, synsets."""
    return prefix + "-symbol.json", prefix + "-0000.params", prefix + ".synsets.txt"


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


def network_from_checkpoint(path, model, multiplier=1.0, classes=1000, ctx=None):
    """A fresh float32 network with a checkpoint's weights."""
    return load_checkpoint_params(get_model(model, multiplier, classes), path, ctx)


def export_network(net, prefix, input_size=224, synsets=None):
    """Hybridize ``net`` for a 1 x 3 x S x S input and export it under ``prefix``.

    Writes ``<prefix>-symbol.json`` and ``<prefix>-0000.params`` (each atomically)
    and, given ``synsets`` (a list of names or a path), ``<prefix>.synsets.txt``.

    Returns
    -------
    tuple of str
        The symbol, params and synsets paths.
    """
    sym_path, params_path, synsets_path = export_paths(prefix)
    out_dir = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(out_dir, exist_ok=True)
    net.hybridize(static_alloc=True, static_shape=True)
    net(mx.nd.zeros((1, 3, input_size, input_size), ctx=mx.cpu()))
    staging = "%s.export-tmp-%d" % (prefix, os.getpid())
    try:
        net.export(staging, epoch=0)
        atomic_write(sym_path, lambda tmp: shutil.move(staging + "-symbol.json", tmp))
        atomic_write(params_path, lambda tmp: shutil.move(staging + "-0000.params", tmp))
    finally:
        for leftover in export_paths(staging)[:2]:
            if os.path.exists(leftover):
                os.remove(leftover)
    if synsets is not None:
        if isinstance(synsets, str):
            if os.path.abspath(synsets) != os.path.abspath(synsets_path):
                atomic_write(synsets_path, lambda tmp: shutil.copyfile(synsets, tmp))
        else:
            atomic_save(synsets_path, "".join("%s\n" % name for name in synsets))
    return sym_path, params_path, synsets_path
