"""The training job behind ``tools/train_imagenet.py``.

Gluon ``Trainer`` over one context per device, MXNet's kvstore for reduction
(``device``/``nccl`` on one machine, ``dist_sync`` across machines), the paper's
recipe (label smoothing, global-norm clipping, exponential lr), atomic epoch
checkpoints with exact resume, and an export of the last (or best) epoch at the end.

Nothing here syncs with the device inside the step: losses and accuracy are
accumulated as NDArrays and read every ``log_interval`` batches.
"""
import hashlib
import json
import logging
import os
import signal
import sys
import time
import weakref

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

from . import config as config_mod, dataset, dist, optim
from .bnstats import sync_running_stats
from .checkpoint import CheckpointDir, atomic_save_csv
from .compat import load_gluoncv_params
from .errors import UserError
from .fs import OutputLock, remove_stale_tmp
from .deploy.artifact import describe as describe_export, export_network
from .deploy.source import network_from_checkpoint
from .evaluation import evaluate
from .models import DWUnit, get_model, norm_kwargs_from

__all__ = ["parse_contexts", "LabelSmoothingLoss", "build_net", "init_net", "make_lr_scheduler",
           "make_trainer", "TrainStep", "make_step", "hybridize", "evaluate", "fit",
           "NonFiniteLoss", "METRIC_COLUMNS"]

# best_epoch: the epoch with the highest val_top1 up to this row (so the last row names
# the run's best beside its last epoch).
METRIC_COLUMNS = ("epoch", "train_loss", "train_top1", "val_top1", "val_top5", "lr",
                  "epoch_time_s", "samples_per_s", "best_epoch")

