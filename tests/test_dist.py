"""dist_sync through MXNet's local launcher: equal steps on shards of unequal length, and
no hang when a worker or the server dies."""
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import types

import mxnet as mx
import pytest

from mobilenet_skip.config.recipe import Recipe
from mobilenet_skip.data import records as data
from mobilenet_skip.train import dist
from mobilenet_skip.train.feed import record_iters
from mobilenet_skip.launch import supervisor as launcher_mod
from mobilenet_skip.launch.supervisor import Supervisor
from mobilenet_skip.errors import UserError

from conftest import ROOT, TOOLS, checksums, read_metrics

# one xdist worker for every launch (conftest.xdist_group)
pytestmark = pytest.mark.launcher

LAUNCH = os.path.join(TOOLS, "launch.py")
TRAIN = os.path.join(TOOLS, "train_imagenet.py")
DEMO_RECIPE = os.path.join(ROOT, "recipes", "demo.yaml")
# 95 records: 2 workers read 48 and 47 (3 and 2 batches of 16), 3 workers 32, 32 and 31
# (2, 2 and 1): a worker that counted its own shard's batches would push once more than
# the shortest shard's and hang the job.
RECORDS, BATCH = 95, 16
BOUND = 240  # seconds: a small job on 2 busy cores; a hang is infinite


@pytest.fixture(scope="module")
def subset(demo_run, tmp_path_factory):
    """The first RECORDS demo digits as their own .rec/.idx (and synsets)."""
    folder = str(tmp_path_factory.mktemp("dist_subset"))
    prefix = os.path.join(folder, "train")
    src = mx.recordio.MXIndexedRecordIO(demo_run.train_rec[:-4] + ".idx", demo_run.train_rec,
                                        "r")
    dst = mx.recordio.MXIndexedRecordIO(prefix + ".idx", prefix + ".rec", "w")
    for i, key in enumerate(sorted(src.keys)[:RECORDS]):
        dst.write_idx(i, src.read_idx(key))
    src.close()
    dst.close()
    shutil.copy(data.synsets_path(demo_run.train_rec), data.synsets_path(prefix + ".rec"))
    return {"train": prefix + ".rec", "val": demo_run.val_rec}


def _job(subset, save_dir, workers, *extra):
    return [sys.executable, LAUNCH, "-n", str(workers), "-s", "1", "--launcher", "local",
            sys.executable, TRAIN, "--recipe", DEMO_RECIPE, "--rec-train", subset["train"],
            "--rec-val", subset["val"], "--save-dir", str(save_dir), "--kv-store", "dist_sync", "--multiplier", "0.25",
            "--batch-size", str(BATCH), "--log-interval", "1", "--keep-checkpoints", "1"] + \
        list(extra)


def _env():
    # a scheduler port of its own: other jobs on this machine probe from 9091 upwards
    return dict(os.environ, OMP_NUM_THREADS="1", PS_VERBOSE="0", PYTHONUNBUFFERED="1",
                DMLC_PS_ROOT_PORT=str(random.randrange(20000, 60000)))


# MXNet's tracker picks the scheduler's port by binding 9091, 9092, ... and closing it
# again; another job on the machine can take it in between ("bind failed").
PORT_RACE = "bind failed"


def _run(cmd, **kwargs):
    """subprocess.run for a launcher job, retried after a port race; on timeout the whole
    job is killed, not only the launcher (its children would live on)."""
    for _ in range(3):
        res = _run_once(cmd, **kwargs)
        if PORT_RACE not in res.stdout + res.stderr:
            break
    return res


def _run_once(cmd, **kwargs):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), **kwargs)
    try:
        out, err = proc.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # an orphan still holds the pipes
            out, err = "", ""
        raise AssertionError("the job hung past %d s:\n%s" % (BOUND, (out + err)[-3000:]))
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _worker(rank, num_workers):
    """Rank ``rank``'s strategy in a job of ``num_workers``, its watchdog not started."""
    return dist.DistSyncStrategy(types.SimpleNamespace(rank=rank, num_workers=num_workers))


