"""Likelihoods and reconstructions on the test split: the VAE's ELBO and importance-weighted
log-likelihood, the exact log-likelihood of models that have one (a Gaussian mixture), and the
reconstruction error of models that encode.

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
        raise GanrunError(f"this model has no {name}()")
    return fn


def mean_and_se(values: torch.Tensor) -> dict[str, float]:
    values = values.double()
    return {
        "mean": float(values.mean()),
        "se": float(values.std(unbiased=False) / math.sqrt(values.numel())),
    }


def _per_example(
    fn: Callable[..., torch.Tensor], x: torch.Tensor, batch_size: int, *args: Any
) -> dict[str, float]:
    """Mean and standard error of ``fn(batch, *args)``'s values, ``batch_size`` examples a call."""
    parts = [
        fn(x[i : i + batch_size], *args).detach().double().cpu()
        for i in range(0, x.shape[0], batch_size)
    ]
    return mean_and_se(torch.cat(parts))


@torch.no_grad()
def elbo(model: Any, x: torch.Tensor, batch_size: int) -> dict[str, float]:
    return _per_example(_method(model, "elbo"), x, batch_size)


@torch.no_grad()
def importance_log_likelihood(model: Any, x: torch.Tensor, k: int) -> dict[str, float]:
    step = max(1, _DECODES_PER_CALL // k)
    return _per_example(_method(model, "importance_log_likelihood"), x, step, k)


@torch.no_grad()
def exact_log_likelihood(model: Any, x: torch.Tensor, batch_size: int) -> dict[str, float]:
    """Mean and standard error of ``model.log_likelihood(x)`` (nats per example)."""
    return _per_example(_method(model, "log_likelihood"), x, batch_size)


@torch.no_grad()
def reconstruction_error(
    model: Any, x: torch.Tensor, value_range: tuple[float, float], batch_size: int
) -> dict[str, float]:
    """Mean squared error per pixel between ``x`` and ``model.reconstruct(x)``, both mapped to
    [0, 1] first so that models with tanh and sigmoid outputs compare on one scale; mean and
    standard error over examples."""
    fn = _method(model, "reconstruct")
    low, high = value_range
    parts = []
    for i in range(0, x.shape[0], batch_size):
        batch = x[i : i + batch_size]
        diff = (fn(batch).to(batch.device) - batch) / (high - low)
        parts.append(diff.pow(2).flatten(1).mean(1).double().cpu())
    return mean_and_se(torch.cat(parts))
