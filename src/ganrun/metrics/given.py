"""Images made elsewhere, in the place of a model: what ``ganrun eval samples=`` scores.

:class:`GivenSamples` is a :class:`~ganrun.models.family.Model` without networks whose samples
are the images of an :class:`~ganrun.data.external.ImageSet`, the first ``n`` for ``n`` asked
(whatever the seed: the set is what it is). Scoring then runs exactly as for a checkpoint: the
same metrics, protocol records and reference cache.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import OmegaConf

from ganrun.data.base import DataInfo
from ganrun.data.external import ImageSet
from ganrun.errors import GanrunError
from ganrun.models.family import Model

NAME = "samples"  # what records and messages call such a "model"


class GivenSamples(Model):
    provides = frozenset({"samples"})

    def __init__(self, images: ImageSet, info: DataInfo) -> None:
        super().__init__(OmegaConf.create({"name": NAME}), info, {})
        self.images = images
        self.sample_limit = images.pixels.shape[0]
        lo, hi = info.value_range
        self.scale, self.offset = (hi - lo) / 255.0, lo

    def training_step(self, batches: Any, noise: torch.Generator) -> dict[str, torch.Tensor]:
        raise GanrunError("images made elsewhere cannot be trained")

    @property
    def weights(self) -> str:
        return NAME

    def generate(self, n: int, seed: int, batch_size: int) -> torch.Tensor:
        """The first ``n`` images in the data's value range (converting them back to uint8 gives
        the stored pixels exactly). Scoring never asks for more than there are: planning refuses
        a metric that would (:attr:`sample_limit`)."""
        return self.images.pixels[:n].float().mul_(self.scale).add_(self.offset)
