"""One writer per run folder: training holds an advisory lock on ``<run>/.ganrun.lock`` for its
whole life.

A second ``ganrun train`` in the same folder (a requeued SLURM job and a resume by hand, two sweep
jobs given one folder, a resume typed in another terminal) is refused at once, with the folder
and the process that holds it. The lock is the operating system's (``flock``), so it goes with
its process: a killed run never leaves a stale lock behind to block ``resume=auto``. The file
says who holds it while it is held and is emptied when it is let go. Readers (``ganrun eval``,
``sample``, ``report``) take no lock: everything they read is written whole or not at all.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import socket
import sys
from pathlib import Path

from ganrun.errors import GanrunError
from ganrun.runs.files import fcntl

LOCK_FILE = ".ganrun.lock"


class RunLock:
    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None
        self.created = False  # by this process: removed again if the run never starts

    def acquire(self) -> None:
        """Take the folder, or fail with a one-line error naming the process that has it."""
        if fcntl is None:  # pragma: no cover (Windows: no advisory locks; nothing is refused)
            return
        existed = self.path.exists()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise GanrunError(
                f"cannot write in the run folder {self.path.parent} ({exc.strerror or exc}); "
                "choose another hydra.run.dir"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise GanrunError(
                f"{self.path.parent} is being written by another ganrun process ({holder}); "
                "wait for it to end or stop it (it saves a checkpoint), then resume=auto"
            ) from None
        self.fd, self.created = fd, not existed
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": shlex.join(["ganrun", *sys.argv[1:]])[:500],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)

    def release(self, discard: bool = False) -> None:
        """Let the folder go (emptying the file). ``discard``: a run that never started removes
        the file it created, so that a refused command leaves the folder as it found it."""
        if self.fd is None:
            return
        if discard and self.created:
            self.path.unlink(missing_ok=True)
        else:
            os.ftruncate(self.fd, 0)
        os.close(self.fd)  # releases the lock
        self.fd = None


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        holder = {}
    if not isinstance(holder, dict) or "pid" not in holder:
        return "its details are not written yet"
    return (
        f"pid {holder['pid']} on {holder.get('host', '?')}, since {holder.get('since', '?')}: "
        f"{holder.get('command', '?')}"
    )
