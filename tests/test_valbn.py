"""Logged validation equals the checkpoint on several devices, the
exported epoch (last or best) is explicit, and TF-slim's differing settings are recipe keys."""
import csv
import json
import os

import mxnet as mx
import numpy as np
import pytest

from mobilenet_skip.config import recipes as config
from mobilenet_skip.config.recipe import Recipe
from mobilenet_skip.data import records as data
from mobilenet_skip.deploy import artifact, export_run, loading, source
from mobilenet_skip.train import net as train_net, step as train_step
from mobilenet_skip.optim import rules as optim
from mobilenet_skip.runs.folder import METRIC_COLUMNS, RunDir
from mobilenet_skip.runs.bnstats import running_stats, sync_running_stats
from mobilenet_skip.utils.fs import atomic_save_csv
from mobilenet_skip.runs.checkpoints import CheckpointDir
from mobilenet_skip.errors import UserError
from mobilenet_skip.models import BN_DEFAULTS, norm_kwargs_from
from mobilenet_skip.utils.plots import read_metrics

from conftest import ROOT, run_tool

DEMO_RECIPE = os.path.join(ROOT, "recipes", "demo.yaml")
IMAGENET_RECIPE = os.path.join(ROOT, "recipes", "imagenet.yaml")


def _bn_blocks(net):
    found = []
    net.apply(lambda b: found.append(b) if isinstance(b, mx.gluon.nn.BatchNorm) else None)
    return found


def _trained_on_devices(n, seed=0):
    """A width-0.25 demo net after two steps on ``n`` CPU contexts, each device fed
    differently scaled images, so that their BN running statistics differ."""
    cfg = config.resolve(DEMO_RECIPE, dict(multiplier=0.25, cpu_contexts=n))
    ctxs = [mx.cpu(i) for i in range(n)]
    mx.random.seed(seed)
    net = train_net.build_net(cfg, ctxs)
    step = train_step.make_step(net, cfg, ctxs, "device", 8 * n)
    train_net.hybridize(net, cfg)
    for _ in range(2):
        xs = [mx.nd.random.normal(scale=1 + 2 * k, shape=(8, 3, 32, 32), ctx=c)
              for k, c in enumerate(ctxs)]
        ys = [mx.nd.array(np.arange(8) % 10, ctx=c) for c in ctxs]
        step(xs, ys)
    mx.nd.waitall()
    return net, cfg, ctxs


def _copies_equal(param):
    first = param.list_data()[0].asnumpy()
    return all(np.array_equal(first, c.asnumpy()) for c in param.list_data()[1:])


@pytest.mark.parametrize("devices", [2, 3])
def test_sync_gives_every_device_the_saved_running_stats(devices, tmp_path):
    net, cfg, ctxs = _trained_on_devices(devices)
    stats = running_stats(net)
    assert stats and all(p.name.endswith(("running_mean", "running_var")) for p in stats)
    assert not all(_copies_equal(p) for p in stats)  # each device's own, before the sync

    path = str(tmp_path / "before.params")
    net.save_parameters(path)
    saved = source.network_from_checkpoint(path, cfg["model"], 0.25, 10,
                                           norm_kwargs=norm_kwargs_from(cfg))
    x = mx.nd.random.normal(shape=(16, 3, 32, 32))
    ref = saved(x).asnumpy()
    own = [net(x.as_in_context(c)).asnumpy() for c in ctxs]
    assert max(np.abs(o - ref).max() for o in own) > 1e-3  # a device scored another network

    trained = {n: p.data(ctxs[0]).asnumpy() for n, p in net.collect_params().items()
               if p.grad_req != "null"}
    assert sync_running_stats(net) > 0
    assert all(_copies_equal(p) for p in stats)
    # after the sync every copy is bit for bit what a checkpoint stores, the mean saved before
    path = str(tmp_path / "after.params")
    net.save_parameters(path)
    after, before = mx.nd.load(path), mx.nd.load(str(tmp_path / "before.params"))
    for name, p in net._collect_params_with_prefix().items():
        if p.grad_req == "null":
            for c in p.list_data():
                assert np.array_equal(c.asnumpy(), after[name].asnumpy()), name
            np.testing.assert_allclose(after[name].asnumpy(), before[name].asnumpy(),
                                       rtol=1e-6, atol=1e-7)
        else:
            assert np.array_equal(after[name].asnumpy(), before[name].asnumpy())
    for name, p in net.collect_params().items():  # the trained weights are left alone
        if p.grad_req != "null":
            assert np.array_equal(p.data(ctxs[-1]).asnumpy(), trained[name])
    for c in ctxs:
        # float32 rounding of the stats' mean (last bit, 1e-6 relative) shows in logits of
        # size ~12 as up to ~1.3e-5; the unsynchronised copies differed by over 1e-3
        np.testing.assert_allclose(net(x.as_in_context(c)).asnumpy(), ref, rtol=1e-5, atol=1e-5)
    assert sync_running_stats(net) == 0  # in sync: nothing moves the second time


