#!/usr/bin/env python
"""Train a paper network on ImageNet-style RecordIO (.rec/.idx) with a YAML recipe.

  python tools/train_imagenet.py --model full-connect-pre-act --gpus 0,1 \\
      --rec-train train.rec --rec-val val.rec

The recipe defaults to recipes/<model>.yaml (the paper's ImageNet setting); every
recipe key can be overridden by the flag of the same name. Checkpoints, metrics.csv,
curves.png, config.yaml and train.log go to --save-dir; at the end the best epoch is
exported to <save-dir>/<model>-symbol.json and <model>-0000.params.
Exit status: 0 done (or stopped by Ctrl-C after saving), 2 bad input, 3 NaN/inf loss,
4 dist_sync: no step finished for --dist-timeout seconds (a worker or server is gone).
"""
import argparse
import sys

import _bootstrap  # noqa: F401
from mobilenet_skip import config, training
from mobilenet_skip.cli import run_main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--recipe", default=None,
                   help="recipe YAML (default: recipes/<model>.yaml)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest complete checkpoint in --save-dir")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in a --save-dir that holds checkpoints (deletes them)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration and exit")
    config.add_flags(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = config.resolve(args.recipe, config.flag_overrides(args))
    if args.print_config:
        print("configuration (recipe %s):\n%s" % (cfg["recipe"], training.describe(cfg)),
              flush=True)
        return 0
    # Under dist_sync the rank is the kvstore's (it picks the shard and the validating
    # worker), known once every node has joined; all workers resolve the same recipe,
    # so rank 0 alone prints it.
    rank = training.worker_rank(cfg)
    training.setup_logging("[rank %d] " % rank if rank is not None else "")
    if not rank:
        print("configuration (recipe %s):\n%s" % (cfg["recipe"], training.describe(cfg)),
              flush=True)
    try:
        result = training.fit(cfg, resume=args.resume, overwrite=args.overwrite)
    except training.NonFiniteLoss as err:
        print("error: %s" % err, file=sys.stderr)
        return 3
    if result["interrupted"]:
        print("stopped by Ctrl-C; checkpoint saved in %s, continue with --resume"
              % cfg["save_dir"])
    elif result["export"]:
        last = result["last"]
        print("done: %d epochs, last val top-1 %.4f, best %.4f (epoch %d); exported %s; curves "
              "in %s/curves.png" % (last["epoch"], last["val_top1"], result["best_val_top1"],
                                    result["best_epoch"], result["export"], cfg["save_dir"]))
    return 0


if __name__ == "__main__":
    run_main(main)
