"""Autoencoders: plain, denoising (Vincent et al. 2008) and sparse.

An encoder maps an image x to a code h (``model.latent_dim`` numbers, no activation), a decoder
maps h back to the pixels, and training lowers the reconstruction loss of decode(encode(x)),
summed over pixels and averaged over the batch: binary cross-entropy on sigmoid outputs for
pixels in [0, 1] (the default, like the VAE's Bernoulli likelihood), or squared error
(``model.loss=mse``, the one that fits ``model.output=tanh``). ``model.variant`` adds to it:

- ``denoising``: the encoder sees a corrupted x and the loss compares with the clean x.
  ``model.noise=gaussian`` adds N(0, noise_level^2) to each pixel (noise_level in units of the
  [0, 1] range; not clipped back into it), ``masking`` sets a ``noise_level`` fraction of the
  pixels (all channels of each) to the data's low value (0, or -1 after tanh).
- ``sparse``: plus ``model.sparsity`` times the mean L1 norm of the codes.

The networks are the VAE's (:mod:`ganrun.models.nets.autoencoder`), with a linear layer from the
encoder's features to the code. An autoencoder has no prior of its own, so samples decode codes
drawn from a Gaussian fitted to the training codes (``model.prior=fitted``), or from N(0, I)
(``normal``, which lands mostly where the decoder never learned anything). The fitted Gaussian is
kept as running mean and covariance buffers of the network, updated each training step like
BatchNorm's running statistics, so that checkpoints, EMA copies and resume carry it as they
carry the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError, require, require_one_of
from ganrun.images import Figure, Grid, default_nrow
from ganrun.models.family import Drawn, Family, Model, ModelConfig, Statistic
from ganrun.models.latent import plan_latents, sample_noise
from ganrun.models.nets.autoencoder import BUILDERS
from ganrun.runs.layout import figure_name

if TYPE_CHECKING:
    from ganrun.data import Data

NET = "autoencoder"  # the one network, by the name checkpoints keep it under
VARIANTS = ("plain", "denoising", "sparse")
NOISE_LEVELS = {"gaussian": 0.3, "masking": 0.25}  # model.noise -> default model.noise_level
OUTPUTS = ("sigmoid", "tanh")
LOSSES = ("auto", "bce", "mse")
PRIORS = ("fitted", "normal")
SPARSITY = 1.0  # model.sparsity of variant=sparse when unset
# Weight of each batch in the running code statistics once 1/CODE_MOMENTUM batches were seen,
# as BatchNorm's momentum: the fitted Gaussian follows the encoder as it learns, over roughly
# the last hundred batches. Before that, batches are averaged equally, so the initial N(0, I)
# is forgotten at the first step rather than slowly.
CODE_MOMENTUM = 0.01
# Cholesky factors are tried with no jitter first, then with this fraction of the mean variance
# added to the diagonal, ten times more at each further try, up to a hundredth of it.
JITTER = 1e-6
JITTER_TRIES = 5
RECONSTRUCTED = 32  # held-out images in each grid of reconstructions


@dataclass
class AeConfig(ModelConfig):
    variant: str = "plain"  # plain | denoising | sparse
    latent_dim: int = 20  # the code's size
    arch: str = "mlp"  # mlp | conv (DCGAN-style)
    g_hidden: list[int] = field(default_factory=lambda: [500])  # mlp: hidden layer sizes
    width: int = 32  # conv: base channel count
    output: str = "sigmoid"  # sigmoid: pixels in [0, 1] | tanh: pixels in [-1, 1]
    loss: str = "auto"  # reconstruction loss: auto (bce after sigmoid, mse after tanh) | bce | mse
    # denoising only: the corruption, gaussian or masking (unset: gaussian), and its std in
    # [0, 1]-range units or the fraction of pixels masked (unset: 0.3 gaussian, 0.25 masking)
    noise: str | None = None
    noise_level: float | None = None
    sparsity: float | None = None  # sparse only: the L1 penalty's weight (unset: 1)
    prior: str = "fitted"  # what samples decode: fitted (Gaussian of the codes) | normal
    conditional: bool = False  # no conditional variant; refused when set


@dataclass(frozen=True)
class StandardNormal:
    """What the sampling code of :mod:`ganrun.models.latent` reads to draw N(0, I) codes, which
    the prior in use then maps to its own (``model.noise`` is the corruption here)."""

    latent_dim: int
    noise: str = "normal"
    noise_scale: float = 1.0


# ------------------------------------------------------------------------------- the losses
def resolved_loss(m: DictConfig) -> str:
    """``model.loss``, with ``auto`` resolved by the output: bce after sigmoid, mse after tanh."""
    if m.loss != "auto":
        return m.loss
    return "bce" if m.output == "sigmoid" else "mse"


def reconstruction_loss(
    logits: torch.Tensor, x: torch.Tensor, loss: str, output: str
) -> torch.Tensor:
    """Per example, summed over pixels: binary cross-entropy of the sigmoid of ``logits``
    against ``x`` in [0, 1] (``bce``), or the squared error of the ``output`` activation of
    ``logits`` (``mse``)."""
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    out = torch.sigmoid(logits) if output == "sigmoid" else torch.tanh(logits)
    return (out - x).pow(2).flatten(1).sum(1)


def sparsity_penalty(code: torch.Tensor, weight: float) -> torch.Tensor:
    """``weight`` times the mean over the batch of each code's L1 norm."""
    return weight * code.abs().sum(1).mean()


