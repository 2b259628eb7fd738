"""The ``train`` section of tools/benchmark.py: training images/s of the five networks
and of gluoncv's ``mobilenet1.0``, through the step ``tools/train_imagenet.py`` trains with.

Each of our networks runs twice: as training runs it, with its BatchNorm-ReLU pairs fused
(``fuse_bn_relu``, :mod:`mobilenet_skip.models.fusion`), and as ``<name> (unfused)``, with
its ratio to the first. Where the devices have no fused operator (GPUs, builds without
oneDNN) training is unfused, and so is the one row per network.

Every network is built, initialised, wrapped and hybridized by the functions ``fit`` uses
(:func:`~mobilenet_skip.train.net.init_net`, :func:`~mobilenet_skip.train.step.make_step`,
:func:`~mobilenet_skip.train.net.hybridize`) with its recipe's settings (label smoothing
0.1, global-norm clipping at 2.0, SGD with momentum), gluoncv's network included. A timed
step is what ``fit`` does per batch, minus reading it: split the host batch over the
devices, then forward, loss, backward, all-reduce, clipping and update.

Each (round, network) runs in a fresh Python process (:mod:`.measure`): its peak memory
is its own, and no
network inherits another's caches or allocator state. Rounds visit the networks in
alternating order, so a slow spell of a shared machine is spread over all of them; a
network's rate is the median over rounds, and its ratios are medians of the per-round
ratios (the two rates of a ratio come from the same round).

With ``--breakdown`` each row runs once more with oneDNN's verbose log on, and a second
table splits its step into oneDNN's own time per primitive kind. On an unfused row it
gives the most fusing BatchNorm-ReLU can gain: the fused operator removes the ReLU
(``eltwise``) and at best every ``reorder``, so no fused step beats
``step / (step - eltwise - reorder)``.

A last row runs ``fit`` itself, the whole ``train_imagenet.py`` path, on a
``.rec`` (the data section's ``--rec``, else the demo digits) at the same settings:
ImageRecordIter decoding and augmenting, the step, the running loss/accuracy; its rate
is that of fit's log windows, reported to a callback. Beside it, the iterator's rate alone says
whether training is data-bound.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from . import breakdown, sections as bench, threads
from .breakdown import fmt as _fmt
from ..utils.fs import checkout_path
from ..data.demo import pack_demo_data
from ..errors import UserError
from ..models import list_models
from .measure import REFERENCE, network

__all__ = ["REFERENCE", "BASELINE", "gluoncv_name", "network_names", "run_train",
           "format_train"]

BASELINE = "mobilenet"   # our plain MobileNet, the ratio_vs_mobilenet reference
FIT_PREFIX = "train_imagenet.py:"
UNFUSED = breakdown.UNFUSED
ROW_FIELDS = ("model", "img_per_s", "ratio_vs_gluoncv", "ratio_vs_mobilenet",
              "ratio_vs_unfused", "fused_pairs", "macs", "gflops", "peak_mem_mb")


def gluoncv_name(multiplier):
    """The reference row's model: ``gluoncv:mobilenet1.0`` at width 1.0."""
    return "gluoncv:mobilenet%r" % float(multiplier)


def network_names(models=None):
    """``--models`` (comma-separated; ``gluoncv`` for gluoncv's; ``none``) in table order."""
    known = [REFERENCE] + list_models()
    if not models:
        return known
    if str(models).strip().lower() == "none":
        return []
    wanted = [m.strip().lower().replace("_", "-") for m in str(models).split(",") if m.strip()]
    unknown = [m for m in wanted if m not in known]
    if unknown or not wanted:
        raise UserError("--models takes a comma-separated subset of %s (or none), got %r"
                        % (",".join(known), models))
    return [m for m in known if m in wanted]


