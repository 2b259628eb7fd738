"""``tools/benchmark.py train --thread-rows``: the measured table behind the trainer's
thread rule (:mod:`mobilenet_skip.utils.threads`).

At each size of :data:`SIZES`, ``tools/train_imagenet.py`` itself trains on the demo
digits (decoding, augmentation, step and logging, as a study's run does) with one OpenMP
thread, with one per physical core, and as two one-thread runs at once. Each rate is
the second epoch's train img/s from ``metrics.csv`` (the first builds the graph); the
ratio is against the every-core run measured at the same size in the same call, and the
last column says what the rule picks there.
"""
import os
import subprocess
import sys
import tempfile

from ..data.demo import pack_demo_data
from ..utils.cores import physical_cores
from ..utils.fs import checkout_path
from ..utils.plots import read_metrics
from ..utils.threads import SOURCE_ENV, choose_threads

__all__ = ["SIZES", "thread_rows", "format_thread_rows"]

# (what it is, network, width, input side)
SIZES = (("the study", "mobilenet", 0.25, 32),
         ("the demo", "full-connect-pre-act", 0.5, 32),
         ("past the crossover", "mobilenet", 1.0, 64))
TRAIN_TOOL = checkout_path("tools", "train_imagenet.py")


def _start(rec, save_dir, model, width, side, threads, batches):
    env = {k: v for k, v in os.environ.items() if k != SOURCE_ENV}
    env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, TRAIN_TOOL, "--recipe", checkout_path("recipes", "demo.yaml"),
           "--model", model, "--multiplier", str(width), "--input-size", str(side),
           "--rec-train", rec, "--rec-val", rec, "--num-epochs", "2", "--batches-per-epoch",
           str(batches), "--preprocess-threads", "1", "--save-dir", save_dir, "--overwrite",
           "--log-interval", "1000"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)


def _rates(procs_dirs):
    """Each finished run's second-epoch train img/s (waits for every process)."""
    rates = []
    for proc, save_dir in procs_dirs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError("a thread-row run failed (exit %d): %s"
                               % (proc.returncode, err[-2000:]))
        rates.append(read_metrics(os.path.join(save_dir, "metrics.csv"))[-1]["samples_per_s"])
    return rates


def thread_rows(sizes=SIZES, batches=30, say=print):
    """Rows ``{size, model, multiplier, input_size, threads, img_per_s, ratio_vs_cores,
    rule}`` for each of ``sizes``: 1 thread, every core, and two 1-thread runs at once."""
    from ..models import get_model
    from ..models.flops import count_model

    cores = physical_cores() or 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        rec = pack_demo_data(os.path.join(tmp, "data"), 37, splits=("train",))[0]
        for label, model, width, side in sizes:
            run = lambda name, n: (_start(rec, os.path.join(tmp, name), model, width, side,  # noqa: E731
                                          n, batches), os.path.join(tmp, name))
            alone = {n: _rates([run("t%d" % n, n)])[0] for n in sorted({1, cores})}
            both = sum(_rates([run("a", 1), run("b", 1)]))
            macs = count_model(get_model(model, width, 10), side)["macs"] * 32
            rule = choose_threads("auto", macs, cores, environ={}).threads
            for threads, rate in [(n, alone[n]) for n in sorted(alone)] + [("2 runs x 1", both)]:
                rows.append({"size": label, "model": model, "multiplier": width,
                             "input_size": side, "threads": threads, "img_per_s": rate,
                             "ratio_vs_cores": rate / alone[cores], "rule": rule,
                             "macs_per_step": macs})
            say("threads: %s (%s %g-%d) measured" % (label, model, width, side))
    return rows


def format_thread_rows(rows):
    """The thread table, or ``[]`` when there is none."""
    if not rows:
        return []
    lines = ["", "train: tools/train_imagenet.py's train img/s (2nd epoch) by OpenMP threads, "
             "batch 32; ratio against every core at the same size; 'rule' = what "
             "omp_threads: auto picks there",
             "%-20s %-32s %10s %10s %10s %8s" % ("size", "network", "threads", "img/s",
                                                  "vs cores", "rule")]
    for r in rows:
        lines.append("%-20s %-32s %10s %10.1f %9.3fx %8s" % (
            r["size"], "%s %g-%d (%.0fM/step)" % (r["model"], r["multiplier"],
                                                  r["input_size"], r["macs_per_step"] / 1e6),
            r["threads"], r["img_per_s"], r["ratio_vs_cores"], r["rule"]))
    return lines
