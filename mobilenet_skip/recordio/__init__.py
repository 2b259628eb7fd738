"""Image folders to MXNet RecordIO (what tools/im2rec.py runs), and checks of packed files.

The list and record formats, label order and image transforms are those of MXNet's
own ``tools/im2rec.py``, and records are written with :mod:`mxnet.recordio`, so files
from either tool are interchangeable. Beyond it: a ``.synsets.txt`` beside each list,
unreadable or truncated images skipped and listed instead of aborting the job,
``.rec``/``.idx`` written under temporary names and renamed together at the end, one job
per prefix (``PREFIX.lock``), symlink loops walked once, ``.lst`` entries kept inside
ROOT, a check of every record header (and of an index that names every record) before
a C++ iterator can abort on a damaged file, a pixel cap against decompression bombs, and a
decoding pass that finds (and drops) the records whose image bytes would kill the iterator
by SIGFPE; every record is decoded as it is packed, and the packed file stamped as checked.

Modules: :mod:`.listing` (folders to ``.lst``, synsets), :mod:`.images` (an image's bytes:
cut short, too many pixels, decodable), :mod:`.encoding` (an image to a record),
:mod:`.packing` (``.lst`` to ``.rec``/``.idx``), :mod:`.check` (a packed file is whole),
:mod:`.decoding` (every image of it decodes), :mod:`.stamp` (a file checked once, and
the check before reading one) and :mod:`.files` (safe writes and the prefix lock).
"""
from .check import RECORDIO_MAGIC, check_record, read_index
from .decoding import Damaged, decode_check, undecodable_reason, write_without
from .encoding import PackOptions, encode_image
from .images import MAX_PIXELS, incomplete_reason, oversized_reason
from .listing import (IMAGE_EXTS, find_lists, find_records, list_images, make_list, read_list,
                      read_synsets, synsets_path)
from .packing import pack, pack_list
from .stamp import decode_and_stamp, is_stamped, require_decodable, stamp_path, write_stamp

__all__ = ["IMAGE_EXTS", "PackOptions", "synsets_path", "read_synsets", "list_images",
           "make_list", "read_list", "find_lists", "encode_image", "pack_list", "pack",
           "check_record", "find_records", "incomplete_reason", "RECORDIO_MAGIC", "read_index",
           "Damaged", "decode_check", "undecodable_reason", "write_without", "MAX_PIXELS",
           "oversized_reason", "decode_and_stamp", "is_stamped", "require_decodable",
           "stamp_path", "write_stamp"]
