"""The committed study of record under docs/study/: every table is the tool's output of
its committed CSVs, each CSV comes from one commit, the targets the study was set up for
hold, and the pages quote the numbers as the tables give them."""
import csv
import os
import re

from mobilenet_skip.bench import clipping, converged, gradflow
from mobilenet_skip.config import recipes

from conftest import ROOT

STUDY = os.path.join(ROOT, "docs", "study")
CONVERGED, CLIPPING, FLOW = (os.path.join(STUDY, n) for n in ("converged", "clipping",
                                                               "gradflow"))


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _commits(path):
    with open(path) as f:
        return {row["commit"] for row in csv.DictReader(f)}


def test_the_converged_table_is_the_tool_s_output_of_its_csvs():
    cfg = recipes.resolve(os.path.join(ROOT, "recipes", "study-fashion-full.yaml"))
    table, summary = converged.converged_text(CONVERGED, cfg["multiplier"],
                                              cfg["input_size"])[:2]
    assert _read(os.path.join(CONVERGED, "converged.md")) == table
    assert table.strip() in _read(os.path.join(ROOT, "docs", "study.md"))


def test_the_clipping_and_gradient_flow_outputs_are_the_tool_s():
    summary = clipping.summarise_clipping(clipping.read_clipping(CLIPPING))
    assert _read(os.path.join(CLIPPING, "clipping.md")) == clipping.clipping_table(summary)
    rows = gradflow.read_rows(os.path.join(FLOW, "gradflow.csv"))
    assert _read(os.path.join(FLOW, "gradflow.txt")) == "\n".join(
        gradflow.summary_lines(rows)) + "\n"
    assert {r["seed"] for r in rows} == {0, 1, 2}
    assert {r["base_lr"] for r in rows} == {None, 0.01, 0.1}


def test_each_csv_comes_from_one_clean_commit():
    for path in (os.path.join(CONVERGED, "runs.csv"), os.path.join(CONVERGED, "test.csv"),
                 os.path.join(CLIPPING, "clipping.csv"), os.path.join(FLOW, "gradflow.csv")):
        commits = _commits(path)
        assert len(commits) == 1 and not commits.pop().endswith("-dirty"), path


def test_the_converged_study_meets_its_targets():
    """Plain MobileNet converged (>= 89% test top-1, last 3 epochs within 0.5 points),
    at least 4 seeds, and the linear floor beside it."""
    test = converged.read_test(CONVERGED)
    plain = [r for r in test if r["variant"] == "mobilenet"]
    seeds = {r["seed"] for r in plain}
    assert len(seeds) >= 4
    epochs = sorted({r["epoch"] for r in plain})[-3:]
    means = [sum(r["test_top1"] for r in plain if r["epoch"] == e) / len(seeds) for e in epochs]
    assert means[-1] >= 0.89 and max(means) - min(means) <= 0.005
    assert 0.5 < converged.read_linear(CONVERGED)["test_top1"] < means[-1]
