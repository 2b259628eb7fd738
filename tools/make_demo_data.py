#!/usr/bin/env python
"""Write the demo image set: scikit-learn's handwritten digits as ImageNet-style JPEGs.

OUT_DIR/train/digit_<d>/*.jpg and OUT_DIR/val/digit_<d>/*.jpg, from the 1,797 real
8x8 scans that ship inside scikit-learn (nothing is downloaded), upscaled to --size,
with a fixed stratified split. Pack them with tools/im2rec.py like ImageNet.
"""
import argparse

import _bootstrap  # noqa: F401
from mobilenet_skip.cli import run_main
from mobilenet_skip.data.demo import make_demo_data


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to receive train/ and val/")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of each class held out for val (default 0.2)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    counts = make_demo_data(args.out_dir, args.size, args.val_fraction)
    print("wrote %d train and %d val images of %d classes (%dx%d JPEG) to %s"
          % (counts["train"], counts["val"], len(counts["classes"]), args.size, args.size,
             args.out_dir))
    return 0


if __name__ == "__main__":
    run_main(main)
