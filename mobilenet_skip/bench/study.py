"""The paper's variant comparison in miniature: every variant x several seeds, one recipe.

Each run is ``tools/train_imagenet.py`` itself (RecordIO, Trainer, the recipe), in its
own process and save directory; the study reads each run's ``metrics.csv`` (through
:class:`~mobilenet_skip.runs.folder.RunDir`). A run
that finished leaves ``study-run.json`` with its command line, so a study that was
killed resumes where it stopped instead of retraining finished runs. The
summary gives, for each base lr, the mean and sample standard deviation over seeds of
the final and best val top-1, the first epoch at which the train loss falls below a
fixed level (the convergence speed the paper talks about), and each skip variant's
difference to plain MobileNet with a 95% confidence interval over seeds (Welch's t):
a difference counts as shown only where that interval excludes 0, and survives where its
Holm-adjusted p over all of the table's differences is below 0.05 (:mod:`.stats`).
"""
import os

import numpy as np

from ..config import recipes
from ..utils.fs import atomic_save, atomic_save_csv
from ..models import list_models
from ..utils.plots import finish_figure
from ..runs.folder import RunDir
from .runs import Run, train_runs
from .reporting import difference, mean_std, offsets, p_text, pm, verdict
from .stats import compare_family, welch_interval

__all__ = ["run_study", "study_runs", "collect_rows", "run_key", "summarise", "markdown_table", "plot_study", "plot_lr", "read_rows",
           "welch_interval", "write_outputs", "COLUMNS", "OUTPUTS"]  # welch_interval: from .stats

COLUMNS = ("variant", "base_lr", "seed", "epoch", "train_loss", "train_top1", "val_top1",
           "val_top5")
PLAIN = "mobilenet"  # what every skip variant is compared with
OUTPUTS = {"csv": "study.csv", "table": "study.md", "curves": "curves.png", "lr": "lr.png"}


def study_runs(out_dir, recipe, rec_train, rec_val, lrs, variants=None, seeds=(0, 1, 2),
               epochs=None, extra_args=(), score_rec=None, score_last=0, tag=""):
    """The :class:`~.runs.Run` of every (base lr, variant, seed), in that order.

    ``score_last`` > 0 scores the last that many epochs on ``score_rec`` after training
    (the converged study's test set); ``tag`` names runs that differ by ``extra_args``.
    """
    variants = list(variants or list_models())
    runs = []
    for lr in lrs:
        for variant in variants:
            for seed in seeds:
                save_dir = os.path.join(out_dir, "runs", "%s-lr%g%s-seed%d"
                                        % (variant, lr, tag, seed))
                args = ["--recipe", recipe, "--model", variant, "--lr", repr(float(lr)),
                        "--seed", str(seed), "--rec-train", rec_train, "--rec-val", rec_val,
                        "--save-dir", save_dir, "--overwrite"] + list(extra_args)
                if epochs:
                    args += ["--num-epochs", str(epochs)]
                last = epochs or (recipes.resolve(recipe)["num_epochs"] if score_last else 0)
                runs.append(Run(save_dir, args, score_rec if score_last else None,
                                range(max(last - score_last + 1, 1), last + 1)
                                if score_last else ()))
    return runs


def run_key(run):
    """``{variant, base_lr, seed}`` of a run made by :func:`study_runs`."""
    values = {k: run.args[run.args.index(k) + 1] for k in ("--model", "--lr", "--seed")}
    return {"variant": values["--model"], "base_lr": float(values["--lr"]),
            "seed": int(values["--seed"])}


def collect_rows(runs, markers):
    """One row per (run, epoch) of finished ``runs``: :data:`COLUMNS`, ``lr``, ``commit``."""
    rows = []
    for run, marker in zip(runs, markers):
        for m in RunDir(run.save_dir).metrics():
            rows.append(dict({k: m[k] for k in COLUMNS[3:] + ("lr",)}, commit=marker["commit"],
                             **run_key(run)))
    return rows


