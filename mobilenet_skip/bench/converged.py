"""The converged study's report: the five variants trained to convergence on Fashion-MNIST.

The runs train on the 55,000 images outside the fixed stratified hold-out, monitor
each epoch on the hold-out 5,000 (``runs.csv``), and score the last 3 epochs on the
10,000 test images (``test.csv``); ``linear.csv`` is the linear floor of
:mod:`.linear`. Everything here is read from those CSVs: the table, its lines and the
figure are a function of them, nothing is random and nothing is cached. The equal-cost
group (mobilenet, simple-connect, simple-connect-pre-act: the same Mult-Adds and
parameters) comes first, then full-connect's two variants, whose projections cost more.
"""
import os

import numpy as np

from ..errors import UserError
from ..utils.fs import atomic_save
from ..utils.plots import finish_figure
from . import linear
from .reporting import (difference, last_epochs, mean_std, offsets, p_text, pm, read_csv,
                        single_commit, verdict)
from .stats import compare_family, mean_interval

__all__ = ["read_runs", "read_test", "read_linear", "summarise_converged", "model_costs",
           "converged_table", "converged_text", "plot_converged", "write_converged_report",
           "RUNS_COLUMNS", "TEST_COLUMNS", "ORDER", "OUTPUTS"]

RUNS_COLUMNS = ("variant", "base_lr", "seed", "epoch", "train_loss", "train_top1", "val_top1",
                "val_top5", "lr", "commit")
TEST_COLUMNS = ("variant", "base_lr", "seed", "epoch", "test_top1", "test_top5", "commit")
ORDER = ("mobilenet", "simple-connect", "simple-connect-pre-act", "full-connect",
         "full-connect-pre-act")
PLAIN = ORDER[0]
SCORED = 3  # the last epochs of each run scored on the test images
HALF_WIDTH_TARGET = 0.7  # points: the precision the study was sized for
PLAIN_TARGET, PLAIN_SPREAD = 0.89, 0.5  # plain MobileNet converged: top-1, last-3 spread
OUTPUTS = {"table": "converged.md", "plot": "converged.png"}


def read_runs(folder):
    """``runs.csv`` of ``folder``: every epoch of every run, typed."""
    return read_csv(os.path.join(folder, "runs.csv"), RUNS_COLUMNS)


def read_test(folder):
    """``test.csv`` of ``folder``: each run's last epochs on the test images, typed."""
    return read_csv(os.path.join(folder, "test.csv"), TEST_COLUMNS)


def read_linear(folder):
    """The one row of ``linear.csv`` in ``folder``, or None when there is none yet."""
    path = os.path.join(folder, "linear.csv")
    if not os.path.isfile(path):
        return None
    rows = read_csv(path, linear.COLUMNS, text=("model",), ints=("train_images",))
    if len(rows) != 1:
        raise UserError("%s holds %d rows; the linear floor writes one" % (path, len(rows)))
    return rows[0]


def _check(runs, test):
    """Refuse CSVs that are not one study: a variant at several base lrs, runs without
    test scores (or the reverse), test epochs that are not a run's last :data:`SCORED`."""
    for name, rows in (("runs.csv", runs), ("test.csv", test)):
        unknown = sorted({r["variant"] for r in rows} - set(ORDER))
        if unknown:
            raise UserError("%s names unknown variant(s) %s" % (name, ", ".join(unknown)))
    lrs = {}
    for row in runs + test:
        lrs.setdefault(row["variant"], set()).add(row["base_lr"])
    several = sorted(v for v, seen in lrs.items() if len(seen) > 1)
    if several:
        raise UserError("the CSVs hold %s at several base lrs; one study is one lr per "
                        "variant" % ", ".join(several))
    _check_epochs(runs)
    trained = last_epochs(runs, ("variant", "seed"), SCORED)
    scored = last_epochs(test, ("variant", "seed"), SCORED + 1)
    if set(trained) != set(scored):
        odd = sorted(set(trained) ^ set(scored))
        raise UserError("runs.csv and test.csv hold different runs, e.g. %s seed %d"
                        % odd[0])
    for key, rows in scored.items():
        if [r["epoch"] for r in rows] != [r["epoch"] for r in trained[key]]:
            raise UserError("test.csv: %s seed %d is scored at epochs %s, not its last %d"
                            % (key + ([r["epoch"] for r in rows], SCORED)))
    if PLAIN not in lrs:
        raise UserError("the CSVs hold no %s runs: nothing to compare with" % PLAIN)


