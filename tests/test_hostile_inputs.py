"""Hostile or careless inputs to predict, eval and export (issue 26): an --input-size of 0
or of 99999999999, a size whose feature maps MXNet cannot run, a val .rec of other
classes (MXNet and ONNX), a decompression bomb among images, and a garbage .onnx."""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mobilenet_skip.deploy import forms, limits, loading, runtime

from conftest import call_tool
from test_hostile_data import BOMB, _peak_mb, _png_bomb, val  # noqa: F401 (val: a fixture)

SIZE = 32
DIGITS = ["digit_%d" % d for d in range(10)]


def _export(tmp_path_factory, classes, names):
    """An untrained export at 32 px, width 0.25 (random BatchNorm statistics)."""
    from mobilenet_skip.bench.infer import randomise_bn
    from mobilenet_skip.deploy.artifact import export_network
    from mobilenet_skip.models import get_model
    prefix = str(tmp_path_factory.mktemp("export") / "m")
    net = randomise_bn(get_model("mobilenet", multiplier=0.25, classes=classes), SIZE)
    export_network(net, prefix, SIZE, synsets=names)
    return prefix


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """A 3-class export: trained on other data than the digits."""
    return _export(tmp_path_factory, 3, ["cat", "dog", "owl"])


@pytest.fixture(scope="module")
def ten(tmp_path_factory):
    """A 10-class export naming the digits' classes."""
    return _export(tmp_path_factory, 10, DIGITS)


def _images(val, n=2):
    root = os.path.join(os.path.dirname(val), "images", "val")
    return [os.path.join(root, DIGITS[d], sorted(os.listdir(os.path.join(root, DIGITS[d])))[0])
            for d in range(n)]


