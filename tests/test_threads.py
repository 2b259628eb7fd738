"""The trainer's OpenMP thread count (by the work per step, overridable) and the study's
--jobs, whose results must not depend on how many runs share the machine."""
import csv
import hashlib
import os
import subprocess
import sys

import pytest

from mobilenet_skip.config import recipes
from mobilenet_skip.errors import UserError
from mobilenet_skip.utils import threads

from conftest import ROOT, TOOLS


def test_small_steps_get_one_thread_large_ones_every_core():
    env = {threads.SOURCE_ENV: "cores", "OMP_NUM_THREADS": "2"}  # bootstrap's, not the user's
    small = threads.choose_threads("auto", 27e6, 2, environ=env)
    assert small.threads == 1 and "27M Mult-Adds" in small.reason
    assert threads.choose_threads("auto", 18e9, 2, environ=env).threads == 2
    assert threads.choose_threads("auto", 18e9, 8, environ=env).threads == 8
    assert threads.choose_threads("auto", 27e6, 2, on_gpu=True, environ=env).threads == 2
    edge = threads.SINGLE_THREAD_BELOW
    assert threads.choose_threads("auto", edge - 1, 4, environ=env).threads == 1
    assert threads.choose_threads("auto", edge, 4, environ=env).threads == 4


def test_the_user_s_setting_wins_over_auto_and_the_recipe_key_over_both():
    user = {"OMP_NUM_THREADS": "3"}
    assert threads.choose_threads("auto", 27e6, 2, environ=user).threads == 3
    assert threads.choose_threads("auto", 27e6, 2,
                                  environ={"MXNET_OMP_MAX_THREADS": "5"}).threads == 5
    key = threads.choose_threads(2, 27e6, 8, environ=user)
    assert key.threads == 2 and "omp_threads" in key.reason
    # the package's own value (bootstrap's core count) is not the user's
    assert threads.user_threads({"OMP_NUM_THREADS": "2", threads.SOURCE_ENV: "cores"}) is None


def test_omp_threads_is_a_recipe_key_checked_once():
    assert recipes.resolve(None, {"omp_threads": "3"})["omp_threads"] == 3
    assert recipes.resolve(None, {})["omp_threads"] == "auto"
    for bad in ("0", "two", "-1"):
        with pytest.raises(UserError, match="omp_threads must be a positive number or auto"):
            recipes.resolve(None, {"omp_threads": bad})


@pytest.fixture(scope="module")
def packed_digits(tmp_path_factory):
    from mobilenet_skip.data.demo import pack_demo_data
    train, val = pack_demo_data(str(tmp_path_factory.mktemp("digits")), size=37)
    return {"train": train, "val": val}


def _train(args, env):
    return subprocess.run([sys.executable, os.path.join(TOOLS, "train_imagenet.py")] + args,
                          capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_the_trainer_restarts_once_with_the_chosen_threads(packed_digits, tmp_path):
    """With no setting of the user's, a small network trains on one thread: the trainer
    restarts itself with OMP_NUM_THREADS=1 (the log line that says so prints only when
    the running threads are the chosen ones); a user's OMP_NUM_THREADS stands."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS", threads.SOURCE_ENV)}
    args = ["--recipe", os.path.join(ROOT, "recipes", "demo.yaml"), "--multiplier", "0.25",
            "--rec-train", packed_digits["train"], "--rec-val", packed_digits["val"],
            "--num-epochs", "1", "--batches-per-epoch", "2", "--overwrite"]
    res = _train(args + ["--save-dir", str(tmp_path / "auto")], env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "threads: 1 OpenMP thread (auto:" in res.stdout + res.stderr
    res = _train(args + ["--save-dir", str(tmp_path / "user")], dict(env, OMP_NUM_THREADS="2"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "threads: 2 OpenMP threads (2 threads set in the environment" in res.stdout + res.stderr
    res = _train(args + ["--save-dir", str(tmp_path / "key"), "--omp-threads", "2"],
                 dict(env, OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "threads: 2 OpenMP threads (omp_threads: 2" in res.stdout + res.stderr


def _checksums(out):
    sums = {}
    for name in sorted(os.listdir(os.path.join(out, "runs"))):
        folder = os.path.join(out, "runs", name)
        if not os.path.isdir(folder):
            continue
        params = sorted(f for f in os.listdir(folder) if f.endswith(".params"))
        with open(os.path.join(folder, params[-1]), "rb") as f:
            sums[name] = hashlib.sha256(f.read()).hexdigest()
    return sums


@pytest.mark.slow
def test_jobs_give_the_rows_and_weights_of_a_serial_study(packed_digits, tmp_path):
    """Two runs at once, or one after the other: the same CSV rows and the same final
    weights, bit for bit (each run has its own process and one OpenMP thread)."""
    outs = {}
    for jobs in (1, 2):
        out = str(tmp_path / ("jobs%d" % jobs))
        res = subprocess.run(
            [sys.executable, os.path.join(TOOLS, "compare_variants.py"), "--quick", "--seeds",
             "1", "--epochs", "1", "--variants", "mobilenet,simple-connect-pre-act",
             "--rec-train", packed_digits["train"], "--rec-val", packed_digits["val"],
             "--jobs", str(jobs), "--out", out], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        assert "up to %d at once" % jobs in res.stdout
        with open(os.path.join(out, "study.csv")) as f:
            outs[jobs] = (list(csv.DictReader(f)), _checksums(out))
    assert len(outs[1][0]) == 2 and outs[1][0] == outs[2][0]
    assert len(outs[1][1]) == 2 and outs[1][1] == outs[2][1]
