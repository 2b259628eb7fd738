"""The optimiser side of training: the lr schedule as a function of epochs, the lr's
linear scaling with the global batch, TensorFlow's RMSProp, and optimizer state saved
without pickle.

The schedule is a pure function of progress in epochs (``epoch + batch / batches``),
so a run resumed with another device count, worker count or batch size gets the
recipe's lr for every epoch; the training loop sets it before each update, and no
MXNet ``lr_scheduler`` object exists that a checkpoint could bring back stale.

Optimizer state is stored as NDArrays (``mx.nd.save``) plus a small JSON description
(which array belongs where, the update counters). Loading never unpickles: a run
folder from someone else is data, not code.
"""
import math

import mxnet as mx

from .errors import UserError

__all__ = ["effective_lr", "schedule", "TFRMSProp", "create_optimizer", "optimizer_name",
           "save_states", "load_states", "STATE_FORMAT"]

STATE_FORMAT = 1  # the "optimizer_state" JSON a checkpoint's marker carries


def effective_lr(cfg, global_batch):
    """The recipe's ``(lr, warmup_lr)`` scaled linearly to ``global_batch``.

    ``lr_batch`` is the global batch the recipe's lr was set for (64 in the ImageNet
    recipes: the paper's 2 GPUs x 32); 0 uses the lr as given.

    Raises
    ------
    UserError
        For a negative ``lr_batch`` or a global batch below 1.
    """
    lr_batch = int(cfg.get("lr_batch", 0))
    if lr_batch < 0:
        raise UserError("lr_batch must be 0 (no scaling) or the global batch the recipe's lr "
                        "is for, such as 64; got %d" % lr_batch)
    if int(global_batch) < 1:
        raise UserError("the global batch must be at least 1, got %r" % (global_batch,))
    factor = float(global_batch) / lr_batch if lr_batch else 1.0
    return cfg["lr"] * factor, cfg["warmup_lr"] * factor


def schedule(cfg, global_batch=None):
    """The recipe's lr as a function of progress in epochs (a float: 2.5 = half-way
    through the third epoch).

    Linear warm-up from ``warmup_lr`` over ``warmup_epochs``, then ``exponential``
    (``lr_decay`` every ``lr_decay_period`` epochs), ``step`` (``lr_decay`` at each of
    ``lr_decay_epochs``) or ``cosine`` (to 0 at ``num_epochs``). With ``global_batch``
    the rates are scaled as :func:`effective_lr` says.
    """
    if global_batch is None:
        lr, warmup_lr = float(cfg["lr"]), float(cfg["warmup_lr"])
    else:
        lr, warmup_lr = effective_lr(cfg, global_batch)
    warmup, mode, decay = int(cfg["warmup_epochs"]), cfg["lr_mode"], float(cfg["lr_decay"])
    main_epochs = max(int(cfg["num_epochs"]) - warmup, 1)
    period = int(cfg["lr_decay_period"])
    steps = sorted(int(e) for e in cfg["lr_decay_epochs"] if int(e) > warmup)

    def lr_at(epoch):
        epoch = float(epoch)
        if epoch < warmup:
            return warmup_lr + (lr - warmup_lr) * epoch / warmup
        if mode == "cosine":
            done = min((epoch - warmup) / main_epochs, 1.0)
            return lr * (1 + math.cos(math.pi * done)) / 2
        if mode == "exponential":
            return lr * decay ** math.floor((epoch - warmup) / period)
        return lr * decay ** sum(1 for s in steps if epoch >= s)
    return lr_at


