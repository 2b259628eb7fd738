"""`make demo`'s failures. Its job end to end (pack, train, export, reload, predict) is
checked on the README's own run of `make demo`, in tests/test_readme.py."""
import os
import subprocess
import sys

import pytest

from conftest import TOOLS

pytestmark = pytest.mark.slow  # runs tools/demo.py


def test_demo_failure_is_one_line(tmp_path):
    # a missing recipe is named before step 1: nothing is made, nothing is packed
    work = tmp_path / "demo"
    res = subprocess.run([sys.executable, os.path.join(TOOLS, "demo.py"), "--dir",
                          str(work), "--recipe", str(tmp_path / "missing.yaml")],
                         capture_output=True, text=True)
    assert res.returncode == 2
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "missing.yaml" in last
    assert "[1/6]" not in res.stdout and not work.exists()


def test_a_failing_step_is_named_in_one_line(tmp_path):
    # step 1 cannot write its folder where a file of that name stands
    (tmp_path / "images").write_text("not a folder")
    res = subprocess.run([sys.executable, os.path.join(TOOLS, "demo.py"), "--dir",
                          str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("error: demo step 1 (demo data)")
    assert "[2/6]" not in res.stdout


def test_the_evaluate_step_shows_its_accuracy():
    from conftest import tool_module
    line = tool_module("demo").accuracy_line({"top1": 0.98886, "top5": 1.0, "images": 359})
    assert line.strip() == "val top-1 0.9889, top-5 1.0000 on 359 images"