log = logging.getLogger("mobilenet_skip")


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and batch."""


def parse_contexts(gpus="", cpu_contexts=1):
    """Devices from ``--gpus`` (``"0,1"``) or, when empty, ``cpu_contexts`` CPU contexts.

    Raises
    ------
    UserError
        For malformed ids, a GPU on an MXNet without CUDA, or ids past the GPU count.
    """
    text = str(gpus).strip()
    try:
        ids = [int(g) for g in text.split(",") if g.strip() != ""]
    except ValueError:
        raise UserError("--gpus takes comma-separated GPU ids such as 0,1 (or '' for CPU), "
                        "got %r" % text)
    if not ids:
        if int(cpu_contexts) < 1:
            raise UserError("--cpu-contexts must be at least 1")
        return [mx.cpu(i) for i in range(int(cpu_contexts))]
    if len(set(ids)) != len(ids) or min(ids) < 0:
        raise UserError("--gpus %s repeats an id or has a negative one" % text)
    if not mx.runtime.Features().is_enabled("CUDA"):
        raise UserError("--gpus %s asks for a GPU, but this MXNet is a CPU build; install "
                        "mxnet-cu112==1.9.1 (make FLAVOUR=gpu) or pass --gpus '' to run on "
                        "the CPU" % text)
    count = mx.context.num_gpus()
    if max(ids) >= count:
        raise UserError("--gpus %s asks for GPU %d, but only %d GPU(s) are visible (ids 0-%d)"
                        % (text, max(ids), count, count - 1))
    return [mx.gpu(i) for i in ids]


class LabelSmoothingLoss(gluon.HybridBlock):
    """Softmax cross-entropy against ``(1 - eps) * onehot + eps / K`` (Inception-v3).

    Takes sparse labels, so no one-hot tensor is built; computed in float32 even for
    float16 logits.
    """

    def __init__(self, epsilon=0.1, **kwargs):
        super(LabelSmoothingLoss, self).__init__(**kwargs)
        self.epsilon = float(epsilon)

    def hybrid_forward(self, F, pred, label):
        logp = F.log_softmax(F.cast(pred, "float32"), axis=-1)
        nll = -F.pick(logp, label, axis=-1)
        if self.epsilon == 0:
            return nll
        return (1 - self.epsilon) * nll - self.epsilon * F.mean(logp, axis=-1)


def _init(cfg):
    if cfg["init"] == "msra":  # He et al.: N(0, 2/fan_in), right for ReLU nets
        return mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
    return mx.init.Xavier()


def build_net(cfg, ctxs):
    """The recipe's network (BatchNorm momentum/epsilon from ``bn_momentum``/``bn_eps``),
    initialised (or warm-started) on ``ctxs``, cast, wd-masked."""
    net = get_model(cfg["model"], cfg["multiplier"], cfg["classes"],
                    norm_kwargs=norm_kwargs_from(cfg))
    if cfg["warm_start"]:
        left = load_gluoncv_params(net, cfg["warm_start"], ctx=ctxs,
                                   load_output=cfg["classes"] == 1000)
        log.info("warm start from %s; %d parameters freshly initialised", cfg["warm_start"],
                 len(left))
    return init_net(net, cfg, ctxs)


def init_net(net, cfg, ctxs):
    """Initialise ``net``'s remaining parameters as the recipe says, on ``ctxs``; mask weight
    decay on BatchNorm and depthwise filters (``no_wd_dw_bn``) and on biases (``wd_bias``
    false; the classifier's is the only one); cast to the recipe's dtype.

    Any Gluon network goes through here the same way, so the benchmark trains gluoncv's
    ``mobilenet1.0`` exactly as it trains ours.
    """
    net.initialize(_init(cfg), ctx=ctxs)
    if cfg["no_wd_dw_bn"]:
        def no_decay(block):
            if isinstance(block, nn.BatchNorm):
                for p in block.params.values():
                    p.wd_mult = 0.0
            elif isinstance(block, DWUnit):
                block.dw.weight.wd_mult = 0.0  # MobileNet v1: none on depthwise filters
            elif isinstance(block, nn.Conv2D) and block._kwargs.get("num_group", 1) > 1:
                block.weight.wd_mult = 0.0  # another network's depthwise conv (gluoncv's)
        net.apply(no_decay)
    if not cfg["wd_bias"]:
        # Gluon names every bias "...bias"; BN's shift is "beta" (no_wd_dw_bn's business).
        for name, p in net.collect_params().items():
            if name.endswith("bias"):
                p.wd_mult = 0.0
    if cfg["dtype"] == "float16":
        net.cast("float16")
    return net


def make_lr_scheduler(cfg, global_batch=None):
    """The recipe's lr as a function of progress in epochs (``epoch + batch / batches``),
    scaled to ``global_batch`` (:func:`mobilenet_skip.optim.schedule`).

    The loop sets it before every update, so it depends on no update count and no
    batches-per-epoch: a resume with other devices, workers or batch size gets the
    recipe's lr(e).
    """
    return optim.schedule(cfg, global_batch)


def make_trainer(net, cfg, kvstore, global_batch):
    """A Gluon Trainer with the recipe's optimizer (lr scaled to ``global_batch``, no
    MXNet lr_scheduler); updates happen on the workers so that gradients can be
    clipped after the all-reduce."""
    return gluon.Trainer(net.collect_params(), optim.create_optimizer(cfg, global_batch),
                         kvstore=kvstore, update_on_kvstore=False)


class TrainStep(object):
    """One optimisation step: forward, label-smoothed loss, backward, all-reduce,
    global-norm clipping, update. The benchmark times exactly this object.

    Parameters
    ----------
    net, trainer
        The hybridized network and its Trainer.
    ctxs : list of Context
        One per device; a batch is split across them.
    label_smoothing, clip_gradient : float
        Recipe values (0 turns either off).
    global_batch : int
        Images per step over all devices and workers (gradients are averaged over it).
    dtype : str
        Input dtype.
    """

    def __init__(self, net, trainer, ctxs, label_smoothing, clip_gradient, global_batch,
                 dtype="float32"):
        self.net, self.trainer, self.ctxs = net, trainer, ctxs
        self.loss = LabelSmoothingLoss(label_smoothing)
        self.loss.hybridize(static_alloc=True, static_shape=True)
        self.clip, self.global_batch, self.dtype = float(clip_gradient), int(global_batch), dtype
        self._grads = None

    def split(self, data, label):
        """Split a host batch across the devices (no copy for a single CPU context)."""
        data = gluon.utils.split_and_load(data, self.ctxs, even_split=False)
        label = gluon.utils.split_and_load(label, self.ctxs, even_split=False)
        if self.dtype != "float32":
            data = [d.astype(self.dtype, copy=False) for d in data]
        return data, label

    def _clip(self):
        if self._grads is None:
            params = [p for p in self.net.collect_params().values() if p.grad_req != "null"]
            self._grads = [[p.grad(ctx) for p in params] for ctx in self.ctxs]
        # The gradients hold sums over the global batch, so the mean gradient's norm
        # bound becomes clip * batch here. Every device has the same reduced gradients.
        bound = self.clip * self.global_batch
        for grads in self._grads:
            sq = mx.nd.multi_sum_sq(*grads, num_arrays=len(grads))
            norm = mx.nd.sqrt(mx.nd.sum(sq.astype("float32")))
            scale = mx.nd.minimum(bound / (norm + 1e-6), mx.nd.ones_like(norm))
            for g in grads:
                g *= scale.astype(g.dtype, copy=False)

    def __call__(self, data, label):
        """Run the step on device-split lists; returns (losses, outputs) per device."""
        with autograd.record():
            outputs = [self.net(x) for x in data]
            losses = [self.loss(out, y) for out, y in zip(outputs, label)]
        autograd.backward(losses)
        self.trainer.allreduce_grads()
        if self.clip > 0:
            self._clip()
        self.trainer.update(self.global_batch)
        return losses, outputs


def init_kvstore(trainer):
    """Set up the Trainer's kvstore and pull the initial weights now, and wait for them.

    Gluon does this lazily inside the first all-reduce, where the engine may send a
    worker's first gradient push for a key before its pull of that key's initial
    weight: under ``dist_sync`` the pull then returns the summed gradients as the
    weight (seen here on the stem conv in about one run in five). Doing it before the
    first step and waiting closes that race.
    """
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    mx.nd.waitall()


def make_step(net, cfg, ctxs, kvstore, iters_per_epoch, global_batch):
    """The recipe's Trainer and :class:`TrainStep` for an initialised ``net``: what
    ``fit`` trains with and what ``tools/benchmark.py train`` times.

    ``iters_per_epoch`` is no longer used (the lr is a function of epochs, set by the
    loop); it stays for the benchmark's calls."""
    trainer = make_trainer(net, cfg, kvstore, global_batch)
    return TrainStep(net, trainer, ctxs, cfg["label_smoothing"], cfg["clip_gradient"],
                     global_batch, cfg["dtype"])


