"""The training job end to end on the demo digits: learning, devices, resume, failures."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from mobilenet_skip.config import recipes as config, flags
from mobilenet_skip.train import devices, guard, loop
from mobilenet_skip.optim import rules as optim
from mobilenet_skip.train import net as train_net, step as train_step
from mobilenet_skip.runs.checkpoints import CheckpointDir
from mobilenet_skip.errors import UserError
from mobilenet_skip.deploy.source import network_from_checkpoint

import pictures
from conftest import (DEMO_RECIPE, TOOLS, TRAIN, checksums, read_metrics, train_args,
                      train_digits)

# Small and fast: 1,438 digits at 32 px, 44 batches an epoch.
FAST = ["--multiplier", "0.25", "--log-interval", "10"]



def _train_args(digits, save_dir, *extra):
    return train_args(digits, save_dir, FAST, *extra)


def _train(digits, save_dir, *extra, check=True):
    return train_digits(digits, save_dir, FAST, *extra, check=check)


def _md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


@pytest.fixture(scope="module")
def reference_run(digits, tmp_path_factory):
    """An uninterrupted 4-epoch run, the yardstick for the resume tests."""
    save_dir = tmp_path_factory.mktemp("reference")
    res = _train(digits, save_dir, "--num-epochs", "4")
    return {"dir": save_dir, "out": res.stdout, "rows": read_metrics(save_dir)}


def test_training_learns_the_digits(reference_run):
    rows = reference_run["rows"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["train_loss"] < 0.7 * rows[0]["train_loss"]
    assert rows[-1]["val_top1"] > 0.6  # chance is 0.1
    for r in rows:
        assert 0 <= r["val_top1"] <= r["val_top5"] <= 1 and r["samples_per_s"] > 0
    out = reference_run["out"]
    assert "Speed:" in out and "samples/sec" in out and "lr=" in out  # Speedometer lines
    assert "configuration (recipe" in out


def test_run_directory_holds_everything(reference_run):
    d = str(reference_run["dir"])
    names = set(os.listdir(d))
    assert {"config.yaml", "metrics.csv", "curves.png", "train.log"} <= names
    saved = config.load_dumped(os.path.join(d, "config.yaml"))
    assert saved["model"] == "full-connect-pre-act" and saved["multiplier"] == 0.25
    # loss, accuracy and lr panels each draw the training curve (C0); loss and accuracy
    # also the val one (C1)
    curves = pictures.check_plot(os.path.join(d, "curves.png"), (13, 3.6), ["C0"], (1, 3))
    assert all(pictures.count(pictures.panel(curves, (1, 3), 0, i), "C1") >= 40
               for i in (0, 1))
    # keep_checkpoints 2 of the demo recipe, plus the best epoch
    ckpt = CheckpointDir(d, "full-connect-pre-act")
    kept = [m["epoch"] for m in ckpt.epochs()]
    best = max(reference_run["rows"], key=lambda r: r["val_top1"])["epoch"]
    assert set(kept) == {3, 4} | {int(best)}
    assert not any(n.endswith(".tmp") or ".tmp-" in n for n in names)


def test_lr_follows_the_exponential_schedule(reference_run):
    # demo recipe: lr 0.1, x0.94 every epoch; the column is the rate of the epoch's last step
    for r in reference_run["rows"]:
        assert r["lr"] == pytest.approx(0.1 * 0.94 ** (r["epoch"] - 1), rel=1e-6)


def test_export_reproduces_the_in_memory_network(reference_run, digits):
    d = str(reference_run["dir"])
    last = int(reference_run["rows"][-1]["epoch"])  # the demo recipe exports the last epoch
    prefix = os.path.join(d, "full-connect-pre-act")
    net = network_from_checkpoint("%s-%04d.params" % (prefix, last), "full-connect-pre-act",
                                  0.25, 10)
    sym = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                       prefix + "-0000.params")
    x = mx.nd.random.normal(shape=(4, 3, 32, 32))
    ref = net(x).asnumpy()
    assert np.abs(ref).max() > 1e-2
    np.testing.assert_allclose(sym(x).asnumpy(), ref, atol=1e-5, rtol=0)
    with open(prefix + ".synsets.txt") as f:
        assert [l.strip() for l in f] == ["digit_%d" % i for i in range(10)]


def test_two_cpu_contexts_match_one_at_the_same_global_batch(digits, tmp_path):
    _train(digits, tmp_path / "one", "--num-epochs", "2")
    _train(digits, tmp_path / "two", "--num-epochs", "2", "--cpu-contexts", "2",
           "--batch-size", "16")
    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    # same data order, same init, same updates; only BN sees 16 instead of 32 images,
    # and that difference grows: epoch 2's losses differed by 2%, 4% and 17% for seeds
    # 1, 2 and 0 (measured with per-epoch data orders)
    for a, b, rel in zip(one, two, (0.15, 0.25)):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=rel)
        assert b["lr"] == a["lr"]
    assert one[0]["train_loss"] != two[0]["train_loss"]  # really two devices, not one


def _wait_for(path, proc, timeout=120):
    end = time.time() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, "training ended before %s appeared" % path
        assert time.time() < end, "timed out waiting for %s" % path
        time.sleep(0.02)


def _kill_mid_epoch(digits, save_dir, sig, *extra):
    """Start a 4-epoch run and send `sig` a moment into its third epoch."""
    proc = subprocess.Popen(_train_args(digits, save_dir, "--num-epochs", "4", *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(os.path.join(str(save_dir), "full-connect-pre-act-0002.json"), proc)
    time.sleep(0.4)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


def test_resume_after_sigkill_matches_an_uninterrupted_run(digits, tmp_path, reference_run):
    save_dir = tmp_path / "killed"
    code, _ = _kill_mid_epoch(digits, save_dir, signal.SIGKILL)
    assert code == -signal.SIGKILL
    ckpt = CheckpointDir(str(save_dir), "full-connect-pre-act")
    assert ckpt.newest()["epoch"] in (2, 3)  # the newest *complete* checkpoint
    assert not [n for n in os.listdir(str(save_dir)) if "interrupted" in n]
    res = _train(digits, save_dir, "--num-epochs", "4", "--resume")
    assert "resumed from" in res.stdout
    rows, ref = read_metrics(save_dir), reference_run["rows"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["lr"] == ref[-1]["lr"]
    # the epochs before the kill are the reference run's, bit for bit (same seed)
    assert rows[0]["train_loss"] == ref[0]["train_loss"]


def test_ctrl_c_saves_and_resume_finishes_the_epoch(digits, tmp_path, reference_run):
    save_dir = tmp_path / "interrupted"
    code, out = _kill_mid_epoch(digits, save_dir, signal.SIGINT)
    assert code == 0, out[-2000:]
    assert "continue with --resume" in out
    stopped = CheckpointDir(str(save_dir), "full-connect-pre-act").interrupted()
    assert stopped is not None and 0 < stopped["batches_done"] < 44
    res = _train(digits, save_dir, "--num-epochs", "4", "--resume")
    assert "batches into epoch" in res.stdout
    rows = read_metrics(save_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["lr"] == reference_run["rows"][-1]["lr"]
    ckpt = CheckpointDir(str(save_dir), "full-connect-pre-act")
    assert ckpt.interrupted() is None  # consumed by the next epoch checkpoint
    # the optimizer made exactly as many updates as the uninterrupted run
    assert ckpt.epochs()[-1]["num_update"] == 4 * 44


class _PoisonAt(mx.io.DataIter):
    """Wraps an iterator and turns batch `batch` of epoch `epoch` into NaNs."""

    def __init__(self, inner, epoch, batch):
        super(_PoisonAt, self).__init__(inner.batch_size)
        self.inner, self.at, self.epoch, self.i = inner, (epoch, batch), 0, 0

    def reset(self):
        self.inner.reset()
        self.epoch, self.i = self.epoch + 1, 0

    def next(self):
        batch = self.inner.next()
        self.i += 1
        if (self.epoch, self.i) == self.at:
            # a new array: the C++ iterator recycles its own buffers
            batch.data = [batch.data[0] * float("nan")]
        return batch


def _demo_cfg(digits, save_dir, **extra):
    overrides = dict(rec_train=digits["train"], rec_val=digits["val"], save_dir=str(save_dir),
                     multiplier=0.25, log_interval=10)
    overrides.update(extra)
    return config.resolve(DEMO_RECIPE, overrides)


def test_nan_loss_stops_cleanly_and_keeps_the_checkpoint(digits, tmp_path):
    from mobilenet_skip.data import records as data
    cfg = _demo_cfg(digits, tmp_path, num_epochs=3)
    train = _PoisonAt(data.train_iter(cfg), epoch=2, batch=7)
    with pytest.raises(guard.NonFiniteLoss) as err:
        loop.fit(cfg, train_data=train, val_data=data.val_iter(cfg), iters_per_epoch=44)
    # oneDNN's ReLU maps NaN to 0, so the poisoned batch itself can still give a finite
    # loss; its NaN gradients then show in the loss of the next batch
    message = str(err.value)
    assert "epoch 2, batch 7;" in message or "epoch 2, batch 8;" in message, message
    assert "intact" in message
    ckpt = CheckpointDir(str(tmp_path), "full-connect-pre-act")
    assert [m["epoch"] for m in ckpt.epochs()] == [1]
    assert ckpt.interrupted() is None
    params = mx.nd.load(ckpt.path(1, "params"))
    assert all(np.isfinite(v.asnumpy()).all() for v in params.values())
    assert len(read_metrics(tmp_path)) == 1


def test_nan_loss_exit_status_from_the_cli(digits, tmp_path):
    res = _train(digits, tmp_path, "--num-epochs", "1", "--lr", "1e30", "--clip-gradient", "0",
                 check=False)
    assert res.returncode == 3, res.stdout[-1500:] + res.stderr[-1500:]
    assert "NaN/inf at epoch 1" in res.stderr and "Traceback" not in res.stderr


def test_fresh_run_refuses_to_clobber_checkpoints(digits, reference_run):
    before = sorted(os.listdir(str(reference_run["dir"])))
    res = _train(digits, reference_run["dir"], "--num-epochs", "1", check=False)
    assert res.returncode == 2 and "--overwrite" in res.stderr and "--resume" in res.stderr
    assert sorted(os.listdir(str(reference_run["dir"]))) == before


def test_resume_with_another_model_is_refused(digits, reference_run, tmp_path):
    res = _train(digits, reference_run["dir"], "--num-epochs", "5", "--resume",
                 "--multiplier", "0.5", check=False)
    assert res.returncode == 2
    assert "multiplier" in res.stderr and "another --save-dir" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("args,message", [
    (["--learning-rate", "0.1"], "unrecognized arguments: --learning-rate"),
    (["--lr-mode", "linear"], "lr_mode must be one of"),
    (["--gpus", "0"], "this MXNet is a CPU build"),
    (["--gpus", "a,b"], "comma-separated GPU ids"),
    (["--model", "mobilenet-v2"], "unknown model"),
    (["--rec-train", "/nonexistent/train.rec"], "/nonexistent/train.rec"),
    (["--kv-store", "dist_sync"], "tools/launch.py"),
    (["--dtype", "float16"], "float16 needs GPUs"),
])
def test_flag_errors_are_one_clear_line(digits, tmp_path, args, message):
    res = _train(digits, tmp_path, "--num-epochs", "1", *args, check=False)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_recipe_key_names_the_key(digits, tmp_path):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("base: %s\nlearnig_rate: 0.1\n" % DEMO_RECIPE)
    res = subprocess.run([sys.executable, TRAIN, "--recipe", str(recipe)], capture_output=True,
                         text=True)
    assert res.returncode == 2 and "unknown key 'learnig_rate'" in res.stderr
    assert res.stderr.count("\n") == 1


def test_label_smoothing_loss_matches_its_definition():
    pred = mx.nd.random.normal(shape=(5, 7))
    label = mx.nd.array([0, 3, 6, 2, 2])
    eps = 0.1
    target = np.full((5, 7), eps / 7)
    target[np.arange(5), label.asnumpy().astype(int)] += 1 - eps
    logp = pred.log_softmax(axis=-1).asnumpy()
    expected = -(target * logp).sum(axis=1)
    got = train_step.LabelSmoothingLoss(eps)(pred, label).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_clipping_bounds_the_mean_gradient_norm():
    ctxs = [mx.cpu(0)]
    cfg = config.resolve(DEMO_RECIPE, dict(multiplier=0.25))
    net = train_net.build_net(cfg, ctxs)
    trainer = optim.make_trainer(net, cfg, None, 10)
    batch = 8
    step = train_step.TrainStep(net, trainer, ctxs, 0.0, 0.5, batch)
    x = [mx.nd.random.normal(shape=(batch, 3, 32, 32)) * 50]
    y = [mx.nd.array(np.arange(batch) % 10)]
    with mx.autograd.record():
        loss = step.loss(net(x[0]), y[0])
    loss.backward()
    grads = [p.grad() for p in net.collect_params().values() if p.grad_req != "null"]
    before = np.sqrt(sum((g.asnumpy().astype(np.float64) ** 2).sum() for g in grads)) / batch
    assert before > 0.5  # the bound really bites
    step._clip()
    after = np.sqrt(sum((g.asnumpy().astype(np.float64) ** 2).sum() for g in grads)) / batch
    assert after == pytest.approx(0.5, rel=1e-3)


def test_weight_decay_spares_depthwise_and_bn():
    cfg = config.resolve(DEMO_RECIPE, dict(multiplier=0.25))
    net = train_net.build_net(cfg, [mx.cpu()])
    mults = {n: p.wd_mult for n, p in net._collect_params_with_prefix().items()}
    assert mults["block4.body.dw.weight"] == 0 and mults["block4.pre_bn.gamma"] == 0
    assert mults["block4.body.pw.weight"] == 1 and mults["block2.proj.conv.weight"] == 1
    assert mults["output.weight"] == 1 and mults["output.bias"] == 0  # wd_bias: false


def test_gluoncv_network_is_initialised_like_ours():
    """The benchmark's reference goes through the same init_net: same decay mask."""
    from gluoncv.model_zoo.mobilenet import MobileNet

    from mobilenet_skip import get_model
    cfg = config.resolve(DEMO_RECIPE, dict(multiplier=0.25))
    ref = train_net.init_net(MobileNet(0.25, classes=10), cfg, [mx.cpu()])
    ours = train_net.build_net(cfg, [mx.cpu()])
    masks = [sorted(p.wd_mult for p in net.collect_params().values()) for net in (ref, ours)]
    plain = get_model("mobilenet", 0.25, 10)
    plain_mask = sorted(p.wd_mult for p in train_net.init_net(plain, cfg, [mx.cpu()])
                        .collect_params().values())
    assert masks[0] == plain_mask and masks[0].count(1.0) == 15  # 14 convs, dense weight
    assert masks[1] != masks[0]  # the demo recipe's model has projections and pre-act BNs


