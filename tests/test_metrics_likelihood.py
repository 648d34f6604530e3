"""VAE likelihood and 2-D mixture metrics, on stand-in models with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganrun.errors import GanrunError
from ganrun.metrics import likelihood
from ganrun.metrics.mixtures import mixture_stats


class FakeVAE(nn.Module):
    """Per-example estimates that are functions of x, so the averages are known exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, int]] = []

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        return -x.flatten(1).sum(1)

    def importance_log_likelihood(self, x: torch.Tensor, k: int) -> torch.Tensor:
        self.calls.append((x.shape[0], k))
        return -x.flatten(1).sum(1) + math.log(k)


def test_elbo_and_iw_ll_average_per_example_estimates() -> None:
    x = torch.arange(12, dtype=torch.float32).view(6, 1, 2)
    per_example = -x.flatten(1).sum(1).double()
    model = FakeVAE()
    out = likelihood.elbo(model, x, batch_size=4)
    assert out["mean"] == pytest.approx(float(per_example.mean()))
    assert out["se"] == pytest.approx(float(per_example.std(unbiased=False) / math.sqrt(6)))
    iw = likelihood.importance_log_likelihood(model, x, k=5000)
    assert iw["mean"] == pytest.approx(float(per_example.mean()) + math.log(5000))
    assert all(k == 5000 and n * k <= 20000 for n, k in model.calls)  # memory stays bounded


def test_likelihood_needs_a_vae() -> None:
    with pytest.raises(GanrunError, match=r"this model has no elbo\(\)"):
        likelihood.elbo(nn.Linear(2, 2), torch.zeros(2, 2), 2)


def test_mixture_stats_count_modes_and_quality() -> None:
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = torch.tensor([[0.01, 0.0], [10.0, 0.02], [5.0, 5.0], [0.0, -0.01]])
    out = mixture_stats(samples, {"centers": centers, "std": 0.05})
    assert out["modes_covered"] == 2 and out["num_modes"] == 3
    assert out["high_quality"] == pytest.approx(0.75)
    with pytest.raises(GanrunError, match="data=ring or data=grid"):
        mixture_stats(samples, {})
