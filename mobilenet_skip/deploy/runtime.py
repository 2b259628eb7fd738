"""The runtimes that run a network, behind one interface: a :class:`Runner`.

A runner is a network made ready for batches of ``batch_size`` images: ``runner(x)``
takes one device's batch (NCHW float32, preprocessed as ``runner.info`` says) and
returns its logits as an NDArray on that device, whichever runtime computes them:

- MXNet (:class:`MXNetRunner`): an export (plain FP32, fused or INT8) or a network in
  memory, through gluon's ``SymbolBlock`` or the symbolic ``mx.mod.Module`` (``--api``);
- ONNX Runtime (:class:`OnnxRunner`): an ``.onnx`` file in a CPU session.

:data:`~.registry.RUNTIMES` names the opener of each runtime's files
(:func:`export_runner`, :func:`onnx_runner`), :func:`open_runner` opens a path by its
runtime's name, and :func:`network_runner` runs a network in memory (a checkpoint's:
nothing is written to disk). :func:`~.scoring.score` and the tools' lines take any
runner alike.
"""
import os

import mxnet as mx

from ..errors import UserError
from .artifact import describe, graph_of, read_info, sidecar_path
from .limits import check_batch, check_network
from .loading import load_symbolic, open_export, open_graph
from .registry import RUNTIMES

__all__ = ["Runner", "MXNetRunner", "OnnxRunner", "ModuleNet", "APIS", "check_batch_size",
           "export_runner", "onnx_runner", "network_runner", "open_runner"]

APIS = ("symbolblock", "module")  # the MXNet APIs a runner can call


def check_batch_size(batch_size):
    """``batch_size`` if it is at least 1, else the one-line :class:`UserError`: checked
    where the value enters, a tool's flag or a :class:`Runner`."""
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    return batch_size


class Runner(object):
    """A network ready to score, called like a block on one device's batch.

    Attributes
    ----------
    path : str
        What runs: an export prefix, an ONNX file or a checkpoint file.
    info : dict
        Its sidecar: model, input size and preprocessing.
    ctxs : list of Context
        The devices a batch is split over.
    batch_size : int
        Images per device and batch.
    labels : dict
        The runtime and device as a JSON line names them: ``device`` and ``api`` (MXNet),
        or ``device`` and ``runtime``.
    engine : str
        What runs it, for the line naming the data: ``api symbolblock``, ``ONNX Runtime 1.x``.
    """

    def __init__(self, path, info, ctxs, batch_size):
        self.path, self.info, self.ctxs = path, info, list(ctxs)
        self.batch_size = check_batch_size(batch_size)
        self.labels, self.engine = {}, ""

    def __call__(self, x):
        raise NotImplementedError

    def where(self, cpu):
        """The device of the speed line; ``cpu()`` describes this machine's CPU."""
        raise NotImplementedError


class ModuleNet(object):
    """An export bound as ``mx.mod.Module`` s (one per context), called like a block.

    ``mx.model.load_checkpoint``, ``Module.bind`` and ``set_params``: the classic
    symbolic API. ``net(x)`` runs the Module of ``x``'s context (rebinding for a
    smaller last batch) and returns its logits, so :func:`.evaluate` takes
    it as it takes a ``SymbolBlock``. MXNet's CPU executor applies the MKLDNN
    subgraph backend on bind, so this path runs the fused graph; its logits differ
    from the ``SymbolBlock`` ones by float rounding only.
    """

    def __init__(self, graph, ctxs, batch_size, input_size):
        # an export's prefix, or its Graph already loaded (open_export's)
        sym, arg_params, aux_params = (load_symbolic(graph) if isinstance(graph, str)
                                       else graph)
        os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # no log line per bind
        self.mods = {}
        for ctx in ctxs:
            mod = mx.mod.Module(sym, data_names=["data"], label_names=None, context=ctx)
            mod.bind(data_shapes=[("data", (batch_size, 3, input_size, input_size))],
                     for_training=False)
            mod.set_params(arg_params, aux_params)
            self.mods[str(ctx)] = mod

    def __call__(self, x):
        mod = self.mods[str(x.context)]
        mod.forward(mx.io.DataBatch([x]), is_train=False)
        return mod.get_outputs()[0]


class MXNetRunner(Runner):
    """A :class:`~.artifact.Graph` in MXNet, through ``api``: its ``block`` (a
    ``SymbolBlock`` on ``ctxs``, hybridized) or a :class:`ModuleNet` of the graph. Both
    have run one batch on every device before the clock starts, once shape inference
    has shown that MXNet can hold a batch's arrays (:func:`~.limits.check_batch`)."""

    def __init__(self, path, graph, block, info, ctxs, api="symbolblock", batch_size=32):
        super(MXNetRunner, self).__init__(path, info, ctxs, batch_size)
        side = info["input_size"]
        check_batch(graph.sym, side, batch_size, path)
        if api == "module":
            net = ModuleNet(graph, self.ctxs, batch_size, side)
        elif api == "symbolblock":
            net = block
            net.hybridize(static_alloc=True, static_shape=True)
        else:
            raise UserError("--api must be one of %s, got %r" % (", ".join(APIS), api))
        for ctx in self.ctxs:  # build the graphs before the clock starts
            net(mx.nd.zeros((batch_size, 3, side, side), ctx=ctx)).wait_to_read()
        self.net = net
        self.labels = {"device": ",".join(str(c) for c in self.ctxs), "api": api}
        self.engine = "api %s" % api

    def __call__(self, x):
        return self.net(x)

    def where(self, cpu):
        device = self.labels["device"]
        return device + (" (%s)" % cpu() if self.ctxs[0].device_type == "cpu" else "")


