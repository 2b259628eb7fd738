"""Fashion-MNIST as an ImageNet-style folder: the study's harder real data.

Zalando's Fashion-MNIST is 60,000 train and 10,000 test greyscale 28x28 photos of
clothing in 10 classes, a drop-in but much harder MNIST. Debian ships the four IDX
files (``apt-get install dataset-fashion-mnist`` puts them in
``/usr/share/datasets/fashion-mnist/``); elsewhere the same four files come from the
data set's repository. They are written as PNGs in ImageNet's layout
(``train/<class>/*.png``, ``val/<class>/*.png``) so that tools/im2rec.py packs them as
any user's folder and the study trains on them through the real ImageNet path.
"""
import gzip
import os
import struct

import cv2
import numpy as np

from ..errors import UserError
from ..utils.progress import Progress
from .demo import prepare_output

__all__ = ["make_fashion_data", "read_idx", "load_split", "holdout_split", "DEFAULT_IDX_DIR",
           "CLASS_NAMES", "FILES", "HOLDOUT_SEED"]

DEFAULT_IDX_DIR = "/usr/share/datasets/fashion-mnist"
# The data set's label order; the index prefix keeps it when im2rec sorts the folders.
CLASS_NAMES = ["%d_%s" % item for item in enumerate(
    ["T-shirt-top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
     "Bag", "Ankle-boot"])]
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
         "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000)}
MARKER = "FASHION_DATA.txt"
# The draw of the converged study's monitoring split: fixed, so every run, the linear floor
# and any later study hold out the same 5,000 training images.
HOLDOUT_SEED = 1
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # IDX: unsigned bytes, 3 and 1 dimensions
HOW_TO_GET = ("run `apt-get install dataset-fashion-mnist` (puts them in %s), or download "
              "the four .gz files from github.com/zalandoresearch/fashion-mnist (data/fashion)"
              " and pass their folder as --idx-dir" % DEFAULT_IDX_DIR)


def read_idx(path, magic):
    """The array in one gzipped IDX file, after checking its magic number and size.

    Parameters
    ----------
    path : str
        A ``*-idx3-ubyte.gz`` (images, N x rows x cols) or ``*-idx1-ubyte.gz`` (labels).
    magic : int
        2051 for images, 2049 for labels.
    """
    dims = magic - 2048
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise UserError("Fashion-MNIST file %s is missing: %s" % (path, HOW_TO_GET)) from None
    except (OSError, EOFError) as err:
        raise UserError("%s is not a readable gzip file (%s): download it again; %s"
                        % (path, err, HOW_TO_GET)) from None
    header = 4 + 4 * dims
    if len(raw) < header or struct.unpack(">I", raw[:4])[0] != magic:
        raise UserError("%s is not an IDX file of %s (magic number %d expected): check the "
                        "file names; %s" % (path, "images" if dims == 3 else "labels", magic,
                                            HOW_TO_GET))
    shape = struct.unpack(">%dI" % dims, raw[4:header])
    if len(raw) - header != int(np.prod(shape)):
        raise UserError("%s holds %d bytes of data where its header says %s: the file is "
                        "truncated or damaged; download it again"
                        % (path, len(raw) - header, "x".join(map(str, shape))))
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def load_split(idx_dir, split):
    """``(images, labels)`` of ``split`` (``train``: the 60,000, ``val``: the 10,000 test
    images), checked; images are ``N x 28 x 28`` uint8."""
    images, labels, _ = _load(idx_dir, split)
    return images, labels


def holdout_split(labels, per_class, seed=HOLDOUT_SEED):
    """``(train, holdout)`` indices into ``labels``: ``per_class`` images of each class held
    out (a fixed stratified draw), the rest for training; both in file order."""
    held = _subset(labels, per_class, seed)
    return np.setdiff1d(np.arange(len(labels)), held), held


def _load(idx_dir, split):
    images_file, labels_file, expected = FILES[split]
    images = read_idx(os.path.join(idx_dir, images_file), IMAGES_MAGIC)
    labels = read_idx(os.path.join(idx_dir, labels_file), LABELS_MAGIC)
    if len(images) != len(labels):
        raise UserError("%s has %d images but %s has %d labels: the files are from different "
                        "sets; download them again" % (images_file, len(images), labels_file,
                                                        len(labels)))
    if labels.max() >= len(CLASS_NAMES):
        raise UserError("%s has label %d; Fashion-MNIST has 10 classes (0-9)"
                        % (labels_file, labels.max()))
    return images, labels, expected


