"""The variational autoencoder of Kingma and Welling 2014.

q(z|x) = N(mu(x), diag sigma^2(x)) from the encoder, p(z) = N(0, I), and p(x|z) Bernoulli
(pixels in [0, 1] as probabilities, the paper's MNIST model) or Gaussian (mean from the decoder,
one learned log-variance shared by all pixels). ``model.arch`` picks the networks from
:data:`ARCHS`: MLPs (hidden sizes ``model.g_hidden``, the paper's 500), DCGAN-style convolutional
ones, or the InfoGAN networks with which Lucic et al. (2018) trained their VAE (compare_gan's
``VAE``: D's layers as encoder, G's with ReLU as decoder). ``vae(z)`` decodes to the mean image,
so samples are drawn like any generator's (:class:`~ganrun.models.latent.LatentModel`); the
likelihood bounds (ELBO, importance-weighted) are what evaluation asks of it beyond samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError, require
from ganrun.images import Figure
from ganrun.models.family import Family, ModelConfig, Statistic
from ganrun.models.latent import LatentModel
from ganrun.models.nets import infogan
from ganrun.models.nets.autoencoder import Nets, conv_nets, mlp_nets

if TYPE_CHECKING:
    from ganrun.data import Data

LOG_2PI = math.log(2 * math.pi)


@dataclass
class VaeConfig(ModelConfig):
    latent_dim: int = 20
    # The prior is N(0, I): these two exist so that a preset made for GANs is refused clearly.
    noise: str = "normal"
    noise_scale: float = 1.0
    arch: str = "mlp"  # mlp | conv (DCGAN-style) | infogan (Lucic et al.'s)
    g_hidden: list[int] = field(default_factory=lambda: [500])  # mlp: hidden layer sizes
    width: int = 32  # conv, infogan: base channel count
    d_batchnorm: bool = True  # infogan: BatchNorm in the encoder
    likelihood: str = "bernoulli"  # p(x|z): bernoulli | gaussian
    output: str = "sigmoid"  # both likelihoods model pixels in [0, 1]
    conditional: bool = False  # no conditional variant; refused when set


# Lucic et al.'s networks are this family's alone; the MLP and DCGAN-style ones are shared with
# the other families that encode (ganrun.models.nets.autoencoder).
def _infogan_nets(cfg: DictConfig, info: DataInfo) -> Nets:
    d = infogan.Discriminator(cfg, info)
    g = infogan.Generator(cfg, info, negative_slope=0.0)  # compare_gan's VAE decodes with ReLU
    unflatten = nn.Unflatten(1, (g.channels, g.start, g.start))
    decoder = nn.Sequential(g.fc, unflatten, *list(g.conv)[:-1])  # no output activation
    return d.net, d.head.in_features, decoder


# model.arch=<name> of the VAE.
ARCHS: dict[str, Callable[[DictConfig, DataInfo], Nets]] = {
    "mlp": mlp_nets,
    "conv": conv_nets,
    "infogan": _infogan_nets,
}


class VAE(nn.Module):
    def __init__(self, cfg: DictConfig, info: DataInfo) -> None:
        super().__init__()
        if info.kind != "image":
            raise GanrunError(f"model=vae needs image data; data={info.name} is not images")
        if cfg.likelihood not in ("bernoulli", "gaussian"):
            raise GanrunError(f"model.likelihood={cfg.likelihood!r} must be bernoulli or gaussian")
        self.shape = (info.channels, info.resolution, info.resolution)
        self.latent_dim = cfg.latent_dim
        self.likelihood = cfg.likelihood
        self.encoder, features, self.decoder_net = ARCHS[cfg.arch](cfg, info)
        self.to_stats = nn.Linear(features, 2 * cfg.latent_dim)
        self.log_var_x = nn.Parameter(torch.zeros(())) if cfg.likelihood == "gaussian" else None
        if cfg.arch == "infogan":
            self.apply(infogan.init_weights)

    # ---------------------------------------------------------------- the generator interface
    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder_net(z).view(z.shape[0], *self.shape)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Decode z to the mean of p(x|z), in [0, 1]."""
        out = self.decode_logits(z)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out.clamp(0, 1)

    # ---------------------------------------------------------------------------- the model
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.to_stats(self.encoder(x)).chunk(2, dim=1)
        return mu, log_var

    def log_px_z(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per example, summed over pixels."""
        if self.likelihood == "bernoulli":
            bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
            return -bce.flatten(1).sum(1)
        var = self.log_var_x.exp()
        ll = -0.5 * ((x - logits) ** 2 / var + self.log_var_x + LOG_2PI)
        return ll.flatten(1).sum(1)

    def elbo_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per example: log p(x|z) at one reparameterised z ~ q(z|x), and KL(q(z|x) || N(0, I))."""
        mu, log_var = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * log_var).exp()  # the reparameterisation trick
        recon = self.log_px_z(x, self.decode_logits(z))
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(1)
        return recon, kl

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """The evidence lower bound per example (nats), one sample of z."""
        recon, kl = self.elbo_terms(x)
        return recon - kl

    @torch.no_grad()
    def importance_log_likelihood(self, x: torch.Tensor, k: int, chunk: int = 500) -> torch.Tensor:
        """log p(x) ~ log mean_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x), i = 1..k (Burda et al. 2016).

        The k samples are drawn ``chunk`` at a time and combined with a running log-sum-exp, so
        memory stays bounded for k in the thousands.
        """
        mu, log_var = self.encode(x)
        std = (0.5 * log_var).exp()
        total = torch.full((x.shape[0],), -math.inf, device=x.device, dtype=torch.float64)
        for start in range(0, k, chunk):
            m = min(chunk, k - start)
            eps = torch.randn(m, *mu.shape, device=x.device, dtype=mu.dtype)
            z = mu + eps * std  # (m, n, d)
            log_q = (-0.5 * (eps.pow(2) + LOG_2PI) - 0.5 * log_var).sum(-1)
            log_pz = (-0.5 * (z.pow(2) + LOG_2PI)).sum(-1)
            logits = self.decode_logits(z.flatten(0, 1))
            log_px = self.log_px_z(x.repeat(m, *([1] * (x.dim() - 1))), logits).view(m, -1)
            w = (log_px + log_pz - log_q).double()
            total = torch.logaddexp(total, torch.logsumexp(w, dim=0))
        return (total - math.log(k)).float()


