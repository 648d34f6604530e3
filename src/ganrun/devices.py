"""Pick the torch device named by ``device=``: auto, cpu, cuda (or cuda:N) or mps."""

from __future__ import annotations

import os

import torch

from ganrun.errors import GanrunError


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def resolve_device(kind: str) -> torch.device:
    """``auto`` prefers cuda, then mps, then cpu; an explicit choice that is unavailable fails."""
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda" or kind.startswith("cuda:"):
        if not torch.cuda.is_available():
            built = torch.version.cuda or "no CUDA"
            raise GanrunError(
                f"device={kind} but CUDA is not available (torch {torch.__version__}, built with "
                f"{built}); use device=cpu or device=auto"
            )
        index = int(kind.split(":", 1)[1]) if ":" in kind else 0
        if index >= torch.cuda.device_count():
            raise GanrunError(
                f"device={kind} but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        return torch.device(kind)
    if kind == "mps":
        if not _mps_available():
            raise GanrunError("device=mps but Apple MPS is not available; use device=cpu or auto")
        return torch.device("mps")
    raise GanrunError(f"unknown device {kind!r}; choose device=auto, cpu, cuda or mps")


def configure_threads() -> int:
    """Use every core this process may run on (containers often allow fewer than the host has),
    unless OMP_NUM_THREADS asks for a count: then torch already runs with that many. Overriding
    it would oversubscribe the cores when jobs share a machine (two 2-thread jobs on two cores
    ran 3-7x slower than one thread each) and in torchrun's CPU workers, which it sets to 1."""
    requested = os.environ.get("OMP_NUM_THREADS", "")
    if requested.isdigit() and int(requested) > 0:
        return torch.get_num_threads()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows
        cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    return cores
