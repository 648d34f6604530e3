"""Every GAN loss against its formula on hand-computed values; the gradient penalty against
finite differences."""

from __future__ import annotations

import math

import pytest
import torch

from ganrun.models.losses import LOSSES, d_of, gradient_penalty

REAL = torch.tensor([0.0, 2.0], dtype=torch.float64)
FAKE = torch.tensor([-1.0, 1.0], dtype=torch.float64)


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_minimax_d_is_binary_cross_entropy():
    expected = _mean([-math.log(_sig(0.0)), -math.log(_sig(2.0))]) + _mean(
        [-math.log(1 - _sig(-1.0)), -math.log(1 - _sig(1.0))]
    )
    assert LOSSES["minimax"].d(REAL, FAKE).item() == pytest.approx(expected, abs=1e-12)
    assert LOSSES["non_saturating"].d(REAL, FAKE).item() == pytest.approx(expected, abs=1e-12)


def test_minimax_g_is_log_one_minus_d():
    expected = _mean([math.log(1 - _sig(-1.0)), math.log(1 - _sig(1.0))])
    assert LOSSES["minimax"].g(FAKE).item() == pytest.approx(expected, abs=1e-12)


def test_non_saturating_g_is_minus_log_d():
    expected = _mean([-math.log(_sig(-1.0)), -math.log(_sig(1.0))])
    assert LOSSES["non_saturating"].g(FAKE).item() == pytest.approx(expected, abs=1e-12)


def test_wasserstein():
    assert LOSSES["wasserstein"].d(REAL, FAKE).item() == pytest.approx(0.0 - 1.0)
    assert LOSSES["wasserstein"].g(FAKE).item() == pytest.approx(-0.0)
    assert LOSSES["wasserstein"].needs_critic


def test_hinge():
    # relu(1 - 0) + relu(1 - 2) -> mean 0.5; relu(1 + -1) + relu(1 + 1) -> mean 1.0
    assert LOSSES["hinge"].d(REAL, FAKE).item() == pytest.approx(1.5)
    assert LOSSES["hinge"].g(FAKE).item() == pytest.approx(0.0)


def test_least_squares():
    # 1/2 mean((0-1)^2, (2-1)^2) + 1/2 mean(1, 1) = 0.5 + 0.5
    assert LOSSES["least_squares"].d(REAL, FAKE).item() == pytest.approx(1.0)
    # 1/2 mean((-1-1)^2, (1-1)^2) = 1.0
    assert LOSSES["least_squares"].g(FAKE).item() == pytest.approx(1.0)


def test_saturation_difference_in_gradients():
    """Early on D(G(z)) ~ 0: the minimax G gradient vanishes, the non-saturating one does not."""
    fake = torch.tensor([-8.0], requires_grad=True)
    (g_minimax,) = torch.autograd.grad(LOSSES["minimax"].g(fake), fake)
    (g_ns,) = torch.autograd.grad(LOSSES["non_saturating"].g(fake), fake)
    assert abs(g_minimax.item()) < 1e-3 < abs(g_ns.item())


def test_d_of_reports_probabilities_or_scores():
    assert d_of(torch.tensor([0.0]), critic=False).item() == 0.5
    assert d_of(torch.tensor([3.0]), critic=True).item() == 3.0


class _Critic(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)
        )

    def forward(self, x, y=None):
        return self.net(x).flatten()


def test_gradient_penalty_matches_finite_differences():
    torch.manual_seed(0)
    critic = _Critic().double()
    real, fake = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)

    torch.manual_seed(1)
    penalty = gradient_penalty(critic, real, fake)
    # The same interpolates, and the critic's input gradient by central differences.
    torch.manual_seed(1)
    e = torch.rand(5, 1, dtype=torch.float64)
    x_hat = e * real + (1 - e) * fake
    h = 1e-6
    grad = torch.zeros_like(x_hat)
    for j in range(3):
        step = torch.zeros(3, dtype=torch.float64)
        step[j] = h
        grad[:, j] = (critic(x_hat + step) - critic(x_hat - step)) / (2 * h)
    expected = ((grad.norm(dim=1) - 1) ** 2).mean()
    assert penalty.item() == pytest.approx(expected.item(), abs=1e-8)

    # The penalty's own gradient w.r.t. the critic's weights (create_graph=True) also matches.
    weight = critic.net[0].weight
    (analytic,) = torch.autograd.grad(penalty, weight)
    for idx in [(0, 0), (2, 1), (3, 2)]:
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                weight[idx] += sign * h
            torch.manual_seed(1)
            values.append(gradient_penalty(critic, real, fake).item())
            with torch.no_grad():
                weight[idx] -= sign * h
        assert analytic[idx].item() == pytest.approx((values[0] - values[1]) / (2 * h), abs=1e-6)


def test_gradient_penalty_of_linear_critic_is_exact():
    w = torch.tensor([3.0, 4.0], dtype=torch.float64)  # ||grad|| = 5 everywhere

    def critic(x, y=None):
        return x @ w

    x = torch.randn(7, 2, dtype=torch.float64)
    assert gradient_penalty(critic, x, x.flip(0)).item() == pytest.approx(16.0)