def _add_arguments(p):
    shared = bench.shared_argument
    shared(p, "--gpus", default="", help="GPU ids, e.g. 0 or 0,1 ('' = CPU, the default); "
           "--batch-size is per device")
    shared(p, "--dtype", default="float32", choices=("float32", "float16"),
           help="float16 keeps float32 master weights, as training does (GPU only)")
    shared(p, "--multiplier", type=float, default=1.0, help="width multiplier (1.0)")
    g = p.add_argument_group("train section (--warmup and --repeats count steps and rounds)")
    g.add_argument("--steps", type=int, default=5,
                   help="timed training steps per network and round (5)")
    g.add_argument("--models", default="",
                   help="comma-separated subset of gluoncv,%s (default: all)"
                   % ",".join(list_models()))
    g.add_argument("--breakdown", action="store_true",
                   help="after the rounds, time each row once more with DNNL_VERBOSE=1 and "
                   "print its step split by oneDNN primitive kind, with the speed-up "
                   "BatchNorm-ReLU fusion can at most give (about 20 s a row)")
    g.add_argument("--thread-rows", action="store_true",
                   help="also time train_imagenet.py at the study's, the demo's and a 1.0-64 "
                   "size with 1 OpenMP thread, every core, and two 1-thread runs at once: the "
                   "table behind omp_threads: auto (about 2 min)")
    g.add_argument("--fit-model", default=BASELINE, choices=list_models() + ["none"],
                   help="network of the last row, the whole train_imagenet.py path on a "
                   "demo .rec (default mobilenet; none to skip it)")


def _overrides(args, model, fuse=True):
    """Recipe values every network shares; the rest is the model's own recipe."""
    return {"model": model, "multiplier": args.multiplier, "batch_size": args.batch_size,
            "input_size": args.input_size, "gpus": args.gpus, "dtype": args.dtype,
            "fuse_bn_relu": fuse}


def _step_spec(args, name, fuse, **extra):
    """The :mod:`.measure` spec that times ``name``'s step (fused or not)."""
    spec = {"mode": "step", "network": name, "warmup": args.warmup, "steps": args.steps,
            "overrides": _overrides(args, BASELINE if name == REFERENCE else name, fuse)}
    spec.update(extra)
    return spec


def _entries(names, fusable):
    """(row label, network, fuse_bn_relu) of every measurement: each of our networks as
    training runs it, and unfused too where training fuses."""
    out = []
    for name in names:
        out.append((name, name, True))
        if fusable and name != REFERENCE:
            out.append((name + UNFUSED, name, False))
    return out


def _check(args):
    """Validate the settings here, so a bad flag is one line, not a worker's traceback."""
    from ..config import recipes as config
    from ..train.devices import parse_contexts
    if args.steps < 1:
        raise UserError("--steps must be at least 1")
    cfg = config.resolve(None, _overrides(args, BASELINE))
    ctxs = parse_contexts(cfg["gpus"], cfg["cpu_contexts"])
    if cfg["dtype"] == "float16" and ctxs[0].device_type != "gpu":
        raise UserError("--dtype float16 trains on GPUs only (MKL-DNN has no float16 "
                        "kernels); add --gpus 0")
    return cfg, ctxs


def _macs(name, cfg):
    from ..models.flops import count_model
    return count_model(network(name, cfg), cfg["input_size"])["macs"]


def _spawn(spec, **env_extra):
    """Run one measurement in a fresh interpreter; its last stdout line is the result."""
    root = checkout_path()
    env = dict(os.environ, **env_extra)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, "-m", "mobilenet_skip.bench.measure",
                           json.dumps(spec)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError("the train benchmark's %s process for %s failed (exit %d):\n%s"
                           % (spec["mode"], spec.get("network", spec["overrides"]["model"]),
                              proc.returncode, proc.stderr[-3000:]))
    return json.loads(lines[-1])


def _say(text):
    print("train: " + text, file=sys.stderr, flush=True)


# --- the section --------------------------------------------------------------------------

