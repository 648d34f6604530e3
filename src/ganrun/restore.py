"""Rebuild what a checkpoint holds: its run config, data set and networks, ready to sample.

Shared by ``ganrun eval`` and ``ganrun sample``. The model comes from the config saved in the
checkpoint, never from the command line, so a checkpoint is always rebuilt as it was trained.
EMA weights of the generator are preferred when the checkpoint has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ganrun.checkpoint import load_checkpoint
from ganrun.data import Data, build_data
from ganrun.errors import GanrunError
from ganrun.models import build_model, sample_noise
from ganrun.models.base import Networks
from ganrun.schema import RunConfig
from ganrun.train import output_range


@dataclass
class Restored:
    path: Path
    config: DictConfig  # the run's config, typed by RunConfig
    nets: Networks
    data: Data
    step: int
    weights: str  # which generator weights were loaded: "ema" or "generator"

    @property
    def generator(self) -> torch.nn.Module:
        return self.nets.generator

    @property
    def kind(self) -> str:
        return self.nets.kind


def run_config(payload: dict[str, Any], path: Path, data_root: str | None = None) -> DictConfig:
    """The checkpoint's saved config, checked against today's schema."""
    saved = payload.get("config")
    if not isinstance(saved, dict):
        raise GanrunError(f"checkpoint {path} has no saved config; it cannot be rebuilt")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(RunConfig), saved)
    except Exception as exc:  # OmegaConf raises many types for a key/type mismatch
        raise GanrunError(
            f"the config saved in {path} does not fit this ganrun version: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    if data_root:
        cfg.data.root = str(data_root)
    return cfg


def data_for(cfg: DictConfig, device: torch.device, cache: dict[str, Data] | None = None) -> Data:
    """The run's data set, built once per distinct data config when ``cache`` is given."""
    key = OmegaConf.to_yaml(cfg.data) + repr(output_range(cfg.model.output)) + str(device)
    if cache is not None and key in cache:
        return cache[key]
    data = build_data(cfg.data, output_range(cfg.model.output), device)
    if cache is not None:
        cache[key] = data
    return data


def restore(
    path: str | Path,
    device: torch.device,
    data_root: str | None = None,
    data_cache: dict[str, Data] | None = None,
) -> Restored:
    """Load ``path`` and rebuild its generator (eval mode, on ``device``) and data set."""
    path = Path(path)
    payload = load_checkpoint(path, map_location="cpu")
    cfg = run_config(payload, path, data_root)
    data = data_for(cfg, device, data_cache)
    nets = build_model(cfg.model, data.info)
    weights = "ema" if payload.get("ema") is not None else "generator"
    try:
        nets.generator.load_state_dict(payload[weights])
    except (KeyError, RuntimeError) as exc:
        raise GanrunError(
            f"checkpoint {path} does not match the model its config describes "
            f"({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from exc
    nets.generator.to(device).eval().requires_grad_(False)
    if nets.discriminator is not None:  # evaluation never needs D: free its memory
        nets.discriminator = None
    return Restored(path, cfg, nets, data, int(payload.get("step", 0)), weights)


@torch.no_grad()
def generate(restored: Restored, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """``n`` samples in the data's value range, on the CPU, reproducible from ``seed``.

    Conditional models get uniformly drawn labels from the same seeded generator."""
    device = next(restored.generator.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    cfg = restored.config
    num_classes = restored.data.info.num_classes
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        z = sample_noise(cfg.model, m, device, gen)
        y = None
        if cfg.model.conditional:
            y = torch.randint(0, num_classes, (m,), device=device, generator=gen)
        out.append(restored.generator(z, y).float().cpu())
    return torch.cat(out)
