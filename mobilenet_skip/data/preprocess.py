"""Validation preprocessing as one value: the paper's single 224 centre crop.

The shorter side goes to ``round(input_size / crop_ratio)`` (256 for 224), the
central ``input_size`` square is kept and RGB is normalised with the mean/std.
:class:`Preprocessing` holds those settings; the val iterator, single-image
loading, INT8 calibration, the benchmark and an export's sidecar all read them
from it, so the arithmetic exists once (:attr:`Preprocessing.resize`).
"""
from collections import namedtuple

from ..errors import UserError

__all__ = ["Preprocessing", "DEFAULT", "KEYS", "check_field"]

# The fields a sidecar and a recipe share; channel order is fixed (RGB) and recorded
# for readers outside this package.
KEYS = ("input_size", "crop_ratio", "mean_rgb", "std_rgb")

# What each field must be: (test, what), for a recipe's keys and a sidecar's alike.
RULES = {
    "input_size": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                   "a positive integer"),
    "crop_ratio": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "mean_rgb": (lambda v: len(v) == 3 and all(float(x) == x for x in v),
                 "three numbers, R G B"),
    "std_rgb": (lambda v: len(v) == 3 and min(v) > 0, "three positive numbers, R G B"),
}


def check_field(key, value, source):
    """``value`` if it is a valid ``key`` (one of :data:`KEYS`), else a :class:`UserError`
    ``"<source> <key>=<value> is invalid: it must be <what>"``."""
    ok, what = RULES[key]
    try:
        good = ok(value)
    except (TypeError, ValueError):
        good = False
    if not good:
        shown = list(value) if isinstance(value, tuple) else value
        raise UserError("%s %s=%r is invalid: it must be %s" % (source, key, shown, what))
    return value

_Fields = namedtuple("_Fields", KEYS + ("channels",))


class Preprocessing(_Fields):
    """Input size, crop ratio, mean and std (RGB, pixel units) of validation.

    Parameters
    ----------
    input_size : int
        Side of the square network input.
    crop_ratio : float
        Centre crop / resized shorter side, in (0, 1]: 0.875 is 224 of 256.
    mean_rgb, std_rgb : sequence of 3 floats
        ``(pixel - mean) / std`` per RGB channel, pixels in 0..255.
    channels : str
        Channel order the network sees; always ``"RGB"``.
    """
    __slots__ = ()

    def __new__(cls, input_size=224, crop_ratio=0.875, mean_rgb=(123.68, 116.779, 103.939),
                std_rgb=(58.393, 57.12, 57.375), channels="RGB"):
        return super().__new__(cls, input_size, crop_ratio, tuple(mean_rgb), tuple(std_rgb),
                               channels)

    @classmethod
    def of(cls, values):
        """The transform of a resolved recipe (or any mapping holding the ``KEYS``, typed
        and checked already)."""
        return cls(*(values[k] for k in KEYS))

    @classmethod
    def from_dict(cls, values, **overrides):
        """From a sidecar (or a partial mapping): its ``KEYS``, the defaults for missing
        ones, checked."""
        values = dict(values or {})
        values.update(overrides)
        kept = {k: values[k] for k in KEYS if values.get(k) is not None}
        return cls(**kept).checked()

    def checked(self, source="data setting"):
        """Self, or a :class:`UserError` naming the first invalid field."""
        for key in KEYS:
            check_field(key, getattr(self, key), source)
        return self

    @property
    def resize(self):
        """Shorter side before the centre crop: 256 for 224 at the usual 0.875."""
        return int(round(self.input_size / self.crop_ratio))

    def to_dict(self):
        """The sidecar's preprocessing entries (JSON-ready)."""
        return {"input_size": int(self.input_size), "crop_ratio": float(self.crop_ratio),
                "mean_rgb": [float(v) for v in self.mean_rgb],
                "std_rgb": [float(v) for v in self.std_rgb]}

    def record_iter_args(self):
        """``ImageRecordIter`` arguments of the val transform."""
        r, g, b = self.mean_rgb
        sr, sg, sb = self.std_rgb
        return dict(data_shape=(3, self.input_size, self.input_size), resize=self.resize,
                    rand_crop=False, rand_mirror=False, mean_r=r, mean_g=g, mean_b=b,
                    std_r=sr, std_g=sg, std_b=sb)

    def image(self, img):
        """One decoded ``H x W x 3`` uint8 RGB image as a ``1 x 3 x S x S`` float32 batch.

        ``mx.image`` resizes with the OpenCV built into MXNet, bilinear (``interp=1``,
        ImageRecordIter's default) and the longer side by integer division, as
        ImageRecordIter does: one image gets the input it had in validation.
        """
        import mxnet as mx  # here, not at the top: a recipe resolves before MXNet loads

        img = mx.image.resize_short(img, self.resize, interp=1)
        crop = mx.image.center_crop(img, (self.input_size, self.input_size), interp=1)[0]
        crop = mx.image.color_normalize(crop.astype("float32"), mx.nd.array(self.mean_rgb),
                                        mx.nd.array(self.std_rgb))
        return crop.transpose((2, 0, 1)).expand_dims(0)

    def gluon_transform(self):
        """``gluon.data.vision.transforms`` doing the val transform on an HWC uint8 image."""
        from mxnet.gluon.data.vision import transforms
        return transforms.Compose([transforms.Resize(self.resize, keep_ratio=True),
                                   transforms.CenterCrop(self.input_size)]
                                  + self.gluon_normalize())

    def gluon_normalize(self):
        """``transforms`` from an HWC uint8 crop to the network's normalised CHW float32."""
        from mxnet.gluon.data.vision import transforms
        return [transforms.ToTensor(),
                transforms.Normalize([m / 255.0 for m in self.mean_rgb],
                                     [s / 255.0 for s in self.std_rgb])]

    def describe(self):
        """``input 224 (shorter side to 256, centre crop)``."""
        return "input %d (shorter side to %d, centre crop)" % (self.input_size, self.resize)


DEFAULT = Preprocessing()
