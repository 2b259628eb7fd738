"""Image folders to MXNet RecordIO (what tools/im2rec.py runs), and checks of packed files.

The list and record formats, label order and image transforms are those of MXNet's
own ``tools/im2rec.py``, and records are written with :mod:`mxnet.recordio`, so files
from either tool are interchangeable. Beyond it: a ``.synsets.txt`` beside each list,
unreadable images skipped and listed instead of aborting the job, and ``.rec``/``.idx``
written under temporary names and renamed together at the end.
"""
import os
import random
import struct
import sys
from collections import deque, namedtuple
from concurrent.futures import ThreadPoolExecutor

import cv2
import mxnet as mx
import numpy as np

from .errors import UserError
from .progress import Progress

__all__ = ["IMAGE_EXTS", "PackOptions", "synsets_path", "read_synsets", "list_images",
           "make_list", "read_list", "find_lists", "encode_image", "pack_list", "pack",
           "check_record"]

IMAGE_EXTS = (".jpeg", ".jpg", ".png")
RECORDIO_MAGIC = 0xCED7230A  # dmlc-core recordio.h: the word that starts every record part
_PART_HEADER = struct.Struct("<II")  # magic, (continuation flag << 29) | length
_IR_HEADER_SIZE = struct.calcsize("IfQQ")  # mx.recordio.IRHeader: flag, label, id, id2
_TMP = ".tmp"

PackOptions = namedtuple("PackOptions", ["resize", "center_crop", "quality", "encoding",
                                         "color", "pass_through", "pack_label"])
PackOptions.__new__.__defaults__ = (0, False, 95, ".jpg", 1, False, False)
PackOptions.__doc__ = "How images become records; the fields are im2rec's flags of those names."


def synsets_path(rec_path):
    """Where the class names of a ``.rec`` (or ``.lst``) live: same prefix, ``.synsets.txt``."""
    return os.path.splitext(rec_path)[0] + ".synsets.txt"


def read_synsets(path):
    """Class names from a synsets file: line ``i`` names class ``i``.

    Parameters
    ----------
    path : str
        A ``<prefix>.synsets.txt`` written by ``tools/im2rec.py --list --recursive``.

    Returns
    -------
    list of str
    """
    if not os.path.isfile(path):
        raise UserError("no synsets file %s; `tools/im2rec.py PREFIX ROOT --list --recursive` "
                        "writes it beside PREFIX.lst, so re-run that step" % path)
    with open(path, encoding="utf-8") as f:
        names = f.read().splitlines()
    while names and not names[-1].strip():
        names.pop()
    blank = [i for i, name in enumerate(names) if not name.strip()]
    if not names or blank:
        raise UserError("%s has %s; it needs one class name per line (line i = class i)"
                        % (path, "no names" if not names else "a blank line %d" % (blank[0] + 1)))
    return [name.strip() for name in names]


def _check_prefix(prefix):
    if os.path.isdir(prefix):
        raise UserError("prefix %s is a directory; im2rec writes PREFIX.lst/.rec/.idx, so give "
                        "a file prefix such as %s" % (prefix, os.path.join(prefix, "train")))


def _check_root(root):
    if not os.path.exists(root):
        raise UserError("image root %s does not exist; pass the folder that holds the images "
                        "(with --recursive, the one with a subfolder per class)" % root)
    if not os.path.isdir(root):
        raise UserError("image root %s is a file, not a folder of images" % root)


def _output_dir(prefix):
    """Create the folder that will hold ``prefix``'s files and prove it is writable."""
    folder = os.path.dirname(os.path.abspath(prefix))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise UserError("cannot create output folder %s (%s); choose a prefix in a writable "
                        "folder" % (folder, err.strerror)) from None
    if not os.access(folder, os.W_OK):
        raise UserError("output folder %s is not writable; choose a prefix in a writable folder "
                        "or fix its permissions" % folder)
    return folder


def list_images(root, recursive=False, exts=IMAGE_EXTS):
    """Images under ``root`` in im2rec's order, with im2rec's labels.

    Folders are walked in sorted order and every folder that holds images becomes
    the next class, exactly as MXNet's im2rec numbers them. Without ``recursive``
    only files directly in ``root`` are listed, all with label 0.

    Returns
    -------
    items : list of (int, str, float)
        ``(index, path relative to root, label)``.
    classes : list of str
        Folder of each class relative to ``root`` (an ImageNet wnid, for one).
    """
    _check_root(root)
    exts = tuple(e.lower() for e in exts)
    items, classes = [], {}
    if recursive:
        walk = os.walk(root, followlinks=True)
    else:
        walk = [(root, [], os.listdir(root))]
    for path, dirs, files in walk:
        dirs.sort()
        for fname in sorted(files):
            fpath = os.path.join(path, fname)
            if os.path.splitext(fname)[1].lower() in exts and os.path.isfile(fpath):
                label = classes.setdefault(os.path.relpath(path, root), len(classes)) \
                    if recursive else 0
                items.append((len(items), os.path.relpath(fpath, root), float(label)))
    return items, sorted(classes, key=classes.get)


