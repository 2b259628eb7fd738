"""Folder -> .lst -> .rec/.idx -> ImageRecordIter, on the real demo digits."""
import filecmp
import io
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mobilenet_skip.config.recipe import KEYS, Recipe
from mobilenet_skip.data import records as data, demo as demo_images
from mobilenet_skip import recordio
from mobilenet_skip.cli import run_main
from mobilenet_skip.errors import UserError
from mobilenet_skip.utils.progress import Progress

from conftest import run_tool, tool_main

SIZE = 32
RAW = dict(mean_rgb=[0, 0, 0], std_rgb=[1, 1, 1])  # iterator output in plain 0-255 RGB


def recipe(values=(), **more):
    """The iterators' settings as a resolved recipe holds them: the defaults, ``values``
    and ``more`` laid over them, checked (errors start "data setting:")."""
    return Recipe.from_values(dict(values, **more))


def _cli(*argv):
    return run_tool(argv[0][:-len(".py")], *argv[1:])


def _epoch(it):
    """Every real sample of one epoch: (images NHWC, labels), padding dropped."""
    images, labels = [], []
    it.reset()
    for batch in it:
        n = batch.data[0].shape[0] - batch.pad
        images.append(batch.data[0].asnumpy()[:n].transpose(0, 2, 3, 1))
        labels.append(batch.label[0].asnumpy()[:n])
    return np.concatenate(images), np.concatenate(labels)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("demo"))
    counts = demo_images.make_demo_data(out, size=SIZE)
    return out, counts


@pytest.fixture(scope="module")
def packed(demo, tmp_path_factory):
    """The demo val split packed through the im2rec command line, as a user would."""
    root = os.path.join(demo[0], "val")
    prefix = os.path.join(str(tmp_path_factory.mktemp("rec")), "val")
    for argv in (["--list", "--recursive"], ["--num-thread", "2", "--quality", "95"]):
        res = _cli("im2rec.py", prefix, root, *argv)
        assert res.returncode == 0, res.stderr
    return prefix, root, res.stdout


def test_demo_set_is_real_stratified_and_deterministic(demo, tmp_path):
    out, counts = demo
    assert counts["classes"] == ["digit_%d" % d for d in range(10)]
    assert counts["train"] + counts["val"] == 1797  # every scikit-learn digit, once
    from sklearn.datasets import load_digits
    per_class = np.bincount(load_digits().target)
    for d, name in enumerate(counts["classes"]):
        n_val = len(os.listdir(os.path.join(out, "val", name)))
        assert n_val == round(per_class[d] * 0.2)
        assert n_val + len(os.listdir(os.path.join(out, "train", name))) == per_class[d]
    img = cv2.imread(os.path.join(out, "val", "digit_0", sorted(os.listdir(
        os.path.join(out, "val", "digit_0")))[0]))
    assert img.shape == (SIZE, SIZE, 3) and img.std() > 30  # a digit, not a flat fill
    again = str(tmp_path / "again")
    res = _cli("make_demo_data.py", again, "--size", str(SIZE))
    assert res.returncode == 0 and "1438 train and 359 val" in res.stdout
    cmp = filecmp.dircmp(os.path.join(out, "val"), os.path.join(again, "val"))
    assert not cmp.left_only and not cmp.right_only
    name = counts["classes"][3]
    files = os.listdir(os.path.join(out, "val", name))
    match, mismatch, errors = filecmp.cmpfiles(os.path.join(out, "val", name),
                                               os.path.join(again, "val", name), files,
                                               shallow=False)
    assert len(match) == len(files) and not mismatch and not errors


def test_demo_data_never_replaces_foreign_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "mine.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="not written by make_demo_data"):
        demo_images.make_demo_data(str(tmp_path), size=8)
    assert (tmp_path / "train" / "mine.jpg").exists()


