"""Single-crop top-1/top-5 over a validation iterator: the one scorer of training's
validation and of deployment's runners (exports, checkpoints, ONNX Runtime): any callable
network on one device's batch.
"""
import time

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..utils.progress import Progress
from .bnstats import sync_running_stats

__all__ = ["evaluate", "PROGRESS_AFTER"]

# Seconds of scoring after which a progress bar (or, in a log, a line every 30 s) starts:
# the demo's val set is done before then and prints nothing, ImageNet's 50,000 are not.
PROGRESS_AFTER = 5.0


class _LateProgress(object):
    """A :class:`~mobilenet_skip.utils.progress.Progress` of ``total`` images that appears
    only once scoring has run ``after`` seconds (never with ``after`` None or no total)."""

    def __init__(self, total, after, label="val"):
        self.total, self.after, self.label = total, after, label
        self.start, self.bar = time.monotonic(), None

    def update(self, done, n):
        if self.bar is not None:
            self.bar.update(n)
        elif (self.after is not None and self.total
              and time.monotonic() - self.start >= self.after):
            self.bar = Progress(self.total, self.label, unit="img")
            self.bar.start = self.start  # rate and ETA over the whole pass
            self.bar.update(done)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _PerImage(object):
    """Every scored image's label, top-1 class and its softmax probability, kept on the
    device until the pass ends, so collecting costs no sync per batch."""

    def __init__(self):
        self.parts = []

    def add(self, label, top1, logp):
        self.parts.append((label, top1, logp.max(axis=1).exp()))

    def arrays(self):
        """``label``, ``pred`` (int64) and ``confidence`` (float32), in scoring order."""
        if not self.parts:
            return {"label": np.zeros(0, np.int64), "pred": np.zeros(0, np.int64),
                    "confidence": np.zeros(0, np.float32)}
        label, pred, conf = ([p[i].asnumpy() for p in self.parts] for i in range(3))
        return {"label": np.concatenate(label).astype(np.int64),
                "pred": np.concatenate(pred).astype(np.int64),
                "confidence": np.concatenate(conf).astype(np.float32)}


def evaluate(net, val_data, ctxs, dtype="float32", max_batches=0, per_image=False,
             progress_after=PROGRESS_AFTER):
    """Single-crop top-1/top-5 and loss over a validation iterator, dropping padded samples.

    ``net`` is a Gluon block or any callable on one device's batch that returns logits.
    With several devices a block's BatchNorm running statistics are first set to what a
    checkpoint saves (:func:`~mobilenet_skip.runs.bnstats.sync_running_stats`), so the
    figure is the checkpoint's whichever device scores a sample.

    Parameters
    ----------
    per_image : bool
        Also return each image's label, predicted class and confidence (what a class
        report needs; training's validation leaves it off).
    progress_after : float or None
        Seconds after which a pass over a long set shows its progress on stderr (when
        ``val_data`` knows its ``num_records``); None never does.

    Returns
    -------
    dict
        ``top1``, ``top5`` (fractions), ``loss`` (mean softmax cross-entropy, no label
        smoothing), ``images``, ``seconds``, ``classes`` (the logits' width) and, with
        ``per_image``, ``label``, ``pred`` and ``confidence`` (NumPy arrays in the
        iterator's order: split_and_load cuts each batch into consecutive runs, one per
        device, and they are kept in that order).
    """
    if len(ctxs) > 1 and isinstance(net, gluon.Block):  # a runner's copies are one set of weights
        sync_running_stats(net)
    val_data.reset()
    correct1, correct5, loss = ([mx.nd.zeros((1,), ctx=c) for c in ctxs] for _ in range(3))
    kept = _PerImage() if per_image else None
    bar = _LateProgress(getattr(val_data, "num_records", None), progress_after)
    images, classes, start = 0, 0, time.time()
    for i, batch in enumerate(val_data):
        if max_batches and i >= max_batches:
            break
        n = batch.data[0].shape[0] - (batch.pad or 0)
        data = gluon.utils.split_and_load(batch.data[0][:n], ctxs, even_split=False)
        label = gluon.utils.split_and_load(batch.label[0][:n], ctxs, even_split=False)
        for k, (x, y) in enumerate(zip(data, label)):
            out = net(x.astype(dtype, copy=False)).astype("float32")
            classes = out.shape[1]
            top = mx.nd.topk(out, axis=1, k=min(5, classes), ret_typ="indices")
            hit = top == y.reshape((-1, 1))
            correct1[k] += hit[:, 0].sum()
            correct5[k] += hit.sum()
            logp = mx.nd.log_softmax(out, axis=1)
            loss[k] -= mx.nd.pick(logp, y, axis=1).sum()
            if kept is not None:
                kept.add(y, top[:, 0], logp)
        images += n
        bar.update(images, n)
    mx.nd.waitall()
    bar.close()
    seconds = time.time() - start
    total = max(images, 1)
    result = {"top1": sum(c.asscalar() for c in correct1) / total,
              "top5": sum(c.asscalar() for c in correct5) / total,
              "loss": float(sum(v.asscalar() for v in loss)) / total,
              "images": images, "seconds": seconds, "classes": classes}
    if kept is not None:
        result.update(kept.arrays())
    return result
