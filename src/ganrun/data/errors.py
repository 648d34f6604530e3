"""One-line messages for data files that are missing or broken, and tidy failed downloads."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ganrun.errors import GanrunError


def missing(what: str, paths: list[Path], how: str) -> GanrunError:
    looked = ", ".join(str(p) for p in paths)
    return GanrunError(f"{what} not found (looked for {looked}); {how}")


def corrupt(path: Path, why: str, how: str = "delete it and download it again") -> GanrunError:
    return GanrunError(f"{path} is corrupt or not the expected file: {why}; {how}")


def last_line(exc: BaseException) -> str:
    """The most specific line of a (multi-line) exception message: usually the last one."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


@contextmanager
def undone_on_failure(paths: list[Path]) -> Iterator[None]:
    """If the body fails, remove whichever of ``paths`` it created, and any empty parent folder
    it created: a half-downloaded archive must not be mistaken for data on the next run."""
    new = [p for p in paths if not p.exists()]
    parents: list[Path] = []
    for path in paths:
        p = path.parent
        while not p.exists() and p not in parents:
            parents.append(p)
            p = p.parent
    try:
        yield
    except BaseException:
        for path in new:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists() or path.is_symlink():
                path.unlink(missing_ok=True)
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            with suppress(OSError):
                parent.rmdir()
        raise
