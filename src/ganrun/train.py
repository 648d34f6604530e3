"""``ganrun train``: validated config -> builders -> trainer -> checkpoints and samples.

Everything that can fail on bad input (checks, data files, model construction) runs before the
first file is written; a rejected command leaves no run folder behind.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from ganrun import distributed
from ganrun.accelerate import accelerate
from ganrun.data import build_data
from ganrun.devices import configure_threads, resolve_device
from ganrun.errors import GanrunError
from ganrun.loggers import check_logger
from ganrun.losses import LOSSES
from ganrun.models import arch_of, build_model
from ganrun.models.ema import EMA
from ganrun.optim import build_optimizer, fused_for
from ganrun.rundir import (
    CHECKPOINTS,
    CONFIG_FILE,
    METRICS_FILE,
    SAMPLES,
    attach_log_file,
    hydra_run_dir,
    remove_if_empty,
    write_run_config,
)
from ganrun.stopping import preemption_signal
from ganrun.sweep import check_objective, objective_value
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
    if cfg.model.conditional and data.train.labels is None:
        raise GanrunError(
            f"model.conditional=true needs labels, but the {cfg.data.train_split!r} split of "
            f"data={cfg.data.name} has none; use model.conditional=false"
        )
    nets = build_model(cfg.model, data.info)
    nets.generator.to(device)
    # The average starts as a plain copy of G, before any speed settings wrap its forward.
    ema = EMA(nets.generator, cfg.model.ema_decay) if cfg.model.ema_decay > 0 else None
    if nets.discriminator is not None:
        nets.discriminator.to(device)
    modules = [m for m in (nets.generator, nets.discriminator) if m is not None]
    accelerate(modules, cfg.trainer, device)
    fused = fused_for(device)
    opt_g = build_optimizer(cfg.optim, nets.generator.parameters(), fused=fused)
    opt_d = None
    if nets.discriminator is not None:
        opt_d = build_optimizer(
            cfg.optim, nets.discriminator.parameters(), fused=fused, lr_scale=cfg.optim.d_lr_scale
        )
    return Setup(cfg, device, data, nets, LOSSES[cfg.loss.name], opt_g, opt_d, ema)


def run(cfg: DictConfig) -> float:
    run_dir = hydra_run_dir()
    resume = resume_setting(cfg.resume, run_dir)
    ddp = None
    if distributed.requested():  # under torchrun: rank 0 writes run_dir, the others scratch
        ddp = distributed.start(cfg.device.type, run_dir)
        run_dir = ddp.out_dir
    try:
        return _run(cfg, run_dir, ddp, resume)
    finally:
        if ddp is not None:
            ddp.close()


def resume_setting(resume: str | None, run_dir: Path) -> str | None:
    """``resume=`` as given, except in a run folder that already holds a checkpoint: a requeued
    submitit job continues from it; anything else would overwrite it, so it is refused."""
    last = run_dir / CHECKPOINTS / "last.pt"
    if resume or not last.exists():
        return resume
    if preemption_signal() is not None:
        log.info("requeued job: continuing from %s", last)
        return "auto"
    raise GanrunError(
        f"{run_dir} already holds a run ({last}); continue it with resume=auto, or start a new "
        "run in another hydra.run.dir"
    )


def _run(
    cfg: DictConfig, run_dir: Path, ddp: distributed.Distributed | None, resume: str | None
) -> float:
    try:
        setup = build_setup(cfg)
        if ddp is not None:
            ddp.prepare(setup)
        trainer = Trainer(setup, run_dir)
        if resume:
            trainer.resume(ddp.resume_target(resume) if ddp is not None else resume)
        if ddp is not None:
            ddp.diverge(trainer, cfg.seed)
            trainer.evaluates = ddp.main
        if cfg.eval.at_end or cfg.eval.every:  # an unusable protocol is refused now
            from ganrun.evaluate import check_at_end

            check_at_end(cfg, setup.nets, setup.data, setup.device)
        check_logger(cfg)
        check_objective(cfg.objective, setup.nets.kind, cfg.eval.at_end)
    except GanrunError:
        remove_if_empty(run_dir)
        raise
    write_run_config(run_dir, cfg)
    handler = attach_log_file(run_dir)
    try:
        last = _train(cfg, setup, trainer)
        # Scoring reloads the checkpoint, so the weights, optimizer state and resident data of
        # training are let go first (on a GPU, room for the feature extractor).
        del setup, trainer
        record = None
        if cfg.eval.at_end and (ddp is None or ddp.main):
            from ganrun.evaluate import evaluate_at_end

            record = evaluate_at_end(run_dir, cfg, announce=True)
    finally:  # a multirun runs many jobs in one process: each keeps its own log file
        logging.getLogger().removeHandler(handler)
        handler.close()
    return objective_value(cfg.objective, last, record, run_dir / METRICS_FILE)


def _train(cfg: DictConfig, setup: Setup, trainer: Trainer) -> dict[str, float]:
    n_g = sum(p.numel() for p in setup.nets.generator.parameters())
    # model=dcgan alone would hide which networks ran where the model offers a choice
    arch = arch_of(cfg.model)
    log.info(
        "model=%s data=%s (%d train images, %dx%d) device=%s, CPU threads: %d, G has %d parameters",
        cfg.model.name + (f" model.arch={arch}" if arch else ""),
        cfg.data.name,
        len(setup.data.train),
        cfg.data.resolution,
        cfg.data.resolution,
        setup.device,
        torch.get_num_threads(),
        n_g,
    )
    if trainer.step:  # resumed: say so in train.log too, which is attached only now
        log.info("continuing from step %d of %d", trainer.step, cfg.train.steps)
    last = trainer.fit()
    run_dir = trainer.run_dir
    print(
        f"ganrun: done. Run folder: {run_dir}  (config: {CONFIG_FILE}, checkpoints: "
        f"{CHECKPOINTS}/last.pt, samples: {SAMPLES}/, metrics: {METRICS_FILE})",
        flush=True,
    )
    return last
