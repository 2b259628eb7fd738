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
from .callbacks import Callback

__all__ = ["common_iters", "Watchdog", "Agreement", "exit_without_barrier_unless_done",
           "EXIT_PEER_LOST"]

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

    @property
    def stopped(self):
        return self._stop.is_set()

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


def exit_without_barrier_unless_done(kv, dog):
    """At this process's exit, skip MXNet's exit barrier when ``dog`` was not stopped,
    i.e. when training ended by an error (such as rank 0's refusal of a run folder).

    The barrier waits for every worker, and its peers are blocked elsewhere (in the
    kvstore's init, or a push), so the failing worker would wait forever, and no
    watchdog can help then: Python's finalisation holds daemon threads. Without the
    barrier it exits with its own status and one line; its peers' watchdogs end them.
    """
    import atexit
    import ctypes
    import mxnet as mx

    def skip():
        if not dog.stopped:
            mx.base.check_call(mx.base._LIB.MXKVStoreSetBarrierBeforeExit(
                kv.handle, ctypes.c_int(0)))
    atexit.register(skip)


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


class Agreement(Callback):
    """What every ``dist_sync`` worker must agree on, all-reduced through the kvstore
    (the server sums the workers' pushes of a key; the Trainer does not update on it).

    * After each batch, whether any worker was asked to stop (SIGTERM/Ctrl-C): all stop
      after the same batch, however far apart the signals reach them, so rank 0's
      interrupted checkpoint is one that every worker's weights match.
    * When an epoch's batches end (or stop), the epoch's loss, correct and count sums,
      so that metrics.csv's train_loss/train_top1 cover every worker's shard, and the
      BatchNorm running statistics, averaged over the workers, so that rank 0 validates
      and saves statistics of all the data and every worker prints the same checksum.
      A resumed epoch's carried sums are already global: rank 0 alone keeps them.

    Parameters
    ----------
    kv : KVStore
        The ``dist_sync`` store, initialised by the Trainer.
    stop : :class:`~mobilenet_skip.train.guard.StopRequest`
    net : Block
    acc : :class:`~mobilenet_skip.train.step.Accumulator`
    """

    KEY = 1 << 24  # far above the Trainer's keys (its parameters' indices)

    def __init__(self, kv, stop, net, acc):
        import mxnet as mx
        from ..runs.bnstats import running_stats
        self.kv, self.stop, self.net, self.acc = kv, stop, net, acc
        stop.deferred = True  # a signal waits for the vote: no worker breaks alone
        self.stats = running_stats(net)
        self._mx = mx
        size = sum(p.data().size for p in self.stats)
        for offset, length in enumerate((1, 3, max(size, 1))):  # every rank, in step
            kv.init(self.KEY + offset, mx.nd.zeros((length,)))

    def _sum(self, offset, value):
        out = self._mx.nd.zeros_like(value)
        self.kv.push(self.KEY + offset, value)
        self.kv.pull(self.KEY + offset, out=out)
        return out

    def begin_epoch(self, epoch, done, total):
        if done and self.kv.rank != 0:  # the carried sums are every worker's already
            for arr in self.acc.epoch_loss + self.acc.epoch_correct:
                arr[:] = 0
            self.acc.epoch_count = 0

    def end_batch(self, done):
        mine = self.stop.pending or self.stop.requested
        if self._sum(0, self._mx.nd.array([float(mine)])).asscalar() > 0:
            if not mine:
                self.stop.by_peer = True
                log.warning("a stop was requested on another worker: stopping after this "
                            "batch, as every worker does")
            self.stop.requested = True

    def end_training(self, epoch):
        mx, acc = self._mx, self.acc
        cpu = mx.cpu()
        local = mx.nd.concat(*[mx.nd.add_n(*[a.copyto(cpu) for a in arrs])
                               for arrs in (acc.epoch_loss, acc.epoch_correct)], dim=0)
        total = self._sum(1, mx.nd.concat(local, mx.nd.array([acc.epoch_count]), dim=0))
        for arrs, value in zip((acc.epoch_loss, acc.epoch_correct), total[:2]):
            for i, arr in enumerate(arrs):
                arr[:] = value if i == 0 else 0
        acc.epoch_count = int(round(total[2].asscalar()))
        if self.stats:
            flat = mx.nd.concat(*[p._reduce().reshape((-1,)) for p in self.stats], dim=0)
            mean = self._sum(2, flat.astype("float32")) / self.kv.num_workers
            offset = 0
            for p in self.stats:
                part = mean[offset:offset + p.data().size].reshape(p.data().shape)
                offset += p.data().size
                for copy in p.list_data():
                    part.astype(copy.dtype).copyto(copy)