def corrupt(
    x: torch.Tensor,
    noise: str,
    level: float,
    value_range: tuple[float, float],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Images ``x`` (N, C, H, W) in ``value_range``, corrupted: ``gaussian`` adds noise of std
    ``level`` times the range's width (so ``level`` is in [0, 1]-range units), ``masking`` sets
    each pixel (all its channels) to the range's low end with probability ``level``."""
    low, high = value_range
    if noise == "gaussian":
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + eps * (level * (high - low))
    if noise == "masking":
        shape = (x.shape[0], 1, *x.shape[2:])
        masked = torch.rand(shape, generator=generator, device=x.device) < level
        return x.masked_fill(masked, low)
    raise GanrunError(f"model.noise={noise!r} is not a corruption; choose gaussian or masking")


def cholesky_factor(cov: torch.Tensor) -> torch.Tensor:
    """The lower Cholesky factor of a covariance matrix, in float64 on the CPU: precise, the
    same whatever device trained the model, and there even where the device (MPS) has no
    float64.

    A running covariance of codes is positive semi-definite but need not be positive definite:
    until more codes than dimensions were seen, with code dimensions the encoder stopped using
    (the sparse penalty drives them to zero), or through float32 rounding of the running update.
    Then a little jitter on the diagonal, relative to the mean variance so that it does not
    change the samples visibly, makes it factorable.
    """
    cov = cov.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(cov).all()):
        raise GanrunError(
            "the Gaussian fitted to the codes is not finite (training diverged); sample with "
            "sample.prior=normal, or train again with a lower optim.lr"
        )
    cov = 0.5 * (cov + cov.T)  # running updates can leave it a rounding error off symmetric
    eye = torch.eye(cov.shape[0], dtype=torch.float64)
    scale = max(float(cov.diagonal().mean()), 1e-12)
    jitter = 0.0
    for attempt in range(JITTER_TRIES + 1):
        factor, info = torch.linalg.cholesky_ex(cov + jitter * eye)
        if int(info) == 0:
            return factor
        jitter = JITTER * scale * 10**attempt
    raise GanrunError(
        "the Gaussian fitted to the codes cannot be factored (covariance far from positive "
        "definite); sample with sample.prior=normal"
    )