def _common_iters(num_records, num_workers, batch):
    return _worker(0, num_workers).shards(num_records)[1] // batch


def test_every_worker_runs_the_shortest_shard():
    # ImageNet on 15 workers at 32: shards of 85,412 and a last one of 85,399 records
    assert _worker(0, 15).shards(1281167) == (85412, 85399)
    assert _worker(14, 15).shards(1281167) == (85399, 85399)
    assert data.shard_size(1281167, 15, 0) // 32 == 2669
    assert _common_iters(1281167, 15, 32) == 2668
    assert _common_iters(12799, 2, 64) == 99            # 6400 and 6399 records
    # (n // W) // batch is not enough: 13 records on 4 workers are 4, 4, 4 and 1
    assert _common_iters(13, 4, 1) == 1 and (13 // 4) // 1 == 3
    assert dist.LocalStrategy().shards(RECORDS) == (RECORDS, RECORDS)
    assert [_common_iters(RECORDS, w, BATCH) for w in (1, 2, 3)] == [5, 2, 1]
    assert [data.shard_size(RECORDS, 2, r) // BATCH for r in (0, 1)] == [3, 2]


def test_record_iters_gives_every_rank_the_common_count(subset):
    cfg = Recipe.from_values({"rec_train": subset["train"], "rec_val": subset["val"],
                              "batch_size": BATCH, "seed": 0, "input_size": 32,
                              "preprocess_threads": 1, "classes": 10})
    made = [record_iters(cfg, 1, _worker(rank, 3)) for rank in range(3)]
    assert [iters for _, _, iters in made] == [1, 1, 1]
    # rank 0 alone validates; every rank's batches feed its watchdog
    assert [val is not None for _, val, _ in made] == [True, False, False]
    assert all(train.on_next is not None for train, _, _ in made)
    assert record_iters(cfg, 1, dist.LocalStrategy())[0].on_next is None
    with pytest.raises(UserError, match="the last of 3 workers"):
        record_iters(cfg.replace(batch_size=32), 1, _worker(0, 3))


@pytest.mark.slow
def test_watchdog_exits_with_one_line_when_no_step_finishes(tmp_path):
    code = ("import time, sys; sys.path.insert(0, %r)\n"
            "from mobilenet_skip.train.dist import Watchdog\n"
            "dog = Watchdog(1.0, 1).start()\n"
            "with dog.paused():\n    time.sleep(2.5)\n"   # paused time does not count
            "print('survived the pause', flush=True)\n"
            "time.sleep(30)\n" % ROOT)
    tic = time.time()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == dist.EXIT_PEER_LOST
    assert "survived the pause" in res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "worker rank 1: no training step finished" in lines[0]
    assert time.time() - tic < 10


@pytest.mark.parametrize("workers", [2, 3])
def test_unequal_shards_finish_in_step(subset, tmp_path, workers):
    """Every worker runs the shortest shard's count, ends in time, with equal weights."""
    save_dir = tmp_path / "run"
    tic = time.time()
    res = _run(_job(subset, save_dir, workers, "--num-epochs", "2"))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    sums = checksums(out)
    assert sorted(sums) == list(range(workers)), out[-3000:]
    assert len(set(sums.values())) == 1, sums
    iters = _common_iters(RECORDS, workers, BATCH)
    # every worker logged the common count, and stopped there
    logged = re.findall(r"\[rank (\d+)\] .*Epoch\[2\] Batch \[(\d+)/(\d+)\]", out)
    assert {int(r) for r, _, _ in logged} == set(range(workers)), out[-3000:]
    assert all(int(total) == iters and int(done) <= iters for _, done, total in logged)
    meta = json.load(open(str(save_dir / "full-connect-pre-act-0002.json")))
    assert meta["num_update"] == 2 * iters
    # rank 0 alone prints the configuration
    assert out.count("configuration (recipe") == 1
    # metrics.csv's train columns cover every worker's shard, not rank 0's alone: with
    # --log-interval 1 each window is one batch of 16 on one worker
    windows = re.findall(r"\[rank \d+\] .*Epoch\[2\] Batch \[\d+/\d+\].*loss=([\d.]+)\s+"
                         r"top1=([\d.]+)", out)
    assert len(windows) == workers * iters, out[-3000:]
    row = read_metrics(save_dir)[1]
    assert abs(row["train_loss"] - sum(float(l) for l, _ in windows) / len(windows)) < 2e-4
    assert abs(row["train_top1"] - sum(float(t) for _, t in windows) / len(windows)) < 2e-4
    assert time.time() - tic < BOUND


def _wait_for(proc, pattern, out_path, limit):
    deadline = time.time() + limit
    while time.time() < deadline:
        with open(out_path) as f:
            text = f.read()
        if re.search(pattern, text):
            return text
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError("never saw %r:\n%s" % (pattern, text[-3000:]))


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid) as f:
            return f.read()
    except OSError:
        return ""


def _children(pid):
    """{pid: environ} of every live descendant of ``pid``."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for kid in [p for p, pp in parents.items() if pp == parent]:
            try:
                with open("/proc/%d/environ" % kid, "rb") as f:
                    env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            except OSError:
                continue
            found[kid] = {k.decode(): v.decode() for k, v in env.items()}
            todo.append(kid)
    return found


def _kill_tree(proc):
    """SIGKILL a launcher and every process it started, if still running."""
    if proc.poll() is None:
        for pid in list(_children(proc.pid)) + [proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    proc.wait()


def _start_job(subset, tmp_path, out_path):
    """A long 2-worker job, running past its first epoch (retried after a port race)."""
    for attempt in range(3):
        with open(out_path, "w") as out:
            proc = subprocess.Popen(_job(subset, tmp_path / "run", 2, "--num-epochs", "50",
                                         "--dist-timeout", "60", "--overwrite"),
                                    stdout=out, stderr=subprocess.STDOUT, env=_env())
        try:
            _wait_for(proc, r"Epoch\[2\] Batch", out_path, BOUND)
            return proc
        except AssertionError:
            _kill_tree(proc)
            with open(out_path) as f:
                if PORT_RACE not in f.read() or attempt == 2:
                    raise


@pytest.mark.parametrize("victim", ["worker", "server"])
def test_a_killed_process_ends_the_whole_job(subset, tmp_path, victim):
    """SIGKILL of a worker or the server: the launcher names it and every process is gone
    within the bound (before: all of them waited forever)."""
    out_path = str(tmp_path / "out.txt")
    proc = _start_job(subset, tmp_path, out_path)
    try:
        procs = _children(proc.pid)
        role = {p: e.get("DMLC_ROLE") for p, e in procs.items() if "DMLC_ROLE" in e}
        targets = [p for p, r in role.items() if r == victim and
                   (victim != "worker" or procs[p].get("DMLC_TASK_ID") == "1")]
        assert len(targets) >= 1, role
        tic = time.time()
        os.kill(targets[0], signal.SIGKILL)
        proc.wait(timeout=60)
        took = time.time() - tic
    finally:
        _kill_tree(proc)  # a failed test must not leave the job behind
    with open(out_path) as f:
        text = f.read()
    assert proc.returncode == 1, text[-3000:]
    assert re.search(r"error: %s #\d+ \(pid %d\) was killed by SIGKILL; stopping the other"
                     % (victim, targets[0]), text), text[-3000:]
    assert took < 30, took
    left = [p for p in role if os.path.exists("/proc/%d" % p)
            and open("/proc/%d/stat" % p).read().split()[2] != "Z"]
    assert not left, left


def test_sigterm_to_one_worker_stops_every_worker_and_rank_0_saves(subset, tmp_path):
    """SIGTERM to worker #1, then to worker #0 three seconds later (as a scheduler may
    deliver it): both stop after the same batch (equal checksums), rank 0 saves the
    interrupted checkpoint and alone says so, and the launcher exits 0, rather than worker #1
    stopping alone and claiming a checkpoint while rank 0 waits for its watchdog."""
    out_path = str(tmp_path / "out.txt")
    proc = _start_job(subset, tmp_path, out_path)
    try:
        procs = _children(proc.pid)
        # the training processes themselves, not the shells the launcher starts them in
        workers = {e.get("DMLC_TASK_ID"): p for p, e in procs.items()
                   if e.get("DMLC_ROLE") == "worker" and "train_imagenet" in _cmdline(p)}
        assert sorted(workers) == ["0", "1"], workers
        os.kill(workers["1"], signal.SIGTERM)
        time.sleep(3)
        try:
            os.kill(workers["0"], signal.SIGTERM)
        except OSError:  # already gone: it stopped with worker #1
            pass
        proc.wait(timeout=BOUND)
    finally:
        _kill_tree(proc)
    with open(out_path) as f:
        text = f.read()
    assert proc.returncode == 0, text[-3000:]
    assert text.count("checkpoint saved in") == 1, text[-3000:]
    assert text.count("rank 0 saves the checkpoint") == 1, text[-3000:]
    sums = checksums(text)
    assert sorted(sums) == [0, 1] and len(set(sums.values())) == 1, text[-3000:]
    stopped = json.load(open(str(tmp_path / "run" / "full-connect-pre-act-interrupted.json")))
    assert stopped["epoch"] >= 1 and "error:" not in text, text[-3000:]


def test_the_command_reaches_the_launcher_quoted(subset, tmp_path):
    """A --save-dir with a space and a ';' is one argument: nothing runs from it, and
    the run writes into exactly that folder."""
    name = "out dir;touch CANARY"  # unquoted: --save-dir out, then `touch CANARY` runs
    res = _run(_job(subset, name, 2, "--num-epochs", "1"), cwd=str(tmp_path))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert os.listdir(str(tmp_path)) == [name]
    assert os.path.isfile(os.path.join(str(tmp_path), name, "full-connect-pre-act-0001.params"))


def test_split_and_quote_the_launcher_command():
    from mobilenet_skip.launch import command as launcher
    opts, cmd = launcher.split_argv(["-n", "2", "--launcher=local", "-s", "1", "python",
                                     "x.py", "-n", "5"])
    assert opts == ["-n", "2", "--launcher=local", "-s", "1"]
    assert cmd == ["python", "x.py", "-n", "5"]
    assert launcher.split_argv(["-n", "1", "--", "-weird"]) == (["-n", "1"], ["-weird"])
    with pytest.raises(UserError, match="unknown launcher option --bogus"):
        launcher.split_argv(["--bogus", "python"])
    words = ["python", "a b", "x;touch F", "$(id)", 'q"uote']
    # bash gives back exactly the words, through one shell (local) ...
    line = " ".join(launcher.quote_command(words, "local"))
    echo = subprocess.run(["bash", "-c", "printf '%s\\n' " + line], capture_output=True,
                          text=True)
    assert echo.stdout.splitlines() == words
    # ... and through ssh's two: the local shell, then the remote one (see test_ssh_line_*)
    assert launcher.quote_command(words + ["it's"], "ssh") == \
        launcher.quote_command(words + ["it's"], "local")


def test_ssh_lines_keep_hosts_folders_and_words_whole(tmp_path, monkeypatch):
    """A hostfile host, a working folder and command words holding ' ; $ and spaces reach
    ssh and the remote shell as exactly themselves (a dry run with a stand-in ssh that
    records its arguments and runs the remote line in bash); dmlc_tracker's own lines
    paste the host and folder in bare, where ';touch CANARY' would run locally."""
    import argparse
    import dmlc_tracker.tracker
    from mobilenet_skip.launch.command import quote_command
    from mobilenet_skip.launch.ssh import ssh_submit
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ssh").write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$SSH_ARGS"\n'
                              'eval "last=\\${$#}"; exec bash -c "$last"\n')
    (fake / "ssh").chmod(0o755)
    cwd = tmp_path / "it's;touch CANARY"
    cwd.mkdir()
    host = "h'ost;touch CANARY"
    hostfile = tmp_path / "hosts"
    hostfile.write_text(host + ":2222\n\n")
    words = [sys.executable, "-c", "import os, sys; print(os.getcwd()); print(sys.argv[1:]); "
             "print(os.environ['DMLC_ROLE'], os.environ['ODD'])", "a b", "it's", "$(id);x"]
    lines = []
    monkeypatch.setattr(dmlc_tracker.tracker, "submit",
                        lambda nw, ns, fun_submit, **kw: fun_submit(nw, ns, {"ODD": "v'; x"}))
    monkeypatch.chdir(cwd)
    ssh_submit(argparse.Namespace(host_file=str(hostfile), sync_dst_dir=None,
                                  command=quote_command(words, "ssh"), num_workers=1,
                                  num_servers=0, host_ip=None), runner=lines.append)
    deadline = time.time() + 10
    while not lines and time.time() < deadline:
        time.sleep(0.05)
    assert len(lines) == 1
    args_file = tmp_path / "ssh_args"
    res = subprocess.run(["bash", "-c", lines[0]], capture_output=True, text=True,
                         cwd=str(tmp_path), env=dict(os.environ, SSH_ARGS=str(args_file),
                                                     PATH="%s:%s" % (fake, os.environ["PATH"])))
    assert res.returncode == 0, res.stderr
    argv = args_file.read_text().splitlines()
    assert argv[:5] == ["-o", "StrictHostKeyChecking=no", "-p", "2222", host]
    assert res.stdout.splitlines() == [str(cwd) + "/", repr(words[3:]), "worker v'; x"] or \
        res.stdout.splitlines() == [str(cwd), repr(words[3:]), "worker v'; x"]
    assert not [p for p in tmp_path.rglob("CANARY")]
    with pytest.raises(UserError, match="hostfile line '-oProxyCommand=x'"):
        hostfile.write_text("-oProxyCommand=x\n")
        ssh_submit(argparse.Namespace(host_file=str(hostfile), sync_dst_dir=None,
                                      command=["true"], num_workers=1, num_servers=0,
                                      host_ip=None), runner=lines.append)


def test_the_launcher_outlives_no_process(tmp_path):
    """A process still running when the scheduler has ended is stopped and named, so the
    launcher never returns leaving an orphan that waits forever."""
    err = io.StringIO()
    sup = Supervisor(stream=err)
    threading.Thread(target=sup.call, args=(["sleep", "600"],),
                     kwargs={"env": dict(os.environ, DMLC_ROLE="worker", DMLC_TASK_ID="1")},
                     daemon=True).start()
    time.sleep(0.5)
    pid = sup._procs[0][1].pid
    code = {}
    real_exit = launcher_mod.os._exit
    try:
        launcher_mod.os._exit = lambda c: code.setdefault("rc", c)
        sup.finish(linger=1.0)
    finally:
        launcher_mod.os._exit = real_exit
    assert code == {"rc": 1}
    assert "error: the scheduler has ended but worker #1 (pid %d) is still running" % pid \
        in err.getvalue()
    assert sup._procs[0][1].poll() is not None


class _Tracker:
    """Stands in for ``dmlc_tracker.tracker``'s ``submit``: the scheduler on a thread, the
    workers and servers started only if it is still alive (as dmlc checks), then a wait
    for the scheduler alone."""

    def __init__(self, sup, scheduler_ends_first):
        self.sup, self.ends_first = sup, scheduler_ends_first

    def submit(self, nworker, nserver, fun_submit, pscmd=None):
        env = dict(os.environ, DMLC_ROLE="scheduler")
        cmd = ["true"] if self.ends_first else ["sleep", "0.2"]
        scheduler = threading.Thread(target=self.sup.call, args=(cmd,), kwargs={"env": env})
        scheduler.start()
        if self.ends_first:
            scheduler.join()
        if scheduler.is_alive():
            fun_submit(nworker, nserver, {})
        scheduler.join()


def _slow_workers(sup, started):
    """A fun_submit whose threads start each worker (one that exits 1) a second late,
    as the tracker's threads may on a loaded machine."""
    def start_late(nworker, nserver, envs):
        def late():
            time.sleep(1.0)
            for i in range(nworker):
                started.append(i)
                threading.Thread(target=sup.call, args=(["false"],), daemon=True, kwargs={
                    "env": dict(os.environ, DMLC_ROLE="worker", DMLC_TASK_ID=str(i))}).start()
        threading.Thread(target=late, daemon=True).start()
    return start_late


