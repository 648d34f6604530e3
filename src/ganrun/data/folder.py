"""Any folder of images, streamed through a DataLoader whose workers decode them.

``data.root`` is the folder. When every image sits inside a top-level sub-folder, the sub-folders
are the classes (sorted by name; labels 0..K-1), as in torchvision's ImageFolder; otherwise the
images are unlabelled. Each image is resized (shorter side to ``data.resolution``), centre-cropped
to a square and converted to grayscale or RGB by ``data.channels``, in the workers; batches
arrive as uint8 and are scaled on the training device, like the resident data sets.

:class:`FolderSplit` has :class:`~ganrun.data.resident.ResidentSplit`'s interface (``batch``,
``len``, ``seed``, ``state_dict``, ``all``) and the same sampling: it walks through one random
permutation per epoch drawn from its own generator, so resuming restores the exact next batch.
"""

from __future__ import annotations

import contextlib
import re
import signal
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ganrun.config.schema import DataConfig
from ganrun.data.base import RawData
from ganrun.data.errors import missing
from ganrun.errors import GanrunError
from ganrun.images import to_uint8

EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})  # PIL modes of grayscale files
VALID_SEED = 1234  # the held-out valid images are a fixed random subset, the same in every run


@dataclass
class FolderSource:
    files: list[Path]
    labels: torch.Tensor | None  # int64 (N,), or None for a flat folder


class ImageFiles(Dataset):
    """Decodes one file per item: (uint8 (C, S, S) image, its index)."""

    def __init__(self, files: list[Path], resolution: int, channels: int) -> None:
        self.files = files
        self.resolution = resolution
        self.mode = "L" if channels == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return load_image(self.files[index], self.resolution, self.mode), index


# What PIL raises for a file that is no image, is cut short, or claims a size it refuses.
_IMAGE_ERRORS = (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning)


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    # Opening reads the header only; a size past Image.MAX_IMAGE_PIXELS (a decompression bomb,
    # which PIL only warns about below twice that) is refused like any unreadable file.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            yield im


def _reason(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def check_headers(files: list[Path], root: Path) -> None:
    """Refuse a folder with files that are no images or claim an absurd size, all counted in
    one line, before anything is trained on it: only headers are read (pixels cut short show
    when they are decoded, as a one-line error naming the file)."""
    bad: list[tuple[Path, str]] = []
    for path in files:
        try:
            with _opened(path):
                pass
        except _IMAGE_ERRORS as exc:
            bad.append((path, _reason(exc)))
    if bad:
        first, why = bad[0]
        more = (
            f", nor can {len(bad) - 1} more of the {len(files)} files in {root}" if bad[1:] else ""
        )
        raise GanrunError(
            f"{first} cannot be read as an image ({why}){more}; remove or replace "
            + ("them" if more else "it")
        )


def _pixels(path: Path, mode: str | None) -> torch.Tensor:
    """The file's pixels, uint8 (C, H, W), converted to PIL ``mode``; None: grayscale files stay
    grayscale (1 channel) and every other kind becomes RGB."""
    from torchvision.transforms.v2 import functional as TF

    try:
        with _opened(path) as im:
            im = im.convert(mode or ("L" if im.mode in GRAY_MODES else "RGB"))
    except _IMAGE_ERRORS as exc:
        raise GanrunError(
            f"{path} cannot be read as an image ({_reason(exc)}); remove or replace it"
        ) from None
    return TF.pil_to_tensor(im)


def load_image(path: Path, resolution: int, mode: str) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    tensor = TF.resize(_pixels(path, mode), resolution, antialias=True)
    return TF.center_crop(tensor, [resolution, resolution])


def decode(path: Path) -> torch.Tensor:
    """An image as stored, uint8 (C, H, W), not resized: grayscale files as one channel, every
    other kind as RGB (images made elsewhere are scored as they are)."""
    return _pixels(path, None)


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def scan(root: Path) -> tuple[list[Path], torch.Tensor | None, list[str]]:
    """Image files under ``root`` (sorted), their class labels (or None) and the class names."""
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in EXTENSIONS and p.is_file() and not _is_hidden(p, root)
    )
    tops = [p.relative_to(root).parts for p in files]
    if not files or any(len(parts) == 1 for parts in tops):
        return files, None, []
    classes = sorted({parts[0] for parts in tops})
    index = {name: i for i, name in enumerate(classes)}
    return files, torch.tensor([index[parts[0]] for parts in tops], dtype=torch.long), classes


