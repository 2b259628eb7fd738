"""The registry of export forms as every tool sees it: each registered form is written and
read back (a new one is tested without editing this file), a new loadable kind is
accepted by predict and eval, and the readers know every kind without the writers."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from mobilenet_skip.bench.infer import randomise_bn
from mobilenet_skip.config.recipe import Recipe
from mobilenet_skip.data import records as data
from mobilenet_skip.data.demo import pack_demo_data
from mobilenet_skip.deploy import artifact, forms, loading, registry
from mobilenet_skip.models import get_model

from conftest import ROOT, TOOLS, call_tool

pytestmark = pytest.mark.slow  # each test starts tools in-process on a fresh export

SIDE = 32


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A random mobilenet x0.25 (BN statistics too) exported at 32 px with the demo digits' 10 class names, and
    the digits' val split packed (360 images): ``(prefix, val .rec, an image file)``."""
    root = str(tmp_path_factory.mktemp("forms"))
    rec = pack_demo_data(root, size=SIDE, splits=("val",))[0]
    with open(os.path.join(root, "val.synsets.txt")) as f:
        synsets = f.read().split()
    net = randomise_bn(get_model("mobilenet", multiplier=0.25, classes=len(synsets)), SIDE)
    prefix = os.path.join(root, "plain")
    artifact.export_network(net, prefix, SIDE, synsets)
    image = os.path.join(root, "images", "val", synsets[3], sorted(
        os.listdir(os.path.join(root, "images", "val", synsets[3])))[0])
    return prefix, rec, image


def _export(capsys, prefix, out, names, *extra):
    code, stdout, err = call_tool(capsys, "export_model", "--prefix", prefix, "--output", out,
                                  *(["--" + n for n in names] + list(extra)))
    assert code == 0, err
    return stdout


def _logits(prefix, images):
    return loading.open_export(prefix).block(images).asnumpy()


@pytest.mark.parametrize("name", sorted(registry.FORMS))
def test_every_registered_form_is_written_and_read_back(plain, tmp_path, capsys, name):
    """export_model.py --NAME writes the form where its suffix says; a form with a kind is
    a complete export that the loader reads back under that kind and that computes what
    the FP32 graph computes (correlated logits: INT8 rounds them)."""
    form = registry.FORMS[name]
    prefix, rec, _ = plain
    out = str(tmp_path / "m")
    extra = ["--calib-rec", rec, "--calib-batches", "2"] if "calib_rec" in vars(
        forms.form_options()) else []
    stdout = _export(capsys, prefix, out, [name] if form.help else [], *extra)
    target = out + form.suffix
    assert ("wrote %-6s %s" % (name, target)) in stdout
    if form.kind is None:
        assert os.path.getsize(target) > 0
        return
    assert artifact.read_info(target)["kind"] == form.kind
    images = next(iter(data.val_iter(Recipe.from_values(dict(rec_val=rec, input_size=SIDE,
                                                             batch_size=32)))))
    images = images.data[0].as_in_context(mx.cpu())
    ours, fp32 = _logits(target, images), _logits(prefix, images)
    assert ours.shape == fp32.shape
    assert np.corrcoef(ours.ravel(), fp32.ravel())[0, 1] > 0.9


def _toy(kind):
    """A loadable form writing the FP32 graph again under the sidecar kind ``kind``."""
    return registry.Form(kind, kind, "-" + kind, "also write PREFIX-" + kind,
                         derive=lambda base, out, options: forms.write_derived(
                             base, out, kind, checked=True))


def test_a_registered_loadable_kind_is_read_by_predict_and_eval(plain, tmp_path, capsys,
                                                              monkeypatch):
    """One register() call: export_model.py writes the new kind's export, and predict.py and
    eval_imagenet.py accept its sidecar; with the form gone, they name the unknown kind."""
    prefix, rec, image = plain
    monkeypatch.setitem(registry.FORMS, "toy-kind", _toy("toy-kind"))
    out = str(tmp_path / "m")
    _export(capsys, prefix, out, ["toy-kind"])
    with open(artifact.sidecar_path(out + "-toy-kind")) as f:
        side = json.load(f)
    assert side["kind"] == "toy-kind" and side["checked"] is True
    code, stdout, err = call_tool(capsys, "predict", "--prefix", out + "-toy-kind", "--json",
                                  image)
    assert code == 0, err
    toy = json.loads(stdout)
    assert "toy-kind" in toy["model"] and len(toy["predictions"][0]["top"]) == 5
    code, stdout, err = call_tool(capsys, "predict", "--prefix", prefix, "--json", image)
    assert json.loads(stdout)["predictions"] == toy["predictions"]  # the same graph
    scores = {}
    for name in (prefix, out + "-toy-kind"):
        code, stdout, err = call_tool(capsys, "eval_imagenet", "--prefix", name, "--rec-val",
                                      rec, "--json")
        assert code == 0, err
        scores[name] = json.loads(stdout)
    assert scores[prefix]["top5"] == scores[out + "-toy-kind"]["top5"]
    assert scores[prefix]["images"] == data.check_record(rec)

    monkeypatch.delitem(registry.FORMS, "toy-kind")
    for tool, argv in (("predict", [image]), ("eval_imagenet", ["--rec-val", rec])):
        code, stdout, err = call_tool(capsys, tool, "--prefix", out + "-toy-kind", *argv)
        assert code == 2 and err.count("\n") == 1, err
        assert "of kind 'toy-kind', which no registered form writes" in err


READER = """
import json, sys
sys.path.insert(0, %r)
import predict, eval_imagenet  # the readers, as the tools import them
from mobilenet_skip.deploy import artifact
base = artifact.describe({"variant": "mobilenet", "multiplier": 0.25, "classes": 10}, 32)
for kind in sys.argv[1:]:
    artifact.check_info(dict(base, kind=kind), kind)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("mobilenet_skip.deploy"))))
""" % TOOLS


def test_a_fresh_reader_knows_every_kind_the_writers_register():
    """A process that imports only predict.py and eval_imagenet.py accepts the sidecar of
    every loadable form export_model.py can write, without importing a writer."""
    writer_kinds = sorted({f.kind for f in forms.FORMS.values() if f.kind})
    assert {"fp32", "fused", "int8"} <= set(writer_kinds)
    res = subprocess.run([sys.executable, "-c", READER] + writer_kinds, capture_output=True,
                         text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    loaded = json.loads(res.stdout.splitlines()[-1])
    assert "mobilenet_skip.deploy.registry" in loaded
    assert not {"mobilenet_skip.deploy.forms", "mobilenet_skip.deploy.int8",
                "mobilenet_skip.deploy.onnx"} & set(loaded), loaded
