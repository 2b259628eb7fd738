"""dmlc_tracker's install: a hash-checked download that builds nothing, needs no compiler,
and names the real cause of a failure; and the Makefile and Dockerfiles that run it."""
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

from mobilenet_skip.launch import tracker
from mobilenet_skip.errors import UserError

from conftest import ROOT, TOOLS

# one xdist worker for every launch (conftest.xdist_group)
pytestmark = pytest.mark.launcher

COMPILERS = ("cc", "gcc", "g++", "c++", "clang", "clang++", "cmake", "ld", "as")
COREUTILS = ("ls", "cp", "mv", "rm", "mkdir", "cat", "touch", "env", "dirname", "basename",
             "head", "tail", "sort", "test", "[", "true", "false", "echo", "tr", "uname",
             "readlink", "realpath", "chmod", "ln", "date", "sleep", "wc", "tee")
TRACKER_FILES = {"__init__.py", "kubernetes.py", "launcher.py", "local.py", "mesos.py",
                 "mpi.py", "opts.py", "sge.py", "slurm.py", "ssh.py", "submit.py",
                 "tracker.py", "util.py", "yarn.py"}


def _minimal_bin(folder):
    """A PATH of python3, make, git, sh and coreutils only, as symlinks."""
    os.makedirs(folder)
    real_python = os.path.realpath(os.path.join(sys.base_prefix, "bin", "python3"))
    links = {"python3": real_python}
    for name in ("make", "git", "sh") + COREUTILS:
        found = shutil.which(name)
        if found:
            links[name] = os.path.realpath(found)
    for name, target in links.items():
        os.symlink(target, os.path.join(folder, name))
    return folder