# ------------------------------------------------------------------------------ the network
class Autoencoder(nn.Module):
    """Encoder, code layer and decoder, and the running mean and covariance of the codes."""

    def __init__(self, cfg: DictConfig, info: DataInfo) -> None:
        super().__init__()
        if info.kind != "image":
            raise GanrunError(f"model={cfg.name} needs image data; data={info.name} is not images")
        self.shape = (info.channels, info.resolution, info.resolution)
        self.output = cfg.output
        self.prior = cfg.prior  # what forward() decodes; ganrun sample may switch it
        self.encoder, features, self.decoder_net = BUILDERS[cfg.arch](cfg, info)
        self.to_code = nn.Linear(features, cfg.latent_dim)
        d = cfg.latent_dim
        # Buffers, not parameters: saved and loaded with the weights and copied into EMA copies
        # as they are. Until the first step the fitted Gaussian is N(0, I).
        self.register_buffer("code_mean", torch.zeros(d))
        self.register_buffer("code_cov", torch.eye(d))
        self.register_buffer("code_batches", torch.zeros((), dtype=torch.long))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_code(self.encoder(x))

    def decode_logits(self, code: torch.Tensor) -> torch.Tensor:
        """The decoder's pixels before the output activation."""
        return self.decoder_net(code).view(code.shape[0], *self.shape)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Images in the output's range."""
        logits = self.decode_logits(code)
        return torch.sigmoid(logits) if self.output == "sigmoid" else torch.tanh(logits)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def track_codes(self, code: torch.Tensor) -> None:
        """Move the running mean and covariance towards those of a batch of codes (two or
        more), without waiting for the device."""
        code = code.detach().float()
        mean = code.mean(0)
        centred = code - mean
        # Unbiased: its expectation is the codes' covariance whatever the batch size.
        cov = centred.T @ centred / (code.shape[0] - 1)
        weight = (1.0 / (self.code_batches + 1).float()).clamp_(min=CODE_MOMENTUM)
        self.code_mean.lerp_(mean, weight)
        self.code_cov.lerp_(cov, weight)
        self.code_batches += 1

    @torch.no_grad()
    def prior_gaussian(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior in use as (mean, lower Cholesky factor of its covariance), on this
        module's device: the fitted Gaussian of the codes, or N(0, I)."""
        d, device = self.code_mean.numel(), self.code_mean.device
        if self.prior == "normal":
            return torch.zeros(d, device=device), torch.eye(d, device=device)
        return self.code_mean.clone(), cholesky_factor(self.code_cov).to(device, torch.float32)

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """The codes of standard normal draws ``z`` under the prior in use: mean + L z."""
        mean, factor = self.prior_gaussian()
        return mean + z @ factor.T

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Samples: decodes of the codes of standard normal draws ``z``."""
        return self.decode(self.codes(z))


# -------------------------------------------------------------------------------- the model
class AeModel(Model):
    averaged = (NET,)
    provides = frozenset({"samples", "reconstruct", "features"})
    feature_layers = {"output": "code", "penultimate": "encoder's last hidden layer"}

    def __init__(self, cfg: DictConfig, info: DataInfo, networks: dict[str, nn.Module]) -> None:
        super().__init__(cfg, info, networks)
        self.recon_loss = resolved_loss(cfg)
        self.noise_kind: str | None = None
        self.noise_level = 0.0
        if cfg.variant == "denoising":
            self.noise_kind = cfg.noise or "gaussian"
            level = cfg.noise_level
            self.noise_level = NOISE_LEVELS[self.noise_kind] if level is None else float(level)
        self.sparsity = 0.0
        if cfg.variant == "sparse":
            self.sparsity = SPARSITY if cfg.sparsity is None else float(cfg.sparsity)
        self.latent = StandardNormal(cfg.latent_dim)
        self._fixed: torch.Tensor | None = None  # the draws every training grid decodes
        self._shown: torch.Tensor | None = None  # the held-out images every recon grid shows

    @property
    def prior(self) -> str:
        """The prior samples come from: ``model.prior``, or what :meth:`use_prior` chose."""
        return self.networks[NET].prior

    def use_prior(self, name: str) -> None:
        """Sample from ``fitted`` or ``normal`` (``ganrun sample sample.prior=<name>``); the
        networks carry the choice, EMA copies included, since their forward draws samples."""
        require(
            name in PRIORS,
            f"sample.prior={name} is not a prior of model={self.cfg.name}; choose one of: "
            f"{', '.join(PRIORS)}",
        )
        for net in (self.networks[NET], *(a.model for a in self.averages.values())):
            net.prior = name

    # ------------------------------------------------------------------------------ training
    def configure_training(self, cfg: DictConfig, fused: bool) -> None:
        super().configure_training(cfg, fused)
        self.batch_size = cfg.train.batch_size
        self.add_optimizer(NET, self.networks[NET].parameters(), cfg.optim, fused)

    def training_step(self, batches: Any, noise: torch.Generator) -> dict[str, torch.Tensor]:
        """One step on the reconstruction loss (plus the sparse penalty), per example; the
        corruption is drawn from ``noise``."""
        net, opt = self.networks[NET], self.optimizers[NET]
        x, _ = batches.batch(self.batch_size)
        inputs = x
        if self.noise_kind is not None:
            inputs = corrupt(x, self.noise_kind, self.noise_level, self.info.value_range, noise)
        code = net.encode(inputs)
        recon = reconstruction_loss(net.decode_logits(code), x, self.recon_loss, net.output).mean()
        if self.sparsity:
            penalty = sparsity_penalty(code, self.sparsity)
        else:
            penalty = torch.zeros((), device=x.device)
        loss = recon + penalty
        opt.zero_grad(set_to_none=True)
        loss.backward()
        self.sync_gradients(net)  # across torchrun ranks (DDP only follows forward)
        opt.step()
        # The codes the decoder was trained on (for denoising: of corrupted inputs), before the
        # averages copy the buffers.
        net.track_codes(code)
        self.update_averages()
        return {"loss": loss.detach(), "recon": recon.detach(), "sparsity": penalty.detach()}

    # ------------------------------------------------------------------------------ using it
    @property
    def weights(self) -> str:
        return "ema" if self.averages else NET

    @torch.no_grad()
    def features(self, x: torch.Tensor, layer: str = "output") -> torch.Tensor:
        """The codes of images ``x`` (uncorrupted), or the encoder's features they are computed
        from, in eval mode."""
        with self.evaluating():
            net, x = self.network(NET), x.to(self.device)
            return net.encode(x) if layer == "output" else net.encoder(x).flatten(1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decode(encode(x)) in eval mode, uncorrupted, in the data's value range."""
        net = self.network(NET)
        with self.evaluating():
            return net.reconstruct(x)

    @torch.no_grad()
    def _decode(self, z: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and codes of standard normal draws ``z``, decoded ``batch_size`` at a time;
        on the CPU."""
        net = self.network(NET)
        codes = net.codes(z.to(self.device))  # one factorisation for all of them
        images = [
            net.decode(codes[i : i + batch_size]).float().cpu()
            for i in range(0, len(z), batch_size)
        ]
        return torch.cat(images), codes.cpu()

    def generate(self, n: int, seed: int, batch_size: int) -> torch.Tensor:
        gen = torch.Generator(device=self.device).manual_seed(seed)
        return self._decode(sample_noise(self.latent, n, self.device, gen), batch_size)[0]

    def _drawn(self, n: int, interpolate: bool, steps: int, seed: int, batch_size: int) -> Drawn:
        gen = torch.Generator().manual_seed(seed)
        z, _, per_row = plan_latents(self.latent, 0, n, interpolate, steps, gen)
        images, codes = self._decode(z, batch_size)
        what = (
            f"{images.shape[0] // per_row} interpolation strips of {per_row} images"
            if interpolate
            else f"{images.shape[0]} samples"
        )
        # z: the standard normal draws; codes: what the prior made of them, the decoder's input.
        arrays = {"z": z, "codes": codes}
        return Drawn(images, arrays, per_row, f"{what} (codes from the {self.prior} prior)")

    def sample(self, n: int, seed: int, batch_size: int) -> Drawn:
        return self._drawn(n, False, 0, seed, batch_size)

    def interpolate(self, n: int, steps: int, seed: int, batch_size: int) -> Drawn:
        return self._drawn(n, True, steps, seed, batch_size)

    # ----------------------------------------------------------------------- training figures
    def _shown_images(self, data: Data) -> torch.Tensor:
        """Held-out images (the first of the valid split, else of test, else of train), read
        once: a streamed split reads them from disk."""
        if self._shown is None:
            split = data.splits.get("valid") or data.splits.get("test") or data.train
            index = torch.arange(min(RECONSTRUCTED, len(split)))
            self._shown = split.scaled(split.pixels(index)).to(self.device)
        return self._shown

    @torch.no_grad()
    def figures(self, step: int, data: Data) -> list[Figure]:
        """Samples of the same draws all run long, from the prior in use; then held-out images
        above their reconstructions (for denoising: above their corrupted versions, above the
        reconstructions of those)."""
        device, value_range = self.device, self.info.value_range
        if self._fixed is None:
            gen = torch.Generator(device=device).manual_seed(self.run_cfg.seed + 2)
            self._fixed = sample_noise(self.latent, self.run_cfg.train.num_samples, device, gen)
        net = self.network(NET)
        was_training = net.training
        net.eval()
        try:
            samples = net(self._fixed)
            x = self._shown_images(data)
            rows = [x]
            if self.noise_kind is not None:
                # The same corruption in every grid, from a generator of its own.
                gen = torch.Generator(device=device).manual_seed(self.run_cfg.seed + 4)
                x = corrupt(x, self.noise_kind, self.noise_level, value_range, gen)
                rows.append(x)
            rows.append(net.reconstruct(x))
        finally:
            net.train(was_training)
        return [
            Grid(figure_name(step), samples, value_range, default_nrow(samples.shape[0])),
            Grid(figure_name(step, "recon"), torch.cat(rows), value_range, nrow=8),
        ]


class AEFamily(Family):
    name = "ae"
    models = ("ae",)
    schema = AeConfig
    statistics = (  # what AeModel.training_step returns
        Statistic("loss", "recon + sparsity, per example"),
        Statistic("recon", "reconstruction loss per example, summed over pixels (bce or mse)"),
        Statistic("sparsity", "model.sparsity x the mean L1 norm of the codes (0 unless sparse)"),
    )

    def arch(self, cfg: DictConfig) -> str | None:
        return cfg.arch

    def check(self, cfg: DictConfig) -> None:
        self._check_model(cfg.model)
        # The fitted prior takes a covariance from every batch, which needs two codes at least.
        require(
            cfg.train.batch_size >= 2,
            f"model={cfg.model.name} fits a Gaussian to each batch of codes: "
            f"train.batch_size={cfg.train.batch_size} must be at least 2",
        )

    def _check_model(self, m: DictConfig) -> None:
        require_one_of(m.variant, VARIANTS, "model.variant")
        require_one_of(m.arch, BUILDERS, "model.arch")
        require_one_of(m.output, OUTPUTS, "model.output")
        require_one_of(m.loss, LOSSES, "model.loss")
        require_one_of(m.prior, PRIORS, "model.prior")
        require(m.latent_dim >= 1, f"model.latent_dim={m.latent_dim} must be at least 1")
        require(m.width >= 1, f"model.width={m.width} must be at least 1")
        require(
            all(h >= 1 for h in m.g_hidden), f"model.g_hidden={list(m.g_hidden)} sizes must be >= 1"
        )
        # Cross-entropy treats outputs as probabilities: pixels in [0, 1], as sigmoid's.
        require(
            not (resolved_loss(m) == "bce" and m.output != "sigmoid"),
            f"model.loss=bce needs model.output=sigmoid (pixels in [0, 1]), not {m.output}; use "
            "model.loss=mse",
        )
        denoising = m.variant == "denoising"
        for key in ("noise", "noise_level"):
            require(
                m[key] is None or denoising,
                f"model.{key}={m[key]} applies to model.variant=denoising only (got "
                f"model.variant={m.variant})",
            )
        if denoising:
            noise = m.noise or "gaussian"
            require_one_of(noise, NOISE_LEVELS, "model.noise")
            level = NOISE_LEVELS[noise] if m.noise_level is None else m.noise_level
            if noise == "gaussian":
                require(
                    0 < level < math.inf,
                    f"model.noise_level={level} must be a positive standard deviation "
                    "(in units of the [0, 1] pixel range)",
                )
            else:
                require(
                    0 < level < 1,
                    f"model.noise_level={level} is the fraction of pixels masked: it must be "
                    "in (0, 1)",
                )
        if m.sparsity is not None:
            require(
                m.sparsity >= 0 and math.isfinite(m.sparsity),
                f"model.sparsity={m.sparsity} must be a non-negative weight",
            )
            # 0 is allowed with every variant: the sparse one then trains a plain autoencoder
            # (a sweep's baseline), under its own name.
            require(
                m.sparsity == 0 or m.variant == "sparse",
                f"model.sparsity={m.sparsity} applies to model.variant=sparse only (got "
                f"model.variant={m.variant})",
            )
        require(
            not m.conditional,
            f"model={m.name} has no conditional variant; use model.conditional=false or a GAN "
            "model",
        )

    def build(self, cfg: DictConfig, info: DataInfo) -> AeModel:
        self._check_model(cfg)
        return AeModel(cfg, info, {NET: Autoencoder(cfg, info)})


FAMILY = AEFamily()
