"""The semi-supervised GAN of Salimans et al. 2016, "Improved techniques for training GANs".

D is a K-class classifier whose logits l(x) also say real or fake: with a (K+1)-th "generated"
class whose logit is fixed at zero, D(x) = Z(x) / (Z(x) + 1) with Z(x) = sum_k exp l_k(x), that is
D(x) = sigmoid(logsumexp l(x)). D's loss is the cross-entropy on a labelled batch plus
``model.unlabelled_weight`` times the unsupervised GAN terms on an unlabelled and a generated
batch; G trains with feature matching (``loss=feature_matching``: the mean of D's last hidden
layer over a generated batch against that over a real one), which the paper found best for
classification, or with the usual ``non_saturating`` / ``minimax`` objectives on D(G(z)).

The labelled examples are ``data.labels_per_class`` per class (the ``labelled`` split); every
training image also serves unlabelled. The released code tests with an average of D's weights:
``model.ema_decay`` keeps one (of D only; samples come from G as trained). ``test_error`` scores
D's classification of the test split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError, require, require_one_of
from ganrun.models.family import Family, ModelConfig, Statistic
from ganrun.models.latent import LatentModel, check_latent, check_layer_sizes
from ganrun.models.losses import LOSSES
from ganrun.models.nets import improved_gan

if TYPE_CHECKING:
    from ganrun.data import Data

# G's objectives: feature matching, or one of the sigmoid-D losses on logsumexp l(G(z)).
G_LOSSES = ("feature_matching", "non_saturating", "minimax")
ARCHS = ("mlp",)


@dataclass
class SsganConfig(ModelConfig):
    latent_dim: int = 100
    # U(0, 1) in the released code; G's first layer is batch-normalised with no bias, so any
    # shift of z cancels and U(-1/2, 1/2) trains the same network.
    noise: str = "uniform"
    noise_scale: float = 0.5
    arch: str = "mlp"  # the paper's MNIST networks (ganrun.models.nets.improved_gan)
    g_hidden: list[int] = field(default_factory=lambda: [500, 500])
    d_hidden: list[int] = field(default_factory=lambda: [1000, 500, 250, 250, 250])
    input_noise: float = 0.3  # std of the Gaussian noise added to D's input
    hidden_noise: float = 0.5  # ... and to each of its hidden layers
    unlabelled_weight: float = 1.0  # weight of D's unsupervised terms
    init_examples: int = 500  # training images of D's data-dependent initialisation (0: off)
    output: str = "sigmoid"  # pixels in [0, 1]
    conditional: bool = False  # no conditional variant; refused when set


def real_logit(logits: torch.Tensor) -> torch.Tensor:
    """The logit of D(x) = Z / (Z + 1), Z = sum exp(logits): logsumexp, computed stably."""
    return torch.logsumexp(logits, dim=1)


class SsganModel(LatentModel):
    # The released code averages D (its test error is the average's); G is used as trained.
    averaged = ("discriminator",)
    provides = frozenset({"samples", "classifier", "features"})
    feature_layers = {
        "penultimate": "D's last hidden layer",
        "output": "D's class logits",
    }

    @property
    def G(self) -> torch.nn.Module:
        return self.networks["generator"]

    @property
    def D(self) -> torch.nn.Module:
        return self.networks["discriminator"]

    def use_data(self, data: Data) -> None:
        from ganrun.data import LABELLED  # the data layer names the split it adds

        self.labelled = data.splits.get(LABELLED, data.train)
        k = self.cfg.init_examples
        if k:  # every layer's pre-activations start at zero mean and unit variance
            x, _ = data.train.batch(min(k, len(data.train)))
            self.D.initialise_from(x.to(self.device))

    def configure_training(self, cfg: DictConfig, fused: bool) -> None:
        super().configure_training(cfg, fused)
        self.batch_size = cfg.train.batch_size
        self.loss = LOSSES[cfg.loss.name]
        self.add_optimizer("generator", self.G.parameters(), cfg.optim, fused)
        self.add_optimizer(
            "discriminator", self.D.parameters(), cfg.optim, fused, lr_scale=cfg.optim.d_lr_scale
        )

    def labelled_batch(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` labelled examples: whole random orders of the labelled set, one after another
        (with 100 labels and batches of 100, each batch is every label once, as in the released
        code). Drawn from the training noise generator, which checkpoints keep."""
        count = len(self.labelled)
        orders = [
            torch.randperm(count, generator=gen, device=gen.device)
            for _ in range(math.ceil(n / count))
        ]
        index = torch.cat(orders)[:n].to(self.labelled.images.device)
        return self.labelled.scaled(self.labelled.images[index]), self.labelled.labels[index]

    def training_step(self, batches: Any, noise: torch.Generator) -> dict[str, torch.Tensor]:
        G, D, n = self.G, self.D, self.batch_size
        opt_g, opt_d = self.optimizers["generator"], self.optimizers["discriminator"]

        # (1) D: cross-entropy on labelled images, real/fake on unlabelled and generated ones.
        D.requires_grad_(True)
        x_lab, y_lab = self.labelled_batch(n, noise)
        x_unl, _ = batches.batch(n)
        with torch.no_grad():
            fake = G(self.noise(n, noise))
        logits_lab, logits_unl, logits_fake = D(x_lab), D(x_unl), D(fake)
        loss_lab = F.cross_entropy(logits_lab, y_lab)
        d_real, d_fake = real_logit(logits_unl), real_logit(logits_fake)
        # The released code's loss_unl: half the minimax loss of a sigmoid D on these logits.
        loss_unl = 0.5 * self.loss.d(d_real, d_fake)
        loss_d = loss_lab + self.cfg.unlabelled_weight * loss_unl
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.sync_gradients(D)  # across torchrun ranks (DDP cannot follow three passes)
        opt_d.step()

        # (2) G: through the updated, frozen D.
        D.requires_grad_(False)
        fake = G(self.noise(n, noise))
        if self.loss.matches_features:
            x_real, _ = batches.batch(n)
            with torch.no_grad():
                real_features = D.hidden(x_real)
            loss_g = self.loss.g(D.hidden(fake), real_features)
        else:
            loss_g = self.loss.g(real_logit(D(fake)))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.sync_gradients(G)
        opt_g.step()
        self.update_averages()

        return {
            "loss_lab": loss_lab.detach(),
            "loss_unl": loss_unl.detach(),
            "loss_g": loss_g.detach(),
            "train_err": (logits_lab.detach().argmax(dim=1) != y_lab).float().mean(),
            "d_real": torch.sigmoid(d_real.detach()).mean(),
            "d_fake": torch.sigmoid(d_fake.detach()).mean(),
        }

    @property
    def weights(self) -> str:
        return "ema discriminator" if self.averages else "as trained"

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """D's K class logits of images ``x`` (the averaged D where one is kept), in eval mode
        (no noise), on the CPU."""
        with self.evaluating():
            return self.network("discriminator")(x.to(self.device)).float().cpu()

    @torch.no_grad()
    def features(self, x: torch.Tensor, layer: str = "penultimate") -> torch.Tensor:
        with self.evaluating():
            D = self.network("discriminator")
            x = x.to(self.device)
            return D(x) if layer == "output" else D.hidden(x)


