"""Starting a run in its folder: refuse to clobber earlier checkpoints, clear them
(``--overwrite``), or resume from the newest with the weights, the optimizer's state and
the interrupted epoch's running sums."""
import logging
from collections import namedtuple

from ..config import recipes as config_mod
from ..errors import UserError
from .states import load_states

__all__ = ["start", "Resumed", "check_resume_config", "RESUME_FIXED_KEYS"]

log = logging.getLogger("mobilenet_skip")


Resumed = namedtuple("Resumed", ["epoch", "batches", "carried"])
Resumed.__doc__ = ("Where a run (re)starts: ``epoch`` epochs done, ``batches`` batches done "
                   "of the next one, and ``carried``, that epoch's running sums so far "
                   "(:func:`.guard.epoch_sums`) or None.")
FRESH = Resumed(0, 0, None)


def start(run, net, trainer, ctxs, resume, overwrite):
    """Refuse, clear or resume from the earlier checkpoints of ``run`` (a writing
    :class:`~mobilenet_skip.train.rundir.RunDir`), then write its config and metrics.

    A resume restores the weights, the optimizer's state arrays and update counts;
    the optimizer itself (lr, wd, momentum, ...) is the new configuration's.

    Returns
    -------
    Resumed
        Where training goes on from.
    """
    ckpt, begin, rows = run.checkpoints, FRESH, []
    earlier = ckpt.epochs() + [m for m in [ckpt.interrupted()] if m]
    if earlier and not resume and run.rank == 0:
        if not overwrite:
            raise UserError("%s already holds checkpoints (up to epoch %d); pass --resume "
                            "to continue them, --overwrite to start again, or another "
                            "--save-dir" % (run.path, max(m["epoch"] for m in earlier)))
        for meta in earlier:
            ckpt.remove(meta["tag"])
    if resume:
        saved = run.config()
        if saved:
            check_resume_config(saved, run.cfg, run.path)
        start = ckpt.newest()
        if start is None:
            log.warning("--resume: no complete checkpoint in %s; starting from scratch",
                        run.path)
        else:
            begin, rows = _restore(run, start, net, trainer, ctxs)
    run.write_start(resume, rows)
    return begin


def _restore(run, start, net, trainer, ctxs):
    """Load checkpoint ``start`` (its marker's metadata) into ``net`` and ``trainer``;
    returns its :class:`Resumed` and the metrics rows up to it."""
    ckpt = run.checkpoints
    net.load_parameters(ckpt.path(start["tag"], "params"), ctx=ctxs, cast_dtype=True)
    fresh = load_states(trainer, ckpt.path(start["tag"], "states"),
                        start.get("optimizer_state"))
    if fresh:
        log.warning("--resume: the optimizer state of %d parameter(s) does not fit "
                    "the new settings (such as momentum 0 -> 0.9) and starts "
                    "afresh", len(fresh))
    saved_batch = start.get("global_batch")
    if run.global_batch and saved_batch and saved_batch != run.global_batch:
        log.warning("--resume: global batch %d -> %d", saved_batch, run.global_batch)
    done = start.get("batches_done", 0)
    begin = Resumed(start["epoch"], done, start.get("epoch_sums") if done else None)
    log.info("resumed from %s: epoch %d done%s, %d updates",
             ckpt.path(start["tag"], "params"), begin.epoch,
             (", %d batches into epoch %d" % (done, begin.epoch + 1)) if done else "",
             trainer.optimizer.num_update)
    return begin, [r for r in run.metrics() if r["epoch"] <= begin.epoch]


def check_resume_config(saved, cfg, save_dir):
    """Refuse a resume into another architecture, optimizer or dtype than ``saved``'s;
    warn about (and return) the other settings that changed."""
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
    if changed:
        log.warning("--resume: using the new settings: %s", ", ".join(
            "%s %s -> %s" % (k, _show(saved[k]), _show(cfg[k])) for k in changed))
    return changed


RESUME_FIXED_KEYS = ("optimizer", "dtype")


def _show(value):
    return ",".join(str(v) for v in value) if isinstance(value, list) else "%s" % (value,)
