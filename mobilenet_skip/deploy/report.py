"""What a model gets wrong on a validation ``.rec``: per-class top-1, the confusion
matrix and the misclassified images, from the per-image results of the one scorer
(:func:`~mobilenet_skip.runs.scorer.evaluate` with ``per_image``).

The val iterator reads a ``.rec`` in the order of its records' offsets, so the i-th
scored image is the record at the i-th smallest offset of the ``.idx``; its key is the
index im2rec gave it in the ``.lst``, which holds its path.
"""
import os

import numpy as np

from ..errors import UserError
from ..recordio import read_index, read_list, read_synsets
from ..utils.fs import atomic_save_csv

__all__ = ["ClassReport", "check_folder", "record_keys", "list_paths", "class_names",
           "REPORT_FILES", "JSON_MISCLASSIFIED"]

REPORT_FILES = ("confusion.csv", "confusion.png", "per_class.csv", "misclassified.csv")
JSON_MISCLASSIFIED = 100  # rows of the misclassified list in --json; the count is whole
SHOWN = 5  # lines of worst classes and of confused pairs on the terminal


def check_folder(folder):
    """Refuse a ``--report`` path that is a file, before any evaluation runs."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError("--report %s is a file; give a folder for the report" % folder)


def record_keys(rec):
    """The keys of ``rec``'s records in the order the val iterator reads them."""
    keys, offsets = read_index(os.path.splitext(rec)[0] + ".idx")
    return [keys[i] for i in np.argsort(offsets, kind="stable")]


def list_paths(rec):
    """``{key: (relative path, label)}`` from the ``.lst`` beside ``rec``, or None."""
    lst = os.path.splitext(rec)[0] + ".lst"
    if not os.path.isfile(lst):
        return None
    return {str(item[0]): (item[1], item[2] if len(item) > 2 else None)
            for item in read_list(lst)}


def class_names(candidates, classes):
    """The names in the first existing synsets file of ``candidates`` that names
    ``classes`` classes, else the class indices as text."""
    for path in candidates:
        if path and os.path.isfile(path):
            names = read_synsets(path)
            if len(names) == classes:
                return names
    return [str(i) for i in range(classes)]


