"""The converged study's linear floor, on tiny class-separable IDX files."""
import gzip
import os
import struct

import numpy as np
import pytest

from mobilenet_skip.bench import linear
from mobilenet_skip.bench.reporting import read_csv
from mobilenet_skip.data.fashion import FILES
from mobilenet_skip.errors import UserError


def write_separable(folder, split, per_class, rng):
    """``per_class`` noisy images of each class, class k brighter in row band k, as IDX."""
    labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
    rng.shuffle(labels)
    images = rng.randint(0, 120, (len(labels), 28, 28))
    for i, label in enumerate(labels):
        images[i, 2 * label:2 * label + 3] += 130
    images_file, labels_file, _ = FILES[split]
    with gzip.open(os.path.join(folder, images_file), "wb") as f:
        f.write(struct.pack(">IIII", 2051, len(labels), 28, 28)
                + images.astype(np.uint8).tobytes())
    with gzip.open(os.path.join(folder, labels_file), "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + labels.tobytes())


@pytest.fixture
def idx(tmp_path):
    folder = tmp_path / "idx"
    folder.mkdir()
    rng = np.random.RandomState(0)
    write_separable(str(folder), "train", 30, rng)
    write_separable(str(folder), "val", 10, rng)
    return str(folder)


def test_the_floor_trains_on_the_study_s_images_and_writes_its_row(idx, tmp_path):
    out = str(tmp_path / "linear.csv")
    row = linear.linear_floor(idx, out, holdout_per_class=5, grid=(0.01, 1.0))
    assert row["train_images"] == 300 - 5 * 10  # the hold-out is not trained on
    assert row["C"] in (0.01, 1.0) and row["test_top1"] > 0.9  # the bands are separable
    assert 0.9 < row["holdout_top1"] <= 1
    written, = read_csv(out, linear.COLUMNS, text=("model",), ints=("train_images",))
    assert written["model"] == row["model"] and written["test_top1"] == row["test_top1"]
    assert "C from 0.01/1 on the hold-out" in written["model"]
    assert "ConvergenceWarning" not in written["model"]


def test_a_fit_that_stops_early_is_named_not_hidden(idx, tmp_path):
    row = linear.linear_floor(idx, str(tmp_path / "linear.csv"), holdout_per_class=5,
                              grid=(1.0,), max_iter=1)
    assert row["model"].endswith("ConvergenceWarning: not converged at C=1")


def test_bad_arguments_are_refused_where_they_enter(idx, tmp_path):
    with pytest.raises(UserError, match="positive integer"):
        linear.linear_floor(idx, str(tmp_path / "x.csv"), holdout_per_class=0)
    with pytest.raises(UserError, match="only 30 images"):  # more than a class holds
        linear.linear_floor(idx, str(tmp_path / "x.csv"), holdout_per_class=31)
