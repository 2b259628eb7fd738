#!/usr/bin/env python
"""Print Mult-Adds and parameters of the paper's networks (Tables 2-4 columns).

Counted from the built network's own symbol with inferred shapes: convolutions and
dense layers only. BatchNorm, ReLU, pooling and the skip additions are excluded
(BN folds into the conv at inference; the others are element-wise, not Mult-Adds).
Parameters are conv and dense weights and biases (BN scale/shift excluded).
"""
import argparse
import json

import _bootstrap  # noqa: F401
from mobilenet_skip import count_model, get_model, list_models
from mobilenet_skip.cli import run_main

# Tables 2-4 of the paper (1.0 width, 224 input) and Table 6 of MobileNet v1.
PAPER = {("mobilenet", 1.0): ("569M", "4.2M"), ("simple-connect", 1.0): ("569M", "4.2M"),
         ("simple-connect-pre-act", 1.0): ("569M", "4.2M"),
         ("full-connect", 1.0): ("698M", "4.9M"), ("full-connect-pre-act", 1.0): ("698M", "4.9M"),
         ("mobilenet", 0.75): ("325M", "2.6M"), ("mobilenet", 0.5): ("149M", "1.3M"),
         ("mobilenet", 0.25): ("41M", "0.5M")}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--model", action="append", choices=list_models(), metavar="NAME",
                   help="model to count (repeatable; default: all five). One of: %s"
                   % ", ".join(list_models()))
    p.add_argument("--multiplier", type=float, default=1.0, help="width multiplier (default 1.0)")
    p.add_argument("--input-size", type=int, default=224, help="input side (default 224)")
    p.add_argument("--classes", type=int, default=1000, help="classifier outputs (default 1000)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {model, multiplier, input_size, macs, params}")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    rows = []
    for name in args.model or list_models():
        counts = count_model(get_model(name, args.multiplier, args.classes), args.input_size)
        rows.append({"model": name, "multiplier": args.multiplier,
                     "input_size": args.input_size, "macs": counts["macs"],
                     "params": counts["params"]})
    if args.json:
        print(json.dumps(rows))
        return 0
    paper_scale = args.input_size == 224 and args.classes == 1000
    print("%-24s %6s %5s %12s %10s %14s" % ("model", "width", "input", "Mult-Adds",
                                             "params", "paper"))
    for r in rows:
        paper = PAPER.get((r["model"], r["multiplier"])) if paper_scale else None
        print("%-24s %6g %5d %11.1fM %9.2fM %14s" % (
            r["model"], r["multiplier"], r["input_size"], r["macs"] / 1e6, r["params"] / 1e6,
            "%s / %s" % paper if paper else "-"))
    print("counted: Convolution and FullyConnected layers; BN, ReLU, pooling and adds excluded")
    return 0


if __name__ == "__main__":
    run_main(main)
