"""The records that loaders return and that models and evaluators read."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class RawData:
    """What a loader returns, per split, with int64 labels (or None) beside the examples.

    ``kind="image"``: uint8 images (N, C, H, W) at their native size, resized later.
    ``kind="points"``: float32 points (N, D), used as they are.
    ``kind="stream"``: nothing in ``images``; ``streams`` holds, per split, what a streaming
    split needs (see :mod:`ganrun.data.folder`), because the data is too big to hold.
    """

    images: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor | None]
    num_classes: int = 0
    kind: str = "image"
    extra: dict = field(default_factory=dict)
    streams: dict = field(default_factory=dict)


@dataclass
class DataInfo:
    """What models and evaluators need to know about a data set."""

    name: str
    channels: int  # image channels; for kind="points", the dimension of a point
    resolution: int  # 0 for kind="points"
    num_classes: int  # 0 when the data set has no labels
    value_range: tuple[float, float]  # the range image batches are scaled to
    kind: str = "image"  # image | points
    # kind="points": {"centers": float tensor (M, D) of mode centres, "std": float}
    extra: dict = field(default_factory=dict)
