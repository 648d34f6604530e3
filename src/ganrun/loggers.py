"""Training loggers: ``metrics.csv`` always; ``logger=tensorboard`` adds TensorBoard files.

TensorBoard writes local event files under ``<run>/tensorboard/`` (no account, no network):
every metrics.csv value as a scalar, each sample grid as an image, and at the end the run's
hyperparameters with its final values (the HPARAMS tab compares the jobs of a sweep). View with
``tensorboard --logdir multirun/<date>/<time>``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ganrun.errors import GanrunError
from ganrun.schema import flat_settings

TENSORBOARD_DIR = "tensorboard"
LOGGERS = ("csv", "tensorboard")


def check_logger(cfg: DictConfig) -> None:
    """Refuse an unknown logger, or TensorBoard when its package is missing, before training."""
    name = cfg.logger.name
    if name not in LOGGERS:
        raise GanrunError(f"unknown logger {name!r}; choose logger= one of: {', '.join(LOGGERS)}")
    if name == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError as exc:
            raise GanrunError(
                "logger=tensorboard needs the tensorboard package: pip install tensorboard"
            ) from exc


def hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's scalar settings, flattened (``optim.lr``, ``model.name``, ...)."""
    settings = flat_settings(OmegaConf.to_container(cfg, resolve=True))
    # Paths say where a run was, not what it was: they would make every run look different.
    return {
        k: v
        for k, v in settings.items()
        if isinstance(v, bool | int | float | str)
        and not k.endswith((".root", "cache_dir"))
        and k not in ("resume",)
    }


class TensorBoardLog:
    """Wraps the trainer's MetricsLog: every window written to metrics.csv also goes to
    TensorBoard, so both always hold the same numbers."""

    def __init__(self, metrics: Any, cfg: DictConfig, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.metrics = metrics
        self.cfg = cfg
        self.writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR))
        self.last: dict[str, float] = {}

    def write(self, window: list[tuple[int, dict[str, torch.Tensor], float]]) -> dict[str, float]:
        last = self.metrics.write(window)  # the host sync and the divergence check happen here
        for step, stats, seconds in window:
            for key, value in stats.items():
                self.writer.add_scalar(f"train/{key}", float(value), step)
            self.writer.add_scalar("train/sec_per_step", seconds, step)
        self.last = last
        return last

    def add_images(
        self,
        step: int,
        images: torch.Tensor,
        value_range: tuple[float, float],
        nrow: int | None = None,
    ) -> None:
        from torchvision.utils import make_grid

        lo, hi = value_range
        images = ((images.detach().float().cpu() - lo) / (hi - lo)).clamp_(0, 1)
        if images.dim() != 4:  # 2-D points have no image to show
            return
        nrow = nrow or max(1, int(math.sqrt(images.shape[0])))
        self.writer.add_image("samples", make_grid(images, nrow=nrow, padding=2), step)

    def close(self) -> None:
        self.metrics.close()
        final = {
            f"final/{k}": float(v)
            for k, v in self.last.items()
            if k != "step" and math.isfinite(float(v))
        }
        if final:
            # run_name="." keeps the hparams record in the run's own event folder.
            self.writer.add_hparams(hparams(self.cfg), final, run_name=".")
        self.writer.close()


def with_loggers(metrics: Any, cfg: DictConfig, run_dir: Path) -> Any:
    """The trainer's metrics sink for ``cfg.logger``: metrics.csv alone, or with TensorBoard."""
    logger = cfg.get("logger")
    if logger is None or logger.name == "csv":
        return metrics
    return TensorBoardLog(metrics, cfg, run_dir)
