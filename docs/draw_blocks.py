#!/usr/bin/env python
"""Draw docs/blocks.png: the three DW block types of the paper (Fig. 3-4), as built in
mobilenet_skip/models/blocks.py. Run `python docs/draw_blocks.py` after changing a block."""
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "blocks.png")
COLOURS = {"conv": "#cfe2f3", "bn": "#fff2cc", "relu": "#d9ead3", "add": "#f4cccc",
           "io": "#eeeeee", "proj": "#d9d2e9"}


def box(ax, x, y, text, kind, w=1.9, h=0.42):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.03",
                                fc=COLOURS[kind], ec="#555555", lw=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5)


def arrow(ax, x0, y0, x1, y1, **kw):
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                arrowprops=dict(arrowstyle="-|>", lw=0.9, color="#333333", **kw))


def column(ax, x, top, items):
    """Boxes from top to bottom with arrows between; returns their y positions."""
    ys = [top - 0.62 * i for i in range(len(items))]
    for i, ((text, kind), y) in enumerate(zip(items, ys)):
        box(ax, x, y, text, kind)
        if i:
            arrow(ax, x, ys[i - 1] - 0.21, x, y + 0.21)
    return ys


def panel(ax, title, items, add_index, skip_from, skip_label, skip_kind=None, note=""):
    ys = column(ax, 0, 5.6, items)
    side = 1.55
    y0, y1 = ys[skip_from] - 0.21, ys[add_index]
    ax.plot([0.0, side], [y0 - 0.08, y0 - 0.08], color="#333333", lw=0.9)
    if skip_kind:
        box(ax, side, (y0 + y1) / 2, skip_label, skip_kind, w=1.3)
        ax.plot([side, side], [y0 - 0.08, (y0 + y1) / 2 + 0.21], color="#333333", lw=0.9)
        ax.plot([side, side], [(y0 + y1) / 2 - 0.21, y1], color="#333333", lw=0.9)
    else:
        ax.plot([side, side], [y0 - 0.08, y1], color="#333333", lw=0.9)
        ax.text(side + 0.08, (y0 + y1) / 2, skip_label, fontsize=8, rotation=90, va="center")
    arrow(ax, side, y1, 0.95, y1)
    ax.set_title(title, fontsize=10)
    ax.text(0, ys[-1] - 0.55, note, ha="center", va="top", fontsize=8, style="italic")
    ax.set_xlim(-1.3, 2.5)
    ax.set_ylim(ys[-1] - 1.1, 6.1)
    ax.axis("off")


def main():
    fig, axes = plt.subplots(1, 3, figsize=(11.5, 5.6))
    dwconv = [("dw 3x3 conv (stride s)", "conv"), ("BN", "bn"), ("ReLU", "relu"),
              ("pw 1x1 conv", "conv")]
    panel(axes[0], "identity skip (simple-connect)\noriginal activation",
          [("x", "io")] + dwconv + [("BN", "bn"), ("+", "add"), ("ReLU", "relu"),
                                    ("x_next", "io")],
          add_index=6, skip_from=0, skip_label="h(x) = x",
          note="Conv_4, _6, 8-12, _14\nx_next = ReLU(x + F(x))")
    panel(axes[1], "projection skip (full-connect)\noriginal activation",
          [("x", "io")] + dwconv + [("BN", "bn"), ("+", "add"), ("ReLU", "relu"),
                                    ("x_next", "io")],
          add_index=6, skip_from=0, skip_label="1x1 conv /s\n+ BN", skip_kind="proj",
          note="Conv_2, _3, _5, _7, _13\nx_next = ReLU(BN(W x) + F(x))")
    panel(axes[2], "pre-activation (ResNet v2)\nidentity or projection skip",
          [("x", "io"), ("BN", "bn"), ("ReLU", "relu")] + dwconv + [("+", "add"),
                                                                    ("x_next", "io")],
          add_index=7, skip_from=0, skip_label="x  (or 1x1 conv /s\nof ReLU(BN(x)))",
          note="a = ReLU(BN(x)); x_next = x + F(a)\nor W a + F(a); no ReLU after +;\n"
               "final BN-ReLU before pooling")
    fig.suptitle("DW blocks of the improved MobileNet (paper eq. 1-2, Fig. 3-4); "
                 "F = the DW unit", fontsize=11)
    fig.tight_layout()
    fig.savefig(OUT, dpi=110)
    print("wrote %s" % OUT)


if __name__ == "__main__":
    main()
