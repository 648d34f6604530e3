"""Gaussian mixtures fitted by EM (Dempster, Laird and Rubin 1977): the explicit density model
the GANs are held against.

A mixture of ``model.components`` Gaussians over the pixels of an image (flattened, in [0, 1])
or over points, with full, diagonal or spherical covariances (``model.covariance``). Each training
step is one EM iteration over the whole training split: the M-step sets the weights, means and
covariances from the responsibilities of the last E-step, then an E-step under the new
parameters gives their log-likelihood (the ``ll`` column of metrics.csv, nats per example) and the
responsibilities of the next step. EM never lowers the log-likelihood; the run stops once a step
raises it by less than ``model.tol`` (as scikit-learn's GaussianMixture does), or after
``model.max_iter`` steps (``train.steps`` follows it). The first step starts from k-means++ seeds
(Arthur and Vassilvitskii 2007), drawn from the run's noise generator, with every example given to
its nearest seed.

Why a torch EM rather than scikit-learn's: it runs on the training device, reads the split as
the other families do, keeps its parameters as tensors a ``weights_only`` checkpoint holds, and
takes one iteration per step, so that metrics.csv, figures, checkpoints and resume behave as for
every family. It computes in float64 (sufficient statistics of 60,000 images summed in float32
lose the digits the covariances need), on the CPU where the device (MPS) has no float64.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig
from torch import nn

from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError, require, require_one_of
from ganrun.images import Figure, Grid, Scatter, default_nrow
from ganrun.models.family import Drawn, Family, Model, ModelConfig, Statistic
from ganrun.models.latent import DENSITY_SAMPLES, POINTS_PLOTTED, density_figure
from ganrun.runs.layout import figure_name

if TYPE_CHECKING:
    from ganrun.data import Data

NET = "mixture"  # the one module, by the name checkpoints keep it under
COVARIANCES = ("full", "diag", "spherical")
# Elements of the (components x examples x dimensions) blocks the E-step works through at once
# (2**24 float64 numbers: 128 MiB), whatever the data and the number of components.
BLOCK = 2**24
EXAMPLES_PER_BLOCK = 4096
# Added to every component's responsibility sum, as scikit-learn does, so that a component no
# example chose keeps finite parameters (its mean the data's, its covariance model.reg_covar).
EMPTY = 10 * torch.finfo(torch.float64).eps
MAX_PARAMETER_BYTES = 8 * 2**30  # a mixture larger than this is refused before it is built
MEANS_SHOWN = 64  # component means in each grid of them, the heaviest first


@dataclass
class GmmConfig(ModelConfig):
    components: int = 10
    covariance: str = "full"  # full | diag | spherical
    max_iter: int = 100  # EM iterations at most (train.steps follows it)
    tol: float = 1.0e-3  # stop once an iteration raises the mean log-likelihood by less
    reg_covar: float = 1.0e-6  # added to every variance, so that no covariance is singular
    # How far samples stray from their component's mean, in units of its spread: 1 draws from the
    # fitted mixture, 0 gives the means themselves (the k-means centroids Theis et al. 2016 score
    # with Parzen windows). Sampling only: test_ll is always the fitted mixture's.
    temperature: float = 1.0
    conditional: bool = False  # no conditional variant; refused when set


def parameter_shapes(k: int, d: int, covariance: str) -> dict[str, tuple[int, ...]]:
    cov = {"full": (k, d, d), "diag": (k, d), "spherical": (k,)}[covariance]
    return {"weights": (k,), "means": (k, d), "covariances": cov}


# ------------------------------------------------------------------------------- the mixture
class GaussianMixture(nn.Module):
    """The mixture's parameters (as parameters that need no gradient: counted, checked for
    finite values and saved like any weights) and its densities.

    ``covariances`` is (K, D, D) for ``full``, the variances (K, D) for ``diag`` and one variance
    per component (K,) for ``spherical``. ``fitted`` says whether EM has set them yet.
    """

    def __init__(self, components: int, dim: int, covariance: str, reg_covar: float) -> None:
        super().__init__()
        self.covariance = covariance
        self.reg_covar = reg_covar
        self.dim = dim
        shapes = parameter_shapes(components, dim, covariance)
        f64 = torch.float64
        self.weights = nn.Parameter(torch.full(shapes["weights"], 1 / components, dtype=f64), False)
        self.means = nn.Parameter(torch.zeros(shapes["means"], dtype=f64), False)
        if covariance == "full":
            cov = torch.eye(dim, dtype=f64).expand(shapes["covariances"]).clone()
        else:
            cov = torch.ones(shapes["covariances"], dtype=f64)
        self.covariances = nn.Parameter(cov, False)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def components(self) -> int:
        return self.weights.shape[0]

    # ----------------------------------------------------------------------------- densities
    def _precisions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """What the densities need: for ``full`` the transposed inverse Cholesky factors
        (K, D, D), else the inverse variances; and each component's log-determinant (K,)."""
        cov = self.covariances
        if self.covariance == "full":
            factor, info = torch.linalg.cholesky_ex(cov)
            bad = torch.nonzero(info).flatten()
            if bad.numel():
                raise GanrunError(
                    f"the covariance of mixture component {int(bad[0])} is not positive "
                    f"definite; raise model.reg_covar (now {self.reg_covar:g})"
                )
            eye = torch.eye(self.dim, dtype=cov.dtype, device=cov.device)
            inverse = torch.linalg.solve_triangular(factor, eye.expand_as(factor), upper=False)
            logdet = 2 * factor.diagonal(dim1=-2, dim2=-1).log().sum(-1)
            return inverse.transpose(-1, -2), logdet
        if self.covariance == "diag":
            return 1 / cov, cov.log().sum(-1)
        return 1 / cov, self.dim * cov.log()

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log w_k + log N(x | mu_k, Sigma_k) for examples ``x`` (N, D) in float64: (N, K)."""
        prec, logdet = self._precisions()
        means = self.means
        if self.covariance == "full":
            block = max(1, BLOCK // max(1, x.shape[0] * self.dim))
            parts = []
            for k in range(0, self.components, block):
                p = prec[k : k + block]
                y = torch.matmul(x, p) - torch.matmul(means[k : k + block, None, :], p)
                parts.append(y.pow(2).sum(-1).T)
            maha = torch.cat(parts, dim=1)
        elif self.covariance == "diag":
            # |x - mu|^2 / var, expanded into products: no (N, K, D) block is ever made.
            maha = x.pow(2) @ prec.T - 2 * x @ (means * prec).T + (means.pow(2) * prec).sum(1)
        else:
            sq = x.pow(2).sum(1, keepdim=True) - 2 * x @ means.T + means.pow(2).sum(1)
            maha = sq * prec
        maha = maha.clamp_min(0)  # the expansions can round a tiny distance below zero
        log_norm = -0.5 * (self.dim * math.log(2 * math.pi) + logdet + maha)
        return log_norm + self.weights.log()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) of examples ``x`` (N, D) in float64, (N,)."""
        return torch.logsumexp(self.log_joint(x), dim=1)

    # ------------------------------------------------------------------------------- drawing
    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator, temperature: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` draws (N, D) in float64 and the component of each, on ``generator``'s device;
        their deviations from the means scaled by ``temperature``."""
        device = generator.device
        weights = self.weights.to(device)
        picked = torch.multinomial(weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, device=device, dtype=torch.float64)
        z *= temperature
        means, cov = self.means.to(device), self.covariances.to(device)
        if self.covariance == "diag":
            return means[picked] + cov[picked].sqrt() * z, picked
        if self.covariance == "spherical":
            return means[picked] + cov[picked].sqrt()[:, None] * z, picked
        x = torch.empty_like(z)
        for k in picked.unique():  # one factor per component used, not one per draw
            rows = picked == k
            x[rows] = means[k] + z[rows] @ torch.linalg.cholesky(cov[k]).T
        return x, picked


# ------------------------------------------------------------------------------------ EM
@dataclass
class Statistics:
    """The sufficient statistics of one E-step: responsibility sums (K,), responsibility-weighted
    sums of the examples (K, D) and of their squares ((K, D, D), (K, D) or (K,)), the summed
    log-likelihood and the number of examples. Examples are taken relative to ``shift`` (the
    data's mean), which keeps the one-pass covariances free of cancellation."""

    counts: torch.Tensor
    sums: torch.Tensor
    squares: torch.Tensor
    log_likelihood: float
    n: int


def _accumulate(
    x: torch.Tensor,
    responsibilities: torch.Tensor,
    covariance: str,
    into: list[torch.Tensor] | None,
) -> list[torch.Tensor]:
    r = responsibilities
    counts, sums = r.sum(0), r.T @ x
    if covariance == "full":
        squares = torch.stack([(x * r[:, k, None]).T @ x for k in range(r.shape[1])])
    elif covariance == "diag":
        squares = r.T @ x.pow(2)
    else:
        squares = r.T @ x.pow(2).sum(1)
    parts = [counts, sums, squares]
    if into is None:
        return parts
    for total, part in zip(into, parts, strict=True):
        total += part
    return into


def e_step(mixture: GaussianMixture, x: torch.Tensor, shift: torch.Tensor) -> Statistics:
    """Responsibilities of every example under the mixture's parameters, as sufficient
    statistics, and the log-likelihood of the examples ``x`` (N, D), float64."""
    totals = None
    ll = 0.0
    for chunk in x.split(EXAMPLES_PER_BLOCK):
        joint = mixture.log_joint(chunk)
        lse = torch.logsumexp(joint, dim=1, keepdim=True)
        ll += float(lse.sum())
        totals = _accumulate(chunk - shift, (joint - lse).exp(), mixture.covariance, totals)
    assert totals is not None
    return Statistics(*totals, log_likelihood=ll, n=x.shape[0])


def hard_statistics(
    x: torch.Tensor, centres: torch.Tensor, covariance: str, shift: torch.Tensor
) -> Statistics:
    """The statistics of every example given wholly to its nearest centre (k-means' assignment):
    what the first M-step starts from."""
    totals = None
    k = centres.shape[0]
    for chunk in x.split(EXAMPLES_PER_BLOCK):
        nearest = torch.cdist(chunk, centres).argmin(1)
        r = torch.nn.functional.one_hot(nearest, k).to(x.dtype)
        totals = _accumulate(chunk - shift, r, covariance, totals)
    assert totals is not None
    return Statistics(*totals, log_likelihood=math.nan, n=x.shape[0])


@torch.no_grad()
def m_step(mixture: GaussianMixture, stats: Statistics, shift: torch.Tensor) -> None:
    """Weights, means and covariances that maximise the expected log-likelihood under the
    responsibilities ``stats`` hold, plus ``reg_covar`` on every variance."""
    counts = stats.counts + EMPTY
    centred = stats.sums / counts[:, None]  # the means, relative to shift
    reg = mixture.reg_covar
    if mixture.covariance == "full":
        cov = stats.squares / counts[:, None, None] - centred[:, :, None] * centred[:, None, :]
        cov = 0.5 * (cov + cov.transpose(-1, -2))  # exactly symmetric, for the Cholesky
        cov.diagonal(dim1=-2, dim2=-1).add_(reg)
    elif mixture.covariance == "diag":
        cov = (stats.squares / counts[:, None] - centred.pow(2)).clamp_min(0) + reg
    else:
        var = stats.squares / counts - centred.pow(2).sum(1)
        cov = var.clamp_min(0) / mixture.dim + reg
    mixture.weights.copy_(counts / counts.sum())
    mixture.means.copy_(centred + shift)
    mixture.covariances.copy_(cov)
    mixture.fitted.fill_(True)


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` seeds among the rows of ``x``: the first uniformly, each next one with probability
    proportional to its squared distance from the nearest seed so far."""
    n = x.shape[0]
    norms = x.pow(2).sum(1)

    def distances(seed: torch.Tensor) -> torch.Tensor:
        # |x - s|^2 expanded: a product with the data, not a copy of it per seed.
        return (norms - 2 * (x @ seed) + seed.pow(2).sum()).clamp_min_(0)

    first = torch.randint(n, (1,), generator=generator, device=generator.device).to(x.device)
    seeds = [x[first[0]]]
    nearest = distances(seeds[0])
    for _ in range(1, k):
        if float(nearest.sum()) <= 0:  # fewer distinct examples than seeds: repeat one
            pick = torch.randint(n, (1,), generator=generator, device=generator.device)
        else:
            probs = (nearest / nearest.sum()).to(generator.device)
            pick = torch.multinomial(probs, 1, generator=generator)
        seed = x[pick.to(x.device)[0]]
        seeds.append(seed)
        nearest = torch.minimum(nearest, distances(seed))
    return torch.stack(seeds)


# ------------------------------------------------------------------------------- the model
class GmmModel(Model):
    provides = frozenset({"samples", "log_likelihood"})

    def __init__(self, cfg: DictConfig, info: DataInfo, networks: dict[str, nn.Module]) -> None:
        super().__init__(cfg, info, networks)
        self.shape = (
            (info.channels,)
            if info.kind == "points"
            else (info.channels, info.resolution, info.resolution)
        )
        self.tol = float(cfg.tol)
        self.previous = math.nan  # the log-likelihood of the step before
        self.change = math.inf  # what the last step added to it
        self._x: torch.Tensor | None = None  # the training split, flattened, float64
        self._shift: torch.Tensor | None = None
        self._stats: Statistics | None = None  # of the last E-step, for the next M-step

    @property
    def mixture(self) -> GaussianMixture:
        return self.networks[NET]  # type: ignore[return-value]

    def to(self, device: torch.device) -> GmmModel:
        # MPS has no float64: the mixture stays on the CPU there.
        return super().to(torch.device("cpu") if device.type == "mps" else device)

    # ------------------------------------------------------------------------------ training
    @property
    def converged(self) -> bool:
        """The last iteration raised the log-likelihood by less than ``model.tol`` (the current
        one: a run resumed with a smaller tol goes on)."""
        return self.change < self.tol

    def _training_data(self, batches: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole training split as float64 rows on the mixture's device, read once."""
        if self._x is None:
            x, _ = batches.all()
            self._x = x.to(self.device, torch.float64).flatten(1)
            self._shift = self._x.mean(0)
        assert self._shift is not None
        return self._x, self._shift

    @torch.no_grad()
    def training_step(self, batches: Any, noise: torch.Generator) -> dict[str, torch.Tensor]:
        """One EM iteration (the first after k-means++ seeding); see the module docs."""
        mixture = self.mixture
        x, shift = self._training_data(batches)
        if not bool(mixture.fitted):
            centres = kmeans_plus_plus(x, mixture.components, noise)
            m_step(mixture, hard_statistics(x, centres, mixture.covariance, shift), shift)
            self._stats = e_step(mixture, x, shift)
            self.previous = self._stats.log_likelihood / self._stats.n
        elif self._stats is None:  # resumed: the responsibilities are recomputed, not saved
            self._stats = e_step(mixture, x, shift)
        m_step(mixture, self._stats, shift)
        self._stats = e_step(mixture, x, shift)
        ll = self._stats.log_likelihood / self._stats.n
        self.change, self.previous = ll - self.previous, ll
        device = self.device
        return {
            "ll": torch.tensor(ll, device=device),
            "change": torch.tensor(self.change, device=device),
        }

    def extra_state(self) -> dict[str, Any]:
        return {
            "previous": self.previous,
            "change": self.change,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.previous = float(state["previous"])
        self.change = float(state["change"])

    def release_training_state(self) -> None:
        super().release_training_state()
        self._x = self._shift = self._stats = None

    # ------------------------------------------------------------------------------ using it
    @property
    def weights(self) -> str:
        return "mixture"  # what EM fitted; there is no generator, and no average

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats per example (images in [0, 1], flattened), float64."""
        rows = x.to(self.device, torch.float64).flatten(1)
        return torch.cat([self.mixture.log_prob(c) for c in rows.split(EXAMPLES_PER_BLOCK)])

    def _draw(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` samples shaped like the data (pixels clipped to the data's range) and their
        components, on the CPU."""
        gen = torch.Generator().manual_seed(seed)
        x, picked = _sample_cpu(self, n, gen, float(self.cfg.temperature))
        x = x.float().view(n, *self.shape)
        if self.info.kind == "image":
            x = x.clamp(*self.info.value_range)
        return x, picked

    def generate(self, n: int, seed: int, batch_size: int) -> torch.Tensor:
        return self._draw(n, seed)[0]

    def sample(self, n: int, seed: int, batch_size: int) -> Drawn:
        images, picked = self._draw(n, seed)
        return Drawn(
            images,
            {"components": picked},
            default_nrow(n),
            f"{n} samples of {self.mixture.components} {self.cfg.covariance} Gaussians"
            + ("" if self.cfg.temperature == 1 else f" at temperature {self.cfg.temperature:g}"),
        )

    def means(self) -> torch.Tensor:
        """The components' means, heaviest first, shaped like the data (clipped to its range)."""
        mixture = self.mixture
        order = mixture.weights.argsort(descending=True)
        means = mixture.means[order].float().cpu().view(-1, *self.shape)
        return means.clamp(*self.info.value_range) if self.info.kind == "image" else means

    @torch.no_grad()
    def figures(self, step: int, data: Data) -> list[Figure]:
        """Samples from one seed all run long, and the component means, heaviest first."""
        name = figure_name(step)
        seed = self.run_cfg.seed + 2
        if self.info.kind == "points" and self.info.channels == 1:
            samples = self.generate(DENSITY_SAMPLES, seed, DENSITY_SAMPLES)
            return [density_figure(name, self.info, samples, step)]
        if self.info.kind == "points":
            samples = self.generate(POINTS_PLOTTED, seed, POINTS_PLOTTED)
            real = data.train.images[:POINTS_PLOTTED]
            title = f"step {step}: samples, data and the {self.mixture.components} means (x)"
            return [Scatter(name, samples, real, self.means(), title=title)]
        n = self.run_cfg.train.num_samples
        means = self.means()[:MEANS_SHOWN]
        value_range = self.info.value_range
        return [
            Grid(name, self.generate(n, seed, n), value_range, default_nrow(n)),
            Grid(figure_name(step, "means"), means, value_range, default_nrow(means.shape[0])),
        ]


def _sample_cpu(
    model: GmmModel, n: int, gen: torch.Generator, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws on the CPU whatever the device, so a seed gives the same samples everywhere."""
    mixture = model.mixture
    if mixture.weights.device.type != "cpu":
        copy = GaussianMixture(
            mixture.components, mixture.dim, mixture.covariance, mixture.reg_covar
        )
        copy.load_state_dict({k: v.cpu() for k, v in mixture.state_dict().items()})
        mixture = copy
    return mixture.sample(n, gen, temperature)


# ------------------------------------------------------------------------------- the family
class GMMFamily(Family):
    name = "gmm"
    models = ("gmm",)
    schema = GmmConfig
    adjustable = ("max_iter", "tol", "temperature")
    statistics = (  # what GmmModel.training_step returns
        Statistic("ll", "mean training log-likelihood after this EM iteration", higher=True),
        Statistic("change", "ll minus that of the iteration before (EM never lowers it)"),
    )

    def data_kinds(self, model: str) -> tuple[str, ...]:
        return ("image", "points")

    def value_range(self, cfg: DictConfig) -> tuple[float, float]:
        # Pixels in [0, 1], the scale the 2014 paper's Parzen likelihoods were reported on.
        return (0.0, 1.0)

    def check(self, cfg: DictConfig) -> None:
        m = cfg.model
        self._check_model(m)
        require(
            cfg.train.steps == m.max_iter,
            f"model={m.name} runs one EM iteration per step: train.steps={cfg.train.steps} must "
            f"equal model.max_iter={m.max_iter}; set model.max_iter alone (train.steps follows it)",
        )
        require(
            m.ema_decay == 0,
            f"model.ema_decay={m.ema_decay}: EM sets the mixture's parameters outright, there is "
            "nothing to average; use model.ema_decay=0",
        )
        # Each process would fit its own shard: the mixtures would differ.
        require(
            int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1,
            f"model={m.name} fits by EM on the whole training split in one process; run it "
            "without torchrun",
        )

    def _check_model(self, m: DictConfig) -> None:
        require_one_of(m.covariance, COVARIANCES, "model.covariance")
        require(m.components >= 1, f"model.components={m.components} must be at least 1")
        require(m.max_iter >= 1, f"model.max_iter={m.max_iter} must be at least 1")
        require(
            m.tol >= 0 and math.isfinite(m.tol), f"model.tol={m.tol} must be a non-negative number"
        )
        require(
            m.temperature >= 0 and math.isfinite(m.temperature),
            f"model.temperature={m.temperature} must be a non-negative number (1: the fitted "
            "mixture, 0: its means)",
        )
        require(
            m.reg_covar > 0 and math.isfinite(m.reg_covar),
            f"model.reg_covar={m.reg_covar} must be positive (it keeps covariances invertible)",
        )
        require(
            not m.conditional,
            f"model={m.name} has no conditional variant; use model.conditional=false",
        )

    def check_data(self, cfg: DictConfig, data: Data) -> None:
        n, k = len(data.train), cfg.model.components
        require(
            k <= n,
            f"model.components={k} is more than the {n} training examples of "
            f"data={cfg.data.name}; lower model.components",
        )

    def build(self, cfg: DictConfig, info: DataInfo) -> GmmModel:
        self._check_model(cfg)
        dim = info.channels if info.kind == "points" else info.channels * info.resolution**2
        shapes = parameter_shapes(cfg.components, dim, cfg.covariance)
        size = 8 * sum(math.prod(s) for s in shapes.values())
        require(
            size <= MAX_PARAMETER_BYTES,
            f"model.components={cfg.components} {cfg.covariance} Gaussians over {dim} "
            f"dimensions need {size / 2**30:.1f} GiB of parameters; use fewer components or "
            "model.covariance=diag",
        )
        mixture = GaussianMixture(cfg.components, dim, cfg.covariance, cfg.reg_covar)
        return GmmModel(cfg, info, {NET: mixture})


FAMILY = GMMFamily()
