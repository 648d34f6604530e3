"""DCGAN (Radford et al. 2016), built for any resolution s * 2^k with 3 <= s <= 7.

G projects z to an s x s map with one transposed convolution, then doubles the size k times
with stride-2 transposed convolutions (BatchNorm + ReLU), ending in tanh (or sigmoid). D mirrors
it with stride-2 convolutions and LeakyReLU(0.2), BatchNorm on all but the first layer (none at
all for a WGAN-GP critic), and a last s x s convolution to one logit or critic score.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError
from ganrun.models.nets.conditioning import projection, with_label


def plan(resolution: int) -> tuple[int, int]:
    """Return (start size s, number of doublings k) with resolution = s * 2^k, 3 <= s <= 7."""
    size, k = resolution, 0
    while size % 2 == 0 and size // 2 >= 3:
        size, k = size // 2, k + 1
    if k == 0 or not 3 <= size <= 7:
        raise GanrunError(
            f"DCGAN cannot be built for data.resolution={resolution}: it needs s * 2^k with "
            "3 <= s <= 7 and k >= 1 (e.g. 16, 28, 32, 48 or 64)"
        )
    return size, k


def _output(name: str) -> nn.Module:
    return nn.Sigmoid() if name == "sigmoid" else nn.Tanh()


class Generator(nn.Module):
    def __init__(
        self,
        latent_dim: int,
        channels: int,
        resolution: int,
        width: int,
        output: str,
        num_classes: int = 0,
    ):
        super().__init__()
        start, k = plan(resolution)
        ch = width * 2 ** (k - 1)
        self.num_classes = num_classes  # > 0: a one-hot label is appended to z
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim + num_classes, ch, start, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(True),
        ]
        for _ in range(k - 1):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch // 2),
                nn.ReLU(True),
            ]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), _output(output)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z = with_label(z, y, self.num_classes)
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    def __init__(
        self, channels: int, resolution: int, width: int, batchnorm: bool, num_classes: int = 0
    ):
        super().__init__()
        start, k = plan(resolution)
        ch = width
        layers: list[nn.Module] = [
            nn.Conv2d(channels, ch, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, True),
        ]
        for _ in range(k - 1):
            layers.append(nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(ch * 2))
            layers.append(nn.LeakyReLU(0.2, True))
            ch *= 2
        self.net = nn.Sequential(*layers)
        self.head = nn.Conv2d(ch, 1, start, 1, 0, bias=False)
        # Projection discriminator (Miyato & Koyama 2018): <embed(y), features> is added to the
        # unconditional output.
        self.embed = nn.Embedding(num_classes, ch * start * start) if num_classes else None

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer, flat: what feature matching and representation metrics use."""
        return self.net(x).flatten(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.net(x)
        return projection(self.head(h).flatten(), self.embed, y, h)


def init_weights(module: nn.Module) -> None:
    """The paper's initialisation: N(0, 0.02) for convolutions, N(1, 0.02) for BatchNorm scales."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Embedding):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build(cfg: DictConfig, info: DataInfo) -> tuple[nn.Module, nn.Module]:
    classes = info.num_classes if cfg.conditional else 0
    g = Generator(cfg.latent_dim, info.channels, info.resolution, cfg.width, cfg.output, classes)
    d = Discriminator(info.channels, info.resolution, cfg.width, cfg.d_batchnorm, classes)
    g.apply(init_weights)
    d.apply(init_weights)
    return g, d