def run_study(out_dir, recipe, rec_train, rec_val, lrs, variants=None, seeds=(0, 1, 2),
              epochs=None, extra_args=(), jobs=1, log=print, tag=""):
    """Train every (base lr, variant, seed), up to ``jobs`` at once, and gather their
    per-epoch metrics.

    Returns
    -------
    list of dict
        One row per (variant, base lr, seed, epoch) with :data:`COLUMNS`, ``lr`` and
        ``commit``.
    """
    runs = study_runs(out_dir, recipe, rec_train, rec_val, lrs, variants, seeds, epochs,
                      extra_args, tag=tag)
    log("%d runs, up to %d at once, each in its own process" % (len(runs), jobs), flush=True)
    return collect_rows(runs, train_runs(runs, jobs=jobs, log=log))


def _by_run(rows):
    """{(base lr, variant): [per-seed lists of rows by epoch]}, in lr then Table-3 order."""
    runs = {}
    for row in rows:
        runs.setdefault((row["base_lr"], row["variant"], row["seed"]), []).append(row)
    groups = {}
    order = {name: i for i, name in enumerate(list_models())}
    for key in sorted(runs, key=lambda k: (k[0], order.get(k[1], 99), k[2])):
        groups.setdefault(key[:2], []).append(sorted(runs[key], key=lambda r: r["epoch"]))
    return groups


def summarise(rows, loss_level):
    """Per (base lr, variant): seeds, final val top-1 mean/std, epochs to ``loss_level``.

    A run whose train loss never gets to ``loss_level`` counts as not reaching it
    (reported as such, not averaged in).
    """
    summary = []
    for (lr, variant), mine in _by_run(rows).items():
        finals = [run[-1]["val_top1"] for run in mine]
        reach = [next((r["epoch"] for r in run if r["train_loss"] <= loss_level), None)
                 for run in mine]
        reached = [e for e in reach if e is not None]
        top1, top1_std = mean_std(finals)
        best = mean_std([max(r["val_top1"] for r in run) for run in mine])
        speed = mean_std(reached) if reached else (None, None)
        summary.append({
            "variant": variant, "base_lr": lr, "seeds": len(mine),
            "epochs": mine[0][-1]["epoch"], "val_top1_mean": top1, "val_top1_std": top1_std,
            "best_val_top1_mean": best[0], "best_val_top1_std": best[1],
            "final_train_loss_mean": mean_std([run[-1]["train_loss"] for run in mine])[0],
            "epochs_to_loss_mean": speed[0], "epochs_to_loss_std": speed[1],
            "reached_loss": len(reached), "finals": finals})
    plain = {s["base_lr"]: s["finals"] for s in summary if s["variant"] == PLAIN}
    skips = [s for s in summary if s["variant"] != PLAIN and s["base_lr"] in plain]
    family = compare_family([(s["variant"], s["finals"], plain[s["base_lr"]]) for s in skips])
    for s in summary:
        s["comparison"] = None
        s["diff_mean"], s["diff_low"], s["diff_high"] = None, None, None
    for s, c in zip(skips, family):
        s["comparison"] = c
        s["diff_mean"], s["diff_low"], s["diff_high"] = c["diff"], c["low"], c["high"]
    return summary


