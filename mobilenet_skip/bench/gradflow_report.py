"""The gradient-flow rows (:mod:`.gradflow`) as a CSV, a figure and a text summary.

Everything here reads rows only, so ``compare_variants.py --report-only`` redraws the
figure and the summary from ``gradflow.csv`` without MXNet. :func:`panels` is what the
figure draws, :func:`flatness` what the summary says.
"""
import csv
import os

import numpy as np

from ..errors import UserError
from ..utils.fs import atomic_save, atomic_save_csv
from ..utils.plots import finish_figure

__all__ = ["COLUMNS", "STAGES", "read_rows", "panels", "plot_gradient_flow", "flatness",
           "summary_lines", "write_gradient_flow"]

# base_lr is None (empty in the CSV) on init rows; batches is how many batches grad_norm
# is the mean over, kept per row so that a redrawn figure can say it
COLUMNS = ("variant", "stage", "base_lr", "seed", "block", "grad_norm", "weight_norm", "ratio",
           "batches", "commit")
STAGES = ("init", "epoch 1")
OUTPUTS = ("gradflow.csv", "gradflow.png", "gradflow.txt")


def read_rows(path):
    """The rows of a gradflow.csv written by :func:`write_gradient_flow`, typed."""
    with open(path) as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise UserError("%s has no column %s: it holds raw gradient norms, not |g|/|W| "
                            "over seeds; measure again (compare_variants.py without "
                            "--report-only)" % (path, ", ".join(missing)))
        return [dict(row, base_lr=float(row["base_lr"]) if row["base_lr"] else None,
                     seed=int(row["seed"]), batches=int(row["batches"]),
                     **{k: float(row[k]) for k in ("grad_norm", "weight_norm", "ratio")})
                for row in reader]


def _panel_keys(rows):
    """``(stage, base lr)`` of every panel: init, then epoch 1 at each lr, ascending."""
    keys = {(r["stage"], r["base_lr"]) for r in rows}
    return sorted(keys, key=lambda k: (STAGES.index(k[0]), k[1] or 0.0))


def _panel_title(key):
    stage, lr = key
    return stage if lr is None else "after %s, base lr %g" % (stage, lr)


def _by_seed(rows, variant, key):
    """``({seed: [ratio by block]}, blocks)`` of one variant in one panel."""
    mine = [r for r in rows if r["variant"] == variant and (r["stage"], r["base_lr"]) == key]
    blocks = list(dict.fromkeys(r["block"] for r in mine))
    seeds = {}
    for r in mine:
        seeds.setdefault(r["seed"], {})[r["block"]] = r["ratio"]
    return {s: [by_block[b] for b in blocks] for s, by_block in sorted(seeds.items())}, blocks


def panels(rows):
    """What :func:`plot_gradient_flow` draws, panel by panel.

    Returns
    -------
    list of tuple
        ``(title, {variant: curve})`` per panel (init, then each lr after epoch 1); a
        curve is a dict of ``blocks`` (names), ``median``, ``low`` and ``high`` (over
        seeds, per block) and ``seeds`` (``{seed: [ratio per block]}``).
    """
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    out = []
    for key in _panel_keys(rows):
        curves = {}
        for variant in variants:
            seeds, blocks = _by_seed(rows, variant, key)
            if not seeds:
                continue
            table = np.array(list(seeds.values()))
            curves[variant] = {"blocks": blocks, "median": list(np.median(table, axis=0)),
                               "low": list(table.min(axis=0)), "high": list(table.max(axis=0)),
                               "seeds": seeds}
        out.append((_panel_title(key), curves))
    return out


def plot_gradient_flow(rows, path, title=None):
    """One panel per stage and lr: each variant's ``|g|/|W|`` by block on a log scale,
    the median over seeds as a line, the min-max over seeds as a band, each seed a dot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = panels(rows)
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig, axes = plt.subplots(1, len(drawn), figsize=(5.2 * len(drawn), 4.6), squeeze=False,
                             sharey=True)
    for ax, (panel, curves) in zip(axes[0], drawn):
        for i, (variant, c) in enumerate(curves.items()):
            color = "C%d" % variants.index(variant)
            x = np.arange(len(c["blocks"]))
            ax.plot(x, c["median"], "-", color=color, lw=1.5, label=variant)
            ax.fill_between(x, c["low"], c["high"], color=color, alpha=0.18, lw=0)
            shift = (i - (len(curves) - 1) / 2.0) * 0.06  # dots of the variants side by side
            for ratios in c["seeds"].values():
                ax.plot(x + shift, ratios, ".", color=color, ms=3, alpha=0.7)
            ax.set_xticks(x)
            ax.set_xticklabels([b.replace("block", "") for b in c["blocks"]])
        ax.set_yscale("log")
        ax.set_xlabel("DW block (Table 1: Conv_2 ... Conv_14)")
        ax.set_title(panel)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("|gradient| / |weights| of the block's convolutions")
    axes[0][0].legend(fontsize=8)
    seeds = len({r["seed"] for r in rows})
    batches = sorted({r["batches"] for r in rows})
    what = ("|g|/|W| per DW block: median, min-max band and dots over seeds (%d); gradient "
            "averaged over batches (%s)" % (seeds, "/".join(str(b) for b in batches)))
    finish_figure(fig, path, "%s: %s" % (title, what) if title else what)


def flatness(rows):
    """How flat each profile is: block2's ``|g|/|W|`` over block14's, per panel and variant.

    Returns
    -------
    list of dict
        ``panel`` (title), ``variant``, ``first`` and ``last`` (block names), ``median``,
        ``low`` and ``high`` (of the per-seed ratios) and ``seeds`` (how many).
    """
    out = []
    for panel, curves in panels(rows):
        for variant, c in curves.items():
            per_seed = [r[0] / r[-1] for r in c["seeds"].values()]
            out.append({"panel": panel, "variant": variant, "first": c["blocks"][0],
                        "last": c["blocks"][-1], "median": float(np.median(per_seed)),
                        "low": min(per_seed), "high": max(per_seed), "seeds": len(per_seed)})
    return out


def summary_lines(rows):
    """One line per panel and variant: :func:`flatness` as the docs quote it (1.0 is flat,
    above 1 the early blocks take the larger relative steps)."""
    return ["%s, %s: %s/%s |g|/|W| %.3g (%.3g-%.3g over %d seeds)"
            % (f["panel"], f["variant"], f["first"], f["last"], f["median"], f["low"],
               f["high"], f["seeds"]) for f in flatness(rows)]


def write_gradient_flow(rows, out_dir, title=None):
    """gradflow.csv, gradflow.png and gradflow.txt (the summary) in ``out_dir``; returns
    their paths."""
    paths = [os.path.join(out_dir, name) for name in OUTPUTS]
    atomic_save_csv(paths[0], COLUMNS, rows)
    plot_gradient_flow(rows, paths[1], title)
    atomic_save(paths[2], "\n".join(summary_lines(rows)) + "\n")
    return paths
