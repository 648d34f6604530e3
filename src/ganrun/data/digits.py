"""scikit-learn's bundled digits: 1,797 real 8x8 handwritten digits, available offline."""

from __future__ import annotations

import torch

from ganrun.config.schema import DataConfig
from ganrun.data.base import RawData, with_valid_split

# The images come in a fixed order: the last 150 are the test split, and the data.valid_size
# (default 150) before them the valid split.
N_TEST = 150


def load_digits(cfg: DataConfig) -> RawData:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    # Pixel values are 0..16; stretch to 0..255 so the data set looks like every other one.
    images = torch.from_numpy(bunch.images).float().mul(255.0 / 16.0).round().to(torch.uint8)
    images = images.unsqueeze(1)  # (N, 1, 8, 8)
    labels = torch.from_numpy(bunch.target).long()
    return with_valid_split(
        "digits",
        (images[:-N_TEST], labels[:-N_TEST]),
        (images[-N_TEST:], labels[-N_TEST:]),
        cfg.valid_size,
        num_classes=10,
    )
