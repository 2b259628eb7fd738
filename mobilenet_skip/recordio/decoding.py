"""Decode every image of a packed file as the training iterator will (``im2rec.py --check
--decode``), and write a copy without the records that cannot be decoded.

A record whose image bytes are damaged (a zeroed or overwritten stretch inside the JPEG,
with every record header intact) passes the header walk of :func:`.check_record`. MXNet's
``ImageRecordIter`` then hands OpenCV's empty result for it to ``DefaultImageAugmenter``,
which divides by its width: the process dies by SIGFPE inside a C++ thread, with no
message, no checkpoint and at the same record on every ``--resume``. ``cv2.imdecode``
returns None for exactly those records: 450 randomly damaged records (zeroed, 0xFF and
random runs of 4 B to 1 KB, in headers and in entropy-coded data, 64 px and 500x375
JPEGs) gave SIGFPE in a one-record ``ImageRecordIter`` 124 times, and ``cv2.imdecode``
returned None for the same 124 and decoded the other 326, which the iterator read too.
(``mx.image.imdecode`` is no test: it returns an all-zero image for them.) Which decode
answers, and how fast, is :func:`.images.image_decodes`. An image with more pixels than
the cap (:func:`.images.oversized_reason`) is refused from its header, undecoded.
"""
import os
import struct
from collections import namedtuple

import mxnet as mx

from ..errors import UserError
from ..utils import fs
from ..utils.progress import Progress
from .check import RECORDIO_MAGIC, _PART_HEADER, check_record, read_index
from .encoding import map_in_order
from .images import MAX_PIXELS, image_decodes, oversized_reason
from .files import output_dir, prefix_lock, remove_files, write_text
from .listing import synsets_path

__all__ = ["Damaged", "decode_check", "write_without", "undecodable_reason"]

Damaged = namedtuple("Damaged", ["position", "key", "offset", "reason", "lst_line"])
Damaged.__doc__ = ("A record that cannot be decoded: its place in the file (0 = first), .idx "
                   "key, byte offset, why, and its line of the .lst beside the .rec (or None).")

_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)


def _read_record(fd, pos):
    """The record starting at byte ``pos``, its parts joined as dmlc's reader joins them
    (the magic word the writer split the payload at goes back in between)."""
    parts = []
    while True:
        _, lrec = _PART_HEADER.unpack(os.pread(fd, _PART_HEADER.size, pos))
        length, cflag = lrec & ((1 << 29) - 1), lrec >> 29
        parts.append(os.pread(fd, length, pos + _PART_HEADER.size))
        pos += _PART_HEADER.size + ((length + 3) & ~3)
        if cflag in (0, 3):
            return _MAGIC_BYTES.join(parts)


def undecodable_reason(record, max_pixels=MAX_PIXELS):
    """Why one record's image cannot be decoded by ``ImageRecordIter``, or None.

    See the module's note for why OpenCV's failure is the iterator's SIGFPE; an image
    of more than ``max_pixels`` is refused from its header, before decoding.
    """
    try:
        _, img = mx.recordio.unpack(record)
    except (ValueError, struct.error):
        return "its label header is damaged"
    if not img:
        return "it holds no image bytes"
    oversized = oversized_reason(img, max_pixels)
    if oversized:
        return "its image is " + oversized
    if not image_decodes(img):
        return "its image bytes cannot be decoded (damaged)"
    return None


def _lst_lines(rec_path):
    """``{key: line}`` of the .lst beside ``rec_path`` (keys are the .lst's indices)."""
    lst = os.path.splitext(rec_path)[0] + ".lst"
    lines = {}
    if os.path.isfile(lst):
        with open(lst, encoding="utf-8", errors="replace") as f:
            for line in f:
                lines.setdefault(line.split("\t", 1)[0].strip(), line.rstrip("\n"))
    return lines


