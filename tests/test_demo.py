"""`make demo`'s job, end to end: pack, train, export, reload, predict."""
import os
import re
import subprocess
import sys

import pytest

from conftest import TOOLS

pytestmark = pytest.mark.slow  # runs tools/demo.py: pack, train, export, predict


def test_demo_runs_end_to_end(tmp_path):
    res = subprocess.run([sys.executable, os.path.join(TOOLS, "demo.py"), "--dir",
                          str(tmp_path)], capture_output=True, text=True)
    out = res.stdout
    assert res.returncode == 0, out[-3000:] + res.stderr[-3000:]
    for step in range(1, 7):
        assert "[%d/6]" % step in out
    top1 = float(re.search(r"demo val top-1 ([0-9.]+)", out).group(1))
    assert top1 >= 0.9
    prefix = tmp_path / "run" / "full-connect-pre-act"
    for suffix in ("-symbol.json", "-0000.params", ".synsets.txt", ".json"):
        assert os.path.isfile(str(prefix) + suffix)
    assert (tmp_path / "run" / "curves.png").is_file()
    # the plain-MXNet reload (step 5) and predict.py (step 6) agree on the first image
    plain = out.split("[5/6]")[1].split("[6/6]")[0]
    predicted = out.split("[6/6]")[1]
    first_plain = re.search(r"^\d\.\d{4}  (\S+)", plain, re.M).group(1)
    first_predict = re.search(r"^  \d\.\d{4}  (\S+)", predicted, re.M).group(1)
    assert first_plain == first_predict == "digit_0"


def test_demo_failure_is_one_line(tmp_path):
    res = subprocess.run([sys.executable, os.path.join(TOOLS, "demo.py"), "--dir",
                          str(tmp_path), "--recipe", str(tmp_path / "missing.yaml")],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("error: demo step 3")
