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
                95% confidence interval over seeds, Welch p and Holm p over the
                table's differences ("shown" where the interval excludes 0)
  curves.png    train loss and val top-1 by epoch at each lr (±1 std bands, seeds as dots)
  lr.png        final val top-1 against the base lr (±1 std bands, seeds as dots)
  gradflow.csv, gradflow.png   each DW block's gradient norm at init and after epoch 1
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
from mobilenet_skip.bench import clipping, converged, gradflow, linear, plans, study
from mobilenet_skip.config.recipes import resolve
from mobilenet_skip.cli import run_main
from mobilenet_skip.data.demo import pack_demo_data, pack_splits
from mobilenet_skip.data.fashion import DEFAULT_IDX_DIR, make_fashion_data
from mobilenet_skip.errors import UserError
from mobilenet_skip.models import canonical_name

ROOT = _bootstrap.ROOT
RECIPES = {"digits": "compare.yaml", "fashion": "study-fashion.yaml"}
LOSS_LEVELS = {"digits": 1.0, "fashion": 1.5}  # --loss-level's default per --data
TITLES = {"digits": "demo digits", "fashion": "Fashion-MNIST"}
HOLDOUT_PER_CLASS = 500  # the converged study's monitoring split: 5,000 of the 60,000


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    p.add_argument("--study", choices=sorted(plans.STUDIES), default="sweep",
                   help="which study: %s (default sweep)" % "; ".join(
                       "%s = %s" % (k, v.help) for k, v in sorted(plans.STUDIES.items())))
    p.add_argument("--data", choices=sorted(RECIPES), default="digits",
                   help="what to train on when --rec-train is not given (default digits; "
                   "--study converged needs fashion)")
    p.add_argument("--idx-dir", default=DEFAULT_IDX_DIR,
                   help="--data fashion: folder of the four IDX .gz files (default %(default)s)")
    p.add_argument("--per-class", type=int, default=500,
                   help="--data fashion, short studies: train images per class, a fixed "
                   "stratified draw (default 500 of 6,000; validation always uses all 10,000 "
                   "test images; the converged study trains on all but the 5,000 held out)")
    p.add_argument("--recipe", help="shared recipe (default: the study's, see --study)")
    p.add_argument("--rec-train", help="training .rec (default: --data, packed into OUT/data)")
    p.add_argument("--rec-val", help="validation .rec (default: as --rec-train)")
    p.add_argument("--seeds", type=int, help="seeds per variant (default: the study's; "
                   "--quick: 1)")
    p.add_argument("--lrs", help="comma-separated base learning rates, each a full study "
                   "(default: the study's; --quick: 0.1)")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the recipe's)")
    p.add_argument("--variants", help="comma-separated variants (default: the study's)")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs at once, each its own process (default: one per physical core "
                   "where each run trains with one OpenMP thread, else 1); results do not "
                   "depend on it")
    p.add_argument("--loss-level", type=float, default=None,
                   help="train-loss level whose first epoch measures convergence (default "
                   "%.1f on the digits, %.1f on Fashion-MNIST, whose short runs all end above "
                   "1.0; label smoothing 0.1 puts the floor near 0.5)"
                   % (LOSS_LEVELS["digits"], LOSS_LEVELS["fashion"]))
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: redraw the table and plots from OUT's CSVs")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 seed, 2 epochs, width 0.25, one lr (unless given)")
    return p.parse_args(argv)


def _recs(args, converged=False):
    """The study's .rec files: given, or --data packed into OUT/data (once). The converged
    study's are (train, holdout, test): all 60,000 train images less 500 per class held
    out, in OUT/data-full."""
    if args.rec_train and not converged:
        return args.rec_train, args.rec_val or args.rec_train
    folder = os.path.join(args.out, "data-full" if converged else "data")
    splits = ("train", "holdout", "val") if converged else ("train", "val")
    recs = [os.path.join(folder, s + ".rec") for s in splits]
    if all(os.path.isfile(r) for r in recs):
        return recs
    if args.data == "digits":
        return pack_demo_data(folder)
    images = os.path.join(folder, "images")
    per_class = None if converged else args.per_class
    counts = make_fashion_data(images, args.idx_dir, per_class=per_class,
                               holdout_per_class=HOLDOUT_PER_CLASS if converged else None)
    if converged:
        print("Fashion-MNIST: %d train images, %d held out, %d test images; packing"
              % (counts["train"], counts["holdout"], counts["val"]), flush=True)
    else:
        print("Fashion-MNIST: %d train images (%d per class), %d val images; packing"
              % (counts["train"], args.per_class, counts["val"]), flush=True)
    return pack_splits(images, folder, splits)


def _report(args, rows, seeds):
    title = "%s, %d seed(s) per variant" % (TITLES[args.data], seeds)
    paths, _ = study.write_outputs(rows, args.out, args.loss_level, title=title)
    _show(paths)


def report_converged(folder, multiplier, input_size, title=None):
    """The converged study's report (converged.md, converged.png) from FOLDER's runs.csv,
    test.csv and linear.csv, printed; returns its summary rows."""
    paths, summary = converged.write_converged_report(folder, multiplier, input_size, title)
    _show(paths)
    return summary


