"""Hostile or unlucky data files (issue 26): a damaged JPEG inside a packed .rec (eval died
by SIGFPE, training with a raw OpenCV error), an .idx missing a line, dangling symlinks
and empty class folders, a decompression bomb, the same .rec for train and val; and the
stamp that lets a packed .rec skip its decode check."""
import io
import logging
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import zlib

import mxnet as mx
import pytest

from mobilenet_skip import recordio
from mobilenet_skip.config.recipe import Recipe
from mobilenet_skip.data import checks, demo as demo_images, records as data
from mobilenet_skip.errors import UserError
from mobilenet_skip.recordio import stamp

from conftest import ROOT, call_tool, run_tool

SIZE = 32
NAMES = ["digit_%d" % d for d in range(10)]


@pytest.fixture(scope="module")
def val(tmp_path_factory):
    """The demo's real val digits (359 JPEGs at 32 px) packed as im2rec packs them."""
    out = str(tmp_path_factory.mktemp("hostile"))
    demo_images.make_demo_data(os.path.join(out, "images"), size=SIZE)
    prefix = os.path.join(out, "val")
    root = os.path.join(out, "images", "val")
    recordio.make_list(prefix, root, recursive=True, stream=io.StringIO())
    recordio.pack(prefix, root, stream=io.StringIO(), out=io.StringIO())
    return prefix


def _copy(src, dst, exts=(".rec", ".idx", ".lst", ".synsets.txt")):
    for ext in exts:
        shutil.copy(src + ext, dst + ext)
    return dst


def _zero_scan(prefix, position):
    """Zero 60 bytes just past the start-of-scan marker of the JPEG in the record at
    ``position`` of ``prefix.rec`` (its headers stay intact); returns (key, offset)."""
    key, offset = open(prefix + ".idx").read().splitlines()[position].split()
    offset = int(offset)
    with open(prefix + ".rec", "r+b") as f:
        f.seek(offset)
        record = f.read(8 + 4096)
        sos = record.find(b"\xff\xda", 8 + 24)
        assert sos > 0
        f.seek(offset + sos + 4)
        f.write(bytes(60))
    return key, offset


# Ground truth, in a fresh interpreter: the record alone through evaluation's transform
# of MXNet's ImageRecordIter, in a forked child; prints how the child ended.
_ITER_ALONE = """
import os, sys, mxnet as mx
rec, key, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
src = mx.recordio.MXIndexedRecordIO(rec[:-4] + ".idx", rec, "r", key_type=str)
w = mx.recordio.MXIndexedRecordIO(tmp + ".idx", tmp + ".rec", "w", key_type=str)
w.write_idx(key, src.read_idx(key))
w.close()
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    it = mx.io.ImageRecordIter(path_imgrec=tmp + ".rec", path_imgidx=tmp + ".idx",
                               data_shape=(3, 32, 32), batch_size=1, resize=36,
                               preprocess_threads=1, verbose=False)
    for batch in it:
        batch.data[0].asnumpy()
    os._exit(0)
_, status = os.waitpid(pid, 0)
print(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
"""


