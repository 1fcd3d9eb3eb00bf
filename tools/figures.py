"""Draw the notebook's figures with matplotlib, byte for byte reproducibly.

Usage:
    python tools/figures.py            # write source/hw2/imgs/*.png
    python tools/figures.py --check    # exit 1, listing every figure that differs or is missing

The PNGs carry no timestamp or software tag, so the same matplotlib draws the same bytes.
"""

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Polygon  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools import generated  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
IMG_DIR = ROOT / "source" / "hw2" / "imgs"
COMMAND = "python tools/figures.py"
DPI = 100
# Oblique projection of the depth (channel) axis of a volume.
DEPTH_DX, DEPTH_DY = 0.45, 0.3


def _box(ax, x: float, y: float, w: float, h: float, d: float, color: str, alpha=1.0, lw=1.0):
    """Draw a w x h x d box in oblique projection, front face's lower-left corner at (x, y)."""
    dx, dy = d * DEPTH_DX, d * DEPTH_DY
    faces = [
        [(x, y), (x + w, y), (x + w, y + h), (x, y + h)],  # front
        [(x, y + h), (x + w, y + h), (x + w + dx, y + h + dy), (x + dx, y + h + dy)],  # top
        [(x + w, y), (x + w + dx, y + dy), (x + w + dx, y + h + dy), (x + w, y + h)],  # side
    ]
    for face, shade in zip(faces, (1.0, 0.85, 0.7), strict=True):
        rgb = matplotlib.colors.to_rgb(color)
        ax.add_patch(
            Polygon(
                face,
                closed=True,
                facecolor=tuple(c * shade for c in rgb),
                edgecolor="black",
                alpha=alpha,
                lw=lw,
            )
        )


def draw_cnn_filters() -> plt.Figure:
    """An input volume, two filters sliding over it, and the output volume of feature maps."""
    fig, ax = plt.subplots(figsize=(9, 4.2))
    ax.set_xlim(0, 18)
    ax.set_ylim(0, 8.4)
    ax.set_aspect("equal")
    ax.set_axis_off()

    # Input volume (H x W x C_in) with the receptive field of the current position.
    _box(ax, 0.5, 1.2, 5.0, 5.0, 3.0, "#cfe2f3")
    _box(ax, 1.2, 4.0, 1.5, 1.5, 3.0, "#f6b26b", alpha=0.9)
    ax.text(3.0, 0.6, "input volume\n$C_{in} \\times H \\times W$", ha="center", va="top")

    # Filters: each spans all input channels.
    filter_colors = ("#f6b26b", "#93c47d")
    for k, color in enumerate(filter_colors):
        _box(ax, 8.0, 5.4 - 2.6 * k, 1.5, 1.5, 3.0, color)
        ax.text(8.75, 5.0 - 2.6 * k, f"filter {k + 1}", ha="center", va="top", fontsize=10)
    ax.text(
        9.4, 0.6, "$C_{out}$ filters,\neach $C_{in} \\times K \\times K$", ha="center", va="top"
    )

    # Output volume: one feature map per filter.
    for k, color in enumerate(filter_colors):
        _box(ax, 12.5 + 0.55 * k, 1.6 + 0.37 * k, 4.0, 4.0, 0.8, color, alpha=0.85)
    ax.add_patch(Polygon([(13.0, 4.6), (13.3, 4.6), (13.3, 4.9), (13.0, 4.9)], color="black"))
    ax.text(15.0, 0.6, "output volume\n$C_{out} \\times H' \\times W'$", ha="center", va="top")

    arrow = dict(arrowstyle="-|>", mutation_scale=14, lw=1.2, color="black")
    ax.add_patch(FancyArrowPatch((3.6, 6.3), (7.9, 6.0), connectionstyle="arc3,rad=-0.2", **arrow))
    ax.add_patch(
        FancyArrowPatch((10.6, 6.0), (13.1, 5.0), connectionstyle="arc3,rad=-0.2", **arrow)
    )
    ax.text(
        11.8,
        7.4,
        "dot product + bias at each position\n= one activation of a feature map",
        ha="center",
        fontsize=10,
    )
    ax.text(2.0, 7.5, "slides over $H \\times W$", ha="center", fontsize=10)
    return fig