def hybridize(net, cfg):
    """Hybridize as the recipe says: one static graph, memory planned once."""
    if cfg["hybridize"]:
        net.hybridize(static_alloc=True, static_shape=True)


class _Accumulator(object):
    """Per-device sums of loss and correct top-1, for the log window and the epoch.

    Nothing is read from the device until :meth:`read_window`/:meth:`read_epoch`,
    which sync once and report the first batch whose loss was not finite.
    """

    def __init__(self, ctxs):
        self.ctxs = ctxs
        self.reset_epoch()

    def _zeros(self):
        return [mx.nd.zeros((1,), ctx=c) for c in self.ctxs]

    def reset_epoch(self):
        self.epoch_loss, self.epoch_correct, self.epoch_count = self._zeros(), self._zeros(), 0
        self.reset_window()

    def reset_window(self):
        self.loss, self.correct, self.count = self._zeros(), self._zeros(), 0
        self.pending = []  # (batch index, per-device loss sums) since the last read

    def add(self, batch_index, losses, outputs, labels):
        sums = []
        for i, (loss, out, y) in enumerate(zip(losses, outputs, labels)):
            s = loss.sum()
            c = (out.argmax(axis=1) == y.astype(out.dtype)).sum().astype("float32")
            self.loss[i] += s
            self.correct[i] += c
            self.epoch_loss[i] += s
            self.epoch_correct[i] += c
            sums.append(s)
        self.pending.append((batch_index, sums))
        n = sum(y.shape[0] for y in labels)
        self.count += n
        self.epoch_count += n

    def _first_bad(self):
        for index, sums in self.pending:
            if not all(np.isfinite(s.asscalar()) for s in sums):
                return index
        return None

    @staticmethod
    def _mean(values, count):
        return sum(v.asscalar() for v in values) / max(count, 1)

    def read_window(self):
        """(mean loss, top-1, first non-finite batch or None) since the last window read."""
        out = (self._mean(self.loss, self.count), self._mean(self.correct, self.count),
               self._first_bad())
        self.reset_window()
        return out

    def read_epoch(self):
        """(mean loss, top-1, first non-finite batch or None) over the epoch so far."""
        bad = self._first_bad()
        self.pending = []
        return (self._mean(self.epoch_loss, self.epoch_count),
                self._mean(self.epoch_correct, self.epoch_count), bad)


class _StopRequest(object):
    """SIGINT (Ctrl-C) or SIGTERM sets a flag the loop checks between batches; a second
    signal aborts.

    SLURM and Kubernetes send SIGTERM some time before they kill a job, so it is treated
    exactly like Ctrl-C: the batch finishes, ``<model>-interrupted.*`` is saved and the
    tool exits 0, to be continued with ``--resume``.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.signal_name = None
        self._previous = {}

    def __enter__(self):
        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            self.signal_name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(
                signum).name
            log.warning("%s: finishing this batch, then saving a checkpoint "
                        "(send it again to abort without saving)", self.signal_name)
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, handler)
            except ValueError:  # not the main thread: leave signals alone
                break
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
        return False


_DIST_KV = {}


def _kvstore(cfg, num_devices):
    """(kvstore for the Trainer, rank, number of workers).

    A ``dist`` kvstore is created once per process and kept, so that the tool can learn
    its rank (for log prefixes) before :func:`fit` trains with the same store.
    """
    kind = cfg["kv_store"]
    if kind.startswith("dist"):
        if "DMLC_ROLE" not in os.environ:
            raise UserError("--kv-store %s needs MXNet's launcher: run through tools/launch.py "
                            "(see README, 2. Train)" % kind)
        if kind not in _DIST_KV:
            _DIST_KV[kind] = mx.kv.create(kind)
        kv = _DIST_KV[kind]
        return kv, kv.rank, kv.num_workers
    if os.environ.get("DMLC_ROLE") == "worker":
        raise UserError("started by MXNet's launcher (tools/launch.py) but --kv-store is %s: "
                        "pass --kv-store dist_sync, or run train_imagenet.py without the "
                        "launcher" % kind)
    if kind == "nccl" and not mx.runtime.Features().is_enabled("NCCL"):
        raise UserError("--kv-store nccl needs an MXNet built with NCCL (mxnet-cu112 has it); "
                        "use --kv-store device")
    return (kind if num_devices > 1 else None), 0, 1


def _read_metrics(path):
    """metrics.csv's rows, with ``best_epoch`` (re)computed, so that a file written
    before that column existed is rewritten whole on resume."""
    from .plots import read_metrics
    rows = read_metrics(path) if os.path.isfile(path) else []
    best = None
    for row in rows:
        if best is None or row["val_top1"] > best["val_top1"]:
            best = row
        row["best_epoch"] = best["epoch"]
    return rows


def _progress(total, desc):
    """A tqdm bar when stderr is a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def params_checksum(net):
    """MD5 of the trained parameters' bytes: equal across in-sync workers.

    BN running statistics are left out: each worker averages them over its own shard,
    as in any MXNet data-parallel run, and rank 0's are the ones saved.
    """
    digest = hashlib.md5()
    for name, p in sorted(net._collect_params_with_prefix().items()):
        if p.grad_req != "null":
            digest.update(name.encode())
            digest.update(p.data().asnumpy().tobytes())
    return digest.hexdigest()


