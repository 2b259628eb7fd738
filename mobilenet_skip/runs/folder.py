"""The run folder: the one place that knows its file names, and its only writer.

A training run's ``--save-dir`` holds ``config.yaml`` (the resolved settings),
``metrics.csv`` (one row per epoch), ``curves.png``, ``train.log``, the epoch
checkpoints (:class:`~mobilenet_skip.runs.checkpoints.CheckpointDir`) and, at the end,
the export of the chosen epoch (``<model>-symbol.json`` ...). Export, compare and the
benchmark read it through :class:`RunDir`; the training loop writes it through
:meth:`RunDir.for_training`.
"""
import contextlib
import logging
import os
import weakref

from ..errors import UserError
from ..utils.fs import OutputLock, atomic_save_csv, remove_stale_tmp
from .checkpoints import CheckpointDir

__all__ = ["RunDir", "METRIC_COLUMNS", "LATER_COLUMNS", "best_row", "selected_row", "summary_line",
           "attach_file_log"]

# docs/workflow.md defines each column. train_images: the images the epoch's
# train_loss/train_top1 cover (over all workers). best_epoch: the epoch with the highest
# val_top1 up to this row (so the last row names the run's best beside its last).
METRIC_COLUMNS = ("epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5",
                  "lr", "epoch_time_s", "val_time_s", "samples_per_s", "train_images",
                  "best_epoch")
# Columns a metrics.csv may lack: read as nan, so that a run whose file lacks them
# resumes, and its file is rewritten whole with every column.
LATER_COLUMNS = ("val_loss", "val_time_s", "train_images")

log = logging.getLogger("mobilenet_skip")


