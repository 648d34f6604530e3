"""Parzen-window log-likelihood against a direct implementation of the 2014 formula."""

from __future__ import annotations

import math

import numpy as np
import torch

from ganrun.metrics.parzen import parzen_evaluate, parzen_log_likelihoods, sigma_grid


def direct(x: np.ndarray, mu: np.ndarray, sigma: float) -> np.ndarray:
    """Goodfellow et al.'s parzen_ll.py, in numpy: log_mean_exp(-0.5 ||(x - mu) / sigma||^2) - Z."""
    a = (x[:, None, :] - mu[None, :, :]) / sigma
    e = -0.5 * (a**2).sum(axis=2)
    m = e.max(axis=1)
    lme = m + np.log(np.exp(e - m[:, None]).mean(axis=1))
    return lme - mu.shape[1] * np.log(sigma * np.sqrt(np.pi * 2))


def test_sigma_grid_is_the_papers() -> None:
    np.testing.assert_allclose(sigma_grid(), np.logspace(-1.0, 0.0, 10))


def test_matches_direct_formula_for_every_sigma_and_chunking() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((37, 12))
    mu = rng.random((53, 12))
    sigmas = sigma_grid()
    expected = np.stack([direct(x, mu, s) for s in sigmas], axis=1)
    for chunk in (1, 8, 37, 1000):
        got = parzen_log_likelihoods(torch.from_numpy(x), torch.from_numpy(mu), sigmas, chunk)
        assert got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-9)


def test_float32_inputs_are_accumulated_in_float64() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((20, 30)).astype(np.float32)
    mu = rng.random((40, 30)).astype(np.float32)
    got = parzen_log_likelihoods(torch.from_numpy(x), torch.from_numpy(mu), [0.2], chunk=7)
    want = direct(x.astype(np.float64), mu.astype(np.float64), 0.2)
    np.testing.assert_allclose(got[:, 0].numpy(), want, rtol=0, atol=1e-9)


def test_sigma_chosen_on_valid_and_reported_on_test() -> None:
    rng = np.random.default_rng(2)
    mu = rng.random((60, 5))
    valid = rng.random((25, 5))
    test = rng.random((30, 5))
    sigmas = sigma_grid()
    out = parzen_evaluate(
        torch.from_numpy(mu), torch.from_numpy(valid), torch.from_numpy(test), sigmas, chunk=9
    )
    valid_means = [direct(valid, mu, s).mean() for s in sigmas]
    best = sigmas[int(np.argmax(valid_means))]
    test_ll = direct(test, mu, best)
    assert out["sigma"] == best
    assert abs(out["ll"] - test_ll.mean()) < 1e-9
    assert abs(out["se"] - test_ll.std() / math.sqrt(len(test))) < 1e-9
    assert abs(out["valid_ll"] - max(valid_means)) < 1e-9