def decode_check(rec_path, num_thread=1, stream=None, max_pixels=MAX_PIXELS):
    """Decode the image of every record of ``rec_path`` (after :func:`.check_record`).

    Parameters
    ----------
    rec_path : str
        A ``.rec`` with its ``.idx`` beside it.
    num_thread : int
        Images decoded at once (OpenCV releases the GIL while it decodes).
    stream : file, optional
        Progress output (default stderr).
    max_pixels : int
        Images with more pixels are reported, undecoded.

    Returns
    -------
    count : int
        Records checked.
    damaged : list of Damaged
        In file order.
    """
    if num_thread < 1:
        raise UserError("--num-thread must be at least 1, got %d" % num_thread)
    if max_pixels < 1:
        raise UserError("--max-pixels must be at least 1, got %d" % max_pixels)
    check_record(rec_path)
    keys, offsets = read_index(os.path.splitext(rec_path)[0] + ".idx")
    order = sorted(range(len(offsets)), key=offsets.__getitem__)
    progress = Progress(len(order), "decoding %s" % os.path.basename(rec_path), stream=stream)
    fd = os.open(rec_path, os.O_RDONLY)
    try:
        def work(i):
            return undecodable_reason(_read_record(fd, offsets[i]), max_pixels)
        bad = []
        for position, (i, reason) in enumerate(map_in_order(work, order, num_thread)):
            if reason:
                bad.append((position, i, reason))
            progress.update()
        progress.close()
    finally:
        os.close(fd)
    lines = _lst_lines(rec_path) if bad else {}
    return len(order), [Damaged(p, keys[i], offsets[i], reason, lines.get(keys[i]))
                        for p, i, reason in bad]


def write_without(rec_path, damaged, out_prefix, in_place=False):
    """Write ``out_prefix.rec``/``.idx``: every record of ``rec_path`` but ``damaged``.

    Both files are written under temporary names and renamed together once whole, so
    a reader never sees a new ``.idx`` beside an old ``.rec``. The class names
    (``.synsets.txt``) are copied, and the ``.lst`` is written without the damaged
    lines, so that the new prefix trains and re-packs as a set.

    Parameters
    ----------
    rec_path : str
        The checked ``.rec``.
    damaged : list of Damaged
        :func:`decode_check`'s result.
    out_prefix : str
        Where to write; the ``.rec``'s own prefix only with ``in_place``.
    in_place : bool
        Replace ``rec_path`` and its ``.idx`` (its ``.lst`` and synsets stay).

    Returns
    -------
    tuple of (str, int)
        The new ``.rec`` and the records it holds.
    """
    stem = os.path.splitext(rec_path)[0]
    out_prefix = out_prefix[:-4] if out_prefix.endswith(".rec") else out_prefix
    same = os.path.abspath(out_prefix) == os.path.abspath(stem)
    if same != bool(in_place):
        raise UserError("--repair %s would replace %s itself; pass --repair-in-place to mean "
                        "that, or give another prefix" % (out_prefix, rec_path) if same else
                        "--repair-in-place replaces %s; drop --repair %s, or drop "
                        "--repair-in-place to write a copy" % (rec_path, out_prefix))
    rec, idx = out_prefix + ".rec", out_prefix + ".idx"
    output_dir(rec)
    skip = {d.key for d in damaged}
    keys, offsets = read_index(stem + ".idx")
    rec_tmp, idx_tmp = fs.tmp_path(rec), fs.tmp_path(idx)
    with prefix_lock(out_prefix):
        fd, writer, kept = os.open(rec_path, os.O_RDONLY), None, 0
        try:
            writer = mx.recordio.MXIndexedRecordIO(idx_tmp, rec_tmp, "w", key_type=str)
            for i in sorted(range(len(offsets)), key=offsets.__getitem__):
                if keys[i] not in skip:
                    writer.write_idx(keys[i], _read_record(fd, offsets[i]))
                    kept += 1
            expected = writer.tell()
            writer.close()
            if os.path.getsize(rec_tmp) != expected:  # dmlc drops its last flush's error
                raise fs.disk_full_error(rec, expected)
            if not same:
                _copy_companions(stem, out_prefix, skip)
            remove_files(rec)  # never a new .idx beside the old .rec
            os.replace(idx_tmp, idx)
            os.replace(rec_tmp, rec)
        except OSError as err:
            if fs.is_disk_full(err):
                raise fs.disk_full_error(rec, os.path.getsize(rec_path)) from None
            raise
        finally:
            os.close(fd)
            if writer is not None:
                writer.close()
            remove_files(rec_tmp, idx_tmp)
    return rec, kept


def _copy_companions(stem, out_prefix, skip):
    """The synsets and the .lst (without the ``skip`` keys) of ``stem`` for ``out_prefix``."""
    if os.path.isfile(synsets_path(stem)):
        with open(synsets_path(stem), encoding="utf-8") as f:
            write_text(synsets_path(out_prefix), f.readlines())
    lines = _lst_lines(stem + ".rec")
    if lines:
        write_text(out_prefix + ".lst", [line + "\n" for key, line in lines.items()
                                         if key not in skip])
