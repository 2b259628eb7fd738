"""Starting a run in its folder: refuse to clobber earlier checkpoints, clear them
(``--overwrite``), or resume from the newest with the weights, the optimizer's state and
the interrupted epoch's running sums.

:func:`plan` decides, before anything is built or written, where the run goes on from
(and refuses what cannot go on) and returns it; :func:`restore` then loads that
checkpoint and writes the run's config and metrics."""
import logging
import os
from collections import namedtuple

from ..config import recipes as config_mod
from ..errors import UserError
from ..runs.bnstats import restore_device_copies
from .devices import init_kvstore
from ..runs.states import load_states

__all__ = ["plan", "restore", "Resumed", "FRESH", "check_resume_config", "RESUME_FIXED_KEYS",
           "START_KEYS"]

log = logging.getLogger("mobilenet_skip")

Resumed = namedtuple("Resumed", ["epoch", "batches", "carried", "checkpoint", "kept"])
Resumed.__doc__ = ("Where a run (re)starts: ``epoch`` epochs done, ``batches`` batches (of "
                   "this run's size) done of the next one, ``carried``, that epoch's "
                   "running sums so far (:meth:`.step.Accumulator.sums`) or None, "
                   "``checkpoint``, the marker's metadata of the checkpoint to load or None, "
                   "and ``kept``, the :data:`START_KEYS` the run keeps from its config.yaml "
                   "({key: value}) because the checkpoint's weights are the ones it starts "
                   "from.")
FRESH = Resumed(0, 0, None, None, {})

# Settings that only make the starting weights: a checkpoint's weights replace them.
START_KEYS = ("warm_start", "finetune", "finetune_epoch", "init")


def plan(run, resume, overwrite, data=None, worker_batch=None):
    """Refuse, clear or pick the checkpoint of ``run`` (a writing
    :class:`~mobilenet_skip.runs.folder.RunDir`) to go on from; nothing is loaded or
    written except the checkpoints ``overwrite`` clears.

    Parameters
    ----------
    data : dict, optional
        The training data's fingerprint (:func:`.feed.fingerprint`): a resume on other
        data is refused.
    worker_batch : int, optional
        Images per step on this worker: a split epoch goes on after the images it saw.

    Returns
    -------
    Resumed
        Where training goes on from.

    Raises
    ------
    UserError
        For another architecture, optimizer or dtype, other data, ``num_epochs`` below the
        checkpoint's epoch, or a split epoch that cannot go on at this batch and worker
        count exactly.
    """
    ckpt = run.checkpoints
    earlier = ckpt.epochs() + [m for m in [ckpt.interrupted()] if m]
    if earlier and not resume and run.rank == 0:
        if not overwrite:
            raise UserError("%s already holds checkpoints (up to epoch %d); pass --resume "
                            "to continue them, --overwrite to start again, or another "
                            "--save-dir" % (run.path, max(m["epoch"] for m in earlier)))
        for meta in earlier:
            ckpt.remove(meta["tag"])
    if not resume:
        return FRESH
    start, saved = ckpt.newest(), run.config()
    path = start and ckpt.path(start["tag"], "params")
    kept = {}
    if start and run.cfg["num_epochs"] < start["epoch"]:
        raise UserError("--resume: %s holds epoch %d, past --num-epochs %d; pass --num-epochs "
                        "%d or more, or leave the flag out to keep the run's own %s"
                        % (path, start["epoch"], run.cfg["num_epochs"], start["epoch"],
                           saved.get("num_epochs", start["epoch"])))
    if start:
        _check_data(start.get("data"), data, path)
    if saved:
        kept = check_resume_config(saved, run.cfg, run.path, start is not None)
    if start is None:
        log.warning("--resume: no complete checkpoint in %s; starting from scratch", run.path)
        return FRESH
    batches = _position(start, run.global_batch, worker_batch, path)
    return Resumed(start["epoch"], batches, start.get("epoch_sums") if batches else None,
                   start, kept)


def restore(run, begin, net, trainer, ctxs, resume):
    """Load ``begin.checkpoint`` (from :func:`plan`) into ``net`` and ``trainer``, then
    write the run's config and the metrics rows up to it.

    The weights, the optimizer's state arrays and update counts are restored; the
    optimizer itself (lr, wd, momentum, ...) is the new configuration's.
    """
    start = begin.checkpoint
    if start is None:
        run.write_start(resume)
        return
    ckpt = run.checkpoints
    ckpt.load_params(start["tag"], net, ctxs)
    copies = ckpt.path(start["tag"], "bncopies")
    if os.path.isfile(copies):
        # the kvstore's first pull gives every device device 0's copy: pull first
        init_kvstore(trainer)
        restore_device_copies(net, copies)
    fresh = load_states(trainer, ckpt.path(start["tag"], "states"),
                        start.get("optimizer_state"))
    ckpt.verify(start["tag"])  # the digests, before a step uses what was loaded
    if fresh:
        log.warning("--resume: the optimizer state of %d parameter(s) does not fit "
                    "the new settings (such as momentum 0 -> 0.9) and starts "
                    "afresh", len(fresh))
    saved_batch = start.get("global_batch")
    if run.global_batch and saved_batch and saved_batch != run.global_batch:
        log.warning("--resume: global batch %d -> %d", saved_batch, run.global_batch)
    log.info("resumed from %s: epoch %d done%s, %d updates",
             ckpt.path(start["tag"], "params"), begin.epoch,
             (", %d batches into epoch %d" % (begin.batches, begin.epoch + 1))
             if begin.batches else "", trainer.optimizer.num_update)
    run.write_start(resume, [r for r in run.metrics() if r["epoch"] <= begin.epoch])