class OnnxRunner(Runner):
    """An ONNX file in an ONNX Runtime CPU session, on batches from the same validation
    iterator as MXNet's, its logits returned as an NDArray.

    The preprocessing is the one ``export_onnx`` stored in the file (else the sidecar
    beside it, else ImageNet's at ``input_size``); an ``input_size`` the graph cannot
    take is refused. Without a sidecar the classes are the width of the graph's output.
    """

    def __init__(self, path, input_size=None, batch_size=32, threads=None):
        super(OnnxRunner, self).__init__(path, None, [mx.cpu()], batch_size)
        if not os.path.isfile(path):
            raise UserError("ONNX file %s not found (tools/export_model.py --onnx writes "
                            "PREFIX.onnx)" % path)
        info = _onnx_info(path, input_size)  # says which onnx to install if it is missing
        self.session, self.input_name, self.shape = _session(path, threads)
        side = (self.shape[2] if len(self.shape) == 4 and isinstance(self.shape[2], int)
                else None)
        if input_size and side and int(input_size) != side:
            raise UserError("--input-size %d: %s takes %dx%d images only (its input is %s); "
                            "re-export with export_model.py --input-size %d --onnx"
                            % (input_size, path, side, side, self.shape, input_size))
        if side and side != info["input_size"]:
            if info.get("sidecar") is False:
                info["input_size"] = side
            else:
                raise UserError("%s takes %dx%d images but its description says %d; "
                                "re-export it" % (path, side, side, info["input_size"]))
        import onnxruntime
        out = self.session.get_outputs()[0].shape
        if not info.get("classes") and len(out) == 2 and isinstance(out[1], int):
            info["classes"] = out[1]  # what the labels are checked against
        self.info = info
        self.labels = {"device": "cpu", "runtime": "onnxruntime"}
        self.engine = "ONNX Runtime %s" % onnxruntime.__version__

    def __call__(self, x):
        out = self.session.run(None, {self.input_name: x.asnumpy()})[0]
        return mx.nd.array(out, ctx=x.context)

    def where(self, cpu):
        return "the CPU"


def _session(path, threads=None):
    """An ONNX Runtime CPU session of ``path``, its input's name and shape."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("--runtime onnxruntime needs the onnxruntime package: pip install "
                        "onnxruntime (requirements/test.txt pins the tested one)") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own classes, not one base
        raise UserError("ONNX Runtime %s cannot load %s (%s)" % (
            ort.__version__, path, str(err).strip().splitlines()[0][-200:])) from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise UserError("%s has %d graph inputs (%s); an exported classifier has only data"
                        % (path, len(inputs), ", ".join(i.name for i in inputs[:3])))
    return session, inputs[0].name, inputs[0].shape


def _onnx_info(path, input_size):
    """Input size and preprocessing of an ONNX file: its stored sidecar, the ``.json``
    beside it, or the defaults at the graph's input size."""
    from .onnx import read_onnx_info  # the ONNX form's module, only when reading its file
    info = read_onnx_info(path)
    base = path[:-5] if path.endswith(".onnx") else path
    if info is None and os.path.isfile(sidecar_path(base)):
        info = read_info(base)
    if info is None:
        info = describe({}, input_size or 224, kind=None, sidecar=False)
    return info


# --- opening: the runtimes' openers (registry.RUNTIMES) and a network in memory -------

def export_runner(prefix, ctxs=None, api="symbolblock", batch_size=32, input_size=None):
    """An MXNet export (``prefix``) on ``ctxs`` (default one CPU) through ``api``;
    ``input_size`` overrides its sidecar's."""
    ctxs = list(ctxs or [mx.cpu()])
    exported = open_export(prefix, input_size, ctx=ctxs)
    return MXNetRunner(prefix, exported.graph, exported.block, exported.info, ctxs, api,
                       batch_size)


def onnx_runner(path, ctxs=None, api="symbolblock", batch_size=32, input_size=None):
    """An ONNX file in ONNX Runtime, on the CPU alone; ``api`` is MXNet's, so only its
    default applies."""
    if any(ctx.device_type != "cpu" for ctx in ctxs or []):
        raise UserError("--runtime onnxruntime runs on the CPU here; drop --gpus")
    if api != "symbolblock":
        raise UserError("--api chooses the MXNet API; it does not apply to --runtime "
                        "onnxruntime")
    return OnnxRunner(path, input_size, batch_size)


def network_runner(net, info, name, ctxs=None, api="symbolblock", batch_size=32):
    """A network in memory (a checkpoint's) in MXNet, as its export would run: the graph
    it traces at ``info["input_size"]``, with its weights, through ``api``.

    Parameters
    ----------
    net : HybridBlock
        The network (a :class:`~mobilenet_skip.models.MobileNetSkip`).
    info : dict
        Its sidecar (:func:`~.artifact.describe`).
    name : str
        What the messages call it: the checkpoint file.
    """
    ctxs = list(ctxs or [mx.cpu()])
    check_network(net, info["input_size"], name)
    graph = graph_of(net, info["input_size"])
    block, _ = open_graph(graph, info["input_size"], ctxs, name)
    return MXNetRunner(name, graph, block, info, ctxs, api, batch_size)


def open_runner(runtime, path, ctxs=None, api="symbolblock", batch_size=32, input_size=None):
    """``path`` opened by the runtime named ``runtime`` (a key of
    :data:`~.registry.RUNTIMES`)."""
    return RUNTIMES[runtime].resolved()(path, ctxs=ctxs, api=api, batch_size=batch_size,
                                        input_size=input_size)
