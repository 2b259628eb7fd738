"""Training recipes: YAML files of flat keys, composed by ``base:`` plus overrides.

Every key is declared once in :data:`SCHEMA` (default, help); the recipe files set
values and say where each comes from, and :func:`add_flags` turns every key into a
command-line flag of the same name (``lr_mode`` -> ``--lr-mode``).
"""
import argparse
import os

import yaml

from .checkpoint import atomic_save
from .data import DEFAULTS as DATA_DEFAULTS
from .errors import UserError
from .models import BN_DEFAULTS, list_models
from .train import optim as _optim

__all__ = ["SCHEMA", "RECIPE_DIR", "ARCH_KEYS", "load_recipe", "default_recipe_path",
           "add_flags", "flag_overrides", "resolve", "dump", "validate"]

RECIPE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")

# Keys that fix the network's parameter shapes: a resume must not change them.
ARCH_KEYS = ("model", "multiplier", "classes")

# key: (default, help). The type of a flag is the type of its default.
SCHEMA = {
    # model
    "model": ("full-connect-pre-act", "network: one of %s" % ", ".join(list_models())),
    "multiplier": (1.0, "width multiplier"),
    "classes": (1000, "number of classes"),
    "warm_start": ("", "gluoncv mobilenet .params file to start from (post-activation models)"),
    # data: defaults live in mobilenet_skip.data.DEFAULTS
    "rec_train": ("", "training .rec (its .idx beside it)"),
    "rec_val": ("", "validation .rec (its .idx beside it)"),
    "input_size": (DATA_DEFAULTS["input_size"], "training and validation crop side"),
    "crop_ratio": (DATA_DEFAULTS["crop_ratio"], "validation centre crop / resized short side (224/256)"),
    "batch_size": (DATA_DEFAULTS["batch_size"], "images per device per step"),
    "min_random_area": (DATA_DEFAULTS["min_random_area"], "smallest random-resized-crop area fraction"),
    "max_random_area": (DATA_DEFAULTS["max_random_area"], "largest random-resized-crop area fraction"),
    "min_aspect_ratio": (DATA_DEFAULTS["min_aspect_ratio"], "smallest random crop aspect ratio"),
    "max_aspect_ratio": (DATA_DEFAULTS["max_aspect_ratio"], "largest random crop aspect ratio"),
    "rand_mirror": (DATA_DEFAULTS["rand_mirror"], "random horizontal flips"),
    "color_jitter": (DATA_DEFAULTS["color_jitter"], "brightness/contrast/saturation jitter strength (0 = off)"),
    "mean_rgb": (DATA_DEFAULTS["mean_rgb"], "per-channel mean subtracted from pixels"),
    "std_rgb": (DATA_DEFAULTS["std_rgb"], "per-channel std dividing pixels"),
    "preprocess_threads": (DATA_DEFAULTS["preprocess_threads"],
                           "decode threads of ImageRecordIter: a number, or auto = physical "
                           "cores minus GPUs, at least 1"),
    "shuffle": (DATA_DEFAULTS["shuffle"], "shuffle training records every epoch"),
    # optimisation
    "num_epochs": (100, "epochs to train"),
    "optimizer": ("sgd", "sgd | nag | rmsprop (TensorFlow's RMSProp with momentum, "
                  "Inception-v3's optimiser)"),
    "lr": (0.045, "base learning rate, for a global batch of lr_batch"),
    "lr_batch": (0, "global batch the lr is for: the lr is scaled by global batch / "
                    "lr_batch (0 = use lr as given)"),
    "momentum": (0.9, "momentum of sgd, nag and rmsprop"),
    "wd": (4e-5, "weight decay"),
    "no_wd_dw_bn": (True, "no weight decay on depthwise filters and BatchNorm"),
    "wd_bias": (True, "weight decay on biases too (the classifier's; MXNet decays every "
                "parameter, TF-slim only weights)"),
    "bn_momentum": (BN_DEFAULTS["bn_momentum"], "BatchNorm running-average momentum per step "
                    "(MXNet 0.9, TF-slim's decay 0.9997)"),
    "bn_eps": (BN_DEFAULTS["bn_eps"], "BatchNorm epsilon (MXNet Gluon 1e-5, TF-slim 1e-3)"),
    "rmsprop_decay": (0.9, "RMSProp decay of the mean-square average (TF's decay)"),
    "rmsprop_eps": (1.0, "RMSProp epsilon, under the square root as in TF"),
    "lr_mode": ("exponential", "exponential | step | cosine"),
    "lr_decay": (0.94, "lr factor per decay (exponential and step modes)"),
    "lr_decay_period": (2, "epochs between exponential decays"),
    "lr_decay_epochs": ([30, 60, 90], "epochs at which step mode decays"),
    "warmup_epochs": (0, "linear warm-up epochs from warmup_lr to lr"),
    "warmup_lr": (0.0, "learning rate at the start of warm-up (scaled like lr)"),
    "label_smoothing": (0.1, "label smoothing epsilon"),
    "clip_gradient": (2.0, "clip the global gradient norm to this (0 = off)"),
    "dtype": ("float32", "float32 | float16 (float16 keeps float32 master weights)"),
    "init": ("msra", "weight init: msra | xavier"),
    # devices and distribution
    "gpus": ("", "comma-separated GPU ids, e.g. 0,1 ('' = CPU)"),
    "cpu_contexts": (1, "number of CPU contexts when no GPU is used"),
    "kv_store": ("device", "device | local | nccl | dist_sync | dist_device_sync"),
    "dist_timeout": (600, "dist_sync: a worker exits when no step finishes for this many "
                     "seconds (a dead peer); must exceed rank 0's validation + checkpoint; "
                     "0 = wait forever"),
    "seed": (0, "random seed"),
    # bookkeeping
    "save_dir": ("runs/{model}", "checkpoints, logs and exports go here ({model} is expanded)"),
    "keep_checkpoints": (3, "keep this many recent epoch checkpoints (plus the best)"),
    "export_epoch": ("last", "epoch to export at the end: last | best (best picks on the "
                     "val set it reports, which flatters it)"),
    "log_interval": (50, "batches between log lines"),
    "batches_per_epoch": (0, "cap on batches per epoch (0 = the whole .rec; for smoke runs)"),
    "hybridize": (True, "hybridize with static_alloc/static_shape"),
}

