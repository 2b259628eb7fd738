"""The converged study's report, from small synthetic CSVs the tests write."""
import csv
import os
import re

import pytest

from mobilenet_skip.bench import converged, linear
from mobilenet_skip.bench.stats import holm, welch_interval, welch_p
from mobilenet_skip.errors import UserError

import pictures
from conftest import ROOT

# final-epoch test top-1 per seed: mobilenet at 89%, the skips a little above or level
FINALS = {"mobilenet": (0.890, 0.893, 0.891), "simple-connect": (0.897, 0.899, 0.898),
          "simple-connect-pre-act": (0.893, 0.889, 0.894), "full-connect": (0.899, 0.902, 0.900),
          "full-connect-pre-act": (0.880, 0.910, 0.895)}
EPOCHS = 5


def write_study(folder, finals=FINALS, commit="abc1234", floor=True):
    """runs.csv, test.csv (the last 3 epochs, climbing 0.2 points an epoch to the final)
    and linear.csv of a tiny converged study in ``folder``."""
    runs, test = [], []
    for variant, tops in finals.items():
        for seed, top in enumerate(tops):
            for epoch in range(1, EPOCHS + 1):
                late = EPOCHS - epoch
                runs.append(dict(variant=variant, base_lr=0.1, seed=seed, epoch=epoch,
                                 train_loss=1.0 + late / 10, train_top1=0.9, lr=0.01,
                                 val_top1=top - 0.01 - 0.02 * late, val_top5=0.99,
                                 commit=commit))
                if late < converged.SCORED:
                    test.append(dict(variant=variant, base_lr=0.1, seed=seed, epoch=epoch,
                                     test_top1=top - 0.002 * late, test_top5=0.99,
                                     commit=commit))
    _write(folder, "runs.csv", converged.RUNS_COLUMNS, runs)
    _write(folder, "test.csv", converged.TEST_COLUMNS, test)
    if floor:
        _write(folder, "linear.csv", linear.COLUMNS, [dict(
            model="logistic regression on raw pixels", C=0.1, holdout_top1=0.85,
            test_top1=0.8432, train_images=55000, seconds=100.0)])
    return runs, test


def _write(folder, name, columns, rows):
    with open(os.path.join(str(folder), name), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _row(table, first):
    return [c.strip() for c in next(l for l in table.splitlines()
                                    if l.startswith("| %s |" % first)).split("|")[1:-1]]


def test_the_table_holds_the_study_in_its_order_with_family_statistics(tmp_path):
    write_study(tmp_path)
    paths, summary = converged.write_converged_report(str(tmp_path), 0.25, 32, title="t")
    table = open(paths["table"], encoding="utf-8").read()
    rows = [l.split("|")[1].strip() for l in table.splitlines() if l.startswith("| ")][1:]
    assert rows == list(converged.ORDER) + ["linear floor (C=0.1)"]
    # hold-out curves and final scores: every variant in its own colour on both panels
    pictures.check_plot(paths["plot"], (13, 4.8), pictures.series_colours(len(converged.ORDER)),
                        (1, 2))
    plain = _row(table, "mobilenet")
    assert plain[3] == "3" and plain[4] == "89.13 ± 0.15"
    assert plain[5] == "0.40"  # last 3 epochs 88.73, 88.93, 89.13 on average
    assert plain[6] == "88.13 ± 0.15"  # hold-out at the last epoch: 1 point under
    skips = [v for v in converged.ORDER if v != "mobilenet"]
    adjusted = holm([welch_p(FINALS[v], FINALS["mobilenet"]) for v in skips])
    for variant, p_holm in zip(skips, adjusted):
        cells = _row(table, variant)
        diff, low, high = welch_interval(FINALS[variant], FINALS["mobilenet"])
        assert cells[7] == "%+.2f [%+.2f, %+.2f]" % (diff * 100, low * 100, high * 100)
        assert cells[9] == ("<0.001" if p_holm < 0.001 else "%.3f" % p_holm)
        shown = low > 0 or high < 0
        assert cells[10].startswith("shown" if shown else "not shown")
        assert ("survives" in cells[10]) == (p_holm < 0.05)
    # the equal-cost group shares mobilenet's Mult-Adds and params; full-connect's cost more
    costs = {v: _row(table, v)[1:3] for v in converged.ORDER}
    assert costs["simple-connect"] == costs["simple-connect-pre-act"] == costs["mobilenet"]
    assert int(costs["full-connect"][0].replace(",", "")) > int(
        costs["mobilenet"][0].replace(",", ""))
    floor = _row(table, "linear floor (C=0.1)")
    assert floor[1:3] == ["7,840", "7,850"] and floor[4] == "84.32"
    assert floor[7] == "%+.2f" % (84.32 - 89.1333333)
    assert "Holm p (family of 4)" in table and "width 0.25, 32 px" in table
    assert summary[0]["variant"] == "mobilenet" and summary[0]["comparison"] is None


def test_the_lines_under_the_table_judge_the_targets(tmp_path):
    write_study(tmp_path)
    table = converged.converged_text(str(tmp_path), 0.25, 32)[0]
    # full-connect-pre-act's seeds spread 3 points: its interval is far wider than ±0.7
    wide = re.search(r"exceeding it: (.*)\.", table).group(1)
    assert "full-connect-pre-act" in wide and "simple-connect (" not in wide
    assert "89.13% final test top-1 (target ≥ 89%) with its last 3 epochs within 0.40 " \
           "points (target ≤ 0.5): met." in table
    assert "Commit: abc1234 (runs.csv and test.csv)." in table
    (tmp_path / "linear.csv").unlink()
    write_study(tmp_path, dict(FINALS, mobilenet=(0.880, 0.885, 0.884)), floor=False)
    table = converged.converged_text(str(tmp_path), 0.25, 32)[0]
    assert "(target ≤ 0.5): not met." in table and "no linear.csv yet" in table
    assert "linear floor (C=" not in table


def test_csvs_that_are_not_one_study_are_refused(tmp_path):
    runs, test = write_study(tmp_path)
    test[-1]["commit"] = "fff0000"
    _write(tmp_path, "test.csv", converged.TEST_COLUMNS, test)
    with pytest.raises(UserError, match="mix 2 commits"):
        converged.converged_text(str(tmp_path), 0.25, 32)
    _write(tmp_path, "test.csv", converged.TEST_COLUMNS, [r for r in test if r["epoch"] != 3])
    with pytest.raises(UserError, match="scored at epochs .* not its last 3"):
        converged.summarise_converged(runs, converged.read_test(str(tmp_path)))
    with pytest.raises(UserError, match="different runs"):
        converged.summarise_converged(runs, [r for r in test if r["seed"] != 2])
    with pytest.raises(UserError, match="seeds of mobilenet end at different epochs"):
        converged.summarise_converged([r for r in runs if r["variant"] != "mobilenet"
                                       or r["seed"] or r["epoch"] < EPOCHS], test)
    with pytest.raises(UserError, match="no mobilenet runs"):
        converged.summarise_converged(*[[r for r in rows if r["variant"] != "mobilenet"]
                                        for rows in (runs, test)])
