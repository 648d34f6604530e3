"""Stop a run cleanly on SIGINT/SIGTERM: finish the step, write a checkpoint, exit with a message.

SLURM (and submitit) preempt jobs with SIGTERM, so handling it is what makes preempted runs
resumable. A second SIGINT aborts at once, for when the user really means it.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

from ganrun.errors import GanrunError


class RunInterrupted(GanrunError):
    """The run stopped on a signal after saving its checkpoint; exit code 128 + signal number."""

    label = "stopped"

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class GracefulStop:
    """Context manager: ``requested`` holds the first signal received, else None."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: abort now, without a checkpoint
        if self.requested is None:
            self.requested = signum

    def __enter__(self) -> GracefulStop:
        # Signal handlers can only be installed from the main thread (not in threaded launchers).
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.requested).name if self.requested else ""
