"""What a training run does besides stepping: stop cleanly on a signal, keep the dist
watchdog fed, carry an interrupted epoch's running sums, and name a NaN loss's batch."""
import logging
import signal

from ..data.wrapped import WrappedIter

__all__ = ["NonFiniteLoss", "StopRequest", "BeatingIter", "epoch_sums", "restore_sums",
           "nan_message"]

log = logging.getLogger("mobilenet_skip")


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and batch."""


class StopRequest(object):
    """SIGINT (Ctrl-C) or SIGTERM sets a flag the loop checks between batches; a second
    signal aborts.

    SLURM and Kubernetes send SIGTERM some time before they kill a job, so it is treated
    exactly like Ctrl-C: the batch finishes, ``<model>-interrupted.*`` is saved and the
    tool exits 0, to be continued with ``--resume``.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        # dist.Agreement sets deferred: a signal only makes the request pending, and the
        # workers' vote after each batch sets requested on all of them at once (by_peer
        # on those no signal reached yet)
        self.deferred = self.pending = self.by_peer = False
        self.signal_name = None
        self._previous = {}

    def __enter__(self):
        def handler(signum, frame):
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            if self.by_peer:  # our own signal, late: this worker is stopping already
                self.by_peer = False
                log.warning("%s: already stopping with the other workers", name)
                return
            if self.requested or self.pending:
                raise KeyboardInterrupt
            self.signal_name = name
            if self.deferred:
                self.pending = True
            else:
                self.requested = True
            log.warning("%s: finishing this batch, then saving a checkpoint "
                        "(send it again to abort without saving)", self.signal_name)
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, handler)
            except ValueError:  # not the main thread: leave signals alone
                break
        return self

    def __exit__(self, *exc):
        if self.requested:  # a late signal (dist_sync: sent to each worker apart) must
            return False    # not kill the saving or the exit barrier: keep the handler
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
        return False


class BeatingIter(WrappedIter):
    """``train_data`` that tells the dist watchdog each time the loop asks for a batch:
    the loop only gets there once the previous step's push was accepted."""

    def __init__(self, data_iter, beat):
        super(BeatingIter, self).__init__(data_iter)
        self._beat = beat

    def reset(self):
        self._beat()
        self.inner.reset()

    def next(self):
        self._beat()
        return self.inner.next()


def epoch_sums(acc, seconds):
    """The epoch's running sums so far (per device), JSON-ready, for an interrupted
    checkpoint."""
    return {"loss": [float(v.asscalar()) for v in acc.epoch_loss],
            "correct": [float(v.asscalar()) for v in acc.epoch_correct],
            "count": int(acc.epoch_count), "seconds": float(seconds)}


def restore_sums(acc, sums):
    """Start an epoch from an interrupted run's sums (device by device when the device
    count is the same, so the float32 additions happen in the same order)."""
    for name in ("loss", "correct"):
        values, target = sums[name], getattr(acc, "epoch_" + name)
        if len(values) != len(target):
            values = [sum(values)] + [0.0] * (len(target) - 1)
        for arr, v in zip(target, values):
            arr[:] = v
    acc.epoch_count = int(sums["count"])


def nan_message(epoch, batch, ckpt):
    """The NaN/inf error: where it happened and whether the last checkpoint is intact."""
    last = ckpt.epochs()
    kept = ("the last good checkpoint, %s, is intact" % ckpt.path(last[-1]["tag"], "params")
            if last else "no checkpoint had been written yet")
    return ("loss became NaN/inf at epoch %d, batch %d; stopped without saving (%s). Lower "
            "--lr, keep --clip-gradient on, or check the data" % (epoch, batch + 1, kept))