def test_sync_is_a_no_op_on_one_device():
    net, _, _ = _trained_on_devices(1)
    before = {p.name: p.data().asnumpy() for p in running_stats(net)}
    assert sync_running_stats(net) == 0
    assert all(np.array_equal(p.data().asnumpy(), before[p.name]) for p in running_stats(net))


@pytest.fixture(scope="module")
def two_device_run(demo_run, tmp_path_factory):
    """The demo recipe at width 0.25 on two CPU contexts: 3 short epochs."""
    save_dir = str(tmp_path_factory.mktemp("two_devices"))
    res = run_tool("train_imagenet", "--recipe", DEMO_RECIPE, "--rec-train", demo_run.train_rec,
                   "--rec-val", demo_run.val_rec, "--save-dir", save_dir, "--multiplier", "0.25",
                   "--cpu-contexts", "2", "--batch-size", "16", "--num-epochs", "3",
                   "--batches-per-epoch", "12", "--keep-checkpoints", "3",
                   "--log-interval", "100")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return {"dir": save_dir, "out": res.stdout, "rows": read_metrics(
        os.path.join(save_dir, "metrics.csv")), "val": demo_run.val_rec}


def test_two_device_checkpoints_give_the_logged_validation(two_device_run):
    rows, images = two_device_run["rows"], 359
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for row in rows:
        res = run_tool("eval_imagenet", "--save-dir", two_device_run["dir"], "--epoch",
                       str(row["epoch"]), "--rec-val", two_device_run["val"], "--json")
        assert res.returncode == 0, res.stderr
        got = json.loads(res.stdout)
        assert got["images"] == images
        assert round(got["top1"] * images) == round(row["val_top1"] * images), row
        assert round(got["top5"] * images) == round(row["val_top5"] * images), row


def test_summary_names_last_best_and_the_exported_epoch(two_device_run):
    rows = two_device_run["rows"]
    best = max(rows, key=lambda r: r["val_top1"])
    # metrics.csv: best_epoch is the running best, so its last row names both epochs
    running = [int(max(rows[:i + 1], key=lambda r: r["val_top1"])["epoch"])
               for i in range(len(rows))]
    assert [int(r["best_epoch"]) for r in rows] == running and running[-1] == best["epoch"]
    line = ("last epoch 3 val top1 %.4f | best epoch %d val top1 %.4f | exported: last "
            "(epoch 3)" % (rows[-1]["val_top1"], best["epoch"], best["val_top1"]))
    assert line in two_device_run["out"]
    with open(os.path.join(two_device_run["dir"], "train.log")) as f:
        assert line in f.read()
    info = artifact.read_info(os.path.join(two_device_run["dir"], "full-connect-pre-act"))
    assert (info["epoch"], info["export_epoch"], info["last_epoch"], info["best_epoch"]) == (
        3, "last", 3, best["epoch"])


def _fake_run(tmp_path, export_epoch, keep=1):
    cfg = config.resolve(DEMO_RECIPE, dict(multiplier=0.25, save_dir=str(tmp_path),
                                           export_epoch=export_epoch, keep_checkpoints=keep))
    run = RunDir.for_training(cfg, 0)
    run.write_start(resume=False)  # config.yaml, which the export reads
    return run, cfg


def _row(epoch, val_top1):
    return {"epoch": epoch, "train_loss": 1.0, "train_top1": 0.5, "val_loss": 0.5,
            "val_top1": val_top1, "val_top5": 1.0, "lr": 0.1, "epoch_time_s": 1.0,
            "val_time_s": 0.1, "samples_per_s": 1.0, "train_images": 32}


