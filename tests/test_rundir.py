"""A run folder nobody else writes into, full disks, SIGTERM, refused values, and your own
dataset without traps."""
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from mobilenet_skip.utils import fs as fs_mod
from mobilenet_skip.runs import checkpoints
from mobilenet_skip.runs import states
from mobilenet_skip.data.demo import make_demo_data
from mobilenet_skip.errors import UserError
from mobilenet_skip.recordio import make_list, pack

from conftest import ROOT, TOOLS, call_tool, tool_module

TRAIN = os.path.join(TOOLS, "train_imagenet.py")
DEMO_RECIPE = os.path.join(ROOT, "recipes", "demo.yaml")
FAST = ["--multiplier", "0.25", "--log-interval", "5"]
MODEL = "full-connect-pre-act"


def _pack(prefix, root):
    make_list(prefix, root, recursive=True)
    with open(os.devnull, "w") as quiet:
        pack(prefix, root, num_thread=2, stream=quiet, out=quiet)
    return prefix + ".rec"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """The demo digits at 36 px (1,438 train, 359 val images), not packed."""
    root = str(tmp_path_factory.mktemp("rundir_images"))
    make_demo_data(root, size=36)
    return root


@pytest.fixture(scope="module")
def digits(images, tmp_path_factory):
    """All ten digits packed: train.rec (1,438 images) and val.rec."""
    out = str(tmp_path_factory.mktemp("rundir_digits"))
    return {split: _pack(os.path.join(out, split), os.path.join(images, split))
            for split in ("train", "val")}


@pytest.fixture(scope="module")
def three(images, tmp_path_factory):
    """A 3-class set (digits 0-2, 430 train images) packed with synsets."""
    out = str(tmp_path_factory.mktemp("rundir_three"))
    recs = {}
    for split in ("train", "val"):
        for name in ("digit_0", "digit_1", "digit_2"):
            shutil.copytree(os.path.join(images, split, name),
                            os.path.join(out, "images", split, name))
        recs[split] = _pack(os.path.join(out, split), os.path.join(out, "images", split))
    return recs


def _args(recs, save_dir, *extra, recipe=DEMO_RECIPE):
    return ([sys.executable, TRAIN] + (["--recipe", recipe] if recipe else []) +
            ["--rec-train", recs["train"], "--rec-val", recs["val"], "--save-dir",
             str(save_dir)] + FAST + list(extra))


def _run(recs, save_dir, *extra, **kw):
    return subprocess.run(_args(recs, save_dir, *extra, **kw), capture_output=True, text=True)


def _error_line(res):
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-2000:]
    return lines[0]


def _wait_for(path, proc, timeout=120):
    end = time.time() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, "training ended before %s appeared: %s" % (
            path, proc.stdout.read()[-2000:])
        assert time.time() < end, "timed out waiting for %s" % path
        time.sleep(0.02)


def _markers(save_dir):
    out = {}
    for name in os.listdir(str(save_dir)):
        if re.match(re.escape(MODEL) + r"-(\d{4}|interrupted)\.json$", name):
            with open(os.path.join(str(save_dir), name)) as f:
                out[name] = json.load(f)
    return out


def _rows(save_dir):
    import csv
    with open(os.path.join(str(save_dir), "metrics.csv")) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


# --- two trainings into one --save-dir --------------------------------------------------

