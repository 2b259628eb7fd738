"""Fine-tuning one's own run on new classes (--finetune): the body comes from the source,
the classifier is new, the body may train at a lower lr."""
import os
import shutil

import mxnet as mx
import numpy as np
import pytest

from conftest import DEMO_RECIPE, train_digits

TINY = ["--multiplier", "0.25", "--input-size", "32", "--batches-per-epoch", "3",
        "--log-interval", "3", "--preprocess-threads", "1", "--classes", "5"]
MODEL = "full-connect-pre-act"  # demo.yaml's


@pytest.fixture(scope="module")
def halves(tmp_path_factory):
    """The digits 0-4 and 5-9 packed apart: ``{"first": {"train", "val"}, "second": ...}``."""
    from mobilenet_skip.data.demo import make_demo_data, pack_splits
    root = str(tmp_path_factory.mktemp("halves"))
    make_demo_data(os.path.join(root, "all"), size=32)
    out = {}
    for half, digits in (("first", range(5)), ("second", range(5, 10))):
        for split in ("train", "val"):
            for d in digits:
                shutil.copytree(os.path.join(root, "all", split, "digit_%d" % d),
                                os.path.join(root, half, "images", split, "digit_%d" % d))
        train, val = pack_splits(os.path.join(root, half, "images"), os.path.join(root, half))
        out[half] = {"train": train, "val": val}
    return out


@pytest.fixture(scope="module")
def source(halves, tmp_path_factory):
    """A run pretrained one tiny epoch on the digits 0-4 (and exported, as every run is)."""
    save_dir = str(tmp_path_factory.mktemp("source"))
    train_digits(halves["first"], save_dir, TINY, "--num-epochs", "1")
    return save_dir


def _cfg(halves, save_dir, **extra):
    from mobilenet_skip.config import recipes
    overrides = dict(rec_train=halves["second"]["train"], rec_val=halves["second"]["val"],
                     save_dir=str(save_dir), multiplier=0.25, input_size=32, classes=5)
    overrides.update(extra)
    return recipes.resolve(DEMO_RECIPE, overrides)


def _body_and_head(net):
    params = {k: p.data().asnumpy() for k, p in net._collect_params_with_prefix().items()}
    head = {k: v for k, v in params.items() if k.startswith("output.")}
    return {k: v for k, v in params.items() if k not in head}, head


@pytest.mark.slow
@pytest.mark.parametrize("form", ["run folder", "export prefix"])
def test_the_body_equals_the_source_and_the_classifier_is_new(halves, source, tmp_path, form):
    from mobilenet_skip.train.net import build_net
    path = source if form == "run folder" else os.path.join(source, MODEL)
    net = build_net(_cfg(halves, tmp_path, finetune=path), [mx.cpu()])
    body, head = _body_and_head(net)
    saved = {k: v.asnumpy() for k, v in mx.nd.load(os.path.join(source, MODEL + "-0001.params"))
             .items()}
    assert set(body) | set(head) == set(saved)
    for name, value in body.items():  # running statistics too
        np.testing.assert_array_equal(value, saved[name], err_msg=name)
    assert sorted(head) == ["output.bias", "output.weight"]
    assert head["output.weight"].shape == saved["output.weight"].shape
    assert not np.allclose(head["output.weight"], saved["output.weight"])


@pytest.mark.slow
def test_another_width_or_model_is_one_line_naming_both(halves, source, tmp_path):
    from mobilenet_skip.errors import UserError
    from mobilenet_skip.train.net import build_net
    for extra, here in (({"multiplier": 0.5}, "%s x0.5" % MODEL),
                        ({"model": "mobilenet"}, "mobilenet x0.25")):
        with pytest.raises(UserError) as err:
            build_net(_cfg(halves, tmp_path, finetune=source, **extra), [mx.cpu()])
        message = str(err.value)
        assert "%s x0.25" % MODEL in message and here in message, message
        assert "\n" not in message


@pytest.mark.slow
def test_the_body_trains_at_the_lr_mult_and_the_classifier_at_the_lr(halves, source, tmp_path):
    from mobilenet_skip.optim.rules import make_trainer
    from mobilenet_skip.train.net import build_net
    cfg = _cfg(halves, tmp_path, finetune=source, finetune_lr_mult=0.1)
    net = build_net(cfg, [mx.cpu()])
    trainer = make_trainer(net, cfg, None, 32)
    lrs = {p.name: trainer._optimizer._get_lr(i) for i, p in enumerate(trainer._params)}
    head = {n: lr for n, lr in lrs.items() if n.endswith(("output_weight", "output_bias"))}
    lr = trainer.learning_rate
    assert len(head) == 2 and all(v == pytest.approx(lr) for v in head.values())
    body = [v for n, v in lrs.items() if n not in head]
    assert len(body) > 50 and all(v == pytest.approx(0.1 * lr) for v in body)


@pytest.mark.slow
def test_finetune_from_the_command_line_logs_what_it_loaded(halves, source, tmp_path):
    res = train_digits(halves["second"], tmp_path / "tuned", TINY, "--num-epochs", "1",
                       "--finetune", source, "--finetune-lr-mult", "0.5")
    line = next(l for l in res.stdout.splitlines() if "fine-tuning from" in l)
    assert "epoch 1: loaded" in line and "not loaded (freshly initialised): output.bias, " \
        "output.weight" in line, line
    assert os.path.isfile(os.path.join(str(tmp_path / "tuned"), MODEL + "-0001.params"))
