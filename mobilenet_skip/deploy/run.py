"""The export a training run ends with: its last or best epoch, beside its checkpoints."""
import logging

from ..errors import UserError
from ..models import norm_kwargs_from
from ..runs.folder import RunDir, best_row, selected_row
from .artifact import describe, export_network
from .source import network_from_checkpoint

__all__ = ["export_run"]

log = logging.getLogger("mobilenet_skip")


def export_run(save_dir, epoch=None, synsets=None):
    """Export one epoch of the run in ``save_dir`` to ``<save_dir>/<model>``.

    The network is built with the run's BatchNorm settings, and the sidecar records
    which epoch it is (``epoch``, ``val_top1``) and the run's last and best epochs.

    Parameters
    ----------
    save_dir : str
        The run folder (read through :class:`~mobilenet_skip.runs.folder.RunDir`).
    epoch : int, optional
        Default: the recipe's ``export_epoch``, the last epoch of ``metrics.csv`` or
        the best by val top-1 (the earliest on a tie).
    synsets : str or list of str, optional
        Class names (default: :meth:`RunDir.synsets_path`).

    Returns
    -------
    str
        The export prefix.
    """
    run = RunDir(save_dir)
    cfg, rows = run.config(), run.metrics()
    if not cfg or not rows:
        raise UserError("%s holds no finished epoch to export (no %s rows); train first"
                        % (save_dir, RunDir.METRICS if cfg else RunDir.CONFIG))
    best, last = best_row(rows), rows[-1]
    if epoch is None:
        label, chosen = cfg["export_epoch"], selected_row(rows, cfg["export_epoch"])
    else:
        label = "requested"
        chosen = next((r for r in rows if r["epoch"] == int(epoch)), None)
        if chosen is None:
            raise UserError("epoch %s is not in %s (epochs %d to %d)"
                            % (epoch, run.metrics_path, rows[0]["epoch"], last["epoch"]))
    net = network_from_checkpoint(run.checkpoint_path(chosen["epoch"]), cfg["model"],
                                  cfg["multiplier"], cfg["classes"],
                                  norm_kwargs=norm_kwargs_from(cfg))
    prefix = run.export_prefix()
    side = cfg["input_size"]
    with run.locked():  # shared with the training of this process; refused by another's
        export_network(net, prefix, side, synsets or run.synsets_path(cfg=cfg),
                       info=describe(net, side, cfg, epoch=chosen["epoch"],
                                     val_top1=chosen["val_top1"],
                                     export_epoch=cfg["export_epoch"],
                                     last_epoch=last["epoch"], best_epoch=best["epoch"],
                                     best_val_top1=best["val_top1"]))
    log.info("exported the %s epoch, %d (val top1 %.4f), to %s-symbol.json and "
             "%s-0000.params", label, chosen["epoch"], chosen["val_top1"], prefix, prefix)
    return prefix
