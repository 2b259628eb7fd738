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


def _setup_kwargs():
    """The arguments setup.py passes to setuptools.setup, without building anything."""
    import runpy
    import setuptools
    seen = {}
    real = setuptools.setup
    setuptools.setup = lambda **kwargs: seen.update(kwargs)
    try:
        runpy.run_path(os.path.join(ROOT, "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = real
    return seen


def _locked():
    """{distribution name: version} over every requirements/*.txt lock."""
    from packaging.utils import canonicalize_name
    pins = {}
    for name in os.listdir(os.path.join(ROOT, "requirements")):
        with open(os.path.join(ROOT, "requirements", name)) as f:
            for line in f:
                line = line.split("#")[0].split("--hash")[0].strip()
                if "==" in line:
                    dist, version = line.split("==")
                    pins[canonicalize_name(dist)] = version.strip()
    return pins


def _third_party_imports():
    """{top-level module: files} of every import in mobilenet_skip/, lazy ones included."""
    import ast
    import sys
    found = {}
    for folder, _, files in os.walk(os.path.join(ROOT, "mobilenet_skip")):
        for fname in (f for f in files if f.endswith(".py")):
            path = os.path.join(folder, fname)
            with open(path) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) and not node.level
                         else [])
                for top in {n.split(".")[0] for n in names} - set(sys.stdlib_module_names):
                    found.setdefault(top, set()).add(os.path.relpath(path, ROOT))
    return found


def test_pip_install_brings_gluoncv_and_agrees_with_the_lock():
    """`pip install .` must be able to train and benchmark, so gluoncv is required, and
    every version setup.py asks for is the one requirements/ locks."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    kwargs = _setup_kwargs()
    assert "gluoncv==0.10.5.post0" in kwargs["install_requires"]
    assert "gluoncv" not in kwargs["extras_require"]
    locked = _locked()
    for spec in kwargs["install_requires"] + sum(kwargs["extras_require"].values(), []):
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in locked, "%s is not in requirements/*.txt" % spec
        assert req.specifier.contains(locked[name], prereleases=True), (spec, locked[name])


def test_every_import_of_the_package_is_installed_by_setup_py():
    """Each third-party module mobilenet_skip imports comes with `pip install .[cpu]`
    (directly or as a dependency of a requirement), or with the extra of its feature."""
    import importlib.metadata as md
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    kwargs = _setup_kwargs()
    names = lambda specs: {canonicalize_name(Requirement(s).name) for s in specs}  # noqa: E731
    required = names(kwargs["install_requires"] + kwargs["extras_require"]["cpu"])
    for dist in list(required):  # what those pull in (gluoncv brings tqdm, requests, ...)
        required |= names(r for r in md.requires(dist) or [] if "extra ==" not in r)
    optional = {"onnx": "onnx", "onnxruntime": "onnx", "scikit-learn": "demo",
                "threadpoolctl": "demo", "tensorboardx": "tensorboard"}
    # dmlc_tracker is not on PyPI: `tools/launch.py --install-tracker` puts it in place
    providers = md.packages_distributions()
    for module, files in _third_party_imports().items():
        if module in ("mobilenet_skip", "dmlc_tracker"):
            continue
        dists = {canonicalize_name(d) for d in providers.get(module, [module])}
        if dists & required:
            continue
        extra = [optional[d] for d in dists if d in optional]
        assert extra, "%s (imported by %s) is not installed by setup.py" % (module, sorted(files))
        assert dists & names(kwargs["extras_require"][extra[0]]), (module, extra)


def test_one_progress_bar_implementation():
    """Bars come from mobilenet_skip.utils.progress.Progress; nothing needs tqdm."""
    users = _third_party_imports().get("tqdm", set())
    assert not users, sorted(users)
