"""Training curves from ``metrics.csv`` (loss, accuracy and lr by epoch)."""
import csv
import math

__all__ = ["read_metrics", "plot_curves", "finish_figure"]


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
    val_loss = [r.get("val_loss", float("nan")) for r in rows]  # nan: before the column
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
