"""Two-domain data for unpaired image-to-image translation (CycleGAN and its kin).

Domain A lives in the usual splits, ``train`` and ``test``, so every other model and metric reads
it as it reads any data set; domain B lives beside them in ``train_b`` and ``test_b``
(:data:`B_SPLITS`). Nothing pairs an A image with a B image. Where a domain has labels they are
kept for evaluation (a translation scored by the target domain's classifier); training never
reads them. A GAN can train on either domain: ``data.train_split=train_b``.

* ``data=mnist_color``: MNIST (A) and MNIST with strokes and background in random colours (B),
  the two drawn from disjoint halves of each MNIST split, so no B image has its twin in A.
* ``data=mnist_digits``: MNIST (A) and scikit-learn's 8x8 digits (B), two real handwriting
  sources at different native resolutions, both brought to ``data.resolution``: an offline
  stand-in for the MNIST-USPS pair of the domain-adaptation literature.
* ``data=translation_folder``: ``data.root`` holding ``trainA/ trainB/ testA/ testB/``, the layout
  CycleGAN's own data sets ship in (horse2zebra works as it is); images are streamed.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import torch

from ganrun.config.schema import DataConfig
from ganrun.data.base import RawData
from ganrun.data.digits import load_digits
from ganrun.data.errors import missing
from ganrun.data.folder import EXTENSIONS, FolderSource, check_headers, scan
from ganrun.data.mnist import load_mnist
from ganrun.errors import GanrunError

#: Domain B's split for each of domain A's.
B_SPLITS = {"train": "train_b", "test": "test_b"}
#: translation_folder's sub-folder for each split, as CycleGAN's data sets name them.
FOLDERS = {"train": "trainA", "test": "testA", "train_b": "trainB", "test_b": "testB"}
MIN_CONTRAST = 96  # |luma(stroke) - luma(background)| at least this, out of 255


def _no_valid_split(cfg: DataConfig) -> None:
    if cfg.valid_size:
        raise GanrunError(
            f"data={cfg.name} has train and test splits per domain and no valid split; "
            "set data.valid_size=0"
        )


def _seeded(name: str) -> torch.Generator:
    """A generator seeded by a name: a data set's random parts are the same on every run."""
    return torch.Generator().manual_seed(zlib.crc32(name.encode()))


def halves(n: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint halves of ``range(n)``, drawn by the split's name, each in index order."""
    order = torch.randperm(n, generator=_seeded(f"mnist_color/{split}/halves"))
    return order[: n // 2].sort().values, order[n // 2 :].sort().values


def _luma(colors: torch.Tensor) -> torch.Tensor:
    return colors.float() @ torch.tensor([0.299, 0.587, 0.114])


def colorize(gray: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """uint8 (N, 1, H, W) strokes -> uint8 (N, 3, H, W): each image's ink in one random colour on
    a background of another, at least :data:`MIN_CONTRAST` apart in luma so the digit stays
    legible; the gray level blends the two (0: background, 255: stroke)."""
    n = gray.shape[0]
    stroke = torch.randint(0, 256, (n, 3), generator=generator)
    background = torch.randint(0, 256, (n, 3), generator=generator)
    for _ in range(100):
        weak = (_luma(stroke) - _luma(background)).abs() < MIN_CONTRAST
        if not weak.any():
            break
        count = int(weak.sum())
        stroke[weak] = torch.randint(0, 256, (count, 3), generator=generator)
        background[weak] = torch.randint(0, 256, (count, 3), generator=generator)
    else:  # 100 rounds leave about 0.6^100 of the images: none, in practice
        raise RuntimeError("could not draw legible colour pairs")
    alpha = gray.float() / 255
    mixed = background[:, :, None, None] + (stroke - background)[:, :, None, None] * alpha
    return mixed.round_().clamp_(0, 255).to(torch.uint8)


def _labelled_domains(
    images: dict[str, torch.Tensor], labels: dict[str, torch.Tensor | None], a: str, b: str
) -> RawData:
    """Two domains of digits, 10 classes, held in memory."""
    return RawData(
        images=images, labels=labels, num_classes=10, extra={"domains": {"a": a, "b": b}}
    )


def load_mnist_color(cfg: DataConfig) -> RawData:
    _no_valid_split(cfg)
    mnist = load_mnist(cfg)
    images: dict[str, torch.Tensor] = {}
    labels: dict[str, torch.Tensor | None] = {}
    for split in ("train", "test"):
        pixels, classes = mnist.images[split], mnist.labels[split]
        a, b = halves(pixels.shape[0], split)
        images[split], labels[split] = pixels[a], classes[a]
        colours = _seeded(f"mnist_color/{split}/colours")
        images[B_SPLITS[split]] = colorize(pixels[b], colours)
        labels[B_SPLITS[split]] = classes[b]
    return _labelled_domains(images, labels, "MNIST", "MNIST in random colours")


def load_mnist_digits(cfg: DataConfig) -> RawData:
    _no_valid_split(cfg)
    mnist, digits = load_mnist(cfg), load_digits(cfg)
    images = {**mnist.images}
    labels = {**mnist.labels}
    for split, b_split in B_SPLITS.items():
        images[b_split], labels[b_split] = digits.images[split], digits.labels[split]
    return _labelled_domains(images, labels, "MNIST", "scikit-learn digits")


def _channels(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return 1 if image.mode in ("1", "L", "LA", "I", "I;16", "F") else 3


def load_translation_folder(cfg: DataConfig) -> RawData:
    _no_valid_split(cfg)
    root = Path(cfg.root).expanduser()
    folders = {split: root / name for split, name in FOLDERS.items()}
    absent = [path for path in folders.values() if not path.is_dir()]
    if absent:
        raise missing(
            "translation folder",
            absent,
            "data=translation_folder reads data.root/trainA, trainB, testA and testB "
            "(CycleGAN's layout): set data.root to such a folder",
        )
    streams, channels = {}, {}
    for split, folder in folders.items():
        files, _, _ = scan(folder)
        if not files:
            raise GanrunError(
                f"no images in {folder} (looked for {', '.join(sorted(EXTENSIONS))}); every "
                "one of trainA, trainB, testA, testB needs images"
            )
        check_headers(files, folder)
        channels[split] = _channels(files[0])
        streams[split] = FolderSource(files, None)
    for a, b in B_SPLITS.items():
        if channels[a] != channels[b]:
            raise GanrunError(
                f"{folders[a]} holds {channels[a]}-channel images and {folders[b]} "
                f"{channels[b]}-channel ones; translation needs one kind in both domains "
                "(convert one folder's images)"
            )
    return RawData(
        images={},
        labels={},
        kind="stream",
        extra={"domains": {"a": str(folders["train"]), "b": str(folders["train_b"])}},
        streams=streams,
    )
