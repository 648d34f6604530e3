"""The networks of a BiGAN (Donahue et al. 2017) / ALI (Dumoulin et al. 2017): a generator
G: z -> x, an encoder E: x -> z, and a discriminator D(x, z) on pairs.

``mlp``: the permutation-invariant MNIST networks of the BiGAN release (jeffdonahue/bigan,
``train_mnist.sh``: ``--gen_net deconvnet_mnist_mlp --encode_net mnist_mlp --discrim_net
mnist_mlp``). G: z -> FC 1024, BatchNorm, ReLU -> FC 1024, BatchNorm, ReLU -> sigmoid pixels. E:
x -> FC 1024, LeakyReLU(0.2) -> FC 1024, BatchNorm, LeakyReLU -> FC to z, squashed into the
uniform prior's range as the release's ``logits_to_sample`` does. D: the same trunk on x,
with z projected into its second layer's pre-activation (the release's conditioning of a layer on
its second input), -> one logit. Widths follow ``model.g_hidden``, ``model.e_hidden`` and
``model.d_hidden``.
``conv``: DCGAN's G; E is DCGAN's discriminator trunk with a linear map to z; D runs the same
trunk on x and joins z, mapped by a linear layer, before one hidden layer and the logit.
"""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torch import nn

from ganrun.data.base import DataInfo
from ganrun.models.nets import dcgan

SLOPE = 0.2  # LeakyReLU's negative slope in E and D


class MlpGenerator(nn.Module):
    def __init__(self, cfg: DictConfig, info: DataInfo) -> None:
        super().__init__()
        self.shape = (info.channels, info.resolution, info.resolution)
        layers: list[nn.Module] = []
        width = cfg.latent_dim
        for hidden in cfg.g_hidden:
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers += [nn.Linear(width, math.prod(self.shape)), _output(cfg.output)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.shape)


def _output(name: str) -> nn.Module:
    return nn.Sigmoid() if name == "sigmoid" else nn.Tanh()


def _trunk(width: int, hidden: list[int]) -> tuple[nn.Sequential, int]:
    """x -> FC, LeakyReLU, then (FC, BatchNorm, LeakyReLU) per further hidden layer."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i, units in enumerate(hidden):
        layers.append(nn.Linear(width, units))
        if i:
            layers.append(nn.BatchNorm1d(units))
        layers.append(nn.LeakyReLU(SLOPE, inplace=True))
        width = units
    return nn.Sequential(*layers), width


class Encoder(nn.Module):
    """E(x) = head(trunk(x)), in the prior's support: for U(-s, s) noise the release maps the
    head's output l to s * (2 sigmoid(l) - 1) = s * tanh(l / 2), so that D cannot tell E(x)
    from z by its range alone; for N(0, s^2) noise it is left as it is."""

    def __init__(self, trunk: nn.Module, width: int, cfg: DictConfig) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(width, cfg.latent_dim)
        self.bound = cfg.noise_scale if cfg.noise == "uniform" else 0.0

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The layer before E(x): what the BiGAN release reports as its ``_e-`` features."""
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.trunk(x))
        return self.bound * torch.tanh(out / 2) if self.bound else out


def mlp_encoder(cfg: DictConfig, info: DataInfo) -> Encoder:
    trunk, width = _trunk(info.channels * info.resolution**2, list(cfg.e_hidden))
    return Encoder(trunk, width, cfg)


class MlpDiscriminator(nn.Module):
    """D(x, z): x through FC + LeakyReLU, then each further layer FC(h) + FC(z) (z projected into
    the pre-activation), BatchNorm, LeakyReLU; one logit."""

    def __init__(self, cfg: DictConfig, info: DataInfo) -> None:
        super().__init__()
        hidden = list(cfg.d_hidden)
        self.first = nn.Sequential(
            nn.Flatten(),
            nn.Linear(info.channels * info.resolution**2, hidden[0]),
            nn.LeakyReLU(SLOPE, inplace=True),
        )
        self.x_layers, self.z_layers, self.norms = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        width = hidden[0]
        for units in hidden[1:]:
            self.x_layers.append(nn.Linear(width, units))
            self.z_layers.append(nn.Linear(cfg.latent_dim, units, bias=False))
            self.norms.append(nn.BatchNorm1d(units))
            width = units
        # With one hidden layer there is no later layer to join z: it joins at the output.
        self.z_out = nn.Linear(cfg.latent_dim, 1, bias=False) if len(hidden) == 1 else None
        self.head = nn.Linear(width, 1)
        self.act = nn.LeakyReLU(SLOPE)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        for fc, fz, norm in zip(self.x_layers, self.z_layers, self.norms, strict=True):
            h = self.act(norm(fc(h) + fz(z)))
        out = self.head(h).flatten()
        return out if self.z_out is None else out + self.z_out(z).flatten()


def conv_encoder(cfg: DictConfig, info: DataInfo) -> Encoder:
    trunk = dcgan.Discriminator(info.channels, info.resolution, cfg.width, True)
    start, _ = dcgan.plan(info.resolution)
    width = trunk.head.in_channels * start * start
    return Encoder(nn.Sequential(trunk.net, nn.Flatten()), width, cfg)


class ConvDiscriminator(nn.Module):
    """D(x, z): DCGAN's trunk on x (no BatchNorm on its first layer), z through a linear layer,
    joined and mapped through one hidden layer to a logit."""

    def __init__(self, cfg: DictConfig, info: DataInfo) -> None:
        super().__init__()
        trunk = dcgan.Discriminator(info.channels, info.resolution, cfg.width, True)
        start, _ = dcgan.plan(info.resolution)
        features = trunk.head.in_channels * start * start
        units = cfg.d_hidden[-1]
        self.x_path = nn.Sequential(trunk.net, nn.Flatten())
        self.z_path = nn.Sequential(nn.Linear(cfg.latent_dim, units), nn.LeakyReLU(SLOPE, True))
        self.joint = nn.Sequential(
            nn.Linear(features + units, units), nn.LeakyReLU(SLOPE, True), nn.Linear(units, 1)
        )

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.joint(torch.cat([self.x_path(x), self.z_path(z)], dim=1)).flatten()


def build(cfg: DictConfig, info: DataInfo) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(G, E, D) of ``model.arch``."""
    if cfg.arch == "mlp":
        return MlpGenerator(cfg, info), mlp_encoder(cfg, info), MlpDiscriminator(cfg, info)
    g = dcgan.Generator(cfg.latent_dim, info.channels, info.resolution, cfg.width, cfg.output)
    e, d = conv_encoder(cfg, info), ConvDiscriminator(cfg, info)
    for net in (g, e, d):
        net.apply(dcgan.init_weights)
    return g, e, d