def report_clipping(folder, title=None):
    """The clipping ablation's report (clipping.md, clipping.png) from FOLDER's clipping.csv,
    printed; returns its summary."""
    paths, summary = clipping.write_clipping_report(folder, title)
    _show(paths)
    return summary


def _show(paths):
    """Print a report's table and the files written."""
    with open(paths["table"], encoding="utf-8") as f:
        print("\n" + f.read())
    print("wrote %s" % ", ".join(paths.values()))


def _settings(args):
    """Seeds, lrs, variants, recipe, epochs and extra training flags, from the study's
    defaults and what the command line gives (--quick changes only the defaults)."""
    recipe_name, seeds, lrs, variants = plans.study_defaults(args.study, args.data)
    seeds = args.seeds if args.seeds is not None else 1 if args.quick else seeds
    lr_text = args.lrs or ("0.1" if args.quick else ",".join("%g" % v for v in lrs or ()))
    try:
        lrs = [float(v) for v in lr_text.split(",") if v.strip()]
    except ValueError:
        raise UserError("--lrs takes comma-separated numbers, e.g. 0.03,0.1; got %r" % lr_text)
    recipe = args.recipe or os.path.join(ROOT, "recipes", recipe_name)
    if not lrs and not args.lrs:
        lrs = [resolve(recipe)["lr"]]  # the converged recipe's own, chosen on the hold-out
    if args.variants:
        variants = [canonical_name(v) for v in args.variants.split(",") if v.strip()]
    if seeds < 1 or not lrs or min(lrs) <= 0:
        raise UserError("--seeds must be at least 1 and --lrs positive numbers")
    if args.per_class < 1:
        raise UserError("--per-class must be at least 1, got %d" % args.per_class)
    extra, epochs = [], args.epochs
    if args.quick:
        extra, epochs = ["--multiplier", "0.25"], epochs or 2
    return recipe, range(seeds), lrs, variants, epochs, extra


def main(argv=None):
    args = parse_args(argv)
    if args.loss_level is None:
        args.loss_level = LOSS_LEVELS[args.data]
    if args.study == "converged" and args.data != "fashion":
        raise UserError("--study converged trains on Fashion-MNIST's 55,000 images: add "
                        "--data fashion")
    recipe, seeds, lrs, variants, epochs, extra = _settings(args)
    out = os.path.join(args.out, plans.STUDIES[args.study].folder)
    if args.report_only:
        return _report_only(args, out, recipe)
    os.makedirs(out, exist_ok=True)
    recs = _recs(args, converged=args.study == "converged")
    jobs, choice = plans.default_jobs(recipe, variants, {"multiplier": 0.25} if args.quick
                                      else {})
    jobs = args.jobs or jobs
    print("study %s: %d variants x %d seeds x %d lr(s), recipe %s; each run %d OpenMP "
          "thread(s) (%s), %d run(s) at once"
          % (args.study, len(variants), len(seeds), len(lrs), recipe, choice.threads,
             choice.reason, jobs), flush=True)
    common = dict(extra_args=extra, jobs=jobs)
    if args.study == "converged":
        plans.run_converged(out, recipe, recs, lrs, variants, seeds, epochs, **common)
    elif args.study == "clipping":
        plans.run_clipping(out, recipe, recs[0], recs[1], lrs, variants, seeds, epochs,
                           **common)
    elif args.study == "gradflow":
        overrides = {"rec_train": os.path.abspath(recs[0]), "rec_val": os.path.abspath(recs[1])}
        if args.quick:
            overrides["multiplier"] = 0.25
        flow = gradflow.gradient_flow(out, recipe, variants, overrides, lrs, seeds,
                                      batches=2 if args.quick else 8, jobs=jobs)
        gradflow.write_gradient_flow(flow, out, title=TITLES[args.data])
    else:
        rows = study.run_study(out, recipe, recs[0], recs[1], lrs, variants, seeds, epochs,
                               **common)
        _report(args, rows, len(seeds))
        return 0
    return _report_only(args, out, recipe, run=True)


def _report_only(args, out, recipe=None, run=False):
    """Redraw study ``args.study``'s tables and plots from the CSVs in ``out`` (``run``:
    right after training, which may add the linear floor first)."""
    title = "%s, %s study" % (TITLES[args.data], args.study)
    if args.study == "converged":
        cfg = resolve(recipe, {"multiplier": 0.25} if args.quick else {})
        floor = os.path.join(out, "linear.csv")
        if run and not os.path.isfile(floor):
            print("linear floor: logistic regression on the same pixels (a few minutes)",
                  flush=True)
            linear.linear_floor(args.idx_dir, floor)
        report_converged(out, cfg["multiplier"], cfg["input_size"], title)
        return 0
    if args.study == "clipping":
        report_clipping(out, title)
        return 0
    csv = os.path.join(out, "gradflow.csv" if args.study == "gradflow" else study.OUTPUTS["csv"])
    if not os.path.isfile(csv):
        raise UserError("--report-only: %s does not exist; run the study first" % csv)
    if args.study == "gradflow":
        _show_files(gradflow.write_gradient_flow(gradflow.read_rows(csv), out, title))
        return 0
    rows = study.read_rows(csv)
    _report(args, rows, len({r["seed"] for r in rows}))
    return 0


def _show_files(paths):
    print("wrote %s" % ", ".join(paths.values() if isinstance(paths, dict) else paths))


if __name__ == "__main__":
    run_main(main)
