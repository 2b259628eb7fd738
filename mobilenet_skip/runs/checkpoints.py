"""Epoch checkpoints written atomically, so a crash never corrupts the last good one.

An epoch checkpoint is ``<model>-NNNN.params`` (Gluon ``save_parameters``),
``<model>-NNNN.states`` (the optimizer's state arrays, ``mx.nd.save``: never a
pickle) and ``<model>-NNNN.json``, the marker written last, which also describes the
state (:func:`mobilenet_skip.runs.states.save_states`): a checkpoint counts only once its
marker exists. Ctrl-C writes the same trio as ``<model>-interrupted.*``, recording how
far into the next epoch training had gone, and with several devices
``<model>-interrupted.bncopies``: each device's own BatchNorm running statistics
(:func:`mobilenet_skip.runs.bnstats.device_copies`), so that the resumed epoch ends with
the same statistics as an unbroken one.

The marker records the SHA-256 of each data file (``"sha256": {"params": ..., "states":
..., "bncopies": ...}``, hashed from the staged file before it is renamed into place),
and every reader checks them before it uses the weights (:meth:`CheckpointDir.verify`,
:func:`verify_checkpoint_file`): MXNet loads a ``.params`` with a zeroed stretch as
weights, without a word. A marker without digests is read with a one-line note.

A marker says what it is (``"kind": "checkpoint"``) and in which ``format``, so that a
stray JSON under a marker's name (an export's sidecar, say) is named rather than
unpacked, and a marker of a newer format asks for an upgrade. A marker with an
``epoch`` and neither ``kind`` nor ``format`` is read as a checkpoint's, of format 1.
"""
import glob
import json
import logging
import os
import re

import mxnet as mx
import numpy as np

from ..errors import UserError, mxnet_message
from ..utils.fs import atomic_save, final_path, remove_if_exists, stage
from .digests import KEY as DIGESTS, file_sha256, verify_files
from .sidecar import FORMAT as EXPORT_FORMAT

log = logging.getLogger("mobilenet_skip")

__all__ = ["CheckpointDir", "MARKER_KIND", "MARKER_FORMAT", "check_marker", "read_marker",
           "read_json", "is_checkpoint_file", "verify_checkpoint_file", "checkpoint_model"]

MARKER_KIND = "checkpoint"
MARKER_FORMAT = 1  # the marker's own layout; bump it when a reader must change
EXTENSIONS = ("json", "params", "states")  # a checkpoint's files, marker first
OPTIONAL = ("bncopies",)  # written only by a mid-epoch stop on several devices
# <model>-NNNN or <model>-interrupted: the stem every file of a checkpoint shares
STEM = re.compile(r"^(?P<model>.+)-(?:\d{4,}|interrupted)$")


def _is_marker(meta):
    """A marker of any format: its kind says so, or it has an epoch and neither kind nor
    format."""
    return isinstance(meta, dict) and (meta.get("kind") == MARKER_KIND or (
        "kind" not in meta and "format" not in meta and isinstance(meta.get("epoch"), int)))


def check_marker(meta, path):
    """``meta`` if it is a checkpoint marker of a format read here, else a one-line
    :class:`UserError` naming ``path`` and what it holds instead."""
    if not _is_marker(meta):
        what = ("an export's sidecar (kind %s)" % meta.get("kind")
                if isinstance(meta, dict) and meta.get("format") == EXPORT_FORMAT
                else "JSON without \"kind\": \"%s\"" % MARKER_KIND)
        raise UserError("%s is not a checkpoint marker but %s; move it out of %s (restore the "
                        "marker from a backup, or start again with --overwrite)"
                        % (path, what, os.path.dirname(os.path.abspath(path))))
    fmt = meta.get("format", MARKER_FORMAT)
    if not isinstance(fmt, int) or fmt > MARKER_FORMAT:
        from .states import newer_format_error
        raise newer_format_error(path, fmt)
    return meta


