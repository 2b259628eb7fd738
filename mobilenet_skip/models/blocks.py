"""The four blocks of Table 1: the stem (Conv_1), the DW unit F(x, w) of eq. (1), the
projection skip h(x), and the DW block that joins them under either activation order.

Where the paper is silent (its figures are missing), the choice made is in the
docstring of the block that makes it. Every BatchNorm that feeds a ReLU directly is
marked as such, for CPU training to fuse the pair (:mod:`.fusion`).
"""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock
from mxnet.gluon.nn import BatchNorm

from .fusion import bn_relu, mark_relu, relu, relu_after

__all__ = ["Stem", "DWUnit", "Projection", "DWBlock", "make_norm", "relu"]


def make_norm(norm_layer, norm_kwargs, in_channels, prefix, feeds_relu=False):
    """A normalisation layer; ``feeds_relu`` marks it as followed directly by a ReLU, which
    :func:`~.fusion.set_bn_relu_fusion` may fuse into it."""
    norm = norm_layer(in_channels=in_channels, prefix=prefix, **(norm_kwargs or {}))
    return mark_relu(norm) if feeds_relu else norm


class Stem(HybridBlock):
    """Conv_1 of Table 1: a 3x3 stride-2 convolution to 32 channels.

    Parameters
    ----------
    channels : int
        Output channels (32 x width multiplier).
    preact : bool
        With original activation the stem is conv-BN-ReLU, as in MobileNet v1.
        With pre-activation it is the bare conv: the first DW block's own BN-ReLU
        is the "first activation right after the first conv" of ResNet v2 (He et al.
        2016, sec. 4.1), so a second BN-ReLU here would only repeat it.
    norm_layer, norm_kwargs
        Normalisation layer and its extra arguments.
    """

    def __init__(self, channels, preact=False, norm_layer=BatchNorm, norm_kwargs=None,
                 **kwargs):
        super(Stem, self).__init__(**kwargs)
        with self.name_scope():
            self.conv = nn.Conv2D(channels, 3, strides=2, padding=1, use_bias=False,
                                  in_channels=3, prefix="conv_")
            self.bn = (None if preact
                       else make_norm(norm_layer, norm_kwargs, channels, "bn_", feeds_relu=True))

    def hybrid_forward(self, F, x):
        x = self.conv(x)
        return x if self.bn is None else bn_relu(F, self.bn, x)


class DWUnit(HybridBlock):
    """The residual function F(x, w) of eq. (1): the DW block's two convs as one unit.

    Original activation: ``dw3x3-BN-ReLU-pw1x1-BN`` (the last ReLU is eq. (2)'s f,
    applied by :class:`DWBlock` after the addition).
    Pre-activation: ``dw3x3-BN-ReLU-pw1x1``; the input arrives already
    pre-activated and the trailing BN belongs to the next block's pre-activation.

    Parameters
    ----------
    in_channels, channels : int
        Input channels (= depthwise groups) and pointwise output channels.
    stride : int
        Stride of the depthwise conv (Table 1).
    preact : bool
        Activation order (paper sec. 2.2, Fig. 4).
    norm_layer, norm_kwargs
        Normalisation layer and its extra arguments.
    """

    def __init__(self, in_channels, channels, stride, preact=False, norm_layer=BatchNorm,
                 norm_kwargs=None, **kwargs):
        super(DWUnit, self).__init__(**kwargs)
        with self.name_scope():
            self.dw = nn.Conv2D(in_channels, 3, strides=stride, padding=1,
                                groups=in_channels, use_bias=False,
                                in_channels=in_channels, prefix="dw_")
            self.dw_bn = make_norm(norm_layer, norm_kwargs, in_channels, "dw_bn_",
                                   feeds_relu=True)
            self.pw = nn.Conv2D(channels, 1, use_bias=False, in_channels=in_channels,
                                prefix="pw_")
            self.pw_bn = (None if preact
                          else make_norm(norm_layer, norm_kwargs, channels, "pw_bn_"))

    def hybrid_forward(self, F, x):
        x = self.pw(bn_relu(F, self.dw_bn, self.dw(x)))
        return x if self.pw_bn is None else self.pw_bn(x)


