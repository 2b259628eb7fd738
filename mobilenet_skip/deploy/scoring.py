"""Single-centre-crop top-1/top-5 over a validation ``.rec`` of any
:class:`~.runtime.Runner`: an export through ``SymbolBlock`` or ``Module``, a checkpoint's
network in memory, an ONNX file in ONNX Runtime, and several forms side by side.

The batches come from ``data.val_iter`` configured by the runner's
:class:`~mobilenet_skip.data.preprocess.Preprocessing` (its sidecar), their labels checked
against the classes the network predicts as training checks them, and are scored by the
one :func:`~mobilenet_skip.runs.scorer.evaluate`, whichever runtime runs the network.
"""
import numpy as np

from ..data import records as data
from ..data.checks import CheckedBatches
from ..runs.scorer import evaluate
from ..runs.sidecar import val_config
from .runtime import APIS, open_runner

__all__ = ["score", "evaluate_export", "evaluate_onnx", "compare_exports", "APIS"]

# a label past the model's classes means another data set's val .rec, which would
# otherwise score low without a word (a 3-class model on the 10 digits: 0.178)
LABEL_FIX = ("no score is given. Evaluate on the val .rec of the classes the model was "
             "trained on, with the .synsets.txt that tools/im2rec.py --list writes beside "
             "it so that their names are checked too")


class _Recorder(object):
    """Passes calls through to ``net`` and keeps every output, in call order."""

    def __init__(self, net):
        self.net, self.outputs = net, []

    def __call__(self, x):
        out = self.net(x)
        self.outputs.append(out.astype("float32"))  # a copy: a Module reuses its output
        return out

    def logits(self):
        """Every output so far as one NumPy array, in call order."""
        return np.concatenate([o.asnumpy() for o in self.outputs])


def score(runner, rec, threads=None, keep_logits=False, per_image=False):
    """Single-centre-crop top-1/top-5 of ``runner`` over a ``.rec``.

    Parameters
    ----------
    runner : Runner
        The network, ready for batches of ``runner.batch_size`` images per device.
    rec : str
        Validation ``.rec`` (with its ``.idx``).
    threads : int, optional
        Decoding threads (default ``min(4, cores)``).
    keep_logits : bool
        Also return every image's logits, to compare two forms image by image.
    per_image : bool
        Also return each image's ``label``, ``pred`` and ``confidence``, for a
        :class:`~mobilenet_skip.deploy.report.ClassReport`.

    Raises
    ------
    UserError
        At the first batch holding a label that is not one of the
        ``runner.info["classes"]`` classes the network predicts.

    Returns
    -------
    dict
        :func:`~mobilenet_skip.runs.scorer.evaluate`'s (``top1``, ``top5``, ``loss``,
        ``images``, ``seconds``, ``classes`` and, with ``per_image``, its arrays),
        ``images_per_s`` (decoding included, after one untimed batch), ``info`` (the
        sidecar) and, with ``keep_logits``, ``logits`` (``images x classes``, file order:
        split_and_load cuts each batch into consecutive runs, one per device, in order).
    """
    net = _Recorder(runner) if keep_logits else runner
    batches = data.val_iter(val_config(runner.info, rec, runner.batch_size, threads),
                            len(runner.ctxs))
    if runner.info.get("classes"):
        batches = CheckedBatches(batches, runner.info["classes"], rec, fix=LABEL_FIX)
    result = evaluate(net, batches, runner.ctxs, per_image=per_image)
    result["images_per_s"] = result["images"] / max(result["seconds"], 1e-9)
    result["info"] = runner.info
    if keep_logits:
        result["logits"] = net.logits()
    return result


def evaluate_export(prefix, rec, ctxs=None, api="symbolblock", batch_size=32, input_size=None,
                    threads=None, keep_logits=False, per_image=False):
    """:func:`score` of an MXNet export (``prefix``) on ``ctxs`` (default one CPU), a batch
    holding ``batch_size`` images per device; ``input_size`` overrides its sidecar's."""
    return score(open_runner("mxnet", prefix, ctxs, api, batch_size, input_size), rec,
                 threads, keep_logits, per_image)


def evaluate_onnx(path, rec, batch_size=32, input_size=None, threads=None, keep_logits=False,
                  per_image=False):
    """:func:`score` of an ONNX file in ONNX Runtime: the same batches as
    :func:`evaluate_export` (the C++ ``ImageRecordIter``, same resize, crop and
    normalisation) scored the same way; only the network runs in ONNX Runtime."""
    return score(open_runner("onnxruntime", path, batch_size=batch_size,
                             input_size=input_size), rec, threads, keep_logits, per_image)


def compare_exports(outputs, rec, batch_size=32):
    """Top-1 of several forms of one model over ``rec``, and their agreement.

    Parameters
    ----------
    outputs : dict
        Name (``fp32``, ``int8``, ...) to ``(runtime, path)``: a key of
        :data:`~.registry.RUNTIMES` and what it opens, an export prefix (``mxnet``) or an
        ONNX file (``onnxruntime``); the first is the reference. A plain string is an
        MXNet export prefix.

    Returns
    -------
    list of dict
        Per form: ``kind`` (its name), ``top1``, ``top5``, ``images``, ``agreement``
        (share of images whose top-1 class equals the reference's) and ``top1_drop``
        (reference top-1 minus this one).
    """
    rows, reference = [], None
    for name, output in outputs.items():
        runtime, path = ("mxnet", output) if isinstance(output, str) else output
        r = score(open_runner(runtime, path, batch_size=batch_size), rec, keep_logits=True)
        pred = r["logits"].argmax(axis=1)
        if reference is None:
            reference = {"pred": pred, "top1": r["top1"]}
        rows.append({"kind": name, "top1": r["top1"], "top5": r["top5"], "images": r["images"],
                     "agreement": float((pred == reference["pred"]).mean()),
                     "top1_drop": reference["top1"] - r["top1"]})
    return rows
