#!/usr/bin/env python
"""Re-run the paper's variant comparison: five variants x seeds x base lrs, one recipe.

Every run is tools/train_imagenet.py (RecordIO, Trainer, identical settings), differing
only in --model, --seed and the base --lr. --data fashion trains on Fashion-MNIST
(tools/make_fashion_data.py's folder, packed into OUT/data; validated on all 10,000 test
images) with recipes/study-fashion.yaml; --data digits on the demo digits with
recipes/compare.yaml. Writes to --out, all from study.csv:
  study.csv     per-epoch train loss and val top-1 of every run
  study.md      per lr and variant: mean ± std final and best val top-1, epochs to
                --loss-level train loss, and the difference to plain MobileNet with its
                95% confidence interval over seeds ("shown" where it excludes 0)
  curves.png    train loss and val top-1 by epoch at each lr (±1 std bands)
  lr.png        final val top-1 against the base lr (±1 std bands)
  gradflow.csv, gradflow.png, gradflow.txt   each DW block's |gradient|/|weights| per
                seed, at init and after one epoch at base lrs 0.01 and 0.1, and a summary
  runs/         each run's folder
Running it again on the same --out reuses every run that finished with the same command
line, so a killed study picks up where it stopped; --report-only redraws everything from
study.csv and gradflow.csv without training.

  python tools/compare_variants.py --data fashion      # the study (see docs/study.md)
  python tools/compare_variants.py --quick             # smoke test (under a minute)
"""
import argparse
import os

import _bootstrap  # noqa: F401
from mobilenet_skip.bench import gradflow, study
from mobilenet_skip.cli import run_main
from mobilenet_skip.data.demo import pack_demo_data, pack_splits
from mobilenet_skip.data.fashion import DEFAULT_IDX_DIR, make_fashion_data
from mobilenet_skip.errors import UserError
from mobilenet_skip.models import canonical_name, list_models

ROOT = _bootstrap.ROOT
RECIPES = {"digits": "compare.yaml", "fashion": "study-fashion.yaml"}
LOSS_LEVELS = {"digits": 1.0, "fashion": 1.5}  # --loss-level's default per --data
TITLES = {"digits": "demo digits", "fashion": "Fashion-MNIST"}
# where plain MobileNet barely trains and where every variant does best (docs/study.md)
GRADFLOW_LRS = (0.01, 0.1)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    p.add_argument("--data", choices=sorted(RECIPES), default="digits",
                   help="what to train on when --rec-train is not given (default digits)")
    p.add_argument("--idx-dir", default=DEFAULT_IDX_DIR,
                   help="--data fashion: folder of the four IDX .gz files (default %(default)s)")
    p.add_argument("--per-class", type=int, default=500,
                   help="--data fashion: train images per class, a fixed stratified draw "
                   "(default 500 of 6,000; validation always uses all 10,000 test images)")
    p.add_argument("--recipe", help="shared recipe (default recipes/compare.yaml for the digits, "
                   "recipes/study-fashion.yaml for Fashion-MNIST)")
    p.add_argument("--rec-train", help="training .rec (default: --data, packed into OUT/data)")
    p.add_argument("--rec-val", help="validation .rec (default: as --rec-train)")
    p.add_argument("--seeds", type=int, help="seeds per variant (default 3; --quick: 1)")
    p.add_argument("--lrs", help="comma-separated base learning rates, each a full study "
                   "(default 0.01,0.03,0.1,0.3: 30x, so that no variant wins by the choice of "
                   "one lr; --quick: 0.1)")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the recipe's)")
    p.add_argument("--variants", default=",".join(list_models()),
                   help="comma-separated variants (default: all five)")
    p.add_argument("--loss-level", type=float, default=None,
                   help="train-loss level whose first epoch measures convergence (default "
                   "%.1f on the digits, %.1f on Fashion-MNIST, whose short runs all end above "
                   "1.0; label smoothing 0.1 puts the floor near 0.5)"
                   % (LOSS_LEVELS["digits"], LOSS_LEVELS["fashion"]))
    p.add_argument("--gradient-flow", default=True, action=argparse.BooleanOptionalAction,
                   help="measure each DW block's |gradient|/|weights| per seed at init and "
                   "after one epoch at base lrs %s (--quick: the study's lrs; default on)"
                   % ", ".join("%g" % lr for lr in GRADFLOW_LRS))
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: redraw the table and plots from OUT's CSVs")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 seed, 2 epochs, width 0.25, one lr (unless given)")
    return p.parse_args(argv)


