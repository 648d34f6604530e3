"""``ganrun train``: composed config -> checks and builders -> trainer -> checkpoints, samples,
and (``eval.at_end``) the final scoring.

Everything that can fail on bad input (checks, data files, model construction, the evaluation
protocol, the logger, the objective) runs before the first file is written; a rejected command
leaves no run folder behind.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from ganrun.errors import GanrunError
from ganrun.runs.layout import (
    CHECKPOINTS,
    CONFIG_FILE,
    LAST,
    METRICS_FILE,
    SAMPLES,
    attach_log_file,
    hydra_run_dir,
    last_checkpoint,
    remove_if_empty,
    write_run_config,
)
from ganrun.runs.sweep import check_objective, objective_value
from ganrun.training import distributed
from ganrun.training.logs import check_logger
from ganrun.training.loop import Trainer
from ganrun.training.scoring import Scorer
from ganrun.training.setup import Setup, build_setup
from ganrun.training.signals import preemption_signal

log = logging.getLogger("ganrun")


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
    last = last_checkpoint(run_dir)
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
        scorer = None
        if cfg.eval.at_end or cfg.eval.every:  # an unusable protocol is refused now
            scorer = Scorer(setup, run_dir)
            scorer.check()
        main = ddp is None or ddp.main  # one process scores for all
        trainer = Trainer(setup, run_dir, scorer if cfg.eval.every and main else None)
        if resume:
            trainer.resume(ddp.resume_target(resume) if ddp is not None else resume)
        if ddp is not None:
            ddp.diverge(trainer, cfg.seed)
        check_logger(cfg)
        statistics = [s.name for s in setup.family.statistics]
        check_objective(cfg.objective, statistics, cfg.eval.at_end)
    except GanrunError:
        remove_if_empty(run_dir)
        raise
    write_run_config(run_dir, cfg)
    handler = attach_log_file(run_dir)
    try:
        last = _train(cfg, setup, trainer)
        step = trainer.step
        # The final scoring needs the model and data, not the optimizer states or the trainer
        # (on a GPU: room for the feature extractor).
        del trainer
        setup.model.release_training_state()
        record = None
        if cfg.eval.at_end and scorer is not None and main:
            record = scorer(step, last_checkpoint(run_dir), say_so=True)
    finally:  # a multirun runs many jobs in one process: each keeps its own log file
        logging.getLogger().removeHandler(handler)
        handler.close()
    return objective_value(cfg.objective, last, record, run_dir / METRICS_FILE)


def _train(cfg: DictConfig, setup: Setup, trainer: Trainer) -> dict[str, float]:
    sizes = ", ".join(
        f"{name} {sum(p.numel() for p in net.parameters())}"
        for name, net in setup.model.networks.items()
    )
    # model=dcgan alone would hide which networks ran where the model offers a choice
    arch = setup.family.arch(cfg.model)
    log.info(
        "model=%s data=%s (%d train images, %dx%d) device=%s, CPU threads: %d, parameters: %s",
        cfg.model.name + (f" model.arch={arch}" if arch else ""),
        cfg.data.name,
        len(setup.data.train),
        cfg.data.resolution,
        cfg.data.resolution,
        setup.device,
        torch.get_num_threads(),
        sizes,
    )
    if trainer.step:  # resumed: say so in train.log too, which is attached only now
        log.info("continuing from step %d of %d", trainer.step, cfg.train.steps)
    last = trainer.fit()
    print(
        f"ganrun: done. Run folder: {trainer.run_dir}  (config: {CONFIG_FILE}, checkpoints: "
        f"{CHECKPOINTS}/{LAST}, samples: {SAMPLES}/, metrics: {METRICS_FILE})",
        flush=True,
    )
    return last
