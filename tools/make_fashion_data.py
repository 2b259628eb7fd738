#!/usr/bin/env python
"""Write Fashion-MNIST (70,000 real 28x28 product photos, 10 classes) as an ImageNet-style
folder: OUT_DIR/train/<k>_<class>/*.png (from the 60,000 train images) and
OUT_DIR/val/<k>_<class>/*.png (from the 10,000 test images). Pack it with tools/im2rec.py.

The four IDX files come from `apt-get install dataset-fashion-mnist` (the default
--idx-dir) or from the data set's repository, github.com/zalandoresearch/fashion-mnist.
--per-class draws a fixed stratified subset of the train images so a study fits the machine.
"""
import argparse

import _bootstrap  # noqa: F401
from mobilenet_skip.cli import run_main
from mobilenet_skip.data.fashion import DEFAULT_IDX_DIR, make_fashion_data


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to receive train/ and val/")
    p.add_argument("--idx-dir", default=DEFAULT_IDX_DIR,
                   help="folder of the four *-ubyte.gz IDX files (default %(default)s)")
    p.add_argument("--per-class", type=int, default=None,
                   help="train images per class, a fixed stratified draw (default: all 6,000)")
    p.add_argument("--val-per-class", type=int, default=None,
                   help="val images per class (default: all 1,000 of the test set)")
    p.add_argument("--size", type=int, default=32,
                   help="image side in pixels, upscaled from 28 (default 32, the network's "
                   "smallest input)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset draw (default 0)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    counts = make_fashion_data(args.out_dir, args.idx_dir, args.per_class, args.val_per_class,
                               args.size, args.seed)
    print("wrote %d train and %d val images of %d classes (%dx%d PNG) to %s"
          % (counts["train"], counts["val"], len(counts["classes"]), args.size, args.size,
             args.out_dir))
    return 0


if __name__ == "__main__":
    run_main(main)
