"""The training job behind ``tools/train_imagenet.py``: :func:`fit`.

Gluon ``Trainer`` over one context per device, MXNet's kvstore for reduction
(``device``/``nccl`` on one machine, ``dist_sync`` across machines), the paper's
recipe (label smoothing, global-norm clipping, the registered lr schedule), atomic epoch
checkpoints with exact resume. ``fit`` returns the checkpoint the recipe chose (last or
best epoch); exporting it is the caller's (``mobilenet_skip.deploy.export_run``).

Nothing here syncs with the device inside the step: losses and accuracy are
accumulated as NDArrays and read every ``log_interval`` batches. Everything reported
goes through callbacks (:mod:`.callbacks`).
"""
import contextlib
import logging
import time
from dataclasses import dataclass, field

import mxnet as mx
import numpy as np

from . import callbacks as cb, dist, guard, resume as resume_mod
from .devices import init_kvstore, make_kvstore, parse_contexts
from ..runs.scorer import evaluate
from .feed import absolute_paths, fingerprint, record_iters
from .net import build_net, hybridize, params_checksum
from ..runs.folder import RunDir
from .tensorboard import TensorBoard
from .step import Accumulator, make_step
from ..utils.threads import started_with
from ..errors import UserError
from ..optim.rules import effective_lr, schedule

__all__ = ["fit", "TrainState"]

log = logging.getLogger("mobilenet_skip")


@dataclass
class TrainState(object):
    """What one training run holds, built once by :func:`fit` and read by each epoch.

    ``cfg`` is the resolved recipe; ``ctxs`` the devices, ``rank`` of ``num_workers``
    and ``global_batch`` (images per step over all of them); ``train_data`` yields
    ``iters_per_epoch`` batches an epoch and ``val_data`` (rank 0 only) is scored after
    each; ``step`` is the :class:`~.step.TrainStep` (its ``trainer`` the optimizer),
    ``lr_at`` the schedule in epochs; ``folder`` the :class:`~.rundir.RunDir` written
    to, ``dog`` the dist watchdog, ``calls`` the callbacks, ``acc`` the running sums and
    ``fused_pairs`` the BatchNorm-ReLU pairs trained fused.
    """
    cfg: dict
    ctxs: list
    rank: int
    num_workers: int
    global_batch: int
    train_data: object
    val_data: object
    iters_per_epoch: int
    net: object
    step: object
    lr_at: object
    folder: RunDir
    dog: dist.Watchdog
    calls: list = field(default_factory=list)
    acc: Accumulator = None
    fused_pairs: int = 0

    @property
    def trainer(self):
        return self.step.trainer

    def nan_message(self, epoch, batch):
        return guard.nan_message(epoch, batch, self.folder.checkpoints)


