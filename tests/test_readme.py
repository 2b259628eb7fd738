"""Every command README.md and the docs/*.md pages show runs, as a new user would type it,
and every link between them leads somewhere.

Shell and Python blocks carry a marker comment: `<!-- test: run -->` blocks are run
here; `<!-- test: skip, REASON -->` blocks need what no test machine has (ImageNet, a
GPU, several hosts), are the test suite itself, or are long and name the test that
runs the same command at toy size.

All pages run in one fresh checkout, each page's blocks in order in one shell. README.md
runs first when a page needs what its blocks leave (`make demo`'s demo/ folder): such a
page says `<!-- test: runs after README.md -->`. Other pages write outputs of their own
names, so they run alone too (`-k extending`).
"""
import os
import re
import subprocess
import sys

import pytest

import docpages
from conftest import ROOT

# the workflow page starts MXNet's launcher: one xdist worker for them all (conftest.xdist_group)
pytestmark = pytest.mark.launcher

MARK = re.compile(r"<!-- (test: run|test: skip, (?P<reason>[^>]+)|begin examples/\S+) -->$")
AFTER_README = "<!-- test: runs after README.md -->"
COMMAND_LANGS = ("bash", "sh", "shell", "console", "python")
SKIP_REASONS = ("ImageNet", "GPU", "hosts", "test suite", "long")
OUTPUTS = {".git", ".venv", "demo", "data", "runs", "deploy", ".pytest_cache"}
DONE = "--- block done ---"


def _command_blocks(text):
    """(lang, body, marker match, line before) of each shell or Python block of a page."""
    for lang, body, before in docpages.blocks(text):
        if lang in COMMAND_LANGS:
            yield lang, body, MARK.match(before), before


def _runnable(page):
    return any(mark and mark.group(0) == "<!-- test: run -->"
               for *_, mark, _ in _command_blocks(docpages.read(page)))


RUN_PAGES = [page for page in docpages.pages()[1:] if _runnable(page)]


@pytest.mark.parametrize("page", docpages.pages())
def test_every_command_block_is_marked(page):
    for lang, body, mark, before in _command_blocks(docpages.read(page)):
        assert mark, "%s: block without a test marker (line before: %r):\n%s" % (
            page, before, body)
        reason = mark.group("reason")
        if reason:
            assert any(r in reason for r in SKIP_REASONS), (page, reason)
        if reason and "long" in reason:  # a long command names the test running it small
            covered = re.search(r"tests/test_\w+\.py", reason)
            assert covered and os.path.isfile(os.path.join(ROOT, covered.group(0))), reason


def test_the_pages_hold_the_commands():
    blocks = [b for page in docpages.pages() for b in _command_blocks(docpages.read(page))]
    assert len(blocks) > 20
    assert len(RUN_PAGES) >= 4 and _runnable("README.md")


def _script(text, python):
    """One bash script running the page's `test: run` blocks in order, each followed by
    DONE; it stops at the first command that fails."""
    parts = ["set -euo pipefail"]
    for lang, body, mark, _ in _command_blocks(text):
        if not mark or mark.group(0) != "<!-- test: run -->":
            continue
        if lang == "python":
            parts.append("python - <<'README_PY'\n%sREADME_PY" % body)
        else:  # the make targets take the interpreter as given, building no .venv
            parts.append(re.sub(r"^make (\w+)$", r'make \1 PY="%s"' % python, body, flags=re.M))
        parts.append("echo '%s'" % DONE)
    return "\n".join(parts) + "\n"


class Checkout:
    """A checkout a new user would have: the repository's files, none of its outputs,
    and `python` meaning this interpreter."""

    def __init__(self, tmp):
        self.work = tmp / "checkout"
        self.work.mkdir()
        for name in os.listdir(ROOT):
            if name not in OUTPUTS:
                os.symlink(os.path.join(ROOT, name), str(self.work / name))
        shim = tmp / "bin"
        shim.mkdir()
        # a script, not a symlink: a venv's python finds its packages from its own path
        (shim / "python").write_text('#!/bin/sh\nexec "%s" "$@"\n' % sys.executable)
        (shim / "python").chmod(0o755)
        self.env = dict(os.environ, PATH="%s:%s" % (shim, os.environ["PATH"]),
                        PYTHONUNBUFFERED="1")

    def run(self, text):
        """Run a page's blocks here: (completed process, its output, blocks, blocks done)."""
        script = _script(text, sys.executable)
        res = subprocess.run(["bash", "-c", script], cwd=str(self.work), env=self.env,
                             capture_output=True, text=True, timeout=1500)
        out = res.stdout + res.stderr
        return res, out, script.count(DONE), out.count(DONE)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    return Checkout(tmp_path_factory.mktemp("pages"))


