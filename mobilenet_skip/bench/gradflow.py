"""Gradient flow through the DW blocks: the mechanism the paper appeals to.

The paper argues that skips make MobileNet easier to optimise, as in ResNet: the
gradient reaches the early blocks through the identity paths instead of only through
every block's BN-ReLU-conv stack. This measures it. For each variant, the L2 norm of
the gradient of each DW block's weights (its depthwise and pointwise filters, and the
projection where full-connect has one) is averaged over a few batches of the real
training data, once at initialisation and once after the first epoch of the study's
recipe. A skip that keeps the early blocks' gradients alive shows as a flatter line
over block2 ... block14 than plain MobileNet's.
"""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
from mxnet import autograd

from ..config import recipes
from ..data import records
from ..errors import UserError
from ..train.net import build_net
from ..train.rundir import RunDir
from ..train.step import LabelSmoothingLoss
from ..utils.fs import atomic_save, atomic_save_csv, checkout_path
from ..utils.plots import finish_figure

__all__ = ["block_grad_norms", "gradient_flow", "plot_gradient_flow", "write_gradient_flow",
           "read_rows", "COLUMNS"]

COLUMNS = ("variant", "stage", "block", "grad_norm")
STAGES = ("init", "epoch 1")
MARKER = "gradflow-run.json"
TRAIN_TOOL = checkout_path("tools", "train_imagenet.py")


def block_grad_norms(cfg, params_file=None, batches=4, seed=0):
    """Mean over ``batches`` training batches of each DW block's weight-gradient norm.

    Parameters
    ----------
    cfg : dict
        A resolved recipe (:func:`~mobilenet_skip.config.recipes.resolve`): its model,
        width, init, BN settings, label smoothing and ``rec_train`` are used.
    params_file : str, optional
        Weights to load (a checkpoint); None keeps the recipe's initialisation.
    batches : int
        Batches of ``rec_train`` (in file order, with the validation crop, so every
        variant sees the same images) to average over.
    seed : int
        MXNet's random seed before the initialisation, as ``--seed`` in training.

    Returns
    -------
    dict
        ``{block name: mean gradient norm}`` for block2 ... block14, in order.
    """
    mx.random.seed(seed)
    np.random.seed(seed)
    net = build_net(dict(cfg, warm_start=None), [mx.cpu()])
    if params_file:
        net.load_parameters(params_file, ctx=mx.cpu())
    loss_fn = LabelSmoothingLoss(cfg["label_smoothing"])
    data = records.val_iter(dict(cfg, rec_val=cfg["rec_train"]))
    norms = {name: [] for name in net.block_names}
    for i, batch in enumerate(data):
        if i == batches:
            break
        with autograd.record():  # training mode: BN normalises by the batch, as in fit
            loss = loss_fn(net(batch.data[0]), batch.label[0]).mean()
        loss.backward()
        for name, block in zip(net.block_names, net.blocks):
            grads = [p.grad() for p in block.collect_params().values()
                     if p.grad_req != "null" and p.name.endswith("weight")
                     and "bn" not in p.name]
            norms[name].append(float(np.sqrt(sum(float((g * g).sum().asscalar())
                                                 for g in grads))))
    if not norms[net.block_names[0]]:
        raise UserError("%s has no batch of %d images; give a larger training set"
                        % (cfg["rec_train"], cfg["batch_size"]))
    return {name: float(np.mean(v)) for name, v in norms.items()}


def _one_epoch(out_dir, recipe, variant, overrides, log):
    """The variant trained one epoch by tools/train_imagenet.py; reused when it exists."""
    save_dir = os.path.join(out_dir, "gradflow", variant)
    run = RunDir(save_dir)
    cmd = [TRAIN_TOOL, "--recipe", recipe, "--model", variant, "--num-epochs", "1",
           "--save-dir", save_dir, "--overwrite", "--keep-checkpoints", "1"]
    for key, value in sorted(overrides.items()):
        cmd += ["--" + key.replace("_", "-"), str(value)]
    try:
        with open(run.file(MARKER)) as f:
            if json.load(f) == cmd:
                return run.checkpoint_path(1)
    except (OSError, ValueError):
        pass
    log("gradient flow: one epoch of %s" % variant, flush=True)
    res = subprocess.run([sys.executable] + cmd, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        raise UserError("one-epoch run of %s failed (exit %d); its last lines: %s" % (
            variant, res.returncode, "\n".join(res.stdout.strip().splitlines()[-5:])))
    atomic_save(run.file(MARKER), json.dumps(cmd))
    return run.checkpoint_path(1)


def gradient_flow(out_dir, recipe, variants, overrides, batches=4, log=print):
    """Rows of :data:`COLUMNS` for every variant, at init and after one epoch.

    ``overrides`` are recipe keys as the study passes them to training (``rec_train``,
    ``rec_val``, ``lr``, ``multiplier`` ...); the one-epoch runs are real
    ``tools/train_imagenet.py`` runs under ``out_dir/gradflow``.
    """
    rows = []
    for variant in variants:
        cfg = recipes.resolve(recipe, dict(overrides, model=variant))
        trained = _one_epoch(out_dir, recipe, variant, overrides, log)
        for stage, params in zip(STAGES, (None, trained)):
            for block, norm in block_grad_norms(cfg, params, batches, cfg["seed"]).items():
                rows.append({"variant": variant, "stage": stage, "block": block,
                             "grad_norm": norm})
    return rows


def plot_gradient_flow(rows, path, title=None):
    """One panel per stage: each variant's gradient norm by block, on a log scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(STAGES), figsize=(13, 4.6), squeeze=False)
    for ax, stage in zip(axes[0], STAGES):
        variants = list(dict.fromkeys(r["variant"] for r in rows))
        for variant in variants:
            mine = [r for r in rows if r["variant"] == variant and r["stage"] == stage]
            ax.plot([r["block"].replace("block", "") for r in mine],
                    [r["grad_norm"] for r in mine], "o-", ms=3, label=variant)
        ax.set_yscale("log")
        ax.set_xlabel("DW block (Table 1: Conv_2 ... Conv_14)")
        ax.set_ylabel("|gradient| of the block's weights")
        ax.set_title("gradient norm per block, %s" % stage)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    finish_figure(fig, path, title)


def read_rows(path):
    """The rows of a gradflow.csv written by :func:`write_gradient_flow`, typed."""
    import csv

    with open(path) as f:
        return [dict(row, grad_norm=float(row["grad_norm"])) for row in csv.DictReader(f)]


def write_gradient_flow(rows, out_dir, title=None):
    """gradflow.csv and gradflow.png in ``out_dir``; returns their paths."""
    paths = [os.path.join(out_dir, "gradflow." + ext) for ext in ("csv", "png")]
    atomic_save_csv(paths[0], COLUMNS, rows)
    plot_gradient_flow(rows, paths[1], title)
    return paths
