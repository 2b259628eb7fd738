"""Deployment: export, fused, INT8 and ONNX forms, and the single-crop evaluation,
on the trained demo network and on randomised networks with non-trivial BN statistics."""
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter

import mxnet as mx
import numpy as np
import pytest

from mobilenet_skip.config.recipe import Recipe
from mobilenet_skip.data import records as data
from mobilenet_skip.bench.infer import randomise_bn
from mobilenet_skip.deploy import artifact, forms, int8, loading, runtime, scoring, source
from mobilenet_skip.deploy import onnx as onnx_form
from mobilenet_skip.errors import UserError
from mobilenet_skip.models import get_model

from conftest import DEMO_EPOCHS, ROOT, TOOLS, call_tool, run_tool, tool_module


@pytest.fixture(scope="module")
def deployed(demo_run, tmp_path_factory):
    """export_model.py on the last demo epoch: every form, evaluated on the demo val set."""
    out = os.path.join(str(tmp_path_factory.mktemp("deploy")), "digits")
    res = run_tool("export_model", "--save-dir", demo_run.save_dir, "--epoch", str(DEMO_EPOCHS),
                   "--output", out, "--fused", "--int8", "--onnx", "--onnx-int8",
                   "--eval-rec", demo_run.val_rec)
    assert res.returncode == 0, res.stderr
    return out, res.stdout


def _val_batch(demo_run, n=64):
    it = data.val_iter(Recipe.from_values(dict(rec_val=demo_run.val_rec, input_size=32,
                                                batch_size=n)))
    return next(iter(it)).data[0].as_in_context(mx.cpu())


def _checkpoint_net(demo_run, epoch=DEMO_EPOCHS):
    return source.network_from_checkpoint(
        os.path.join(demo_run.save_dir, "%s-%04d.params" % (demo_run.model, epoch)),
        demo_run.model, 0.5, 10)


def _derive(prefix, name, out, **options):
    """The registered form ``name`` derived from the export ``prefix``, written to ``out``."""
    base = forms.Base(prefix, loading.load_symbolic(prefix), artifact.read_info(prefix), None)
    return forms.FORMS[name].resolved("derive")(base, out, forms.form_options(**options))


def _ops(prefix):
    with open(prefix + "-symbol.json") as f:
        return [n["op"] for n in json.load(f)["nodes"]]


def test_export_equals_the_in_memory_network(demo_run, deployed):
    x = _val_batch(demo_run)
    ours = _checkpoint_net(demo_run)(x).asnumpy()  # imperative, never hybridized
    loaded = mx.gluon.SymbolBlock.imports(deployed[0] + "-symbol.json", ["data"],
                                          deployed[0] + "-0000.params")
    theirs = loaded(x).asnumpy()
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.abs(ours).max() > 1  # real logits, not vanishing ones
    with open(deployed[0] + ".json") as f:
        side = json.load(f)
    assert (side["kind"], side["variant"], side["multiplier"], side["classes"],
            side["input_size"], side["crop_ratio"]) == ("fp32", demo_run.model, 0.5, 10, 32, 0.875)


@pytest.mark.parametrize("model", ["mobilenet", "full-connect-pre-act"])
def test_random_network_export_module_and_fused_agree(model, tmp_path):
    net = randomise_bn(get_model(model, 0.25, classes=7), 64)
    x = mx.nd.random.normal(shape=(3, 3, 64, 64))
    ours = net(x).asnumpy()
    prefix = str(tmp_path / "m")
    artifact.export_network(net, prefix, 64)
    plain = loading.open_export(prefix).block(x).asnumpy()
    module = runtime.ModuleNet(prefix, [mx.cpu()], 3, 64)(x).asnumpy()
    _derive(prefix, "fused", prefix + "-fused")
    fused = loading.open_export(prefix + "-fused").block(x).asnumpy()
    assert np.abs(ours).max() > 0.1
    assert np.abs(plain - ours).max() < 1e-5
    assert np.abs(module - plain).max() < 1e-5
    assert np.abs(fused - plain).max() < 1e-4
    # every conv became a oneDNN subgraph with its BN (and ReLU/sum) inside
    assert _ops(prefix + "-fused").count("_sg_mkldnn_conv") == _ops(prefix).count("Convolution")
    if model == "mobilenet":  # post-activation: no BatchNorm left outside a conv
        assert "BatchNorm" not in _ops(prefix + "-fused")