@pytest.fixture(scope="module")
def readme_run(checkout):
    return checkout.run(docpages.read("README.md"))


@pytest.mark.slow
def test_readme_commands_run_in_order(readme_run, checkout):
    res, out, blocks, done = readme_run
    assert res.returncode == 0, out[-4000:]
    assert done == blocks
    assert "demo val top-1" in out and (checkout.work / "deploy" / "digits.onnx").is_file()


@pytest.mark.slow
def test_make_demo_packs_trains_exports_reloads_and_predicts(readme_run, checkout):
    # the README's second block is `make demo`: its job end to end, from that run
    res, _, _, _ = readme_run
    assert res.returncode == 0
    out = res.stdout.split(DONE)[1]
    for step in range(1, 7):
        assert "[%d/6]" % step in out
    top1 = float(re.search(r"demo val top-1 ([0-9.]+)", out).group(1))
    assert top1 >= 0.9
    prefix = checkout.work / "demo" / "run" / "full-connect-pre-act"
    for suffix in ("-symbol.json", "-0000.params", ".synsets.txt", ".json"):
        assert os.path.isfile(str(prefix) + suffix)
    assert (checkout.work / "demo" / "run" / "curves.png").is_file()
    # the plain-MXNet reload (step 5) and predict.py (step 6) agree on the first image
    plain = out.split("[5/6]")[1].split("[6/6]")[0]
    predicted = out.split("[6/6]")[1]
    first_plain = re.search(r"^\d\.\d{4}  (\S+)", plain, re.M).group(1)
    first_predict = re.search(r"^  \d\.\d{4}  (\S+)", predicted, re.M).group(1)
    assert first_plain == first_predict == "digit_0"


@pytest.mark.slow
@pytest.mark.parametrize("page", RUN_PAGES)
def test_page_commands_run_in_order(page, checkout, request):
    text = docpages.read(page)
    if AFTER_README in text:
        res, out, _, _ = request.getfixturevalue("readme_run")
        assert res.returncode == 0, "README.md's blocks, which %s needs, failed:\n%s" % (
            page, out[-3000:])
    res, out, blocks, done = checkout.run(text)
    assert res.returncode == 0, "%s:\n%s" % (page, out[-4000:])
    assert done == blocks > 0


def test_a_failing_block_fails_its_page(tmp_path):
    page = ("<!-- test: run -->\n```bash\necho one\n```\n\n"
            "<!-- test: run -->\n```python\nraise SystemExit('the second block breaks')\n```\n\n"
            "<!-- test: run -->\n```bash\necho three\n```\n")
    res, out, blocks, done = Checkout(tmp_path).run(page)
    assert res.returncode != 0 and "the second block breaks" in out
    assert (blocks, done) == (3, 1) and "three" not in res.stdout


# --------------------------------------------------------------- links between the pages

@pytest.mark.parametrize("page", docpages.pages())
def test_relative_links_lead_to_files_and_headings(page):
    found = list(docpages.links(page))
    assert found, page
    for path, anchor in found:
        assert os.path.exists(os.path.join(ROOT, path)), "%s links to missing %s" % (page, path)
        if anchor:
            assert path.endswith(".md"), (page, path, anchor)
            assert anchor in docpages.anchors(docpages.read(path)), (
                "%s links to %s#%s: no such heading" % (page, path, anchor))


def test_every_page_is_reached_from_the_readme_and_leads_back():
    from_readme = {path for path, _ in docpages.links("README.md")}
    for page in docpages.pages()[1:]:
        assert page in from_readme, "README.md does not link to " + page
        assert "README.md" in {path for path, _ in docpages.links(page)}, page


