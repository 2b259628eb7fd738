#!/usr/bin/env python
"""Classify image files or folders with an exported model: top-5 names and probabilities.

  predict.py --prefix deploy/m cat.jpg dog.png
  predict.py --prefix deploy/m photos/ --batch-size 32 --csv predictions.csv

Reads only the export: PREFIX-symbol.json, PREFIX-0000.params, PREFIX.synsets.txt
and, if present, PREFIX.json for the input size and preprocessing. Without that
sidecar, --input-size is required (ImageNet mean/std and crop 0.875 are assumed);
with it, a different --input-size is used with a warning. Each image goes through
validation's transform: shorter side to round(S / 0.875), central S x S crop, RGB
mean/std. An image that cannot be read (missing, not a regular file, over 64 MB, not
an image, or of more than --max-pixels as its header states: a decompression bomb) is
reported on stderr and the others are still classified; the exit status is then 1. A
folder stands for the JPEG/PNG/BMP files under it, recursively, in sorted order; images
go through the network --batch-size at a time.
"""
import argparse
import json
import sys

import _bootstrap  # noqa: F401
from mobilenet_skip.cli import run_main
from mobilenet_skip.errors import UserError
from mobilenet_skip.recordio import MAX_PIXELS
from mobilenet_skip.deploy.artifact import input_size_warning, read_info, summary
from mobilenet_skip.deploy.limits import check_batch, checked_input_size
from mobilenet_skip.deploy.loading import open_export
from mobilenet_skip.deploy.predicting import CsvOut, batch_for, classify, expand_paths


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prefix", required=True, help="the export (tools/export_model.py --output)")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="JPEG/PNG/BMP files, or folders (their images, recursively)")
    p.add_argument("--top", type=int, default=5, help="classes to show per image (5)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="images per forward pass (16, or fewer when fewer are given); "
                   "memory grows with it, so lower it for a large --input-size")
    p.add_argument("--csv", metavar="OUT",
                   help="also write OUT: path, top classes and probabilities, error per image")
    p.add_argument("--input-size", type=int, help="the network input side: required "
                   "without the PREFIX.json sidecar; overrides it (with a warning) otherwise")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: predictions and errors per image")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help="refuse images of more pixels than this, read from their headers "
                   "before decoding, as tools/im2rec.py does: decompression bombs, such as "
                   "a 0.87 MB PNG of 30000x30000 that decodes to 2.7 GB (default "
                   "%(default)d, Pillow's cap)")
    args = p.parse_args(argv)
    if args.top < 1:
        raise UserError("--top must be at least 1")
    if args.max_pixels < 1:
        raise UserError("--max-pixels must be at least 1, got %d" % args.max_pixels)
    args.input_size = checked_input_size(args.input_size)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.input_size:
        warning = input_size_warning(args.prefix, read_info(args.prefix, args.input_size))
        if warning:
            print("warning: %s" % warning, file=sys.stderr, flush=True)
    exported = open_export(args.prefix, args.input_size, need_synsets=True)
    paths = expand_paths(args.images)
    batch = batch_for(args.batch_size, paths)
    check_batch(exported.graph.sym, exported.info["input_size"], batch, args.prefix)
    net = exported.block
    net.hybridize(static_alloc=True, static_shape=True)
    table = CsvOut(args.csv, args.top) if args.csv else None
    predictions, errors = [], []
    for answer in classify(net, exported.info, exported.synsets, paths, batch, args.top,
                           args.max_pixels):
        if table:
            table.write(answer)
        if "error" in answer:
            errors.append(answer)
            print("error: %s" % answer["error"], file=sys.stderr, flush=True)
            continue
        predictions.append(answer)
        if not args.json:
            print(answer["image"])
            for t in answer["top"]:
                print("  %.4f  %s" % (t["probability"], t["name"]))
            sys.stdout.flush()  # a reader (| head) sees each image as it is classified
    if table:
        table.close()
    if args.json:
        print(json.dumps({"prefix": args.prefix, "model": summary(exported.info),
                          "predictions": predictions, "errors": errors}))
    return 1 if errors else 0


if __name__ == "__main__":
    run_main(main)
