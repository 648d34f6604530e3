"""Parzen-window log-likelihood, as the evaluation code of Goodfellow et al. (2014) computed it.

The density of ``x`` is a mixture of isotropic Gaussians of width sigma centred at generator
samples ``mu_1..mu_N`` (10,000 in the paper):

    log p(x) = logsumexp_i(-||x - mu_i||^2 / (2 sigma^2)) - log N - d log(sigma sqrt(2 pi))

Sigma is chosen from ``logspace(-1, 0, 10)`` by the mean log-likelihood of the validation split;
the test split's mean and standard error (std / sqrt(n)) at that sigma are reported. Images are
in [0, 1], as in the paper's code. Squared distances are computed once, a block of rows at a time
(``||x||^2 - 2 x.mu + ||mu||^2`` in float64), and every sigma is evaluated on the same block, so
memory stays at ``chunk x N`` doubles whatever the split size.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def sigma_grid(num: int = 10) -> np.ndarray:
    return np.logspace(-1.0, 0.0, num=num)


def parzen_log_likelihoods(
    x: torch.Tensor, mu: torch.Tensor, sigmas: np.ndarray | list[float], chunk: int = 1000
) -> torch.Tensor:
    """Per-example log-likelihoods, float64 (len(x), len(sigmas)), for every sigma at once."""
    x = x.reshape(x.shape[0], -1)
    mu = mu.reshape(mu.shape[0], -1).to(device=x.device, dtype=torch.float64)
    n, d = mu.shape
    mu_sq = mu.square().sum(dim=1)
    sig = torch.as_tensor(np.asarray(sigmas, dtype=np.float64), device=x.device)
    # log N + d log(sigma sqrt(2 pi)), one per sigma
    norm = math.log(n) + d * torch.log(sig * math.sqrt(2 * math.pi))
    out = torch.empty(x.shape[0], len(sig), dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], chunk):
        xc = x[start : start + chunk].to(torch.float64)
        sq = torch.addmm(mu_sq.unsqueeze(0), xc, mu.T, beta=1.0, alpha=-2.0)
        sq.add_(xc.square().sum(dim=1, keepdim=True)).clamp_(min=0.0)
        for j, s in enumerate(sig.tolist()):
            out[start : start + chunk, j] = torch.logsumexp(sq * (-0.5 / (s * s)), dim=1)
        out[start : start + chunk] -= norm
    return out


def parzen_evaluate(
    samples: torch.Tensor,
    valid: torch.Tensor,
    test: torch.Tensor,
    sigmas: np.ndarray | list[float],
    chunk: int = 1000,
) -> dict[str, float]:
    """Sigma by mean validation log-likelihood; test mean and standard error at that sigma."""
    valid_ll = parzen_log_likelihoods(valid, samples, sigmas, chunk).mean(dim=0)
    best = int(torch.argmax(valid_ll))
    sigma = float(np.asarray(sigmas, dtype=np.float64)[best])
    test_ll = parzen_log_likelihoods(test, samples, [sigma], chunk)[:, 0]
    return {
        "ll": float(test_ll.mean()),
        "se": float(test_ll.std(unbiased=False) / math.sqrt(test_ll.numel())),
        "sigma": sigma,
        "valid_ll": float(valid_ll[best]),
    }
