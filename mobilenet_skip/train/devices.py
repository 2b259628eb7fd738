"""Devices and the kvstore: which contexts train, how gradients are reduced, which rank
this worker is."""
import os

import mxnet as mx

from ..errors import UserError

__all__ = ["parse_contexts", "make_kvstore", "init_kvstore", "worker_rank", "thread_choice"]


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


_DIST_KV = {}


def make_kvstore(cfg, num_devices):
    """(kvstore for the Trainer, rank, number of workers).

    A ``dist`` kvstore is created once per process and kept, so that the tool can learn
    its rank (for log prefixes) before :func:`~mobilenet_skip.train.loop.fit` trains
    with the same store.
    """
    kind = cfg.kv_store
    if kind.startswith("dist"):
        if "DMLC_ROLE" not in os.environ:
            raise UserError("--kv-store %s needs MXNet's launcher: run through tools/launch.py "
                            "(see docs/workflow.md, Several machines)" % kind)
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


def worker_rank(cfg=None):
    """This process's worker rank under MXNet's launcher, or None outside it.

    With a ``dist`` kv_store in ``cfg`` it is the kvstore's rank, the one that picks the
    data shard and makes rank 0 the validating worker; ps-lite's scheduler hands ranks out
    in the order workers connect, so the launcher's ``DMLC_TASK_ID`` is not it. Creating
    the kvstore here waits, as ``fit`` would, until every node of the job is up.
    """
    if os.environ.get("DMLC_ROLE") != "worker":
        return None
    if cfg is not None and str(cfg.kv_store).startswith("dist"):
        return make_kvstore(cfg, 1)[1]
    return int(os.environ.get("DMLC_WORKER_ID", os.environ.get("DMLC_TASK_ID", 0)))


def thread_choice(cfg):
    """The OpenMP thread count ``cfg`` trains with and why
    (:func:`~mobilenet_skip.utils.threads.choose_threads`): the work of one device's step
    is its batch times the network's Mult-Adds per image at the training input size."""
    from ..models import get_model
    from ..models.flops import count_model
    from ..utils.cores import physical_cores
    from ..utils.threads import choose_threads

    macs = count_model(get_model(cfg.model, cfg.multiplier, cfg.classes),
                       cfg.input_size)["macs"]
    return choose_threads(cfg.omp_threads, macs * cfg.batch_size, physical_cores(),
                          on_gpu=bool(cfg.gpus))
