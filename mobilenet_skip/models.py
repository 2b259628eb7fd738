"""The five networks of the paper's Table 1, built from one table and four blocks.

Every variant is a row of :data:`VARIANTS` (which skips, which activation order)
applied to the same layer list, :data:`TABLE1`; no variant has code of its own.
"""
from mxnet import nd
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock
from mxnet.gluon.nn import BatchNorm

__all__ = ["TABLE1", "STEM_CHANNELS", "VARIANTS", "Stem", "DWUnit", "Projection",
           "DWBlock", "MobileNetSkip", "skip_kind", "check_input_shape", "canonical_name",
           "get_model", "list_models", "MIN_INPUT_SIZE", "BN_DEFAULTS", "norm_kwargs_from"]

STEM_CHANNELS = 32  # Table 1, Conv_1: 112x112x32

# Table 1, one row per DW block: (name, output channels at width 1.0, stride).
# Conv_14 is stride 1: MobileNet v1's table prints s2 there, but its output is
# 7x7 like Conv_13's, and every implementation (and this paper's 7x7 row) uses 1.
TABLE1 = (
    ("block2", 64, 1),
    ("block3", 128, 2),
    ("block4", 128, 1),
    ("block5", 256, 2),
    ("block6", 256, 1),
    ("block7", 512, 2),
    ("block8", 512, 1),
    ("block9", 512, 1),
    ("block10", 512, 1),
    ("block11", 512, 1),
    ("block12", 512, 1),
    ("block13", 1024, 2),
    ("block14", 1024, 1),
)

# Table 1's last row: which skips ("connect") and which activation order.
VARIANTS = {
    "mobilenet": dict(connect="none", preact=False),
    "simple-connect": dict(connect="simple", preact=False),
    "full-connect": dict(connect="full", preact=False),
    "simple-connect-pre-act": dict(connect="simple", preact=True),
    "full-connect-pre-act": dict(connect="full", preact=True),
}

MIN_INPUT_SIZE = 32  # total stride of the network

# MXNet Gluon's BatchNorm defaults: what every run made before the recipe had BN keys used.
BN_DEFAULTS = {"bn_momentum": 0.9, "bn_eps": 1e-5}


def norm_kwargs_from(cfg):
    """BatchNorm arguments (``momentum``, ``epsilon``) from a recipe's ``bn_momentum`` and
    ``bn_eps``; a config without them (an older run's config.yaml) gets :data:`BN_DEFAULTS`.

    Epsilon is part of the inference graph (an export's symbol carries it), so whatever
    rebuilds a trained network from its config must pass these too.
    """
    cfg = cfg or {}
    return {"momentum": float(cfg.get("bn_momentum", BN_DEFAULTS["bn_momentum"])),
            "epsilon": float(cfg.get("bn_eps", BN_DEFAULTS["bn_eps"]))}


def skip_kind(connect, in_channels, channels, stride):
    """Skip of one DW block under a connection scheme (Table 1's middle columns).

    Returns ``"identity"`` where input and output shapes match (simple- and
    full-connect), ``"projection"`` where they differ under full-connect, else None.
    Decided on the width-1.0 channels so that rounding at small widths never moves a skip.
    """
    if connect not in ("none", "simple", "full"):
        raise ValueError("connect must be 'none', 'simple' or 'full', got %r" % (connect,))
    if connect == "none":
        return None
    if in_channels == channels and stride == 1:
        return "identity"
    return "projection" if connect == "full" else None


def _norm(norm_layer, norm_kwargs, in_channels, prefix):
    return norm_layer(in_channels=in_channels, prefix=prefix, **(norm_kwargs or {}))


def _relu(F, x):
    # Activation(relu) rather than F.relu: it is the op MKLDNN fuses into conv+BN.
    return F.Activation(x, act_type="relu")


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
            self.bn = None if preact else _norm(norm_layer, norm_kwargs, channels, "bn_")

    def hybrid_forward(self, F, x):
        x = self.conv(x)
        if self.bn is not None:
            x = _relu(F, self.bn(x))
        return x


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
            self.dw_bn = _norm(norm_layer, norm_kwargs, in_channels, "dw_bn_")
            self.pw = nn.Conv2D(channels, 1, use_bias=False, in_channels=in_channels,
                                prefix="pw_")
            self.pw_bn = None if preact else _norm(norm_layer, norm_kwargs, channels, "pw_bn_")

    def hybrid_forward(self, F, x):
        x = self.pw(_relu(F, self.dw_bn(self.dw(x))))
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
            self.bn = _norm(norm_layer, norm_kwargs, channels, "bn_") if use_norm else None

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
            self.pre_bn = _norm(norm_layer, norm_kwargs, in_channels, "pre_bn_") if preact else None
            self.body = DWUnit(in_channels, channels, stride, preact=preact, prefix="body_", **norm)
            self.proj = (Projection(in_channels, channels, stride, use_norm=not preact,
                                    prefix="proj_", **norm)
                         if skip == "projection" else None)

    def hybrid_forward(self, F, x):
        a = _relu(F, self.pre_bn(x)) if self.preact else x
        y = self.body(a)
        if self.skip == "identity":
            y = F.elemwise_add(y, x)
        elif self.skip == "projection":
            y = F.elemwise_add(y, self.proj(a))
        return y if self.preact else _relu(F, y)


