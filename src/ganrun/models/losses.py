"""GAN objectives. ``loss=<name>`` picks a pair from :data:`LOSSES`.

Every function takes raw discriminator outputs: logits for the classifier losses (so D(x) is
sigmoid of the output and the log terms are computed stably with softplus), unbounded critic
scores for ``wasserstein``. All return the mean over the batch; both players minimise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def minimax_d(real: Tensor, fake: Tensor) -> Tensor:
    """-log D(x) - log(1 - D(G(z))), with D = sigmoid(logit)."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def minimax_g(fake: Tensor) -> Tensor:
    """log(1 - D(G(z))): the saturating objective of Goodfellow et al. 2014 (= -softplus(l))."""
    return -F.softplus(fake).mean()


def non_saturating_g(fake: Tensor) -> Tensor:
    """-log D(G(z)) (= softplus(-l)): same fixed point, strong gradients early in training."""
    return F.softplus(-fake).mean()


def wasserstein_d(real: Tensor, fake: Tensor) -> Tensor:
    """E[C(G(z))] - E[C(x)]: the negated critic estimate of the Wasserstein-1 distance."""
    return fake.mean() - real.mean()


def wasserstein_g(fake: Tensor) -> Tensor:
    """-E[C(G(z))]."""
    return -fake.mean()


def hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def least_squares_d(real: Tensor, fake: Tensor) -> Tensor:
    """1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2] (Mao et al. 2017, targets a=0, b=1)."""
    return 0.5 * (real - 1.0).pow(2).mean() + 0.5 * fake.pow(2).mean()


def least_squares_g(fake: Tensor) -> Tensor:
    """1/2 E[(D(G(z)) - 1)^2] (c=1)."""
    return 0.5 * (fake - 1.0).pow(2).mean()


def feature_matching_g(fake: Tensor, real: Tensor) -> Tensor:
    """Feature matching (Salimans et al. 2016): the squared difference between the mean of D's
    hidden features over a generated batch and over a real one, averaged over the features (as
    the released code; the paper writes the sum, a constant factor)."""
    return (fake.mean(dim=0) - real.mean(dim=0)).pow(2).mean()


@dataclass(frozen=True)
class GanLoss:
    d: Callable[[Tensor, Tensor], Tensor]
    # G's loss of D's outputs on generated images; with `matches_features`, of D's hidden
    # features on generated and on real images.
    g: Callable[..., Tensor]
    needs_critic: bool = False  # only meaningful on an unbounded critic score
    matches_features: bool = False


LOSSES: dict[str, GanLoss] = {
    "minimax": GanLoss(minimax_d, minimax_g),
    "non_saturating": GanLoss(minimax_d, non_saturating_g),
    "wasserstein": GanLoss(wasserstein_d, wasserstein_g, needs_critic=True),
    "hinge": GanLoss(hinge_d, wasserstein_g),
    "least_squares": GanLoss(least_squares_d, least_squares_g),
    "feature_matching": GanLoss(minimax_d, feature_matching_g, matches_features=True),
}


def d_of(output: Tensor, critic: bool) -> Tensor:
    """What metrics.csv reports as D(x) / D(G(z)): a probability, or the raw critic score."""
    return output if critic else torch.sigmoid(output)


def gradient_penalty(
    critic: Callable[..., Tensor], real: Tensor, fake: Tensor, labels: Tensor | None = None
) -> Tensor:
    """E[(||grad C(x_hat)||_2 - 1)^2], x_hat = e * x + (1 - e) * G(z), e ~ U[0, 1] per sample.

    Gulrajani et al. 2017. ``create_graph=True`` so the penalty's own gradient reaches the
    critic's weights.
    """
    e = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x_hat = (e * real.detach() + (1.0 - e) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat, labels).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1.0).pow(2).mean()
