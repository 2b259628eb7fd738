"""Single-crop top-1/top-5 over a validation iterator: the one scorer of training,
evaluation of exports and ONNX Runtime (any callable network on one device's batch).
"""
import time

import mxnet as mx
from mxnet import gluon

from .bnstats import sync_running_stats

__all__ = ["evaluate"]


def evaluate(net, val_data, ctxs, dtype="float32", max_batches=0):
    """Single-crop top-1/top-5 over a validation iterator, dropping padded samples.

    ``net`` is a Gluon block or any callable on one device's batch. With several
    devices a block's BatchNorm running statistics are first set to what a checkpoint
    saves (:func:`~mobilenet_skip.train.bnstats.sync_running_stats`), so the figure is the
    checkpoint's whichever device scores a sample.

    Returns
    -------
    dict
        ``top1``, ``top5`` (fractions), ``images``, ``seconds``.
    """
    if len(ctxs) > 1 and isinstance(net, gluon.Block):  # a ModuleNet holds one file's stats
        sync_running_stats(net)
    val_data.reset()
    correct1 = [mx.nd.zeros((1,), ctx=c) for c in ctxs]
    correct5 = [mx.nd.zeros((1,), ctx=c) for c in ctxs]
    images, start = 0, time.time()
    for i, batch in enumerate(val_data):
        if max_batches and i >= max_batches:
            break
        n = batch.data[0].shape[0] - (batch.pad or 0)
        data = gluon.utils.split_and_load(batch.data[0][:n], ctxs, even_split=False)
        label = gluon.utils.split_and_load(batch.label[0][:n], ctxs, even_split=False)
        for k, (x, y) in enumerate(zip(data, label)):
            out = net(x.astype(dtype, copy=False)).astype("float32")
            top = mx.nd.topk(out, axis=1, k=min(5, out.shape[1]), ret_typ="indices")
            hit = top == y.reshape((-1, 1))
            correct1[k] += hit[:, 0].sum()
            correct5[k] += hit.sum()
        images += n
    mx.nd.waitall()
    seconds = time.time() - start
    n = max(images, 1)
    return {"top1": sum(c.asscalar() for c in correct1) / n,
            "top5": sum(c.asscalar() for c in correct5) / n,
            "images": images, "seconds": seconds}