# The lr schedule's own tests are in test_resume.py (the lr as a function of epochs).


def test_gpu_contexts_are_refused_on_a_cpu_build():
    with pytest.raises(UserError, match="CPU build"):
        devices.parse_contexts("0,1")
    assert devices.parse_contexts("", 2) == [mx.cpu(0), mx.cpu(1)]


@pytest.mark.launcher
def test_dist_sync_two_workers_one_server(digits, tmp_path):
    """MXNet's launcher, 2 workers + 1 server on loopback: both finish in sync."""
    cmd = [sys.executable, os.path.join(TOOLS, "launch.py"), "-n", "2", "-s", "1", "--launcher",
           "local"] + _train_args(digits, tmp_path / "dist", "--num-epochs", "1",
                                  "--kv-store", "dist_sync", "--batch-size", "16")
    env = dict(os.environ, OMP_NUM_THREADS="1", PS_VERBOSE="0")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=280, env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    sums = checksums(out)
    assert sorted(sums) == [0, 1], out[-3000:]
    assert sums[0] == sums[1]
    # rank 0 alone wrote the checkpoint and the export
    names = os.listdir(str(tmp_path / "dist"))
    assert "full-connect-pre-act-0001.params" in names
    assert "full-connect-pre-act-symbol.json" in names
    # each worker reads its own half of the 1,438 records, 16 per step: 719 // 16 updates
    meta = json.load(open(str(tmp_path / "dist" / "full-connect-pre-act-0001.json")))
    assert meta["num_update"] == 719 // 16


