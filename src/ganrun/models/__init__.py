"""Models: ``model=<name>`` picks a builder from :data:`MODELS`, and ``model.arch=<name>`` the
networks of a model that offers several (:data:`ARCHS`).

A builder takes the model config and the data set's :class:`~ganrun.data.base.DataInfo` and
returns :class:`Networks`. Generators are called as ``G(z, y)`` and discriminators as ``D(x, y)``;
``y`` is the class label batch for conditional models and ``None`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError
from ganrun.models import dcgan, gan, infogan, vae
from ganrun.models.base import Networks
from ganrun.schema import ModelConfig

Builder = Callable[[ModelConfig, DataInfo], Networks]

# The networks of the convolutional GANs: ``model.arch=<name>``.
CONV_ARCHS: dict[str, Builder] = {"conv": dcgan.build, "infogan": infogan.build}

# Each model that offers a choice of networks, and its choices (the others have one network).
ARCHS: dict[str, dict[str, Callable[..., object]]] = {
    "dcgan": CONV_ARCHS,
    "wgan": CONV_ARCHS,
    "wgan_gp": CONV_ARCHS,
    "vae": vae.ARCHS,
}


def check_arch(cfg: ModelConfig) -> None:
    """``model.arch`` must name one of the model's networks."""
    choices = ARCHS.get(cfg.name)
    if choices is not None and cfg.arch not in choices:
        raise GanrunError(
            f"model.arch={cfg.arch!r} is not a network of model={cfg.name}; choose "
            f"model.arch= one of: {', '.join(choices)}"
        )


def arch_of(cfg: ModelConfig) -> str | None:
    """The networks the model runs, where it offers a choice; ``None`` where it has one."""
    return cfg.arch if cfg.name in ARCHS else None


def _conv_gan(cfg: ModelConfig, info: DataInfo) -> Networks:
    return CONV_ARCHS[cfg.arch](cfg, info)


MODELS: dict[str, Builder] = {
    "dcgan": _conv_gan,
    "wgan": _conv_gan,  # same networks; the critic flag and clipping come from its config
    "wgan_gp": _conv_gan,  # critic without BatchNorm + gradient penalty, from its config
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
    check_arch(cfg)
    if cfg.conditional and info.num_classes == 0:
        raise GanrunError(
            f"model.conditional=true needs class labels, but data={info.name} has none; "
            "use labelled data or model.conditional=false"
        )
    return MODELS[cfg.name](cfg, info)


def sample_noise(
    cfg: ModelConfig, n: int, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Latent codes: N(0, s^2 I) or U(-s, s), s = ``model.noise_scale``."""
    s = cfg.noise_scale
    if cfg.noise == "uniform":
        z = torch.rand(n, cfg.latent_dim, device=device, generator=generator)
        return z.mul_(2 * s).sub_(s)
    if cfg.noise == "normal":
        return torch.randn(n, cfg.latent_dim, device=device, generator=generator).mul_(s)
    raise GanrunError(f"unknown model.noise {cfg.noise!r}; choose normal or uniform")
