"""The training data of a run: this worker's shard of the training .rec and the val
.rec, checked before the first step."""
import hashlib
import logging
import os

from ..data import records as data, checks as dataset
from . import dist
from ..errors import UserError

__all__ = ["record_iters", "absolute_paths", "fingerprint"]

DATA_KEYS = ("rec_train", "rec_val")

log = logging.getLogger("mobilenet_skip")


def record_iters(cfg, num_devices, rank, num_workers):
    """This worker's ImageRecordIters and its batches per epoch."""
    if not cfg["rec_train"] or not cfg["rec_val"]:
        raise UserError("no data: pass --rec-train and --rec-val (pack images with "
                        "tools/im2rec.py)")
    dataset.check_same_classes(cfg["rec_train"], cfg["rec_val"])
    num_records = data.check_record(cfg["rec_train"])
    shortest = data.shard_size(num_records, num_workers, num_workers - 1)
    data.check_record(cfg["rec_val"])
    train_data = data.train_iter(cfg, num_devices, num_parts=num_workers, part_index=rank,
                                 seed=cfg["seed"] + rank)
    val_data = data.val_iter(cfg, num_devices) if rank == 0 else None
    # Partial last batches are dropped (they would change the static input shape);
    # the shuffle puts different images there every epoch. Every worker runs the
    # shortest shard's count (dist.common_iters): under dist_sync one step more on a
    # single worker blocks the whole job.
    batch = cfg["batch_size"] * num_devices
    if shortest < batch:
        raise UserError("%s has %d images%s, fewer than one batch of %d (--batch-size %d x %d "
                        "device(s)); every image would be left out. Lower --batch-size or "
                        "add images" % (cfg["rec_train"], shortest,
                                        " for the last of %d workers" % num_workers
                                        if num_workers > 1 else "", batch, cfg["batch_size"],
                                        num_devices))
    iters = dist.common_iters(num_records, num_workers, batch)
    shard = data.shard_size(num_records, num_workers, rank)
    dropped = dataset.describe_dropped(cfg["rec_train"], shard, batch, iters,
                                       cfg["shuffle"], cfg["batches_per_epoch"])
    if dropped:
        log.info(dropped)
    train_data = dataset.LabelCheck(train_data, cfg["classes"], cfg["rec_train"])
    if val_data is not None:
        val_data = dataset.LabelCheck(val_data, cfg["classes"], cfg["rec_val"])
    return train_data, val_data, iters


def absolute_paths(cfg):
    """``cfg`` with its .rec paths absolute, so that the run's config.yaml names the same
    files whatever directory a resume starts in."""
    return cfg.replace(**{k: os.path.abspath(cfg[k]) for k in DATA_KEYS if cfg[k]})


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
