"""Evaluation that explains itself: per-class top-1 and the confusion matrix in MXNet and
ONNX Runtime, --report's files, the scorer's per-image results, loss and progress, and
metrics.csv's val_loss (a metrics.csv without that column still resumes)."""
import csv
import json
import math
import os
from collections import Counter

import mxnet as mx
import numpy as np
import pytest

from mobilenet_skip.deploy import report as report_mod, scoring
from mobilenet_skip.recordio import read_list, read_synsets, synsets_path
from mobilenet_skip.runs import scorer
from mobilenet_skip.runs.folder import METRIC_COLUMNS, RunDir
from mobilenet_skip.train.step import LabelSmoothingLoss
from mobilenet_skip.utils.fs import atomic_save_csv
from mobilenet_skip.utils.plots import plot_curves

import pictures
from conftest import DEMO_EPOCHS, call_tool, read_metrics, run_tool, train_digits

IMAGES = 359  # the demo's val digits


def _rec_labels(rec):
    """``{key: label}`` of every record, read with mxnet.recordio, not the val iterator."""
    idx = os.path.splitext(rec)[0] + ".idx"
    reader = mx.recordio.MXIndexedRecordIO(idx, rec, "r")
    try:
        return {str(k): int(mx.recordio.unpack(reader.read_idx(k))[0].label)
                for k in reader.keys}
    finally:
        reader.close()


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _check_matrix(got, rec):
    """The matrix's rows count the .rec's labels, and per-class top-1 averages to top-1."""
    counts = Counter(_rec_labels(rec).values())
    matrix = np.array(got["confusion"])
    assert matrix.shape == (10, 10) and matrix.sum() == got["images"] == IMAGES
    assert matrix.sum(axis=1).tolist() == [counts[c] for c in range(10)]
    per_class = got["per_class"]
    assert [r["images"] for r in per_class] == [counts[c] for c in range(10)]
    weighted = sum(r["top1"] * r["images"] for r in per_class) / got["images"]
    assert weighted == pytest.approx(got["top1"], abs=1e-12)
    assert np.trace(matrix) == round(got["top1"] * IMAGES)
    assert got["misclassified_count"] == IMAGES - np.trace(matrix)
    return matrix


def test_report_counts_the_rec_and_names_every_wrong_image(demo_run, tmp_path, capsys):
    out_dir = str(tmp_path / "report")
    code, out, _ = call_tool(capsys, "eval_imagenet", "--prefix", demo_run.prefix,
                             "--rec-val", demo_run.val_rec, "--json", "--report", out_dir)
    assert code == 0
    got = json.loads(out)
    names = read_synsets(synsets_path(demo_run.val_rec))
    assert got["classes"] == names and [r["class"] for r in got["per_class"]] == names
    matrix = _check_matrix(got, demo_run.val_rec)
    assert round(got["top1"] * IMAGES) == round(demo_run.metrics[-1]["val_top1"] * IMAGES)

    assert sorted(os.listdir(out_dir)) == sorted(report_mod.REPORT_FILES)
    confusion = _csv(os.path.join(out_dir, "confusion.csv"))
    assert confusion[0] == ["true\\predicted"] + names
    assert [row[0] for row in confusion[1:]] == names
    assert np.array([[int(v) for v in row[1:]] for row in confusion[1:]]).tolist() == \
        matrix.tolist()
    per_class = _csv(os.path.join(out_dir, "per_class.csv"))
    assert per_class[0] == ["class", "images", "top1"] and len(per_class) == 11
    assert [int(r[1]) for r in per_class[1:]] == matrix.sum(axis=1).tolist()
    # 10 classes: an 8 in square matrix beside its colour bar, whose dark cells (counts
    # near the largest) run down the diagonal, as a 0.99 top-1 gives
    import matplotlib.cm
    dark = matplotlib.cm.Blues(0.95)[:3]
    image = pictures.check_plot(os.path.join(out_dir, "confusion.png"), (9.5, 8), [dark],
                                least=5000)
    ys, xs = np.nonzero(np.abs(image - np.array(dark) * 255).max(axis=-1) <= 24)
    matrix_side = xs < 0.75 * image.shape[1]  # the colour bar is dark at its top too
    assert np.corrcoef(xs[matrix_side], ys[matrix_side])[0, 1] > 0.9

    # each wrong image: its record's own label, the .lst's path, the most confident first
    labels = _rec_labels(demo_run.val_rec)
    lst = {str(i): path for i, path, *_ in read_list(os.path.splitext(demo_run.val_rec)[0]
                                                       + ".lst")}
    wrong = _csv(os.path.join(out_dir, "misclassified.csv"))
    assert wrong[0] == ["key", "path", "true", "predicted", "confidence"]
    assert len(wrong) - 1 == got["misclassified_count"] > 0
    confidences = [float(r[4]) for r in wrong[1:]]
    assert confidences == sorted(confidences, reverse=True)
    assert all(0.1 <= c <= 1 for c in confidences)  # a softmax max over 10 classes
    pairs = Counter()
    for key, path, true, predicted, _ in wrong[1:]:
        assert names[labels[key]] == true != predicted and path == lst[key]
        assert os.path.isfile(os.path.join(demo_run.images, "val", path))
        pairs[names.index(true), names.index(predicted)] += 1
    assert all(matrix[t, p] == m for (t, p), m in pairs.items())
    assert got["misclassified"] == [
        {"key": r[0], "path": r[1], "true": r[2], "predicted": r[3], "confidence": float(r[4])}
        for r in wrong[1:101]]


