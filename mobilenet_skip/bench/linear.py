"""The linear floor of the converged study: multinomial logistic regression on raw pixels.

A network's test top-1 means little without the accuracy a linear model gets from the
same images: on Fashion-MNIST that floor is in the mid 80s, so a network at 89% has
added a few points, not 89. The floor is trained on exactly the converged study's
training images (the 60,000 minus the fixed stratified hold-out of
:func:`~mobilenet_skip.data.fashion.holdout_split`), its regularisation C chosen on the
hold-out as the networks' epochs are monitored on it, and the chosen model is scored
once on the 10,000 test images. lbfgs is deterministic, so the floor has no seeds.
"""
import time
import warnings

import numpy as np

from ..data.fashion import holdout_split, load_split
from ..errors import UserError
from ..utils.fs import atomic_save_csv

__all__ = ["linear_floor", "pixels", "COLUMNS", "GRID", "INPUTS", "CLASSES"]

COLUMNS = ("model", "C", "holdout_top1", "test_top1", "train_images", "seconds")
GRID = (0.01, 0.1, 1.0)  # C: strong to weak L2 regularisation
INPUTS, CLASSES = 28 * 28, 10  # the model's Mult-Adds are INPUTS x CLASSES


def pixels(images):
    """``N x 28 x 28`` uint8 images as ``N x 784`` float32 features in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / 255


def _fit(x, y, c, max_iter):
    """``(model, converged)``: lbfgs logistic regression at ``c``; a ConvergenceWarning is
    returned as ``converged=False`` (for the CSV to say), every other warning re-raised."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter).fit(x, y)
    converged = True
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            converged = False
        else:
            warnings.warn(w.message, w.category)
    return model, converged


def linear_floor(idx_dir, out_csv, holdout_per_class=500, grid=GRID, max_iter=200):
    """Fit the floor on the study's training images, choose C on the hold-out, score the
    test images once, and write ``out_csv`` (:data:`COLUMNS`, one row).

    Parameters
    ----------
    idx_dir : str
        Folder of Fashion-MNIST's four IDX files.
    out_csv : str
        Receives the row (the converged report's ``linear.csv``).
    holdout_per_class : int
        Images per class held out of the 60,000 (the study's 500: 5,000 held out).
    grid : sequence of float
        C values tried; the first with the best hold-out top-1 is kept.
    max_iter : int
        lbfgs iterations per fit; a fit that stops before converging is named in the
        ``model`` text rather than hidden.

    Returns
    -------
    dict
        The row written.
    """
    if not (isinstance(holdout_per_class, int) and holdout_per_class >= 1):
        raise UserError("holdout_per_class must be a positive integer, got %r"
                        % (holdout_per_class,))
    if not grid or min(grid) <= 0:
        raise UserError("the C grid must hold positive values, got %r" % (grid,))
    from threadpoolctl import threadpool_limits

    tic = time.time()
    images, labels = load_split(idx_dir, "train")
    train, held = holdout_split(labels, holdout_per_class)
    x, test_images, test_labels = pixels(images), *load_split(idx_dir, "val")
    with threadpool_limits(1):  # one core: the other runs the study's training
        fits = [(c,) + _fit(x[train], labels[train], c, max_iter) for c in grid]
        scores = [model.score(x[held], labels[held]) for _, model, _ in fits]
        best = int(np.argmax(scores))
        test_top1 = fits[best][1].score(pixels(test_images), test_labels)
    row = {"model": _describe(fits, grid, max_iter), "C": fits[best][0],
           "holdout_top1": float(scores[best]), "test_top1": float(test_top1),
           "train_images": len(train), "seconds": round(time.time() - tic, 1)}
    atomic_save_csv(out_csv, COLUMNS, [row])
    return row


def _describe(fits, grid, max_iter):
    """The model text: what was fitted, and which fits stopped before converging."""
    text = ("logistic regression on raw pixels (lbfgs, max_iter %d, C from %s on the hold-out)"
            % (max_iter, "/".join("%g" % c for c in grid)))
    stopped = ["%g" % c for c, _, converged in fits if not converged]
    if stopped:
        text += "; ConvergenceWarning: not converged at C=%s" % ", ".join(stopped)
    return text
