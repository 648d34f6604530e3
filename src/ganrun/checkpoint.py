"""Checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings and containers, so loading never runs
pickled code. It is written to a temporary file in the same folder, flushed to disk and renamed
over the target, so a crash at any moment leaves the previous checkpoint whole.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from ganrun.errors import GanrunError
from ganrun.schema import flat_settings

FORMAT_VERSION = 1


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format_version": FORMAT_VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise GanrunError(
            f"could not write checkpoint {path} ({exc.strerror or exc}); the previous one is kept"
        ) from exc
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise GanrunError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise GanrunError(
            f"refusing to load {path}: it needs pickled code to load, which could run arbitrary "
            "commands (only plain tensors and containers are accepted)"
        ) from exc
    except (
        Exception
    ) as exc:  # torch raises many types for damaged files (RuntimeError, KeyError...)
        raise GanrunError(
            f"checkpoint {path} is truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise GanrunError(f"{path} is not a ganrun checkpoint")
    if payload["format_version"] > FORMAT_VERSION:
        raise GanrunError(
            f"checkpoint {path} has format version {payload['format_version']}, newer than this "
            f"ganrun understands ({FORMAT_VERSION}); upgrade ganrun"
        )
    return payload


# What a checkpoint's weights mean: continuing them under another model, data set or loss would
# silently train something that is neither run. Where the data lives and how it is read may change.
_FIXED_GROUPS = ("model", "data", "loss")
_MOVABLE = {"data.root", "data.download", "data.num_workers"}


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key=saved (now current)`` for each model/data/loss setting that differs.

    A setting the checkpoint does not know (added by a later ganrun, whose defaults keep old
    behaviour) or that this ganrun no longer has is not a change.
    """
    old, new = (flat_settings({g: c.get(g, {}) for g in _FIXED_GROUPS}) for c in (saved, current))
    return [
        f"{key}={old[key]} (now {new[key]})"
        for key in sorted(old.keys() & new.keys())
        if key not in _MOVABLE and old[key] != new[key]
    ]
