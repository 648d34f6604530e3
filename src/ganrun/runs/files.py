"""The file mechanics every writer and reader of run folders shares: atomic replacement, locks,
checking that a folder can be written before any work starts, the natural order of numbered
names, and reading ``metrics.csv`` without trusting it."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

try:  # POSIX; elsewhere nothing is locked, which only loses the protection against races
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None  # type: ignore[assignment]

from ganrun.errors import GanrunError

log = logging.getLogger("ganrun")

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


def check_writable(folder: str | Path, fix: str, need_bytes: int = 0, need_why: str = "") -> Path:
    """Refuse, before any work starts, a folder ganrun could not write its files in: a file
    where a folder should be, no permission (tried for real: a read-only or immutable folder
    refuses root too), or less free space than ``need_bytes`` (``need_why`` says for what).
    ``fix`` says what to do instead. Nothing is left behind and no folder is created."""
    folder = Path(folder).expanduser()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise GanrunError(f"{existing} is a file, so {folder} cannot be a folder; {fix}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".ganrun-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise GanrunError(f"cannot write in {existing} ({exc.strerror or exc}); {fix}") from exc
    if need_bytes:
        free = shutil.disk_usage(existing).free
        if free < need_bytes:
            have, need = free / 2**20, need_bytes / 2**20
            why = f" ({need_why})" if need_why else ""
            raise GanrunError(
                f"{existing} has {have:.0f} MiB free, less than the {need:.0f} MiB needed{why}; "
                f"free some space, or {fix}"
            )
    return existing


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a lock file, created if missing) for the block,
    waiting for any other holder: for read-modify-write of files several processes share. The
    operating system releases it if the process dies."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def set_aside(path: Path, why: str) -> Path:
    """Keep a copy of a damaged file as ``<name>.damaged`` before it is rewritten from what could
    be read of it: nothing written is lost. Says so in a warning."""
    aside = path.with_name(f"{path.name}.damaged")
    shutil.copyfile(path, aside)
    log.warning("%s %s; a copy is kept as %s", path, why, aside)
    return aside


def natural_key(text: str | Path) -> list[Any]:
    """Sort key that orders embedded numbers by value: ``run/2`` before ``run/10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]


@dataclass
class MetricsTable:
    """metrics.csv as read: the header, the rows that can be trusted, and how many could not."""

    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    damaged: int = 0  # rows left out: cut short, of another width, or a step that is no number

    def columns(self) -> dict[str, list[float]]:
        """The trusted rows by column, as floats (NaN where a cell is not a number)."""
        columns: dict[str, list[float]] = {name: [] for name in self.header}
        for row in self.rows:
            for name, value in zip(self.header, row, strict=True):
                columns[name].append(_float(value))
        return columns


def read_metrics_csv(path: Path) -> MetricsTable:
    """``metrics.csv`` without trusting it. A row is kept only when it has the header's width, an
    integer step, and ends in a line break (a line still being written, or cut by a crash, could
    hold a number missing its last digits); a missing or empty file reads as no rows."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return MetricsTable()
    lines = text.splitlines(keepends=True)
    cut = 1 if lines and not lines[-1].endswith(("\n", "\r")) else 0
    rows = list(csv.reader(io.StringIO("".join(lines[: len(lines) - cut]))))
    if not rows:
        return MetricsTable(damaged=cut)
    header, body = rows[0], rows[1:]
    good = [r for r in body if len(r) == len(header) and r[0].isdigit()]
    return MetricsTable(header, good, len(body) - len(good) + cut)


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return math.nan
