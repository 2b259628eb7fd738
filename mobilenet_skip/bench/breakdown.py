"""``tools/benchmark.py train --breakdown``: each row's step split by oneDNN primitive
kind, from oneDNN's own execution times (DNNL_VERBOSE=1), and on an unfused row the most
fusing BatchNorm-ReLU can give: the fused operator removes the ReLU (``eltwise``) and at
best every ``reorder``, so no fused step beats ``step / (step - eltwise - reorder)``.
"""
import os
import tempfile
import time

__all__ = ["add_breakdown", "format_breakdown", "fmt", "FUSION_REMOVES", "BREAKDOWN_KINDS",
           "UNFUSED"]

UNFUSED = " (unfused)"    # suffix of a network's row without fused BatchNorm-ReLU

# What fusing a BatchNorm with its ReLU can take out of a step: the ReLU's own passes, and
# at best the layout conversions around it.
FUSION_REMOVES = ("eltwise", "reorder")
# (oneDNN primitive kind, column head) of the breakdown table; the rest is "other"
BREAKDOWN_KINDS = (("convolution", "conv"), ("batch_normalization", "batchnorm"),
                   ("eltwise", "eltwise"), ("reorder", "reorder"), ("sum", "sum"))


def add_breakdown(entries, rows, measure, say):
    """Time each entry once more under DNNL_VERBOSE=1; add ``step_ms``, ``dnnl_ms`` (by
    primitive kind) and, to unfused rows, ``fusion_bound`` to its row.

    ``measure(entry, log_path)`` runs one entry ``(label, network, fuse)`` with oneDNN's
    verbose log going to ``log_path`` and returns its measurement; ``say`` prints progress.
    """
    with tempfile.TemporaryDirectory(prefix="bench-dnnl-") as tmp:
        for entry, row in zip(entries, rows):
            label = entry[0]
            tic = time.time()
            out = measure(entry, os.path.join(tmp, "verbose.log"))
            if not out.get("dnnl_ms"):
                say("breakdown: oneDNN logged nothing for %s (a build without oneDNN, or "
                     "a GPU); no breakdown" % label)
                return
            row["step_ms"], row["dnnl_ms"] = out["step_ms"], out["dnnl_ms"]
            removable = sum(out["dnnl_ms"].get(k, 0.0) for k in FUSION_REMOVES)
            if label.endswith(UNFUSED) and removable < out["step_ms"]:
                row["fusion_bound"] = out["step_ms"] / (out["step_ms"] - removable)
            say("breakdown %-33s %7.0f ms/step, %4.0f of them ReLU and reorders  (%.0f s)"
                 % (label, out["step_ms"], removable, time.time() - tic))


def format_breakdown(rows):
    """The ``--breakdown`` table, or ``[]`` when there is none."""
    rows = [r for r in rows if r.get("dnnl_ms")]
    if not rows:
        return []
    width = max([28] + [len(r["model"]) for r in rows])
    lines = ["", "train: one step split by oneDNN primitive (ms, oneDNN's own times, "
             "DNNL_VERBOSE=1, one more process per row); 'outside' = MXNet's own operators "
             "(skip additions, optimizer) and Python; 'fusion bound' = the most fused "
             "BatchNorm-ReLU can give: step / (step - eltwise - reorder)",
             "%-*s %8s" % (width, "model", "step") + "".join(
                 " %9s" % head for _, head in BREAKDOWN_KINDS) + " %8s %8s %13s" % (
                 "other", "outside", "fusion bound")]
    shown = [kind for kind, _ in BREAKDOWN_KINDS]
    for r in rows:
        ms = r["dnnl_ms"]
        other = sum(v for k, v in ms.items() if k not in shown)
        lines.append("%-*s %8.0f" % (width, r["model"], r["step_ms"]) + "".join(
            " %9.0f" % ms.get(k, 0.0) for k in shown) + " %8.0f %8.0f %13s" % (
            other, r["step_ms"] - sum(ms.values()), fmt(r.get("fusion_bound"), "12.3fx", 13)))
    return lines


def fmt(value, spec, width):
    """``value`` as ``%spec``, or ``-`` right-aligned in ``width`` where it is None."""
    return ("%" + spec) % value if value is not None else "-".rjust(width)
