"""Train and val iterators over packed ImageNet-style RecordIO, driven by recipe values.

Both are MXNet's C++ ``ImageRecordIter`` (decode and augmentation off the Python
thread) under one Python layer, :class:`RecordIter`, so that the last partial batch says
how much of it is padding; the training one, an :class:`EpochRecordIter`, also starts
each epoch in an order of its own.

Train augmentation is the paper's light one, MobileNet-style: a random resized crop
keeping 25% to 100% of the image area (``min_random_area`` 0.25, where Inception
uses 0.08: the MobileNet paper notes small models overfit less and need less
augmentation), aspect 3/4 to 4/3, random mirror, colour jitter off by default.
Val is the paper's single centre crop of
:class:`~mobilenet_skip.data.preprocess.Preprocessing` (shorter side to 256 for 224, then
the central ``input_size`` square). The settings come typed and checked, as a resolved
recipe (:class:`mobilenet_skip.config.recipe.Recipe`) holds them.

Batches hold ``batch_size * num_devices`` samples as ``(data, label)``: data float32
NCHW, RGB, ``(pixel - mean_rgb) / std_rgb``; label float32 class indices. The last
batch of an epoch is usually partial: its ``batch.pad`` trailing samples are filler
and the consumer must drop them (``batch.data[0][:batch_size - batch.pad]``).
"""
import hashlib
import logging
import os

import mxnet as mx

from ..utils.cores import physical_cores
from .wrapped import WrappedIter
from ..errors import UserError
from .preprocess import Preprocessing
from ..recordio import check_record, read_synsets, require_decodable, synsets_path

__all__ = ["check_record", "train_iter", "val_iter", "read_synsets",
           "synsets_path", "shard_size", "RecordIter", "EpochRecordIter", "epoch_seed",
           "resolve_threads"]

def resolve_threads(cfg, cores=None):
    """``preprocess_threads`` of ``cfg`` as a number; ``auto`` (the default) becomes one
    decode thread per physical core not driving a GPU: ``cores - len(gpus)``, at least 1.

    A GPU-bound step leaves the other cores idle, and JPEG decoding at 224 px takes a
    1080-class GPU's worth of images from several of them. MXNet further caps the
    threads at half the logical CPUs minus one (``iter_image_recordio_2.cc``).

    Parameters
    ----------
    cfg : Recipe or dict
        ``preprocess_threads`` (``"auto"`` or a count) and ``gpus`` (``"0,1"``; empty for
        CPU).
    cores : int, optional
        Physical cores (default: :func:`~mobilenet_skip.utils.cores.physical_cores`, else
        ``os.cpu_count()``).
    """
    value = cfg.preprocess_threads
    if value != "auto":
        return value
    cores = cores or physical_cores() or os.cpu_count() or 1
    gpus = len([g for g in cfg.gpus.split(",") if g.strip()])
    return max(1, cores - gpus)


