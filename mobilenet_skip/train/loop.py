"""The training job behind ``tools/train_imagenet.py``: :func:`fit`.

Gluon ``Trainer`` over one context per device, MXNet's kvstore for reduction
(``device``/``nccl`` on one machine, ``dist_sync`` across machines: :mod:`.dist`'s
strategy, chosen once), the paper's recipe (label smoothing, global-norm clipping, the
registered lr schedule), atomic epoch checkpoints with exact resume. ``fit`` returns the
checkpoint the recipe chose (last or best epoch); exporting it is the caller's
(``mobilenet_skip.deploy.export_run``).

A batch's path is :func:`_train_epoch` here and :mod:`.step`. The step queues its work
without waiting for the device: losses and accuracy are accumulated as NDArrays and read
every ``log_interval`` batches (under ``dist_sync`` the workers' stop vote after each
batch is also read). Everything reported goes through callbacks (:mod:`.callbacks`).
"""
import contextlib
import logging
import time
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from . import callbacks as cb, dist, feed, resume as resume_mod
from .devices import init_kvstore, parse_contexts
from ..runs.scorer import evaluate
from .guard import NonFiniteLoss, StopRequest
from .net import build_net, hybridize, params_checksum
from ..runs.folder import RunDir
from .tensorboard import TensorBoard
from .step import Accumulator, TrainStep, make_step
from ..utils.threads import started_with
from ..errors import UserError
from ..optim.rules import effective_lr, schedule

__all__ = ["fit", "TrainState"]

log = logging.getLogger("mobilenet_skip")


@dataclass(frozen=True)
class TrainState(object):
    """What one training run holds, built once by :func:`fit` and read by each epoch.

    ``cfg`` is the resolved recipe; ``ctxs`` the devices, ``strategy`` how this worker
    trains with the others (:mod:`.dist`) and ``global_batch`` the images per step over
    all of them; ``train_data`` yields ``iters_per_epoch`` batches an epoch and
    ``val_data`` (rank 0 only) is scored after each; ``step`` is the :class:`~.step.TrainStep`
    (its ``trainer`` the optimizer), ``lr_at`` the schedule in epochs; ``folder`` the
    :class:`~mobilenet_skip.runs.folder.RunDir` written to; ``acc`` the running sums, ``stop`` the signals'
    :class:`~.guard.StopRequest`, ``calls`` the callbacks and ``fused_pairs`` the
    BatchNorm-ReLU pairs trained fused.
    """
    cfg: dict
    ctxs: list
    strategy: dist.LocalStrategy
    global_batch: int
    train_data: object
    val_data: object
    iters_per_epoch: int
    net: object
    step: TrainStep
    lr_at: object
    folder: RunDir
    acc: Accumulator
    stop: StopRequest
    calls: list
    fused_pairs: int

    @property
    def trainer(self):
        return self.step.trainer


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
    # Devices, and how this worker trains with the others (dist.py: alone, or as one
    # worker of a dist_sync job, watched from here on); the global batch; seeds.
    cfg = feed.absolute_paths(cfg)  # config.yaml names the same data from any directory
    ctxs = _contexts(cfg)
    strategy = dist.strategy(cfg, len(ctxs))
    # before anything is built: a missing tensorboardX is refused at once
    board = strategy.on_rank0(_tensorboard, cfg) or []
    global_batch = cfg.batch_size * len(ctxs) * strategy.num_workers
    mx.random.seed(cfg.seed)
    np.random.seed(cfg.seed)

    # The run folder (runs/folder.py) and where it goes on from (resume.py): its refusals
    # compare the data's fingerprint (feed.py, from the files' headers) and come before
    # anything is built or written, or any image decoded.
    found = feed.identify(cfg) if train_data is None else None
    folder = RunDir.for_training(cfg, strategy.rank, global_batch, found)
    begin = resume_mod.plan(folder, resume, overwrite, found,
                            worker_batch=cfg.batch_size * len(ctxs))
    # This worker's data: its shard and the batches per epoch every worker runs (feed.py).
    data = feed.load(cfg, len(ctxs), strategy, train_data, val_data, iters_per_epoch, found)

    # The network (net.py), its step and optimizer (step.py), then the checkpoint loaded
    # into them.
    if begin.kept:  # config.yaml (and TensorBoard's copy) keep naming the starting weights
        cfg = folder.cfg = cfg.replace(**begin.kept)
        for board_ in board:
            board_.cfg = cfg
    # a checkpoint's weights replace the warm start's and the fine-tuning source's
    net = build_net(cfg, ctxs, load=not begin.checkpoint)
    step = make_step(net, cfg, ctxs, strategy.kvstore, global_batch)
    lr_at = schedule(cfg, global_batch)
    resume_mod.restore(folder, begin, net, step.trainer, ctxs, resume)
    _log_lr(cfg, lr_at, global_batch, data.iters_per_epoch, begin)
    init_kvstore(step.trainer)
    fused_pairs = hybridize(net, cfg)
    log.info("model %s x%g, %d classes | %d device(s) %s, %d worker(s), global batch %d | "
             "%d batches/epoch, %d epochs", cfg.model, cfg.multiplier, cfg.classes,
             len(ctxs), ",".join(str(c) for c in ctxs), strategy.num_workers, global_batch,
             data.iters_per_epoch, cfg.num_epochs)
    log.info("OpenMP threads: %s (omp_threads %s; the start of the output says why)",
             started_with() or "MXNet's default", cfg.omp_threads)

    # Reports (callbacks.py); the run folder first: an epoch's line is logged once its
    # checkpoint is safe. The workers agree on a stop and on each epoch's sums through
    # the kvstore, once the Trainer has set it up (dist.py).
    stop = strategy.stop_request()
    strategy.share(net)
    state = TrainState(
        cfg=cfg, ctxs=ctxs, strategy=strategy, global_batch=global_batch,
        train_data=data.train, val_data=data.val, iters_per_epoch=data.iters_per_epoch,
        net=net, step=step, lr_at=lr_at, folder=folder, acc=Accumulator(ctxs), stop=stop,
        calls=[cb.ProgressBar(), cb.RunFolder(folder), cb.LogLines()] + board
        + list(callbacks),
        fused_pairs=fused_pairs)

    # The epochs: train (a stop request saves and ends), then rank 0 validates and records.
    interrupted = False
    with stop, _ending(state.calls):
        for epoch in range(begin.epoch, cfg.num_epochs):
            loss, top1, done, train_time = _train_epoch(state, epoch + 1, begin)
            begin = resume_mod.FRESH
            if stop.requested:
                interrupted = True
                folder.save_interrupted(net, step.trainer, epoch, done, data.iters_per_epoch,
                                        state.acc.sums(train_time))
                break
            strategy.on_rank0(_validate, state, epoch + 1, loss, top1, train_time)
    log.info("final trained-parameter checksum (rank %d): %s", strategy.rank,
             params_checksum(net))
    strategy.finish()
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
    ctxs = parse_contexts(cfg.gpus, cfg.cpu_contexts)
    if cfg.dtype == "float16" and ctxs[0].device_type == "cpu":
        raise UserError("--dtype float16 needs GPUs: MXNet's CPU operators have no float16 "
                        "GEMM; pass --gpus, or --dtype float32 on the CPU")
    if ctxs[0].device_type == "cpu" and mx.context.num_gpus() > 0:
        log.warning("training on the CPU although %d GPU(s) are visible; pass --gpus 0,1,...",
                    mx.context.num_gpus())
    return ctxs


