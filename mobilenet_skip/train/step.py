"""One optimisation step and its running sums: the label-smoothed loss, the step the
loop and the benchmark run, and the per-device accumulator of loss and accuracy."""
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..optim.rules import make_trainer

__all__ = ["LabelSmoothingLoss", "TrainStep", "make_step", "Accumulator"]


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


def make_step(net, cfg, ctxs, kvstore, global_batch):
    """The recipe's Trainer and :class:`TrainStep` for an initialised ``net``: what
    ``fit`` trains with and what ``tools/benchmark.py train`` times."""
    trainer = make_trainer(net, cfg, kvstore, global_batch)
    return TrainStep(net, trainer, ctxs, cfg.label_smoothing, cfg.clip_gradient,
                     global_batch, cfg.dtype)


class Accumulator(object):
    """Per-device sums of loss and correct top-1, for the log window and the epoch.

    Nothing is read from the device until :meth:`read_window`/:meth:`read_epoch`,
    which sync once and report the first batch whose loss was not finite. An interrupted
    epoch's sums go into its checkpoint (:meth:`sums`) and come back on resume
    (:meth:`restore`).
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

    def sums(self, seconds):
        """The epoch's running sums so far (per device) and its ``seconds``, JSON-ready."""
        return {"loss": [float(v.asscalar()) for v in self.epoch_loss],
                "correct": [float(v.asscalar()) for v in self.epoch_correct],
                "count": int(self.epoch_count), "seconds": float(seconds)}

    def restore(self, sums):
        """Go on from :meth:`sums` (device by device when the device count is the same,
        so the float32 additions happen in the same order)."""
        for name in ("loss", "correct"):
            values, target = sums[name], getattr(self, "epoch_" + name)
            if len(values) != len(target):
                values = [sum(values)] + [0.0] * (len(target) - 1)
            for arr, v in zip(target, values):
                arr[:] = v
        self.epoch_count = int(sums["count"])
