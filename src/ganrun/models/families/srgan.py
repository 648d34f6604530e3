"""SRGAN (Ledig et al. 2017): SRResNet's generator trained against a discriminator.

The generator (:mod:`ganrun.models.families.superres`, whose settings it shares) minimises the
content loss (``model.content``: mse, the paper's SRGAN-MSE, or vgg) plus
``model.adversarial_weight`` (1e-3) times the non-saturating adversarial loss -log D(G(x_LR));
the discriminator (:class:`~ganrun.models.nets.srgan.SRDiscriminator`, width ``model.d_width``,
``model.d_dense`` dense units) takes one step on the usual cross-entropy of original against
super-resolved images before each generator step. The paper started SRGAN from a trained
SRResNet: ``model.init_from=<its checkpoint>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from ganrun.data.base import DataInfo
from ganrun.errors import require
from ganrun.models.families.superres import SuperresConfig, SuperresFamily, SuperresModel
from ganrun.models.family import Statistic
from ganrun.models.nets.srgan import SRDiscriminator


@dataclass
class SrganConfig(SuperresConfig):
    d_width: int = 64  # the discriminator's first layer (the paper: 64, doubling to 512)
    d_dense: int = 1024  # its dense layer (the paper: 1024)
    adversarial_weight: float = 1e-3  # the adversarial loss's weight beside the content loss


class SrganModel(SuperresModel):
    @property
    def D(self) -> torch.nn.Module:
        return self.networks["discriminator"]

    def configure_training(self, cfg: DictConfig, fused: bool) -> None:
        super().configure_training(cfg, fused)
        self.add_optimizer(
            "discriminator", self.D.parameters(), cfg.optim, fused, lr_scale=cfg.optim.d_lr_scale
        )

    def training_step(self, batches: Any, noise: torch.Generator) -> dict[str, torch.Tensor]:
        G, D = self.G, self.D
        hr, _ = batches.batch(self.batch_size)
        sr = G(self.low_resolution(hr))

        # D: originals against super-resolved images.
        D.requires_grad_(True)
        real, fake = D(hr), D(sr.detach())
        loss_d = F.binary_cross_entropy_with_logits(
            real, torch.ones_like(real)
        ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        opt_d = self.optimizers["discriminator"]
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.sync_gradients(D)
        opt_d.step()

        # G: content + weight x -log D(G(x_LR)), through the updated, frozen D.
        D.requires_grad_(False)
        judged = D(sr)
        adversarial = F.binary_cross_entropy_with_logits(judged, torch.ones_like(judged))
        content = self.content_loss(sr, hr)
        loss_g = content + self.cfg.adversarial_weight * adversarial
        opt_g = self.optimizers["generator"]
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.sync_gradients(G)
        opt_g.step()
        self.update_averages()
        return {
            "content": content.detach(),
            "loss_g": adversarial.detach(),
            "loss_d": loss_d.detach(),
            "d_real": torch.sigmoid(real.detach()).mean(),
            "d_fake": torch.sigmoid(fake.detach()).mean(),
        }


class SrganFamily(SuperresFamily):
    name = "srgan"
    models = ("srgan",)
    schema = SrganConfig
    model_class = SrganModel
    statistics = (
        Statistic("content", "the content loss: MSE of pixels, or of VGG19 feature maps"),
        Statistic("loss_g", "G's adversarial loss, -log D(G(x_LR)) (before its weight)"),
        Statistic("loss_d", "D's cross-entropy on originals and super-resolved images"),
        Statistic("d_real", "mean D(x) on original images", panel="d_outputs"),
        Statistic("d_fake", "mean D(G(x_LR)) on super-resolved images", panel="d_outputs"),
    )

    def check(self, cfg: DictConfig) -> None:
        super().check(cfg)
        m = cfg.model
        for key in ("d_width", "d_dense"):
            require(m[key] >= 1, f"model.{key}={m[key]} must be at least 1")
        require(
            m.adversarial_weight >= 0,
            f"model.adversarial_weight={m.adversarial_weight} must be non-negative",
        )

    def networks(self, cfg: DictConfig, info: DataInfo) -> dict[str, torch.nn.Module]:
        networks = super().networks(cfg, info)  # the generator first: its weights come first
        d = SRDiscriminator(info.channels, cfg.d_width, cfg.d_dense, info.resolution)
        return {**networks, "discriminator": d}


FAMILY = SrganFamily()