class VaeModel(LatentModel):
    sampler = "vae"
    averaged = ("vae",)
    provides = frozenset({"samples", "elbo", "iw_ll", "reconstruct", "features"})
    feature_layers = {"output": "posterior mean", "penultimate": "encoder's last hidden layer"}

    @property
    def channels_last_on_cpu(self) -> bool:  # type: ignore[override]
        # Measured on 2 CPU cores (docs/PERFORMANCE.md): the DCGAN-style networks 1.08x, the
        # InfoGAN ones (mostly dense layers) 1.03x, within the noise.
        return self.cfg.arch == "conv"

    def configure_training(self, cfg: DictConfig, fused: bool) -> None:
        super().configure_training(cfg, fused)
        self.batch_size = cfg.train.batch_size
        self.add_optimizer("vae", self.networks["vae"].parameters(), cfg.optim, fused)

    def training_step(self, batches: Any, noise: torch.Generator) -> dict[str, torch.Tensor]:
        """One step on the negative ELBO, averaged over the batch (nats per example)."""
        vae, opt = self.networks["vae"], self.optimizers["vae"]
        x, _ = batches.batch(self.batch_size)
        recon, kl = vae.elbo_terms(x)
        loss = (kl - recon).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        self.sync_gradients(vae)  # across torchrun ranks (DDP only follows forward)
        opt.step()
        self.update_averages()
        return {"loss": loss.detach(), "recon": -recon.detach().mean(), "kl": kl.detach().mean()}

    @torch.no_grad()
    def more_figures(self, step: int, data: Data, net: nn.Module) -> list[Figure]:
        """Held-out images above their reconstructions from the posterior means."""
        return [self.reconstruction_grid(step, data)]

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """The evidence lower bound per example (nats), one sample of z."""
        return self.network("vae").elbo(x)

    @torch.no_grad()
    def features(self, x: torch.Tensor, layer: str = "output") -> torch.Tensor:
        """The posterior means mu(x), or the encoder's features they are computed from, in eval
        mode."""
        with self.evaluating():
            net, x = self.network("vae"), x.to(self.device)
            return net.encode(x)[0] if layer == "output" else net.encoder(x).flatten(1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decodes of the posterior means: the mean of p(x | z = mu(x))."""
        net = self.network("vae")
        with self.evaluating():
            return net(net.encode(x)[0])

    def importance_log_likelihood(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """The importance-weighted bound per example (nats) with ``k`` samples."""
        return self.network("vae").importance_log_likelihood(x, k)


class VAEFamily(Family):
    name = "vae"
    models = ("vae",)
    schema = VaeConfig
    statistics = (  # what VaeModel.training_step returns
        Statistic("loss", "negative ELBO (nats per example)"),
        Statistic("recon", "reconstruction term, -E_q log p(x|z)"),
        Statistic("kl", "KL(q(z|x) || N(0, I))"),
    )

    def arch(self, cfg: DictConfig) -> str | None:
        return cfg.arch

    def check(self, cfg: DictConfig) -> None:
        m = cfg.model
        require(m.latent_dim >= 1, f"model.latent_dim={m.latent_dim} must be at least 1")
        require(m.width >= 1, f"model.width={m.width} must be at least 1")
        require(
            all(h >= 1 for h in m.g_hidden), f"model.g_hidden={list(m.g_hidden)} sizes must be >= 1"
        )
        require(
            m.noise == "normal",
            f"model=vae samples z from its N(0, I) prior, so model.noise={m.noise} does not "
            "apply; use model.noise=normal",
        )
        require(
            m.noise_scale == 1.0,
            f"model=vae samples z from its N(0, I) prior, so model.noise_scale={m.noise_scale} "
            "does not apply; use model.noise_scale=1",
        )
        require(
            m.likelihood in ("bernoulli", "gaussian"),
            f"model.likelihood={m.likelihood!r} must be bernoulli or gaussian",
        )
        # Both likelihoods model pixels in [0, 1], which is how a sigmoid output scales the data.
        require(
            m.output == "sigmoid",
            f"model=vae needs model.output=sigmoid (pixels in [0, 1]), not {m.output}",
        )
        require(
            not m.conditional,
            "model=vae has no conditional variant; use model.conditional=false or a GAN model",
        )
        self._check_arch(m)

    def _check_arch(self, m: DictConfig) -> None:
        if m.arch not in ARCHS:
            raise GanrunError(
                f"model.arch={m.arch!r} is not a network of model=vae; choose model.arch= one "
                f"of: {', '.join(ARCHS)}"
            )

    def build(self, cfg: DictConfig, info: DataInfo) -> VaeModel:
        self._check_arch(cfg)
        return VaeModel(cfg, info, {"vae": VAE(cfg, info)})


FAMILY = VAEFamily()
