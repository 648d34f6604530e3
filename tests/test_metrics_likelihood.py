"""VAE likelihood and 2-D mixture metrics, on stand-in models with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganrun.errors import GanrunError
from ganrun.metrics import likelihood
from ganrun.metrics.mixtures import mixture_stats
from ganrun.theory import Mixture


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
    out = mixture_stats(samples, {"mixture": Mixture.of(centers, [0.05]).to_extra()})
    assert out["modes_covered"] == 2 and out["num_modes"] == 3
    assert out["high_quality"] == pytest.approx(0.75)
    # two of the three good samples on mode 0, one on mode 1, none on mode 2
    p = torch.tensor([2 / 3, 1 / 3])
    assert out["mode_kl"] == pytest.approx(float((p * (p * 3).log()).sum()))
    with pytest.raises(GanrunError, match="data=gauss1d, ring or grid"):
        mixture_stats(samples, {})


def test_mixture_stats_on_a_1d_mixture_use_each_modes_spread_and_weight() -> None:
    # data=gauss1d: modes of their own widths and weights. -1.4 lies within 3 std of the
    # narrow mode at -1 only because its own std (0.2) counts, not the wide one's.
    mixture = Mixture.of([-1.0, 2.0], [0.2, 0.5], [0.25, 0.75])
    samples = torch.tensor([[-1.4], [-0.9], [2.0], [2.4], [3.6]])  # (N, 1), as G draws them
    out = mixture_stats(samples, {"mixture": mixture.to_extra()})
    assert out["modes_covered"] == 2 and out["high_quality"] == pytest.approx(4 / 5)
    # histogram (2/4, 2/4) against the weights (1/4, 3/4)
    assert out["mode_kl"] == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))


def test_knn_and_linear_probes_agree_with_scikit_learn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ganrun.metrics import representation

    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (600,), generator=gen)
    x = torch.randn(600, 5, generator=gen) + labels[:, None].float()  # classes overlap a little
    memory, test = x[:400], x[400:]
    y_memory, y_test = labels[:400], labels[400:]
    knn = KNeighborsClassifier(n_neighbors=1).fit(memory.numpy(), y_memory.numpy())
    expected = knn.score(test.numpy(), y_test.numpy())
    assert representation.knn_accuracy(memory, y_memory, test, y_test) == pytest.approx(expected)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=0))
    probe.fit(memory.double().numpy(), y_memory.numpy())
    got = representation.linear_accuracy(memory, y_memory, test, y_test, seed=0)
    assert got == pytest.approx(probe.score(test.double().numpy(), y_test.numpy()))
    assert 0.5 < got <= 1.0


def test_representation_metrics_refuse_unlabelled_data():
    from types import SimpleNamespace

    from ganrun.data.base import DataInfo
    from ganrun.metrics import METRICS

    ctx = SimpleNamespace(
        info=DataInfo("folder", 3, 32, 0, (-1.0, 1.0)), require_split=lambda *args: None
    )
    with pytest.raises(GanrunError, match="data=folder has none: drop them from eval.metrics"):
        METRICS["knn_acc"].check(ctx)
