"""The network as the recipe builds it: created (warm-started or fine-tuned), initialised,
weight-decay-masked, cast, BN-ReLU-fused where it can be and hybridized; and its
parameters' checksum."""
import hashlib
import logging

import mxnet as mx
from mxnet.gluon import nn

from ..errors import UserError
from ..models.gluoncv import load_gluoncv_params
from ..models import DWUnit, get_model, norm_kwargs_from
from ..models.fusion import fusion_supported, set_bn_relu_fusion
from .finetune import load_finetune, set_body_lr_mult

__all__ = ["build_net", "init_net", "choose_fusion", "hybridize", "params_checksum"]

log = logging.getLogger("mobilenet_skip")


def _init(cfg):
    if cfg.init == "msra":  # He et al.: N(0, 2/fan_in), right for ReLU nets
        return mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
    return mx.init.Xavier()


def build_net(cfg, ctxs, load=True):
    """The recipe's network (BatchNorm momentum/epsilon from ``bn_momentum``/``bn_eps``),
    initialised on ``ctxs``, cast, wd-masked; with ``load`` (not when a checkpoint's
    weights come next) warm-started from gluoncv (``warm_start``) or fine-tuned from a
    run or export of ours (``finetune``, :mod:`.finetune`), whose body trains at
    ``finetune_lr_mult`` x the lr."""
    if cfg.warm_start and cfg.finetune:
        raise UserError("--warm-start and --finetune both name starting weights; pass one")
    net = get_model(cfg.model, cfg.multiplier, cfg.classes,
                    norm_kwargs=norm_kwargs_from(cfg))
    if load and cfg.warm_start:
        left = load_gluoncv_params(net, cfg.warm_start, ctx=ctxs,
                                   load_output=cfg.classes == 1000)
        log.info("warm start from %s; %d parameters freshly initialised", cfg.warm_start,
                 len(left))
    net = init_net(net, cfg, ctxs)
    if cfg.finetune:
        if load:
            load_finetune(net, cfg)
        set_body_lr_mult(net, cfg.finetune_lr_mult)
    return net


def init_net(net, cfg, ctxs):
    """Initialise ``net``'s remaining parameters as the recipe says, on ``ctxs``; mask weight
    decay on BatchNorm and depthwise filters (``no_wd_dw_bn``) and on biases (``wd_bias``
    false; the classifier's is the only one); cast to the recipe's dtype.

    Any Gluon network goes through here the same way, so the benchmark trains gluoncv's
    ``mobilenet1.0`` exactly as it trains ours.
    """
    net.initialize(_init(cfg), ctx=ctxs)
    if cfg.no_wd_dw_bn:
        def no_decay(block):
            if isinstance(block, nn.BatchNorm):
                for p in block.params.values():
                    p.wd_mult = 0.0
            elif isinstance(block, DWUnit):
                block.dw.weight.wd_mult = 0.0  # MobileNet v1: none on depthwise filters
            elif isinstance(block, nn.Conv2D) and block._kwargs.get("num_group", 1) > 1:
                block.weight.wd_mult = 0.0  # another network's depthwise conv (gluoncv's)
        net.apply(no_decay)
    if not cfg.wd_bias:
        # Gluon names every bias "...bias"; BN's shift is "beta" (no_wd_dw_bn's business).
        for name, p in net.collect_params().items():
            if name.endswith("bias"):
                p.wd_mult = 0.0
    if cfg.dtype == "float16":
        net.cast("float16")
    return net


def choose_fusion(net, cfg):
    """Fuse ``net``'s BatchNorm-ReLU pairs if the recipe's ``fuse_bn_relu`` asks and its
    devices have the fused operator (see :func:`~..models.fusion.fusion_supported`), else
    unfuse them; log the choice. A network without marked pairs (gluoncv's) is left as it
    is. Returns the number of pairs fused.
    """
    ctxs = next(iter(net.collect_params().values())).list_ctx()
    supported, why = fusion_supported(ctxs, cfg.dtype)
    fuse = cfg.fuse_bn_relu and supported
    pairs = set_bn_relu_fusion(net, fuse)
    if pairs:
        log.info("BatchNorm-ReLU: %d pair(s) %s", pairs, "fused (oneDNN)" if fuse else
                 "unfused (%s)" % ("fuse_bn_relu is off" if supported else why))
    return pairs if fuse else 0


def hybridize(net, cfg):
    """Fuse as :func:`choose_fusion` decides, then hybridize as the recipe says: one static
    graph, memory planned once. Returns the number of BatchNorm-ReLU pairs fused."""
    fused = choose_fusion(net, cfg)
    if cfg.hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    return fused


def params_checksum(net):
    """MD5 of every parameter's saved bytes: the trained ones and the BatchNorm running
    statistics, as ``save_parameters`` writes them (the mean of the devices' copies).

    Under ``dist_sync`` the workers' statistics are averaged at each epoch's end and at a
    stop (:class:`~mobilenet_skip.train.dist.DistSyncStrategy`), so in-sync workers print
    the same.
    """
    digest = hashlib.md5()
    for name, p in sorted(net._collect_params_with_prefix().items()):
        digest.update(name.encode())
        value = p._reduce() if p.grad_req == "null" else p.data()
        digest.update(value.asnumpy().tobytes())
    return digest.hexdigest()
