"""The GAN of Goodfellow et al. 2014, as in its released MNIST setup (pylearn2 ``mnist.yaml``).

G: 100-d U(-sqrt 3, sqrt 3) noise -> 1200 ReLU -> 1200 ReLU -> sigmoid pixels.
D: maxout(240 units x 5 pieces) -> maxout(240 x 5) -> one logit; dropout keeps 0.8 of the
inputs and 0.5 of the hidden units. The sigmoid of that output is D(x): the classifier losses
apply it inside a numerically stable log. On 2-D point data (data=ring|grid) the same MLPs take
and produce points, with a linear output.
"""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torch import nn

from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError
from ganrun.models.nets.conditioning import projection, with_label


class Maxout(nn.Module):
    """max over ``pieces`` affine maps (Goodfellow et al. 2013)."""

    def __init__(self, in_features: int, units: int, pieces: int) -> None:
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], self.units, self.pieces).amax(dim=2)


def _shape(info: DataInfo) -> tuple[int, ...]:
    if info.kind == "points":
        return (info.channels,)
    return (info.channels, info.resolution, info.resolution)


class Generator(nn.Module):
    def __init__(self, cfg: DictConfig, info: DataInfo) -> None:
        super().__init__()
        self.shape = _shape(info)
        self.num_classes = info.num_classes if cfg.conditional else 0
        layers: list[nn.Module] = []
        width = cfg.latent_dim + self.num_classes  # one-hot label appended to z
        for hidden in cfg.g_hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, math.prod(self.shape)))
        if info.kind != "points":
            layers.append(nn.Sigmoid() if cfg.output == "sigmoid" else nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z = with_label(z, y, self.num_classes)
        return self.net(z).view(z.shape[0], *self.shape)


class Discriminator(nn.Module):
    def __init__(self, cfg: DictConfig, info: DataInfo) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(cfg.dropout_input)]
        width = math.prod(_shape(info))
        for hidden in cfg.d_hidden:
            layers += [Maxout(width, hidden, cfg.maxout_pieces), nn.Dropout(cfg.dropout_hidden)]
            width = hidden
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)
        # Projection discriminator (Miyato & Koyama 2018): <embed(y), features> added to the
        # unconditional output.
        n = info.num_classes if cfg.conditional else 0
        self.embed = nn.Embedding(n, width) if n else None

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer, flat: what feature matching and representation metrics use."""
        return self.features(x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        return projection(self.head(h).flatten(), self.embed, y, h)


def _init(net: nn.Module, irange: float) -> None:
    for module in net.modules():
        if isinstance(module, nn.Linear):
            nn.init.uniform_(module.weight, -irange, irange)
            nn.init.zeros_(module.bias)


def _mean_output_bias(cfg: DictConfig, info: DataInfo) -> torch.Tensor:
    """The bias whose output activation is the data's mean: logit for sigmoid (clipped to
    [1e-7, 1 - 1e-7], so always-black pixels get a finite bias, as pylearn2's
    ``init_sigmoid_bias_from_marginals`` does), atanh for tanh, itself for points."""
    if info.train_mean is None:
        raise GanrunError(
            f"model.output_bias=data_mean needs the training split in memory, but data="
            f"{info.name} is streamed; use model.output_bias=zero"
        )
    mean = info.train_mean().detach().to("cpu", torch.float64).flatten()  # MPS has no float64
    if info.kind == "points":
        return mean.float()
    eps = 1e-7
    if cfg.output == "sigmoid":
        return torch.logit(mean.clamp(eps, 1 - eps)).float()
    return torch.atanh(mean.clamp(-1 + eps, 1 - eps)).float()


def build(cfg: DictConfig, info: DataInfo) -> tuple[nn.Module, nn.Module]:
    g, d = Generator(cfg, info), Discriminator(cfg, info)
    # The released setup draws weights uniformly from small ranges (irange .05 for G, .005 for D).
    _init(g, cfg.init_range[0])
    _init(d, cfg.init_range[1])
    if cfg.output_bias == "data_mean":
        last = [m for m in g.net if isinstance(m, nn.Linear)][-1]
        with torch.no_grad():
            last.bias.copy_(_mean_output_bias(cfg, info))
    return g, d