def _write_list(path, items):
    with open(path, "w", encoding="utf-8") as f:
        for index, relpath, *labels in items:
            f.write("%d\t%s%s\n" % (index, "".join("%f\t" % x for x in labels), relpath))


def make_list(prefix, root, recursive=False, exts=IMAGE_EXTS, train_ratio=1.0, test_ratio=0.0,
              shuffle=True, chunks=1):
    """Write the ``.lst`` file(s) for the images under ``root`` (im2rec ``--list``).

    Splits and chunks are named as im2rec names them (``PREFIX.lst``, or
    ``PREFIX_train.lst``/``_val.lst``/``_test.lst``, with ``_<chunk>`` before the
    split). With ``recursive`` a ``.synsets.txt`` is written beside ``PREFIX.lst``
    and every other list, line ``i`` naming class ``i``.

    Returns
    -------
    list of str
        The list files written.
    """
    _check_prefix(prefix)
    if not 0 < train_ratio <= 1 or not 0 <= test_ratio < 1 or train_ratio + test_ratio > 1:
        raise UserError("--train-ratio must be in (0, 1] and --test-ratio in [0, 1) with a sum "
                        "of at most 1; got %g and %g" % (train_ratio, test_ratio))
    if chunks < 1:
        raise UserError("--chunks must be at least 1, got %d" % chunks)
    items, classes = list_images(root, recursive, exts)
    if not items:
        raise UserError("no %s images in %s%s; check the folder and --exts%s" % (
            "/".join(exts), root, " or its subfolders" if recursive else "",
            "" if recursive else ", or add --recursive for one subfolder per class"))
    _output_dir(prefix)
    if shuffle:
        random.seed(100)  # im2rec's seed: the same folder gives the same list as MXNet's tool
        random.shuffle(items)
    written = []
    chunk_size = (len(items) + chunks - 1) // chunks
    for c in range(chunks):
        chunk = items[c * chunk_size:(c + 1) * chunk_size]
        stem = prefix + ("_%d" % c if chunks > 1 else "")
        n_train, n_test = int(len(chunk) * train_ratio), int(len(chunk) * test_ratio)
        if train_ratio == 1.0:
            parts = [(stem + ".lst", chunk)]
        else:
            parts = [(stem + "_train.lst", chunk[n_test:n_test + n_train])]
            if test_ratio:
                parts.append((stem + "_test.lst", chunk[:n_test]))
            if train_ratio + test_ratio < 1.0:
                parts.append((stem + "_val.lst", chunk[n_test + n_train:]))
        for path, part in parts:
            _write_list(path, part)
            written.append(path)
    if recursive:
        for path in sorted({prefix + ".lst"} | set(written)):
            with open(synsets_path(path), "w", encoding="utf-8") as f:
                f.write("".join(name + "\n" for name in classes))
    return written


def read_list(path):
    """Parse a ``.lst`` file: ``index <TAB> label(s) <TAB> relative path`` per line.

    Returns
    -------
    list of (int, str, float, ...)
        ``(index, relative path, label, ...)`` per line, as im2rec holds them.
    """
    items, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = [x.strip() for x in line.rstrip("\n").split("\t")]
            try:
                if len(fields) < 3:
                    raise ValueError("needs 3 tab-separated fields")
                item = (int(fields[0]), fields[-1]) + tuple(float(x) for x in fields[1:-1])
            except ValueError:
                raise UserError("%s line %d is not `index<TAB>label<TAB>path`: %r; regenerate it "
                                "with --list" % (path, n, line.rstrip("\n")[:80])) from None
            if item[0] in seen:
                raise UserError("%s line %d repeats index %d; every image needs its own index"
                                % (path, n, item[0]))
            seen.add(item[0])
            items.append(item)
    return items


def find_lists(prefix):
    """The ``.lst`` files im2rec packs for ``prefix``: in its folder, named ``prefix*.lst``."""
    _check_prefix(prefix)
    folder = os.path.dirname(os.path.abspath(prefix))
    base = os.path.basename(prefix)
    names = sorted(n for n in os.listdir(folder) if n.startswith(base) and n.endswith(".lst")) \
        if os.path.isdir(folder) else []
    if not names:
        raise UserError("no .lst file named %s*.lst in %s; create it first with "
                        "`tools/im2rec.py %s ROOT --list --recursive`" % (base, folder, prefix))
    return [os.path.join(folder, n) for n in names]


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


