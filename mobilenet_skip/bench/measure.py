"""The measuring process of the ``train`` benchmark section (:mod:`mobilenet_skip.bench.train`):
``python -m mobilenet_skip.bench.measure SPEC_JSON`` measures one (round, network) and
prints its result as the last stdout line.

A network is built, initialised, wrapped and hybridized by the functions ``fit`` uses;
a timed step is what ``fit`` does per batch, minus reading it. With ``"dnnl_log"`` in the
spec (and ``DNNL_VERBOSE=1`` in the environment, which oneDNN reads once, at its first
primitive) the timed steps' oneDNN primitives are also summed by kind, from oneDNN's own
execution times.
"""
import collections
import ctypes
import json
import os
import statistics
import sys
import time

import mxnet as mx
import numpy as np

from . import sections as bench
from ..config import recipes as config
from ..train.callbacks import Rates
from ..train.devices import make_kvstore, parse_contexts
from ..train.loop import fit
from ..train.net import hybridize, init_net
from ..train.step import make_step

__all__ = ["network", "main"]


REFERENCE = "gluoncv"    # --models spelling of gluoncv's MobileNet v1


def network(name, cfg):
    """The benchmark's network ``name``: ours, or gluoncv's MobileNet v1 for REFERENCE."""
    if name == REFERENCE:
        from gluoncv.model_zoo.mobilenet import MobileNet
        return MobileNet(cfg["multiplier"], classes=cfg["classes"])
    from ..models import get_model
    return get_model(name, cfg["multiplier"], cfg["classes"])


def _peak_mem_mb(ctxs):
    """GPU: memory in use on the devices (MXNet's pool keeps its high-water mark).
    CPU: this process's peak resident set."""
    if ctxs[0].device_type == "gpu":
        used = 0
        for ctx in ctxs:
            free, total = mx.context.gpu_memory_info(ctx.device_id)
            used += total - free
        return used / 2.0 ** 20
    # Linux: VmHWM belongs to this process image. ru_maxrss does not: exec carries the
    # parent's high-water mark over, so a big parent (the data section) would show in
    # every row.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2.0 ** 20 if sys.platform == "darwin" else peak / 1024.0


def _measure_step(spec):
    cfg = config.resolve(None, spec["overrides"])
    ctxs = parse_contexts(cfg["gpus"], cfg["cpu_contexts"])
    mx.random.seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    batch = cfg["batch_size"] * len(ctxs)
    net = init_net(network(spec["network"], cfg), cfg, ctxs)
    kvstore = make_kvstore(cfg, len(ctxs))[0]
    step = make_step(net, cfg, ctxs, kvstore, batch)
    fused = hybridize(net, cfg)
    # A decoded batch as the iterator hands it over: float32 on the host.
    data = mx.nd.random.normal(shape=(batch, 3, cfg["input_size"], cfg["input_size"]))
    label = mx.nd.array(np.random.randint(0, cfg["classes"], batch))

    def run(steps):
        for _ in range(steps):
            step(*step.split(data, label))

    log = _DnnlLog(spec["dnnl_log"]) if spec.get("dnnl_log") else None
    try:
        run(spec["warmup"])
        mx.nd.waitall()
        if log:
            log.mark()
        start = time.perf_counter()
        run(spec["steps"])
        mx.nd.waitall()
        seconds = time.perf_counter() - start
        result = {"img_per_s": batch * spec["steps"] / seconds,
                  "peak_mem_mb": _peak_mem_mb(ctxs), "fused_pairs": fused}
        if log:
            result["dnnl_ms"] = {kind: ms / spec["steps"] for kind, ms in log.since_mark().items()}
            result["step_ms"] = 1e3 * seconds / spec["steps"]
    finally:
        if log:
            log.close()
    return result