@pytest.fixture
def registered():
    """Register a plain SGD (no momentum) and a constant lr for one test, then forget them."""
    @optim.register_optimizer("plain-sgd", mxnet_name="sgd")
    def _plain(cfg, **common):
        return mx.optimizer.create("sgd", **common)

    @optim.register_lr_mode("constant")
    def _constant(cfg, lr):
        return lambda epoch: lr
    yield
    del optim.OPTIMIZERS["plain-sgd"], optim.LR_MODES["constant"]


def test_a_registered_optimizer_and_lr_mode_are_flags_that_train_a_step(registered):
    """A new optimizer (or lr mode) is one registered entry: the recipe check accepts it,
    ``--optimizer NEW`` trains a step with it."""
    import argparse
    assert "plain-sgd" in config.choices_of("optimizer")
    assert "constant" in config.choices_of("lr_mode")
    parser = argparse.ArgumentParser()
    flags.add_flags(parser)
    args = parser.parse_args(["--optimizer", "plain-sgd", "--lr-mode", "constant",
                              "--multiplier", "0.25", "--warmup-epochs", "0"])
    cfg = config.resolve(DEMO_RECIPE, flags.flag_overrides(args))
    assert optim.schedule(cfg)(0.0) == optim.schedule(cfg)(7.5) == cfg["lr"]
    ctxs = [mx.cpu()]
    net = train_net.build_net(cfg, ctxs)
    step = train_step.make_step(net, cfg, ctxs, None, 8)
    assert type(step.trainer.optimizer).__name__ == "SGD"
    assert step.trainer.optimizer.momentum == 0.0
    before = net.output.weight.data().asnumpy().copy()
    step(*step.split(mx.nd.random.normal(shape=(8, 3, 32, 32)), mx.nd.arange(8)))
    assert step.trainer.optimizer.num_update == 1
    assert not np.allclose(before, net.output.weight.data().asnumpy())
    with pytest.raises(UserError, match="plain-sgd"):  # the error lists the new name
        config.resolve(DEMO_RECIPE, {"optimizer": "adamw"})


