"""Training recipes: YAML files of flat keys, composed by ``base:`` plus overrides, read
into one :class:`~mobilenet_skip.config.recipe.Recipe`.

Every key is declared once, as a field of :class:`~mobilenet_skip.config.recipe.Recipe`
(type, default, help, checks); the recipe files set values and say where each comes
from, and :func:`mobilenet_skip.config.flags.add_flags` turns every key into a
command-line flag of the same name (``lr_mode`` -> ``--lr-mode``). :func:`resolve` reads,
checks and resolves them once, in the tool; every later layer receives its
:class:`Recipe`. Every ``--model`` starts from ``recipes/imagenet.yaml`` unless a
``recipes/<model>.yaml`` exists.
"""
import os

import yaml

from ..data.checks import resolve_classes
from ..errors import UserError
from ..models import min_train_bytes
from ..utils.cores import memory_limit
from ..utils.fs import atomic_save, checkout_path
from .recipe import COMMAND_LINE, KEYS, SPECS, Recipe, check_pairs, check_values, default_of

__all__ = ["Recipe", "SCHEMA", "RECIPE_DIR", "DEFAULT_RECIPE", "ARCH_KEYS", "load_recipe",
           "default_recipe_path", "resolve", "dump", "load_dumped", "choices_of", "key_help"]

RECIPE_DIR = checkout_path("recipes")
DEFAULT_RECIPE = "imagenet.yaml"  # the paper's setting, the same for every model

# Keys that fix the network's parameter shapes: a resume must not change them.
ARCH_KEYS = ("model", "multiplier", "classes")

# key: (default, help), read from the Recipe's fields, for code that lists the keys.
SCHEMA = {name: (default_of(name), SPECS[name].metadata["help"]) for name in KEYS}


def choices_of(name):
    """The values key ``name`` may take now (a registry's names, new entries included),
    or None."""
    choices = SPECS[name].metadata["choices"]
    if choices is None:
        return None
    return list(choices() if callable(choices) else choices)


def key_help(name):
    """The help of key ``name``, its ``{choices}`` read from the registries now."""
    help_text = SPECS[name].metadata["help"]
    if "{choices}" in help_text:
        help_text = help_text.replace("{choices}", " | ".join(choices_of(name)))
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


# A recipe holds settings: ours are under 5 KB. PyYAML takes minutes and gigabytes over a
# file of millions of entries before any check sees it, so size is refused first.
MAX_RECIPE_BYTES = 1 << 20


def _read_yaml(path, what):
    """The YAML in ``path`` (``{}`` when empty); ``what`` names it in the one-line error for
    a file too large, not UTF-8, bad YAML or a key given twice."""
    with open(path, "rb") as f:
        raw = f.read(MAX_RECIPE_BYTES + 1)
    if len(raw) > MAX_RECIPE_BYTES:
        raise UserError("%s is larger than %d bytes, more than any recipe holds (ours are under "
                        "5 KB): give the recipe file itself, with no data lists in it"
                        % (what, MAX_RECIPE_BYTES))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError("%s is not UTF-8 text (byte 0x%02x at offset %d): save it as UTF-8"
                        % (what, raw[err.start], err.start)) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as err:
        raise UserError("%s is not valid YAML: %s" % (what, str(err).splitlines()[0]))
    except _DuplicateKey as err:
        raise UserError("%s: %s, and YAML would keep the last silently; delete one"
                        % (what, err)) from None


def load_recipe(path):
    """Read a recipe file and its ``base:`` chain into one flat dict (no defaults filled).

    Raises
    ------
    UserError
        For a missing file, bad YAML, a base cycle, or a key :class:`Recipe` does not
        have (naming the key and the file).
    """
    merged = {}
    for _, values in _chain(path):
        merged.update(values)
    return merged


