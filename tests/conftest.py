import fcntl
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from collections import namedtuple

import pytest

# One OpenMP thread per test process, as MXNet itself chooses on a 2-core machine with
# one thread per core: test processes share the cores with each other and other jobs,
# and a pool sized to the whole machine spin-waits against them. The tools' own default
# (one thread per physical core, tools/_bootstrap.py) is tested explicitly.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
sys.path.insert(0, ROOT)

DEMO_EPOCHS = 5  # val top-1 0.95 on the digits; best and last epoch coincide here

DemoRun = namedtuple("DemoRun", ["images", "train_rec", "val_rec", "save_dir", "model",
                                 "prefix", "metrics"])
DemoRun.__doc__ = ("A trained demo run: image folder (train/, val/), packed .rec files, the "
                   "run's --save-dir, model name, its export prefix and metrics.csv rows.")


TRAINED = "demo_run"  # the session fixture that trains: whatever needs it is slow


LAUNCHER_GROUP = "launcher"


def xdist_group(item):
    """The pytest-xdist group of a test (``make test`` runs ``--dist loadgroup``).

    A file's tests share a worker, so a module fixture (the README's checkout, ...) is set
    up once. Every test that starts MXNet's launcher shares one worker: dmlc_tracker
    chooses the scheduler's port by binding it and letting it go, so two launches at once
    can both choose 9091 and one scheduler then fails to bind.
    """
    if item.get_closest_marker("launcher") is not None:
        return LAUNCHER_GROUP
    return item.nodeid.split("::")[0]


# First, so that -m "not slow" (the mark plugin's hook of this name) sees the marker.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Mark slow every test that needs the trained demo run, however indirectly (``digits``,
    ``deployed``, ``subset``, ...): its first user pays about a minute of training, so the
    quick loop (``-m "not slow"``) must never set it up. Tests that start tools or train
    by themselves carry the marker in their own file."""
    for item in items:
        if TRAINED in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def group_node_ids(items):
    """Give every item the node id suffix ``@<group>`` (:func:`xdist_group`).

    That suffix is what pytest-xdist 3.8's ``--dist loadgroup`` schedules by; xdist
    writes it itself from an ``xdist_group`` marker, but a marker is also a ``-k``
    keyword (``-k dist`` would then match every test), and xdist's own hook cannot suffix
    pytest 9's node ids (hence pytest 8.4). tests/test_suite.py checks the scheduling
    with real xdist."""
    for item in items:
        item._nodeid = "%s@%s" % (item.nodeid, xdist_group(item))


# First, before xdist's worker sends the collected ids to the scheduler; after -k and -m.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session):
    if getattr(session.config.option, "loadgroup", False):  # an xdist worker of loadgroup
        group_node_ids(session.items)


@pytest.fixture(autouse=True)
def _one_launch_at_a_time(request):
    """Hold a machine-wide lock (per user) through a test that starts MXNet's launcher.

    The launcher group keeps this session's launches on one worker; the lock also keeps
    them apart from another session's (a second ``make test`` or checkout on the machine),
    whose scheduler could take the same port and adopt this job's workers."""
    if request.node.get_closest_marker("launcher") is None:
        yield
        return
    path = os.path.join(tempfile.gettempdir(), "mobilenet-skip-launcher-%d.lock" % os.getuid())
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(autouse=True)
def _seed():
    import mxnet as mx
    import numpy as np
    mx.random.seed(0)
    np.random.seed(0)


TOOL_TIMEOUT = 900  # s; a hung tool (seen once: gluon's forked DataLoader) fails its test
                    # instead of eating CI's whole time limit


def run_tool(name, *argv, timeout=TOOL_TIMEOUT):
    """Run ``tools/<name>.py`` in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, os.path.join(TOOLS, name + ".py")] + list(argv),
                          capture_output=True, text=True, timeout=timeout)


TRAIN = os.path.join(TOOLS, "train_imagenet.py")
DEMO_RECIPE = os.path.join(ROOT, "recipes", "demo.yaml")


def train_args(digits, save_dir, flags, *extra):
    """``train_imagenet.py`` on the packed digits (``{"train": rec, "val": rec}``) with the
    demo recipe, the test file's ``flags`` and ``extra``."""
    return [sys.executable, TRAIN, "--recipe", DEMO_RECIPE, "--rec-train", digits["train"],
            "--rec-val", digits["val"], "--save-dir", str(save_dir)] + list(flags) + list(extra)


def train_digits(digits, save_dir, flags, *extra, check=True):
    """Run :func:`train_args`; with ``check`` assert it succeeded (showing its output)."""
    res = subprocess.run(train_args(digits, save_dir, flags, *extra), capture_output=True,
                         text=True, timeout=TOOL_TIMEOUT)
    if check:
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return res


def checksums(out):
    """``{rank: checksum}`` from the "final trained-parameter checksum (rank R): S" lines of
    training's output (the last one per rank)."""
    return {int(r): s for r, s in
            re.findall(r"final trained-parameter checksum \(rank (\d+)\): (\w+)", out)}


def read_metrics(save_dir):
    """A run's metrics.csv as rows of floats (``epoch`` an int), as the package reads it."""
    from mobilenet_skip.utils.plots import read_metrics as read
    return read(os.path.join(str(save_dir), "metrics.csv"))


def tool_module(name):
    """``tools/<name>.py`` imported as a module, to call its functions in this process."""
    if TOOLS not in sys.path:
        sys.path.insert(0, TOOLS)
    spec = importlib.util.spec_from_file_location(name, os.path.join(TOOLS, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool_main(name):
    """The ``main`` of ``tools/<name>.py``, to run a tool in this process."""
    return tool_module(name).main


@pytest.fixture(scope="module")
def digits(demo_run):
    """The demo digits packed into RecordIO (1,438 train images: 44 batches of 32)."""
    return {"train": demo_run.train_rec, "val": demo_run.val_rec}


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The demo digits made, packed and trained with recipes/demo.yaml for DEMO_EPOCHS
    epochs through tools/train_imagenet.py (about 20 s on 2 cores)."""
    from mobilenet_skip.data.demo import pack_demo_data
    from mobilenet_skip.utils.plots import read_metrics

    root = str(tmp_path_factory.mktemp("demo_run"))
    recs = pack_demo_data(root, size=64, num_thread=2)
    save_dir = os.path.join(root, "run")
    res = run_tool("train_imagenet", "--recipe", os.path.join(ROOT, "recipes", "demo.yaml"),
                   "--rec-train", recs[0], "--rec-val", recs[1], "--save-dir", save_dir,
                   "--num-epochs", str(DEMO_EPOCHS))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    metrics = read_metrics(os.path.join(save_dir, "metrics.csv"))
    assert len(metrics) == DEMO_EPOCHS and metrics[-1]["val_top1"] > 0.9, metrics
    model = "full-connect-pre-act"
    return DemoRun(os.path.join(root, "images"), recs[0], recs[1], save_dir, model,
                   os.path.join(save_dir, model), metrics)


def call_tool(capsys, name, *argv):
    """Run ``tools/<name>.py`` in this process (quicker than :func:`run_tool`).

    Returns
    -------
    tuple
        (exit status, stdout, stderr).
    """
    from mobilenet_skip.cli import run_main
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run_main(tool_main(name), list(argv))
    out, err = capsys.readouterr()
    return exit_.value.code, out, err