def test_folder_to_iterator_gives_back_every_image(packed):
    prefix, root, stdout = packed
    assert "packed 359 images" in stdout and "skipped 0" in stdout
    assert data.read_synsets(data.synsets_path(prefix + ".rec")) == \
        ["digit_%d" % d for d in range(10)]
    items = recordio.read_list(prefix + ".lst")
    assert len(items) == 359
    assert data.check_record(prefix + ".rec") == 359
    it = data.val_iter(recipe(RAW, rec_val=prefix + ".rec", input_size=SIZE, crop_ratio=1.0,
                            batch_size=16))
    images, labels = _epoch(it)
    # val keeps the list's order: record k is line k of the .lst
    synsets = data.read_synsets(data.synsets_path(prefix + ".lst"))
    for (_, relpath, label), got_label, got in zip(items, labels, images):
        assert synsets[int(label)] == relpath.split("/")[0] and got_label == label
        original = cv2.imread(os.path.join(root, relpath))[:, :, ::-1]
        assert np.abs(got - original).mean() < 3  # the same picture, re-encoded at q95
    assert len(images) == len(items)


def test_train_iterator_shuffles_but_keeps_every_label(packed):
    prefix = packed[0]
    it = data.train_iter(recipe(rec_train=prefix + ".rec", input_size=SIZE, batch_size=16),
                         seed=1)
    images, labels = _epoch(it)
    expected = [item[2] for item in recordio.read_list(prefix + ".lst")]
    assert sorted(labels) == sorted(expected) and list(labels) != expected
    assert images.shape == (359, SIZE, SIZE, 3) and images.dtype == np.float32
    # ImageNet-normalised: about zero mean, not raw pixels
    assert -3 < images.mean() < 3 and images.max() < 5


def test_the_rec_is_checked_once_not_again_every_epoch(packed, monkeypatch):
    """check_record reads every record header: once when the iterator is made, not on
    each set_epoch (ImageNet's 1.28M headers every epoch)."""
    checked = []
    real = data.check_record
    monkeypatch.setattr(data, "check_record", lambda *a: checked.append(a) or real(*a))
    it = data.train_iter(recipe(rec_train=packed[0] + ".rec", input_size=SIZE, batch_size=16),
                         seed=1)
    orders = []
    for epoch in (1, 2):
        it.set_epoch(epoch)
        orders.append(_epoch(it)[1])
    assert len(checked) == 1
    assert sorted(orders[0]) == sorted(orders[1]) and list(orders[0]) != list(orders[1])


@pytest.mark.slow
def test_packing_matches_mxnet_im2rec_byte_for_byte(packed, tmp_path):
    import mxnet as mx
    prefix, root, _ = packed
    theirs = str(tmp_path / "val")
    tool = os.path.join(os.path.dirname(mx.__file__), "tools", "im2rec.py")
    for argv in (["--list", "--recursive"], ["--quality", "95"]):
        subprocess.run([sys.executable, tool, theirs, root] + argv, check=True,
                       capture_output=True)
    for ext in (".lst", ".rec", ".idx"):
        assert filecmp.cmp(prefix + ext, theirs + ext, shallow=False), ext


@pytest.mark.parametrize("shape", [(48, 80), (96, 160)])
def test_val_crop_is_the_centre_crop(tmp_path, shape):
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, shape + (3,), dtype=np.uint8)
    os.makedirs(tmp_path / "imgs")
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), img)
    (tmp_path / "a.lst").write_text("0\t0.000000\ta.png\n")
    recordio.pack_list(str(tmp_path / "a.lst"), str(tmp_path / "imgs"),
                       recordio.PackOptions(encoding=".png", quality=1), stream=io.StringIO())
    # 32 / (32/48): shorter side to 48, then the central 32x32
    it = data.val_iter(recipe(RAW, rec_val=str(tmp_path / "a.rec"), input_size=32,
                            crop_ratio=32 / 48, batch_size=1))
    got = next(iter(it)).data[0].asnumpy()[0].transpose(1, 2, 0)
    resized = cv2.resize(img, (80, 48), interpolation=cv2.INTER_LINEAR)
    centre = resized[8:40, 24:56, ::-1]
    assert np.abs(got - centre).max() <= (0 if shape == (48, 80) else 2)
    assert np.abs(got - resized[:32, :32, ::-1]).mean() > 20  # a corner crop would not pass


