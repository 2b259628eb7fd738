#!/usr/bin/env python
"""Export trained weights for deployment: MXNet files, fused FP32, INT8, ONNX and ONNX INT8.

  export_model.py --save-dir runs/demo --epoch 12 --output deploy/demo --fused --int8 --onnx
  export_model.py --params m-0090.params --model full-connect-pre-act --output deploy/m
  export_model.py --prefix runs/demo/full-connect-pre-act --output deploy/demo --onnx

Under --output PREFIX it writes:
  PREFIX-symbol.json, PREFIX-0000.params  FP32 graph: input `data` (1x3xSxS), logits out
  PREFIX.synsets.txt, PREFIX.json         class names; model and preprocessing (sidecar)
  PREFIX-fused-*      (--fused)           conv+BN(+ReLU)(+sum) fused by MXNet's MKLDNN backend
  PREFIX-int8-*       (--int8)            INT8, calibrated on --calib-batches of --calib-rec
  PREFIX.onnx         (--onnx)            ONNX opset 13 (IR 7), weights as initializers, any batch
  PREFIX-int8.onnx    (--onnx-int8)       ONNX Runtime's static INT8 of it, calibrated as --int8
--output DIR/ (or an existing folder) means DIR/<model>. PREFIX, PREFIX-fused and
PREFIX-int8 are each complete exports for tools/predict.py and tools/eval_imagenet.py;
the .onnx files run with eval_imagenet.py --runtime onnxruntime --onnx FILE.
With --int8 it reports INT8's measured latency against FP32 and its file size (the
same: MXNet 1.9 keeps the conv weights FP32 on disk); with --onnx-int8 the same against
the FP32 ONNX file in ONNX Runtime. --eval-rec then reports each form's top-1 on a .rec
and how often it picks the same class as FP32.
"""
import argparse

import _bootstrap  # noqa: F401
from mobilenet_skip.cli import add_source_arguments, run_main, source_from_args
from mobilenet_skip.deploy.artifact import summary, written_files
from mobilenet_skip.deploy.forms import FORMS, add_form_arguments, deploy, selected
from mobilenet_skip.deploy.limits import check_network, checked_input_size


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(p)
    p.add_argument("--synsets", help="class names, one per line (default: the run's export "
                   "or the .synsets.txt beside its training .rec)")
    p.add_argument("--output", required=True, metavar="PREFIX",
                   help="where to write: files PREFIX-symbol.json, ...; a folder (DIR/ or an "
                   "existing one) means DIR/<model>")
    add_form_arguments(p)  # --fused, --int8, --onnx and their options: one per form
    p.add_argument("--eval-rec", help="after writing, evaluate each form on this .rec and "
                   "report INT8's agreement with FP32 and its top-1 drop")
    args = p.parse_args(argv)
    args.input_size = checked_input_size(args.input_size)
    return args


def main(argv=None):
    args = parse_args(argv)
    source = source_from_args(args)
    check_network(source.net, source.info["input_size"], source.path)
    written = deploy(source, args.output, selected(args), args)
    print("from %s: %s" % (source.path, summary(source.info)))
    for name, out in written.items():
        form = FORMS[name]
        note = form.resolved("note")(args) if form.note else ""
        print("wrote %-6s %s%s" % (name, "  ".join(written_files(out, form.kind)), note))
    from mobilenet_skip.deploy.int8_report import form_reports
    for text in form_reports(written, args):
        print(text)
    if args.eval_rec:
        from mobilenet_skip.deploy.scoring import compare_exports
        rows = compare_exports({k: (FORMS[k].runtime, v) for k, v in written.items()
                                if FORMS[k].runtime}, args.eval_rec, args.batch_size)
        print("on %s (%d images, single centre crop):" % (args.eval_rec, rows[0]["images"]))
        for r in rows:
            print("%-6s top-1 %.4f  top-5 %.4f%s" % (
                r["kind"], r["top1"], r["top5"], "" if r["kind"] == "fp32" else
                "  same class as fp32 on %.1f%%, top-1 drop %+.4f"
                % (100 * r["agreement"], r["top1_drop"])))
    return 0


if __name__ == "__main__":
    run_main(main)
