"""The training recipe as one typed value: every key with its type, default, help and
checks, and each value's source.

:class:`Recipe` declares every key once, as a field: the annotation is its type, and
:func:`key` gives its default, its help (the flag's) and its checks (:mod:`.values`).
:func:`check_values` turns one layer of values (a recipe file, the command line) into
typed, checked values; :func:`mobilenet_skip.config.recipes.resolve` lays the layers over
the defaults into a :class:`Recipe`, the one object every later layer receives.
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Dict, Optional

from ..data.preprocess import DEFAULT as VAL
from ..errors import UserError
from ..models import BN_DEFAULTS, MAX_INPUT_SIZE, MIN_INPUT_SIZE, list_models
from ..optim import rules as _optim
from .values import Known, Must, OneOf, Preprocess, ThreadCount, Threads, coerce

__all__ = ["Recipe", "KEYS", "SPECS", "MAPPED", "COMMAND_LINE", "key", "default_of",
           "check_values", "check_pairs"]

COMMAND_LINE = "command line"  # the source of a value given as a flag


def key(default, help_text, *checks, choices=None):
    """A recipe key as a :class:`Recipe` field: ``default``, the flag's ``help_text``
    (``{choices}`` is filled from ``choices``, a function listing names, or else from the
    key's :class:`~.values.OneOf` check) and the ``checks`` its value must pass, in order."""
    if choices is None:
        choices = next((c.choices for c in checks if isinstance(c, OneOf)), None)
    meta = {"help": help_text, "checks": checks, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


POSITIVE = Must(lambda v: v > 0, "positive")
NON_NEGATIVE = Must(lambda v: v >= 0, "0 or more")  # zero means off
BELOW_ONE = Must(lambda v: v < 1, "below 1")  # 1 or more makes no sense
FRACTION = Must(lambda v: 0 < v <= 1, "in (0, 1]")
THREADS = ThreadCount()
PREPROCESS = Preprocess()


@dataclass(frozen=True)
class Recipe:
    """Every setting of a training run, typed and checked (:func:`check_values`).

    Build one with :func:`mobilenet_skip.config.recipes.resolve` (defaults < recipe file <
    flags) or :meth:`from_values`; change one with :meth:`replace`. ``recipe`` is the
    recipe file it was resolved from, ``sources`` maps each key set by a recipe file, a
    flag or the data to where its value came from (:meth:`source_of`), and ``classes_from`` says who set the class count, for the error when
    the data disagrees (None: the default, which gives way to the data).
    """
    # model
    model: str = key("full-connect-pre-act", "network: one of {choices}",
                     Known(list_models, "model"), choices=list_models)
    multiplier: float = key(1.0, "width multiplier", POSITIVE)
    classes: int = key(1000, "number of classes", POSITIVE)
    warm_start: str = key("", "gluoncv mobilenet .params file to start from "
                          "(post-activation models)")
    finetune: str = key("", "a run folder or export of ours whose weights, all but the "
                        "classifier's, this run starts from (the classes may differ)")
    finetune_epoch: int = key(0, "the epoch of a --finetune run folder (0 = its last "
                              "checkpoint)", NON_NEGATIVE)
    finetune_lr_mult: float = key(1.0, "the body's lr over the classifier's when "
                                  "fine-tuning", POSITIVE)
    # data: the iterators' settings; the validation transform's four fields take their
    # defaults from Preprocessing and its rules
    rec_train: str = key("", "training .rec (its .idx beside it)")
    rec_val: str = key("", "validation .rec (its .idx beside it)")
    # refused here, at the recipe, rather than once the network is built and fed
    input_size: int = key(
        VAL.input_size, "training and validation crop side (at least %d)" % MIN_INPUT_SIZE,
        PREPROCESS, Must(lambda v: v >= MIN_INPUT_SIZE,
                         "at least %d, the network's total stride (for smaller sources, such "
                         "as 28 px, pack with --resize %d and train at --input-size %d)"
                         % (MIN_INPUT_SIZE, round(MIN_INPUT_SIZE / 0.875), MIN_INPUT_SIZE)),
        Must(lambda v: v <= MAX_INPUT_SIZE,
             "at most %d: a 3xSxS input above it holds more values than MXNet 1.9.1 holds "
             "in one array" % MAX_INPUT_SIZE))
    crop_ratio: float = key(VAL.crop_ratio, "validation centre crop / resized short side "
                            "(224/256)", PREPROCESS)
    batch_size: int = key(32, "images per device per step",
                          Must(lambda v: v >= 1, "a positive integer"))
    # 0.25: light, MobileNet-style (Inception: 0.08)
    min_random_area: float = key(0.25, "smallest random-resized-crop area fraction", FRACTION)
    max_random_area: float = key(1.0, "largest random-resized-crop area fraction", FRACTION)
    min_aspect_ratio: float = key(0.75, "smallest random crop aspect ratio", FRACTION)
    max_aspect_ratio: float = key(4.0 / 3.0, "largest random crop aspect ratio",
                                  Must(lambda v: v >= 1, "at least 1"))
    rand_mirror: bool = key(True, "random horizontal flips")
    color_jitter: float = key(0.0, "brightness/contrast/saturation jitter strength (0 = off)",
                              Must(lambda v: v >= 0, "0 (off) or a positive strength"))
    mean_rgb: list[float] = key(list(VAL.mean_rgb), "per-channel mean subtracted from pixels",
                                PREPROCESS)
    std_rgb: list[float] = key(list(VAL.std_rgb), "per-channel std dividing pixels",
                               PREPROCESS)
    preprocess_threads: Threads = key("auto", "decode threads of ImageRecordIter: a number, "
                                      "or auto = physical cores minus GPUs, at least 1",
                                      THREADS)
    shuffle: bool = key(True, "shuffle training records every epoch")
    # optimisation
    num_epochs: int = key(100, "epochs to train", POSITIVE)
    optimizer: str = key("sgd", "{choices} (rmsprop: TensorFlow's RMSProp with momentum, "
                         "Inception-v3's optimiser)",
                         OneOf(_optim.OPTIMIZERS))  # the registry: a new entry is a choice
    lr: float = key(0.045, "base learning rate, for a global batch of lr_batch", POSITIVE)
    lr_batch: int = key(0, "global batch the lr is for: the lr is scaled by global batch / "
                        "lr_batch (0 = use lr as given)")
    momentum: float = key(0.9, "momentum of sgd, nag and rmsprop", NON_NEGATIVE, BELOW_ONE)
    wd: float = key(4e-5, "weight decay", NON_NEGATIVE)
    no_wd_dw_bn: bool = key(True, "no weight decay on depthwise filters and BatchNorm")
    wd_bias: bool = key(True, "weight decay on biases too (the classifier's; MXNet decays "
                        "every parameter, TF-slim only weights)")
    bn_momentum: float = key(BN_DEFAULTS["bn_momentum"], "BatchNorm running-average momentum "
                             "per step (MXNet 0.9, TF-slim's decay 0.9997)",
                             Must(lambda v: 0 <= v < 1,
                                  "in [0, 1) (MXNet 0.9, TF-slim 0.9997)"))
    bn_eps: float = key(BN_DEFAULTS["bn_eps"], "BatchNorm epsilon (MXNet Gluon 1e-5, TF-slim "
                        "1e-3)", Must(lambda v: v > 0,
                                      "positive (MXNet Gluon 1e-5, TF-slim 1e-3)"))
    rmsprop_decay: float = key(0.9, "RMSProp decay of the mean-square average (TF's decay)",
                               NON_NEGATIVE, BELOW_ONE)
    rmsprop_eps: float = key(1.0, "RMSProp epsilon, under the square root as in TF", POSITIVE)
    lr_mode: str = key("exponential", "{choices}", OneOf(_optim.LR_MODES))
    lr_decay: float = key(0.94, "lr factor per decay (exponential and step modes)", POSITIVE)
    lr_decay_period: int = key(2, "epochs between exponential decays", POSITIVE)
    lr_decay_epochs: list[int] = key([30, 60, 90], "epochs at which step mode decays",
                                     NON_NEGATIVE)
    warmup_epochs: int = key(0, "linear warm-up epochs from warmup_lr to lr", NON_NEGATIVE)
    warmup_lr: float = key(0.0, "learning rate at the start of warm-up (scaled like lr)",
                           NON_NEGATIVE)
    label_smoothing: float = key(0.1, "label smoothing epsilon", NON_NEGATIVE, BELOW_ONE)
    clip_gradient: float = key(2.0, "clip the global gradient norm to this (0 = off)",
                               NON_NEGATIVE)
    dtype: str = key("float32", "float32 | float16 (float16 keeps float32 master weights)",
                     OneOf(("float32", "float16")))
    init: str = key("msra", "weight init: msra | xavier", OneOf(("msra", "xavier")))
    # devices and distribution
    gpus: str = key("", "comma-separated GPU ids, e.g. 0,1 ('' = CPU)")
    cpu_contexts: int = key(1, "number of CPU contexts when no GPU is used", POSITIVE)
    omp_threads: Threads = key("auto", "OpenMP threads of MXNet's operators: a number, or "
                               "auto = 1 below 750M Mult-Adds per device step (a small "
                               "network), else one per physical core; with auto, "
                               "OMP_NUM_THREADS in the environment wins", THREADS)
    kv_store: str = key("device", "device | local | nccl | dist_sync | dist_device_sync",
                        OneOf(("device", "local", "nccl", "dist_sync", "dist_device_sync")))
    dist_timeout: int = key(600, "dist_sync: a worker exits when no step finishes for this "
                            "many seconds (a dead peer); must exceed rank 0's validation + "
                            "checkpoint; 0 = wait forever")
    seed: int = key(0, "random seed", NON_NEGATIVE)
    # bookkeeping
    save_dir: str = key("runs/{model}", "checkpoints, logs and exports go here ({model} is "
                        "expanded)")
    keep_checkpoints: int = key(3, "keep this many recent epoch checkpoints (plus the best)",
                                NON_NEGATIVE)
    export_epoch: str = key("last", "epoch to export at the end: last | best (best picks on "
                            "the val set it reports, which flatters it)",
                            OneOf(("last", "best")))
    log_interval: int = key(50, "batches between log lines (and TensorBoard's train scalars)",
                            POSITIVE)
    tensorboard: str = key("", "write TensorBoard event files into this folder (needs "
                           "tensorboardX; '' = none)")
    batches_per_epoch: int = key(0, "cap on batches per epoch (0 = the whole .rec; for smoke "
                                 "runs)", NON_NEGATIVE)
    hybridize: bool = key(True, "hybridize with static_alloc/static_shape")
    fuse_bn_relu: bool = key(True, "train each BatchNorm that feeds a ReLU as one fused "
                             "oneDNN operator where MXNet has it (CPU with oneDNN; GPUs and "
                             "other builds train unfused); same weights, exports are always "
                             "unfused")
    # where the values came from: not keys (no flag, not in config.yaml)
    recipe: str = ""
    classes_from: Optional[str] = None
    sources: Dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_values(cls, values, source="data setting"):
        """The defaults with ``values`` (some keys, from code rather than a recipe file)
        laid over them, checked as :func:`check_values` does."""
        typed = check_values(values, source)
        return cls(**typed, sources={k: source for k in typed})

    def replace(self, **changes):
        """A copy with ``changes`` (typed values) in place."""
        return dataclasses.replace(self, **changes)

    def source_of(self, name):
        """Where the value of key ``name`` came from: a recipe file, ``"command line"``, a
        synsets file, or ``"default"``."""
        return self.sources.get(name, "default")

    # --- mapping access, while callers still index the recipe as the dict it was ---------
    # cfg["key"], cfg.get("key", d), "key" in cfg, dict(cfg) and iteration see the keys
    # plus ``recipe`` and ``classes_from``, as the resolved dict held them.

    def keys(self):
        return MAPPED

    def __iter__(self):
        return iter(MAPPED)

    def __contains__(self, name):
        return name in MAPPED

    def __getitem__(self, name):
        if name not in MAPPED:
            raise KeyError(name)
        return getattr(self, name)

    def get(self, name, default=None):
        return getattr(self, name) if name in MAPPED else default


SPECS = {f.name: f for f in dataclasses.fields(Recipe) if "help" in f.metadata}
KEYS = tuple(SPECS)  # every recipe key, in the order of --help, --print-config, config.yaml
MAPPED = KEYS + ("recipe", "classes_from")


def default_of(name):
    """The default value of key ``name`` (a fresh list for a list)."""
    spec = SPECS[name]
    return spec.default_factory() if spec.default is dataclasses.MISSING else spec.default


def check_values(values, source):
    """Some recipe values (one layer: a recipe file, the flags) typed and checked.

    Parameters
    ----------
    values : dict
        ``{key: value}``, values as YAML or argparse gives them.
    source : str
        Where they come from, to start an error message.

    Returns
    -------
    dict
        The same keys, each value of its key's type; ``preprocess_threads`` and
        ``omp_threads`` are ``"auto"`` or an int.

    Raises
    ------
    UserError
        For an unknown key, or naming the key, what it must be and the value.
    """
    for name in values:
        if name not in SPECS:
            raise UserError("unknown key %r in %s; valid keys: %s"
                            % (name, source, ", ".join(KEYS)))
    out = {name: coerce(name, SPECS[name].type, value, source)
           for name, value in values.items()}
    for name in KEYS:
        if name in out:
            for check in SPECS[name].metadata["checks"]:
                out[name] = check(name, out[name], source)
    check_pairs(out, source)
    return out


def check_pairs(values, source):
    """Refuse a random crop area whose largest is below its smallest. A pair is checked
    only when ``values`` hold both: a flag may change one of a recipe's pair."""
    if values.get("max_random_area", 1) < values.get("min_random_area", 0):
        raise UserError("%s: max_random_area must be at least min_random_area (%r), got %r"
                        % (source, values["min_random_area"], values["max_random_area"]))
