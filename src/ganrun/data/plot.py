"""Scatter plots of generated 2-D points over the data, for the mixture data sets."""

from __future__ import annotations

from pathlib import Path

import torch


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
    path.parent.mkdir(parents=True, exist_ok=True)
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
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