# --- fused BatchNorm-ReLU: the same training, and checkpoints that move both ways -----------

FUSED_LOG = "BatchNorm-ReLU: 27 pair(s) fused (oneDNN)"
UNFUSED_LOG = "BatchNorm-ReLU: 27 pair(s) unfused (fuse_bn_relu is off)"


@pytest.fixture(scope="module")
def fusion_runs(digits, tmp_path_factory):
    """Two epochs fused and two unfused (same seed), each resumed for a third epoch the
    other way: ``{first path: (dir, first output, resumed output)}``."""
    flag = {True: "--fuse-bn-relu", False: "--no-fuse-bn-relu"}
    runs = {}
    for fused in (True, False):
        save_dir = tmp_path_factory.mktemp("fused" if fused else "unfused")
        first = _train(digits, save_dir, "--num-epochs", "2", flag[fused])
        resumed = _train(digits, save_dir, "--num-epochs", "3", "--resume", flag[not fused])
        runs[fused] = (save_dir, first.stdout, resumed.stdout)
    return runs


def _weights(save_dir, epoch):
    return mx.nd.load(os.path.join(str(save_dir), "full-connect-pre-act-%04d.params" % epoch))


def test_two_epochs_fused_and_unfused_end_within_half_a_point(fusion_runs):
    (fused_dir, fused_out, _), (plain_dir, plain_out, _) = fusion_runs[True], fusion_runs[False]
    assert FUSED_LOG in fused_out and UNFUSED_LOG in plain_out
    fused, plain = read_metrics(fused_dir)[1], read_metrics(plain_dir)[1]
    assert fused["epoch"] == plain["epoch"] == 2
    assert abs(fused["val_top1"] - plain["val_top1"]) <= 0.005
    assert fused["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-3)


def test_a_fused_run_resumes_unfused_and_the_reverse(fusion_runs, reference_run):
    for fused, (save_dir, _, resumed) in fusion_runs.items():
        assert "resumed from" in resumed
        assert "fuse_bn_relu %s -> %s" % (fused, not fused) in resumed
        assert (UNFUSED_LOG if fused else FUSED_LOG) in resumed
        rows = read_metrics(save_dir)
        assert [r["epoch"] for r in rows] == [1, 2, 3]
        # the third epoch continues the uninterrupted (fused) reference run's trajectory
        assert rows[2]["train_loss"] == pytest.approx(reference_run["rows"][2]["train_loss"],
                                                      rel=1e-3)
    # the same weights at the end, whichever way each part ran
    a, b = _weights(fusion_runs[True][0], 3), _weights(fusion_runs[False][0], 3)
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_allclose(a[name].asnumpy(), b[name].asnumpy(), rtol=1e-3, atol=1e-5,
                                   err_msg=name)


def test_a_fused_run_exports_the_portable_unfused_graph(reference_run):
    d = str(reference_run["dir"])
    assert FUSED_LOG in reference_run["out"]  # the demo recipe trains fused on this CPU
    with open(os.path.join(d, "full-connect-pre-act-symbol.json")) as f:
        ops = [n["op"] for n in json.load(f)["nodes"]]
    assert "BatchNormWithReLU" not in " ".join(ops)
    assert ops.count("BatchNorm") == 27 and ops.count("Activation") == 27


def test_exporting_a_fused_network_writes_it_unfused_with_the_same_outputs(tmp_path):
    from mobilenet_skip.deploy import artifact
    from mobilenet_skip.models import fused_count, get_model, set_bn_relu_fusion

    net = get_model("simple-connect-pre-act", 0.25, 10)
    net.initialize(mx.init.MSRAPrelu())
    set_bn_relu_fusion(net, True)
    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.normal(shape=(4, 3, 32, 32))
    fused_out = net(x).asnumpy()
    prefix = str(tmp_path / "net")
    sym_path, params_path, _ = artifact.export_network(net, prefix, input_size=32)
    with open(sym_path) as f:
        assert "BatchNormWithReLU" not in f.read()
    assert fused_count(net) == 27  # the caller's network stays fused
    loaded = mx.gluon.SymbolBlock.imports(sym_path, ["data"], params_path)
    np.testing.assert_allclose(loaded(x).asnumpy(), fused_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net(x).asnumpy(), fused_out, rtol=1e-5, atol=1e-5)
