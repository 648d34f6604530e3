"""Sampling for every family whose samples are a network applied to latent codes, x = G(z, y).

:class:`LatentModel` draws z from the prior (``model.noise``, ``model.noise_scale``), labels for
class-conditional models (``model.conditional``), runs the sampling network in batches, plans the
grids and interpolation strips of ``ganrun sample``, and shows the fixed-noise grid during
training: a scatter plot over the data for 2-D points, and for 1-D points the densities of the
2014 paper's Figure 1 (p_data, p_g, D and D*, and the mapping z -> x).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ganrun import theory
from ganrun.errors import GanrunError, require
from ganrun.images import Densities, Figure, Grid, Scatter, default_nrow
from ganrun.models.family import Drawn, Model
from ganrun.runs.layout import figure_name

if TYPE_CHECKING:
    from ganrun.data import Data
    from ganrun.data.base import DataInfo

POINTS_PLOTTED = 2000  # generated (and real) points in each scatter plot of 2-D data
DENSITY_SAMPLES = 10000  # samples behind each estimate of p_g in the figures of 1-D data
ARROWS = 25  # z -> G(z) arrows in a 1-D figure, at evenly spaced quantiles of z
RECONSTRUCTED = 32  # held-out images in each training grid of reconstructions


def density_figure(
    name: str,
    info: DataInfo,
    samples: torch.Tensor,
    step: int,
    discriminate: Callable[[torch.Tensor], torch.Tensor] | None = None,
    mapping: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Densities:
    """The 1-D figure of any model's ``samples``: p_g estimated from them against the data's
    known p_data, D* = p_data / (p_data + p_g), D where the model has a ``discriminate``, and the
    ``mapping`` (z, G(z)) where its samples come from one latent number."""
    mixture = theory.Mixture.from_extra(info.extra)
    if mixture is None:
        raise GanrunError(f"data={info.name} has no known density to draw 1-D samples on")
    comparison = theory.compare(mixture, samples)
    x = comparison.grid.axes[0]
    d = None if discriminate is None else discriminate(x.float().view(-1, 1))
    z, gz = mapping if mapping is not None else (None, None)
    return Densities(
        name,
        x,
        comparison.p_data,
        comparison.p_g,
        d,
        comparison.d_star(),
        z,
        gz,
        title=f"step {step}: JSD(p_data || p_g) = {comparison.jsd():.4f} nats",
    )


def check_latent(m: Any) -> None:
    """The latent settings every family with a prior over z shares: its size and distribution."""
    require(m.latent_dim >= 1, f"model.latent_dim={m.latent_dim} must be at least 1")
    require(m.noise in ("normal", "uniform"), f"model.noise={m.noise!r} must be normal or uniform")
    require(m.noise_scale > 0, f"model.noise_scale={m.noise_scale} must be positive")


def check_layer_sizes(m: Any, *keys: str) -> None:
    """Each of ``model.<key>`` lists one or more hidden layer sizes, each at least 1."""
    for key in keys:
        require(
            len(m[key]) >= 1 and all(h >= 1 for h in m[key]),
            f"model.{key}={list(m[key])} must be one or more layer sizes, each at least 1",
        )


def sample_noise(
    cfg: Any, n: int, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Latent codes: N(0, s^2 I) or U(-s, s), s = ``model.noise_scale``."""
    s = cfg.noise_scale
    if cfg.noise == "uniform":
        z = torch.rand(n, cfg.latent_dim, device=device, generator=generator)
        return z.mul_(2 * s).sub_(s)
    if cfg.noise == "normal":
        return torch.randn(n, cfg.latent_dim, device=device, generator=generator).mul_(s)
    raise GanrunError(f"unknown model.noise {cfg.noise!r}; choose normal or uniform")


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (White 2016): the path stays where Gaussian noise has its mass,
    unlike a straight line, whose midpoints have too small a norm. Rows of z0, z1; t in [0, 1]."""
    a = torch.nn.functional.normalize(z0, dim=-1)
    b = torch.nn.functional.normalize(z1, dim=-1)
    omega = torch.arccos((a * b).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * z0 + (torch.sin(t * omega) / so) * z1


def plan_latents(
    cfg: Any,
    num_classes: int,
    n: int,
    interpolate: bool,
    steps: int,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Latent codes, labels (``num_classes`` > 0: conditional) and images per row of a grid of
    ``n`` (one class per row), or of interpolation strips of ``steps`` images (one per class)."""
    cpu = torch.device("cpu")
    if interpolate:
        rows = num_classes or max(1, math.ceil(n / steps))
        ends = sample_noise(cfg, 2 * rows, cpu, gen)
        t = torch.linspace(0, 1, steps).view(1, -1, 1)
        z0, z1 = ends[:rows, None, :], ends[rows:, None, :]
        # Uniform noise lives in a cube, which a straight line never leaves.
        z = slerp(z0, z1, t) if cfg.noise == "normal" else z0 + t * (z1 - z0)
        z = z.reshape(rows * steps, -1)
        labels = torch.arange(rows).repeat_interleave(steps) if num_classes else None
        return z, labels, steps
    if num_classes:
        per_class = math.ceil(n / num_classes)
        z = sample_noise(cfg, per_class * num_classes, cpu, gen)
        return z, torch.arange(num_classes).repeat_interleave(per_class), per_class
    return sample_noise(cfg, n, cpu, gen), None, default_nrow(n)


