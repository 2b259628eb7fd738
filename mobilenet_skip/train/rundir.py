"""The run folder: the one place that knows its file names.

A training run's ``--save-dir`` holds ``config.yaml`` (the resolved settings),
``metrics.csv`` (one row per epoch), ``curves.png``, ``train.log``, the epoch
checkpoints (:class:`~mobilenet_skip.checkpoint.CheckpointDir`) and, at the end,
the export of the chosen epoch (``<model>-symbol.json`` ...). Export, compare and the
benchmark read it through :class:`RunDir`.
"""
import os

from ..checkpoint import CheckpointDir
from ..errors import UserError

__all__ = ["RunDir"]


class RunDir(object):
    """Read access to a run folder.

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
        from .. import config as config_mod
        return config_mod.load_dumped(self.config_path) if os.path.isfile(
            self.config_path) else {}

    @property
    def model(self):
        if self._model is None:
            self._model = self.config().get("model")
        return self._model

    @property
    def checkpoints(self):
        return CheckpointDir(self.path, self.model)

    def has_metrics(self):
        return os.path.isfile(self.metrics_path)

    def metrics(self):
        """``metrics.csv``'s rows (dicts of floats, ``epoch`` an int), or ``[]``."""
        from ..plots import read_metrics
        return read_metrics(self.metrics_path) if self.has_metrics() else []

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
