"""Single-image super-resolution: SRResNet (Ledig et al. 2017), trained on a content loss alone.

The high-resolution images are any image data set at ``data.resolution``; their low-resolution
inputs are made on the device, each batch, by bicubic downsampling with antialiasing by
``model.scale`` (2 or 4), in the same value range. The generator
(:class:`~ganrun.models.nets.srgan.SRResNet`) learns to undo it: ``model.content=mse`` (the
paper's SRResNet-MSE) lowers the mean squared error per pixel, ``vgg`` the mean squared error
between VGG19 feature maps (``model.vgg_layer``: 5_4, the paper's, or 2_2) of the output and the
original. Adam at ``optim.lr`` (the paper: 1e-4, beta1 0.9).

The SRGAN family (:mod:`ganrun.models.families.srgan`) trains the same generator against a
discriminator; ``model.init_from=<checkpoint>`` starts either from another run's generator, as
the paper started SRGAN from a trained SRResNet. Scoring compares each super-resolved test image
with its original and with plain bicubic upscaling (``eval=superres``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from ganrun.data.base import DataInfo
from ganrun.errors import GanrunError, require, require_one_of
from ganrun.images import Figure, Grid
from ganrun.models.family import Drawn, Family, Model, ModelConfig, Statistic
from ganrun.models.nets.srgan import SRResNet, check_scale
from ganrun.runs.layout import figure_name

if TYPE_CHECKING:
    from ganrun.data import Data

CONTENTS = ("mse", "vgg")
VGG_LAYERS = {"2_2": 9, "5_4": 36}  # phi_i,j (after its ReLU) -> layers of vgg19().features kept
SHOWN = 8  # test images in the training figures


@dataclass
class SuperresConfig(ModelConfig):
    scale: int = 4  # 2 or 4: low-resolution inputs are data.resolution / scale pixels wide
    width: int = 64  # the generator's channels (the paper: 64)
    blocks: int = 16  # residual blocks (the paper: 16)
    content: str = "mse"  # mse: pixels | vgg: VGG19 feature maps (model.vgg_layer)
    vgg_layer: str = "5_4"  # phi_5,4 (the paper's SRGAN-VGG54) or 2_2
    # A torchvision VGG19 state dict (vgg19-dcbb9e9d.pth); None: torchvision's cache, else a
    # download
    vgg_weights: str | None = None
    # A checkpoint (of model=srresnet or srgan) whose generator this run starts from
    init_from: str | None = None
    output: str = "tanh"  # images in [-1, 1]
    conditional: bool = False  # no conditional variant


class VggContent(nn.Module):
    """Mean squared error between VGG19 feature maps of two image batches in [-1, 1] (gray
    repeated to RGB, normalised as torchvision's ImageNet weights expect), the maps divided by
    12.75 first as the paper did, "to obtain VGG losses of a scale that is comparable to the MSE
    loss"."""

    RESCALE = 12.75

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, layer: str, weights: str | None) -> None:
        super().__init__()
        from torchvision.models import vgg19

        self.features = vgg19().features[: VGG_LAYERS[layer]].eval().requires_grad_(False)
        state = _vgg_state(weights)
        # Only the layers up to phi_i,j are kept, so only theirs are needed.
        wanted = {name: f"features.{name}" for name in self.features.state_dict()}
        absent = [key for key in wanted.values() if key not in state]
        if absent:
            raise GanrunError(
                f"the VGG19 weights lack {absent[0]} (model.vgg_weights must be a torchvision "
                "VGG19 state dict, such as vgg19-dcbb9e9d.pth)"
            )
        try:
            self.features.load_state_dict({name: state[key] for name, key in wanted.items()})
        except RuntimeError:
            raise GanrunError(
                "the VGG19 weights do not fit torchvision's VGG19 (model.vgg_weights must be "
                "its state dict, such as vgg19-dcbb9e9d.pth)"
            ) from None
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> VggContent:
        return super().train(False)  # a fixed feature extractor: BatchNorm-free, always eval

    def _phi(self, x: torch.Tensor) -> torch.Tensor:
        x = (x + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.features((x - self.mean) / self.std) / self.RESCALE

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wanted = self._phi(target)
        return F.mse_loss(self._phi(output), wanted)


def _vgg_state(weights: str | None) -> dict[str, torch.Tensor]:
    """VGG19's ImageNet weights: the file ``model.vgg_weights``, else torchvision's."""
    from pathlib import Path

    if weights is not None:
        path = Path(weights).expanduser()
        require(path.is_file(), f"model.vgg_weights={weights} does not exist")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise GanrunError(
                f"model.vgg_weights={weights} cannot be read as a state dict ({exc})"
            ) from None
    from torchvision.models import VGG19_Weights

    try:
        return VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except OSError as exc:  # offline (URLError is an OSError) or an unwritable cache
        raise GanrunError(
            "model.content=vgg needs torchvision's VGG19 weights, which are neither in its "
            f"cache nor downloadable here ({exc}); set model.vgg_weights=<vgg19-dcbb9e9d.pth>"
        ) from None


def downscale(hr: torch.Tensor, scale: int, value_range: tuple[float, float]) -> torch.Tensor:
    """The low-resolution input of high-resolution images: bicubic, antialiased."""
    lr = F.interpolate(
        hr, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False
    )
    return lr.clamp_(*value_range)


def bicubic(lr: torch.Tensor, scale: int, value_range: tuple[float, float]) -> torch.Tensor:
    """The baseline every super-resolved image is read against: bicubic upscaling."""
    up = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
    return up.clamp_(*value_range)


class SuperresModel(Model):
    averaged = ("generator",)
    provides = frozenset({"upscale"})

    def __init__(self, cfg: DictConfig, info: DataInfo, networks: dict[str, nn.Module]) -> None:
        super().__init__(cfg, info, networks)
        self.scale = int(cfg.scale)
        self._shown: torch.Tensor | None = None

    @property
    def G(self) -> nn.Module:
        return self.networks["generator"]

    @property
    def weights(self) -> str:
        return "ema" if self.averages else "generator"

    # ------------------------------------------------------------------------------ training
    def init_source(self) -> str | None:
        return self.cfg.init_from

    def start_from(self, networks: dict[str, dict[str, torch.Tensor]], source: str) -> None:
        """``model.init_from``: the generator of another run (its checkpoint's ``networks``)."""
        state = networks.get("generator")
        require(state is not None, f"model.init_from={source} holds no generator")
        try:
            self.G.load_state_dict(state)
        except RuntimeError:
            raise GanrunError(
                f"model.init_from={source}: its generator does not fit this one (model.scale, "
                "model.width, model.blocks and data.channels must be the same)"
            ) from None

    def configure_training(self, cfg: DictConfig, fused: bool) -> None:
        super().configure_training(cfg, fused)
        self.batch_size = cfg.train.batch_size
        self.add_optimizer("generator", self.G.parameters(), cfg.optim, fused)
        if self.cfg.content == "vgg":
            self.vgg: nn.Module | None = VggContent(self.cfg.vgg_layer, self.cfg.vgg_weights)
            self.vgg.to(self.device)
        else:
            self.vgg = None

    def content_loss(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(sr, hr) if self.vgg is None else self.vgg(sr, hr)

    def low_resolution(self, hr: torch.Tensor) -> torch.Tensor:
        return downscale(hr, self.scale, self.info.value_range)

    def training_step(self, batches: Any, noise: torch.Generator) -> dict[str, torch.Tensor]:
        hr, _ = batches.batch(self.batch_size)
        sr = self.G(self.low_resolution(hr))
        loss = self.content_loss(sr, hr)
        opt = self.optimizers["generator"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        self.sync_gradients(self.G)
        opt.step()
        self.update_averages()
        return {"content": loss.detach()}

    # ------------------------------------------------------------------------------ using it
    @torch.no_grad()
    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        """Low-resolution images (any size) ``model.scale`` times larger, in eval mode."""
        with self.evaluating():
            return self.network("generator")(lr.to(self.device))

    def comparisons(self, hr: torch.Tensor, batch_size: int) -> Drawn:
        """Rows of the low-resolution inputs (nearest-neighbour enlarged), their bicubic
        upscaling, the model's and the originals, up to 8 a row; the npz keeps each set
        (uint8, N x H x W x C; ``lr`` at its own size)."""
        from ganrun.images import to_uint8

        hr = hr.to(self.device)
        lr = self.low_resolution(hr)
        sr = torch.cat(
            [self.upscale(lr[i : i + batch_size]) for i in range(0, len(lr), batch_size)]
        )
        sets = {
            "lr": lr,
            "bicubic": bicubic(lr, self.scale, self.info.value_range),
            "sr": sr.to(hr.dtype),
            "hr": hr,
        }
        nearest = F.interpolate(lr, scale_factor=self.scale, mode="nearest")
        shown = {**sets, "lr": nearest}
        per_row = min(len(hr), SHOWN)
        rows = [
            shown[name][i : i + per_row]
            for i in range(0, len(hr), per_row)
            for name in ("lr", "bicubic", "sr", "hr")
        ]
        as_npz = {
            name: to_uint8(images, self.info.value_range).permute(0, 2, 3, 1)
            for name, images in sets.items()
        }
        what = f"{len(hr)} test images {self.scale}x: low resolution, bicubic, model, original"
        return Drawn(torch.cat(rows), as_npz, per_row, what)

    @torch.no_grad()
    def figures(self, step: int, data: Data) -> list[Figure]:
        if self._shown is None:
            split = data.held_out
            index = torch.arange(min(SHOWN, len(split)))
            self._shown = split.scaled(split.pixels(index))
        drawn = self.comparisons(self._shown, SHOWN)
        return [Grid(figure_name(step), drawn.images, self.info.value_range, drawn.per_row)]


class SuperresFamily(Family):
    name = "srresnet"
    models: ClassVar[tuple[str, ...]] = ("srresnet",)
    schema: ClassVar[type] = SuperresConfig
    model_class: ClassVar[type[SuperresModel]] = SuperresModel
    statistics: ClassVar[tuple[Statistic, ...]] = (
        Statistic("content", "the content loss: MSE of pixels, or of VGG19 feature maps"),
    )

    def check(self, cfg: DictConfig) -> None:
        m = cfg.model
        require(not m.conditional, f"model={m.name} has no conditional variant; drop it")
        require(m.output == "tanh", f"model.output={m.output}: model={m.name}'s output is tanh")
        for key in ("width", "blocks"):
            require(m[key] >= 1, f"model.{key}={m[key]} must be at least 1")
        require_one_of(m.content, CONTENTS, "model.content")
        require_one_of(m.vgg_layer, tuple(VGG_LAYERS), "model.vgg_layer")
        check_scale(m.scale, cfg.data.resolution)
        if m.init_from is not None:
            from pathlib import Path

            require(
                Path(m.init_from).expanduser().is_file(),
                f"model.init_from={m.init_from} does not exist; give a checkpoint of "
                "model=srresnet or srgan",
            )

    def networks(self, cfg: DictConfig, info: DataInfo) -> dict[str, nn.Module]:
        """The named networks, built in this order (SRGAN adds its discriminator)."""
        check_scale(cfg.scale, info.resolution)
        return {"generator": SRResNet(info.channels, cfg.width, cfg.blocks, cfg.scale)}

    def build(self, cfg: DictConfig, info: DataInfo) -> SuperresModel:
        return self.model_class(cfg, info, self.networks(cfg, info))


FAMILY = SuperresFamily()