@pytest.mark.slow
def test_install_tracker_needs_no_compiler(tmp_path):
    """The real pinned archive, from pip's configured index, with no compiler reachable."""
    bin_dir = _minimal_bin(str(tmp_path / "bin"))
    assert not [c for c in COMPILERS if shutil.which(c, path=bin_dir)]
    target = str(tmp_path / "site")
    env = dict(os.environ, PATH=bin_dir, XDG_CACHE_HOME=str(tmp_path / "cache"))
    res = subprocess.run([sys.executable, os.path.join(TOOLS, "launch.py"),
                          "--install-tracker", "--target", target],
                         capture_output=True, text=True, env=env, timeout=300)
    if res.returncode and "network error" in res.stdout + res.stderr:
        pytest.skip("no network: " + (res.stdout + res.stderr).strip())
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(os.listdir(os.path.join(target, "dmlc_tracker"))) == TRACKER_FILES
    assert os.listdir(target) == ["dmlc_tracker"]  # nothing built, nothing else written
    check = subprocess.run([sys.executable, "-c", "import dmlc_tracker.local, dmlc_tracker.ssh"],
                           env=dict(env, PYTHONPATH=target), capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


# --- a local file:// index with a fake archive: each failure names its cause ------------


def _sdist(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def index(tmp_path, monkeypatch):
    """A PEP 503 index under tmp_path serving xgboost-1.0.2.tar.gz, as pip's only index."""
    root = tmp_path / "simple"
    (root / "xgboost").mkdir(parents=True)
    canary = tmp_path / "SETUP_RAN"
    tracker = "xgboost-1.0.2/xgboost/dmlc-core/tracker/dmlc_tracker/"
    archive = _sdist({
        "xgboost-1.0.2/setup.py": "open(%r, 'w').write('built')\n" % str(canary),
        tracker + "__init__.py": "", tracker + "tracker.py": "X = 1\n",
        tracker + "local.py": "Y = 2\n", tracker + "sub/deep.py": "",
        tracker + "notes.txt": "",
        "xgboost-1.0.2/rabit/dmlc-core/tracker/dmlc_tracker/tracker.py": "WRONG = 1\n"})
    (root / "xgboost" / "xgboost-1.0.2.tar.gz").write_bytes(archive)
    (root / "xgboost" / "index.html").write_text(
        '<html><body><a href="xgboost-1.0.2.tar.gz#sha256=%s">xgboost-1.0.2.tar.gz</a>'
        "</body></html>" % hashlib.sha256(archive).hexdigest())
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", root.as_uri())
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    req = tmp_path / "tracker.txt"
    req.write_text("xgboost==1.0.2 --hash=sha256:%s\n" % hashlib.sha256(archive).hexdigest())
    return {"root": root, "req": str(req), "canary": canary, "archive": archive}


def test_pip_config_names_the_index(index):
    assert tracker.index_urls() == [index["root"].as_uri()]
    assert tracker.index_urls({}) == ["https://pypi.org/simple"]
    assert tracker.index_urls({"index-url": "https://a/simple",
                                "extra-index-url": "file:///x https://a/simple"}) == \
        ["https://a/simple", "file:///x"]


def test_install_extracts_only_the_tracker_and_runs_nothing(index, tmp_path, monkeypatch):
    ran = []
    real_run = subprocess.run

    def spy(cmd, *args, **kwargs):
        ran.append(list(cmd))
        return real_run(cmd, *args, **kwargs)
    monkeypatch.setattr(tracker.subprocess, "run", spy)
    monkeypatch.setattr(tracker.subprocess, "call", lambda *a, **k: ran.append(a) or 1)
    dest = tracker.install_tracker(str(tmp_path / "site"), index["req"])
    # pip is only asked for its settings: it neither downloads nor prepares the archive
    assert ran == [[sys.executable, "-m", "pip", "config", "list"]]
    assert sorted(os.listdir(dest)) == ["__init__.py", "local.py", "tracker.py"]
    with open(os.path.join(dest, "tracker.py")) as f:
        assert f.read() == "X = 1\n"
    assert not index["canary"].exists()
    # the verified archive is cached: a second install needs no index at all
    os.environ["PIP_INDEX_URL"] = "http://127.0.0.1:9/simple"
    assert tracker.install_tracker(str(tmp_path / "site2"), index["req"])


def test_hash_mismatch_is_named(index, tmp_path):
    with open(index["req"], "w") as f:
        f.write("xgboost==1.0.2 --hash=sha256:%s\n" % ("0" * 64))
    with pytest.raises(UserError, match=r"hash mismatch: xgboost-1.0.2.tar.gz .* has sha256 "
                                        r"[0-9a-f]{64}, but .* pins 0{64}; refusing it"):
        tracker.install_tracker(str(tmp_path / "site"), index["req"])
    assert not (tmp_path / "site" / "dmlc_tracker").exists()


def test_a_missing_file_is_named(index, tmp_path):
    (index["root"] / "xgboost" / "index.html").write_text("<html></html>")
    with pytest.raises(UserError, match="does not list xgboost-1.0.2.tar.gz"):
        tracker.install_tracker(str(tmp_path / "site"), index["req"])


def test_an_unreachable_index_is_a_network_error(index, tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    with pytest.raises(UserError, match=r"127.0.0.1:9/simple/xgboost/: network error"):
        tracker.install_tracker(str(tmp_path / "site"), index["req"], timeout=5)


def test_an_archive_without_the_tracker_is_named(index, tmp_path):
    archive = _sdist({"xgboost-1.0.2/setup.py": ""})
    (index["root"] / "xgboost" / "xgboost-1.0.2.tar.gz").write_bytes(archive)
    with open(index["req"], "w") as f:
        f.write("xgboost==1.0.2 --hash=sha256:%s\n" % hashlib.sha256(archive).hexdigest())
    with pytest.raises(UserError, match="holds no dmlc_tracker package"):
        tracker.install_tracker(str(tmp_path / "site"), index["req"])


def test_a_malformed_pin_is_refused(tmp_path):
    req = tmp_path / "tracker.txt"
    req.write_text("xgboost==1.0.2\n")
    with pytest.raises(UserError, match="exactly one line"):
        tracker.install_tracker(str(tmp_path / "site"), str(req))


# --- what runs it ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cpu"])
def test_dockerfiles_need_no_compiler(name):
    with open(os.path.join(ROOT, "docker", name)) as f:
        text = f.read()
    body = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    assert not re.search(r"\b(cmake|g\+\+|gcc|clang|build-essential|-devel-)", body), name
    assert "--no-binary" not in body
    # the tracker comes from the no-build installer, after the package is installed
    assert re.search(r"python tools/launch\.py --install-tracker", body)


def test_make_demo_does_not_need_the_tracker(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}

    def dry(target):
        res = subprocess.run(["make", "--no-print-directory", "-n", target,
                              "VENV=%s" % (tmp_path / "v")], cwd=ROOT, capture_output=True,
                             text=True, env=env)
        assert res.returncode == 0, res.stderr
        return res.stdout
    assert "--install-tracker" not in dry("demo")
    assert "--install-tracker" in dry("venv") and "--install-tracker" in dry("test")


@pytest.mark.slow
def test_a_failed_worker_fails_the_launcher_every_time():
    """A worker that exits 1 just as the scheduler ends 0: the launcher exits 1 in every
    one of 12 runs: the thread that reports the failure races the main thread's return,
    which must not exit 0 first; on a loaded machine the scheduler can even end before
    dmlc's tracker starts the worker, which is then the error named."""
    pytest.importorskip("dmlc_tracker")
    cmd = [sys.executable, os.path.join(TOOLS, "launch.py"), "-n", "1", "-s", "1",
           "--launcher", "local", "bash", "-c", '[ "$DMLC_ROLE" != worker ]']
    codes = []
    for _ in range(12):
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        codes.append(res.returncode)
        assert ("error: worker #0" in res.stderr or "error: the scheduler ended (exited "
                "with status 0) before the launcher started" in res.stderr), res.stderr[-2000:]
        assert "Traceback" not in res.stderr, res.stderr[-2000:]
    assert codes == [1] * 12
