#!/usr/bin/env python
"""Measure this machine: one section per pipeline, or all of them.

  benchmark.py data     ImageRecordIter (C++) vs gluon DataLoader (Python) img/s,
                        train and val augmentation, over the same .rec
  benchmark.py infer    latency of one model (--model, --multiplier) in every registered
                        deployment form that a runtime runs (FP32, fused FP32 and INT8
                        in MXNet; FP32 and INT8 ONNX in ONNX Runtime), at batch 1 and
                        --batch-size, beside gluoncv's mobilenet as the reference

--json for infer gives a list of rows {variant, batch, model, latency_ms (median ms
per forward), ratio_vs_fp32, ratio_vs_runtime_fp32, ratio_vs_gluoncv (latency / the
same batch's fp32, FP32 form in the same runtime, or gluoncv latency)}. variant is a
form's name in MXNet (fp32, fused, int8), the runtime's name with the form's qualifiers
in ONNX Runtime (onnxruntime, onnxruntime-int8), onnxruntime-weights-as-inputs (the
ONNX file with its weights as graph inputs, as mx2onnx writes it) or the gluoncv reference.

Each rate is the median of --repeats timed runs after --warmup untimed batches.
--json prints one object keyed by section name instead of the tables.
"""
import argparse
import json

import _bootstrap  # noqa: F401
from mobilenet_skip.bench.sections import SECTIONS, format_machine, machine_info
from mobilenet_skip.bench import data, infer, train  # noqa: F401 - each registers its section
from mobilenet_skip.cli import run_main
from mobilenet_skip.errors import UserError


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("section", choices=sorted(SECTIONS) + ["all"],
                   help="what to measure: %s, or all" % ", ".join(
                       "%s (%s)" % (n, SECTIONS[n].help) for n in sorted(SECTIONS)))
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--input-size", type=int, default=224, help="network input side (224)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (32)")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches first (5)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is "
                   "reported (5)")
    for name in sorted(SECTIONS):
        if SECTIONS[name].add_arguments:
            SECTIONS[name].add_arguments(p)
    args = p.parse_args(argv)
    for key in ("input_size", "batch_size", "repeats"):
        if getattr(args, key) < 1:
            raise UserError("--%s must be at least 1" % key.replace("_", "-"))
    if args.warmup < 0:
        raise UserError("--warmup must be 0 or more")
    return args


def main(argv=None):
    args = parse_args(argv)
    names = sorted(SECTIONS) if args.section == "all" else [args.section]
    if not args.json:
        print(format_machine(machine_info()), flush=True)
    results = {}
    for name in names:
        results[name] = SECTIONS[name].run(args)
        if not args.json:
            print("\n" + SECTIONS[name].format(results[name]), flush=True)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    run_main(main)
