"""Sample grids as PNG files (torchvision's ``save_image``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torchvision.utils import save_image

if TYPE_CHECKING:
    from ganrun.data import Data


def save_grid(
    images: torch.Tensor,
    path: str | Path,
    value_range: tuple[float, float],
    nrow: int | None = None,
) -> Path:
    """Write images (N, C, H, W) in ``value_range`` as one grid, ``nrow`` images per row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lo, hi = value_range
    images = ((images.detach().float().cpu() - lo) / (hi - lo)).clamp_(0, 1)
    nrow = nrow or max(1, int(math.sqrt(images.shape[0])))
    save_image(images, path, nrow=nrow, padding=2)
    return path


@torch.no_grad()
def save_reconstructions(vae: torch.nn.Module, data: Data, path: str | Path, n: int = 32) -> Path:
    """Held-out images (top half) above the VAE's reconstructions from their posterior means."""
    split = data.splits.get("valid") or data.splits.get("test") or data.train
    x = split.scaled(split.images[:n])
    mu, _ = vae.encode(x)
    both = torch.cat([x, vae(mu)])
    return save_grid(both, path, data.info.value_range, nrow=8)
