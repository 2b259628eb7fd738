"""Packing and reading RecordIO safely: one job per prefix, symlink loops,
exact list names, damaged .rec files, truncated images, full disks, Ctrl-C, list entries
outside ROOT and file names a .lst cannot hold."""
import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import mxnet as mx
import numpy as np
import pytest

from mobilenet_skip.config.recipe import Recipe
from mobilenet_skip.data import records as data, demo as demo_images
from mobilenet_skip import recordio
from mobilenet_skip.errors import UserError

from conftest import ROOT, call_tool, run_tool

SIZE = 32


def _image(path, seed, ext=".jpg", side=SIZE):
    """A small smooth picture (compresses like a photo, not like noise)."""
    rng = np.random.RandomState(seed)
    img = cv2.resize(rng.randint(0, 256, (4, 4, 3), dtype=np.uint8), (side, side))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    with open(path, "wb") as f:
        f.write(buf.tobytes())
    return buf.tobytes()


def _tmp_files(folder):
    return sorted(n for n in os.listdir(folder) if ".tmp" in n)


def _one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The demo digits at 32 px; val packed once (359 records)."""
    out = str(tmp_path_factory.mktemp("digits"))
    demo_images.make_demo_data(os.path.join(out, "images"), size=SIZE)
    prefix = os.path.join(out, "val")
    recordio.make_list(prefix, os.path.join(out, "images", "val"), recursive=True)
    recordio.pack(prefix, os.path.join(out, "images", "val"), stream=io.StringIO(),
                  out=io.StringIO())
    return out, prefix


def _lst(path, root, relpaths):
    with open(path, "w") as f:
        f.writelines("%d\t%f\t%s\n" % (i, i % 10, p) for i, p in enumerate(relpaths))


def _relpaths(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)


# 1. Two packs to one prefix ------------------------------------------------------------

@pytest.mark.slow
def test_second_pack_on_a_prefix_is_refused_before_it_touches_anything(digits, tmp_path):
    images = os.path.join(digits[0], "images", "val")
    prefix = str(tmp_path / "big")
    _lst(prefix + ".lst", images, _relpaths(images)[:40])
    assert run_tool("im2rec", prefix, images).returncode == 0
    before = {ext: open(prefix + ext, "rb").read() for ext in (".rec", ".idx")}
    _lst(prefix + ".lst", images, _relpaths(images)[40:60])  # a second job would change them
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys,time; sys.path.insert(0, %r)\n"
        "from mobilenet_skip.utils.fs import OutputLock\n"
        "l = OutputLock(%r, 'x').acquire(); print('ok', flush=True); time.sleep(60)")
        % (ROOT, prefix + ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        for argv in ([], ["--list", "--recursive"]):
            res = run_tool("im2rec", prefix, images, *argv)
            line = _one_error_line(res.stderr)
            assert res.returncode == 2 and "prefix %s is in use by another job (PID %d" \
                % (prefix, holder.pid) in line
    finally:
        holder.kill()
        holder.wait()
    for ext, content in before.items():
        assert open(prefix + ext, "rb").read() == content, ext
    assert not _tmp_files(str(tmp_path))
    assert open(prefix + ".lst").read().count("\n") == 20  # --list did not rewrite it


@pytest.mark.slow
def test_two_concurrent_packs_leave_a_whole_rec_and_idx(digits, tmp_path):
    images = os.path.join(digits[0], "images", "val")
    prefix = str(tmp_path / "big")
    _lst(prefix + ".lst", images, _relpaths(images) * 4)  # long enough to overlap
    tool = os.path.join(ROOT, "tools", "im2rec.py")
    jobs = [subprocess.Popen([sys.executable, tool, prefix, images], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(job.wait(), job.stdout.read(), job.stderr.read()) for job in jobs]
    for rc, out, err in results:
        assert (rc == 0 and "packed 1436 images" in out) or \
            (rc == 2 and "is in use by another job" in _one_error_line(err)), (rc, out, err)
    assert data.check_record(prefix + ".rec") == 1436
    assert not _tmp_files(str(tmp_path))


# 2. Symlink loops -----------------------------------------------------------------------

def test_symlink_loops_list_each_real_folder_once(tmp_path, capsys):
    root = tmp_path / "root"
    for i in range(3):
        _image(str(root / "a" / ("%d.jpg" % i)), i)
    for i in range(2):
        _image(str(root / "b" / ("%d.jpg" % i)), 10 + i)
    _image(str(tmp_path / "shared" / "s.jpg"), 20)
    os.symlink("..", str(root / "a" / "loop"))          # the loop
    os.symlink(".", str(root / "b" / "self"))            # a second loop: past 300 s before
    os.symlink("../a", str(root / "b" / "alias"))        # a second name for class a
    os.symlink(str(tmp_path / "shared"), str(root / "c"))  # outside ROOT: a real class
    prefix = str(tmp_path / "l")
    start = time.monotonic()
    rc, out, err = call_tool(capsys, "im2rec", prefix, str(root), "--list", "--recursive")
    assert rc == 0 and time.monotonic() - start < 30
    items = recordio.read_list(prefix + ".lst")
    assert sorted(i[1] for i in items) == ["a/0.jpg", "a/1.jpg", "a/2.jpg", "b/0.jpg",
                                           "b/1.jpg", "c/s.jpg"]
    assert recordio.read_synsets(prefix + ".synsets.txt") == ["a", "b", "c"]
    skipped = [line for line in err.splitlines() if line.startswith("warning: skipped")]
    assert len(skipped) == 3 and all("link to a folder listed already" in s for s in skipped)
    assert ["a/loop", "b/alias", "b/self"] == sorted(s.split()[2].rstrip(":") for s in skipped)


# 3. Prefix matching ---------------------------------------------------------------------

def test_prefix_packs_only_its_own_lists(tmp_path, capsys):
    root = tmp_path / "root"
    _image(str(root / "x.jpg"), 0)
    _image(str(root / "y.jpg"), 1)
    for name, n in (("v", 1), ("v_train", 2), ("v2_stale", 2), ("vv", 1)):
        _lst(str(tmp_path / (name + ".lst")), str(root), ["x.jpg", "y.jpg"][:n])
    rc, out, _ = call_tool(capsys, "im2rec", str(tmp_path / "v"), str(root))
    assert rc == 0 and out.count("packed") == 2
    recs = sorted(n for n in os.listdir(str(tmp_path)) if n.endswith(".rec"))
    assert recs == ["v.rec", "v_train.rec"]
    assert data.check_record(str(tmp_path / "v.rec")) == 1
    os.remove(str(tmp_path / "v.lst"))
    os.remove(str(tmp_path / "v_train.lst"))
    rc, _, err = call_tool(capsys, "im2rec", str(tmp_path / "v"), str(root))
    assert rc == 2 and "v2_stale.lst, vv.lst belong to other prefixes" in err


# 4. A .rec with a zeroed 80 KB hole ---------------------------------------------------

def _first_header_in(idx_path, lo, hi):
    """(number, key, offset) of the first record whose 8-byte header overlaps [lo, hi)."""
    entries = sorted((int(o), k) for k, o in (line.split() for line in open(idx_path)))
    for n, (off, key) in enumerate(entries, 1):
        if off + 8 > lo and off < hi:
            return n, key, off
    raise AssertionError("no header in the hole")


@pytest.mark.slow
def test_zeroed_hole_is_named_by_check_and_stops_training_with_one_line(digits, tmp_path):
    prefix = str(tmp_path / "holed")
    for ext in (".rec", ".idx", ".synsets.txt"):
        shutil.copy(digits[1] + ext, prefix + ext)
    size = os.path.getsize(prefix + ".rec")
    lo = size // 2
    with open(prefix + ".rec", "r+b") as f:
        f.seek(lo)
        f.write(b"\0" * 80 * 1024)
    n, key, off = _first_header_in(prefix + ".idx", lo, lo + 80 * 1024)
    with open(prefix + ".rec", "rb") as f:  # first and last records are fine: checking them is not enough
        assert f.read(4) == b"\x0a\x23\xd7\xce"
    expected = "%s.rec is damaged: record %d of 359 (key %s) at byte %d has no record header" \
        % (prefix, n, key, off)

    res = run_tool("im2rec", "--check", prefix)
    assert res.returncode == 2 and expected in _one_error_line(res.stderr)
    good = run_tool("im2rec", "--check", digits[1])
    assert good.returncode == 0 and "ok: %s.rec: 359 records" % digits[1] in good.stdout

    with pytest.raises(UserError, match="record %d of 359" % n):
        data.val_iter(Recipe.from_values({"rec_val": prefix + ".rec"}))
    res = run_tool("train_imagenet", "--recipe", os.path.join(ROOT, "recipes", "demo.yaml"),
                   "--rec-train", prefix + ".rec", "--rec-val", digits[1] + ".rec",
                   "--save-dir", str(tmp_path / "run"), "--multiplier", "0.25",
                   "--num-epochs", "1")
    assert res.returncode == 2, res.stderr[-2000:]  # not 134 from dmlc::Error
    assert "terminate called" not in res.stderr and "Traceback" not in res.stderr
    assert expected in res.stderr.strip().splitlines()[-1]


def test_check_follows_split_records_and_catches_a_wrong_length(tmp_path):
    """dmlc splits a record whose payload holds the magic word; its parts are followed."""
    rec, idx = str(tmp_path / "s.rec"), str(tmp_path / "s.idx")
    magic = np.array([recordio.RECORDIO_MAGIC], "<u4").tobytes()
    writer = mx.recordio.MXIndexedRecordIO(idx, rec, "w")
    header = mx.recordio.IRHeader(0, 1.0, 0, 0)
    for i in range(4):
        writer.write_idx(i, mx.recordio.pack(header, b"abcd" * 8 + magic * (i % 2) + b"x" * i))
    writer.close()
    assert recordio.check_record(rec) == 4
    offsets = [int(line.split()[1]) for line in open(idx)]
    with open(rec, "r+b") as f:  # record 3 claims 4 more bytes than it has
        f.seek(offsets[2] + 4)
        lrec = np.frombuffer(f.read(4), "<u4")[0]
        f.seek(offsets[2] + 4)
        f.write(np.array([lrec + 4], "<u4").tobytes())
    with pytest.raises(UserError, match="record 3 of 4 .* runs to byte"):
        recordio.check_record(rec)
    # mx.recordio reads this file without a word: why check_record walks the headers itself
    reader = mx.recordio.MXIndexedRecordIO(idx, rec, "r")
    assert len([reader.read_idx(key) for key in reader.keys]) == 4
    reader.close()


# 5. Truncated images --------------------------------------------------------------------

def _with_thumbnail(jpeg, thumb):
    """``jpeg`` with ``thumb`` inside an APP1 segment, as EXIF stores a thumbnail."""
    body = b"Exif\0\0" + thumb
    return jpeg[:2] + b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


def test_truncated_jpeg_and_png_are_skipped_and_listed(tmp_path, capsys):
    root = tmp_path / "root"
    jpeg = _image(str(root / "whole.jpg"), 0, side=96)
    png = _image(str(root / "whole.png"), 1, ".png", side=96)
    thumb = _image(str(tmp_path / "thumb.jpg"), 2, side=16)
    exif = _with_thumbnail(jpeg, thumb)
    files = {"cut50.jpg": jpeg[:len(jpeg) // 2], "cut30.jpg": jpeg[:len(jpeg) * 3 // 10],
             "cut50.png": png[:len(png) // 2],
             # the thumbnail's end marker is in the kept half: a search for FFD9 would pass it
             "exif_cut.jpg": exif[:len(thumb) + 12 + (len(exif) - len(thumb)) // 2],
             "exif_whole.jpg": exif, "trailing.jpg": jpeg + b"\0" * 64}
    for name, raw in files.items():
        (root / name).write_bytes(raw)
    assert b"\xff\xd9" in files["exif_cut.jpg"]
    assert cv2.imdecode(np.frombuffer(files["cut50.jpg"], np.uint8), 1) is not None  # OpenCV
    prefix = str(tmp_path / "t")
    assert call_tool(capsys, "im2rec", prefix, str(root), "--list")[0] == 0
    for argv in ([], ["--pass-through"]):
        rc, out, _ = call_tool(capsys, "im2rec", prefix, str(root), *argv)
        assert rc == 0 and "packed 4 images" in out and "skipped 4" in out
        skipped = dict(line.split("\t") for line in
                       open(prefix + ".skipped.txt").read().splitlines())
        assert sorted(skipped) == ["cut30.jpg", "cut50.jpg", "cut50.png", "exif_cut.jpg"]
        assert all(reason.startswith("truncated: the %s has no" % ("PNG" if p.endswith("png")
                                                                     else "JPEG"))
                   for p, reason in skipped.items())


# 6. Disk full ---------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 512 KB tmpfs (root only), else the test is skipped."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
                         capture_output=True) if os.geteuid() == 0 else None
    if res is None or res.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the injected ENOSPC test covers it")
    yield str(mnt)
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_disk_full_on_a_small_tmpfs_is_one_line_and_keeps_the_last_good_files(
        digits, small_disk, capsys):
    images = os.path.join(digits[0], "images", "train")
    prefix = os.path.join(small_disk, "p")
    _lst(prefix + ".lst", images, _relpaths(images)[:20])
    assert call_tool(capsys, "im2rec", prefix, images)[0] == 0
    before = {ext: open(prefix + ext, "rb").read() for ext in (".rec", ".idx")}
    stale = os.path.join(small_disk, "p.rec.tmp-%d" % _dead_pid())  # a SIGKILLed packer's
    with open(stale, "wb") as f:
        f.write(b"\0" * 100 * 1024)
    _lst(prefix + ".lst", images, _relpaths(images))  # 1438 images: about 1.4 MB
    rc, _, err = call_tool(capsys, "im2rec", prefix, images)
    line = _one_error_line(err)
    assert rc == 2 and "the disk holding %s is full (about" % small_disk in line
    needed_mb = float(line.split("(about ")[1].split(" MB")[0])
    assert 0.7 < needed_mb < 3, line  # an estimate of the whole .rec + .idx
    for ext, content in before.items():
        assert open(prefix + ext, "rb").read() == content, ext
    assert not _tmp_files(small_disk)  # ours and the dead one's
    assert data.check_record(prefix + ".rec") == 20


@pytest.mark.parametrize("failure", ["OSError", "MXNetError"])
def test_disk_full_injected_while_packing(digits, tmp_path, capsys, monkeypatch, failure):
    images = os.path.join(digits[0], "images", "val")
    prefix = str(tmp_path / "p")
    _lst(prefix + ".lst", images, _relpaths(images)[:30])
    assert call_tool(capsys, "im2rec", prefix, images)[0] == 0
    before = {ext: open(prefix + ext, "rb").read() for ext in (".rec", ".idx")}
    other = tmp_path / ("q.rec.tmp-%d" % _dead_pid())  # another prefix's: not ours to remove
    other.write_bytes(b"x")
    write_idx, calls = mx.recordio.MXIndexedRecordIO.write_idx, []

    def full_after_10(self, key, buf):
        calls.append(key)
        if len(calls) > 10:
            raise OSError(errno.ENOSPC, "No space left on device") if failure == "OSError" \
                else mx.base.MXNetError("src/io/local_filesys.cc:49: FileStream.Write incomplete")
        return write_idx(self, key, buf)

    monkeypatch.setattr(mx.recordio.MXIndexedRecordIO, "write_idx", full_after_10)
    _lst(prefix + ".lst", images, _relpaths(images)[:100])
    rc, _, err = call_tool(capsys, "im2rec", prefix, images)
    assert rc == 2 and "the disk holding %s is full (about" % tmp_path in _one_error_line(err)
    for ext, content in before.items():
        assert open(prefix + ext, "rb").read() == content, ext
    assert _tmp_files(str(tmp_path)) == [other.name]


# 7. Ctrl-C ------------------------------------------------------------------------------

@pytest.mark.parametrize("sig,rc,name", [(signal.SIGINT, 130, "Ctrl-C"),
                                         (signal.SIGTERM, 143, "SIGTERM")])
@pytest.mark.slow
def test_ctrl_c_while_packing_is_one_line_rc_130_and_leaves_no_temp_files(digits, tmp_path, sig,
                                                                          rc, name):
    images = os.path.join(digits[0], "images", "train")
    prefix = str(tmp_path / "p")
    _lst(prefix + ".lst", images, _relpaths(images)[:10])
    assert run_tool("im2rec", prefix, images).returncode == 0
    before = open(prefix + ".rec", "rb").read()
    _lst(prefix + ".lst", images, _relpaths(images) * 20)  # many seconds of PNG encoding
    job = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "im2rec.py"), prefix,
                            images, "--encoding", ".png", "--quality", "9"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _tmp_files(str(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert job.poll() is None, "packing finished before Ctrl-C"
        job.send_signal(sig)
        out, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == rc
    assert "interrupted (%s)" % name in _one_error_line(err)
    assert not _tmp_files(str(tmp_path)) and open(prefix + ".rec", "rb").read() == before


# 8. Entries outside ROOT ----------------------------------------------------------------

def test_list_entries_outside_root_are_refused_unless_allowed(tmp_path, capsys):
    root = tmp_path / "data" / "root"
    _image(str(root / "a" / "in.jpg"), 0)
    outside = _image(str(tmp_path / "data" / "secret" / "s.jpg"), 1)
    os.symlink("..", str(root / "a" / "loop"))
    prefix = str(tmp_path / "p")
    entries = ["a/in.jpg", "/etc/passwd", "../../../etc/shadow",
               str(tmp_path / "data" / "secret" / "s.jpg"), "a/loop/../secret/s.jpg"]
    for entry in entries[1:]:
        _lst(prefix + ".lst", str(root), ["a/in.jpg", entry])
        rc, _, err = call_tool(capsys, "im2rec", prefix, str(root))
        line = _one_error_line(err)
        assert rc == 2 and "names 1 file(s) outside ROOT" in line and entry in line
        assert "--allow-outside-root" in line
        assert not [n for n in os.listdir(str(tmp_path)) if n.startswith("p.") and
                    not n.endswith((".lst", ".lock"))]
    _lst(prefix + ".lst", str(root), ["a/in.jpg", "a/../a/in.jpg", entries[3]])  # inside, inside
    rc, _, err = call_tool(capsys, "im2rec", prefix, str(root))
    assert rc == 2 and "names 1 file(s)" in err
    rc, out, _ = call_tool(capsys, "im2rec", prefix, str(root), "--pass-through",
                           "--allow-outside-root")
    assert rc == 0 and "packed 3 images" in out
    reader = mx.recordio.MXIndexedRecordIO(prefix + ".idx", prefix + ".rec", "r")
    assert mx.recordio.unpack(reader.read_idx(2))[1] == outside  # byte for byte, when allowed


# 9. Tab or newline in a file name -------------------------------------------------------

def test_names_a_list_cannot_hold_are_skipped_and_reported(tmp_path, capsys):
    root = tmp_path / "root"
    _image(str(root / "c" / "ok.jpg"), 0)
    _image(str(root / "c" / "ta\tb.jpg"), 1)
    _image(str(root / "c" / "new\nline.jpg"), 2)
    _image(str(root / "d\te" / "x.jpg"), 3)
    prefix = str(tmp_path / "t")
    rc, _, err = call_tool(capsys, "im2rec", prefix, str(root), "--list", "--recursive")
    assert rc == 0
    warnings = err.strip().splitlines()
    assert sorted(warnings) == sorted(
        "warning: skipped %s: name holds a tab or line break, which a .lst line cannot; "
        "rename the file" % name for name in ("c/ta\\tb.jpg", "c/new\\nline.jpg", "d\\te/x.jpg"))
    assert [i[1] for i in recordio.read_list(prefix + ".lst")] == ["c/ok.jpg"]
    rc, out, _ = call_tool(capsys, "im2rec", prefix, str(root))  # its own list packs
    assert rc == 0 and "packed 1 images" in out


# Names with spaces around them, a folder prefix, names too long -------------------------

def test_names_with_leading_and_trailing_spaces_pack(tmp_path, capsys):
    root = tmp_path / "root"
    sources = {" lead/a.jpg": 0, "plain/ b.jpg": 1, "plain/c.jpg ": 2, "trail /d.jpg": 3}
    raw = {name: _image(str(root / name), seed) for name, seed in sources.items()}
    prefix = str(tmp_path / "s")
    rc, out, err = call_tool(capsys, "im2rec", prefix, str(root), "--list", "--recursive",
                             "--exts", ".jpg", ".jpg ", "--no-shuffle")
    assert rc == 0, err
    assert sorted(i[1] for i in recordio.read_list(prefix + ".lst")) == sorted(sources)
    rc, out, err = call_tool(capsys, "im2rec", prefix, str(root), "--pass-through")
    assert rc == 0 and "packed 4 images" in out and "skipped 0" in out, out + err
    reader = mx.recordio.MXIndexedRecordIO(prefix + ".idx", prefix + ".rec", "r")
    names = {i[0]: i[1] for i in recordio.read_list(prefix + ".lst")}
    assert {names[k]: mx.recordio.unpack(reader.read_idx(k))[1] for k in reader.keys} == raw
    # a list as MXNet's im2rec (or a hand) writes it, spaces around existing names, still packs
    with open(prefix + ".lst", "w") as f:
        f.write("0\t0.000000\t lead/a.jpg\n1\t1.000000\tplain/c.jpg  \r\n")
    with open(str(root / "plain" / "c.jpg"), "wb") as f:  # "c.jpg " and "c.jpg" both exist
        f.write(raw["trail /d.jpg"])
    rc, out, err = call_tool(capsys, "im2rec", prefix, str(root), "--pass-through")
    assert rc == 0 and "packed 2 images" in out, out + err
    reader = mx.recordio.MXIndexedRecordIO(prefix + ".idx", prefix + ".rec", "r")
    assert mx.recordio.unpack(reader.read_idx(1))[1] == raw["trail /d.jpg"]


def test_a_prefix_ending_in_a_slash_is_refused_before_writing(tmp_path, capsys):
    root = tmp_path / "root"
    _image(str(root / "c" / "a.jpg"), 0)
    prefix = str(tmp_path / "newdir") + os.sep
    rc, out, err = call_tool(capsys, "im2rec", prefix, str(root), "--list", "--recursive")
    assert rc == 2 and "names a folder, not a file in it" in _one_error_line(err)
    assert "%s" % os.path.join(prefix, "train") in err
    assert not os.path.exists(prefix)  # no hidden newdir/.lst
    rc, out, err = call_tool(capsys, "im2rec", prefix, str(root))
    assert rc == 2 and "names a folder" in _one_error_line(err)


def test_a_name_too_long_for_the_file_system_writes_nothing(tmp_path, capsys):
    root = tmp_path / "root"
    _image(str(root / "c" / "a.jpg"), 0)
    limit = os.pathconf(str(tmp_path), "PC_NAME_MAX")
    # PREFIX.lst (and its temporary name) fit; PREFIX.synsets.txt's temporary name does not
    base = "p" * (limit + 1 - len(".synsets.txt.tmp-%d" % os.getpid()))
    prefix = str(tmp_path / base)
    rc, out, err = call_tool(capsys, "im2rec", prefix, str(root), "--list", "--recursive")
    assert rc == 2 and "is too long a name for its file system" in _one_error_line(err)
    assert sorted(os.listdir(str(tmp_path))) == ["root"]  # the job's lock file removed too
    # without --recursive there are no synsets: the list is written; packing it would need
    # PREFIX.skipped.txt's name, so it is refused before the .rec is written
    rc, out, err = call_tool(capsys, "im2rec", prefix, str(root / "c"), "--list")
    assert rc == 0 and os.path.isfile(prefix + ".lst"), err
    rc, out, err = call_tool(capsys, "im2rec", prefix, str(root / "c"))
    assert rc == 2 and ".skipped.txt is too long a name" in _one_error_line(err)
    assert sorted(os.listdir(str(tmp_path))) == sorted(["root", base + ".lst"])


# 10. --resize 0 in --help ----------------------------------------------------------------

def test_help_says_resize_0_packs_full_size_images(capsys):
    from conftest import tool_main
    with pytest.raises(SystemExit):
        tool_main("im2rec")(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default 0: pack at full size, as MXNet's im2rec does" in text
    assert "8000x8000 photo is stored whole" in text and "600 MB of memory" in text


# 10. Damaged image bytes inside a record ------------------------------------------------

# Runs in a fresh interpreter: each named record of a .rec alone through a one-record
# ImageRecordIter, in a forked child; prints the keys whose child died by a signal (the
# ground truth the decoding check must match).
_DIES_IN_ITER = """
import os, sys, mxnet as mx
rec, keys, tmp = sys.argv[1], sys.argv[2:], os.environ["ONE"]
src = mx.recordio.MXIndexedRecordIO(rec[:-4] + ".idx", rec, "r", key_type=str)
for key in keys:
    w = mx.recordio.MXIndexedRecordIO(tmp + ".idx", tmp + ".rec", "w", key_type=str)
    w.write_idx(key, src.read_idx(key))
    w.close()
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        it = mx.io.ImageRecordIter(path_imgrec=tmp + ".rec", path_imgidx=tmp + ".idx",
                                   data_shape=(3, 16, 16), batch_size=1, resize=16,
                                   preprocess_threads=1, verbose=False)
        for batch in it:
            batch.data[0].asnumpy()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        print(key, os.WTERMSIG(status))