def shard_size(num_records, num_parts=1, part_index=0):
    """Records that part ``part_index`` of ``num_parts`` reads.

    ImageRecordIter splits the index into ``ceil(n / num_parts)``-record runs, the
    last one shorter (dmlc-core's indexed RecordIO split).
    """
    if not (isinstance(num_parts, int) and num_parts >= 1 and 0 <= part_index < num_parts):
        raise UserError("part_index must be in [0, num_parts) and num_parts at least 1; got "
                        "part_index=%r, num_parts=%r" % (part_index, num_parts))
    step = -(-num_records // num_parts)
    if (num_parts - 1) * step >= num_records:
        most = max(p for p in range(1, min(num_parts, num_records) + 1)
                   if (p - 1) * -(-num_records // p) < num_records)
        raise UserError("num_parts=%d leaves some parts of these %d records empty; "
                        "use num_parts=%d" % (num_parts, num_records, most))
    return min(step, num_records - part_index * step)


class RecordIter(WrappedIter):
    """One shard of an ``ImageRecordIter``, with ``batch.pad`` set on the last partial batch.

    MXNet 1.9.1's ImageRecordIter reports pad 0 on a partial batch when
    ``round_batch`` is off, and with it on it wraps into the next epoch (and
    miscounts shards), so the count is kept here from the index.

    Parameters
    ----------
    rec_iter : mx.io.DataIter
        An ``ImageRecordIter`` created with ``round_batch=False``.
    num_records : int
        Records in its shard.
    batch_size : int
        Its batch size.
    """

    def __init__(self, rec_iter, num_records, batch_size):
        super(RecordIter, self).__init__(rec_iter, batch_size)
        self.num_records = num_records
        self._seen = 0

    def reset(self):
        self.inner.reset()
        self._seen = 0

    def next(self):
        if self._seen >= self.num_records:
            raise StopIteration
        batch = self.inner.next()
        real = min(self.batch_size, self.num_records - self._seen)
        self._seen += real
        batch.pad = self.batch_size - real
        return batch


def _record_source(cfg, rec_key, num_devices, num_parts, part_index):
    """Check ``cfg[rec_key]`` and its .idx once (every image too, unless the file is stamped
    as checked); returns ``(open, records, batch)``: ``open(**transform)`` starts this
    shard's ``ImageRecordIter`` (training starts one per epoch), which holds ``records``
    records in batches of ``batch``."""
    rec = cfg[rec_key]
    if not rec:
        raise UserError("data setting %s is not set; point it at a .rec packed with "
                        "tools/im2rec.py" % rec_key)
    if not (isinstance(num_devices, int) and num_devices >= 1):
        raise UserError("num_devices must be a positive integer, got %r" % (num_devices,))
    idx = os.path.splitext(rec)[0] + ".idx"
    records = check_record(rec, idx)
    require_decodable(rec, records)
    part = shard_size(records, num_parts, part_index)
    batch = cfg.batch_size * num_devices
    threads = resolve_threads(cfg)

    def open_(**transform):
        return mx.io.ImageRecordIter(
            path_imgrec=rec, path_imgidx=idx, batch_size=batch, label_width=1,
            preprocess_threads=threads, num_parts=num_parts,
            part_index=part_index, round_batch=False, verbose=False, **transform)
    return open_, part, batch


def epoch_seed(seed, epoch, part_index=0):
    """The shuffle/augmentation seed of one epoch of one shard: a hash of all three, so
    neighbouring seeds, epochs and ranks get unrelated orders."""
    digest = hashlib.sha256(("%d/%d/%d" % (seed, epoch, part_index)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class EpochRecordIter(RecordIter):
    """A :class:`RecordIter` whose batches come in an order that is a function of (seed,
    epoch, shard) alone.

    A fresh ImageRecordIter replays its first epoch's shuffle, and ``reset()`` moves
    on in an order that depends on how many epochs came before; so
    :meth:`set_epoch` starts the ImageRecordIter of that epoch from :func:`epoch_seed`,
    which is what lets a resumed run see the batches an uninterrupted one would.
    ``reset()`` alone keeps ImageRecordIter's own behaviour.

    Parameters
    ----------
    make : callable
        ``make(seed)`` -> the shard's ``ImageRecordIter``, shuffled and augmented by ``seed``.
    num_records, batch_size : int
        As :class:`RecordIter`'s.
    seed, part_index : int
        Base seed and shard.
    """

    def __init__(self, make, num_records, batch_size, seed, part_index=0):
        self._make, self.seed, self.part_index = make, int(seed), int(part_index)
        self.epoch, self._fresh = 0, True
        super(EpochRecordIter, self).__init__(make(epoch_seed(self.seed, 0, self.part_index)),
                                              num_records, batch_size)

    def set_epoch(self, epoch):
        """Start epoch ``epoch`` (from 0) at its first batch, in its own order."""
        if self._fresh and epoch == self.epoch:
            return
        self.inner = None  # free the old decoder threads before starting new ones
        self.inner = self._make(epoch_seed(self.seed, epoch, self.part_index))
        self._seen = 0
        self.epoch, self._fresh = int(epoch), True

    def reset(self):
        super(EpochRecordIter, self).reset()
        self._fresh = False

    def next(self):
        self._fresh = False
        return super(EpochRecordIter, self).next()


def train_iter(cfg, num_devices=1, num_parts=1, part_index=0, seed=0):
    """Training batches from ``cfg.rec_train`` with the recipe's augmentation.

    Parameters
    ----------
    cfg : Recipe
        The resolved recipe (or a mapping with all its data keys, typed and checked);
        its data keys are used, others ignored.
    num_devices : int
        Devices the batch is split over; the batch is ``batch_size * num_devices``.
    num_parts, part_index : int
        Distributed training: this worker reads only shard ``part_index``.
    seed : int
        Seeds shuffling and augmentation, with the epoch and ``part_index``
        (:func:`epoch_seed`).

    Returns
    -------
    EpochRecordIter
        Yields ``DataBatch`` es; drop the ``pad`` trailing samples of the last one.
        ``set_epoch(e)`` starts epoch ``e`` in its own order.
    """
    if cfg.preprocess_threads == "auto":
        logging.getLogger("mobilenet_skip").info(
            "preprocess_threads auto: %d decode threads (physical cores minus GPUs)",
            resolve_threads(cfg))
    jitter = cfg.color_jitter
    # Val's shape and normalisation; the crop is random from the whole image, no resize.
    transform = Preprocessing.of(cfg).record_iter_args()
    del transform["resize"], transform["rand_mirror"]

    source, records, batch = _record_source(cfg, "rec_train", num_devices, num_parts,
                                            part_index)

    def make(epoch_seed_):
        return source(
            **transform, random_resized_crop=True, min_random_area=cfg.min_random_area,
            max_random_area=cfg.max_random_area, min_aspect_ratio=cfg.min_aspect_ratio,
            max_aspect_ratio=cfg.max_aspect_ratio, rand_mirror=bool(cfg.rand_mirror),
            brightness=jitter, contrast=jitter, saturation=jitter,
            shuffle=bool(cfg.shuffle), seed=epoch_seed_, seed_aug=epoch_seed_)
    return EpochRecordIter(make, records, batch, seed, part_index)


def val_iter(cfg, num_devices=1, num_parts=1, part_index=0):
    """Validation batches from ``cfg.rec_val``: resize, then the single centre crop.

    The transform is :meth:`Preprocessing.record_iter_args
    <mobilenet_skip.data.preprocess.Preprocessing.record_iter_args>`; order is the file's,
    with no randomness. Parameters and return as :func:`train_iter`.
    """
    source, records, batch = _record_source(cfg, "rec_val", num_devices, num_parts, part_index)
    return RecordIter(source(shuffle=False, **Preprocessing.of(cfg).record_iter_args()),
                      records, batch)
