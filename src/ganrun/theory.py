"""The 2014 paper's theory on data whose density is known (Goodfellow et al. 2014, Section 4).

For a fixed G the best discriminator is D*(x) = p_data(x) / (p_data(x) + p_g(x)) (Proposition 1),
and the game's value there is C(G) = V(D*, G) = -log 4 + 2 JSD(p_data || p_g) (Theorem 1), which is
smallest, -log 4, exactly when p_g = p_data. Here p_data is a Gaussian mixture known in closed form
(``data=gauss1d``, ``ring``, ``grid``) and p_g is estimated from G's samples by a kernel density
estimate on a regular grid; every integral is a sum over that grid's cells. ``v_dstar`` is computed
from its definition, not from the JSD, so that Theorem 1 can be seen to hold to grid accuracy, and
``d_gap`` = E_{x ~ p_data} |D(x) - D*(x)| says how far a trained D is from the D* the theory
assumes.

The estimate of p_g smooths the samples with a Gaussian kernel of width Scott's rule for the data's
narrowest mode (sigma_min * n^(-1 / (d + 4))), so even samples drawn from p_data itself give a
small positive JSD: :func:`compare` of the data's own samples is that floor, and evaluation records
it beside every score (``jsd_floor``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

LOG4 = math.log(4.0)
# Grid cells per kernel width, and the most cells per axis: 1-D grids are fine enough for smooth
# curves; 2-D grids are capped so that a training figure stays well under a second.
CELLS_PER_BANDWIDTH = 4
MAX_CELLS = {1: 20000, 2: 512}
# Kernel truncated at this many widths, and the margin (in widths) the grid keeps around the
# data's modes (in mode standard deviations) and around the samples.
KERNEL_WIDTHS = 4.0
MODE_MARGIN = 6.0
# Samples (and real points, for d_gap) behind each value measured during training.
MEASURED_POINTS = 10000


@dataclass(frozen=True)
class Mixture:
    """A mixture of isotropic Gaussians N(means[m], stds[m]^2 I) with the given weights."""

    means: torch.Tensor  # (M, D) float64
    stds: torch.Tensor  # (M,)
    weights: torch.Tensor  # (M,), summing to 1

    @staticmethod
    def of(means: Any, stds: Any, weights: Any | None = None) -> Mixture:
        m = torch.as_tensor(means, dtype=torch.float64)
        m = m.view(-1, 1) if m.dim() == 1 else m
        s = torch.as_tensor(stds, dtype=torch.float64).reshape(-1).expand(m.shape[0]).clone()
        if weights is None or len(weights) == 0:
            w = torch.full((m.shape[0],), 1.0 / m.shape[0], dtype=torch.float64)
        else:
            w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
            w = w / w.sum()
        return Mixture(m, s, w)

    @staticmethod
    def from_extra(extra: dict[str, Any]) -> Mixture | None:
        """The mixture a data set describes in its ``DataInfo.extra`` (None if it has none)."""
        mixture = extra.get("mixture")
        if mixture is None:
            return None
        return Mixture.of(mixture["means"], mixture["stds"], mixture["weights"])

    def to_extra(self) -> dict[str, Any]:
        return {
            "means": self.means.tolist(),
            "stds": self.stds.tolist(),
            "weights": self.weights.tolist(),
        }

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) for points x (N, D), float64."""
        x = x.to(torch.float64).reshape(-1, self.dim)
        d = self.dim
        sq = torch.cdist(x, self.means).pow(2)  # (N, M)
        var = self.stds.pow(2)
        log_n = -0.5 * sq / var - 0.5 * d * torch.log(2 * math.pi * var)
        return torch.logsumexp(log_n + self.weights.log(), dim=1)

    def density(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_density(x).exp()

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n points (float32) and the mode each came from."""
        modes = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        points = self.means[modes] + self.stds[modes, None] * noise
        return points.float(), modes

    def bandwidth(self, n: int) -> float:
        """Scott's rule for n samples, at the scale of the narrowest mode."""
        return float(self.stds.min()) * n ** (-1.0 / (self.dim + 4))


@dataclass(frozen=True)
class DensityGrid:
    """A regular grid of cell centres: ``axes[k]`` along dimension k."""

    axes: tuple[torch.Tensor, ...]

    @property
    def steps(self) -> list[float]:
        return [float(a[1] - a[0]) for a in self.axes]

    @property
    def cell(self) -> float:
        """The volume of one cell."""
        return math.prod(self.steps)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.numel() for a in self.axes)

    def points(self) -> torch.Tensor:
        """Every cell centre, (cells, D), in row-major order of :attr:`shape`."""
        mesh = torch.meshgrid(*self.axes, indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], dim=1)

    def index(self, x: torch.Tensor) -> torch.Tensor:
        """The flat index of the cell each point (N, D) falls in (clamped to the grid)."""
        flat = torch.zeros(x.shape[0], dtype=torch.long)
        for k, axis in enumerate(self.axes):
            step = float(axis[1] - axis[0])
            i = ((x[:, k].double() - float(axis[0])) / step).round().long()
            flat = flat * axis.numel() + i.clamp(0, axis.numel() - 1)
        return flat


