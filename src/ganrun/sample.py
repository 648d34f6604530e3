"""``ganrun sample checkpoint=<file> n=64``: new samples from a checkpoint.

A grid of ``n`` samples (for conditional models one class per row, ``n`` rounded up to whole
rows), ``sample.interpolate=true`` for strips that walk the latent space between random points,
``sample.format=npz`` for the raw samples (uint8, NHWC, as FID tools and numpy code expect).
The model is rebuilt from the checkpoint's own config (:mod:`ganrun.restore`). Output goes to
``<run>/generated/`` unless ``out=`` names a file.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from ganrun.devices import configure_threads, resolve_device
from ganrun.errors import GanrunError
from ganrun.metrics.results import run_dir_of
from ganrun.models import sample_noise
from ganrun.restore import Restored, restore
from ganrun.samples import save_grid

log = logging.getLogger("ganrun")

GENERATED = "generated"
FORMATS = ("png", "npz")


def validate_sample_config(cfg: DictConfig) -> None:
    s = cfg.sample
    if not cfg.checkpoint:
        raise GanrunError(
            "say which checkpoint to sample with checkpoint=<file> "
            "(e.g. checkpoint=outputs/<date>/<time>/checkpoints/last.pt)"
        )
    if not Path(cfg.checkpoint).expanduser().is_file():
        raise GanrunError(f"checkpoint={cfg.checkpoint} does not exist")
    if cfg.n < 1:
        raise GanrunError(f"n={cfg.n} must be at least 1")
    if s.format not in FORMATS:
        raise GanrunError(f"sample.format={s.format} is not one of: {', '.join(FORMATS)}")
    for key in ("steps", "batch_size"):
        if s[key] < (2 if key == "steps" else 1):
            raise GanrunError(
                f"sample.{key}={s[key]} must be at least {2 if key == 'steps' else 1}"
            )
    if s.seed < 0:
        raise GanrunError(f"sample.seed={s.seed} must be non-negative")
    if cfg.out is not None and Path(cfg.out).suffix.lower() != f".{s.format}":
        raise GanrunError(f"out={cfg.out} must end in .{s.format} for sample.format={s.format}")


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (White 2016): the path stays where Gaussian noise has its mass,
    unlike a straight line, whose midpoints have too small a norm. Rows of z0, z1; t in [0, 1]."""
    a = torch.nn.functional.normalize(z0, dim=-1)
    b = torch.nn.functional.normalize(z1, dim=-1)
    omega = torch.arccos((a * b).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * z0 + (torch.sin(t * omega) / so) * z1


def plan_latents(
    restored: Restored, cfg: DictConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Latent codes, labels (conditional models) and images per row of the output grid."""
    model, s = restored.config.model, cfg.sample
    num_classes = restored.data.info.num_classes if model.conditional else 0
    if model.conditional and num_classes < 1:
        raise GanrunError(
            f"checkpoint {restored.path} is conditional but its data set has no "
            "classes; it cannot be sampled"
        )
    if s.interpolate:
        rows = num_classes or max(1, math.ceil(cfg.n / s.steps))
        ends = sample_noise(model, 2 * rows, torch.device("cpu"), gen)
        t = torch.linspace(0, 1, s.steps).view(1, -1, 1)
        z0, z1 = ends[:rows, None, :], ends[rows:, None, :]
        # Uniform noise lives in a cube, which a straight line never leaves.
        z = slerp(z0, z1, t) if model.noise == "normal" else z0 + t * (z1 - z0)
        z = z.reshape(rows * s.steps, -1)
        labels = torch.arange(rows).repeat_interleave(s.steps) if num_classes else None
        return z, labels, s.steps
    if num_classes:
        per_class = math.ceil(cfg.n / num_classes)
        z = sample_noise(model, per_class * num_classes, torch.device("cpu"), gen)
        return z, torch.arange(num_classes).repeat_interleave(per_class), per_class
    z = sample_noise(model, cfg.n, torch.device("cpu"), gen)
    return z, None, max(1, int(math.sqrt(cfg.n)))


@torch.no_grad()
def draw(
    restored: Restored, z: torch.Tensor, labels: torch.Tensor | None, batch_size: int
) -> torch.Tensor:
    device = next(restored.generator.parameters()).device
    out = []
    for start in range(0, z.shape[0], batch_size):
        zb = z[start : start + batch_size].to(device)
        yb = None if labels is None else labels[start : start + batch_size].to(device)
        out.append(restored.generator(zb, yb).float().cpu())
    return torch.cat(out)


def default_out(checkpoint: Path, cfg: DictConfig) -> Path:
    s = cfg.sample
    kind = "interp" if s.interpolate else f"n{cfg.n}"
    return run_dir_of(checkpoint) / GENERATED / f"{checkpoint.stem}_{kind}_seed{s.seed}.{s.format}"


def to_uint8(images: torch.Tensor, value_range: tuple[float, float]) -> np.ndarray:
    """(N, C, H, W) floats in value_range -> (N, H, W, C) uint8, rounded like torchvision."""
    lo, hi = value_range
    unit = ((images - lo) / (hi - lo)).clamp(0, 1)
    return unit.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_npz(
    path: Path,
    images: torch.Tensor,
    z: torch.Tensor,
    labels: torch.Tensor | None,
    value_range: tuple[float, float],
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"z": z.numpy()}
    if images.dim() == 4:
        arrays["samples"] = to_uint8(images, value_range)
    else:  # points: there are no pixels, keep the coordinates
        arrays["samples"] = images.numpy()
    if labels is not None:
        arrays["labels"] = labels.numpy()
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def run(cfg: DictConfig) -> Path:
    validate_sample_config(cfg)
    device = resolve_device(cfg.device.type)
    if device.type == "cpu":
        configure_threads()
    checkpoint = Path(cfg.checkpoint).expanduser()
    restored = restore(checkpoint, device, cfg.data_root)
    gen = torch.Generator().manual_seed(cfg.sample.seed)
    z, labels, per_row = plan_latents(restored, cfg, gen)
    out = Path(cfg.out).expanduser() if cfg.out else default_out(checkpoint, cfg)
    images = draw(restored, z, labels, cfg.sample.batch_size)
    value_range = restored.data.info.value_range
    if cfg.sample.format == "npz":
        save_npz(out, images, z, labels, value_range)
    else:
        if images.dim() != 4:
            raise GanrunError(
                f"checkpoint {checkpoint} generates points, not images; use sample.format=npz"
            )
        save_grid(images, out, value_range, nrow=per_row)
    what = (
        f"{images.shape[0] // per_row} interpolation strips of {per_row} images"
        if cfg.sample.interpolate
        else f"{images.shape[0]} samples"
    )
    print(
        f"ganrun: {what} from {checkpoint} (step {restored.step}, "
        f"{restored.weights} weights) -> {out}",
        flush=True,
    )
    return out
