"""The file mechanics every writer and reader of run folders shares: atomic replacement, the
natural order of numbered names, and reading ``metrics.csv``."""

from __future__ import annotations

import csv
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ganrun.errors import GanrunError

# The permissions a file created the usual way gets (mkstemp's own are 0600, which would hide run
# folders from the rest of a user's group). Read once, at import, when nothing else runs.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


def atomic_write(
    path: str | Path,
    content: str | bytes | Callable[[IO[Any]], None],
    *,
    durable: bool = False,
    what: str = "",
    fix: str = "",
) -> Path:
    """Write ``path`` whole or not at all: into a temporary file beside it, then renamed over it.

    ``content`` is text, bytes, or a function that writes to the open binary file. A reader
    never sees half a file, and a failure (disk full) leaves the previous file as it was.
    ``durable`` also flushes the data and the rename to disk (checkpoints: a power cut must not
    leave an empty file behind a completed rename). Failures are one-line errors naming ``what``
    (the path by default), saying whether the previous file is kept, then ``fix``.
    """
    path = Path(path)
    name = what or str(path)
    advice = f"; {fix}" if fix else ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise GanrunError(f"could not write {name} ({exc.strerror or exc}){advice}") from exc
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            kept = "; the previous one is kept" if path.exists() else ""
            message = f"could not write {name} ({exc.strerror or exc}){kept}{advice}"
            raise GanrunError(message) from exc
        raise
    if durable:
        _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some file systems (and Windows) cannot open a folder: the rename stands
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def natural_key(text: str | Path) -> list[Any]:
    """Sort key that orders embedded numbers by value: ``run/2`` before ``run/10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]


def read_metrics_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """``metrics.csv`` as (header, rows of text); rows that do not match the header's width
    (a line cut short by a crash) are left out. A missing or empty file reads as no rows."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        return [], []
    if not rows:
        return [], []
    header = rows[0]
    return header, [r for r in rows[1:] if len(r) == len(header)]


def metrics_columns(path: Path) -> dict[str, list[float]]:
    """``metrics.csv`` by column, as floats (NaN where a cell is not a number)."""
    header, rows = read_metrics_csv(path)
    columns: dict[str, list[float]] = {name: [] for name in header}
    for row in rows:
        for name, value in zip(header, row, strict=True):
            columns[name].append(_float(value))
    return columns


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return math.nan
