"""The GANs: ``model=gan`` (Goodfellow et al. 2014), ``dcgan``, ``wgan`` and ``wgan_gp``.

One family: a generator G(z, y) and a discriminator or critic D(x, y), trained against each other
with a ``loss=`` objective. The four options differ only in their networks and in the paper
defaults their YAML sets (critic output, weight clipping, gradient penalty, optimizer).
The training step reads top to bottom in :meth:`GanModel.alternating_step` (Algorithm 1 of the
2014 paper) and :meth:`GanModel.simultaneous_step` (the 2014 released code's update).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig

from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError, require
from ganrun.models.family import Family, ModelConfig, Statistic
from ganrun.models.latent import LatentModel, check_latent
from ganrun.models.losses import LOSSES, d_of, gradient_penalty
from ganrun.models.nets import dcgan, infogan, mlp


@dataclass
class GanConfig(ModelConfig):
    latent_dim: int = 100
    noise: str = "normal"  # normal | uniform
    # normal: N(0, s^2 I); uniform: U(-s, s). The 2014 released code's "uniform" is U(-sqrt 3,
    # sqrt 3), unit variance, where U(-1, 1) (Lucic et al.) has variance 1/3.
    noise_scale: float = 1.0
    width: int = 64  # base channel count of convolutional nets (ngf/ndf)
    g_hidden: list[int] = field(default_factory=lambda: [1200, 1200])  # gan: G's hidden layers
    d_hidden: list[int] = field(default_factory=lambda: [240, 240])  # gan: D's maxout layers
    maxout_pieces: int = 5
    init_range: list[float] = field(default_factory=lambda: [0.05, 0.005])  # gan: U(-r, r), G, D
    # gan: G's output bias starts at zero, or (data_mean) so that an untrained G already puts out
    # the training split's mean image, as the 2014 released code started its sigmoid layer.
    output_bias: str = "zero"
    dropout_input: float = 0.0  # drop probability on D's input
    dropout_hidden: float = 0.0  # drop probability on D's hidden layers
    d_batchnorm: bool = True
    output: str = "tanh"  # G's output: tanh (data in [-1, 1]) | sigmoid ([0, 1])
    critic: bool = False  # D outputs an unbounded score instead of a logit
    clip_value: float = 0.0  # WGAN weight clipping; 0 = off
    gp_weight: float = 0.0  # WGAN-GP gradient penalty weight; 0 = off
    arch: str = "conv"  # dcgan, wgan, wgan_gp: conv (DCGAN's) | infogan (Lucic et al.'s)
    conditional: bool = False  # one-hot label into G, projection discriminator


# model.arch=<name>: the networks of the convolutional GANs; model=gan has its MLPs only.
CONV_ARCHS = {"conv": dcgan.build, "infogan": infogan.build}
MLP_MODEL = "gan"


class GanModel(LatentModel):
    averaged = ("generator",)

    @property
    def provides(self) -> frozenset[str]:  # type: ignore[override]
        # D(x) is a probability only for a sigmoid D, and needs no label only unconditionally:
        # then the theory metrics may compare it with D* (d_gap, the 1-D figures).
        if self.cfg.critic or self.cfg.conditional:
            return frozenset({"samples", "features"})
        return frozenset({"samples", "discriminator", "features"})

    feature_layers = {"penultimate": "D's last hidden layer"}

    @property
    def channels_last_on_cpu(self) -> bool:  # type: ignore[override]
        # Measured on 2 CPU cores (docs/PERFORMANCE.md): DCGAN's networks 1.10-1.12x; the
        # InfoGAN networks (mostly dense layers) 0.97x; WGAN-GP's double backward 0.93-1.03x.
        return self.cfg.name != MLP_MODEL and self.cfg.arch == "conv" and not self.cfg.gp_weight

    @torch.no_grad()
    def features(self, x: torch.Tensor, layer: str = "penultimate") -> torch.Tensor:
        """D's last hidden layer on images ``x``, in eval mode: what a GAN learns about images
        beside its samples (Radford et al. 2016 classify with D's features)."""
        with self.evaluating():
            return self.hidden(x.to(self.device)).float()

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """D's last hidden layer, called beside DDP's wrapper: no D gradient is synchronised
        through it (feature matching's G step freezes D; features are read without any)."""
        return getattr(self.D, "module", self.D).hidden(x)

    @torch.no_grad()
    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """D(x) as a probability, in eval mode (no dropout), on the CPU."""
        with self.evaluating():
            return d_of(self.D(x.to(self.device)), critic=False).reshape(-1).float().cpu()

    @property
    def G(self) -> torch.nn.Module:
        return self.networks["generator"]

    @property
    def D(self) -> torch.nn.Module:
        return self.networks["discriminator"]

    def configure_training(self, cfg: DictConfig, fused: bool) -> None:
        super().configure_training(cfg, fused)
        self.loss = LOSSES[cfg.loss.name]
        self.batch_size, self.d_steps = cfg.train.batch_size, cfg.train.d_steps
        self.simultaneous = cfg.train.simultaneous
        self.gp_weight, self.clip = self.cfg.gp_weight, self.cfg.clip_value
        self.critic = self.cfg.critic
        self.add_optimizer("generator", self.G.parameters(), cfg.optim, fused)
        self.add_optimizer(
            "discriminator", self.D.parameters(), cfg.optim, fused, lr_scale=cfg.optim.d_lr_scale
        )

    @property
    def uses_ddp(self) -> bool:
        # The simultaneous update's two partial backward passes are invisible to DDP's hooks.
        return not self.simultaneous

    def training_step(self, batches: Any, noise: torch.Generator) -> dict[str, torch.Tensor]:
        if self.simultaneous:
            return self.simultaneous_step(batches, noise)
        return self.alternating_step(batches, noise)

    def alternating_step(self, batches: Any, noise: torch.Generator) -> dict[str, torch.Tensor]:
        """``train.d_steps`` discriminator steps, then one generator step (Algorithm 1, 2014)."""
        G, D, loss = self.G, self.D, self.loss
        opt_g, opt_d = self.optimizers["generator"], self.optimizers["discriminator"]
        n, k, gp, clip = self.batch_size, self.d_steps, self.gp_weight, self.clip

        # (1) D/critic: k steps on real batches against fakes it cannot backpropagate into.
        D.requires_grad_(True)
        for i in range(k):
            real, labels = batches.batch(n)
            # The last fake batch keeps its graph: G's step reuses it instead of running G again.
            with torch.set_grad_enabled(i == k - 1):
                fake = G(self.noise(n, noise), labels)
            d_real, d_fake = D(real, labels), D(fake.detach(), labels)
            loss_d = loss.d(d_real, d_fake)
            if gp > 0:
                loss_d = loss_d + gp * gradient_penalty(D, real, fake, labels)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            if clip > 0:  # WGAN's Lipschitz constraint by weight clipping
                with torch.no_grad():
                    params = list(D.parameters())
                    torch._foreach_clamp_min_(params, -clip)
                    torch._foreach_clamp_max_(params, clip)

        # (2) G: one step through the updated, frozen D (its weights need no gradients here).
        D.requires_grad_(False)
        loss_g = self.g_loss(fake, real, labels)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        self.update_averages()

        return self._stats(loss_d, loss_g, d_real, d_fake)

    def simultaneous_step(self, batches: Any, noise: torch.Generator) -> dict[str, torch.Tensor]:
        """G and D step together (``train.simultaneous=true``), as the 2014 released code did: one
        forward pass, so G's objective sees D's pre-update weights and the same dropout masks."""
        G, D, loss, n = self.G, self.D, self.loss, self.batch_size
        opt_g, opt_d = self.optimizers["generator"], self.optimizers["discriminator"]

        D.requires_grad_(True)
        real, labels = batches.batch(n)
        fake = G(self.noise(n, noise), labels)
        d_real, d_fake = D(real, labels), D(fake, labels)
        loss_d = loss.d(d_real, d_fake)
        loss_g = self.g_loss(fake, real, labels) if loss.matches_features else loss.g(d_fake)
        opt_d.zero_grad(set_to_none=True)
        opt_g.zero_grad(set_to_none=True)
        # Each loss differentiates only its own player's weights: D's loss must not move G.
        loss_d.backward(inputs=list(D.parameters()), retain_graph=True)
        loss_g.backward(inputs=list(G.parameters()))
        self.sync_gradients(G, D)  # across torchrun ranks (DDP cannot follow two partial passes)
        opt_d.step()
        opt_g.step()
        self.update_averages()

        return self._stats(loss_d, loss_g, d_real, d_fake)

    def g_loss(
        self, fake: torch.Tensor, real: torch.Tensor, labels: torch.Tensor | None
    ) -> torch.Tensor:
        """G's loss: of D(G(z)), or with feature matching of D's last hidden layer on the fakes
        against that on the real batch."""
        if not self.loss.matches_features:
            return self.loss.g(self.D(fake, labels))
        with torch.no_grad():
            target = self.hidden(real)
        return self.loss.g(self.hidden(fake), target)

    def _stats(
        self,
        loss_d: torch.Tensor,
        loss_g: torch.Tensor,
        d_real: torch.Tensor,
        d_fake: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        critic = self.critic
        return {
            "loss_d": loss_d.detach(),
            "loss_g": loss_g.detach(),
            "d_real": d_of(d_real.detach(), critic).mean(),
            "d_fake": d_of(d_fake.detach(), critic).mean(),
        }


class GAN(Family):
    name = "gan"
    models = ("dcgan", "wgan", "wgan_gp", MLP_MODEL)
    schema = GanConfig
    simultaneous = True
    # What GanModel._stats returns; d_real and d_fake are probabilities for a sigmoid D, raw
    # scores for a critic.
    statistics = (
        Statistic("loss_d", "D's (or the critic's) loss"),
        Statistic("loss_g", "G's loss"),
        Statistic("d_real", "mean D(x) on real batches", panel="d_outputs"),
        Statistic("d_fake", "mean D(G(z)) on generated batches", panel="d_outputs"),
    )

    def data_kinds(self, model: str) -> tuple[str, ...]:
        # The 2014 MLPs also take and produce 2-D points (data=ring|grid).
        return ("image", "points") if model == MLP_MODEL else ("image",)

    def arch(self, cfg: DictConfig) -> str | None:
        return None if cfg.name == MLP_MODEL else cfg.arch

    def check(self, cfg: DictConfig) -> None:
        m, t = cfg.model, cfg.train
        check_latent(m)
        require(m.width >= 1, f"model.width={m.width} must be at least 1")
        require(
            len(m.init_range) == 2 and all(r > 0 for r in m.init_range),
            f"model.init_range={list(m.init_range)} must be two positive numbers (G, D)",
        )
        require(
            m.output in ("tanh", "sigmoid"), f"model.output={m.output!r} must be tanh or sigmoid"
        )
        require(
            m.output_bias in ("zero", "data_mean"),
            f"model.output_bias={m.output_bias!r} must be zero or data_mean",
        )
        require(
            m.output_bias == "zero" or m.name == MLP_MODEL,
            f"model.output_bias=data_mean is a model={MLP_MODEL} option; model={m.name} has no "
            "per-pixel output bias, use model.output_bias=zero",
        )
        require(
            not (LOSSES[cfg.loss.name].needs_critic and not m.critic),
            f"loss={cfg.loss.name} needs a critic with an unbounded output, but model="
            f"{m.name} has a sigmoid discriminator; use model=wgan or model=wgan_gp",
        )
        require(
            not (m.gp_weight > 0 and not m.critic),
            f"model.gp_weight={m.gp_weight} needs a critic (model.critic=true), but model="
            f"{m.name} has a sigmoid discriminator",
        )
        require(
            not (LOSSES[cfg.loss.name].matches_features and m.critic),
            f"loss={cfg.loss.name} trains D as a classifier, but model={m.name} has a critic; "
            "use model=dcgan or model=gan",
        )
        require(m.clip_value >= 0, f"model.clip_value={m.clip_value} must be 0 (off) or positive")
        require(m.gp_weight >= 0, f"model.gp_weight={m.gp_weight} must be 0 (off) or positive")
        require(m.maxout_pieces >= 1, f"model.maxout_pieces={m.maxout_pieces} must be at least 1")
        for key in ("dropout_input", "dropout_hidden"):
            require(0.0 <= m[key] < 1.0, f"model.{key}={m[key]} is a drop probability in [0, 1)")
        for key in ("g_hidden", "d_hidden"):
            require(all(h >= 1 for h in m[key]), f"model.{key}={list(m[key])} sizes must be >= 1")
        self._check_arch(m)
        require(
            not t.simultaneous or (m.gp_weight == 0 and m.clip_value == 0),
            "train.simultaneous=true has no gradient penalty or weight clipping; use it with "
            "model.gp_weight=0 and model.clip_value=0",
        )

    def _check_arch(self, m: DictConfig) -> None:
        if m.name != MLP_MODEL and m.arch not in CONV_ARCHS:
            raise GanrunError(
                f"model.arch={m.arch!r} is not a network of model={m.name}; choose "
                f"model.arch= one of: {', '.join(CONV_ARCHS)}"
            )

    def check_data(self, cfg: DictConfig, data: Any) -> None:
        if cfg.model.conditional and data.train.labels is None:
            raise GanrunError(
                f"model.conditional=true needs labels, but the {cfg.data.train_split!r} split of "
                f"data={cfg.data.name} has none; use model.conditional=false"
            )

    def build(self, cfg: DictConfig, info: DataInfo) -> GanModel:
        self._check_arch(cfg)
        if cfg.conditional and info.num_classes == 0:
            raise GanrunError(
                f"model.conditional=true needs class labels, but data={info.name} has none; "
                "use labelled data or model.conditional=false"
            )
        build = mlp.build if cfg.name == MLP_MODEL else CONV_ARCHS[cfg.arch]
        g, d = build(cfg, info)
        return GanModel(cfg, info, {"generator": g, "discriminator": d})


FAMILY = GAN()
