"""The clipping ablation's report: is the skips' advantage the recipe's gradient clipping?

The sweep clips the global gradient norm at 2.0, and plain MobileNet's early blocks
start with gradient norms far above that, so clipping shrinks its every step; the
skips' gain at small lrs might be that interaction rather than easier optimisation.
The ablation re-runs mobilenet and simple-connect with clipping on and off at two lrs
(``clipping.csv``). Two families are reported, each Holm-corrected on its own: the
skip's difference to plain MobileNet at each (lr, clip), and the effect of turning
clipping off for each (lr, variant). Everything comes from the CSV.
"""
import os

import numpy as np

from ..errors import UserError
from ..utils.fs import atomic_save
from ..utils.plots import finish_figure
from .converged import ORDER
from .reporting import (difference, last_epochs, mean_std, offsets, p_text, pm, read_csv,
                        single_commit, verdict)
from .stats import compare_family

__all__ = ["read_clipping", "summarise_clipping", "clipping_table", "plot_clipping",
           "write_clipping_report", "COLUMNS", "OUTPUTS"]

COLUMNS = ("variant", "base_lr", "clip_gradient", "seed", "epoch", "train_loss", "train_top1",
           "val_top1", "val_top5", "commit")
PLAIN = ORDER[0]
OFF = 0.0  # clip_gradient 0 is the trainer's "no clipping"
OUTPUTS = {"table": "clipping.md", "plot": "clipping.png"}


def read_clipping(folder):
    """``clipping.csv`` of ``folder``, typed."""
    return read_csv(os.path.join(folder, "clipping.csv"), COLUMNS)


def _clip(value):
    return "off" if value == OFF else "%g" % value


def _finals(rows):
    """``{(lr, clip, variant): [final val top-1 per seed, by seed]}``, sorted by lr, then
    clipping on before off, then :data:`ORDER`."""
    finals = {}
    for key, (row,) in last_epochs(rows, ("base_lr", "clip_gradient", "variant",
                                          "seed")).items():
        finals.setdefault(key[:3], []).append(row["val_top1"])
    order = {v: i for i, v in enumerate(ORDER)}
    return {k: finals[k] for k in sorted(finals, key=lambda k: (k[0], -k[1], order.get(k[2])))}


def summarise_clipping(rows):
    """The ablation's two families from the CSV's rows.

    Returns
    -------
    dict
        ``finals`` (see :func:`_finals`), ``commit``, ``versus`` (per (lr, clip, skip
        variant): the skip minus plain MobileNet) and ``off`` (per (lr, variant, clip
        level): clipping off minus that level), each a list of
        :func:`~.stats.compare_family` rows labelled with their key.
    """
    commit = single_commit({"clipping.csv": rows})
    unknown = sorted({r["variant"] for r in rows} - set(ORDER))
    if unknown or min(r["clip_gradient"] for r in rows) < 0:
        raise UserError("clipping.csv: unknown variant(s) %s or a negative clip_gradient"
                        % (", ".join(unknown) or "none"))
    finals = _finals(rows)
    if not any(v == PLAIN for _, _, v in finals):
        raise UserError("clipping.csv holds no %s runs: nothing to compare with" % PLAIN)
    versus = [((lr, clip, v), values, finals[lr, clip, PLAIN])
              for (lr, clip, v), values in finals.items()
              if v != PLAIN and (lr, clip, PLAIN) in finals]
    off = [((lr, v, clip), finals[lr, OFF, v], values)
           for (lr, clip, v), values in finals.items()
           if clip != OFF and (lr, OFF, v) in finals]
    off.sort(key=lambda c: (c[0][0], ORDER.index(c[0][1]), c[0][2]))
    return {"finals": finals, "commit": commit, "versus": compare_family(versus),
            "off": compare_family(off)}


def _cells(c):
    return "%s | %s | %s | %s" % (difference(c), p_text(c["p"]), p_text(c["p_holm"]),
                                  verdict(c))


def clipping_table(summary):
    """The ablation's markdown: both tables (val top-1 in percent, differences in points)
    and the lines saying the families and the commit."""
    finals = summary["finals"]

    def cell(key):
        return pm(*mean_std(finals[key]), scale=100)

    lines = ["| base lr | clip | variant | its final val top-1 (%%) | %s's (%%) | vs %s, points "
             "(95%% CI) | Welch p | Holm p (family of %d) | verdict |"
             % (PLAIN, PLAIN, len(summary["versus"])), "|---|---|---|---|---|---|---|---|---|"]
    for c in summary["versus"]:
        lr, clip, variant = c["label"]
        lines.append("| %g | %s | %s | %s | %s | %s |" % (
            lr, _clip(clip), variant, cell((lr, clip, variant)), cell((lr, clip, PLAIN)),
            _cells(c)))
    lines += ["", "| base lr | variant | clipped at | final val top-1 clipped (%%) | off (%%) | "
              "off minus clipped, points (95%% CI) | Welch p | Holm p (family of %d) | verdict |"
              % len(summary["off"]), "|---|---|---|---|---|---|---|---|---|"]
    for c in summary["off"]:
        lr, variant, clip = c["label"]
        lines.append("| %g | %s | %g | %s | %s | %s |" % (
            lr, variant, clip, cell((lr, clip, variant)), cell((lr, OFF, variant)), _cells(c)))
    seeds = sorted({len(v) for v in finals.values()})
    lines += ["", "- Final val top-1 is each run's last epoch; %s seeds per cell; Welch's t "
              "(two-sided, 95%% intervals), each table Holm-corrected over its own family at "
              "0.05." % "-".join(map(str, seeds)),
              "- Commit: %s (clipping.csv)." % summary["commit"]]
    return "\n".join(lines) + "\n"


def plot_clipping(summary, path, title=None):
    """Final val top-1 grouped by (lr, clip): every seed a dot, each variant's mean a bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finals = summary["finals"]
    groups = list(dict.fromkeys(k[:2] for k in finals))
    shift = offsets(k[2] for k in finals)
    colours = dict(zip(shift, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, ax = plt.subplots(figsize=(1.8 * len(groups) + 3, 4.6))
    for (lr, clip, variant), values in finals.items():
        x = groups.index((lr, clip)) + 0.2 * shift[variant]
        values = np.array(values) * 100
        ax.plot(np.full(len(values), x), values, "o", ms=5, alpha=0.6, color=colours[variant])
        ax.plot([x - 0.08, x + 0.08], [values.mean()] * 2, "-", lw=2, color=colours[variant])
    for variant, colour in colours.items():
        ax.plot([], [], "o", color=colour, label=variant)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(["lr %g\nclip %s" % (lr, _clip(clip)) for lr, clip in groups])
    ax.set_ylabel("final val top-1 (%): dots seeds, bars means")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    finish_figure(fig, path, title)


def write_clipping_report(folder, title=None):
    """Write :data:`OUTPUTS` into ``folder`` from its ``clipping.csv``.

    Returns
    -------
    (dict, dict)
        The paths written (``table``, ``plot``) and :func:`summarise_clipping`'s result.
    """
    paths = {key: os.path.join(folder, name) for key, name in OUTPUTS.items()}
    summary = summarise_clipping(read_clipping(folder))
    atomic_save(paths["table"], clipping_table(summary))
    plot_clipping(summary, paths["plot"], title)
    return paths, summary
