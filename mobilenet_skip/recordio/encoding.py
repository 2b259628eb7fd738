"""One image file to one record, as MXNet's im2rec encodes it, refusing truncated files,
decompression bombs and any record whose image would not decode."""
from collections import deque, namedtuple
from concurrent.futures import ThreadPoolExecutor

import cv2
import mxnet as mx
import numpy as np

from .files import fs_path
from .images import MAX_PIXELS, image_decodes, incomplete_reason, oversized_reason

PackOptions = namedtuple("PackOptions", ["resize", "center_crop", "quality", "encoding",
                                         "color", "pass_through", "pack_label", "max_pixels"])
PackOptions.__new__.__defaults__ = (0, False, 95, ".jpg", 1, False, False, MAX_PIXELS)
PackOptions.__doc__ = "How images become records; the fields are im2rec's flags of those names."


def encode_image(path, labels, index, opts):
    """Read one image and pack it as a record, the way im2rec does.

    Returns
    -------
    record : bytes or None
        The packed record, or None when the image cannot be read or decoded.
    reason : str or None
        Why the image was skipped.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        return None, "cannot read: %s" % (err.strerror or err)
    if not raw:
        return None, "empty file"
    reason = incomplete_reason(raw) or oversized_reason(raw, opts.max_pixels)
    if reason:
        return None, reason
    label = list(labels) if opts.pack_label and len(labels) > 1 else labels[0]
    header = mx.recordio.IRHeader(0, label, index, 0)
    # Every record's image is decoded once as the decode check decodes it (pass-through
    # bytes and re-encoded ones alike): a record that does not decode would stop the C++
    # iterator, and the .rec is stamped as checked on the strength of this.
    if opts.pass_through:
        if not image_decodes(raw):
            return None, "cannot decode as an image"
        return mx.recordio.pack(header, raw), None
    # OpenCV raises on some malformed files instead of returning None; either way it
    # is this image's problem, never a reason to abort the other million.
    try:
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), opts.color)
        if img is None or img.size == 0:
            return None, "cannot decode as an image"
        if opts.center_crop:
            h, w = img.shape[:2]
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            img = img[top:top + side, left:left + side]
        if opts.resize:
            h, w = img.shape[:2]
            img = cv2.resize(img, (opts.resize, h * opts.resize // w) if h > w
                             else (w * opts.resize // h, opts.resize))
        record = mx.recordio.pack_img(header, img, quality=opts.quality,
                                      img_fmt=opts.encoding)
    except (cv2.error, AssertionError, ValueError) as err:
        return None, "cannot decode or encode: %s" % str(err).strip().splitlines()[-1]
    if not image_decodes(mx.recordio.unpack(record)[1]):
        return None, "its %s encoding does not decode again" % opts.encoding
    return record, None


def map_in_order(work, items, num_thread):
    """Yield ``(item, work(item))`` in ``items``' order, ``num_thread`` calls at once.

    Threads suffice for OpenCV's work: it releases the GIL while it decodes, resizes and
    encodes. The window of pending items is bounded, so memory stays flat over 1.28M
    images.
    """
    if num_thread <= 1:
        for item in items:
            yield item, work(item)
        return
    pool = ThreadPoolExecutor(num_thread)
    pending = deque()
    try:
        for item in items:
            pending.append((item, pool.submit(work, item)))
            if len(pending) >= 4 * num_thread:
                item0, future = pending.popleft()
                yield item0, future.result()
        while pending:
            item0, future = pending.popleft()
            yield item0, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def encoded_records(items, root, opts, num_thread):
    """Yield ``(item, record, reason)`` in list order, encoding ``num_thread`` images at once."""
    def work(item):
        return encode_image(fs_path(root, item[1]), item[2:], item[0], opts)

    for item, (record, reason) in map_in_order(work, items, num_thread):
        yield item, record, reason
