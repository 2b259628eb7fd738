"""The training data of a run: this worker's shard of the training .rec and the val
.rec, checked before the first step, or the caller's iterators."""
import hashlib
import logging
import os
from collections import namedtuple

from ..data import records as data, checks as dataset
from ..errors import UserError

__all__ = ["Feed", "identify", "load", "record_iters", "absolute_paths", "fingerprint"]

DATA_KEYS = ("rec_train", "rec_val")

log = logging.getLogger("mobilenet_skip")

Feed = namedtuple("Feed", ["train", "val", "iters_per_epoch", "fingerprint"])
Feed.__doc__ = ("This worker's data: ``train`` yields ``iters_per_epoch`` batches an epoch, "
                "``val`` (rank 0's; None elsewhere) is scored after each, and "
                "``fingerprint`` (:func:`fingerprint`) identifies the .rec files, None for "
                "a caller's iterators.")


def identify(cfg):
    """The :func:`fingerprint` of ``cfg``'s .rec files once their headers check out: what
    the run folder's refusals compare, known before any image is decoded (a .rec that no
    decode check has stamped is decoded whole when its iterator is built)."""
    _require_data(cfg)
    for key in DATA_KEYS:
        data.check_record(cfg[key])
    return fingerprint(cfg)


def load(cfg, num_devices, strategy, train_data=None, val_data=None, iters_per_epoch=None,
         found=None):
    """The :class:`Feed` of ``cfg``'s .rec files (``found``, their :func:`identify`), or of
    the caller's ``train_data`` and ``val_data`` (``iters_per_epoch`` counted when not
    given); ``batches_per_epoch`` caps the count. ``strategy`` (:mod:`.dist`) says which
    shard this worker reads and what hears of each batch asked for."""
    if train_data is None:
        train_data, val_data, iters_per_epoch = record_iters(cfg, num_devices, strategy)
        found = found or fingerprint(cfg)
    else:
        if iters_per_epoch is None:
            train_data.reset()
            iters_per_epoch = sum(1 for b in train_data if not b.pad)
        train_data = dataset.checked(train_data, on_next=strategy.heartbeat)
    if cfg.batches_per_epoch:
        iters_per_epoch = min(iters_per_epoch, cfg.batches_per_epoch)
    return Feed(train_data, val_data, iters_per_epoch, found)


def record_iters(cfg, num_devices, strategy):
    """This worker's ImageRecordIters, their labels checked, and its batches per epoch."""
    _require_data(cfg)
    dataset.check_same_classes(cfg.rec_train, cfg.rec_val)
    num_records = data.check_record(cfg.rec_train)
    shard, shortest = strategy.shards(num_records)
    data.check_record(cfg.rec_val)
    rank, num_workers = strategy.rank, strategy.num_workers
    train_data = data.train_iter(cfg, num_devices, num_parts=num_workers, part_index=rank,
                                 seed=cfg.seed + rank)
    val_data = strategy.on_rank0(_val_iter, cfg, num_devices)
    # Partial last batches are dropped (they would change the static input shape);
    # the shuffle puts different images there every epoch. Every worker runs the
    # shortest shard's count: under dist_sync one step more on a single worker blocks
    # the whole job.
    batch = cfg.batch_size * num_devices
    if shortest < batch:
        raise UserError("%s has %d images%s, fewer than one batch of %d (--batch-size %d x %d "
                        "device(s)); every image would be left out. Lower --batch-size or "
                        "add images" % (cfg.rec_train, shortest,
                                        " for the last of %d workers" % num_workers
                                        if num_workers > 1 else "", batch, cfg.batch_size,
                                        num_devices))
    iters = shortest // batch
    dropped = dataset.describe_dropped(cfg.rec_train, shard, batch, iters,
                                       cfg.shuffle, cfg.batches_per_epoch)
    if dropped:
        log.info(dropped)
    train_data = dataset.CheckedBatches(train_data, cfg.classes, cfg.rec_train,
                                        on_next=strategy.heartbeat)
    return train_data, val_data, iters


def _val_iter(cfg, num_devices):
    return dataset.CheckedBatches(data.val_iter(cfg, num_devices), cfg.classes,
                                  cfg.rec_val)


def absolute_paths(cfg):
    """``cfg`` with its .rec paths absolute, so that the run's config.yaml names the same
    files whatever directory a resume starts in."""
    return cfg.replace(**{k: os.path.abspath(cfg[k]) for k in DATA_KEYS if cfg[k]})


def _require_data(cfg):
    if not cfg.rec_train or not cfg.rec_val:
        raise UserError("no data: pass --rec-train and --rec-val (pack images with "
                        "tools/im2rec.py)")


def fingerprint(cfg):
    """What identifies the run's data: per .rec its path, size, record count and the
    SHA-1 of its .idx (every record's offset: another packing differs). One read of the
    .idx files, which :func:`record_iters` has checked."""
    found = {}
    for key in DATA_KEYS:
        rec = cfg[key]
        digest, lines = hashlib.sha1(), 0
        with open(os.path.splitext(rec)[0] + ".idx", "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
                lines += block.count(b"\n")
        found[key] = {"path": rec, "records": lines, "rec_bytes": os.path.getsize(rec),
                      "idx_sha1": digest.hexdigest()}
    return found
