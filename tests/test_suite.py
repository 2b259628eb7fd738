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
