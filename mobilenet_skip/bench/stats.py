"""Two-sample statistics of the studies: Welch's t interval and p-value, and Holm's
correction over a family of comparisons.

Every study compares a handful of seeds per side, so the variances of the two sides
differ and are estimated from few values: Welch's t (unequal variances, Welch-
Satterthwaite degrees of freedom) is the test used throughout. A table that reports
several differences at once is a family: reading "shown" off each 95% interval alone
would call about one in twenty true nulls shown, so each family is also corrected with
Holm-Bonferroni, which controls the chance of any false "shown" in the family at 0.05
without assuming the comparisons are independent (they share the plain-MobileNet side).
"""
import numpy as np

__all__ = ["welch_interval", "welch_p", "mean_interval", "holm", "compare_family", "ALPHA"]

ALPHA = 0.05  # the family-wise error rate a "survives" verdict is held to


def _welch_parts(a, b):
    """``(diff, se, dof)`` of mean(a) - mean(b); se and dof are NaN below 2 values a side."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, float("nan"), float("nan")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    if se == 0:
        return diff, 0.0, float("nan")
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return diff, se, float(dof)


def welch_interval(a, b, level=0.95):
    """Mean of ``a`` minus mean of ``b`` with its ``level`` confidence interval (Welch's t,
    unequal variances); ``(diff, nan, nan)`` when either side has fewer than 2 values,
    ``(diff, diff, diff)`` when neither side varies."""
    from scipy import stats

    diff, se, dof = _welch_parts(a, b)
    if se != se:
        return diff, float("nan"), float("nan")
    if se == 0:
        return diff, diff, diff
    half = float(stats.t.ppf(0.5 + level / 2, dof) * se)
    return diff, diff - half, diff + half


def welch_p(a, b):
    """Two-sided p-value of Welch's t-test that ``a`` and ``b`` have the same mean.

    NaN when either side has fewer than 2 values. When neither side varies the interval
    of :func:`welch_interval` is the single point ``diff``, and p follows it: 1 for equal
    means, 0 otherwise.
    """
    from scipy import stats

    diff, se, dof = _welch_parts(a, b)
    if se != se:
        return float("nan")
    if se == 0:
        return 1.0 if diff == 0 else 0.0
    return float(2 * stats.t.sf(abs(diff) / se, dof))


def mean_interval(values, level=0.95):
    """``(mean, low, high)``: the mean of ``values`` with its ``level`` t interval (NaN
    bounds for one value)."""
    from scipy import stats

    values = np.asarray(values, float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1)
                 / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def holm(pvalues):
    """Holm-Bonferroni adjusted p-values, in the order given.

    The k-th smallest of m p-values is multiplied by ``m - k + 1``, made monotone (an
    adjusted p is never below that of a smaller raw p) and capped at 1; a comparison
    survives at family-wise level alpha where its adjusted p is below alpha. NaN
    p-values (comparisons without an interval) stay NaN and do not count in m.
    """
    p = np.asarray(pvalues, float)
    out = np.full(len(p), np.nan)
    valid = np.flatnonzero(p == p)
    m = len(valid)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return [float(v) for v in out]


def compare_family(comparisons, level=0.95, alpha=ALPHA):
    """Every difference of a family with its interval, p-values and verdicts.

    Parameters
    ----------
    comparisons : list of (label, a, b)
        Each compares the values ``a`` with ``b`` (difference mean(a) - mean(b)).
    level : float
        Confidence level of each interval.
    alpha : float
        Family-wise error rate of Holm's correction.

    Returns
    -------
    list of dict
        Per comparison, in order: ``label``, ``diff``, ``low``, ``high``, ``half_width``
        (NaN without an interval), ``p``, ``p_holm`` (over the family), ``shown`` (the
        interval excludes 0) and ``survives`` (``p_holm`` < ``alpha``).
    """
    rows = []
    for label, a, b in comparisons:
        diff, low, high = welch_interval(a, b, level)
        rows.append({"label": label, "diff": diff, "low": low, "high": high,
                     "half_width": (high - low) / 2, "p": welch_p(a, b),
                     "shown": bool(low > 0 or high < 0)})
    for row, adjusted in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = adjusted
        row["survives"] = bool(adjusted < alpha)
    return rows
