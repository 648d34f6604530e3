"""Data sets: ``data=<name>`` picks a loader from :data:`DATASETS`.

A loader reads its files (or its bundled copy) and returns :class:`RawData`: uint8 images at their
native size, per split. :func:`build_data` resizes them to ``data.resolution`` once and keeps each
split resident on the training device (:class:`ResidentSplit`), so a training step draws its
batch by indexing a tensor that is already there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganrun.data.base import DataInfo, RawData
from ganrun.data.digits import load_digits
from ganrun.data.resident import ResidentSplit
from ganrun.errors import GanrunError
from ganrun.schema import DataConfig


@dataclass
class Data:
    info: DataInfo
    splits: dict[str, ResidentSplit]

    def split(self, name: str) -> ResidentSplit:
        if name not in self.splits:
            raise GanrunError(
                f"data set {self.info.name!r} has no split {name!r}; "
                f"choose one of: {', '.join(self.splits)}"
            )
        return self.splits[name]

    @property
    def train(self) -> ResidentSplit:
        return self.split("train")


DATASETS: dict[str, Callable[[DataConfig], RawData]] = {
    "digits": load_digits,
}


def resize_uint8(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) images to resolution x resolution, antialiased, still uint8."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    out = F.interpolate(
        images.float(), size=(resolution, resolution), mode="bilinear", antialias=True,
        align_corners=False,
    )
    return out.round_().clamp_(0, 255).to(torch.uint8)


def build_data(
    cfg: DataConfig, value_range: tuple[float, float], device: torch.device
) -> Data:
    """Load ``cfg.name``, resize to ``cfg.resolution`` and hold every split on ``device``."""
    if cfg.name not in DATASETS:
        raise GanrunError(f"unknown data set {cfg.name!r}; choose data= one of: {', '.join(DATASETS)}")
    raw = DATASETS[cfg.name](cfg)
    channels = next(iter(raw.images.values())).shape[1]
    splits = {
        name: ResidentSplit(
            resize_uint8(images, cfg.resolution), raw.labels.get(name), value_range, device
        )
        for name, images in raw.images.items()
    }
    info = DataInfo(cfg.name, channels, cfg.resolution, raw.num_classes, tuple(value_range))
    return Data(info, splits)
