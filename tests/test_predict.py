"""Prediction from the exported files alone: validation's preprocessing on one image,
tools/predict.py, and the plain-MXNet snippet the docs show (issue #5)."""
import io
import json
import os
import re
import shutil
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

from mobilenet_skip.config.recipe import Recipe
from mobilenet_skip.data import records as data
from mobilenet_skip.data.preprocess import Preprocessing
from mobilenet_skip import recordio
from mobilenet_skip.deploy import images

import docpages
from conftest import ROOT, call_tool, run_tool

EXAMPLE = os.path.join(ROOT, "examples", "plain_mxnet_predict.py")


@pytest.mark.parametrize("shape,ext", [((48, 80), ".png"), ((77, 50), ".jpg"),
                                       ((301, 451), ".png"), ((64, 64), ".jpg")])
def test_preprocess_is_the_validation_transform(tmp_path, shape, ext):
    """Odd sizes hit the integer arithmetic of ImageRecordIter's resize and crop."""
    rng = np.random.RandomState(sum(shape))
    img = cv2.GaussianBlur(rng.randint(0, 256, shape + (3,), dtype=np.uint8), (5, 5), 0)
    os.makedirs(str(tmp_path / "imgs"))
    cv2.imwrite(str(tmp_path / "imgs" / ("a" + ext)), img)
    (tmp_path / "a.lst").write_text("0\t0.000000\ta%s\n" % ext)
    recordio.pack_list(str(tmp_path / "a.lst"), str(tmp_path / "imgs"),
                       recordio.PackOptions(pass_through=True), stream=io.StringIO())
    info = dict(input_size=32, crop_ratio=0.8, mean_rgb=[120.0, 110.0, 100.0],
                std_rgb=[60.0, 55.0, 50.0])
    it = data.val_iter(Recipe.from_values(dict(info, rec_val=str(tmp_path / "a.rec"),
                                                 batch_size=1)))
    want = next(iter(it)).data[0].asnumpy()
    got = images.load_image(str(tmp_path / "imgs" / ("a" + ext)), info).asnumpy()
    assert got.shape == want.shape == (1, 3, 32, 32)
    assert np.abs(got - want).max() < 1e-5
    assert np.abs(want).max() > 0.5  # a real image, not a blank


# EXIF Orientation -> the stored pixels of an upright H x W x 3 picture, as a camera that
# tags instead of rotating writes them (the inverse of what a viewer applies).
_STORED = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1],
           4: lambda a: a[::-1], 5: lambda a: a.transpose(1, 0, 2),
           6: lambda a: np.rot90(a, 1), 7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
           8: lambda a: np.rot90(a, -1)}


@pytest.mark.parametrize("orientation", sorted(_STORED))
@pytest.mark.parametrize("pass_through", [True, False])
def test_exif_rotated_photo_is_predicted_upright_as_eval_reads_it(tmp_path, orientation,
                                                                  pass_through):
    """A phone photo: pixels stored sideways, with an EXIF Orientation tag. Packing (cv2)
    and ImageRecordIter turn it upright, so predict's decode must too."""
    from PIL import Image
    rng = np.random.RandomState(orientation)
    upright = cv2.resize(rng.randint(0, 256, (3, 4, 3), dtype=np.uint8), (80, 60),
                         interpolation=cv2.INTER_NEAREST)  # 60 rows x 80 columns, blocky
    exif = Image.Exif()
    exif[0x0112] = orientation
    os.makedirs(str(tmp_path / "imgs"))
    Image.fromarray(np.ascontiguousarray(_STORED[orientation](upright))).save(
        str(tmp_path / "imgs" / "photo.jpg"), quality=100, exif=exif.tobytes())
    Image.fromarray(upright).save(str(tmp_path / "imgs" / "upright.jpg"), quality=100)
    (tmp_path / "a.lst").write_text("0\t0.000000\tphoto.jpg\n1\t0.000000\tupright.jpg\n")
    recordio.pack_list(str(tmp_path / "a.lst"), str(tmp_path / "imgs"),
                       recordio.PackOptions(pass_through=pass_through), stream=io.StringIO())
    info = dict(input_size=32, crop_ratio=0.8, mean_rgb=[0.0, 0.0, 0.0],
                std_rgb=[1.0, 1.0, 1.0])
    it = data.val_iter(Recipe.from_values(dict(info, rec_val=str(tmp_path / "a.rec"),
                                                 batch_size=1)))
    packed, packed_upright = [batch.data[0].asnumpy() for batch in it]
    got = images.load_image(str(tmp_path / "imgs" / "photo.jpg"), info).asnumpy()
    assert images.exif_orientation(open(str(tmp_path / "imgs" / "photo.jpg"), "rb").read()) \
        == orientation
    if pass_through:  # the very bytes, decoded by predict and by ImageRecordIter
        assert np.abs(got - packed).max() < 1e-5
    # and the picture is the upright one (JPEG noise aside: re-encoding costs about 4 grey
    # levels), not a turned or mirrored one (about 70)
    assert np.abs(got - packed_upright).mean() < 8
    assert np.abs(packed - packed_upright).mean() < 8
    # the stored pixels as they are (what predict read before) are another picture
    stored = Preprocessing.from_dict(info).image(mx.image.imdecode(
        open(str(tmp_path / "imgs" / "photo.jpg"), "rb").read())).asnumpy()
    assert (np.abs(stored - packed_upright).mean() > 20) == (orientation != 1)


