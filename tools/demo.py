#!/usr/bin/env python
"""Run the whole job on the demo digits: pack, train, export, reload, predict (what `make demo` runs).

Every step is the real command-line tool a user would type, run in order:
  1. tools/make_demo_data.py     scikit-learn's handwritten digits as JPEG folders
  2. tools/im2rec.py             pack train and val into .lst/.rec/.idx
  3. tools/train_imagenet.py     train full-connect-pre-act with recipes/demo.yaml,
                                 export the last epoch to -symbol.json/-0000.params
  4. tools/eval_imagenet.py      the paper's centre-crop evaluation of the export
  5. examples/plain_mxnet_predict.py   reload the export in plain MXNet
  6. tools/predict.py            top-5 names for a few val images
It ends by checking val top-1 against --min-top1 (chance is 10%).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

import _bootstrap  # noqa: F401
from mobilenet_skip.cli import run_main
from mobilenet_skip.errors import UserError
from mobilenet_skip.runs.folder import RunDir

ROOT = _bootstrap.ROOT
MODEL = "full-connect-pre-act"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default="demo", help="working folder (default: demo)")
    p.add_argument("--recipe", default=os.path.join(ROOT, "recipes", "demo.yaml"),
                   help="training recipe (default: recipes/demo.yaml)")
    p.add_argument("--min-top1", type=float, default=0.9,
                   help="fail unless the export's val top-1 reaches this (default 0.9)")
    return p.parse_args(argv)


def _step(number, title, cmd, capture=False):
    print("\n[%d/6] %s\n      $ %s" % (number, title, " ".join(cmd)), flush=True)
    tic = time.time()
    res = subprocess.run(cmd, stdout=subprocess.PIPE if capture else None, text=True)
    if res.returncode != 0:
        raise UserError("demo step %d (%s) failed with exit status %d; its output is above"
                        % (number, title, res.returncode))
    print("      (%.1fs)" % (time.time() - tic), flush=True)
    return res.stdout


def accuracy_line(result):
    """What step 4 found, from eval_imagenet.py's --json line: its output is captured to
    read the figures, so the step shows them itself."""
    return "      val top-1 %.4f, top-5 %.4f on %d images" % (result["top1"], result["top5"],
                                                            result["images"])


def main(argv=None):
    args = parse_args(argv)
    # read the recipe as step 3 will, so a bad one fails now rather than after packing
    from mobilenet_skip.config.recipes import resolve
    resolve(args.recipe, {"model": MODEL})
    py, tool = sys.executable, lambda name: os.path.join(ROOT, "tools", name)
    d = args.dir
    images, run_dir = os.path.join(d, "images"), os.path.join(d, "run")
    _step(1, "demo data", [py, tool("make_demo_data.py"), images])
    for split in ("train", "val"):
        _step(2, "pack %s" % split, [py, tool("im2rec.py"), "--list", "--recursive",
                                      os.path.join(d, split), os.path.join(images, split)])
        _step(2, "pack %s" % split, [py, tool("im2rec.py"), os.path.join(d, split),
                                      os.path.join(images, split)])
    _step(3, "train and export", [py, tool("train_imagenet.py"), "--recipe", args.recipe,
                                  "--model", MODEL, "--rec-train", os.path.join(d, "train.rec"),
                                  "--rec-val", os.path.join(d, "val.rec"),
                                  "--save-dir", run_dir, "--overwrite"])
    prefix = RunDir(run_dir, MODEL).export_prefix()
    result = json.loads(_step(4, "evaluate the export (centre crop)", [
        py, tool("eval_imagenet.py"), "--prefix", prefix, "--rec-val",
        os.path.join(d, "val.rec"), "--json"], capture=True).strip().splitlines()[-1])
    print(accuracy_line(result), flush=True)
    samples = [sorted(glob.glob(os.path.join(images, "val", "digit_%d" % k, "*.jpg")))[0]
               for k in (0, 3, 7)]
    with open(prefix + ".json") as f:
        input_size = json.load(f)["input_size"]
    _step(5, "reload in plain MXNet", [py, os.path.join(ROOT, "examples",
                                                         "plain_mxnet_predict.py"),
                                       prefix, samples[0], str(input_size)])
    _step(6, "predict", [py, tool("predict.py"), "--prefix", prefix] + samples)
    print("\ndemo val top-1 %.4f on %d images (chance 0.10, required %.2f)"
          % (result["top1"], result["images"], args.min_top1))
    print("exported model: %s-symbol.json, %s-0000.params, %s.synsets.txt"
          % (prefix, prefix, prefix))
    print("training curves: %s" % RunDir(run_dir).curves_path)
    if result["top1"] < args.min_top1:
        raise UserError("demo val top-1 %.4f is below %.2f" % (result["top1"], args.min_top1))
    return 0


if __name__ == "__main__":
    run_main(main)
