"""Exact resume that honours new settings: the lr as a function of epochs, scaled to the
global batch; optimizer state without pickle; per-epoch data order; TF's RMSProp."""
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from mobilenet_skip.config import recipes as config
from mobilenet_skip.runs import states
from mobilenet_skip.train import net as train_net, resume
from mobilenet_skip.optim import rules as optim
from mobilenet_skip.runs.checkpoints import CheckpointDir
from mobilenet_skip.errors import UserError

from conftest import (DEMO_RECIPE, ROOT, TOOL_TIMEOUT, TRAIN, checksums, read_metrics, train_args,
                      train_digits)

IMAGENET_RECIPE = os.path.join(ROOT, "recipes", "imagenet.yaml")
MODEL = "full-connect-pre-act"
# width 0.25, 32 px digits, 20 batches of 32 an epoch, 3 epochs: a few seconds a run
SHORT = ["--multiplier", "0.25", "--log-interval", "5", "--batches-per-epoch", "20"]
EXACT_COLUMNS = ("epoch", "train_loss", "train_top1", "val_top1", "val_top5", "lr")


def _args(digits, save_dir, *extra):
    return train_args(digits, save_dir, SHORT, *extra)


def _train(digits, save_dir, *extra, check=True):
    return train_digits(digits, save_dir, SHORT, *extra, check=check)


def _checksum(out):
    sums = checksums(out)
    assert list(sums) == [0], out[-2000:]
    return sums[0]


def _params(save_dir, epoch):
    return mx.nd.load(CheckpointDir(str(save_dir), MODEL).path(epoch, "params"))


@pytest.fixture(scope="module")
def uninterrupted(digits, tmp_path_factory):
    """The yardstick: 3 epochs in one go."""
    save_dir = tmp_path_factory.mktemp("uninterrupted")
    res = _train(digits, save_dir, "--num-epochs", "3")
    return {"dir": save_dir, "sum": _checksum(res.stdout), "rows": read_metrics(save_dir)}


