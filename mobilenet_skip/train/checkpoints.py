"""Epoch checkpoints written atomically, so a crash never corrupts the last good one.

An epoch checkpoint is ``<model>-NNNN.params`` (Gluon ``save_parameters``),
``<model>-NNNN.states`` (the optimizer's state arrays, ``mx.nd.save``: never a
pickle) and ``<model>-NNNN.json``, the marker written last, which also describes the
state (:func:`mobilenet_skip.train.states.save_states`): a checkpoint counts only once its
marker exists. Ctrl-C writes the same trio as ``<model>-interrupted.*``, recording how
far into the next epoch training had gone, and with several devices
``<model>-interrupted.bncopies``: each device's own BatchNorm running statistics
(:func:`mobilenet_skip.train.bnstats.device_copies`), so that the resumed epoch ends with
the same statistics as an unbroken one.
"""
import glob
import json
import os
import re

import mxnet as mx
import numpy as np

from ..utils.fs import atomic_save, remove_if_exists, stage

__all__ = ["CheckpointDir"]


class CheckpointDir(object):
    """The checkpoints of one model in one directory.

    Parameters
    ----------
    save_dir : str
        Directory (created if needed).
    model : str
        Model name, the file prefix.
    """

    def __init__(self, save_dir, model):
        self.save_dir, self.model = save_dir, model
        os.makedirs(save_dir, exist_ok=True)

    def path(self, tag, ext):
        tag = "%04d" % tag if isinstance(tag, int) else tag
        return os.path.join(self.save_dir, "%s-%s.%s" % (self.model, tag, ext))

    def save(self, tag, net, trainer, meta):
        """Write params, optimizer state arrays and (last) the JSON marker for ``tag``;
        the marker's ``optimizer_state`` describes the arrays.

        Both data files are written to temporary files first, so a full disk (a one-line
        :class:`~mobilenet_skip.errors.UserError` naming the bytes needed) leaves every
        earlier checkpoint, ``tag``'s own included, as it was and no temporary file.
        """
        from .states import save_states
        from .bnstats import device_copies
        needed = self._size_hint(net)
        staged = []
        copies = device_copies(net) if tag == "interrupted" else {}
        try:
            staged.append(stage(self.path(tag, "params"), net.save_parameters, needed))
            if copies:  # mid-epoch: each device's BN statistics, for an exact resume
                staged.append(stage(self.path(tag, "bncopies"),
                                    lambda path: mx.nd.save(path, copies), needed))
            meta = dict(meta, optimizer_state=save_states(
                trainer, self.path(tag, "states"),
                lambda path, write: staged.append(stage(path, write, needed))))
            remove_if_exists(self.path(tag, "json"))  # no marker over a half-replaced pair
            for tmp in staged:
                os.replace(tmp, tmp[:tmp.rindex(".tmp-")])
            atomic_save(self.path(tag, "json"), json.dumps(meta, indent=1, sort_keys=True))
        finally:
            for tmp in staged:
                remove_if_exists(tmp)

    def _size_hint(self, net):
        """Bytes one checkpoint takes: the newest one's, else twice the parameters (the
        optimizer state is about their size)."""
        last = self.epochs()[-1:]
        if last:
            try:
                return sum(os.path.getsize(self.path(last[0]["tag"], ext))
                           for ext in ("params", "states"))
            except OSError:
                pass
        try:
            return 2 * sum(p.data().size * np.dtype(p.data().dtype).itemsize
                           for p in net.collect_params().values())
        except Exception:  # deferred shapes: no estimate, the error still names the disk
            return None

    def remove(self, tag):
        # marker first: never a marker without data
        for ext in ("json", "params", "states", "bncopies"):
            remove_if_exists(self.path(tag, ext))

    def _read(self, tag):
        marker = self.path(tag, "json")
        if not all(os.path.isfile(self.path(tag, ext)) for ext in ("json", "params", "states")):
            return None
        try:
            with open(marker) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return None
        meta["tag"] = tag
        return meta

    def epochs(self):
        """Metadata of every complete epoch checkpoint, oldest first."""
        pattern = re.compile(re.escape(self.model) + r"-(\d{4,})\.json$")
        found = []
        for marker in glob.glob(os.path.join(glob.escape(self.save_dir), "*.json")):
            match = pattern.match(os.path.basename(marker))
            meta = self._read(int(match.group(1))) if match else None
            if meta is not None:
                found.append(meta)
        return sorted(found, key=lambda m: m["epoch"])

    def interrupted(self):
        """Metadata of the Ctrl-C checkpoint, or None."""
        return self._read("interrupted")

    def newest(self):
        """The checkpoint to resume from: the furthest-along complete one, or None."""
        candidates = self.epochs()[-1:]
        stopped = self.interrupted()
        if stopped is not None:
            candidates.append(stopped)
        if not candidates:
            return None
        return max(candidates, key=lambda m: (m["epoch"], m.get("batches_done", 0)))

    def prune(self, keep, best_epoch=None):
        """Keep the ``keep`` newest epoch checkpoints plus ``best_epoch``."""
        metas = self.epochs()
        recent = {m["epoch"] for m in metas[-keep:]} if keep > 0 else set()
        for meta in metas:
            if meta["epoch"] not in recent and meta["epoch"] != best_epoch:
                self.remove(meta["tag"])
