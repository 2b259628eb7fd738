"""Fashion-MNIST's IDX files to an ImageNet-style folder (tools/make_fashion_data.py), on a
tiny IDX set the test writes, so CI needs no apt package."""
import gzip
import os
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "make_fashion_data.py")


def write_idx(folder, split, per_class, rng):
    """``per_class`` random 28x28 images of each of the 10 classes, as gzipped IDX."""
    from mobilenet_skip.data.fashion import FILES
    images_file, labels_file, _ = FILES[split]
    labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
    rng.shuffle(labels)
    images = rng.randint(0, 256, (len(labels), 28, 28)).astype(np.uint8)
    with gzip.open(os.path.join(folder, images_file), "wb") as f:
        f.write(struct.pack(">IIII", 2051, len(labels), 28, 28) + images.tobytes())
    with gzip.open(os.path.join(folder, labels_file), "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + labels.tobytes())
    return images, labels


@pytest.fixture
def idx_dir(tmp_path):
    folder = tmp_path / "idx"
    folder.mkdir()
    rng = np.random.RandomState(1)
    sets = {split: write_idx(str(folder), split, n, rng) for split, n in
            (("train", 6), ("val", 3))}
    return str(folder), sets


def run(*args):
    return subprocess.run([sys.executable, TOOL] + list(args), capture_output=True, text=True)


def test_writes_every_image_in_its_class_folder(idx_dir, tmp_path):
    folder, sets = idx_dir
    out = tmp_path / "fashion"
    res = run(str(out), "--idx-dir", folder, "--size", "28")
    assert res.returncode == 0, res.stderr
    assert "wrote 60 train and 30 val images of 10 classes" in res.stdout
    images, labels = sets["val"]
    classes = sorted(os.listdir(out / "val"))
    assert classes[0] == "0_T-shirt-top" and classes[-1] == "9_Ankle-boot"
    for n in (0, 7, 29):  # the pixels and the class of an image survive, losslessly
        path = out / "val" / classes[labels[n]] / ("%05d.png" % n)
        assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), images[n])


def test_per_class_is_a_stratified_fixed_subset_and_rerun_replaces(idx_dir, tmp_path):
    folder, _ = idx_dir
    out = tmp_path / "fashion"
    assert run(str(out), "--idx-dir", folder, "--per-class", "2").returncode == 0
    first = sorted(os.path.join(d, f) for d, _, fs in os.walk(out / "train") for f in fs)
    assert all(len(os.listdir(out / "train" / c)) == 2 for c in os.listdir(out / "train"))
    assert len(first) == 20 and cv2.imread(first[0]).shape[:2] == (32, 32)
    assert run(str(out), "--idx-dir", folder, "--per-class", "2").returncode == 0
    assert sorted(os.path.join(d, f) for d, _, fs in os.walk(out / "train") for f in fs) == first
    res = run(str(out), "--idx-dir", folder, "--per-class", "7")
    assert res.returncode == 2 and "only 6 images" in res.stderr


def test_missing_files_name_both_ways_to_get_them(tmp_path):
    res = run(str(tmp_path / "out"), "--idx-dir", str(tmp_path / "nowhere"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "apt-get install dataset-fashion-mnist" in res.stderr
    assert "zalandoresearch/fashion-mnist" in res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage, said", [
    (lambda raw: struct.pack(">I", 2049) + raw[4:], "magic number 2051"),
    (lambda raw: raw[:-100], "truncated or damaged"),
])
def test_damaged_idx_files_are_refused_before_anything_is_written(idx_dir, tmp_path, damage,
                                                                  said):
    folder, _ = idx_dir
    path = os.path.join(folder, "t10k-images-idx3-ubyte.gz")
    with gzip.open(path, "rb") as f:
        raw = f.read()
    with gzip.open(path, "wb") as f:
        f.write(damage(raw))
    res = run(str(tmp_path / "out"), "--idx-dir", folder)
    assert res.returncode == 2 and said in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()