def _layer_box(ax, x: float, y: float, text: str, color: str) -> None:
    ax.add_patch(
        FancyBboxPatch(
            (x - 1.4, y - 0.3), 2.8, 0.6, boxstyle="round,pad=0.05", fc=color, ec="black", lw=1
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=11)


def _residual_block(ax, x: float, title: str, layers: list[str], color: str) -> None:
    """A vertical stack of conv layers with ReLUs between them and a skip arrow around it."""
    arrow = dict(arrowstyle="-|>", mutation_scale=12, lw=1.2, color="black")
    top = 8.6
    ax.text(x, top + 0.9, title, ha="center", fontsize=12, weight="bold")
    ax.add_patch(FancyArrowPatch((x, top + 0.5), (x, top + 0.3), **arrow))
    ys = [top - 1.5 * i for i in range(len(layers))]
    for i, (y, layer) in enumerate(zip(ys, layers, strict=True)):
        _layer_box(ax, x, y, layer, color)
        if i < len(layers) - 1:
            ax.add_patch(FancyArrowPatch((x, y - 0.35), (x, y - 1.15), **arrow))
            ax.text(x + 0.15, y - 0.75, "relu", fontsize=9, va="center")
    plus_y = ys[-1] - 1.3
    ax.add_patch(FancyArrowPatch((x, ys[-1] - 0.35), (x, plus_y + 0.25), **arrow))
    ax.add_patch(matplotlib.patches.Circle((x, plus_y), 0.25, fc="white", ec="black", lw=1.2))
    ax.text(x, plus_y, "+", ha="center", va="center", fontsize=13)
    ax.add_patch(FancyArrowPatch((x, plus_y - 0.25), (x, plus_y - 0.85), **arrow))
    ax.text(x + 0.15, plus_y - 0.55, "relu", fontsize=9, va="center")
    # The shortcut: from the block's input, around the stack, into the sum.
    side = x + 2.0
    ax.plot([x, side, side], [top + 0.4, top + 0.4, plus_y], color="black", lw=1.2)
    ax.add_patch(FancyArrowPatch((side, plus_y), (x + 0.27, plus_y), **arrow))
    ax.text(side + 0.15, (top + plus_y) / 2, "identity", rotation=90, va="center", fontsize=10)


def draw_resnet_blocks() -> plt.Figure:
    """A plain residual block (64 channels) beside a bottleneck block (256 channels)."""
    fig, ax = plt.subplots(figsize=(9, 5.4))
    ax.set_xlim(0, 15)
    ax.set_ylim(2.2, 10.2)
    ax.set_aspect("equal")
    ax.set_axis_off()
    _residual_block(ax, 3.5, "64 channels", ["3x3 conv, 64", "3x3 conv, 64"], "#cfe2f3")
    _residual_block(
        ax, 10.5, "256 channels", ["1x1 conv, 64", "3x3 conv, 64", "1x1 conv, 256"], "#d9ead3"
    )
    return fig


FIGURES: dict[str, Callable[[], plt.Figure]] = {
    "cnn_filters.png": draw_cnn_filters,
    "resnet_block2.png": draw_resnet_blocks,
}


def render(draw: Callable[[], plt.Figure]) -> bytes:
    """The PNG bytes of one figure, without metadata that would change between runs."""
    plt.rcParams.update({"font.size": 12, "svg.hashsalt": "hw2", "path.simplify": True})
    fig = draw()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def build_all() -> dict[Path, bytes]:
    """Every figure, as PNG bytes, keyed by its path."""
    return {IMG_DIR / name: render(draw) for name, draw in FIGURES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify, write nothing")
    args = parser.parse_args(argv)
    files, notes = generated.keep_equivalent(build_all())
    print(f"figures: compared by decoded pixels ({generated.PNG_TOLERANCE})")
    for path, note in notes.items():
        print(f"  {path.relative_to(ROOT)}: {note}")
    if args.check:
        stale = [p for p, data in files.items() if not p.is_file() or p.read_bytes() != data]
        if stale:
            names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
            print(f"figures: out of date: {names}; run `{COMMAND}` and commit", file=sys.stderr)
            return 1
        print(f"figures: all {len(files)} figures match {COMMAND}")
        return 0
    IMG_DIR.mkdir(parents=True, exist_ok=True)
    changed = generated.write_changed(files)
    print(f"figures: {changed} of {len(files)} files changed under {IMG_DIR.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