def _check_resume_config(saved, cfg, save_dir):
    clashes = [k for k in config_mod.ARCH_KEYS if saved.get(k) != cfg[k]]
    if clashes:
        raise UserError("--resume: %s in %s was trained with %s, not %s; pass the same "
                        "--model/--multiplier/--classes or another --save-dir"
                        % (", ".join(clashes), save_dir,
                           ", ".join("%s=%s" % (k, saved.get(k)) for k in clashes),
                           ", ".join("%s=%s" % (k, cfg[k]) for k in clashes)))
    # The state's layout depends on these: it cannot carry over to another one.
    fixed = [k for k in RESUME_FIXED_KEYS if k in saved and saved[k] != cfg[k]]
    if fixed:
        raise UserError("--resume: %s in %s was trained with %s, not %s; its optimizer state "
                        "does not carry over: resume with %s, or pass --overwrite (or another "
                        "--save-dir) to start again"
                        % (", ".join(fixed), save_dir,
                           ", ".join("%s=%s" % (k, saved[k]) for k in fixed),
                           ", ".join("%s=%s" % (k, cfg[k]) for k in fixed),
                           " ".join("--%s %s" % (k.replace("_", "-"), saved[k]) for k in fixed)))
    changed = [k for k in config_mod.SCHEMA if k not in config_mod.ARCH_KEYS
               and k in saved and saved[k] != cfg[k]]
    if changed:
        log.warning("--resume: using the new settings: %s", ", ".join(
            "%s %s -> %s" % (k, _show(saved[k]), _show(cfg[k])) for k in changed))
    return changed


RESUME_FIXED_KEYS = ("optimizer", "dtype")


def _show(value):
    return ",".join(str(v) for v in value) if isinstance(value, list) else "%s" % (value,)


def _record_iters(cfg, num_devices, rank, num_workers):
    """This worker's ImageRecordIters, its batches per epoch, and the synsets file or None."""
    from . import data
    if not cfg["rec_train"] or not cfg["rec_val"]:
        raise UserError("no data: pass --rec-train and --rec-val (pack images with "
                        "tools/im2rec.py)")
    dataset.resolve_classes(cfg)
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
    synsets = data.synsets_path(cfg["rec_train"])
    return train_data, val_data, iters, synsets if os.path.isfile(synsets) else None


class _RunLocks(object):
    """The run-folder locks this process holds (``SAVE_DIR/.lock``, see ``fs.OutputLock``).

    Another job into the same folder is refused for as long as a ``_RunDir`` of this
    process uses it. One process may train into a folder again (``fit`` then ``fit
    resume=True``): it shares the lock it holds, released when its last user is gone.
    """

    def __init__(self):
        self.held = {}  # real path -> [OutputLock, users]

    def hold(self, owner, save_dir):
        key = os.path.realpath(save_dir)
        if key not in self.held:
            lock = OutputLock(os.path.join(save_dir, ".lock"), "run folder %s" % save_dir)
            self.held[key] = [lock.acquire(), 0]
        self.held[key][1] += 1
        weakref.finalize(owner, self._drop, key)

    def _drop(self, key):
        entry = self.held.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                entry[0].release()
                del self.held[key]


_RUN_LOCKS = _RunLocks()


