"""Checksummed checkpoints and exports: every file we write and read back carries its
SHA-256 in the marker or sidecar describing it, and a damaged one (a zeroed stretch that
MXNet's loaders take for weights) is refused in one line before it is used: by resume,
eval and export of a checkpoint, eval and predict of an export, ``--finetune``. Files
described without digests load with a note. Also: a random-bytes ``.params`` is named
with MXNet's own reason, an export may not take a checkpoint's name in a run folder, nor
write into a run folder while it trains."""
import hashlib
import json
import os
import shutil

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from mobilenet_skip.bench.infer import randomise_bn
from mobilenet_skip.config import recipes as config
from mobilenet_skip.data.demo import pack_demo_data
from mobilenet_skip.deploy import artifact, loading, runtime, source
from mobilenet_skip.deploy.run import export_run
from mobilenet_skip.errors import UserError
from mobilenet_skip.models import get_model
from mobilenet_skip.optim.rules import make_trainer
from mobilenet_skip.runs.checkpoints import CheckpointDir
from mobilenet_skip.runs.folder import METRIC_COLUMNS, RunDir
from mobilenet_skip.train import finetune, net as train_net, resume
from mobilenet_skip.utils.fs import OutputLock, atomic_save_csv

from conftest import DEMO_EPOCHS, DEMO_RECIPE, call_tool, run_tool, train_args

