"""The benchmark's infer section: one randomised network in every registered deployment
form that a runtime runs (plain and fused FP32 and INT8 in MXNet, FP32 and INT8 ONNX in
ONNX Runtime, and any form registered later) beside gluoncv's MobileNet."""
import os
import statistics
import tempfile
import time

import mxnet as mx

from .sections import register
from ..errors import UserError

__all__ = ["randomise_bn", "row_name", "INFER_TARGETS", "RUNNERS"]


# --- infer: every form of one model, each in its runtime, vs gluoncv ----------------------

# At most this x the latency of the FP32 form in the same runtime, at batch 1: fused and
# int8 against MXNet's fp32, onnxruntime-int8 against onnxruntime.
INFER_TARGETS = {"fused": 0.85, "int8": 0.40, "onnxruntime-int8": 0.85}


def _add_infer_arguments(p):
    from ..models import list_models
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
    from ..deploy.loading import open_export
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


# How a form's output is timed, by the runtime that runs it (deploy.registry.RUNTIMES).
RUNNERS = {"mxnet": _mxnet_runner, "onnxruntime": _ort_runner}


def row_name(form):
    """A form's row: its name in MXNet (fp32, fused, int8); elsewhere the runtime's name with
    the form's qualifiers after its format word (onnx -> onnxruntime, onnx-int8 ->
    onnxruntime-int8)."""
    if form.runtime == "mxnet":
        return form.name
    return form.runtime + form.name[len(form.name.split("-")[0]):]


def _gluoncv_reference(multiplier, input_size):
    """gluoncv's MobileNet v1 at the same width where it has one, else mobilenet1.0."""
    from gluoncv.model_zoo import get_model
    width = "%g" % multiplier if multiplier in (0.25, 0.5, 0.75) else "1.0"
    net = randomise_bn(get_model("mobilenet" + width), input_size)
    net.hybridize(static_alloc=True, static_shape=True)
    return "gluoncv mobilenet%s" % width, "mxnet", lambda x: net(x).wait_to_read()


def _infer_variants(args, folder):
    """(name, runtime, runner) for every registered form that has a runtime, derived from
    the same randomised network, then ONNX with its weights as graph inputs and gluoncv's."""
    from ..deploy.artifact import describe, graph_of
    from ..deploy.forms import FORMS, Base, form_options
    from ..deploy.onnx import export_onnx
    from ..models import get_model
    side = args.input_size
    net = randomise_bn(get_model(args.model, args.multiplier), side)
    base = Base(os.path.join(folder, "plain"), graph_of(net, side), describe(net, side), None)
    # Synthetic calibration: N(0, 1) images have the scale of normalised pixels. It
    # sets INT8 ranges for timing only; accuracy is measured on real images in tests.
    mx.random.seed(1)
    options = form_options(batch_size=args.batch_size, calib_images=mx.nd.random.normal(
        shape=(args.calib_batches * args.batch_size, 3, side, side)))
    variants = []
    for form in FORMS.values():
        if form.runtime:
            out = form.resolved("derive")(base, base.prefix + form.suffix, options)
            variants.append((row_name(form), form.runtime, RUNNERS[form.runtime](out)))
    inputs = export_onnx(base.graph, base.info, base.prefix + "-inputs.onnx",
                         weights_as_inputs=True)
    variants.append(("onnxruntime-weights-as-inputs", "onnxruntime", _ort_runner(inputs)))
    return variants + [_gluoncv_reference(args.multiplier, side)]


def _run_infer(args):
    if args.infer_images < 1 or args.calib_batches < 1:
        raise UserError("--infer-images and --calib-batches must be at least 1")
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        variants = _infer_variants(args, tmp)
        model = "%s x%g at %d" % (args.model, args.multiplier, args.input_size)
        reference = variants[-1][0]
        own_fp32 = {}  # runtime -> its first row, the FP32 form (registered first)
        for name, runtime, _ in variants:
            own_fp32.setdefault(runtime, name)
        rows = []
        for batch in sorted({1, args.batch_size}):
            x = mx.nd.random.normal(shape=(batch, 3, args.input_size, args.input_size))
            calls = -(-args.infer_images // batch)
            for _, _, run in variants:
                for _ in range(args.warmup):
                    run(x)
            times = {name: [] for name, _, _ in variants}
            # Round-robin repeats, so that a load change on the machine hits every variant.
            for _ in range(args.repeats):
                for name, _, run in variants:
                    start = time.perf_counter()
                    for _ in range(calls):
                        run(x)
                    times[name].append((time.perf_counter() - start) / calls)
            latency = {name: 1000 * statistics.median(t) for name, t in times.items()}
            for name, runtime, _ in variants:
                rows.append({"variant": name, "batch": batch,
                             "model": reference if name == reference else model,
                             "latency_ms": latency[name],
                             "ratio_vs_fp32": latency[name] / latency["fp32"],
                             "ratio_vs_runtime_fp32": latency[name] / latency[own_fp32[runtime]],
                             "ratio_vs_gluoncv": latency[name] / latency[reference]})
    return rows


def _format_infer(rows):
    lines = ["infer: %s, MSRA weights with random BN statistics; median latency of the "
             "timed repeats; 'vs own fp32': against the FP32 form in the same runtime"
             % rows[0]["model"],
             "%-32s %5s %12s %9s %12s %11s" % ("variant", "batch", "latency ms", "vs fp32",
                                               "vs own fp32", "vs gluoncv")]
    for r in rows:
        lines.append("%-32s %5d %12.2f %8.2fx %11.2fx %10.2fx" % (
            r["variant"], r["batch"], r["latency_ms"], r["ratio_vs_fp32"],
            r["ratio_vs_runtime_fp32"], r["ratio_vs_gluoncv"]))
    first = min(r["batch"] for r in rows)
    ratios = {r["variant"]: r["ratio_vs_runtime_fp32"] for r in rows if r["batch"] == first}
    for variant, target in sorted(INFER_TARGETS.items()):
        if variant not in ratios:  # its form is not registered here
            continue
        got = ratios[variant]
        lines.append("target %s <= %.2fx its runtime's fp32 at batch %d: %.2fx, %s"
                     % (variant, target, first, got, "met" if got <= target else "MISSED"))
    return "\n".join(lines)


register("infer", _format_infer, _add_infer_arguments,
         help="latency of every deployment form in its runtime (MXNet, ONNX Runtime) vs "
         "gluoncv mobilenet")(_run_infer)
