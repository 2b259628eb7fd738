"""How the workers of a run train together, chosen once by :func:`strategy`: this
machine alone (:class:`LocalStrategy`, the default) or a worker of a ``dist_sync`` job
(:class:`DistSyncStrategy`). ``fit`` calls the same hooks of either.

Under ``dist_sync`` every push waits for the same push from every worker. A worker that
runs one step more than the others, or a peer that died, therefore blocks the rest
forever; ps-lite (MXNet 1.9.1's parameter server) has no timeout that ends such a wait:
its heartbeats only feed the scheduler's dead-node list for recovery, and its resender
only repeats unacknowledged messages, and the survivors of a dead peer send none. So the
workers run one step count (the shortest shard's), stop after the same batch, and a
watchdog ends a worker whose peers are gone.
"""
import logging
import os
import sys
import threading
import time

from ..errors import UserError
from .guard import StopRequest

__all__ = ["strategy", "LocalStrategy", "DistSyncStrategy", "Watchdog", "check_timeout",
           "exit_without_barrier_unless_done", "EXIT_PEER_LOST"]

log = logging.getLogger("mobilenet_skip")

EXIT_PEER_LOST = 4


def strategy(cfg, num_devices):
    """The kvstore ``cfg.kv_store`` names, and how this worker trains with it.

    A ``dist`` store gives a :class:`DistSyncStrategy` whose watchdog runs from here on:
    a rank that fails at any later stage (a refusal on rank 0, say) leaves its peers
    blocked in a kvstore call, and it is not stopped on an error, so the failing rank's
    exit is bounded too. Any other store gives the :class:`LocalStrategy`.
    """
    from .devices import make_kvstore
    kvstore = make_kvstore(cfg, num_devices)[0]
    if not str(cfg.kv_store).startswith("dist"):
        return LocalStrategy(kvstore)
    return DistSyncStrategy(kvstore, check_timeout(cfg.dist_timeout)).start()


class LocalStrategy(object):
    """One machine: rank 0 of one worker, the kvstore reducing over its devices alone.

    Its hooks are what :class:`DistSyncStrategy` overrides, and do nothing here.

    Parameters
    ----------
    kvstore : KVStore, str or None
        What the Trainer reduces gradients with (``device``, ``nccl``; None for one device).
    rank, num_workers : int
        This worker and the job's workers.
    """

    heartbeat = None  # called each time the loop asks for a batch (a watchdog's feed)

    def __init__(self, kvstore=None, rank=0, num_workers=1):
        self.kvstore, self.rank, self.num_workers = kvstore, int(rank), int(num_workers)

    def shards(self, num_records):
        """(records of this worker's shard, records of the shortest shard).

        dmlc's indexed RecordIO split gives each part ``ceil(n / W)`` records and the last
        part the rest (:func:`mobilenet_skip.data.records.shard_size`), so the last shard is
        the shortest: ``n - (W - 1) * ceil(n / W)``, at most ``n // W``. Every worker runs
        that shard's batch count, so none waits for a push that never comes; a longer
        shard stops there. (``n // W`` alone can exceed the last shard: 13 records on 4
        workers give shards 4, 4, 4, 1.)
        """
        from ..data.records import shard_size
        return (shard_size(num_records, self.num_workers, self.rank),
                shard_size(num_records, self.num_workers, self.num_workers - 1))

    def stop_request(self):
        """The :class:`~.guard.StopRequest` the loop checks between batches."""
        return StopRequest()

    def on_rank0(self, fn, *args):
        """``fn(*args)`` on rank 0, the worker that validates and reports; None elsewhere."""
        return fn(*args)

    def share(self, net):
        """Set up what the workers agree on, once the Trainer's kvstore is initialised."""

    def begin_epoch(self, acc, done):
        """An epoch starts, ``done`` batches in; ``acc`` holds its carried sums."""

    def end_batch(self, stop):
        """A batch was stepped; ``stop`` is the run's :class:`~.guard.StopRequest`."""

    def end_training(self, acc):
        """The epoch's batches are done; ``acc``'s epoch sums are read next."""

    def finish(self):
        """Training ended without an error."""


