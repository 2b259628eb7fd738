#!/usr/bin/env python
"""Re-run the paper's variant comparison in miniature: five variants x seeds on the demo digits.

Every run is tools/train_imagenet.py with recipes/compare.yaml (RecordIO, Trainer,
identical settings), differing only in --model, --seed and the base --lr. Writes to
--out: compare.csv (per-epoch train loss and val top-1 of every run), compare.md
(mean ± std final top-1 and the epoch each variant first reaches --loss-level train
loss), compare.png (mean curves with ±1 std bands), and runs/ (each run's folder).
Running it again on the same --out reuses every run that finished with the same
command line, so a killed study picks up where it stopped; delete OUT/runs to retrain.

  python tools/compare_variants.py                 # the full study (~25 min, 2 cores)
  python tools/compare_variants.py --quick         # smoke test (under a minute)
"""
import argparse
import os

import _bootstrap  # noqa: F401
from mobilenet_skip.bench import study as compare
from mobilenet_skip.cli import run_main
from mobilenet_skip.data.demo import pack_demo_data
from mobilenet_skip.models import canonical_name, list_models

ROOT = _bootstrap.ROOT


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    p.add_argument("--recipe", default=os.path.join(ROOT, "recipes", "compare.yaml"),
                   help="shared recipe (default recipes/compare.yaml)")
    p.add_argument("--rec-train", help="training .rec (default: the demo digits, packed "
                   "into OUT/data)")
    p.add_argument("--rec-val", help="validation .rec (default: as --rec-train)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    p.add_argument("--lrs", default="0.03,0.1",
                   help="comma-separated base learning rates, each a full study "
                   "(default 0.03,0.1: a slow and a fast one, so no variant wins by tuning)")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the recipe's)")
    p.add_argument("--variants", default=",".join(list_models()),
                   help="comma-separated variants (default: all five)")
    p.add_argument("--loss-level", type=float, default=1.0,
                   help="train-loss level whose first epoch measures convergence (default 1.0; "
                   "label smoothing 0.1 puts the floor near 0.5)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 seed, 2 epochs, width 0.25, one lr (unless given)")
    return p.parse_args(argv)


def _demo_recs(out):
    folder = os.path.join(out, "data")
    recs = [os.path.join(folder, s + ".rec") for s in ("train", "val")]
    return recs if all(os.path.isfile(r) for r in recs) else pack_demo_data(folder)


def main(argv=None):
    args = parse_args(argv)
    variants = [canonical_name(v) for v in args.variants.split(",") if v.strip()]
    try:
        lrs = [float(v) for v in args.lrs.split(",") if v.strip()]
    except ValueError:
        raise ValueError("--lrs takes comma-separated numbers, e.g. 0.03,0.1; got %r" % args.lrs)
    if args.seeds < 1 or not lrs or min(lrs) <= 0:
        raise ValueError("--seeds must be at least 1 and --lrs positive numbers")
    extra, seeds, epochs = [], args.seeds, args.epochs
    if args.quick:
        extra = ["--multiplier", "0.25"]
        seeds, epochs = (1 if "--seeds" not in (argv or []) else args.seeds), (epochs or 2)
        lrs = lrs if "--lrs" in (argv or []) else lrs[-1:]
    os.makedirs(args.out, exist_ok=True)
    rec_train, rec_val = (args.rec_train, args.rec_val or args.rec_train) if args.rec_train \
        else _demo_recs(args.out)
    print("study: %d variants x %d seeds x %d lr(s) = %d runs, recipe %s"
          % (len(variants), seeds, len(lrs), len(variants) * seeds * len(lrs), args.recipe),
          flush=True)
    rows = compare.run_study(args.out, args.recipe, rec_train, rec_val, lrs, variants,
                             seeds=range(seeds), epochs=epochs, extra_args=extra)
    paths, _ = compare.write_outputs(rows, args.out, args.loss_level,
                                     title="demo digits, %d seed(s) per variant" % seeds)
    with open(paths[1]) as f:
        print("\n" + f.read())
    print("wrote %s" % ", ".join(paths))
    return 0


if __name__ == "__main__":
    run_main(main)
