"""Training's log: MXNet-style lines on stdout (the run folder keeps a copy in its
``train.log``: :func:`~mobilenet_skip.runs.folder.attach_file_log`), and the resolved
configuration as printable lines."""
import json
import logging
import sys

__all__ = ["log", "setup_logging", "describe"]

log = logging.getLogger("mobilenet_skip")


def setup_logging(rank_prefix=""):
    """Log lines to stdout in MXNet's plain style."""
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in log.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(rank_prefix + "%(asctime)s %(message)s",
                                               "%H:%M:%S"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def describe(cfg):
    """The resolved configuration as printable YAML-ish lines."""
    from ..config import recipes as config_mod
    return "\n".join("  %-20s %s" % (k, json.dumps(cfg[k])) for k in config_mod.SCHEMA)