"""


def _damage(src, dst, plan):
    """Copy ``src``'s .rec/.idx/.lst/.synsets.txt to ``dst`` and damage the image bytes of
    the records at the positions of ``plan`` (``{position: kind}``), headers intact:
    ``sos`` zeroes 60 bytes from the JPEG's start-of-scan marker (OpenCV cannot decode
    it), ``tables`` 100 bytes of its Huffman tables and ``tail`` 8 bytes near its end
    (both decode, as damaged pictures). Returns ``{kind: [keys]}``."""
    for ext in (".rec", ".idx", ".lst", ".synsets.txt"):
        shutil.copy(src + ext, dst + ext)
    index = [line.split() for line in open(dst + ".idx")]
    data = bytearray(open(dst + ".rec", "rb").read())
    keys = {}
    for position, kind in plan.items():
        key, offset = index[position][0], int(index[position][1])
        length = int(np.frombuffer(data[offset + 4:offset + 8], "<u4")[0]) & ((1 << 29) - 1)
        start, end = offset + 8 + 24, offset + 8 + length  # past the label header
        sos = data.find(b"\xff\xda", start, end)
        at, n = {"sos": (sos + 4, 60), "tables": (sos - 120, 100), "tail": (end - 40, 8)}[kind]
        data[at:at + n] = bytes(n)
        keys.setdefault(kind, []).append(key)
    with open(dst + ".rec", "wb") as f:
        f.write(data)
    return keys


def _dying_keys(rec, keys, tmp_path):
    res = subprocess.run([sys.executable, "-c", _DIES_IN_ITER, rec] + list(keys),
                         capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, ONE=str(tmp_path / "one")))
    assert res.returncode == 0, res.stderr[-2000:]
    return {line.split()[0]: int(line.split()[1]) for line in res.stdout.splitlines()}


def _lst_line(prefix, key):
    return next(line.rstrip("\n") for line in open(prefix + ".lst")
                if line.split("\t")[0] == key)


PLAN = {3: "sos", 100: "tables", 101: "sos", 200: "tail", 358: "sos"}


@pytest.mark.slow
def test_decode_check_names_exactly_the_records_that_kill_the_iterator(digits, tmp_path):
    prefix = str(tmp_path / "dmg")
    damaged = _damage(digits[1], prefix, PLAN)
    # ground truth: the SIGFPE inside MXNet's decoder, for exactly the undecodable ones
    touched = [k for keys in damaged.values() for k in keys]
    assert _dying_keys(prefix + ".rec", touched, tmp_path) == \
        {k: signal.SIGFPE for k in damaged["sos"]}
    # the header walk passes the file, as before
    res = run_tool("im2rec", "--check", prefix)
    assert res.returncode == 0 and "every header intact" in res.stdout
    res = run_tool("im2rec", "--check", "--decode", "--num-thread", "2", prefix)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    named = [line for line in res.stdout.splitlines() if line.startswith("damaged: ")]
    assert named == ["damaged: %s.rec record %d of 359 (key %s, byte %s): its image bytes "
                     "cannot be decoded (damaged); .lst line: %r"
                     % (prefix, position + 1, key, offset, _lst_line(prefix, key))
                     for position, (key, offset) in enumerate(
                         line.split() for line in open(prefix + ".idx"))
                     if key in damaged["sos"]]
    assert res.stderr.strip().splitlines()[-1].startswith(
        "error: 3 of 359 records of %s.rec cannot be decoded" % prefix)


def _digest(*paths):
    import hashlib
    return [hashlib.md5(open(p, "rb").read()).hexdigest() for p in paths]


@pytest.mark.slow
def test_repair_writes_a_copy_without_the_damaged_and_keeps_the_original(digits, tmp_path):
    prefix, fixed = str(tmp_path / "dmg"), str(tmp_path / "out" / "fixed")
    damaged = _damage(digits[1], prefix, PLAN)["sos"]
    files = [prefix + ext for ext in (".rec", ".idx", ".lst", ".synsets.txt")]
    before = _digest(*files)
    res = run_tool("im2rec", "--check", "--decode", prefix, "--repair", prefix)
    assert res.returncode == 2 and "--repair-in-place" in _one_error_line(res.stderr)
    assert _digest(*files) == before
    res = run_tool("im2rec", "--check", "--decode", prefix, "--repair", fixed)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "wrote %s.rec: 356 of 359 records, without the 3 damaged ones" % fixed in res.stdout
    assert _digest(*files) == before  # the original is never touched
    assert _tmp_files(str(tmp_path / "out")) == []
    src = mx.recordio.MXIndexedRecordIO(prefix + ".idx", prefix + ".rec", "r", key_type=str)
    out = mx.recordio.MXIndexedRecordIO(fixed + ".idx", fixed + ".rec", "r", key_type=str)
    assert out.keys == [k for k in src.keys if k not in damaged]
    assert all(out.read_idx(k) == src.read_idx(k) for k in out.keys)  # byte for byte
    assert open(fixed + ".synsets.txt").read() == open(prefix + ".synsets.txt").read()
    assert [line.split("\t")[0] for line in open(fixed + ".lst")] == \
        [line.split("\t")[0] for line in open(prefix + ".lst")
         if line.split("\t")[0] not in damaged]
    res = run_tool("im2rec", "--check", "--decode", fixed)
    assert res.returncode == 0 and "356 records, every header intact, every image decodes" \
        in res.stdout
    # in place only when asked: the .rec/.idx are replaced, .lst and synsets stay
    res = run_tool("im2rec", "--check", "--decode", prefix, "--repair-in-place")
    assert res.returncode == 0, res.stderr[-2000:]
    assert _digest(prefix + ".rec", prefix + ".idx") == _digest(fixed + ".rec", fixed + ".idx")
    assert _digest(*files[2:]) == before[2:]
