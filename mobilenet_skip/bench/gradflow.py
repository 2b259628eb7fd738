"""Gradient flow through the DW blocks: the mechanism the paper appeals to.

The paper argues that skips make MobileNet easier to optimise, as in ResNet: the
gradient reaches the early blocks through the identity paths instead of only through
every block's BN-ReLU-conv stack. This measures it, per DW block (block2 ... block14),
as ``|g| / |W|``: the L2 norm of the gradient of the block's convolution weights (its
depthwise and pointwise filters, and the projection where full-connect has one) over the
L2 norm of those weights. A convolution that feeds BatchNorm gives the same output when
its weights are scaled, and its gradient scales inversely, so the raw gradient norm
depends on each block's weight scale; the ratio (times the lr: the relative change an
SGD step makes to the weights) can be compared across blocks, variants and training time.

The gradient norm is averaged over a fixed number of full batches of the training data,
the same images in the same (file) order for every variant, with the validation
transform and BatchNorm in training mode (batch statistics), as in training. It is
measured at initialisation, once per (variant, seed), and after one epoch of training
at each base lr, per (variant, lr, seed); each of those epochs is a real
``tools/train_imagenet.py`` run. The figure shows the median over seeds with a min-max
band and every seed as a dot; :mod:`.gradflow_report` draws and summarises it.
"""
import os

import mxnet as mx
import numpy as np
from mxnet import autograd

from ..config import recipes
from ..data import records
from ..errors import UserError
from ..train.net import build_net
from ..runs.folder import RunDir
from ..train.step import LabelSmoothingLoss
from .gradflow_report import (COLUMNS, STAGES, flatness, panels, plot_gradient_flow,
                              read_rows, summary_lines, write_gradient_flow)

from .runs import Run, code_commit, train_runs

__all__ = ["fixed_batches", "block_norms", "one_epoch_runs", "gradient_flow", "COLUMNS",
           "STAGES", "flatness", "panels", "plot_gradient_flow", "read_rows",
           "summary_lines", "write_gradient_flow"]

# set per run from the arguments of gradient_flow, never from the overrides
OWN_KEYS = ("model", "lr", "seed", "num_epochs", "save_dir")


def fixed_batches(cfg, batches):
    """The first ``batches`` full batches of ``cfg["rec_train"]``, in file order.

    Parameters
    ----------
    cfg : dict
        A resolved recipe: ``rec_train``, ``batch_size`` and the preprocessing are used
        (the validation transform: no random crop or mirror, so the images are fixed).
    batches : int
        How many batches; a partial last batch is never one of them, because BatchNorm's
        batch statistics would differ.

    Returns
    -------
    list of tuple
        ``(data, label)`` NDArrays, one pair per batch.
    """
    if batches < 1:
        raise UserError("gradient flow needs at least 1 batch, got %d" % batches)
    out = []
    for batch in records.val_iter(cfg.replace(rec_val=cfg["rec_train"])):
        if len(out) == batches:
            break
        if not batch.pad:
            out.append((batch.data[0].copy(), batch.label[0].copy()))
    if len(out) < batches:
        raise UserError("%s holds %d full batch(es) of %d images; the gradient flow averages "
                        "over %d: give a larger training set or fewer batches"
                        % (cfg["rec_train"], len(out), cfg["batch_size"], batches))
    return out


def _norm(arrays):
    """The L2 norm of several arrays taken as one vector."""
    return float(np.sqrt(sum(float((a * a).sum().asscalar()) for a in arrays)))


def block_norms(cfg, batches, params_file=None, seed=0):
    """Each DW block's mean weight-gradient norm over ``batches`` and its weight norm.

    Parameters
    ----------
    cfg : dict
        A resolved recipe (:func:`~mobilenet_skip.config.recipes.resolve`): its model,
        width, init, BN settings and label smoothing are used.
    batches : list of tuple
        ``(data, label)`` pairs (:func:`fixed_batches`).
    params_file : str, optional
        Weights to load (a checkpoint); None keeps the initialisation of ``seed``.
    seed : int
        MXNet's and NumPy's random seed before the network is built, as training's
        ``--seed`` sets them before it builds its network.

    Returns
    -------
    dict
        ``{block name: (mean gradient norm, weight norm)}`` for block2 ... block14, in order.
    """
    mx.random.seed(seed)
    np.random.seed(seed)
    net = build_net(cfg.replace(warm_start=""), [mx.cpu()])
    if params_file:
        net.load_parameters(params_file, ctx=mx.cpu())
    loss_fn = LabelSmoothingLoss(cfg["label_smoothing"])
    weights = {name: [p for p in block.collect_params().values()
                      if p.grad_req != "null" and p.name.endswith("weight")]
               for name, block in zip(net.block_names, net.blocks)}
    grads = {name: [] for name in net.block_names}
    for data, label in batches:
        with autograd.record():  # training mode: BN normalises by the batch, as in fit
            loss = loss_fn(net(data), label).mean()
        loss.backward()
        for name, params in weights.items():
            grads[name].append(_norm(p.grad() for p in params))
    return {name: (float(np.mean(grads[name])), _norm(p.data() for p in weights[name]))
            for name in net.block_names}