@pytest.mark.slow
def test_unreadable_images_are_skipped_and_reported(demo, tmp_path):
    root = tmp_path / "imgs"
    shutil.copytree(os.path.join(demo[0], "val", "digit_1"), root / "one")
    shutil.copytree(os.path.join(demo[0], "val", "digit_2"), root / "two")
    good = len(os.listdir(root / "one")) + len(os.listdir(root / "two"))
    real = (root / "one" / sorted(os.listdir(root / "one"))[0]).read_bytes()
    (root / "one" / "corrupt.jpg").write_bytes(b"\x00garbage" * 8)
    (root / "one" / "cut.jpg").write_bytes(real[:len(real) // 2])
    (root / "two" / "empty.jpg").write_bytes(b"")
    prefix = str(tmp_path / "out" / "bad")
    assert _cli("im2rec.py", prefix, str(root), "--list", "--recursive").returncode == 0
    for argv in ([], ["--pass-through"]):
        res = _cli("im2rec.py", prefix, str(root), *argv)
        assert res.returncode == 0, res.stderr
        assert "packed %d images" % good in res.stdout and "skipped 3" in res.stdout
        skipped = dict(line.split("\t") for line in
                       open(prefix + ".skipped.txt").read().splitlines())
        assert skipped == {"one/corrupt.jpg": "cannot decode as an image",
                           "one/cut.jpg": "truncated: the JPEG has no end-of-image marker "
                           "(FFD9); copy the file again",
                           "two/empty.jpg": "empty file"}
        assert data.check_record(prefix + ".rec") == good
        assert not [n for n in os.listdir(tmp_path / "out") if ".tmp" in n]
        assert len(_epoch(data.val_iter(recipe(rec_val=prefix + ".rec", input_size=SIZE,
                                             batch_size=8)))[1]) == good


@pytest.fixture
def rec_copy(packed, tmp_path):
    prefix = str(tmp_path / "copy")
    for ext in (".rec", ".idx"):
        shutil.copy(packed[0] + ext, prefix + ext)
    return prefix


def test_truncated_rec_is_a_clear_error(rec_copy):
    rec = rec_copy + ".rec"
    size = os.path.getsize(rec)
    with open(rec, "r+b") as f:
        f.truncate(size - 10)
    with pytest.raises(UserError, match="copy.rec is truncated"):
        data.check_record(rec)
    with pytest.raises(UserError, match="truncated"):  # before the C++ iterator exists
        data.val_iter(recipe(rec_val=rec))
    with open(rec, "r+b") as f:
        f.truncate(size // 2)  # likely on a record boundary: the index gives it away
    with pytest.raises(UserError, match="copy.idx points to byte"):
        data.check_record(rec)


def test_missing_idx_and_non_recordio_are_clear_errors(rec_copy, tmp_path):
    os.remove(rec_copy + ".idx")
    with pytest.raises(UserError, match=r"index .*copy\.idx .*does not exist"):
        data.train_iter(recipe(rec_train=rec_copy + ".rec"))
    jpeg = tmp_path / "photo.rec"
    jpeg.write_bytes(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    (tmp_path / "photo.idx").write_text("0\t0\n")
    with pytest.raises(UserError, match="photo.rec is not an MXNet RecordIO file"):
        data.check_record(str(jpeg))
    with pytest.raises(UserError, match="does not exist"):
        data.check_record(str(tmp_path / "nothing.rec"))
    with pytest.raises(UserError, match="rec_val is not set"):
        data.val_iter(recipe())


def test_idx_of_another_file_is_caught(packed, rec_copy):
    with open(rec_copy + ".idx", "w") as f:
        f.write("0\t0\n1\t12\n")  # byte 12 is inside the first record
    with pytest.raises(UserError, match="belongs to another file"):
        data.check_record(rec_copy + ".rec")


@pytest.mark.parametrize("make_iter", [data.train_iter, data.val_iter])
def test_two_parts_split_the_records_disjointly(demo, tmp_path, make_iter):
    root = os.path.join(demo[0], "val")
    relpaths = sorted(os.path.join(d, f) for d in os.listdir(root)
                      for f in os.listdir(os.path.join(root, d)))[:45]
    lst = tmp_path / "ids.lst"  # label = record number, so every record is identifiable
    lst.write_text("".join("%d\t%f\t%s\n" % (i, i, p) for i, p in enumerate(relpaths)))
    recordio.pack_list(str(lst), root, stream=io.StringIO())
    cfg = recipe(rec_train=str(tmp_path / "ids.rec"), rec_val=str(tmp_path / "ids.rec"),
               input_size=SIZE, batch_size=4)
    parts = [_epoch(make_iter(cfg, num_devices=2, num_parts=2, part_index=p))[1]
             for p in (0, 1)]
    assert [len(p) for p in parts] == [23, 22] == [data.shard_size(45, 2, p) for p in (0, 1)]
    assert not set(parts[0]) & set(parts[1])
    assert sorted(np.concatenate(parts)) == list(range(45))
    with pytest.raises(UserError, match="num_parts=40 leaves some parts"):
        make_iter(cfg, num_parts=40)


def test_batch_is_per_device_times_devices_and_pad_marks_filler(packed):
    it = data.val_iter(recipe(rec_val=packed[0] + ".rec", input_size=SIZE, batch_size=25),
                       num_devices=2)
    batches = list(it)
    assert [b.data[0].shape[0] for b in batches] == [50] * 8
    assert [b.pad for b in batches] == [0] * 7 + [50 * 8 - 359]


def test_defaults_and_cfg_checks():
    assert {"rec_train", "rec_val", "input_size", "crop_ratio", "batch_size", "min_random_area",
            "max_random_area", "min_aspect_ratio", "max_aspect_ratio", "rand_mirror",
            "color_jitter", "mean_rgb", "std_rgb", "preprocess_threads", "shuffle"} <= set(KEYS)
    assert recipe()["min_random_area"] > 0.08  # lighter than Inception's crop
    for bad, key in ((dict(batch_size=0), "batch_size"),
                     (dict(min_random_area=0.5, max_random_area=0.4), "max_random_area"),
                     (dict(crop_ratio="wide"), "crop_ratio"), (dict(std_rgb=[1, 0, 1]), "std_rgb")):
        with pytest.raises(UserError, match="^data setting: %s" % key):
            recipe(bad, rec_train="unused.rec", lr=0.1)


def test_read_synsets_errors(tmp_path):
    with pytest.raises(UserError, match="--list --recursive"):
        data.read_synsets(str(tmp_path / "none.synsets.txt"))
    (tmp_path / "a.synsets.txt").write_text("n01440764\n\nn01443537\n")
    with pytest.raises(UserError, match="blank line 2"):
        data.read_synsets(str(tmp_path / "a.synsets.txt"))
    assert data.synsets_path("/d/train.rec") == "/d/train.synsets.txt"


@pytest.mark.parametrize("case", ["missing root", "empty folder", "prefix is a directory",
                                  "unwritable output", "bad quality"])
def test_im2rec_user_errors_are_one_line(tmp_path, capsys, case):
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("")
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "x.jpg"), np.zeros((8, 8, 3), np.uint8))
    argv, words = {
        "missing root": ([str(tmp_path / "p"), str(tmp_path / "nope"), "--list"],
                         "does not exist"),
        "empty folder": ([str(tmp_path / "p"), str(tmp_path / "empty"), "--list",
                          "--recursive"], "no .jpeg/.jpg/.png images"),
        "prefix is a directory": ([str(tmp_path / "empty"), str(tmp_path / "imgs"), "--list"],
                                  "is a directory"),
        "unwritable output": ([str(tmp_path / "afile" / "p"), str(tmp_path / "imgs"), "--list"],
                              "cannot create output folder"),
        "bad quality": ([str(tmp_path / "p"), str(tmp_path / "imgs"), "--quality", "0"],
                        "--quality"),
    }[case]
    with pytest.raises(SystemExit) as exit_:
        run_main(tool_main("im2rec"), argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and words in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_progress_reports_count_rate_and_eta():
    out = io.StringIO()
    bar = Progress(10, "train.rec", stream=out, every=0.0)
    for _ in range(3):
        bar.update()
    bar.close()
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("train.rec 3/10 (30.0%)") and "img/s ETA" in last


# A val .rec without class names ---------------------------------------------------------

def test_a_missing_synsets_file_says_the_class_check_is_skipped(tmp_path, caplog):
    import logging
    from mobilenet_skip.data import checks
    train, val = str(tmp_path / "train.rec"), str(tmp_path / "val.rec")
    (tmp_path / "train.synsets.txt").write_text("cat\ndog\n")
    with caplog.at_level(logging.WARNING, logger="mobilenet_skip"):
        checks.check_same_classes(train, val)
    assert caplog.records == []  # no val.rec at all: the record check refuses it, alone
    (tmp_path / "val.rec").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="mobilenet_skip"):
        checks.check_same_classes(train, val)
    assert [r.getMessage() for r in caplog.records] == [
        "no class names in %s, so the classes of %s are not checked against train's (a val "
        "folder missing a class would shift every later label); `tools/im2rec.py PREFIX ROOT "
        "--list --recursive` writes PREFIX.synsets.txt" % (tmp_path / "val.synsets.txt", val)]
    (tmp_path / "val.synsets.txt").write_text("cat\ndog\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mobilenet_skip"):
        checks.check_same_classes(train, val)
    assert caplog.records == []  # both there and equal: checked, nothing to say
    (tmp_path / "val.synsets.txt").write_text("dog\n")
    with pytest.raises(UserError, match="class 0 is 'cat' in train but 'dog' in val"):
        checks.check_same_classes(train, val)


def test_eval_checks_the_val_classes_against_the_model_or_says_it_cannot(demo_run, tmp_path):
    stem = os.path.splitext(demo_run.val_rec)[0]
    prefix = str(tmp_path / "val")
    for ext in (".rec", ".idx"):
        shutil.copy(stem + ext, prefix + ext)
    res = run_tool("eval_imagenet", "--prefix", demo_run.prefix, "--rec-val", prefix + ".rec")
    assert res.returncode == 0, res.stderr[-2000:]
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == ["warning: no class names in %s.synsets.txt, so the classes of %s.rec "
                        "are not checked against the model's (a val folder missing a class "
                        "would shift every later label); `tools/im2rec.py PREFIX ROOT --list "
                        "--recursive` writes PREFIX.synsets.txt" % (prefix, prefix)]
    names = open(stem + ".synsets.txt").read().splitlines()
    with open(prefix + ".synsets.txt", "w") as f:  # digit_3's folder missing from val
        f.write("\n".join(names[:3] + names[4:]) + "\n")
    res = run_tool("eval_imagenet", "--prefix", demo_run.prefix, "--rec-val", prefix + ".rec")
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "class 3 is 'digit_3' in the model but 'digit_4' in val" in res.stderr
    shutil.copy(stem + ".synsets.txt", prefix + ".synsets.txt")
    res = run_tool("eval_imagenet", "--prefix", demo_run.prefix, "--rec-val", prefix + ".rec")
    assert res.returncode == 0 and "warning" not in res.stderr, res.stderr