class LatentModel(Model):
    """A :class:`Model` whose samples are ``network(sampler)(z, y)``; see the module docs."""

    #: The network that maps latent codes (and labels) to samples.
    sampler: ClassVar[str] = "generator"
    provides = frozenset({"samples"})
    # The noise and labels every training grid shows, made on first use.
    _fixed: tuple[torch.Tensor, torch.Tensor | None, int | None] | None = None

    @property
    def num_classes(self) -> int:
        """Classes a conditional model is given (0: unconditional)."""
        return self.info.num_classes if self.cfg.get("conditional", False) else 0

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` latent codes from ``generator``, on its device."""
        return sample_noise(self.cfg, n, generator.device, generator)

    @torch.no_grad()
    def _forward(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]]) -> torch.Tensor:
        """The sampling network on each (codes, labels) batch, gathered on the CPU: the one
        batched generation loop."""
        net, device = self.network(self.sampler), self.device
        out = [
            net(z.to(device), None if y is None else y.to(device)).float().cpu() for z, y in batches
        ]
        return torch.cat(out)

    def draw(self, z: torch.Tensor, labels: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """The samples of given latent codes (and labels), ``batch_size`` at a time."""
        return self._forward(
            (z[i : i + batch_size], None if labels is None else labels[i : i + batch_size])
            for i in range(0, z.shape[0], batch_size)
        )

    def generate(self, n: int, seed: int, batch_size: int) -> torch.Tensor:
        # Each batch draws its codes, then its labels, from one seeded generator on the model's
        # device: the order every recorded score was computed with.
        device = self.device
        gen = torch.Generator(device=device).manual_seed(seed)

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
            for start in range(0, n, batch_size):
                m = min(batch_size, n - start)
                z = sample_noise(self.cfg, m, device, gen)
                y = None
                if self.num_classes:
                    y = torch.randint(0, self.num_classes, (m,), device=device, generator=gen)
                yield z, y

        return self._forward(batches())

    def _drawn(self, n: int, interpolate: bool, steps: int, seed: int, batch_size: int) -> Drawn:
        gen = torch.Generator().manual_seed(seed)
        z, labels, per_row = plan_latents(self.cfg, self.num_classes, n, interpolate, steps, gen)
        images = self.draw(z, labels, batch_size)
        arrays = {"z": z} if labels is None else {"z": z, "labels": labels}
        what = (
            f"{images.shape[0] // per_row} interpolation strips of {per_row} images"
            if interpolate
            else f"{images.shape[0]} samples"
        )
        return Drawn(images, arrays, per_row, what)

    def sample(self, n: int, seed: int, batch_size: int) -> Drawn:
        return self._drawn(n, False, 0, seed, batch_size)

    def interpolate(self, n: int, steps: int, seed: int, batch_size: int) -> Drawn:
        return self._drawn(n, True, steps, seed, batch_size)

    # --------------------------------------------------------------------- training figures
    def _fixed_inputs(self) -> tuple[torch.Tensor, torch.Tensor | None, int | None]:
        """One noise batch (and labels, one class per row) that every grid of a run shows, so
        the grids show the same z over the whole run; from a generator of its own."""
        if self._fixed is None:
            device = self.device
            gen = torch.Generator(device=device).manual_seed(self.run_cfg.seed + 2)
            n = self.run_cfg.train.num_samples
            if self.info.kind == "points":
                # A scatter plot needs many more points than a grid, a density estimate more still.
                n = max(n, DENSITY_SAMPLES if self.info.channels == 1 else POINTS_PLOTTED)
            z = sample_noise(self.cfg, n, device, gen)
            labels, cols = None, None
            if self.num_classes:
                cols = max(1, n // self.num_classes)
                z = z[: cols * self.num_classes]
                labels = torch.arange(self.num_classes, device=device).repeat_interleave(cols)
            self._fixed = (z, labels, cols)
        return self._fixed

    @torch.no_grad()
    def figures(self, step: int, data: Data) -> list[Figure]:
        z, labels, cols = self._fixed_inputs()
        net = self.network(self.sampler)
        was_training = net.training
        net.eval()
        try:
            out = net(z, labels)
            name = figure_name(step)
            if self.info.kind == "points" and self.info.channels == 1:
                return [self.densities(name, z, out, step)]
            if self.info.kind == "points":
                real = data.train.images[:POINTS_PLOTTED]
                centers = self.info.extra.get("centers")
                return [Scatter(name, out, real, centers, title=f"step {step}")]
            shown: list[Figure] = [Grid(name, out, self.info.value_range, cols)]
            return shown + self.more_figures(step, data, net)
        finally:
            net.train(was_training)

    def densities(self, name: str, z: torch.Tensor, out: torch.Tensor, step: int) -> Densities:
        """:func:`density_figure` of samples ``out`` = G(z), with D where the model has one and,
        for one latent number, arrows from evenly spaced quantiles of z to their G(z)."""
        mapping = None
        if z.shape[1] == 1:  # the paper's picture: one line of z below the line of x
            order = z[:, 0].argsort()
            pick = order[torch.linspace(0, z.shape[0] - 1, ARROWS).round().long()]
            mapping = (z[pick, 0].cpu(), out[pick, 0].cpu())
        discriminate = self.discriminate if "discriminator" in self.provides else None
        return density_figure(name, self.info, out, step, discriminate, mapping)

    def reconstruction_grid(self, step: int, data: Data) -> Grid:
        """For models that reconstruct: held-out images (validation split, else test, else
        training; top half) above their reconstructions."""
        split = data.splits.get("valid") or data.splits.get("test") or data.train
        x = split.scaled(split.images[:RECONSTRUCTED])
        both = torch.cat([x, self.reconstruct(x).to(x.device, x.dtype)])
        return Grid(figure_name(step, "recon"), both, self.info.value_range, nrow=8)

    def more_figures(self, step: int, data: Data, net: torch.nn.Module) -> list[Figure]:
        """Figures beyond the sample grid (the VAE's reconstructions), drawn in eval mode."""
        return []
