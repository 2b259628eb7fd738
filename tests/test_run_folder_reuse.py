"""A run folder is never reused by accident: a fresh run into a folder that holds a run
is refused (``--overwrite`` clears that run), a resume whose settings are not its
checkpoints' is refused naming the keys, a lost metrics.csv is rebuilt from the
checkpoint's marker, and the integer columns stay integers.

Each test copies the session's trained demo run (``demo_run``: 5 epochs, checkpoints
of epochs 4 and 5) and trains at most one short epoch into the copy."""
import csv
import hashlib
import math
import os
import shutil
import subprocess
import sys

import pytest

from mobilenet_skip.runs.metrics import INT_COLUMNS, best_row, epochs_text, typed_row

from conftest import TOOL_TIMEOUT, TRAIN, call_tool, read_metrics, train_args

MODEL = "full-connect-pre-act"
OTHER = "simple-connect"
# one short epoch of 5 batches; the width stays the demo recipe's, the copy's own
FLAGS = ["--log-interval", "5", "--batches-per-epoch", "5"]


def _copy(demo_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(demo_run.save_dir, str(run))
    return run


def _files(folder, log=True):
    """{name: sha256} of every file in ``folder``: what a refusal must leave as it was;
    without ``log``, train.log aside (a resume logs there what it compared before it
    refuses)."""
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in sorted(os.listdir(str(folder)))
            if (folder / name).is_file() and (log or name != "train.log")}


def _tool(*args):
    return subprocess.run([sys.executable, TRAIN] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=TOOL_TIMEOUT)


def _train(digits, run, *extra):
    """``train_imagenet.py`` on the digits with the demo recipe and :data:`FLAGS`."""
    return subprocess.run(train_args(digits, run, FLAGS, *extra), capture_output=True,
                          text=True, timeout=TOOL_TIMEOUT)


def _resume(run):
    """``--save-dir RUN --resume`` alone (RUN/config.yaml names recipe and data), one
    short epoch past the demo's five."""
    return _tool("--save-dir", run, "--resume", "--num-epochs", "6", *FLAGS)


def _error(res):
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-2000:]
    return lines[0][len("error: "):]


def _ok(res):
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return res.stdout


def _csv_cells(path):
    with open(str(path), newline="") as f:
        return list(csv.DictReader(f))


# --- quick: the helpers the messages and the rows go through -------------------------

def test_rows_keep_their_integer_columns_and_epochs_read_as_spans():
    row = typed_row({"epoch": 3.0, "train_images": 1408.0, "best_epoch": "2",
                     "val_top1": 0.5, "val_loss": float("nan")})
    assert [type(row[c]) for c in INT_COLUMNS] == [int] * 3
    assert row["train_images"] == 1408 and isinstance(row["val_top1"], float)
    assert math.isnan(typed_row({"train_images": float("nan")})["train_images"])
    assert epochs_text([5, 1, 2, 3, 7, 8]) == "1-3, 5, 7-8"


# --- a fresh run into a folder that holds a run --------------------------------------

@pytest.mark.slow
def test_another_model_into_a_run_folder_is_refused_and_the_run_still_resumes(
        demo_run, digits, tmp_path):
    run = _copy(demo_run, tmp_path)
    before = _files(run)
    err = _error(_train(digits, run, "--model", OTHER, "--num-epochs", "1"))
    assert err == ("%s already holds checkpoints of %s (up to epoch 5), not of %s; pass "
                   "another --save-dir, or --overwrite to delete that run and start this one"
                   % (run, MODEL, OTHER))
    assert _files(run) == before
    out = _ok(_resume(run))
    assert "resumed from %s" % (run / (MODEL + "-0005.params")) in out
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_config_and_metrics_alone_are_a_run_too(demo_run, digits, tmp_path):
    """A run stopped before its first checkpoint (a NaN in epoch 1, say) keeps its
    config.yaml and metrics.csv: a fresh run does not replace them unasked."""
    run = _copy(demo_run, tmp_path)
    for name in os.listdir(str(run)):
        if name.startswith(MODEL + "-000") and not name.endswith("-0000.params"):
            os.remove(str(run / name))
    before = _files(run)
    err = _error(_train(digits, run, "--num-epochs", "1"))
    assert err == ("%s already holds a run (config.yaml, metrics.csv, no complete "
                   "checkpoint); pass --resume to continue it, --overwrite to start "
                   "again, or another --save-dir" % run)
    assert _files(run) == before


@pytest.mark.slow
def test_overwrite_removes_the_run_of_every_model_and_nothing_else(demo_run, digits,
                                                                   tmp_path):
    run = _copy(demo_run, tmp_path)
    (run / "notes.txt").write_text("mine")
    old_log = (run / "train.log").read_text()
    export = [n for n in os.listdir(str(run)) if n.startswith(MODEL + "-0000") or
              n.startswith(MODEL + "-symbol") or n.startswith(MODEL + ".")]
    out = _ok(_train(digits, run, "--model", OTHER, "--overwrite", "--num-epochs", "1"))
    assert ("--overwrite: removed the run %s held: %s-0004.*, %s-0005.*, config.yaml, "
            "metrics.csv, curves.png (train.log goes on)" % (run, MODEL, MODEL)) in out
    names = set(os.listdir(str(run)))
    assert not [n for n in names if n.startswith((MODEL + "-0004.", MODEL + "-0005."))], names
    assert set(export) <= names and (run / "notes.txt").read_text() == "mine"
    assert [r["epoch"] for r in read_metrics(run)] == [1]
    assert "\nmodel: %s\n" % OTHER in (run / "config.yaml").read_text()
    log = (run / "train.log").read_text()
    assert log.startswith(old_log) and "--overwrite: removed the run" in log[len(old_log):]


