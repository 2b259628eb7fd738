"""An export's description, the sidecar ``<prefix>.json``: which network it holds, the
input size it was trained at and the preprocessing its input needs
(:class:`~mobilenet_skip.data.preprocess.Preprocessing`), and the validation iterator
that preprocessing implies.

It sits below ``train`` and ``deploy`` because both meet it: a checkpoint's marker must
be told apart from an export's sidecar, and every scorer of an export or a checkpoint
feeds its network the batches its description asks for. Writing and validating the
export itself is :mod:`mobilenet_skip.deploy.artifact`'s.

The sidecar also records the SHA-256 of the export's graph and weights and of the
one-file forms written beside it (``"sha256": {"-symbol.json": ..., "-0000.params": ...,
".onnx": ...}``, keyed by the file's name after the prefix, so that a renamed export
keeps them); :func:`verify_export_files` checks them before a reader uses the files.
"""
import json
import os

from ..config.recipe import Recipe
from ..data.preprocess import Preprocessing
from .digests import KEY as DIGESTS, verify_files

__all__ = ["FORMAT", "DEFAULT_INPUT_SIZE", "export_paths", "sidecar_path", "describe",
           "preprocessing_entries", "summary", "val_config", "recorded_digests",
           "verify_export_files", "DIGESTS", "DIGESTED"]

FORMAT = "mobilenet-skip-export"
DEFAULT_INPUT_SIZE = 224
DIGESTED = ("-symbol.json", "-0000.params")  # an export's files the sidecar hashes; the
# class names are left out: a text a user may edit, checked against the outputs on load


def export_paths(prefix):
    """The files an export writes: symbol, params, synsets."""
    return prefix + "-symbol.json", prefix + "-0000.params", prefix + ".synsets.txt"


def sidecar_path(prefix):
    """``<prefix>.json``: what the export is and how to preprocess its input."""
    return prefix + ".json"


def recorded_digests(prefix):
    """``(sidecar, digests)`` of the export at ``prefix``: its sidecar's :data:`DIGESTS`
    entry (None when it records none), or ``(None, None)`` without a sidecar of ours."""
    path = sidecar_path(prefix)
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None, None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        return None, None
    return info, info.get(DIGESTS)


def verify_export_files(prefix, suffixes=DIGESTED, form=None):
    """Check the files ``prefix + suffix`` against the digests the export's sidecar
    records, before they are read; an export without a sidecar records none (its reader
    asks for ``--input-size``), one whose sidecar lacks them gets one note.

    Parameters
    ----------
    form : str, optional
        The ``export_model.py`` flag that writes these files (``onnx``), for the fix; a
        derived export (fused, INT8) is named by its sidecar's ``kind`` and
        ``derived_from``.

    Raises
    ------
    UserError
        Naming the first damaged file, both digests, and the re-export that replaces it.
    """
    info, recorded = recorded_digests(prefix)
    files = {s: prefix + s for s in suffixes if os.path.isfile(prefix + s)}
    if info is None or not files:
        return
    output = prefix
    if info.get("derived_from") and info.get("kind") not in (None, "fp32"):
        output = os.path.join(os.path.dirname(prefix), info["derived_from"])
        form = form or info["kind"]
    verify_files(files, recorded, sidecar_path(prefix),
                 "re-export it: tools/export_model.py --save-dir RUN --epoch N --output %s%s"
                 % (output, " --" + form if form else ""))


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