CHOICES = {
    "optimizer": _optim.OPTIMIZERS,  # the registries themselves: a new entry is a choice
    "lr_mode": _optim.LR_MODES,
    "dtype": ("float32", "float16"),
    "init": ("msra", "xavier"),
    "kv_store": ("device", "local", "nccl", "dist_sync", "dist_device_sync"),
    "export_epoch": ("last", "best"),
}
POSITIVE = ("multiplier", "classes", "input_size", "batch_size", "num_epochs", "lr",
            "cpu_contexts", "log_interval", "lr_decay_period")


def default_recipe_path(model):
    """``recipes/<model>.yaml`` of the checkout."""
    return os.path.join(RECIPE_DIR, "%s.yaml" % model)


def _find_recipe(path, relative_to=None):
    candidates = [path]
    if relative_to and not os.path.isabs(path):
        candidates.insert(0, os.path.join(relative_to, path))
    if not os.path.isabs(path):
        candidates.append(os.path.join(RECIPE_DIR, path))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise UserError("recipe %s not found (looked in %s); pass an existing YAML file to "
                    "--recipe" % (path, ", ".join(sorted(set(os.path.dirname(os.path.abspath(c))
                                                              for c in candidates)))))


def load_recipe(path, _seen=None, _relative_to=None):
    """Read a recipe file and its ``base:`` chain into one flat dict (no defaults filled).

    Raises
    ------
    UserError
        For a missing file, bad YAML, a base cycle, or a key not in :data:`SCHEMA`
        (naming the key and the file).
    """
    path = _find_recipe(path, _relative_to)
    seen = list(_seen or [])
    if path in seen:
        raise UserError("recipe base cycle: %s" % " -> ".join(seen + [path]))
    try:
        with open(path) as f:
            values = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise UserError("recipe %s is not valid YAML: %s" % (path, str(err).splitlines()[0]))
    if not isinstance(values, dict):
        raise UserError("recipe %s must be a mapping of key: value lines" % path)
    base = values.pop("base", None)
    for key in values:
        if key not in SCHEMA:
            raise UserError("unknown key %r in recipe %s; valid keys: %s"
                            % (key, path, ", ".join(SCHEMA)))
    merged = load_recipe(base, seen + [path], os.path.dirname(path)) if base else {}
    merged.update(values)
    return merged


