"""Files shared between jobs: atomic writes, an exclusive lock per output, a one-line
disk-full error, and a sweep of the temporary files a killed process left behind.

Every tool that writes a run folder or a packed prefix goes through these, so two jobs
on one output, a full disk and a SIGKILL end the same way everywhere.
"""
import csv
import errno
import fcntl
import os
import re
import shutil

from ..errors import UserError

__all__ = ["OutputLock", "writable_dir", "disk_full_error", "is_disk_full", "remove_stale_tmp", "TMP_PATTERN",
           "atomic_write", "atomic_save", "atomic_save_csv", "stage", "tmp_path", "final_path",
           "remove_if_exists", "checkout_path"]

# "<name>.tmp-<pid>" (atomic_write), "<name>.export-tmp-<pid>" (export staging) and
# "<name>.rec.tmp-<pid>"-style names all end in a writer's PID.
TMP_PATTERN = re.compile(r"\.(?:[a-z]+-)?tmp-(\d+)$")


class OutputLock(object):
    """An exclusive ``fcntl`` lock on ``path`` (``PREFIX.lock`` or ``RUN_DIR/.lock``).

    The lock file holds the owner's PID so that a refused job can name it. The kernel
    drops the lock when its holder dies, even by SIGKILL, so a stale file never blocks.
    A job that releases it removes the file, still holding the lock; a job that locked
    a file just removed so (it opened it before the removal) sees that the path no
    longer names its file and locks the path anew, so two jobs never both hold it.

    Parameters
    ----------
    path : str
        The lock file.
    what : str
        What is being protected, for the error (``"run folder runs/x"``).
    fix : str
        What to do when its folder cannot be written (``"choose another --save-dir"``).
    """

    def __init__(self, path, what, fix="choose another output"):
        self.path, self.what, self.fix, self._fd = path, what, fix, None

    def acquire(self):
        folder = writable_dir(os.path.dirname(os.path.abspath(self.path)), self.what, self.fix)
        while True:  # again only when a releasing job removed the file in between
            fd = self._lock(folder)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, ("%d\n" % os.getpid()).encode())
        self._fd = fd
        return self

    def _lock(self, folder):
        """The locked descriptor of ``path``, or the one-line error naming the holder."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise _unwritable(folder, err, self.what, self.fix) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            try:
                holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
            finally:
                os.close(fd)
            raise UserError("%s is in use by another job (PID %s, lock %s); wait for it to "
                            "finish or choose another output" % (self.what, holder, self.path))
        return fd

    def release(self):
        """Remove the lock file and unlock: a finished job leaves no ``.lock`` behind."""
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass  # gone or on a read-only mount now: unlocking is what matters
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    __enter__ = acquire

    def __exit__(self, *exc):
        self.release()
        return False


def writable_dir(folder, what, fix):
    """Create ``folder`` if needed and check that this process may write in it.

    A read-only mount, a folder without write permission and a file where a folder
    should be each become one line naming the path at fault, ``what`` it was for and
    ``fix`` (``access(2)`` reports a read-only file system even to root).

    Returns
    -------
    str
        ``folder``.
    """
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise _unwritable(folder, err, what, fix) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _unwritable(folder, OSError(errno.EROFS if _read_only(folder) else errno.EACCES,
                                          ""), what, fix)
    return folder


def _read_only(folder):
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _unwritable(folder, err, what, fix):
    """The one-line :class:`UserError` for ``folder`` that ``err`` says cannot be written."""
    blocker = folder
    while blocker and not os.path.exists(blocker):  # the part of the path that exists
        blocker = os.path.dirname(blocker.rstrip(os.sep)) if blocker != os.sep else ""
    if blocker and not os.path.isdir(blocker) or err.errno in (errno.EEXIST, errno.ENOTDIR):
        problem = "%s is a file, not a folder" % (blocker or folder)
    elif err.errno == errno.EROFS or blocker and _read_only(blocker):
        problem = "%s is on a read-only file system" % (blocker or folder)
    elif err.errno in (errno.EACCES, errno.EPERM):
        problem = "%s is not writable by this user" % (blocker or folder)
    else:
        problem = "%s: %s" % (folder, err.strerror or err)
    return UserError("cannot write %s: %s; %s" % (what, problem, fix))


def is_disk_full(err):
    """Whether an exception is a full disk or quota (OSError ENOSPC/EDQUOT, or MXNet's
    ``FileStream.Write incomplete`` from a C++ writer that hit one)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "Write incomplete" in str(err) or "No space left" in str(err)


def disk_full_error(path, needed_bytes=None):
    """The one-line :class:`UserError` for a full disk under ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    facts = []
    if needed_bytes:
        facts.append("about %s needed" % _size(needed_bytes))
    try:
        facts.append("%s free" % _size(shutil.disk_usage(folder).free))
    except OSError:
        pass
    return UserError("the disk holding %s is full%s; the last good files are untouched: free "
                     "space or write elsewhere, then run again"
                     % (folder, " (%s)" % ", ".join(facts) if facts else ""))


def _size(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tmp(folder, prefix=""):
    """Delete temporary files (see :data:`TMP_PATTERN`) in ``folder`` whose writer is dead.

    Returns
    -------
    list of str
        The paths removed.
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = TMP_PATTERN.search(name)
        if not match or not name.startswith(prefix) or _pid_alive(int(match.group(1))):
            continue
        path = os.path.join(folder, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def tmp_path(path):
    """``path.tmp-PID``: a temporary name that :func:`remove_stale_tmp` sweeps once its
    writer is dead."""
    return "%s.tmp-%d" % (path, os.getpid())


def final_path(tmp):
    """The path a temporary :func:`tmp_path` stands in for (``NAME.tmp-PID`` -> ``NAME``)."""
    return tmp[:tmp.rindex(".tmp-")]


def stage(path, write, size_hint=None):
    """Call ``write(tmp)`` for a temporary ``path.tmp-PID`` and sync it; returns ``tmp``.

    A full disk (``OSError`` ENOSPC, or MXNet's C++ ``FileStream.Write incomplete``)
    becomes the one-line :func:`disk_full_error`; the temporary file
    is removed whatever happens.
    """
    tmp = tmp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    except BaseException as err:
        remove_if_exists(tmp)
        if isinstance(err, Exception) and is_disk_full(err):
            raise disk_full_error(path, size_hint) from None
        raise
    return tmp


def remove_if_exists(path):
    if os.path.exists(path):
        os.remove(path)


def atomic_write(path, write, size_hint=None):
    """Call ``write(tmp_path)``, then rename the temporary file over ``path``.

    On a full disk the temporary file is removed, ``path`` keeps its old content and a
    one-line :class:`~mobilenet_skip.errors.UserError` names the disk (and
    ``size_hint``, the bytes needed, when given).
    """
    tmp = stage(path, write, size_hint)
    try:
        os.replace(tmp, path)
    finally:
        remove_if_exists(tmp)


def atomic_save(path, text):
    """Write a text file atomically."""
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    atomic_write(path, write)


def atomic_save_csv(path, columns, rows):
    """Write dict rows as a CSV with ``columns`` (in that order), atomically."""
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: row[k] for k in columns})
    atomic_write(path, write)


def checkout_path(*parts):
    """A path in the checkout the package runs from (recipes/, tools/, requirements/): the
    package is installed editable (``pip install -e .``), so these sit beside it."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, *parts)
