"""Starting a run in its folder: refuse to clobber a run the folder holds, clear it
(``--overwrite``), or resume from the newest checkpoint with the weights, the optimizer's
state and the interrupted epoch's running sums.

:func:`plan` decides, before anything is built or written, where the run goes on from
(and refuses what cannot go on) and returns it; :func:`restore` then loads that
checkpoint and writes the run's config and metrics (rebuilding rows a lost metrics.csv
held from the checkpoint's marker)."""
import logging
import os
from collections import namedtuple

from ..config import recipes as config_mod
from ..errors import UserError
from ..runs.bnstats import restore_device_copies
from ..runs.folder import MARKED_SETTINGS, RunDir
from .devices import init_kvstore
from ..runs.states import load_states

__all__ = ["plan", "restore", "Resumed", "FRESH", "check_resume_config", "RESUME_FIXED_KEYS",
           "START_KEYS", "refuse_missing_run"]

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
    written except the run ``overwrite`` clears.

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
        Without ``resume``, for a folder that holds a run (unless ``overwrite``); with
        it, for another architecture, optimizer or dtype than the config's or the
        checkpoints', other data, ``num_epochs`` below the checkpoint's epoch, or a split
        epoch that cannot go on at this batch and worker count exactly.
    """
    ckpt = run.checkpoints
    if not resume:
        if run.rank == 0:
            _refuse_or_clear(run, ckpt, overwrite)
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
    _check_marked_settings(run, start, bool(saved))
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
    run.write_start(resume, run.resumed_rows(start))


def _refuse_or_clear(run, ckpt, overwrite):
    """A fresh run into ``run``'s folder: refuse it if the folder holds a run (any
    model's checkpoints, config.yaml or metrics.csv), or with ``overwrite`` remove that
    run (:meth:`~mobilenet_skip.runs.folder.RunDir.clear`)."""
    earlier = ckpt.epochs() + [m for m in [ckpt.interrupted()] if m]
    markers, files = run.markers(), run.run_files()
    if not (earlier or markers or files):
        return
    if overwrite:
        log.info("--overwrite: removed the run %s held: %s (train.log goes on)", run.path,
                 ", ".join(run.clear()))
        return
    if earlier:
        raise UserError("%s already holds checkpoints (up to epoch %d); pass --resume "
                        "to continue them, --overwrite to start again, or another "
                        "--save-dir" % (run.path, max(m["epoch"] for m in earlier)))
    others = {m: metas for m, metas in markers.items() if m != run.model}
    if others:
        raise UserError("%s already holds checkpoints of %s, not of %s; pass another "
                        "--save-dir, or --overwrite to delete that run and start this one"
                        % (run.path, _listed(others), run.model))
    raise UserError("%s already holds a run (%s, no complete checkpoint); pass --resume to "
                    "continue it, --overwrite to start again, or another --save-dir"
                    % (run.path, ", ".join(files + sorted(
                        os.path.basename(ckpt.path(m["tag"], "json"))
                        for metas in markers.values() for m in metas))))


def _listed(markers):
    """``{model: [marker, ...]}`` as ``a (up to epoch 3), b (up to epoch 1)``."""
    return ", ".join("%s (up to epoch %d)" % (model, max(m.get("epoch", 0) for m in metas))
                     for model, metas in sorted(markers.items()))


def _check_marked_settings(run, start, from_config):
    """Refuse a resume whose settings are not those its checkpoints record
    (:data:`~mobilenet_skip.runs.folder.MARKED_SETTINGS`): ``start``'s, or, when the
    folder holds no checkpoint of this model, another model's. ``from_config``: the
    folder's config.yaml names the settings (so it was edited, or is another run's)."""
    markers = run.markers()
    if start is None:
        others = {m: metas for m, metas in markers.items() if m != run.model}
        if not others:
            return
        model = max(others, key=lambda m: others[m][-1].get("epoch", 0))
        start = others[model][-1]
        recorded = dict(start.get("settings") or {}, model=model)
    else:
        recorded = dict(start.get("settings") or {}, model=run.model)
    differ = [k for k in MARKED_SETTINGS if k in recorded and recorded[k] != run.cfg[k]]
    if not differ:
        return
    marker = RunDir(run.path, recorded["model"]).checkpoints.path(start["tag"], "json")
    raise UserError(
        "--resume: the checkpoints in %s (%s, epoch %d) were trained with %s, not %s as %s "
        "says; %s, or pass --overwrite to start again, or another --save-dir"
        % (run.path, os.path.basename(marker), start.get("epoch", 0),
           ", ".join("%s=%s" % (k, recorded[k]) for k in differ),
           ", ".join("%s=%s" % (k, run.cfg[k]) for k in differ),
           run.config_path if from_config else "the command line",
           "put those values back into %s" % run.config_path if from_config else
           "pass " + " ".join("--%s %s" % (k.replace("_", "-"), recorded[k]) for k in differ)))


def refuse_missing_run(cfg):
    """``--resume`` into a folder that holds no run while nothing names the data: one
    line saying so, before the missing data would be blamed. With the data named, the
    run starts there (a job script that always passes ``--resume`` starts its run)."""
    run = RunDir(cfg["save_dir"])
    if (cfg["rec_train"] and cfg["rec_val"]) or run.holds_run():
        return
    raise UserError("--resume: %s %s; drop --resume to start a run there (with --rec-train "
                    "and --rec-val), or pass the run's folder as --save-dir"
                    % (run.path, "holds no run (no config.yaml, metrics.csv or checkpoint)"
                       if os.path.isdir(run.path) else "does not exist"))


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
