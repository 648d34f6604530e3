"""Mode coverage on the point data sets (data=gauss1d, ring, grid): modes covered and the share
of high-quality samples, counted by :func:`ganrun.data.mixtures.mode_stats` against the data
set's own mixture (its means, per-mode spreads and weights)."""

from __future__ import annotations

from typing import Any

import torch

from ganrun.data.mixtures import mode_stats
from ganrun.errors import GanrunError
from ganrun.theory import Mixture


def mixture_stats(samples: torch.Tensor, extra: dict[str, Any]) -> dict[str, float]:
    mixture = Mixture.from_extra(extra)
    if mixture is None:
        raise GanrunError("mode coverage needs a mixture data set (data=gauss1d, ring or grid)")
    points = samples.reshape(samples.shape[0], -1)
    return mode_stats(points, mixture.means, mixture.stds, mixture.weights)
