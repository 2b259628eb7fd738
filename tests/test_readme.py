"""Every command README.md shows runs, in order, as a new user would type it.

Shell and Python blocks carry a marker comment: `<!-- test: run -->` blocks are run
here; `<!-- test: skip, REASON -->` blocks need what no test machine has (ImageNet, a
GPU, several hosts), are the test suite itself, or are long and name the test that
runs the same command at toy size.
"""
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

BLOCK = re.compile(r"```(?P<lang>[a-z]*)\n(?P<body>.*?)```", re.S)
MARK = re.compile(r"<!-- (test: run|test: skip, (?P<reason>[^>]+)|begin examples/\S+) -->$")
COMMAND_LANGS = ("bash", "sh", "shell", "console", "python")
SKIP_REASONS = ("ImageNet", "GPU", "hosts", "test suite", "long")
OUTPUTS = {".git", ".venv", "demo", "data", "runs", "deploy", ".pytest_cache"}


def _blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    for match in BLOCK.finditer(text):
        if match.group("lang") not in COMMAND_LANGS:
            continue
        before = text[:match.start()].rstrip().splitlines()[-1].strip()
        yield match.group("lang"), match.group("body"), MARK.match(before), before


def test_every_command_block_is_marked():
    blocks = list(_blocks())
    assert len(blocks) > 10
    for lang, body, mark, before in blocks:
        assert mark, "README block without a test marker (line before: %r):\n%s" % (before, body)
        reason = mark.group("reason")
        if reason:
            assert any(r in reason for r in SKIP_REASONS), reason
        if reason and "long" in reason:  # a long command names the test running it small
            covered = re.search(r"tests/test_\w+\.py", reason)
            assert covered and os.path.isfile(os.path.join(ROOT, covered.group(0))), reason


def _script(python):
    parts = ["set -euo pipefail"]
    for lang, body, mark, _ in _blocks():
        if mark.group(0) != "<!-- test: run -->":
            continue
        if lang == "python":
            parts.append("python - <<'README_PY'\n%sREADME_PY" % body)
        else:  # the make targets take the interpreter as given, building no .venv
            parts.append(re.sub(r"^make (\w+)$", r'make \1 PY="%s"' % python, body, flags=re.M))
        parts.append("echo '--- block done ---'")
    return "\n".join(parts) + "\n"


@pytest.mark.slow
def test_readme_commands_run_in_order(tmp_path):
    work = tmp_path / "checkout"
    work.mkdir()
    for name in os.listdir(ROOT):
        if name not in OUTPUTS:
            os.symlink(os.path.join(ROOT, name), str(work / name))
    shim = tmp_path / "bin"
    shim.mkdir()
    # a script, not a symlink: a venv's python finds its packages from its own path
    (shim / "python").write_text('#!/bin/sh\nexec "%s" "$@"\n' % sys.executable)
    (shim / "python").chmod(0o755)
    env = dict(os.environ, PATH="%s:%s" % (shim, os.environ["PATH"]), PYTHONUNBUFFERED="1")
    script = _script(sys.executable)
    res = subprocess.run(["bash", "-c", script], cwd=str(work), env=env, capture_output=True,
                         text=True, timeout=1500)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert out.count("--- block done ---") == script.count("--- block done ---")
    assert "demo val top-1" in out and (work / "deploy" / "digits.onnx").is_file()
