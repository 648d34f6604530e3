"""The training loop. The whole GAN step reads top to bottom in :meth:`Trainer.gan_step`.

Losses stay on the device as tensors and are read (one host sync) every ``train.log_every``
steps, when a window of per-step rows is written to ``metrics.csv``.
"""

from __future__ import annotations

import csv
import logging
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ganrun import __version__
from ganrun.checkpoint import config_changes, load_checkpoint, save_checkpoint
from ganrun.data import Data
from ganrun.data.plot import plot_points
from ganrun.errors import GanrunError
from ganrun.loggers import with_loggers
from ganrun.losses import GanLoss
from ganrun.models import Networks, sample_noise
from ganrun.models.ema import EMA
from ganrun.optim import apply_schedule
from ganrun.rundir import CHECKPOINTS, METRICS_FILE, SAMPLES, continue_command
from ganrun.samples import save_grid, save_reconstructions
from ganrun.steps import step_for
from ganrun.stopping import GracefulStop, RunInterrupted

log = logging.getLogger("ganrun")

POINTS_PLOTTED = 2000  # generated (and real) points in each scatter plot of 2-D data


@dataclass
class Setup:
    """Everything the builders made from the config, in memory; nothing written yet."""

    cfg: DictConfig
    device: torch.device
    data: Data
    nets: Networks
    loss: GanLoss | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    ema: EMA | None = None  # model.ema_decay > 0: averaged G weights, used for samples


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, setup: Setup, run_dir: Path) -> None:
        self.s = setup
        self.cfg = setup.cfg
        self.run_dir = run_dir
        self.G = setup.nets.generator
        self.D = setup.nets.discriminator
        self.ema = setup.ema
        self.step = 0
        self.best: dict[str, Any] | None = None  # the best eval score so far (eval.every)
        self.evaluates = True  # False on DDP ranks other than 0: one rank scores for all
        device = setup.device
        info = setup.data.info
        # Training noise and the fixed sample-grid noise come from generators of their own, so
        # the grids show the same z over the whole run and resuming restores both exactly.
        self.noise_gen = torch.Generator(device=device).manual_seed(self.cfg.seed + 1)
        fixed_gen = torch.Generator(device=device).manual_seed(self.cfg.seed + 2)
        n = self.cfg.train.num_samples
        if info.kind == "points":
            n = max(n, POINTS_PLOTTED)  # a scatter plot needs many more points than a grid
        self.fixed_z = sample_noise(self.cfg.model, n, device, fixed_gen)
        self.fixed_y, self.grid_cols = None, None
        if self.cfg.model.conditional:  # one class per row
            self.grid_cols = max(1, n // info.num_classes)
            self.fixed_z = self.fixed_z[: self.grid_cols * info.num_classes]
            classes = torch.arange(info.num_classes, device=device)
            self.fixed_y = classes.repeat_interleave(self.grid_cols)
        setup.data.train.seed(self.cfg.seed + 3)

    def noise(self, n: int) -> torch.Tensor:
        return sample_noise(self.cfg.model, n, self.s.device, self.noise_gen)

    # ------------------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, float]:
        cfg = self.cfg.train
        metrics = with_loggers(
            MetricsLog(self.run_dir / METRICS_FILE, keep_until=self.step), self.cfg, self.run_dir
        )
        self.log_images = getattr(metrics, "add_images", None)  # logger=tensorboard
        tty = sys.stdout.isatty()
        bar = tqdm(
            total=cfg.steps, initial=self.step, disable=not tty, unit="step", dynamic_ncols=True
        )
        window: list[tuple[int, dict[str, torch.Tensor], float]] = []
        last: dict[str, float] = {}
        # A local, not an attribute: a step bound to self would make a reference cycle, and a
        # multirun's finished jobs would keep their weights, optimizer state and device-resident
        # data until the cyclic garbage collector happened to run.
        train_step = step_for(self.s.nets.kind, self.cfg.train.simultaneous)
        self.G.train()
        with GracefulStop() as stop:
            # The loop ends only through `done`: a signal that lands after `done` was computed
            # must still get its checkpoint, one step later, before the run stops.
            while self.step < cfg.steps:
                start = time.perf_counter()
                apply_schedule(self.cfg.optim, self.s.opt_g, self.s.opt_d, self.step)
                stats = train_step(self)
                self.step += 1
                window.append((self.step, stats, time.perf_counter() - start))
                bar.update(1)
                done = self.step == cfg.steps or stop.requested is not None
                checkpoint = self.step % cfg.checkpoint_every == 0 or done
                # Flush before every checkpoint too: a checkpoint is only written once every
                # step before it is known to be finite, so the latest one is always good.
                if self.step % cfg.log_every == 0 or checkpoint:
                    last = metrics.write(window)
                    window.clear()
                    summary = " ".join(f"{k}={v:.4g}" for k, v in last.items() if k != "step")
                    bar.set_postfix_str(summary, refresh=False)
                    if not tty:
                        log.info("step %d/%d %s", self.step, cfg.steps, summary)
                if self.step % cfg.sample_every == 0 or done:
                    self.save_samples()
                if checkpoint:
                    self.check_weights()
                    self.save(periodic=self.step % cfg.checkpoint_every == 0)
                every = self.cfg.eval.every
                if every and self.evaluates and self.step % every == 0:
                    self.evaluate_and_keep_best()
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

    def evaluate_and_keep_best(self) -> None:
        """Score the current weights (``eval.every``) and copy them to best.pt when they beat
        every earlier score on ``eval.best_metric``."""
        from ganrun.evaluate import evaluate_at_end

        ev = self.cfg.eval
        folder = self.run_dir / CHECKPOINTS
        path = folder / f"step_{self.step:06d}.pt"  # scored under its own name in eval.csv
        if not path.exists():
            self.check_weights()
            self.save(periodic=True)
        record = evaluate_at_end(self.run_dir, self.cfg, path)
        scores = {k: v for k, v in record["metrics"].items() if isinstance(v, int | float)}
        name = ev.best_metric or next(iter(scores), None)
        if name not in scores:
            # The weights of this step are saved and scored; stopping now loses nothing.
            raise GanrunError(
                f"eval.best_metric={name} is not a score of eval={ev.name}; choose one of: "
                f"{', '.join(scores) or 'none'} (checkpoint kept: {path})"
            )
        value = scores[name]
        better = self.best is None or (
            value < self.best["value"] if ev.best_mode == "min" else value > self.best["value"]
        )
        if better:
            self.best = {"metric": name, "value": float(value), "step": self.step}
            save_checkpoint(self.state(), folder / "best.pt")
            save_checkpoint(self.state(), folder / "last.pt")  # now remembers the best too
            log.info("best %s=%.6g at step %d -> %s", name, value, self.step, folder / "best.pt")

    def check_weights(self) -> None:
        """Refuse to checkpoint non-finite weights (losses are checked as metrics are written)."""
        for name, net in (("generator", self.G), ("discriminator", self.D)):
            if net is None:
                continue
            for pname, p in net.named_parameters():
                if not torch.isfinite(p).all():
                    raise GanrunError(
                        f"training diverged by step {self.step}: {name} weight {pname} is not "
                        "finite; the last good checkpoint is kept; lower optim.lr"
                    )

    # ----------------------------------------------------------------------------- outputs
    @torch.no_grad()
    def save_samples(self) -> Path:
        """The fixed-noise grid (a scatter plot over the data for 2-D points; for a VAE also
        a grid of held-out images above their reconstructions)."""
        G = self.ema.model if self.ema is not None else self.G
        was_training = G.training
        G.eval()
        out = G(self.fixed_z, self.fixed_y)
        info, name = self.s.data.info, f"step_{self.step:06d}.png"
        if info.kind == "points":
            real = self.s.data.train.images[:POINTS_PLOTTED]
            G.train(was_training)
            return plot_points(
                out,
                real,
                info.extra.get("centers"),
                self.run_dir / SAMPLES / name,
                title=f"step {self.step}",
            )
        if self.s.nets.kind == "vae":
            save_reconstructions(G, self.s.data, self.run_dir / SAMPLES / f"recon_{name}")
        G.train(was_training)
        if getattr(self, "log_images", None) is not None:
            self.log_images(self.step, out, info.value_range)
        return save_grid(out, self.run_dir / SAMPLES / name, info.value_range, self.grid_cols)

    def state(self) -> dict[str, Any]:
        s = self.s
        np_state = np.random.get_state()
        return {
            "ganrun_version": __version__,
            "step": self.step,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "kind": s.nets.kind,
            "generator": self.G.state_dict(),
            "discriminator": None if self.D is None else self.D.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "best": self.best,
            "opt_g": s.opt_g.state_dict(),
            "opt_d": None if s.opt_d is None else s.opt_d.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": [
                    np_state[0],
                    torch.from_numpy(np_state[1].astype(np.int64)),
                    *np_state[2:],
                ],
                "python": random.getstate(),
                "noise": self.noise_gen.get_state(),
                "data": s.data.train.state_dict(),
            },
        }

    def save(self, periodic: bool) -> Path:
        folder = self.run_dir / CHECKPOINTS
        state = self.state()
        path = save_checkpoint(state, folder / "last.pt")
        if periodic:
            save_checkpoint(state, folder / f"step_{self.step:06d}.pt")
        return path

    def resume(self, where: str) -> None:
        path = self.run_dir / CHECKPOINTS / "last.pt" if where == "auto" else Path(where)
        if where == "auto" and not path.exists():
            log.info("resume=auto: no checkpoint in %s yet, starting from step 0", path.parent)
            return
        ckpt = load_checkpoint(path, map_location=self.s.device)
        if ckpt.get("kind") != self.s.nets.kind:
            raise GanrunError(
                f"checkpoint {path} holds a {ckpt.get('kind')} model, not a {self.s.nets.kind}"
            )
        saved = ckpt.get("config")
        changes = (
            config_changes(saved, OmegaConf.to_container(self.cfg, resolve=True)) if saved else []
        )
        if changes:
            more = f" and {len(changes) - 1} more" if len(changes) > 1 else ""
            raise GanrunError(
                f"checkpoint {path} was trained with {changes[0]}{more}; resume with the run's "
                "own model, data and loss settings (its config.yaml), or train into a new folder"
            )
        try:
            self.G.load_state_dict(ckpt["generator"])
            if self.D is not None:
                self.D.load_state_dict(ckpt["discriminator"])
            if self.ema is not None:
                self.ema.load_state_dict(ckpt["ema"] or ckpt["generator"])
            self.s.opt_g.load_state_dict(ckpt["opt_g"])
            if self.s.opt_d is not None:
                self.s.opt_d.load_state_dict(ckpt["opt_d"])
        except (RuntimeError, KeyError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise GanrunError(f"checkpoint {path} does not fit this model/config: {first}") from exc
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([t.cpu() for t in rng["cuda"]])
        numpy_state = rng["numpy"]
        np.random.set_state(
            (numpy_state[0], numpy_state[1].numpy().astype(np.uint32), *numpy_state[2:])
        )
        random.setstate(_as_tuple(rng["python"]))
        self.noise_gen.set_state(rng["noise"].cpu())
        self.s.data.train.load_state_dict(rng["data"])
        self.step = int(ckpt["step"])
        self.best = ckpt.get("best")
        log.info("resumed from %s at step %d", path, self.step)


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


class MetricsLog:
    """metrics.csv: one row per step, written a window at a time (one host sync per window)."""

    def __init__(self, path: Path, keep_until: int = 0) -> None:
        self.path = path
        rows: list[list[str]] = []
        if keep_until > 0 and path.exists():
            # Resuming: rows past the checkpoint belong to steps that will be run again.
            with path.open(newline="") as f:
                rows = [r for r in csv.reader(f)]
            rows = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= keep_until]
        self.file = path.open("w", newline="")
        self.writer = csv.writer(self.file)
        self.header: list[str] | None = rows[0] if rows else None
        self.writer.writerows(rows)

    def write(self, window: list[tuple[int, dict[str, torch.Tensor], float]]) -> dict[str, float]:
        keys = list(window[0][1])
        if self.header is None:
            self.header = ["step", *keys, "sec_per_step"]
            self.writer.writerow(self.header)
        stacked = torch.stack([torch.stack([s[k].float() for k in keys]) for _, s, _ in window])
        values = stacked.cpu().tolist()  # the one host sync for the whole window
        for (step, _, seconds), row in zip(window, values, strict=True):
            self.writer.writerow([step, *(f"{v:.6g}" for v in row), f"{seconds:.6g}"])
        self.file.flush()
        for (step, _, _), row in zip(window, values, strict=True):
            bad = [k for k, v in zip(keys, row, strict=True) if not np.isfinite(v)]
            if bad:
                raise GanrunError(
                    f"training diverged at step {step}: {', '.join(bad)} is not finite; the "
                    "last good checkpoint is kept; lower optim.lr or check the data"
                )
        return {"step": window[-1][0], **dict(zip(keys, values[-1], strict=True))}

    def close(self) -> None:
        self.file.close()