def fit(cfg, resume=False, train_data=None, val_data=None, iters_per_epoch=None,
        overwrite=False, callbacks=()):
    """Train, validate and checkpoint as the resolved recipe ``cfg`` says.

    Parameters
    ----------
    cfg : dict
        A resolved recipe (:func:`mobilenet_skip.config.recipes.resolve`).
    resume : bool
        Continue from the newest complete checkpoint in ``save_dir``.
    overwrite : bool
        Start afresh even if ``save_dir`` holds checkpoints (they are deleted);
        otherwise such a directory is refused, so no run is clobbered by accident.
    train_data, val_data : mx.io.DataIter, optional
        Iterators to use instead of ImageRecordIters over ``rec_train``/``rec_val``.
    iters_per_epoch : int, optional
        Batches per epoch of ``train_data`` (counted when not given).
    callbacks : sequence of :class:`.callbacks.Callback`
        Reported to after the built-in ones.

    Returns
    -------
    dict
        ``best_epoch``, ``best_val_top1``, ``last`` (the final metrics row),
        ``export_epoch`` (``last`` or ``best``, the recipe's), ``chosen_epoch`` and
        ``checkpoint`` (its ``.params``; both None on non-zero ranks or when
        interrupted: nothing to export; the caller exports it), ``summary`` (the run's
        summary line, or None), ``save_dir``, ``interrupted``, ``lr``, ``num_update`` and
        ``fused_pairs`` (BatchNorm-ReLU pairs trained fused).
    """
    # Devices, workers and the global batch; seeds.
    cfg = absolute_paths(cfg)  # config.yaml names the same data from any directory
    ctxs = _contexts(cfg)
    kvstore, rank, num_workers = make_kvstore(cfg, len(ctxs))
    distributed = str(cfg["kv_store"]).startswith("dist")
    # from the moment the kvstore exists to the checksum's last read: a rank that fails
    # in any stage (a refusal on rank 0, say) leaves its peers blocked in a kvstore
    # call, and it is not stopped on an error, so the failing rank's exit is bounded too
    dog = dist.Watchdog(dist.check_timeout(cfg.get("dist_timeout", 0)) if distributed else 0,
                        rank).start()
    if distributed:
        dist.exit_without_barrier_unless_done(kvstore, dog)
    # before anything is built: a missing tensorboardX is refused at once (rank 0 writes)
    board = [TensorBoard(cfg["tensorboard"], cfg)] if cfg.get("tensorboard") and not rank \
        else []
    global_batch = cfg["batch_size"] * len(ctxs) * num_workers
    mx.random.seed(cfg["seed"])
    np.random.seed(cfg["seed"])

    # This worker's data (feed.py), and under dist_sync the watchdog it feeds (dist.py).
    data = None
    if train_data is None:
        train_data, val_data, iters_per_epoch = record_iters(cfg, len(ctxs), rank,
                                                                num_workers)
        data = fingerprint(cfg)
    elif iters_per_epoch is None:
        train_data.reset()
        iters_per_epoch = sum(1 for b in train_data if not b.pad)
    if cfg["batches_per_epoch"]:
        iters_per_epoch = min(iters_per_epoch, cfg["batches_per_epoch"])
    if distributed:
        train_data = guard.BeatingIter(train_data, dog.beat)

    # The run folder (rundir.py) and where it goes on from (resume.py: refusals come
    # before anything is built or written), the network (net.py), its step and optimizer
    # (step.py), then the checkpoint loaded into them.
    folder = RunDir.for_training(cfg, rank, global_batch, data)
    begin = resume_mod.plan(folder, resume, overwrite, data,
                            worker_batch=cfg["batch_size"] * len(ctxs))
    # a checkpoint's weights replace the warm start's and the fine-tuning source's
    net = build_net(cfg, ctxs, load=not begin.checkpoint)
    state = TrainState(cfg, ctxs, rank, num_workers, global_batch, train_data, val_data,
                       iters_per_epoch, net, make_step(net, cfg, ctxs, kvstore, global_batch),
                       schedule(cfg, global_batch), folder, dog)
    resume_mod.restore(folder, begin, net, state.trainer, ctxs, resume)
    _log_lr(state, begin)
    init_kvstore(state.trainer)
    state.fused_pairs = hybridize(net, cfg)
    log.info("model %s x%g, %d classes | %d device(s) %s, %d worker(s), global batch %d | "
             "%d batches/epoch, %d epochs", cfg["model"], cfg["multiplier"], cfg["classes"],
             len(ctxs), ",".join(str(c) for c in ctxs), num_workers, global_batch,
             iters_per_epoch, cfg["num_epochs"])
    log.info("OpenMP threads: %s (omp_threads %s; the start of the output says why)",
             started_with() or "MXNet's default", cfg.get("omp_threads", "auto"))

    # Reports (callbacks.py); the run folder first: an epoch's line is logged once its
    # checkpoint is safe.
    # Under dist_sync the workers first agree (dist.py): a stop requested on any rank stops
    # every rank after the same batch, and an epoch's sums cover every worker's shard.
    state.acc = Accumulator(ctxs)
    stop = guard.StopRequest()
    agree = [dist.Agreement(kvstore, stop, net, state.acc)] if distributed else []
    state.calls = (agree + [cb.ProgressBar(), cb.RunFolder(folder), cb.LogLines()]
                   + board + list(callbacks))

    # The epochs: train (a stop request saves and ends), then rank 0 validates and records.
    interrupted = False
    with stop, _ending(state.calls):
        for epoch in range(begin.epoch, cfg["num_epochs"]):
            loss, top1, done, train_time = _train_epoch(state, epoch + 1, begin, stop)
            begin = resume_mod.FRESH
            if stop.requested:
                interrupted = True
                folder.save_interrupted(net, state.trainer, epoch, done, iters_per_epoch,
                                        guard.epoch_sums(state.acc, train_time))
                break
            if rank == 0:
                with dog.paused():  # rank 0 alone: validation and checkpoint wait for no peer
                    _validate(state, epoch + 1, loss, top1, train_time)
    log.info("final trained-parameter checksum (rank %d): %s", rank, params_checksum(net))
    dog.stop()
    return _result(state, interrupted)


@contextlib.contextmanager
def _ending(calls):
    """Tell every callback that the run ends, however it ends."""
    try:
        yield
    finally:
        for c in calls:
            c.end_run()


def _contexts(cfg):
    ctxs = parse_contexts(cfg["gpus"], cfg["cpu_contexts"])
    if cfg["dtype"] == "float16" and ctxs[0].device_type == "cpu":
        raise UserError("--dtype float16 needs GPUs: MXNet's CPU operators have no float16 "
                        "GEMM; pass --gpus, or --dtype float32 on the CPU")
    if ctxs[0].device_type == "cpu" and mx.context.num_gpus() > 0:
        log.warning("training on the CPU although %d GPU(s) are visible; pass --gpus 0,1,...",
                    mx.context.num_gpus())
    return ctxs


