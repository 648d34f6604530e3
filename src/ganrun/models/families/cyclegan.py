"""CycleGAN (Zhu et al. 2017): unpaired translation between two image domains.

Two generators, G_ab: A -> B and G_ba: B -> A, and two PatchGAN discriminators, D_a judging
domain A's images and D_b domain B's (the release calls the latter D_A, after the generator it
trains). The step follows the release's ``cycle_gan_model.py``: with both discriminators frozen,
the generators take one step on the least-squares adversarial loss of both translations, plus
``model.cycle_weight`` times the L1 cycle errors |G_ba(G_ab(a)) - a| and |G_ab(G_ba(b)) - b|,
plus ``model.identity_weight`` times that times the identity errors |G_ab(b) - b| and
|G_ba(a) - a|; then each discriminator takes one step on half the least-squares loss of real
images against generated ones drawn through a history of ``model.pool_size`` (ImagePool). The
learning rate stays constant for the first half of training and falls linearly to zero over the
second (``optim.decay_from`` / ``optim.decay_to``, set so by the model's YAML).

It trains on two-domain data (``data=mnist_color|mnist_digits|translation_folder``): domain A is
the training split's batches, domain B the ``train_b`` split's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from ganrun.data.base import DataInfo
from ganrun.errors import require
from ganrun.images import Figure, Grid, to_uint8
from ganrun.models.family import Drawn, Family, Model, ModelConfig, Statistic
from ganrun.models.nets.cyclegan import (
    ImagePool,
    PatchDiscriminator,
    ResnetGenerator,
    check_sizes,
    patch_grid,
)
from ganrun.runs.layout import figure_name

if TYPE_CHECKING:
    from ganrun.data import Data

RELEASE_D_LAYERS = 3  # the release's 70x70 PatchGAN
SHOWN = 8  # test images of each domain in the training figures


@dataclass
class CycleganConfig(ModelConfig):
    width: int = 32  # generators' first layer (the release: 64); they reach 4 x width
    blocks: int = 6  # residual blocks (the release: 9 at 256 px, 6 at 128)
    # stride-2 stages before the blocks, and as many transposed ones after (the release: 2);
    # fewer keep the generators' changes local, which suits small images
    downsamplings: int = 2
    d_width: int = 32  # discriminators' first layer (the release: 64)
    d_layers: int = 0  # stride-2 layers of the PatchGAN; 0: as many as fit, up to 3
    cycle_weight: float = 10.0  # lambda of the cycle-consistency losses
    identity_weight: float = 0.5  # the identity losses' weight, relative to cycle_weight
    pool_size: int = 50  # generated images each discriminator's history keeps (0: none)
    output: str = "tanh"  # images in [-1, 1]
    conditional: bool = False  # no conditional variant


def d_layers(cfg: DictConfig, resolution: int) -> int:
    """``model.d_layers``, or for 0 the most (up to the release's 3) that leave a patch."""
    if cfg.d_layers:
        return int(cfg.d_layers)
    fits = [n for n in range(1, RELEASE_D_LAYERS + 1) if patch_grid(resolution, n) >= 1]
    return max(fits) if fits else 1


def lsgan(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """The least-squares GAN loss the release uses: mean (score - 1)^2 for real, score^2 for
    generated."""
    return F.mse_loss(scores, torch.full_like(scores, 1.0 if real else 0.0))


def generator_losses(
    real_a: torch.Tensor,
    real_b: torch.Tensor,
    fake_a: torch.Tensor,
    fake_b: torch.Tensor,
    nets: dict[str, nn.Module],
    with_identity: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(adversarial, cycle, identity), unweighted: each summed over both directions, the L1
    terms as mean absolute errors per pixel. ``fake_b`` = G_ab(a), ``fake_a`` = G_ba(b)."""
    g_ab, g_ba = nets["g_ab"], nets["g_ba"]
    adversarial = lsgan(nets["d_b"](fake_b), True) + lsgan(nets["d_a"](fake_a), True)
    cycle = F.l1_loss(g_ba(fake_b), real_a) + F.l1_loss(g_ab(fake_a), real_b)
    if not with_identity:
        return adversarial, cycle, torch.zeros((), device=real_a.device)
    identity = F.l1_loss(g_ab(real_b), real_b) + F.l1_loss(g_ba(real_a), real_a)
    return adversarial, cycle, identity


class CycleganModel(Model):
    provides = frozenset({"translate"})

    def __init__(self, cfg: DictConfig, info: DataInfo, networks: dict[str, nn.Module]) -> None:
        super().__init__(cfg, info, networks)
        self.pools = {"a": ImagePool(cfg.pool_size), "b": ImagePool(cfg.pool_size)}
        self.train_b: Any = None
        self._shown: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def weights(self) -> str:
        return "generators"

    # ------------------------------------------------------------------------------ training
    def use_data(self, data: Data) -> None:
        from ganrun.data.translation import B_SPLITS

        self.train_b = data.split(B_SPLITS[data.train_split])

    def configure_training(self, cfg: DictConfig, fused: bool) -> None:
        super().configure_training(cfg, fused)
        self.batch_size = cfg.train.batch_size
        n = self.networks
        generators = [*n["g_ab"].parameters(), *n["g_ba"].parameters()]
        discriminators = [*n["d_a"].parameters(), *n["d_b"].parameters()]
        self.add_optimizer("generators", generators, cfg.optim, fused)
        self.add_optimizer(
            "discriminators", discriminators, cfg.optim, fused, lr_scale=cfg.optim.d_lr_scale
        )
        self.cycle = float(self.cfg.cycle_weight)
        self.identity = float(self.cfg.identity_weight) * self.cycle
        # Domain B's batches come from a stream of their own, kept in the checkpoint beside
        # the training split's (extra_state), so a resume draws the same B images.
        if self.train_b is not None:
            self.train_b.seed(cfg.seed + 5)

    def training_step(self, batches: Any, noise: torch.Generator) -> dict[str, torch.Tensor]:
        n = self.networks
        g_ab, g_ba, d_a, d_b = n["g_ab"], n["g_ba"], n["d_a"], n["d_b"]
        real_a, _ = batches.batch(self.batch_size)
        real_b, _ = self.train_b.batch(self.batch_size)

        # Generators, against frozen discriminators.
        for d in (d_a, d_b):
            d.requires_grad_(False)
        fake_b, fake_a = g_ab(real_a), g_ba(real_b)
        adversarial, cycle, identity = generator_losses(
            real_a, real_b, fake_a, fake_b, self.networks, with_identity=self.identity > 0
        )
        loss_g = adversarial + self.cycle * cycle + self.identity * identity
        opt_g = self.optimizers["generators"]
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.sync_gradients(g_ab, g_ba)
        opt_g.step()
        for d in (d_a, d_b):
            d.requires_grad_(True)

        # Discriminators: real images against generated ones through the histories.
        old_b = self.pools["b"].query(fake_b.detach(), noise)
        old_a = self.pools["a"].query(fake_a.detach(), noise)
        loss_d_b = 0.5 * (lsgan(d_b(real_b), True) + lsgan(d_b(old_b), False))
        loss_d_a = 0.5 * (lsgan(d_a(real_a), True) + lsgan(d_a(old_a), False))
        opt_d = self.optimizers["discriminators"]
        opt_d.zero_grad(set_to_none=True)
        (loss_d_a + loss_d_b).backward()
        self.sync_gradients(d_a, d_b)
        opt_d.step()
        return {
            "loss_g": adversarial.detach(),
            "cycle": cycle.detach(),
            "identity": identity.detach(),
            "loss_d_a": loss_d_a.detach(),
            "loss_d_b": loss_d_b.detach(),
        }

    def extra_state(self) -> dict[str, Any]:
        state = {name: pool.state_dict() for name, pool in self.pools.items()}
        return {**state, "batches_b": self.train_b.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        for name, pool in self.pools.items():
            pool.load_state_dict(state[name])
        self.train_b.load_state_dict(state["batches_b"])

    def reseeded_streams(self) -> list[str]:
        return ["domain B's data order"] if self.train_b.moved else []

    # ------------------------------------------------------------------------------ using it
    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        """Images of one domain in the other (``direction`` "ab" or "ba"), in eval mode."""
        with self.evaluating():
            return self.network(f"g_{direction}")(x.to(self.device))

    def round_trips(self, a: torch.Tensor, b: torch.Tensor, batch_size: int) -> Drawn:
        """Images of A above their translations to B and those translated back, then the same
        from B, up to 8 a row; the npz keeps each of the six sets (uint8, N x H x W x C)."""
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]

        def translated(x: torch.Tensor, direction: str) -> torch.Tensor:
            parts = [
                self.translate(x[i : i + batch_size], direction) for i in range(0, n, batch_size)
            ]
            return torch.cat(parts).to(x.device, x.dtype)

        a_b, b_a = translated(a, "ab"), translated(b, "ba")
        chains = {
            "a": a,
            "a_to_b": a_b,
            "a_to_b_to_a": translated(a_b, "ba"),
            "b": b,
            "b_to_a": b_a,
            "b_to_a_to_b": translated(b_a, "ab"),
        }
        per_row = min(n, 8)
        rows = [
            chains[name][i : i + per_row]
            for names in (("a", "a_to_b", "a_to_b_to_a"), ("b", "b_to_a", "b_to_a_to_b"))
            for i in range(0, n, per_row)
            for name in names
        ]
        as_npz = {
            name: to_uint8(images, self.info.value_range).permute(0, 2, 3, 1).cpu()
            for name, images in chains.items()
        }
        what = f"{n} test images of each domain above their translations and back"
        return Drawn(torch.cat(rows), as_npz, per_row, what)

    def _shown_images(self, data: Data) -> tuple[torch.Tensor, torch.Tensor]:
        """The first test images of each domain, read once."""
        if self._shown is None:
            from ganrun.data.translation import B_SPLITS

            shown = []
            for name in ("test", B_SPLITS["test"]):
                split = data.split(name)
                index = torch.arange(min(SHOWN, len(split)))
                shown.append(split.scaled(split.pixels(index)).to(self.device))
            self._shown = (shown[0], shown[1])
        return self._shown

    @torch.no_grad()
    def figures(self, step: int, data: Data) -> list[Figure]:
        """The round trips of the first test images of each domain."""
        drawn = self.round_trips(*self._shown_images(data), SHOWN)
        return [Grid(figure_name(step), drawn.images, self.info.value_range, drawn.per_row)]


class CycleganFamily(Family):
    name = "cyclegan"
    models = ("cyclegan",)
    schema = CycleganConfig
    statistics = (  # what CycleganModel.training_step returns
        Statistic("loss_g", "both generators' least-squares adversarial losses, summed"),
        Statistic("cycle", "L1 cycle errors of both directions, summed (before the weight)"),
        Statistic("identity", "L1 identity errors of both generators, summed (before the weight)"),
        Statistic("loss_d_a", "D_a's loss: half its least-squares loss on real and generated A"),
        Statistic("loss_d_b", "D_b's loss, the same on domain B"),
    )

    def check(self, cfg: DictConfig) -> None:
        m = cfg.model
        require(not m.conditional, "model=cyclegan has no conditional variant; drop it")
        require(m.output == "tanh", f"model.output={m.output}: model=cyclegan's output is tanh")
        for key in ("width", "blocks", "d_width"):
            require(m[key] >= 1, f"model.{key}={m[key]} must be at least 1")
        require(
            m.downsamplings >= 0,
            f"model.downsamplings={m.downsamplings} must be >= 0 (the release: 2)",
        )
        require(m.d_layers >= 0, f"model.d_layers={m.d_layers} must be >= 0 (0: as many as fit)")
        require(m.pool_size >= 0, f"model.pool_size={m.pool_size} must be >= 0 (0: no history)")
        for key in ("cycle_weight", "identity_weight"):
            require(m[key] >= 0, f"model.{key}={m[key]} must be non-negative")
        require(
            m.ema_decay == 0,
            "model=cyclegan keeps no weight average; drop model.ema_decay",
        )
        require(
            cfg.data.train_split == "train",
            f"model=cyclegan trains on both domains (train and train_b) and cannot take "
            f"data.train_split={cfg.data.train_split}; drop it",
        )

    def check_data(self, cfg: DictConfig, data: Data) -> None:
        from ganrun.data.translation import B_SPLITS

        require(
            all(name in data.splits for name in (*B_SPLITS, *B_SPLITS.values())),
            f"model=cyclegan translates between two domains, but data={cfg.data.name} has one; "
            "use data=mnist_color, mnist_digits or translation_folder",
        )

    def build(self, cfg: DictConfig, info: DataInfo) -> CycleganModel:
        layers = d_layers(cfg, info.resolution)
        check_sizes(info.resolution, layers, cfg.downsamplings)
        c = info.channels
        networks: dict[str, nn.Module] = {
            "g_ab": ResnetGenerator(c, cfg.width, cfg.blocks, cfg.downsamplings),
            "g_ba": ResnetGenerator(c, cfg.width, cfg.blocks, cfg.downsamplings),
            "d_a": PatchDiscriminator(c, cfg.d_width, layers),
            "d_b": PatchDiscriminator(c, cfg.d_width, layers),
        }
        return CycleganModel(cfg, info, networks)


FAMILY = CycleganFamily()
