"""The miniature re-run of the paper's comparison: outputs and statistics."""
import csv
import json
import os
import re
import subprocess
import sys

import pytest

from mobilenet_skip.bench import runs, study as compare

import pictures
from conftest import TOOLS
from test_fashion import write_idx

NAMES = ["mobilenet", "simple-connect", "full-connect", "simple-connect-pre-act",
         "full-connect-pre-act"]


@pytest.mark.slow
def test_quick_study_writes_csv_table_and_plot(tmp_path):
    out = tmp_path / "study"
    res = subprocess.run([sys.executable, os.path.join(TOOLS, "compare_variants.py"), "--quick",
                          "--seeds", "1", "--epochs", "1", "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    with open(str(out / "study.csv")) as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["variant"] for r in rows) == sorted(NAMES)  # one epoch, one seed each
    assert all(0 <= float(r["val_top1"]) <= 1 and float(r["train_loss"]) > 0 for r in rows)
    table = (out / "study.md").read_text().strip().splitlines()
    assert [l.split("|")[2].strip() for l in table[2:]] == NAMES
    # one lr: one row of two panels (train loss, val top-1), each with the runs drawn
    pictures.check_plot(str(out / "curves.png"), (13, 4.2), panels=(1, 2))
    assert "| base lr | variant |" in res.stdout

    # a second run on the same folder reuses every finished run instead of retraining it,
    # which is what lets a killed study resume
    marker = out / "runs" / "mobilenet-lr0.1-seed0" / runs.MARKER
    assert marker.exists()
    weights = sorted((out / "runs" / "mobilenet-lr0.1-seed0").glob("*.params"))
    stamps = [w.stat().st_mtime_ns for w in weights]
    again = subprocess.run([sys.executable, os.path.join(TOOLS, "compare_variants.py"), "--quick",
                            "--seeds", "1", "--epochs", "1", "--out", str(out)],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "%d of %d runs finished earlier: reused" % (len(NAMES), len(NAMES)) in again.stdout
    assert [w.stat().st_mtime_ns for w in weights] == stamps
    with open(str(out / "study.csv")) as f:
        assert list(csv.DictReader(f)) == rows


def test_a_run_is_reused_only_for_the_same_command(tmp_path):
    run = runs.Run(str(tmp_path), ["--model", "mobilenet", "--lr", "0.1"])
    assert runs.finished(run) is None  # nothing there yet
    (tmp_path / runs.MARKER).write_text(json.dumps(dict(run.record(), commit="abc")))
    assert runs.finished(run) is None  # marker but no metrics.csv
    (tmp_path / "metrics.csv").write_text("epoch\n1\n")
    assert runs.finished(run)["commit"] == "abc"
    assert runs.finished(runs.Run(str(tmp_path), run.args[:-1] + ["0.03"])) is None
    assert runs.finished(runs.Run(str(tmp_path), run.args, "test.rec", [1])) is None
    (tmp_path / runs.MARKER).write_text("{truncated")
    assert runs.finished(run) is None


def _rows(variant, seed, losses, tops, lr=0.1):
    return [dict(variant=variant, base_lr=lr, seed=seed, epoch=i + 1, train_loss=l,
                 train_top1=0.5, val_top1=t, val_top5=1.0)
            for i, (l, t) in enumerate(zip(losses, tops))]


def test_summary_statistics_and_convergence_epoch():
    rows = (_rows("mobilenet", 0, [2.0, 1.5, 1.2], [0.3, 0.5, 0.6])
            + _rows("mobilenet", 1, [2.0, 1.4, 0.9], [0.3, 0.6, 0.8])
            + _rows("full-connect", 0, [1.5, 0.9, 0.7], [0.6, 0.9, 0.95])
            + _rows("full-connect", 1, [1.4, 0.8, 0.6], [0.7, 0.9, 0.97]))
    by_name = {s["variant"]: s for s in compare.summarise(rows, loss_level=1.0)}
    assert by_name["mobilenet"]["val_top1_mean"] == pytest.approx(0.7)
    assert by_name["mobilenet"]["val_top1_std"] == pytest.approx(0.1414213, rel=1e-5)
    assert by_name["mobilenet"]["reached_loss"] == 1  # seed 0 never gets below 1.0
    assert by_name["mobilenet"]["epochs_to_loss_mean"] == 3
    assert by_name["full-connect"]["epochs_to_loss_mean"] == 2
    table = compare.markdown_table(compare.summarise(rows, 1.0), 1.0)
    assert "(1 of 2 seeds)" in table and "70.00 ± 14.14" in table
    # full-connect vs mobilenet: +26 points, Welch interval from the two seeds each
    diff, low, high = compare.welch_interval([0.95, 0.97], [0.6, 0.8])
    assert diff == pytest.approx(0.26) and low < 0.26 < high
    assert by_name["full-connect"]["diff_mean"] == pytest.approx(0.26)
    assert "+26.00 [%+.2f, %+.2f]" % (low * 100, high * 100) in table


def test_welch_interval_matches_the_textbook_and_decides_shown():
    # b has no spread: se = sqrt(var(a)/3) = sqrt(1/3), Welch dof = 2, t(0.975, 2) = 4.3027
    diff, low, high = compare.welch_interval([1, 2, 3], [0, 0, 0])
    assert diff == 2 and high - diff == pytest.approx(4.302653 * (1 / 3) ** 0.5, rel=1e-5)
    assert low < 0  # not shown: the interval holds 0
    diff, low, high = compare.welch_interval([0.90, 0.91, 0.92], [0.80, 0.81, 0.80])
    assert low > 0  # shown
    assert compare.welch_interval([0.9], [0.8])[1] != compare.welch_interval([0.9], [0.8])[1]
    rows = sum((_rows(variant, seed, [1.0], [top1]) for variant, tops in
                (("mobilenet", (0.80, 0.81, 0.80)), ("full-connect", (0.90, 0.91, 0.92)))
                for seed, top1 in enumerate(tops)), [])
    summary = compare.summarise(rows, 1.0)
    assert "shown" in compare.markdown_table(summary, 1.0)


@pytest.mark.slow
def test_quick_study_on_fashion_shaped_data(tmp_path):
    """The whole study on a tiny Fashion-MNIST-shaped IDX set the test writes: packing,
    two variants x two seeds, the table with intervals, all plots, gradient flow, and
    --report-only redrawing the same table from the CSV."""
    import numpy as np
    idx = tmp_path / "idx"
    idx.mkdir()
    rng = np.random.RandomState(0)
    write_idx(str(idx), "train", 12, rng)
    write_idx(str(idx), "val", 4, rng)
    out = tmp_path / "study"
    tool = os.path.join(TOOLS, "compare_variants.py")
    args = [sys.executable, tool, "--quick", "--data", "fashion", "--idx-dir", str(idx),
            "--per-class", "10", "--epochs", "1", "--seeds", "2", "--variants",
            "mobilenet,full-connect-pre-act", "--out", str(out)]
    res = subprocess.run(args, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "100 train images (10 per class), 40 val images" in res.stdout
    rows = compare.read_rows(str(out / "study.csv"))
    assert sorted((r["variant"], r["seed"]) for r in rows) == [
        ("full-connect-pre-act", 0), ("full-connect-pre-act", 1), ("mobilenet", 0),
        ("mobilenet", 1)]
    table = (out / "study.md").read_text()
    line = [l for l in table.splitlines() if "| full-connect-pre-act |" in l][0]
    assert re.search(r"\| [+-][0-9.]+ \[[+-][0-9.]+, [+-][0-9.]+\] \|", line)  # 95% interval
    # one epoch at one lr: every panel shows its runs' points, no more to draw
    pictures.check_plot(str(out / "curves.png"), (13, 4.2), panels=(1, 2))
    pictures.check_plot(str(out / "lr.png"), (7.5, 4.8))
    (out / "study.md").unlink()
    again = subprocess.run(args + ["--report-only"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (out / "study.md").read_text() == table
    assert "study " not in again.stdout  # nothing trained


@pytest.mark.slow
def test_bad_arguments_are_clear(tmp_path):
    tool = os.path.join(TOOLS, "compare_variants.py")
    for args, message in ((["--variants", "resnet"], "unknown model"),
                          (["--lrs", "fast"], "--lrs takes comma-separated numbers")):
        res = subprocess.run([sys.executable, tool, "--out", str(tmp_path)] + args,
                             capture_output=True, text=True)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


STUDY = os.path.join(os.path.dirname(TOOLS), "docs", "study")


def test_the_committed_study_is_the_tool_s_output_of_its_csv():
    """docs/study/'s table is what the tool makes of the committed CSV (nothing typed by
    hand), the CSV holds the whole study (5 variants x 3 seeds x 4 lrs over 30x, every
    run to its last epoch), and docs/study.md quotes the table as it is."""
    with open(os.path.join(STUDY, "study.md"), encoding="utf-8") as f:
        table = f.read()
    level = float(re.search(r"epochs to train loss ≤ ([0-9.]+)", table).group(1))
    rows = compare.read_rows(os.path.join(STUDY, "study.csv"))
    assert compare.markdown_table(compare.summarise(rows, level), level) == table
    runs = {(r["variant"], r["base_lr"], r["seed"]) for r in rows}
    lrs = sorted({lr for _, lr, _ in runs})
    assert len(lrs) >= 4 and lrs[-1] / lrs[0] >= 30
    assert {v for v, _, _ in runs} == set(NAMES) and len({s for _, _, s in runs}) >= 3
    assert len(runs) == len(NAMES) * len(lrs) * 3
    last = {key: max(r["epoch"] for r in rows if (r["variant"], r["base_lr"], r["seed"]) == key)
            for key in runs}
    assert len(set(last.values())) == 1
    with open(os.path.join(os.path.dirname(STUDY), "study.md"), encoding="utf-8") as f:
        page = f.read()
    assert table.strip() in page


def _finished_run(folder, variant, seed, top1, commit="abc"):
    """A run folder as the runner leaves it: metrics.csv and a marker with its scores."""
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text(
        "epoch,train_loss,train_top1,val_top1,val_top5,lr\n1,1.0,0.5,0.8,0.9,0.05\n")
    args = ["--model", variant, "--lr", "0.1", "--seed", str(seed)]
    (folder / runs.MARKER).write_text(json.dumps({
        "cmd": [runs.TRAIN_TOOL] + args, "score_rec": "test.rec", "score_epochs": [1],
        "commit": commit, "scores": [{"epoch": 1, "top1": top1, "top5": 1.0}]}))


def test_the_converged_csvs_hold_every_scored_run_of_the_folder(tmp_path):
    """More seeds for some networks, asked for later, add to the study's CSVs instead of
    replacing them; rows come in Table-3 order, then seed, with each run's commit."""
    from mobilenet_skip.bench import plans
    root = tmp_path / "runs"
    for variant, seed, top1 in (("simple-connect", 0, 0.91), ("mobilenet", 1, 0.89),
                                ("mobilenet", 0, 0.90), ("simple-connect", 5, 0.92)):
        _finished_run(root / ("%s-seed%d" % (variant, seed)), variant, seed, top1)
    (root / "unfinished").mkdir()
    paths = plans.collect_converged(str(tmp_path))
    with open(paths[1]) as f:
        test = list(csv.DictReader(f))
    assert [(r["variant"], r["seed"], r["test_top1"]) for r in test] == [
        ("mobilenet", "0", "0.9"), ("mobilenet", "1", "0.89"), ("simple-connect", "0", "0.91"),
        ("simple-connect", "5", "0.92")]
    with open(paths[0]) as f:
        assert {r["commit"] for r in csv.DictReader(f)} == {"abc"}
