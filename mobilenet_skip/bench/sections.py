"""Measurements behind tools/benchmark.py, one registered section each (data:
:mod:`.data`, infer: :mod:`.infer`, train: :mod:`.train`).

A section is registered with :func:`register`: a ``run(args) -> dict`` that measures,
a ``format(result) -> str`` for people, and optionally ``add_arguments(parser)``
for its own options (shared ones, such as ``--input-size``, are the tool's).
Rates are the median of several timed repeats after an untimed warm-up.
"""
import os
import platform
import statistics
import time
from collections import namedtuple

import mxnet as mx


__all__ = ["SECTIONS", "Section", "register", "shared_argument", "machine_info",
           "format_machine", "measure_rate", "decode_threads"]

Section = namedtuple("Section", ["run", "format", "add_arguments", "help"])
SECTIONS = {}


def register(name, format, add_arguments=None, help=""):  # noqa: A002 - argparse's word
    """Decorator: make ``run`` the benchmark section ``name``."""
    def wrap(run):
        SECTIONS[name] = Section(run, format, add_arguments, help)
        return run
    return wrap


def shared_argument(parser, *flags, **kwargs):
    """Add an option that several sections read (``--gpus``, ``--dtype``, ...), unless a
    section or the tool already added it: the first definition wins, none clashes."""
    for flag in flags:
        if flag in parser._option_string_actions:
            return parser._option_string_actions[flag]
    return parser.add_argument(*flags, **kwargs)


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info():
    """What a timing depends on: CPU, cores, MXNet build and its thread settings."""
    features = mx.runtime.Features()
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "mxnet": mx.__version__,
            "features": sorted(k for k, v in features.items() if v.enabled),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS",
                                              "unset (MXNet: half the cores on x86)"),
            "mxnet_cpu_worker_nthreads": os.environ.get("MXNET_CPU_WORKER_NTHREADS",
                                                        "unset (1)"),
            "python": platform.python_version()}


def format_machine(info):
    """The header lines naming the machine."""
    return "\n".join([
        "machine: %s, %d cores, Python %s" % (info["cpu"], info["cores"], info["python"]),
        "mxnet %s: %s" % (info["mxnet"], " ".join(info["features"])),
        "threads: OMP_NUM_THREADS=%s MXNET_CPU_WORKER_NTHREADS=%s"
        % (info["omp_num_threads"], info["mxnet_cpu_worker_nthreads"])])


def measure_rate(batches, count, n_batches, warmup, repeats):
    """Median items/s of ``repeats`` runs of ``n_batches`` batches, after ``warmup`` batches.

    Parameters
    ----------
    batches : iterator
        Endless batches.
    count : callable
        Items in a batch (waiting for it to be computed).
    """
    for _ in range(warmup):
        count(next(batches))
    rates = []
    for _ in range(repeats):
        start, items = time.perf_counter(), 0
        for _ in range(n_batches):
            items += count(next(batches))
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates)


def decode_threads(requested, cores=None):
    """Threads ImageRecordIter really decodes on: MXNet caps it at half the cores minus one."""
    cores = cores or os.cpu_count() or 1
    return min(requested, max(cores // 2 - 1, 1))


# --- shared by the sections -----------------------------------------------------------

def _endless(loader):
    while True:
        for batch in loader:
            yield batch
        if hasattr(loader, "reset"):
            loader.reset()


def _count_record_batch(batch):
    batch.data[0].wait_to_read()
    return batch.data[0].shape[0] - batch.pad


def _count_loader_batch(batch):
    batch[0].wait_to_read()
    return batch[0].shape[0]