@pytest.mark.slow
def test_second_training_into_the_same_folder_is_refused_naming_the_pid(digits, tmp_path):
    save_dir = tmp_path / "run"
    # long enough (4 x 44 batches) that the second job starts while the first trains
    first = subprocess.Popen(_args(digits, save_dir, "--num-epochs", "4", "--lr", "0.1"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(str(save_dir / "train.log"), first)
    second = _run(digits, save_dir, "--num-epochs", "1", "--lr", "0.05", "--overwrite")
    line = _error_line(second)
    assert "run folder %s is in use by another job (PID %d" % (save_dir, first.pid) in line
    assert first.wait(timeout=300) == 0, first.stdout.read()[-3000:]
    # Everything in the folder is the first run's: its lr, its three epochs, and the
    # checkpoints' markers agree with its metrics.
    with open(str(save_dir / "config.yaml")) as f:
        assert "\nlr: 0.1\n" in f.read()
    rows = _rows(save_dir)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    markers = _markers(save_dir)
    assert markers, os.listdir(str(save_dir))
    for meta in markers.values():
        assert meta["val_top1"] == rows[meta["epoch"] - 1]["val_top1"]
        assert meta["num_update"] == 44 * meta["epoch"]
    # The lock dies with its holder: the folder is free again.
    assert _run(digits, save_dir, "--num-epochs", "5", "--batches-per-epoch", "2",
                "--resume").returncode == 0


@pytest.mark.slow
def test_stale_temp_files_of_dead_runs_are_removed_at_start(digits, tmp_path):
    save_dir = tmp_path / "run"
    save_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = save_dir / ("%s-0001.params.tmp-%d" % (MODEL, dead.pid))
    alive = save_dir / ("%s-0001.states.tmp-%d" % (MODEL, os.getpid()))
    for path in (stale, alive):
        path.write_bytes(b"x" * 1000)
    res = _run(digits, save_dir, "--num-epochs", "1", "--batches-per-epoch", "2")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert not stale.exists() and "removed %s" % stale in res.stdout
    assert alive.exists()  # its writer (this process) is alive: not touched


# --- item 8: disk full while saving a checkpoint ----------------------------------------

def test_atomic_write_on_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "m-0001.params")
    with open(path, "w") as f:
        f.write("old")

    def full(tmp):
        with open(tmp, "w") as f:
            f.write("partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(UserError, match=r"the disk holding %s is full \(about 2\.0 KB needed"
                       % tmp_path):
        fs_mod.atomic_write(path, full, size_hint=2048)
    assert open(path).read() == "old" and os.listdir(str(tmp_path)) == ["m-0001.params"]


class _Net(object):
    def __init__(self, fail):
        self.fail = fail

    def save_parameters(self, path):
        with open(path, "w") as f:
            f.write("new params")
        if self.fail:  # what MXNet's C++ writer raises on a full disk
            import mxnet as mx
            raise mx.base.MXNetError("[12:00:00] src/io/local_filesys.cc:38: Check failed: "
                                     "nwrite == size (1000 vs. 2000) : FileStream.Write "
                                     "incomplete")

    def collect_params(self):
        return {}


class _Trainer(object):
    def write_states(self, path):
        with open(path, "w") as f:
            f.write("new states")


def _save_states(trainer, path, write):  # states.save_states' contract, without an optimizer
    write(path, trainer.write_states)
    return {"format": "test"}


def test_checkpoint_save_on_a_full_disk_keeps_the_same_tags_old_checkpoint(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setattr(states, "save_states", _save_states)
    ckpt = checkpoints.CheckpointDir(str(tmp_path), "m")
    ckpt.save("interrupted", _Net(False), _Trainer(), {"epoch": 1})
    before = {n: open(os.path.join(str(tmp_path), n)).read() for n in os.listdir(str(tmp_path))}
    with pytest.raises(UserError, match="the disk holding .* is full"):
        ckpt.save("interrupted", _Net(True), _Trainer(), {"epoch": 2})
    after = {n: open(os.path.join(str(tmp_path), n)).read() for n in os.listdir(str(tmp_path))}
    assert after == before and ckpt.interrupted()["epoch"] == 1


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (root only; skipped where mounting is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3000k", "tmpfs", str(mount)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (%s); the injected ENOSPC tests above cover "
                    "the same code" % res.stderr.strip())
    yield mount
    subprocess.run(["umount", str(mount)])


@pytest.mark.slow
def test_training_on_a_full_disk_stops_with_one_line_and_keeps_the_last_checkpoint(
        digits, small_disk):
    # Width 0.25 on 10 classes: params + states are about 2.1 MB an epoch, so epoch 1 fits
    # in 3 MB and epoch 2 does not.
    save_dir = small_disk / "run"
    res = _run(digits, save_dir, "--num-epochs", "3", "--batches-per-epoch", "5")
    line = _error_line(res)
    assert "the disk holding %s is full (about 2.0 MB needed" % save_dir in line, line
    assert "Traceback" not in res.stdout + res.stderr
    names = sorted(os.listdir(str(save_dir)))
    assert not [n for n in names if ".tmp-" in n], names
    assert list(_markers(save_dir)) == ["%s-0001.json" % MODEL]
    meta = _markers(save_dir)["%s-0001.json" % MODEL]
    assert meta["num_update"] == 5
    shutil.copytree(str(save_dir), str(small_disk.parent / "moved"))
    # The kept checkpoint is whole: another disk resumes from it.
    res = _run(digits, small_disk.parent / "moved", "--num-epochs", "2",
               "--batches-per-epoch", "5", "--resume")
    assert res.returncode == 0 and "resumed from" in res.stdout, res.stderr[-2000:]


# --- item 9: SIGTERM --------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_mid_epoch_saves_and_resume_alone_continues(digits, tmp_path):
    save_dir = tmp_path / "run"
    proc = subprocess.Popen(_args(digits, save_dir, "--num-epochs", "2", "--log-interval",
                                  "1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    seen = []
    for line in proc.stdout:  # a few batches into the first epoch, then SIGTERM
        seen.append(line)
        if "Epoch[1] Batch [3/44]" in line:
            break
    assert proc.poll() is None, "".join(seen)[-3000:]
    proc.send_signal(signal.SIGTERM)
    out = "".join(seen) + proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out[-3000:]
    assert "SIGTERM: finishing this batch" in out and "stopped by Ctrl-C or SIGTERM" in out
    stopped = _markers(save_dir)["%s-interrupted.json" % MODEL]
    assert stopped["epoch"] == 0 and 3 <= stopped["batches_done"] < 44
    assert stopped["num_update"] == stopped["batches_done"]
    # --save-dir and --resume alone: the run's config.yaml says the recipe and data.
    res = subprocess.run([sys.executable, TRAIN, "--save-dir", str(save_dir), "--resume"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "resumed from" in res.stdout and "recipe %s" % (save_dir / "config.yaml") in res.stdout
    assert [r["epoch"] for r in _rows(save_dir)] == [1, 2]
    assert _markers(save_dir)["%s-0002.json" % MODEL]["num_update"] == 2 * 44


# --- values that must be refused --------------------------------------------------------

@pytest.mark.parametrize("recipe_line,flags,message", [
    ("lr: .inf", [], "lr must be a float (finite"),
    ("", ["--lr", "inf"], "lr must be a float (finite"),
    ("", ["--lr", "nan"], "lr must be a float (finite"),
    ("wd: -1", [], "wd must be 0 or more, got -1.0"),
    ("momentum: .nan", [], "momentum must be a float (finite"),
    ("mean_rgb: [123.7, .nan, 103.9]", [], "mean_rgb must be a list of float (finite"),
    ("", ["--batches-per-epoch", "-3"], "batches_per_epoch must be 0 or more, got -3"),
    ("", ["--keep-checkpoints", "-1"], "keep_checkpoints must be 0 or more, got -1"),
    ("lr_decay_epochs: [a, b]", [], "lr_decay_epochs must be a list of int (finite"),
])
def test_bad_values_are_refused_before_any_work(capsys, tmp_path, recipe_line, flags, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("base: %s\n%s\n" % (DEMO_RECIPE, recipe_line))
    save_dir = tmp_path / "run"
    code, out, err = call_tool(capsys, "train_imagenet", "--recipe", str(recipe),
                               "--save-dir", str(save_dir), "--rec-train", "nope.rec", *flags)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not save_dir.exists()


# --- your own dataset ---------------------------------------------------------------------

def _recipe_without_classes(tmp_path):
    """demo.yaml's settings but no ``classes:`` line, like the shipped ImageNet recipes."""
    path = tmp_path / "mine.yaml"
    path.write_text("base: imagenet.yaml\nmodel: %s\nmultiplier: 0.25\ninput_size: 32\n"
                    "batch_size: 16\nrand_mirror: false\nlr: 0.1\nnum_epochs: 1\n"
                    "keep_checkpoints: 1\n" % MODEL)
    return str(path)


@pytest.mark.slow
def test_classes_come_from_the_synsets_when_not_given(three, tmp_path):
    save_dir = tmp_path / "run"
    res = _run(three, save_dir, recipe=_recipe_without_classes(tmp_path))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "  classes              3\n" in res.stdout  # the printed config is the trained one
    from mobilenet_skip.deploy.loading import open_export
    exported = open_export(str(save_dir / MODEL))
    assert exported.classes == 3 and exported.synsets == ["digit_0", "digit_1", "digit_2"]
    assert ("train.rec: 430 images, 26 batches of 16 per epoch: 14 images left out each "
            "epoch, a different 14 each epoch (shuffled)") in res.stdout


@pytest.mark.parametrize("flags,recipe,message", [
    (["--classes", "2"], None, "--classes 2, but %s lists 3 classes; pass --classes 3"),
    ([], DEMO_RECIPE, "classes: 10 in %s, but %%s lists 3 classes" % DEMO_RECIPE),
])
@pytest.mark.slow
def test_a_stated_class_count_that_disagrees_with_the_data_is_refused(three, tmp_path, flags,
                                                                      recipe, message):
    recipe = recipe or _recipe_without_classes(tmp_path)
    res = _run(three, tmp_path / "run", *flags, recipe=recipe)
    synsets = three["train"][:-len(".rec")] + ".synsets.txt"
    assert message % synsets in _error_line(res)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad", [-1, 50])
@pytest.mark.slow
def test_labels_outside_the_classes_are_refused_not_trained_on(images, digits, tmp_path, bad):
    """A .rec packed from a .lst with one bad label (the 8th of 1,438) and no synsets."""
    with open(digits["train"][:-len(".rec")] + ".lst") as f:
        lines = f.read().splitlines()
    idx, _, path = lines[7].split("\t")
    lines[7] = "\t".join([idx, "%f" % bad, path])
    prefix = str(tmp_path / "bad")
    with open(prefix + ".lst", "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.devnull, "w") as quiet:
        pack(prefix, os.path.join(images, "train"), num_thread=2, stream=quiet, out=quiet)
    save_dir = tmp_path / "run"
    res = _run({"train": prefix + ".rec", "val": digits["val"]}, save_dir, "--num-epochs",
               "1", "--no-shuffle")
    line = _error_line(res)
    assert "%s.rec holds label %g (batch 1 of this pass), but the network has 10 classes" % (
        prefix, bad) in line, line
    assert not _markers(save_dir)  # nothing trained or saved
    assert "Epoch[1] Batch" not in res.stdout


@pytest.mark.slow
def test_val_missing_a_class_is_refused_naming_it(images, three, tmp_path):
    val = tmp_path / "images"
    for name in ("digit_0", "digit_2"):
        shutil.copytree(os.path.join(images, "val", name), str(val / name))
    rec = _pack(str(tmp_path / "val"), str(val))
    res = _run({"train": three["train"], "val": rec}, tmp_path / "run", "--classes", "3")
    line = _error_line(res)
    assert "name different classes (3 and 2): class 1 is 'digit_1' in train but 'digit_2' " \
           "in val" in line, line


@pytest.mark.slow
def test_a_train_set_smaller_than_one_batch_is_refused(three, tmp_path):
    res = _run(three, tmp_path / "run", "--classes", "3", "--batch-size", "500")
    assert ("has 430 images, fewer than one batch of 500 (--batch-size 500 x 1 device(s))"
            in _error_line(res))


@pytest.mark.slow
def test_dropped_images_are_counted(digits, tmp_path):
    res = _run(digits, tmp_path / "run", "--num-epochs", "1", "--print-config")
    assert res.returncode == 0
    from mobilenet_skip.data.checks import describe_dropped
    assert describe_dropped("t.rec", 1438, 32, 44, True) == (
        "t.rec: 1438 images, 44 batches of 32 per epoch: 30 images left out each epoch, a "
        "different 30 each epoch (shuffled)")
    assert "the same 30 every epoch" in describe_dropped("t.rec", 1438, 32, 44, False)
    assert describe_dropped("t.rec", 1408, 32, 44, True) is None
    res = _run(digits, tmp_path / "run", "--num-epochs", "1", "--batches-per-epoch", "2")
    assert "capped to 2 by --batches-per-epoch" in res.stdout


# --- flags ------------------------------------------------------------------------------

def _parser():
    import argparse
    from mobilenet_skip.config import flags
    return flags.add_flags(argparse.ArgumentParser(allow_abbrev=False))


@pytest.mark.parametrize("argv,expected", [
    (["--rand-mirror"], {"rand_mirror": True}),
    (["--no-rand-mirror"], {"rand_mirror": False}),
    (["--rand-mirror", "false"], {"rand_mirror": False}),  # a value after the flag too
    (["--hybridize", "--no-shuffle"], {"hybridize": True, "shuffle": False}),
    (["--no-wd"], {"no_wd_dw_bn": True}),
    (["--wd-dw-bn"], {"no_wd_dw_bn": False}),
    (["--label-smoothing"], {"label_smoothing": 0.1}),  # gluoncv's switch
    (["--label-smoothing", "0.2"], {"label_smoothing": 0.2}),
    (["--lr-decay-epoch", "40,60"], {"lr_decay_epochs": [40, 60]}),
    (["--num-gpus", "2"], {"gpus": "0,1"}),
    (["--num-gpus", "0"], {"gpus": ""}),
])
def test_switches_and_gluoncv_names(argv, expected):
    from mobilenet_skip.config import flags
    assert flags.flag_overrides(_parser().parse_args(argv)) == expected


def test_flag_mistakes_are_clear(capsys):
    from mobilenet_skip.config import flags
    with pytest.raises(SystemExit):
        _parser().parse_args(["--no-rand-mirror", "true"])
    assert "--no-rand-mirror takes no value" in capsys.readouterr().err
    with pytest.raises(UserError, match="--num-gpus 2 and --gpus 0 both name the GPUs"):
        flags.flag_overrides(_parser().parse_args(["--num-gpus", "2", "--gpus", "0"]))
    text = " ".join(_parser().format_help().split())
    for said in ("--rand-mirror [BOOL], --no-rand-mirror", "--no-wd [BOOL], --wd-dw-bn", "ours BatchNorm and depthwise "
                 "filters", "a bare --label-smoothing means 0.1", "--num-gpus N",
                 "gluoncv's --lr-decay-epoch is the same list"):
        assert said in text, said


@pytest.mark.parametrize("tool,argv,dest", [
    ("eval_imagenet", ["--prefix", "p", "--rec-val", "v.rec"], "data_threads"),
    ("benchmark", ["data"], "workers"),
])
def test_one_name_for_decode_threads(tool, argv, dest):
    """--preprocess-threads, as in train_imagenet.py, sets the decode threads of eval and
    of the data benchmark."""
    assert getattr(tool_module(tool).parse_args(argv + ["--preprocess-threads", "3"]),
                   dest) == 3


def test_a_full_disk_anywhere_in_a_tool_is_one_line(capsys):
    from mobilenet_skip.cli import run_main

    def main(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/some/where/file.bin")
    with pytest.raises(SystemExit) as exit_:
        run_main(main, [])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: the disk holding /some/where is "
                                                    "full") and err.count("\n") == 1, err


# --- markers that say what they are ----------------------------------------------------------

def _run_copy(demo_run, tmp_path, edit=None):
    """A copy of the trained demo run whose last epoch's marker ``edit(meta)`` changed."""
    from conftest import DEMO_EPOCHS
    run = str(tmp_path / "run")
    shutil.copytree(demo_run.save_dir, run)
    marker = os.path.join(run, "%s-%04d.json" % (demo_run.model, DEMO_EPOCHS))
    if edit:
        with open(marker) as f:
            meta = json.load(f)
        edit(meta)
        with open(marker, "w") as f:
            json.dump(meta, f)
    return run, marker


def _resume(demo_run, run):
    from conftest import DEMO_EPOCHS
    return subprocess.run([sys.executable, TRAIN, "--recipe", DEMO_RECIPE, "--rec-train",
                           demo_run.train_rec, "--rec-val", demo_run.val_rec, "--save-dir", run,
                           "--resume", "--num-epochs", str(DEMO_EPOCHS + 1)],
                          capture_output=True, text=True, timeout=600)


def test_a_sidecar_over_a_marker_is_named_on_resume(demo_run, tmp_path):
    """An export's sidecar where a checkpoint's marker belongs (export_model.py --output
    RUN/<model>-0005 would put it there) is named by its kind on --resume, in one line."""
    run, marker = _run_copy(demo_run, tmp_path)
    shutil.copy(demo_run.prefix + ".json", marker)
    res = _resume(demo_run, run)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert res.stderr.splitlines()[-1] == (
        "error: %s is not a checkpoint marker but an export's sidecar (kind fp32); move it out "
        "of %s (restore the marker from a backup, or start again with --overwrite)"
        % (marker, run))


@pytest.mark.parametrize("where", ["marker", "optimizer_state"])
def test_a_newer_format_is_named_as_newer_not_old_and_pickled(demo_run, tmp_path, where):
    """A marker (or its state description) of a newer format is named as newer, neither
    taken for the pickled optimizer state nor read as if it were this format."""
    def newer(meta):
        (meta if where == "marker" else meta["optimizer_state"])["format"] = 2
    run, marker = _run_copy(demo_run, tmp_path, newer)
    res = _resume(demo_run, run)
    named = marker if where == "marker" else marker[:-len(".json")] + ".states"
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert res.stderr.splitlines()[-1] == ("error: %s was written by a newer mobilenet-skip "
                                           "(format 2); upgrade mobilenet-skip to read it"
                                           % named)


def test_markers_carry_their_kind_and_old_ones_still_load(demo_run, tmp_path):
    run, marker = _run_copy(demo_run, tmp_path)
    with open(marker) as f:
        meta = json.load(f)
    assert meta["kind"] == "checkpoint" and meta["format"] == checkpoints.MARKER_FORMAT

    def old(meta):  # a marker without kind and format
        del meta["kind"], meta["format"]
    run, marker = _run_copy(demo_run, tmp_path / "old", old)
    newest = checkpoints.CheckpointDir(run, demo_run.model).newest()
    assert newest["epoch"] == meta["epoch"] and "kind" not in newest
    with open(marker, "w") as f:
        f.write('{"note": "someone else\'s"}')
    with pytest.raises(UserError, match=r"is not a checkpoint marker but JSON without "
                                        r"\"kind\": \"checkpoint\""):
        checkpoints.CheckpointDir(run, demo_run.model).newest()