@pytest.mark.parametrize("export_epoch,expected", [("last", 3), ("best", 2)])
def test_export_epoch_chooses_the_checkpoint_exported(tmp_path, export_epoch, expected):
    run, cfg = _fake_run(tmp_path, export_epoch)
    net = train_net.build_net(cfg, [mx.cpu()])
    trainer = optim.make_trainer(net, cfg, None, 10)
    net(mx.nd.zeros((1, 3, 32, 32)))
    for epoch, top1 in ((1, 0.5), (2, 0.9), (3, 0.7)):
        net.output.weight.set_data(mx.nd.full(net.output.weight.shape, epoch))
        run.end_epoch(_row(epoch, top1), net, trainer)
    # pruning keeps the best beside the newest, whichever is exported
    assert [m["epoch"] for m in run.checkpoints.epochs()] == [2, 3]
    prefix = export_run(str(tmp_path))
    info = artifact.read_info(prefix)
    assert (info["epoch"], info["export_epoch"]) == (expected, export_epoch)
    assert info["val_top1"] == {3: 0.7, 2: 0.9}[expected]
    weights = mx.nd.load(prefix + "-0000.params")
    key = [k for k in weights if k.endswith("output_weight")][0]
    assert np.all(weights[key].asnumpy() == expected)
    assert run.summary() == ("last epoch 3 val top1 0.7000 | best epoch 2 val top1 0.9000 | "
                             "exported: %s (epoch %d)" % (export_epoch, expected))
    assert [int(r["best_epoch"]) for r in read_metrics(run.metrics_path)] == [1, 2, 2]


def test_metrics_without_best_epoch_are_completed(tmp_path):
    old = ("epoch", "train_loss", "train_top1", "val_top1", "val_top5", "lr", "epoch_time_s",
           "samples_per_s")
    path = str(tmp_path / "metrics.csv")
    atomic_save_csv(path, old, [_row(1, 0.4), _row(2, 0.6), _row(3, 0.5)])
    rows = RunDir(str(tmp_path)).metrics()
    assert [r["best_epoch"] for r in rows] == [1, 2, 2]
    atomic_save_csv(path, METRIC_COLUMNS, rows)  # what a resume rewrites
    with open(path) as f:
        got = list(csv.DictReader(f))
    assert [r["best_epoch"] for r in got] == ["1", "2", "2"]


def test_export_epoch_is_checked_and_last_in_the_recipes():
    for name in ("imagenet", "demo", "compare"):
        assert config.resolve(os.path.join(ROOT, "recipes", name + ".yaml"))[
            "export_epoch"] == "last"
    with pytest.raises(UserError, match="export_epoch must be one of last | best"):
        config.resolve(IMAGENET_RECIPE, {"export_epoch": "first"})


# --- section 8: BN momentum/epsilon and the bias's weight decay -------------------------

def _small_variances(net):
    """Make epsilon matter: running variances far below 1e-3."""
    for name, p in net.collect_params().items():
        if name.endswith("running_var"):
            p.set_data(mx.nd.random.uniform(1e-4, 1e-3, shape=p.shape))
        elif name.endswith("running_mean"):
            p.set_data(mx.nd.random.normal(0, 0.01, shape=p.shape))


def test_bn_keys_reach_every_norm_and_the_export(tmp_path):
    cfg = config.resolve(DEMO_RECIPE, dict(multiplier=0.25, bn_momentum=0.9997, bn_eps=1e-3,
                                           save_dir=str(tmp_path)))
    net = train_net.build_net(cfg, [mx.cpu()])
    norms = _bn_blocks(net)
    assert len(norms) == 27 and all(
        bn._kwargs["momentum"] == 0.9997 and bn._kwargs["eps"] == 1e-3 for bn in norms)
    _small_variances(net)
    x = mx.nd.random.normal(shape=(4, 3, 32, 32))
    ref = net(x).asnumpy()
    # a run folder as training leaves it: a checkpoint and config.yaml
    ckpt = CheckpointDir(str(tmp_path), cfg["model"])
    net.save_parameters(ckpt.path(1, "params"))
    config.dump(cfg, os.path.join(str(tmp_path), "config.yaml"))
    src = source.load_source(save_dir=str(tmp_path), epoch=1)
    assert {bn._kwargs["eps"] for bn in _bn_blocks(src.net)} == {1e-3}
    prefix = str(tmp_path / "exported")
    artifact.export_network(src.net, prefix, 32, info=src.info)
    with open(prefix + "-symbol.json") as f:
        eps = {n["attrs"]["eps"] for n in json.load(f)["nodes"] if n["op"] == "BatchNorm"}
    assert eps == {"0.001"}
    np.testing.assert_allclose(loading.open_export(prefix).block(x).asnumpy(), ref, atol=1e-4,
                               rtol=1e-4)
    # the same weights under MXNet's default epsilon are another network
    plain = source.network_from_checkpoint(ckpt.path(1, "params"), cfg["model"], 0.25, 10)
    assert np.abs(plain(x).asnumpy() - ref).max() > 1e-2


