"""Training's log: MXNet-style lines on stdout, a copy in the run's ``train.log``, and
the resolved configuration as printable lines."""
import json
import logging
import os
import sys

__all__ = ["log", "setup_logging", "attach_file_log", "describe"]

log = logging.getLogger("mobilenet_skip")


def attach_file_log(path):
    """Also log into ``path`` (once, however often a run folder is opened)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == os.path.abspath(
                path):
            return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)


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