class MobileNetSkip(HybridBlock):
    """MobileNet v1 with the paper's skip connections (Table 1).

    Stem, the 13 DW blocks ``block2`` ... ``block14`` (named after Table 1's
    Conv_2 ... Conv_14), global average pooling and a dense classifier. Pre-act
    networks add a final BN-ReLU before pooling, as ResNet v2 does, because their
    last block's sum is otherwise never normalised or rectified.

    Parameters
    ----------
    multiplier : float
        Width multiplier; channels are ``int(c * multiplier)`` as in gluoncv.
    classes : int
        Classifier outputs.
    connect : {"none", "simple", "full"}
        Skip scheme (Table 1 columns).
    preact : bool
        Pre-activation (Table 1's last two columns).
    norm_layer, norm_kwargs
        Normalisation layer and its extra arguments, passed to every block.
    name : str, optional
        Variant name recorded on the network (``net.variant``).
    """

    def __init__(self, multiplier=1.0, classes=1000, connect="none", preact=False,
                 norm_layer=BatchNorm, norm_kwargs=None, name=None, **kwargs):
        super(MobileNetSkip, self).__init__(**kwargs)
        multiplier = float(multiplier)
        if not multiplier > 0:
            raise ValueError("multiplier must be positive, got %r" % (multiplier,))
        if int(STEM_CHANNELS * multiplier) < 1:
            raise ValueError("multiplier %g leaves the 32-channel stem with no channels; "
                             "use at least %g" % (multiplier, 1.0 / STEM_CHANNELS))
        if int(classes) < 1:
            raise ValueError("classes must be at least 1, got %r" % (classes,))
        skip_kind(connect, 0, 0, 1)  # validates `connect`
        self.variant = name
        self.multiplier, self.classes = multiplier, int(classes)
        self.connect, self.preact = connect, preact
        self.block_names = [row[0] for row in TABLE1]
        norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        width = lambda c: int(c * multiplier)  # noqa: E731 - gluoncv's rounding
        with self.name_scope():
            self.stem = Stem(width(STEM_CHANNELS), preact=preact, prefix="stem_", **norm)
            in_c = STEM_CHANNELS
            for block, out_c, stride in TABLE1:
                skip = skip_kind(connect, in_c, out_c, stride)
                setattr(self, block, DWBlock(width(in_c), width(out_c), stride, skip=skip,
                                             preact=preact, prefix=block + "_", **norm))
                in_c = out_c
            self.post_bn = (_norm(norm_layer, norm_kwargs, width(in_c), "post_bn_")
                            if preact else None)
            self.output = nn.Dense(self.classes, in_units=width(in_c), prefix="output_")

    @property
    def blocks(self):
        """The 13 DW blocks in order."""
        return [getattr(self, name) for name in self.block_names]

    def forward(self, x, *args):
        if isinstance(x, nd.NDArray):
            check_input_shape(x.shape)
        return super(MobileNetSkip, self).forward(x, *args)

    def hybrid_forward(self, F, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        if self.post_bn is not None:
            x = _relu(F, self.post_bn(x))
        x = F.flatten(F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg"))
        return self.output(x)


def check_input_shape(shape):
    """Raise ValueError unless ``shape`` is an NCHW batch of 3-channel images of side >= 32."""
    if len(shape) != 4 or shape[1] != 3:
        raise ValueError("expected an NCHW batch of 3-channel images, got shape %s"
                         % (tuple(shape),))
    if min(shape[2:]) < MIN_INPUT_SIZE:
        raise ValueError("input %dx%d is too small: the network has stride 32, so use "
                         "images of at least %dx%d" % (shape[2], shape[3],
                                                       MIN_INPUT_SIZE, MIN_INPUT_SIZE))


def list_models():
    """Names accepted by :func:`get_model`, in Table 3's order."""
    return list(VARIANTS)


def canonical_name(name):
    """Validate a model name (``_`` may stand for ``-``) and return its registry key."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in VARIANTS:
        raise ValueError("unknown model %r; valid names: %s" % (name, ", ".join(VARIANTS)))
    return key


def get_model(name, multiplier=1.0, classes=1000, **kwargs):
    """Build a network of the paper by name.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.
    multiplier : float
        Width multiplier (0.25, 0.5, 0.75, 1.0 or any positive value).
    classes : int
        Classifier outputs.
    **kwargs
        ``norm_layer``, ``norm_kwargs``, ``prefix``, ``params``, or overrides of
        the variant's ``connect``/``preact``.

    Returns
    -------
    MobileNetSkip
        An uninitialised ``HybridBlock``.
    """
    key = canonical_name(name)
    config = dict(VARIANTS[key])
    config.update(kwargs)
    return MobileNetSkip(multiplier=multiplier, classes=classes, name=key, **config)
