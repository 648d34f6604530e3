"""Models: ``model=<name>`` picks a builder from :data:`MODELS`.

A builder takes the model config and the data set's :class:`~ganrun.data.base.DataInfo` and
returns :class:`Networks`. Generators are called as ``G(z, y)`` and discriminators as ``D(x, y)``;
``y`` is the class label batch for conditional models and ``None`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError
from ganrun.models import dcgan, gan, vae
from ganrun.models.base import Networks
from ganrun.schema import ModelConfig

MODELS: dict[str, Callable[[ModelConfig, DataInfo], Networks]] = {
    "dcgan": dcgan.build,
    "wgan": dcgan.build,  # same networks; the critic flag and clipping come from its config
    "wgan_gp": dcgan.build,  # critic without BatchNorm + gradient penalty, from its config
    "gan": gan.build,
    "vae": vae.build,
}

# Models that also take 2-D point data (data=ring|grid); the others need images.
POINT_MODELS = ("gan",)


def build_model(cfg: ModelConfig, info: DataInfo) -> Networks:
    if cfg.name not in MODELS:
        raise GanrunError(f"unknown model {cfg.name!r}; choose model= one of: {', '.join(MODELS)}")
    if info.kind == "points" and cfg.name not in POINT_MODELS:
        raise GanrunError(
            f"model={cfg.name} needs image data, but data={info.name} is {info.channels}-D "
            f"points; use model={' or model='.join(POINT_MODELS)}"
        )
    if cfg.conditional and info.num_classes == 0:
        raise GanrunError(
            f"model.conditional=true needs class labels, but data={info.name} has none; "
            "use labelled data or model.conditional=false"
        )
    return MODELS[cfg.name](cfg, info)


def sample_noise(
    cfg: ModelConfig, n: int, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Latent codes: N(0, I) (the 2014 GAN's released code too), or U(-1, 1)."""
    if cfg.noise == "uniform":
        z = torch.rand(n, cfg.latent_dim, device=device, generator=generator)
        return z.mul_(2).sub_(1)
    if cfg.noise == "normal":
        return torch.randn(n, cfg.latent_dim, device=device, generator=generator)
    raise GanrunError(f"unknown model.noise {cfg.noise!r}; choose normal or uniform")
