"""The package's layers import one way, and no module imports itself round a cycle.

Read from the source (every ``import`` statement, function-level ones included), so a
later import upward fails here, in the quick loop, before anything runs.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "mobilenet_skip")

# Lowest first. A module may import its own layer and the ones below it, never above.
LAYERS = [
    ("errors", "utils"),        # no MXNet, no domain: files, bars, cores, plots
    ("models", "optim"),        # the networks (Table 1) and the update rules / lr schedules
    ("recordio", "data"),       # .rec files, iterators, preprocessing
    ("config",),                # recipes: what data, model and optimiser settings are legal
    ("runs",),                  # run folders, checkpoints, sidecars, the scorer: shared
    ("train", "launch"),        # the fit loop; processes for dist_sync
    ("deploy",),                # export forms and runtimes
    ("bench",),                 # benchmarks and the variant study
    ("cli",),                   # what tools/ share: errors to one line, the source flags
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
TOP_LEVEL_MODULES = {"__init__", "errors", "cli"}


def _modules():
    """{dotted module name: path} for every .py file of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return found


def _imports(module, path):
    """The package modules ``module`` imports (resolved, function-level ones too)."""
    is_package = path.endswith("__init__.py")
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    here = module.split(".") if is_package else module.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("mobilenet_skip"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("mobilenet_skip"):
                continue
            # `from pkg import sub` imports the submodule sub when there is one
            out.update(target + "." + a.name for a in node.names)
            out.add(target)
    return out


def _graph():
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        deps = set()
        for target in _imports(module, path):
            while target and target not in modules:  # a name, not a module: its module
                target = target.rpartition(".")[0]
            if target and target != module:
                deps.add(target)
        graph[module] = deps
    return graph


def _layer(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_and_top_level_module_has_a_layer():
    layers = {_layer(m) for m in _graph()} - {"__init__"}
    assert layers <= set(RANK), "no layer for %s: add it to LAYERS" % sorted(layers - set(RANK))
    top = {m.split(".")[1] for m, p in _modules().items()
           if m.count(".") == 1 and not p.endswith("__init__.py")} | {"__init__"}
    assert top <= TOP_LEVEL_MODULES, "flat modules beside the packages: %s" % sorted(
        top - TOP_LEVEL_MODULES)


def test_layers_import_one_way():
    upward = []
    for module, deps in _graph().items():
        if module == "mobilenet_skip":  # the lazy re-exports of __init__ name no module
            continue
        for dep in deps:
            if dep == "mobilenet_skip":
                upward.append("%s imports the package root (import the module instead)" % module)
            elif RANK[_layer(dep)] > RANK[_layer(module)]:
                upward.append("%s (%s) imports %s (%s)"
                              % (module, _layer(module), dep, _layer(dep)))
    assert not upward, "imports against the layers:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph.get(node, ()):
            # a package's __init__ importing its own modules is how packages work; the
            # module importing its package back is not
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, "import cycles: %s" % cycles


# Layers that never import each other although neither is above the other's reach: what
# both need lives in a layer below them (deploy reads runs, never train).
APART = [("deploy", "train")]


def test_deploy_imports_nothing_from_train():
    crossing = sorted("%s imports %s" % (module, dep)
                      for module, deps in _graph().items() for dep in deps
                      for a, b in APART if _layer(module) == a and _layer(dep) == b)
    assert not crossing, "imports between layers kept apart:\n" + "\n".join(crossing)


@pytest.mark.parametrize("source, target", [
    ("mobilenet_skip.models.network", "mobilenet_skip.train.loop"),
    ("mobilenet_skip.utils.fs", "mobilenet_skip.data.records"),
])
def test_the_check_sees_an_upward_import(source, target, monkeypatch):
    """The rule is not vacuous: an upward import, even inside a function, is caught."""
    real = _imports

    def with_extra(module, path):
        found = real(module, path)
        return found | {target} if module == source else found

    monkeypatch.setitem(globals(), "_imports", with_extra)
    with pytest.raises(AssertionError, match="imports against the layers"):
        test_layers_import_one_way()


def test_the_check_sees_deploy_importing_train(monkeypatch):
    """Deploy is above train, so the layer rule alone would let it import train: the
    separate check catches it, even from inside a function."""
    real = _imports

    def with_extra(module, path):
        found = real(module, path)
        return found | {"mobilenet_skip.train.loop"} if module.endswith("deploy.scoring") \
            else found

    monkeypatch.setitem(globals(), "_imports", with_extra)
    test_layers_import_one_way()  # allowed by the layers...
    with pytest.raises(AssertionError, match="mobilenet_skip.deploy.scoring imports "
                       "mobilenet_skip.train.loop"):
        test_deploy_imports_nothing_from_train()  # ...refused here


def test_importing_the_package_loads_no_mxnet():
    import subprocess
    import sys
    code = ("import sys, mobilenet_skip, mobilenet_skip.utils.cores, mobilenet_skip.runs; "
            "assert 'mxnet' not in sys.modules, 'mxnet loaded'; "
            "mobilenet_skip.list_models(); assert 'mxnet' in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
