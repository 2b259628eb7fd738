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
import logging
import time

import mxnet as mx
import numpy as np

from . import dist
from ..errors import UserError
from .evaluation import evaluate
from . import callbacks as cb, guard, resume as resume_mod
from .devices import init_kvstore, make_kvstore, parse_contexts
from .feed import record_iters
from .net import build_net, hybridize, params_checksum
from ..optim.rules import effective_lr, schedule
from .rundir import RunDir
from .step import Accumulator, make_step

__all__ = ["fit"]

log = logging.getLogger("mobilenet_skip")


def _train_epoch(step, train_data, acc, epoch_no, iters_per_epoch, done, stop, cfg,
                 num_workers, nan_message, lr_at, carried, calls):
    """Train the rest of one epoch, from batch ``done``.

    The epoch's batches come in the order of (seed, epoch) (``set_epoch``), and the
    ``done`` batches an earlier run trained on are read and skipped, so a resumed
    epoch sees exactly the batches of an uninterrupted one. Before each update the lr
    is set to ``lr_at(epoch + batch / iters_per_epoch)``. ``carried`` are the running
    sums of the epoch's first part (:func:`.guard.epoch_sums`).

    Returns
    -------
    tuple
        (mean train loss, train top-1, batches done, seconds).
    """
    if hasattr(train_data, "set_epoch"):
        train_data.set_epoch(epoch_no - 1)
    else:
        train_data.reset()
    acc.reset_epoch()
    earlier = 0.0
    if carried:
        guard.restore_sums(acc, carried)
        earlier = carried.get("seconds", 0.0)
    tic = last_log = time.time()
    skip = done
    if done:  # the rate of the last update, should none remain
        step.trainer.set_learning_rate(lr_at(epoch_no - 1 + (done - 1) / float(iters_per_epoch)))
    for c in calls:
        c.begin_epoch(epoch_no, done, iters_per_epoch)
    for i, batch in enumerate(train_data):
        if i < skip:
            continue
        if done >= iters_per_epoch or batch.pad:
            break
        step.trainer.set_learning_rate(lr_at(epoch_no - 1 + done / float(iters_per_epoch)))
        xs, ys = step.split(batch.data[0], batch.label[0])
        losses, outputs = step(xs, ys)
        acc.add(done, losses, outputs, ys)
        done += 1
        for c in calls:
            c.end_batch(done)
        if done % cfg["log_interval"] == 0 or stop.requested:
            count = acc.count
            loss, top1, bad = acc.read_window()
            if bad is not None:
                raise guard.NonFiniteLoss(nan_message(epoch_no, bad))
            now = time.time()
            info = {"epoch": epoch_no, "done": done, "total": iters_per_epoch,
                    "samples_per_s": count / max(now - last_log, 1e-9) * num_workers,
                    "loss": loss, "top1": top1, "lr": step.trainer.learning_rate}
            for c in calls:
                c.window(info)
            last_log = now
        if stop.requested:
            break
    for c in calls:
        c.end_training(epoch_no)
    loss, top1, bad = acc.read_epoch()
    if bad is not None or not np.isfinite(loss):
        raise guard.NonFiniteLoss(nan_message(epoch_no, bad if bad is not None else done - 1))
    mx.nd.waitall()
    return loss, top1, done, earlier + time.time() - tic