MODEL = "full-connect-pre-act"
SIDE = 32
CLASSES = ["c%d" % i for i in range(10)]


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _zero(path, size=4096):
    """Zero ``size`` bytes (at most half of it) inside the largest array that ``path`` (an
    MXNet ``.params``/``.states``/``.bncopies`` or an ONNX file) holds: damage that every
    format check passes, which MXNet and ONNX Runtime take for weights without a word."""
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".onnx"):
        import onnx
        from onnx import numpy_helper  # raw_data or packed float_data: the same bytes
        arrays = [numpy_helper.to_array(i).tobytes()
                  for i in onnx.load(path).graph.initializer]
    else:
        saved = mx.nd.load(path)
        arrays = [a.asnumpy().tobytes() for a in (
            saved.values() if isinstance(saved, dict) else saved)]
    data = max(arrays, key=len)
    start = raw.find(data) + len(data) // 4
    assert start >= len(data) // 4 and len(data) >= 8
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(b"\0" * min(size, len(data) // 2))


def _assert_refusal(err, path, expected, *fix):
    """``err`` is one line naming ``path``, the digest recorded (``expected``), the one
    found now, and the words of the fix."""
    line = str(err)
    assert "\n" not in line, line
    found = _sha(path)
    assert found != expected
    assert ("%s is damaged: its SHA-256 is %s" % (path, found)) in line, line
    assert ("recorded %s" % expected) in line, line
    for words in fix:
        assert words in line, line


# --- checkpoints ---------------------------------------------------------------------

def _step(net, trainer, ctxs):
    """One SGD step with momentum on random images split over ``ctxs``: the optimizer
    has state, and each device's BN running statistics are its own."""
    x = mx.nd.random.normal(shape=(4 * len(ctxs), 3, SIDE, SIDE))
    y = mx.nd.array(np.arange(4 * len(ctxs)) % 10)
    loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    with autograd.record():
        losses = [loss(net(xs), ys) for xs, ys in zip(
            mx.gluon.utils.split_and_load(x, ctxs), mx.gluon.utils.split_and_load(y, ctxs))]
    autograd.backward(losses)
    trainer.step(x.shape[0])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder as training leaves it, written in this process on two CPU devices:
    config.yaml, metrics.csv, the epoch 1 checkpoint and a mid-epoch stop after it (its
    .params, .states and .bncopies, each device's own BN statistics)."""
    save_dir = str(tmp_path_factory.mktemp("run"))
    cfg = config.resolve(DEMO_RECIPE, dict(multiplier=0.25, save_dir=save_dir))
    ctxs = [mx.cpu(0), mx.cpu(1)]
    net = train_net.build_net(cfg, ctxs)
    trainer = make_trainer(net, cfg, "device", 8)
    _step(net, trainer, ctxs)
    ckpt = CheckpointDir(save_dir, cfg["model"])
    meta = {"epoch": 1, "model": cfg["model"], "val_top1": 0.5, "val_top5": 0.9,
            "num_update": 1, "global_batch": 8, "data": None}
    ckpt.save(1, net, trainer, meta)
    _step(net, trainer, ctxs)
    ckpt.save("interrupted", net, trainer, dict(meta, batches_done=1))
    config.dump(cfg, RunDir(save_dir).config_path)
    row = dict({c: 0.5 for c in METRIC_COLUMNS}, epoch=1, best_epoch=1, train_images=8)
    atomic_save_csv(RunDir(save_dir).metrics_path, METRIC_COLUMNS, [row])
    with open(os.path.join(save_dir, "classes.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    return save_dir, cfg, ctxs


def _copy(run, tmp_path):
    save_dir = str(tmp_path / "run")
    shutil.copytree(run[0], save_dir)
    return save_dir, CheckpointDir(save_dir, MODEL)


def test_every_checkpoint_file_is_hashed_in_its_marker(run):
    ckpt = CheckpointDir(run[0], MODEL)
    for tag, kinds in ((1, ("params", "states")), ("interrupted", ("params", "states",
                                                                  "bncopies"))):
        with open(ckpt.path(tag, "json")) as f:
            recorded = json.load(f)["sha256"]
        assert recorded == {ext: _sha(ckpt.path(tag, ext)) for ext in kinds}


def _resume(save_dir, cfg, ctxs):
    """What ``train_imagenet.py --resume`` does before its first step: plan, then restore
    the checkpoint into a new network and trainer; the checkpoint it went on from."""
    run = RunDir(save_dir, MODEL)
    run.cfg, run.rank, run.global_batch = cfg.replace(save_dir=save_dir), 0, 8
    begin = resume.plan(run, True, False)
    net = train_net.build_net(cfg, ctxs, load=False)
    resume.restore(run, begin, net, make_trainer(net, cfg, "device", 8), ctxs, True)
    return begin.checkpoint


@pytest.mark.parametrize("ext", ["params", "states", "bncopies"])
def test_resume_refuses_a_damaged_checkpoint_file(run, tmp_path, ext):
    """4 KB zeroed in any file of the checkpoint --resume picks: one line naming it, both
    digests and the checkpoint before it; after the fix (its marker deleted) the run
    goes on from epoch 1."""
    save_dir, ckpt = _copy(run, tmp_path)
    path = ckpt.path("interrupted", ext)
    expected = _sha(path)
    _zero(path)
    with pytest.raises(UserError) as err:
        _resume(save_dir, run[1], run[2])
    marker = ckpt.path("interrupted", "json")
    _assert_refusal(err.value, path, expected, "delete its marker %s" % marker,
                    "--resume goes on from the one before")
    os.remove(marker)  # what the line says to do
    assert _resume(save_dir, run[1], run[2])["tag"] == 1


def test_eval_and_export_refuse_a_damaged_checkpoint(run, tmp_path):
    """eval_imagenet.py and export_model.py --save-dir RUN --epoch 1 read the checkpoint
    through load_source; --params names the same file."""
    save_dir, ckpt = _copy(run, tmp_path)
    path = ckpt.path(1, "params")
    expected = _sha(path)
    _zero(path)
    for kwargs in (dict(save_dir=save_dir, epoch=1), dict(params=path)):
        with pytest.raises(UserError) as err:
            source.load_source(**kwargs)
        _assert_refusal(err.value, path, expected, "pass another --epoch")


def test_finetune_refuses_a_damaged_checkpoint(run, tmp_path):
    save_dir, ckpt = _copy(run, tmp_path)
    path = ckpt.path(1, "params")
    expected = _sha(path)
    _zero(path)
    cfg = run[1].replace(finetune=save_dir, finetune_epoch=1)
    net = train_net.build_net(cfg.replace(finetune=""), [mx.cpu()])
    with pytest.raises(UserError) as err:
        finetune.load_finetune(net, cfg)
    _assert_refusal(err.value, path, expected)


def test_a_marker_without_digests_loads_with_a_note(run, tmp_path, capsys, caplog):
    save_dir, ckpt = _copy(run, tmp_path)
    for tag in (1, "interrupted"):
        marker = ckpt.path(tag, "json")
        with open(marker) as f:
            meta = json.load(f)
        del meta["sha256"]
        with open(marker, "w") as f:
            json.dump(meta, f)
    capsys.readouterr()
    with caplog.at_level("WARNING", logger="mobilenet_skip"):
        assert _resume(save_dir, run[1], run[2])["tag"] == "interrupted"  # note: in its log
    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("note: ")]
    assert notes == ["note: %s records no SHA-256 of %s, so they are used unverified" % (
        ckpt.path("interrupted", "json"), ", ".join(sorted(
            ckpt.path("interrupted", ext) for ext in ("bncopies", "params", "states"))))]
    src = source.load_source(save_dir=save_dir, epoch=1)  # eval, export: on stderr
    assert src.net is not None
    err = capsys.readouterr().err
    assert err == "note: %s records no SHA-256 of %s, so it is used unverified\n" % (
        ckpt.path(1, "json"), ckpt.path(1, "params")), err


# --- random bytes where a .params belongs (WEAK 21) ------------------------------------

def test_random_bytes_params_are_named_with_mxnets_reason(run, tmp_path, capsys):
    rand = str(tmp_path / "m-0001.params")
    with open(rand, "wb") as f:
        f.write(np.random.RandomState(0).bytes(100000))
    reason = "Invalid NDArray file format"
    code, _, err = call_tool(capsys, "eval_imagenet", "--params", rand, "--model", MODEL,
                             "--rec-val", str(tmp_path / "none.rec"))
    assert code == 2 and reason in err and "Traceback" not in err, err
    code, _, err = call_tool(capsys, "export_model", "--params", rand, "--model", MODEL,
                             "--output", str(tmp_path / "out"))
    assert code == 2 and reason in err and "Traceback" not in err, err
    cfg = config.resolve(DEMO_RECIPE, dict(model="mobilenet", multiplier=0.25,
                                           warm_start=rand, save_dir=str(tmp_path)))
    with pytest.raises(ValueError) as warm:
        train_net.build_net(cfg, [mx.cpu()])
    assert reason in str(warm.value) and "Traceback" not in str(warm.value)
    assert "not an MXNet .params file" in str(warm.value)


# --- an export's name and its run folder's lock (WEAK 14, 15) --------------------------

def _contents(folder):
    return {name: _sha(os.path.join(folder, name)) for name in os.listdir(folder)}


@pytest.mark.parametrize("name", ["%s-interrupted" % MODEL, "%s-0007" % MODEL])
def test_an_export_may_not_take_a_checkpoint_name_in_a_run_folder(run, tmp_path, capsys,
                                                                  name):
    """The issue's case: the run has no interrupted checkpoint now, so nothing is
    overwritten, but a later stop's marker would replace the sidecar, and the epoch
    after it would delete it."""
    save_dir, ckpt = _copy(run, tmp_path)
    ckpt.remove("interrupted")
    out = os.path.join(save_dir, name)
    before = _contents(save_dir)
    code, _, err = call_tool(capsys, "export_model", "--save-dir", save_dir, "--epoch", "1",
                             "--synsets", os.path.join(save_dir, "classes.txt"),
                             "--output", out)
    assert code == 2 and err.count("\n") == 1, err
    assert ("error: --output would write %s.json, the name of a checkpoint marker of the %s "
            "run in %s" % (out, MODEL, save_dir)) in err and "choose another --output" in err
    assert _contents(save_dir) == before
    # the same name outside a run folder is an export like any other
    elsewhere = str(tmp_path / "deploy" / name)
    code, _, err = call_tool(capsys, "export_model", "--save-dir", save_dir, "--epoch", "1",
                             "--synsets", os.path.join(save_dir, "classes.txt"),
                             "--output", elsewhere)
    assert code == 0, err


def test_an_export_into_a_training_run_folder_waits_for_the_run(run, tmp_path, capsys):
    save_dir, _ = _copy(run, tmp_path)
    synsets = os.path.join(save_dir, "classes.txt")
    lock = os.path.join(save_dir, RunDir.LOCK)
    with OutputLock(lock, "run folder %s" % save_dir):  # as a training job holds it
        code, _, err = call_tool(capsys, "export_model", "--save-dir", save_dir, "--epoch",
                                 "1", "--synsets", synsets, "--output", save_dir + "/")
        assert code == 2 and err.count("\n") == 1, err
        assert ("run folder %s is in use by another job (PID %d, lock %s)"
                % (save_dir, os.getpid(), lock)) in err and "choose another output" in err
        assert not os.path.exists(os.path.join(save_dir, MODEL + ".json"))
        # elsewhere, the same checkpoint exports while the run trains
        code, _, err = call_tool(capsys, "export_model", "--save-dir", save_dir, "--epoch",
                                 "1", "--synsets", synsets, "--output",
                                 str(tmp_path / "deploy") + "/")
        assert code == 0, err
    # the trainer's own export, in the process holding the lock, still writes
    with RunDir(save_dir).locked():
        assert export_run(save_dir, synsets=synsets) == os.path.join(save_dir, MODEL)
        assert os.path.exists(lock)
    assert not os.path.exists(lock)
    code, _, err = call_tool(capsys, "export_model", "--save-dir", save_dir, "--epoch", "1",
                             "--synsets", synsets, "--output", save_dir + "/")
    assert code == 0, err
    assert not os.path.exists(lock)


# --- exports: every form's files -------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A random mobilenet x0.25 (BN statistics too) exported at 32 px with every form by
    export_model.py, INT8 calibrated on the digits' val split: ``(folder, prefix)``."""
    from conftest import tool_main
    root = str(tmp_path_factory.mktemp("exported"))
    rec = pack_demo_data(root, size=SIDE, splits=("val",))[0]
    net = randomise_bn(get_model("mobilenet", multiplier=0.25, classes=len(CLASSES)), SIDE)
    plain = os.path.join(root, "plain")
    artifact.export_network(net, plain, SIDE, CLASSES)
    folder = os.path.join(root, "deploy")
    tool_main("export_model")(["--prefix", plain, "--output", folder + "/m", "--fused",
                               "--int8", "--onnx", "--onnx-int8", "--calib-rec", rec,
                               "--calib-batches", "2"])
    return folder, os.path.join(folder, "m")


def _open(path):
    """What eval and predict do with an export prefix, or eval with an ONNX file."""
    if path.endswith(".onnx"):
        return runtime.OnnxRunner(path)
    return loading.open_export(path)


# (file, what reads it, the fix's flags)
EXPORT_FILES = [("-0000.params", "", ""), ("-symbol.json", "", ""),
                ("-fused-0000.params", "-fused", " --fused"),
                ("-fused-symbol.json", "-fused", " --fused"),
                ("-int8-0000.params", "-int8", " --int8"),
                ("-int8-symbol.json", "-int8", " --int8"),
                (".onnx", ".onnx", " --onnx"), ("-int8.onnx", "-int8.onnx", " --onnx-int8")]


@pytest.mark.slow
def test_every_export_file_is_hashed_in_a_sidecar(exported):
    folder, prefix = exported
    digests = {}
    for sidecar in ("m", "m-fused", "m-int8"):
        with open(os.path.join(folder, sidecar + ".json")) as f:
            digests.update({sidecar + k: v for k, v in json.load(f)["sha256"].items()})
    assert digests == {"m" + name: _sha(prefix + name) for name, _, _ in EXPORT_FILES}


@pytest.mark.slow  # the fixture runs export_model.py with every form
@pytest.mark.parametrize("name,reader,flags", EXPORT_FILES)
def test_a_damaged_export_file_is_refused(exported, tmp_path, name, reader, flags):
    folder = str(tmp_path / "deploy")
    shutil.copytree(exported[0], folder)
    prefix = os.path.join(folder, "m")
    path = prefix + name
    expected = _sha(path)
    if name.endswith("-symbol.json"):  # valid JSON still: another activation, same size
        with open(path) as f:
            text = f.read()
        assert '"relu"' in text
        with open(path, "w") as f:
            f.write(text.replace('"relu"', '"tanh"', 1))
    else:
        _zero(path)
    with pytest.raises(UserError) as err:
        _open(prefix + reader)
    _assert_refusal(err.value, path, expected, "re-export it: tools/export_model.py "
                    "--save-dir RUN --epoch N --output %s%s" % (prefix, flags))


@pytest.mark.slow
def test_an_export_without_digests_loads_with_a_note(exported, tmp_path, capsys):
    folder = str(tmp_path / "deploy")
    shutil.copytree(exported[0], folder)
    prefix = os.path.join(folder, "m")
    with open(prefix + ".json") as f:
        info = json.load(f)
    del info["sha256"]
    with open(prefix + ".json", "w") as f:
        json.dump(info, f)
    capsys.readouterr()
    assert loading.open_export(prefix).classes == len(CLASSES)
    err = capsys.readouterr().err
    assert err == ("note: %s.json records no SHA-256 of %s-0000.params, %s-symbol.json, so "
                   "they are used unverified\n" % (prefix, prefix, prefix))
    assert runtime.OnnxRunner(prefix + ".onnx").info["classes"] == len(CLASSES)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "used unverified" in err and prefix + ".onnx" in err


@pytest.mark.slow
def test_finetune_refuses_a_damaged_export(exported, run, tmp_path):
    folder = str(tmp_path / "deploy")
    shutil.copytree(exported[0], folder)
    prefix = os.path.join(folder, "m")
    expected = _sha(prefix + "-0000.params")
    _zero(prefix + "-0000.params")
    cfg = run[1].replace(model="mobilenet", finetune=prefix, finetune_epoch=0)
    net = train_net.build_net(cfg.replace(finetune=""), [mx.cpu()])
    with pytest.raises(UserError) as err:
        finetune.load_finetune(net, cfg)
    _assert_refusal(err.value, prefix + "-0000.params", expected, "re-export it")


# --- the tools on the trained demo run (the case) ------------------------------

@pytest.fixture
def damaged_demo(demo_run, tmp_path):
    """A copy of the demo run whose last checkpoint and export have 4 KB zeroed in their
    .params: ``(run folder, checkpoint .params, its digest, export .params, its digest)``."""
    save_dir = str(tmp_path / "run")
    shutil.copytree(demo_run.save_dir, save_dir)
    ckpt = CheckpointDir(save_dir, demo_run.model).path(DEMO_EPOCHS, "params")
    export = os.path.join(save_dir, demo_run.model + "-0000.params")
    sums = _sha(ckpt), _sha(export)
    _zero(ckpt)
    _zero(export)
    return save_dir, ckpt, sums[0], export, sums[1]


def test_the_tools_refuse_the_damaged_demo_run(demo_run, damaged_demo):
    save_dir, ckpt, ckpt_sum, export, export_sum = damaged_demo
    prefix = os.path.join(save_dir, demo_run.model)
    for tool, argv, path, expected in (
            ("eval_imagenet", ["--save-dir", save_dir, "--epoch", str(DEMO_EPOCHS),
                               "--rec-val", demo_run.val_rec], ckpt, ckpt_sum),
            ("export_model", ["--save-dir", save_dir, "--epoch", str(DEMO_EPOCHS),
                              "--output", os.path.join(save_dir, "deploy", "m")], ckpt,
             ckpt_sum),
            ("eval_imagenet", ["--prefix", prefix, "--rec-val", demo_run.val_rec], export,
             export_sum),
            ("predict", ["--prefix", prefix, demo_run.images], export, export_sum)):
        res = run_tool(tool, *argv)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, (tool, res.stderr)
        assert res.stderr.startswith("error: ")
        _assert_refusal(res.stderr[len("error: "):].strip(), path, expected)


def test_resume_refuses_the_damaged_demo_checkpoint(demo_run, digits, damaged_demo):
    import subprocess
    save_dir, ckpt, ckpt_sum = damaged_demo[:3]
    res = subprocess.run(train_args(digits, save_dir, [], "--resume", "--num-epochs",
                                    str(DEMO_EPOCHS + 1)), capture_output=True, text=True)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    _assert_refusal(res.stderr[len("error: "):].strip(), ckpt, ckpt_sum,
                    "--resume goes on from the one before")
