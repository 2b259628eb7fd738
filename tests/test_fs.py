"""The shared output lock, disk-full message and stale temporary-file sweep."""
import errno
import os
import subprocess
import sys

import pytest

from mobilenet_skip.errors import UserError
from mobilenet_skip.utils.fs import OutputLock, disk_full_error, is_disk_full, remove_stale_tmp


def test_second_lock_is_refused_and_names_the_holder(tmp_path):
    path = str(tmp_path / "x.lock")
    # The holder is another process, as it is for two jobs.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys,time; sys.path.insert(0, %r)\n"
        "from mobilenet_skip.utils.fs import OutputLock\n"
        "l = OutputLock(%r, 'thing').acquire(); print('ok', flush=True); time.sleep(60)")
        % (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(UserError, match=r"thing is in use by another job \(PID %d"
                           % holder.pid):
            OutputLock(path, "thing").acquire()
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the dead holder's lock: the file left behind blocks nobody.
    with OutputLock(path, "thing"):
        with open(path) as f:
            assert f.read().strip() == str(os.getpid())


def test_a_released_lock_leaves_no_file_and_a_stale_descriptor_locks_anew(tmp_path,
                                                                          monkeypatch):
    import fcntl
    path = str(tmp_path / "x.lock")
    first = OutputLock(path, "thing").acquire()
    stale = os.open(path, os.O_RDWR)  # a second job opened the file before it was removed
    first.release()
    assert not os.path.exists(path)
    real, handed = OutputLock._lock, []

    def stale_first(self, folder):  # that job's flock then succeeds, on the removed file
        if not handed:
            handed.append(stale)
            fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return stale
        return real(self, folder)
    monkeypatch.setattr(OutputLock, "_lock", stale_first)
    second = OutputLock(path, "thing").acquire()
    assert handed and second._fd != stale
    assert os.path.samestat(os.fstat(second._fd), os.stat(path))  # it holds the file named
    with pytest.raises(UserError, match="in use by another job"):
        real(OutputLock(path, "thing"), str(tmp_path))
    second.release()
    assert not os.path.exists(path)


def test_disk_full_error_is_one_line_with_the_folder(tmp_path):
    err = disk_full_error(str(tmp_path / "a.rec"), needed_bytes=5 * 1024 * 1024)
    msg = str(err)
    assert "\n" not in msg and str(tmp_path) in msg and "5.0 MB needed" in msg
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(RuntimeError("[12:00] src/io/local_filesys.cc: FileStream.Write "
                                     "incomplete"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


def test_stale_tmp_files_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / ("m-0001.params.tmp-%d" % dead.pid)
    live = tmp_path / ("m-0002.params.tmp-%d" % os.getpid())
    keep = tmp_path / "m-0001.params"
    for p in (stale, live, keep):
        p.write_text("x")
    assert remove_stale_tmp(str(tmp_path)) == [str(stale)]
    assert sorted(os.listdir(str(tmp_path))) == sorted([live.name, keep.name])
