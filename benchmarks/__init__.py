"""`make bench`: every ``bench_*.py`` module here, figures printed and saved as JSON.

A benchmark module defines ``run(quick: bool) -> list[dict]`` (or yields the dicts as it
measures them); each dict is one case with at least ``case`` and the figures it measured (e.g.
``images_per_s``, ``seconds``, ``peak_mem_mb``) and, where it compares against a reference
measured in the same run, ``reference`` and ``ratio``. A module with cases per device also takes
``devices``, the device names :func:`devices` picks.
"""

from __future__ import annotations

import torch


def devices(only: str | None = None) -> list[str]:
    """The devices measured: ``only`` (``--device``), or the CPU and CUDA where available."""
    if only == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks: --device cuda, but CUDA is not available here")
    if only is not None:
        return [only]
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
