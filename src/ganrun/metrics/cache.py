"""The evaluation cache: reference features/statistics and trained data-set classifiers.

Entries live under ``eval.cache_dir`` (``$GANRUN_CACHE_DIR``, else ``~/.cache/ganrun``), one file
per key, named by a hash of the key so that any change to what the entry depends on (data set,
split, resolution, feature extractor, its weights, sample count, seed) lands in a new file. Files
are written atomically and read with ``weights_only=True``; an unreadable one is recomputed.
Concurrent processes (the jobs of a parallel sweep) that miss the same entry take turns on a lock
file beside it, so the test set's Inception features are computed once, not once per job.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:  # POSIX; elsewhere concurrent misses each compute the entry, which is only slower
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None  # type: ignore[assignment]

import torch

from ganrun.errors import GanrunError
from ganrun.runs.files import atomic_write

_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so a process hashes it once."""
    path = Path(path)
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo_key not in _SHA_MEMO:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _SHA_MEMO[memo_key] = digest.hexdigest()
    return _SHA_MEMO[memo_key]


def entry_path(cache_dir: str | Path, kind: str, key: dict[str, Any]) -> Path:
    """Where the entry for ``key`` (a JSON-able dict) of ``kind`` lives."""
    text = json.dumps(key, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    return Path(cache_dir).expanduser() / kind / f"{digest}.pt"


def load_entry(path: Path) -> dict[str, Any] | None:
    """The stored payload, or None when absent or unreadable (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a torn or foreign file is a cache miss, never an error
        return None
    return payload if isinstance(payload, dict) else None


def load_or_compute(
    path: Path, compute: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], bool]:
    """(payload, whether it came from the cache); a miss computes and stores it under a lock."""
    payload = load_entry(path)
    if payload is not None:
        return payload, True
    with _locked(path):
        payload = load_entry(path)  # written by the process we waited for
        if payload is not None:
            return payload, True
        payload = compute()
        save_entry(path, payload)
    return payload, False


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover
        yield
        return
    lock = path.with_name(f".{path.name}.lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by close, also when the process dies
        yield
    finally:
        os.close(fd)


_CACHE_FIX = "set eval.cache_dir (or $GANRUN_CACHE_DIR) to a writable folder"


def _unwritable(path: Path, exc: OSError) -> GanrunError:
    return GanrunError(
        f"cannot write to the evaluation cache {path.parent} ({exc.strerror or exc}); {_CACHE_FIX}"
    )


def save_entry(path: Path, payload: dict[str, Any]) -> Path:
    """Write atomically, so concurrent runs never read half a file."""
    return atomic_write(
        path,
        lambda f: torch.save(payload, f),
        what=f"to the evaluation cache {path.parent}",
        fix=_CACHE_FIX,
    )
