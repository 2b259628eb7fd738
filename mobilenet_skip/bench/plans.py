"""The studies ``tools/compare_variants.py`` runs, by name, and what each writes.

========== ===================================================================
sweep      five variants x 3 seeds x base lrs 0.01-0.3, 7 epochs of 5,000 images:
           lr robustness and convergence speed (``study.csv``)
converged  five variants x 4 seeds at one lr, trained to convergence on 55,000
           images, monitored on the 5,000 held out, the last 3 epochs scored on
           the 10,000 test images (``converged/runs.csv``, ``converged/test.csv``)
clipping   mobilenet and simple-connect at lr 0.01 and 0.1 with global-norm
           clipping at 2.0 and off, 3 seeds, the sweep's budget
           (``clipping/clipping.csv``)
gradflow   each DW block's gradient-to-weight norm ratio at init and after one
           epoch, 3 seeds, lr 0.01 and 0.1 (``gradflow/gradflow.csv``)
========== ===================================================================
"""
import collections
import os

from ..config import recipes
from ..models import list_models
from ..train.devices import thread_choice
from ..utils.cores import physical_cores
from ..utils.fs import atomic_save_csv
from . import study
from .runs import Run, read_marker, train_runs

__all__ = ["STUDIES", "Study", "default_jobs", "run_converged", "collect_converged", "run_clipping",
           "RUN_COLUMNS", "TEST_COLUMNS", "CLIP_COLUMNS", "SCORED_EPOCHS", "study_defaults"]

Study = collections.namedtuple("Study", "help recipe seeds lrs variants folder")
PAIR = ("mobilenet", "simple-connect")
STUDIES = {
    "sweep": Study("lr robustness: all variants x 3 seeds x 4 lrs, 7 short epochs", None, 3,
                   (0.01, 0.03, 0.1, 0.3), None, ""),
    "converged": Study("the paper's claim: all variants x 4 seeds trained to convergence on "
                       "55,000 images, scored on the 10,000 test images",
                       "study-fashion-full.yaml", 4, None, None, "converged"),
    "clipping": Study("mobilenet and simple-connect, clipping at 2.0 and off, lr 0.01 and 0.1, "
                      "3 seeds, the sweep's budget", "study-fashion.yaml", 3, (0.01, 0.1),
                      PAIR, "clipping"),
    "gradflow": Study("gradient/weight norm ratio per DW block at init and after one epoch, "
                      "3 seeds, lr 0.01 and 0.1", "study-fashion.yaml", 3, (0.01, 0.1), None,
                      "gradflow"),
}
SCORED_EPOCHS = 3  # the converged study's last epochs scored on the test set
RUN_COLUMNS = study.COLUMNS + ("lr", "commit")
TEST_COLUMNS = ("variant", "base_lr", "seed", "epoch", "test_top1", "test_top5", "commit")
CLIP_COLUMNS = ("variant", "base_lr", "clip_gradient", "seed", "epoch", "train_loss",
                "train_top1", "val_top1", "val_top5", "commit")
CLIP_SETTINGS = (2.0, 0.0)  # the recipe's (Inception-v3's) global-norm clipping, and off


def default_jobs(recipe, variants, overrides):
    """``(jobs, choice)``: one run per physical core when every run trains with one OpenMP
    thread (:func:`~mobilenet_skip.train.devices.thread_choice`), else one at a time."""
    choices = [thread_choice(recipes.resolve(recipe, dict(overrides, model=v)))
               for v in variants]
    widest = max(choices, key=lambda c: c.threads)
    cores = physical_cores() or 1
    return (cores if widest.threads == 1 else 1), widest


def run_converged(out_dir, recipe, recs, lrs, variants, seeds, epochs=None, extra_args=(),
                  jobs=1, log=print):
    """Train the converged study and score its last epochs on the test set.

    ``recs``: ``(train, holdout, test)`` ``.rec`` paths. Writes ``runs.csv`` (every
    epoch, val = the hold-out split) and ``test.csv`` (the last :data:`SCORED_EPOCHS`
    epochs on the test images) in ``out_dir`` from every scored run finished there
    (:func:`collect_converged`), so that a second call with more seeds for some
    networks adds to the study; returns their paths.
    """
    rec_train, rec_holdout, rec_test = recs
    runs = study.study_runs(out_dir, recipe, rec_train, rec_holdout, lrs, variants, seeds,
                            epochs, extra_args, score_rec=rec_test, score_last=SCORED_EPOCHS)
    log("%d runs, up to %d at once, each in its own process" % (len(runs), jobs), flush=True)
    train_runs(runs, jobs=jobs, log=log)
    return collect_converged(out_dir)


def collect_converged(out_dir):
    """Write ``runs.csv`` and ``test.csv`` of every scored run finished under
    ``out_dir/runs`` (in Table-3 order, then lr and seed); returns their paths."""
    runs_dir = os.path.join(out_dir, "runs")
    found = []
    for name in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else ():
        marker = read_marker(os.path.join(runs_dir, name))
        if marker and marker.get("scores"):
            run = Run(os.path.join(runs_dir, name), marker["cmd"][1:], marker["score_rec"],
                      marker["score_epochs"])
            found.append((run, marker))
    order = {v: i for i, v in enumerate(list_models())}
    found.sort(key=lambda rm: (order.get(study.run_key(rm[0])["variant"], 99),
                               study.run_key(rm[0])["base_lr"], study.run_key(rm[0])["seed"]))
    rows = study.collect_rows([r for r, _ in found], [m for _, m in found])
    tests = [dict(study.run_key(run), epoch=score["epoch"], test_top1=score["top1"],
                  test_top5=score["top5"], commit=marker["commit"])
             for run, marker in found for score in marker["scores"]]
    paths = [os.path.join(out_dir, name) for name in ("runs.csv", "test.csv")]
    atomic_save_csv(paths[0], RUN_COLUMNS, rows)
    atomic_save_csv(paths[1], TEST_COLUMNS, tests)
    return paths


def run_clipping(out_dir, recipe, rec_train, rec_val, lrs, variants, seeds, epochs=None,
                 extra_args=(), jobs=1, log=print):
    """Train each (variant, lr, seed) with clipping at 2.0 and off; writes and returns
    ``clipping.csv`` in ``out_dir``."""
    rows = []
    for clip in CLIP_SETTINGS:
        more = list(extra_args) + ["--clip-gradient", repr(clip)]
        got = study.run_study(out_dir, recipe, rec_train, rec_val, lrs, variants, seeds,
                                 epochs, more, jobs=jobs, log=log, tag="-clip%g" % clip)
        rows += [dict(r, clip_gradient=clip) for r in got]
    path = os.path.join(out_dir, "clipping.csv")
    atomic_save_csv(path, CLIP_COLUMNS, rows)
    return path


def study_defaults(name, data):
    """The recipe file name, seeds, lrs and variants of study ``name`` on ``data``."""
    plan = STUDIES[name]
    recipe = plan.recipe or ("compare.yaml" if data == "digits" else "study-fashion.yaml")
    return recipe, plan.seeds, plan.lrs, list(plan.variants or list_models())
