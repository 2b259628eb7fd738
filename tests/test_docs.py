"""What the README and the docs pages show is what the code does: each picture is what its
script draws now, each tool command of a block parses with that tool's own argparse (the
blocks no test machine can run too: ImageNet, GPUs, hosts), and each flag the prose names
beside a tool is in that tool's --help."""
import contextlib
import importlib.util
import io
import os
import re
import shlex

import numpy as np
import pytest

import docpages
import pictures
from conftest import ROOT, tool_module

COMMAND_LANGS = ("bash", "sh", "shell", "console")
OPERATORS = {"&&", "||", ";", "|", "&", ">", ">>", "<", "2>", "2>&1", "do", "then"}
SPAN = re.compile(r"`([^`]+)`")  # an inline code span of the prose


def _script(name):
    """``docs/<name>.py`` imported as a module (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "docs", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["draw_layout", "draw_blocks"])
def test_the_picture_a_page_shows_is_what_its_script_draws(name, tmp_path, monkeypatch):
    """A script changed without redrawing leaves a stale picture on the page: the fresh
    drawing must match the committed one pixel for pixel (0.5% slack for font rendering)."""
    script = _script(name)
    picture = os.path.relpath(script.OUT, ROOT)
    shown = {path for page in docpages.pages() for path, _ in docpages.links(page)}
    assert picture in shown, "neither README.md nor a docs page shows " + picture
    out = tmp_path / "picture.png"
    monkeypatch.setattr(script, "OUT", str(out))  # leave the committed picture alone
    script.main()
    fresh, committed = pictures.pixels(str(out)), pictures.pixels(os.path.join(ROOT, picture))
    assert fresh.shape == committed.shape, (
        "%s is %s px, %s.py draws %s: run `python docs/%s.py`" % (
            picture, committed.shape[:2], name, fresh.shape[:2], name))
    differ = (np.abs(fresh - committed).max(axis=-1) > 24).mean()
    assert differ < 0.005, "%.1f%% of %s differs from what docs/%s.py draws: run it" % (
        100 * differ, picture, name)


# ------------------------------------------------------------------ the tools' commands

def _loops(body):
    """{variable: values} of the ``for VAR in A B C; do`` loops of a shell block."""
    return {m.group(1): m.group(2).split()
            for m in re.finditer(r"\bfor (\w+) in ([^;\n]+);", body)}


def _words(line):
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def _tool_calls(body):
    """(tool name, argv) of every ``python tools/NAME.py ...`` of a shell block, a
    ``$VAR`` of a for-loop expanded to each of its values."""
    loops = _loops(body)
    for line in body.replace("\\\n", " ").splitlines():
        words = _words(line)
        for i, word in enumerate(words):
            tool = re.fullmatch(r"tools/(\w+)\.py", word)
            if not tool or i == 0 or not re.fullmatch(r"(.*/)?python3?", words[i - 1]):
                continue
            argv = []
            for arg in words[i + 1:]:
                if arg in OPERATORS:
                    break
                argv.append(arg)
            expansions = [argv]
            for var, values in loops.items():
                if any("$" + var in a for a in argv):
                    expansions = [[a.replace("$" + var, v) for a in argv] for v in values]
            for one in expansions:
                yield tool.group(1), one


def _page_calls():
    """(page, tool, argv) of the tool commands of every page's shell blocks, and of its
    prose's code spans that are a whole command (`python tools/im2rec.py --check P`)."""
    calls = []
    for page in docpages.pages():
        text = docpages.read(page)
        bodies = [body for lang, body, _ in docpages.blocks(text) if lang in COMMAND_LANGS]
        bodies += [" ".join(span.split()) for span in SPAN.findall(docpages.prose(text))
                   if span.startswith("python tools/")]
        for body in bodies:
            calls += [(page, tool, argv) for tool, argv in _tool_calls(body)]
    return calls


class _Launch:
    """Stands in for tools/launch.py's launcher and tracker: its main parses ``argv`` as
    it would, and the command it would launch is checked in turn, nothing started."""

    def run(self, argv):
        from mobilenet_skip.launch.command import split_argv
        _, command = split_argv(argv)
        inner = list(_tool_calls(" ".join(shlex.quote(w) for w in command)))
        assert inner, "tools/launch.py %s launches no tool" % " ".join(argv)
        for name, args in inner:
            _parses(name, args)

    def install_tracker(self, target=None):
        return target


def _parses(tool, argv):
    """Run ``tools/<tool>.py``'s own argument parsing on ``argv``; tools/launch.py's main
    runs with :class:`_Launch` for its launcher and tracker."""
    if tool == "launch":
        module = tool_module("launch")
        module.launcher = module.tracker = _Launch()
        with contextlib.redirect_stdout(io.StringIO()):
            module.main(argv)
        return
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            tool_module(tool).parse_args(argv)
        except SystemExit:
            last = err.getvalue().strip().split("\n")[-1]
            raise AssertionError("tools/%s.py %s: %s" % (tool, " ".join(argv), last))


def test_the_pages_show_tool_commands():
    calls = _page_calls()
    assert len(calls) > 30 and {"train_imagenet", "launch", "export_model"} <= {
        tool for _, tool, _ in calls}


def test_every_tool_command_a_page_shows_parses_with_the_tool_s_argparse():
    failed = []
    for page, tool, argv in _page_calls():
        try:
            _parses(tool, argv)
        except Exception as err:  # the tool's own check: one line for the report
            failed.append("%s: %s" % (page, err))
    assert not failed, "\n".join(failed)


def test_a_command_the_tool_refuses_is_caught():
    body = "for s in a b; do\n  python tools/count_flops.py --no-such-flag $s\ndone\n"
    assert list(_tool_calls(body)) == [("count_flops", ["--no-such-flag", "a"]),
                                       ("count_flops", ["--no-such-flag", "b"])]
    with pytest.raises(AssertionError, match="unrecognized arguments: --no-such-flag"):
        _parses("count_flops", ["--no-such-flag"])


# ------------------------------------------------------------- flags named in the prose

TOOL_IN_SPAN = re.compile(r"(?:^|[\s/])(\w+)\.py\b")


def _help(tool, cache={}):
    """The text ``tools/<tool>.py --help`` prints."""
    if tool not in cache:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            tool_module(tool).parse_args(["--help"])
        cache[tool] = out.getvalue()
    return cache[tool]


def _prose_flags():
    """(page, tool, flag) of each ``--flag`` that a page's prose writes after a tool's
    name in one code span (`export_model.py --onnx-int8`), but for a flag that the page's
    own Python registers first (docs/extending.md's example form)."""
    tools = {f[:-3] for f in os.listdir(os.path.join(ROOT, "tools"))
             if f.endswith(".py") and not f.startswith("_")} - {"launch"}
    for page in docpages.pages():
        text = docpages.read(page)
        registered = "".join(body for lang, body, _ in docpages.blocks(text) if lang == "python")
        for span in SPAN.findall(docpages.prose(text)):
            named = [t for t in TOOL_IN_SPAN.findall(span) if t in tools]
            if len(named) == 1:
                after = span.split(named[0] + ".py", 1)[1]
                for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", after):
                    if '"%s"' % flag[2:] not in registered:
                        yield page, named[0], flag


def test_every_flag_the_prose_names_with_its_tool_is_in_that_tool_s_help():
    found = list(_prose_flags())
    assert len(found) > 20
    missing = ["%s: %s.py %s" % (page, tool, flag) for page, tool, flag in found
               if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(flag), _help(tool))]
    assert not missing, "flags the tools' --help does not list:\n" + "\n".join(missing)
