"""Training recipes: YAML files of flat keys, composed by ``base:`` plus overrides.

Every key is declared once in :data:`SCHEMA` (default, help), the data keys in
:mod:`mobilenet_skip.data.settings`; the recipe files set values and say where each
comes from, and :func:`mobilenet_skip.config.flags.add_flags` turns every key into a
command-line flag of the same name (``lr_mode`` -> ``--lr-mode``). Every ``--model``
starts from ``recipes/imagenet.yaml`` unless a ``recipes/<model>.yaml`` exists.
"""
import os

import yaml

from ..data import settings
from ..utils.fs import atomic_save, checkout_path
from ..errors import UserError
from ..models import BN_DEFAULTS, list_models, min_train_bytes
from ..utils.cores import memory_limit
from ..utils.threads import parse_threads
from ..utils.values import coerce
from ..optim import rules as _optim

__all__ = ["SCHEMA", "RECIPE_DIR", "DEFAULT_RECIPE", "ARCH_KEYS", "load_recipe",
           "default_recipe_path", "resolve", "dump", "load_dumped", "validate", "choices_of",
           "key_help"]

RECIPE_DIR = checkout_path("recipes")
DEFAULT_RECIPE = "imagenet.yaml"  # the paper's setting, the same for every model

# Keys that fix the network's parameter shapes: a resume must not change them.
ARCH_KEYS = ("model", "multiplier", "classes")