def markdown_table(summary, loss_level):
    """The study's result as a markdown table (val top-1 in percent), each difference to
    plain MobileNet with its Welch p and its Holm-adjusted p over all of the table's
    differences, one family."""
    family = sum(s["comparison"] is not None for s in summary)
    lines = ["| base lr | variant | seeds | final val top-1 (%%) | best val top-1 (%%) | final "
             "train loss | epochs to train loss ≤ %g | final vs %s, points (95%% CI) | Welch p "
             "| Holm p (family of %d) | verdict |" % (loss_level, PLAIN, family),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        reach = pm(s["epochs_to_loss_mean"], s["epochs_to_loss_std"], digits=1)
        if s["reached_loss"] < s["seeds"]:
            reach += " (%d of %d seeds)" % (s["reached_loss"], s["seeds"])
        c = s["comparison"]
        versus = ((difference(c), p_text(c["p"]), p_text(c["p_holm"]), verdict(c)) if c
                  else ("-",) * 4)
        lines.append("| %g | %s | %d | %s | %s | %.3f | %s | %s | %s | %s | %s |" % ((
            s["base_lr"], s["variant"], s["seeds"],
            pm(s["val_top1_mean"], s["val_top1_std"], 100),
            pm(s["best_val_top1_mean"], s["best_val_top1_std"], 100),
            s["final_train_loss_mean"], reach) + versus))
    return "\n".join(lines) + "\n"


def plot_study(rows, path, loss_level, title=None):
    """Mean curves with +-1 std bands over seeds and every seed as a dot: train loss and val
    top-1 by epoch. Each variant's dots sit a little left or right of the epoch so that
    the five variants' seeds do not hide one another."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _by_run(rows)
    lrs = sorted({lr for lr, _ in groups})
    fig, grid = plt.subplots(len(lrs), 2, figsize=(13, 4.2 * len(lrs)), squeeze=False)
    shift = offsets(variant for _, variant in groups)
    for (lr, variant), mine in groups.items():
        axes = grid[lrs.index(lr)]
        n = min(len(run) for run in mine)
        epochs = [r["epoch"] for r in mine[0][:n]]
        for ax, key in zip(axes, ("train_loss", "val_top1")):
            values = np.array([[r[key] for r in run[:n]] for run in mine])
            mean = values.mean(axis=0)
            line, = ax.plot(epochs, mean, "o-", ms=3, label="%s (%d seeds)" % (variant,
                                                                             len(mine)))
            if len(mine) > 1:
                std = values.std(axis=0, ddof=1)
                ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(),
                                alpha=0.15)
            ax.plot(np.add(epochs, 0.3 * shift[variant]), values.T, ".", ms=4, alpha=0.6,
                    color=line.get_color())
    for lr, axes in zip(lrs, grid):
        axes[0].axhline(loss_level, color="grey", ls=":", lw=1)
        axes[0].set_title("base lr %g: train loss (mean, ±1 std band, dots: seeds)" % lr)
        axes[1].set_title("base lr %g: val top-1 (mean, ±1 std band, dots: seeds)" % lr)
        axes[1].set_ylim(0, 1)
        axes[1].legend(loc="lower right", fontsize=8)
        for ax in axes:
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
    finish_figure(fig, path, title)


def plot_lr(summary, path, title=None):
    """Final val top-1 against the base lr, one line per variant with a ±1 std band over
    seeds and each seed's final as a dot (shifted a little along the lr axis per
    variant): where does one variant fail while another does not?"""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    shift = offsets(s["variant"] for s in summary)
    for variant in shift:
        mine = sorted((s for s in summary if s["variant"] == variant),
                      key=lambda s: s["base_lr"])
        lrs = [s["base_lr"] for s in mine]
        mean = np.array([s["val_top1_mean"] for s in mine]) * 100
        line, = ax.plot(lrs, mean, "o-", ms=4, label="%s (%d seeds)" % (variant, mine[0]["seeds"]))
        std = np.array([s["val_top1_std"] for s in mine]) * 100
        if np.isfinite(std).all():
            ax.fill_between(lrs, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        for s in mine:
            ax.plot([s["base_lr"] * 1.15 ** shift[variant]] * len(s["finals"]),
                    np.array(s["finals"]) * 100, ".", ms=5, alpha=0.6, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("base learning rate")
    ax.set_ylabel("final val top-1 (%): mean ± 1 std, dots: seeds")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    finish_figure(fig, path, title)


def read_rows(path):
    """The rows of a study CSV written by :func:`write_outputs`, typed."""
    import csv

    with open(path) as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["base_lr"], row["seed"], row["epoch"] = (float(row["base_lr"]), int(row["seed"]),
                                                     int(row["epoch"]))
        for key in COLUMNS[4:]:
            row[key] = float(row[key])
    return rows


def write_outputs(rows, out_dir, loss_level, title=None):
    """:data:`OUTPUTS` in ``out_dir``, everything from ``rows`` (the CSV's content);
    returns their paths and the summary."""
    paths = {key: os.path.join(out_dir, name) for key, name in OUTPUTS.items()}
    atomic_save_csv(paths["csv"], COLUMNS, rows)
    summary = summarise(rows, loss_level)
    atomic_save(paths["table"], markdown_table(summary, loss_level))
    plot_study(rows, paths["curves"], loss_level, title)
    plot_lr(summary, paths["lr"], title)
    return paths, summary