def _log_lr(state, begin):
    """The lr as the recipe names it, as scaled to the global batch, and where it goes on."""
    cfg = state.cfg
    log.info("lr %g for a global batch of %s -> effective lr %g at global batch %d%s",
             cfg["lr"], cfg["lr_batch"] or "any", effective_lr(cfg, state.global_batch)[0],
             state.global_batch,
             "; at epoch %d%s: %g" % (begin.epoch + 1,
                                      " batch %d" % begin.batches if begin.batches else "",
                                      state.lr_at(begin.epoch + begin.batches
                                                  / float(state.iters_per_epoch)))
             if (begin.epoch or begin.batches) else "")


def _train_epoch(state, epoch_no, begin, stop):
    """Train the rest of epoch ``epoch_no`` (from 1), from batch ``begin.batches``.

    The epoch's batches come in the order of (seed, epoch) (``set_epoch``), and the
    batches an earlier run trained on are read and skipped, so a resumed epoch sees
    exactly the batches of an uninterrupted one. Before each update the lr is set to
    ``lr_at(epoch + batch / iters_per_epoch)``. ``begin.carried`` are the running sums
    of the epoch's first part (:func:`.guard.epoch_sums`).

    Returns
    -------
    tuple
        (mean train loss, train top-1, batches done, seconds).
    """
    train_data, acc, trainer = state.train_data, state.acc, state.trainer
    total, calls = state.iters_per_epoch, state.calls
    if hasattr(train_data, "set_epoch"):
        train_data.set_epoch(epoch_no - 1)
    else:
        train_data.reset()
    acc.reset_epoch()
    earlier = 0.0
    if begin.carried:
        guard.restore_sums(acc, begin.carried)
        earlier = begin.carried.get("seconds", 0.0)
    tic = last_log = time.time()
    skip = done = begin.batches
    if done:  # the rate of the last update, should none remain
        trainer.set_learning_rate(state.lr_at(epoch_no - 1 + (done - 1) / float(total)))
    for c in calls:
        c.begin_epoch(epoch_no, done, total)
    for i, batch in enumerate(train_data):
        if i < skip:
            continue
        if done >= total or batch.pad:
            break
        trainer.set_learning_rate(state.lr_at(epoch_no - 1 + done / float(total)))
        xs, ys = state.step.split(batch.data[0], batch.label[0])
        losses, outputs = state.step(xs, ys)
        acc.add(done, losses, outputs, ys)
        done += 1
        for c in calls:
            c.end_batch(done)
        if done % state.cfg["log_interval"] == 0 or stop.requested:
            count = acc.count
            loss, top1, bad = acc.read_window()
            if bad is not None:
                raise guard.NonFiniteLoss(state.nan_message(epoch_no, bad))
            now = time.time()
            info = {"epoch": epoch_no, "done": done, "total": total,
                    "samples_per_s": count / max(now - last_log, 1e-9) * state.num_workers,
                    "loss": loss, "top1": top1, "lr": trainer.learning_rate}
            for c in calls:
                c.window(info)
            last_log = now
        if stop.requested:
            break
    for c in calls:
        c.end_training(epoch_no)
    loss, top1, bad = acc.read_epoch()
    if bad is not None or not np.isfinite(loss):
        raise guard.NonFiniteLoss(state.nan_message(epoch_no,
                                                    bad if bad is not None else done - 1))
    mx.nd.waitall()
    return loss, top1, done, earlier + time.time() - tic


def _validate(state, epoch_no, loss, top1, train_time):
    """Score epoch ``epoch_no`` on the val data and report its metrics row (rank 0)."""
    tic = time.time()
    val = evaluate(state.net, state.val_data, state.ctxs, state.cfg["dtype"])
    val_time = time.time() - tic
    row = {"epoch": epoch_no, "train_loss": loss, "train_top1": top1,
           "val_loss": val["loss"], "val_top1": val["top1"], "val_top5": val["top5"],
           "lr": state.trainer.learning_rate,
           "epoch_time_s": train_time + val_time, "val_time_s": val_time,
           # the epoch's sums are every worker's (dist.Agreement all-reduces them)
           "samples_per_s": state.acc.epoch_count / max(train_time, 1e-9),
           "train_images": state.acc.epoch_count}
    for c in state.calls:
        c.end_epoch(row, state.net, state.trainer)


def _result(state, interrupted):
    """What :func:`fit` returns (see there)."""
    folder, trainer = state.folder, state.trainer
    best = folder.best
    chosen = folder.selected if state.rank == 0 and not interrupted and best else None
    return {"best_epoch": best["epoch"] if best else None,
            "best_val_top1": best["val_top1"] if best else None,
            "last": folder.rows[-1] if folder.rows else None, "interrupted": interrupted,
            "export_epoch": state.cfg["export_epoch"],
            "chosen_epoch": chosen["epoch"] if chosen else None,
            "checkpoint": folder.checkpoints.path(chosen["epoch"], "params") if chosen
            else None,
            "summary": folder.summary() if chosen else None, "save_dir": state.cfg["save_dir"],
            "lr": trainer.learning_rate, "num_update": trainer.optimizer.num_update,
            "fused_pairs": state.fused_pairs}
