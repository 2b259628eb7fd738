"""The suite's own plumbing: which tests the quick loop (``-m "not slow"``) leaves out, and
which run together on one pytest-xdist worker."""
import collections
import subprocess
import sys
import textwrap

import conftest


class _Item:
    """What the collection hook reads and writes of a pytest item."""

    def __init__(self, *fixturenames):
        self.fixturenames = list(fixturenames)
        self.markers = []

    def add_marker(self, marker):
        self.markers.append(marker.name)


def test_whatever_needs_the_trained_run_is_slow():
    # "digits" and the like reach demo_run through their own fixtures: pytest lists the
    # whole closure in fixturenames, which is what the hook reads
    needs_it, does_not = _Item("tmp_path", "digits", conftest.TRAINED), _Item("tmp_path")
    conftest.pytest_collection_modifyitems([needs_it, does_not])
    assert needs_it.markers == ["slow"] and does_not.markers == []


def test_the_slow_marker_is_registered(pytestconfig):
    assert any(line.startswith("slow:") for line in pytestconfig.getini("markers"))


class _Collected(_Item):
    """A collected test as the xdist grouping reads it: its node id and markers."""

    def __init__(self, nodeid, *markers):
        super().__init__()
        self.nodeid = nodeid
        self.markers = list(markers)

    def get_closest_marker(self, name):
        return name if name in self.markers else None


def test_a_file_stays_on_one_worker_and_launches_share_one():
    plain = _Collected("tests/test_export.py::test_a")
    sibling = _Collected("tests/test_export.py::test_b[x-1]")
    launch = _Collected("tests/test_training.py::test_dist", "launcher")
    other_launch = _Collected("tests/test_dist.py::test_x", "launcher")
    assert conftest.xdist_group(plain) == conftest.xdist_group(sibling) == "tests/test_export.py"
    assert conftest.xdist_group(launch) == conftest.xdist_group(other_launch) == "launcher"
    conftest.group_node_ids([plain, launch])
    assert plain._nodeid == "tests/test_export.py::test_a@tests/test_export.py"
    assert launch._nodeid == "tests/test_training.py::test_dist@launcher"


def test_the_launcher_tests_run_in_the_launcher_group(request):
    grouped = getattr(request.config.option, "loadgroup", False)  # under make test
    launchers = [item for item in request.session.items
                 if item.get_closest_marker("launcher") is not None]
    for item in launchers:
        assert conftest.xdist_group(item) == "launcher", item.nodeid
        assert item.nodeid.endswith("@launcher") or not grouped, item.nodeid
    assert launchers or len(request.session.items) < 100  # the whole suite has them


_SCHEDULED = textwrap.dedent("""
    import importlib.util, os
    import pytest

    spec = importlib.util.spec_from_file_location("project_conftest", {conftest!r})
    project = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(project)
    pytest_collection_modifyitems = project.pytest_collection_modifyitems
    pytest_collection_finish = project.pytest_collection_finish
    _one_launch_at_a_time = project._one_launch_at_a_time

    @pytest.fixture(autouse=True)
    def _record(request):
        with open(os.path.join({out!r}, request.node.nodeid.replace("/", "_")), "w") as f:
            f.write(os.environ["PYTEST_XDIST_WORKER"])
        yield
""")


def test_make_test_s_scheduling_keeps_files_and_launches_on_one_worker(tmp_path):
    # Real pytest-xdist, as `make test` runs it, on files whose tests would be spread over
    # both workers by plain load balancing. The hook alone passing (above) did not show
    # this: on pytest 9 xdist ignored the groups and launcher tests ran side by side.
    out = tmp_path / "out"
    out.mkdir()
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(_SCHEDULED.format(conftest=conftest.__file__, out=str(out)))
    body = "".join("def test_%d():\n    time.sleep(0.05)\n" % i for i in range(6))
    for name, mark in [("plain_a", ""), ("plain_b", ""), ("launch_a", "launcher"),
                       ("launch_b", "launcher")]:
        head = "import time\nimport pytest\n"
        if mark:
            head += "pytestmark = pytest.mark.%s\n" % mark
        (suite / ("test_%s.py" % name)).write_text(head + body)
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n",
                          "2", "--dist", "loadgroup", "-W", "ignore::pytest.PytestUnknownMarkWarning",
                          str(suite)], capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    workers = collections.defaultdict(set)
    for f in out.iterdir():
        name = f.name.split("::")[0].split("test_", 1)[1]
        workers["launch" if name.startswith("launch") else name].add(f.read_text())
    assert len(list(out.iterdir())) == 24
    assert all(len(w) == 1 for w in workers.values()), dict(workers)
    # the group marker is no keyword: -k selects by the tests' own names only
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--collect-only", "-k", "not dist and not group", str(suite)],
                         capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert "24 tests collected" in res.stdout, res.stdout[-2000:]
