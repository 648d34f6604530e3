"""torchvision's MNIST, read from ``data.root/MNIST/raw`` without writing there.

torchvision keeps the four IDX files under ``<root>/MNIST/raw``, gzipped as downloaded and
extracted beside them. The extracted files are read when present, otherwise the ``.gz`` files are
read directly (gzip + numpy): a read-only data folder holding only the archives works, and
nothing is ever extracted into it. Only when neither exists, and ``data.download`` is true, does
torchvision download (and extract) them.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganrun.config.schema import DataConfig
from ganrun.data.base import RESIZE_CHUNK, RawData, with_valid_split
from ganrun.data.errors import corrupt, last_line, missing, undone_on_failure
from ganrun.errors import GanrunError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX magic numbers: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions.
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
# data.framing: native (as MNIST ships: each digit fitted into a 20x20 box, centred by its mass
# in 28x28) | fitted (each digit's ink box scaled, aspect kept, to fill the frame, as the size
# normalisation of NIST's preprocessing left scikit-learn's digits).
FRAMING = ("native", "fitted")


def raw_folder(root: str | Path) -> Path:
    return Path(root).expanduser() / "MNIST" / "raw"


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file of unsigned bytes (plain or .gz) as a uint8 array of its declared shape."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise corrupt(path, f"cannot be read ({exc})") from exc
    if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
        found = data[:4].hex() if len(data) >= 4 else f"{len(data)} bytes"
        raise corrupt(path, f"bad IDX magic number {found}, expected {magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise corrupt(path, "truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise corrupt(path, f"{len(data)} bytes where its header {shape} needs {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _download(root: Path) -> None:
    from torchvision.datasets import MNIST

    try:
        with undone_on_failure([root / "MNIST"]):
            MNIST(str(root), train=True, download=True)
    except (RuntimeError, OSError) as exc:
        raise GanrunError(
            f"MNIST is not in {raw_folder(root)} and downloading it failed ({last_line(exc)}); "
            "put the four files from https://ossci-datasets.s3.amazonaws.com/mnist/ there (.gz "
            "is fine) or set data.root to a folder holding MNIST/raw"
        ) from exc


def read_split(image_path: Path, label_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(image_path, IMAGES_MAGIC)
    labels = read_idx(label_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise corrupt(image_path, f"{len(images)} images but {len(labels)} labels in {label_path}")
    if labels.size and labels.max() > 9:
        raise corrupt(label_path, f"label {int(labels.max())} is not a digit")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def load_mnist(cfg: DataConfig) -> RawData:
    root = Path(cfg.root).expanduser()
    folder = raw_folder(root)
    names = [n for pair in FILES.values() for n in pair]
    found = {n: _find(folder, n) for n in names}
    if None in found.values() and cfg.download:
        _download(root)
        found = {n: _find(folder, n) for n in names}
    absent = [n for n, path in found.items() if path is None]
    if absent:
        raise missing(
            f"MNIST file {absent[0]}",
            [folder / absent[0], folder / f"{absent[0]}.gz"],
            "set data.download=true to download it (needs internet), or copy the four MNIST "
            f"files (.gz is fine) into {folder}, or point data.root at a folder with MNIST/raw",
        )
    train_images, train_labels = read_split(*(found[n] for n in FILES["train"]))
    test_images, test_labels = read_split(*(found[n] for n in FILES["test"]))
    if cfg.framing == "fitted":
        train_images, test_images = fit_to_frame(train_images), fit_to_frame(test_images)
    return with_valid_split(
        "MNIST",
        (train_images, train_labels),
        (test_images, test_labels),
        cfg.valid_size,
        num_classes=10,
    )


def fit_to_frame(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1, H, W) -> the same shape, each image's ink (every non-zero pixel) scaled so its
    bounding box's longer side spans the frame, aspect kept, centred; blank images stay blank."""
    n, _, h, w = images.shape
    ink = images[:, 0] > 0
    rows, cols = ink.any(dim=2), ink.any(dim=1)
    blank = ~rows.any(dim=1)

    def centres(present: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first and last inked pixel's index along each image's rows or columns."""
        index = torch.arange(size).expand_as(present)
        first = torch.where(present, index, size).amin(dim=1)
        last = torch.where(present, index, -1).amax(dim=1)
        return first.float(), last.float()

    top, bottom = centres(rows, h)
    left, right = centres(cols, w)
    span = torch.maximum(bottom - top, right - left)
    # The frame's first and last pixel centres land on the box's (align_corners=True), so the
    # box's edge pixels keep their ink; the shorter side is centred, with blank around it.
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = span / (w - 1)
    theta[:, 1, 1] = span / (h - 1)
    theta[:, 0, 2] = (left + right) / (w - 1) - 1
    theta[:, 1, 2] = (top + bottom) / (h - 1) - 1
    theta[blank] = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    out = torch.empty_like(images)
    for start in range(0, n, RESIZE_CHUNK):
        chunk = slice(start, start + RESIZE_CHUNK)
        part = theta[chunk]
        grid = F.affine_grid(part, [part.shape[0], 1, h, w], align_corners=True)
        fitted = F.grid_sample(images[chunk].float(), grid, align_corners=True)
        out[chunk] = fitted.round_().clamp_(0, 255)
    return out
