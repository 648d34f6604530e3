"""The InfoGAN networks (Chen et al. 2016) as Lucic et al. (2018) trained every GAN on MNIST.

``model.arch=infogan`` with model=dcgan, wgan or wgan_gp (and model=vae: :mod:`ganrun.models.vae`
builds its encoder and decoder from these). Layer for layer the networks of their code
(compare_gan's ``AbstractGAN``), for any resolution divisible by 4:
G: z -> FC 1024 -> FC 128 x (r/4)^2 -> 4x4 stride-2 transposed conv to 64 channels -> 4x4
stride-2 transposed conv to the image; BatchNorm and LeakyReLU(0.2) after every hidden layer
(compare_gan's leaky ReLU, where the InfoGAN paper has ReLU in G).
D: 4x4 stride-2 conv to 64 channels -> 4x4 stride-2 conv to 128 -> FC 1024 -> one output;
LeakyReLU(0.2), BatchNorm on the second and third layers unless ``model.d_batchnorm=false``.
Channel counts scale with ``model.width`` (64: the paper's); weights start from N(0, 0.02)
and biases at zero, as in compare_gan.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError
from ganrun.models.nets.conditioning import projection, with_label


def start_size(resolution: int) -> int:
    """The side of G's first feature map: two stride-2 layers lead from it to the image."""
    if resolution % 4 or resolution < 8:
        raise GanrunError(
            f"model.arch=infogan cannot be built for data.resolution={resolution}: it needs a "
            "multiple of 4 of at least 8 (e.g. 28 or 32)"
        )
    return resolution // 4


def _act(negative_slope: float = 0.2) -> nn.Module:
    if not negative_slope:
        return nn.ReLU(inplace=True)
    return nn.LeakyReLU(negative_slope, inplace=True)


class Generator(nn.Module):
    def __init__(
        self, cfg: DictConfig, info: DataInfo, num_classes: int = 0, negative_slope: float = 0.2
    ) -> None:
        super().__init__()
        self.start = start_size(info.resolution)
        self.channels = 2 * cfg.width
        self.num_classes = num_classes  # > 0: a one-hot label is appended to z
        hidden = 16 * cfg.width
        self.fc = nn.Sequential(
            nn.Linear(cfg.latent_dim + num_classes, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            _act(negative_slope),
            nn.Linear(hidden, self.channels * self.start**2, bias=False),
            nn.BatchNorm1d(self.channels * self.start**2),
            _act(negative_slope),
        )
        self.conv = nn.Sequential(
            nn.ConvTranspose2d(self.channels, cfg.width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(cfg.width),
            _act(negative_slope),
            nn.ConvTranspose2d(cfg.width, info.channels, 4, 2, 1),
            nn.Sigmoid() if cfg.output == "sigmoid" else nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z = with_label(z, y, self.num_classes)
        h = self.fc(z).view(z.shape[0], self.channels, self.start, self.start)
        return self.conv(h)


class Discriminator(nn.Module):
    def __init__(self, cfg: DictConfig, info: DataInfo, num_classes: int = 0) -> None:
        super().__init__()
        start = start_size(info.resolution)
        bn = cfg.d_batchnorm
        hidden = 16 * cfg.width
        self.net = nn.Sequential(
            nn.Conv2d(info.channels, cfg.width, 4, 2, 1),
            _act(),
            nn.Conv2d(cfg.width, 2 * cfg.width, 4, 2, 1, bias=not bn),
            nn.BatchNorm2d(2 * cfg.width) if bn else nn.Identity(),
            _act(),
            nn.Flatten(),
            nn.Linear(2 * cfg.width * start**2, hidden, bias=not bn),
            nn.BatchNorm1d(hidden) if bn else nn.Identity(),
            _act(),
        )
        self.head = nn.Linear(hidden, 1)
        # Projection discriminator (Miyato & Koyama 2018) on the last hidden layer, as in DCGAN.
        self.embed = nn.Embedding(num_classes, hidden) if num_classes else None

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer, flat: what feature matching and representation metrics use."""
        return self.net(x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.net(x)
        return projection(self.head(h).flatten(), self.embed, y, h)


def init_weights(module: nn.Module) -> None:
    """compare_gan's initialisation: N(0, 0.02) weights, zero biases, BatchNorm at identity."""
    if isinstance(module, nn.Linear | nn.Conv2d | nn.ConvTranspose2d | nn.Embedding):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


def build(cfg: DictConfig, info: DataInfo) -> tuple[nn.Module, nn.Module]:
    classes = info.num_classes if cfg.conditional else 0
    g, d = Generator(cfg, info, classes), Discriminator(cfg, info, classes)
    g.apply(init_weights)
    d.apply(init_weights)
    return g, d
