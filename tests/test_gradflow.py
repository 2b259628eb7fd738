"""Gradient flow through the DW blocks: |g|/|W| per block over seeds, its CSV, figure data
and summary."""
import os

import numpy as np
import pytest

from mobilenet_skip.bench import gradflow
from mobilenet_skip.errors import UserError

from conftest import ROOT
from test_fashion import write_idx

RECIPE = os.path.join(ROOT, "recipes", "study-fashion.yaml")
VARIANTS = ["mobilenet", "full-connect"]
BLOCKS = ["block%d" % i for i in range(2, 15)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Fashion-MNIST-shaped random images (40 train, 10 val) packed, and overrides that
    train and measure at width 0.25, 32 px, batches of 8 (5 per epoch)."""
    from mobilenet_skip.data.demo import pack_splits
    from mobilenet_skip.data.fashion import make_fashion_data

    root = tmp_path_factory.mktemp("gradflow")
    idx = root / "idx"
    idx.mkdir()
    rng = np.random.RandomState(0)
    write_idx(str(idx), "train", 4, rng)
    write_idx(str(idx), "val", 1, rng)
    make_fashion_data(str(root / "images"), str(idx), per_class=4)
    train, val = pack_splits(str(root / "images"), str(root))
    return {"rec_train": train, "rec_val": val, "multiplier": 0.25, "batch_size": 8}


@pytest.fixture(scope="module")
def measured(tiny, tmp_path_factory):
    """The measurement on the tiny data: 2 variants x 2 lrs x 2 seeds, 2 batches."""
    out = str(tmp_path_factory.mktemp("flow"))
    rows = gradflow.gradient_flow(out, RECIPE, VARIANTS, tiny, lrs=[0.01, 0.1], seeds=[0, 1],
                                  batches=2, log=lambda *a, **k: None)
    return out, rows


@pytest.mark.slow
def test_every_row_is_there_and_the_csv_reads_back_typed(measured):
    out, rows = measured
    csv_path = gradflow.write_gradient_flow(rows, out, title="tiny")[0]
    back = gradflow.read_rows(csv_path)
    keys = [(r["variant"], r["stage"], r["base_lr"], r["seed"], r["block"]) for r in back]
    expected = ([(v, "init", None, s, b) for v in VARIANTS for s in (0, 1) for b in BLOCKS]
                + [(v, "epoch 1", lr, s, b) for v in VARIANTS for lr in (0.01, 0.1)
                   for s in (0, 1) for b in BLOCKS])
    assert sorted(keys, key=str) == sorted(expected, key=str)
    for r in back:
        assert 0 < r["grad_norm"] < np.inf and 0 < r["weight_norm"] < np.inf
        assert r["ratio"] == r["grad_norm"] / r["weight_norm"] and r["batches"] == 2
    assert back == rows  # floats survive the CSV exactly
    from mobilenet_skip.bench.runs import code_commit
    assert {r["commit"] for r in back} == {code_commit()}  # one commit, the code's


@pytest.mark.slow
def test_the_summary_s_numbers_are_the_csv_s(measured):
    """Each summary line's block2/block14 ratio (median, min, max over seeds) recomputed
    from the CSV's rows."""
    import re

    out, rows = measured
    back = gradflow.read_rows(gradflow.write_gradient_flow(rows, out)[0])
    lines = gradflow.summary_lines(back)
    assert len(lines) == len(VARIANTS) * 3  # init, and epoch 1 at two lrs
    for line in lines:
        m = re.match(r"(init|after epoch 1, base lr ([0-9.]+)), ([a-z-]+): block2/block14 "
                     r"\|g\|/\|W\| (\S+) \((\S+)-(\S+) over 2 seeds\)$", line)
        assert m, line
        stage, lr = ("init", None) if m.group(2) is None else ("epoch 1", float(m.group(2)))
        ratio = {(r["seed"], r["block"]): r["ratio"] for r in back
                 if (r["variant"], r["stage"], r["base_lr"]) == (m.group(3), stage, lr)}
        per_seed = [ratio[(s, "block2")] / ratio[(s, "block14")] for s in (0, 1)]
        assert [float(m.group(i)) for i in (4, 5, 6)] == pytest.approx(
            [np.median(per_seed), min(per_seed), max(per_seed)], rel=5e-3)  # %.3g


@pytest.mark.slow
def test_seeds_differ_at_init_and_training_moves_the_weights(measured):
    _, rows = measured

    def norms(variant, stage, seed, lr=None):
        return [(r["grad_norm"], r["weight_norm"]) for r in rows if
                (r["variant"], r["stage"], r["seed"], r["base_lr"]) == (variant, stage, seed, lr)]
    for variant in VARIANTS:
        init0, init1 = norms(variant, "init", 0), norms(variant, "init", 1)
        assert len(init0) == 13 and all(a != b for a, b in zip(init0, init1))
        trained = norms(variant, "epoch 1", 0, 0.1)
        assert all(a[1] != b[1] for a, b in zip(init0, trained))
    # full-connect's blocks hold a projection as well: more weights than mobilenet's
    assert norms("full-connect", "init", 0)[0][1] > norms("mobilenet", "init", 0)[0][1]


@pytest.mark.slow
def test_a_finished_run_is_reused_not_retrained(measured, tiny):
    from mobilenet_skip.runs.folder import RunDir

    out, rows = measured
    ckpts = [RunDir(os.path.join(out, "gradflow", name)).checkpoint_path(1)
             for name in sorted(os.listdir(os.path.join(out, "gradflow")))
             if os.path.isdir(os.path.join(out, "gradflow", name))]
    assert len(ckpts) == 8
    stamps = [os.stat(c).st_mtime_ns for c in ckpts]
    again = gradflow.gradient_flow(out, RECIPE, VARIANTS, tiny, lrs=[0.01, 0.1], seeds=[0, 1],
                                   batches=2, log=lambda *a, **k: None)
    assert [os.stat(c).st_mtime_ns for c in ckpts] == stamps
    assert [r["ratio"] for r in again] == pytest.approx([r["ratio"] for r in rows], rel=1e-5)


@pytest.mark.slow
def test_too_few_batches_and_clashing_overrides_are_user_errors(tiny, tmp_path):
    from mobilenet_skip.config import recipes
    cfg = recipes.resolve(RECIPE, dict(tiny, model="mobilenet"))
    with pytest.raises(UserError, match="holds 5 full batch"):  # 40 images, batches of 8
        gradflow.fixed_batches(cfg, 6)
    with pytest.raises(UserError, match="sets lr itself"):
        gradflow.gradient_flow(str(tmp_path), RECIPE, VARIANTS, dict(tiny, lr=0.1), [0.1], [0])
    assert not (tmp_path / "gradflow").exists()


def _row(variant, stage, lr, seed, block, ratio):
    return {"variant": variant, "stage": stage, "base_lr": lr, "seed": seed, "block": block,
            "grad_norm": ratio * 2.0, "weight_norm": 2.0, "ratio": ratio, "batches": 8,
            "commit": "abc"}


def _synthetic():
    """Two blocks, three seeds: init ratios by seed, and one lr after epoch 1."""
    rows = []
    for seed, (first, last) in enumerate(((8.0, 1.0), (6.0, 2.0), (20.0, 4.0))):
        rows += [_row("mobilenet", "init", None, seed, "block2", first),
                 _row("mobilenet", "init", None, seed, "block14", last),
                 _row("mobilenet", "epoch 1", 0.1, seed, "block2", 1.0 + seed),
                 _row("mobilenet", "epoch 1", 0.1, seed, "block14", 1.0)]
    return rows


def test_the_figure_draws_median_band_and_every_seed():
    (init_title, init), (trained_title, trained) = gradflow.panels(_synthetic())
    assert init_title == "init" and trained_title == "after epoch 1, base lr 0.1"
    c = init["mobilenet"]
    assert c["blocks"] == ["block2", "block14"]
    assert c["median"] == [8.0, 2.0] and c["low"] == [6.0, 1.0] and c["high"] == [20.0, 4.0]
    assert c["seeds"] == {0: [8.0, 1.0], 1: [6.0, 2.0], 2: [20.0, 4.0]}
    assert trained["mobilenet"]["median"] == [2.0, 1.0]


def test_the_summary_gives_each_profile_s_first_to_last_ratio_over_seeds(tmp_path):
    # per seed block2/block14: init 8, 3, 5 -> median 5, range 3-8; epoch 1: 1, 2, 3
    paths = gradflow.write_gradient_flow(_synthetic(), str(tmp_path))
    flat = gradflow.flatness(gradflow.read_rows(paths[0]))
    assert [(f["panel"], f["median"], f["low"], f["high"], f["seeds"]) for f in flat] == [
        ("init", 5.0, 3.0, 8.0, 3), ("after epoch 1, base lr 0.1", 2.0, 1.0, 3.0, 3)]
    lines = gradflow.summary_lines(_synthetic())
    assert lines == ["init, mobilenet: block2/block14 |g|/|W| 5 (3-8 over 3 seeds)",
                     "after epoch 1, base lr 0.1, mobilenet: block2/block14 |g|/|W| 2 "
                     "(1-3 over 3 seeds)"]
    with open(paths[2]) as f:
        assert f.read().splitlines() == lines


def test_a_csv_of_raw_gradient_norms_is_a_user_error(tmp_path):
    old = tmp_path / "gradflow.csv"
    old.write_text("variant,stage,block,grad_norm\nmobilenet,init,block2,50.3\n")
    with pytest.raises(UserError, match="no column base_lr, seed, weight_norm"):
        gradflow.read_rows(str(old))
