"""The logs people already use: TensorBoard event files of a run, and several runs'
curves overlaid in one plot (tools/plot_runs.py)."""
import os

import pytest

import pictures
from conftest import DEMO_RECIPE, read_metrics, run_tool, train_digits

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


# --- plot_runs: several runs on one figure -----------------------------------------------

def test_labels_name_the_model_and_the_keys_that_differ():
    from mobilenet_skip.train.overlay import run_labels
    base = {"model": "mobilenet", "multiplier": 0.25, "lr": 0.1, "save_dir": "runs/a",
            "lr_decay_epochs": [30, 60], "log_interval": 20}
    other = dict(base, lr=0.03, save_dir="runs/b", log_interval=5)
    third = dict(base, model="full-connect", lr_decay_epochs=[30, 90], save_dir="runs/c")
    assert run_labels([base, other]) == ["mobilenet lr=0.1", "mobilenet lr=0.03"]
    assert run_labels([base, other, third]) == [
        "mobilenet lr=0.1 lr_decay_epochs=30,60", "mobilenet lr=0.03 lr_decay_epochs=30,60",
        "full-connect lr=0.1 lr_decay_epochs=30,90"]
    assert run_labels([base]) == ["mobilenet"]


def test_a_missing_or_non_run_folder_is_one_line(tmp_path):
    from mobilenet_skip.errors import UserError
    from mobilenet_skip.train.overlay import load_runs
    for path, words in ((tmp_path / "nowhere", "is not a folder"),
                        (tmp_path, "is not a training run")):
        with pytest.raises(UserError) as err:
            load_runs([str(path)])
        assert words in str(err.value) and str(path) in str(err.value)
        assert "\n" not in str(err.value)


@pytest.mark.slow
def test_plot_runs_writes_the_png_labelled_by_the_lr(board_run, small_digits, tmp_path):
    other = tmp_path / "other"
    train_digits(small_digits, other, TINY, "--num-epochs", "1", "--lr", "0.03")
    png = tmp_path / "runs.png"
    # config.yaml order (the schema's): num_epochs comes before lr
    res = run_tool("plot_runs", board_run["dir"], str(other), "--output", str(png))
    assert res.returncode == 0, res.stderr
    assert "full-connect-pre-act num_epochs=2 lr=0.1" in res.stdout
    assert "full-connect-pre-act num_epochs=1 lr=0.03" in res.stdout
    # train loss, val top-1 and lr: both runs on every panel, in their own colours (the
    # one-epoch run is a point and its best-epoch ring: fewer pixels)
    pictures.check_plot(str(png), (14, 4), pictures.series_colours(2), (1, 3), least=25)
    res = run_tool("plot_runs", str(tmp_path / "nowhere"))
    assert res.returncode == 2 and "is not a folder" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


@pytest.mark.slow
def test_a_finished_pack_and_run_leave_no_lock_files(board_run, small_digits):
    assert ".lock" not in os.listdir(board_run["dir"])
    assert not [f for f in os.listdir(os.path.dirname(small_digits["train"]))
                if f.endswith(".lock")]
