"""Training runs one at a time: the interface of :mod:`mobilenet_skip.bench.runs`.

:mod:`~mobilenet_skip.bench.gradflow` imports ``Run`` and ``train_runs`` from ``runs``
(many runs at once, one process each) where the checkout has it, and from here where it
does not; both skip a run that finished with the same arguments, so a killed
measurement resumes instead of retraining.
"""
import json
import subprocess
import sys
from collections import namedtuple

from ..errors import UserError
from ..train.rundir import RunDir
from ..utils.fs import atomic_save, checkout_path

__all__ = ["Run", "train_runs", "MARKER"]

MARKER = "run-args.json"
TRAIN_TOOL = checkout_path("tools", "train_imagenet.py")

Run = namedtuple("Run", ["save_dir", "args"])
Run.__doc__ = ("One tools/train_imagenet.py run: its --save-dir and its arguments (the list "
               "after the tool's path, --save-dir among them).")


def _finished(run):
    """True when ``run.save_dir`` holds a run that finished with exactly ``run.args``."""
    try:
        with open(RunDir(run.save_dir).file(MARKER)) as f:
            return json.load(f) == list(run.args)
    except (OSError, ValueError):
        return False


def train_runs(runs, jobs=1, log=print):
    """Train every run of ``runs`` that has not finished with the same arguments.

    Parameters
    ----------
    runs : list of Run
        The runs; a finished one is reused as it is.
    jobs : int
        Accepted for the parallel runner's signature; here the runs go one at a time.
    log : callable
        Called with one progress line per run.

    Raises
    ------
    UserError
        Naming the first run that failed, with the last lines of its output.
    """
    for i, run in enumerate(runs):
        if _finished(run):
            log("[%d/%d] %s: reused, finished earlier" % (i + 1, len(runs), run.save_dir))
            continue
        log("[%d/%d] %s: training" % (i + 1, len(runs), run.save_dir))
        res = subprocess.run([sys.executable, TRAIN_TOOL] + list(run.args),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if res.returncode != 0:
            raise UserError("run %s failed (exit %d); its last lines: %s" % (
                run.save_dir, res.returncode, " | ".join(res.stdout.strip().splitlines()[-5:])))
        atomic_save(RunDir(run.save_dir).file(MARKER), json.dumps(list(run.args)))