def test_terminal_shows_the_worst_classes_and_the_most_confused_pairs(demo_run, capsys):
    code, out, _ = call_tool(capsys, "eval_imagenet", "--prefix", demo_run.prefix,
                             "--rec-val", demo_run.val_rec, "--api", "module")
    assert code == 0
    r = scoring.evaluate_export(demo_run.prefix, demo_run.val_rec, api="module",
                                per_image=True)
    rep = report_mod.ClassReport.from_result(r, demo_run.val_rec,
                                             [synsets_path(demo_run.val_rec)])
    lines = out.splitlines()
    start = lines.index("worst classes (top-1, images):")
    pairs = lines.index("most confused (true -> predicted, images):")
    worst = [ln.split() for ln in lines[start + 1:pairs]]
    # up to five lines, only classes with a wrong image, the lowest top-1 first
    assert len(worst) == min(5, int((rep.top1 < 1).sum())) > 0
    assert float(worst[0][1]) == pytest.approx(min(rep.top1), abs=1e-4)
    assert rep.names[int(np.argmin(rep.top1))] == worst[0][0]
    assert [float(w[1]) for w in worst] == sorted(float(w[1]) for w in worst) and all(
        float(w[1]) < 1 and int(w[2]) == rep.images[rep.names.index(w[0])] for w in worst)
    (t, p, m), = rep.confused(1)
    assert lines[pairs + 1].split() == [rep.names[t], "->", rep.names[p], str(m)]
    off = rep.matrix - np.diag(np.diag(rep.matrix))
    assert m == off.max()


def test_onnx_runtime_gives_the_matrix_too(demo_run, tmp_path):
    out = str(tmp_path / "digits")
    res = run_tool("export_model", "--prefix", demo_run.prefix, "--output", out, "--onnx")
    assert res.returncode == 0, res.stderr
    res = run_tool("eval_imagenet", "--onnx", out + ".onnx", "--rec-val", demo_run.val_rec,
                   "--json", "--report", str(tmp_path / "report"))
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["runtime"] == "onnxruntime"
    assert got["classes"] == read_synsets(synsets_path(demo_run.val_rec))
    matrix = _check_matrix(got, demo_run.val_rec)
    mxnet = scoring.evaluate_export(demo_run.prefix, demo_run.val_rec, per_image=True)
    mx_matrix = report_mod.ClassReport.from_result(mxnet, demo_run.val_rec).matrix
    assert np.abs(matrix - mx_matrix).sum() <= 2  # one image may flip by float rounding
    assert len(_csv(str(tmp_path / "report" / "misclassified.csv"))) - 1 == \
        got["misclassified_count"]