def _error(capsys, tool, *argv):
    """Run ``tool``; assert it ended with one ``error:`` line (exit 2) and return it."""
    code, out, err = call_tool(capsys, tool, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and lines and lines[-1].startswith("error: "), (code, out, err)
    assert "Traceback" not in err and [l for l in lines if l.startswith("error:")] == [lines[-1]]
    return lines[-1][len("error: "):], out


def _onnx(prefix, path):
    from mobilenet_skip.deploy.artifact import read_info
    from mobilenet_skip.deploy.onnx import export_onnx
    return export_onnx(loading.load_symbolic(prefix), read_info(prefix), path)


def _rec_alone(val, folder):
    """``val``'s .rec and .idx copied into ``folder`` without its .synsets.txt."""
    os.makedirs(folder, exist_ok=True)
    for ext in (".rec", ".idx"):
        shutil.copy2(val + ext, os.path.join(folder, "val" + ext))
    return os.path.join(folder, "val.rec")


# WEAK 9 and 11: --input-size 0, and one no array of MXNet can hold ---------------------

NOT_A_SIZE = ("--input-size {} is not a size: give a side of at least 32 px, or leave the "
              "flag out to use the size the model was trained at")
TOO_LARGE = ("--input-size 99999999999 is too large: MXNet 1.9.1 holds at most 2,147,483,646 "
             "values in one array (it is built without USE_INT64_TENSOR_SIZE), so a 3xSxS "
             "input allows a side of 26754 at most and the network's feature maps less; leave "
             "the flag out to use the size the model was trained at, or give a smaller one")


@pytest.mark.parametrize("side,line", [("0", NOT_A_SIZE.format(0)),
                                       ("-224", NOT_A_SIZE.format(-224)),
                                       ("99999999999", TOO_LARGE)],
                         ids=["zero", "negative", "past-the-input-cap"])
def test_an_input_size_that_is_no_size_is_one_line_in_predict_eval_and_export(
        val, three, tmp_path, capsys, side, line):
    """0 was taken for "not given" (the sidecar's 32 used without a word), 99999999999
    ended in MXNet's "larger than 2^31 elements" traceback."""
    out = str(tmp_path / "out" / "m")
    for tool, argv in (("predict", [_images(val)[0]]),
                       ("eval_imagenet", ["--rec-val", val + ".rec"]),
                       ("export_model", ["--output", out])):
        err, stdout = _error(capsys, tool, "--prefix", three, "--input-size", side, *argv)
        assert err == line and stdout == "", (tool, err)
    assert not os.path.exists(os.path.dirname(out))  # refused before anything is written


def _no_weights_placed(monkeypatch):
    """Memory without end, and a failure if anything reaches the weights or a forward."""
    monkeypatch.setattr(limits, "memory_available", lambda: 1 << 50)

    def placed(*args, **kwargs):
        raise AssertionError("the network ran: the size was not refused beforehand")
    monkeypatch.setattr(loading, "block_of", placed)
    monkeypatch.setattr(runtime, "graph_of", placed)
    monkeypatch.setattr(forms, "graph_of", placed)


MAP = ("--input-size 12000 is too large for {}: one 12000x12000 image makes its layer "
       "mobilenetskipN_block2_body_pw_fwd a 1x16x6000x6000 map of 2.3 GB (float32), and "
       "MXNet 1.9.1's oneDNN kernels crash (SIGSEGV) on a map of 2 GiB or more; use "
       "--input-size 11584 or less")


def _any_net(line):
    """``line`` with the number of the network's name (the networks built before it in
    the process that built it) as N."""
    return re.sub("mobilenetskip[0-9]+_", "mobilenetskipN_", line)


def test_a_size_whose_map_would_crash_onednn_is_refused_before_any_weight_is_placed(
        val, three, tmp_path, capsys, monkeypatch):
    """12000 px through a 0.25 net: block2's 1x1 output is 16 x 6000 x 6000 floats, 2.3 GB
    per image, where MXNet dies by SIGSEGV; where memory allows it, the export and a
    checkpoint (which eval and export trace at that size) are refused from shape
    inference."""
    _no_weights_placed(monkeypatch)
    err, _ = _error(capsys, "predict", "--prefix", three, "--input-size", "12000",
                    _images(val)[0])
    assert _any_net(err) == MAP.format(three)
    import mxnet as mx
    from mobilenet_skip.models import get_model
    net = get_model("mobilenet", multiplier=0.25, classes=3)
    net.initialize(mx.init.Xavier())
    params = str(tmp_path / "mobilenet-0001.params")
    net.save_parameters(params)
    err, _ = _error(capsys, "eval_imagenet", "--params", params, "--model", "mobilenet",
                    "--multiplier", "0.25", "--input-size", "12000", "--rec-val", val + ".rec")
    assert _any_net(err) == MAP.format(params)
    with open(str(tmp_path / "names.txt"), "w") as f:
        f.write("cat\ndog\nowl\n")
    err, _ = _error(capsys, "export_model", "--params", params, "--model", "mobilenet",
                    "--multiplier", "0.25", "--input-size", "12000", "--synsets",
                    str(tmp_path / "names.txt"), "--output", str(tmp_path / "out" / "m"))
    assert _any_net(err) == MAP.format(params)
    assert not os.path.exists(str(tmp_path / "out"))
    # the size it names passes every check
    sym = loading.load_symbolic(three).sym
    limits.check_input_size(sym, 11584, three)
    limits.check_batch(sym, 11584, 1, three)


def test_a_batch_that_no_array_of_mxnet_can_hold_names_the_batch_size_that_fits(
        val, three, capsys):
    """One 2048 px image runs, but a batch of 129 makes block2's output 129 x 16 x 1024 x
    1024 values, past MXNet's 2^31 - 1: predict refuses before classifying any."""
    image = _images(val)[0]
    err, out = _error(capsys, "predict", "--prefix", three, "--input-size", "2048",
                      "--batch-size", "200", *[image] * 129)
    assert _any_net(err) == (
        "--input-size 2048 is too large for a batch of 129 images through %s: it makes its "
        "layer mobilenetskipN_block2_body_pw_fwd an array of 129x16x1024x1024 = 2,164,260,864 "
        "values, more than the 2,147,483,646 that MXNet 1.9.1 holds in one array; use "
        "--batch-size 127 or less, or a smaller --input-size" % three)
    assert out == ""
    limits.check_batch(loading.load_symbolic(three).sym, 2048, 127, three)


_CONV_BN = ("import sys, mxnet as mx; h, w = map(int, sys.argv[1:]); "
            "y = mx.nd.Convolution(mx.nd.ones((1, 1, h, w)), mx.nd.ones((16, 1, 1, 1)), "
            "kernel=(1, 1), num_filter=16, no_bias=True); o = mx.nd.ones((16,)); "
            "mx.nd.BatchNorm(y, o, o, o, o, use_global_stats=True).wait_to_read()")


@pytest.mark.slow  # 4.5 GB and about 10 s per run
def test_mxnet_dies_on_a_feature_map_past_2_gib():
    """The MXNet bug the map limit exists for: if a future MXNet runs the first, drop it."""
    def run(h, w):
        return subprocess.run([sys.executable, "-c", _CONV_BN, str(h), str(w)],
                              capture_output=True, timeout=300).returncode
    from mobilenet_skip.models import MAX_MAP_VALUES
    assert 16 * 5793 * 5793 > MAX_MAP_VALUES >= 16 * 5792 * 5793
    assert run(5793, 5793) in (-11, -6)  # SIGSEGV (or the abort its handler ends in)
    assert run(5792, 5793) == 0


# WEAK 33 and 34: a val .rec of other classes ------------------------------------------

LABEL = ("{} holds label {:g} (batch {} of this pass), but the network has 3 classes (labels "
         "0-2); no score is given. Evaluate on the val .rec of the classes the model was "
         "trained on, with the .synsets.txt that tools/im2rec.py --list writes beside it so "
         "that their names are checked too")


def _first_label_past(rec, classes, batch=32):
    """``(label, batch number)`` of the first label of ``rec``, in reading order, that is
    not one of ``classes``, in batches of ``batch`` (eval's default)."""
    from mobilenet_skip.config.recipe import Recipe
    from mobilenet_skip.data import records
    batches = records.val_iter(Recipe.from_values({"rec_val": rec, "input_size": SIZE,
                                                   "batch_size": 359}))
    labels = next(iter(batches)).label[0].asnumpy()
    first = int(np.flatnonzero(labels >= classes)[0])
    return labels[first], first // batch + 1


def test_a_val_rec_of_more_classes_than_the_model_is_refused_before_scoring(
        val, three, tmp_path, capsys):
    """The digits' val (10 classes, no .synsets.txt beside it) on a 3-class export: its
    labels reach past the classes, where top-1 came out 0.178 beside a warning alone.
    Eval refuses at the first batch, as does export's --eval-rec."""
    rec = _rec_alone(val, str(tmp_path / "alone"))
    line = LABEL.format(rec, *_first_label_past(rec, 3))
    err, out = _error(capsys, "eval_imagenet", "--prefix", three, "--rec-val", rec)
    assert err == line and "top-1" not in out
    err, _ = _error(capsys, "eval_imagenet", "--prefix", three, "--rec-val", rec, "--json")
    assert err == line
    err, out = _error(capsys, "export_model", "--prefix", three, "--output",
                      str(tmp_path / "again" / "m"), "--eval-rec", rec)
    assert err == line and "top-1" not in out
    onnx = _onnx(three, str(tmp_path / "m3.onnx"))
    err, _ = _error(capsys, "eval_imagenet", "--onnx", onnx, "--rec-val", rec)
    assert err == line


def test_an_onnx_file_is_checked_against_val_s_class_names_as_an_export_is(
        val, ten, tmp_path, capsys):
    """A 10-class ONNX file of other classes scored 0.047 on the digits without a word:
    its names beside it are compared with val's, and their absence is warned about."""
    onnx = _onnx(ten, str(tmp_path / "items.onnx"))
    with open(str(tmp_path / "items.synsets.txt"), "w") as f:
        f.write("".join("item_%d\n" % i for i in range(10)))
    err, out = _error(capsys, "eval_imagenet", "--onnx", onnx, "--rec-val", val + ".rec")
    assert err == (
        "%s and %s name different classes (10 and 10): class 0 is 'item_0' in the model but "
        "'digit_0' in val. Labels follow the sorted folder names, so every later label would "
        "be shifted; give val the same class folders as the model (an empty folder is "
        "skipped too: put at least one image in each), then re-run tools/im2rec.py --list "
        "--recursive" % (tmp_path / "items.synsets.txt", val + ".synsets.txt"))
    assert out == ""
    os.remove(str(tmp_path / "items.synsets.txt"))
    code, out, err = call_tool(capsys, "eval_imagenet", "--onnx", onnx, "--rec-val",
                               val + ".rec")
    assert code == 0 and "top-1 accuracy" in out
    assert err.splitlines() == [
        "warning: no class names in %s, so the classes of %s.rec are not checked against the "
        "model's (a val folder missing a class would shift every later label); "
        "`tools/im2rec.py PREFIX ROOT --list --recursive` writes PREFIX.synsets.txt"
        % (tmp_path / "items.synsets.txt", val)]
    shutil.copy(ten + ".synsets.txt", str(tmp_path / "items.synsets.txt"))
    code, out, err = call_tool(capsys, "eval_imagenet", "--onnx", onnx, "--rec-val",
                               val + ".rec")
    assert code == 0 and err == "" and "top-1 accuracy" in out


# WEAK 47: a decompression bomb among the images -----------------------------------------

def test_a_png_bomb_among_images_is_refused_from_its_header_and_the_rest_classified(
        val, ten, tmp_path, capsys):
    """A 0.87 MB PNG of 30000x30000 (2.7 GB decoded) between two digits: it is answered
    with im2rec's reason, undecoded, like any unreadable image (exit 1), and both digits
    are classified."""
    bomb = str(tmp_path / "bomb.png")
    _png_bomb(bomb)
    first, second = _images(val)
    peak = _peak_mb()
    code, out, err = call_tool(capsys, "predict", "--prefix", ten, "--top", "1", first, bomb,
                               second)
    assert code == 1
    assert [l for l in out.splitlines() if not l.startswith("  ")] == [first, second]
    assert err.splitlines() == ["error: %s: %s" % (bomb, BOMB)]
    assert _peak_mb() - peak < 500  # decoding it would have taken 2,700 MB
    # --max-pixels sets the cap, as in im2rec: a digit is 32x32 = 1024 pixels
    code, out, err = call_tool(capsys, "predict", "--prefix", ten, "--max-pixels", "1023",
                               first)
    assert code == 1 and out == "" and err == (
        "error: %s: 32x32 pixels (1,024), more than the cap of 1,023 (a decompression "
        "bomb?): decoding it in colour takes 0.0 GB; pass --max-pixels 1024 to accept it\n"
        % first)
    code, out, _ = call_tool(capsys, "predict", "--prefix", ten, "--max-pixels", "1024", first)
    assert code == 0 and out.splitlines()[0] == first
    err, _ = _error(capsys, "predict", "--prefix", ten, "--max-pixels", "0", first)
    assert err == "--max-pixels must be at least 1, got 0"


# WEAK 58: a garbage .onnx ------------------------------------------------------------

@pytest.mark.parametrize("kind", ["random bytes", "text", "cut short"])
def test_a_garbage_onnx_file_is_one_line_naming_it(val, ten, tmp_path, capsys, kind):
    """Eval printed protobuf's DecodeError traceback."""
    path = str(tmp_path / "bad.onnx")
    if kind == "cut short":
        whole = open(_onnx(ten, str(tmp_path / "whole.onnx")), "rb").read()
        content = whole[:3000]
    else:
        content = (np.random.RandomState(0).bytes(5000) if kind == "random bytes"
                   else b"not an ONNX model\n")
    with open(path, "wb") as f:
        f.write(content)
    err, out = _error(capsys, "eval_imagenet", "--onnx", path, "--rec-val", val + ".rec")
    # between the brackets, protobuf's own words: "Error parsing message with type
    # 'onnx.ModelProto'", with a detail that depends on its version
    assert err.startswith("%s is not an ONNX model: protobuf cannot parse it (" % path), err
    assert err.endswith("), so it is cut short, damaged or another kind of file; re-export it "
                        "with tools/export_model.py --onnx"), err
    assert out == ""
