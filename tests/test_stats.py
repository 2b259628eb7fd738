"""The studies' statistics (Welch, Holm) and the report helpers they share."""
import numpy as np
import pytest
from scipy import stats as scipy_stats

from mobilenet_skip.bench import reporting
from mobilenet_skip.bench.stats import (compare_family, holm, mean_interval, welch_interval,
                                        welch_p)
from mobilenet_skip.errors import UserError


def test_holm_on_a_hand_checked_family():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06
    # so that a larger raw p never gets a smaller adjusted p; results in the input order
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # 0.5 * 2 caps at 1, and 0.6 is raised to it
    assert holm([0.3, 0.9]) == pytest.approx([0.6, 0.9])
    assert holm([0.02]) == [0.02]  # a family of one is not corrected
    adjusted = holm([0.01, float("nan"), 0.02])  # NaN: no interval, not in the family
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.02)
    assert adjusted[1] != adjusted[1]


def test_holm_lies_between_the_raw_p_and_bonferroni_and_keeps_the_order():
    rng = np.random.RandomState(0)
    for m in (2, 5, 16):
        p = rng.uniform(0, 0.2, m) ** 2
        adjusted = np.array(holm(p))
        assert (adjusted >= p).all() and (adjusted <= 1).all()
        assert (adjusted <= np.minimum(1, m * p) + 1e-12).all()  # never above Bonferroni
        order = np.argsort(p)
        assert (np.diff(adjusted[order]) >= 0).all()  # monotone in the raw p
        assert adjusted[order[0]] == pytest.approx(min(1, m * p[order[0]]))
        assert adjusted[order[-1]] == pytest.approx(max(adjusted))


def test_welch_p_matches_scipy_and_agrees_with_the_interval():
    rng = np.random.RandomState(3)
    for n_a, n_b, scale in ((3, 3, 1.0), (3, 5, 4.0), (10, 4, 0.3), (2, 7, 2.0)):
        for _ in range(5):
            a, b = rng.normal(0.5, 1.0, n_a), rng.normal(0, scale, n_b)
            expected = scipy_stats.ttest_ind(a, b, equal_var=False).pvalue
            assert welch_p(a, b) == pytest.approx(expected, rel=1e-9)
            _, low, high = welch_interval(a, b)
            # same t and degrees of freedom: the 95% interval excludes 0 exactly when p < 0.05
            assert (low > 0 or high < 0) == (welch_p(a, b) < 0.05)


def test_welch_p_without_spread_or_without_seeds():
    assert welch_p([0.9], [0.8]) != welch_p([0.9], [0.8])  # NaN: one value a side
    assert welch_p([0.9, 0.9], [0.8, 0.8]) == 0.0  # the interval is the point 0.1
    assert welch_p([0.9, 0.9], [0.9, 0.9]) == 1.0


def test_compare_family_reports_each_difference_and_corrects_over_all():
    clear = ([0.90, 0.91, 0.92], [0.80, 0.81, 0.80])
    weak = ([0.80, 0.84, 0.88], [0.78, 0.80, 0.79])
    family = compare_family([("clear", *clear), ("weak", *weak), ("one", [0.9], [0.8])])
    assert [c["label"] for c in family] == ["clear", "weak", "one"]
    c = family[0]
    assert c["diff"] == pytest.approx(0.1067, abs=1e-4) and c["shown"]
    assert c["half_width"] == pytest.approx((c["high"] - c["low"]) / 2)
    assert c["p"] == pytest.approx(welch_p(*clear))
    assert c["p_holm"] == pytest.approx(min(1, 2 * min(welch_p(*clear), welch_p(*weak))))
    assert c["survives"] == (c["p_holm"] < 0.05)
    assert not family[1]["survives"] and family[1]["p_holm"] >= family[1]["p"]
    assert not family[2]["shown"] and not family[2]["survives"]
    assert reporting.verdict(family[2]) == "no interval"


def test_verdicts_and_cells():
    base = {"diff": 0.05, "low": 0.01, "high": 0.09, "shown": True}
    assert reporting.verdict(dict(base, survives=True)) == "shown, survives Holm"
    assert reporting.verdict(dict(base, survives=False)) == "shown, not after Holm"
    assert reporting.verdict(dict(base, low=-0.01, shown=False, survives=False)) == "not shown"
    assert reporting.difference(base) == "+5.00 [+1.00, +9.00]"
    assert reporting.p_text(0.0004) == "<0.001" and reporting.p_text(0.0123) == "0.012"
    assert reporting.p_text(float("nan")) == "-"
    assert reporting.offsets(["a", "b", "a", "c"]) == {"a": -1.0, "b": 0.0, "c": 1.0}


def test_one_commit_per_study_and_typed_reading(tmp_path):
    rows = {"runs.csv": [{"commit": "abc"}], "test.csv": [{"commit": "abc"}]}
    assert reporting.single_commit(rows) == "abc"
    rows["test.csv"].append({"commit": "def"})
    with pytest.raises(UserError, match="mix 2 commits.*def in test.csv"):
        reporting.single_commit(rows)
    path = tmp_path / "runs.csv"
    path.write_text("variant,seed,epoch,val_top1,commit\nmobilenet,0,1,0.5,abc\n")
    row, = reporting.read_csv(str(path), ("variant", "seed", "epoch", "val_top1", "commit"))
    assert row == {"variant": "mobilenet", "seed": 0, "epoch": 1, "val_top1": 0.5,
                   "commit": "abc"}
    with pytest.raises(UserError, match="lacks the column.*train_loss"):
        reporting.read_csv(str(path), ("variant", "train_loss"))
    path.write_text("variant,seed,epoch,val_top1,commit\nmobilenet,0,1,oops,abc\n")
    with pytest.raises(UserError, match="line 2: val_top1 is 'oops'"):
        reporting.read_csv(str(path), ("variant", "seed", "epoch", "val_top1", "commit"))


def test_mean_interval_is_the_one_sample_t_interval():
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    # sd 1, n 3: half-width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051
    assert mean == 2 and high - mean == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-6)
    assert mean - low == pytest.approx(high - mean)
    assert mean_interval([0.5])[1] != mean_interval([0.5])[1]