def attach_file_log(path):
    """Also log into ``path`` (once, however often a run folder is opened)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == os.path.abspath(
                path):
            return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)


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


class _RunLocks(object):
    """The run-folder locks this process holds (``SAVE_DIR/.lock``, see ``fs.OutputLock``).

    Another job into the same folder is refused for as long as a writing ``RunDir`` of
    this process uses it. One process may train into a folder again (``fit`` then ``fit
    resume=True``): it shares the lock it holds, released when its last user is gone.
    """

    def __init__(self):
        self.held = {}  # real path -> [OutputLock, users]

    def hold(self, owner, save_dir):
        key = os.path.realpath(save_dir)
        if key not in self.held:
            lock = OutputLock(os.path.join(save_dir, RunDir.LOCK), "run folder %s" % save_dir,
                              "give --save-dir a folder on a writable disk")
            self.held[key] = [lock.acquire(), 0]
        self.held[key][1] += 1
        return weakref.finalize(owner, self._drop, key)  # called early, it lets go now

    def _drop(self, key):
        entry = self.held.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                entry[0].release()
                del self.held[key]


_RUN_LOCKS = _RunLocks()


class RunDir(object):
    """A run folder.

    Parameters
    ----------
    path : str
        The folder (``--save-dir``).
    model : str, optional
        Model name, the checkpoints' file prefix (default: ``config.yaml``'s).
    """
    CONFIG, METRICS, CURVES, LOG, LOCK = ("config.yaml", "metrics.csv", "curves.png",
                                          "train.log", ".lock")

    def __init__(self, path, model=None):
        self.path = path
        self._model = model
        self.cfg, self.rank, self.global_batch, self.data, self.rows = (None,) * 4 + ([],)

    # --- reading -------------------------------------------------------------------------

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def config_path(self):
        return self.file(self.CONFIG)

    @property
    def metrics_path(self):
        return self.file(self.METRICS)

    @property
    def curves_path(self):
        return self.file(self.CURVES)

    def config(self):
        """The run's settings (``config.yaml``), or ``{}`` when it has none."""
        from ..config import recipes as config_mod
        cfg = config_mod.load_dumped(self.config_path) if os.path.isfile(
            self.config_path) else {}
        if self._model is None:  # read once: the model names every checkpoint file
            self._model = cfg.get("model")
        return cfg

    @property
    def model(self):
        if self._model is None:
            self.config()
        return self._model

    @property
    def checkpoints(self):
        return CheckpointDir(self.path, self.model)

    def has_metrics(self):
        return os.path.isfile(self.metrics_path)

    def metrics(self):
        """``metrics.csv``'s rows (dicts of numbers, integer columns as ints), or ``[]``,
        with ``best_epoch`` (re)computed and :data:`LATER_COLUMNS` nan where missing, so
        that a file without those columns is rewritten whole on resume."""
        from ..utils.plots import read_metrics
        rows = read_metrics(self.metrics_path) if self.has_metrics() else []
        best = None
        for row in rows:
            if best is None or row["val_top1"] > best["val_top1"]:
                best = row
            row["best_epoch"] = best["epoch"]
            for column in LATER_COLUMNS:
                row.setdefault(column, float("nan"))
        return rows

    def checkpoint_path(self, epoch):
        """The ``.params`` of epoch ``epoch``, or a :class:`UserError` listing the kept ones."""
        if not os.path.isdir(self.path):
            raise UserError("--save-dir %s is not a folder; pass the training run's --save-dir"
                            % self.path)
        ckpt = self.checkpoints
        path = ckpt.path(int(epoch), "params")
        if not os.path.isfile(path):
            kept = [str(m["epoch"]) for m in ckpt.epochs()]
            raise UserError("no checkpoint of epoch %s in %s (%s); pass one of those to --epoch"
                            % (epoch, self.path, "complete ones: " + ", ".join(kept) if kept
                               else "it holds no complete %s checkpoint" % self.model))
        return path

    def export_prefix(self, model=None):
        """Where the run's own export goes: ``<save_dir>/<model>``."""
        return os.path.join(self.path, model or self.model)

    def synsets_path(self, model=None, cfg=None):
        """Class names of the run: its export's, else those beside its training .rec."""
        from ..recordio import synsets_path
        cfg = self.config() if cfg is None else cfg
        candidates = [self.export_prefix(model) + ".synsets.txt"]
        if cfg.get("rec_train"):
            candidates.append(synsets_path(cfg["rec_train"]))
        return next((c for c in candidates if os.path.isfile(c)), None)

    @contextlib.contextmanager
    def locked(self):
        """Hold the folder's lock (``.lock``) while writing into it from outside training (an
        export): refused in one line while a training job holds it, and it refuses a
        training job meanwhile; this process's own training shares its hold."""
        release = _RUN_LOCKS.hold(self, self.path)
        try:
            yield self
        finally:
            release()

    # --- writing (a training run; rank 0 alone writes) ----------------------------------

    @classmethod
    def for_training(cls, cfg, rank, global_batch=None, data=None):
        """The run folder of ``cfg["save_dir"]`` as training writes it, its checkpoints
        marked with ``global_batch`` and the data's fingerprint ``data``
        (:func:`~mobilenet_skip.train.feed.fingerprint`). On rank 0, before anything is
        written: lock it (a second job into the folder stops here), remove what a killed
        run left half-written, and log into ``train.log``."""
        run = cls(cfg["save_dir"], cfg["model"])
        run.cfg, run.rank, run.global_batch, run.data = cfg, rank, global_batch, data
        if rank == 0:
            _RUN_LOCKS.hold(run, run.path)
            for path in remove_stale_tmp(run.path):
                log.info("removed %s, left by a killed run", path)
            attach_file_log(run.file(cls.LOG))
        return run

    @property
    def best(self):
        """The best row trained so far, or None."""
        return best_row(self.rows)

    @property
    def selected(self):
        """The row of the epoch to export (``export_epoch``), or None."""
        return selected_row(self.rows, self.cfg["export_epoch"])

    def summary(self):
        """One line naming the last and the best epoch and which one is exported."""
        return summary_line(self.rows, self.cfg["export_epoch"])

    def write_start(self, resume, rows=()):
        """Write ``config.yaml`` and the kept metrics ``rows`` as a run (re)starts."""
        from ..config import recipes as config_mod
        self.rows = list(rows)
        if self.rank == 0:
            config_mod.dump(self.cfg, self.config_path)
            if self.rows or not resume:
                atomic_save_csv(self.metrics_path, METRIC_COLUMNS, self.rows)

    def end_epoch(self, row, net, trainer):
        """Record an epoch: checkpoint (pruned to the recent and the best), metrics, plot.

        The devices' BN running statistics are synchronised to the saved value first
        (a no-op after ``evaluate`` did it), so the checkpoint is what was validated.
        """
        from .bnstats import sync_running_stats
        sync_running_stats(net)
        self.rows.append(row)
        row["best_epoch"] = self.best["epoch"]
        ckpt = self.checkpoints
        ckpt.save(row["epoch"], net, trainer, {
            "epoch": row["epoch"], "model": self.cfg["model"], "val_top1": row["val_top1"],
            "val_top5": row["val_top5"], "num_update": trainer.optimizer.num_update,
            "global_batch": self.global_batch, "data": self.data})
        ckpt.remove("interrupted")
        ckpt.prune(self.cfg["keep_checkpoints"], self.best["epoch"])
        atomic_save_csv(self.metrics_path, METRIC_COLUMNS, self.rows)
        self._plot()

    def save_interrupted(self, net, trainer, epochs_done, batches_done, iters_per_epoch,
                         epoch_sums=None):
        """The Ctrl-C checkpoint, with the epoch's running sums so that its metrics row
        still covers the whole epoch after ``--resume``."""
        if self.rank != 0:
            return
        ckpt = self.checkpoints
        ckpt.save("interrupted", net, trainer, {
            "epoch": epochs_done, "batches_done": batches_done, "model": self.cfg["model"],
            "num_update": trainer.optimizer.num_update, "global_batch": self.global_batch,
            "epoch_sums": epoch_sums, "data": self.data})
        log.info("saved %s (epoch %d, %d/%d batches); continue with --resume",
                 ckpt.path("interrupted", "params"), epochs_done + 1, batches_done,
                 iters_per_epoch)

    def _plot(self):
        from ..utils.plots import plot_curves
        try:
            plot_curves(self.metrics_path, self.curves_path,
                        title="%s x%g" % (self.cfg["model"], self.cfg["multiplier"]))
        except Exception as err:  # a plot must never stop a training run
            log.warning("could not draw curves.png: %s", err)