def _encoded(items, root, opts, num_thread):
    """Yield ``(item, record, reason)`` in list order, encoding ``num_thread`` images at once.

    Threads suffice: OpenCV releases the GIL while it decodes, resizes and encodes.
    The window of pending images is bounded, so memory stays flat over 1.28M images.
    """
    def work(item):
        return encode_image(os.path.join(root, item[1]), item[2:], item[0], opts)

    if num_thread <= 1:
        for item in items:
            yield (item,) + work(item)
        return
    pool = ThreadPoolExecutor(num_thread)
    pending = deque()
    try:
        for item in items:
            pending.append((item, pool.submit(work, item)))
            if len(pending) >= 4 * num_thread:
                item0, future = pending.popleft()
                yield (item0,) + future.result()
        while pending:
            item0, future = pending.popleft()
            yield (item0,) + future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _remove(*paths):
    for path in paths:
        if os.path.lexists(path) and not os.path.isdir(path):
            os.remove(path)


def pack_list(lst_path, root, opts=PackOptions(), num_thread=1, stream=None):
    """Pack the images of one ``.lst`` into ``.rec`` + ``.idx`` beside it.

    Images that cannot be read or decoded are skipped and listed with the reason in
    ``<stem>.skipped.txt``. Both outputs are written under temporary names and only
    renamed when complete, so an interrupted job never leaves a ``.rec`` without
    its ``.idx`` (or with a stale one).

    Returns
    -------
    dict
        ``rec``, ``idx``, ``packed``, ``skipped`` (list of ``(path, reason)``) and
        ``skipped_file`` (None when nothing was skipped).
    """
    stem = os.path.splitext(lst_path)[0]
    rec, idx, skipped_file = stem + ".rec", stem + ".idx", stem + ".skipped.txt"
    items = read_list(lst_path)
    if not items:
        raise UserError("%s lists no images; regenerate it with --list" % lst_path)
    _check_root(root)
    for path in (rec, idx):
        if os.path.isdir(path):
            raise UserError("output %s is a directory; move it or choose another prefix" % path)
    _output_dir(rec)
    try:
        with open(rec + _TMP, "wb"), open(idx + _TMP, "wb"):
            pass
    except OSError as err:
        raise UserError("cannot write %s (%s); choose a prefix in a writable folder"
                        % (rec + _TMP, err.strerror)) from None

    progress = Progress(len(items), os.path.basename(rec), stream=stream)
    skipped, packed = [], 0
    writer = mx.recordio.MXIndexedRecordIO(idx + _TMP, rec + _TMP, "w")
    try:
        for item, record, reason in _encoded(items, root, opts, num_thread):
            if record is None:
                skipped.append((item[1], reason))
            else:
                writer.write_idx(item[0], record)
                packed += 1
            progress.update()
        writer.close()
        progress.close()
        if skipped:
            with open(skipped_file, "w", encoding="utf-8") as f:
                f.write("".join("%s\t%s\n" % s for s in skipped))
        else:
            _remove(skipped_file)  # a list from an earlier run would now be wrong
        if not packed:
            raise UserError("none of the %d images of %s could be read (see %s); check ROOT %s"
                            % (len(items), lst_path, skipped_file, root))
        _remove(rec)  # never let the new .idx sit beside the old .rec
        os.replace(idx + _TMP, idx)
        os.replace(rec + _TMP, rec)
    finally:
        writer.close()
        _remove(rec + _TMP, idx + _TMP)
    return {"rec": rec, "idx": idx, "packed": packed, "skipped": skipped,
            "skipped_file": skipped_file if skipped else None}