def grid_for(mixture: Mixture, samples: torch.Tensor, bandwidth: float) -> DensityGrid:
    """A grid holding the data's modes and every sample, with room for the kernel around them."""
    d = mixture.dim
    margin = KERNEL_WIDTHS * bandwidth
    lo = (mixture.means - MODE_MARGIN * mixture.stds[:, None]).min(dim=0).values
    hi = (mixture.means + MODE_MARGIN * mixture.stds[:, None]).max(dim=0).values
    s = samples.to(torch.float64).reshape(-1, d)
    finite = s[torch.isfinite(s).all(dim=1)]
    if finite.numel():
        lo = torch.minimum(lo, finite.min(dim=0).values - margin)
        hi = torch.maximum(hi, finite.max(dim=0).values + margin)
    width = float((hi - lo).max())
    cells = min(MAX_CELLS.get(d, 64), max(16, math.ceil(width / bandwidth * CELLS_PER_BANDWIDTH)))
    step = width / (cells - 1)
    axes = []
    for k in range(d):
        n = max(2, math.ceil(float(hi[k] - lo[k]) / step) + 1)
        axes.append(float(lo[k]) + step * torch.arange(n, dtype=torch.float64))
    return DensityGrid(tuple(axes))


def kde(samples: torch.Tensor, grid: DensityGrid, bandwidth: float) -> torch.Tensor:
    """A Gaussian kernel density estimate of ``samples`` (N, D) at the grid's cells, shaped like
    the grid: samples are counted into their nearest cell, then the counts are smoothed along each
    axis by the kernel sampled at the cell spacing (normalised, so mass is kept)."""
    s = samples.to(torch.float64).reshape(samples.shape[0], -1)
    counts = torch.bincount(grid.index(s), minlength=math.prod(grid.shape)).double()
    density = counts.view(grid.shape) / (s.shape[0] * grid.cell)
    for k, step in enumerate(grid.steps):
        h = max(bandwidth / step, 1e-3)  # in cells
        r = max(1, math.ceil(KERNEL_WIDTHS * h))
        offsets = torch.arange(-r, r + 1, dtype=torch.float64)
        kernel = torch.exp(-0.5 * (offsets / h) ** 2)
        kernel = (kernel / kernel.sum()).view(1, 1, -1)
        moved = density.movedim(k, -1)
        shape = moved.shape
        smoothed = F.conv1d(moved.reshape(-1, 1, shape[-1]), kernel, padding=r)
        density = smoothed.view(shape).movedim(-1, k)
    return density.clamp_min(0.0)


def _flushed(density: torch.Tensor) -> torch.Tensor:
    # Densities far below any that matter are set to 0: halving a subnormal one for the mixture
    # M = (P + Q) / 2 would round it to 0 and make log(P / M) infinite.
    return torch.where(density < 1e-200, 0.0, density)


