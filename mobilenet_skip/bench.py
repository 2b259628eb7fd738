"""Measurements behind tools/benchmark.py, one registered section each.

A section is registered with :func:`register`: a ``run(args) -> dict`` that measures,
a ``format(result) -> str`` for people, and optionally ``add_arguments(parser)``
for its own options (shared ones, such as ``--input-size``, are the tool's).
Rates are the median of several timed repeats after an untimed warm-up.
"""
import gc
import os
import platform
import statistics
import tempfile
import time
from collections import namedtuple

import mxnet as mx

from . import data
from .demo_data import make_demo_data
from .recordio import make_list, pack

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


# --- data: ImageRecordIter against gluon's DataLoader over the same .rec -------------

def _add_data_arguments(p):
    g = p.add_argument_group("data section")
    g.add_argument("--rec", help="a .rec (with its .idx) to read; default: a temporary demo set")
    g.add_argument("--image-size", type=int, default=None,
                   help="side of the temporary demo images (default: input size / 0.875, "
                   "as ImageNet val is packed at 256 for 224)")
    g.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="ImageRecordIter preprocess_threads and DataLoader num_workers "
                   "(default: min(4, cores))")
    g.add_argument("--batches", type=int, default=20, help="batches per timed repeat")


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


def _gluon_loader(rec, cfg, train, workers):
    """gluon's Python pipeline doing what ImageRecordIter does for ``cfg``."""
    from mxnet.gluon.data import DataLoader
    from mxnet.gluon.data.vision import ImageRecordDataset, transforms
    side = cfg["input_size"]
    if train:
        crop = [transforms.RandomResizedCrop(
            side, scale=(cfg["min_random_area"], cfg["max_random_area"]),
            ratio=(cfg["min_aspect_ratio"], cfg["max_aspect_ratio"])),
            transforms.RandomFlipLeftRight()]
    else:
        crop = [transforms.Resize(int(round(side / cfg["crop_ratio"])), keep_ratio=True),
                transforms.CenterCrop(side)]
    normalise = [transforms.ToTensor(),
                 transforms.Normalize([m / 255.0 for m in cfg["mean_rgb"]],
                                      [s / 255.0 for s in cfg["std_rgb"]])]
    dataset = ImageRecordDataset(rec).transform_first(transforms.Compose(crop + normalise))
    return DataLoader(dataset, batch_size=cfg["batch_size"], shuffle=train,
                      num_workers=workers, last_batch="keep")


def _demo_rec(folder, image_size):
    images = os.path.join(folder, "images")
    make_demo_data(images, size=image_size)
    prefix = os.path.join(folder, "demo_train")
    make_list(prefix, os.path.join(images, "train"), recursive=True)
    with open(os.devnull, "w") as quiet:
        pack(prefix, os.path.join(images, "train"), stream=quiet, out=quiet)
    return prefix + ".rec"


def _run_data(args):
    cfg = dict(data.DEFAULTS, input_size=args.input_size, batch_size=args.batch_size,
               preprocess_threads=args.workers)
    timing = dict(n_batches=args.batches, warmup=args.warmup, repeats=args.repeats)
    image_size = args.image_size or int(round(args.input_size / cfg["crop_ratio"]))
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        rec = args.rec or _demo_rec(tmp, image_size)
        cfg.update(rec_train=rec, rec_val=rec)
        result = {"rec": args.rec or "demo digits at %dpx" % image_size,
                  "images": data.check_record(rec), "input_size": args.input_size,
                  "batch_size": args.batch_size, "workers": args.workers,
                  "decode_threads": decode_threads(args.workers),
                  "record_iter": {}, "dataloader": {}, "speedup": {}}
        for mode, make_iter in (("train", data.train_iter), ("val", data.val_iter)):
            # One pipeline at a time: an idle one keeps decoding ahead and steals cores.
            it = make_iter(cfg)
            result["record_iter"][mode] = measure_rate(_endless(it), _count_record_batch,
                                                       **timing)
            del it
            loader = _gluon_loader(rec, cfg, mode == "train", args.workers)
            result["dataloader"][mode] = measure_rate(_endless(loader), _count_loader_batch,
                                                      **timing)
            del loader
            gc.collect()
            result["speedup"][mode] = result["record_iter"][mode] / result["dataloader"][mode]
    result["machine"] = machine_info()
    return result


def _format_data(r):
    lines = ["data: %s (%d images), input %d, batch %d, %d workers (ImageRecordIter decodes "
             "on %d thread%s here)" % (r["rec"], r["images"], r["input_size"], r["batch_size"],
                                        r["workers"], r["decode_threads"],
                                        "" if r["decode_threads"] == 1 else "s"),
             "%-28s %12s %12s" % ("img/s", "train aug", "val aug")]
    for key, name in (("record_iter", "ImageRecordIter (C++)"),
                      ("dataloader", "gluon DataLoader (Python)")):
        lines.append("%-28s %12.1f %12.1f" % (name, r[key]["train"], r[key]["val"]))
    lines.append("%-28s %11.2fx %11.2fx" % ("ImageRecordIter speed-up", r["speedup"]["train"],
                                            r["speedup"]["val"]))
    return "\n".join(lines)


register("data", _format_data, _add_data_arguments,
         help="ImageRecordIter vs gluon DataLoader img/s, train and val augmentation")(_run_data)
