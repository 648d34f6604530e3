"""The variational autoencoder of Kingma and Welling 2014.

q(z|x) = N(mu(x), diag sigma^2(x)) from the encoder, p(z) = N(0, I), and p(x|z) Bernoulli
(pixels in [0, 1] as probabilities, the paper's MNIST model) or Gaussian (mean from the decoder,
one learned log-variance shared by all pixels). ``model.arch`` picks the networks from
:data:`ARCHS`: MLPs (hidden sizes ``model.g_hidden``, the paper's 500), DCGAN-style convolutional
ones, or the InfoGAN networks with which Lucic et al. (2018) trained their VAE (compare_gan's
``VAE``: D's layers as encoder, G's with ReLU as decoder). The generator interface ``vae(z)``
decodes to the mean image, so sample grids and evaluators treat it like any G.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError
from ganrun.models import dcgan, infogan
from ganrun.models.base import Networks
from ganrun.schema import ModelConfig

LOG_2PI = math.log(2 * math.pi)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers[:-1])  # no activation after the last layer


# Each returns (encoder, its feature count, decoder): the encoder maps images to flat features,
# the decoder maps z to the logits (Bernoulli) or means (Gaussian) of the pixels.
Nets = tuple[nn.Module, int, nn.Module]


def _mlp_nets(cfg: ModelConfig, info: DataInfo) -> Nets:
    pixels = info.channels * info.resolution**2
    encoder = nn.Sequential(nn.Flatten(), _mlp([pixels, *cfg.g_hidden]), nn.ReLU())
    features = cfg.g_hidden[-1] if cfg.g_hidden else pixels
    return encoder, features, _mlp([cfg.latent_dim, *reversed(cfg.g_hidden), pixels])


def _conv_nets(cfg: ModelConfig, info: DataInfo) -> Nets:
    trunk = dcgan.Discriminator(info.channels, info.resolution, cfg.width, True)
    start, _ = dcgan.plan(info.resolution)
    features = trunk.head.in_channels * start * start
    # DCGAN's generator without its output activation: the likelihood applies it.
    g = dcgan.Generator(cfg.latent_dim, info.channels, info.resolution, cfg.width, "tanh")
    decoder = nn.Sequential(nn.Unflatten(1, (cfg.latent_dim, 1, 1)), *list(g.net)[:-1])
    return nn.Sequential(trunk.net, nn.Flatten()), features, decoder


def _infogan_nets(cfg: ModelConfig, info: DataInfo) -> Nets:
    d = infogan.Discriminator(cfg, info)
    g = infogan.Generator(cfg, info, negative_slope=0.0)  # compare_gan's VAE decodes with ReLU
    unflatten = nn.Unflatten(1, (g.channels, g.start, g.start))
    decoder = nn.Sequential(g.fc, unflatten, *list(g.conv)[:-1])  # no output activation
    return d.net, d.head.in_features, decoder


# model.arch=<name> of the VAE.
ARCHS: dict[str, Callable[[ModelConfig, DataInfo], Nets]] = {
    "mlp": _mlp_nets,
    "conv": _conv_nets,
    "infogan": _infogan_nets,
}


class VAE(nn.Module):
    def __init__(self, cfg: ModelConfig, info: DataInfo) -> None:
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


def build(cfg: ModelConfig, info: DataInfo) -> Networks:
    return Networks(VAE(cfg, info), None, "vae")
