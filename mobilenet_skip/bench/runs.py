"""Many ``tools/train_imagenet.py`` runs, several at once: the studies' runner.

Each run is its own process, with its own seed and save directory, so a run's result does
not depend on what ran beside it: its OpenMP thread count is the trainer's rule
(:mod:`mobilenet_skip.utils.threads`), not the number of runs sharing the machine, and a
run is bitwise the same whether it ran alone or beside another. A run that finished
leaves :data:`MARKER` in its folder with its command line and the code's commit, so a
killed study resumes where it stopped instead of retraining finished runs; a run whose
command line changed is trained again.

After training, a run's ``score`` epochs (if any) are scored on another ``.rec`` by
:mod:`.score` in the same slot (one OpenMP thread), and kept in the marker.
"""
import collections
import json
import os
import subprocess
import sys
import time

from ..errors import UserError
from ..runs.folder import RunDir
from ..utils.fs import atomic_save, checkout_path

__all__ = ["Run", "train_runs", "finished", "read_marker", "code_commit", "MARKER", "TRAIN_TOOL"]

MARKER = "study-run.json"
TRAIN_TOOL = checkout_path("tools", "train_imagenet.py")
_Run = collections.namedtuple("Run", "save_dir args score_rec score_epochs")


class Run(_Run):
    """One training run: ``args`` are ``tools/train_imagenet.py``'s arguments (after the
    tool's path); ``score_rec`` and ``score_epochs`` name checkpoints to score after it."""
    __slots__ = ()

    def __new__(cls, save_dir, args, score_rec=None, score_epochs=()):
        return _Run.__new__(cls, save_dir, [str(a) for a in args], score_rec,
                            tuple(int(e) for e in score_epochs))

    @property
    def name(self):
        return os.path.basename(os.path.normpath(self.save_dir))

    def command(self):
        return [TRAIN_TOOL] + self.args

    def record(self):
        """What the marker must hold for this run to count as done."""
        return {"cmd": self.command(), "score_rec": self.score_rec,
                "score_epochs": list(self.score_epochs)}


def code_commit():
    """The checkout's commit (``git describe --always --dirty``), or ``unknown``."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                             cwd=checkout_path(), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def read_marker(save_dir):
    """The marker of a finished run in ``save_dir`` (with its metrics.csv), else None."""
    rundir = RunDir(save_dir)
    try:
        with open(rundir.file(MARKER)) as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    return marker if rundir.has_metrics() else None


def finished(run):
    """The marker of ``run`` if it finished with exactly its command line, else None."""
    marker = read_marker(run.save_dir)
    if marker is None or {k: marker.get(k) for k in run.record()} != run.record():
        return None
    return marker


def _env():
    """The children's environment: the package importable from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([checkout_path()] + [p for p in [env.get("PYTHONPATH")]
                                                             if p])
    return env


class _Slot(object):
    """One run in progress: training, then scoring, each a child process."""

    def __init__(self, run, commit):
        self.run, self.commit, self.started = run, commit, time.time()
        self.scores, self.log_path = [], run.save_dir.rstrip(os.sep) + ".out"
        os.makedirs(os.path.dirname(os.path.abspath(self.log_path)), exist_ok=True)
        self.log = open(self.log_path, "w")
        self.proc = self._start([sys.executable] + run.command(), None)
        self.stage = "train"

    def _start(self, cmd, threads):
        env = _env()
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        return subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)

    def poll(self):
        """True when the run is done; raises UserError when a step of it failed."""
        code = self.proc.poll()
        if code is None:
            return False
        if code != 0:
            self.log.close()
            with open(self.log_path) as f:
                tail = "\n".join(f.read().strip().splitlines()[-5:])
            raise UserError("run %s failed in %s (exit %d; its output is in %s); its last "
                            "lines: %s" % (self.run.name, self.stage, code, self.log_path, tail))
        if self.stage == "train" and self.run.score_epochs:
            self.stage = "score"
            # one thread: a score must not depend on how many runs share the machine
            self.proc = self._start([sys.executable, "-m", "mobilenet_skip.bench.score",
                                     self.run.save_dir, self.run.score_rec]
                                    + [str(e) for e in self.run.score_epochs], 1)
            return False
        self.log.close()
        marker = dict(self.run.record(), commit=self.commit,
                      seconds=round(time.time() - self.started, 1))
        if self.stage == "score":
            with open(self.log_path) as f:
                marker["scores"] = [json.loads(line) for line in f if line.startswith("{")]
        atomic_save(RunDir(self.run.save_dir).file(MARKER), json.dumps(marker))
        return True

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # the trainer saves an -interrupted checkpoint and exits
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def train_runs(runs, jobs=1, log=print, poll_seconds=0.5):
    """Run every run of ``runs`` that has not finished, up to ``jobs`` at once.

    Returns
    -------
    list of dict
        Each run's marker (``cmd``, ``commit``, ``seconds``, ``scores``), in ``runs`` order.
    """
    if jobs < 1:
        raise UserError("--jobs must be at least 1, got %d" % jobs)
    markers = [finished(run) for run in runs]
    todo = [i for i, m in enumerate(markers) if m is None]
    commit = code_commit() if todo else None
    done, running, took = len(runs) - len(todo), {}, []
    if done:
        log("%d of %d runs finished earlier: reused" % (done, len(runs)), flush=True)
    try:
        while todo or running:
            while todo and len(running) < jobs:
                i = todo.pop(0)
                running[i] = _Slot(runs[i], commit)
            for i, slot in list(running.items()):
                if slot.poll():
                    del running[i]
                    markers[i] = finished(runs[i])
                    took.append(time.time() - slot.started)
                    done += 1
                    left = len(todo) + len(running)
                    eta = sum(took) / len(took) * left / jobs
                    log("[%d/%d] %s done in %.0fs (ETA %.0f min)"
                        % (done, len(runs), runs[i].name, took[-1], eta / 60), flush=True)
            if running:
                time.sleep(poll_seconds)
    except BaseException:
        for slot in running.values():
            slot.stop()
        raise
    return markers
