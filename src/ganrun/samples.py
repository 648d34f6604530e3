"""Sample grids as PNG files (torchvision's ``save_image``)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torchvision.utils import save_image


def save_grid(
    images: torch.Tensor, path: str | Path, value_range: tuple[float, float], nrow: int | None = None
) -> Path:
    """Write images (N, C, H, W) in ``value_range`` as one grid, ``nrow`` images per row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lo, hi = value_range
    images = ((images.detach().float().cpu() - lo) / (hi - lo)).clamp_(0, 1)
    nrow = nrow or max(1, int(math.sqrt(images.shape[0])))
    save_image(images, path, nrow=nrow, padding=2)
    return path
