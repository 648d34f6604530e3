"""torchvision's CIFAR-10, read from ``data.root/cifar-10-batches-py``.

The python-version batches are pickles. They are read with an unpickler that only rebuilds
numpy arrays and plain containers, so a tampered file cannot run code; torchvision's class is used
only to download and extract the archive when the files are missing and ``data.download`` is true.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganrun.config.schema import DataConfig
from ganrun.data.base import RawData, with_valid_split
from ganrun.data.errors import corrupt, last_line, missing, undone_on_failure
from ganrun.errors import GanrunError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
META_FILE = "batches.meta"
SIDE = 32

# What the CIFAR pickles (written by Python 2 or 3, numpy 1 or 2) need to be rebuilt.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_batch(path: Path) -> dict[str, Any]:
    """One pickled batch as a dict with str keys."""
    try:
        with path.open("rb") as f:
            obj = _ArrayUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        OSError,
    ) as exc:
        why = f"not a readable CIFAR-10 pickle ({type(exc).__name__}: {exc})"
        raise corrupt(path, why) from exc
    if not isinstance(obj, dict):
        raise corrupt(path, f"holds a {type(obj).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_images(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    batch = read_batch(path)
    if "data" not in batch or "labels" not in batch:
        raise corrupt(path, f"keys {sorted(batch)} lack 'data' and 'labels'")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
        raise corrupt(path, f"data is {data.dtype} {data.shape}, not uint8 (N, {3 * SIDE * SIDE})")
    if len(labels) != len(data) or (labels.size and not 0 <= labels.min() <= labels.max() <= 9):
        raise corrupt(path, f"{len(labels)} labels in 0..9 expected for {len(data)} images")
    images = torch.from_numpy(data.reshape(-1, 3, SIDE, SIDE).copy())
    return images, torch.from_numpy(labels)


def _download(root: Path) -> None:
    from torchvision.datasets import CIFAR10

    try:
        with undone_on_failure([root / FOLDER, root / CIFAR10.filename]):
            CIFAR10(str(root), train=True, download=True)
    except (RuntimeError, OSError) as exc:
        raise GanrunError(
            f"CIFAR-10 is not in {root / FOLDER} and downloading it failed ({last_line(exc)}); "
            "extract cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
            f"into {root} or set data.root to a folder holding {FOLDER}"
        ) from exc


def load_cifar10(cfg: DataConfig) -> RawData:
    root = Path(cfg.root).expanduser()
    folder = root / FOLDER
    names = [*TRAIN_FILES, *TEST_FILES]
    absent = [n for n in names if not (folder / n).is_file()]
    if absent and cfg.download:
        _download(root)
        absent = [n for n in names if not (folder / n).is_file()]
    if absent:
        raise missing(
            f"CIFAR-10 file {absent[0]}",
            [folder / absent[0]],
            "set data.download=true to download it (needs internet), or extract "
            f"cifar-10-python.tar.gz (python version) into {root}, or point data.root at the "
            f"folder holding {FOLDER}",
        )
    parts = [read_images(folder / n) for n in TRAIN_FILES]
    train_images = torch.cat([p[0] for p in parts])
    train_labels = torch.cat([p[1] for p in parts])
    test_images, test_labels = read_images(folder / TEST_FILES[0])
    extra: dict[str, Any] = {}
    if (folder / META_FILE).is_file():
        meta = read_batch(folder / META_FILE)
        if "label_names" in meta:
            extra["class_names"] = [
                n.decode("latin1") if isinstance(n, bytes) else str(n) for n in meta["label_names"]
            ]
    return with_valid_split(
        "CIFAR-10",
        (train_images, train_labels),
        (test_images, test_labels),
        cfg.valid_size,
        num_classes=10,
        extra=extra,
    )
