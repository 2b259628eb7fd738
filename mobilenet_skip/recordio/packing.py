"""``.lst`` files to ``.rec`` + ``.idx`` (im2rec without ``--list``), written whole or not at all."""
import errno
import os
import sys

import mxnet as mx

from ..utils import fs
from ..errors import UserError
from ..utils.progress import Progress
from .encoding import PackOptions, encoded_records
from .files import (check_name_lengths, check_root, fs_path, output_dir, prefix_lock,
                    remove_files, report_skipped, write_text)
from .listing import find_lists, read_list
from .stamp import write_stamp


def _outside_root(relpath, root):
    """Whether a .lst entry names a file outside ``root``: absolute, or climbing out with
    ``..`` (also through a symlink inside ``root``, which only the filesystem can tell)."""
    if os.path.isabs(relpath):
        return True
    if ".." not in relpath.replace("\\", "/").split("/"):
        return False
    if os.path.normpath(relpath).split(os.sep)[0] == "..":
        return True
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(fs_path(root, relpath))]) \
        != real_root


def _check_inside_root(items, lst_path, root):
    outside = [item[1] for item in items if _outside_root(item[1], root)]
    if outside:
        raise UserError("%s names %d file(s) outside ROOT %s, e.g. %s; a list from elsewhere "
                        "could read any file: fix the list, or pass --allow-outside-root if "
                        "you trust it" % (lst_path, len(outside), root, outside[0]))


def _existing_name(item, root):
    """``item`` with the path stripped of surrounding spaces if only that name exists: a
    list that MXNet's im2rec (which strips every field) or a hand wrote may carry them,
    while the names --list writes are exact (" a.jpg" is a file too)."""
    name = item[1]
    if name != name.strip() and not os.path.lexists(fs_path(root, name)) \
            and os.path.lexists(fs_path(root, name.strip())):
        return (item[0], name.strip()) + tuple(item[2:])
    return item


def _record_bytes(record):
    """Bytes one record takes in a .rec: its 8-byte header and the payload padded to 4."""
    return 8 + ((len(record) + 3) & ~3)


def pack_list(lst_path, root, opts=PackOptions(), num_thread=1, stream=None,
              allow_outside_root=False):
    """Pack the images of one ``.lst`` into ``.rec`` + ``.idx`` beside it.

    Images that cannot be read or decoded, are truncated or have more pixels than
    ``opts.max_pixels``, are skipped, each named in a ``warning:`` line on ``stream`` (the
    first 20) and listed with the reason in ``<stem>.skipped.txt``. Every record's image
    is decoded as it is written, so the ``.rec`` is stamped as decode-checked
    (:mod:`.stamp`): training and evaluation read it without checking it again. Both outputs are written under
    temporary names and only renamed when complete, so an interrupted job (Ctrl-C,
    a full disk) never leaves a ``.rec`` without its ``.idx`` (or with a stale one)
    and the previous ``.rec``/``.idx`` stay as they were. Entries outside ``root``
    (absolute or with ``..``) are refused before anything is written unless
    ``allow_outside_root``.

    Returns
    -------
    dict
        ``rec``, ``idx``, ``packed``, ``skipped`` (list of ``(path, reason)``) and
        ``skipped_file`` (None when nothing was skipped).
    """
    stem = os.path.splitext(lst_path)[0]
    rec, idx, skipped_file = stem + ".rec", stem + ".idx", stem + ".skipped.txt"
    rec_tmp, idx_tmp = fs.tmp_path(rec), fs.tmp_path(idx)
    items = read_list(lst_path)
    if not items:
        raise UserError("%s lists no images; regenerate it with --list" % lst_path)
    check_root(root)
    items = [_existing_name(item, root) for item in items]
    if not allow_outside_root:
        _check_inside_root(items, lst_path, root)
    check_name_lengths([rec, idx, skipped_file])
    for path in (rec, idx):
        if os.path.isdir(path):
            raise UserError("output %s is a directory; move it or choose another prefix" % path)
    output_dir(rec)
    try:
        with open(rec_tmp, "wb"), open(idx_tmp, "wb"):
            pass
    except OSError as err:
        remove_files(rec_tmp, idx_tmp)
        raise UserError("cannot write %s (%s); choose a prefix in a writable folder"
                        % (rec_tmp, err.strerror)) from None

    progress = Progress(len(items), os.path.basename(rec), stream=stream)
    skipped, packed, written = [], 0, 0
    writer = mx.recordio.MXIndexedRecordIO(idx_tmp, rec_tmp, "w")
    try:
        for item, record, reason in encoded_records(items, root, opts, num_thread):
            if record is None:
                skipped.append((item[1], reason))
            else:
                writer.write_idx(item[0], record)
                packed += 1
                written += _record_bytes(record)
            progress.update()
        expected = writer.tell()
        writer.close()
        # dmlc's writer drops an error of its final flush: a short file is a full disk
        if os.path.getsize(rec_tmp) != expected:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), rec_tmp)
        progress.close()
        report_skipped(skipped, stream)
        if skipped:
            write_text(skipped_file, ["%s\t%s\n" % s for s in skipped])
        else:
            remove_files(skipped_file)  # a list from an earlier run would now be wrong
        if not packed:
            raise UserError("none of the %d images of %s could be read (see %s); check ROOT %s"
                            % (len(items), lst_path, skipped_file, root))
        remove_files(rec)  # never let the new .idx sit beside the old .rec
        os.replace(idx_tmp, idx)
        os.replace(rec_tmp, rec)
        write_stamp(rec, packed, opts.max_pixels)  # each record was decoded as it was encoded
    except Exception as err:
        if not fs.is_disk_full(err):
            raise
        try:
            writer.close()  # flushing the .idx can fail again; the files go anyway
        except OSError:
            pass
        remove_files(rec_tmp, idx_tmp)  # first, so that the message shows the space they held
        done = max(packed + len(skipped), 1)
        raise fs.disk_full_error(rec, written * len(items) // done + 16 * len(items)) from None
    finally:
        try:
            writer.close()
        finally:
            remove_files(rec_tmp, idx_tmp)
    return {"rec": rec, "idx": idx, "packed": packed, "skipped": skipped,
            "skipped_file": skipped_file if skipped else None}


def pack(prefix, root, opts=PackOptions(), num_thread=1, stream=None, out=None,
         allow_outside_root=False):
    """Pack every list of ``prefix`` (im2rec without ``--list``), one summary line each.

    The lists are those :func:`find_lists` names. The whole job holds
    ``PREFIX.lock``, so a second job on the same prefix is refused before it writes
    anything, and temporary files that a killed job left behind are removed first.

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
    allow_outside_root : bool
        Pack list entries outside ``root`` too (absolute paths, ``..``).

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
    if opts.max_pixels < 1:
        raise UserError("--max-pixels must be at least 1, got %d" % opts.max_pixels)
    check_root(root)
    lists = find_lists(prefix)
    results = []
    with prefix_lock(prefix):
        fs.remove_stale_tmp(os.path.dirname(os.path.abspath(prefix)), os.path.basename(prefix))
        for lst in lists:
            result = pack_list(lst, root, opts, num_thread, stream, allow_outside_root)
            size_mb = os.path.getsize(result["rec"]) / 2.0 ** 20
            print("packed %d images into %s (%.1f MB), skipped %d%s" % (
                result["packed"], result["rec"], size_mb, len(result["skipped"]),
                " (listed in %s)" % result["skipped_file"] if result["skipped"] else ""),
                file=out, flush=True)
            results.append(result)
    return results
