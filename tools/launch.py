#!/usr/bin/env python
"""Run MXNet's own distributed launcher (mxnet/tools/launch.py) on Python 3.11.

Takes exactly MXNet's arguments, e.g. 2 workers and 1 server on this machine:

  python tools/launch.py -n 2 -s 1 --launcher local \\
      python tools/train_imagenet.py --kv-store dist_sync --recipe recipes/demo.yaml ...

or across machines (one line per host in `hosts`, passwordless ssh, same paths):

  python tools/launch.py -n 4 -s 4 --launcher ssh -H hosts \\
      python tools/train_imagenet.py --kv-store dist_sync --gpus 0,1 ...

The differences from MXNet's launcher:
- every word of the command is shell-quoted before MXNet's launcher joins them into a
  shell line, so a path with a space or a `;` stays one argument; the ssh launcher's
  hostfile hosts, working folder and variables are quoted too;
- when a worker, server or the scheduler ends unsuccessfully, the launcher stops the
  others (SIGTERM, SIGKILL 10 s later), names the one that failed and exits with 1
  (every time, also when it fails just as the scheduler ends);
- DMLC_PS_ROOT_PORT, if set, is the first port tried for the scheduler (MXNet always
  starts at 9091, so two jobs started together on one machine could collide);
- Thread.isAlive (gone since Python 3.9) is restored for dmlc_tracker, and dmlc_tracker
  itself, which the mxnet wheel lacks, is installed by `make venv` or
  `python tools/launch.py --install-tracker [--target DIR]`: a hash-checked download of
  its .py files from pip's configured index, which builds and compiles nothing.
"""
import sys

import _bootstrap  # noqa: F401
from mobilenet_skip.launch import launcher, tracker
from mobilenet_skip.cli import run_main
from mobilenet_skip.errors import UserError


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--install-tracker"]:
        rest = argv[1:]
        if rest and (rest[0] != "--target" or len(rest) != 2):
            raise UserError("usage: launch.py --install-tracker [--target DIR]")
        print("installed %s" % tracker.install_tracker(rest[1] if rest else None))
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\nMXNet's launcher options follow.\n", flush=True)
        argv = ["--help"]
    launcher.run(argv)
    return 0


if __name__ == "__main__":
    run_main(main)