class _RunDir(object):
    """The run folder: checkpoints, metrics.csv, curves.png, config.yaml and train.log.

    Rank 0 alone writes it; the other workers train without validating.
    """

    def __init__(self, cfg, rank):
        self.cfg, self.rank, self.path = cfg, rank, cfg["save_dir"]
        if rank == 0:  # before anything is written: a second job into the folder stops here
            _RUN_LOCKS.hold(self, self.path)
            for path in remove_stale_tmp(self.path):
                log.info("removed %s, left by a killed run", path)
        self.ckpt = CheckpointDir(self.path, cfg["model"])
        self.metrics = os.path.join(self.path, "metrics.csv")
        self.config = os.path.join(self.path, "config.yaml")
        self.rows = []
        self.carried, self.global_batch = None, None  # set by start()
        if rank == 0:
            _attach_file_log(os.path.join(self.path, "train.log"))

    @property
    def best(self):
        """The row with the highest val_top1 (the earliest on a tie), or None."""
        return max(self.rows, key=lambda r: r["val_top1"]) if self.rows else None

    @property
    def selected(self):
        """The row of the epoch to export: the last one or the best (``export_epoch``).

        "best" picks the epoch on the same val set that reports it, which flatters the
        figure; a paper reproduction reports and ships the last.
        """
        if not self.rows:
            return None
        return self.best if self.cfg["export_epoch"] == "best" else self.rows[-1]

    def start(self, net, trainer, ctxs, resume, overwrite, global_batch=None):
        """Refuse, clear or resume from earlier checkpoints.

        A resume restores the weights, the optimizer's state arrays and update counts;
        the optimizer itself (lr, wd, momentum, ...) is the new configuration's.
        ``self.carried`` becomes the interrupted epoch's running sums, or None.

        Returns
        -------
        tuple of int
            Epochs already done, and batches already done of the next one.
        """
        self.carried, self.global_batch = None, global_batch
        ckpt, begin = self.ckpt, (0, 0)
        earlier = ckpt.epochs() + [m for m in [ckpt.interrupted()] if m]
        if earlier and not resume and self.rank == 0:
            if not overwrite:
                raise UserError("%s already holds checkpoints (up to epoch %d); pass --resume "
                                "to continue them, --overwrite to start again, or another "
                                "--save-dir" % (self.path, max(m["epoch"] for m in earlier)))
            for meta in earlier:
                ckpt.remove(meta["tag"])
        if resume:
            if os.path.isfile(self.config):
                _check_resume_config(config_mod.load_dumped(self.config), self.cfg, self.path)
            start = ckpt.newest()
            if start is None:
                log.warning("--resume: no complete checkpoint in %s; starting from scratch",
                            self.path)
            else:
                net.load_parameters(ckpt.path(start["tag"], "params"), ctx=ctxs,
                                    cast_dtype=True)
                fresh = optim.load_states(trainer, ckpt.path(start["tag"], "states"),
                                          start.get("optimizer_state"))
                if fresh:
                    log.warning("--resume: the optimizer state of %d parameter(s) does not fit "
                                "the new settings (such as momentum 0 -> 0.9) and starts "
                                "afresh", len(fresh))
                saved_batch = start.get("global_batch")
                if global_batch and saved_batch and saved_batch != global_batch:
                    log.warning("--resume: global batch %d -> %d", saved_batch, global_batch)
                begin = (start["epoch"], start.get("batches_done", 0))
                self.carried = start.get("epoch_sums") if begin[1] else None
                self.rows = [r for r in _read_metrics(self.metrics) if r["epoch"] <= begin[0]]
                log.info("resumed from %s: epoch %d done%s, %d updates",
                         ckpt.path(start["tag"], "params"), begin[0],
                         (", %d batches into epoch %d" % (begin[1], begin[0] + 1))
                         if begin[1] else "", trainer.optimizer.num_update)
        if self.rank == 0:
            config_mod.dump(self.cfg, self.config)
            if self.rows or not resume:
                atomic_save_csv(self.metrics, METRIC_COLUMNS, self.rows)
        return begin

    def end_epoch(self, row, net, trainer):
        """Record an epoch: checkpoint (pruned to the recent and the best), metrics, plot.

        The devices' BN running statistics are synchronised to the saved value first
        (a no-op after :func:`evaluate` did it), so the checkpoint is what was validated.
        """
        sync_running_stats(net)
        self.rows.append(row)
        row["best_epoch"] = self.best["epoch"]
        self.ckpt.save(row["epoch"], net, trainer, {
            "epoch": row["epoch"], "model": self.cfg["model"], "val_top1": row["val_top1"],
            "val_top5": row["val_top5"], "num_update": trainer.optimizer.num_update,
            "global_batch": self.global_batch})
        self.ckpt.remove("interrupted")
        self.ckpt.prune(self.cfg["keep_checkpoints"], self.best["epoch"])
        atomic_save_csv(self.metrics, METRIC_COLUMNS, self.rows)
        _plot(self.metrics, self.path, self.cfg)

    def save_interrupted(self, net, trainer, epochs_done, batches_done, iters_per_epoch,
                         epoch_sums=None):
        """The Ctrl-C checkpoint, with the epoch's running sums so that its metrics row
        still covers the whole epoch after ``--resume``."""
        if self.rank != 0:
            return
        self.ckpt.save("interrupted", net, trainer, {
            "epoch": epochs_done, "batches_done": batches_done, "model": self.cfg["model"],
            "num_update": trainer.optimizer.num_update, "global_batch": self.global_batch,
            "epoch_sums": epoch_sums})
        log.info("saved %s (epoch %d, %d/%d batches); continue with --resume",
                 self.ckpt.path("interrupted", "params"), epochs_done + 1, batches_done,
                 iters_per_epoch)

    def export_selected(self, synsets):
        """Export the ``export_epoch`` epoch's weights (last or best) beside the
        checkpoints, built with the recipe's BatchNorm settings; returns the prefix."""
        cfg, chosen, best = self.cfg, self.selected, self.best
        prefix = os.path.join(self.path, cfg["model"])
        net = network_from_checkpoint(self.ckpt.path(chosen["epoch"], "params"), cfg["model"],
                                      cfg["multiplier"], cfg["classes"],
                                      norm_kwargs=norm_kwargs_from(cfg))
        export_network(net, prefix, cfg["input_size"], synsets, info=describe_export(
            net, cfg["input_size"], cfg, epoch=chosen["epoch"], val_top1=chosen["val_top1"],
            export_epoch=cfg["export_epoch"], last_epoch=self.rows[-1]["epoch"],
            best_epoch=best["epoch"], best_val_top1=best["val_top1"]))
        log.info("exported the %s epoch, %d (val top1 %.4f), to %s-symbol.json and "
                 "%s-0000.params", cfg["export_epoch"], chosen["epoch"], chosen["val_top1"],
                 prefix, prefix)
        return prefix

    def summary(self):
        """One line naming the last and the best epoch and which one is exported."""
        last, best = self.rows[-1], self.best
        return ("last epoch %d val top1 %.4f | best epoch %d val top1 %.4f | exported: %s "
                "(epoch %d)" % (last["epoch"], last["val_top1"], best["epoch"],
                                best["val_top1"], self.cfg["export_epoch"],
                                self.selected["epoch"]))