def _chain(path, _seen=(), _relative_to=None):
    """``[(file, its values)]`` of a recipe and its ``base:`` chain, the first base first
    (as :func:`load_recipe` lays them over each other)."""
    path = _find_recipe(path, _relative_to)
    seen = list(_seen)
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
    for name in values:
        if name not in SPECS:
            raise UserError("unknown key %r in recipe %s; valid keys: %s"
                            % (name, path, ", ".join(KEYS)))
    return (_chain(base, seen + [path], os.path.dirname(path)) if base else []) + [
        (path, values)]


def _check_fits(cfg):
    """Refuse a model, input and batch whose training cannot fit in this machine's memory
    (:func:`~mobilenet_skip.models.min_train_bytes`, a floor) before MXNet fails to
    allocate them."""
    devices = 1 if cfg.gpus else max(cfg.cpu_contexts, 1)  # CPU contexts share it
    need = min_train_bytes(cfg.multiplier, cfg.input_size, cfg.classes, cfg.batch_size * devices)
    have = memory_limit()
    if have and need > have:
        raise UserError("training at input_size %d, multiplier %g, batch_size %d%s needs at "
                        "least %s of memory (weights, gradients and the activations kept for "
                        "the backward pass), more than the %s this machine has; lower "
                        "--input-size (224 for ImageNet), --multiplier or --batch-size"
                        % (cfg.input_size, cfg.multiplier, cfg.batch_size,
                           " x %d CPU contexts" % devices if devices > 1 else "",
                           _gigabytes(need), _gigabytes(have)))


def _gigabytes(n):
    return "{:,.1f} GB".format(n / 1e9) if n < 1e15 else "%.1e GB" % (n / 1e9)


def resolve(recipe_path=None, overrides=None):
    """Defaults < recipe chain < overrides, checked, with ``{model}`` expanded and the class
    count of the training data's synsets file: the one :class:`Recipe` of a run.

    With no ``recipe_path`` it is :func:`default_recipe_path` of the model from the
    overrides or the default; the model stays the one given. A class count that is stated
    (``--classes`` or a recipe's ``classes:``) must agree with the synsets file beside
    ``rec_train``; the default gives way to it
    (:func:`~mobilenet_skip.data.checks.resolve_classes`).
    """
    overrides = dict(overrides or {})
    if recipe_path is None:
        model = check_values({"model": overrides.get("model", default_of("model"))},
                             "--model")
        recipe_path = default_recipe_path(model["model"])
    chain = _chain(recipe_path)
    recipe = check_values(dict(kv for _, values in chain for kv in values.items()),
                          recipe_path)
    given = check_values(overrides, COMMAND_LINE)
    path = os.path.abspath(_find_recipe(recipe_path))
    sources = {name: file for file, values in chain for name in values}
    cfg = Recipe(**dict(recipe, **given), recipe=path,
                 sources=dict(sources, **dict.fromkeys(given, COMMAND_LINE)))
    # A pair of data keys may be split between the recipe and the flags.
    check_pairs(cfg, "%s with the command line" % recipe_path)
    _check_fits(cfg)
    source = cfg.source_of("classes")  # a stated count must agree with the data
    stated = ("--classes %d" % cfg.classes if source == COMMAND_LINE else
              "classes: %d in %s" % (cfg.classes, path) if source != "default" else None)
    classes, classes_from, synsets = resolve_classes(cfg.rec_train, cfg.classes, stated)
    sources = dict(cfg.sources, classes=synsets) if classes != cfg.classes else cfg.sources
    return cfg.replace(save_dir=cfg.save_dir.replace("{model}", cfg.model), classes=classes,
                       classes_from=classes_from, sources=sources)


def dump(cfg, path):
    """Write a resolved config as YAML (atomically), keys in :class:`Recipe`'s order."""
    ordered = {name: cfg[name] for name in KEYS if name in cfg}
    text = "# resolved from %s\n" % cfg.get("recipe", "?") + yaml.safe_dump(
        ordered, sort_keys=False, default_flow_style=None)
    atomic_save(path, text)


def load_dumped(path):
    """The values of a config written by :func:`dump` (typed and checked; only the keys the
    file holds)."""
    return check_values(_read_yaml(path, path), path)