def _tensorboard(cfg):
    return [TensorBoard(cfg.tensorboard, cfg)] if cfg.tensorboard else []


def _log_lr(cfg, lr_at, global_batch, iters_per_epoch, begin):
    """The lr as the recipe names it, as scaled to the global batch, and where it goes on."""
    log.info("lr %g for a global batch of %s -> effective lr %g at global batch %d%s",
             cfg.lr, cfg.lr_batch or "any", effective_lr(cfg, global_batch)[0],
             global_batch,
             "; at epoch %d%s: %g" % (begin.epoch + 1,
                                      " batch %d" % begin.batches if begin.batches else "",
                                      lr_at(begin.epoch + begin.batches
                                            / float(iters_per_epoch)))
             if (begin.epoch or begin.batches) else "")


def _train_epoch(state, epoch_no, begin):
    """Train the rest of epoch ``epoch_no`` (from 1), from batch ``begin.batches``.

    The epoch's batches come in the order of (seed, epoch) (``set_epoch``), and the
    batches an earlier run trained on are read and skipped, so a resumed epoch sees
    exactly the batches of an uninterrupted one. Before each update the lr is set to
    ``lr_at(epoch + batch / iters_per_epoch)``. ``begin.carried`` are the running sums
    of the epoch's first part (:meth:`.step.Accumulator.sums`).

    Returns
    -------
    tuple
        (mean train loss, train top-1, batches done, seconds).
    """
    train_data, acc, step, trainer = state.train_data, state.acc, state.step, state.trainer
    total, calls, strategy, stop = state.iters_per_epoch, state.calls, state.strategy, state.stop
    if hasattr(train_data, "set_epoch"):
        train_data.set_epoch(epoch_no - 1)
    else:
        train_data.reset()
    acc.reset_epoch()
    earlier = 0.0
    if begin.carried:
        acc.restore(begin.carried)
        earlier = begin.carried.get("seconds", 0.0)
    tic = last_log = time.time()
    skip = done = begin.batches
    if done:  # the rate of the last update, should none remain
        trainer.set_learning_rate(state.lr_at(epoch_no - 1 + (done - 1) / float(total)))
    strategy.begin_epoch(acc, done)
    for c in calls:
        c.begin_epoch(epoch_no, done, total)
    for i, batch in enumerate(train_data):
        if i < skip:
            continue
        if done >= total or batch.pad:
            break
        trainer.set_learning_rate(state.lr_at(epoch_no - 1 + done / float(total)))
        xs, ys = step.split(batch.data[0], batch.label[0])
        losses, outputs = step(xs, ys)
        acc.add(done, losses, outputs, ys)
        done += 1
        strategy.end_batch(stop)  # dist_sync: every worker stops after the same batch
        for c in calls:
            c.end_batch(done)
        if done % state.cfg.log_interval == 0 or stop.requested:
            count = acc.count
            loss, top1, bad = acc.read_window()
            if bad is not None:
                raise NonFiniteLoss(_nan_message(epoch_no, bad, state.folder.checkpoints))
            now = time.time()
            info = {"epoch": epoch_no, "done": done, "total": total,
                    "samples_per_s": count / max(now - last_log, 1e-9) * strategy.num_workers,
                    "loss": loss, "top1": top1, "lr": trainer.learning_rate}
            for c in calls:
                c.window(info)
            last_log = now
        if stop.requested:
            break
    strategy.end_training(acc)  # dist_sync: the epoch's sums become every worker's
    for c in calls:
        c.end_training(epoch_no)
    loss, top1, bad = acc.read_epoch()
    if bad is not None or not np.isfinite(loss):
        raise NonFiniteLoss(_nan_message(epoch_no, bad if bad is not None else done - 1,
                                         state.folder.checkpoints))
    mx.nd.waitall()
    return loss, top1, done, earlier + time.time() - tic


