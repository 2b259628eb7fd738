"""The scripts in docs/ that draw the README's pictures still run."""
import importlib.util
import os

import pytest

from conftest import ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _script(name):
    """``docs/<name>.py`` imported as a module (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "docs", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["draw_layout", "draw_blocks"])
def test_drawing_script_writes_the_png_the_readme_shows(name, tmp_path, monkeypatch):
    script = _script(name)
    picture = os.path.relpath(script.OUT, ROOT)
    with open(os.path.join(ROOT, "README.md")) as f:
        assert "(%s)" % picture in f.read(), "README.md does not show " + picture
    out = tmp_path / "picture.png"
    monkeypatch.setattr(script, "OUT", str(out))  # leave the committed picture alone
    script.main()
    with open(out, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    assert out.stat().st_size > 10000  # a drawing, not an empty canvas
