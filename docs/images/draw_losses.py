"""Draw docs/images/losses.png, the figure of LocVTP's three losses on the method page.

    python docs/images/draw_losses.py [--output docs/images/losses.png]
"""

import argparse
from pathlib import Path

import matplotlib


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402


POSITIVE = "#2e7d32"
NEGATIVE = "#c62828"
REFERENCE = "#1565c0"
CONTEXT = "#ef6c00"
NEUTRAL = "#9e9e9e"
INK = "#212121"


def box(ax, x, y, width, height, text="", face="white", edge=INK, text_colour=INK, size=9, style="-", alpha=1.0):
    ax.add_patch(
        FancyBboxPatch(
            (x, y), width, height, boxstyle="round,pad=0.02,rounding_size=0.12", facecolor=face, edgecolor=edge,
            linewidth=1.2, linestyle=style, alpha=alpha,
        )
    )
    if text:
        ax.text(x + width / 2, y + height / 2, text, ha="center", va="center", fontsize=size, color=text_colour)


def clip_icon(ax, x, y, width, height, edge=INK, face="#eceff1"):
    """A clip: a small film strip of three frames."""
    ax.add_patch(Rectangle((x, y), width, height, facecolor=face, edgecolor=edge, linewidth=1.2))
    for k in range(3):
        ax.add_patch(
            Rectangle((x + width * (0.08 + 0.3 * k), y + height * 0.2), width * 0.24, height * 0.6,
                      facecolor="white", edgecolor=edge, linewidth=0.6)
        )


def arrow(ax, start, end, colour=INK, style="-|>", width=1.3, curve=0.0, dashed=False):
    ax.add_patch(
        FancyArrowPatch(
            start, end, arrowstyle=style, mutation_scale=11, color=colour, linewidth=width,
            connectionstyle=f"arc3,rad={curve}", linestyle="--" if dashed else "-",
        )
    )


def panel(ax, title, subtitle):
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.text(0, 9.9, title, fontsize=12, fontweight="bold", va="top", color=INK)
    ax.text(0, 9.25, subtitle, fontsize=9, va="top", color="#424242")


def draw_coarse(ax):
    panel(ax, "1. Coarse: video \u2194 sentence", "one embedding per video and per sentence")
    size, left, top = 1.25, 2.6, 7.7
    for row in range(4):
        y = top - (row + 1) * size
        clip_icon(ax, left - 1.55, y + 0.3, 1.1, 0.65)
        ax.text(left - 1.7, y + size / 2, f"z{row + 1}", ha="right", va="center", fontsize=9)
        for column in range(4):
            diagonal = row == column
            ax.add_patch(
                Rectangle((left + column * size, y), size, size, edgecolor="white", linewidth=2,
                          facecolor=POSITIVE if diagonal else NEGATIVE, alpha=0.85 if diagonal else 0.25)
            )
            ax.text(left + (column + 0.5) * size, y + size / 2, "+" if diagonal else "\u2212", ha="center",
                    va="center", fontsize=13, color="white" if diagonal else NEGATIVE)
    for column in range(4):
        ax.text(left + (column + 0.5) * size, top + 0.15, f"s{column + 1}", ha="center", va="bottom", fontsize=9)
    ax.text(left + 2 * size, top + 0.6, "sentences of the global batch", ha="center", va="bottom", fontsize=9)
    ax.text(0, 1.55, "Each video must pick its own sentence among all sentences\n"
                     "of every process, and each sentence its own video:\n"
                     "symmetric InfoNCE with a learnable temperature.", fontsize=9, va="top")


def draw_fine(ax):
    panel(ax, "2. Fine-grained: clip \u2194 word", "positives discovered by similarity, without labels")
    words = ["[CLS]", "a", "man", "opens", "the", "door", "[SEP]"]
    word_width, word_gap, word_y = 1.1, 0.12, 7.2
    word_x = [0.05 + k * (word_width + word_gap) for k in range(len(words))]
    for x, word in zip(word_x, words):
        special = word.startswith("[")
        box(ax, x, word_y, word_width, 0.7, word, face="#f5f5f5" if special else "white",
            edge=NEUTRAL if special else INK, text_colour=NEUTRAL if special else INK, size=8.5,
            style="--" if special else "-")
    clip_width, clip_gap, clip_y = 1.15, 0.2, 3.6
    clip_x = [0.5 + k * (clip_width + clip_gap) for k in range(6)]
    for k, x in enumerate(clip_x):
        clip_icon(ax, x, clip_y, clip_width, 0.7)
        ax.text(x + clip_width / 2, clip_y - 0.25, f"v{k + 1}", ha="center", va="top", fontsize=9)
    # the top-1 word of each clip, as the discovery step might find it
    for clip, word in enumerate([2, 2, 3, 3, 5, 5]):
        arrow(ax, (clip_x[clip] + clip_width / 2, clip_y + 0.75), (word_x[word] + word_width / 2, word_y - 0.05),
              colour=POSITIVE, style="-", width=1.6)
    ax.text(9.95, 5.55, "discovered\npairs:\npositives", ha="right", va="center", fontsize=8.5, color=POSITIVE)
    box(ax, 0.05, 1.75, 9.9, 0.8, "words and clips of the other samples (all processes): negatives",
        face="#ffebee", edge=NEGATIVE, text_colour=NEGATIVE, size=8.5)
    ax.text(0, 1.45, "The sample's own other words are neither positive nor negative;\n"
                     "special tokens and padding never take part.", fontsize=9, va="top")