@mx.optimizer.register
class TFRMSProp(mx.optimizer.Optimizer):
    """TensorFlow's RMSProp with momentum, the optimiser of Inception-v3's training.

    Per weight, with ``g = rescale_grad * grad + wd * weight``::

        ms  = decay * ms + (1 - decay) * g * g
        mom = momentum * mom + lr * g / sqrt(ms + epsilon)
        weight -= mom

    As in TensorFlow's source (``tensorflow/python/training/rmsprop.py``,
    ``RMSPropOptimizer._create_slots`` makes the ``rms`` slot with
    ``init_ops.ones_initializer`` and ``momentum`` with zeros; the ``ApplyRMSProp``
    kernel, documented at ``tf.raw_ops.ApplyRMSProp``, divides by
    ``sqrt(ms + epsilon)``, epsilon *inside* the root): the mean square starts at ONES
    and epsilon sits under the square root. That is why Inception-v3's epsilon of 1.0
    is harmless. MXNet's own ``RMSProp`` differs in all three points (no momentum when
    not centred, zeros, epsilon outside the root).

    Parameters
    ----------
    decay, momentum, epsilon : float
        TF's ``decay`` (recipe ``rmsprop_decay``), ``momentum`` and ``epsilon``
        (``rmsprop_eps``).
    """

    def __init__(self, learning_rate=0.001, decay=0.9, momentum=0.9, epsilon=1.0, **kwargs):
        super(TFRMSProp, self).__init__(learning_rate=learning_rate, **kwargs)
        self.decay, self.momentum, self.epsilon = float(decay), float(momentum), float(epsilon)

    def create_state(self, index, weight):
        """(mean square, momentum): ones and zeros, as TF's slots."""
        return (mx.nd.ones(weight.shape, weight.context, dtype=weight.dtype),
                mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype))

    def update(self, index, weight, grad, state):
        self._update_count(index)
        lr, wd = self._get_lr(index), self._get_wd(index)
        ms, mom = state
        g = grad * self.rescale_grad
        if self.clip_gradient is not None:
            g = mx.nd.clip(g, -self.clip_gradient, self.clip_gradient)
        if wd:
            g = g + wd * weight
        ms *= self.decay
        ms += (1 - self.decay) * mx.nd.square(g)
        mom *= self.momentum
        mom += lr * g / mx.nd.sqrt(ms + self.epsilon)
        weight -= mom


def optimizer_name(cfg):
    """The registered MXNet optimizer a recipe's ``optimizer`` means."""
    return {"rmsprop": "tfrmsprop"}.get(cfg["optimizer"], cfg["optimizer"])


def create_optimizer(cfg, global_batch):
    """The recipe's optimizer at the lr of epoch 0 (the loop sets it before each update)."""
    common = dict(learning_rate=schedule(cfg, global_batch)(0.0), wd=cfg["wd"],
                  multi_precision=cfg["dtype"] == "float16")
    if cfg["optimizer"] == "rmsprop":
        return mx.optimizer.create("tfrmsprop", decay=cfg["rmsprop_decay"],
                                   momentum=cfg["momentum"], epsilon=cfg["rmsprop_eps"],
                                   **common)
    return mx.optimizer.create(cfg["optimizer"], momentum=cfg["momentum"], **common)


def _flatten(state, key, arrays):
    """A JSON layout of a (nested) state: null, an array's name, or a list of layouts."""
    if state is None:
        return None
    if isinstance(state, mx.nd.NDArray):
        arrays[key] = state
        return key
    if isinstance(state, (tuple, list)):
        return [_flatten(s, "%s.%d" % (key, i), arrays) for i, s in enumerate(state)]
    raise TypeError("cannot save optimizer state of type %s" % type(state).__name__)


def _unflatten(layout, arrays, ctx):
    if layout is None:
        return None
    if isinstance(layout, str):
        return arrays[layout].copyto(ctx)
    return tuple(_unflatten(item, arrays, ctx) for item in layout)


def _signature(state):
    """Nesting, array shapes and dtypes: what must agree for a state to carry over."""
    if state is None:
        return None
    if isinstance(state, mx.nd.NDArray):
        return (tuple(state.shape), str(state.dtype))
    return [_signature(s) for s in state]


