"""Class conditioning that every GAN's networks share: labels into G, projection in D."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def with_label(z: torch.Tensor, y: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """A conditional G's input: the one-hot label appended to z (z itself when unconditional)."""
    if not num_classes:
        return z
    return torch.cat([z, F.one_hot(y, num_classes).to(z.dtype)], dim=1)


def projection(
    out: torch.Tensor, embed: nn.Embedding | None, y: torch.Tensor | None, h: torch.Tensor
) -> torch.Tensor:
    """D's output plus <embed(y), features h>: the projection discriminator (Miyato & Koyama
    2018), or ``out`` unchanged when unconditional (``embed`` None)."""
    if embed is None:
        return out
    return out + (embed(y) * h.flatten(1)).sum(dim=1)
