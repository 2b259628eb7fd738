"""The miniature re-run of the paper's comparison: outputs and statistics."""
import csv
import json
import os
import subprocess
import sys

import pytest

from mobilenet_skip.bench import study as compare

from conftest import TOOLS

NAMES = ["mobilenet", "simple-connect", "full-connect", "simple-connect-pre-act",
         "full-connect-pre-act"]


@pytest.mark.slow
def test_quick_study_writes_csv_table_and_plot(tmp_path):
    out = tmp_path / "study"
    res = subprocess.run([sys.executable, os.path.join(TOOLS, "compare_variants.py"), "--quick",
                          "--seeds", "1", "--epochs", "1", "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    with open(str(out / "compare.csv")) as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["variant"] for r in rows) == sorted(NAMES)  # one epoch, one seed each
    assert all(0 <= float(r["val_top1"]) <= 1 and float(r["train_loss"]) > 0 for r in rows)
    table = (out / "compare.md").read_text().strip().splitlines()
    assert [l.split("|")[2].strip() for l in table[2:]] == NAMES
    with open(str(out / "compare.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "| base lr | variant |" in res.stdout

    # a second run on the same folder reuses every finished run instead of retraining it,
    # which is what lets a killed 25-minute study resume
    marker = out / "runs" / "mobilenet-lr0.1-seed0" / compare.MARKER
    assert marker.exists()
    weights = sorted((out / "runs" / "mobilenet-lr0.1-seed0").glob("*.params"))
    stamps = [w.stat().st_mtime_ns for w in weights]
    again = subprocess.run([sys.executable, os.path.join(TOOLS, "compare_variants.py"), "--quick",
                            "--seeds", "1", "--epochs", "1", "--out", str(out)],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("reused, finished earlier") == len(NAMES)
    assert [w.stat().st_mtime_ns for w in weights] == stamps
    with open(str(out / "compare.csv")) as f:
        assert list(csv.DictReader(f)) == rows


def test_a_run_is_reused_only_for_the_same_command(tmp_path):
    cmd = ["python", "train_imagenet.py", "--model", "mobilenet", "--lr", "0.1"]
    assert not compare._finished(str(tmp_path), cmd)  # nothing there yet
    (tmp_path / compare.MARKER).write_text(json.dumps({"cmd": cmd[1:]}))
    assert not compare._finished(str(tmp_path), cmd)  # marker but no metrics.csv
    (tmp_path / "metrics.csv").write_text("epoch\n1\n")
    assert compare._finished(str(tmp_path), ["/other/python"] + cmd[1:])
    assert not compare._finished(str(tmp_path), cmd[:-1] + ["0.03"])
    (tmp_path / compare.MARKER).write_text("{truncated")
    assert not compare._finished(str(tmp_path), cmd)


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


@pytest.mark.slow
def test_bad_arguments_are_clear(tmp_path):
    tool = os.path.join(TOOLS, "compare_variants.py")
    for args, message in ((["--variants", "resnet"], "unknown model"),
                          (["--lrs", "fast"], "--lrs takes comma-separated numbers")):
        res = subprocess.run([sys.executable, tool, "--out", str(tmp_path)] + args,
                             capture_output=True, text=True)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
