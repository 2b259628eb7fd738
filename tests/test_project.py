"""The project's own plumbing: the two make commands and CI's entry point."""
import os
import subprocess

import pytest

from conftest import ROOT


def test_ci_runs_make_test():
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        lines = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    assert "make test" in lines
    assert os.access(os.path.join(ROOT, ".ci", "run"), os.X_OK)


def _make(*args):
    # Under `make test` the parent make exports MAKELEVEL/MAKEFLAGS, which makes the
    # child print "Entering directory" lines; run it as a top-level make instead.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(["make", "--no-print-directory"] + list(args), cwd=ROOT,
                          capture_output=True, text=True, env=env)


def test_second_make_does_not_reinstall():
    stamp = os.path.join(ROOT, ".venv", ".installed-cpu")
    if not os.path.exists(stamp):
        pytest.skip("not running from make's .venv")
    dry = _make("-n", "test")
    assert dry.returncode == 0
    commands = dry.stdout.strip().splitlines()
    assert len(commands) == 1 and "-m pytest" in commands[0], commands


def test_fresh_make_would_install_the_pinned_lock(tmp_path):
    dry = _make("-n", "venv", "VENV=%s" % (tmp_path / "v"))
    assert "-r requirements/cpu.txt -r requirements/test.txt" in dry.stdout
    assert "--no-deps" in dry.stdout and "--install-tracker" in dry.stdout
    gpu = _make("-n", "venv", "FLAVOUR=gpu", "VENV=%s" % (tmp_path / "v"))
    assert "-r requirements/gpu.txt" in gpu.stdout


def test_every_requirement_is_pinned():
    for name in ("base.txt", "cpu.txt", "gpu.txt", "test.txt", "tracker.txt"):
        with open(os.path.join(ROOT, "requirements", name)) as f:
            for line in f:
                line = line.split("#")[0].strip()
                if line and not line.startswith("-r"):
                    assert "==" in line, (name, line)