def _flag(key):
    return "--" + key.replace("_", "-")


def _parse_bool(text):
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError("expected true or false, got %r" % text)


def _list_parser(example):
    item = type(example[0]) if example else str

    def parse(text):
        try:
            return [item(v) for v in str(text).replace(" ", "").split(",") if v != ""]
        except ValueError:
            raise argparse.ArgumentTypeError("expected a comma-separated list of %s, got %r"
                                             % (item.__name__, text))
    return parse


def _parser_for(default):
    if isinstance(default, bool):
        return _parse_bool
    if isinstance(default, list):
        return _list_parser(default)
    return type(default)


class _Switch(argparse.Action):
    """A boolean recipe key as a switch: ``--key`` is true, ``--no-key`` false.

    ``--key false`` (the old form, a value after the flag) still works, so scripts
    written for it keep running; a bare ``--key`` no longer asks for an argument.
    """

    def __init__(self, option_strings, dest, negatives=(), **kwargs):
        self.negatives = tuple(negatives)
        super(_Switch, self).__init__(option_strings, dest, nargs="?", **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string in self.negatives:
            if values is not None:
                parser.error("%s takes no value (it means false); use %s %s instead"
                             % (option_string, self.option_strings[0], values))
            setattr(namespace, self.dest, False)
        else:
            setattr(namespace, self.dest, True if values is None else _parse_bool(values))


# Flags that gluoncv's train_imagenet.py spells differently, or that mean one key:
# key -> (extra option strings, note for --help).
ALIASES = {
    "lr_decay_epochs": (("--lr-decay-epoch",), "gluoncv's --lr-decay-epoch is the same list"),
    "label_smoothing": ((), "a bare --label-smoothing means 0.1, as gluoncv's switch; ours "
                            "also takes the epsilon"),
    "no_wd_dw_bn": (("--no-wd",), "--no-wd is gluoncv's name, but gluoncv spares BatchNorm "
                                  "and every bias, ours BatchNorm and depthwise filters"),
}
NEGATIVE_FLAGS = {"no_wd_dw_bn": "--wd-dw-bn"}  # "--no-no-wd-dw-bn" would be unreadable


def add_flags(parser):
    """Add one ``--flag`` per recipe key to an argparse parser (default: not given).

    Booleans are switches (``--rand-mirror`` / ``--no-rand-mirror``); gluoncv's names
    (``--lr-decay-epoch``, ``--no-wd``, ``--label-smoothing``, ``--num-gpus``) are
    accepted where they mean the same, and ``--help`` says where they differ.
    """
    group = parser.add_argument_group("recipe keys (each overrides the recipe's value)")
    for key, (default, help_text) in SCHEMA.items():
        shown = ",".join(str(v) for v in default) if isinstance(default, list) else default
        extra, note = ALIASES.get(key, ((), ""))
        help_text = "%s (schema default: %s)%s" % (help_text, shown, "; " + note if note else "")
        flags = (_flag(key),) + tuple(extra)
        if isinstance(default, bool):
            negative = NEGATIVE_FLAGS.get(key, "--no-" + key.replace("_", "-"))
            group.add_argument(*(flags + (negative,)), dest=key, action=_Switch,
                               negatives=(negative,), default=None, metavar="BOOL",
                               help=help_text + "; %s alone means true, %s false"
                               % (flags[0], negative))
        elif key == "label_smoothing":
            group.add_argument(*flags, dest=key, type=float, nargs="?", const=0.1,
                               default=None, metavar="EPS", help=help_text)
        else:
            group.add_argument(*flags, dest=key, type=_parser_for(default), default=None,
                               metavar=type(default).__name__.upper(), help=help_text)
    group.add_argument("--num-gpus", type=int, default=None, metavar="N",
                       help="gluoncv's flag: the same as --gpus 0,1,...,N-1 (0 = CPU); "
                       "not together with --gpus")
    return parser


def flag_overrides(args):
    """The recipe keys set explicitly on the command line (``--num-gpus`` as ``gpus``)."""
    out = {key: getattr(args, key) for key in SCHEMA if getattr(args, key, None) is not None}
    num_gpus = getattr(args, "num_gpus", None)
    if num_gpus is not None:
        if "gpus" in out:
            raise UserError("--num-gpus %d and --gpus %s both name the GPUs; pass one of them"
                            % (num_gpus, out["gpus"]))
        if num_gpus < 0:
            raise UserError("--num-gpus must be 0 (CPU) or more, got %d" % num_gpus)
        out["gpus"] = ",".join(str(i) for i in range(num_gpus))
    return out


def _number(item_type, value):
    """``value`` as an int or float, refusing NaN/inf and fractional ints."""
    if isinstance(value, bool) or value is None:
        raise ValueError
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError
    if item_type is int:
        if not number.is_integer() or isinstance(value, str) and not value.strip().lstrip(
                "+-").isdigit():
            raise ValueError
        return int(number)
    return number


def _coerce(key, value, source):
    default = SCHEMA[key][0]
    kind = type(default).__name__
    try:
        if isinstance(default, bool):
            return value if isinstance(value, bool) else _parse_bool(value)
        if isinstance(default, list):
            item = type(default[0]) if default else str
            kind = "list of %s" % item.__name__
            items = (list(value) if isinstance(value, (list, tuple))
                     else _list_parser(default)(value))
            return [_number(item, v) for v in items] if item in (int, float) else items
        if isinstance(default, (int, float)):
            return _number(type(default), value)
        return "" if value is None else str(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        finite = " (finite: no NaN or infinity)" if kind not in ("str", "bool") else ""
        raise UserError("%s: %s must be a %s%s, got %r" % (source, key, kind, finite, value))


# Keys that may be zero (off) but never negative.
NON_NEGATIVE = ("wd", "momentum", "label_smoothing", "clip_gradient", "warmup_epochs",
                "warmup_lr", "keep_checkpoints", "batches_per_epoch", "color_jitter", "seed",
                "rmsprop_decay", "lr_decay_epochs")
BELOW_ONE = ("momentum", "label_smoothing", "rmsprop_decay")  # 1 or more makes no sense
POSITIVE_EXTRA = ("lr_decay", "rmsprop_eps", "std_rgb", "min_random_area", "max_random_area",
                  "min_aspect_ratio", "max_aspect_ratio", "crop_ratio")


def _values(value):
    return value if isinstance(value, list) else [value]


def validate(cfg, source="config"):
    """Check value types and ranges; returns the coerced config.

    Every number must be finite (``lr: .inf`` or a NaN anywhere is refused), counts and
    rates have their ranges (``wd``, ``--keep-checkpoints`` and ``--batches-per-epoch``
    are never negative), and list items have the list's type.
    """
    out = {}
    for key, value in cfg.items():
        if key not in SCHEMA:
            raise UserError("unknown key %r in %s; valid keys: %s" % (key, source,
                                                                      ", ".join(SCHEMA)))
        out[key] = _coerce(key, value, source)
    for key, choices in CHOICES.items():
        if key in out and out[key] not in choices:
            raise UserError("%s: %s must be one of %s, got %r" % (source, key,
                                                                  " | ".join(choices), out[key]))
    for key in POSITIVE + POSITIVE_EXTRA:
        if key in out and not all(v > 0 for v in _values(out[key])):
            raise UserError("%s: %s must be positive, got %r" % (source, key, out[key]))
    _check_bn_and_threads(out, source)
    for key in NON_NEGATIVE:
        if key in out and not all(v >= 0 for v in _values(out[key])):
            raise UserError("%s: %s must be 0 or more, got %r" % (source, key, out[key]))
    for key in BELOW_ONE:
        if key in out and not out[key] < 1:
            raise UserError("%s: %s must be below 1, got %r" % (source, key, out[key]))
    if "model" in out and out["model"] not in list_models():
        raise UserError("%s: unknown model %r; valid names: %s"
                        % (source, out["model"], ", ".join(list_models())))
    return out


def _check_bn_and_threads(out, source):
    if "bn_momentum" in out and not 0 <= out["bn_momentum"] < 1:
        raise UserError("%s: bn_momentum must be in [0, 1) (MXNet 0.9, TF-slim 0.9997), got %r"
                        % (source, out["bn_momentum"]))
    if "bn_eps" in out and not out["bn_eps"] > 0:
        raise UserError("%s: bn_eps must be positive (MXNet Gluon 1e-5, TF-slim 1e-3), got %r"
                        % (source, out["bn_eps"]))
    if "preprocess_threads" in out:
        text = str(out["preprocess_threads"]).strip().lower()
        if text == "auto":
            out["preprocess_threads"] = "auto"
        elif text.isdigit() and int(text) >= 1:
            out["preprocess_threads"] = int(text)
        else:
            raise UserError("%s: preprocess_threads must be a positive number or auto, got %r"
                            % (source, out["preprocess_threads"]))


def resolve(recipe_path=None, overrides=None):
    """Defaults < recipe chain < overrides, validated, with ``{model}`` expanded.

    With no ``recipe_path`` the model's own recipe (``recipes/<model>.yaml``) is
    used, the model coming from the overrides or the schema default.
    """
    overrides = dict(overrides or {})
    if recipe_path is None:
        model = overrides.get("model", SCHEMA["model"][0])
        recipe_path = default_recipe_path(str(model).lower().replace("_", "-"))
        if not os.path.isfile(recipe_path):
            validate({"model": model}, "--model")
    cfg = {key: value for key, (value, _) in SCHEMA.items()}
    recipe = validate(load_recipe(recipe_path), recipe_path)
    cfg.update(recipe)
    cfg.update(validate(overrides, "command line"))
    cfg["save_dir"] = cfg["save_dir"].replace("{model}", cfg["model"])
    cfg["recipe"] = os.path.abspath(_find_recipe(recipe_path))
    # Who set the class count: a stated value must agree with the data's synsets, the
    # schema default gives way to them (see dataset.resolve_classes).
    cfg["classes_from"] = ("--classes %d" % cfg["classes"] if "classes" in overrides else
                           "classes: %d in %s" % (cfg["classes"], cfg["recipe"])
                           if "classes" in recipe else None)
    return cfg


def dump(cfg, path):
    """Write a resolved config as YAML (atomically), keys in schema order."""
    ordered = {key: cfg[key] for key in SCHEMA if key in cfg}
    text = "# resolved from %s\n" % cfg.get("recipe", "?") + yaml.safe_dump(
        ordered, sort_keys=False, default_flow_style=None)
    atomic_save(path, text)


def load_dumped(path):
    """Read back a config written by :func:`dump` (validated)."""
    with open(path) as f:
        return validate(yaml.safe_load(f) or {}, path)
