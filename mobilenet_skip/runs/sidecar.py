"""An export's description, the sidecar ``<prefix>.json``: which network it holds, the
input size it was trained at and the preprocessing its input needs
(:class:`~mobilenet_skip.data.preprocess.Preprocessing`), and the validation iterator
that preprocessing implies.

It sits below ``train`` and ``deploy`` because both meet it: a checkpoint's marker must
be told apart from an export's sidecar, and every scorer of an export or a checkpoint
feeds its network the batches its description asks for. Writing and validating the
export itself is :mod:`mobilenet_skip.deploy.artifact`'s.
"""
import os

from ..config.recipe import Recipe
from ..data.preprocess import Preprocessing

__all__ = ["FORMAT", "DEFAULT_INPUT_SIZE", "export_paths", "sidecar_path", "describe",
           "preprocessing_entries", "summary", "val_config"]

FORMAT = "mobilenet-skip-export"
DEFAULT_INPUT_SIZE = 224


def export_paths(prefix):
    """The files an export writes: symbol, params, synsets."""
    return prefix + "-symbol.json", prefix + "-0000.params", prefix + ".synsets.txt"


def sidecar_path(prefix):
    """``<prefix>.json``: what the export is and how to preprocess its input."""
    return prefix + ".json"


def describe(model, input_size, preprocessing=None, kind="fp32", **extra):
    """The sidecar of an export: model, input and preprocessing.

    Parameters
    ----------
    model : MobileNetSkip or dict
        Where ``variant``, ``multiplier`` and ``classes`` are read from.
    input_size : int
        Side of the square input the network was trained for.
    preprocessing : dict, optional
        ``crop_ratio``, ``mean_rgb``, ``std_rgb`` (a recipe will do); missing keys take
        :class:`~mobilenet_skip.data.preprocess.Preprocessing`'s defaults.
    kind : str
        ``fp32``, ``fused``, ``int8``: a registered form's (see
        :func:`~mobilenet_skip.deploy.registry.kinds`).
    **extra
        More JSON-serialisable entries (where the weights came from, calibration).
    """
    def get(key):
        return model.get(key) if isinstance(model, dict) else getattr(model, key, None)
    info = {"format": FORMAT, "kind": kind, "variant": get("variant"),
            "multiplier": get("multiplier"), "classes": get("classes"), "input_name": "data"}
    info.update(preprocessing_entries(preprocessing, input_size))
    info.update(extra)
    return info


def preprocessing_entries(values, input_size):
    """The sidecar's preprocessing entries: ``Preprocessing.to_dict()`` and ``resize``, the
    shorter side before the crop, for readers without this package (a sidecar without
    it has it recomputed here)."""
    pre = Preprocessing.from_dict(values, input_size=int(input_size))
    return dict(pre.to_dict(), resize=pre.resize)


def summary(info):
    """One line on an export: model, width, classes, input and preprocessing, kind."""
    model = ("%s x%g" % (info["variant"], info["multiplier"]) if info.get("variant")
             else "network")
    return "%s, %s classes, %s, %s" % (
        model, info.get("classes") or "?", Preprocessing.from_dict(info).describe(),
        info.get("kind") or "no sidecar: ImageNet defaults")


def val_config(info, rec, batch_size, threads=None):
    """``data.val_iter``'s settings for ``rec`` preprocessed as the sidecar ``info`` says."""
    return Recipe.from_values(dict(Preprocessing.from_dict(info).to_dict(), rec_val=rec,
                                   batch_size=batch_size,
                                   preprocess_threads=threads or min(4, os.cpu_count() or 1)))
