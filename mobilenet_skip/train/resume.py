"""Starting a run in its folder: refuse to clobber earlier checkpoints, clear them
(``--overwrite``), or resume from the newest with the weights, the optimizer's state and
the interrupted epoch's running sums."""
import logging
import os

from ..config import recipes as config_mod
from ..errors import UserError
from .bnstats import restore_device_copies
from .devices import init_kvstore
from .states import load_states

__all__ = ["start", "check_resume_config", "RESUME_FIXED_KEYS"]

log = logging.getLogger("mobilenet_skip")


def start(run, net, trainer, ctxs, resume, overwrite, global_batch=None):
    """Refuse, clear or resume from the earlier checkpoints of ``run`` (a writing
    :class:`~mobilenet_skip.train.rundir.RunDir`), then write its config and metrics.

    A resume restores the weights, the optimizer's state arrays and update counts;
    the optimizer itself (lr, wd, momentum, ...) is the new configuration's.
    ``run.carried`` becomes the interrupted epoch's running sums, or None.

    Returns
    -------
    tuple of int
        Epochs already done, and batches already done of the next one.
    """
    run.carried, run.global_batch = None, global_batch
    ckpt, begin = run.checkpoints, (0, 0)
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
            net.load_parameters(ckpt.path(start["tag"], "params"), ctx=ctxs,
                                cast_dtype=True)
            copies = ckpt.path(start["tag"], "bncopies")
            if os.path.isfile(copies):
                # the kvstore's first pull gives every device device 0's copy: pull first
                init_kvstore(trainer)
                restore_device_copies(net, copies)
            fresh = load_states(trainer, ckpt.path(start["tag"], "states"),
                                start.get("optimizer_state"))
            if fresh:
                log.warning("--resume: the optimizer state of %d parameter(s) does not fit "
                            "the new settings (such as momentum 0 -> 0.9) and starts "
                            "afresh", len(fresh))
            saved_batch = start.get("global_batch")
            if global_batch and saved_batch and saved_batch != global_batch:
                log.warning("--resume: global batch %d -> %d", saved_batch, global_batch)
            begin = (start["epoch"], start.get("batches_done", 0))
            run.carried = start.get("epoch_sums") if begin[1] else None
            run.rows = [r for r in run.metrics() if r["epoch"] <= begin[0]]
            log.info("resumed from %s: epoch %d done%s, %d updates",
                     ckpt.path(start["tag"], "params"), begin[0],
                     (", %d batches into epoch %d" % (begin[1], begin[0] + 1))
                     if begin[1] else "", trainer.optimizer.num_update)
    run.write_start(resume)
    return begin


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