def read_json(path):
    """The JSON in ``path``, or None if it is missing, unreadable or not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_marker(path):
    """The JSON in ``path`` if it is a checkpoint marker (any format), else None."""
    meta = read_json(path)
    return meta if _is_marker(meta) else None


def is_checkpoint_file(path):
    """Whether ``path`` is a checkpoint's marker, ``.params`` or ``.states``: the marker of
    its stem says so."""
    stem, ext = os.path.splitext(path)
    return ext[1:] in EXTENSIONS + OPTIONAL and read_marker(stem + ".json") is not None


def checkpoint_model(stem):
    """The model whose checkpoint files are named ``stem`` (``<model>-0003``,
    ``<model>-interrupted``), or None when no checkpoint is named so."""
    match = STEM.match(os.path.basename(stem))
    return match.group("model") if match else None


def _damaged_fix(marker):
    return ("use the checkpoint before it: delete its marker %s and --resume goes on from "
            "the one before (eval and export: pass another --epoch)" % marker)


def verify_checkpoint_file(path):
    """Check ``path`` against the digest its checkpoint's marker records, before a reader
    outside training (eval, export, ``--finetune``) uses it; a file without a marker
    beside it (a copy, another tool's file) is not ours to check.

    Raises
    ------
    UserError
        When the file is damaged: its digest is not the marker's.
    """
    stem, ext = os.path.splitext(path)
    marker = stem + ".json"
    meta = read_marker(marker)
    if meta is not None and ext[1:] in EXTENSIONS + OPTIONAL:
        verify_files({ext[1:]: path}, meta.get(DIGESTS), marker, _damaged_fix(marker))


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
            meta = dict(meta, kind=MARKER_KIND, format=MARKER_FORMAT,
                        optimizer_state=save_states(
                            trainer, self.path(tag, "states"),
                            lambda path, write: staged.append(stage(path, write, needed))))
            meta[DIGESTS] = {final_path(tmp).rpartition(".")[2]: file_sha256(tmp)
                             for tmp in staged}
            remove_if_exists(self.path(tag, "json"))  # no marker over a half-replaced pair
            if not copies:  # another stop's copies would be restored with these weights
                remove_if_exists(self.path(tag, "bncopies"))
            for tmp in staged:
                os.replace(tmp, final_path(tmp))
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

    def verify(self, tag):
        """Check every data file of ``tag`` (``.params``, ``.states``, ``.bncopies``)
        against the digests its marker records; a marker without digests gets one note,
        in training's log. A resume calls it once the files have loaded (each with the
        checks of its own format, which name a file of another kind as such), before
        training starts.

        Raises
        ------
        UserError
            Naming the first damaged file, both digests, and the checkpoint before it.
        """
        marker = self.path(tag, "json")
        meta = read_marker(marker) or {}
        files = {ext: self.path(tag, ext) for ext in EXTENSIONS[1:] + OPTIONAL
                 if os.path.isfile(self.path(tag, ext))}
        verify_files(files, meta.get(DIGESTS), marker, _damaged_fix(marker), log.warning)

    def load_params(self, tag, net, ctxs):
        """Load ``tag``'s weights into ``net`` on ``ctxs`` (:meth:`verify` checks their
        digest).

        Raises
        ------
        UserError
            Naming the file when it is truncated, garbage or another network's (MXNet
            says "Invalid NDArray file format" in a C++ traceback), and how to go on.
        """
        path = self.path(tag, "params")
        try:
            net.load_parameters(path, ctx=ctxs, cast_dtype=True)
        except (mx.base.MXNetError, AssertionError, ValueError) as err:
            raise UserError("--resume: checkpoint %s cannot be loaded (%s): it is truncated, "
                            "damaged or not this model's; delete its marker %s to resume from "
                            "the checkpoint before it, or pass --overwrite to start again"
                            % (path, mxnet_message(err), self.path(tag, "json"))) from None

    def remove(self, tag):
        for ext in EXTENSIONS + OPTIONAL:  # marker first: never a marker without data
            remove_if_exists(self.path(tag, ext))

    def _read(self, tag):
        marker = self.path(tag, "json")
        if not all(os.path.isfile(self.path(tag, ext)) for ext in EXTENSIONS):
            return None
        meta = read_json(marker)
        if meta is None:
            return None  # half-written by a killed job: not a checkpoint
        return dict(check_marker(meta, marker), tag=tag)

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
