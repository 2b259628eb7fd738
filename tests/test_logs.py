"""The logs people already use: TensorBoard event files of a run, and several runs'
curves overlaid in one plot (tools/plot_runs.py)."""
import os

import pytest

from conftest import DEMO_RECIPE, read_metrics, train_digits

# Tiny: width 0.25 at 32 px, a few batches an epoch.
TINY = ["--multiplier", "0.25", "--input-size", "32", "--batches-per-epoch", "4",
        "--log-interval", "2", "--preprocess-threads", "1"]


@pytest.fixture(scope="module")
def small_digits(tmp_path_factory):
    """The demo digits at 32 px, packed."""
    from mobilenet_skip.data.demo import pack_demo_data
    train, val = pack_demo_data(str(tmp_path_factory.mktemp("digits")), size=32)
    return {"train": train, "val": val}


@pytest.fixture(scope="module")
def board_run(small_digits, tmp_path_factory):
    """Two epochs written to TensorBoard as well as to the run folder."""
    root = tmp_path_factory.mktemp("board")
    save_dir, logdir = root / "run", root / "tb"
    res = train_digits(small_digits, save_dir, TINY, "--num-epochs", "2",
                       "--tensorboard", str(logdir))
    return {"dir": str(save_dir), "logdir": str(logdir), "out": res.stdout}


@pytest.mark.slow
def test_event_file_values_equal_metrics_csv(board_run):
    from mobilenet_skip.train.tensorboard import read_scalars
    scalars = read_scalars(board_run["logdir"])
    rows = read_metrics(board_run["dir"])
    assert len(rows) == 2
    for column in ("val_top1", "val_top5", "train_loss", "train_top1", "lr"):
        steps = [step for step, _ in scalars["epoch/" + column]]
        values = [value for _, value in scalars["epoch/" + column]]
        assert steps == [1, 2], column
        assert values == pytest.approx([r[column] for r in rows], rel=1e-4, abs=1e-6), column
    # a window every 2 of 4 batches: steps 2 and 4 of epoch 1, 6 and 8 of epoch 2
    assert [s for s, _ in scalars["train/loss"]] == [2, 4, 6, 8]
    assert all(v > 0 for _, v in scalars["train/img_per_s"])
    assert [v for _, v in scalars["train/lr"]][-1] == pytest.approx(rows[-1]["lr"], rel=1e-5)


@pytest.mark.slow
def test_event_file_holds_the_config(board_run):
    from tensorboardX.proto.event_pb2 import Event  # noqa: F401 (the reader's proto)
    import glob
    raw = b"".join(open(p, "rb").read() for p in glob.glob(
        os.path.join(board_run["logdir"], "events.out.tfevents.*")))
    assert b"config" in raw and b"multiplier" in raw and b"0.25" in raw


def test_missing_tensorboardx_is_one_line_naming_the_install(monkeypatch):
    import sys
    from mobilenet_skip.errors import UserError
    from mobilenet_skip.train import tensorboard
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import now fails
    with pytest.raises(UserError) as err:
        tensorboard.TensorBoard("tb", {})
    assert "pip install --no-deps tensorboardX==" in str(err.value)
    assert "\n" not in str(err.value)


def test_tensorboard_is_a_recipe_key_and_flag():
    import argparse
    from mobilenet_skip.config import flags, recipes
    args = flags.add_flags(argparse.ArgumentParser()).parse_args(["--tensorboard", "tb"])
    cfg = recipes.resolve(DEMO_RECIPE, flags.flag_overrides(args))
    assert cfg["tensorboard"] == "tb"
    assert recipes.resolve(DEMO_RECIPE)["tensorboard"] == ""
