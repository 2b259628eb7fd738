#!/usr/bin/env python
"""Train a paper network on ImageNet-style RecordIO (.rec/.idx) with a YAML recipe.

  python tools/train_imagenet.py --model full-connect-pre-act --gpus 0,1 \\
      --rec-train train.rec --rec-val val.rec

The recipe defaults to recipes/imagenet.yaml, the paper's ImageNet setting for every
model (recipes/<model>.yaml where one exists); every recipe key can be overridden by the
flag of the same name. Checkpoints, metrics.csv,
curves.png, config.yaml and train.log go to --save-dir; at the end the last epoch (or the
best, --export-epoch best) is exported to <save-dir>/<model>-symbol.json and
<model>-0000.params.
--save-dir X --resume without --recipe reads X/config.yaml, the run's own settings.
Ctrl-C and SIGTERM (what SLURM and Kubernetes send before a kill) both finish the batch,
save <model>-interrupted.* and exit 0; a second one aborts without saving.
Exit status: 0 done (or stopped by Ctrl-C/SIGTERM after saving), 2 bad input (also a
full disk, a run folder in use by another job, a label outside the classes), 3 NaN/inf
loss, 4 dist_sync: no step finished for --dist-timeout seconds (a worker or
server is gone).
"""
import argparse
import functools
import os
import sys

import _bootstrap  # noqa: F401
from mobilenet_skip.config import recipes as config
from mobilenet_skip.deploy import export_run
from mobilenet_skip.train import devices, logs
from mobilenet_skip.train.guard import NonFiniteLoss
from mobilenet_skip.train.loop import fit
from mobilenet_skip.train.resume import refuse_missing_run
from mobilenet_skip.runs.folder import RunDir
from mobilenet_skip.cli import run_main
from mobilenet_skip.config.flags import add_flags, flag_overrides
from mobilenet_skip.utils import threads


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--recipe", default=None,
                   help="recipe YAML (default: recipes/imagenet.yaml, or recipes/<model>.yaml "
                   "where one exists)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest complete checkpoint in --save-dir (with "
                   "no --recipe, the settings come from --save-dir's config.yaml)")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in a --save-dir that holds a run (deletes its "
                   "checkpoints of every model, config.yaml, metrics.csv and curves.png)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration and exit")
    add_flags(p)
    return p.parse_args(argv)


def _restart_with(choice):
    """Run this command again with ``choice``'s OpenMP threads: OpenMP and MXNet's engine
    read OMP_NUM_THREADS once, when MXNet loads, which resolving the recipe has done."""
    env = dict(os.environ, OMP_NUM_THREADS=str(choice.threads))
    env[threads.SOURCE_ENV] = "trainer"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def main(argv=None, restart=False):
    """``restart``: as a script, restart once to apply the thread choice (an in-process
    call keeps the threads its process has, and says so)."""
    args = parse_args(argv)
    overrides = flag_overrides(args)
    recipe = args.recipe
    saved = RunDir(overrides["save_dir"]).config_path if overrides.get("save_dir") else None
    if args.resume and recipe is None and saved and os.path.isfile(saved):
        recipe = saved  # the run's own settings, as export_model/eval_imagenet read them
    cfg = config.resolve(recipe, overrides)  # classes too: the printed config is the one trained
    if args.resume:
        refuse_missing_run(cfg)  # before the data it would have named is missed
    if args.print_config:
        print("configuration (recipe %s):\n%s" % (cfg["recipe"], logs.describe(cfg)),
              flush=True)
        return 0
    choice = devices.thread_choice(cfg)
    running = threads.started_with()
    if restart and choice.threads != running:
        _restart_with(choice)  # before the kvstore: a dist_sync worker joins once
    # Under dist_sync the rank is the kvstore's (it picks the shard and the validating
    # worker), known once every node has joined; all workers resolve the same recipe,
    # so rank 0 alone prints it.
    rank = devices.worker_rank(cfg)
    logs.setup_logging("[rank %d] " % rank if rank is not None else "")
    if not rank:
        print("configuration (recipe %s):\n%s" % (cfg["recipe"], logs.describe(cfg)),
              flush=True)
    if choice.threads == running:
        logs.log.info("threads: %d OpenMP thread%s (%s)", running, "" if running == 1 else "s",
                      choice.reason)
    else:
        logs.log.info("threads: %s OpenMP threads, fixed when this process loaded MXNet; "
                      "the rule would give %d (%s)", running or "MXNet's default",
                      choice.threads, choice.reason)
    try:
        result = fit(cfg, resume=args.resume, overwrite=args.overwrite)
    except NonFiniteLoss as err:
        print("error: %s" % err, file=sys.stderr)
        return 3
    if result["interrupted"] and rank:  # only rank 0 saves
        print("stopped by Ctrl-C or SIGTERM with every worker; rank 0 saves the checkpoint")
    elif result["interrupted"]:
        print("stopped by Ctrl-C or SIGTERM; checkpoint saved in %s, continue with --resume"
              % cfg["save_dir"])
    elif result["checkpoint"]:  # rank 0, not interrupted: the run's end exports
        prefix = export_run(cfg["save_dir"])  # its export_epoch: last or best
        logs.log.info(result["summary"])
        print("done: %s to %s; curves in %s/curves.png"
              % (result["summary"], prefix, cfg["save_dir"]))
    return 0


if __name__ == "__main__":
    run_main(functools.partial(main, restart=True))
