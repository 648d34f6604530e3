"""Stop a run cleanly on SIGINT/SIGTERM: finish the step, write a checkpoint, exit with a message.

SLURM preempts jobs with SIGTERM, so handling it is what makes preempted runs resumable. A second
SIGINT aborts at once, for when the user really means it.

Inside a submitit job (``hydra/launcher=slurm`` or ``submitit_local``) submitit announces
preemption and time-outs with its own signal (USR2 unless ``SUBMITIT_PREEMPT_SIGNAL`` says
otherwise) and requeues the job from its handler. ganrun takes that signal too, finishes the step,
writes the checkpoint, and only then hands over to submitit's handler; the requeued job finds
``last.pt`` in its run folder and continues from it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

from ganrun.errors import GanrunError


class RunInterrupted(GanrunError):
    """The run stopped on a signal after saving its checkpoint; exit code 128 + signal number."""

    label = "stopped"

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def preemption_signal() -> signal.Signals | None:
    """submitit's preemption/time-out signal when this process is a submitit job, else None."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper()
    return getattr(signal, name if name.startswith("SIG") else f"SIG{name}", None)


class GracefulStop:
    """Context manager: ``requested`` holds the first signal received, else None."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, object] = {}
        self.preempt = preemption_signal()
        self.signals = [signal.SIGINT, signal.SIGTERM, *([self.preempt] if self.preempt else [])]
        self._requeue: Callable[[int, FrameType | None], object] | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: abort now, without a checkpoint
        if self.requested is None:
            self.requested = signum

    def __enter__(self) -> GracefulStop:
        # Signal handlers can only be installed from the main thread (not in threaded launchers).
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
            if self.preempt is not None and callable(self._previous[self.preempt]):
                self._requeue = self._previous[self.preempt]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def hand_over(self) -> None:
        """After the checkpoint: let submitit requeue the job (its handler exits the process).
        Returns when there is nothing to hand over to, or on ranks other than 0."""
        if self.requested is not None and self.requested == self.preempt and self._requeue:
            self._requeue(self.requested, None)

    @property
    def name(self) -> str:
        return signal.Signals(self.requested).name if self.requested else ""
