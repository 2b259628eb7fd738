"""A real, small image set for demos and tests, with nothing to download.

scikit-learn ships the UCI handwritten digits (1,797 scans of 8x8 pixels, 17 grey
levels, 10 classes) inside its wheel. They are upscaled and written as JPEGs in
ImageNet's layout, ``train/<class>/*.jpg`` and ``val/<class>/*.jpg``, so that the
ImageNet path (im2rec, ImageRecordIter, training, prediction) runs on a laptop.
"""
import os
import shutil

import cv2
import numpy as np

from ..errors import UserError
from ..recordio import make_list, pack

__all__ = ["make_demo_data", "pack_demo_data", "pack_splits", "prepare_output", "CLASS_NAMES",
           "MARKER"]

CLASS_NAMES = ["digit_%d" % d for d in range(10)]  # sort in class order, as im2rec labels them
MARKER = "DEMO_DATA.txt"  # marks a folder as ours, so a re-run may replace it
_SPLIT_SEED = 0


def _load_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UserError("the demo data set comes from scikit-learn: run `pip install "
                        "scikit-learn==1.7.2` (or `make venv`)") from None
    digits = load_digits()
    return digits.images, digits.target


def prepare_output(out_dir, marker, writer):
    """Make ``out_dir`` ready for an image set, refusing to replace train/, val/ or
    holdout/ that ``writer`` did not write (it leaves ``marker`` beside them)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError("%s is a file; give a folder for the images" % out_dir)
    ours = os.path.isfile(os.path.join(out_dir, marker))
    for split in ("train", "val", "holdout"):
        path = os.path.join(out_dir, split)
        if not os.path.lexists(path) or (os.path.isdir(path) and not os.listdir(path)):
            continue
        if not ours or not os.path.isdir(path):
            raise UserError("%s already exists and was not written by %s; "
                            "remove it or choose another OUT_DIR" % (path, writer))
        shutil.rmtree(path)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:
        raise UserError("cannot create %s (%s); choose a writable OUT_DIR"
                        % (out_dir, err.strerror)) from None


def make_demo_data(out_dir, size=64, val_fraction=0.2, quality=95):
    """Write the digits as an ImageNet-style folder of JPEGs.

    The split is stratified and fixed (the same images go to val on every run and
    machine), and the files are byte-identical across runs.

    Parameters
    ----------
    out_dir : str
        Receives ``train/digit_<d>/<n>.jpg`` and ``val/digit_<d>/<n>.jpg``, ``<n>``
        being the image's index in scikit-learn's set. A previous demo set there is
        replaced; anything else in ``train/`` or ``val/`` is refused.
    size : int
        Side of the square images (bicubic upscale of the 8x8 originals).
    val_fraction : float
        Share of each class held out for val.
    quality : int
        JPEG quality.

    Returns
    -------
    dict
        ``train`` and ``val`` image counts and ``classes`` (folder names).
    """
    if not (isinstance(size, int) and 8 <= size <= 1024):
        raise UserError("--size must be an integer from 8 to 1024, got %r" % (size,))
    if not 0 < val_fraction < 1:
        raise UserError("--val-fraction must be between 0 and 1, got %r" % (val_fraction,))
    images, labels = _load_digits()
    prepare_output(out_dir, MARKER, "make_demo_data")
    rng = np.random.RandomState(_SPLIT_SEED)
    is_val = np.zeros(len(labels), bool)
    for digit in range(len(CLASS_NAMES)):
        members = rng.permutation(np.flatnonzero(labels == digit))
        is_val[members[:int(round(len(members) * val_fraction))]] = True
    for split in ("train", "val"):
        for name in CLASS_NAMES:
            os.makedirs(os.path.join(out_dir, split, name), exist_ok=True)
    for n, (img, digit) in enumerate(zip(images, labels)):
        grey = np.clip(img * (255.0 / 16.0), 0, 255).astype(np.uint8)
        big = cv2.resize(grey, (size, size), interpolation=cv2.INTER_CUBIC)
        path = os.path.join(out_dir, "val" if is_val[n] else "train", CLASS_NAMES[digit],
                            "%04d.jpg" % n)
        if not cv2.imwrite(path, big, [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise UserError("cannot write %s; choose a writable OUT_DIR" % path)
    with open(os.path.join(out_dir, MARKER), "w") as f:
        f.write("Demo images written by mobilenet_skip.data.demo.make_demo_data(size=%d, "
                "val_fraction=%g):\nscikit-learn's copy of the UCI Optical Recognition of "
                "Handwritten Digits data set\n(1,797 8x8 images, 10 classes), upscaled to "
                "JPEG. Re-running the tool replaces this folder's train/ and val/.\n"
                % (size, val_fraction))
    return {"train": int((~is_val).sum()), "val": int(is_val.sum()),
            "classes": list(CLASS_NAMES)}


def pack_demo_data(folder, size=64, splits=("train", "val"), num_thread=1):
    """Make the demo digits under ``folder/images`` and pack each split, quietly, as
    ``folder/<split>.rec`` (with ``.idx``, ``.lst`` and ``.synsets.txt``).

    Returns
    -------
    list of str
        The ``.rec`` paths, in the order of ``splits``.
    """
    images = os.path.join(folder, "images")
    make_demo_data(images, size=size)
    return pack_splits(images, folder, splits, num_thread)


def pack_splits(images, folder, splits=("train", "val"), num_thread=1):
    """Pack ``images/<split>`` (an ImageNet-style folder) as ``folder/<split>.rec`` for each
    split, quietly, as tools/im2rec.py would; returns the ``.rec`` paths."""
    recs = []
    for split in splits:
        prefix = os.path.join(folder, split)
        make_list(prefix, os.path.join(images, split), recursive=True)
        with open(os.devnull, "w") as quiet:
            pack(prefix, os.path.join(images, split), num_thread=num_thread, stream=quiet,
                 out=quiet)
        recs.append(prefix + ".rec")
    return recs
