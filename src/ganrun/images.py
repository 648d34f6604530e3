"""Images out of ganrun: the one conversion of model output to uint8, PNG grids, scatter plots
of 2-D points, 1-D densities, and the figures a model family shows during training
(:class:`Grid`, :class:`Scatter`, :class:`Densities`).

Every float image becomes uint8 the same way, for metrics, npz files and PNGs alike:
``round((x - lo) * 255 / (hi - lo))``, clamped to [0, 255], where ``(lo, hi)`` is the value range
the model outputs and the data was scaled to. ``round`` is ``torch.round``, which sends exact
halves to the even neighbour; model outputs land on exact halves only by chance.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ganrun.errors import GanrunError
from ganrun.runs.files import atomic_write

PADDING = 2  # pixels between the images of a grid (torchvision's make_grid default)


def to_uint8(images: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Float images (N, C, H, W) in ``value_range`` -> uint8, same shape, on the CPU."""
    lo, hi = value_range
    out = (images.detach().float().cpu() - lo).mul_(255.0 / (hi - lo))
    return out.round_().clamp_(0, 255).to(torch.uint8)


def gray_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """(N, 1|3, H, W) -> (N, 3, H, W): grayscale repeated to three identical channels, as PIL's
    ``convert("RGB")`` does."""
    if images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1).contiguous()
    if images.shape[1] != 3:
        raise GanrunError(f"cannot show {images.shape[1]}-channel images; 1 or 3 are supported")
    return images


def default_nrow(n: int) -> int:
    """Images per row of a square-ish grid of ``n``."""
    return max(1, int(math.sqrt(n)))


def grid_image(
    images: torch.Tensor, value_range: tuple[float, float], nrow: int | None = None
) -> torch.Tensor:
    """One uint8 (3, H, W) image of the images side by side, ``nrow`` to a row."""
    from torchvision.utils import make_grid

    pixels = gray_to_rgb(to_uint8(images, value_range))
    return make_grid(pixels, nrow=nrow or default_nrow(images.shape[0]), padding=PADDING)


def enlarged(image: torch.Tensor, min_width: int) -> torch.Tensor:
    """An image (C, H, W) at least ``min_width`` pixels wide: every pixel repeated as a square
    block, by the smallest whole factor that gets there (nearest neighbour: no pixel is made
    up, and the blocks keep the model's own pixels visible). Unchanged when it is that wide
    already or ``min_width`` is 0."""
    width = image.shape[-1]
    if min_width <= 0 or width >= min_width:
        return image
    factor = math.ceil(min_width / width)
    return image.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def save_grid(
    images: torch.Tensor,
    path: str | Path,
    value_range: tuple[float, float],
    nrow: int | None = None,
    min_width: int = 0,
) -> Path:
    """Write images (N, C, H, W) in ``value_range`` as one PNG grid, ``nrow`` images per row,
    enlarged to at least ``min_width`` pixels wide (:func:`enlarged`)."""
    return _write_png(enlarged(grid_image(images, value_range, nrow), min_width), path)


def save_image(image: torch.Tensor, path: str | Path, value_range: tuple[float, float]) -> Path:
    """Write one image (C, H, W) in ``value_range`` as a PNG file: grayscale stays one channel."""
    return _write_png(to_uint8(image[None], value_range)[0], path)


def _write_png(pixels: torch.Tensor, path: str | Path) -> Path:
    """uint8 (1 | 3, H, W) -> a PNG file, written atomically."""
    from PIL import Image

    array = pixels.permute(1, 2, 0).numpy()
    array = array[..., 0] if array.shape[-1] == 1 else array
    return atomic_write(path, lambda f: Image.fromarray(array).save(f, format="PNG"))