class Projection(HybridBlock):
    """The projection skip h(x) = g(x, w) of eq. (1), Table 1's "1x1 conv" entries.

    A 1x1 convolution with the block's stride, matching channels and resolution.
    With original activation it is followed by BN, so that both summands of
    eq. (1) are normalised (as ResNet's projection shortcut). With pre-activation
    it is the bare conv on the pre-activated input (ResNet v2's shortcut): the sum
    is normalised by the next block's pre-activation.

    Parameters
    ----------
    in_channels, channels : int
        Input and output channels.
    stride : int
        The block's stride.
    use_norm : bool
        Whether a BN follows the conv.
    norm_layer, norm_kwargs
        Normalisation layer and its extra arguments.
    """

    def __init__(self, in_channels, channels, stride, use_norm=True, norm_layer=BatchNorm,
                 norm_kwargs=None, **kwargs):
        super(Projection, self).__init__(**kwargs)
        with self.name_scope():
            self.conv = nn.Conv2D(channels, 1, strides=stride, use_bias=False,
                                  in_channels=in_channels, prefix="conv_")
            self.bn = make_norm(norm_layer, norm_kwargs, channels, "bn_") if use_norm else None

    def hybrid_forward(self, F, x):
        x = self.conv(x)
        return x if self.bn is None else self.bn(x)


class DWBlock(HybridBlock):
    """One DW block of Table 1 with its skip, eq. (1)-(2).

    Original activation: ``x_next = ReLU(h(x) + F(x))``; without a skip this is the
    plain MobileNet unit ``ReLU(F(x))``.
    Pre-activation (ResNet v2): ``a = ReLU(BN(x))``, ``x_next = h + F(a)`` with
    ``h = x`` (identity; the raw input, so the shortcut stays clean) or
    ``h = g(a)`` (projection, which shares the pre-activation), and no ReLU after
    the sum. Blocks without a skip use the same order, ``x_next = F(a)``, so the
    whole pre-act network keeps one activation order.

    Parameters
    ----------
    in_channels, channels, stride : int
        Shape of the block (Table 1).
    skip : {None, "identity", "projection"}
        The block's skip connection.
    preact : bool
        Activation order.
    norm_layer, norm_kwargs
        Normalisation layer and its extra arguments.
    """

    def __init__(self, in_channels, channels, stride, skip=None, preact=False,
                 norm_layer=BatchNorm, norm_kwargs=None, **kwargs):
        super(DWBlock, self).__init__(**kwargs)
        if skip not in (None, "identity", "projection"):
            raise ValueError("skip must be None, 'identity' or 'projection', got %r" % (skip,))
        if skip == "identity" and (in_channels != channels or stride != 1):
            raise ValueError("an identity skip needs matching shapes, got %d->%d channels, "
                             "stride %d" % (in_channels, channels, stride))
        self.in_channels, self.channels, self.stride = in_channels, channels, stride
        self.skip, self.preact = skip, preact
        norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.pre_bn = (make_norm(norm_layer, norm_kwargs, in_channels, "pre_bn_",
                                     feeds_relu=True) if preact else None)
            self.body = DWUnit(in_channels, channels, stride, preact=preact, prefix="body_", **norm)
            if skip is None and not preact:
                # Without a sum the block's ReLU follows F's last BN directly; after a
                # skip sum it never does, so that ReLU stays apart.
                mark_relu(self.body.pw_bn)
            self.proj = (Projection(in_channels, channels, stride, use_norm=not preact,
                                    prefix="proj_", **norm)
                         if skip == "projection" else None)

    def hybrid_forward(self, F, x):
        a = bn_relu(F, self.pre_bn, x) if self.preact else x
        y = self.body(a)
        if self.skip is None:
            return y if self.preact else relu_after(F, self.body.pw_bn, y)
        y = F.elemwise_add(y, x if self.skip == "identity" else self.proj(a))
        return y if self.preact else relu(F, y)
