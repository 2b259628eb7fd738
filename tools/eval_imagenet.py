#!/usr/bin/env python
"""Single-centre-crop top-1/top-5 of an exported model (or a checkpoint) on a val .rec.

  eval_imagenet.py --prefix deploy/m --rec-val data/imagenet/val.rec
  eval_imagenet.py --save-dir runs/demo --epoch 12 --rec-val demo/val.rec --json
  eval_imagenet.py --prefix deploy/m-int8 --rec-val val.rec --api module
  eval_imagenet.py --runtime onnxruntime --onnx deploy/m.onnx --rec-val val.rec

The paper's protocol: the shorter side resized to 256, the central 224 square, one
crop, one model (for another --input-size S, the shorter side goes to
round(S / crop ratio)). An export without its PREFIX.json sidecar needs --input-size:
its preprocessing is then ImageNet's, and no size is guessed. Pack val with
`im2rec.py ... --resize 256` or keep the originals; never centre-crop while packing.
A checkpoint is exported to a temporary folder first, so both --api paths read the
same files: SymbolBlock.imports (default) or mx.mod.Module (load_checkpoint, bind,
set_params). --runtime onnxruntime runs an --onnx file in ONNX Runtime on the same
decoded, cropped and normalised batches.
The terminal also shows the classes with the lowest top-1 and the most frequent
confusions, named by the model's class names (else val's, else indices). --report DIR
writes confusion.csv and confusion.png (the whole matrix, rows true, columns predicted),
per_class.csv (class, images, top1) and misclassified.csv (key, path, true, predicted,
confidence: the record's .idx key and, with a .lst beside the .rec, its image path).
--json prints one line: top1, top5 (fractions), images, images_per_s, device, api,
classes, per_class, confusion and the first 100 misclassified images with their count.
"""
import argparse
import json
import os
import sys
import tempfile

import _bootstrap  # noqa: F401
from mobilenet_skip.bench.sections import machine_info
from mobilenet_skip.cli import add_source_arguments, run_main, source_from_args
from mobilenet_skip.data import checks as dataset
from mobilenet_skip.errors import UserError
from mobilenet_skip.recordio import synsets_path
from mobilenet_skip.deploy.artifact import (export_network, input_size_warning, read_info,
                                            summary)
from mobilenet_skip.deploy import report as report_mod
from mobilenet_skip.deploy.scoring import APIS, evaluate_export, evaluate_onnx
from mobilenet_skip.train.devices import parse_contexts