def _recs(args):
    """The study's .rec files: given, or --data packed into OUT/data (once)."""
    if args.rec_train:
        return args.rec_train, args.rec_val or args.rec_train
    folder = os.path.join(args.out, "data")
    recs = [os.path.join(folder, s + ".rec") for s in ("train", "val")]
    if all(os.path.isfile(r) for r in recs):
        return recs
    if args.data == "digits":
        return pack_demo_data(folder)
    images = os.path.join(folder, "images")
    counts = make_fashion_data(images, args.idx_dir, per_class=args.per_class)
    print("Fashion-MNIST: %d train images (%d per class), %d val images; packing"
          % (counts["train"], args.per_class, counts["val"]), flush=True)
    return pack_splits(images, folder)


def _report(args, rows, flow, seeds):
    title = "%s, %d seed(s) per variant" % (TITLES[args.data], seeds)
    paths, _ = study.write_outputs(rows, args.out, args.loss_level, title=title)
    if flow:
        paths.update(zip(("gradflow_csv", "gradflow", "gradflow_summary"),
                         gradflow.write_gradient_flow(flow, args.out, title=TITLES[args.data])))
    with open(paths["table"]) as f:
        print("\n" + f.read())
    print("wrote %s" % ", ".join(paths.values()))


def main(argv=None):
    args = parse_args(argv)
    if args.loss_level is None:
        args.loss_level = LOSS_LEVELS[args.data]
    variants = [canonical_name(v) for v in args.variants.split(",") if v.strip()]
    # --quick changes the defaults only: what is given on the command line stands
    seeds = args.seeds if args.seeds is not None else 1 if args.quick else 3
    lr_text = args.lrs or ("0.1" if args.quick else "0.01,0.03,0.1,0.3")
    try:
        lrs = [float(v) for v in lr_text.split(",") if v.strip()]
    except ValueError:
        raise UserError("--lrs takes comma-separated numbers, e.g. 0.03,0.1; got %r" % lr_text)
    if seeds < 1 or not lrs or min(lrs) <= 0:
        raise UserError("--seeds must be at least 1 and --lrs positive numbers")
    if args.per_class < 1:
        raise UserError("--per-class must be at least 1, got %d" % args.per_class)
    recipe = args.recipe or os.path.join(ROOT, "recipes", RECIPES[args.data])
    extra, epochs = [], args.epochs
    if args.quick:
        extra, epochs = ["--multiplier", "0.25"], epochs or 2
    if args.report_only:
        csvs = [os.path.join(args.out, n) for n in (study.OUTPUTS["csv"], "gradflow.csv")]
        if not os.path.isfile(csvs[0]):
            raise UserError("--report-only: %s does not exist; run the study first" % csvs[0])
        flow = gradflow.read_rows(csvs[1]) if os.path.isfile(csvs[1]) else None
        rows = study.read_rows(csvs[0])
        _report(args, rows, flow, len({r["seed"] for r in rows}))
        return 0
    os.makedirs(args.out, exist_ok=True)
    rec_train, rec_val = _recs(args)
    print("study: %d variants x %d seeds x %d lr(s) = %d runs, recipe %s"
          % (len(variants), seeds, len(lrs), len(variants) * seeds * len(lrs), recipe),
          flush=True)
    rows = study.run_study(args.out, recipe, rec_train, rec_val, lrs, variants,
                           seeds=range(seeds), epochs=epochs, extra_args=extra)
    flow = None
    if args.gradient_flow:
        overrides = {"rec_train": os.path.abspath(rec_train), "rec_val": os.path.abspath(rec_val)}
        if args.quick:
            overrides["multiplier"] = 0.25
        flow = gradflow.gradient_flow(args.out, recipe, variants, overrides,
                                      lrs if args.quick else GRADFLOW_LRS, range(seeds),
                                      batches=2 if args.quick else 8)
    _report(args, rows, flow, seeds)
    return 0


if __name__ == "__main__":
    run_main(main)