# --- a resume whose settings are not its checkpoints' --------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("key,edited,recorded", [
    ("model", OTHER, MODEL), ("multiplier", "0.25", "0.5")])
def test_a_resume_under_an_edited_config_yaml_is_refused_naming_the_key(
        demo_run, tmp_path, key, edited, recorded):
    run = _copy(demo_run, tmp_path)
    config = run / "config.yaml"
    text = config.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith(key + ": "))
    config.write_text(text.replace(line + "\n", "%s: %s\n" % (key, edited)))
    before = _files(run, log=False)
    err = _error(_resume(run))
    assert err == ("--resume: the checkpoints in %s (%s-0005.json, epoch 5) were trained "
                   "with %s=%s, not %s=%s as %s says; put those values back into %s, or "
                   "pass --overwrite to start again, or another --save-dir"
                   % (run, MODEL, key, recorded, key, edited, config, config))
    assert _files(run, log=False) == before


@pytest.mark.slow
def test_a_resume_into_another_models_checkpoints_is_refused_naming_them(
        demo_run, digits, tmp_path):
    run = _copy(demo_run, tmp_path)
    os.remove(str(run / "config.yaml"))  # the command line names the settings
    before = _files(run, log=False)
    err = _error(_train(digits, run, "--model", OTHER, "--resume"))
    assert err == ("--resume: the checkpoints in %s (%s-0005.json, epoch 5) were trained "
                   "with model=%s, not model=%s as the command line says; pass --model %s, "
                   "or pass --overwrite to start again, or another --save-dir"
                   % (run, MODEL, MODEL, OTHER, MODEL))
    assert _files(run, log=False) == before


# --- the folder named by --resume ----------------------------------------------------

@pytest.mark.parametrize("made,why", [
    (False, "does not exist"),
    (True, "holds no run (no config.yaml, metrics.csv or checkpoint)")])
def test_resume_of_a_folder_without_a_run_says_so(capsys, tmp_path, made, why):
    """Refused before the data is looked for: in this process, nothing trains."""
    folder = tmp_path / "typo"
    if made:
        folder.mkdir()
    code, _, err = call_tool(capsys, "train_imagenet", "--save-dir", str(folder), "--resume")
    assert code == 2 and err == (
        "error: --resume: %s %s; drop --resume to start a run there (with --rec-train and "
        "--rec-val), or pass the run's folder as --save-dir\n" % (folder, why))
    if made:
        assert os.listdir(str(folder)) == []
    else:
        assert not folder.exists()


@pytest.mark.slow
def test_resume_with_the_data_named_starts_a_run_in_a_new_folder(digits, tmp_path):
    """A job script that always passes --resume (requeued jobs) starts its run."""
    run = tmp_path / "new"
    res = _train(digits, run, "--multiplier", "0.25", "--num-epochs", "1", "--resume")
    assert "--resume: no complete checkpoint in %s; starting from scratch" % run in _ok(res)
    assert [r["epoch"] for r in read_metrics(run)] == [1]


# --- metrics.csv on resume -----------------------------------------------------------

@pytest.mark.slow
def test_a_lost_metrics_csv_is_rebuilt_from_the_checkpoint_marker(demo_run, tmp_path):
    """The checkpoints kept are epochs 4 and 5; the marker of 5 records every row."""
    run = _copy(demo_run, tmp_path)
    assert not (run / (MODEL + "-0003.json")).exists()
    original = (run / "metrics.csv").read_text().splitlines()
    os.remove(str(run / "metrics.csv"))
    out = _ok(_resume(run))
    assert "--resume: %s lacked epoch(s) 1-5; rebuilt from %s" % (
        run / "metrics.csv", run / (MODEL + "-0005.json")) in out
    assert (run / "metrics.csv").read_text().splitlines()[:6] == original
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    best = best_row(rows)
    assert rows[-1]["best_epoch"] == best["epoch"]
    assert "best epoch %d val top1 %.4f" % (best["epoch"], best["val_top1"]) in out


@pytest.mark.slow
def test_integer_columns_stay_integers_through_a_resume(demo_run, tmp_path):
    """A metrics.csv whose counts read 1408.0 (as a spreadsheet or pandas writes them)
    is rewritten with 1408 on resume: epoch, train_images and best_epoch alike."""
    run = _copy(demo_run, tmp_path)
    path = run / "metrics.csv"
    rows = _csv_cells(path)
    with open(str(path), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: v + ".0" if k in INT_COLUMNS else v for k, v in row.items()})
    _ok(_resume(run))
    cells = _csv_cells(path)
    assert len(cells) == 6
    assert all(row[c].isdigit() for row in cells for c in INT_COLUMNS), cells
    assert [int(row["train_images"]) for row in cells[:5]] == [
        int(r["train_images"]) for r in demo_run.metrics]
