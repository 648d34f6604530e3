"""What every model builder returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass
class Networks:
    generator: nn.Module
    discriminator: nn.Module | None  # None for models trained without one (VAE)
    kind: str = "gan"  # gan | vae: which training step (ganrun.steps.STEPS) the trainer runs