def _check_data(saved, data, path):
    """Refuse training data other than the checkpoint's (both fingerprints, when known)."""
    for key, flag in (("rec_train", "--rec-train"), ("rec_val", "--rec-val")):
        was, now = (saved or {}).get(key), (data or {}).get(key)
        if was and now and {k: v for k, v in was.items() if k != "path"} != {
                k: v for k, v in now.items() if k != "path"}:
            raise UserError(
                "--resume: %s %s is not the data %s was trained on (%s: %d records, .idx "
                "sha1 %s; here %d records, .idx sha1 %s); pass the run's own %s or another "
                "--save-dir" % (flag, now["path"], path, was["path"], was["records"],
                                was["idx_sha1"][:12], now["records"], now["idx_sha1"][:12],
                                flag))


def _position(start, global_batch, worker_batch, path):
    """Batches of ``worker_batch`` images that skip exactly the images a split epoch
    has seen on each worker (0 for a finished epoch).

    An epoch's order is a permutation of its records fixed by (seed, epoch, shard),
    whatever the batch (:class:`~mobilenet_skip.data.records.EpochRecordIter`), so the
    position is the count of images seen. Another worker count reshards the records,
    and a batch that does not divide that count would split a batch: both are refused.
    """
    done = start.get("batches_done", 0)
    images = (start.get("epoch_sums") or {}).get("count") if done else None
    saved_global = start.get("global_batch")
    if not done or not images or not saved_global or not worker_batch:
        return done
    saved_batch = images // done
    workers, saved_workers = global_batch // worker_batch, saved_global // saved_batch
    epoch = start["epoch"] + 1
    if workers != saved_workers:
        raise UserError("--resume: %s stopped %d batches into epoch %d on %d worker(s), whose "
                        "shards %d worker(s) do not share; resume on %d worker(s) with "
                        "--num-epochs %d to finish that epoch, then resume on %d"
                        % (path, done, epoch, saved_workers, workers, saved_workers, epoch,
                           workers))
    if images % worker_batch:
        raise UserError("--resume: %s stopped after %d images of epoch %d (%d batches of %d), "
                        "which batches of %d cannot continue exactly; resume with a batch "
                        "that divides %d (per worker: --batch-size x devices), such as the "
                        "old %d, and --num-epochs %d to finish that epoch first"
                        % (path, images, epoch, done, saved_batch, worker_batch, images,
                           saved_batch, epoch))
    if worker_batch != saved_batch:
        log.info("--resume: epoch %d goes on after its %d images seen: %d batches of %d, "
                 "not %d of %d", epoch, images, images // worker_batch, worker_batch, done,
                 saved_batch)
    return images // worker_batch


def check_resume_config(saved, cfg, save_dir, from_checkpoint=False):
    """Refuse a resume into another architecture, optimizer or dtype than ``saved``'s;
    warn about the other settings that changed.

    With ``from_checkpoint`` the :data:`START_KEYS` (the starting weights) are the
    checkpoint's: a changed one is logged as ignored, and returned with its saved value
    (``{key: value}``), so that config.yaml goes on saying what the run was started
    from."""
    clashes = [k for k in config_mod.ARCH_KEYS if saved.get(k) != cfg[k]]
    if clashes:
        raise UserError("--resume: %s in %s was trained with %s, not %s; pass the same "
                        "--model/--multiplier/--classes or another --save-dir"
                        % (", ".join(clashes), save_dir,
                           ", ".join("%s=%s" % (k, saved.get(k)) for k in clashes),
                           ", ".join("%s=%s" % (k, cfg[k]) for k in clashes)))
    # The state's layout depends on these: it cannot carry over to another one.
    fixed = [k for k in RESUME_FIXED_KEYS if k in saved and saved[k] != cfg[k]]
    if fixed:
        raise UserError("--resume: %s in %s was trained with %s, not %s; its optimizer state "
                        "does not carry over: resume with %s, or pass --overwrite (or another "
                        "--save-dir) to start again"
                        % (", ".join(fixed), save_dir,
                           ", ".join("%s=%s" % (k, saved[k]) for k in fixed),
                           ", ".join("%s=%s" % (k, cfg[k]) for k in fixed),
                           " ".join("--%s %s" % (k.replace("_", "-"), saved[k]) for k in fixed)))
    changed = [k for k in config_mod.SCHEMA if k not in config_mod.ARCH_KEYS
               and k in saved and saved[k] != cfg[k]]
    ignored = [k for k in changed if from_checkpoint and k in START_KEYS]
    if ignored:
        log.warning("--resume: ignored: %s (they only set the starting weights; the "
                    "checkpoint's weights are used)", ", ".join(
                        "%s %s -> %s" % (k, _show(saved[k]), _show(cfg[k])) for k in ignored))
        changed = [k for k in changed if k not in ignored]
    if changed:
        log.warning("--resume: using the new settings: %s", ", ".join(
            "%s %s -> %s" % (k, _show(saved[k]), _show(cfg[k])) for k in changed))
    return {k: saved[k] for k in ignored}


RESUME_FIXED_KEYS = ("optimizer", "dtype")


def _show(value):
    return ",".join(str(v) for v in value) if isinstance(value, list) else "%s" % (value,)