# key: (default, help). The type of a flag is the type of its default. "{choices}" in a help
# is filled in by key_help from the registry as it stands when --help is built.
SCHEMA = {
    # model
    "model": ("full-connect-pre-act", "network: one of {choices}"),
    "multiplier": (1.0, "width multiplier"),
    "classes": (1000, "number of classes"),
    "warm_start": ("", "gluoncv mobilenet .params file to start from (post-activation models)"),
    "finetune": ("", "a run folder or export of ours whose weights, all but the classifier's, "
                 "this run starts from (the classes may differ)"),
    "finetune_epoch": (0, "the epoch of a --finetune run folder (0 = its last checkpoint)"),
    "finetune_lr_mult": (1.0, "the body's lr over the classifier's when fine-tuning"),
    # data: declared (default, help, rule) in mobilenet_skip.data.settings
    **{key: (default, help_text)
       for key, (default, help_text, _) in settings.SCHEMA.items()},
    # optimisation
    "num_epochs": (100, "epochs to train"),
    "optimizer": ("sgd", "{choices} (rmsprop: TensorFlow's RMSProp with momentum, "
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
    "lr_mode": ("exponential", "{choices}"),
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
    "omp_threads": ("auto", "OpenMP threads of MXNet's operators: a number, or auto = 1 "
                    "below 750M Mult-Adds per device step (a small network), else one per "
                    "physical core; with auto, OMP_NUM_THREADS in the environment wins"),
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
    "log_interval": (50, "batches between log lines (and TensorBoard's train scalars)"),
    "tensorboard": ("", "write TensorBoard event files into this folder (needs tensorboardX; "
                    "'' = none)"),
    "batches_per_epoch": (0, "cap on batches per epoch (0 = the whole .rec; for smoke runs)"),
    "hybridize": (True, "hybridize with static_alloc/static_shape"),
    "fuse_bn_relu": (True, "train each BatchNorm that feeds a ReLU as one fused oneDNN "
                     "operator where MXNet has it (CPU with oneDNN; GPUs and other builds "
                     "train unfused); same weights, exports are always unfused"),
}

CHOICES = {
    "optimizer": _optim.OPTIMIZERS,  # the registries themselves: a new entry is a choice
    "lr_mode": _optim.LR_MODES,
    "dtype": ("float32", "float16"),
    "init": ("msra", "xavier"),
    "kv_store": ("device", "local", "nccl", "dist_sync", "dist_device_sync"),
    "export_epoch": ("last", "best"),
}
# Ranges of the keys other than the data keys (settings.check has theirs).
POSITIVE = ("multiplier", "classes", "num_epochs", "lr", "cpu_contexts", "log_interval",
            "lr_decay_period", "lr_decay", "rmsprop_eps", "finetune_lr_mult")


def choices_of(key):
    """The values ``key`` may take now (a registry's names, new entries included), or None."""
    if key == "model":
        return list_models()
    return list(CHOICES[key]) if key in CHOICES else None


def key_help(key):
    """The help of ``key`` in :data:`SCHEMA`, its ``{choices}`` read from the registries now."""
    help_text = SCHEMA[key][1]
    if "{choices}" in help_text:
        help_text = help_text.replace("{choices}", " | ".join(choices_of(key)))
    return help_text


def default_recipe_path(model):
    """The recipe of ``--model`` without ``--recipe``: ``recipes/<model>.yaml`` where a
    model's setting differs from the paper's (no shipped model's does), else
    ``recipes/imagenet.yaml``."""
    own = os.path.join(RECIPE_DIR, "%s.yaml" % model)
    return own if os.path.isfile(own) else os.path.join(RECIPE_DIR, DEFAULT_RECIPE)


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load``, except that a key given twice in one mapping is an error (YAML
    keeps the last one silently, so a recipe would not do what its first line says)."""


class _DuplicateKey(Exception):
    pass


def _unique_mapping(loader, node, deep=False):
    lines = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if isinstance(key, str) and key in lines:
            raise _DuplicateKey("%s is given twice (lines %d and %d)" % (key, lines[key], line))
        lines[key] = line
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _unique_mapping)


def _read_yaml(path, what):
    """The YAML in ``path`` (``{}`` when empty); ``what`` names it in the one-line error for
    bad YAML or a key given twice."""
    try:
        with open(path) as f:
            return yaml.load(f, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as err:
        raise UserError("%s is not valid YAML: %s" % (what, str(err).splitlines()[0]))
    except _DuplicateKey as err:
        raise UserError("%s: %s, and YAML would keep the last silently; delete one"
                        % (what, err)) from None


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
    values = _read_yaml(path, "recipe %s" % path)
    if not isinstance(values, dict):
        raise UserError("recipe %s must be a mapping of key: value lines" % path)
    base = values.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise UserError("recipe %s: base must be one recipe file, such as base: imagenet.yaml, "
                        "got %r; to build on several, chain them (give each its own base:)"
                        % (path, base))
    for key in values:
        if key not in SCHEMA:
            raise UserError("unknown key %r in recipe %s; valid keys: %s"
                            % (key, path, ", ".join(SCHEMA)))
    merged = load_recipe(base, seen + [path], os.path.dirname(path)) if base else {}
    merged.update(values)
    return merged


# Keys that may be zero (off) but never negative.
NON_NEGATIVE = ("finetune_epoch", "wd", "momentum", "label_smoothing", "clip_gradient", "warmup_epochs",
                "warmup_lr", "keep_checkpoints", "batches_per_epoch", "seed",
                "rmsprop_decay", "lr_decay_epochs")
BELOW_ONE = ("momentum", "label_smoothing", "rmsprop_decay")  # 1 or more makes no sense


def _values(value):
    return value if isinstance(value, list) else [value]


def validate(cfg, source="config"):
    """Check value types and ranges; returns the coerced config.

    Every number must be finite (``lr: .inf`` or a NaN anywhere is refused), counts and
    rates have their ranges (``wd``, ``--keep-checkpoints`` and ``--batches-per-epoch``
    are never negative), and list items have the list's type.
    """
    for key in cfg:
        if key not in SCHEMA:
            raise UserError("unknown key %r in %s; valid keys: %s" % (key, source,
                                                                      ", ".join(SCHEMA)))
    data = settings.check(cfg, source)
    out = {key: data[key] if key in data else coerce(key, SCHEMA[key][0], value, source)
           for key, value in cfg.items()}
    for key, choices in CHOICES.items():
        if key in out and out[key] not in choices:
            raise UserError("%s: %s must be one of %s, got %r" % (source, key,
                                                                  " | ".join(choices), out[key]))
    for key in POSITIVE:
        if key in out and not all(v > 0 for v in _values(out[key])):
            raise UserError("%s: %s must be positive, got %r" % (source, key, out[key]))
    _check_bn(out, source)
    if "omp_threads" in out:
        threads = parse_threads(out["omp_threads"])
        if threads is None:
            raise UserError("%s: omp_threads must be a positive number or auto, got %r"
                            % (source, out["omp_threads"]))
        out["omp_threads"] = threads
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


def _check_bn(out, source):
    if "bn_momentum" in out and not 0 <= out["bn_momentum"] < 1:
        raise UserError("%s: bn_momentum must be in [0, 1) (MXNet 0.9, TF-slim 0.9997), got %r"
                        % (source, out["bn_momentum"]))
    if "bn_eps" in out and not out["bn_eps"] > 0:
        raise UserError("%s: bn_eps must be positive (MXNet Gluon 1e-5, TF-slim 1e-3), got %r"
                        % (source, out["bn_eps"]))


def _check_fits(cfg):
    """Refuse a model, input and batch whose training cannot fit in this machine's memory
    (:func:`~mobilenet_skip.models.min_train_bytes`, a floor) before MXNet fails to
    allocate them."""
    devices = 1 if cfg["gpus"] else max(int(cfg["cpu_contexts"]), 1)  # CPU contexts share it
    need = min_train_bytes(cfg["multiplier"], cfg["input_size"], cfg["classes"],
                           cfg["batch_size"] * devices)
    have = memory_limit()
    if have and need > have:
        raise UserError("training at input_size %d, multiplier %g, batch_size %d%s needs at "
                        "least %s of memory (weights, gradients and the activations kept for "
                        "the backward pass), more than the %s this machine has; lower "
                        "--input-size (224 for ImageNet), --multiplier or --batch-size"
                        % (cfg["input_size"], cfg["multiplier"], cfg["batch_size"],
                           " x %d CPU contexts" % devices if devices > 1 else "",
                           _gigabytes(need), _gigabytes(have)))


def _gigabytes(n):
    return "{:,.1f} GB".format(n / 1e9) if n < 1e15 else "%.1e GB" % (n / 1e9)


def resolve(recipe_path=None, overrides=None):
    """Defaults < recipe chain < overrides, validated, with ``{model}`` expanded.

    With no ``recipe_path`` it is :func:`default_recipe_path` of the model from the
    overrides or the schema default; the model stays the one given.
    """
    overrides = dict(overrides or {})
    if recipe_path is None:
        model = validate({"model": overrides.get("model", SCHEMA["model"][0])}, "--model")
        recipe_path = default_recipe_path(model["model"])
    cfg = {key: value for key, (value, _) in SCHEMA.items()}
    recipe = validate(load_recipe(recipe_path), recipe_path)
    cfg.update(recipe)
    cfg.update(validate(overrides, "command line"))
    # A pair of data keys may be split between the recipe and the flags.
    settings.check(cfg, "%s with the command line" % recipe_path)
    _check_fits(cfg)
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
    return validate(_read_yaml(path, path), path)
