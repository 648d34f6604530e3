"""Training loggers: ``metrics.csv`` always (:class:`MetricsLog`); ``logger=tensorboard`` adds
TensorBoard files.

metrics.csv has one row per step: the step, the family's statistics (declared beside its training
step, :meth:`ganrun.models.family.Family.statistics`), the values measured only every
``train.sample_every`` steps (the theory's ``jsd``, ``c_g``, ... on data with a known density;
empty cells on the other steps) and ``sec_per_step``. Statistics stay on the device as tensors
and are read (one host sync) a window of steps at a time.

TensorBoard writes local event files under ``<run>/tensorboard/`` (no account, no network):
every metrics.csv value as a scalar, each sample grid as an image, and at the end the run's
hyperparameters with its final values (the HPARAMS tab compares the jobs of a sweep). View with
``tensorboard --logdir multirun/<date>/<time>``.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ganrun.config.schema import flat_settings
from ganrun.errors import GanrunError
from ganrun.runs.files import read_metrics_csv, set_aside

log = logging.getLogger("ganrun")

# (step, statistics, seconds) per step; the statistics are 0-d tensors, and floats for the values
# measured on that step only.
Window = list[tuple[int, dict[str, Any], float]]

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


def csv_header(statistics: list[str]) -> list[str]:
    return ["step", *statistics, "sec_per_step"]


def rows_to_keep(
    path: Path, statistics: list[str], until: int, measured: list[str] | None = None
) -> list[list[str]]:
    """The rows of a run's metrics.csv that a run resumed at step ``until`` keeps (the steps
    after it will be run again). A file with other columns is refused (it was edited, or belongs
    to another run: appending would put numbers under the wrong names); rows that cannot be
    trusted are left out, with a warning that counts them. A file written before ganrun measured
    the ``measured`` columns keeps its rows, with those cells empty."""
    table = read_metrics_csv(path)
    measured = measured or []
    expected = csv_header(statistics + measured)
    if measured and table.header == csv_header(statistics):
        blank = [""] * len(measured)
        table.rows = [[*r[:-1], *blank, r[-1]] for r in table.rows]
        table.header = expected
    if table.header and table.header != expected:
        raise GanrunError(
            f"{path} has the columns {','.join(table.header)}, not this run's "
            f"{','.join(expected)}: it was edited or belongs to another run; move it away to "
            "resume (a new one is started)"
        )
    if table.damaged:
        set_aside(path, f"has {table.damaged} damaged row(s) (cut short or edited), left out")
    return [r for r in table.rows if int(r[0]) <= until]


def _unwritten(path: Path, exc: OSError) -> GanrunError:
    return GanrunError(
        f"could not write {path} ({exc.strerror or exc}); the last good checkpoint is kept: make "
        "room, then continue with resume=auto"
    )


class MetricsLog:
    """metrics.csv: one row per step, written a window at a time (one host sync per window).
    ``measured`` columns are filled on the steps whose statistics hold them, empty elsewhere."""

    def __init__(
        self,
        path: Path,
        statistics: list[str],
        kept: list[list[str]],
        measured: list[str] | None = None,
    ) -> None:
        self.path = path
        self.statistics = statistics
        self.measured = measured or []
        self.checked = False
        try:
            self.file = path.open("w", newline="")
            self.writer = csv.writer(self.file)
            self.writer.writerow(csv_header(statistics + self.measured))
            self.writer.writerows(kept)
        except OSError as exc:
            raise _unwritten(path, exc) from exc

    def write(self, window: Window) -> dict[str, float]:
        keys = [k for k in window[0][1] if k not in self.measured]
        if not self.checked:
            if keys != self.statistics:  # what the report and the objective check rely on
                raise GanrunError(
                    f"the training step returned {', '.join(keys)}, but its family declares "
                    f"{', '.join(self.statistics)} (Family.statistics)"
                )
            self.checked = True
        stacked = torch.stack([torch.stack([s[k].float() for k in keys]) for _, s, _ in window])
        values = stacked.cpu().tolist()  # the one host sync for the whole window
        try:
            for (step, stats, seconds), row in zip(window, values, strict=True):
                extra = [f"{stats[k]:.6g}" if k in stats else "" for k in self.measured]
                self.writer.writerow([step, *(f"{v:.6g}" for v in row), *extra, f"{seconds:.6g}"])
            self.file.flush()
        except OSError as exc:
            raise _unwritten(self.path, exc) from exc
        for (step, _, _), row in zip(window, values, strict=True):
            bad = [k for k, v in zip(keys, row, strict=True) if not np.isfinite(v)]
            if bad:
                raise GanrunError(
                    f"training diverged at step {step}: {', '.join(bad)} is not finite; the "
                    "last good checkpoint is kept; lower optim.lr or check the data"
                )
        measured = {k: float(v) for k, v in window[-1][1].items() if k in self.measured}
        return {"step": window[-1][0], **dict(zip(keys, values[-1], strict=True)), **measured}

    def close(self) -> None:
        try:
            self.file.close()
        except OSError as exc:
            raise _unwritten(self.path, exc) from exc


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

    def write(self, window: Window) -> dict[str, float]:
        last = self.metrics.write(window)  # the host sync and the divergence check happen here
        for step, stats, seconds in window:
            for key, value in stats.items():  # measured values only on the steps that have them
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
        from ganrun.images import grid_image

        self.writer.add_image("samples", grid_image(images, value_range, nrow), step)

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