def load_folder(cfg: DataConfig) -> RawData:
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise missing(
            "image folder",
            [root],
            "data=folder reads the images in data.root: set data.root=/path/to/images",
        )
    files, labels, classes = scan(root)
    if not files:
        raise GanrunError(
            f"no images in {root} (looked for {', '.join(sorted(EXTENSIONS))}, also in "
            "sub-folders); point data.root at a folder of images"
        )
    n_valid = cfg.valid_size
    if n_valid >= len(files):
        raise GanrunError(
            f"data.valid_size={n_valid} leaves no training images (the folder has {len(files)}); "
            "lower data.valid_size"
        )
    check_headers(files, root)
    # One decode now, so a folder of unreadable files fails before a run folder is written.
    load_image(files[0], cfg.resolution, "L" if cfg.channels == 1 else "RGB")
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(VALID_SEED))
    parts = {"train": order[: len(files) - n_valid]}
    if n_valid:
        parts["valid"] = order[len(files) - n_valid :].sort().values
    parts["train"] = parts["train"].sort().values
    streams = {
        split: FolderSource(
            [files[i] for i in index.tolist()], None if labels is None else labels[index]
        )
        for split, index in parts.items()
    }
    return RawData(
        images={},
        labels={},
        num_classes=len(classes),
        kind="stream",
        extra={"class_names": classes, "root": str(root)},
        streams=streams,
    )


def _ignore_interrupts(worker_id: int) -> None:
    # Ctrl-C reaches the whole process group. The trainer stops gracefully on it and still needs
    # the workers for the batches of the current step; it shuts them down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_WORKER_ERROR = re.compile(r"GanrunError: (.+)$")


def _one_line(exc: GanrunError) -> GanrunError:
    """A worker's GanrunError reaches the main process wrapped in its traceback: unwrap it."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    for line in reversed(lines):
        match = _WORKER_ERROR.search(line)
        if match:
            return GanrunError(match.group(1))
    return GanrunError(lines[-1] if lines else "reading an image failed")


class FolderSplit:
    """Images decoded by DataLoader workers and scaled on ``device``; see the module docs."""

    def __init__(
        self,
        source: FolderSource,
        cfg: DataConfig,
        value_range: tuple[float, float],
        device: torch.device,
        seed: int = 0,
    ) -> None:
        self.dataset = ImageFiles(source.files, cfg.resolution, cfg.channels)
        self.labels = source.labels
        self.num_workers = cfg.num_workers
        lo, hi = value_range
        self.value_range = (lo, hi)
        self.scale = (hi - lo) / 255.0
        self.offset = lo
        self.device = device
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = 0
        self._batches: Iterator | None = None
        self._batch_size = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def scaled(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().mul_(self.scale).add_(self.offset)

    def _loader(self, batches: list[list[int]]) -> DataLoader:
        return DataLoader(
            self.dataset,
            batch_sampler=batches,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_ignore_interrupts if self.num_workers else None,
        )

    def _restart(self) -> None:
        """Workers for the rest of this epoch's permutation, from the current position."""
        n = self._batch_size
        rest = self._order[self._pos :].tolist()
        batches = [rest[i : i + n] for i in range(0, len(rest) - n + 1, n)]
        self._batches = iter(self._loader(batches))

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = 0
        self._batches = None

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._pos + batch_size > self._order.numel():
            self._order = torch.randperm(len(self), generator=self.generator)
            self._pos = 0
            self._batches = None
        if self._batches is None or batch_size != self._batch_size:
            self._batch_size = batch_size
            self._restart()
        assert self._batches is not None
        try:
            images, index = next(self._batches)
        except GanrunError as exc:
            raise _one_line(exc) from None
        self._pos += batch_size
        images = images.to(self.device, non_blocking=True)
        labels = None if self.labels is None else self.labels[index].to(self.device)
        return self.scaled(images), labels

    def all(self, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every image of the split in file order, scaled (for evaluation; holds them all)."""
        order = list(range(len(self)))
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        try:
            images = torch.cat([x for x, _ in self._loader(chunks)]).to(self.device)
        except GanrunError as exc:
            raise _one_line(exc) from None
        labels = None if self.labels is None else self.labels.to(self.device)
        return self.scaled(images), labels

    def pixels(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """The split's images as uint8 (all, or those at ``index``), on the CPU: read whole and
        mapped back from the value range, exactly, since they were scaled from uint8."""
        x, _ = self.all()
        if index is not None:
            x = x[index.to(x.device)]
        return to_uint8(x, self.value_range)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self._order, "pos": self._pos}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())
        self._order = state["order"].cpu()
        self._pos = int(state["pos"])
        self._batches = None