class SSGAN(Family):
    name = "ssgan"
    models = ("ssgan",)
    schema = SsganConfig
    semi_supervised = True
    statistics = (
        Statistic("loss_lab", "D's cross-entropy on the labelled batch"),
        Statistic("loss_unl", "D's real/fake loss on unlabelled and generated batches"),
        Statistic("loss_g", "G's loss (feature matching: squared distance of mean features)"),
        Statistic("train_err", "D's error on the labelled batch", panel="d_outputs"),
        Statistic("d_real", "mean D(x) = Z/(Z+1) on unlabelled batches", panel="d_outputs"),
        Statistic("d_fake", "mean D(G(z)) on generated batches", panel="d_outputs"),
    )

    def arch(self, cfg: DictConfig) -> str | None:
        return cfg.arch

    def check(self, cfg: DictConfig) -> None:
        m = cfg.model
        self._check_model(m)
        require(
            cfg.loss.name in G_LOSSES,
            f"loss={cfg.loss.name} does not apply to model=ssgan, whose D is a classifier; "
            f"choose loss= one of: {', '.join(G_LOSSES)}",
        )

    def _check_model(self, m: DictConfig) -> None:
        require_one_of(m.arch, ARCHS, "model.arch")
        check_latent(m)
        check_layer_sizes(m, "g_hidden", "d_hidden")
        for key in ("input_noise", "hidden_noise", "unlabelled_weight"):
            require(m[key] >= 0, f"model.{key}={m[key]} must be non-negative")
        require(m.init_examples >= 0, f"model.init_examples={m.init_examples} must be >= 0")
        require(m.output == "sigmoid", f"model.output={m.output!r}: model=ssgan has sigmoid pixels")
        require(not m.conditional, "model=ssgan has no conditional variant; drop model.conditional")

    def check_data(self, cfg: DictConfig, data: Data) -> None:
        require(
            data.train.labels is not None and data.info.num_classes >= 2,
            f"model=ssgan learns to classify, but the {cfg.data.train_split!r} split of data="
            f"{cfg.data.name} has no labels; use a labelled data set (mnist, digits, cifar10)",
        )

    def build(self, cfg: DictConfig, info: DataInfo) -> SsganModel:
        self._check_model(cfg)
        if info.num_classes < 2:
            raise GanrunError(
                f"model=ssgan classifies into the data's classes, but data={info.name} has "
                f"{info.num_classes}; use a labelled data set"
            )
        g, d = improved_gan.build(cfg, info)
        return SsganModel(cfg, info, {"generator": g, "discriminator": d})


FAMILY = SSGAN()
