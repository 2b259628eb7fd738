"""The network of Table 1: its layer list, :data:`TABLE1`, and :class:`MobileNetSkip`,
which stacks the blocks of :mod:`.blocks` along it with the skips a scheme asks for."""
import math

from mxnet import nd
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock
from mxnet.gluon.nn import BatchNorm

from .blocks import DWBlock, Stem, make_norm
from .fusion import bn_relu

__all__ = ["TABLE1", "STEM_CHANNELS", "MIN_INPUT_SIZE", "MAX_ARRAY_VALUES", "MAX_INPUT_SIZE",
           "MAX_MAP_VALUES", "MobileNetSkip", "skip_kind", "check_input_shape", "min_train_bytes"]

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

MIN_INPUT_SIZE = 32  # total stride of the network
# MXNet 1.9.1 as pip builds it (without USE_INT64_TENSOR_SIZE) refuses an array of 2^31 - 1
# values or more ("Size of tensor ... larger than 2^31 elements"); a 1 x 3 x S x S input
# stays within that up to S = 26754. A feature map must stay smaller still: oneDNN's
# BatchNorm after a convolution dies by SIGSEGV once one image's map passes 2 GiB of
# float32 (measured: a 16 x 5793 x 5793 map, 2^31 + 263,488 bytes, crashes; 16 x 5792 x
# 5793, 2^31 - 88,064 bytes, runs, as does a batch of two 16 x 5800 x 2901 maps).
MAX_ARRAY_VALUES = 2 ** 31 - 2
MAX_INPUT_SIZE = math.isqrt(MAX_ARRAY_VALUES // 3)
MAX_MAP_VALUES = 2 ** 29 - 1  # values of one image's feature map: under 2 GiB of float32
MAX_CHANNELS = 2 ** 31 - 1  # MXNet parses num_filter/num_hidden as a C int


def min_train_bytes(multiplier, input_size, classes, batch):
    """A lower bound on the memory that training one batch takes, from :data:`TABLE1` alone.

    Every weight is held with its gradient (the optimizer's state comes on top), and
    every image keeps at least its input, the stem's output and each block's depthwise
    and pointwise outputs for the backward pass, all float32. Nothing is built, so an
    input of 100,000 pixels or a multiplier of 1e9 is refused before MXNet fails to
    allocate it; it is a floor, not the peak (BN and ReLU outputs, projections and
    workspace come on top).
    """
    width = lambda c: int(c * multiplier)  # noqa: E731 - the network's rounding
    side = -(-int(input_size) // 2)  # the stem's stride-2 conv, padded
    weights = 27 * width(STEM_CHANNELS)
    kept = 3 * int(input_size) ** 2 + width(STEM_CHANNELS) * side ** 2
    in_c = STEM_CHANNELS
    for _, out_c, stride in TABLE1:
        side = -(-side // stride)
        weights += 9 * width(in_c) + width(in_c) * width(out_c)
        kept += (width(in_c) + width(out_c)) * side ** 2
        in_c = out_c
    weights += (width(in_c) + 1) * int(classes)
    return 4 * (2 * weights + int(batch) * kept)


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
        if int(TABLE1[-1][1] * multiplier) > MAX_CHANNELS:
            raise ValueError("multiplier %g gives the last block %d channels, more than MXNet's "
                             "limit of %d per layer; use a width such as 0.25 to 2"
                             % (multiplier, int(TABLE1[-1][1] * multiplier), MAX_CHANNELS))
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
            self.post_bn = (make_norm(norm_layer, norm_kwargs, width(in_c), "post_bn_",
                                      feeds_relu=True) if preact else None)
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
            x = bn_relu(F, self.post_bn, x)
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