RUNTIMES = ("mxnet", "onnxruntime")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(p)
    p.add_argument("--rec-val", required=True, help="validation .rec (its .idx beside it)")
    p.add_argument("--runtime", choices=RUNTIMES, default=None,
                   help="mxnet (the export or checkpoint) or onnxruntime (an --onnx file); "
                   "default: onnxruntime with --onnx, else mxnet")
    p.add_argument("--onnx", metavar="FILE", help="an ONNX file (export_model.py --onnx) to "
                   "evaluate in ONNX Runtime, with validation's preprocessing")
    p.add_argument("--api", choices=APIS, default="symbolblock",
                   help="gluon SymbolBlock.imports or the symbolic mx.mod.Module (symbolblock)")
    p.add_argument("--gpus", default="", help="comma-separated GPU ids, e.g. 0,1 ('' = CPU)")
    p.add_argument("--batch-size", type=int, default=32, help="images per device (32)")
    p.add_argument("--preprocess-threads", dest="data_threads", type=int, default=None,
                   help="decoding threads of ImageRecordIter, as in train_imagenet.py "
                   "(default: min(4, cores))")
    p.add_argument("--data-threads", dest="data_threads", type=int, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.add_argument("--report", metavar="DIR", help="write the confusion matrix (CSV, PNG), "
                   "per-class top-1 and the misclassified images into DIR")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    ctxs = parse_contexts(args.gpus)
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if args.report:
        report_mod.check_folder(args.report)
    runtime = args.runtime or ("onnxruntime" if args.onnx else "mxnet")
    if runtime == "onnxruntime":
        return _eval_onnx(args, ctxs)
    if args.onnx:
        raise UserError("--onnx FILE runs in ONNX Runtime: drop --runtime mxnet, or give "
                        "--prefix for the MXNet export")
    if args.prefix and args.input_size:
        warning = input_size_warning(args.prefix, read_info(args.prefix, args.input_size))
        if warning:
            print("warning: %s" % warning, file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="eval-export-") as tmp:
        if args.prefix:
            prefix = args.prefix
        else:
            source = source_from_args(args)
            prefix = os.path.join(tmp, source.info["variant"])
            export_network(source.net, prefix, source.info["input_size"], info=source.info)
        # a mismatch is refused now; a missing class file is said after the export has
        # loaded, so that a broken export is named in one line, first
        class_warning = dataset.check_val_classes(
            prefix + ".synsets.txt" if args.prefix else source.synsets, args.rec_val)
        r = evaluate_export(prefix, args.rec_val, ctxs, args.api, args.batch_size,
                            args.input_size, args.data_threads, per_image=True)
        names_from = [prefix + ".synsets.txt" if args.prefix else source.synsets]
    if class_warning:
        print("warning: %s" % class_warning, file=sys.stderr, flush=True)
    device = ",".join(str(c) for c in ctxs)
    report = _class_report(args, r, names_from)
    if args.json:
        print(json.dumps(dict({"top1": r["top1"], "top5": r["top5"], "images": r["images"],
                               "images_per_s": r["images_per_s"], "device": device,
                               "api": args.api, "input_size": r["info"]["input_size"]},
                              **report.to_json())))
        return 0
    print("model: %s\n       %s" % (args.prefix or source.path, summary(r["info"])))
    print("data:  %s, %d images, api %s" % (args.rec_val, r["images"], args.api))
    if ctxs[0].device_type == "cpu":
        cpu = machine_info()
        device += " (%s, %d cores)" % (cpu["cpu"], cpu["cores"])
    _print_results(args, r, report, "%s, decoding included" % device)
    return 0


def _class_report(args, r, names_from):
    """The per-class report of ``r`` (class names from ``names_from``, else val's), its
    files written under --report; a .lst that disagrees with the .rec is warned about."""
    report = report_mod.ClassReport.from_result(
        r, args.rec_val, names_from + [synsets_path(args.rec_val)])
    if report.warning:
        print("warning: %s" % report.warning, file=sys.stderr, flush=True)
    if args.report:
        report.write(args.report, title="%s on %s" % (summary(r["info"]), args.rec_val))
    return report


def _print_results(args, r, report, where):
    """The terminal's accuracy, class and speed lines, whichever runtime scored."""
    print("top-1 accuracy %.4f  error %.4f" % (r["top1"], 1 - r["top1"]))
    print("top-5 accuracy %.4f  error %.4f" % (r["top5"], 1 - r["top5"]))
    print("\n".join(report.lines()))
    if args.report:
        print("report: %s (%s)" % (args.report, ", ".join(report_mod.REPORT_FILES)))
    print("speed: %.1f images/s on %s" % (r["images_per_s"], where))


def _eval_onnx(args, ctxs):
    """--runtime onnxruntime: the --onnx file on the CPU, batches from the same val iterator."""
    if not args.onnx:
        raise UserError("--runtime onnxruntime needs --onnx FILE (export_model.py --onnx "
                        "writes PREFIX.onnx)")
    given = [f for f, v in (("--prefix", args.prefix), ("--save-dir", args.save_dir),
                            ("--params", args.params)) if v]
    if given:
        raise UserError("--onnx evaluates the ONNX file alone; drop %s" % " and ".join(given))
    if ctxs[0].device_type != "cpu":
        raise UserError("--runtime onnxruntime runs on the CPU here; drop --gpus")
    if args.api != "symbolblock":
        raise UserError("--api chooses the MXNet API; it does not apply to --runtime "
                        "onnxruntime")
    r = evaluate_onnx(args.onnx, args.rec_val, args.batch_size, args.input_size,
                      args.data_threads, per_image=True)
    base = args.onnx[:-len(".onnx")] if args.onnx.endswith(".onnx") else args.onnx
    report = _class_report(args, r, [base + ".synsets.txt"])
    if args.json:
        print(json.dumps(dict({"top1": r["top1"], "top5": r["top5"], "images": r["images"],
                               "images_per_s": r["images_per_s"], "device": "cpu",
                               "runtime": "onnxruntime", "input_size": r["info"]["input_size"]},
                              **report.to_json())))
        return 0
    import onnxruntime
    print("model: %s\n       %s" % (args.onnx, summary(r["info"])))
    print("data:  %s, %d images, ONNX Runtime %s" % (args.rec_val, r["images"],
                                                     onnxruntime.__version__))
    _print_results(args, r, report, "the CPU, decoding included")
    return 0


if __name__ == "__main__":
    run_main(main)