def _contexts(cfg):
    ctxs = parse_contexts(cfg["gpus"], cfg["cpu_contexts"])
    if cfg["dtype"] == "float16" and ctxs[0].device_type == "cpu":
        raise UserError("--dtype float16 needs GPUs: MXNet's CPU operators have no float16 "
                        "GEMM; pass --gpus, or --dtype float32 on the CPU")
    if ctxs[0].device_type == "cpu" and mx.context.num_gpus() > 0:
        log.warning("training on the CPU although %d GPU(s) are visible; pass --gpus 0,1,...",
                    mx.context.num_gpus())
    return ctxs


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
        summary line, or None), ``save_dir``, ``interrupted``, ``lr`` and ``num_update``.
    """
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
    global_batch = cfg["batch_size"] * len(ctxs) * num_workers
    mx.random.seed(cfg["seed"])
    np.random.seed(cfg["seed"])

    if train_data is None:
        train_data, val_data, iters_per_epoch = record_iters(cfg, len(ctxs), rank,
                                                                num_workers)
    elif iters_per_epoch is None:
        train_data.reset()
        iters_per_epoch = sum(1 for b in train_data if not b.pad)
    if cfg["batches_per_epoch"]:
        iters_per_epoch = min(iters_per_epoch, cfg["batches_per_epoch"])

    if distributed:
        train_data = guard.BeatingIter(train_data, dog.beat)
    run = RunDir.for_training(cfg, rank)
    net = build_net(cfg, ctxs)
    step = make_step(net, cfg, ctxs, kvstore, global_batch)
    trainer = step.trainer
    lr_at = schedule(cfg, global_batch)
    begin_epoch, done = resume_mod.start(run, net, trainer, ctxs, resume, overwrite,
                                         global_batch)
    log.info("lr %g for a global batch of %s -> effective lr %g at global batch %d%s",
             cfg["lr"], cfg["lr_batch"] or "any", effective_lr(cfg, global_batch)[0],
             global_batch,
             "; at epoch %d%s: %g" % (begin_epoch + 1, " batch %d" % done if done else "",
                                      lr_at(begin_epoch + done / float(iters_per_epoch)))
             if (begin_epoch or done) else "")
    init_kvstore(trainer)
    hybridize(net, cfg)
    log.info("model %s x%g, %d classes | %d device(s) %s, %d worker(s), global batch %d | "
             "%d batches/epoch, %d epochs", cfg["model"], cfg["multiplier"], cfg["classes"],
             len(ctxs), ",".join(str(c) for c in ctxs), num_workers, global_batch,
             iters_per_epoch, cfg["num_epochs"])

    # The run folder first: an epoch's line is logged once its checkpoint is safe.
    acc = Accumulator(ctxs)
    stop = guard.StopRequest()
    agree = [dist.Agreement(kvstore, stop, net, acc)] if distributed else []
    calls = agree + [cb.ProgressBar(), cb.RunFolder(run), cb.LogLines()] + list(callbacks)
    interrupted = False
    ckpt = run.checkpoints
    nan_message = lambda epoch, batch: guard.nan_message(epoch, batch, ckpt)  # noqa: E731
    carried = run.carried
    with stop:
        for epoch in range(begin_epoch, cfg["num_epochs"]):
            loss, top1, done, train_time = _train_epoch(
                step, train_data, acc, epoch + 1, iters_per_epoch, done, stop, cfg,
                num_workers, nan_message, lr_at, carried, calls)
            carried = None
            if stop.requested:
                interrupted = True
                run.save_interrupted(net, trainer, epoch, done, iters_per_epoch,
                                     guard.epoch_sums(acc, train_time))
                break
            done = 0
            if rank != 0:
                continue
            with dog.paused():  # rank 0 alone: validation and checkpoint wait for no peer
                tic = time.time()
                val = evaluate(net, val_data, ctxs, cfg["dtype"])
                row = {"epoch": epoch + 1, "train_loss": loss, "train_top1": top1,
                       "val_top1": val["top1"], "val_top5": val["top5"],
                       "lr": trainer.learning_rate,
                       "epoch_time_s": train_time + time.time() - tic,
                       "samples_per_s": acc.epoch_count / max(train_time, 1e-9)}

                for c in calls:
                    c.end_epoch(row, net, trainer)

    log.info("final trained-parameter checksum (rank %d): %s", rank, params_checksum(net))
    dog.stop()
    best = run.best
    chosen = run.selected if rank == 0 and not interrupted and best else None
    return {"best_epoch": best["epoch"] if best else None,
            "best_val_top1": best["val_top1"] if best else None,
            "last": run.rows[-1] if run.rows else None, "interrupted": interrupted,
            "export_epoch": cfg["export_epoch"],
            "chosen_epoch": chosen["epoch"] if chosen else None,
            "checkpoint": ckpt.path(chosen["epoch"], "params") if chosen else None,
            "summary": run.summary() if chosen else None, "save_dir": cfg["save_dir"],
            "lr": trainer.learning_rate, "num_update": trainer.optimizer.num_update}
