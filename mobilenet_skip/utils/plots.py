"""Training curves from ``metrics.csv`` (loss, accuracy and lr by epoch): one run's, or
several runs overlaid."""
import csv
import math

__all__ = ["read_metrics", "plot_curves", "plot_overlay", "finish_figure"]


def _number(text):
    """A CSV cell as written from an int (``"12"``) or a float (``"0.5"``, ``"nan"``):
    counts read back as ints, so rewriting a file (a resume) keeps ``12``, not ``12.0``."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def read_metrics(path):
    """Rows of a metrics.csv as dicts of numbers (ints where the file has integers)."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [{k: _number(v) for k, v in row.items()} for row in rows]


def plot_curves(csv_path, png_path, title=None):
    """Draw train and val loss, train/val top-1 and lr against epoch into ``png_path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(csv_path)
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [r["train_loss"] for r in rows], "o-", label="train (smoothed labels)")
    val_loss = [r.get("val_loss", float("nan")) for r in rows]  # nan: a file without it
    if any(math.isfinite(v) for v in val_loss):
        axes[0].plot(epochs, val_loss, "s-", label="val (plain cross-entropy)")
        axes[0].legend(loc="upper right")
    axes[0].set_title("loss")
    axes[1].plot(epochs, [r["train_top1"] for r in rows], "o-", label="train top-1")
    axes[1].plot(epochs, [r["val_top1"] for r in rows], "s-", label="val top-1")
    axes[1].plot(epochs, [r["val_top5"] for r in rows], "^--", label="val top-5")
    axes[1].set_ylim(0, 1)
    axes[1].legend(loc="lower right")
    axes[1].set_title("accuracy")
    axes[2].plot(epochs, [r["lr"] for r in rows], "o-")
    axes[2].set_title("learning rate (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    finish_figure(fig, png_path, title)


def finish_figure(fig, png_path, title=None):
    """Title, lay out and write a figure as PNG (atomically), then free it."""
    import matplotlib.pyplot as plt

    from .fs import atomic_write

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(png_path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)


def plot_overlay(series, png_path, title=None):
    """Several runs' train loss, val top-1 and lr against epoch, one colour per run.

    Parameters
    ----------
    series : list of (str, list of dict)
        Each run's label and its metrics rows (as :func:`read_metrics` gives them); the
        run's best epoch (highest ``val_top1``) is ringed on every panel.
    png_path : str
        Where the PNG goes (written atomically).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    panels = (("train_loss", "train loss"), ("val_top1", "val top-1"),
              ("lr", "learning rate (end of epoch)"))
    for n, (label, rows) in enumerate(series):
        colour = "C%d" % (n % 10)
        epochs = [r["epoch"] for r in rows]
        best = max(rows, key=lambda r: r["val_top1"])
        for ax, (column, _) in zip(axes, panels):
            ax.plot(epochs, [r[column] for r in rows], "o-", ms=3, color=colour,
                    label=label if column == "val_top1" else None)
            ax.plot([best["epoch"]], [best[column]], "o", ms=11, mfc="none", color=colour)
    for ax, (_, name) in zip(axes, panels):
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[1].legend(loc="lower right", fontsize=8, title="ringed: best epoch",
                   title_fontsize=8)
    finish_figure(fig, png_path, title)
