"""metrics.csv's rows: the columns, their types, the best epoch and the summary line.

A row is a dict of numbers, one per :data:`METRIC_COLUMNS`; :mod:`.folder` reads and
writes the file, and a checkpoint's marker records the rows up to its epoch.
"""

__all__ = ["METRIC_COLUMNS", "LATER_COLUMNS", "INT_COLUMNS", "typed_row", "with_best",
           "best_row", "selected_row", "summary_line", "epochs_text"]

# docs/workflow.md defines each column. train_images: the images the epoch's
# train_loss/train_top1 cover (over all workers). best_epoch: the epoch with the highest
# val_top1 up to this row (so the last row names the run's best beside its last).
METRIC_COLUMNS = ("epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5",
                  "lr", "epoch_time_s", "val_time_s", "samples_per_s", "train_images",
                  "best_epoch")
# Columns a metrics.csv may lack: read as nan, so that a run whose file lacks them
# resumes, and its file is rewritten whole with every column.
LATER_COLUMNS = ("val_loss", "val_time_s", "train_images")
# Counts: read and written as ints whatever the file held (a file edited by a tool that
# writes 1408.0 is rewritten 1408 on resume).
INT_COLUMNS = ("epoch", "train_images", "best_epoch")


def typed_row(row):
    """``row`` with :data:`INT_COLUMNS` as ints where whole and every other value a float:
    what metrics.csv and a marker's JSON hold (nan stays nan)."""
    def typed(column, value):
        value = float(value)
        return int(value) if column in INT_COLUMNS and value.is_integer() else value
    return {k: typed(k, v) for k, v in row.items()}


def with_best(rows):
    """``rows`` (dicts, in epoch order) with ``best_epoch`` (re)computed and
    :data:`LATER_COLUMNS` nan where missing."""
    best = None
    for row in rows:
        if best is None or row["val_top1"] > best["val_top1"]:
            best = row
        row["best_epoch"] = best["epoch"]
        for column in LATER_COLUMNS:
            row.setdefault(column, float("nan"))
    return rows


def best_row(rows):
    """The row with the highest val_top1 (the earliest on a tie), or None."""
    return max(rows, key=lambda r: r["val_top1"]) if rows else None


def selected_row(rows, export_epoch):
    """The row of the epoch to export: the last one or the best (``export_epoch``).

    "best" picks the epoch on the same val set that reports it, which flatters the
    figure; a paper reproduction reports and ships the last.
    """
    if not rows:
        return None
    return best_row(rows) if export_epoch == "best" else rows[-1]


def summary_line(rows, export_epoch):
    """One line naming the last and the best epoch and which one is exported."""
    last, best = rows[-1], best_row(rows)
    return ("last epoch %d val top1 %.4f | best epoch %d val top1 %.4f | exported: %s "
            "(epoch %d)" % (last["epoch"], last["val_top1"], best["epoch"], best["val_top1"],
                            export_epoch, selected_row(rows, export_epoch)["epoch"]))


def epochs_text(epochs):
    """Epoch numbers as ``1-3, 5``."""
    spans = []
    for e in sorted(epochs):
        if spans and e == spans[-1][1] + 1:
            spans[-1][1] = e
        else:
            spans.append([e, e])
    return ", ".join("%d" % a if a == b else "%d-%d" % (a, b) for a, b in spans)
