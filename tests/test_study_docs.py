"""The committed study of record under docs/study/: every table and figure is what the
documented `--report-only` command makes of the committed CSVs, each CSV comes from one
commit, the targets the study was set up for hold, and the README and docs/study.md quote
the numbers as the CSVs give them."""
import csv
import filecmp
import os
import re
import shutil

import numpy as np
import pytest

import docpages
import pictures
from mobilenet_skip.bench import clipping, converged, gradflow, study as sweep
from mobilenet_skip.config import recipes

from conftest import ROOT, tool_main

STUDY = os.path.join(ROOT, "docs", "study")
CONVERGED, CLIPPING, FLOW = (os.path.join(STUDY, n) for n in ("converged", "clipping",
                                                               "gradflow"))


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _commits(path):
    with open(path) as f:
        return {row["commit"] for row in csv.DictReader(f)}


@pytest.mark.slow  # builds the five networks to count them and draws five figures
def test_report_only_redraws_every_committed_table_and_figure(tmp_path, capsys):
    """What docs/study.md says made docs/study/ (`compare_variants.py --data fashion
    --study S --report-only --out docs/study`), run on a copy: every table, summary and
    CSV comes out byte for byte, every figure pixel for pixel (0.5% slack for fonts)."""
    out = tmp_path / "study"
    shutil.copytree(STUDY, str(out), ignore=shutil.ignore_patterns("*.png", "*.md", "*.txt"))
    for name in ("sweep", "converged", "clipping", "gradflow"):
        assert tool_main("compare_variants")(["--data", "fashion", "--study", name,
                                              "--report-only", "--out", str(out)]) == 0
    capsys.readouterr()
    committed = sorted(os.path.relpath(os.path.join(d, f), STUDY)
                       for d, _, files in os.walk(STUDY) for f in files)
    made = sorted(os.path.relpath(os.path.join(d, f), str(out))
                  for d, _, files in os.walk(str(out)) for f in files)
    assert made == committed
    for name in committed:
        fresh, kept = os.path.join(str(out), name), os.path.join(STUDY, name)
        if name.endswith(".png"):
            a, b = pictures.pixels(fresh), pictures.pixels(kept)
            assert a.shape == b.shape and (np.abs(a - b).max(axis=-1) > 24).mean() < 0.005, name
        else:
            assert filecmp.cmp(fresh, kept, shallow=False), name


def test_the_study_page_holds_the_converged_table_and_the_flow_its_seeds():
    cfg = recipes.resolve(os.path.join(ROOT, "recipes", "study-fashion-full.yaml"))
    table = converged.converged_text(CONVERGED, cfg["multiplier"], cfg["input_size"])[0]
    assert table.strip() in _read(os.path.join(ROOT, "docs", "study.md"))
    rows = gradflow.read_rows(os.path.join(FLOW, "gradflow.csv"))
    assert {r["seed"] for r in rows} == {0, 1, 2}
    assert {r["base_lr"] for r in rows} == {None, 0.01, 0.1}


def _interval(c):
    """A comparison as the pages write it: ``+0.76 [+0.27, +1.25]`` (points)."""
    return "%+.2f [%+.2f, %+.2f]" % (100 * c["diff"], 100 * c["low"], 100 * c["high"])


def test_the_readme_and_the_study_page_quote_the_csvs():
    """Each figure the README's variant-study paragraph and docs/study.md's result give is
    what the committed CSVs give: a rerun that changes a number fails here until the
    pages say the new one."""
    readme, page = (" ".join(docpages.read(p).split()) for p in ("README.md", "docs/study.md"))
    runs, test = converged.read_runs(CONVERGED), converged.read_test(CONVERGED)
    summary = converged.summarise_converged(runs, test)
    plain, floor = summary[0], converged.read_linear(CONVERGED)
    assert "plain MobileNet reaches %.2f ± %.2f%% test top-1, %.1f points above a linear" % (
        100 * plain["test_mean"], 100 * plain["test_std"],
        100 * (plain["test_mean"] - floor["test_top1"])) in readme
    for s in summary[1:]:
        c = s["comparison"]
        verdict = "survives" if c["survives"] else "does not survive"
        assert "%s %s (%s)" % (s["variant"], _interval(c), verdict) in readme, s["variant"]
        assert "%s %.2f ± %.2f%% (%s points, %s Holm" % (
            s["variant"], 100 * s["test_mean"], 100 * s["test_std"], _interval(c),
            verdict) in page, s["variant"]
    first4 = converged.summarise_converged([r for r in runs if r["seed"] < 4],
                                           [r for r in test if r["seed"] < 4])[1]
    assert first4["variant"] == "simple-connect"
    for text in (readme, page):
        assert "was %s" % _interval(first4["comparison"]) in text

    clip = clipping.summarise_clipping(clipping.read_clipping(CLIPPING))
    lead = {c["label"][:2]: 100 * c["diff"] for c in clip["versus"]}
    unclipped = 100 * np.mean(clip["finals"][0.01, 0.0, "mobilenet"])
    assert "with clipping off it reaches %.1f%% at lr 0.01, and simple-connect's lead falls " \
        "from %+.1f to %+.1f points" % (unclipped, lead[0.01, 2.0], lead[0.01, 0.0]) in readme

    rows = sweep.read_rows(os.path.join(STUDY, "study.csv"))
    means = {(s["base_lr"], s["variant"]): s["val_top1_mean"]  # the loss level: any
             for s in sweep.summarise(rows, 0.6)}
    gap = max(means[0.01, v] for v in converged.ORDER[1:]) - means[0.01, "mobilenet"]
    assert "plain MobileNet trails by up to %d points at lr 0.01" % round(100 * gap) in readme

    init = {m.group(1): float(m.group(2)) for m in re.finditer(
        r"^init, ([\w-]+): block2/block14 \|g\|/\|W\| ([0-9.]+)",
        _read(os.path.join(FLOW, "gradflow.txt")), re.M)}
    skips = [init[v] for v in converged.ORDER[1:]]
    assert "falls %dx from block2 to block14; %d-%dx with skips" % (
        round(init["mobilenet"]), round(min(skips)), round(max(skips))) in readme


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