def test_module_and_fused_agree_on_the_demo_net(demo_run, deployed):
    x = _val_batch(demo_run)
    plain = loading.open_export(deployed[0]).block(x).asnumpy()
    module = runtime.ModuleNet(deployed[0], [mx.cpu()], 64, 32)(x).asnumpy()
    fused = loading.open_export(deployed[0] + "-fused").block(x).asnumpy()
    assert np.abs(module - plain).max() < 1e-5
    assert np.abs(fused - plain).max() < 1e-4


def test_int8_agrees_with_fp32_on_the_demo_val_set(demo_run, deployed):
    out, stdout = deployed
    fp32, int8 = [scoring.evaluate_export(p, demo_run.val_rec, keep_logits=True)
                  for p in (out, out + "-int8")]
    agree = (fp32["logits"].argmax(1) == int8["logits"].argmax(1)).mean()
    assert agree >= 0.97
    assert "_contrib_quantize_v2" in _ops(out + "-int8")
    # export_model printed the same drop and agreement
    line = next(ln for ln in stdout.splitlines() if ln.startswith("int8   top-1"))
    assert "top-1 %.4f" % int8["top1"] in line and "%.1f%%" % (100 * agree) in line
    assert "drop %+.4f" % (fp32["top1"] - int8["top1"]) in line
    with open(out + "-int8.json") as f:
        side = json.load(f)
    assert side["kind"] == "int8" and side["calib_images"] == 320  # 10 batches of 32
    assert side["calib_rec"] == os.path.abspath(demo_run.train_rec)  # not the val images


def test_int8_can_keep_the_first_and_last_layer_fp32(demo_run, deployed, tmp_path):
    info = artifact.read_info(deployed[0])
    images = int8.calibration_images(demo_run.train_rec, info, 2)
    int8.export_int8(loading.load_symbolic(deployed[0]), info, str(tmp_path / "q"), images,
                     keep_ends_fp32=True)
    with open(str(tmp_path / "q-symbol.json")) as f:
        nodes = {n["name"]: n["op"] for n in json.load(f)["nodes"]}
    kept = artifact.read_info(str(tmp_path / "q"))["fp32_layers"]
    assert len(kept) == 2 and all(nodes[name] != "null" for name in kept)
    assert not any(name.startswith("quantized_" + kept[0]) for name in nodes)


def test_onnx_runs_in_onnxruntime_like_mxnet(demo_run, deployed):
    import onnx
    import onnxruntime as ort
    model = onnx.load(deployed[0] + ".onnx")
    onnx.checker.check_model(model)
    # opset 13 and IR version 7 (ONNX Runtime 1.16 refuses the IR 11 of onnx's newest opset)
    assert model.ir_version == 7
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 13)]
    assert "(ONNX opset 13, IR version 7)" in deployed[1]
    stored = json.loads({p.key: p.value for p in model.metadata_props}["mobilenet_skip"])
    assert (stored["input_size"], stored["crop_ratio"], stored["classes"]) == (32, 0.875, 10)
    assert [i.name for i in model.graph.input] == ["data"]  # weights are initializers only
    session = ort.InferenceSession(deployed[0] + ".onnx", providers=["CPUExecutionProvider"])
    x = _val_batch(demo_run)
    plain = loading.open_export(deployed[0]).block(x).asnumpy()
    for n in (64, 1):  # the batch dimension is free
        got = session.run(None, {"data": x[:n].asnumpy()})[0]
        assert np.abs(got - plain[:n]).max() < 1e-4


def test_onnx_opset_is_passed_to_mxnets_converter(deployed, tmp_path, capsys, monkeypatch):
    """The opset reaches MXNet's converter (which picks each op's translation by it), the
    file declares it with the IR version onnx pairs with it, and an opset the converter
    cannot write is refused before any file is written."""
    import onnx
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    seen, convert = [], MXNetGraph.create_onnx_graph_proto

    def spy(self, *args, **kwargs):
        seen.append(kwargs["opset_version"])
        return convert(self, *args, **kwargs)
    monkeypatch.setattr(MXNetGraph, "create_onnx_graph_proto", spy)
    path = _derive(deployed[0], "onnx", str(tmp_path / "o17.onnx"), onnx_opset=17)
    assert seen == [17]
    assert onnx_form.onnx_versions(onnx.load(path)) == (8, 17)  # onnx 1.12: opset 17, IR 8
    for bad in ("11", "99"):
        err = _one_line_error(capsys, "export_model", [
            "--prefix", deployed[0], "--output", str(tmp_path / "x"), "--onnx",
            "--onnx-opset", bad])
        assert "--onnx-opset %s" % bad in err and "opsets 12 to" in err
    assert sorted(os.listdir(str(tmp_path))) == ["o17.onnx"]