def test_report_on_a_file_and_a_stale_lst_are_one_line(demo_run, tmp_path, capsys):
    afile = tmp_path / "taken"
    afile.write_text("")
    code, _, err = call_tool(capsys, "eval_imagenet", "--prefix", demo_run.prefix,
                             "--rec-val", demo_run.val_rec, "--report", str(afile))
    assert code == 2 and err == ("error: --report %s is a file; give a folder for the "
                                 "report\n" % afile)
    r = scoring.evaluate_export(demo_run.prefix, demo_run.val_rec, per_image=True)
    keys = report_mod.record_keys(demo_run.val_rec)
    paths = report_mod.list_paths(demo_run.val_rec)
    stale = dict(paths, **{keys[0]: (paths[keys[0]][0], (r["label"][0] + 1) % 10)})
    rep = report_mod.ClassReport(r["label"], r["pred"], r["confidence"],
                                 [str(i) for i in range(10)], keys, stale)
    assert rep.paths is None and "does not match it (record %s" % keys[0] in rep.warning
    assert all(row["path"] == "" for row in rep.misclassified())
    lst = tmp_path / "val.lst"  # a .lst that is not im2rec's: the report goes on without it
    for ext in (".rec", ".idx"):
        os.symlink(os.path.splitext(demo_run.val_rec)[0] + ext, str(tmp_path / ("val" + ext)))
    lst.write_text("not a list\n")
    rep = report_mod.ClassReport.from_result(r, str(tmp_path / "val.rec"))
    assert rep.paths is None and "is not `index<TAB>label<TAB>path`" in rep.warning
    assert len(rep.misclassified()) == r["images"] - round(r["top1"] * r["images"])
    perfect = report_mod.ClassReport([0, 1, 1], [0, 1, 1], [0.9, 0.8, 0.7], ["a", "b"])
    assert perfect.lines() == ["worst classes: none, every image is right"]
    assert perfect.to_json()["misclassified_count"] == 0


# --- the scorer: loss, per-image results, progress ----------------------------------------

class _Counted(mx.io.NDArrayIter):
    num_records = 50  # what a RecordIter knows, so progress has a total


def _toy(n=50, classes=4):
    rng = np.random.RandomState(1)
    x, y = rng.randn(n, 6).astype("float32"), rng.randint(0, classes, n).astype("float32")
    net = mx.gluon.nn.Dense(classes, in_units=6)
    net.initialize(mx.init.Normal(1.0))
    return net, x, y, _Counted(x, y, batch_size=16, last_batch_handle="pad")


