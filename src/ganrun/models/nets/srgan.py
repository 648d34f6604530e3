"""The networks of Ledig et al. 2017 ("Photo-realistic single image super-resolution using a
generative adversarial network"), sized by width and depth so that small images train on a CPU.

SRResNet (the generator): a 9x9 convolution and PReLU; ``blocks`` residual blocks (3x3 convolution,
BatchNorm, PReLU, 3x3 convolution, BatchNorm, plus the block's input); a 3x3 convolution and
BatchNorm added to the first layer's output (the global skip); one sub-pixel stage per factor 2
of the scale (a 3x3 convolution to 4x the width, PixelShuffle(2), PReLU); a 9x9 convolution to
the image's channels and tanh (images in [-1, 1]). The paper: width 64, 16 blocks.

The discriminator: a 3x3 convolution and LeakyReLU(0.2), then seven 3x3 convolutions with
BatchNorm and LeakyReLU, strides alternating 2 and 1 and widths doubling every second layer
(width .. 8 x width), then a dense layer of ``dense`` units, LeakyReLU and one logit. The paper:
width 64 (to 512), 1024 dense units.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganrun.errors import GanrunError

SCALES = (2, 4)


class ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.PReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """Low-resolution images (N, C, h, w) in [-1, 1] -> (N, C, scale h, scale w) in [-1, 1]."""

    def __init__(self, channels: int, width: int, blocks: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Sequential(nn.Conv2d(channels, width, 9, padding=4), nn.PReLU())
        self.blocks = nn.Sequential(*(ResidualBlock(width) for _ in range(blocks)))
        self.join = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))
        stages: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            stages += [nn.Conv2d(width, 4 * width, 3, padding=1), nn.PixelShuffle(2), nn.PReLU()]
        self.upsample = nn.Sequential(*stages)
        self.tail = nn.Conv2d(width, channels, 9, padding=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        h = h + self.join(self.blocks(h))
        return torch.tanh(self.tail(self.upsample(h)))


def _conv_side(size: int) -> int:
    """A side after a 3x3 convolution of stride 2 and padding 1."""
    return (size - 1) // 2 + 1


class SRDiscriminator(nn.Module):
    """High-resolution images (N, C, H, W) -> one logit each."""

    # (width multiple, stride) of the seven layers after the first
    LAYERS = ((1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2))

    def __init__(self, channels: int, width: int, dense: int, resolution: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2)]
        have, side = width, resolution
        for multiple, stride in self.LAYERS:
            layers += [
                nn.Conv2d(have, multiple * width, 3, stride=stride, padding=1),
                nn.BatchNorm2d(multiple * width),
                nn.LeakyReLU(0.2),
            ]
            have = multiple * width
            side = _conv_side(side) if stride == 2 else side
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(have * side * side, dense),
            nn.LeakyReLU(0.2),
            nn.Linear(dense, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


def check_scale(scale: int, resolution: int) -> None:
    if scale not in SCALES:
        raise GanrunError(f"model.scale={scale} must be 2 or 4 (one sub-pixel stage per factor 2)")
    if resolution % scale or resolution // scale < 2:
        raise GanrunError(
            f"data.resolution={resolution} is not a multiple of model.scale={scale} with low-"
            f"resolution images of at least 2x2; choose a resolution divisible by {scale}"
        )
