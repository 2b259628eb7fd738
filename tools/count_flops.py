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
from mobilenet_skip.models.flops import layer_table

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
    p.add_argument("--per-layer", action="store_true",
                   help="print each model's Table 1 row by row: layer, output shape, skip, "
                   "Mult-Adds and params (the rows add up to the totals)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {model, multiplier, input_size, macs, params} "
                   "(with --per-layer, also each model's rows as 'layers')")
    return p.parse_args(argv)


def print_layers(row, paper):
    """One model's Table 1, row by row, then its totals beside the paper's."""
    print("%s x%g, %dx%d input" % (row["model"], row["multiplier"], row["input_size"],
                                    row["input_size"]))
    print("%-9s %-14s %-11s %12s %10s" % ("layer", "output", "skip", "Mult-Adds", "params"))
    for layer in row["layers"]:
        print("%-9s %-14s %-11s %11.2fM %9.1fK" % (
            layer["layer"], "x".join(str(d) for d in layer["output"]), layer["skip"] or "-",
            layer["macs"] / 1e6, layer["params"] / 1e3))
    print("%-36s %11.1fM %9.2fM%s\n" % ("total", row["macs"] / 1e6, row["params"] / 1e6,
                                         "   (paper: %s / %s)" % paper if paper else ""))


def main(argv=None):
    args = parse_args(argv)
    rows = []
    for name in args.model or list_models():
        net = get_model(name, args.multiplier, args.classes)
        counts = count_model(net, args.input_size)
        rows.append({"model": name, "multiplier": args.multiplier,
                     "input_size": args.input_size, "macs": counts["macs"],
                     "params": counts["params"]})
        if args.per_layer:
            rows[-1]["layers"] = layer_table(net, args.input_size)
    if args.json:
        print(json.dumps(rows))
        return 0
    paper_scale = args.input_size == 224 and args.classes == 1000
    if args.per_layer:
        for r in rows:
            print_layers(r, PAPER.get((r["model"], r["multiplier"])) if paper_scale else None)
        return 0
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
