"""From a composed config to everything training needs in memory, with nothing written yet.

:func:`build_setup` runs the checks (the config's, then the model family's), picks the device,
seeds, loads the data, builds the family's model and its optimizers and applies the speed
settings. Whatever can fail on bad input fails here, before the run folder gets its first file.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from ganrun.config.checks import check_train_config
from ganrun.data import Data, build_data
from ganrun.devices import configure_threads, resolve_device
from ganrun.errors import GanrunError
from ganrun.models import Family, Model, build_model, family_of
from ganrun.models.optim import fused_for
from ganrun.runs.checkpoint import load_checkpoint
from ganrun.training.accelerate import accelerate


@dataclass
class Setup:
    """Everything the builders made from the config, in memory; nothing written yet."""

    cfg: DictConfig
    device: torch.device
    data: Data  # every split, whole (evaluation reads them)
    batches: Any  # the split training draws from: data.train, or a DDP process's share of it
    family: Family
    model: Model
    channels_last: bool = False  # the networks' layout (trainer.channels_last, resolved)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_setup(cfg: DictConfig) -> Setup:
    """Run every check and builder; a GanrunError on anything that cannot work."""
    check_train_config(cfg)
    family = family_of(cfg.model.name)
    device = resolve_device(cfg.device.type)
    if device.type == "cpu":
        configure_threads()
    seed_everything(cfg.seed)
    data = build_data(cfg.data, family.value_range(cfg.model), device)
    if cfg.train.batch_size > len(data.train):
        raise GanrunError(
            f"train.batch_size={cfg.train.batch_size} is larger than the {len(data.train)} "
            f"training images of data={cfg.data.name}; lower train.batch_size"
        )
    family.check_data(cfg, data)
    model = build_model(cfg.model, data.info).to(device)
    source = model.init_source()
    if source:  # before the averages, which start from these weights (a resume loads over it)
        model.start_from(load_checkpoint(Path(source).expanduser())["networks"], source)
    model.use_data(data)
    # The averages start as plain copies, before any speed setting wraps a network's forward.
    model.keep_averages(cfg.model.ema_decay)
    networks = list(model.networks.values())
    channels_last = accelerate(networks, cfg.trainer, device, model.channels_last_on_cpu)
    model.configure_training(cfg, fused=fused_for(device))
    return Setup(cfg, device, data, data.train, family, model, channels_last)