def _check_epochs(runs):
    """Refuse a run whose epochs are not 1..E, or seeds of one variant ending at different
    epochs: the curves and finals would compare unequal training."""
    ends = {}
    for (variant, seed), rows in last_epochs(runs, ("variant", "seed"), None).items():
        epochs = [r["epoch"] for r in rows]
        if epochs != list(range(1, len(epochs) + 1)):
            raise UserError("runs.csv: %s seed %d has epochs %s, not 1..%d"
                            % (variant, seed, epochs, len(epochs)))
        ends.setdefault(variant, set()).add(len(epochs))
    uneven = sorted(v for v, seen in ends.items() if len(seen) > 1)
    if uneven:
        raise UserError("runs.csv: the seeds of %s end at different epochs" % ", ".join(uneven))


def summarise_converged(runs, test):
    """One dict per variant in :data:`ORDER` (those present): ``variant``, ``base_lr``,
    ``seeds``, ``epochs``, ``finals`` (final-epoch test top-1 per seed), their
    ``test_mean``/``test_std``, ``spread`` (max - min over the scored epochs of the mean
    test top-1), ``holdout_mean``/``holdout_std`` at the last epoch and ``comparison``
    (:func:`~.stats.compare_family` row against plain MobileNet, None for it), the family
    being every skip variant present."""
    _check(runs, test)
    trained = last_epochs(runs, ("variant", "seed"))
    scored = last_epochs(test, ("variant", "seed"), SCORED)
    summary = []
    for variant in [v for v in ORDER if any(k[0] == v for k in scored)]:
        seeds = sorted(s for v, s in scored if v == variant)
        by_epoch = np.array([[r["test_top1"] for r in scored[variant, s]] for s in seeds])
        test_mean, test_std = mean_std(by_epoch[:, -1])
        held = mean_std([trained[variant, s][0]["val_top1"] for s in seeds])
        summary.append({
            "variant": variant, "base_lr": scored[variant, seeds[0]][0]["base_lr"],
            "seeds": len(seeds), "epochs": trained[variant, seeds[0]][0]["epoch"],
            "finals": list(by_epoch[:, -1]), "spread": float(np.ptp(by_epoch.mean(axis=0))),
            "test_mean": test_mean, "test_std": test_std,
            "holdout_mean": held[0], "holdout_std": held[1],
            "comparison": None})
    plain, skips = summary[0], summary[1:]
    family = compare_family([(s["variant"], s["finals"], plain["finals"]) for s in skips])
    for s, c in zip(skips, family):
        s["comparison"] = c
    return summary


def model_costs(variants, multiplier, input_size):
    """``{variant: {"macs", "params"}}`` of each network at the study's width and input
    size, 10 classes (counted on the built network, :mod:`~mobilenet_skip.models.flops`)."""
    from ..models import get_model
    from ..models.flops import count_model

    return {v: {k: count_model(get_model(v, multiplier, classes=10), input_size)[k]
                for k in ("macs", "params")} for v in variants}


