"""Real images as uint8, whatever kind of split holds them."""

from __future__ import annotations

from typing import Any

import torch


def real_uint8(split: Any, index: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (N, C, H, W) on the CPU: resident splits hand over their stored pixels; streamed
    ones (data=folder) are read whole and mapped back from their value range, exactly, since
    they were scaled from uint8 in the first place."""
    if hasattr(split, "images") and split.images.dtype == torch.uint8:
        images = split.images if index is None else split.images[index.to(split.images.device)]
        return images.cpu()
    x, _ = split.all()
    if index is not None:
        x = x[index.to(x.device)]
    lo = split.offset
    scale = split.scale
    return ((x.float().cpu() - lo) / scale).round_().clamp_(0, 255).to(torch.uint8)