def test_scorer_loss_is_plain_cross_entropy_and_per_image_is_exact():
    net, x, y, it = _toy()
    r = scorer.evaluate(net, it, [mx.cpu()], per_image=True)
    logits = net(mx.nd.array(x)).asnumpy().astype(np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    assert r["images"] == 50 and r["classes"] == 4
    assert r["loss"] == pytest.approx(-logp[np.arange(50), y.astype(int)].mean(), rel=1e-5)
    smoothed = LabelSmoothingLoss(0.1)(mx.nd.array(logits), mx.nd.array(y)).mean().asscalar()
    assert abs(smoothed - r["loss"]) > 1e-3
    assert r["label"].tolist() == y.astype(int).tolist()  # padding dropped, order kept
    assert r["pred"].tolist() == logits.argmax(1).tolist()
    assert np.allclose(r["confidence"], np.exp(logp.max(1)), rtol=1e-5)
    assert r["top1"] == pytest.approx((r["pred"] == r["label"]).mean())
    # training's call keeps no per-image arrays
    assert "pred" not in scorer.evaluate(net, it, [mx.cpu()])


def test_progress_only_on_long_passes(capsys, monkeypatch):
    net, _, _, it = _toy()
    scorer.evaluate(net, it, [mx.cpu()])
    assert capsys.readouterr().err == ""  # a short set says nothing

    class EveryBatch(scorer.Progress):
        def __init__(self, *args, **kwargs):
            super(EveryBatch, self).__init__(*args, **kwargs)
            self.every = 0.0
    monkeypatch.setattr(scorer, "Progress", EveryBatch)
    scorer.evaluate(net, it, [mx.cpu()], progress_after=0)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("val 50/50 (100.0%) ") and " img/s ETA " in lines[-1]
    assert [int(ln.split()[1].split("/")[0]) for ln in lines] == [16, 32, 48, 50]


# --- metrics.csv: val_loss, and a metrics.csv without it ---------------------------------

def test_val_loss_is_the_plain_loss_of_the_epoch(demo_run):
    rows = demo_run.metrics
    assert all(0 <= r["val_loss"] < 10 and r["val_time_s"] > 0 for r in rows)
    assert all(r["epoch_time_s"] > r["val_time_s"] for r in rows)
    assert [type(r[c]) for r in rows for c in ("epoch", "train_images", "best_epoch")] == \
        [int] * 3 * DEMO_EPOCHS
    r = scoring.evaluate_export(demo_run.prefix, demo_run.val_rec, keep_logits=True,
                                per_image=True)
    assert r["loss"] == pytest.approx(rows[-1]["val_loss"], rel=1e-4)
    smoothed = LabelSmoothingLoss(0.1)(mx.nd.array(r["logits"]),
                                       mx.nd.array(r["label"])).mean().asscalar()
    assert smoothed - rows[-1]["val_loss"] > 0.05  # smoothing puts mass on wrong classes


OLD_COLUMNS = ("epoch", "train_loss", "train_top1", "val_top1", "val_top5", "lr",
               "epoch_time_s", "samples_per_s", "train_images", "best_epoch")


def test_an_old_metrics_file_reads_plots_and_keeps_its_integers(tmp_path):
    path = str(tmp_path / "metrics.csv")
    atomic_save_csv(path, OLD_COLUMNS, [
        {"epoch": e, "train_loss": 1.0 / e, "train_top1": 0.5, "val_top1": 0.4 + e / 10,
         "val_top5": 0.9, "lr": 0.1, "epoch_time_s": 2.5, "samples_per_s": 9.5,
         "train_images": 1408, "best_epoch": e} for e in (1, 2)])
    rows = RunDir(str(tmp_path)).metrics()
    assert all(math.isnan(r["val_loss"]) and math.isnan(r["val_time_s"]) for r in rows)
    atomic_save_csv(path, METRIC_COLUMNS, rows)  # what a resume rewrites
    got = _csv(path)
    head = got[0]
    assert head == list(METRIC_COLUMNS)
    assert [[r[head.index(c)] for c in ("epoch", "train_images", "best_epoch", "val_loss")]
            for r in got[1:]] == [["1", "1408", "1", "nan"], ["2", "1408", "2", "nan"]]
    plot_curves(path, str(tmp_path / "curves.png"))  # no val loss to draw: still 3 panels
    pictures.check_plot(str(tmp_path / "curves.png"), (13, 3.6), ["C0"], (1, 3))


def test_a_metrics_csv_without_val_loss_resumes_and_gains_it(digits, tmp_path):
    short = ["--multiplier", "0.25", "--batches-per-epoch", "5", "--log-interval", "5"]
    train_digits(digits, tmp_path, short, "--num-epochs", "1")
    path = str(tmp_path / "metrics.csv")
    first = read_metrics(tmp_path)
    atomic_save_csv(path, OLD_COLUMNS, first)  # no val_loss column
    train_digits(digits, tmp_path, short, "--num-epochs", "2", "--resume")
    got = _csv(path)
    head = got[0]
    assert head == list(METRIC_COLUMNS) and len(got) == 3
    col = {c: [r[head.index(c)] for r in got[1:]] for c in head}
    assert col["val_loss"][0] == "nan" and float(col["val_loss"][1]) > 0
    assert col["train_images"] == ["160", "160"] and col["epoch"] == ["1", "2"]
    assert col["best_epoch"][0] == "1" and col["best_epoch"][1] in ("1", "2")
