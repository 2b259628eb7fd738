"""The scripts in docs/ that draw the pictures of the README and its pages still run."""
import importlib.util
import os

import pytest

import docpages
from conftest import ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _script(name):
    """``docs/<name>.py`` imported as a module (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "docs", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["draw_layout", "draw_blocks"])
def test_drawing_script_writes_the_png_a_page_shows(name, tmp_path, monkeypatch):
    script = _script(name)
    picture = os.path.relpath(script.OUT, ROOT)
    shown = {path for page in docpages.pages() for path, _ in docpages.links(page)}
    assert picture in shown, "neither README.md nor a docs page shows " + picture
    out = tmp_path / "picture.png"
    monkeypatch.setattr(script, "OUT", str(out))  # leave the committed picture alone
    script.main()
    with open(out, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    assert out.stat().st_size > 10000  # a drawing, not an empty canvas