@pytest.mark.parametrize("ends_first", [False, True])
def test_a_worker_started_after_the_scheduler_ended_still_fails_the_job(ends_first):
    """MXNet's launcher returns once the scheduler ends: the supervisor still waits for a
    worker whose thread had not yet started it, and names a scheduler that ended before
    the workers were started, instead of exiting 0 with nothing said."""
    err = io.StringIO()
    sup = Supervisor(grace=0.0, stream=err)
    tracker = _Tracker(sup, scheduler_ends_first=ends_first)
    sup.watch_submit(tracker)
    started = []
    tracker.submit(1, 1, _slow_workers(sup, started), pscmd="x")
    codes = []
    real_exit = launcher_mod.os._exit
    try:
        launcher_mod.os._exit = codes.append
        sup.finish(linger=5.0)  # the launcher's last act: its process ends after it
    finally:
        launcher_mod.os._exit = real_exit
    assert codes and codes[0] == 1, err.getvalue()
    if ends_first:
        assert started == []
        assert ("error: the scheduler ended (exited with status 0) before the launcher "
                "started the 1 worker(s) and 1 server(s)") in err.getvalue()
    else:
        assert started == [0]
        assert re.search(r"error: worker #0 \(pid \d+\) exited with status 1", err.getvalue())


@pytest.mark.slow
def test_a_refusal_on_rank_0_ends_every_worker_without_the_launcher(subset, tmp_path):
    """Scheduler, server and two workers started by hand (no launcher to stop them), into
    a --save-dir that already holds checkpoints: rank 0 refuses with its one line, and
    both workers exit within --dist-timeout: the watchdog runs from before the resume
    checks and the kvstore's init, where the other worker would otherwise wait forever."""
    save_dir = tmp_path / "run"
    save_dir.mkdir()
    for ext, text in (("json", '{"epoch": 1}'), ("params", ""), ("states", "")):
        (save_dir / ("full-connect-pre-act-0001." + ext)).write_text(text)
    env = dict(_env(), DMLC_PS_ROOT_URI="127.0.0.1", DMLC_NUM_WORKER="2",
               DMLC_NUM_SERVER="1", PYTHONPATH=ROOT)
    nodes = [subprocess.Popen([sys.executable, "-c", "import mxnet"],
                              env=dict(env, DMLC_ROLE=role), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for role in ("scheduler", "server")]
    cmd = _job(subset, save_dir, 2, "--num-epochs", "1", "--dist-timeout", "15")[8:]
    workers = [subprocess.Popen(cmd, env=dict(env, DMLC_ROLE="worker"), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for _ in range(2)]
    try:
        outs = [w.communicate(timeout=BOUND)[0] for w in workers]
    finally:
        for p in workers + nodes:
            if p.poll() is None:
                p.kill()
            p.wait()
    text = "".join(outs)
    assert text.count("already holds checkpoints") == 1, text[-3000:]
    assert all(w.returncode != 0 for w in workers), [w.returncode for w in workers]
    assert "no training step finished" in text, text[-3000:]
