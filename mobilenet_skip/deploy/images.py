"""Exported models at work on single images: reading and decoding an image file
safely (a decompression bomb refused from its header, as packing refuses it), validation's
preprocessing (:meth:`~mobilenet_skip.data.preprocess.Preprocessing.image`)
and top-k class names. The runtimes that run a network are in :mod:`.runtime`.
"""
import io
import os
import stat

import mxnet as mx
import numpy as np

from ..data.preprocess import Preprocessing
from ..errors import UserError
from ..recordio import MAX_PIXELS, oversized_reason

__all__ = ["decode_image", "exif_orientation", "load_image", "read_image_bytes", "top_k",
           "softmax", "MAX_IMAGE_BYTES"]

# Decoded, the largest image is ~10x its file; 64 MB is far above any photo and far below
# a MemoryError.
MAX_IMAGE_BYTES = 64 << 20


# EXIF Orientation (1-8) -> how OpenCV's IMREAD_COLOR turns the stored pixels upright
# (its ExifTransform), for an H x W x C array.
_EXIF_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: a.transpose(1, 0, 2)[::-1],
}


def exif_orientation(raw):
    """The EXIF Orientation tag of a JPEG's bytes (1, upright, when it has none).

    Read with Pillow, which parses the header without decoding pixels.
    """
    if raw[:2] != b"\xff\xd8":
        return 1
    from PIL import Image
    try:
        with Image.open(io.BytesIO(raw)) as img:
            return int(img.getexif().get(0x0112, 1))
    except Exception:  # a damaged header: OpenCV then ignores the tag as well
        return 1


def decode_image(raw, name="image", max_pixels=MAX_PIXELS):
    """RGB ``H x W x 3`` uint8 NDArray from encoded bytes (JPEG, PNG, ...), upright.

    The pixels are MXNet's decoder's, which ``ImageRecordIter`` runs, and a JPEG's EXIF
    orientation is applied as OpenCV applies it both when packing and in
    ``ImageRecordIter`` (``mx.image.imdecode`` ignores it): a phone photo is classified
    as evaluation would see it, not sideways. An image of more than ``max_pixels``, as
    its header states (:func:`~mobilenet_skip.recordio.oversized_reason`), is refused
    before decoding: a 0.87 MB PNG of 30000x30000 decodes to 2.7 GB.

    Raises
    ------
    UserError
        When the bytes are empty, hold too many pixels or are not an image OpenCV can
        decode.
    """
    if not raw:
        raise UserError("%s is empty" % name)
    oversized = oversized_reason(raw, max_pixels)
    if oversized:
        raise UserError("%s: %s" % (name, oversized))
    try:
        img = mx.image.imdecode(raw, flag=1, to_rgb=True)
    except mx.base.MXNetError:
        img = None
    if img is None or img.ndim != 3 or min(img.shape[:2]) < 1:
        raise UserError("%s cannot be decoded as an image (JPEG, PNG, BMP, ...)" % name)
    upright = _EXIF_UPRIGHT.get(exif_orientation(raw))
    if upright is not None:
        img = mx.nd.array(np.ascontiguousarray(upright(img.asnumpy())), dtype=np.uint8)
    return img


def read_image_bytes(path, limit=None):
    """The bytes of an image file, refusing what is not a regular file of plausible size.

    A FIFO would block the read until someone writes to it and ``/dev/zero`` never
    ends, so the file is checked with ``stat`` (which opens nothing) first, and at
    most ``limit + 1`` bytes are read in case it grows meanwhile.

    Raises
    ------
    UserError
        Naming the file: missing, not a regular file, too large or unreadable.
    """
    limit = MAX_IMAGE_BYTES if limit is None else limit
    try:
        st = os.stat(path)
    except OSError as err:
        raise UserError("%s: %s" % (path, err.strerror or err))
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO (named pipe)"
                if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "not a regular file")
        raise UserError("%s is %s, not an image file; give JPEG/PNG/BMP files" % (path, kind))
    if st.st_size > limit:
        raise UserError("%s is %.1f MB, more than the %.1f MB an image may be here; resize it "
                        "first" % (path, st.st_size / 2.0 ** 20, limit / 2.0 ** 20))
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as err:
        raise UserError("%s: %s" % (path, err.strerror or err))
    if len(raw) > limit:
        raise UserError("%s grew past %.1f MB while being read" % (path, limit / 2.0 ** 20))
    return raw


def load_image(path, info, max_pixels=MAX_PIXELS):
    """Read, decode and preprocess one image file for an export described by ``info``.

    ``info`` (a sidecar) gives the :class:`~mobilenet_skip.data.preprocess.Preprocessing`;
    the result is a ``1 x 3 x S x S`` float32 batch, the input validation gave.

    Raises
    ------
    UserError
        Naming the file: missing, unreadable, of more than ``max_pixels``, or not an image.
    """
    raw = read_image_bytes(path)
    return Preprocessing.from_dict(info).image(decode_image(raw, path, max_pixels))


def softmax(logits):
    """Row-wise softmax of a NumPy array, in float64 for stable probabilities."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def top_k(probs, synsets, k=5):
    """The ``k`` most likely classes of one probability vector.

    Returns
    -------
    list of dict
        ``index``, ``name`` and ``probability``, most likely first.
    """
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"index": int(i), "name": synsets[i] if synsets else str(i),
             "probability": float(probs[i])} for i in order]
