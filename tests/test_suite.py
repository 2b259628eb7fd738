"""The suite's own plumbing: which tests the quick loop (``-m "not slow"``) leaves out."""
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
    conftest.pytest_collection_modifyitems([plain, launch])
    assert plain.markers == ["xdist_group"] and launch.markers == ["launcher", "xdist_group"]


def test_the_launcher_tests_carry_the_marker(request):
    # whatever starts tools/launch.py in this session runs in the launcher group
    for item in request.session.items:
        if item.get_closest_marker("launcher") is not None:
            group = item.get_closest_marker("xdist_group")
            assert group is not None and group.args == ("launcher",), item.nodeid