def _signal_mid_epoch(digits, save_dir, sig):
    """Start the 3-epoch run and send ``sig`` once epoch 2 has logged 5 of its 20 batches."""
    proc = subprocess.Popen(_args(digits, save_dir, "--num-epochs", "3"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    deadline = time.time() + 240
    for line in proc.stdout:
        seen.append(line)
        if "Epoch[2] Batch [5/20]" in line:
            proc.send_signal(sig)
            break
        assert time.time() < deadline, "".join(seen[-20:])
    out, _ = proc.communicate(timeout=240)
    return proc.returncode, "".join(seen) + out


def _assert_same_run(save_dir, out, reference):
    assert _checksum(out) == reference["sum"]
    ours, ref = _params(save_dir, 3), _params(reference["dir"], 3)
    assert sorted(ours) == sorted(ref)
    for name in ref:  # BN running statistics included
        assert np.array_equal(ours[name].asnumpy(), ref[name].asnumpy()), name
    rows = read_metrics(save_dir)
    assert len(rows) == 3
    for got, want in zip(rows, reference["rows"]):
        assert {k: got[k] for k in EXACT_COLUMNS} == {k: want[k] for k in EXACT_COLUMNS}


def test_sigkill_mid_epoch_then_resume_equals_the_uninterrupted_run(digits, tmp_path,
                                                                    uninterrupted):
    save_dir = tmp_path / "killed"
    code, out = _signal_mid_epoch(digits, save_dir, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert CheckpointDir(str(save_dir), MODEL).newest()["epoch"] == 1
    res = _train(digits, save_dir, "--num-epochs", "3", "--resume")
    assert "resumed from" in res.stdout
    _assert_same_run(save_dir, res.stdout, uninterrupted)


def test_ctrl_c_mid_epoch_then_resume_equals_the_uninterrupted_run(digits, tmp_path,
                                                                   uninterrupted):
    save_dir = tmp_path / "interrupted"
    code, out = _signal_mid_epoch(digits, save_dir, signal.SIGINT)
    assert code == 0, out[-2000:]
    stopped = CheckpointDir(str(save_dir), MODEL).interrupted()
    assert stopped is not None and 5 <= stopped["batches_done"] < 20, stopped
    assert stopped["epoch_sums"]["count"] == 32 * stopped["batches_done"]
    res = _train(digits, save_dir, "--num-epochs", "3", "--resume")
    assert "batches into epoch 2" in res.stdout
    # the split epoch's row covers all 20 batches, not only those after the resume
    _assert_same_run(save_dir, res.stdout, uninterrupted)


def test_resume_with_other_devices_and_batch_keeps_the_lr_of_every_epoch(digits, tmp_path):
    save_dir = tmp_path / "devices"
    _train(digits, save_dir, "--num-epochs", "2", "--lr-decay-period", "2")
    # 2 contexts x 8 = a global batch of 16 (half of 32), 80 batches an epoch, 5 epochs
    res = _train(digits, save_dir, "--num-epochs", "5", "--lr-decay-period", "2", "--resume",
                 "--cpu-contexts", "2", "--batch-size", "8", "--batches-per-epoch", "80")
    assert "batch_size 32 -> 8" in res.stdout and "cpu_contexts 1 -> 2" in res.stdout
    assert "num_epochs 2 -> 5" in res.stdout and "global batch 32 -> 16" in res.stdout
    rows = read_metrics(save_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    cfg = config.resolve(DEMO_RECIPE, dict(lr_decay_period=2, num_epochs=5))
    before, after = optim.schedule(cfg, 32), optim.schedule(cfg, 16)
    # the lr column is the rate of the epoch's last step: lr(e + (n - 1) / n)
    assert [r["lr"] for r in rows[:2]] == [before(0 + 19 / 20.), before(1 + 19 / 20.)]
    assert [r["lr"] for r in rows[2:]] == [after(e + 79 / 80.) for e in (2, 3, 4)]
    # demo recipe: 0.1 for a global batch of 32, x0.94 every 2 epochs; here halved
    assert [r["lr"] for r in rows] == pytest.approx(
        [0.1, 0.1, 0.05 * 0.94, 0.05 * 0.94, 0.05 * 0.94 ** 2], rel=1e-12)
    meta = CheckpointDir(str(save_dir), MODEL).epochs()[-1]
    assert meta["num_update"] == 2 * 20 + 3 * 80 and meta["global_batch"] == 16


def test_resume_with_a_lower_lr_trains_at_it(digits, tmp_path):
    save_dir = tmp_path / "lower"
    _train(digits, save_dir, "--num-epochs", "1")
    res = _train(digits, save_dir, "--num-epochs", "3", "--resume", "--lr", "0.001",
                 "--momentum", "0.5")
    assert "using the new settings:" in res.stdout
    assert "lr 0.1 -> 0.001" in res.stdout and "momentum 0.9 -> 0.5" in res.stdout
    rows = read_metrics(save_dir)
    assert rows[0]["lr"] == 0.1
    assert [r["lr"] for r in rows[1:]] == pytest.approx([0.001 * 0.94, 0.001 * 0.94 ** 2])


def test_after_a_nan_stop_resume_with_a_lower_lr_recovers(digits, tmp_path):
    """The NaN message's own advice works: --resume --lr <lower> trains at the lower lr
    from the intact checkpoint, not the lr stored with the optimizer state."""
    save_dir = tmp_path / "nan"
    _train(digits, save_dir, "--num-epochs", "1")
    res = _train(digits, save_dir, "--num-epochs", "2", "--resume", "--lr", "1e30",
                 "--clip-gradient", "0", check=False)
    assert res.returncode == 3 and "NaN/inf at epoch 2" in res.stderr, res.stderr[-1500:]
    res = _train(digits, save_dir, "--num-epochs", "2", "--resume", "--lr", "0.01")
    rows = read_metrics(save_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert rows[1]["lr"] == pytest.approx(0.01 * 0.94) and np.isfinite(rows[1]["train_loss"])
    assert "lr 1e+30 -> 0.01" in res.stdout


class _Hostile(object):
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch %s" % self.marker,))


@pytest.mark.parametrize("keep_marker", [True, False])
def test_a_pickled_states_file_is_refused_and_never_run(digits, tmp_path, keep_marker):
    save_dir = tmp_path / "hostile"
    _train(digits, save_dir, "--num-epochs", "1")
    ckpt = CheckpointDir(str(save_dir), MODEL)
    marker = tmp_path / "pwned"
    with open(ckpt.path(1, "states"), "wb") as f:
        pickle.dump(_Hostile(str(marker)), f)
    if not keep_marker:  # a marker without a state description
        meta = json.load(open(ckpt.path(1, "json")))
        del meta["optimizer_state"]
        json.dump(meta, open(ckpt.path(1, "json"), "w"))
    res = _train(digits, save_dir, "--num-epochs", "2", "--resume", check=False)
    assert res.returncode == 2, res.stdout[-1500:] + res.stderr[-1500:]
    assert not marker.exists()
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert "data, not code" in res.stderr and "--overwrite" in res.stderr
    assert ("not an MXNet NDArray file" if keep_marker else "old pickled format") in res.stderr


def test_a_pickled_states_file_is_never_unpickled_in_process(tmp_path, monkeypatch):
    """load_states goes through mx.nd.load only: pickle.loads is never reached."""
    cfg = config.resolve(DEMO_RECIPE, dict(multiplier=0.25))
    net = train_net.build_net(cfg, [mx.cpu()])
    trainer = optim.make_trainer(net, cfg, None, 32)
    path = str(tmp_path / "x.states")
    with open(path, "wb") as f:
        pickle.dump(_Hostile(str(tmp_path / "pwned")), f)

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle.loads called")
    monkeypatch.setattr(pickle, "loads", forbidden)
    with pytest.raises(UserError, match="not an MXNet NDArray file"):
        states.load_states(trainer, path, {"format": states.STATE_FORMAT, "optimizer": "sgd",
                                          "layout": {}})
    assert not (tmp_path / "pwned").exists()


def test_resume_with_another_optimizer_is_refused(digits, tmp_path):
    save_dir = tmp_path / "opt"
    _train(digits, save_dir, "--num-epochs", "1")
    before = sorted(os.listdir(str(save_dir)))
    res = _train(digits, save_dir, "--num-epochs", "2", "--resume", "--optimizer", "rmsprop",
                 check=False)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "optimizer" in res.stderr and "sgd, not" in res.stderr and "--optimizer sgd" in \
        res.stderr and "Traceback" not in res.stderr
    assert sorted(os.listdir(str(save_dir))) == before


# ---- resume at the edges: another batch, fewer epochs, another cwd, warm start

def _files(save_dir):
    """Every file of a run folder but its log and lock, with its bytes."""
    return {name: open(os.path.join(str(save_dir), name), "rb").read()
            for name in sorted(os.listdir(str(save_dir)))
            if name != "train.log" and not name.startswith(".")}


def _refused(res):
    assert res.returncode == 2, res.stdout[-1500:] + res.stderr[-1500:]
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    return res.stderr


def test_mid_epoch_resume_on_two_devices_trains_exactly_the_images_not_seen(digits, tmp_path):
    """Stopped k batches of 32 into epoch 2 on one device, resumed on 2 devices x 8: the
    epoch goes on after its 32k images, as a checkpoint that had stopped after 2k batches
    of 16 does (the reference: the same files, its marker saying so), rather than skipping
    k batches of 16 and training 16k images of epoch 2 twice."""
    stopped = tmp_path / "stopped"
    code, out = _signal_mid_epoch(digits, stopped, signal.SIGTERM)
    assert code == 0, out[-2000:]
    meta = CheckpointDir(str(stopped), MODEL).interrupted()
    k = meta["batches_done"]
    before = _files(stopped)
    # 2 x 43 = 86 does not divide 32k for any k < 43: refused, nothing changed
    err = _refused(_train(digits, stopped, "--num-epochs", "3", "--resume", "--cpu-contexts",
                          "2", "--batch-size", "43", check=False))
    assert "stopped after %d images of epoch 2" % (32 * k) in err and "--num-epochs 2" in err
    assert _files(stopped) == before

    reference = tmp_path / "reference"
    shutil.copytree(str(stopped), str(reference))
    marker = CheckpointDir(str(reference), MODEL).path("interrupted", "json")
    with open(marker) as f:
        ref_meta = json.load(f)
    ref_meta.update(batches_done=2 * k, global_batch=16)
    with open(marker, "w") as f:
        json.dump(ref_meta, f)
    # 2 contexts x 8 = 16 a step, 40 steps: the same 640 images an epoch as 20 x 32
    new = ("--num-epochs", "3", "--resume", "--cpu-contexts", "2", "--batch-size", "8",
           "--batches-per-epoch", "40")
    res = _train(digits, stopped, *new)
    ref = _train(digits, reference, *new)
    assert "%d batches into epoch 2" % (2 * k) in res.stdout
    assert _checksum(res.stdout) == _checksum(ref.stdout)
    rows, ref_rows = read_metrics(stopped), read_metrics(reference)
    assert [r["train_images"] for r in rows] == [640.0] * 3
    assert rows[1]["train_top1"] == ref_rows[1]["train_top1"]


def test_a_split_epoch_refuses_another_worker_count():
    """1 worker x 64 -> 2 workers x 32: the same global batch, other shards."""
    start = {"epoch": 1, "batches_done": 6, "global_batch": 64, "epoch_sums": {"count": 384}}
    with pytest.raises(UserError, match="on 1 worker.*resume on 1 worker.*--num-epochs 2"):
        resume._position(start, 64, 32, "run/x-interrupted.params")
    assert resume._position(start, 64, 64, "p") == 6
    assert resume._position(start, 96, 96, "p") == 4  # 384 images = 4 batches of 96
    assert resume._position(dict(start, batches_done=0), 32, 32, "p") == 0


def test_resume_with_fewer_epochs_than_trained_is_refused_and_changes_nothing(digits,
                                                                              tmp_path):
    save_dir = tmp_path / "fewer"
    _train(digits, save_dir, "--num-epochs", "2")
    before = _files(save_dir)
    err = _refused(_train(digits, save_dir, "--num-epochs", "1", "--resume", check=False))
    assert "holds epoch 2, past --num-epochs 1" in err and "--num-epochs 2 or more" in err
    assert _files(save_dir) == before  # config.yaml, metrics.csv, no export


def _copy_data(dest, digits, train):
    """``dest``/train.* (a copy of ``train``, with the digits' class names) and val.*."""
    os.makedirs(str(dest))
    for name, rec in (("train", train), ("val", digits["val"])):
        for ext in (".rec", ".idx"):
            shutil.copy(rec[:-4] + ext, os.path.join(str(dest), name + ext))
    shutil.copy(digits["train"][:-4] + ".synsets.txt", os.path.join(str(dest),
                                                                    "train.synsets.txt"))


def test_resume_from_another_directory_uses_the_run_s_own_data(digits, tmp_path):
    """config.yaml names its data by absolute paths; other data on resume is refused."""
    first, other, save_dir = tmp_path / "first", tmp_path / "other", tmp_path / "run"
    _copy_data(first / "data", digits, digits["train"])
    _copy_data(other / "data", digits, digits["val"])  # another training set

    def run(cwd, *extra):
        return subprocess.run([sys.executable, TRAIN, "--save-dir", str(save_dir)] + SHORT
                              + list(extra), cwd=str(cwd), capture_output=True, text=True,
                              timeout=TOOL_TIMEOUT)
    res = run(first, "--recipe", DEMO_RECIPE, "--rec-train", "data/train.rec", "--rec-val",
              "data/val.rec", "--num-epochs", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    res = run(other, "--resume", "--num-epochs", "2")  # settings from config.yaml
    assert res.returncode == 0, res.stderr[-2000:]
    saved = config.load_dumped(str(save_dir / "config.yaml"))
    assert saved["rec_train"] == str(first / "data" / "train.rec")
    assert "rec_train" not in res.stdout.split("using the new settings")[-1].split("\n")[0]
    assert CheckpointDir(str(save_dir), MODEL).epochs()[-1]["data"]["rec_train"][
        "records"] == 1438
    before = _files(save_dir)
    err = _refused(run(other, "--resume", "--num-epochs", "3", "--rec-train",
                       "data/train.rec"))
    assert "--rec-train %s is not the data" % (other / "data" / "train.rec") in err
    assert "1438 records" in err and "--save-dir" in err
    assert _files(save_dir) == before


def test_resume_ignores_a_new_warm_start_and_init(digits, tmp_path):
    """The checkpoint's weights replace any starting weights: the flags are logged as
    ignored (not "using the new settings", and the warm start is not loaded),
    config.yaml keeps the run's own, and training is the plain resume's."""
    save_dir, plain = tmp_path / "warm", tmp_path / "plain"
    _train(digits, save_dir, "--num-epochs", "1")
    shutil.copytree(str(save_dir), str(plain))
    res = _train(digits, save_dir, "--num-epochs", "2", "--resume", "--init", "xavier",
                 "--warm-start", str(tmp_path / "absent.params"))
    assert "ignored: warm_start  -> %s, init msra -> xavier" % (tmp_path / "absent.params") \
        in res.stdout
    ref = _train(digits, plain, "--num-epochs", "2", "--resume")
    assert _checksum(res.stdout) == _checksum(ref.stdout)
    saved = config.load_dumped(str(save_dir / "config.yaml"))
    assert (saved["warm_start"], saved["init"]) == ("", "msra")


# ---- units ---------------------------------------------------------------------------

def test_lr_follows_the_global_batch():
    cfg = config.resolve(IMAGENET_RECIPE, dict(model="mobilenet"))
    assert cfg["lr"] == 0.045 and cfg["lr_batch"] == 64
    # 1 GPU x 32, the paper's 2 x 32, 2 workers x 2 GPUs x 32
    assert optim.effective_lr(cfg, 32 * 1)[0] == pytest.approx(0.0225)
    assert optim.effective_lr(cfg, 32 * 2)[0] == pytest.approx(0.045)
    assert optim.effective_lr(cfg, 32 * 2 * 2)[0] == pytest.approx(0.09)
    # the four-host example of docs/workflow.md: 4 workers x 2 GPUs x 32 = 256
    assert optim.effective_lr(cfg, 256)[0] == pytest.approx(0.18)
    warm = cfg.replace(warmup_lr=0.01, warmup_epochs=5)
    assert optim.effective_lr(warm, 128) == pytest.approx((0.09, 0.02))
    assert optim.schedule(warm, 128)(0) == pytest.approx(0.02)
    assert optim.effective_lr(cfg.replace(lr_batch=0), 256)[0] == 0.045  # scaling off
    with pytest.raises(UserError, match="lr_batch"):
        optim.effective_lr(cfg.replace(lr_batch=-1), 32)
    demo = config.resolve(DEMO_RECIPE, {})
    assert optim.effective_lr(demo, 32)[0] == 0.1  # `make demo` trains at the lr it names


@pytest.mark.parametrize("mode,extra,expected", [
    ("exponential", {"lr_decay": 0.5, "lr_decay_period": 2}, [1, 1, .5, .5, .25, .25]),
    ("step", {"lr_decay": 0.1, "lr_decay_epochs": [4]}, [1, 1, 1, 1, .1, .1]),
    ("cosine", {}, None),
])
def test_lr_schedules_are_functions_of_epochs(mode, extra, expected):
    cfg = config.resolve(DEMO_RECIPE, dict(lr=1.0, lr_mode=mode, num_epochs=6, **extra))
    lr_at = optim.schedule(cfg)
    per_epoch = [lr_at(e) for e in range(6)]
    if expected:
        assert per_epoch == pytest.approx(expected)
        # constant within an epoch, whatever the batch count
        assert [lr_at(e + 0.999) for e in range(6)] == pytest.approx(expected)
    else:
        assert per_epoch[0] == 1.0 and all(a > b for a, b in zip(per_epoch, per_epoch[1:]))
        assert lr_at(3) == pytest.approx(0.5) and lr_at(6) == pytest.approx(0.0)


def test_warmup_ramps_linearly_in_epochs():
    cfg = config.resolve(DEMO_RECIPE, dict(lr=1.0, warmup_epochs=2, warmup_lr=0.0,
                                           num_epochs=6, lr_decay_period=1, lr_decay=0.5))
    lr_at = optim.schedule(cfg)
    assert lr_at(0) == 0.0 and lr_at(0.5) == pytest.approx(0.25)
    assert lr_at(1) == pytest.approx(0.5) and lr_at(2) == 1.0 and lr_at(3) == 0.5


def _rmsprop_reference(w, grads, lr, decay, momentum, eps, wd, rescale):
    ms, mom = np.ones_like(w), np.zeros_like(w)  # TF: rms slot of ones
    for g in grads:
        g = g * rescale + wd * w
        ms = decay * ms + (1 - decay) * g * g
        mom = momentum * mom + lr * g / np.sqrt(ms + eps)
        w = w - mom
    return w, ms, mom


def test_tf_rmsprop_matches_a_hand_computed_reference():
    rng = np.random.RandomState(0)
    w0 = rng.randn(3, 4).astype(np.float64)
    grads = [rng.randn(3, 4) * s for s in (1.0, 5.0, 0.2)]
    opt = mx.optimizer.create("tfrmsprop", learning_rate=0.045, decay=0.9, momentum=0.9,
                              epsilon=1.0, wd=4e-5, rescale_grad=0.5)
    assert isinstance(opt, optim.TFRMSProp)
    weight = mx.nd.array(w0, dtype="float64")
    state = opt.create_state(0, weight)
    for g in grads:
        opt.update(0, weight, mx.nd.array(g, dtype="float64"), state)
    w, ms, mom = _rmsprop_reference(w0, grads, 0.045, 0.9, 0.9, 1.0, 4e-5, 0.5)
    np.testing.assert_allclose(weight.asnumpy(), w, rtol=1e-12)
    np.testing.assert_allclose(state[0].asnumpy(), ms, rtol=1e-12)
    np.testing.assert_allclose(state[1].asnumpy(), mom, rtol=1e-12)
    # the step is not MXNet's RMSProp's (no momentum, zeros, epsilon outside the root)
    theirs = mx.nd.array(w0)
    ref_opt = mx.optimizer.RMSProp(learning_rate=0.045, gamma1=0.9, epsilon=1.0, wd=4e-5,
                                   rescale_grad=0.5)
    ref_state = ref_opt.create_state(0, theirs)
    for g in grads:
        ref_opt.update(0, theirs, mx.nd.array(g), ref_state)
    assert not np.allclose(theirs.asnumpy(), w, rtol=0.05)


def test_recipe_rmsprop_is_tf_rmsprop_with_the_recipe_values():
    cfg = config.resolve(IMAGENET_RECIPE, dict(model="mobilenet", optimizer="rmsprop"))
    opt = optim.create_optimizer(cfg, 64)
    assert isinstance(opt, optim.TFRMSProp)
    assert (opt.decay, opt.momentum, opt.epsilon, opt.lr) == (0.9, 0.9, 1.0, 0.045)


def _tiny_trainer(cfg, ctxs, dtype="float32"):
    net = mx.gluon.nn.Dense(3, in_units=4)
    net.initialize(mx.init.Normal(1.0), ctx=ctxs)
    if dtype != "float32":
        net.cast(dtype)
    return net, optim.make_trainer(net, cfg, None if len(ctxs) == 1 else "device", 2)


def _steps(net, trainer, ctxs, n, dtype="float32"):
    rng = np.random.RandomState(1)
    for _ in range(n):
        x = rng.randn(2 * len(ctxs), 4)
        xs = mx.gluon.utils.split_and_load(mx.nd.array(x, dtype=dtype), ctxs)
        with mx.autograd.record():
            losses = [(net(v) ** 2).sum() for v in xs]
        mx.autograd.backward(losses)
        trainer.step(2 * len(ctxs))


@pytest.mark.parametrize("optimizer", ["rmsprop", "sgd"])
def test_state_round_trip_continues_exactly(tmp_path, optimizer):
    """Three steps, save, restore into a fresh Trainer, three more: the same weights as
    six steps in one go."""
    from mobilenet_skip.utils.fs import atomic_write
    cfg = config.resolve(DEMO_RECIPE, dict(optimizer=optimizer, lr_batch=0))
    one = [mx.cpu(0)]
    net, trainer = _tiny_trainer(cfg, one)
    start = {k: v.data().copy() for k, v in net.collect_params().items()}
    _steps(net, trainer, one, 3)
    info = states.save_states(trainer, str(tmp_path / "s.states"), atomic_write)
    assert info["num_update"] == 3 and info["optimizer"] == optim.OPTIMIZERS[optimizer].mxnet_name
    json.dumps(info)
    saved = mx.nd.load(str(tmp_path / "s.states"))
    assert saved and all(isinstance(v, mx.nd.NDArray) for v in saved.values())
    mid = {k: v.data().copy() for k, v in net.collect_params().items()}
    _steps(net, trainer, one, 3)
    want = {k: v.data().asnumpy() for k, v in net.collect_params().items()}

    net2, trainer2 = _tiny_trainer(cfg, one)
    for k, p in net2.collect_params().items():
        p.set_data(mid[k.replace(net2.prefix, net.prefix)])
    assert states.load_states(trainer2, str(tmp_path / "s.states"), info) == []
    assert trainer2.optimizer.num_update == 3
    _steps(net2, trainer2, one, 3)
    got = {k.replace(net2.prefix, net.prefix): v.data().asnumpy()
           for k, v in net2.collect_params().items()}
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    assert not all(np.array_equal(start[k].asnumpy(), want[k]) for k in want)


def test_state_layout_with_float32_master_weights(tmp_path):
    """multi_precision keeps a float32 copy of float16 weights in the state: it is saved
    and restored like any other array."""
    from mobilenet_skip.utils.fs import atomic_write
    cfg = config.resolve(DEMO_RECIPE, dict(dtype="float16", lr_batch=0))
    net, trainer = _tiny_trainer(cfg, [mx.cpu()], "float16")
    weight = trainer._params[0].data()
    updater = trainer._updaters[0]
    updater.states[0] = trainer.optimizer.create_state_multi_precision(0, weight)
    updater.states[0][0][:] = 0.25  # momentum
    info = states.save_states(trainer, str(tmp_path / "s.states"), atomic_write)
    assert info["layout"]["0"] == ["s0.0", "s0.1"]
    arrays = mx.nd.load(str(tmp_path / "s.states"))
    assert arrays["s0.1"].dtype == np.float32 and arrays["s0.1"].shape == weight.shape
    np.testing.assert_array_equal(arrays["s0.1"].asnumpy(), weight.asnumpy().astype("float32"))
    net2, trainer2 = _tiny_trainer(cfg, [mx.cpu()], "float16")
    states.load_states(trainer2, str(tmp_path / "s.states"), info)
    restored = trainer2._updaters[0].states[0]
    assert (restored[0].asnumpy() == 0.25).all() and restored[1].dtype == np.float32


def test_data_order_is_a_function_of_seed_and_epoch(digits):
    from mobilenet_skip.data import records as data
    cfg = config.Recipe.from_values(dict(rec_train=digits["train"], input_size=32, batch_size=64,
                                         preprocess_threads=1))

    def labels(it, epoch):
        it.set_epoch(epoch)
        # the last batch's pad samples are filler, whatever the order
        return np.concatenate([b.label[0].asnumpy()[:64 - b.pad] for b in it])

    first, second = data.train_iter(cfg, seed=3), data.train_iter(cfg, seed=3)
    e0, e1 = labels(first, 0), labels(first, 1)
    assert not np.array_equal(e0, e1)  # a new order every epoch
    np.testing.assert_array_equal(labels(second, 1), e1)  # epoch 1 without epoch 0 first
    np.testing.assert_array_equal(labels(first, 0), e0)  # and replayable
    assert not np.array_equal(labels(data.train_iter(cfg, seed=3, part_index=0, num_parts=2),
                                     0)[:100],
                              labels(data.train_iter(cfg, seed=3, part_index=1, num_parts=2),
                                     0)[:100])
    assert data.epoch_seed(0, 1) != data.epoch_seed(1, 0) != data.epoch_seed(0, 0, 1)


def _md5(path):
    import hashlib
    with open(str(path), "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def test_sigterm_on_two_devices_then_resume_saves_the_same_bytes(digits, tmp_path):
    """Two CPU contexts, SIGTERM at batch 5 of epoch 1, resume: the last checkpoint's
    .params is byte for byte the unbroken run's, BN running statistics included, and so
    is the printed checksum, which covers them (before: 1.9e-6 apart, a different MD5,
    and a checksum that left them out)."""
    two = ("--cpu-contexts", "2", "--batch-size", "16", "--num-epochs", "2")
    ref_dir, save_dir = tmp_path / "unbroken", tmp_path / "stopped"
    ref = _train(digits, ref_dir, *two)
    proc = subprocess.Popen(_args(digits, save_dir, *two), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "Epoch[1] Batch [5/20]" in line:
            proc.send_signal(signal.SIGTERM)
            break
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, "".join(seen) + out
    stopped = CheckpointDir(str(save_dir), MODEL).interrupted()
    assert stopped is not None and 5 <= stopped["batches_done"] < 20, stopped
    res = _train(digits, save_dir, "--num-epochs", "2", "--cpu-contexts", "2",
                 "--batch-size", "16", "--resume")
    assert "batches into epoch 1" in res.stdout
    ckpt, ref_ckpt = CheckpointDir(str(save_dir), MODEL), CheckpointDir(str(ref_dir), MODEL)
    assert _md5(ckpt.path(2, "params")) == _md5(ref_ckpt.path(2, "params"))
    assert _checksum(res.stdout) == _checksum(ref.stdout)
    # the checksum covers the running statistics: it moves when one of them does
    net = train_net.build_net(config.resolve(DEMO_RECIPE, {"multiplier": 0.25}).replace(
                                   classes=10), [mx.cpu(0)])
    net.load_parameters(ckpt.path(2, "params"))
    before = train_net.params_checksum(net)
    stat = [p for p in net.collect_params().values() if p.grad_req == "null"][0]
    stat.set_data(stat.data() + 1e-6)
    assert train_net.params_checksum(net) != before
