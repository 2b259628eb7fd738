"""The run folder: the one place that knows its file names, and its only writer.

A training run's ``--save-dir`` holds ``config.yaml`` (the resolved settings),
``metrics.csv`` (one row per epoch), ``curves.png``, ``train.log``, the epoch
checkpoints (:class:`~mobilenet_skip.runs.checkpoints.CheckpointDir`) and, at the end,
the export of the chosen epoch (``<model>-symbol.json`` ...). Export, compare and the
benchmark read it through :class:`RunDir`; the training loop writes it through
:meth:`RunDir.for_training`.

A folder holds a run once it has ``config.yaml``, ``metrics.csv`` or a checkpoint
marker of any model (:meth:`RunDir.markers`): a fresh run goes there only with
``--overwrite``, which :meth:`RunDir.clear` carries out. Each marker records the
settings its weights and optimizer state need (:data:`MARKED_SETTINGS`) and the metrics
rows up to its epoch, so that a resume checks the one and rebuilds a lost
``metrics.csv`` from the other (:meth:`RunDir.resumed_rows`).
"""
import contextlib
import logging
import os
import re
import weakref

from ..config.recipes import ARCH_KEYS
from ..errors import UserError
from ..utils.fs import OutputLock, atomic_save_csv, remove_if_exists, remove_stale_tmp
from .checkpoints import CheckpointDir, read_marker
from .metrics import (INT_COLUMNS, LATER_COLUMNS, METRIC_COLUMNS, best_row, epochs_text,
                      selected_row, summary_line, typed_row, with_best)

__all__ = ["RunDir", "METRIC_COLUMNS", "LATER_COLUMNS", "INT_COLUMNS", "MARKED_SETTINGS",
           "best_row", "selected_row", "summary_line", "attach_file_log", "typed_row"]

# The settings a checkpoint's weights and optimizer state were made with, recorded in its
# marker: a resume under other values is refused (they change the parameters' shapes or
# dtype, or the state's layout). Batch, lr, devices and the rest may change on resume.
MARKED_SETTINGS = ARCH_KEYS + ("dtype", "optimizer")
_MARKER_NAME = re.compile(r"(.+)-(\d{4,}|interrupted)\.json$")

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


def _recorded_rows(meta):
    """The metrics rows a marker records (typed), or none when it records none or its
    entry is not a list of rows (a marker is data, not code)."""
    try:
        return [typed_row(r) for r in meta.get("metrics") or ()
                if isinstance(r, dict) and set(r) >= set(METRIC_COLUMNS) - set(LATER_COLUMNS)]
    except (TypeError, ValueError):
        return []


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
        return with_best([typed_row(r) for r in read_metrics(self.metrics_path)]
                          if self.has_metrics() else [])

    def resumed_rows(self, start):
        """The metrics rows of a run resumed from checkpoint ``start`` (its marker's
        metadata): metrics.csv's up to its epoch, the epochs the file lacks (deleted or
        cut short) rebuilt from the rows the marker records, ``best_epoch`` recomputed.
        Each epoch rebuilt, or lost because an older marker does not record it, is
        logged in one line."""
        epoch = start["epoch"]
        rows = {r["epoch"]: r for r in self.metrics() if r["epoch"] <= epoch}
        recorded = {r["epoch"]: r for r in _recorded_rows(start)
                    if r["epoch"] <= epoch and r["epoch"] not in rows}
        rows.update(recorded)
        marker = self.checkpoints.path(start["tag"], "json")
        if recorded:
            log.warning("--resume: %s lacked epoch(s) %s; rebuilt from %s", self.metrics_path,
                        epochs_text(recorded), marker)
        lost = [e for e in range(1, epoch + 1) if e not in rows]
        if lost:
            log.warning("--resume: %s lacks epoch(s) %s and %s does not record them; "
                        "best_epoch and the summary cover the other epochs only",
                        self.metrics_path, epochs_text(lost), marker)
        return with_best([rows[e] for e in sorted(rows)])

    def markers(self):
        """Every checkpoint marker in the folder, of any model, complete or not:
        ``{model: [metadata with its tag, ...]}``, oldest first (``{}`` for a missing
        folder). A marker whose ``model`` is not its file's prefix is no checkpoint."""
        found = {}
        names = sorted(os.listdir(self.path)) if os.path.isdir(self.path) else []
        for name in names:
            match = _MARKER_NAME.match(name)
            meta = read_marker(self.file(name)) if match else None
            model, tag = match.groups() if match else (None, None)
            if meta is not None and meta.get("model", model) == model:
                found.setdefault(model, []).append(
                    dict(meta, tag=int(tag) if tag.isdigit() else tag))
        return {model: sorted(metas, key=lambda m: (m.get("epoch", 0), m["tag"] == "interrupted"))
                for model, metas in found.items()}

    def run_files(self):
        """Which of config.yaml and metrics.csv the folder holds."""
        return [n for n in (self.CONFIG, self.METRICS) if os.path.isfile(self.file(n))]

    def holds_run(self):
        """Whether the folder holds a run: config.yaml, metrics.csv or a checkpoint."""
        return bool(self.run_files() or self.markers())

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

    def clear(self):
        """Remove the run the folder holds (``--overwrite``): every model's checkpoints,
        config.yaml, metrics.csv and curves.png. train.log (which goes on with the new
        run), exports and files of others stay. Returns the names removed."""
        removed = []
        for model, metas in self.markers().items():
            ckpt = CheckpointDir(self.path, model)
            for meta in metas:
                ckpt.remove(meta["tag"])
                removed.append(os.path.basename(ckpt.path(meta["tag"], "*")))
        for name in (self.CONFIG, self.METRICS, self.CURVES):
            if os.path.isfile(self.file(name)):
                remove_if_exists(self.file(name))
                removed.append(name)
        return removed

    def _marker_meta(self, **meta):
        """A checkpoint marker's metadata: ``meta``, the :data:`MARKED_SETTINGS` and the
        metrics rows so far."""
        return dict(meta, model=self.cfg["model"], global_batch=self.global_batch,
                    data=self.data, settings={k: self.cfg[k] for k in MARKED_SETTINGS},
                    metrics=[typed_row(r) for r in self.rows])

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
        ckpt.save(row["epoch"], net, trainer, self._marker_meta(
            epoch=row["epoch"], val_top1=row["val_top1"], val_top5=row["val_top5"],
            num_update=trainer.optimizer.num_update))
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
        ckpt.save("interrupted", net, trainer, self._marker_meta(
            epoch=epochs_done, batches_done=batches_done,
            num_update=trainer.optimizer.num_update, epoch_sums=epoch_sums))
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

