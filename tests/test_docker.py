"""What can be checked of the Docker images without a Docker engine.

The Dockerfiles are parsed, not built: they must install exactly the lock files the
Makefile installs, COPY only paths that exist and that .dockerignore lets through, and
match their base images to that lock. The entrypoint runs here as it runs in the image.
"""
import ast
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRYPOINT = os.path.join(ROOT, "docker", "entrypoint.sh")
DOCKERFILES = {"gpu": os.path.join(ROOT, "docker", "Dockerfile"),
               "cpu": os.path.join(ROOT, "docker", "Dockerfile.cpu")}
WORKDIR = "/workspace"


# ---------------------------------------------------------------- Dockerfile parsing

def instructions(path):
    """(INSTRUCTION, rest) pairs, continuation lines joined and comment lines dropped."""
    out, pending = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            line, pending = pending + line, ""
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    assert not pending, "%s ends inside a continued line" % path
    return out


def args_of(rest):
    """An instruction's arguments in either the JSON or the shell form."""
    return json.loads(rest) if rest.startswith("[") else shlex.split(rest)


def final_stage(path):
    ins = instructions(path)
    last_from = max(i for i, (word, _) in enumerate(ins) if word == "FROM")
    return ins[last_from:]


def copy_sources(path):
    """Sources of every COPY/ADD that reads the build context (not --from another image)."""
    sources = []
    for word, rest in instructions(path):
        if word not in ("COPY", "ADD"):
            continue
        args = args_of(rest)
        flags = [a for a in args if a.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue
        sources.extend([a for a in args if not a.startswith("--")][:-1])
    return sources


def pip_installs(path):
    """Each `pip install` in a RUN as (flags, requirement files, named packages)."""
    found = []
    for word, rest in instructions(path):
        if word != "RUN":
            continue
        for command in re.split(r"&&|\|\||;|\|", rest):
            tokens = shlex.split(command)
            if "pip" not in tokens or "install" not in tokens:
                continue
            tokens = tokens[tokens.index("install", tokens.index("pip")) + 1:]
            flags, reqs, names = [], [], []
            while tokens:
                tok = tokens.pop(0)
                if tok in ("-r", "--requirement", "-c", "--constraint"):
                    (reqs if tok in ("-r", "--requirement") else flags).append(tokens.pop(0))
                elif tok.startswith("-"):
                    flags.append(tok)
                else:
                    names.append(tok)
            found.append((flags, reqs, names))
    return found


def requirement_chain(relpath):
    """Lines of a requirement file and the files it includes with -r, and those files."""
    lines, files = [], [relpath]
    with open(os.path.join(ROOT, relpath)) as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if line.startswith("-r"):
                included = os.path.join(os.path.dirname(relpath), line[2:].strip())
                assert os.path.isfile(os.path.join(ROOT, included)), \
                    "%s includes missing %s" % (relpath, included)
                sub_lines, sub_files = requirement_chain(included)
                lines += sub_lines
                files += sub_files
            elif line:
                lines.append(line)
    return lines, files


def dockerignored(relpath, patterns):
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = os.path.normpath(pattern.lstrip("!")).lstrip("/")
        regex = ""
        for piece in re.split(r"(\*\*/|\*\*|\*|\?)", body):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                piece, re.escape(piece))
        if any(re.fullmatch(regex, c) for c in candidates):
            ignored = not negate
    return ignored


def dockerignore_patterns():
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.strip().startswith("#")]


# ---------------------------------------------------------------- the Dockerfiles

@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_copied_paths_exist_and_reach_the_build(flavour):
    sources = copy_sources(DOCKERFILES[flavour])
    assert "requirements/" in sources and "." in sources
    patterns = dockerignore_patterns()
    for src in sources:
        assert os.path.exists(os.path.join(ROOT, src)), "COPY %s: no such path" % src
        if src != ".":
            assert not dockerignored(os.path.normpath(src), patterns), \
                "COPY %s: excluded by .dockerignore" % src


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_installs_exactly_the_lock_the_makefile_installs(flavour):
    installs = pip_installs(DOCKERFILES[flavour])
    reqs = [r for _, rs, _ in installs for r in rs]
    assert reqs == ["requirements/%s.txt" % flavour]
    for flags, _, names in installs:
        # the files are a complete lock: pip must not resolve anything of its own
        assert "--no-deps" in flags
        assert names in ([], ["."]), "pip installs %s by name, outside the lock" % names
    assert any(names == ["."] for _, _, names in installs), "the package is never installed"
    with open(os.path.join(ROOT, "Makefile")) as f:
        makefile = f.read()
    assert re.search(r"pip install .*--no-deps -r requirements/\$\(FLAVOUR\)\.txt", makefile)


@pytest.mark.parametrize("flavour,mxnet", [("gpu", "mxnet-cu112==1.9.1"),
                                           ("cpu", "mxnet==1.9.1")])