def test_onnx_evaluated_in_onnxruntime_gives_mxnets_top1(demo_run, deployed):
    """The demo's ONNX file on the demo val set through --runtime onnxruntime: the same
    images, crop and normalisation as the MXNet path, so top-1 within one image."""
    images = 359
    res = run_tool("eval_imagenet", "--runtime", "onnxruntime", "--onnx", deployed[0] + ".onnx",
                   "--rec-val", demo_run.val_rec, "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    ref = scoring.evaluate_export(deployed[0], demo_run.val_rec)
    assert got["images"] == ref["images"] == images and got["runtime"] == "onnxruntime"
    assert abs(round(got["top1"] * images) - round(ref["top1"] * images)) <= 1
    assert abs(round(got["top5"] * images) - round(ref["top5"] * images)) <= 1
    assert got["input_size"] == 32 and ref["top1"] > 0.5


def test_onnx_eval_input_errors(demo_run, deployed, capsys):
    onnx_file = deployed[0] + ".onnx"
    for argv, words in [
            (["--runtime", "onnxruntime"], "needs --onnx FILE"),
            (["--onnx", onnx_file, "--prefix", deployed[0]], "drop --prefix"),
            (["--onnx", onnx_file, "--input-size", "64"], "takes 32x32 images only"),
            (["--onnx", onnx_file + ".gone"], "not found"),
            (["--onnx", onnx_file, "--runtime", "mxnet"], "runs in ONNX Runtime")]:
        err = _one_line_error(capsys, "eval_imagenet", argv + ["--rec-val", demo_run.val_rec])
        assert words in err, (argv, err)


def _onnx_ops(path):
    import onnx
    return Counter(n.op_type for n in onnx.load(path).graph.node)


def test_onnx_int8_scores_like_fp32_and_describes_itself_as_int8_does(demo_run, deployed):
    """export_model.py --onnx-int8 on the demo: an ONNX Runtime INT8 file whose metadata
    carries the MXNet INT8 sidecar's calibration entries, which --eval-rec scores beside
    FP32 (>= 99% the same class) and eval_imagenet.py --runtime onnxruntime scores alike."""
    out, stdout = deployed
    path = out + "-int8.onnx"
    ops = _onnx_ops(path)
    assert ops["QLinearConv"] >= 20 and ops["QuantizeLinear"] > 0 and "Conv" not in ops
    assert _onnx_ops(out + ".onnx")["Conv"] == ops["QLinearConv"]  # every conv quantized
    mx_side = artifact.read_info(out + "-int8")
    side = onnx_form.read_onnx_info(path)
    for key in ("kind", "derived_from", "calib_rec", "calib_mode", "calib_images",
                "fp32_layers", "variant", "multiplier", "classes", "input_size"):
        assert side[key] == mx_side[key], key
    assert side["calib_images"] == 320 and side["quant_format"] == "qoperator"
    assert os.path.getsize(path) < 0.4 * os.path.getsize(out + ".onnx")  # weights stored int8
    assert "wrote onnx-int8 %s (qoperator, weights per channel, from ONNX opset 13)" % path \
        in stdout
    assert re.search(r"^onnx-int8 (buys latency|is slower here): [\d.]+ ms vs ONNX FP32 [\d.]+ ms",
                     stdout, re.M)
    assert "onnx-int8 file size: %.2f MB vs ONNX FP32 %.2f MB" % (
        os.path.getsize(path) / 1e6, os.path.getsize(out + ".onnx") / 1e6) in stdout
    fp32 = scoring.evaluate_export(out, demo_run.val_rec, keep_logits=True)
    int8 = scoring.evaluate_onnx(path, demo_run.val_rec, keep_logits=True)
    agree = (fp32["logits"].argmax(1) == int8["logits"].argmax(1)).mean()
    assert agree >= 0.99 and np.abs(int8["logits"] - fp32["logits"]).max() > 1e-4
    line = next(ln for ln in stdout.splitlines() if ln.startswith("onnx-int8 top-1"))
    assert "top-1 %.4f" % int8["top1"] in line and "%.1f%%" % (100 * agree) in line
    res = run_tool("eval_imagenet", "--runtime", "onnxruntime", "--onnx", path,
                   "--rec-val", demo_run.val_rec, "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert (got["top1"], got["images"]) == (int8["top1"], 359)


def test_onnx_int8_of_a_tiny_export_keeps_its_ends_or_writes_qdq(demo_run, tmp_path):
    """A 0.25-width 32-px export calibrated on 16 demo digits: --int8-keep-ends leaves the
    first conv and the classifier FP32 (by name), and qdq writes Q/DQ pairs around float
    convs instead of QLinearConv."""
    net = randomise_bn(get_model("full-connect-pre-act", 0.25, classes=10), 32)
    prefix = str(tmp_path / "tiny")
    artifact.export_network(net, prefix, 32)
    calib = dict(calib_rec=demo_run.train_rec, calib_batches=1, batch_size=16)
    kept = _derive(prefix, "onnx-int8", prefix + "-q.onnx", int8_keep_ends=True, **calib)
    qdq = _derive(prefix, "onnx-int8", prefix + "-qdq.onnx", onnx_int8_format="qdq", **calib)
    import onnx
    nodes = {n.name: n.op_type for n in onnx.load(kept).graph.node}
    side = onnx_form.read_onnx_info(kept)
    assert side["calib_images"] == 16 and len(side["fp32_layers"]) == 2
    assert [nodes[name] for name in side["fp32_layers"]] == ["Conv", "Gemm"]
    assert Counter(nodes.values())["QLinearConv"] == 32 - 1
    ops = _onnx_ops(qdq)
    assert ops["Conv"] == 32 and "QLinearConv" not in ops
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] >= 32
    assert onnx_form.read_onnx_info(qdq)["quant_format"] == "qdq"


def test_onnx_int8_without_ml_dtypes_is_one_line_naming_the_pinned_pip_command(demo_run,
                                                                                 tmp_path):
    """ml_dtypes (which onnxruntime.quantization imports) missing: one line with the pip
    command of requirements/test.txt's pin, and nothing written."""
    out = str(tmp_path / "m")
    code = ("import runpy, sys; sys.modules['ml_dtypes'] = None; sys.path.insert(0, %r); "
            "sys.argv = ['export_model.py', '--prefix', %r, '--output', %r, '--onnx-int8']; "
            "runpy.run_path(%r, run_name='__main__')"
            % (TOOLS, demo_run.prefix, out, os.path.join(TOOLS, "export_model.py")))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    with open(os.path.join(ROOT, "requirements", "test.txt")) as f:
        pin = next(ln.strip() for ln in f if ln.startswith("ml_dtypes=="))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr == ("error: --onnx-int8 needs ml_dtypes, which ONNX Runtime's "
                          "quantisation imports: pip install %s\n" % pin)
    assert os.listdir(str(tmp_path)) == []


def test_int8_summary_says_what_it_buys_and_what_not(deployed):
    """The INT8 .params is FP32-sized (MXNet keeps conv weights FP32); the summary says so
    with the measured sizes and a measured latency."""
    from mobilenet_skip.deploy.int8_report import params_storage
    out, stdout = deployed
    fp32 = params_storage(out + "-0000.params")
    int8 = params_storage(out + "-int8-0000.params")
    assert int8["dtypes"]["float32"] > 10 * int8["dtypes"].get("int8", 0) > 0
    assert 0.9 < int8["bytes"] / fp32["bytes"] <= 1.0
    lines = {ln.split(":")[0]: ln for ln in stdout.splitlines() if ln.startswith("int8 ")}
    size = lines["int8 file size"]
    assert ".params %.2f MB vs FP32 %.2f MB" % (int8["bytes"] / 1e6, fp32["bytes"] / 1e6) in size
    assert "%d float32, %d int8 tensors" % (int8["dtypes"]["float32"], int8["dtypes"]["int8"]) \
        in size
    latency = lines.get("int8 buys latency") or lines["int8 is slower here"]
    int8_ms, fp32_ms = (float(v) for v in re.findall(r"([\d.]+) ms", latency))
    assert ("buys latency" in latency) == (int8_ms < fp32_ms), latency
    assert float(latency.split("(")[1].split("x")[0]) > 0


@pytest.mark.parametrize("int8_ms,words", [(1.0, "int8 buys latency: 1.00 ms vs FP32 2.00"),
                                           (3.0, "int8 is slower here: 3.00 ms vs FP32 2.00")])
def test_the_int8_line_says_what_was_measured(int8_ms, words):
    from mobilenet_skip.deploy.int8_report import format_int8_report, format_onnx_int8_report
    r = {"int8_ms": int8_ms, "fp32_ms": 2.0, "latency_ratio": int8_ms / 2.0, "int8_bytes": 1e6,
         "fp32_bytes": 1e6, "size_ratio": 1.0, "int8_dtypes": {"float32": 3}}
    assert format_int8_report(r).startswith(words)
    assert format_onnx_int8_report(r).startswith("onnx-" + words.replace("FP32", "ONNX FP32"))


def test_eval_reports_the_training_runs_validation(demo_run, tmp_path):
    """The checkpoint of epoch e gives metrics.csv's val_top1 of epoch e exactly (same
    images, same crop); the run's own export is its last epoch (the demo recipe's
    export_epoch)."""
    images = 359
    last = demo_run.metrics[-1]
    res = run_tool("eval_imagenet", "--save-dir", demo_run.save_dir, "--epoch", str(last["epoch"]),
                   "--rec-val", demo_run.val_rec, "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["images"] == images and got["images_per_s"] > 0 and got["device"] == "cpu(0)"
    assert round(got["top1"] * images) == round(last["val_top1"] * images)
    assert round(got["top5"] * images) == round(last["val_top5"] * images)
    # an earlier epoch (kept by keep_checkpoints: 2) gives its own row, not the last one
    before = demo_run.metrics[-2]
    src = source.load_source(save_dir=demo_run.save_dir, epoch=before["epoch"])
    artifact.export_network(src.net, str(tmp_path / "e"), 32, info=src.info)
    r = scoring.evaluate_export(str(tmp_path / "e"), demo_run.val_rec)
    assert round(r["top1"] * images) == round(before["val_top1"] * images) != round(
        last["val_top1"] * images)
    assert artifact.read_info(demo_run.prefix)["epoch"] == last["epoch"]
    for api in ("symbolblock", "module"):
        r = scoring.evaluate_export(demo_run.prefix, demo_run.val_rec, api=api)
        assert round(r["top1"] * images) == round(last["val_top1"] * images), api
        assert round(r["top5"] * images) == round(last["val_top5"] * images), api


@pytest.mark.parametrize("api", ["symbolblock", "module"])
def test_a_checkpoint_is_scored_in_memory_as_its_export_is(demo_run, capsys, monkeypatch, api):
    """eval_imagenet.py --save-dir scores the checkpoint's network in memory: nothing is
    written, and every logit equals the one the run's export of that epoch gives."""
    exported = scoring.evaluate_export(demo_run.prefix, demo_run.val_rec, api=api,
                                       keep_logits=True)
    assert artifact.read_info(demo_run.prefix)["epoch"] == DEMO_EPOCHS

    def no_export(*args, **kwargs):
        raise AssertionError("the checkpoint was exported to be scored")
    monkeypatch.setattr(artifact, "write_graph", no_export)
    monkeypatch.setattr(artifact, "export_network", no_export)
    src = source.load_source(save_dir=demo_run.save_dir, epoch=DEMO_EPOCHS)
    r = scoring.score(runtime.network_runner(src.net, src.info, src.path, api=api),
                      demo_run.val_rec, keep_logits=True)
    assert np.array_equal(r["logits"], exported["logits"])
    code, out, err = call_tool(capsys, "eval_imagenet", "--save-dir", demo_run.save_dir,
                               "--epoch", str(DEMO_EPOCHS), "--rec-val", demo_run.val_rec,
                               "--api", api, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert (got["top1"], got["top5"], got["api"]) == (exported["top1"], exported["top5"], api)


def test_eval_prints_accuracy_error_speed_and_device(demo_run, capsys):
    code, out, _ = call_tool(capsys, "eval_imagenet", "--prefix", demo_run.prefix, "--rec-val",
                             demo_run.val_rec, "--api", "module")
    assert code == 0
    for words in ("top-1 accuracy 0.9", "top-5 accuracy", "error 0.0", "images/s on cpu(0)",
                  "359 images", "full-connect-pre-act x0.5, 10 classes, input 32"):
        assert words in out


def _one_line_error(capsys, tool, argv):
    code, _, err = call_tool(capsys, tool, *argv)
    assert code == 2 and err.startswith("error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("flags,words", [
    (["--model", "mobilenet"], "pass the --model"),
    (["--model", "full-connect-pre-act", "--multiplier", "1.0"], "pass the --multiplier"),
    (["--model", "full-connect-pre-act", "--multiplier", "0.5", "--classes", "1000"],
     "--multiplier/--classes"),
])
def test_wrong_model_or_width_for_a_checkpoint(demo_run, tmp_path, capsys, flags, words):
    params = os.path.join(str(tmp_path), "m-0005.params")
    shutil.copy(os.path.join(demo_run.save_dir, "%s-%04d.params" % (demo_run.model, DEMO_EPOCHS)),
                params)  # no config.yaml beside it: the flags are all there is
    err = _one_line_error(capsys, "export_model", ["--params", params, "--output",
                                                   str(tmp_path / "out")] + flags)
    assert words in err and params in err
    assert os.listdir(str(tmp_path)) == ["m-0005.params"]  # nothing written


def test_checkpoint_without_model_or_epoch_is_named(demo_run, tmp_path, capsys):
    params = str(tmp_path / "m-0005.params")
    shutil.copy(os.path.join(demo_run.save_dir, "%s-%04d.params" % (demo_run.model, 5)), params)
    assert "pass --model" in _one_line_error(capsys, "export_model",
                                             ["--params", params, "--output", params[:-7]])
    err = _one_line_error(capsys, "export_model", ["--save-dir", demo_run.save_dir, "--epoch",
                                                   "99", "--output", str(tmp_path / "o")])
    assert "no checkpoint of epoch 99" in err and "complete ones: " in err


def test_preconditions_fail_before_anything_is_written(demo_run, tmp_path, capsys):
    out = str(tmp_path / "o")
    err = _one_line_error(capsys, "export_model", [
        "--save-dir", demo_run.save_dir, "--epoch", "5", "--output", out, "--int8",
        "--calib-rec", str(tmp_path / "missing.rec")])
    assert "missing.rec does not exist" in err
    assert os.listdir(str(tmp_path)) == []


def test_missing_and_mismatched_export_files(demo_run, deployed, tmp_path, capsys):
    err = _one_line_error(capsys, "eval_imagenet", ["--prefix", deployed[0] + "-symbol.json",
                                                    "--rec-val", demo_run.val_rec])
    assert "without the -symbol.json ending" in err
    # params of another network under this graph
    other = str(tmp_path / "other")
    artifact.export_network(randomise_bn(get_model("full-connect-pre-act", 0.25, 10), 32), other, 32)
    mixed = str(tmp_path / "mixed")
    shutil.copy(deployed[0] + "-symbol.json", mixed + "-symbol.json")
    shutil.copy(other + "-0000.params", mixed + "-0000.params")
    err = _one_line_error(capsys, "eval_imagenet", ["--prefix", mixed, "--rec-val",
                                                    demo_run.val_rec, "--input-size", "32"])
    assert "does not fit" in err and "different exports" in err
    # a synsets file of another data set
    shutil.copy(other + "-0000.params", mixed + "-0000.params")
    shutil.copy(other + "-symbol.json", mixed + "-symbol.json")
    with open(mixed + ".synsets.txt", "w") as f:
        f.write("cat\ndog\n")
    with pytest.raises(UserError, match="names 2 classes but .* outputs 10"):
        loading.open_export(mixed, 32)  # no sidecar: the size must be given


def test_eval_input_errors(demo_run, tmp_path, capsys):
    err = _one_line_error(capsys, "eval_imagenet", ["--prefix", demo_run.prefix, "--rec-val",
                                                    str(tmp_path / "val.rec")])
    assert "does not exist" in err
    if not mx.runtime.Features().is_enabled("CUDA"):
        err = _one_line_error(capsys, "eval_imagenet", ["--prefix", demo_run.prefix,
                                                        "--rec-val", demo_run.val_rec,
                                                        "--gpus", "0"])
        assert "CPU build" in err


def test_export_run_writes_what_training_wrote(demo_run, tmp_path, caplog):
    """deploy.export_run on a finished run folder: the files, sidecar and log line of the
    export training ends with; an explicit epoch exports that one."""
    import logging
    from mobilenet_skip.deploy import export_run
    run = str(tmp_path / "run")
    shutil.copytree(demo_run.save_dir, run)
    for ending in ("-symbol.json", "-0000.params", ".json"):
        os.remove(os.path.join(run, demo_run.model + ending))
    with caplog.at_level(logging.INFO, logger="mobilenet_skip"):
        prefix = export_run(run)
    assert prefix == os.path.join(run, demo_run.model)
    with open(prefix + ".json") as f, open(demo_run.prefix + ".json") as g:
        ours, theirs = json.load(f), json.load(g)
    # each sidecar hashes its own files, whose weight names hold gluon's block counter
    assert set(ours.pop("sha256")) == set(theirs.pop("sha256"))
    assert ours == theirs  # epoch, val_top1, export_epoch, last/best, BN
    with open(prefix + ".synsets.txt") as f, open(demo_run.prefix + ".synsets.txt") as g:
        assert f.read() == g.read()
    assert _ops(prefix) == _ops(demo_run.prefix)
    # the same weights; names differ only in gluon's per-process block counter
    ours, theirs = [{re.sub(r"mobilenetskip\d+_", "", k): v
                     for k, v in mx.nd.load(p + "-0000.params").items()}
                    for p in (prefix, demo_run.prefix)]
    assert sorted(ours) == sorted(theirs)
    assert all((ours[k] == theirs[k]).min().asscalar() == 1 for k in ours)
    last = demo_run.metrics[-1]
    assert ("exported the last epoch, %d (val top1 %.4f), to %s-symbol.json"
            % (last["epoch"], last["val_top1"], prefix)) in caplog.text
    before = demo_run.metrics[-2]
    info = artifact.read_info(export_run(run, epoch=before["epoch"]))
    assert (info["epoch"], info["val_top1"], info["last_epoch"]) == (
        before["epoch"], before["val_top1"], last["epoch"])


def test_a_registered_form_is_a_flag_that_writes_its_file(demo_run, tmp_path, capsys,
                                                          monkeypatch):
    """One Form entry: export_model.py gains --toy (and the form's own --toy-note) and
    writes PREFIX.toy.txt, derived from the graph in memory."""
    def add_arguments(parser):
        parser.add_argument("--toy-note", default="hello", help="first word of the file")

    def derive(base, out, options):
        with open(out, "w") as f:
            f.write("%s %d %s\n" % (options.toy_note, len(base.graph.arg_params),
                                    base.info["kind"]))
        return out
    monkeypatch.setitem(forms.FORMS, "toy", forms.Form(
        "toy", None, ".toy.txt", "also write PREFIX.toy.txt", add_arguments, derive=derive))
    args = tool_module("export_model").parse_args(["--output", "x", "--toy"])
    assert args.toy is True and args.toy_note == "hello" and args.fused is False
    out = str(tmp_path / "m")
    code, stdout, err = call_tool(capsys, "export_model", "--prefix", demo_run.prefix,
                                  "--output", out, "--toy", "--toy-note", "hi")
    assert code == 0, err
    with open(out + ".toy.txt") as f:
        words = f.read().split()
    assert words[0] == "hi" and int(words[1]) > 10 and words[2] == "fp32"
    assert "wrote toy    %s.toy.txt" % out in stdout
    assert os.path.isfile(out + "-symbol.json")  # the FP32 export it derives from


# --- exports that never destroy, and sidecars that fit ----------------------------------

def _digests(folder):
    """``{name: md5}`` of every file in ``folder``."""
    import hashlib
    found = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                found[name] = hashlib.md5(f.read()).hexdigest()
    return found


@pytest.mark.parametrize("tag", ["%04d" % DEMO_EPOCHS, "interrupted"])
def test_export_onto_a_checkpoints_prefix_is_refused_and_the_run_still_resumes(
        demo_run, tmp_path, tag):
    """--output RUN/<model>-0005 would write its sidecar over the checkpoint's marker and
    break --resume: it is refused, and nothing in the run folder changes."""
    run = str(tmp_path / "run")
    shutil.copytree(demo_run.save_dir, run)
    if tag == "interrupted":  # a Ctrl-C checkpoint: the same trio under another tag
        for ext in ("json", "params", "states"):
            shutil.copy(os.path.join(run, "%s-%04d.%s" % (demo_run.model, DEMO_EPOCHS, ext)),
                        os.path.join(run, "%s-interrupted.%s" % (demo_run.model, ext)))
    before = _digests(run)
    res = run_tool("export_model", "--save-dir", run, "--epoch", str(DEMO_EPOCHS), "--output",
                   os.path.join(run, "%s-%s" % (demo_run.model, tag)))
    marker = os.path.join(run, "%s-%s.json" % (demo_run.model, tag))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("error: --output would overwrite %s, a training checkpoint's "
                                 "file" % marker)
    assert _digests(run) == before
    from mobilenet_skip.runs.checkpoints import CheckpointDir
    assert CheckpointDir(run, demo_run.model).newest()["epoch"] == DEMO_EPOCHS


def test_export_onto_a_json_that_is_not_a_sidecar_is_refused(demo_run, tmp_path, capsys):
    out = str(tmp_path / "m")
    with open(out + ".json", "w") as f:
        f.write('{"mine": 1}\n')
    err = _one_line_error(capsys, "export_model", ["--prefix", demo_run.prefix, "--output",
                                                   out])
    assert "would overwrite %s.json, a JSON file that is not an export's sidecar" % out in err
    assert os.listdir(str(tmp_path)) == ["m.json"]


class _FullOnSecondFile(object):
    """``os.fsync`` that reports a full disk on its ``n``-th call: the staged files are
    synced one by one, so the 2nd file of the export set is the one that fails."""

    def __init__(self, n=2):
        import errno
        self.n, self.calls, self.errno, self.real = n, 0, errno.ENOSPC, os.fsync

    def __call__(self, fd):
        self.calls += 1
        if self.calls == self.n:
            raise OSError(self.errno, "No space left on device")
        return self.real(fd)


def test_a_full_disk_on_the_second_file_leaves_no_partial_export(demo_run, tmp_path, capsys,
                                                                 monkeypatch):
    """The export set is staged, then renamed into place with the sidecar last: a full disk
    while writing the params leaves no -symbol.json alone (a fresh prefix) and an earlier
    export exactly as it was (the same prefix again), and no temporary file."""
    fresh, again = tmp_path / "fresh", tmp_path / "again"
    fresh.mkdir()
    again.mkdir()
    code, _, err = call_tool(capsys, "export_model", "--prefix", demo_run.prefix, "--output",
                             str(again / "m"))
    assert code == 0, err
    before = _digests(str(again))
    assert sorted(before) == ["m-0000.params", "m-symbol.json", "m.json", "m.synsets.txt"]
    other = str(tmp_path / "other")  # another network re-exported over the earlier one
    net = randomise_bn(get_model("full-connect-pre-act", 0.5, 10), 32)
    artifact.export_network(net, other, 32, synsets=demo_run.prefix + ".synsets.txt")
    for folder, source_prefix in ((fresh, demo_run.prefix), (again, other)):
        monkeypatch.setattr(os, "fsync", _FullOnSecondFile())
        err = _one_line_error(capsys, "export_model", ["--prefix", source_prefix, "--output",
                                                       str(folder / "m")])
        monkeypatch.undo()
        assert "the disk holding %s is full" % folder in err
        assert _digests(str(folder)) == ({} if folder == fresh else before)


def test_write_graph_commits_the_sidecar_last(tmp_path, monkeypatch):
    """Renames happen in file order with the sidecar last, after the old sidecar is gone:
    whoever sees a sidecar sees the whole set."""
    net = randomise_bn(get_model("mobilenet", 0.25, 10), 32)
    prefix = str(tmp_path / "m")
    artifact.export_network(net, prefix, 32, synsets=["c%d" % i for i in range(10)])
    seen, real = [], os.replace

    def replace(src, dst):
        seen.append((os.path.basename(dst), os.path.isfile(prefix + ".json")))
        return real(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    artifact.export_network(net, prefix, 32, synsets=["c%d" % i for i in range(10)])
    assert seen == [("m-symbol.json", False), ("m-0000.params", False),
                    ("m.synsets.txt", False), ("m.json", False)]


def _tiny_export(folder, model, multiplier=0.25):
    prefix = os.path.join(str(folder), "%s-x%g" % (model, multiplier))
    artifact.export_network(randomise_bn(get_model(model, multiplier, 10), 32), prefix, 32,
                            synsets=["c%d" % i for i in range(10)])
    return prefix


@pytest.mark.slow
@pytest.mark.parametrize("model,multiplier,words", [
    ("mobilenet", 0.25, "its layers differ from mobilenet x0.25's"),
    ("full-connect-pre-act", 0.5,
     "its first convolution has 8 filters, full-connect-pre-act x0.5 has 16"),
])
def test_a_sidecar_of_another_model_or_width_is_refused(tmp_path, model, multiplier, words):
    """A sidecar saying mobilenet, or width 0.5, beside a full-connect-pre-act x0.25 graph
    with the same class count is refused, not trusted for its preprocessing."""
    from PIL import Image
    ours = _tiny_export(tmp_path, "full-connect-pre-act")
    theirs = _tiny_export(tmp_path, model, multiplier)
    with open(ours + ".json") as f:
        own = f.read()
    shutil.copy(theirs + ".json", ours + ".json")
    image = str(tmp_path / "x.png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(image)
    for tool, argv in (("predict", [image]), ("export_model", ["--output",
                                                               str(tmp_path / "out")])):
        res = run_tool(tool, "--prefix", ours, *argv)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
        assert res.stderr.startswith("error: %s.json describes %s x%g but %s-symbol.json holds "
                                     "another model or width (%s)"
                                     % (ours, model, multiplier, ours, words)), res.stderr
    assert not os.path.exists(str(tmp_path / "out-symbol.json"))
    with open(ours + ".json", "w") as f:
        f.write(own)
    assert loading.open_export(ours).info["variant"] == "full-connect-pre-act"  # its own: fine