def save_states(trainer, path, write):
    """Save the Trainer's optimizer state: arrays through ``write(path, fn)`` (an atomic
    writer calling ``fn(tmp_path)``) with ``mx.nd.save``, the rest returned as JSON.

    Every device holds the same state after the all-reduce, so the first one's is saved.
    """
    opt = trainer._optimizer
    updater = trainer._updaters[0]
    arrays = {}
    layout = {str(i): _flatten(s, "s%d" % i, arrays) for i, s in sorted(updater.states.items())}
    write(path, lambda tmp: mx.nd.save(tmp, arrays))
    device = trainer._contexts[0].device_id
    counts = opt._all_index_update_counts.get(device, opt._index_update_count)
    return {"format": STATE_FORMAT, "optimizer": type(opt).__name__.lower(),
            "num_update": int(opt.num_update),
            "update_counts": {str(k): int(v) for k, v in sorted(counts.items())},
            "layout": layout}


def _refuse(path, why):
    raise UserError("--resume: %s %s; a run folder is data, not code, so only this "
                    "package's own state format is read: pass --overwrite to start again (or "
                    "another --save-dir)" % (path, why))


def load_states(trainer, path, info):
    """Restore arrays and update counters saved by :func:`save_states` into a Trainer
    whose optimizer was built from the NEW settings (lr, wd, momentum ... stay new).

    Returns
    -------
    list of int
        Parameter indices whose saved state does not fit the new optimizer's layout
        (such as momentum 0 -> 0.9) and that therefore start afresh.

    Raises
    ------
    UserError
        When ``info`` is missing (an old pickled ``.states``), the file is not an
        ``mx.nd.save`` file, or it belongs to another optimizer or network.
    """
    if not isinstance(info, dict) or info.get("format") != STATE_FORMAT:
        _refuse(path, "is in the old pickled format (or has no state description in its "
                      ".json marker) and is not loaded")
    opt = trainer._optimizer
    if info.get("optimizer") != type(opt).__name__.lower():
        raise UserError("--resume: %s holds %s state but the run now uses %s; resume with "
                        "the optimizer it was trained with, or start afresh with --overwrite"
                        % (path, info.get("optimizer"), type(opt).__name__.lower()))
    try:
        arrays = mx.nd.load(path)
    except Exception:  # MXNet's own parser refused it: no code ran
        _refuse(path, "is not an MXNet NDArray file")
    if not isinstance(arrays, dict):
        arrays = {}
    layout = info.get("layout", {})
    names = [n for n in _names(layout.values())]
    missing = [n for n in names if n not in arrays]
    if missing:
        _refuse(path, "lacks the arrays its .json marker lists (%s ...)" % missing[0])
    params = trainer._params
    fresh = []
    for key, item in sorted(layout.items(), key=lambda kv: int(kv[0])):
        index = int(key)
        if index >= len(params):
            _refuse(path, "has state for parameter %d of a network with %d" % (index,
                                                                             len(params)))
        weight = params[index].list_data()[0]
        new = opt.create_state_multi_precision(index, weight)
        old = _unflatten(item, arrays, weight.context)
        if _signature(new) != _signature(old):
            shapes = [s for s in _names([item]) if tuple(arrays[s].shape) not in
                      _shapes(_signature(new))]
            if shapes:
                _refuse(path, "does not fit this network (parameter %s)" % params[index].name)
            fresh.append(index)
            continue
        for updater, ctx in zip(trainer._updaters, trainer._contexts):
            updater.states[index] = _unflatten(item, arrays, ctx)
            updater.states_synced[index] = True
    counts = {int(k): int(v) for k, v in info.get("update_counts", {}).items()}
    opt._all_index_update_counts = {ctx.device_id: dict(counts) for ctx in trainer._contexts}
    opt._index_update_count = opt._all_index_update_counts[trainer._contexts[0].device_id]
    opt.num_update = int(info.get("num_update", 0))
    return fresh


def _names(layouts):
    for item in layouts:
        if isinstance(item, str):
            yield item
        elif isinstance(item, list):
            for name in _names(item):
                yield name


def _shapes(signature):
    if signature is None:
        return []
    if isinstance(signature, tuple):
        return [signature[0]]
    return [s for sig in signature for s in _shapes(sig)]
