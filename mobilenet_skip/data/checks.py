"""Your own dataset without traps: the checks that run before (and while) training on it.

- The class count comes from ``train.synsets.txt`` unless ``--classes`` says it; a stated
  count (flag, recipe or a resumed run's ``config.yaml``) that disagrees is refused.
- Train and val must name the same classes in the same order: a val folder missing one
  class shifts every later label by one, silently.
- Every label the iterators hand out is checked against the class count on the host
  (MXNet's ``pick`` clips an out-of-range label instead of failing, so -1 or 50 on 10
  classes would train on the wrong class).
- A training set smaller than one global batch is refused; the images a run leaves out
  of every epoch (partial last batch) are counted in the log.
- Val is not the training file itself (its scores would measure memorisation).
- A record whose image bytes are damaged kills MXNet's C++ decoder by SIGFPE, where no
  Python code runs: the iterators of :mod:`.records` decode every image of a ``.rec``
  that no completed check has stamped (:func:`mobilenet_skip.recordio.require_decodable`)
  before they start.
"""
import logging
import os

import numpy as np

from ..errors import UserError
from ..recordio import read_synsets, synsets_path
from .wrapped import WrappedIter

__all__ = ["resolve_classes", "check_same_classes", "check_val_classes", "describe_dropped",
           "CheckedBatches", "checked"]

log = logging.getLogger("mobilenet_skip")

def resolve_classes(rec_train, classes, stated):
    """The class count of a run: ``classes``, or the count of ``rec_train``'s synsets file.

    Precedence: ``--classes`` > the synsets file > the recipe. A count that is stated
    (``--classes``, a recipe's ``classes:`` line or a resumed run's ``config.yaml``) must
    agree with the synsets file, else it is refused; the default (1000, ImageNet's, which
    no shipped ImageNet recipe states) gives way to the data. Without a synsets file the
    given count stands.

    Parameters
    ----------
    rec_train : str
        The training .rec ('' for none).
    classes : int
        The count the recipe holds.
    stated : str or None
        Who stated it, as the error names it (``"--classes 10"``); None for the default.

    Returns
    -------
    tuple
        ``(classes, stated, synsets)``: the count, who set it (``"10 classes in
        <synsets>"`` when the file did) and the synsets file read, or None.
    """
    path = synsets_path(rec_train) if rec_train else None
    if not path or not os.path.isfile(path):
        return classes, stated, None
    count = len(read_synsets(path))
    if classes != count and stated:
        raise UserError("%s, but %s lists %d classes; pass --classes %d, or use the .rec "
                        "that goes with %d classes" % (stated, path, count, count, classes))
    if classes != count:
        log.info("classes: %d, from %s", count, path)
        return count, "%d classes in %s" % (count, path), path
    return classes, stated, path


def check_same_classes(rec_train, rec_val):
    """Refuse a val set whose synsets file differs from train's, naming the first
    differing class; warn in one line when either file is missing (nothing to check),
    and when val is the training file itself."""
    if os.path.isfile(rec_train) and os.path.isfile(rec_val) and \
            os.path.samefile(rec_train, rec_val):
        log.warning("the val .rec %s is the training .rec %s: val top-1 would measure "
                    "images the network trains on, not how it generalises; pack a separate "
                    "val set (`tools/im2rec.py PREFIX ROOT --list --recursive --train-ratio "
                    "0.9` splits one folder)", rec_val, rec_train)
    warning = check_val_classes(synsets_path(rec_train), rec_val, "train")
    if warning:
        log.warning(warning)


def check_val_classes(reference, rec_val, what="the model"):
    """Refuse a val set whose class names differ from those in ``reference``.

    Parameters
    ----------
    reference : str or None
        The class names the labels mean (train's ``.synsets.txt``, an export's).
    rec_val : str
        The val ``.rec``; its names are in its ``.synsets.txt``.
    what : str
        Whose names ``reference`` holds, for the messages.

    Returns
    -------
    str or None
        Without either file the check cannot run, and a val folder that lacks one class
        would shift every later label unseen: the one-line warning that says so.
    """
    if not os.path.isfile(rec_val):
        return None  # check_record refuses it in one line; nothing to warn about yet
    paths = [reference, synsets_path(rec_val)]
    missing = [p for p in paths if not p or not os.path.isfile(p)]
    if missing:
        return ("no class names in %s, so the classes of %s are not checked against %s's (a "
                "val folder missing a class would shift every later label); `tools/im2rec.py "
                "PREFIX ROOT --list --recursive` writes PREFIX.synsets.txt"
                % (missing[0] or "%s's files" % what, rec_val, what))
    train, val = (read_synsets(p) for p in paths)
    if train == val:
        return None
    i = next((i for i, (a, b) in enumerate(zip(train, val)) if a != b), min(len(train),
                                                                             len(val)))
    what_differs = (
        "class %d is %r in %s but %r in val" % (i, train[i], what, val[i])
        if i < min(len(train), len(val)) else
        "class %d, %r, is missing from val" % (i, train[i]) if len(train) > len(val) else
        "val has an extra class %d, %r" % (i, val[i]))
    raise UserError("%s and %s name different classes (%d and %d): %s. Labels follow the "
                    "sorted folder names, so every later label would be shifted; give val the "
                    "same class folders as %s (an empty folder is skipped too: put at least "
                    "one image in each), then re-run tools/im2rec.py --list --recursive"
                    % (paths[0], paths[1], len(train), len(val), what_differs, what))