def plot_points(
    samples: torch.Tensor,
    real: torch.Tensor | None,
    centers: torch.Tensor | None,
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Write a PNG: real points (grey), generated points (blue), mode centres (red crosses).

    The axes are fitted to the real data and the centres, not to the samples, so that plots of
    one run stay comparable from step to step; samples that stray further are drawn on the
    border and counted in the legend.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    path = Path(path)
    fake = samples.detach().float().cpu()[:, :2]
    refs = [t.detach().float().cpu()[:, :2] for t in (real, centers) if t is not None]
    ref = torch.cat(refs) if refs else fake
    lo, hi = ref.min(dim=0).values, ref.max(dim=0).values
    margin = 0.15 * (hi - lo).max().clamp_min(1e-3)
    lo, hi = lo - margin, hi + margin
    outside = int(((fake < lo) | (fake > hi)).any(dim=1).sum())
    shown = torch.max(torch.min(fake, hi), lo)

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    try:
        if real is not None:
            r = real.detach().float().cpu()[:, :2]
            ax.scatter(r[:, 0], r[:, 1], s=2, c="0.7", alpha=0.5, linewidths=0, label="data")
        label = "samples" + (f" ({outside} outside, on the border)" if outside else "")
        ax.scatter(
            shown[:, 0], shown[:, 1], s=4, c="tab:blue", alpha=0.7, linewidths=0, label=label
        )
        if centers is not None:
            c = centers.detach().float().cpu()
            ax.scatter(
                c[:, 0],
                c[:, 1],
                s=30,
                c="tab:red",
                marker="x",
                linewidths=1,
                alpha=0.8,
                label="modes",
            )
        ax.set_xlim(float(lo[0]), float(hi[0]))
        ax.set_ylim(float(lo[1]), float(hi[1]))
        ax.set_aspect("equal")
        # Below the axes: inside, it would hide the modes in a corner of the grid.
        ax.legend(
            loc="upper center",
            bbox_to_anchor=(0.5, -0.07),
            ncol=3,
            fontsize="small",
            markerscale=2,
            frameon=False,
        )
        if title:
            ax.set_title(title)
        fig.tight_layout()
        return save_plot(fig, path)
    finally:
        plt.close(fig)


def save_plot(fig: Any, path: str | Path, **savefig: Any) -> Path:
    """A matplotlib figure as a PNG file, written whole or not at all."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **savefig)
    return atomic_write(path, buffer.getvalue())


@dataclass
class Grid:
    """Images side by side in one PNG (``<name>.png``), ``nrow`` to a row."""

    name: str
    images: torch.Tensor  # (N, C, H, W) in value_range
    value_range: tuple[float, float]
    nrow: int | None = None

    def save(self, folder: Path, min_width: int = 0) -> Path:
        path = folder / f"{self.name}.png"
        return save_grid(self.images, path, self.value_range, self.nrow, min_width)


@dataclass
class Scatter:
    """Generated 2-D points over the data and its mode centres (``<name>.png``)."""

    name: str
    samples: torch.Tensor  # (N, D); the first two coordinates are drawn
    real: torch.Tensor | None
    centers: torch.Tensor | None
    title: str = ""

    def save(self, folder: Path, min_width: int = 0) -> Path:
        # A plot has a size of its own: min_width is for grids of small images.
        return plot_points(
            self.samples, self.real, self.centers, folder / f"{self.name}.png", self.title or None
        )


@dataclass
class Densities:
    """1-D data in the manner of Figure 1 of Goodfellow et al. (2014): p_data, the estimated p_g,
    D and D* over x, and below them the mapping x = G(z) from a line of evenly spaced z
    (``<name>.png``)."""

    name: str
    x: torch.Tensor  # (K,) where the curves are drawn
    p_data: torch.Tensor  # (K,)
    p_g: torch.Tensor  # (K,)
    d: torch.Tensor | None  # D(x) (K,), None for a model without one
    d_star: torch.Tensor  # (K,)
    z: torch.Tensor | None  # (L,) latent values, and
    gz: torch.Tensor | None  # (L,) where G sends them; None when z is not 1-D
    title: str = ""

    def save(self, folder: Path, min_width: int = 0) -> Path:
        return plot_densities(self, folder / f"{self.name}.png")


def plot_densities(f: Densities, path: Path) -> Path:
    """Write :class:`Densities` as a PNG: the paper's colours (data black dotted, p_g green, D
    blue dashed) with D* in red; x where p_data and p_g are negligible is trimmed away."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = f.x.double()
    mass = torch.maximum(f.p_data, f.p_g).double()
    shown = (mass > 1e-3 * float(mass.max())).nonzero().reshape(-1)
    lo, hi = float(x[shown[0]]), float(x[shown[-1]])
    mapping = f.z is not None and f.gz is not None
    if f.z is not None:  # the z line is drawn on the same axis
        lo, hi = min(lo, float(f.z.min())), max(hi, float(f.z.max()))
    fig, axes = plt.subplots(
        2 if mapping else 1,
        1,
        figsize=(7, 5.2 if mapping else 3.8),
        dpi=100,
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 1]} if mapping else None,
    )
    try:
        ax = axes[0, 0]
        top = float(mass.max()) * 1.1 or 1.0
        ax.plot(x, f.p_data, ":", color="black", lw=2, label="p_data")
        ax.plot(x, f.p_g, "-", color="tab:green", lw=1.5, label="p_g (estimated)")
        twin = ax.twinx()
        twin.set_ylim(0, 1.05)
        d_star = "D* = p_data/(p_data+p_g)"
        twin.plot(x, f.d_star, "-", color="tab:red", lw=1, alpha=0.8, label=d_star)
        if f.d is not None:
            twin.plot(x, f.d, "--", color="tab:blue", lw=1.5, label="D(x)")
        twin.axhline(0.5, color="0.6", lw=0.5)
        twin.set_ylabel("D")
        ax.set_ylim(0, top)
        ax.set_ylabel("density")
        ax.set_xlim(lo, hi)
        lines = ax.get_legend_handles_labels()
        more = twin.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize="small", loc="upper left")
        if f.title:
            ax.set_title(f.title)
        if mapping:
            below = axes[1, 0]
            for z, gz in zip(f.z.tolist(), f.gz.tolist(), strict=True):
                below.annotate(
                    "",
                    xy=(min(max(gz, lo), hi), 1.0),
                    xytext=(z, 0.0),
                    arrowprops={"arrowstyle": "->", "color": "0.3", "lw": 0.7},
                )
            below.axhline(0.0, color="black", lw=1)
            below.axhline(1.0, color="black", lw=1)
            below.set_yticks([0.0, 1.0], ["z", "x"])
            below.set_ylim(-0.15, 1.15)
            below.set_xlabel("x (and z, on the lower line)")
        else:
            ax.set_xlabel("x")
        fig.tight_layout()
        return save_plot(fig, path)
    finally:
        plt.close(fig)


Figure = Grid | Scatter | Densities
