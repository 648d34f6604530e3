"""``ganrun train``: composed config -> checks and builders -> trainer -> checkpoints, samples,
and (``eval.at_end``) the final scoring.

Everything that can fail on bad input (checks, data files, model construction, the evaluation
protocol, the logger, the objective) runs before the first file is written; a rejected command
leaves no run folder behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from ganrun.errors import GanrunError
from ganrun.runs.files import check_writable
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
from ganrun.runs.lock import RunLock
from ganrun.runs.sweep import check_objective, objective_value
from ganrun.training import distributed
from ganrun.training.logs import check_logger
from ganrun.training.loop import Trainer
from ganrun.training.scoring import Scorer
from ganrun.training.setup import Setup, build_setup
from ganrun.training.signals import preemption_signal

log = logging.getLogger("ganrun")


def run(cfg: DictConfig) -> float:
    hydra_dir = hydra_run_dir()
    ddp = None
    if distributed.requested():  # under torchrun: rank 0 writes the run folder, the others scratch
        ddp = distributed.start(cfg.device.type, hydra_dir)
    run_dir = hydra_dir if ddp is None else ddp.out_dir
    lock = RunLock(run_dir) if ddp is None or ddp.main else None
    try:
        try:
            if lock is not None:
                lock.acquire()  # first: a second writer is refused before it reads anything
            resume = resume_setting(cfg.resume, hydra_dir)
            ready = _prepare(cfg, run_dir, ddp, resume)
        except BaseException:  # refused (or a config value that fails when read): nothing written
            if lock is not None:
                lock.release(discard=True)
            remove_if_empty(run_dir)
            raise
        return _execute(cfg, run_dir, ready)
    finally:
        if lock is not None:
            lock.release()
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


@dataclass
class Ready:
    """A run that passed every check, with nothing written yet."""

    setup: Setup
    trainer: Trainer
    scorer: Scorer | None  # eval.at_end, on the process that scores (rank 0 under torchrun)


def _prepare(
    cfg: DictConfig, run_dir: Path, ddp: distributed.Distributed | None, resume: str | None
) -> Ready:
    """Every check and builder, before the first file is written."""
    setup = build_setup(cfg)
    if ddp is not None:
        ddp.prepare(setup)
    main = ddp is None or ddp.main
    scorer = None
    if cfg.eval.at_end or cfg.eval.every:  # an unusable protocol is refused now
        scorer = Scorer(setup, run_dir)
        scorer.check()
    trainer = Trainer(setup, run_dir, scorer if cfg.eval.every and main else None)
    if resume:
        trainer.resume(ddp.resume_target(resume) if ddp is not None else resume)
    if ddp is not None:
        ddp.diverge(trainer, cfg.seed)
    check_logger(cfg)
    check_objective(cfg.objective, trainer.statistics + trainer.measured, cfg.eval.at_end)
    if main:
        room, why = _room_needed(cfg, trainer)
        check_writable(run_dir, "choose another hydra.run.dir", room, why)
    return Ready(setup, trainer, scorer if main else None)


def _room_needed(cfg: DictConfig, trainer: Trainer) -> tuple[int, str]:
    """Disk space the run's checkpoints will take: every one it keeps, last.pt, and a last.pt
    being replaced (weights, EMA copies, and up to two optimizer moments per weight)."""
    model = trainer.model
    sizes = {name: _state_bytes(net) for name, net in model.networks.items()}
    one = 3 * sum(sizes.values()) + sum(sizes[n] for n in model.averages) + 2**20
    left = max(0, cfg.train.steps - trainer.step)
    count = left // cfg.train.checkpoint_every + 2
    size = f"{one / 2**20:.0f} MiB"
    why = f"{count} checkpoints of about {size}; a larger train.checkpoint_every keeps fewer"
    return count * one + 2**24, why


def _state_bytes(net: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in net.state_dict().values())


def _execute(cfg: DictConfig, run_dir: Path, ready: Ready) -> float:
    write_run_config(run_dir, cfg)
    handler = attach_log_file(run_dir)
    try:
        setup, scorer = ready.setup, ready.scorer
        last = _train(cfg, setup, ready.trainer)
        step = ready.trainer.step
        # The final scoring needs the model and data, not the trainer or the optimizer states
        # (on a GPU: room for the feature extractor).
        ready.trainer = None  # type: ignore[assignment]
        setup.model.release_training_state()
        record = None
        if cfg.eval.at_end and scorer is not None:
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
    if trainer.moved:
        log.warning(trainer.moved)
    last = trainer.fit()
    print(
        f"ganrun: done. Run folder: {trainer.run_dir}  (config: {CONFIG_FILE}, checkpoints: "
        f"{CHECKPOINTS}/{LAST}, samples: {SAMPLES}/, metrics: {METRICS_FILE})",
        flush=True,
    )
    return last