def converged_table(summary, costs, floor, multiplier, input_size, commit):
    """The report's markdown: the table and the lines under it, from :func:`summarise_converged`,
    :func:`model_costs`, :func:`read_linear` (None: no floor yet) and the commit."""
    family = len(summary) - 1
    lines = ["| variant | Mult-Adds (width %g, %d px) | params | seeds | final test top-1 (%%) "
             "| last %d epochs' spread (points) | hold-out top-1 at the last epoch (%%) | vs "
             "%s, points (95%% CI) | Welch p | Holm p (family of %d) | verdict |"
             % (multiplier, input_size, SCORED, PLAIN, family),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        c = s["comparison"]
        versus = ((difference(c), p_text(c["p"]), p_text(c["p_holm"]), verdict(c)) if c
                  else ("-",) * 4)
        cost = costs[s["variant"]]
        lines.append("| %s | {:,} | {:,} | %d | %s | %.2f | %s | %s | %s | %s | %s |".format(
            cost["macs"], cost["params"]) % ((
                s["variant"], s["seeds"], pm(s["test_mean"], s["test_std"], 100),
                s["spread"] * 100, pm(s["holdout_mean"], s["holdout_std"], 100)) + versus))
    if floor:
        # the floor's Mult-Adds and parameters: one weight per pixel and class, one bias per class
        macs = linear.INPUTS * linear.CLASSES
        lines.append("| linear floor (C=%g) | {:,} | {:,} | - | %.2f | - | %.2f | %+.2f | - | - "
                     "| floor |".format(macs, macs + linear.CLASSES)
                     % (floor["C"], floor["test_top1"] * 100, floor["holdout_top1"] * 100,
                        (floor["test_top1"] - summary[0]["test_mean"]) * 100))
    return "\n".join(lines + [""] + _notes(summary, floor, commit)) + "\n"


def _notes(summary, floor, commit):
    """The generated lines under the table: family, precision, plain target, floor, commit."""
    plain, skips = summary[0], [s["comparison"] for s in summary[1:]]
    wide = ["%s (±%.2f)" % (c["label"], c["half_width"] * 100) for c in skips
            if not c["half_width"] <= HALF_WIDTH_TARGET / 100]
    met = plain["test_mean"] >= PLAIN_TARGET and plain["spread"] * 100 <= PLAIN_SPREAD
    runs = "; ".join("%s %d seeds at lr %g, %d epochs" % (s["variant"], s["seeds"], s["base_lr"],
                                                          s["epochs"]) for s in summary)
    return [
        "- Runs: %s." % runs,
        "- Family: the %d skip-vs-%s differences of final-epoch test top-1; Welch's t "
        "(two-sided, 95%% intervals), Holm-Bonferroni over the %d at family-wise 0.05."
        % (len(skips), PLAIN, len(skips)),
        "- Interval half-widths against the ±%.1f-point target: %s; %s." % (
            HALF_WIDTH_TARGET, ", ".join("%s ±%.2f" % (c["label"], c["half_width"] * 100)
                                         for c in skips),
            "exceeding it: " + ", ".join(wide) if wide else "none exceeds it"),
        "- Plain %s: %.2f%% final test top-1 (target ≥ %g%%) with its last %d epochs within "
        "%.2f points (target ≤ %g): %s." % (
            PLAIN, plain["test_mean"] * 100, PLAIN_TARGET * 100, SCORED, plain["spread"] * 100,
            PLAIN_SPREAD, "met" if met else "not met"),
        "- Linear floor: %s; {:,} training images.".format(floor["train_images"]) % floor["model"]
        if floor else "- Linear floor: no linear.csv yet.",
        "- Commit: %s (runs.csv and test.csv)." % commit]


def converged_text(folder, multiplier, input_size):
    """``(table text, summary, runs, floor)`` of the CSVs in ``folder``."""
    runs, test = read_runs(folder), read_test(folder)
    commit = single_commit({"runs.csv": runs, "test.csv": test})
    summary, floor = summarise_converged(runs, test), read_linear(folder)
    costs = model_costs([s["variant"] for s in summary], multiplier, input_size)
    return (converged_table(summary, costs, floor, multiplier, input_size, commit), summary,
            runs, floor)


def plot_converged(summary, runs, floor, path, title=None):
    """Left: hold-out top-1 by epoch, each variant's mean line and every seed as a dot.
    Right: final test top-1 per variant, every seed a dot, the mean with its 95% interval,
    the linear floor dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    shift = offsets(s["variant"] for s in summary)
    for i, s in enumerate(summary):
        mine = last_epochs([r for r in runs if r["variant"] == s["variant"]], ("seed",), None)
        curves = np.array([[r["val_top1"] * 100 for r in rows] for rows in mine.values()])
        epochs = np.arange(1, s["epochs"] + 1)
        line, = left.plot(epochs, curves.mean(axis=0), "-", label="%s (%d seeds)"
                          % (s["variant"], s["seeds"]))
        left.plot(epochs + 0.15 * shift[s["variant"]], curves.T, ".", ms=3, alpha=0.5,
                  color=line.get_color())
        finals = np.array(s["finals"]) * 100
        right.plot(np.full(len(finals), i), finals, "o", ms=5, alpha=0.6, color=line.get_color())
        mean, low, high = mean_interval(finals)
        right.errorbar([i + 0.2], [mean], yerr=[[mean - low], [high - mean]], fmt="_", ms=14,
                       capsize=4, color=line.get_color())
    if floor:
        right.axhline(floor["test_top1"] * 100, color="grey", ls="--", lw=1,
                      label="linear floor (%.2f%%)" % (floor["test_top1"] * 100))
        right.legend(loc="lower right", fontsize=8)
    left.set(xlabel="epoch", ylabel="hold-out top-1 (%)",
             title="hold-out top-1 by epoch (line: mean, dots: seeds)")
    right.set_xticks(range(len(summary)))
    right.set_xticklabels([s["variant"] for s in summary], rotation=20, fontsize=8)
    right.set(ylabel="final test top-1 (%)", title="final test top-1 (dots: seeds, bar: mean "
              "with 95% interval)")
    left.legend(loc="lower right", fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    finish_figure(fig, path, title)


def write_converged_report(folder, multiplier, input_size, title=None):
    """Write :data:`OUTPUTS` into ``folder`` from its CSVs.

    Parameters
    ----------
    folder : str
        Holds ``runs.csv``, ``test.csv`` and (optionally) ``linear.csv``.
    multiplier : float
        The study's width multiplier (for the Mult-Adds and params columns).
    input_size : int
        The study's input side in pixels.
    title : str, optional
        The figure's title.

    Returns
    -------
    (dict, list of dict)
        The paths written (``table``, ``plot``) and :func:`summarise_converged`'s rows.
    """
    paths = {key: os.path.join(folder, name) for key, name in OUTPUTS.items()}
    text, summary, runs, floor = converged_text(folder, multiplier, input_size)
    atomic_save(paths["table"], text)
    plot_converged(summary, runs, floor, paths["plot"], title)
    return paths, summary
