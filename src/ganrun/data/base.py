"""The records that loaders return and that models and evaluators read."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class RawData:
    """What a loader returns: per split, uint8 images (N, C, H, W) and int64 labels or None."""

    images: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor | None]
    num_classes: int = 0


@dataclass
class DataInfo:
    """What models and evaluators need to know about a data set."""

    name: str
    channels: int
    resolution: int
    num_classes: int  # 0 when the data set has no labels
    value_range: tuple[float, float]  # the range batches are scaled to
    kind: str = "image"  # image | points
    extra: dict = field(default_factory=dict)
