"""2-D mixtures (data=ring, data=grid): modes covered and the share of high-quality samples,
counted by :func:`ganrun.data.mixtures.mode_stats` against the data set's own mode centres."""

from __future__ import annotations

from typing import Any

import torch

from ganrun.data.mixtures import mode_stats
from ganrun.errors import GanrunError


def mixture_stats(samples: torch.Tensor, extra: dict[str, Any]) -> dict[str, float]:
    if "centers" not in extra or "std" not in extra:
        raise GanrunError("mode coverage needs a mixture data set (data=ring or data=grid)")
    return mode_stats(samples, torch.as_tensor(extra["centers"]), float(extra["std"]))
