"""VAE likelihoods on the test split: ELBO and the importance-weighted log-likelihood.

Both are the model's own per-example estimates (``elbo(x)``, ``importance_log_likelihood(x, k)``,
in nats), averaged over the test examples; the IW estimate with k samples is a lower bound that
tightens as k grows (Burda et al., 2016; k = 5,000 in ``eval=paper``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ganrun.errors import GanrunError

# Examples x importance samples decoded at once: bounds memory whatever k is.
_DECODES_PER_CALL = 20000


def _method(model: Any, name: str) -> Callable[..., torch.Tensor]:
    fn = getattr(model, name, None)
    if fn is None:
        raise GanrunError(f"this model has no {name}(); likelihoods need a VAE checkpoint")
    return fn


def mean_and_se(values: torch.Tensor) -> dict[str, float]:
    values = values.double()
    return {
        "mean": float(values.mean()),
        "se": float(values.std(unbiased=False) / math.sqrt(values.numel())),
    }


@torch.no_grad()
def elbo(model: Any, x: torch.Tensor, batch_size: int) -> dict[str, float]:
    fn = _method(model, "elbo")
    parts = [
        fn(x[i : i + batch_size]).detach().double().cpu() for i in range(0, x.shape[0], batch_size)
    ]
    return mean_and_se(torch.cat(parts))


@torch.no_grad()
def importance_log_likelihood(model: Any, x: torch.Tensor, k: int) -> dict[str, float]:
    fn = _method(model, "importance_log_likelihood")
    step = max(1, _DECODES_PER_CALL // k)
    parts = [fn(x[i : i + step], k).detach().double().cpu() for i in range(0, x.shape[0], step)]
    return mean_and_se(torch.cat(parts))