def _predict(capsys, *argv):
    """(exit status, stdout, stderr, the --json output or None) of predict.py in-process."""
    code, out, err = call_tool(capsys, "predict", *argv)
    return code, out, err, (json.loads(out) if "--json" in argv and out else None)


def _val_images(demo_run, digits=(3, 7)):
    return [os.path.join(demo_run.images, "val", "digit_%d" % d,
                         sorted(os.listdir(os.path.join(demo_run.images, "val",
                                                        "digit_%d" % d)))[0])
            for d in digits]


def test_predict_names_the_digits_and_reports_bad_files(demo_run, tmp_path):
    good = _val_images(demo_run)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    missing = str(tmp_path / "missing.png")
    argv = ["--prefix", demo_run.prefix, good[0], missing, str(tmp_path / "broken.jpg"), good[1]]
    res = run_tool("predict", *(argv + ["--json"]))  # once as a user runs it
    out = json.loads(res.stdout)
    assert res.returncode == 1  # some images failed
    assert [p["image"] for p in out["predictions"]] == good  # the others were classified
    for pred, digit in zip(out["predictions"], (3, 7)):
        top = pred["top"]
        assert len(top) == 5 and top[0]["name"] == "digit_%d" % digit
        assert top[0]["probability"] > 0.5 and abs(sum(t["probability"] for t in top) - 1) < 0.05
    assert [e["image"] for e in out["errors"]] == [missing, str(tmp_path / "broken.jpg")]
    assert "No such file" in out["errors"][0]["error"]
    assert "cannot be decoded as an image" in out["errors"][1]["error"]
    lines = res.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)


def test_predict_text_output(demo_run, tmp_path, capsys):
    image = _val_images(demo_run)[0]
    code, out, err, _ = _predict(capsys, "--prefix", demo_run.prefix, image,
                                 str(tmp_path / "gone.jpg"), "--top", "2")
    assert code == 1 and err == "error: %s: No such file or directory\n" % (tmp_path / "gone.jpg")
    lines = out.splitlines()
    assert len(lines) == 3 and lines[0] == image
    assert re.match(r"  0\.\d{4}  digit_3$", lines[1]) and re.match(r"  0\.\d{4}  digit_", lines[2])


def test_predict_needs_only_symbol_params_and_synsets(demo_run, tmp_path, capsys):
    bare = str(tmp_path / "bare")
    for ending in ("-symbol.json", "-0000.params", ".synsets.txt"):
        shutil.copy(demo_run.prefix + ending, bare + ending)
    image = _val_images(demo_run)[:1]
    *_, with_sidecar = _predict(capsys, "--prefix", demo_run.prefix, "--json", *image)
    code, *_, without = _predict(capsys, "--prefix", bare, "--input-size", "32", "--json", *image)
    assert code == 0 and without["predictions"] == with_sidecar["predictions"]
    assert "input 32" in with_sidecar["model"] and "fp32" in with_sidecar["model"]
    # without the sidecar nothing says the size: 224 would answer wrongly for this 32 px net
    code, _, err, _ = _predict(capsys, "--prefix", bare, "--json", *image)
    assert code == 2 and "pass --input-size" in err and err.count("\n") == 1


def test_predict_prefix_errors_are_one_line(demo_run, tmp_path, capsys):
    code, _, err, _ = _predict(capsys, "--prefix", str(tmp_path / "nothing"), "x.jpg")
    assert code == 2 and err.count("\n") == 1
    assert "nothing-symbol.json not found" in err
    half = str(tmp_path / "half")
    for ending in ("-symbol.json", "-0000.params"):
        shutil.copy(demo_run.prefix + ending, half + ending)
    code, _, err, _ = _predict(capsys, "--prefix", half, "--input-size", "32",
                               _val_images(demo_run)[0])
    assert code == 2 and "half.synsets.txt not found" in err


def test_the_docs_show_the_example_verbatim():
    with open(EXAMPLE) as f:
        example = f.read()
    shown = [m.group(1) for page in docpages.pages() for m in re.finditer(
        r"<!-- begin examples/plain_mxnet_predict.py -->\n```python\n(.*?)```\n"
        r"<!-- end examples/plain_mxnet_predict.py -->", docpages.read(page), re.S)]
    assert shown and all(copy == example for copy in shown)
    assert "mobilenet_skip" not in example


def test_plain_mxnet_example_agrees_with_predict(demo_run, tmp_path, capsys):
    image = _val_images(demo_run, (5,))[0]
    res = subprocess.run([sys.executable, EXAMPLE, demo_run.prefix, image, "32"],
                         capture_output=True, text=True, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines()]
    *_, ours = _predict(capsys, "--prefix", demo_run.prefix, "--json", image)
    top = ours["predictions"][0]["top"]
    assert [r[1] for r in rows] == [t["name"] for t in top] and rows[0][1] == "digit_5"
    assert np.allclose([float(r[0]) for r in rows], [t["probability"] for t in top], atol=1e-4)
    # without INPUT_SIZE it reads the sidecar's 32, not an assumed 224
    res = subprocess.run([sys.executable, EXAMPLE, demo_run.prefix, image],
                         capture_output=True, text=True, cwd=str(tmp_path))
    assert res.returncode == 0 and [line.split() for line in res.stdout.splitlines()] == rows
