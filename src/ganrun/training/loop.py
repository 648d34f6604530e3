"""The training loop, for any model family: :meth:`Trainer.fit`.

Each step is the family's (:meth:`ganrun.models.family.Model.training_step`); around it the loop
applies the optimizer schedules, writes metrics.csv a window at a time, the family's figures every
``train.sample_every`` steps and a checkpoint every ``train.checkpoint_every`` steps
(:mod:`ganrun.runs.checkpoint`), scores the model every ``eval.every`` steps, measures the 2014
paper's theory with the figures on data with a known density (:mod:`ganrun.theory`), ends early
where the model has converged (:attr:`ganrun.models.family.Model.converged`: EM), and stops
cleanly on SIGINT/SIGTERM (and submitit's preemption signal) with a checkpoint and the command
that continues.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ganrun import theory
from ganrun.errors import GanrunError
from ganrun.images import Grid
from ganrun.models.optim import apply_schedule
from ganrun.runs import checkpoint
from ganrun.runs.layout import (
    BEST,
    CHECKPOINTS,
    LAST,
    METRICS_FILE,
    SAMPLES,
    continue_command,
    step_checkpoint,
)
from ganrun.training.accelerate import legacy_channels_last, set_channels_last
from ganrun.training.best import BestCheckpoint
from ganrun.training.logs import MetricsLog, Window, rows_to_keep, with_loggers
from ganrun.training.setup import Setup
from ganrun.training.signals import GracefulStop, RunInterrupted

log = logging.getLogger("ganrun")

# eval.every: scores the weights of a step, saved in the given checkpoint; returns the record.
Scoring = Callable[[int, Path], dict[str, Any]]


class Trainer:
    def __init__(self, setup: Setup, run_dir: Path, scoring: Scoring | None = None) -> None:
        self.setup = setup
        self.cfg = setup.cfg
        self.model = setup.model
        self.run_dir = run_dir
        self.step = 0
        self.scoring = scoring  # None: no eval.every here (or a DDP rank other than 0)
        self.best = BestCheckpoint(self.cfg.eval)
        self.statistics = [s.name for s in setup.family.statistics]
        # On data with a known density, the theory's values join metrics.csv with the figures.
        self.mixture = theory.Mixture.from_extra(setup.data.info.extra)
        self.measured: list[str] = []
        if self.mixture is not None and "samples" in self.model.provides:
            self.measured = theory.measured_columns(self.model)
        self.log_images: Callable[..., None] | None = None  # logger=tensorboard, during fit()
        self.kept_rows: list[list[str]] = []  # of metrics.csv, when resuming
        self.moved: str | None = None  # why a resume is not bit-identical (another device kind)
        # Training noise comes from a generator of its own, so resuming restores it exactly.
        self.noise = torch.Generator(device=setup.device).manual_seed(self.cfg.seed + 1)
        setup.batches.seed(self.cfg.seed + 3)

    # ------------------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, float]:
        cfg = self.cfg.train
        metrics = with_loggers(
            MetricsLog(self.run_dir / METRICS_FILE, self.statistics, self.kept_rows, self.measured),
            self.cfg,
            self.run_dir,
        )
        self.log_images = getattr(metrics, "add_images", None)  # logger=tensorboard
        tty = sys.stdout.isatty()
        bar = tqdm(
            total=cfg.steps, initial=self.step, disable=not tty, unit="step", dynamic_ncols=True
        )
        window: Window = []
        last: dict[str, float] = {}
        model, batches, noise = self.model, self.setup.batches, self.noise
        for net in model.networks.values():
            net.train()
        with GracefulStop() as stop:
            # The loop ends only through `done`: a signal that lands after `done` was computed
            # must still get its checkpoint, one step later, before the run stops.
            while self.step < cfg.steps:
                start = time.perf_counter()
                apply_schedule(self.cfg.optim, model.optimizers, model.lr_scales, self.step)
                stats = model.training_step(batches, noise)
                self.step += 1
                seconds = time.perf_counter() - start
                done = self.step == cfg.steps or stop.requested is not None or model.converged
                if self.measured and (self.step % cfg.sample_every == 0 or done):
                    stats = {**stats, **self.measure()}
                window.append((self.step, stats, seconds))
                bar.update(1)
                keep = self.step % cfg.checkpoint_every == 0 or done
                # Flush before every checkpoint too: a checkpoint is only written once every
                # step before it is known to be finite, so the latest one is always good.
                if self.step % cfg.log_every == 0 or keep:
                    last = metrics.write(window)
                    window.clear()
                    summary = " ".join(f"{k}={v:.4g}" for k, v in last.items() if k != "step")
                    bar.set_postfix_str(summary, refresh=False)
                    if not tty:
                        log.info("step %d/%d %s", self.step, cfg.steps, summary)
                if self.step % cfg.sample_every == 0 or done:
                    self.save_figures()
                if keep:
                    self.check_weights()
                    self.save(periodic=self.step % cfg.checkpoint_every == 0)
                every = self.cfg.eval.every
                if every and self.scoring is not None and self.step % every == 0:
                    self.score_and_keep_best()
                if done:
                    break
        bar.close()
        metrics.close()
        if stop.requested is not None:
            stop.hand_over()
            raise RunInterrupted(
                f"{stop.name} received: stopped after step {self.step}/{cfg.steps}; checkpoint "
                f"saved in {self.run_dir / CHECKPOINTS}; continue with: "
                f"{continue_command(self.run_dir)}",
                stop.requested,
            )
        return last

    def score_and_keep_best(self) -> None:
        """Score the current weights (``eval.every``) and copy them to best.pt when they beat
        every earlier score."""
        assert self.scoring is not None
        folder = self.run_dir / CHECKPOINTS
        path = folder / step_checkpoint(self.step)  # scored under its own name in eval.csv
        if not path.exists():
            self.check_weights()
            self.save(periodic=True)
        record = self.scoring(self.step, path)
        if self.best.update(record, self.step, path):
            state = self.state()
            checkpoint.save_checkpoint(state, folder / BEST)
            checkpoint.save_checkpoint(state, folder / LAST)  # now remembers the best too
            best = self.best.state
            log.info(
                "best %s=%.6g at step %d -> %s",
                best["metric"],
                best["value"],
                self.step,
                folder / BEST,
            )

    def measure(self) -> dict[str, float]:
        """The theory's values for the current weights (:func:`ganrun.theory.measure`): from
        samples of a seed of their own and the validation points, so training's random streams
        are untouched and every run measures on the same inputs."""
        assert self.mixture is not None
        data = self.setup.data
        real, _ = data.split("valid" if "valid" in data.splits else data.train_split).all()
        return theory.measure(
            self.model,
            self.mixture,
            real[: theory.MEASURED_POINTS],
            theory.MEASURED_POINTS,
            self.cfg.seed + 4,
            self.cfg.eval.batch_size,
        )

    def check_weights(self) -> None:
        """Refuse to checkpoint non-finite weights (losses are checked as metrics are written)."""
        for name, net in self.model.networks.items():
            for pname, p in net.named_parameters():
                if not torch.isfinite(p).all():
                    raise GanrunError(
                        f"training diverged by step {self.step}: {name} weight {pname} is not "
                        "finite; the last good checkpoint is kept; lower optim.lr"
                    )

    # ----------------------------------------------------------------------------- outputs
    def save_figures(self) -> list[Path]:
        """The family's figures of this step in samples/ (the first also to TensorBoard)."""
        figures = self.model.figures(self.step, self.setup.data)
        first = figures[0] if figures else None
        if isinstance(first, Grid) and self.log_images is not None:
            self.log_images(self.step, first.images, first.value_range, first.nrow)
        width = self.cfg.train.grid_min_width
        return [figure.save(self.run_dir / SAMPLES, width) for figure in figures]

    def state(self) -> dict[str, Any]:
        rng = checkpoint.capture_rng(self.noise, self.setup.batches)
        return checkpoint.capture(
            self.model,
            step=self.step,
            config=self.cfg,
            best=self.best.state,
            rng=rng,
            channels_last=self.setup.channels_last,
        )

    def save(self, periodic: bool) -> Path:
        folder = self.run_dir / CHECKPOINTS
        state = self.state()
        path = checkpoint.save_checkpoint(state, folder / LAST)
        if periodic:
            checkpoint.save_checkpoint(state, folder / step_checkpoint(self.step))
        return path

    def _keep_layout(self, payload: dict[str, Any]) -> None:
        """trainer.channels_last=auto continues in the layout the run trained in, which a
        resume must keep to be bit-identical (auto's choice changed once, and may again)."""
        trainer, device = self.cfg.trainer, self.setup.device
        if trainer.channels_last != "auto":
            return
        saved = payload.get("channels_last", legacy_channels_last(trainer, device))
        if bool(saved) != self.setup.channels_last:
            log.info(
                "continuing in the checkpoint's layout: channels_last %s", "on" if saved else "off"
            )
            set_channels_last(list(self.model.networks.values()), bool(saved))
            self.setup.channels_last = bool(saved)

    def resume(self, where: str) -> None:
        path = self.run_dir / CHECKPOINTS / LAST if where == "auto" else Path(where)
        if where == "auto" and not path.exists():
            log.info("resume=auto: no checkpoint in %s yet, starting from step 0", path.parent)
            return
        payload = checkpoint.load_checkpoint(path, map_location=self.setup.device)
        family = self.setup.family
        movable = [f"model.{key}" for key in family.adjustable]
        checkpoint.check_resumable(payload, path, family.name, self.cfg, movable)
        self._keep_layout(payload)
        checkpoint.load_state(payload, self.model, path, training=True)
        step = int(payload["step"])
        # Fresh seeds for streams written on another kind of device, distinct for each step a
        # run may move at, so moving twice never replays a stream.
        reseed = self.cfg.seed * 1_000_003 + step
        try:
            reseeded = checkpoint.restore_rng(
                payload["rng"], self.noise, self.setup.batches, reseed
            )
        except (AttributeError, KeyError, TypeError, RuntimeError, ValueError) as exc:
            raise GanrunError(f"checkpoint {path} has no usable random state: {exc}") from exc
        reseeded += self.model.reseeded_streams()
        if reseeded:  # logged as training starts, when train.log is attached too
            *rest, final = reseeded
            streams = f"{', '.join(rest)} and {final}" if rest else final
            self.moved = (
                f"{path} was written on another kind of device than {self.setup.device}: its "
                f"{streams} continue from fresh seeds, so training goes on, but not as the "
                "bit-identical continuation"
            )
        self.step = step
        self.best.load(payload.get("best"))
        self.kept_rows = rows_to_keep(
            self.run_dir / METRICS_FILE, self.statistics, self.step, self.measured
        )
        log.info("resumed from %s at step %d", path, self.step)
