"""Encoder and decoder networks shared by the families that encode images (the VAE, the
autoencoders).

Each builder returns ``(encoder, features, decoder)``: the encoder maps images (N, C, H, W) to
flat features (N, ``features``), which the family's own head turns into its code (the VAE's mean
and log-variance, an autoencoder's code); the decoder maps codes (N, ``latent_dim``) to
pre-activation pixels, the logits or means the family's output or likelihood applies to. The MLP
decoder's output is flat (N, C * H * W); the convolutional one's is (N, C, H, W).

The builders read ``latent_dim`` and, per network, ``g_hidden`` (MLP) or ``width`` (conv) from
the model config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ganrun.data.base import DataInfo
from ganrun.models.nets import dcgan

#: (encoder, its feature count, decoder), as every builder returns them.
Nets = tuple[nn.Module, int, nn.Module]


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers between consecutive ``sizes`` with ReLU between them (none after the last
    layer)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers[:-1])


def mlp_nets(cfg: Any, info: DataInfo) -> Nets:
    """MLPs: the encoder has hidden layers ``cfg.g_hidden`` (ReLU after each), the decoder the
    same sizes in reverse from ``cfg.latent_dim`` up to the pixels."""
    pixels = info.channels * info.resolution**2
    encoder = nn.Sequential(nn.Flatten(), mlp([pixels, *cfg.g_hidden]), nn.ReLU())
    features = cfg.g_hidden[-1] if cfg.g_hidden else pixels
    return encoder, features, mlp([cfg.latent_dim, *reversed(cfg.g_hidden), pixels])


def conv_nets(cfg: Any, info: DataInfo) -> Nets:
    """DCGAN-style networks (``cfg.width`` base channels): the encoder is DCGAN's discriminator
    trunk (strided convolutions, BatchNorm, LeakyReLU) without its last convolution, the decoder
    DCGAN's generator without its output activation. Any resolution DCGAN can be built for."""
    trunk = dcgan.Discriminator(info.channels, info.resolution, cfg.width, True)
    start, _ = dcgan.plan(info.resolution)
    features = trunk.head.in_channels * start * start
    # The generator's output activation is left out: the family's likelihood or output applies it.
    g = dcgan.Generator(cfg.latent_dim, info.channels, info.resolution, cfg.width, "tanh")
    decoder = nn.Sequential(nn.Unflatten(1, (cfg.latent_dim, 1, 1)), *list(g.net)[:-1])
    return nn.Sequential(trunk.net, nn.Flatten()), features, decoder


#: ``model.arch=<name>`` -> builder, for the networks every encoding family offers.
BUILDERS: dict[str, Callable[[Any, DataInfo], Nets]] = {"mlp": mlp_nets, "conv": conv_nets}
