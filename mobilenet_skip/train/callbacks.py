"""What the loop reports, and to whom: every report goes to the run's callbacks.

A callback overrides any of :class:`Callback`'s hooks. ``fit`` always runs
:class:`ProgressBar` (a terminal's bar), :class:`RunFolder` (checkpoint, metrics.csv,
curves.png) and :class:`LogLines` (the "Epoch[..] Batch [..] Speed: ..." and epoch lines)
on every worker; only rank 0 validates, so only rank 0's get ``end_epoch``.
``--tensorboard`` adds :class:`~.tensorboard.TensorBoard` on rank 0, and a caller adds its
own, as the benchmark adds :class:`Rates`.
"""
import logging
import sys

from ..utils.progress import Progress

__all__ = ["Callback", "ProgressBar", "LogLines", "RunFolder", "Rates"]

log = logging.getLogger("mobilenet_skip")


class Callback(object):
    """The hooks, each a no-op here."""

    def begin_epoch(self, epoch, done, total):
        """Epoch ``epoch`` (from 1) starts, ``done`` of its ``total`` batches trained."""

    def end_batch(self, done):
        """A batch was stepped; ``done`` batches of the epoch are."""

    def window(self, info):
        """A log window closed: ``info`` has epoch, done, total, samples_per_s (over all
        workers), loss, top1 and lr."""

    def end_training(self, epoch):
        """The epoch's batches are done (validation, if any, comes next)."""

    def end_epoch(self, row, net, trainer):
        """Rank 0 validated the epoch: ``row`` is its metrics.csv row."""

    def end_run(self):
        """``fit`` is about to return, done, stopped or failed: release what is held."""


class ProgressBar(Callback):
    """:class:`~mobilenet_skip.utils.progress.Progress` over an epoch's batches, on a terminal
    only (a log file gets the log lines, not a bar)."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.bar = None

    def begin_epoch(self, epoch, done, total):
        if getattr(self.stream, "isatty", lambda: False)():
            self.bar = Progress(total, "epoch %d" % epoch, unit="batch", stream=self.stream)
            self.bar.update(done)

    def end_batch(self, done):
        if self.bar is not None:
            self.bar.update(1)

    def end_training(self, epoch):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LogLines(Callback):
    """MXNet's log lines: one per window, one per validated epoch."""

    def window(self, info):
        log.info("Epoch[%d] Batch [%d/%d]\tSpeed: %.2f samples/sec\tloss=%.4f\t"
                 "top1=%.4f\tlr=%.6g", info["epoch"], info["done"], info["total"],
                 info["samples_per_s"], info["loss"], info["top1"], info["lr"])

    def end_epoch(self, row, net, trainer):
        log.info("Epoch[%d] val top1=%.4f top5=%.4f loss=%.4f | train loss=%.4f top1=%.4f | "
                 "%.1fs, %.1f samples/sec, lr=%.6g", row["epoch"], row["val_top1"],
                 row["val_top5"], row["val_loss"], row["train_loss"], row["train_top1"],
                 row["epoch_time_s"], row["samples_per_s"], row["lr"])


class RunFolder(Callback):
    """Each validated epoch into the run folder (:meth:`RunDir.end_epoch`)."""

    def __init__(self, run):
        self.run = run

    def end_epoch(self, row, net, trainer):
        self.run.end_epoch(row, net, trainer)


class Rates(Callback):
    """The samples/s of every log window, in order (what the benchmark reports)."""

    def __init__(self):
        self.rates = []

    def window(self, info):
        self.rates.append(info["samples_per_s"])
