"""`make demo`'s failures. Its job end to end (pack, train, export, reload, predict) is
checked on the README's own run of `make demo`, in tests/test_readme.py."""
import os
import subprocess
import sys

import pytest

from conftest import TOOLS

pytestmark = pytest.mark.slow  # runs tools/demo.py: pack, train, export, predict


def test_demo_failure_is_one_line(tmp_path):
    res = subprocess.run([sys.executable, os.path.join(TOOLS, "demo.py"), "--dir",
                          str(tmp_path), "--recipe", str(tmp_path / "missing.yaml")],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("error: demo step 3")
