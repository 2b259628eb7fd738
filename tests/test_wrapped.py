"""The iterator wrappers share one base: what each changes, and what each passes through."""
import copy

import mxnet as mx
import numpy as np
import pytest

from mobilenet_skip.data.checks import LabelCheck
from mobilenet_skip.data.records import EpochRecordIter, RecordIter
from mobilenet_skip.data.wrapped import WrappedIter
from mobilenet_skip.errors import UserError
from mobilenet_skip.train.guard import BeatingIter


def _arrays(n=10, batch=4, labels=None):
    data = np.arange(n * 3 * 2 * 2, dtype="float32").reshape(n, 3, 2, 2)
    labels = np.arange(n, dtype="float32") % 3 if labels is None else labels
    return mx.io.NDArrayIter(data, labels, batch_size=batch, last_batch_handle="pad")


def _labels(it):
    return [b.label[0].asnumpy()[:len(b.label[0]) - (b.pad or 0)].tolist() for b in it]


def test_a_wrapper_passes_through_what_it_does_not_change():
    inner = _arrays()
    inner.num_records = 10  # an attribute of the wrapped iterator only
    outer = WrappedIter(WrappedIter(inner))
    assert outer.batch_size == 4 and outer.provide_data == inner.provide_data
    assert outer.provide_label == inner.provide_label and outer.num_records == 10
    first = _labels(outer)
    outer.reset()
    assert _labels(outer) == first == [[0, 1, 2, 0], [1, 2, 0, 1], [2, 0]]
    with pytest.raises(AttributeError):
        outer.no_such_attribute  # noqa: B018
    # copy looks attributes up on an object whose __init__ never ran: no recursion
    assert copy.copy(outer).inner is outer.inner


def test_record_iter_pads_the_last_partial_batch_of_its_shard():
    # the wrapped iterator would give 3 batches; the shard holds 6 records
    it = RecordIter(_arrays(10, 4), num_records=6, batch_size=4)
    batches = list(it)
    assert [b.pad for b in batches] == [0, 2]
    it.reset()
    assert len(list(it)) == 2


def test_epoch_record_iter_builds_each_epoch_from_its_seed():
    made = []

    def make(seed):
        made.append(seed)
        return RecordIter(_arrays(), 10, 4)

    it = EpochRecordIter(make, seed=1)
    it.set_epoch(0)  # still fresh: no rebuild
    assert len(made) == 1 and it.provide_data == _arrays().provide_data
    list(it)
    it.set_epoch(1)
    it.set_epoch(1)
    assert len(made) == 2 and made[0] != made[1] and it.num_records == 10


def test_label_check_refuses_a_label_out_of_range_and_passes_the_rest():
    good = LabelCheck(_arrays(), classes=3, source="x.rec")
    assert _labels(good)[0] == [0, 1, 2, 0]
    bad = LabelCheck(_arrays(labels=np.array([0, 1, 2, 0, 5, 1, 2, 0, 1, 2], "float32")),
                     classes=3, source="x.rec")
    with pytest.raises(UserError, match=r"x.rec holds label 5 \(batch 2"):
        list(bad)


def test_beating_iter_beats_once_per_batch_asked_and_per_reset():
    beats = []
    it = BeatingIter(LabelCheck(_arrays(), 3, "x.rec"), lambda: beats.append(1))
    assert len(list(it)) == 3 and len(beats) == 4  # 3 batches and the StopIteration
    it.reset()
    assert len(beats) == 5 and it.classes == 3  # the label check's attribute, through