def _dies_alone(rec, key, tmp_path):
    res = subprocess.run([sys.executable, "-c", _ITER_ALONE, rec, key, str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return int(res.stdout.split()[-1])


@pytest.fixture(scope="module")
def export(val, tmp_path_factory):
    """An untrained 10-class export at 32 px naming the digits' classes."""
    from mobilenet_skip.bench.infer import randomise_bn
    from mobilenet_skip.deploy.artifact import export_network
    from mobilenet_skip.models import get_model
    prefix = str(tmp_path_factory.mktemp("export") / "m")
    net = randomise_bn(get_model("mobilenet", multiplier=0.25, classes=10), SIZE)
    export_network(net, prefix, SIZE, synsets=NAMES)
    return prefix


def _refusal(res, rec, position, key, offset):
    """The run ended with one error line naming the damaged record and both fixes."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr and "Fatal Python error" not in res.stderr
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]]
    assert lines[-1] == (
        "error: 1 of 359 records of %s cannot be decoded, the first record %d (key %s, byte "
        "%d): its image bytes cannot be decoded (damaged); MXNet's decoder would stop "
        "training or kill evaluation on them: `tools/im2rec.py --check --decode %s` lists "
        "them and `--repair OUT_PREFIX` writes a copy without them, or re-pack from the "
        "images" % (rec, position + 1, key, offset, rec))
    assert "note: if this run dies by a signal" not in res.stdout + res.stderr


# FAIL 3 and WEAK 4: a damaged JPEG inside a .rec that im2rec packed -------------------

@pytest.mark.slow
def test_eval_refuses_a_damaged_val_rec_in_one_line_instead_of_dying_by_sigfpe(
        val, export, tmp_path):
    prefix = _copy(val, str(tmp_path / "dmg"))
    key, offset = _zero_scan(prefix, 5)
    assert _dies_alone(prefix + ".rec", key, tmp_path) == -signal.SIGFPE  # as eval died
    res = run_tool("eval_imagenet", "--prefix", export, "--rec-val", prefix + ".rec")
    _refusal(res, prefix + ".rec", 5, key, offset)
    assert not recordio.is_stamped(prefix + ".rec")


@pytest.mark.slow
def test_training_refuses_a_damaged_train_rec_in_one_line(val, tmp_path):
    prefix = _copy(val, str(tmp_path / "dmg"))
    key, offset = _zero_scan(prefix, 200)
    res = run_tool("train_imagenet", "--recipe", os.path.join(ROOT, "recipes", "demo.yaml"),
                   "--rec-train", prefix + ".rec", "--rec-val", val + ".rec",
                   "--save-dir", str(tmp_path / "run"), "--num-epochs", "1")
    _refusal(res, prefix + ".rec", 200, key, offset)  # not MXNetError ... !ssize.empty()
    assert "resize.cpp" not in res.stderr


def test_a_packed_rec_is_stamped_and_read_without_a_second_check(val, tmp_path, capsys):
    assert recordio.is_stamped(val + ".rec")
    capsys.readouterr()
    data.val_iter(Recipe.from_values({"rec_val": val + ".rec", "input_size": SIZE}))
    assert capsys.readouterr().err == ""  # no note, no decoding
    # a copy has new times: checked once, then stamped
    copy = _copy(val, str(tmp_path / "copy"), (".rec", ".idx"))
    assert not recordio.is_stamped(copy + ".rec")
    data.val_iter(Recipe.from_values({"rec_val": copy + ".rec", "input_size": SIZE}))
    err = capsys.readouterr().err
    assert err.startswith("note: %s.rec has no stamp of a decode check" % copy)
    assert recordio.is_stamped(copy + ".rec")
    data.val_iter(Recipe.from_values({"rec_val": copy + ".rec", "input_size": SIZE}))
    assert capsys.readouterr().err == ""
    # a write moves the modification time (here a second on: past any clock tick)
    os.utime(copy + ".rec", ns=(0, os.stat(copy + ".rec").st_mtime_ns + 10 ** 9))
    assert not recordio.is_stamped(copy + ".rec")
    recordio.write_stamp(copy + ".rec", 359)
    with open(copy + ".idx", "a") as f:  # so does another .idx
        f.write("\n")
    assert not recordio.is_stamped(copy + ".rec")


def test_damage_that_keeps_the_time_is_found_by_check_decode_which_voids_the_stamp(
        val, tmp_path, capsys):
    prefix = _copy(val, str(tmp_path / "rot"), (".rec", ".idx", ".lst"))
    recordio.write_stamp(prefix + ".rec", 359)
    before = os.stat(prefix + ".rec")
    key, offset = _zero_scan(prefix, 7)
    os.utime(prefix + ".rec", ns=(before.st_atime_ns, before.st_mtime_ns))  # bit rot
    assert recordio.is_stamped(prefix + ".rec")  # what a stamp cannot see
    rc, out, err = call_tool(capsys, "im2rec", "--check", "--decode", prefix)
    assert rc == 2 and "damaged: %s.rec record 8 of 359 (key %s, byte %d)" \
        % (prefix, key, offset) in out
    assert not os.path.exists(stamp.stamp_path(prefix + ".rec"))
    with pytest.raises(UserError, match="record 8 \\(key %s, byte %d\\)" % (key, offset)):
        data.val_iter(Recipe.from_values({"rec_val": prefix + ".rec", "input_size": SIZE}))


def test_check_decode_stamps_a_whole_file_and_a_read_only_folder_uses_the_cache(
        val, tmp_path, capsys, monkeypatch):
    prefix = _copy(val, str(tmp_path / "foreign"), (".rec", ".idx"))
    rc, out, _ = call_tool(capsys, "im2rec", "--check", "--decode", prefix)
    assert rc == 0 and "every image decodes" in out and recordio.is_stamped(prefix + ".rec")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    real_save = stamp.fs.atomic_save

    def read_only_beside_the_rec(path, text):
        if not path.startswith(str(tmp_path / "cache")):
            raise PermissionError(13, "Permission denied", path)
        real_save(path, text)
    monkeypatch.setattr(stamp.fs, "atomic_save", read_only_beside_the_rec)
    ro = _copy(val, str(tmp_path / "ro"), (".rec", ".idx"))
    written = recordio.write_stamp(ro + ".rec", 359)
    assert written.startswith(str(tmp_path / "cache")) and recordio.is_stamped(ro + ".rec")


# WEAK 31: an .idx missing a line ----------------------------------------------------

@pytest.mark.parametrize("line,where", [(100, "after record 100 of 358"),
                                        (0, "before the first record")])
def test_an_idx_missing_a_line_is_refused_by_check_and_by_reading(val, tmp_path, capsys,
                                                                   line, where):
    prefix = _copy(val, str(tmp_path / "short"), (".rec", ".idx"))
    lines = open(prefix + ".idx").read().splitlines(True)
    missing = int(lines[line].split()[1])
    with open(prefix + ".idx", "w") as f:
        f.writelines(lines[:line] + lines[line + 1:])
    expected = ("error: %s.idx names 358 records, but %s.rec holds 1 more that no line of it "
                "names (the first at byte %d, %s" % (prefix, prefix, missing, where))
    rc, _, err = call_tool(capsys, "im2rec", "--check", prefix)
    assert rc == 2 and err.startswith(expected) and err.count("\n") == 1, err
    assert "training and evaluation would skip them without a word; copy the .idx again" \
        in err
    with pytest.raises(UserError, match="names 358 records, but .* holds 1 more"):
        data.val_iter(Recipe.from_values({"rec_val": prefix + ".rec", "input_size": SIZE}))


# WEAK 45: dangling symlinks and empty class folders ------------------------------------

def test_list_names_dangling_symlinks_and_class_folders_without_images(val, tmp_path, capsys):
    root = tmp_path / "root"
    digit = os.path.join(os.path.dirname(val), "images", "val", "digit_0")
    shutil.copytree(digit, str(root / "a"))
    (root / "b").mkdir()  # empty: class b would silently vanish, and c take its label
    (root / "c").mkdir()
    (root / "c" / "notes.txt").write_text("no images here\n")
    shutil.copytree(digit, str(root / "d"))
    os.symlink(str(tmp_path / "gone.jpg"), str(root / "a" / "link.jpg"))
    os.symlink(str(tmp_path / "gone"), str(root / "e"))  # a class folder elsewhere, gone
    rc, _, err = call_tool(capsys, "im2rec", str(tmp_path / "l"), str(root), "--list",
                           "--recursive")
    assert rc == 0
    empty = ("folder holds no .jpeg/.jpg/.png image, so it is no class: every later class "
             "takes the label it would have had")
    assert sorted(err.strip().splitlines()) == [
        "warning: skipped a/link.jpg: dangling symlink: its target %s does not exist"
        % (tmp_path / "gone.jpg"),
        "warning: skipped b: " + empty, "warning: skipped c: " + empty,
        "warning: skipped e: dangling symlink: its target %s does not exist"
        % (tmp_path / "gone")]
    assert recordio.read_synsets(str(tmp_path / "l.synsets.txt")) == ["a", "d"]


# WEAK 46: a decompression bomb ----------------------------------------------------------

def _png_bomb(path, side=30000, rows_per_block=100):
    """A real one-colour grey PNG of ``side`` x ``side`` (0.88 MB; 2.7 GB once decoded in
    colour), written without holding its pixels: one deflate block of zeros, closed by a
    full flush so that its bytes can be repeated, then an empty final block."""
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    rows = bytes((side + 1) * rows_per_block)  # each row: filter 0, then side zeros
    z = zlib.compressobj(9)
    head = z.compress(rows) + z.flush(zlib.Z_FULL_FLUSH)
    body = z.compress(rows) + z.flush(zlib.Z_FULL_FLUSH)
    assert head.endswith(body) and len(head) == len(body) + 2  # + the zlib header
    adler = (((side + 1) * side % 65521) << 16) | 1  # Adler-32 of zeros: a stays 1
    idat = head + body * (side // rows_per_block - 1) + b"\x03\x00" + struct.pack(">I", adler)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n"
                + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return open(path, "rb").read()


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


BOMB = ("30000x30000 pixels (900,000,000), more than the cap of 89,478,485 (a decompression "
        "bomb?): decoding it in colour takes 2.7 GB; pass --max-pixels 900000000 to accept it")


def test_a_png_bomb_is_skipped_by_pack_and_refused_by_reading(val, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(os.path.join(os.path.dirname(val), "images", "val", "digit_0"),
                    str(root / "a"))
    bomb = _png_bomb(str(root / "a" / "bomb.png"))
    assert len(bomb) < 10 ** 6 and zlib.decompressobj().decompress(
        bomb[41:], 10 ** 6) == bytes(10 ** 6)  # a whole zlib stream of zeros
    images = len(os.listdir(str(root / "a"))) - 1
    prefix = str(tmp_path / "p")
    peak = _peak_mb()
    assert call_tool(capsys, "im2rec", prefix, str(root), "--list", "--recursive")[0] == 0
    rc, out, err = call_tool(capsys, "im2rec", prefix, str(root))
    assert rc == 0 and "packed %d images" % images in out and "skipped 1" in out
    assert err.strip().splitlines() == ["warning: skipped a/bomb.png: " + BOMB]
    assert open(prefix + ".skipped.txt").read() == "a/bomb.png\t%s\n" % BOMB
    # a .rec from elsewhere that holds it is refused from its header, undecoded
    rec = str(tmp_path / "foreign.rec")
    writer = mx.recordio.MXIndexedRecordIO(rec[:-4] + ".idx", rec, "w")
    writer.write_idx(0, mx.recordio.pack(mx.recordio.IRHeader(0, 0.0, 0, 0), bomb))
    writer.close()
    with pytest.raises(UserError, match="record 1 \\(key 0, byte 0\\): its image is "
                       "30000x30000 pixels"):
        data.val_iter(Recipe.from_values({"rec_val": rec, "input_size": SIZE}))
    assert _peak_mb() - peak < 500  # decoding it would have taken 2,700 MB


def test_max_pixels_sets_the_cap(val, tmp_path, capsys):
    root = os.path.join(os.path.dirname(val), "images", "val")
    prefix = str(tmp_path / "v")
    assert call_tool(capsys, "im2rec", prefix, root, "--list", "--recursive")[0] == 0
    rc, out, err = call_tool(capsys, "im2rec", prefix, root, "--max-pixels", "1023")
    assert rc == 2 and out == "" and "none of the 359 images" in err  # 32x32 = 1024
    rc, out, _ = call_tool(capsys, "im2rec", prefix, root, "--max-pixels", "1024")
    assert rc == 0 and "packed 359 images" in out
    rc, out, _ = call_tool(capsys, "im2rec", "--check", "--decode", prefix, "--max-pixels",
                           "1023")
    assert rc == 2 and out.count("more than the cap of 1,023") == 359


def test_other_formats_are_capped_from_their_header_through_pillow():
    def bmp(width, height):  # a header alone: Pillow reads the size from it
        return (b"BM" + struct.pack("<IHHI", 54, 0, 0, 54)
                + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0))
    assert recordio.oversized_reason(bmp(100, 100)) is None
    assert recordio.oversized_reason(bmp(10000, 10000), 10 ** 7).startswith(
        "10000x10000 pixels (100,000,000), more than the cap of 10,000,000")
    assert "more than 178,956,970 pixels, as Pillow reads its header" in \
        recordio.oversized_reason(bmp(20000, 20000))


# WEAK 56: the same .rec for train and val --------------------------------------------

def test_the_same_rec_for_train_and_val_is_warned_about(val, tmp_path, caplog, monkeypatch):
    # an in-process tool run earlier on this worker may have stopped the package's logger
    # propagating to the root, where caplog listens
    monkeypatch.setattr(logging.getLogger("mobilenet_skip"), "propagate", True)
    link = str(tmp_path / "also.rec")
    os.symlink(val + ".rec", link)
    shutil.copy(val + ".synsets.txt", str(tmp_path / "also.synsets.txt"))
    with caplog.at_level(logging.WARNING, logger="mobilenet_skip"):
        checks.check_same_classes(val + ".rec", link)
    assert [r.getMessage() for r in caplog.records] == [
        "the val .rec %s is the training .rec %s: val top-1 would measure images the network "
        "trains on, not how it generalises; pack a separate val set (`tools/im2rec.py PREFIX "
        "ROOT --list --recursive --train-ratio 0.9` splits one folder)" % (link, val + ".rec")]
    caplog.clear()
    other = _copy(val, str(tmp_path / "other"), (".rec", ".idx", ".synsets.txt"))
    with caplog.at_level(logging.WARNING, logger="mobilenet_skip"):
        checks.check_same_classes(val + ".rec", other + ".rec")
    assert caplog.records == []
