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
A checkpoint is scored from its network in memory, as the graph its export would hold,
through either --api: gluon's SymbolBlock (default) or mx.mod.Module (bind, set_params).
--runtime onnxruntime runs an --onnx file in ONNX Runtime on the same decoded, cropped
and normalised batches.
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
import sys

import _bootstrap  # noqa: F401
from mobilenet_skip.bench.sections import machine_info
from mobilenet_skip.cli import add_source_arguments, run_main, source_from_args
from mobilenet_skip.data import checks as dataset
from mobilenet_skip.errors import UserError
from mobilenet_skip.recordio import synsets_path
from mobilenet_skip.deploy.artifact import input_size_warning, read_info, summary
from mobilenet_skip.deploy import report as report_mod
from mobilenet_skip.deploy.limits import checked_input_size
from mobilenet_skip.deploy.registry import RUNTIMES
from mobilenet_skip.deploy.runtime import APIS, check_batch_size, network_runner, open_runner
from mobilenet_skip.deploy.scoring import score
from mobilenet_skip.train.devices import parse_contexts


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
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.add_argument("--report", metavar="DIR", help="write the confusion matrix (CSV, PNG), "
                   "per-class top-1 and the misclassified images into DIR")
    args = p.parse_args(argv)
    check_batch_size(args.batch_size)
    args.input_size = checked_input_size(args.input_size)
    return args


def main(argv=None):
    args = parse_args(argv)
    ctxs = parse_contexts(args.gpus)
    if args.report:
        report_mod.check_folder(args.report)
    runtime = args.runtime or ("onnxruntime" if args.onnx else "mxnet")
    runner, names_from, class_warning = OPENERS[runtime](args, ctxs)
    r = score(runner, args.rec_val, args.data_threads, per_image=True)
    if class_warning:
        print("warning: %s" % class_warning, file=sys.stderr, flush=True)
    report = report_mod.ClassReport.from_result(
        r, args.rec_val, names_from + [synsets_path(args.rec_val)])
    if report.warning:
        print("warning: %s" % report.warning, file=sys.stderr, flush=True)
    if args.report:
        report.write(args.report, title="%s on %s" % (summary(r["info"]), args.rec_val))
    if args.json:
        print(json.dumps(dict({"top1": r["top1"], "top5": r["top5"], "images": r["images"],
                               "images_per_s": r["images_per_s"]}, **runner.labels,
                              input_size=r["info"]["input_size"], **report.to_json())))
        return 0
    print("model: %s\n       %s" % (runner.path, summary(r["info"])))
    print("data:  %s, %d images, %s" % (args.rec_val, r["images"], runner.engine))
    print("top-1 accuracy %.4f  error %.4f" % (r["top1"], 1 - r["top1"]))
    print("top-5 accuracy %.4f  error %.4f" % (r["top5"], 1 - r["top5"]))
    print("\n".join(report.lines()))
    if args.report:
        print("report: %s (%s)" % (args.report, ", ".join(report_mod.REPORT_FILES)))
    print("speed: %.1f images/s on %s, decoding included"
          % (r["images_per_s"], runner.where(_cpu)))
    return 0


def _cpu():
    cpu = machine_info()
    return "%s, %d cores" % (cpu["cpu"], cpu["cores"])


def _mxnet(args, ctxs):
    """--runtime mxnet: the --prefix export, or a checkpoint's network in memory; the class
    names it scores by, and the warning when they cannot be checked against val's.

    A class mismatch is refused before the network loads; a missing class file is said
    after scoring, so that a broken export is named in one line, first."""
    if args.onnx:
        raise UserError("--onnx FILE runs in ONNX Runtime: drop --runtime mxnet, or give "
                        "--prefix for the MXNet export")
    if args.prefix:
        if args.input_size:
            warning = input_size_warning(args.prefix, read_info(args.prefix, args.input_size))
            if warning:
                print("warning: %s" % warning, file=sys.stderr, flush=True)
        names = args.prefix + ".synsets.txt"
        class_warning = dataset.check_val_classes(names, args.rec_val)
        runner = open_runner("mxnet", args.prefix, ctxs, args.api, args.batch_size,
                             args.input_size)
    else:
        source = source_from_args(args)
        names = source.synsets
        class_warning = dataset.check_val_classes(names, args.rec_val)
        runner = network_runner(source.net, source.info, source.path, ctxs, args.api,
                                args.batch_size)
    return runner, [names], class_warning


def _onnx(args, ctxs):
    """--runtime onnxruntime: the --onnx file alone, on the CPU, with the class names
    beside it, checked against val's as the MXNet export's are."""
    if not args.onnx:
        raise UserError("--runtime onnxruntime needs --onnx FILE (export_model.py --onnx "
                        "writes PREFIX.onnx)")
    given = [f for f, v in (("--prefix", args.prefix), ("--save-dir", args.save_dir),
                            ("--params", args.params)) if v]
    if given:
        raise UserError("--onnx evaluates the ONNX file alone; drop %s" % " and ".join(given))
    base = args.onnx[:-len(".onnx")] if args.onnx.endswith(".onnx") else args.onnx
    names = base + ".synsets.txt"
    class_warning = dataset.check_val_classes(names, args.rec_val)
    runner = open_runner("onnxruntime", args.onnx, ctxs, args.api, args.batch_size,
                         args.input_size)
    return runner, [names], class_warning


OPENERS = {"mxnet": _mxnet, "onnxruntime": _onnx}  # what each --runtime scores


if __name__ == "__main__":
    run_main(main)
