"""Fine-tuning one's own checkpoint (``--finetune PATH``): every weight but the classifier.

``PATH`` is a run folder (the epoch of ``--finetune-epoch``, else its last complete
checkpoint) or an export prefix (``PREFIX-0000.params`` with its ``PREFIX.json``
sidecar); its weights are checked against the digest their marker or sidecar records
before they are used. The source must be the recipe's model at the recipe's width; its
class count may differ, since the classifier (``output.*``) is never loaded and stays as
initialised.
``--finetune-lr-mult`` scales the body's lr against the classifier's.
"""
import json
import logging
import os
import re

import mxnet as mx

from ..errors import UserError, mxnet_message
from ..runs.checkpoints import verify_checkpoint_file
from ..runs.folder import RunDir
from ..runs.sidecar import verify_export_files

__all__ = ["CLASSIFIER", "finetune_source", "load_finetune", "set_body_lr_mult"]

log = logging.getLogger("mobilenet_skip")

CLASSIFIER = "output"  # the classifier's block name: output.weight, output.bias
_GLOBAL_PREFIX = re.compile(r"^[a-z]+\d+_")  # an export's names: mobilenetskip0_stem_...


def _run_source(path, epoch):
    run = RunDir(path)
    cfg = run.config()
    if not cfg.get("model"):
        raise UserError("--finetune %s holds no config.yaml: give a training run folder "
                        "(--save-dir) or an export prefix (PREFIX-symbol.json ...)" % path)
    if not epoch:
        kept = run.checkpoints.epochs()
        if not kept:
            raise UserError("--finetune %s holds no complete checkpoint; train it for an "
                            "epoch first, or give an export prefix" % path)
        epoch = kept[-1]["epoch"]
    params = run.checkpoint_path(epoch)
    return (cfg["model"], cfg["multiplier"], params, "%s epoch %d" % (path, epoch),
            lambda: verify_checkpoint_file(params))


def _export_source(prefix):
    sidecar, params = prefix + ".json", prefix + "-0000.params"
    if not os.path.isfile(params):
        raise UserError("--finetune %s is neither a run folder nor an export prefix (no %s); "
                        "give a --save-dir or the PREFIX of PREFIX-symbol.json" % (prefix, params))
    if not os.path.isfile(sidecar):
        raise UserError("--finetune %s: the export has no %s saying which model and width it "
                        "holds; re-export it with tools/export_model.py" % (prefix, sidecar))
    with open(sidecar) as f:
        info = json.load(f)
    return (info.get("variant"), info.get("multiplier"), params, "export %s" % prefix,
            lambda: verify_export_files(prefix, ("-0000.params",)))


def finetune_source(path, epoch=0):
    """What ``--finetune path`` names.

    Returns
    -------
    tuple
        (model, multiplier, params file, description for the log, and a callable that
        checks the file against the digest its marker or sidecar records).

    Raises
    ------
    UserError
        For a path that is neither a run folder with a checkpoint nor an export.
    """
    if os.path.isdir(path):
        return _run_source(path, epoch)
    if epoch:
        raise UserError("--finetune-epoch goes with a run folder; %s is an export prefix, "
                        "which holds one epoch" % path)
    return _export_source(path)


def _saved_body(params_path):
    """The file's arrays by local name (``stem.conv.weight`` or ``stem_conv_weight``), the
    classifier's left out, and the name style (``"."`` or ``"_"``)."""
    try:
        saved = mx.nd.load(params_path)
    except mx.base.MXNetError as err:
        raise UserError("cannot read %s (%s); is it a complete .params file?"
                        % (params_path, mxnet_message(err))) from None
    exported = any(k.startswith(("arg:", "aux:")) for k in saved)
    if exported:
        saved = {_GLOBAL_PREFIX.sub("", k[4:]): v for k, v in saved.items()}
    sep = "_" if exported else "."
    return {k: v for k, v in saved.items() if not k.startswith(CLASSIFIER + sep)}, sep


def _local_params(net, sep):
    """``net``'s parameters named as a file of that style names them."""
    if sep == ".":
        return dict(net._collect_params_with_prefix())
    return {p.name[len(net.prefix):]: p for p in net.collect_params().values()}


def load_finetune(net, cfg):
    """Load ``cfg["finetune"]``'s body into the initialised ``net``; log what was loaded.

    Returns
    -------
    list of str
        The names left as initialised (the classifier's).

    Raises
    ------
    UserError
        When the source is another model or width (naming both), or a body tensor is
        missing or of another shape.
    """
    model, multiplier, params, what, verify = finetune_source(cfg["finetune"],
                                                              cfg["finetune_epoch"])
    if (model, float(multiplier or 0)) != (cfg["model"], float(cfg["multiplier"])):
        raise UserError("--finetune %s holds %s x%g, but this run builds %s x%g; pass --model "
                        "%s --multiplier %g" % (cfg["finetune"], model, multiplier or 0,
                                                cfg["model"], cfg["multiplier"], model,
                                                multiplier or 0))
    body, sep = _saved_body(params)
    ours = _local_params(net, sep)
    left = sorted(name for name in ours if name not in body)
    for name, p in ours.items():
        if name in body and tuple(body[name].shape) != tuple(p.shape):
            raise UserError("--finetune %s does not fit %s x%g: %s is %s there, %s here"
                            % (what, cfg["model"], cfg["multiplier"], name, body[name].shape,
                               p.shape))
    missing = [name for name in left if not name.startswith(CLASSIFIER + sep)]
    if missing:
        raise UserError("--finetune %s lacks %s, which %s x%g has; is it a checkpoint of "
                        "this model?" % (what, missing[0], cfg["model"], cfg["multiplier"]))
    verify()  # last: a file of another kind or model is named as such
    for name, p in ours.items():
        if name in body:
            p.set_data(body[name].astype(p.dtype))
    log.info("fine-tuning from %s: loaded %d of %d tensors; not loaded (freshly "
             "initialised): %s", what, len(ours) - len(left), len(ours), ", ".join(left))
    return left


def set_body_lr_mult(net, mult):
    """Every parameter but the classifier's trains at ``mult`` x the lr (the classifier
    at the lr itself): a body already trained needs smaller steps than a new head."""
    for name, p in net._collect_params_with_prefix().items():
        if not name.startswith(CLASSIFIER + "."):
            p.lr_mult = float(mult)