@dataclass(frozen=True)
class Comparison:
    """p_data and p_g on one grid (flat over its cells), and what the theory derives from them."""

    grid: DensityGrid
    p_data: torch.Tensor
    p_g: torch.Tensor
    # The share of samples that were not finite numbers: p_g's mass where p_data has none.
    p_g_outside: float = 0.0

    def jsd(self) -> float:
        """JSD(p_data || p_g) in nats (0 log 0 = 0)."""
        p, q, dv = self.p_data, self.p_g, self.grid.cell
        m = 0.5 * (p + q)
        kl_p = torch.xlogy(p, p) - torch.xlogy(p, m)
        kl_q = torch.xlogy(q, q) - torch.xlogy(q, m)
        # Mass outside p_data's support adds q log(q / (q / 2)) / 2 = q log 2 / 2.
        outside = 0.5 * self.p_g_outside * math.log(2.0)
        return float(0.5 * (kl_p.sum() + kl_q.sum()) * dv) + outside

    def c_g(self) -> float:
        """C(G) = -log 4 + 2 JSD (Theorem 1)."""
        return -LOG4 + 2.0 * self.jsd()

    def d_star(self) -> torch.Tensor:
        """D*(x) = p_data / (p_data + p_g) at each cell; 1/2 where neither has mass."""
        total = self.p_data + self.p_g
        return torch.where(total > 0, self.p_data / total.clamp_min(1e-300), 0.5)

    def v_dstar(self) -> float:
        """V(D*, G) = E_{p_data} log D* + E_{p_g} log(1 - D*), from its definition (mass of p_g
        outside p_data's support has D* = 0 and adds nothing)."""
        p, q = self.p_data, self.p_g
        total = (p + q).clamp_min(1e-300)
        # 1 - D* as q / (p + q): subtracting from 1 would round to 0 where q << p.
        value = torch.xlogy(p, p / total) + torch.xlogy(q, q / total)
        return float(value.sum() * self.grid.cell)

    def d_star_at(self, mixture: Mixture, x: torch.Tensor) -> torch.Tensor:
        """D* at points x: p_data exact there, p_g from the estimate's nearest cell."""
        p = mixture.density(x)
        q = self.p_g[self.grid.index(x.to(torch.float64).reshape(x.shape[0], -1))]
        total = p + q
        return torch.where(total > 0, p / total.clamp_min(1e-300), 0.5)

    def values(self) -> dict[str, float]:
        return {"jsd": self.jsd(), "c_g": self.c_g(), "v_dstar": self.v_dstar()}


def compare(mixture: Mixture, samples: torch.Tensor) -> Comparison:
    """p_data exactly and p_g estimated from ``samples`` (N, D), on a grid holding both."""
    samples = samples.detach().to("cpu", torch.float64).reshape(samples.shape[0], -1)
    finite = samples[torch.isfinite(samples).all(dim=1)]
    h = mixture.bandwidth(max(2, finite.shape[0]))
    grid = grid_for(mixture, finite, h)
    kept = finite.shape[0] / samples.shape[0]
    p_g = kde(finite, grid, h).reshape(-1) * kept
    p_data = mixture.density(grid.points())
    return Comparison(grid, _flushed(p_data), _flushed(p_g), p_g_outside=1.0 - kept)


def d_gap(comparison: Comparison, mixture: Mixture, x: torch.Tensor, d: torch.Tensor) -> float:
    """E_{x ~ p_data} |D(x) - D*(x)|, over real points ``x`` with D's outputs ``d`` there."""
    d_star = comparison.d_star_at(mixture, x.detach().cpu())
    return float((d.detach().cpu().double().reshape(-1) - d_star).abs().mean())


def measure(
    model: Any, mixture: Mixture, real: torch.Tensor, n: int, seed: int, batch_size: int
) -> dict[str, float]:
    """``jsd``, ``c_g``, ``v_dstar`` of ``n`` samples of ``model`` (seeded), and ``d_gap`` over
    the ``real`` points when the model has a discriminator, all with its networks in eval mode."""
    with model.evaluating():
        comparison = compare(mixture, model.generate(n, seed, batch_size))
        out = comparison.values()
        if "discriminator" in model.provides:
            out["d_gap"] = d_gap(comparison, mixture, real, model.discriminate(real))
    return out


def measured_columns(model: Any) -> list[str]:
    """What :func:`measure` returns for ``model``."""
    columns = ["jsd", "c_g", "v_dstar"]
    return [*columns, "d_gap"] if "discriminator" in model.provides else columns