def test_lock_is_pinned_and_flavours_differ_only_in_mxnet(flavour, mxnet):
    lines, files = requirement_chain("requirements/%s.txt" % flavour)
    assert "requirements/base.txt" in files
    unpinned = [ln for ln in lines if not re.fullmatch(r"[A-Za-z0-9_.\-]+==[^=\s]+", ln)]
    assert not unpinned, "not pinned: %s" % unpinned
    other, _ = requirement_chain("requirements/%s.txt" % ("cpu" if flavour == "gpu" else "gpu"))
    assert set(lines) - set(other) == {mxnet}


def test_gpu_base_matches_the_cuda_build_of_mxnet_and_the_lock_python():
    lines, _ = requirement_chain("requirements/gpu.txt")
    cu = [re.fullmatch(r"mxnet-cu(\d+)(\d)==.*", ln) for ln in lines]
    cuda = "%s.%s" % next(m.groups() for m in cu if m)
    base = args_of(final_stage(DOCKERFILES["gpu"])[0][1])[0]
    assert re.fullmatch(r"nvidia/cuda:%s\.\d+-cudnn8-runtime-ubuntu\d+\.\d+" % re.escape(cuda),
                        base), base
    with open(os.path.join(ROOT, "requirements", "base.txt")) as f:
        lock_python = re.search(r"resolved on Python (\d+\.\d+)", f.read()).group(1)
    runs = " ".join(rest for word, rest in instructions(DOCKERFILES["gpu"]) if word == "RUN")
    assert re.search(r"uv python install (--\S+ )*%s\.\d+\b" % re.escape(lock_python), runs)
    cpu_base = args_of(final_stage(DOCKERFILES["cpu"])[0][1])[0]
    assert re.fullmatch(r"python:%s-slim-\w+" % re.escape(lock_python), cpu_base), cpu_base


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_runs_as_a_user_in_workspace_with_data_and_output_volumes(flavour):
    stage = final_stage(DOCKERFILES[flavour])
    users = [rest for word, rest in stage if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert [rest for word, rest in stage if word == "WORKDIR"] == [WORKDIR]
    volumes = [v for word, rest in stage if word == "VOLUME" for v in args_of(rest)]
    assert {"/data", "/output"} <= set(volumes)
    entry = [args_of(rest) for word, rest in stage if word == "ENTRYPOINT"][-1]
    scripts = [a for a in entry if a.startswith(WORKDIR + "/")]
    assert scripts == [WORKDIR + "/docker/entrypoint.sh"]
    assert os.path.isfile(os.path.join(ROOT, os.path.relpath(scripts[0], WORKDIR)))


def test_dockerignore_keeps_venv_data_and_outputs_out_but_not_the_code():
    patterns = dockerignore_patterns()
    for path in [".venv/bin/python", ".git", "data/train.rec", "runs/r1/model-0001.params",
                 "demo/digits.rec", "output/x.onnx", "recipes/cache/train.rec",
                 "recipes/cache/val.idx", "tests/fixtures/net-0000.params",
                 "mobilenet_skip/__pycache__/models.cpython-311.pyc"]:
        assert dockerignored(path, patterns), path
    for path in ["setup.py", "README.md", "Makefile", "requirements/gpu.txt",
                 "mobilenet_skip/models/blocks.py", "tools/count_flops.py", "docker/entrypoint.sh"]:
        assert not dockerignored(path, patterns), path


def test_dockerignore_matcher_follows_docker_rules():
    # a bare pattern is anchored at the context root; **/ reaches any depth
    assert dockerignored("a.rec", ["*.rec"]) and not dockerignored("x/a.rec", ["*.rec"])
    assert dockerignored("x/y/a.rec", ["**/*.rec"])
    assert dockerignored("data/x/y", ["data"]) and not dockerignored("mydata", ["data"])
    assert not dockerignored("data/keep", ["data", "!data/keep"])


# ---------------------------------------------------------------- the entrypoint

def run_entrypoint(*args, env=None, script=ENTRYPOINT):
    full_env = dict(os.environ, PYTHON=sys.executable)
    full_env.pop("MOBILENET_SKIP_FLAVOUR", None)
    full_env.update(env or {})
    return subprocess.run(["bash", script] + list(args), capture_output=True, text=True,
                          env=full_env, timeout=120)


def tool_summaries(tools_dir):
    out = {}
    for name in sorted(os.listdir(tools_dir)):
        if name.endswith(".py") and not name.startswith("_"):
            with open(os.path.join(tools_dir, name)) as f:
                out[name[:-3]] = ast.get_docstring(ast.parse(f.read())).strip().splitlines()[0]
    return out


@pytest.mark.parametrize("args", [[], ["--help"], ["help"], ["-h"]])
def test_help_lists_every_tool_with_its_summary(args):
    res = run_entrypoint(*args)
    assert res.returncode == 0, res.stderr
    summaries = tool_summaries(os.path.join(ROOT, "tools"))
    assert "count_flops" in summaries
    listed = {}
    for line in res.stdout.split("\ntools:\n", 1)[1].splitlines():
        name, _, summary = line.strip().partition(" ")
        listed[name] = summary.strip()
    assert listed == summaries
    assert all(listed.values())


def test_help_reads_summaries_without_importing_mxnet(tmp_path):
    # what a GPU image started without --gpus sees: MXNet cannot load at all
    (tmp_path / "mxnet.py").write_text("raise OSError('libcuda.so.1: cannot open')\n")
    res = run_entrypoint(env={"PYTHONPATH": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    summary = tool_summaries(os.path.join(ROOT, "tools"))["count_flops"]
    assert re.search(r"^\s+count_flops\s+%s$" % re.escape(summary), res.stdout, re.M)


def test_new_tools_are_found_without_changing_the_entrypoint(tmp_path):
    (tmp_path / "docker").mkdir()
    (tmp_path / "tools").mkdir()
    script = tmp_path / "docker" / "entrypoint.sh"
    with open(ENTRYPOINT) as f:
        script.write_text(f.read())
    tools = tmp_path / "tools"
    (tools / "_helper.py").write_text('"""Not a tool."""\n')
    (tools / "zeta.py").write_text('"""Zeta does z.\n\nMore text."""\nimport sys\n'
                                   'print("zeta", sys.argv[1:])\n')
    (tools / "nodoc.py").write_text("x = 1\n")
    (tools / "broken.py").write_text('"""Broken\n')
    res = run_entrypoint(script=str(script))
    assert res.returncode == 0, res.stderr
    body = res.stdout.split("\ntools:\n", 1)[1]
    assert re.search(r"^\s+zeta\s+Zeta does z\.$", body, re.M)
    assert re.search(r"^\s+nodoc\s+\(no docstring\)$", body, re.M)
    assert re.search(r"^\s+broken\s+\(unreadable: SyntaxError\)$", body, re.M)
    assert "_helper" not in body
    res = run_entrypoint("zeta.py", "--flag", "two words", script=str(script))
    assert res.returncode == 0 and res.stdout.strip() == "zeta ['--flag', 'two words']"


@pytest.mark.parametrize("command", ["count_flops", "count_flops.py"])
@pytest.mark.slow
def test_tool_command_runs_the_tool(command):
    res = run_entrypoint(command, "--json", "--model", "mobilenet")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["model"] for r in rows] == ["mobilenet"]
    assert rows[0]["macs"] == 568740352  # Table 2's 569M, as tests/test_models.py pins it


@pytest.mark.slow
def test_tool_exit_status_passes_through():
    res = run_entrypoint("count_flops", "--model", "no-such-net")
    assert res.returncode == 2 and "invalid choice" in res.stderr


@pytest.mark.parametrize("command", ["frobnicate", "_bootstrap", "../setup", "tools/count_flops"])
def test_unknown_command_is_one_line_and_exit_2(command):
    res = run_entrypoint(command, "--x")
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown command '%s'" % command)
    assert "count_flops" in lines[0] and "demo" in lines[0]


def test_gpu_image_without_driver_names_the_fix():
    import ctypes
    try:
        ctypes.CDLL("libcuda.so.1")
        pytest.skip("this machine has an NVIDIA driver")
    except OSError:
        pass
    res = run_entrypoint("count_flops", env={"MOBILENET_SKIP_FLAVOUR": "gpu"})
    assert res.returncode == 2
    assert len(res.stderr.splitlines()) == 1 and "--gpus all" in res.stderr
    # help must still work there: it is what a bare `docker run` shows
    assert run_entrypoint(env={"MOBILENET_SKIP_FLAVOUR": "gpu"}).returncode == 0


def test_demo_runs_make_demo_with_the_image_interpreter(tmp_path):
    fake_make = tmp_path / "make"
    fake_make.write_text('#!/bin/sh\necho "make $*"\n')
    fake_make.chmod(0o755)
    res = run_entrypoint("demo", env={"PATH": "%s:%s" % (tmp_path, os.environ["PATH"]),
                                      "PYTHON": "/opt/venv/bin/python"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "make --no-print-directory -C %s demo PY=/opt/venv/bin/python" % ROOT


@pytest.mark.parametrize("target", ["demo", "test"])
def test_makefile_given_an_interpreter_builds_no_venv(target, tmp_path):
    # -n prints the recipes instead of running them; VENV points where nothing exists yet
    venv = str(tmp_path / "venv")
    given = subprocess.run(["make", "-n", target, "PY=/opt/venv/bin/python", "VENV=" + venv],
                           cwd=ROOT, capture_output=True, text=True)
    assert given.returncode == 0, given.stderr
    assert "-m venv" not in given.stdout and "pip install" not in given.stdout
    default = subprocess.run(["make", "-n", target, "VENV=" + venv],
                             cwd=ROOT, capture_output=True, text=True)
    assert "-m venv" in default.stdout and "pip install" in default.stdout
    if target == "test":
        assert "/opt/venv/bin/python -m pytest" in given.stdout