def one_epoch_runs(out_dir, recipe, variants, overrides, lrs, seeds):
    """``{(variant, base lr, seed): Run}``: one epoch of training each, in
    ``out_dir/gradflow/<variant>-lr<lr>-seed<seed>``."""
    runs = {}
    for variant in variants:
        for lr in lrs:
            for seed in seeds:
                save_dir = os.path.join(out_dir, "gradflow", "%s-lr%g-seed%d"
                                        % (variant, lr, seed))
                args = ["--recipe", recipe, "--model", variant, "--lr", repr(float(lr)),
                        "--seed", str(seed), "--num-epochs", "1", "--save-dir", save_dir,
                        "--overwrite", "--keep-checkpoints", "1"]
                for key, value in sorted(overrides.items()):
                    args += ["--" + key.replace("_", "-"), str(value)]
                runs[(variant, float(lr), int(seed))] = Run(save_dir, args)
    return runs


def _rows(variant, stage, lr, seed, norms, batches):
    return [{"variant": variant, "stage": stage, "base_lr": lr, "seed": seed, "block": block,
             "grad_norm": g, "weight_norm": w, "ratio": g / w, "batches": batches}
            for block, (g, w) in norms.items()]


def gradient_flow(out_dir, recipe, variants, overrides, lrs, seeds, batches=8, jobs=1,
                  log=print):
    """Rows of :data:`COLUMNS` for every variant: per seed at init, per lr and seed after
    one epoch.

    Parameters
    ----------
    out_dir : str
        The one-epoch runs go to ``out_dir/gradflow/<variant>-lr<lr>-seed<seed>``; a run
        that finished with the same arguments is reused.
    recipe : str
        The recipe of every run and measurement.
    variants : list of str
        Model names.
    overrides : dict
        Recipe keys for training and measurement (``rec_train``, ``rec_val``,
        ``multiplier`` ...); not ``lr``, ``seed``, ``model``, ``num_epochs`` or ``save_dir``,
        which come from the other arguments.
    lrs : list of float
        Base lrs of the one-epoch runs.
    seeds : iterable of int
        Seeds: of the initialisation measured at init, and ``--seed`` of each run.
    batches : int
        Full training batches the gradient norm is averaged over.
    jobs : int
        Runs trained at once (``train_runs``).
    log : callable
        Called with progress lines.
    """
    clash = [key for key in OWN_KEYS if key in overrides]
    if clash:
        raise UserError("gradient flow sets %s itself (from variants, lrs and seeds); leave "
                        "it out of the overrides" % ", ".join(clash))
    lrs, seeds = [float(lr) for lr in lrs], [int(s) for s in seeds]
    if not variants or not lrs or not seeds or min(lrs) <= 0:
        raise UserError("gradient flow needs variants, seeds and positive lrs; got %s, %s "
                        "and %s" % (list(variants), seeds, lrs))
    # before any training, so that a bad recipe or too small a training set fails at once
    cfgs = {v: recipes.resolve(recipe, dict(overrides, model=v)) for v in variants}
    data = fixed_batches(cfgs[variants[0]], batches)  # the same images for every variant
    runs = one_epoch_runs(out_dir, recipe, variants, overrides, lrs, seeds)
    log("gradient flow: %d one-epoch runs (%d variants x %d lrs x %d seeds)"
        % (len(runs), len(variants), len(lrs), len(seeds)))
    markers = train_runs(list(runs.values()), jobs=jobs, log=log)
    # the init rows are measured by this process: its code's commit is theirs too
    commits = {m["commit"] for m in markers} | {code_commit()}
    if len(commits) > 1:
        raise UserError("the gradient flow's one-epoch runs come from commits %s, this code "
                        "from another: measure again in a new --out"
                        % ", ".join(sorted(commits)))
    rows = []
    for variant, cfg in cfgs.items():
        log("gradient flow: measuring %s over %d batches" % (variant, batches))
        for seed in seeds:  # the initialisation does not depend on the lr
            rows += _rows(variant, "init", None, seed, block_norms(cfg, data, None, seed),
                          batches)
        for lr in lrs:
            for seed in seeds:
                ckpt = RunDir(runs[(variant, lr, seed)].save_dir).checkpoint_path(1)
                rows += _rows(variant, "epoch 1", lr, seed,
                              block_norms(cfg, data, ckpt, seed), batches)
    commit = commits.pop()
    return [dict(r, commit=commit) for r in rows]
