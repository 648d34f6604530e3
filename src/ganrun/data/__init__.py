"""Data sets: ``data=<name>`` picks a loader from :data:`DATASETS`.

A loader reads its files (or its bundled copy) and returns :class:`RawData`: uint8 images at their
native size, per split. :func:`build_data` resizes them to ``data.resolution`` and converts them
to ``data.channels`` once and keeps each split resident on the training device
(:class:`ResidentSplit`), so a training step draws its batch by indexing a tensor that is already
there. The 2-D mixtures stay float points (:class:`PointSplit`); ``folder`` streams its images
through a DataLoader (:class:`~ganrun.data.folder.FolderSplit`) with the same interface.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ganrun.config.schema import DataConfig
from ganrun.data.base import RESIZE_CHUNK, DataInfo, RawData
from ganrun.data.cifar10 import load_cifar10
from ganrun.data.digits import load_digits
from ganrun.data.folder import FolderSplit, load_folder
from ganrun.data.mixtures import load_gauss1d, load_grid, load_ring
from ganrun.data.mnist import load_mnist
from ganrun.data.resident import PointSplit, ResidentSplit
from ganrun.data.tfd import load_tfd
from ganrun.data.translation import load_mnist_color, load_mnist_digits, load_translation_folder
from ganrun.errors import GanrunError

# What a split is to the trainer: batch(n), len(), seed(s), state_dict(), load_state_dict(), all().
Split = ResidentSplit | FolderSplit


@dataclass
class Data:
    info: DataInfo
    splits: dict[str, Split]
    train_split: str = "train"  # the split training draws from

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise GanrunError(
                f"data set {self.info.name!r} has no split {name!r}; "
                f"choose one of: {', '.join(self.splits)}"
            )
        return self.splits[name]

    @property
    def train(self) -> Split:
        return self.split(self.train_split)

    @property
    def held_out(self) -> Split:
        """Where held-out images come from: the test split, else valid, else train."""
        return next(self.splits[n] for n in ("test", "valid", "train") if n in self.splits)


DATASETS: dict[str, Callable[[DataConfig], RawData]] = {
    "digits": load_digits,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "tfd": load_tfd,
    "ring": load_ring,
    "grid": load_grid,
    "gauss1d": load_gauss1d,
    "folder": load_folder,
    "mnist_color": load_mnist_color,
    "mnist_digits": load_mnist_digits,
    "translation_folder": load_translation_folder,
}


def loader_for(name: str) -> Callable[[DataConfig], RawData]:
    """The loader of ``data=<name>``; the one place an unknown data set is refused."""
    if name not in DATASETS:
        raise GanrunError(f"unknown data set {name!r}; choose data= one of: {', '.join(DATASETS)}")
    return DATASETS[name]


# Data sets of points rather than images: data.resolution and data.channels do not apply.
POINT_DATASETS = ("ring", "grid", "gauss1d")

# Data sets whose images are MNIST's, so data.framing applies.
MNIST_DATASETS = ("mnist", "mnist_digits", "mnist_color")

# data.binarize: none | static | dynamic (see DataConfig).
BINARIZE = ("none", "static", "dynamic")

# ITU-R BT.601 luma, what PIL's convert("L") uses.
_LUMA = (0.299, 0.587, 0.114)


def resize_uint8(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) images to resolution x resolution, antialiased, still uint8."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    out = torch.empty(
        (*images.shape[:2], resolution, resolution), dtype=torch.uint8, device=images.device
    )
    for start in range(0, images.shape[0], RESIZE_CHUNK):
        chunk = F.interpolate(
            images[start : start + RESIZE_CHUNK].float(),
            size=(resolution, resolution),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        out[start : start + RESIZE_CHUNK] = chunk.round_().clamp_(0, 255)
    return out


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> ``channels`` channels: gray repeated to RGB, RGB to luma."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        weights = torch.tensor(_LUMA, device=images.device).view(1, 3, 1, 1)
        gray = (images.float() * weights).sum(dim=1, keepdim=True)
        return gray.round_().clamp_(0, 255).to(torch.uint8)
    raise GanrunError(f"cannot convert {have}-channel images to data.channels={channels}")


def _prepare(images: torch.Tensor, cfg: DataConfig, device: torch.device) -> torch.Tensor:
    # uint8 crosses to the device once; resizing there is fastest on a GPU. Resize before
    # converting to RGB and after converting to gray: whichever handles fewer channels.
    images = images.to(device)
    if images.shape[1] > cfg.channels:
        return resize_uint8(convert_channels(images, cfg.channels), cfg.resolution)
    return convert_channels(resize_uint8(images, cfg.resolution), cfg.channels)


def binarized(images: torch.Tensor, split: str) -> torch.Tensor:
    """One Bernoulli draw per pixel of uint8 images (probability intensity/255), as 0 or 255.

    Drawn on the CPU from a generator seeded by the split's name, so a split is the same binary
    data set on every run and device: a likelihood measured on it is comparable between runs.
    """
    generator = torch.Generator().manual_seed(zlib.crc32(split.encode()))
    cpu = images.cpu()
    out = torch.empty_like(cpu)
    for start in range(0, cpu.shape[0], RESIZE_CHUNK):
        chunk = cpu[start : start + RESIZE_CHUNK].float().div_(255)
        out[start : start + RESIZE_CHUNK] = torch.bernoulli(chunk, generator=generator).mul_(255)
    return out.to(images.device)


def _resident(
    name: str,
    images: torch.Tensor,
    raw: RawData,
    cfg: DataConfig,
    value_range: tuple[float, float],
    device: torch.device,
) -> ResidentSplit:
    images = _prepare(images, cfg, device)
    labels = raw.labels.get(name)
    if cfg.binarize == "none":
        return ResidentSplit(images, labels, value_range, device)
    # A dynamic training split keeps its intensities to draw every batch afresh; its fixed
    # draw is what evaluation reads from it (all(), the classifier, reference statistics).
    fresh = images if cfg.binarize == "dynamic" and name == cfg.train_split else None
    return ResidentSplit(binarized(images, name), labels, value_range, device, intensities=fresh)


def build_data(cfg: DataConfig, value_range: tuple[float, float], device: torch.device) -> Data:
    """Load ``cfg.name``, resize to ``cfg.resolution`` and hold every split on ``device``."""
    raw = loader_for(cfg.name)(cfg)
    splits: dict[str, Any]
    if raw.kind == "points":
        splits = {
            name: PointSplit(points, raw.labels.get(name), device)
            for name, points in raw.images.items()
        }
        dim = next(iter(raw.images.values())).shape[1]
        info = DataInfo(
            cfg.name,
            dim,
            0,
            raw.num_classes,
            tuple(value_range),
            kind="points",
            extra=dict(raw.extra),
        )
    else:
        if raw.kind == "stream":
            splits = {
                name: FolderSplit(source, cfg, value_range, device)
                for name, source in raw.streams.items()
            }
        else:
            splits = {
                name: _resident(name, images, raw, cfg, value_range, device)
                for name, images in raw.images.items()
            }
        info = DataInfo(
            cfg.name,
            cfg.channels,
            cfg.resolution,
            raw.num_classes,
            tuple(value_range),
            extra=dict(raw.extra),
        )
    data = Data(info, splits, cfg.train_split)
    train = data.split(cfg.train_split)  # an unknown split fails here, before anything is written
    if isinstance(train, ResidentSplit):
        info.train_mean = train.mean
    if cfg.labels_per_class:
        data.splits[LABELLED] = labelled_split(train, cfg, value_range)
    return data


# How data.label_seed orders the training split before the first labels_per_class of each
# class are kept: torch (ganrun's own draw) or numpy (the released code's).
LABEL_RNGS = ("torch", "numpy")
LABELLED = "labelled"  # the split data.labels_per_class adds: the labelled subset of training


def labelled_subset(
    labels: torch.Tensor, per_class: int, seed: int, rng: str = "torch"
) -> torch.Tensor:
    """Indices of ``per_class`` examples of every class, drawn by ``seed``: a random order of
    the whole split, then the first ``per_class`` of each class in it (as Salimans et al.'s
    released code picks its 100 MNIST labels). ``rng`` makes the order: ``torch`` (a seeded
    ``torch.randperm``) or ``numpy`` (``numpy.random.RandomState(seed).permutation``, the
    release's own call, so seed K picks the images its ``--seed_data K`` does where the split
    is in the same order). Sorted, so a subset reads in the split's order."""
    n = labels.shape[0]
    if rng == "numpy":
        order = torch.from_numpy(np.random.RandomState(seed).permutation(n))
    else:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    shuffled = labels.cpu()[order]
    picked = [order[shuffled == c][:per_class] for c in range(int(labels.max()) + 1)]
    return torch.cat(picked).sort().values


def labelled_split(
    train: Split, cfg: DataConfig, value_range: tuple[float, float]
) -> ResidentSplit:
    """The training split's labelled subset (``data.labels_per_class``), or a one-line error
    where the split has no labels or a class has fewer examples than asked for."""
    k = cfg.labels_per_class
    if not isinstance(train, ResidentSplit) or train.labels is None:
        raise GanrunError(
            f"data.labels_per_class={k} keeps labels of the training split, but the "
            f"{cfg.train_split!r} split of data={cfg.name} has none; use labelled data or "
            "data.labels_per_class=0"
        )
    counts = torch.bincount(train.labels.cpu())
    fewest = int(counts.argmin())
    if counts[fewest] < k:
        raise GanrunError(
            f"data.labels_per_class={k} is more than the {int(counts[fewest])} training images "
            f"of class {fewest} in data={cfg.name}; lower data.labels_per_class"
        )
    index = labelled_subset(train.labels, k, cfg.label_seed, cfg.label_rng).to(train.device)
    return ResidentSplit(train.images[index], train.labels[index], value_range, train.device)
