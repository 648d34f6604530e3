"""CycleGAN's networks (Zhu et al. 2017, as in their release, junyanz/pytorch-CycleGAN-and-pix2pix
``models/networks.py``), sized by width and depth so that 16-64 px images train on a CPU.

* :class:`ResnetGenerator`: a 7x7 convolution, two stride-2 downsamplings, ``blocks`` residual
  blocks, two stride-2 transposed convolutions back up and a 7x7 convolution to tanh; reflection
  padding, instance normalisation without affine parameters, convolution biases on. At width 64
  with 9 blocks on RGB it has the release's 11,378,179 parameters.
* :class:`PatchDiscriminator`: ``layers`` stride-2 4x4 convolutions, one stride-1, and a stride-1
  4x4 convolution to one score per patch (LeakyReLU 0.2, instance normalisation on all but the
  first). At width 64 with 3 layers it is the release's 70x70 PatchGAN, 2,764,737 parameters.
* :class:`ImagePool`: the history of generated images each discriminator also sees
  (Shrivastava et al. 2017), kept in the checkpoint so a resume is exact.

Weights start from N(0, 0.02) and biases from 0, the release's ``init_type=normal``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ganrun.errors import GanrunError


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Image (N, C, H, W) in [-1, 1] -> image of the same shape; H and W divisible by
    2^``downsamplings`` (the release: 2 stride-2 stages, so by 4)."""

    def __init__(self, channels: int, width: int, blocks: int, downsamplings: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels, width, 7),
            _norm(width),
            nn.ReLU(inplace=True),
        ]
        for n in range(downsamplings):  # width -> 2 width -> 4 width ...
            k = 2**n
            layers += [
                nn.Conv2d(width * k, width * 2 * k, 3, stride=2, padding=1),
                _norm(width * 2 * k),
                nn.ReLU(inplace=True),
            ]
        inner = width * 2**downsamplings
        layers += [ResidualBlock(inner) for _ in range(blocks)]
        for n in reversed(range(downsamplings)):
            k = 2 ** (n + 1)
            layers += [
                nn.ConvTranspose2d(width * k, width * k // 2, 3, 2, padding=1, output_padding=1),
                _norm(width * k // 2),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """Image (N, C, H, W) -> (N, 1, h, w) scores, one per overlapping patch."""

    def __init__(self, channels: int, width: int, layers: int) -> None:
        super().__init__()
        seq: list[nn.Module] = [
            nn.Conv2d(channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        mult = 1
        for n in range(1, layers + 1):
            previous, mult = mult, min(2**n, 8)
            stride = 2 if n < layers else 1  # the last of these keeps the size
            seq += [
                nn.Conv2d(width * previous, width * mult, 4, stride=stride, padding=1),
                _norm(width * mult),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        seq.append(nn.Conv2d(width * mult, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*seq)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def patch_grid(resolution: int, layers: int) -> int:
    """Side of the discriminator's score map for ``resolution`` px images: ``layers`` halvings
    (4x4, stride 2, padding 1), then two 4x4 stride-1 convolutions that each take one off."""
    size = resolution
    for _ in range(layers):
        size = (size + 2 - 4) // 2 + 1
    return size - 2


def check_sizes(resolution: int, layers: int, downsamplings: int = 2) -> None:
    """Refuse, with the settings to change, sizes these networks cannot be built for."""
    if resolution % 2**downsamplings:
        raise GanrunError(
            f"the CycleGAN generator halves data.resolution={resolution} "
            f"model.downsamplings={downsamplings} times and doubles it back: it must be "
            f"divisible by {2**downsamplings}"
        )
    if patch_grid(resolution, layers) < 1:
        fits = (
            max(n for n in range(1, 8) if patch_grid(resolution, n) >= 1) if resolution >= 8 else 0
        )
        raise GanrunError(
            f"model.d_layers={layers} leaves no patch to score at data.resolution={resolution}; "
            f"use model.d_layers={fits} or fewer, or a larger resolution"
        )


def init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class ImagePool:
    """Up to ``size`` earlier generated images. Until it is full, every image goes in and is
    handed back; after that each image, with probability 1/2, is swapped for a stored one (which
    is handed back in its place), else handed back as it is. ``size=0``: no history."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
                continue
            coin, slot = torch.rand((), generator=generator, device=generator.device), None
            if coin < 0.5:
                slot = int(
                    torch.randint(self.size, (), generator=generator, device=generator.device)
                )
            if slot is None:
                out.append(image)
            else:
                out.append(self.images[slot])
                self.images[slot] = image.clone()
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        stored = torch.stack(self.images) if self.images else torch.empty(0)
        return {"size": self.size, "images": stored}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size = int(state["size"])
        self.images = list(state["images"].unbind(0)) if state["images"].numel() else []