def _nan_message(epoch, batch, ckpt):
    """The NaN/inf error: where it happened and whether the last checkpoint is intact."""
    last = ckpt.epochs()
    kept = ("the last good checkpoint, %s, is intact" % ckpt.path(last[-1]["tag"], "params")
            if last else "no checkpoint had been written yet")
    return ("loss became NaN/inf at epoch %d, batch %d; stopped without saving (%s). Lower "
            "--lr, keep --clip-gradient on, or check the data" % (epoch, batch + 1, kept))


def _validate(state, epoch_no, loss, top1, train_time):
    """Score epoch ``epoch_no`` on the val data and report its metrics row (rank 0)."""
    tic = time.time()
    val = evaluate(state.net, state.val_data, state.ctxs, state.cfg.dtype)
    val_time = time.time() - tic
    row = {"epoch": epoch_no, "train_loss": loss, "train_top1": top1,
           "val_loss": val["loss"], "val_top1": val["top1"], "val_top5": val["top5"],
           "lr": state.trainer.learning_rate,
           "epoch_time_s": train_time + val_time, "val_time_s": val_time,
           # the epoch's sums are every worker's (the strategy's end_training)
           "samples_per_s": state.acc.epoch_count / max(train_time, 1e-9),
           "train_images": state.acc.epoch_count}
    for c in state.calls:
        c.end_epoch(row, state.net, state.trainer)


def _result(state, interrupted):
    """What :func:`fit` returns (see there)."""
    folder, trainer = state.folder, state.trainer
    best = folder.best
    chosen = state.strategy.on_rank0(_chosen, folder, interrupted)
    return {"best_epoch": best["epoch"] if best else None,
            "best_val_top1": best["val_top1"] if best else None,
            "last": folder.rows[-1] if folder.rows else None, "interrupted": interrupted,
            "export_epoch": state.cfg.export_epoch,
            "chosen_epoch": chosen["epoch"] if chosen else None,
            "checkpoint": folder.checkpoints.path(chosen["epoch"], "params") if chosen
            else None,
            "summary": folder.summary() if chosen else None, "save_dir": state.cfg.save_dir,
            "lr": trainer.learning_rate, "num_update": trainer.optimizer.num_update,
            "fused_pairs": state.fused_pairs}


def _chosen(folder, interrupted):
    """The metrics row of the checkpoint to export; none when the run was interrupted."""
    return folder.selected if folder.best and not interrupted else None
