"""Which scored checkpoint is the best so far (``eval.every``, kept as ``checkpoints/best.pt``).

The metric is ``eval.best_metric`` (default: the first value of the scoring that has a
direction), and better means what its registry line declares (:func:`ganrun.metrics.direction`)
unless ``eval.best_mode`` says min or max.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ganrun.errors import GanrunError
from ganrun.metrics import HIGHER, LOWER, direction


class BestCheckpoint:
    def __init__(self, eval_cfg: DictConfig) -> None:
        self.cfg = eval_cfg
        self.state: dict[str, Any] | None = None  # {metric, value, step}; what checkpoints keep

    def load(self, state: dict[str, Any] | None) -> None:
        self.state = state

    def _mode(self, name: str) -> str:
        if self.cfg.best_mode != "auto":
            return self.cfg.best_mode
        better = direction(name)
        if better is None:
            raise GanrunError(
                f"eval.best_metric={name} has no direction (higher or lower is better); set "
                "eval.best_mode=min or eval.best_mode=max, or choose another eval.best_metric"
            )
        return "max" if better == HIGHER else "min"

    def update(self, record: dict[str, Any], step: int, checkpoint: Path) -> bool:
        """Whether the scoring ``record`` of ``step`` beats every earlier one (then it is kept)."""
        scores = {k: v for k, v in record["metrics"].items() if isinstance(v, int | float)}
        ranked = [k for k in scores if direction(k) in (HIGHER, LOWER)]
        name = self.cfg.best_metric or next(iter(ranked or scores), None)
        if name not in scores:
            # The weights of this step are saved and scored; stopping now loses nothing.
            raise GanrunError(
                f"eval.best_metric={name} is not a score of eval={self.cfg.name}; choose one of: "
                f"{', '.join(scores) or 'none'} (checkpoint kept: {checkpoint})"
            )
        value = float(scores[name])
        mode = self._mode(name)
        best = None if self.state is None else self.state["value"]
        if best is not None and not (value < best if mode == "min" else value > best):
            return False
        self.state = {"metric": name, "value": value, "step": step}
        return True
