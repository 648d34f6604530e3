"""The networks of a BiGAN (Donahue et al. 2017) / ALI (Dumoulin et al. 2017): a generator
G: z -> x, an encoder E: x -> z, and a discriminator D(x, z) on pairs.

``mlp``: the permutation-invariant MNIST networks of the BiGAN release (jeffdonahue/bigan,
``train_mnist.sh``: ``--gen_net deconvnet_mnist_mlp --encode_net mnist_mlp --discrim_net
mnist_mlp --nobias --nogain``): bias-free linear layers, BatchNorm without scale or shift, weights
from N(0, 0.02). G: z -> FC 1024, BN, ReLU -> FC 1024 + FC(z), BN, ReLU -> FC -> sigmoid pixels.
E: x -> FC 1024, LeakyReLU(0.2) -> FC 1024, BN, LeakyReLU -> FC to z, squashed into the uniform
prior's range as the release's ``logits_to_sample`` does. D: x -> FC 1024, LeakyReLU -> FC 1024 +
FC(z), BN, LeakyReLU -> one logit. Widths follow ``model.g_hidden``, ``model.e_hidden`` and
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


class Stack(nn.Module):
    """The release's MLP layers: bias-free linear maps, BatchNorm without scale or shift on every
    layer but (where ``norm_first`` is off) the first, and, where a second input ``cond`` is
    given, its own bias-free linear map added into every layer after the first ("the latent
    representation z is transformed using a learned linear transformation to the hidden layer
    dimension and added to the non-linearity input", Section 4 of the paper)."""

    def __init__(
        self, width: int, hidden: list[int], cond: int, act: nn.Module, norm_first: bool
    ) -> None:
        super().__init__()
        self.fcs, self.conds, self.norms = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i, units in enumerate(hidden):
            self.fcs.append(nn.Linear(width, units, bias=False))
            if i and cond:
                self.conds.append(nn.Linear(cond, units, bias=False))
            normed = bool(i) or norm_first
            self.norms.append(nn.BatchNorm1d(units, affine=False) if normed else nn.Identity())
            width = units
        self.width, self.act = width, act

    def forward(self, h: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = h.flatten(1)
        for i, (fc, norm) in enumerate(zip(self.fcs, self.norms, strict=True)):
            pre = fc(h)
            if i and len(self.conds):
                pre = pre + self.conds[i - 1](cond)
            h = self.act(norm(pre))
        return h


def _init_mlp(net: nn.Module) -> None:
    """The release's start for every weight: N(0, 0.02)."""
    for module in net.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.02)


class MlpGenerator(nn.Module):
    """z -> FC, BatchNorm, ReLU -> (FC + FC(z), BatchNorm, ReLU) ... -> FC -> output."""

    def __init__(self, cfg: DictConfig, info: DataInfo) -> None:
        super().__init__()
        self.shape = (info.channels, info.resolution, info.resolution)
        hidden = list(cfg.g_hidden)
        self.stack = Stack(cfg.latent_dim, hidden, cfg.latent_dim, nn.ReLU(), norm_first=True)
        self.out = nn.Linear(self.stack.width, math.prod(self.shape), bias=False)
        self.activation = _output(cfg.output)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.activation(self.out(self.stack(z, z))).view(z.shape[0], *self.shape)


def _output(name: str) -> nn.Module:
    return nn.Sigmoid() if name == "sigmoid" else nn.Tanh()


class Encoder(nn.Module):
    """E(x) = squash(head(trunk(x))), in the prior's support: for U(-s, s) noise the release maps
    the head's output l to s * (2 sigmoid(l) - 1) = s * tanh(l / 2), so that D cannot tell E(x)
    from z by its range alone; for N(0, s^2) noise it is left as it is."""

    def __init__(self, trunk: nn.Module, width: int, cfg: DictConfig, bias: bool) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(width, cfg.latent_dim, bias=bias)
        self.bound = cfg.noise_scale if cfg.noise == "uniform" else 0.0

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The layer before E(x): what the BiGAN release reports as its ``_e-`` features."""
        return self.trunk(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """E's output before the squashing: the release's ``_e`` features."""
        return self.head(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.logits(x)
        return self.bound * torch.tanh(out / 2) if self.bound else out


def mlp_encoder(cfg: DictConfig, info: DataInfo) -> Encoder:
    pixels = info.channels * info.resolution**2
    trunk = Stack(pixels, list(cfg.e_hidden), 0, nn.LeakyReLU(SLOPE), norm_first=False)
    return Encoder(trunk, trunk.width, cfg, bias=False)


class MlpDiscriminator(nn.Module):
    """D(x, z): x -> FC, LeakyReLU -> (FC + FC(z), BatchNorm, LeakyReLU) ... -> one logit."""

    def __init__(self, cfg: DictConfig, info: DataInfo) -> None:
        super().__init__()
        pixels, hidden = info.channels * info.resolution**2, list(cfg.d_hidden)
        self.stack = Stack(pixels, hidden, cfg.latent_dim, nn.LeakyReLU(SLOPE), norm_first=False)
        # With one hidden layer there is no later layer to join z: it joins at the output.
        self.z_out = nn.Linear(cfg.latent_dim, 1, bias=False) if len(hidden) == 1 else None
        self.head = nn.Linear(self.stack.width, 1, bias=False)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        out = self.head(self.stack(x, z)).flatten()
        return out if self.z_out is None else out + self.z_out(z).flatten()


def conv_encoder(cfg: DictConfig, info: DataInfo) -> Encoder:
    trunk = dcgan.Discriminator(info.channels, info.resolution, cfg.width, True)
    start, _ = dcgan.plan(info.resolution)
    width = trunk.head.in_channels * start * start
    return Encoder(nn.Sequential(trunk.net, nn.Flatten()), width, cfg, bias=True)


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
        nets = MlpGenerator(cfg, info), mlp_encoder(cfg, info), MlpDiscriminator(cfg, info)
        for net in nets:
            _init_mlp(net)
        return nets
    g = dcgan.Generator(cfg.latent_dim, info.channels, info.resolution, cfg.width, cfg.output)
    e, d = conv_encoder(cfg, info), ConvDiscriminator(cfg, info)
    for net in (g, e, d):
        net.apply(dcgan.init_weights)
    return g, e, d
