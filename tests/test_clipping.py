"""The clipping ablation's report, from a small synthetic clipping.csv."""
import csv

import pytest

from mobilenet_skip.bench import clipping
from mobilenet_skip.bench.stats import holm, welch_interval, welch_p
from mobilenet_skip.errors import UserError

import pictures

# final val top-1 per seed at (lr, clip, variant): plain MobileNet fails at lr 0.01 when
# clipped and recovers without clipping; simple-connect does not care
FINALS = {(0.01, 2.0, "mobilenet"): (0.30, 0.25, 0.35),
          (0.01, 2.0, "simple-connect"): (0.60, 0.61, 0.59),
          (0.01, 0.0, "mobilenet"): (0.58, 0.60, 0.57),
          (0.01, 0.0, "simple-connect"): (0.61, 0.60, 0.62),
          (0.1, 2.0, "mobilenet"): (0.70, 0.72, 0.66),
          (0.1, 2.0, "simple-connect"): (0.75, 0.74, 0.76),
          (0.1, 0.0, "mobilenet"): (0.69, 0.71, 0.73),
          (0.1, 0.0, "simple-connect"): (0.74, 0.75, 0.77)}
EPOCHS = 3


def write_clipping(folder, finals=FINALS, commits=("abc1234",)):
    rows = []
    for n, ((lr, clip, variant), tops) in enumerate(finals.items()):
        for seed, top in enumerate(tops):
            rows += [dict(variant=variant, base_lr=lr, clip_gradient=clip, seed=seed,
                          epoch=e, train_loss=1.0, train_top1=0.5, val_top5=0.9,
                          val_top1=top - 0.05 * (EPOCHS - e), commit=commits[n % len(commits)])
                     for e in range(1, EPOCHS + 1)]
    with open(str(folder / "clipping.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=clipping.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _lines(table, start):
    return [[c.strip() for c in l.split("|")[1:-1]] for l in table.splitlines()
            if l.startswith(start)]


def test_both_families_come_from_the_last_epoch_with_their_own_holm(tmp_path):
    write_clipping(tmp_path)
    paths, summary = clipping.write_clipping_report(str(tmp_path), title="t")
    table = open(paths["table"], encoding="utf-8").read()
    # 4 (lr, clip) groups; each variant's seeds and mean in its own colour
    pictures.check_plot(paths["plot"], (1.8 * 4 + 3, 4.6), pictures.series_colours(2))
    versus = _lines(table, "| 0.")[:4]
    assert [row[:3] for row in versus] == [["0.01", "2", "simple-connect"],
                                          ["0.01", "off", "simple-connect"],
                                          ["0.1", "2", "simple-connect"],
                                          ["0.1", "off", "simple-connect"]]
    keys = [(0.01, 2.0), (0.01, 0.0), (0.1, 2.0), (0.1, 0.0)]
    pairs = [(FINALS[k + ("simple-connect",)], FINALS[k + ("mobilenet",)]) for k in keys]
    adjusted = holm([welch_p(a, b) for a, b in pairs])
    for row, (a, b), p_holm in zip(versus, pairs, adjusted):
        diff, low, high = welch_interval(a, b)
        assert row[5] == "%+.2f [%+.2f, %+.2f]" % (diff * 100, low * 100, high * 100)
        assert row[7] == ("<0.001" if p_holm < 0.001 else "%.3f" % p_holm)
    assert versus[0][3:5] == ["60.00 ± 1.00", "30.00 ± 5.00"]
    off = _lines(table, "| 0.")[4:]
    assert [row[:3] for row in off] == [["0.01", "mobilenet", "2"],
                                       ["0.01", "simple-connect", "2"],
                                       ["0.1", "mobilenet", "2"], ["0.1", "simple-connect", "2"]]
    diff, low, high = welch_interval(FINALS[0.01, 0.0, "mobilenet"], FINALS[0.01, 2.0, "mobilenet"])
    assert off[0][5] == "%+.2f [%+.2f, %+.2f]" % (diff * 100, low * 100, high * 100)
    assert off[0][8].startswith("shown") and off[3][8] == "not shown"
    assert table.count("Holm p (family of 4)") == 2
    assert "3 seeds per cell" in table and "Commit: abc1234 (clipping.csv)." in table
    assert len(summary["versus"]) == len(summary["off"]) == 4


def test_a_mixed_or_plain_less_ablation_is_refused(tmp_path):
    write_clipping(tmp_path, commits=("abc1234", "def5678"))
    with pytest.raises(UserError, match="mix 2 commits"):
        clipping.write_clipping_report(str(tmp_path))
    write_clipping(tmp_path, {k: v for k, v in FINALS.items() if k[2] != "mobilenet"})
    with pytest.raises(UserError, match="no mobilenet runs"):
        clipping.write_clipping_report(str(tmp_path))