def _ratio(rates, name, ref):
    if ref not in rates:
        return None
    return statistics.median(a / b for a, b in zip(rates[name], rates[ref]))


def _row(model, img_per_s, macs, peak, **extra):
    row = {"model": model, "img_per_s": img_per_s, "ratio_vs_gluoncv": None,
           "ratio_vs_mobilenet": None, "ratio_vs_unfused": None, "fused_pairs": None,
           "macs": macs, "gflops": 6.0 * macs * img_per_s / 1e9, "peak_mem_mb": peak}
    row.update(extra)
    return row


def run_train(args):
    from ..models import fusion_supported
    cfg, ctxs = _check(args)
    names = network_names(args.models)
    fusable, why = fusion_supported(ctxs, args.dtype)
    common = {"batch_size": args.batch_size, "devices": [str(c) for c in ctxs],
              "input_size": args.input_size, "multiplier": args.multiplier,
              "dtype": args.dtype, "fusion": "fused where training fuses" if fusable
              else "unfused: %s" % why}
    entries = _entries(names, fusable)
    rates = {label: [] for label, _, _ in entries}
    peaks = {label: 0.0 for label, _, _ in entries}
    fused = {}
    started = time.time()
    for r in range(args.repeats):
        for label, name, fuse in (entries if r % 2 == 0 else entries[::-1]):
            tic = time.time()
            out = _spawn(_step_spec(args, name, fuse))
            rates[label].append(out["img_per_s"])
            peaks[label] = max(peaks[label], out["peak_mem_mb"])
            fused[label] = out["fused_pairs"]
            _say("round %d/%d %-33s %8.2f img/s  peak %6.0f MB  (%.0f s)"
                 % (r + 1, args.repeats, label, out["img_per_s"], out["peak_mem_mb"],
                    time.time() - tic))
    rows = []
    for label, name, fuse in entries:
        shown = gluoncv_name(args.multiplier) if name == REFERENCE else label
        row = _row(shown, statistics.median(rates[label]), _macs(name, cfg), peaks[label],
                   kind="step", rates=rates[label], network=name, fused_pairs=fused[label],
                   **common)
        row["ratio_vs_gluoncv"] = _ratio(rates, label, REFERENCE)
        row["ratio_vs_mobilenet"] = _ratio(rates, label, BASELINE)
        if fuse and name != REFERENCE:
            row["ratio_vs_unfused"] = _ratio(rates, label, label + UNFUSED)
        rows.append(row)
    if getattr(args, "breakdown", False):
        breakdown.add_breakdown(entries, rows, lambda entry, log: _spawn(
            _step_spec(args, entry[1], entry[2], dnnl_log=log), DNNL_VERBOSE="1"), _say)
    if args.fit_model != "none":
        rows.append(_fit_row(args, cfg, rows, common))
    if getattr(args, "thread_rows", False):
        rows += [dict(r, kind="threads") for r in threads.thread_rows(say=_say)]
    _say("done in %.0f s" % (time.time() - started))
    return rows


