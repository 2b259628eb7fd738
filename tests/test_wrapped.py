"""The iterator wrappers share one base: what each changes, and what each passes through."""
import copy

import mxnet as mx
import numpy as np
import pytest

from mobilenet_skip.data.checks import CheckedBatches, checked
from mobilenet_skip.data.records import EpochRecordIter, RecordIter
from mobilenet_skip.data.wrapped import WrappedIter
from mobilenet_skip.errors import UserError


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


def test_epoch_record_iter_builds_each_epoch_from_its_seed_and_pads_each():
    made = []

    def make(seed):
        made.append(seed)
        return _arrays(10, 4)

    # one layer over the iterator it makes: the shard of 6 records is padded there too
    it = EpochRecordIter(make, num_records=6, batch_size=4, seed=1)
    it.set_epoch(0)  # still fresh: no rebuild
    assert len(made) == 1 and it.provide_data == _arrays().provide_data
    assert [b.pad for b in it] == [0, 2]
    it.set_epoch(1)
    it.set_epoch(1)
    assert len(made) == 2 and made[0] != made[1] and it.num_records == 6
    assert [b.pad for b in it] == [0, 2]  # the new epoch counts from its first record


def test_checked_batches_refuse_a_label_out_of_range_and_pass_the_rest():
    good = CheckedBatches(_arrays(), classes=3, source="x.rec")
    assert _labels(good)[0] == [0, 1, 2, 0]
    bad = CheckedBatches(_arrays(labels=np.array([0, 1, 2, 0, 5, 1, 2, 0, 1, 2], "float32")),
                         classes=3, source="x.rec")
    with pytest.raises(UserError, match=r"x.rec holds label 5 \(batch 2"):
        list(bad)


def test_checked_batches_call_on_next_once_per_batch_asked_and_per_reset():
    beats = []
    it = CheckedBatches(_arrays(), 3, "x.rec", on_next=lambda: beats.append(1))
    assert len(list(it)) == 3 and len(beats) == 4  # 3 batches and the StopIteration
    it.reset()
    assert len(beats) == 5
    it.set_epoch(1)  # an epoch's start is its first batch's request
    assert len(beats) == 5 and len(list(it)) == 3 and len(beats) == 9


def test_checked_wraps_only_when_there_is_something_to_do():
    inner = _arrays()
    assert checked(inner) is inner
    beating = checked(inner, on_next=lambda: None)
    # no class count: labels the checked batches would refuse pass
    wild = checked(_arrays(labels=np.full(10, 7, "float32")), on_next=lambda: None)
    assert isinstance(beating, CheckedBatches) and beating.inner is inner
    assert len(list(wild)) == 3
