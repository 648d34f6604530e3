"""The Toronto Face Database from its ``.mat`` release (it cannot be downloaded).

``TFD_48x48.mat`` / ``TFD_96x96.mat`` hold ``images`` (N x S x S uint8), ``folds`` (N x 5: per
fold, 0 unlabeled, 1 train, 2 valid, 3 test), ``labs_ex`` (expression 1..7, -1 when unlabeled)
and ``labs_id`` (identity). Each split of fold ``data.fold`` becomes a split here: ``unlabeled``
(no labels; the GAN trains on it, as Goodfellow et al. 2014 did), ``train``, ``valid``, ``test``
(expression labels 0..6).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganrun.config.schema import DataConfig
from ganrun.data.base import RawData
from ganrun.data.errors import corrupt, missing
from ganrun.errors import GanrunError

FILES = {48: "TFD_48x48.mat", 96: "TFD_96x96.mat"}
SPLITS = {"unlabeled": 0, "train": 1, "valid": 2, "test": 3}
NUM_FOLDS = 5
NUM_EXPRESSIONS = 7
HOW = (
    "the Toronto Face Database cannot be downloaded (ask its maintainers at the University of "
    "Toronto for a copy); put TFD_48x48.mat or TFD_96x96.mat into the folder data.root names"
)


def find_file(root: Path, resolution: int) -> Path:
    """The closer of the two releases to ``resolution`` that exists, preferring the larger one."""
    preferred = [FILES[96], FILES[48]] if resolution > 48 else [FILES[48], FILES[96]]
    for name in preferred:
        if (root / name).is_file():
            return root / name
    raise missing("TFD file", [root / n for n in preferred], HOW)


def _load_mat(path: Path) -> dict:
    from scipy.io import loadmat

    try:
        return loadmat(path, variable_names=["images", "folds", "labs_ex", "labs_id"])
    except Exception as exc:  # scipy's parser fails on malformed input with many types
        raise corrupt(path, f"not a readable .mat file ({type(exc).__name__}: {exc})", HOW) from exc


def load_tfd(cfg: DataConfig) -> RawData:
    if not 0 <= cfg.fold < NUM_FOLDS:
        raise GanrunError(f"data.fold={cfg.fold} does not exist; TFD has folds 0..{NUM_FOLDS - 1}")
    path = find_file(Path(cfg.root).expanduser(), cfg.resolution)
    mat = _load_mat(path)
    absent = [k for k in ("images", "folds", "labs_ex") if k not in mat]
    if absent:
        raise corrupt(path, f"the .mat file lacks the key(s) {', '.join(absent)}", HOW)
    images = np.asarray(mat["images"])
    folds = np.asarray(mat["folds"])
    expressions = np.asarray(mat["labs_ex"]).reshape(-1).astype(np.int64)
    if folds.ndim != 2 or folds.shape[1] != NUM_FOLDS:
        raise corrupt(path, f"folds has shape {folds.shape}, expected (N, {NUM_FOLDS})", HOW)
    n = folds.shape[0]
    if images.ndim != 3 or n not in (images.shape[0], images.shape[2]):
        raise corrupt(path, f"images has shape {images.shape}, expected ({n}, S, S)", HOW)
    if images.shape[0] != n:  # some copies store the image index last (S x S x N)
        images = np.moveaxis(images, 2, 0)
    if len(expressions) != n:
        raise corrupt(path, f"labs_ex has {len(expressions)} entries for {n} images", HOW)
    if images.dtype != np.uint8:  # some conversions store floats, in [0, 1] or [0, 255]
        peak = 1.0 if images.size and float(images.max()) <= 1.0 else 255.0
        images = np.clip(np.rint(images * (255.0 / peak)), 0, 255)
    pixels = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).unsqueeze(1)
    column = folds[:, cfg.fold]
    out_images: dict[str, torch.Tensor] = {}
    out_labels: dict[str, torch.Tensor | None] = {}
    for split, code in SPLITS.items():
        index = np.flatnonzero(column == code)
        if len(index) == 0:
            continue
        out_images[split] = pixels[torch.from_numpy(index)]
        if split == "unlabeled":
            out_labels[split] = None
            continue
        labels = expressions[index] - 1
        if labels.min() < 0 or labels.max() >= NUM_EXPRESSIONS:
            raise corrupt(path, f"labs_ex outside 1..{NUM_EXPRESSIONS} in the {split} split", HOW)
        out_labels[split] = torch.from_numpy(labels)
    if not out_images:
        raise corrupt(path, f"fold {cfg.fold} assigns no image to any split", HOW)
    return RawData(
        images=out_images, labels=out_labels, num_classes=NUM_EXPRESSIONS, extra={"file": str(path)}
    )