class _DnnlLog(object):
    """oneDNN's verbose lines (written by C code to file descriptor 1) sent to ``path``, so
    that they can be cut at a point in time: :meth:`mark`, then :meth:`since_mark` sums the
    milliseconds of the primitives executed since, by kind (convolution, reorder, ...)."""

    def __init__(self, path):
        self._libc = ctypes.CDLL(None)
        sys.stdout.flush()
        self._saved = os.dup(1)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(self._fd, 1)
        self.path, self._start = path, 0

    def _offset(self):
        self._libc.fflush(None)  # C stdio buffers what oneDNN prints
        return os.lseek(1, 0, os.SEEK_CUR)

    def mark(self):
        self._start = self._offset()

    def since_mark(self):
        end = self._offset()
        with open(self.path, "rb") as f:
            f.seek(self._start)
            text = f.read(end - self._start).decode("utf-8", "replace")
        total = collections.Counter()
        # dnnl_verbose,exec,cpu,<primitive>,<impl>,<prop>,...,<ms>
        for line in text.splitlines():
            fields = line.split(",")
            if len(fields) > 4 and fields[0] == "dnnl_verbose" and fields[1] == "exec":
                try:
                    total[fields[3]] += float(fields[-1])
                except ValueError:
                    pass
        return dict(total)

    def close(self):
        self._libc.fflush(None)
        sys.stdout.flush()
        os.dup2(self._saved, 1)
        os.close(self._saved)
        os.close(self._fd)


class _Endless(object):
    """A training iterator that never runs out and never hands over a padded batch, so that
    one ``fit`` epoch runs as many batches as asked of any ``.rec``."""

    def __init__(self, it):
        self.it, self.batch_size = it, it.batch_size
        self.provide_data, self.provide_label = it.provide_data, it.provide_label
        self._batches = bench._endless(it)

    def reset(self):
        pass

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self._batches)
        while batch.pad:
            batch = next(self._batches)
        return batch


def _measure_fit(spec):
    """``fit`` on a .rec: one epoch of ``(1 + repeats) * steps`` batches logged every
    ``steps`` batches; the rates are its log windows' (a :class:`.callbacks.Rates`), the
    first (which builds the graph) being the warm-up. Epoch ends (validation, checkpoints)
    are left out: on ImageNet they come once per 40,000 batches, here they would every few."""
    from ..data import records as data
    cfg = config.resolve(None, spec["overrides"])
    cfg = cfg.replace(rec_train=spec["rec"], rec_val=spec["rec"], save_dir=spec["save_dir"],
                      num_epochs=1, log_interval=spec["steps"])
    ctxs = parse_contexts(cfg["gpus"], cfg["cpu_contexts"])
    train_data = data.train_iter(cfg, len(ctxs))
    iter_rate = bench.measure_rate(bench._endless(train_data), bench._count_record_batch,
                                   spec["batches"], spec["warmup"], spec["repeats"])
    batch = cfg["batch_size"] * len(ctxs)
    side = cfg["input_size"]
    val_data = mx.io.NDArrayIter(np.zeros((batch, 3, side, side), "float32"),
                                 np.zeros((batch,), "float32"), batch_size=batch)
    rates = Rates()
    result = fit(cfg, train_data=_Endless(train_data), val_data=val_data,
                 iters_per_epoch=spec["steps"] * (1 + spec["repeats"]), overwrite=True,
                 callbacks=[rates])
    speeds = rates.rates
    return {"img_per_s": statistics.median(speeds[1:]), "window_rates": speeds[1:],
            "data_iter_img_per_s": iter_rate, "preprocess_threads": data.resolve_threads(cfg),
            "peak_mem_mb": _peak_mem_mb(ctxs), "fused_pairs": result["fused_pairs"]}


def main(argv):
    """Measure the JSON spec ``argv[0]`` (mode step or fit); print the result as JSON."""
    spec = json.loads(argv[0])
    result = (_measure_fit if spec["mode"] == "fit" else _measure_step)(spec)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
