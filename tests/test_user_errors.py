"""One line instead of a traceback: unwritable outputs, values
MXNet cannot hold, damaged checkpoints, ambiguous recipes and names under an ASCII locale.
Each runs the tool as a user would, in a fresh process."""
import os
import shutil
import subprocess
import sys

import pytest

from mobilenet_skip.bench.infer import randomise_bn
from mobilenet_skip.data.demo import pack_demo_data
from mobilenet_skip.deploy import artifact
from mobilenet_skip.models import get_model

from conftest import DEMO_RECIPE, ROOT, TOOLS, TOOL_TIMEOUT, call_tool

SLOW = pytest.mark.slow  # a test that starts tools in fresh interpreters

MODEL = "full-connect-pre-act"
TINY = ["--multiplier", "0.25", "--input-size", "32", "--batch-size", "16",
        "--batches-per-epoch", "2", "--num-epochs", "1"]


def _tool(name, *argv, env=None, cwd=None, read_only=None):
    """``tools/<name>.py argv``; with ``read_only`` (an empty folder) a read-only file system
    is mounted there first.

    As root a chmod 0555 folder is still writable, so the mount is real: a read-only tmpfs
    in a private mount namespace (``unshare -m``), which vanishes with the process and is
    never seen outside it. Without root, a 0555 folder is read-only enough."""
    cmd = [sys.executable, os.path.join(TOOLS, name + ".py")] + [str(a) for a in argv]
    if read_only is not None:
        if os.geteuid() == 0:
            cmd = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o ro tmpfs "$0" && exec "$@"',
                   str(read_only)] + cmd
        else:
            os.chmod(str(read_only), 0o555)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT,
                          env=dict(os.environ, PYTHONPATH=ROOT, **(env or {})), cwd=cwd)


def _can_mount_read_only(tmp_path):
    if os.geteuid() != 0:
        return True
    folder = tmp_path / "probe"
    folder.mkdir()
    res = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o ro tmpfs "$0" && '
                          '! touch "$0/x" 2>/dev/null', str(folder)], capture_output=True)
    return res.returncode == 0


@pytest.fixture
def read_only(tmp_path):
    """An empty folder that :func:`_tool` mounts read-only."""
    if not _can_mount_read_only(tmp_path):
        pytest.skip("root without mount namespaces: no read-only folder can be made here")
    folder = tmp_path / "ro"
    folder.mkdir()
    yield folder
    os.chmod(str(folder), 0o755)


def _one_line(res, *words):
    """The tool failed with exit status 2 and one ``error:`` line holding ``words``."""
    return _one_error_line(res.returncode, res.stdout, res.stderr, words)


def _one_error_line(code, out, err, words):
    assert code == 2, out[-1500:] + err[-1500:]
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.rstrip("\n").endswith(errors[0]), err
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def _in_process(capsys, name, *argv, words=()):
    """``tools/<name>.py argv`` in this process (quicker; for refusals before any work)."""
    return _one_error_line(*call_tool(capsys, name, *[str(a) for a in argv]), words)


@pytest.fixture(scope="module")
def recs(tmp_path_factory):
    """The digits at 32 px, packed: ``{"train": rec, "val": rec}`` (the val split twice)."""
    root = str(tmp_path_factory.mktemp("errors"))
    val = pack_demo_data(root, size=32, splits=("val",))[0]
    return {"train": val, "val": val}


def _train(recs, save_dir, *extra, **kwargs):
    return _tool("train_imagenet", "--recipe", DEMO_RECIPE, "--rec-train", recs["train"],
                 "--rec-val", recs["val"], "--save-dir", save_dir, *(TINY + list(extra)),
                 **kwargs)


# --- outputs that cannot be written ---------------------------------------------------

@SLOW
@pytest.mark.parametrize("where,words", [
    ("ro/run", ["run folder", "ro is on a read-only file system", "give --save-dir"]),
    ("ro", ["ro is on a read-only file system", "give --save-dir"]),
    ("file", ["file is a file, not a folder", "give --save-dir"]),
    ("file/run", ["file is a file, not a folder", "give --save-dir"]),
])
def test_save_dir_on_a_read_only_mount_or_a_file(recs, read_only, tmp_path, where, words):
    (tmp_path / "file").write_text("mine\n")
    res = _train(recs, tmp_path / where, read_only=read_only if "ro" in where else None)
    _one_line(res, *words)
    assert (tmp_path / "file").read_text() == "mine\n"


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A random mobilenet x0.25 exported at 32 px with 10 class names."""
    prefix = str(tmp_path_factory.mktemp("plain") / "plain")
    net = randomise_bn(get_model("mobilenet", multiplier=0.25, classes=10), 32)
    artifact.export_network(net, prefix, 32, ["c%d" % i for i in range(10)])
    return prefix


@SLOW
@pytest.mark.parametrize("where", ["ro/m", "ro/sub/m", "file/m"])
def test_export_output_on_a_read_only_mount_or_under_a_file(plain, read_only, tmp_path, where):
    (tmp_path / "file").write_text("mine\n")
    res = _tool("export_model", "--prefix", plain, "--output", tmp_path / where, "--fused",
                read_only=read_only if "ro" in where else None)
    _one_line(res, "cannot write the export %s" % (tmp_path / where),
              "is a file, not a folder" if "file" in where else "read-only file system",
              "give --output a PREFIX on a writable disk")
    assert (tmp_path / "file").read_text() == "mine\n"


# --- values MXNet cannot hold ----------------------------------------------------------

@pytest.mark.parametrize("flags,words", [
    (["--lr", "1e308"], ["lr must be a float", "float32", "got 1e+308"]),
    (["--lr", "3e38", "--lr-batch", "1"], ["beyond float32", "give a smaller --lr"]),
    (["--input-size", "20000"], ["input_size 20000", "more than the", "lower --input-size"]),
    (["--multiplier", "1e9"], ["multiplier 1e+09", "more than the", "--multiplier"]),
])
def test_values_beyond_what_mxnet_or_the_machine_holds(recs, tmp_path, capsys, flags, words):
    _in_process(capsys, "train_imagenet", "--recipe", DEMO_RECIPE, "--rec-train", recs["train"],
                "--rec-val", recs["val"], "--save-dir", tmp_path / "run", *(TINY + flags),
                words=words)
    assert not (tmp_path / "run" / "metrics.csv").exists()


@SLOW
def test_a_multiplier_beyond_mxnets_channel_count_in_count_flops():
    _one_line(_tool("count_flops", "--multiplier", "1e9"),
              "multiplier 1e+09 gives the last block 1024000000000 channels")


# --- a damaged checkpoint on resume -----------------------------------------------------

@pytest.fixture(scope="module")
def trained(recs, tmp_path_factory):
    """A run folder with one epoch's checkpoint."""
    save_dir = tmp_path_factory.mktemp("trained") / "run"
    res = _train(recs, save_dir)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return save_dir


