"""The evaluation cache: reference features/statistics and trained data-set classifiers.

Entries live under ``eval.cache_dir`` (``$GANRUN_CACHE_DIR``, else ``~/.cache/ganrun``), one file
per key, named by a hash of the key so that any change to what the entry depends on (data set,
split, resolution, feature extractor, its weights, sample count, seed) lands in a new file. Files
are written atomically and read with ``weights_only=True``. An entry is trusted only when it
parses, holds the fields its kind needs and records the very key it was computed for (entries
written before keys were recorded are taken as they are); anything else is recomputed, with a
warning. Concurrent processes (the jobs of a parallel sweep) that miss the same entry take turns
on a lock file beside it, so the test set's Inception features are computed once, not per job.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ganrun.errors import GanrunError
from ganrun.runs.files import atomic_write, locked

log = logging.getLogger("ganrun")

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


def key_text(key: dict[str, Any]) -> str:
    """A key (a JSON-able dict) as the text entries record and are named by the hash of."""
    return json.dumps(key, sort_keys=True, default=str)


def entry_path(cache_dir: str | Path, kind: str, key: dict[str, Any]) -> Path:
    """Where the entry for ``key`` of ``kind`` lives."""
    digest = hashlib.sha256(key_text(key).encode()).hexdigest()[:20]
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


def _trusted(
    path: Path, key: dict[str, Any] | None, required: tuple[str, ...]
) -> dict[str, Any] | None:
    payload = load_entry(path)
    if payload is None:
        if path.exists():
            log.warning("cache entry %s does not parse; it is computed again", path)
        return None
    recorded = payload.get("cache_key")
    missing = [name for name in required if name not in payload]
    if (key is not None and recorded is not None and recorded != key_text(key)) or missing:
        log.warning("cache entry %s is not what its name promises; it is computed again", path)
        return None
    return payload


def load_or_compute(
    path: Path,
    compute: Callable[[], dict[str, Any]],
    key: dict[str, Any] | None = None,
    required: tuple[str, ...] = (),
) -> tuple[dict[str, Any], bool]:
    """(payload, whether it came from the cache) for the entry at ``path``, computed for
    ``key`` and holding ``required``; a miss computes and stores it under a lock."""
    payload = _trusted(path, key, required)
    if payload is not None:
        return payload, True
    try:
        with locked(path.with_name(f".{path.name}.lock")):
            payload = _trusted(path, key, required)  # written by the process we waited for
            if payload is not None:
                return payload, True
            payload = compute()
            if key is not None:
                payload = {**payload, "cache_key": key_text(key)}
            save_entry(path, payload)
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    return payload, False


CACHE_FIX = "set eval.cache_dir (or $GANRUN_CACHE_DIR) to a writable folder"


def _unwritable(path: Path, exc: OSError) -> GanrunError:
    return GanrunError(
        f"cannot write to the evaluation cache {path.parent} ({exc.strerror or exc}); {CACHE_FIX}"
    )


def save_entry(path: Path, payload: dict[str, Any]) -> Path:
    """Write atomically, so concurrent runs never read half a file."""
    return atomic_write(
        path,
        lambda f: torch.save(payload, f),
        what=f"to the evaluation cache {path.parent}",
        fix=CACHE_FIX,
    )
