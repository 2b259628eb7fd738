"""Classifying many image files with an export (``tools/predict.py``): folders walked,
images batched, every file answered in the order given, one bad file never stopping
the rest."""
import csv
import os

import mxnet as mx
import numpy as np

from ..errors import UserError
from ..recordio import MAX_PIXELS
from .images import load_image, softmax, top_k

__all__ = ["IMAGE_EXTENSIONS", "expand_paths", "batch_for", "classify", "CsvOut"]

# what im2rec lists as images (recordio.listing), in any case
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def expand_paths(paths):
    """``paths`` with each folder replaced by the image files under it (recursively, in
    sorted order; other files in it are skipped). Anything else is kept as given, so a
    missing file or a FIFO is reported where it stands.

    Returns
    -------
    list of (str, str or None)
        (path, error): error is set for a folder that holds no image.
    """
    out = []
    for path in paths:
        if not os.path.isdir(path):
            out.append((path, None))
            continue
        found = []
        for folder, dirs, files in os.walk(path):
            dirs.sort()
            found += [os.path.join(folder, f) for f in sorted(files)
                      if f.lower().endswith(IMAGE_EXTENSIONS)]
        out += [(f, None) for f in found] or [(path, "%s holds no %s file" % (
            path, "/".join(e[1:].upper() for e in IMAGE_EXTENSIONS)))]
    return out


def batch_for(batch_size, paths):
    """The images per forward pass for ``paths``: ``batch_size``, or fewer when fewer
    images are given (one big image must not cost ``batch_size`` of them)."""
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1, got %d" % batch_size)
    return min(batch_size, max(len(paths), 1))


def classify(net, info, synsets, paths, batch_size=16, k=5, max_pixels=MAX_PIXELS):
    """Classify ``paths`` (as :func:`expand_paths` gives them) in batches.

    Images are read one by one (a file that cannot be read, or of more than
    ``max_pixels``, is answered with its error) and the readable ones go through ``net``
    :func:`batch_for` at a time; the last batch is padded to the same size so the
    hybridized graph keeps one shape.

    Yields
    ------
    dict
        ``image`` and either ``top`` (:func:`~.images.top_k`) or ``error``, in the
        order of ``paths``.
    """
    batch_size = batch_for(batch_size, paths)
    for start in range(0, len(paths), batch_size):
        answers, inputs = [], []
        for path, error in paths[start:start + batch_size]:
            if error is None:
                try:
                    inputs.append(load_image(path, info, max_pixels))
                except UserError as err:
                    error = str(err)
            answers.append({"image": path, "error": error} if error else {"image": path})
        if inputs:
            ctx = inputs[0].context
            pad = [mx.nd.zeros_like(inputs[0])] * (batch_size - len(inputs))
            probs = softmax(net(mx.nd.concat(*(inputs + pad), dim=0).as_in_context(ctx))
                            .asnumpy())
            rows = iter(probs[:len(inputs)])
            for answer in answers:
                if "error" not in answer:
                    answer["top"] = top_k(np.asarray(next(rows)), synsets, k)
        for answer in answers:
            yield answer


class CsvOut(object):
    """``--csv OUT``: one row per image, ``path``, ``class_1``, ``probability_1``, ... up to
    ``k``, and ``error`` (empty when classified); flushed after every row, so an
    interrupted run keeps what it classified."""

    def __init__(self, path, k):
        try:
            self.file = open(path, "w", newline="", encoding="utf-8")
        except OSError as err:
            raise UserError("--csv %s: %s; give a writable file" % (path, err.strerror)) \
                from None
        self.k = k
        self.writer = csv.writer(self.file)
        self.writer.writerow(["path"] + sum([["class_%d" % i, "probability_%d" % i]
                                             for i in range(1, k + 1)], []) + ["error"])

    def write(self, answer):
        cells = sum([[t["name"], "%.6f" % t["probability"]] for t in answer.get("top", [])], [])
        cells += [""] * (2 * self.k - len(cells))
        self.writer.writerow([answer["image"]] + cells + [answer.get("error") or ""])
        self.file.flush()

    def close(self):
        self.file.close()
