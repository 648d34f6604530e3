"""BiGAN (Donahue et al. 2017) / ALI (Dumoulin et al. 2017): a GAN that learns inference too.

Beside G: z -> x, an encoder E: x -> z; the discriminator sees pairs and tells (x, E(x)) from
(G(z), z). G and E are trained together against it, each wanting D to take its pairs for the
other's: at the optimum E inverts G. All three step at once from one pass, as in the release.
With a ``loss=`` objective ``l`` for G, the joint loss is l(D(G(z), z)) + l(-D(x, E(x))) (for
``non_saturating``: -log D(G(z), z) - log(1 - D(x, E(x))), the release's "inverted labels").

E(x) is the learned representation: ``knn_acc`` / ``linear_acc`` score E's output before its
squashing into the prior's range (``eval.features=output``, the release's ``_e`` features) or the
encoder layer before it (``penultimate``, its ``_e-``), and ``recon_mse`` scores G(E(x)), shown
during training in ``samples/recon_step_*.png``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig
from torch import nn

from ganrun.data.base import DataInfo
from ganrun.errors import require, require_one_of
from ganrun.images import Figure
from ganrun.models.family import Family, ModelConfig, Statistic
from ganrun.models.latent import LatentModel, check_latent, check_layer_sizes
from ganrun.models.losses import LOSSES
from ganrun.models.nets import bigan

if TYPE_CHECKING:
    from ganrun.data import Data

ARCHS = ("mlp", "conv")
# G's and E's objectives: the sigmoid-D losses whose G term, negated, is E's.
JOINT_LOSSES = ("non_saturating", "minimax")


@dataclass
class BiganConfig(ModelConfig):
    latent_dim: int = 50
    noise: str = "uniform"  # the release's "u-50": U(-1, 1)^50
    noise_scale: float = 1.0
    arch: str = "mlp"  # mlp (the release's MNIST networks) | conv (DCGAN-style)
    g_hidden: list[int] = field(default_factory=lambda: [1024, 1024])  # mlp
    e_hidden: list[int] = field(default_factory=lambda: [1024, 1024])  # mlp
    # mlp: D's layers; conv: its last entry is the width of the layer joining x and z
    d_hidden: list[int] = field(default_factory=lambda: [1024, 1024])
    width: int = 64  # conv: base channel count
    output: str = "sigmoid"  # G's output: sigmoid (data in [0, 1]) | tanh ([-1, 1])
    conditional: bool = False  # no conditional variant; refused when set


class BiganModel(LatentModel):
    averaged = ("generator", "encoder")
    provides = frozenset({"samples", "reconstruct", "features"})
    # The release's NNC_e and NNC_e-: E's output before the squashing, and the layer before it.
    feature_layers = {"output": "E(x) before squashing", "penultimate": "E's last hidden layer"}

    @property
    def G(self) -> nn.Module:
        return self.networks["generator"]

    @property
    def E(self) -> nn.Module:
        return self.networks["encoder"]

    @property
    def D(self) -> nn.Module:
        return self.networks["discriminator"]

    def configure_training(self, cfg: DictConfig, fused: bool) -> None:
        super().configure_training(cfg, fused)
        self.loss = LOSSES[cfg.loss.name]
        self.batch_size = cfg.train.batch_size
        self.add_optimizer("generator", self.G.parameters(), cfg.optim, fused)
        self.add_optimizer("encoder", self.E.parameters(), cfg.optim, fused)
        self.add_optimizer(
            "discriminator", self.D.parameters(), cfg.optim, fused, lr_scale=cfg.optim.d_lr_scale
        )

    def training_step(self, batches: Any, noise: torch.Generator) -> dict[str, torch.Tensor]:
        G, E, D, loss, n = self.G, self.E, self.D, self.loss, self.batch_size
        opt_g, opt_e = self.optimizers["generator"], self.optimizers["encoder"]
        opt_d = self.optimizers["discriminator"]

        # One pass: D sees (x, E(x)) as "real" and (G(z), z) as "generated"; then every player
        # steps at once from it, as the release updates D, G and E (Section 3.4 of the paper).
        x, _ = batches.batch(n)
        z = self.noise(n, noise)
        d_real, d_fake = D(x, E(x)), D(G(z), z)
        loss_d = loss.d(d_real, d_fake)
        # G and E each want their pairs taken for the other's: E's loss is G's, labels swapped.
        loss_ge = loss.g(d_fake) + loss.g(-d_real)
        for opt in (opt_d, opt_g, opt_e):
            opt.zero_grad(set_to_none=True)
        # Each loss differentiates only its own players' weights.
        loss_d.backward(inputs=list(D.parameters()), retain_graph=True)
        loss_ge.backward(inputs=[*G.parameters(), *E.parameters()])
        self.sync_gradients(D, G, E)  # across torchrun ranks (DDP cannot follow two passes)
        opt_d.step()
        opt_g.step()
        opt_e.step()
        self.update_averages()

        return {
            "loss_d": loss_d.detach(),
            "loss_ge": loss_ge.detach(),
            "d_real": torch.sigmoid(d_real.detach()).mean(),
            "d_fake": torch.sigmoid(d_fake.detach()).mean(),
        }

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """E(x) (the averaged E where one is kept), in eval mode."""
        with self.evaluating():
            return self.network("encoder")(x.to(self.device))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """G(E(x)), in the data's range."""
        with self.evaluating():
            return self.network("generator")(self.encode(x)).float().cpu()

    @torch.no_grad()
    def features(self, x: torch.Tensor, layer: str = "output") -> torch.Tensor:
        with self.evaluating():
            encoder, x = self.network("encoder"), x.to(self.device)
            return encoder.logits(x) if layer == "output" else encoder.hidden(x)

    def more_figures(self, step: int, data: Data, net: nn.Module) -> list[Figure]:
        """Held-out images above their reconstructions G(E(x))."""
        return [self.reconstruction_grid(step, data)]


class BiGAN(Family):
    name = "bigan"
    models = ("bigan",)
    schema = BiganConfig
    statistics = (
        Statistic("loss_d", "D's loss on (x, E(x)) against (G(z), z)"),
        Statistic("loss_ge", "G's and E's joint loss"),
        Statistic("d_real", "mean D(x, E(x))", panel="d_outputs"),
        Statistic("d_fake", "mean D(G(z), z)", panel="d_outputs"),
    )

    def arch(self, cfg: DictConfig) -> str | None:
        return cfg.arch

    def check(self, cfg: DictConfig) -> None:
        self._check_model(cfg.model)
        require(
            cfg.loss.name in JOINT_LOSSES,
            f"loss={cfg.loss.name} does not apply to model=bigan (E's loss is G's with the "
            f"labels swapped); choose loss= one of: {', '.join(JOINT_LOSSES)}",
        )

    def _check_model(self, m: DictConfig) -> None:
        require_one_of(m.arch, ARCHS, "model.arch")
        require_one_of(m.output, ("sigmoid", "tanh"), "model.output")
        check_latent(m)
        require(m.width >= 1, f"model.width={m.width} must be at least 1")
        check_layer_sizes(m, "g_hidden", "e_hidden", "d_hidden")
        require(not m.conditional, "model=bigan has no conditional variant; drop model.conditional")

    def build(self, cfg: DictConfig, info: DataInfo) -> BiganModel:
        self._check_model(cfg)
        g, e, d = bigan.build(cfg, info)
        return BiganModel(cfg, info, {"generator": g, "encoder": e, "discriminator": d})


FAMILY = BiGAN()
