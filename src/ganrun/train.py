"""``ganrun train``: validated config -> builders -> trainer -> checkpoints and samples.

Everything that can fail on bad input (checks, data files, model construction) runs before the
first file is written; a rejected command leaves no run folder behind.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from ganrun.accelerate import accelerate
from ganrun.data import build_data
from ganrun.devices import configure_threads, resolve_device
from ganrun.errors import GanrunError
from ganrun.losses import LOSSES
from ganrun.models import build_model
from ganrun.optim import build_optimizer
from ganrun.rundir import (
    CHECKPOINTS, CONFIG_FILE, METRICS_FILE, SAMPLES, attach_log_file, hydra_run_dir,
    remove_if_empty, write_run_config,
)
from ganrun.trainer import Setup, Trainer, seed_everything
from ganrun.validate import validate_train_config

log = logging.getLogger("ganrun")


def output_range(output: str) -> tuple[float, float]:
    """The pixel range a generator's output layer produces, which the data is scaled to."""
    return (0.0, 1.0) if output == "sigmoid" else (-1.0, 1.0)


def build_setup(cfg: DictConfig) -> Setup:
    """Run every builder; raises GanrunError on anything that cannot work."""
    validate_train_config(cfg)
    device = resolve_device(cfg.device.type)
    if device.type == "cpu":
        configure_threads()
    seed_everything(cfg.seed)
    data = build_data(cfg.data, output_range(cfg.model.output), device)
    if cfg.train.batch_size > len(data.train):
        raise GanrunError(
            f"train.batch_size={cfg.train.batch_size} is larger than the {len(data.train)} "
            f"training images of data={cfg.data.name}; lower train.batch_size"
        )
    nets = build_model(cfg.model, data.info)
    nets.generator.to(device)
    if nets.discriminator is not None:
        nets.discriminator.to(device)
    modules = [m for m in (nets.generator, nets.discriminator) if m is not None]
    accelerate(modules, cfg.trainer, device)
    fused = device.type == "cuda"  # one kernel per optimizer step instead of one per tensor
    opt_g = build_optimizer(cfg.optim, nets.generator.parameters(), fused=fused)
    opt_d = None
    if nets.discriminator is not None:
        opt_d = build_optimizer(cfg.optim, nets.discriminator.parameters(), fused=fused)
    return Setup(cfg, device, data, nets, LOSSES[cfg.loss.name], opt_g, opt_d)


def run(cfg: DictConfig) -> float | None:
    run_dir = hydra_run_dir()
    try:
        setup = build_setup(cfg)
        trainer = Trainer(setup, run_dir)
        if cfg.resume:
            trainer.resume(cfg.resume)
    except GanrunError:
        remove_if_empty(run_dir)
        raise
    write_run_config(run_dir, cfg)
    handler = attach_log_file(run_dir)
    try:
        last = _train(cfg, setup, trainer)
    finally:  # a multirun runs many jobs in one process: each keeps its own log file
        logging.getLogger().removeHandler(handler)
        handler.close()
    return last.get("loss_g")


def _train(cfg: DictConfig, setup: Setup, trainer: Trainer) -> dict[str, float]:
    n_g = sum(p.numel() for p in setup.nets.generator.parameters())
    log.info("model=%s data=%s (%d train images, %dx%d) device=%s, G has %d parameters",
             cfg.model.name, cfg.data.name, len(setup.data.train), cfg.data.resolution,
             cfg.data.resolution, setup.device, n_g)
    last = trainer.fit()
    run_dir = trainer.run_dir
    print(
        f"ganrun: done. Run folder: {run_dir}  (config: {CONFIG_FILE}, checkpoints: "
        f"{CHECKPOINTS}/last.pt, samples: {SAMPLES}/, metrics: {METRICS_FILE})",
        flush=True,
    )
    return last