def draw_temporal(ax, sigma=1.0):
    panel(ax, "3. Temporal: context projection head", "a neighbour warped to the reference position")
    offsets = np.arange(-3, 4)
    width, gap, clip_y = 1.1, 0.27, 4.7
    xs = [0.3 + k * (width + gap) for k in range(len(offsets))]
    reference, context = 3, 5  # indices into offsets: clip t and clip t + delta, delta = +2
    for k, (x, offset) in enumerate(zip(xs, offsets)):
        edge = REFERENCE if k == reference else CONTEXT if k == context else INK
        clip_icon(ax, x, clip_y, width, 0.7, edge=edge, face="#e3f2fd" if k == reference else
                  "#fff3e0" if k == context else "#eceff1")
        label = "t" if offset == 0 else f"t{offset:+d}"
        ax.text(x + width / 2, clip_y + 0.85, label, ha="center", va="bottom", fontsize=9,
                color=REFERENCE if k == reference else CONTEXT if k == context else INK)
    # the context head warps v[t + delta] with offset -delta into q[t]
    head_x, head_y = 4.6, 7.05
    box(ax, head_x, head_y, 3.1, 0.8, "g(v[t+\u03b4], \u2212\u03b4)", face="#fff3e0", edge=CONTEXT, size=9)
    arrow(ax, (xs[context] + width / 2, clip_y + 1.25), (head_x + 2.3, head_y - 0.05), colour=CONTEXT)
    box(ax, 1.6, head_y, 1.5, 0.8, "q[t]", face="#e3f2fd", edge=REFERENCE, size=9)
    arrow(ax, (head_x - 0.05, head_y + 0.4), (3.15, head_y + 0.4), colour=CONTEXT)
    arrow(ax, (2.35, head_y - 0.05), (xs[reference] + width / 2, clip_y + 1.25), colour=POSITIVE, width=1.8)
    ax.text(1.45, 6.2, "positive", ha="right", fontsize=8.5, color=POSITIVE)
    # weight of each clip of the video in the denominator: near neighbours are soft negatives
    weights = 1 - np.exp(-(offsets.astype(float) ** 2) / (2 * sigma**2))
    base, scale = 2.0, 1.9
    ax.plot([0.2, 9.9], [base, base], color=INK, linewidth=0.8)
    for k, (x, weight) in enumerate(zip(xs, weights)):
        height, colour = (scale, POSITIVE) if k == reference else (scale * weight, NEGATIVE)
        ax.add_patch(Rectangle((x + 0.25, base), width - 0.5, height, facecolor=colour, alpha=0.8))
        ax.text(x + width / 2, base + height + 0.08, "1" if k == reference else f"{weight:.2f}", ha="center",
                va="bottom", fontsize=7.5, color=colour)
    ax.text(0, 1.75, "q[t] must pick clip t among the clips of its own video;\n"
                     "the others are negatives weighted by 1 \u2212 exp(\u2212d\u00b2 / 2\u03c3\u00b2)\n"
                     "(bars, \u03c3 = 1): near neighbours count less.\n"
                     "q[t] must also match the words discovered for clip t.", fontsize=9, va="top")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(Path(__file__).with_name("losses.png")), help="PNG or SVG file.")
    args = parser.parse_args()
    figure, axes = plt.subplots(1, 3, figsize=(15, 5.2))
    draw_coarse(axes[0])
    draw_fine(axes[1])
    draw_temporal(axes[2])
    figure.subplots_adjust(left=0.02, right=0.98, top=0.97, bottom=0.02, wspace=0.12)
    figure.savefig(args.output, dpi=110, metadata={"Software": None})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
