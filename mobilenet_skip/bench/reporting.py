"""What the study reports share: typed CSV reading, the one-commit check, each run's last
epoch, and the cells every table writes the same way (mean ± std, a difference with its
interval, p-values, the verdict)."""
import csv
import os

import numpy as np

from ..errors import UserError

__all__ = ["read_csv", "single_commit", "last_epochs", "mean_std", "pm", "difference",
           "p_text", "verdict", "offsets"]


def read_csv(path, columns, text=("variant", "commit"), ints=("seed", "epoch")):
    """The rows of a study CSV, typed: ``text`` columns as str, ``ints`` as int, every
    other column of ``columns`` as float; extra columns are kept as str.

    Raises
    ------
    UserError
        The file is missing, lacks one of ``columns``, or holds a value of the wrong type.
    """
    if not os.path.isfile(path):
        raise UserError("%s does not exist: run the study (or the linear floor) first" % path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise UserError("%s lacks the column(s) %s; it needs %s"
                            % (path, ", ".join(missing), ", ".join(columns)))
        rows = list(reader)
    for line, row in enumerate(rows, start=2):
        for key in columns:
            if key in text:
                continue
            try:
                row[key] = int(row[key]) if key in ints else float(row[key])
            except (TypeError, ValueError):
                raise UserError("%s line %d: %s is %r, not a number"
                                % (path, line, key, row[key])) from None
    return rows


def single_commit(named_rows):
    """The one commit all rows record; ``named_rows`` is ``{file name: rows}``.

    Raises
    ------
    UserError
        The rows record more than one commit (runs of different code are not one study).
    """
    seen = {}
    for name, rows in named_rows.items():
        for row in rows:
            seen.setdefault(row["commit"], set()).add(name)
    if not seen:
        raise UserError("the CSVs (%s) hold no rows" % ", ".join(named_rows))
    if len(seen) > 1:
        mixed = "; ".join("%s in %s" % (c, ", ".join(sorted(n))) for c, n in sorted(seen.items()))
        raise UserError("the CSVs mix %d commits (%s): a study's runs must come from one "
                        "commit; re-run the odd ones" % (len(seen), mixed))
    return next(iter(seen))


def last_epochs(rows, keys, count=1):
    """``{run key: its last ``count`` rows by epoch}`` (all of them for None), a run being
    one value of ``keys``; runs in sorted key order."""
    runs = {}
    for row in rows:
        runs.setdefault(tuple(row[k] for k in keys), []).append(row)
    return {key: sorted(runs[key], key=lambda r: r["epoch"])[-count if count else 0:]
            for key in sorted(runs)}


def mean_std(values):
    """Mean and sample standard deviation (NaN for one value)."""
    values = np.asarray(values, dtype=float)
    std = values.std(ddof=1) if len(values) > 1 else float("nan")
    return float(values.mean()), float(std)


def pm(mean, std, scale=1.0, digits=2):
    """'70.00 ± 14.14' (scaled), the mean alone for one value, 'never' for None."""
    if mean is None:
        return "never"
    if std != std:  # NaN: a single seed has no spread
        return "%.*f" % (digits, mean * scale)
    return "%.*f ± %.*f" % (digits, mean * scale, digits, std * scale)


def difference(c, scale=100.0):
    """'+0.53 [+0.12, +0.94]' in points, from a :func:`~.stats.compare_family` row."""
    if c["low"] != c["low"]:  # NaN: one seed has no interval
        return "%+.2f (one seed: no interval)" % (c["diff"] * scale)
    return "%+.2f [%+.2f, %+.2f]" % (c["diff"] * scale, c["low"] * scale, c["high"] * scale)


def p_text(p):
    """A p-value to 3 decimals ('<0.001' below), '-' when there is none."""
    if p != p:
        return "-"
    return "<0.001" if p < 0.001 else "%.3f" % p


def verdict(c):
    """'shown, survives Holm', 'shown, not after Holm', 'not shown' or 'no interval'."""
    if c["low"] != c["low"]:
        return "no interval"
    if not c["shown"]:
        return "not shown"
    return "shown, survives Holm" if c["survives"] else "shown, not after Holm"


def offsets(names):
    """``{name: offset in -1..1}`` in order of first appearance: where each group's dots sit
    beside a shared x position, so that groups' seeds do not hide one another."""
    names = list(dict.fromkeys(names))
    spread = np.linspace(-1, 1, len(names)) if len(names) > 1 else [0.0]
    return {name: float(x) for name, x in zip(names, spread)}