def _epoch_sums(acc, seconds):
    """The epoch's running sums so far (per device), JSON-ready, for an interrupted
    checkpoint."""
    return {"loss": [float(v.asscalar()) for v in acc.epoch_loss],
            "correct": [float(v.asscalar()) for v in acc.epoch_correct],
            "count": int(acc.epoch_count), "seconds": float(seconds)}


def _restore_sums(acc, sums):
    """Start an epoch from an interrupted run's sums (device by device when the device
    count is the same, so the float32 additions happen in the same order)."""
    for name in ("loss", "correct"):
        values, target = sums[name], getattr(acc, "epoch_" + name)
        if len(values) != len(target):
            values = [sum(values)] + [0.0] * (len(target) - 1)
        for arr, v in zip(target, values):
            arr[:] = v
    acc.epoch_count = int(sums["count"])


def _train_epoch(step, train_data, acc, epoch_no, iters_per_epoch, done, stop, cfg,
                 num_workers, nan_message, lr_at=None, carried=None):
    """Train the rest of one epoch, from batch ``done``.

    The epoch's batches come in the order of (seed, epoch) (``set_epoch``), and the
    ``done`` batches an earlier run trained on are read and skipped, so a resumed
    epoch sees exactly the batches of an uninterrupted one. Before each update the lr
    is set to ``lr_at(epoch + batch / iters_per_epoch)``. ``carried`` are the running
    sums of the epoch's first part (:func:`_epoch_sums`).

    Returns
    -------
    tuple
        (mean train loss, train top-1, batches done, seconds).
    """
    if hasattr(train_data, "set_epoch"):
        train_data.set_epoch(epoch_no - 1)
    else:
        train_data.reset()
    acc.reset_epoch()
    earlier = 0.0
    if carried:
        _restore_sums(acc, carried)
        earlier = carried.get("seconds", 0.0)
    tic = last_log = time.time()
    skip = done
    if lr_at is not None and done:  # the rate of the last update, should none remain
        step.trainer.set_learning_rate(lr_at(epoch_no - 1 + (done - 1) / float(iters_per_epoch)))
    bar = _progress(iters_per_epoch, "epoch %d" % epoch_no)
    if bar is not None and done:
        bar.update(done)
    for i, batch in enumerate(train_data):
        if i < skip:
            continue
        if done >= iters_per_epoch or batch.pad:
            break
        if lr_at is not None:
            step.trainer.set_learning_rate(lr_at(epoch_no - 1 + done / float(iters_per_epoch)))
        xs, ys = step.split(batch.data[0], batch.label[0])
        losses, outputs = step(xs, ys)
        acc.add(done, losses, outputs, ys)
        done += 1
        if bar is not None:
            bar.update(1)
        if done % cfg["log_interval"] == 0 or stop.requested:
            count = acc.count
            loss, top1, bad = acc.read_window()
            if bad is not None:
                raise NonFiniteLoss(nan_message(epoch_no, bad))
            now = time.time()
            log.info("Epoch[%d] Batch [%d/%d]\tSpeed: %.2f samples/sec\tloss=%.4f\t"
                     "top1=%.4f\tlr=%.6g", epoch_no, done, iters_per_epoch,
                     count / max(now - last_log, 1e-9) * num_workers, loss, top1,
                     step.trainer.learning_rate)
            last_log = now
        if stop.requested:
            break
    if bar is not None:
        bar.close()
    loss, top1, bad = acc.read_epoch()
    if bad is not None or not np.isfinite(loss):
        raise NonFiniteLoss(nan_message(epoch_no, bad if bad is not None else done - 1))
    mx.nd.waitall()
    return loss, top1, done, earlier + time.time() - tic