def _subset(labels, per_class, seed):
    """Indices of ``per_class`` images of each class (all if None), in file order."""
    if per_class is None:
        return np.arange(len(labels))
    rng = np.random.RandomState(seed)
    keep = []
    for label in range(len(CLASS_NAMES)):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise UserError("--per-class %d: class %s has only %d images in this split"
                            % (per_class, CLASS_NAMES[label], len(members)))
        keep.append(rng.permutation(members)[:per_class])
    return np.sort(np.concatenate(keep))


def make_fashion_data(out_dir, idx_dir=DEFAULT_IDX_DIR, per_class=None, val_per_class=None,
                      size=32, seed=0, stream=None, holdout_per_class=None):
    """Write Fashion-MNIST (or a stratified subset of it) as an ImageNet-style folder.

    Parameters
    ----------
    out_dir : str
        Receives ``train/<k>_<class>/<n>.png`` and ``val/<k>_<class>/<n>.png``, ``<n>``
        being the image's index in its IDX file. A previous set written by this function
        is replaced; anything else in ``train/`` or ``val/`` is refused.
    idx_dir : str
        Folder holding the four ``*.gz`` IDX files.
    per_class, val_per_class : int, optional
        Images per class drawn from the train (60,000) and test (10,000) files, a fixed
        stratified draw (``seed``); None keeps them all. The study validates on all 10,000.
    size : int
        Side of the written images (bicubic from 28; the network needs at least 32).
    stream : file, optional
        Where the progress bar goes (default stderr).
    holdout_per_class : int, optional
        Hold this many train images per class out of ``train/`` into ``holdout/``, a
        fixed stratified draw (:func:`holdout_split`), before ``per_class`` draws from
        the rest: the converged study's monitoring split.

    Returns
    -------
    dict
        ``train``, ``val`` (and ``holdout``) image counts and ``classes`` (folder names).
    """
    for flag, value in (("--per-class", per_class), ("--val-per-class", val_per_class),
                        ("--holdout-per-class", holdout_per_class)):
        if value is not None and not (isinstance(value, int) and value >= 1):
            raise UserError("%s must be a positive integer, got %r" % (flag, value))
    if not (isinstance(size, int) and 28 <= size <= 1024):
        raise UserError("--size must be an integer from 28 to 1024, got %r" % (size,))
    splits = {split: _load(idx_dir, split) for split in FILES}  # all checked before writing
    prepare_output(out_dir, MARKER, "make_fashion_data")
    counts, jobs = {}, []
    for split, (images, labels, _) in splits.items():
        pool = np.arange(len(labels))
        if split == "train" and holdout_per_class:
            pool, held = holdout_split(labels, holdout_per_class)
            jobs.append(("holdout", images, labels, held))
        chosen = _subset(labels[pool], per_class if split == "train" else val_per_class, seed)
        jobs.append((split, images, labels, pool[chosen]))
    for split, images, labels, keep in jobs:
        for name in CLASS_NAMES:
            os.makedirs(os.path.join(out_dir, split, name), exist_ok=True)
        bar = Progress(len(keep), "writing %s" % split, stream=stream)
        for n in keep:
            img = images[n]
            if size != img.shape[0]:
                img = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)
            path = os.path.join(out_dir, split, CLASS_NAMES[labels[n]], "%05d.png" % n)
            if not cv2.imwrite(path, img):
                raise UserError("cannot write %s; choose a writable OUT_DIR" % path)
            bar.update(1)
        bar.close()
        counts[split] = len(keep)
    with open(os.path.join(out_dir, MARKER), "w") as f:
        f.write("Fashion-MNIST written by mobilenet_skip.data.fashion.make_fashion_data("
                "per_class=%r, val_per_class=%r, size=%d, seed=%d, holdout_per_class=%r) from "
                "%s.\nRe-running the tool replaces this folder's train/, val/ and holdout/.\n"
                % (per_class, val_per_class, size, seed, holdout_per_class,
                   os.path.abspath(idx_dir)))
    return dict(counts, classes=list(CLASS_NAMES))
