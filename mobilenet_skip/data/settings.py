"""The data settings of a recipe, declared once: each key's default, help and rule.

:data:`mobilenet_skip.config.recipes.SCHEMA` includes these keys (so each is a recipe key and a
flag), and :func:`check` is the one validation of their values, used by the recipe
loader and by the iterators alike. The validation transform's four fields
(``input_size``, ``crop_ratio``, ``mean_rgb``, ``std_rgb``) take their defaults from
:class:`~mobilenet_skip.data.preprocess.Preprocessing` and are checked by it.
"""
from ..errors import UserError
from ..models import MIN_INPUT_SIZE
from .preprocess import DEFAULT as VAL, KEYS as VAL_KEYS, Preprocessing
from ..utils.values import coerce

__all__ = ["SCHEMA", "DEFAULTS", "check"]


def _threads(value):
    """``auto``, a positive count as an int, or None for anything else."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    return int(text) if text.isdigit() and int(text) >= 1 else None


_FRACTION = (lambda v: 0 < v <= 1, "in (0, 1]")

# key: (default, help, rule). The type of a value is its default's; a rule is
# (test, what the value must be), None where the type says it all or Preprocessing checks.
SCHEMA = {
    "rec_train": ("", "training .rec (its .idx beside it)", None),
    "rec_val": ("", "validation .rec (its .idx beside it)", None),
    # refused here, at the recipe, rather than once the network is built and fed
    "input_size": (VAL.input_size, "training and validation crop side (at least %d)"
                   % MIN_INPUT_SIZE,
                   (lambda v: v >= MIN_INPUT_SIZE,
                    "at least %d, the network's total stride (for smaller sources, such as "
                    "28 px, pack with --resize %d and train at --input-size %d)"
                    % (MIN_INPUT_SIZE, round(MIN_INPUT_SIZE / 0.875), MIN_INPUT_SIZE))),
    "crop_ratio": (VAL.crop_ratio, "validation centre crop / resized short side (224/256)",
                   None),
    "batch_size": (32, "images per device per step", (lambda v: v >= 1, "a positive integer")),
    # 0.25: light, MobileNet-style (Inception: 0.08)
    "min_random_area": (0.25, "smallest random-resized-crop area fraction", _FRACTION),
    "max_random_area": (1.0, "largest random-resized-crop area fraction", _FRACTION),
    "min_aspect_ratio": (0.75, "smallest random crop aspect ratio", _FRACTION),
    "max_aspect_ratio": (4.0 / 3.0, "largest random crop aspect ratio",
                         (lambda v: v >= 1, "at least 1")),
    "rand_mirror": (True, "random horizontal flips", None),
    "color_jitter": (0.0, "brightness/contrast/saturation jitter strength (0 = off)",
                     (lambda v: v >= 0, "0 (off) or a positive strength")),
    "mean_rgb": (list(VAL.mean_rgb), "per-channel mean subtracted from pixels", None),
    "std_rgb": (list(VAL.std_rgb), "per-channel std dividing pixels", None),
    "preprocess_threads": ("auto", "decode threads of ImageRecordIter: a number, or auto = "
                           "physical cores minus GPUs, at least 1",
                           (lambda v: _threads(v) is not None, "a positive number or auto")),
    "shuffle": (True, "shuffle training records every epoch", None),
}

DEFAULTS = {key: default for key, (default, _, _) in SCHEMA.items()}


def check(values, source="data setting"):
    """The data keys of ``values`` typed and checked; other keys are ignored.

    Parameters
    ----------
    values : dict
        Recipe values, all of them or some (a layer of a recipe, the flags).
    source : str
        Where they come from, to start an error message.

    Returns
    -------
    dict
        Those data keys, coerced to their default's type; ``preprocess_threads`` is
        ``"auto"`` or an int.

    Raises
    ------
    UserError
        Naming the key, what it must be and the value.
    """
    out = {k: coerce(k, SCHEMA[k][0], v, source) for k, v in values.items() if k in SCHEMA}
    Preprocessing(**{k: out[k] for k in VAL_KEYS if k in out}).checked(source + ":")
    for key, value in out.items():
        rule = SCHEMA[key][2]
        if rule and not rule[0](value):
            raise UserError("%s: %s must be %s, got %r" % (source, key, rule[1], value))
    # A pair is only checked when both are given: a flag may change one of a recipe's pair.
    if out.get("max_random_area", 1) < out.get("min_random_area", 0):
        raise UserError("%s: max_random_area must be at least min_random_area (%r), got %r"
                        % (source, out["min_random_area"], out["max_random_area"]))
    if "preprocess_threads" in out:
        out["preprocess_threads"] = _threads(out["preprocess_threads"])
    return out
