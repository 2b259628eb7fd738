"""Measurements behind tools/benchmark.py, one registered section each.

A section is registered with :func:`register`: a ``run(args) -> dict`` that measures,
a ``format(result) -> str`` for people, and optionally ``add_arguments(parser)``
for its own options (shared ones, such as ``--input-size``, are the tool's).
Rates are the median of several timed repeats after an untimed warm-up.
"""
import argparse
import gc
import os
import platform
import statistics
import tempfile
import time
from collections import namedtuple

import mxnet as mx

from . import data
from .demo_data import pack_demo_data
from .errors import UserError

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
    g.add_argument("--preprocess-threads", dest="workers", type=int,
                   default=min(4, os.cpu_count() or 1),
                   help="ImageRecordIter preprocess_threads and DataLoader num_workers, the "
                   "name train_imagenet.py and eval_imagenet.py use (default: min(4, cores))")
    g.add_argument("--workers", dest="workers", type=int, help=argparse.SUPPRESS)
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


def _run_data(args):
    cfg = dict(data.DEFAULTS, input_size=args.input_size, batch_size=args.batch_size,
               preprocess_threads=args.workers)
    timing = dict(n_batches=args.batches, warmup=args.warmup, repeats=args.repeats)
    image_size = args.image_size or int(round(args.input_size / cfg["crop_ratio"]))
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        rec = args.rec or pack_demo_data(tmp, image_size, splits=("train",))[0]
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


# --- infer: one model as plain FP32, fused FP32, INT8 and ONNX Runtime, vs gluoncv ------

INFER_TARGETS = {"fused": 0.85, "int8": 0.40}  # issue #5: at most this x plain FP32 latency


def _add_infer_arguments(p):
    from .models import list_models
    g = p.add_argument_group("infer section")
    g.add_argument("--model", default="full-connect-pre-act", choices=list_models(),
                   help="network to deploy (full-connect-pre-act)")
    g.add_argument("--multiplier", type=float, default=1.0, help="its width (1.0)")
    g.add_argument("--infer-images", type=int, default=32,
                   help="images per timed repeat: 32 forwards at batch 1, one at 32 (32)")
    g.add_argument("--calib-batches", type=int, default=2,
                   help="synthetic batches that calibrate the INT8 graph (2)")


def randomise_bn(net, input_size, seed=0):
    """MSRA-initialise ``net`` and give every BN non-trivial statistics.

    Default (Xavier) weights with unit BN statistics give ~1e-19 logits, where any
    two graphs look equal; this is a network whose outputs differ when the maths does.
    """
    mx.random.seed(seed)
    net.initialize(mx.init.MSRAPrelu(), force_reinit=True)
    net(mx.nd.zeros((1, 3, input_size, input_size)))  # settles deferred shapes (gluoncv's)
    for name, p in net.collect_params().items():
        if name.endswith(("running_var", "gamma")):
            p.set_data(mx.nd.random.uniform(0.5, 1.5, shape=p.shape))
        elif name.endswith(("running_mean", "beta")):
            p.set_data(mx.nd.random.normal(0, 0.2, shape=p.shape))
    return net


def _mxnet_runner(prefix):
    from .export import open_export
    net = open_export(prefix).block
    net.hybridize(static_alloc=True, static_shape=True)
    return lambda x: net(x).wait_to_read()


def _ort_runner(path):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3  # its warning per weight left as a graph input
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.asnumpy()})


def _gluoncv_reference(multiplier, input_size):
    """gluoncv's MobileNet v1 at the same width where it has one, else mobilenet1.0."""
    from gluoncv.model_zoo import get_model
    width = "%g" % multiplier if multiplier in (0.25, 0.5, 0.75) else "1.0"
    net = randomise_bn(get_model("mobilenet" + width), input_size)
    net.hybridize(static_alloc=True, static_shape=True)
    return "gluoncv mobilenet%s" % width, lambda x: net(x).wait_to_read()


def _infer_variants(args, folder):
    """(name, runner) for every deployment form of the same randomised network."""
    from .export import describe, export_fused, export_int8, export_network, export_onnx
    from .models import get_model
    side = args.input_size
    net = randomise_bn(get_model(args.model, args.multiplier), side)
    plain = os.path.join(folder, "plain")
    export_network(net, plain, side, info=describe(net, side))
    export_fused(plain, plain + "-fused")
    # Synthetic calibration: N(0, 1) images have the scale of normalised pixels. It
    # sets INT8 ranges for timing only; accuracy is measured on real images in tests.
    mx.random.seed(1)
    calib = mx.nd.random.normal(shape=(args.calib_batches * args.batch_size, 3, side, side))
    export_int8(plain, plain + "-int8", calib)
    export_onnx(plain, plain + ".onnx")
    export_onnx(plain, plain + "-inputs.onnx", weights_as_inputs=True)
    return [("fp32", _mxnet_runner(plain)),
            ("fused", _mxnet_runner(plain + "-fused")),
            ("int8", _mxnet_runner(plain + "-int8")),
            ("onnxruntime", _ort_runner(plain + ".onnx")),
            ("onnxruntime-weights-as-inputs", _ort_runner(plain + "-inputs.onnx")),
            _gluoncv_reference(args.multiplier, side)]


def _run_infer(args):
    if args.infer_images < 1 or args.calib_batches < 1:
        raise UserError("--infer-images and --calib-batches must be at least 1")
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        variants = _infer_variants(args, tmp)
        model = "%s x%g at %d" % (args.model, args.multiplier, args.input_size)
        rows = []
        for batch in sorted({1, args.batch_size}):
            x = mx.nd.random.normal(shape=(batch, 3, args.input_size, args.input_size))
            calls = -(-args.infer_images // batch)
            for _, run in variants:
                for _ in range(args.warmup):
                    run(x)
            times = {name: [] for name, _ in variants}
            # Round-robin repeats, so that a load change on the machine hits every variant.
            for _ in range(args.repeats):
                for name, run in variants:
                    start = time.perf_counter()
                    for _ in range(calls):
                        run(x)
                    times[name].append((time.perf_counter() - start) / calls)
            latency = {name: 1000 * statistics.median(t) for name, t in times.items()}
            reference = variants[-1][0]
            for name, _ in variants:
                rows.append({"variant": name, "batch": batch,
                             "model": reference if name == reference else model,
                             "latency_ms": latency[name],
                             "ratio_vs_fp32": latency[name] / latency["fp32"],
                             "ratio_vs_gluoncv": latency[name] / latency[reference]})
    return rows


def _format_infer(rows):
    lines = ["infer: %s, MSRA weights with random BN statistics; median latency of the "
             "timed repeats" % rows[0]["model"],
             "%-32s %5s %12s %9s %11s" % ("variant", "batch", "latency ms", "vs fp32",
                                          "vs gluoncv")]
    for r in rows:
        lines.append("%-32s %5d %12.2f %8.2fx %10.2fx" % (
            r["variant"], r["batch"], r["latency_ms"], r["ratio_vs_fp32"],
            r["ratio_vs_gluoncv"]))
    first = min(r["batch"] for r in rows)
    for variant, target in sorted(INFER_TARGETS.items()):
        got = next(r["ratio_vs_fp32"] for r in rows
                   if r["variant"] == variant and r["batch"] == first)
        lines.append("target %s <= %.2fx fp32 at batch %d: %.2fx, %s"
                     % (variant, target, first, got, "met" if got <= target else "MISSED"))
    return "\n".join(lines)


register("infer", _format_infer, _add_infer_arguments,
         help="latency of plain/fused FP32, INT8 and ONNX Runtime vs gluoncv mobilenet")(
    _run_infer)
