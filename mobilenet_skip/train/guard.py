"""What ends a training run early: a signal, which stops it cleanly after a batch, and a
loss that became NaN or infinite."""
import logging
import signal

__all__ = ["NonFiniteLoss", "StopRequest"]

log = logging.getLogger("mobilenet_skip")


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and batch."""


class StopRequest(object):
    """SIGINT (Ctrl-C) or SIGTERM sets a flag the loop checks between batches; a second
    signal aborts.

    SLURM and Kubernetes send SIGTERM some time before they kill a job, so it is treated
    exactly like Ctrl-C: the batch finishes, ``<model>-interrupted.*`` is saved and the
    tool exits 0, to be continued with ``--resume``.

    Parameters
    ----------
    deferred : bool
        A signal only makes the request ``pending``, and the workers' vote after each
        batch (:meth:`.dist.DistSyncStrategy.end_batch`) sets ``requested`` on all of them
        at once (``by_peer`` on those no signal reached yet).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, deferred=False):
        self.requested = False
        self.deferred, self.pending, self.by_peer = bool(deferred), False, False
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
