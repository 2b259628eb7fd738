#!/usr/bin/env python
"""Overlay several training runs' curves in one PNG: train loss, val top-1 and lr by epoch.

  plot_runs.py runs/a runs/b runs/c --output compare.png

Each RUN is a train_imagenet.py --save-dir (its config.yaml and metrics.csv). Every line
is labelled with its model and the recipe values that differ between the runs (lr,
multiplier, ...; where files go and how often it logs are not named); each run's best
epoch (highest val top-1) is ringed.
"""
import argparse

import _bootstrap  # noqa: F401
from mobilenet_skip.cli import run_main
from mobilenet_skip.train.overlay import plot_runs


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="training run folders (--save-dir)")
    p.add_argument("--output", default="plot_runs.png", help="the PNG (plot_runs.png)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    labels = plot_runs(args.runs, args.output)
    for run, label in zip(args.runs, labels):
        print("%s: %s" % (run, label))
    print("wrote %s" % args.output)
    return 0


if __name__ == "__main__":
    run_main(main)