class DistSyncStrategy(LocalStrategy):
    """A worker of a ``dist_sync`` job: its shard of the data, a watchdog, and what every
    worker must agree on, all-reduced through the kvstore (the server sums the workers'
    pushes of a key; the Trainer does not update on it).

    * After each batch, whether any worker was asked to stop (SIGTERM/Ctrl-C): all stop
      after the same batch, however far apart the signals reach them, so rank 0's
      interrupted checkpoint is one that every worker's weights match.
    * When an epoch's batches end (or stop), the epoch's loss, correct and count sums,
      so that metrics.csv's train_loss/train_top1 cover every worker's shard, and the
      BatchNorm running statistics, averaged over the workers, so that rank 0 validates
      and saves statistics of all the data and every worker prints the same checksum.
      A resumed epoch's carried sums are already global: rank 0 alone keeps them.

    Rank 0 alone validates and writes, with the watchdog paused: no peer waits for that.

    Parameters
    ----------
    kv : KVStore
        The ``dist_sync`` store; its ``rank`` and ``num_workers`` are this worker's.
    timeout : float
        ``dist_timeout``: seconds without a finished step before this worker exits.
    """

    KEY = 1 << 24  # far above the Trainer's keys (its parameters' indices)

    def __init__(self, kv, timeout=0):
        super(DistSyncStrategy, self).__init__(kv, kv.rank, kv.num_workers)
        self.dog = Watchdog(timeout, self.rank)
        self.heartbeat = self.dog.beat  # the loop only asks once the last push was taken
        self.stats = []

    def start(self):
        """Start the watchdog; until :meth:`finish`, exit without MXNet's exit barrier."""
        self.dog.start()
        exit_without_barrier_unless_done(self.kvstore, self.dog)
        return self

    def stop_request(self):
        # a signal only makes the request pending, and the workers' vote after each batch
        # sets it on all of them at once
        return StopRequest(deferred=True)

    def on_rank0(self, fn, *args):
        if self.rank != 0:
            return None
        with self.dog.paused():
            return fn(*args)

    def share(self, net):
        import mxnet as mx
        from ..runs.bnstats import running_stats
        self.stats = running_stats(net)
        size = sum(p.data().size for p in self.stats)
        for offset, length in enumerate((1, 3, max(size, 1))):  # every rank, in step
            self.kvstore.init(self.KEY + offset, mx.nd.zeros((length,)))

    def _sum(self, offset, value):
        import mxnet as mx
        out = mx.nd.zeros_like(value)
        self.kvstore.push(self.KEY + offset, value)
        self.kvstore.pull(self.KEY + offset, out=out)
        return out

    def begin_epoch(self, acc, done):
        if done and self.rank != 0:  # the carried sums are every worker's already
            for arr in acc.epoch_loss + acc.epoch_correct:
                arr[:] = 0
            acc.epoch_count = 0

    def end_batch(self, stop):
        import mxnet as mx
        mine = stop.pending or stop.requested
        if self._sum(0, mx.nd.array([float(mine)])).asscalar() > 0:
            if not mine:
                stop.by_peer = True
                log.warning("a stop was requested on another worker: stopping after this "
                            "batch, as every worker does")
            stop.requested = True

    def end_training(self, acc):
        import mxnet as mx
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
            mean = self._sum(2, flat.astype("float32")) / self.num_workers
            offset = 0
            for p in self.stats:
                part = mean[offset:offset + p.data().size].reshape(p.data().shape)
                offset += p.data().size
                for copy in p.list_data():
                    part.astype(copy.dtype).copyto(copy)

    def finish(self):
        self.dog.stop()


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