def fit(cfg, resume=False, train_data=None, val_data=None, iters_per_epoch=None,
        overwrite=False):
    """Train, validate, checkpoint and export as the resolved recipe ``cfg`` says.

    Parameters
    ----------
    cfg : dict
        A resolved recipe (:func:`mobilenet_skip.config.resolve`).
    resume : bool
        Continue from the newest complete checkpoint in ``save_dir``.
    overwrite : bool
        Start afresh even if ``save_dir`` holds checkpoints (they are deleted);
        otherwise such a directory is refused, so no run is clobbered by accident.
    train_data, val_data : mx.io.DataIter, optional
        Iterators to use instead of ImageRecordIters over ``rec_train``/``rec_val``.
    iters_per_epoch : int, optional
        Batches per epoch of ``train_data`` (counted when not given).

    Returns
    -------
    dict
        ``best_epoch``, ``best_val_top1``, ``last`` (the final metrics row), ``export``
        (the exported prefix, or None on non-zero ranks), ``export_epoch`` (``last`` or
        ``best``, the recipe's), ``exported_epoch``, ``summary`` (the final log line, or
        None), ``interrupted``, ``lr`` and ``num_update``.
    """
    ctxs = parse_contexts(cfg["gpus"], cfg["cpu_contexts"])
    if cfg["dtype"] == "float16" and ctxs[0].device_type == "cpu":
        raise UserError("--dtype float16 needs GPUs: MXNet's CPU operators have no float16 "
                        "GEMM; pass --gpus, or --dtype float32 on the CPU")
    if ctxs[0].device_type == "cpu" and mx.context.num_gpus() > 0:
        log.warning("training on the CPU although %d GPU(s) are visible; pass --gpus 0,1,...",
                    mx.context.num_gpus())
    kvstore, rank, num_workers = _kvstore(cfg, len(ctxs))
    global_batch = cfg["batch_size"] * len(ctxs) * num_workers
    mx.random.seed(cfg["seed"])
    np.random.seed(cfg["seed"])

    synsets = None
    if train_data is None:
        train_data, val_data, iters_per_epoch, synsets = _record_iters(cfg, len(ctxs), rank,
                                                                       num_workers)
    elif iters_per_epoch is None:
        train_data.reset()
        iters_per_epoch = sum(1 for b in train_data if not b.pad)
    if cfg["batches_per_epoch"]:
        iters_per_epoch = min(iters_per_epoch, cfg["batches_per_epoch"])

    distributed = str(cfg["kv_store"]).startswith("dist")
    dog = dist.Watchdog(dist.check_timeout(cfg.get("dist_timeout", 0)) if distributed else 0,
                        rank)
    if distributed:
        train_data = _BeatingIter(train_data, dog.beat)
    run = _RunDir(cfg, rank)
    net = build_net(cfg, ctxs)
    step = make_step(net, cfg, ctxs, kvstore, iters_per_epoch, global_batch)
    trainer = step.trainer
    lr_at = make_lr_scheduler(cfg, global_batch)
    begin_epoch, done = run.start(net, trainer, ctxs, resume, overwrite, global_batch)
    log.info("lr %g for a global batch of %s -> effective lr %g at global batch %d%s",
             cfg["lr"], cfg["lr_batch"] or "any", optim.effective_lr(cfg, global_batch)[0],
             global_batch,
             "; at epoch %d%s: %g" % (begin_epoch + 1, " batch %d" % done if done else "",
                                      lr_at(begin_epoch + done / float(iters_per_epoch)))
             if (begin_epoch or done) else "")
    init_kvstore(trainer)
    dog.start()
    hybridize(net, cfg)
    log.info("model %s x%g, %d classes | %d device(s) %s, %d worker(s), global batch %d | "
             "%d batches/epoch, %d epochs", cfg["model"], cfg["multiplier"], cfg["classes"],
             len(ctxs), ",".join(str(c) for c in ctxs), num_workers, global_batch,
             iters_per_epoch, cfg["num_epochs"])

    acc = _Accumulator(ctxs)
    interrupted = False
    nan_message = lambda epoch, batch: _nan_message(epoch, batch, run.ckpt)  # noqa: E731
    carried = run.carried
    with _StopRequest() as stop:
        for epoch in range(begin_epoch, cfg["num_epochs"]):
            loss, top1, done, train_time = _train_epoch(
                step, train_data, acc, epoch + 1, iters_per_epoch, done, stop, cfg,
                num_workers, nan_message, lr_at, carried)
            carried = None
            if stop.requested:
                interrupted = True
                run.save_interrupted(net, trainer, epoch, done, iters_per_epoch,
                                     _epoch_sums(acc, train_time))
                break
            done = 0
            if rank != 0:
                continue
            with dog.paused():  # rank 0 alone: validation and checkpoint wait for no peer
                tic = time.time()
                val = evaluate(net, val_data, ctxs, cfg["dtype"])
                row = {"epoch": epoch + 1, "train_loss": loss, "train_top1": top1,
                       "val_top1": val["top1"], "val_top5": val["top5"],
                       "lr": trainer.learning_rate,
                       "epoch_time_s": train_time + time.time() - tic,
                       "samples_per_s": acc.epoch_count * num_workers / max(train_time, 1e-9)}
                run.end_epoch(row, net, trainer)
            log.info("Epoch[%d] val top1=%.4f top5=%.4f | train loss=%.4f top1=%.4f | "
                     "%.1fs, %.1f samples/sec, lr=%.6g", row["epoch"], val["top1"],
                     val["top5"], loss, top1, row["epoch_time_s"], row["samples_per_s"],
                     row["lr"])

    dog.stop()
    log.info("final trained-parameter checksum (rank %d): %s", rank, params_checksum(net))
    best, chosen = run.best, run.selected
    exported = run.export_selected(synsets) if rank == 0 and not interrupted and best else None
    summary = run.summary() if exported else None
    if summary:
        log.info(summary)
    return {"best_epoch": best["epoch"] if best else None,
            "best_val_top1": best["val_top1"] if best else None,
            "last": run.rows[-1] if run.rows else None, "interrupted": interrupted,
            "export": exported, "export_epoch": cfg["export_epoch"],
            "exported_epoch": chosen["epoch"] if exported else None, "summary": summary,
            "lr": trainer.learning_rate, "num_update": trainer.optimizer.num_update}