def describe_dropped(rec, images, batch, batches, shuffle, capped=0):
    """The log line for the images a run leaves out of every epoch, or None.

    Parameters
    ----------
    rec : str
        The training ``.rec``.
    images, batch, batches : int
        This worker's images, its batch (all devices) and its full batches per epoch.
    shuffle : bool
        Whether a different set is left out every epoch.
    capped : int
        ``--batches-per-epoch`` (0 = none).
    """
    if capped and capped < batches:
        return ("%s: %d images, %d batches of %d per epoch, capped to %d by "
                "--batches-per-epoch" % (rec, images, batches, batch, capped))
    left = images - batches * batch
    if not left:
        return None
    return ("%s: %d images, %d batches of %d per epoch: %d image%s left out each epoch, %s"
            % (rec, images, batches, batch, left, "" if left == 1 else "s",
               "a different %d each epoch (shuffled)" % left if shuffle else
               "the same %d every epoch (shuffle is off)" % left))


TRAINING_FIX = ("nothing was trained on it. Re-pack from a .lst whose labels are class "
                "indices, or pass the right --classes")


class CheckedBatches(WrappedIter):
    """Pass batches through, refusing any label outside ``0 .. classes - 1``, and call
    ``on_next`` each time a batch (or a reset) is asked for.

    The labels of an ``ImageRecordIter`` batch are a small host NDArray, so the check
    costs one copy of ``batch_size`` floats per batch and no device sync. ``on_next``
    feeds the ``dist_sync`` watchdog: the training loop asks for a batch only once its
    last step's push was accepted.

    Parameters
    ----------
    data_iter : mx.io.DataIter
        The iterator to wrap.
    classes : int or None
        The network's class count; None checks no label.
    source : str
        The file the records come from, for the error.
    on_next : callable, optional
        Called with no argument before each batch is fetched and on each reset.
    fix : str, optional
        What the refusal tells the user to do (default: training's, :data:`TRAINING_FIX`).
    """

    def __init__(self, data_iter, classes=None, source=None, on_next=None, fix=None):
        super(CheckedBatches, self).__init__(data_iter)
        self.classes = None if classes is None else int(classes)
        self.source, self.on_next, self.fix = source, on_next, fix or TRAINING_FIX
        self._batch = 0

    def reset(self):
        if self.on_next is not None:
            self.on_next()
        self._batch = 0
        self.inner.reset()

    def set_epoch(self, epoch):
        """Start ``epoch`` of an iterator whose order depends on it (``EpochRecordIter``);
        without it, :meth:`reset` the iterator wrapped."""
        self._batch = 0
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)
        else:
            self.inner.reset()

    def next(self):
        if self.on_next is not None:
            self.on_next()
        batch = self.inner.next()
        self._batch += 1
        if self.classes is not None:
            self._check(batch)
        return batch

    def _check(self, batch):
        n = batch.data[0].shape[0] - (batch.pad or 0)
        labels = batch.label[0][:n].asnumpy() if n else np.zeros((0,))
        bad = (labels < 0) | (labels >= self.classes) | (labels != np.floor(labels))
        if bad.any():
            raise UserError(
                "%s holds label %g (batch %d of this pass), but the network has %d classes "
                "(labels 0-%d); %s" % (self.source, labels[bad.argmax()], self._batch,
                                       self.classes, self.classes - 1, self.fix))


def checked(data_iter, classes=None, source=None, on_next=None):
    """``data_iter`` as a :class:`CheckedBatches` when there is a label to check or a
    batch to report; as it is otherwise (a caller's iterator trained on one machine)."""
    if classes is None and on_next is None:
        return data_iter
    return CheckedBatches(data_iter, classes, source, on_next)
