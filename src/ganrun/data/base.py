"""The records that loaders return and that models and evaluators read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ganrun.errors import GanrunError

# Images resized per chunk: the float copy of a whole data set (CIFAR-10 at 64x64: 2 GB) would
# otherwise exist only to be rounded back to uint8.
RESIZE_CHUNK = 4096


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
    # Computes the training split's mean example (C, H, W) or point (D,), in value_range: a full
    # pass over the split, so only models that need it call it. None for data that is streamed
    # rather than held (data=folder).
    train_mean: Callable[[], torch.Tensor] | None = None


def with_valid_split(
    dataset: str,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    valid_size: int,
    **kwargs,
) -> RawData:
    """Train, valid and test splits for a data set whose validation images are the last
    ``valid_size`` of its training set (MNIST, CIFAR-10); ``valid_size=0`` means no valid split."""
    images, labels = train
    if valid_size >= len(images):
        raise GanrunError(
            f"data.valid_size={valid_size} leaves no {dataset} training images (there are "
            f"{len(images)}); lower data.valid_size"
        )
    cut = len(images) - valid_size
    split_images = {"train": images[:cut], "valid": images[cut:], "test": test[0]}
    split_labels = {"train": labels[:cut], "valid": labels[cut:], "test": test[1]}
    if valid_size == 0:
        del split_images["valid"], split_labels["valid"]
    return RawData(images=split_images, labels=split_labels, **kwargs)
