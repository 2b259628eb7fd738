"""One image file to one record, as MXNet's im2rec encodes it, refusing truncated files."""
import struct
from collections import deque, namedtuple
from concurrent.futures import ThreadPoolExecutor

import cv2
import mxnet as mx
import numpy as np

from .files import fs_path

PackOptions = namedtuple("PackOptions", ["resize", "center_crop", "quality", "encoding",
                                         "color", "pass_through", "pack_label"])
PackOptions.__new__.__defaults__ = (0, False, 95, ".jpg", 1, False, False)
PackOptions.__doc__ = "How images become records; the fields are im2rec's flags of those names."


def _jpeg_complete(raw):
    """Whether a JPEG's marker chain reaches its end-of-image marker (FFD9).

    Segments are skipped by their lengths, so the EOI of an EXIF thumbnail near the
    start of a cut file does not count, and bytes after the real EOI (some cameras
    append data there) do no harm. In entropy-coded data a literal FF is stuffed as
    FF00, so any other FFxx there is a marker.
    """
    n, pos = len(raw), 2
    while True:
        j = raw.find(b"\xff", pos)
        if j < 0 or j + 1 >= n:
            return False
        marker = raw[j + 1]
        if marker == 0xD9:
            return True
        if marker == 0xFF:  # fill byte before a marker
            pos = j + 1
        elif marker in (0x00, 0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            pos = j + 2
        else:
            if j + 4 > n:
                return False
            pos = j + 2 + (raw[j + 2] << 8 | raw[j + 3])


def _png_complete(raw):
    """Whether a PNG's chunk chain reaches its IEND chunk."""
    n, pos = len(raw), 8
    while pos + 8 <= n:
        length, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        if kind == b"IEND":
            return True
        pos += 12 + length
    return False


def incomplete_reason(raw):
    """Why the bytes of an image file are cut short, or None if they look whole.

    OpenCV decodes the top of a truncated JPEG and fills the rest with grey without
    a word, so a copy cut at 30% would be trained on. Formats other than JPEG and
    PNG are left to the decoder.
    """
    if raw[:3] == b"\xff\xd8\xff" and not _jpeg_complete(raw):
        return "truncated: the JPEG has no end-of-image marker (FFD9); copy the file again"
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and not _png_complete(raw):
        return "truncated: the PNG has no IEND chunk; copy the file again"
    return None


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
    reason = incomplete_reason(raw)
    if reason:
        return None, reason
    # Pass-through records are never decoded here, so decode them once anyway: a
    # file that cannot be decoded would otherwise stop the C++ iterator mid-epoch.
    flag = cv2.IMREAD_REDUCED_COLOR_4 if opts.pass_through else opts.color
    label = list(labels) if opts.pack_label and len(labels) > 1 else labels[0]
    header = mx.recordio.IRHeader(0, label, index, 0)
    # OpenCV raises on some malformed files instead of returning None; either way it
    # is this image's problem, never a reason to abort the other million.
    try:
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), flag)
        if img is None or img.size == 0:
            return None, "cannot decode as an image"
        if opts.pass_through:
            return mx.recordio.pack(header, raw), None
        if opts.center_crop:
            h, w = img.shape[:2]
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            img = img[top:top + side, left:left + side]
        if opts.resize:
            h, w = img.shape[:2]
            img = cv2.resize(img, (opts.resize, h * opts.resize // w) if h > w
                             else (w * opts.resize // h, opts.resize))
        return mx.recordio.pack_img(header, img, quality=opts.quality,
                                    img_fmt=opts.encoding), None
    except (cv2.error, AssertionError, ValueError) as err:
        return None, "cannot decode or encode: %s" % str(err).strip().splitlines()[-1]


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