class _BeatingIter(object):
    """``train_data`` that tells the dist watchdog each time the loop asks for a batch:
    the loop only gets there once the previous step's push was accepted."""

    def __init__(self, data_iter, beat):
        self._it, self._beat = data_iter, beat

    def __getattr__(self, name):
        return getattr(self._it, name)

    def reset(self):
        self._beat()
        self._it.reset()

    def __iter__(self):
        return self

    def __next__(self):
        self._beat()
        return self._it.next()

    next = __next__


def _nan_message(epoch, batch, ckpt):
    last = ckpt.epochs()
    kept = ("the last good checkpoint, %s, is intact" % ckpt.path(last[-1]["tag"], "params")
            if last else "no checkpoint had been written yet")
    return ("loss became NaN/inf at epoch %d, batch %d; stopped without saving (%s). Lower "
            "--lr, keep --clip-gradient on, or check the data" % (epoch, batch + 1, kept))


def _plot(metrics_path, save_dir, cfg):
    from .plots import plot_curves
    try:
        plot_curves(metrics_path, os.path.join(save_dir, "curves.png"),
                    title="%s x%g" % (cfg["model"], cfg["multiplier"]))
    except Exception as err:  # a plot must never stop a training run
        log.warning("could not draw curves.png: %s", err)


def _attach_file_log(path):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == os.path.abspath(
                path):
            return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)


def worker_rank(cfg=None):
    """This process's worker rank under MXNet's launcher, or None outside it.

    With a ``dist`` kv_store in ``cfg`` it is the kvstore's rank, the one that picks the
    data shard and makes rank 0 the validating worker; ps-lite's scheduler hands ranks out
    in the order workers connect, so the launcher's ``DMLC_TASK_ID`` is not it. Creating
    the kvstore here waits, as :func:`fit` would, until every node of the job is up.
    """
    if os.environ.get("DMLC_ROLE") != "worker":
        return None
    if cfg is not None and str(cfg.get("kv_store", "")).startswith("dist"):
        return _kvstore(cfg, 1)[1]
    return int(os.environ.get("DMLC_WORKER_ID", os.environ.get("DMLC_TASK_ID", 0)))


def setup_logging(rank_prefix=""):
    """Log lines to stdout in MXNet's plain style."""
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in log.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(rank_prefix + "%(asctime)s %(message)s",
                                               "%H:%M:%S"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def describe(cfg):
    """The resolved configuration as printable YAML-ish lines."""
    return "\n".join("  %-20s %s" % (k, json.dumps(cfg[k])) for k in config_mod.SCHEMA)