def pack(prefix, root, opts=PackOptions(), num_thread=1, stream=None, out=None):
    """Pack every ``prefix*.lst`` (im2rec without ``--list``), one summary line each.

    Parameters
    ----------
    prefix, root : str
        As on im2rec's command line.
    opts : PackOptions
    num_thread : int
        Images encoded in parallel; the records keep the list's order either way.
    stream : file, optional
        Progress output (default stderr).
    out : file, optional
        Summary lines (default stdout).

    Returns
    -------
    list of dict
        :func:`pack_list`'s result per list.
    """
    out = out if out is not None else sys.stdout
    if num_thread < 1:
        raise UserError("--num-thread must be at least 1, got %d" % num_thread)
    if opts.encoding not in (".jpg", ".png"):
        raise UserError("--encoding must be .jpg or .png, got %r" % (opts.encoding,))
    lo, hi = (1, 100) if opts.encoding == ".jpg" else (0, 9)
    if not lo <= opts.quality <= hi:
        raise UserError("--quality for %s must be in %d..%d, got %d"
                        % (opts.encoding, lo, hi, opts.quality))
    if opts.resize < 0:
        raise UserError("--resize must be 0 (keep size) or a positive side, got %d" % opts.resize)
    _check_root(root)
    results = []
    for lst in find_lists(prefix):
        result = pack_list(lst, root, opts, num_thread, stream)
        size_mb = os.path.getsize(result["rec"]) / 2.0 ** 20
        print("packed %d images into %s (%.1f MB), skipped %d%s" % (
            result["packed"], result["rec"], size_mb, len(result["skipped"]),
            " (listed in %s)" % result["skipped_file"] if result["skipped"] else ""),
            file=out, flush=True)
        results.append(result)
    return results


def _record_end(f, pos, size, path, idx_path=None):
    """Offset just past the record starting at ``pos``, following multi-part records.

    Returns the end offset and the length of the record's first part.
    """
    start, first = pos, None
    while True:
        f.seek(pos)
        head = f.read(_PART_HEADER.size)
        magic, lrec = _PART_HEADER.unpack(head) if len(head) == _PART_HEADER.size else (None, 0)
        if magic != RECORDIO_MAGIC and len(head) == _PART_HEADER.size:
            if idx_path:
                raise UserError("index %s points to byte %d of %s, where no record starts: the "
                                ".idx belongs to another file; re-pack both"
                                % (idx_path, pos, path))
            raise UserError("%s is not an MXNet RecordIO file (no record at byte %d); pack images "
                            "with tools/im2rec.py" % (path, pos))
        length, cflag = lrec & ((1 << 29) - 1), lrec >> 29
        pos += _PART_HEADER.size + ((length + 3) & ~3)  # parts are padded to 4 bytes
        if magic is None or pos > size:
            raise UserError("%s is truncated: the record at byte %d runs past its end (%d bytes); "
                            "re-pack it with tools/im2rec.py" % (path, start, size))
        first = length if first is None else first
        if cflag in (0, 3):  # a whole record, or the last part of a split one
            return pos, first


def check_record(rec_path, idx_path=None):
    """Check that a ``.rec`` and its ``.idx`` are complete and belong together.

    Reads the first record and the index, and follows the record the index places
    last to the end of the file; enough to catch a missing index, a file that is not
    RecordIO, a truncated copy and an index from another file before training
    starts, instead of the C++ iterator aborting mid-epoch.

    Parameters
    ----------
    rec_path : str
    idx_path : str, optional
        Default: ``rec_path`` with an ``.idx`` suffix.

    Returns
    -------
    int
        Number of records in the index.
    """
    idx_path = idx_path or os.path.splitext(rec_path)[0] + ".idx"
    if not os.path.isfile(rec_path):
        raise UserError("record file %s does not exist; pack one with tools/im2rec.py" % rec_path)
    if not os.path.isfile(idx_path):
        raise UserError("index %s for %s does not exist; tools/im2rec.py writes both, so re-pack "
                        "or copy the .idx next to the .rec" % (idx_path, rec_path))
    size = os.path.getsize(rec_path)
    if size == 0:
        raise UserError("record file %s is empty; re-pack it with tools/im2rec.py" % rec_path)
    offsets = []
    with open(idx_path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 2:
                    raise ValueError
                offsets.append(int(fields[1]))
            except ValueError:
                raise UserError("%s line %d is not `key<TAB>offset`; it is not an im2rec index, "
                                "re-pack with tools/im2rec.py" % (idx_path, n)) from None
    if not offsets:
        raise UserError("index %s lists no records; re-pack with tools/im2rec.py" % idx_path)
    with open(rec_path, "rb") as f:
        _, length = _record_end(f, 0, size, rec_path)
        if length < _IR_HEADER_SIZE:
            raise UserError("%s does not hold image records (first record is %d bytes); pack "
                            "images with tools/im2rec.py" % (rec_path, length))
        last = max(offsets)
        if min(offsets) < 0 or last >= size:
            raise UserError("index %s points to byte %d but %s has %d bytes: the .rec is "
                            "truncated or the .idx belongs to another file; re-pack both"
                            % (idx_path, last, rec_path, size))
        _record_end(f, last, size, rec_path, idx_path)
    return len(offsets)
