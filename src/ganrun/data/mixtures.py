"""Gaussian mixtures with a known density: the 2-D ones of the mode-collapse literature, the 1-D
one of the 2014 paper's Figure 1, and the scores that go with them.

``ring``: 8 modes evenly spaced on a circle (Metz et al. 2017, Unrolled GANs).
``grid``: 25 modes on a 5x5 grid (Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN).
``gauss1d``: a 1-D mixture of ``data.means``, ``data.stds``, ``data.weights`` (one Gaussian by
default, as in Goodfellow et al. 2014, Figure 1).
Points are labelled by the mode they were drawn from. The points are drawn from fixed seeds, so
every run sees the same data set whatever ``seed`` says. Each describes its density in
``DataInfo.extra["mixture"]`` (:class:`ganrun.theory.Mixture`), which the theory metrics read.
"""

from __future__ import annotations

import math

import torch

from ganrun.config.schema import DataConfig
from ganrun.data.base import RawData
from ganrun.theory import Mixture

# One seed per split: the splits are independent draws, identical in every run.
SPLIT_SEEDS = {"train": 1000, "valid": 1001, "test": 1002}


def ring_centers(modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    angles = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
    return torch.stack([radius * angles.cos(), radius * angles.sin()], dim=1).float()


def grid_centers(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    """side x side modes centred on the origin, ``spacing`` apart (-4, -2, 0, 2, 4 by default)."""
    axis = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing
    xs, ys = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).float()


def sample_mixture(
    centers: torch.Tensor, std: float, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """n points from the equal-weight mixture of N(center, std^2 I): (points, mode index)."""
    modes = torch.randint(0, centers.shape[0], (n,), generator=generator)
    noise = torch.randn(n, centers.shape[1], generator=generator)
    return centers[modes] + std * noise, modes


def _load(cfg: DataConfig, centers: torch.Tensor) -> RawData:
    sizes = {"train": cfg.num_points, "valid": cfg.valid_size, "test": cfg.valid_size}
    points: dict[str, torch.Tensor] = {}
    labels: dict[str, torch.Tensor | None] = {}
    for split, n in sizes.items():
        if n == 0:
            continue
        gen = torch.Generator().manual_seed(SPLIT_SEEDS[split])
        points[split], labels[split] = sample_mixture(centers, cfg.std, n, gen)
    return RawData(
        images=points,
        labels=labels,
        num_classes=centers.shape[0],
        kind="points",
        extra={
            "centers": centers,
            "std": float(cfg.std),
            "mixture": Mixture.of(centers, [cfg.std]).to_extra(),
        },
    )


def load_ring(cfg: DataConfig) -> RawData:
    return _load(cfg, ring_centers(8, cfg.scale))


def load_grid(cfg: DataConfig) -> RawData:
    return _load(cfg, grid_centers(5, cfg.scale))


def load_gauss1d(cfg: DataConfig) -> RawData:
    mixture = Mixture.of(list(cfg.means), list(cfg.stds), list(cfg.weights))
    sizes = {"train": cfg.num_points, "valid": cfg.valid_size, "test": cfg.valid_size}
    points: dict[str, torch.Tensor] = {}
    labels: dict[str, torch.Tensor | None] = {}
    for split, n in sizes.items():
        if n > 0:
            gen = torch.Generator().manual_seed(SPLIT_SEEDS[split])
            points[split], labels[split] = mixture.sample(n, gen)
    return RawData(
        images=points,
        labels=labels,
        num_classes=mixture.means.shape[0],
        kind="points",
        extra={"mixture": mixture.to_extra()},
    )


def mode_stats(
    samples: torch.Tensor,
    centers: torch.Tensor,
    std: float | torch.Tensor,
    weights: torch.Tensor | None = None,
) -> dict[str, float]:
    """How well ``samples`` (N, D) cover a mixture with modes at ``centers`` (M, D), of spread
    ``std`` (one for all modes, or one per mode) and mixing ``weights`` (default: equal).

    A sample is high quality when it lies within 3 std of its nearest mode (that mode's std);
    a mode is covered when at least one sample lies within 3 std of it. Returns
    ``modes_covered`` (count), ``num_modes``, ``high_quality`` (the share of high-quality
    samples, 0..1) and ``mode_kl``: KL(sample mode histogram || weights) over the high-quality
    samples (0 when every mode gets its share, log M for equal weights when they all fall on
    one mode; log M too when there are none).
    """
    samples = samples.detach().to(device="cpu", dtype=torch.float64)
    centers = centers.detach().to(device="cpu", dtype=torch.float64)
    if samples.ndim != 2 or centers.ndim != 2 or samples.shape[1] != centers.shape[1]:
        raise ValueError(
            f"mode_stats needs samples (N, D) and centers (M, D); got {tuple(samples.shape)} "
            f"and {tuple(centers.shape)}"
        )
    num_modes = centers.shape[0]
    if samples.shape[0] == 0:
        return {
            "modes_covered": 0,
            "num_modes": num_modes,
            "high_quality": 0.0,
            "mode_kl": math.log(num_modes),
        }
    stds = torch.as_tensor(std, dtype=torch.float64).reshape(-1).expand(num_modes)
    if weights is None:
        weights = torch.full((num_modes,), 1.0 / num_modes, dtype=torch.float64)
    distance, nearest = torch.cdist(samples, centers).min(dim=1)
    good = distance <= 3 * stds[nearest]
    counts = torch.bincount(nearest[good], minlength=num_modes).double()
    if counts.sum() > 0:
        p = counts / counts.sum()
        nz = p > 0
        q = torch.as_tensor(weights, dtype=torch.float64)
        mode_kl = float((p[nz] * (p[nz] / q[nz]).log()).sum())
    else:
        mode_kl = math.log(num_modes)
    return {
        "modes_covered": int((counts > 0).sum()),
        "num_modes": num_modes,
        "high_quality": float(good.double().mean()),
        "mode_kl": mode_kl,
    }
