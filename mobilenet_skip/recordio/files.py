"""Output files of im2rec written safely: temporary names, whole-or-nothing text, the prefix lock.

Also the checks of a prefix and an image root that every step makes first.
"""
import contextlib
import os
import sys

from ..utils import fs
from ..errors import UserError


def text_name(name):
    """A file name as the file system gave it (``os.listdir``) as the text a ``.lst`` holds,
    or None when its bytes are not UTF-8.

    Under an ASCII locale (``LC_ALL=C``, ``PYTHONUTF8=0``) Python hands ``café`` over as
    ``caf\\udcc3\\udca9``: the bytes are valid UTF-8, so they are decoded as such.
    """
    try:
        return os.fsencode(name).decode("utf-8")
    except UnicodeDecodeError:
        return None


def fs_path(root, name):
    """The path of the ``.lst`` entry ``name`` under ``root``, spelt for the file system
    whatever the locale (the inverse of :func:`text_name`)."""
    return os.path.join(root, os.fsdecode(name.encode("utf-8", "surrogateescape")))


def check_prefix(prefix):
    """Refuse a prefix that names a folder: im2rec appends .lst/.rec/.idx to it.

    ``newdir/`` is refused even before the folder exists: it would write the hidden
    ``newdir/.lst``, and the packing step would then refuse the same prefix.
    """
    if os.path.isdir(prefix) or os.path.basename(prefix) in ("", ".", ".."):
        raise UserError("prefix %s %s; im2rec writes PREFIX.lst/.rec/.idx, so give a file "
                        "prefix such as %s" % (prefix, "is a directory" if os.path.isdir(prefix)
                                               else "names a folder, not a file in it",
                                               os.path.join(prefix, "train")))


def _limit(folder, name, default):
    """``os.pathconf`` of the nearest existing folder at or above ``folder``."""
    while folder and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        return os.pathconf(folder or "/", name)
    except (OSError, ValueError):
        return default


def check_name_lengths(paths):
    """Refuse, before anything is written, an output whose name (or temporary name) is
    longer than its file system allows: one step would otherwise write some files (a
    ``.lst``) and fail on the next (its ``.synsets.txt``)."""
    for path in paths:
        tmp = os.path.abspath(fs.tmp_path(path))
        folder, name = os.path.split(tmp)
        name_max = _limit(folder, "PC_NAME_MAX", 255)
        too_long = len(os.fsencode(name)) > name_max or \
            len(os.fsencode(tmp)) >= _limit(folder, "PC_PATH_MAX", 4096)
        if too_long:
            raise UserError("output %s is too long a name for its file system (%d bytes with "
                            "its temporary suffix, at most %d per name); choose a shorter "
                            "prefix" % (path, len(os.fsencode(name)), name_max))


def check_root(root):
    """Refuse an image root that is missing or is a file."""
    if not os.path.exists(root):
        raise UserError("image root %s does not exist; pass the folder that holds the images "
                        "(with --recursive, the one with a subfolder per class)" % root)
    if not os.path.isdir(root):
        raise UserError("image root %s is a file, not a folder of images" % root)


def output_dir(prefix):
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


def write_text(path, lines):
    """Write ``lines`` to ``path`` whole or not at all (a full disk leaves the old file)."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(lines)
    fs.atomic_write(path, write, sum(len(x) for x in lines))


@contextlib.contextmanager
def prefix_lock(prefix):
    """Hold the exclusive lock of everything named after ``prefix`` (``PREFIX.lock``)."""
    lock = fs.OutputLock(prefix + ".lock", "prefix %s" % prefix)
    try:
        lock.acquire()
    except OSError as err:
        raise UserError("cannot create the lock file %s (%s); choose a prefix in a writable "
                        "folder" % (lock.path, err.strerror)) from None
    try:
        yield lock
    finally:
        lock.release()


def report_skipped(skipped, stream, limit=20):
    """One ``warning:`` line per file or link left out, at most ``limit`` of them."""
    stream = stream if stream is not None else sys.stderr
    for path, reason in skipped[:limit]:
        # repr: a name with a line break must not break the one-line report
        print("warning: skipped %s: %s" % (repr(path)[1:-1], reason), file=stream)
    if len(skipped) > limit:
        print("warning: ... and %d more skipped" % (len(skipped) - limit), file=stream)


def remove_files(*paths):
    for path in paths:
        if os.path.lexists(path) and not os.path.isdir(path):
            os.remove(path)
