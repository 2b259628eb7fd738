"""The optimizer and the lr schedule as registries, the lr's linear scaling with the
global batch, and TensorFlow's RMSProp.

A new optimizer is one :func:`register_optimizer` entry (recipe name -> constructor from
the recipe), a new lr mode one :func:`register_lr_mode` entry; the recipe's choices are
these registries, so ``--optimizer``/``--lr-mode`` accept the new name at once.

The schedule is a pure function of progress in epochs (``epoch + batch / batches``),
so a run resumed with another device count, worker count or batch size gets the
recipe's lr for every epoch; the training loop sets it before each update, and no
MXNet ``lr_scheduler`` object exists that a checkpoint could bring back stale.
"""
import math
from collections import namedtuple

import mxnet as mx
from mxnet import gluon

from ..errors import UserError

__all__ = ["OPTIMIZERS", "LR_MODES", "register_optimizer", "register_lr_mode",
           "effective_lr", "schedule", "TFRMSProp", "create_optimizer", "make_trainer"]

FLOAT32_MAX = 3.4028234663852886e38  # MXNet holds every float setting (lr, wd, ...) as float32

Optimizer = namedtuple("Optimizer", ["create", "mxnet_name", "keys"])
Optimizer.__doc__ = ("A registered optimizer: ``create(cfg, **common)`` -> MXNet optimizer "
                     "(``common``: learning_rate, wd, multi_precision), the MXNet name its "
                     "state is saved under, and the recipe keys it reads.")

OPTIMIZERS = {}  # recipe name -> Optimizer
LR_MODES = {}    # recipe name -> mode(cfg, lr) -> (epoch -> lr), for epochs after warm-up


def register_optimizer(name, mxnet_name=None, keys=()):
    """Decorator: ``create(cfg, **common)`` becomes the recipe's ``optimizer: name``."""
    def add(create):
        OPTIMIZERS[name] = Optimizer(create, mxnet_name or name, tuple(keys))
        return create
    return add


def register_lr_mode(name):
    """Decorator: ``mode(cfg, lr)`` returning ``epoch -> lr`` becomes ``lr_mode: name``
    (called only past the warm-up; ``epoch`` counts from the run's start)."""
    def add(mode):
        LR_MODES[name] = mode
        return mode
    return add


def effective_lr(cfg, global_batch):
    """The recipe's ``(lr, warmup_lr)`` scaled linearly to ``global_batch``.

    ``lr_batch`` is the global batch the recipe's lr was set for (64 in the ImageNet
    recipes: the paper's 2 GPUs x 32); 0 uses the lr as given.

    Raises
    ------
    UserError
        For a negative ``lr_batch`` or a global batch below 1.
    """
    lr_batch = int(cfg.lr_batch)
    if lr_batch < 0:
        raise UserError("lr_batch must be 0 (no scaling) or the global batch the recipe's lr "
                        "is for, such as 64; got %d" % lr_batch)
    if int(global_batch) < 1:
        raise UserError("the global batch must be at least 1, got %r" % (global_batch,))
    factor = float(global_batch) / lr_batch if lr_batch else 1.0
    if max(cfg.lr, cfg.warmup_lr) * factor > FLOAT32_MAX:
        raise UserError("lr %g scaled to the global batch %d (x%g, lr_batch %d) is beyond "
                        "float32, which MXNet computes in; give a smaller --lr"
                        % (max(cfg.lr, cfg.warmup_lr), global_batch, factor, lr_batch))
    return cfg.lr * factor, cfg.warmup_lr * factor


def schedule(cfg, global_batch=None):
    """The recipe's lr as a function of progress in epochs (a float: 2.5 = half-way
    through the third epoch).

    Linear warm-up from ``warmup_lr`` over ``warmup_epochs``, then the ``lr_mode``
    entry of :data:`LR_MODES`. With ``global_batch`` the rates are scaled as
    :func:`effective_lr` says.
    """
    if global_batch is None:
        lr, warmup_lr = float(cfg.lr), float(cfg.warmup_lr)
    else:
        lr, warmup_lr = effective_lr(cfg, global_batch)
    warmup = int(cfg.warmup_epochs)
    after = LR_MODES[cfg.lr_mode](cfg, lr)

    def lr_at(epoch):
        epoch = float(epoch)
        if epoch < warmup:
            return warmup_lr + (lr - warmup_lr) * epoch / warmup
        return after(epoch)
    return lr_at


@register_lr_mode("exponential")
def _exponential(cfg, lr):
    """``lr_decay`` every ``lr_decay_period`` epochs."""
    warmup, decay, period = int(cfg.warmup_epochs), float(cfg.lr_decay), int(
        cfg.lr_decay_period)
    return lambda epoch: lr * decay ** math.floor((epoch - warmup) / period)


@register_lr_mode("step")
def _step(cfg, lr):
    """``lr_decay`` at each of ``lr_decay_epochs`` (those inside the warm-up ignored)."""
    warmup, decay = int(cfg.warmup_epochs), float(cfg.lr_decay)
    steps = sorted(int(e) for e in cfg.lr_decay_epochs if int(e) > warmup)
    return lambda epoch: lr * decay ** sum(1 for s in steps if epoch >= s)


@register_lr_mode("cosine")
def _cosine(cfg, lr):
    """Half a cosine from ``lr`` to 0 at ``num_epochs``."""
    warmup = int(cfg.warmup_epochs)
    main_epochs = max(int(cfg.num_epochs) - warmup, 1)
    return lambda epoch: lr * (1 + math.cos(math.pi * min((epoch - warmup) / main_epochs,
                                                          1.0))) / 2


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


@register_optimizer("sgd", keys=("momentum",))
def _sgd(cfg, **common):
    return mx.optimizer.create("sgd", momentum=cfg.momentum, **common)


@register_optimizer("nag", keys=("momentum",))
def _nag(cfg, **common):
    return mx.optimizer.create("nag", momentum=cfg.momentum, **common)


@register_optimizer("rmsprop", mxnet_name="tfrmsprop",
                    keys=("momentum", "rmsprop_decay", "rmsprop_eps"))
def _rmsprop(cfg, **common):
    return mx.optimizer.create("tfrmsprop", decay=cfg.rmsprop_decay,
                               momentum=cfg.momentum, epsilon=cfg.rmsprop_eps, **common)


def _entry(cfg):
    try:
        return OPTIMIZERS[cfg.optimizer]
    except KeyError:
        raise UserError("optimizer must be one of %s, got %r" % (" | ".join(OPTIMIZERS),
                                                                  cfg.optimizer))


def create_optimizer(cfg, global_batch):
    """The recipe's optimizer at the lr of epoch 0 (the loop sets it before each update)."""
    return _entry(cfg).create(cfg, learning_rate=schedule(cfg, global_batch)(0.0),
                              wd=cfg.wd, multi_precision=cfg.dtype == "float16")


def make_trainer(net, cfg, kvstore, global_batch):
    """A Gluon Trainer with the recipe's optimizer (lr scaled to ``global_batch``, no
    MXNet lr_scheduler); updates happen on the workers so that gradients can be
    clipped after the all-reduce."""
    return gluon.Trainer(net.collect_params(), create_optimizer(cfg, global_batch),
                         kvstore=kvstore, update_on_kvstore=False)
