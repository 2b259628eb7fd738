"""Several run folders' curves on one figure (``tools/plot_runs.py``).

Each run is read through :class:`~mobilenet_skip.runs.folder.RunDir` (``config.yaml`` and ``metrics.csv``)
and labelled by its model and the recipe values in which the runs differ, so that two
runs of one model at two lrs read ``full-connect-pre-act lr=0.1`` and ``... lr=0.03``.
"""
import os
from collections import namedtuple

from ..errors import UserError
from ..utils.plots import plot_overlay
from ..runs.folder import RunDir

__all__ = ["Run", "load_runs", "run_labels", "plot_runs", "IGNORED_KEYS"]

Run = namedtuple("Run", ["path", "config", "rows"])
Run.__doc__ = "A run folder: its path, config.yaml's values and metrics.csv's rows."

# Keys that differ between runs without changing what is trained: where files go, how
# often it logs, which folder TensorBoard writes to, how many decode threads.
IGNORED_KEYS = ("save_dir", "recipe", "classes_from", "log_interval", "tensorboard",
                "preprocess_threads", "omp_threads", "keep_checkpoints", "rec_train",
                "rec_val")


def load_runs(paths):
    """The runs of ``paths``, in the order given.

    Raises
    ------
    UserError
        For a path that is not a folder, or a folder without ``config.yaml`` and
        ``metrics.csv`` (not a training run), naming it.
    """
    if not paths:
        raise UserError("give at least one run folder (a training --save-dir)")
    runs = []
    for path in paths:
        run = RunDir(path)
        if not os.path.isdir(path):
            raise UserError("%s is not a folder; give training run folders (--save-dir)" % path)
        if not (os.path.isfile(run.config_path) and run.has_metrics()):
            raise UserError("%s is not a training run: it lacks config.yaml or metrics.csv; "
                            "give a train_imagenet.py --save-dir" % path)
        rows = run.metrics()
        if not rows:
            raise UserError("%s has no finished epoch yet (metrics.csv is empty)" % path)
        runs.append(Run(path, run.config(), rows))
    return runs


def _shown(value):
    if isinstance(value, list):
        return ",".join("%g" % v if isinstance(v, float) else str(v) for v in value)
    return "%g" % value if isinstance(value, float) else str(value)


def run_labels(configs):
    """One label per config: its model, then ``key=value`` for each recipe key whose value
    differs between the configs (in the configs' key order, :data:`IGNORED_KEYS` aside).

    Runs that differ in none of them are told apart by their folder's name, which the
    caller appends (see :func:`plot_runs`); here a label never names a path.
    """
    keys = []
    for cfg in configs:
        keys += [k for k in cfg if k not in keys and k != "model" and k not in IGNORED_KEYS]
    differ = [k for k in keys
              if len(set(repr(cfg.get(k)) for cfg in configs)) > 1]
    return [" ".join([str(cfg.get("model", "?"))]
                     + ["%s=%s" % (k, _shown(cfg.get(k))) for k in differ])
            for cfg in configs]


def plot_runs(paths, png_path):
    """Overlay the runs of ``paths`` (train loss, val top-1, lr against epochs, each run's
    best epoch marked) into ``png_path``; returns the labels used, in order."""
    runs = load_runs(paths)
    labels = run_labels([r.config for r in runs])
    if len(set(labels)) < len(labels):  # the same settings: the folders tell them apart
        labels = ["%s (%s)" % (label, os.path.basename(os.path.normpath(r.path)))
                  for label, r in zip(labels, runs)]
    plot_overlay([(label, r.rows) for label, r in zip(labels, runs)], png_path)
    return labels
