"""Images made elsewhere, read whole for scoring (``ganrun eval samples=<file.npz|folder>``).

An ``.npz`` file holds a uint8 array ``samples`` of N x H x W x C (C = 1 or 3): the layout
``ganrun sample sample.format=npz`` writes and FID tools read. A folder holds image files (in
sub-folders too, hidden ones skipped), all of one size, grayscale or RGB. Either is checked in
full before anything is computed, and fingerprinted by sha256 (of the file, or of the folder's
file names and contents), which the records keep so that a score names exactly what it scored.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError, require

NPZ_KEY = "samples"
NPZ_LAYOUT = "uint8 N x H x W x C with C = 1 or 3, as `ganrun sample sample.format=npz` writes"


@dataclass(frozen=True)
class ImageSet:
    """Images read from ``path``: uint8 pixels (N, C, H, W) and the sha256 of what was read."""

    path: Path
    pixels: torch.Tensor
    sha256: str

    def fits(self, info: DataInfo) -> bool:
        """Whether these are images of the data set's kind: its resolution and channels."""
        expected = (info.channels, info.resolution, info.resolution)
        return info.kind == "image" and tuple(self.pixels.shape[1:]) == expected


def read_image_set(path: Path) -> ImageSet:
    """The images of an ``.npz`` file or a folder; a one-line error for anything else."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _read_folder(path)
    require(path.is_file(), f"samples={path} does not exist; give an .npz file or a folder")
    require(
        path.suffix.lower() == ".npz",
        f"samples={path} is neither an .npz file nor a folder of images",
    )
    return _read_npz(path)


def _read_npz(path: Path) -> ImageSet:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            require(
                NPZ_KEY in keys,
                f"{path} has no array named {NPZ_KEY!r} (it has: {', '.join(keys) or 'none'}); "
                f"store the images as {NPZ_KEY}, {NPZ_LAYOUT}",
            )
            array = archive[NPZ_KEY]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise GanrunError(f"{path} cannot be read as an .npz file ({exc})") from None
    require(
        array.dtype == np.uint8,
        f"{path}: {NPZ_KEY} is {array.dtype}, not uint8; store pixels 0-255 ({NPZ_LAYOUT})",
    )
    require(
        array.ndim == 4 and array.shape[-1] in (1, 3),
        f"{path}: {NPZ_KEY} has the shape {tuple(array.shape)}, not {NPZ_LAYOUT}",
    )
    require(array.shape[0] > 0, f"{path}: {NPZ_KEY} holds no images")
    pixels = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(path, pixels, _sha256_of([path]))


def image_files(path: Path, setting: str) -> tuple[list[Path], Path]:
    """The image files of a folder (sub-folders too, hidden ones skipped, in name order), or one
    image file, with the folder their names are relative to; every header checked. ``setting``
    names the option that gave the path, for errors."""
    from ganrun.data.folder import EXTENSIONS, check_headers, scan

    files, root = ([path], path.parent) if path.is_file() else (scan(path)[0], path)
    require(
        bool(files),
        f"{setting}={path} holds no images (looked for {', '.join(sorted(EXTENSIONS))}, also in "
        "sub-folders)",
    )
    check_headers(files, root)
    return files, root


def _read_folder(root: Path) -> ImageSet:
    files, images, sha256 = read_image_folder(root, "samples")
    first = images[0]
    for path, image in zip(files, images, strict=True):
        require(
            image.shape == first.shape,
            f"{path} is {_shape(image)} but {files[0]} is {_shape(first)}: every image of "
            f"samples={root} must have one size and one channel count",
        )
    return ImageSet(root, torch.stack(images), sha256)


def read_image_folder(root: Path, setting: str) -> tuple[list[Path], list[torch.Tensor], str]:
    """Every image of a folder (sub-folders too) at its own size, uint8 (C, H, W): grayscale as
    one channel, anything else as RGB; their files and the folder's sha256. ``setting`` names
    the option that gave the folder, for errors."""
    from ganrun.data.folder import decode

    root = Path(root).expanduser()
    require(root.is_dir(), f"{setting}={root} is not a folder; give a folder of images")
    files, _ = image_files(root, setting)
    return files, [decode(f) for f in files], _sha256_of(files, root)


def _shape(image: torch.Tensor) -> str:
    c, h, w = image.shape
    return f"{h}x{w} {'grayscale' if c == 1 else 'RGB'}"


def _sha256_of(files: list[Path], root: Path | None = None) -> str:
    digest = hashlib.sha256()
    for path in files:
        if root is not None:  # a folder: its names count too, so a renamed set is another set
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(2**20), b""):
                digest.update(block)
    return digest.hexdigest()
