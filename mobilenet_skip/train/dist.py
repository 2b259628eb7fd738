"""What ``dist_sync`` training needs beyond MXNet's kvstore: one step count for every
worker, and a watchdog so that a lost peer ends the job instead of hanging it.

Under ``dist_sync`` every push waits for the same push from every worker. A worker that
runs one step more than the others, or a peer that died, therefore blocks the rest
forever; ps-lite (MXNet 1.9.1's parameter server) has no timeout that ends such a wait:
its heartbeats only feed the scheduler's dead-node list for recovery, and its resender
only repeats unacknowledged messages, and the survivors of a dead peer send none.
"""
import logging
import os
import sys
import threading
import time

from ..errors import UserError

__all__ = ["common_iters", "Watchdog", "EXIT_PEER_LOST"]

log = logging.getLogger("mobilenet_skip")

EXIT_PEER_LOST = 4


def common_iters(num_records, num_workers, batch):
    """Batches per epoch that every worker of ``num_workers`` can run, from the record count.

    dmlc's indexed RecordIO split gives each part ``ceil(n / W)`` records and the last
    part the rest (:func:`mobilenet_skip.data.records.shard_size`), so the last shard is the
    shortest: ``n - (W - 1) * ceil(n / W)``, which is at most ``n // W``. All workers run
    that shard's batch count, so none waits for a push that never comes; a longer shard
    stops there. (``(n // W) // batch`` alone can exceed the last shard's count: 13
    records on 4 workers give shards 4, 4, 4, 1.)

    Parameters
    ----------
    num_records : int
        Records in the training ``.rec``.
    num_workers : int
        Workers of the ``dist_sync`` job (1 otherwise).
    batch : int
        Images per step on one worker (``batch_size x devices``).

    Returns
    -------
    int
        The common batches per epoch; 0 when the shortest shard holds less than a batch.
    """
    from ..data.records import shard_size
    return shard_size(num_records, num_workers, num_workers - 1) // batch


class Watchdog(object):
    """Ends this worker with one line when no training step finishes for ``timeout`` s.

    :meth:`beat` marks progress; :meth:`paused` covers work that waits for no peer
    (rank 0's validation and checkpoints). The check runs in a daemon thread, because
    the main thread is stuck inside MXNet's engine when a peer is gone; it exits with
    ``os._exit`` since nothing else could unwind that thread.

    Parameters
    ----------
    timeout : float
        Seconds without progress before exiting; 0 disables the watchdog.
    rank : int
        This worker's rank, for the message.
    """

    def __init__(self, timeout, rank):
        self.timeout, self.rank = float(timeout), rank
        self._last = time.monotonic()
        self._paused = 0
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        if self.timeout > 0:
            self._thread = threading.Thread(target=self._watch, name="dist-watchdog",
                                            daemon=True)
            self._thread.start()
        return self

    def beat(self):
        self._last = time.monotonic()

    def paused(self):
        """Context manager: the time inside does not count."""
        dog = self

        class _Pause(object):
            def __enter__(self):
                dog._paused += 1

            def __exit__(self, *exc):
                dog._paused -= 1
                dog.beat()
                return False
        return _Pause()

    def stop(self):
        self._stop.set()

    def _watch(self):
        period = min(5.0, max(self.timeout / 4.0, 0.2))
        while not self._stop.wait(period):
            if self._paused:
                continue
            idle = time.monotonic() - self._last
            if idle > self.timeout:
                self._expire(idle)

    def _expire(self, idle):
        message = ("error: dist_sync worker rank %d: no training step finished for %.0f s "
                   "(dist_timeout %g s); a worker, server or the scheduler of this job is "
                   "probably gone, so this worker exits. If rank 0's validation and "
                   "checkpoint take longer than that, raise --dist-timeout"
                   % (self.rank, idle, self.timeout))
        try:
            sys.stdout.flush()
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
        finally:
            os._exit(EXIT_PEER_LOST)


def check_timeout(value):
    """Refuse a negative or non-numeric ``dist_timeout`` with one line."""
    try:
        ok = float(value) >= 0 and not isinstance(value, bool)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UserError("dist_timeout=%r: it must be seconds >= 0 (0 disables the dist_sync "
                        "watchdog)" % (value,))
    return float(value)
