"""tools/predict.py at scale: folders, batches, --csv, bad files among good ones, and a
reader that closes the pipe."""
import csv
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import TOOLS, call_tool

CLASSES = ["cat", "dog", "owl"]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A tiny 3-class export (width 0.25, 32 px; untrained weights answer all the same)."""
    import mxnet as mx
    from mobilenet_skip.deploy.artifact import export_network
    from mobilenet_skip.models import get_model
    mx.random.seed(3)
    net = get_model("mobilenet", 0.25, len(CLASSES))
    net.initialize(mx.init.Xavier(magnitude=3))
    prefix = str(tmp_path_factory.mktemp("export") / "m")
    export_network(net, prefix, input_size=32, synsets=CLASSES)
    return prefix


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Seven images of noise in a folder and a sub-folder, and a text file to be skipped."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.RandomState(0)
    for n in range(7):
        sub = root / ("a" if n < 4 else os.path.join("b", "c"))
        sub.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sub / ("%d.%s" % (n, "png" if n % 2 else "JPG"))),
                    rng.randint(0, 255, (40 + n, 36, 3)).astype(np.uint8))
    (root / "a" / "notes.txt").write_text("not an image")
    return str(root)


def _files(folder):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs
                  if not f.endswith(".txt"))


def _predict(capsys, *argv):
    return call_tool(capsys, "predict", *argv)


@pytest.mark.slow
def test_a_folder_is_its_image_files_in_batches(export, folder, capsys):
    code, out, _ = _predict(capsys, "--prefix", export, "--json", "--batch-size", "3", folder)
    by_folder = json.loads(out)["predictions"]
    code2, out, _ = _predict(capsys, "--prefix", export, "--json", "--batch-size", "3",
                             *_files(folder))
    assert code == code2 == 0
    assert [p["image"] for p in by_folder] == _files(folder)  # notes.txt skipped
    assert by_folder == json.loads(out)["predictions"]
    # a padded last batch (7 = 3 + 3 + 1) answers as one image at a time
    _, out, _ = _predict(capsys, "--prefix", export, "--json", "--batch-size", "1", folder)
    for one, batched in zip(json.loads(out)["predictions"], by_folder):
        assert [t["name"] for t in one["top"]] == [t["name"] for t in batched["top"]]
        np.testing.assert_allclose([t["probability"] for t in one["top"]],
                                   [t["probability"] for t in batched["top"]], atol=1e-5)


@pytest.mark.slow
def test_bad_files_are_reported_in_place_and_the_rest_classified(export, folder, tmp_path,
                                                                  capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    huge = tmp_path / "huge.png"
    with open(str(huge), "wb") as f:
        f.truncate(65 << 20)  # sparse: over predict's 64 MB without using the disk
    good = _files(folder)
    table = tmp_path / "out.csv"
    argv = [good[0], str(broken), good[1], str(huge), str(tmp_path / "empty_dir"), good[2]]
    (tmp_path / "empty_dir").mkdir()
    code, out, err = _predict(capsys, "--prefix", export, "--csv", str(table), "--top", "2",
                              "--batch-size", "4", *argv)
    assert code == 1
    assert [l for l in out.splitlines() if not l.startswith("  ")] == good[:3]
    errors = err.splitlines()
    assert len(errors) == 3 and all(e.startswith("error: ") for e in errors)
    assert "cannot be decoded" in errors[0] and "more than the 64.0 MB" in errors[1]
    assert "holds no JPG/JPEG/PNG/BMP file" in errors[2]
    with open(str(table), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == argv
    assert list(rows[0]) == ["path", "class_1", "probability_1", "class_2", "probability_2",
                             "error"]
    for row in rows:
        assert bool(row["error"]) == (row["class_1"] == "")
        if not row["error"]:
            assert row["class_1"] in CLASSES and 0 < float(row["probability_1"]) <= 1
            assert float(row["probability_1"]) >= float(row["probability_2"])
    assert "cannot be decoded" in rows[1]["error"]


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly(export, folder):
    predict = os.path.join(TOOLS, "predict.py")
    # one image per batch: every image is flushed, so writes go on after head has left
    cmd = "set -o pipefail; %s %s --prefix %s --batch-size 1 %s %s %s | head -1" % (
        sys.executable, predict, export, folder, folder, folder)
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert res.stdout.splitlines() == [_files(folder)[0]]
    assert res.stderr == "", res.stderr
    assert res.returncode in (0, 141)  # 141: ended by the closed pipe, as `cat` would be