def _fit_row(args, cfg, rows, common):
    model = args.fit_model
    from ..data.preprocess import Preprocessing
    image_size = getattr(args, "image_size", None) or Preprocessing.of(cfg).resize
    given = getattr(args, "rec", None)  # the data section's --rec
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        if not given:
            _say("packing the demo digits at %d px for the train_imagenet.py row" % image_size)
        rec = given or pack_demo_data(tmp, image_size, splits=("train",))[0]
        tic = time.time()
        out = _spawn({"mode": "fit", "rec": rec, "save_dir": os.path.join(tmp, "run"),
                      "warmup": args.warmup, "steps": args.steps, "repeats": args.repeats,
                      "batches": max(getattr(args, "batches", 20), args.steps),
                      "overrides": _overrides(args, model)})
    _say("%s%s %8.2f img/s, ImageRecordIter alone %.1f img/s  (%.0f s)"
         % (FIT_PREFIX, model, out["img_per_s"], out["data_iter_img_per_s"], time.time() - tic))
    by_name = {r["model"]: r for r in rows}
    step = by_name.get(model)
    macs = step["macs"] if step else _macs(model, cfg)
    row = _row(FIT_PREFIX + model, out["img_per_s"], macs, out["peak_mem_mb"], kind="fit",
               rates=out["window_rates"], rec=given or "demo digits at %d px" % image_size,
               data_iter_img_per_s=out["data_iter_img_per_s"],
               preprocess_threads=out["preprocess_threads"],
               fused_pairs=out["fused_pairs"],
               ratio_vs_step=out["img_per_s"] / step["img_per_s"] if step else None,
               data_bound=bool(out["data_iter_img_per_s"] < (step or out)["img_per_s"]),
               **common)
    for key, ref in (("ratio_vs_gluoncv", gluoncv_name(args.multiplier)),
                     ("ratio_vs_mobilenet", BASELINE)):
        if ref in by_name:
            row[key] = out["img_per_s"] / by_name[ref]["img_per_s"]
    return row


def format_train(rows):
    lines = _format_main([r for r in rows if r["kind"] in ("step", "fit")])
    lines += threads.format_thread_rows([r for r in rows if r["kind"] == "threads"])
    return "\n".join(lines + breakdown.format_breakdown(rows)) or "train: nothing measured"


def _format_main(rows):
    """The step and fit rows' table, or ``[]`` when there are none."""
    if not rows:
        return []
    first = rows[0]
    steps = [r for r in rows if r["kind"] == "step"]
    rounds = len(steps[0]["rates"]) if steps else 0
    width = max([28] + [len(r["model"]) for r in rows])
    lines = ["train: batch %d x %d device%s (%s), %s-%d, %s; img/s = median of %d round%s, "
             "each network in a fresh process; BatchNorm-ReLU %s"
             % (first["batch_size"], len(first["devices"]),
                "" if len(first["devices"]) == 1 else "s", ",".join(first["devices"]),
                first["multiplier"], first["input_size"], first["dtype"], rounds,
                "" if rounds == 1 else "s", first.get("fusion", "?")),
             "%-*s %8s %11s %13s %11s %10s %9s %9s" % (
                 width, "model", "img/s", "vs gluoncv", "vs mobilenet", "vs unfused", "Mult-Adds",
                 "GFLOP/s", "peak MB")]
    for r in steps + [r for r in rows if r["kind"] == "fit"]:
        lines.append("%-*s %8.2f %11s %13s %11s %9sM %9.1f %9.0f" % (
            width, r["model"], r["img_per_s"], _fmt(r["ratio_vs_gluoncv"], "10.3fx", 11),
            _fmt(r["ratio_vs_mobilenet"], "12.3fx", 13),
            _fmt(r.get("ratio_vs_unfused"), "10.3fx", 11),
            ("%.0f" if r["macs"] >= 1e7 else "%.2f") % (r["macs"] / 1e6), r["gflops"],
            r["peak_mem_mb"]))
    for r in rows:
        if r["kind"] != "fit":
            continue
        lines.append(
            "  ^ train.loop.fit on %s (decoding, step, running loss/accuracy, a log line "
            "every --steps batches): %s the step alone; ImageRecordIter alone (%d preprocess "
            "thread%s asked) %.0f img/s -> %s"
            % (r["rec"], _fmt(r["ratio_vs_step"], ".3fx", 1), r["preprocess_threads"],
               "" if r["preprocess_threads"] == 1 else "s", r["data_iter_img_per_s"],
               "data-bound" if r["data_bound"] else "not data-bound"))
    return lines


bench.register("train", format_train, _add_arguments,
               help="training img/s of the five networks (fused BatchNorm-ReLU and unfused) "
               "and gluoncv mobilenet1.0 through the train_imagenet.py step, plus the whole "
               "path on a .rec")(run_train)

