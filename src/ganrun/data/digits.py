"""scikit-learn's bundled digits: 1,797 real 8x8 handwritten digits, available offline."""

from __future__ import annotations

import torch

from ganrun.data.base import RawData
from ganrun.schema import DataConfig

# Fixed split of the 1,797 images (they come in a fixed order): the last 300 are held out.
N_VALID = 150
N_TEST = 150


def load_digits(cfg: DataConfig) -> RawData:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    # Pixel values are 0..16; stretch to 0..255 so the data set looks like every other one.
    images = torch.from_numpy(bunch.images).float().mul(255.0 / 16.0).round().to(torch.uint8)
    images = images.unsqueeze(1)  # (N, 1, 8, 8)
    labels = torch.from_numpy(bunch.target).long()
    n_train = len(images) - N_VALID - N_TEST
    cut = {
        "train": (0, n_train),
        "valid": (n_train, n_train + N_VALID),
        "test": (n_train + N_VALID, len(images)),
    }
    return RawData(
        images={k: images[a:b] for k, (a, b) in cut.items()},
        labels={k: labels[a:b] for k, (a, b) in cut.items()},
        num_classes=10,
    )