def test_config_without_bn_keys_means_mxnet_defaults():
    assert norm_kwargs_from({"model": "mobilenet"}) == {"momentum": 0.9, "epsilon": 1e-5}
    assert BN_DEFAULTS == {"bn_momentum": config.SCHEMA["bn_momentum"][0],
                           "bn_eps": config.SCHEMA["bn_eps"][0]}
    net = train_net.build_net(config.resolve(DEMO_RECIPE, dict(multiplier=0.25)), [mx.cpu()])
    assert {(bn._kwargs["momentum"], bn._kwargs["eps"]) for bn in _bn_blocks(net)} == {
        (0.9, 1e-5)}


@pytest.mark.parametrize("bad,pattern", [
    ({"bn_momentum": 1.0}, "bn_momentum must be in"), ({"bn_eps": 0}, "bn_eps must be positive"),
    ({"preprocess_threads": "0"}, "preprocess_threads must be a positive number or auto"),
    ({"preprocess_threads": "lots"}, "preprocess_threads must be a positive number or auto")])
def test_bad_bn_and_thread_settings_are_one_line_errors(bad, pattern):
    with pytest.raises(UserError, match=pattern) as err:
        config.resolve(IMAGENET_RECIPE, bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("wd_bias", [True, False])
def test_wd_bias_decides_whether_the_classifier_bias_decays(wd_bias):
    cfg = config.resolve(DEMO_RECIPE, dict(multiplier=0.25, wd_bias=wd_bias, wd=0.5, lr=0.1,
                                           clip_gradient=0.0))
    net = train_net.build_net(cfg, [mx.cpu()])
    net(mx.nd.zeros((1, 3, 32, 32)))
    mults = {n: p.wd_mult for n, p in net._collect_params_with_prefix().items()}
    assert mults["output.bias"] == (1.0 if wd_bias else 0.0) and mults["output.weight"] == 1.0
    # what the optimizer does with it: a zero-gradient step only decays
    trainer = optim.make_trainer(net, cfg, None, cfg["lr_batch"])  # lr as given
    net.output.bias.set_data(mx.nd.ones(net.output.bias.shape))
    with mx.autograd.record():
        zero = net(mx.nd.zeros((1, 3, 32, 32))).sum() * 0
    zero.backward()  # fresh, all-zero gradients
    trainer.update(1)
    expected = 1 - 0.1 * 0.5 if wd_bias else 1.0
    np.testing.assert_allclose(net.output.bias.data().asnumpy(), expected, rtol=1e-6)


def test_imagenet_recipe_follows_tf_slim_on_bias_decay():
    cfg = config.resolve(IMAGENET_RECIPE)
    assert cfg["wd_bias"] is False and (cfg["bn_momentum"], cfg["bn_eps"]) == (0.9, 1e-5)
    # the comparison study keeps the setting it was measured with
    assert config.resolve(os.path.join(ROOT, "recipes", "compare.yaml"))["wd_bias"] is True


# --- preprocess_threads: auto ------------------------------------------------------------

@pytest.mark.parametrize("setting,gpus,cores,expected", [
    ("auto", "0,1", 16, 14), ("auto", "", 16, 16), ("auto", "0,1,2,3", 2, 1),
    (3, "0,1", 16, 3)])
def test_auto_threads_are_physical_cores_not_driving_a_gpu(setting, gpus, cores, expected):
    assert data.resolve_threads(Recipe.from_values({"preprocess_threads": setting, "gpus": gpus}),
                                cores=cores) == expected


def test_auto_threads_resolve_from_the_recipe_to_an_iterator(demo_run):
    cfg = config.resolve(IMAGENET_RECIPE, {"rec_train": demo_run.train_rec, "input_size": 32,
                                           "classes": 10})
    assert cfg["preprocess_threads"] == "auto"
    assert config.resolve(IMAGENET_RECIPE, {"preprocess_threads": "6"})[
        "preprocess_threads"] == 6
    assert data.resolve_threads(cfg) >= 1
    batch = next(iter(data.train_iter(cfg)))
    assert batch.data[0].shape == (32, 3, 32, 32)
