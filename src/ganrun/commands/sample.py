"""``ganrun sample checkpoint=<file> n=64``: new samples from a checkpoint.

A grid of ``n`` samples (for conditional models one class per row, ``n`` rounded up to whole
rows), ``sample.interpolate=true`` for strips that walk the latent space between random points,
``sample.format=npz`` for the raw samples (uint8, NHWC, as FID tools and numpy code expect),
``sample.prior=<name>`` to draw from another of the model's priors than its config chose,
``sample.reconstruct=true`` for held-out images above their reconstructions; a translation model
(model=cyclegan) shows test images of each domain above their translations and back, a
super-resolution model (srresnet, srgan) test images at low resolution, bicubic, its own and the
original; with ``input=<folder> out=<folder>`` either converts one's own images, one file each.
The model is rebuilt from the checkpoint's own config (:func:`ganrun.runs.checkpoint.restore`)
and its family draws the samples. Output goes to ``<run>/generated/`` unless ``out=`` names a
file (a folder, with ``input=``).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from ganrun.devices import configure_threads, resolve_device
from ganrun.errors import GanrunError, require_one_of
from ganrun.images import default_nrow, save_grid, save_image, to_uint8
from ganrun.models.family import Drawn
from ganrun.runs.checkpoint import Snapshot, restore
from ganrun.runs.files import atomic_write, check_writable
from ganrun.runs.layout import GENERATED, run_dir_of

FORMATS = ("png", "npz")
DIRECTIONS = ("ab", "ba")
PRIOR_NAME = re.compile(r"[A-Za-z0-9_]+")  # it becomes part of the output file's name


def check_sample_config(cfg: DictConfig) -> None:
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
    require_one_of(s.format, FORMATS, "sample.format")
    if s.steps < 2:
        raise GanrunError(f"sample.steps={s.steps} must be at least 2")
    if s.batch_size < 1:
        raise GanrunError(f"sample.batch_size={s.batch_size} must be at least 1")
    if s.seed < 0:
        raise GanrunError(f"sample.seed={s.seed} must be non-negative")
    if s.reconstruct and s.interpolate:
        raise GanrunError(
            "sample.reconstruct=true and sample.interpolate=true draw two different pictures; "
            "choose one"
        )
    if s.grid_min_width < 0:
        raise GanrunError(
            f"sample.grid_min_width={s.grid_min_width} must be 0 (native size) or a width in pixels"
        )
    if s.prior is not None and not PRIOR_NAME.fullmatch(s.prior):
        raise GanrunError(
            f"sample.prior={s.prior!r} is not a prior's name (letters, digits, _); name one of "
            "the model's priors, or leave sample.prior out for its own"
        )
    if cfg.input is not None:
        _check_input(cfg)
    elif cfg.out is not None and Path(cfg.out).suffix.lower() != f".{s.format}":
        raise GanrunError(f"out={cfg.out} must end in .{s.format} for sample.format={s.format}")


def _check_input(cfg: DictConfig) -> None:
    s = cfg.sample
    require_one_of(s.direction, DIRECTIONS, "sample.direction")
    if not Path(cfg.input).expanduser().exists():
        raise GanrunError(f"input={cfg.input} does not exist; give a folder of images or an image")
    if s.reconstruct or s.interpolate:
        raise GanrunError(
            "input= converts the given images; drop sample.reconstruct and sample.interpolate"
        )
    if cfg.out is not None and Path(cfg.out).expanduser().is_file():
        raise GanrunError(f"out={cfg.out} is a file; with input= it names the folder to write to")


def default_out(checkpoint: Path, cfg: DictConfig) -> Path:
    s = cfg.sample
    kind = "interp" if s.interpolate else f"recon{cfg.n}" if s.reconstruct else f"n{cfg.n}"
    prior = "" if s.prior is None else f"_prior-{s.prior}"
    name = f"{checkpoint.stem}_{kind}{prior}_seed{s.seed}.{s.format}"
    return run_dir_of(checkpoint) / GENERATED / name


def save_npz(path: Path, drawn: Drawn, value_range: tuple[float, float]) -> Path:
    """``samples`` as uint8 (N, H, W, C) (points: the coordinates as they are), with the
    drawn arrays (``z``, ``labels``) beside them."""
    images = drawn.images
    arrays = {name: value.numpy() for name, value in drawn.arrays.items()}
    if images.dim() == 4:
        arrays["samples"] = to_uint8(images, value_range).permute(0, 2, 3, 1).numpy()
    else:  # points: there are no pixels, keep the coordinates
        arrays["samples"] = images.numpy()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write(path, buffer.getvalue())


def held_out(split: Any, n: int, seed: int) -> torch.Tensor:
    """Up to ``n`` images of ``split`` drawn by ``seed`` (in the split's order), scaled."""
    pick = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    return split.scaled(split.pixels(pick.sort().values)).float()


def reconstructions(snapshot: Snapshot, n: int, seed: int, batch_size: int) -> Drawn:
    """``n`` held-out images drawn by ``seed`` and their reconstructions, in rows: each row of
    originals above the same images reconstructed."""
    model, data = snapshot.model, snapshot.data
    if "reconstruct" not in model.provides:
        raise GanrunError(
            f"model={model.cfg.name} does not reconstruct images; drop sample.reconstruct=true "
            "(models that encode do: vae, ae, bigan)"
        )
    x = held_out(data.held_out, n, seed)
    n = len(x)
    out = torch.cat([model.reconstruct(x[i : i + batch_size]) for i in range(0, n, batch_size)])
    per_row = default_nrow(n)
    rows = [part[i : i + per_row] for i in range(0, n, per_row) for part in (x, out.to(x.dtype))]
    as_npz = {  # as the samples are kept: uint8, N x H x W x C
        name: to_uint8(images, data.info.value_range).permute(0, 2, 3, 1)
        for name, images in (("originals", x), ("reconstructions", out))
    }
    return Drawn(
        torch.cat(rows),
        as_npz,
        per_row,
        f"{n} held-out images above their reconstructions",
    )


def translations(snapshot: Snapshot, n: int, seed: int, batch_size: int) -> Drawn:
    """``n`` test images of each domain drawn by ``seed``, shown by the model's round trips."""
    from ganrun.data.translation import B_SPLITS

    data = snapshot.data
    a = held_out(data.split("test"), n, seed)
    b = held_out(data.split(B_SPLITS["test"]), n, seed)
    return snapshot.model.round_trips(a, b, batch_size)


def _outputs(files: list[Path], root: Path, out: Path) -> list[Path]:
    """Where each input's result goes: its name under ``out``, as PNG. Refused before anything
    is written when that would overwrite a file, or put two results in one file."""
    outputs = [out / f.relative_to(root).with_suffix(".png") for f in files]
    seen: dict[Path, Path] = {}
    for f, target in zip(files, outputs, strict=True):
        if target in seen:
            raise GanrunError(
                f"{seen[target]} and {f} would both be written to {target}; rename one of them"
            )
        seen[target] = f
    existing = [p for p in outputs if p.exists()]
    if existing:
        raise GanrunError(
            f"out={out} already holds {existing[0]}"
            + (f" and {len(existing) - 1} more of the files to write" if len(existing) > 1 else "")
            + "; choose another out= (nothing is overwritten)"
        )
    return outputs


def convert_folder(cfg: DictConfig, snapshot: Snapshot, checkpoint: Path) -> Path:
    """``input=``: a translation model takes each image, brought to its resolution and channels
    as data=folder brings them, in ``sample.direction``; a super-resolution model takes each at
    its own size (channels converted) and returns it ``model.scale`` times larger. One PNG each."""
    from ganrun.data import convert_channels
    from ganrun.data.external import image_files
    from ganrun.data.folder import decode, load_image
    from ganrun.data.translation import B_SPLITS

    model, data, s, info = snapshot.model, snapshot.data, cfg.sample, snapshot.data.info
    translates = "translate" in model.provides
    if not translates and "upscale" not in model.provides:
        raise GanrunError(
            f"model={model.cfg.name} neither translates nor upscales images; input= needs "
            "model=cyclegan, srresnet or srgan"
        )
    if not translates and s.direction != "ab":
        raise GanrunError(
            f"sample.direction={s.direction} is for translation models; model="
            f"{model.cfg.name} only upscales: drop it"
        )
    source = Path(cfg.input).expanduser()
    files, root = image_files(source, "input")
    kind = s.direction if translates else f"x{model.scale}"
    default = run_dir_of(checkpoint) / GENERATED / f"{checkpoint.stem}_{kind}_{source.stem}"
    out = Path(cfg.out).expanduser() if cfg.out else default
    check_writable(out, "choose another out=")
    outputs = _outputs(files, root, out)
    # Any split scales pixels alike, except that domain B's may differ from A's.
    b_side = translates and s.direction == "ba"
    split = data.split(B_SPLITS["test"]) if b_side else data.held_out
    if translates:
        mode = "L" if info.channels == 1 else "RGB"
        for begin in range(0, len(files), s.batch_size):
            batch = files[begin : begin + s.batch_size]
            pixels = torch.stack([load_image(f, info.resolution, mode) for f in batch])
            translated = model.translate(split.scaled(pixels), s.direction)
            for image, target in zip(translated, outputs[begin : begin + len(batch)], strict=True):
                save_image(image, target, info.value_range)
        domains = info.extra.get("domains", {"a": "A", "b": "B"})
        there, to = (domains[side] for side in s.direction)
        what = f"translated from {there} to {to} at {info.resolution}x{info.resolution}"
    else:  # any size: each image alone
        for path, target in zip(files, outputs, strict=True):
            pixels = convert_channels(decode(path)[None], info.channels)
            save_image(model.upscale(split.scaled(pixels))[0], target, info.value_range)
        what = f"upscaled {model.scale}x"
    print(
        f"ganrun: {len(files)} image(s) of {source} {what} by {checkpoint} (step "
        f"{snapshot.step}) -> {out}",
        flush=True,
    )
    return out


def run(cfg: DictConfig) -> Path:
    check_sample_config(cfg)
    device = resolve_device(cfg.device.type)
    if device.type == "cpu":
        configure_threads()
    checkpoint = Path(cfg.checkpoint).expanduser()
    if cfg.input is not None:
        return convert_folder(cfg, restore(checkpoint, device, cfg.data_root), checkpoint)
    out = Path(cfg.out).expanduser() if cfg.out else default_out(checkpoint, cfg)
    check_writable(out.parent, "choose another out=")
    snapshot = restore(checkpoint, device, cfg.data_root)
    model, s = snapshot.model, cfg.sample
    if s.prior is not None:
        model.use_prior(s.prior)
    if s.reconstruct:
        drawn = reconstructions(snapshot, cfg.n, s.seed, s.batch_size)
    elif s.interpolate:
        drawn = model.interpolate(cfg.n, s.steps, s.seed, s.batch_size)
    elif "translate" in model.provides:  # no prior to draw from: it shows what it does
        drawn = translations(snapshot, cfg.n, s.seed, s.batch_size)
    elif "upscale" in model.provides:
        originals = held_out(snapshot.data.held_out, cfg.n, s.seed)
        drawn = model.comparisons(originals, s.batch_size)
    else:
        drawn = model.sample(cfg.n, s.seed, s.batch_size)
    value_range = snapshot.data.info.value_range
    if s.format == "npz":
        save_npz(out, drawn, value_range)
    else:
        if drawn.images.dim() != 4:
            raise GanrunError(
                f"checkpoint {checkpoint} generates points, not images; use sample.format=npz"
            )
        save_grid(drawn.images, out, value_range, drawn.per_row, s.grid_min_width)
    print(
        f"ganrun: {drawn.description} from {checkpoint} (step {snapshot.step}, "
        f"{snapshot.weights} weights) -> {out}",
        flush=True,
    )
    return out