class ClassReport(object):
    """Per-class top-1, confusion matrix and misclassified images of one evaluation.

    Parameters
    ----------
    label, pred : array of int
        Each image's true and predicted class, in scoring order.
    confidence : array of float
        The softmax probability of each image's predicted class.
    names : list of str
        Class names; their number is the number of classes.
    keys : list of str, optional
        Each image's record key (:func:`record_keys`).
    paths : dict, optional
        ``{key: (path, label)}`` (:func:`list_paths`); a ``.lst`` whose labels disagree
        with the records is left out, with :attr:`warning` saying so.
    """

    def __init__(self, label, pred, confidence, names, keys=None, paths=None):
        self.label, self.pred = np.asarray(label, np.int64), np.asarray(pred, np.int64)
        self.confidence = np.asarray(confidence, np.float64)
        self.names = list(names)
        k = len(self.names)
        if len(self.label) and max(self.label.max(), self.pred.max()) >= k:
            raise UserError("the val labels go up to %d but the model has %d classes; evaluate "
                            "with the val .rec of the classes it was trained on"
                            % (self.label.max(), k))
        self.matrix = np.bincount(self.label * k + self.pred, minlength=k * k).reshape(k, k)
        self.images = self.matrix.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.top1 = np.diag(self.matrix) / self.images  # nan for a class without images
        self.keys = keys if keys is not None and len(keys) == len(self.label) else None
        self.paths, self.warning = paths, None
        if paths is not None and self.keys is not None:
            bad = next((key for key, y in zip(self.keys, self.label)
                        if key not in paths or (paths[key][1] is not None
                                                and int(paths[key][1]) != y)), None)
            if bad is not None:
                self.paths = None
                self.warning = ("the .lst beside the .rec does not match it (record %s: %s), "
                                "so misclassified.csv has no paths; re-run im2rec.py --list "
                                "and pack again to list them" % (
                                    bad, "not in the .lst" if bad not in paths else
                                    "another label"))

    @classmethod
    def from_result(cls, result, rec, names_from=()):
        """The report of an :func:`evaluate` result with ``per_image`` on ``rec``, class
        names from the first fitting synsets file of ``names_from``."""
        names = class_names(names_from, result["classes"])
        try:
            paths, unreadable = list_paths(rec), None
        except UserError as err:  # the paths are a help: a broken .lst must not stop the rest
            paths, unreadable = None, "%s; misclassified.csv has no paths" % err
        report = cls(result["label"], result["pred"], result["confidence"], names,
                     record_keys(rec), paths)
        report.warning = report.warning or unreadable
        return report

    # --- what the terminal and --json show --------------------------------------------

    def worst(self, n=SHOWN):
        """``[(class, top-1, images)]`` of the ``n`` classes with the lowest top-1, of
        those with a wrong image (a list of perfect classes would tell nothing)."""
        seen = np.flatnonzero(np.diag(self.matrix) < self.images)
        order = seen[np.lexsort((seen, self.top1[seen]))][:n]
        return [(int(c), float(self.top1[c]), int(self.images[c])) for c in order]

    def confused(self, n=SHOWN):
        """``[(true, predicted, images)]`` of the ``n`` most frequent confusions."""
        off = self.matrix.copy()
        np.fill_diagonal(off, 0)
        cells = np.flatnonzero(off)
        cells = cells[np.lexsort((cells, -off.flat[cells]))][:n]
        k = len(self.names)
        return [(int(c // k), int(c % k), int(off.flat[c])) for c in cells]

    def lines(self, n=SHOWN):
        """The terminal's lines: the worst classes and the most confused pairs."""
        worst, confused = self.worst(n), self.confused(n)
        if not worst:
            return ["worst classes: none, every image is right"]
        width = max(len(self.names[c]) for c, _, _ in worst)
        out = ["worst classes (top-1, images):"]
        out += ["  %-*s %.4f %6d" % (width, self.names[c], t, m) for c, t, m in worst]
        out.append("most confused (true -> predicted, images):")
        pairs = ["%s -> %s" % (self.names[t], self.names[p]) for t, p, _ in confused]
        width = max(len(s) for s in pairs)
        out += ["  %-*s %6d" % (width, s, m) for s, (_, _, m) in zip(pairs, confused)]
        return out

    def misclassified(self):
        """One dict per wrong image, the most confident first: ``key`` (its record key,
        else its position), ``path`` (from the ``.lst``, else ""), ``true``,
        ``predicted`` (class names) and ``confidence``."""
        wrong = np.flatnonzero(self.label != self.pred)
        wrong = wrong[np.argsort(-self.confidence[wrong], kind="stable")]
        rows = []
        for i in wrong:
            key = self.keys[i] if self.keys is not None else str(i)
            rows.append({"key": key,
                         "path": self.paths[key][0] if self.paths is not None else "",
                         "true": self.names[self.label[i]],
                         "predicted": self.names[self.pred[i]],
                         "confidence": round(float(self.confidence[i]), 6)})
        return rows

    def per_class(self):
        """``[{"class", "images", "top1"}]`` (top1 None for a class without images)."""
        return [{"class": name, "images": int(m),
                 "top1": float(t) if m else None}
                for name, m, t in zip(self.names, self.images, self.top1)]

    def to_json(self, cap=JSON_MISCLASSIFIED):
        """Per-class results, the matrix and the first ``cap`` misclassified images."""
        wrong = self.misclassified()
        return {"classes": self.names, "per_class": self.per_class(),
                "confusion": self.matrix.tolist(), "misclassified": wrong[:cap],
                "misclassified_count": len(wrong)}

    # --- --report DIR ------------------------------------------------------------------

    def write(self, folder, title=None):
        """Write :data:`REPORT_FILES` into ``folder`` (made if missing); returns their paths.

        ``per_class.csv``'s top1 is empty for a class without images.
        """
        check_folder(folder)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise UserError("--report %s cannot be made (%s); give a writable folder"
                            % (folder, err.strerror or err)) from None
        paths = [os.path.join(folder, name) for name in REPORT_FILES]
        head = "true\\predicted"
        atomic_save_csv(paths[0], [head] + self.names,
                        [dict(zip(self.names, row), **{head: name})
                         for name, row in zip(self.names, self.matrix.tolist())])
        self._plot(paths[1], title)
        atomic_save_csv(paths[2], ("class", "images", "top1"),
                        [dict(r, top1="" if r["top1"] is None else r["top1"])
                         for r in self.per_class()])
        atomic_save_csv(paths[3], ("key", "path", "true", "predicted", "confidence"),
                        self.misclassified())
        return paths

    def _plot(self, path, title):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from ..utils.plots import finish_figure
        k = len(self.names)
        side = min(4.0 + 0.4 * k, 24.0)
        fig, ax = plt.subplots(figsize=(side + 1.5, side))
        shown = ax.imshow(self.matrix, cmap="Blues", interpolation="nearest")
        fig.colorbar(shown, ax=ax, label="images")
        if k <= 60:  # beyond that the names overlap; confusion.csv holds them
            ax.set_xticks(range(k))
            ax.set_yticks(range(k))
            ax.set_xticklabels(self.names, rotation=90)
            ax.set_yticklabels(self.names)
        if k <= 20:
            top = self.matrix.max() or 1
            for (t, p), m in np.ndenumerate(self.matrix):
                if m:
                    ax.text(p, t, str(m), ha="center", va="center", fontsize=8,
                            color="white" if m > top / 2 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        finish_figure(fig, path, title)