def test_slugs_follow_github():
    assert docpages.slug("5. Evaluate (tools/eval_imagenet.py)") == \
        "5-evaluate-toolseval_imagenetpy"
    assert docpages.slug("Install (CPU and GPU)") == "install-cpu-and-gpu"
    assert docpages.anchors("# A\n```\n# not a heading\n```\n## A\n") == {"a", "a-1"}


def test_pages_named_by_the_code_exist():
    """Errors, help texts and comments that send a reader to a page (`see
    docs/workflow.md, 2. Train`, `docs/study.md#the-setup`) name a page and a heading
    that exist; so does one naming a README section."""
    sources = ["Makefile", "setup.py"]
    for folder in ("mobilenet_skip", "tools", "docker", "docs", "recipes"):
        for base, _, files in os.walk(os.path.join(ROOT, folder)):
            sources += [os.path.relpath(os.path.join(base, f), ROOT) for f in files
                        if not f.endswith((".png", ".pyc", ".md"))]
    refs = []
    for source in sources:
        with open(os.path.join(ROOT, source), encoding="utf-8") as f:
            text = f.read()
        refs += [(source, m.group(1), m.group(2) or m.group(3)) for m in re.finditer(
            r"(?<![/\w])(README\.md|README|docs/[\w-]+\.md)(?:#([\w-]+)|,? (?:section )?[\"']?"
            r"([A-Z0-9][^)\"';\n]*?)[\"']?[);\n])?", text)]
    assert ("mobilenet_skip/train/devices.py", "docs/workflow.md", "Several machines") in refs
    for source, page, section in refs:
        page = "README.md" if page == "README" else page
        assert os.path.isfile(os.path.join(ROOT, page)), (source, page)
        if not section:
            continue
        text = docpages.read(page)
        assert section in docpages.anchors(text) or any(
            h == section or h.startswith(section + " ") for h in docpages.headings(text)), (
            source, page, section)


# --------------------------------------------------------------- what the pages name

PATH = re.compile(r"(?<![\w/.])((?:mobilenet_skip|tools|tests|recipes|examples|docker|"
                  r"requirements|docs)/[\w/.-]*\.\w+)(?:::(\w+))?")
MODULE = re.compile(r"(?<![\w/.])mobilenet_skip((?:\.\w+)+)")


@pytest.mark.parametrize("page", docpages.pages())
def test_files_tests_and_modules_a_page_names_exist(page):
    text = docpages.read(page)
    for path, test in PATH.findall(text):
        assert os.path.exists(os.path.join(ROOT, path)), "%s names missing %s" % (page, path)
        if test:
            assert re.search(r"^def %s\(" % test, docpages.read(path), re.M), (page, test)
    with open(os.path.join(ROOT, "mobilenet_skip", "__init__.py")) as f:
        exported = f.read()
    for dotted in MODULE.findall(text):
        where, first = os.path.join(ROOT, "mobilenet_skip"), dotted.split(".")[1]
        assert (os.path.exists(os.path.join(where, first + ".py"))
                or os.path.isdir(os.path.join(where, first))
                or re.search(r"\b%s\b" % first, exported)), (
            "%s names mobilenet_skip%s: no such module or name" % (page, dotted))


def _table_modules(cell):
    """The module each comma-separated item of a layout table cell starts with."""
    items, depth, item = [], 0, ""
    for char in cell + ",":
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and not depth:
            items.append(item.strip())
            item = ""
        else:
            item += char
    return {re.match(r"`(\w+)`", i).group(1) for i in items if i}


def test_the_layout_page_lists_every_package_and_module():
    rows = re.findall(r"^\| `(mobilenet_skip(?:\.\w+)?)` \| (.*) \|$",
                      docpages.read("docs/layout.md"), re.M)
    listed = {package: _table_modules(cell) for package, cell in rows}
    actual = {}
    for folder, dirs, files in os.walk(os.path.join(ROOT, "mobilenet_skip")):
        dirs[:] = [d for d in dirs if not d.startswith("__")]
        package = os.path.relpath(folder, ROOT).replace(os.sep, ".")
        modules = {f[:-3] for f in files if f.endswith(".py")}
        actual[package] = modules if package == "mobilenet_skip" else modules - {"__init__"}
    assert listed == actual
