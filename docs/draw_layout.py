#!/usr/bin/env python
"""Draw docs/layout.png: the packages of mobilenet_skip and how data flows through them,
from an image folder to the runtimes that load an export. Run `python docs/draw_layout.py`
after moving a module; docs/layout.md shows the picture and lists the same names as
text."""
import os
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layout.png")
COLOURS = {"files": "#eeeeee", "code": "#cfe2f3", "shared": "#fff2cc"}

# One column per stage, left to right: (title, kind, [(style, line), ...]). Style "tool"
# is a command a user types, "pkg" the package doing the work, "out" what the stage leaves.
STAGES = [
    ("image folder", "files", [
        ("out", "root/<class>/*.jpg"),
        ("tool", "tools/make_demo_data.py"),
        ("note", "(the demo digits)"),
    ]),
    ("RecordIO", "code", [
        ("tool", "tools/im2rec.py"),
        ("pkg", "mobilenet_skip.recordio"),
        ("note", "listing, packing, check"),
        ("out", "train.rec + .idx"),
        ("out", "val.rec + .idx"),
        ("out", "*.synsets.txt"),
    ]),
    ("train", "code", [
        ("tool", "tools/train_imagenet.py"),
        ("pkg", "mobilenet_skip.train"),
        ("note", "loop (fit), step, callbacks"),
        ("note", "devices (kvstore), resume"),
        ("tool", "tools/launch.py (hosts)"),
        ("pkg", "mobilenet_skip.launch"),
    ]),
    ("run folder", "files", [
        ("note", "--save-dir, owned by RunDir"),
        ("out", "config.yaml"),
        ("out", "<model>-NNNN.params"),
        ("out", "<model>-NNNN.states"),
        ("out", "metrics.csv"),
        ("out", "curves.png"),
    ]),
    ("deploy forms", "code", [
        ("tool", "tools/export_model.py"),
        ("pkg", "mobilenet_skip.deploy"),
        ("note", "source (which weights)"),
        ("note", "artifact (sidecar .json)"),
        ("note", "forms: fp32 fused int8 onnx"),
        ("out", "-symbol.json -0000.params"),
        ("out", ".json .synsets.txt .onnx"),
    ]),
    ("runtimes", "code", [
        ("note", "gluon SymbolBlock"),
        ("note", "mx.mod.Module"),
        ("note", "ONNX Runtime"),
        ("tool", "tools/eval_imagenet.py"),
        ("tool", "tools/predict.py"),
        ("tool", "tools/benchmark.py"),
        ("pkg", "mobilenet_skip.bench"),
        ("tool", "examples/plain_mxnet_predict.py"),
    ]),
]
# What the arrow from stage i to stage i + 1 carries.
FLOWS = ["pack", "Image-\nRecordIter", "save", "best or\nlast epoch", "load"]
# The lower layers (tests/test_layers.py): each imports only those left of it.
SHARED = [
    ("mobilenet_skip.utils", "files, bars, cores, plots"),
    ("mobilenet_skip.models", "the five networks (Table 1)"),
    ("mobilenet_skip.optim", "optimizers, lr modes"),
    ("mobilenet_skip.data", "iterators, Preprocessing"),
    ("mobilenet_skip.config", "recipes/*.yaml, flags"),
    ("mobilenet_skip.runs", "run folder, checkpoints, scorer"),
]
STYLE = {"tool": dict(family="monospace", color="#1a4d80"),
         "pkg": dict(weight="bold"),
         "note": dict(),
         "out": dict(family="monospace", color="#555555")}
WIDTH, GAP, TOP, LINE = 2.45, 0.85, 5.0, 0.34


def stage(ax, x, title, kind, lines):
    """One stage's box with its title and lines; returns the box's bottom edge."""
    height = 0.65 + LINE * len(lines)
    ax.add_patch(FancyBboxPatch((x, TOP - height), WIDTH, height, boxstyle="round,pad=0.04",
                                fc=COLOURS[kind], ec="#555555", lw=0.9))
    ax.text(x + WIDTH / 2, TOP - 0.28, title, ha="center", va="center", fontsize=11,
            weight="bold")
    for i, (style, text) in enumerate(lines):
        ax.text(x + 0.1, TOP - 0.7 - LINE * i, text, ha="left", va="center", fontsize=7.6,
                **STYLE[style])
    return TOP - height


def arrow(ax, x0, x1, y, label):
    ax.annotate("", xy=(x1, y), xytext=(x0, y),
                arrowprops=dict(arrowstyle="-|>", lw=1.2, color="#333333"))
    ax.text((x0 + x1) / 2, y + 0.12, label, ha="center", va="bottom", fontsize=7,
            style="italic")


def shared_row(ax, x0, x1, y):
    """The modules both sides use, in one strip under the stages they serve."""
    ax.add_patch(FancyBboxPatch((x0, y - 0.95), x1 - x0, 0.95, boxstyle="round,pad=0.04",
                                fc=COLOURS["shared"], ec="#555555", lw=0.9))
    ax.text(x0 + 0.1, y - 0.15, "the layers below train, deploy and bench (each imports only those to its left)", fontsize=8,
            style="italic", va="center")
    step = (x1 - x0) / len(SHARED)
    for i, (name, what) in enumerate(SHARED):
        ax.text(x0 + 0.1 + i * step, y - 0.47, name, fontsize=7.6, weight="bold", va="center")
        ax.text(x0 + 0.1 + i * step, y - 0.75, what, fontsize=7.4, va="center")


def main(out=None):
    out = out or OUT
    fig, ax = plt.subplots(figsize=(17, 6.4))
    xs = [i * (WIDTH + GAP) for i in range(len(STAGES))]
    bottoms = [stage(ax, x, *spec) for x, spec in zip(xs, STAGES)]
    for i, label in enumerate(FLOWS):
        arrow(ax, xs[i] + WIDTH + 0.05, xs[i + 1] - 0.05, TOP - 0.28, label)
    low = min(bottoms) - 0.35
    shared_row(ax, xs[1], xs[-1] + WIDTH, low)
    ax.set_xlim(-0.2, xs[-1] + WIDTH + 0.2)
    ax.set_ylim(low - 1.15, TOP + 0.55)
    ax.axis("off")
    ax.set_title("mobilenet-skip: packages and data flow (blue boxes: code, grey: files on "
                 "disk; blue lines: commands a user runs)", fontsize=12)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print("wrote %s" % out)


if __name__ == "__main__":
    main(*sys.argv[1:2])
