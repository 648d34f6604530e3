"""The MNIST networks of Salimans et al. 2016 ("Improved techniques for training GANs"), as in
their released ``train_mnist_feature_matching.py`` and its ``nn.py``.

D: Gaussian noise (std 0.3) on the pixels, then weight-normalised ReLU layers of 1000, 500, 250,
250 and 250 units, each followed by Gaussian noise (std 0.5), then K class logits. Only the last
layer's weight scale is trained; every layer's scale and bias start from a data-dependent
initialisation (:func:`initialise_from`), so each pre-activation starts with zero mean and unit
variance on a batch of training images.
G: U(0, 1)^100 noise -> 500 -> 500 softplus units, each layer batch-normalised without a scale
(a shift only), -> weight-normalised sigmoid pixels with a trained scale.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from ganrun.data.base import DataInfo


class WeightNormLinear(nn.Module):
    """y = x (g * v / ||v||) + b, the norm taken per output unit (Salimans & Kingma 2016).
    ``v`` ~ N(0, ``init_std``); the scale ``g`` starts at 1 and is a parameter only where
    ``train_scale``, else a buffer that only the data-dependent initialisation sets."""

    def __init__(
        self, in_features: int, out_features: int, train_scale: bool, init_std: float = 0.1
    ) -> None:
        super().__init__()
        self.v = nn.Parameter(torch.randn(out_features, in_features) * init_std)
        self.bias = nn.Parameter(torch.zeros(out_features))
        scale = torch.ones(out_features)
        if train_scale:
            self.scale = nn.Parameter(scale)
        else:
            self.register_buffer("scale", scale)

    def weight(self) -> torch.Tensor:
        return self.v * (self.scale / self.v.pow(2).sum(dim=1).sqrt()).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight(), self.bias)

    @torch.no_grad()
    def initialise(self, x: torch.Tensor) -> torch.Tensor:
        """Set scale and bias so that this batch's outputs have zero mean and unit variance per
        unit; returns those outputs."""
        out = F.linear(x, self.weight())
        mean = out.mean(dim=0)
        std = (out - mean).pow(2).mean(dim=0).sqrt()
        self.scale.div_(std)
        self.bias.copy_(-mean / std)
        return (out - mean) / std


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise in training mode (from torch's global generator); the identity in
    eval mode."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.std == 0:
            return x
        return x + torch.randn_like(x) * self.std

    def extra_repr(self) -> str:
        return f"std={self.std}"


class Discriminator(nn.Module):
    """K logits; :meth:`hidden` is the last hidden layer that feature matching compares."""

    def __init__(self, cfg: DictConfig, info: DataInfo) -> None:
        super().__init__()
        width = info.channels * info.resolution**2
        self.input_noise = GaussianNoise(cfg.input_noise)
        self.layers = nn.ModuleList()
        self.noise = nn.ModuleList()
        for units in cfg.d_hidden:
            self.layers.append(WeightNormLinear(width, units, train_scale=False))
            self.noise.append(GaussianNoise(cfg.hidden_noise))
            width = units
        self.head = WeightNormLinear(width, info.num_classes, train_scale=True)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's ReLU outputs (before the noise that follows it)."""
        h = self.input_noise(x.flatten(1))
        for i, layer in enumerate(self.layers):
            if i:
                h = self.noise[i - 1](h)
            h = F.relu(layer(h))
        return h

    def logits_and_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(x)
        return self.head(self.noise[-1](h)), h

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits_and_hidden(x)[0]

    @torch.no_grad()
    def initialise_from(self, x: torch.Tensor) -> None:
        """The released code's data-dependent initialisation, on training images ``x``: layer by
        layer, noise included, as its ``init=True`` forward pass."""
        h = self.input_noise(x.flatten(1))
        for layer, noise in zip(self.layers, self.noise, strict=True):
            h = noise(F.relu(layer.initialise(h)))
        self.head.initialise(h)


class Generator(nn.Module):
    def __init__(self, cfg: DictConfig, info: DataInfo) -> None:
        super().__init__()
        self.shape = (info.channels, info.resolution, info.resolution)
        layers: list[nn.Module] = []
        width = cfg.latent_dim
        for units in cfg.g_hidden:
            linear = nn.Linear(width, units, bias=False)  # the normalisation's shift is the bias
            nn.init.xavier_uniform_(linear.weight)  # Lasagne's default, Glorot uniform
            layers += [linear, ShiftOnlyBatchNorm(units), nn.Softplus()]
            width = units
        self.body = nn.Sequential(*layers)
        self.out = WeightNormLinear(width, math.prod(self.shape), train_scale=True)
        nn.init.xavier_uniform_(self.out.v)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.out(self.body(z))).view(z.shape[0], *self.shape)


class ShiftOnlyBatchNorm(nn.BatchNorm1d):
    """Batch normalisation with a learned shift and no learned scale, as Lasagne's
    ``batch_norm(..., g=None)`` in the released generator."""

    def __init__(self, features: int) -> None:
        super().__init__(features, eps=1e-6, affine=False)
        self.shift = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.shift


def build(cfg: DictConfig, info: DataInfo) -> tuple[nn.Module, nn.Module]:
    return Generator(cfg, info), Discriminator(cfg, info)