@SLOW
@pytest.mark.parametrize("damage", ["truncated", "garbage", "json"])
def test_a_damaged_checkpoint_on_resume_is_named(recs, trained, tmp_path, damage):
    save_dir = tmp_path / "run"
    shutil.copytree(str(trained), str(save_dir))
    params = save_dir / ("%s-0001.params" % MODEL)
    raw = params.read_bytes()
    params.write_bytes({"truncated": raw[:len(raw) // 3], "garbage": os.urandom(len(raw)),
                        "json": b"{}\n"}[damage])
    before = {p.name: p.read_bytes() for p in save_dir.iterdir() if p.is_file()}
    res = _train(recs, save_dir, "--resume", "--num-epochs", "2")
    _one_line(res, "checkpoint %s cannot be loaded" % params, "truncated, damaged",
              "delete its marker %s" % params.with_suffix(".json"), "--overwrite")
    changing = ("train.log", ".lock")  # the log says what happened; the lock holds a PID
    after = {p.name: p.read_bytes() for p in save_dir.iterdir() if p.is_file()
             and p.name not in changing}
    assert after == {k: v for k, v in before.items() if k not in changing}  # nothing lost


# --- recipes that would not do what they say --------------------------------------------

@pytest.mark.parametrize("text,words", [
    ("base: [demo.yaml, imagenet.yaml]\n", ["base must be one recipe file",
                                             "['demo.yaml', 'imagenet.yaml']", "chain them"]),
    ("base: demo.yaml\nlr: 0.1\nwd: 0.0\nlr: 0.2\n", ["lr is given twice (lines 2 and 4)",
                                                      "delete one"]),
])
def test_an_ambiguous_recipe_is_refused(tmp_path, capsys, text, words):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    _in_process(capsys, "train_imagenet", "--recipe", recipe, "--print-config",
                words=["recipe %s" % recipe] + words)


@SLOW
def test_a_config_yaml_with_a_key_twice_is_refused(recs, trained, tmp_path):
    save_dir = tmp_path / "run"
    shutil.copytree(str(trained), str(save_dir))
    with open(str(save_dir / "config.yaml"), "a") as f:
        f.write("lr: 5.0\n")
    res = _train(recs, save_dir, "--resume", "--num-epochs", "2")
    _one_line(res, "lr is given twice", "delete one")


# --- names under an ASCII locale ---------------------------------------------------------

@SLOW
def test_utf8_names_are_listed_and_packed_under_an_ascii_locale(tmp_path):
    """LC_ALL=C with PYTHONUTF8=0 makes Python's file system encoding ASCII: café/ü1.jpg
    reaches the lister as surrogates. Valid UTF-8 names are listed and packed all the same
    (and their class named), and only a name whose bytes are not UTF-8 is left out."""
    import cv2
    import numpy as np
    images = tmp_path / "img"
    for folder, name in (("café", "ü1.jpg"), ("café", "ü2.jpg"), ("b", "1.jpg")):
        (images / folder).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(images / folder / name), np.full((40, 40, 3), 90, np.uint8))
    bad = os.path.join(os.fsencode(str(images / "b")), b"\xff.jpg")
    shutil.copyfile(os.fsencode(str(images / "b" / "1.jpg")), bad)
    env = {"LC_ALL": "C", "PYTHONUTF8": "0", "LANG": "C"}
    res = _tool("im2rec", "--list", "--recursive", "--no-shuffle", "data", "img", env=env,
                cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    with open(str(tmp_path / "data.lst"), encoding="utf-8") as f:
        listed = [line.rstrip("\n").split("\t")[-1] for line in f]
    assert listed == ["b/1.jpg", "café/ü1.jpg", "café/ü2.jpg"]
    with open(str(tmp_path / "data.synsets.txt"), encoding="utf-8") as f:
        assert f.read().split() == ["b", "café"]
    assert res.stderr.count("not valid UTF-8") == 1 and "\\udcff.jpg" in res.stderr
    res = _tool("im2rec", "data", "img", env=env, cwd=str(tmp_path))
    assert res.returncode == 0 and "packed 3 images" in res.stdout, res.stdout + res.stderr
